// libFuzzer target: a content-cache segment file (cache-layout.md, "Segments"): the magic, then
// records walked by ContentCache.scanRecords, as a mount indexes segments written by other processes.
// Each record it reports is then read as a lookup reads it (header parsed again, chunks decoded).
// Input: one segment (header checksums rewritten by the harness, as for cache-entry). Records found must lie inside the file, in order, without overlapping.
import Basics
import FuzzCacheSupport
import Glibc
import FuzzSupport
@testable import ContentCache

private let pool = ZstdPool()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCacheSegment(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var bytes = Array(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    fixHeaderChecksums(&bytes, from: 8)
    let file = MemoryFile(bytes)
    let fd = FileDescriptor(adopting: dup(file.fd))
    var records: [(EntryHeader, Int)] = []
    let result = ContentCache.scanRecords(fd, from: 0, size: size) { h, offset in records.append((h, offset)) }
    var end = 8
    for (h, offset) in records {
        precondition(offset == end && offset + h.recordSize <= size, "record at \(offset) outside the file or out of order")
        end = offset + h.recordSize
        let record = Array(bytes[offset..<end])
        guard case .ok(let again) = record.withUnsafeBytes({ EntryHeader.parse($0) }), again.recordSize == record.count else {
            preconditionFailure("a scanned record does not parse again")
        }
        let entry = CacheEntry(header: again, backing: .memory(record), pool: pool) { _ in }
        var buffer = [UInt8](repeating: 0, count: 4096)
        _ = try? buffer.withUnsafeMutableBytes { try entry.read(offset: 0, into: $0) }
    }
    precondition(records.isEmpty || result.end == end, "scan end \(result.end) is not the last record's end \(end)")
    // Indexing the tail again from where the scan stopped finds nothing new.
    if result.end >= 8, result.end < size {
        var more = 0
        _ = ContentCache.scanRecords(fd, from: result.end, size: size) { _, _ in more += 1 }
        precondition(more == 0, "a rescan from the stop point found \(more) more records")
    }
    return 0
}
