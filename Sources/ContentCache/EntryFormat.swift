import Basics
/// The byte layout of one entry (cache-layout.md, "Entry format"). All integers little-endian.
///
///     0   8   magic "gitfsCE1"
///     8   20  key (raw object id)
///     28  1   chunk_log2 (chunk size = 1 << chunk_log2; 12...24)
///     29  3   zero
///     32  8   content size
///     40  4   chunk count N = ceil(content size / chunk size)
///     44  4   created (unix seconds)
///     48  4*N compressed length of each chunk
///     48+4N 4 CRC-32C of bytes [0, 48+4N)
///     52+4N   N zstd frames, back to back
struct EntryHeader: Sendable {
    static let magic: [UInt8] = Array("gitfsCE1".utf8)
    static let fixedSize = 48

    let key: ObjectID
    let chunkLog2: Int
    let contentSize: Int
    let created: UInt32
    /// Offset of each chunk frame from the start of the entry, plus one final element = entry end.
    let offsets: [Int]

    var chunkCount: Int { offsets.count - 1 }
    var chunkSize: Int { 1 << chunkLog2 }
    var headerSize: Int { Self.fixedSize + 4 * chunkCount + 4 }
    var recordSize: Int { offsets.last! }
    var storedSize: Int { recordSize - headerSize }

    static func chunkCount(contentSize: Int, chunkLog2: Int) -> Int {
        (contentSize + (1 << chunkLog2) - 1) >> chunkLog2
    }

    static func headerSize(chunkCount: Int) -> Int { fixedSize + 4 * chunkCount + 4 }

    /// Encodes a header for the given chunk lengths.
    static func encode(key: ObjectID, chunkLog2: Int, contentSize: Int, created: UInt32, lengths: [UInt32]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(headerSize(chunkCount: lengths.count))
        out += magic
        out += key.bytes
        out += [UInt8(chunkLog2), 0, 0, 0]
        appendLE(&out, UInt64(contentSize))
        appendLE(&out, UInt32(lengths.count))
        appendLE(&out, created)
        for l in lengths { appendLE(&out, l) }
        let crc = out.withUnsafeBytes { CRC32C.checksum($0) }
        appendLE(&out, crc)
        return out
    }

    enum Parse {
        case ok(EntryHeader)
        /// The buffer is too short; at least this many bytes from the entry start are needed.
        case needMore(Int)
        case invalid(String)
    }

    /// Parses and checks a header at the start of `buf` (magic, field ranges, CRC-32C).
    static func parse(_ buf: UnsafeRawBufferPointer) -> Parse {
        if buf.count < fixedSize { return .needMore(fixedSize) }
        for i in 0..<8 where buf[i] != magic[i] { return .invalid("bad magic") }
        let log2 = Int(buf[28])
        guard (12...24).contains(log2), buf[29] == 0, buf[30] == 0, buf[31] == 0 else {
            return .invalid("bad chunk size field")
        }
        let size64 = buf.loadUnaligned(fromByteOffset: 32, as: UInt64.self).littleEndian
        guard size64 < (1 << 50) else { return .invalid("implausible content size") }
        let size = Int(size64)
        let n = Int(buf.loadUnaligned(fromByteOffset: 40, as: UInt32.self).littleEndian)
        guard n == chunkCount(contentSize: size, chunkLog2: log2) else { return .invalid("chunk count does not match size") }
        let hsize = headerSize(chunkCount: n)
        if buf.count < hsize { return .needMore(hsize) }
        let crc = buf.loadUnaligned(fromByteOffset: hsize - 4, as: UInt32.self).littleEndian
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[0..<(hsize - 4)])) == crc else {
            return .invalid("header checksum mismatch")
        }
        let bound = Compressor.bound(1 << log2)
        var offsets = [Int]()
        offsets.reserveCapacity(n + 1)
        var pos = hsize
        for i in 0..<n {
            offsets.append(pos)
            let l = Int(buf.loadUnaligned(fromByteOffset: fixedSize + 4 * i, as: UInt32.self).littleEndian)
            guard l > 0, l <= bound else { return .invalid("bad chunk length") }
            pos += l
        }
        offsets.append(pos)
        let key = ObjectID(raw: UnsafeRawBufferPointer(rebasing: buf[8..<28]))
        let created = buf.loadUnaligned(fromByteOffset: 44, as: UInt32.self).littleEndian
        return .ok(EntryHeader(key: key, chunkLog2: log2, contentSize: size, created: created, offsets: offsets))
    }

    /// Plain size of chunk `i`.
    func plainLength(_ i: Int) -> Int { min(chunkSize, contentSize - (i << chunkLog2)) }
}

@inline(__always)
func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
    withUnsafeBytes(of: v.littleEndian) { out += $0 }
}
