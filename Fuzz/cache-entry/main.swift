// libFuzzer target: one content-cache entry (cache-layout.md, "Entry format"): the header parser
// (EntryHeader.parse), an entry file's header check (ContentCache.readFileHeader) and reading its
// chunks (CacheEntry.read: zstd frames, their checksums), from memory as a segment record is read and
// from a file as a large entry is. Input: one entry. The harness rewrites the header's CRC-32C before
// parsing (when the input holds a whole header), so mutations get past it to the fields and frames.
import Basics
import FuzzCacheSupport
import Glibc
import FuzzSupport
@testable import ContentCache

private let pool = ZstdPool()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCacheEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var bytes = Array(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    fixHeaderChecksums(&bytes, from: 0)
    if case .ok(let h) = bytes.withUnsafeBytes({ EntryHeader.parse($0) }), h.recordSize <= bytes.count {
        precondition(h.offsets.count == h.chunkCount + 1 && h.offsets.first == h.headerSize, "bad chunk offsets")
        let record = Array(bytes[0..<h.recordSize])
        readEverything(CacheEntry(header: h, backing: .memory(record), pool: pool) { _ in })
    }
    let file = MemoryFile(bytes)
    let fd = FileDescriptor(adopting: dup(file.fd))
    if case .success(let h) = ContentCache.readFileHeader(fd) {
        precondition(h.recordSize == bytes.count, "an entry file was accepted whose size is not its header's")
        readEverything(CacheEntry(header: h, backing: .file(fd), pool: pool) { _ in })
    }
    return 0
}

/// Reads the content the way readers do: in 4 KiB windows from the start, then one read crossing a
/// chunk boundary; at most 16 MiB in all. Every read gives the bytes asked for or throws.
private func readEverything(_ entry: CacheEntry) {
    var buffer = [UInt8](repeating: 0, count: 4096)
    var offset = 0
    while offset < min(entry.size, 16 << 20) {
        let want = min(buffer.count, entry.size - offset)
        let n: Int
        do { n = try buffer.withUnsafeMutableBytes { try entry.read(offset: offset, into: $0) } } catch { return }
        precondition(n == want, "read gave \(n) bytes of \(want)")
        offset += n
    }
    if entry.size > entry.header.chunkSize {
        _ = try? buffer.withUnsafeMutableBytes { try entry.read(offset: entry.header.chunkSize - 100, into: $0) }
    }
}
