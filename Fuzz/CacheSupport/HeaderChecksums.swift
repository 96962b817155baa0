@testable import ContentCache

/// Rewrites the CRC-32C of every entry header in `bytes` from `start` on (records back to back, as in
/// a segment), so fuzzed headers get past their checksum to the fields and frames behind it. Stops at
/// the first header that does not fit or whose chunk lengths run past the end.
public func fixHeaderChecksums(_ bytes: inout [UInt8], from start: Int) {
    var at = start
    while at + EntryHeader.fixedSize <= bytes.count {
        let n = Int(le32(bytes, at + 40))
        let hsize = EntryHeader.headerSize(chunkCount: n)
        guard n < 1 << 20, at + hsize <= bytes.count else { return }
        let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[at..<(at + hsize - 4)])) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((at + hsize - 4)..<(at + hsize), with: $0) }
        var end = at + hsize
        for i in 0..<n { end += Int(le32(bytes, at + EntryHeader.fixedSize + 4 * i)) }
        at = end
    }
}

private func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}
