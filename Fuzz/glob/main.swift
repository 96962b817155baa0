// libFuzzer target: the git-style pathspec globs of `gitfs prefetch` (Resolver/Glob.swift): parsing,
// wildmatch on raw path bytes, and the subtree pruning prefetch relies on. Input: a part (the
// pattern), then the path. Whenever a path matches, no directory above it may be pruned.
import FuzzSupport
import Resolver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGlob(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let patternBytes = input.part()
    let path = input.rest()
    guard let pattern = try? GlobPattern(String(decoding: patternBytes, as: UTF8.self)) else {
        precondition(patternBytes.isEmpty, "a non-empty pattern was refused")
        return 0
    }
    let filter = PathFilter([pattern])
    let matched = pattern.matches(path)
    precondition(filter.matches(path) == matched, "PathFilter and its one pattern disagree")
    if matched {
        for (i, c) in path.enumerated() where c == UInt8(ascii: "/") {
            precondition(pattern.mayMatch(below: Array(path[..<i])),
                         "'\(pattern)' matches a path below a directory it prunes")
        }
        precondition(pattern.mayMatch(below: []), "the root was pruned")
    }
    return 0
}
