// libFuzzer target: a content-cache last-use journal (cache-layout.md, "Last use"), as gc folds the
// journals of other processes (ContentCache.readJournal). Input: one journal file. Accepted only with
// the magic; every whole 24-byte record counts, the latest time per key wins, a partial tail is ignored.
import Basics
import FuzzSupport
@testable import ContentCache

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUsage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    let file = MemoryFile(bytes)
    var seen: [ObjectID: UInt32] = [:]
    let ok = ContentCache.readJournal(file.path, into: &seen)
    precondition(ok == (size >= 8 && Array(bytes.prefix(8)) == Array("gitfsUS1".utf8)), "journal accepted or refused wrongly")
    var expected: [ObjectID: UInt32] = [:]
    if ok {
        var at = 8
        while at + 24 <= size {
            let key = bytes.withUnsafeBytes { ObjectID(raw: UnsafeRawBufferPointer(rebasing: $0[at..<(at + 20)])) }
            let t = UInt32(bytes[at + 20]) | UInt32(bytes[at + 21]) << 8 | UInt32(bytes[at + 22]) << 16 | UInt32(bytes[at + 23]) << 24
            if t > expected[key, default: 0] { expected[key] = t }
            at += 24
        }
    }
    precondition(seen == expected, "journal read as \(seen.count) keys, expected \(expected.count)")
    return 0
}
