// libFuzzer target: the git objects gitfs parses itself (Repository.swift): raw trees (TreeParser) and
// commit headers (CommitParser). Tags are peeled by libgit2, not parsed here. Input: one raw object,
// given to both parsers.
import FuzzSupport
@testable import GitStore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzObjects(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let raw = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
    if let entries = TreeParser.parse(raw) {
        // Each entry took "<mode> <name>\0" plus 20 id bytes; names are never empty and hold no NUL.
        var used = 0
        for e in entries {
            precondition(!e.name.isEmpty && !e.name.contains(0), "tree entry with an empty or NUL name")
            used += String(e.mode, radix: 8).utf8.count + 1 + e.name.count + 1 + 20
        }
        precondition(used <= size, "tree parser made entries from more bytes than it was given")
    }
    if let commit = CommitParser.parse(raw, id: .zero) {
        // A parsed commit names its tree in a "tree <40 hex>" header line.
        precondition(raw.starts(with: Array("tree ".utf8)) || contains(raw, Array("\ntree ".utf8)),
                     "commit parsed without a tree line")
        _ = commit.parents.count
    }
    return 0
}

private func contains(_ hay: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
    guard hay.count >= needle.count else { return false }
    for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
        if hay[i..<(i + needle.count)].elementsEqual(needle) { return true }
    }
    return false
}
