import Basics
import Foundation
import GitStore
import Testing
import TestSupport

/// The streaming inflater of big whole blobs (`Repository.blobStream`) against git: the bytes, read in
/// 64 KiB pieces, and its own end checks — the zlib trailer's Adler-32 is checked by gitfs (libdeflate
/// computes it), so an entry whose CRC-32 in the index matches but whose Adler-32 does not is refused.
extension PackReaderTests {
    /// Reads the whole stream in 64 KiB pieces; the store's error if it fails.
    func readStream(_ s: BlobStream) -> Result<[UInt8], GitStoreError> {
        var out: [UInt8] = []
        var piece = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            var failure: GitStoreError?
            let n = piece.withUnsafeMutableBytes { b -> Int in
                do throws(GitStoreError) { return try s.read(into: b) } catch {
                    failure = error
                    return 0
                }
            }
            if let failure { return .failure(failure) }
            if n == 0 { return .success(out) }
            out += piece[0..<n]
        }
    }

    /// CRC-32 (zlib's polynomial), as `git index-pack` records it for an entry.
    func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
        }
        return ~c
    }

    @Test func aStreamedBlobMatchesGit() throws {
        let m = try makeMirror(seed: 21)
        defer { m.home.remove() }
        let repo = try m.store.open(name: "m")
        for path in ["data/text.bin", "data/random.bin"] {
            let id = trimmed(try git("rev-parse", "main:" + path, cwd: m.path))
            let s = try #require(try repo.blobStream(ObjectID(hex: id)!, minimumSize: 1 << 20), "\(path) is not streamed")
            let want = try gitBytes(["cat-file", "blob", id], cwd: m.source).stdout
            guard case .success(let got) = readStream(s) else { Issue.record("\(path): \(readStream(s))"); continue }
            #expect(got == want, "\(path)")
        }
    }

    @Test func aWrongAdler32UnderAMatchingCRCIsRefusedAtTheStreamsEnd() throws {
        let m = try makeMirror(seed: 22)
        defer { m.home.remove() }
        let id = trimmed(try git("rev-parse", "main:data/text.bin", cwd: m.path))
        let e = try entry(id, in: m.path)
        // The entry's last byte is the Adler-32's: damage it, then make the index's CRC-32 agree with the
        // damaged entry, so only the Adler-32 can tell.
        try flipBits(in: e.pack, at: e.offset + e.length - 1, mask: 0x01)
        let packBytes = try Data(contentsOf: URL(fileURLWithPath: e.pack))
        let crc = crc32(packBytes[e.offset..<(e.offset + e.length)])
        let idxPath = String(e.pack.dropLast(5)) + ".idx"
        let listed = try git("show-index", cwd: m.path, stdin: Array(try Data(contentsOf: URL(fileURLWithPath: idxPath))))
            .split(separator: "\n").map { String($0.split(separator: " ")[1]) }
        let position = try #require(listed.firstIndex(of: id))
        let fh = try #require(FileHandle(forUpdatingAtPath: idxPath))
        try fh.seek(toOffset: UInt64(8 + 1024 + 20 * listed.count + 4 * position))
        try fh.write(contentsOf: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try fh.close()
        let repo = try m.store.open(name: "m")
        let s = try #require(try repo.blobStream(ObjectID(hex: id)!, minimumSize: 1 << 20), "the CRC-32 was not made to match")
        switch readStream(s) {
        case .success(let got): Issue.record("a stream with a wrong Adler-32 was read to its end (\(got.count) bytes)")
        case .failure(let error):
            #expect(error.kind == .corrupt)
            #expect(error.message.contains("Adler-32"), "\(error.message)")
        }
    }
}
