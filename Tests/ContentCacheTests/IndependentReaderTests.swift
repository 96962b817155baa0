import Foundation
import Testing

/// Reads entries using only what cache-layout.md says: its own header parser, its own bitwise
/// CRC-32C and the `zstd` command line for the chunk frames. No ContentCache code is used to read.
enum MiniReader {
    static func crc32c(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0x82F6_3B78 & (0 &- (crc & 1))) }
        }
        return ~crc
    }

    static func le<T: FixedWidthInteger>(_ b: [UInt8], _ at: Int, _: T.Type) -> T {
        var v: T = 0
        for i in 0..<(T.bitWidth / 8) { v |= T(b[at + i]) << (8 * i) }
        return v
    }

    /// Decodes the entry starting at `at` in `b`; returns (key hex, content, entry length).
    static func decode(_ b: [UInt8], at: Int, tmp: String) throws -> (String, [UInt8], Int) {
        let h = Array(b[at...])
        #expect(Array(h[0..<8]) == Array("gitfsCE1".utf8))
        let key = h[8..<28].map { String(format: "%02x", $0) }.joined()
        let log2 = Int(h[28])
        let size = Int(le(h, 32, UInt64.self))
        let n = Int(le(h, 40, UInt32.self))
        #expect(n == (size + (1 << log2) - 1) >> log2)
        let headerLen = 48 + 4 * n + 4
        #expect(crc32c(h[0..<(headerLen - 4)]) == le(h, headerLen - 4, UInt32.self))
        var pos = headerLen
        var content: [UInt8] = []
        for i in 0..<n {
            let len = Int(le(h, 48 + 4 * i, UInt32.self))
            FileManager.default.createFile(atPath: tmp, contents: Data(h[pos..<(pos + len)]))
            let (rc, out) = try run("/bin/sh", ["-c", "zstd -d -q -c '\(tmp)' | base64 -w0"])
            #expect(rc == 0)
            content += Array(Data(base64Encoded: out.trimmingCharacters(in: .whitespacesAndNewlines))!)
            pos += len
        }
        #expect(content.count == size)
        return (key, content, pos)
    }
}

@Suite struct IndependentReaderTests {
    @Test func entriesReadableFromTheDocumentAlone() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let big = makeContent(300_000, seed: 1)
        let kb = try store(c, big)
        var smalls: [String: [UInt8]] = [:]
        for i in 0..<5 { let b = makeContent(150 + i, seed: UInt64(i)); smalls[try store(c, b).hex] = b }
        smalls[try store(c, []).hex] = []
        #expect(try String(contentsOfFile: t.path + "/VERSION", encoding: .utf8) == "gitfs-cache 1\n")
        // Large entry: objects/<2 hex>/<38 hex>, one entry per file.
        let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: t.path + "/objects/" + kb.hex.prefix(2) + "/" + kb.hex.dropFirst(2))))
        let (key, content, len) = try MiniReader.decode(file, at: 0, tmp: t.path + "/frame")
        #expect(key == kb.hex && content == big && len == file.count)
        // Small entries: segments/*.seg = "gitfsSG1" then entries back to back.
        var found: [String: [UInt8]] = [:]
        for s in files(t.path + "/segments") {
            let seg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: t.path + "/segments/" + s)))
            #expect(Array(seg[0..<8]) == Array("gitfsSG1".utf8))
            var p = 8
            while p < seg.count {
                let (k, b, l) = try MiniReader.decode(seg, at: p, tmp: t.path + "/frame")
                found[k] = b
                p += l
            }
        }
        #expect(found == smalls)
    }
}
