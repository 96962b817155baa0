/// One path pattern with git's `:(glob)` pathspec rules, matched against full paths from the root of
/// the tree (never against a basename alone):
/// - `*` matches any run of characters except `/`; `?` one character except `/`;
/// - `**/` at the start or `/**/` inside matches any number of directories (including none), `/**` at
///   the end everything below; `**` elsewhere acts like `*`, except right after the leading literal
///   part, where git (which matches that part separately) lets it cross `/` too (`a**` matches `a/b`);
/// - `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]`, `[[:alpha:]]` classes (never matching `/`); `\x` quotes x;
/// - a pattern also matches everything below it when it names a directory literally (`src` or `src/`
///   matches `src/main.c`), as git's pathspecs do.
/// The matcher is a port of git's `wildmatch()` with `WM_PATHNAME` on raw path bytes. A value;
/// thread-safe.
public struct GlobPattern: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as given.
    public let pattern: String
    let bytes: [UInt8]
    /// Length of the leading part without glob special characters (`*`, `?`, `[`, `\`).
    let literalPrefixLength: Int

    /// Parses a pattern; throws for an empty one.
    public init(_ pattern: String) throws(GlobError) {
        guard !pattern.isEmpty else { throw GlobError(pattern: pattern, reason: "an empty pattern matches nothing; leave it out to prefetch the whole tree") }
        self.pattern = pattern
        self.bytes = Array(pattern.utf8)
        self.literalPrefixLength = bytes.firstIndex(where: GlobPattern.isSpecial) ?? bytes.count
    }

    public var description: String { pattern }

    static func isSpecial(_ c: UInt8) -> Bool {
        c == UInt8(ascii: "*") || c == UInt8(ascii: "?") || c == UInt8(ascii: "[") || c == UInt8(ascii: "\\")
    }

    /// Whether the file at `path` ("dir/file", no leading slash) matches, like git's `match_pathspec_item`
    /// for `:(glob)` pathspecs: the literal pattern equals the path or names one of its directories, or
    /// the glob matches the whole path.
    public func matches(_ path: [UInt8]) -> Bool {
        let m = bytes.count
        if m <= path.count, path.starts(with: bytes) {
            if m == path.count { return true }
            if bytes[m - 1] == UInt8(ascii: "/") || path[m] == UInt8(ascii: "/") { return true }
        }
        guard literalPrefixLength < m else { return false }
        // Like git's git_fnmatch: the literal prefix is compared first and wildmatch sees only the rest,
        // so "a**" is "a" + "**" where "**" starts the pattern (and matches across '/').
        let l = literalPrefixLength
        guard path.count >= l, path.starts(with: bytes.prefix(l)) else { return false }
        return bytes.withUnsafeBufferPointer { p in
            path.withUnsafeBufferPointer { t in
                Wildmatch.match(UnsafeBufferPointer(rebasing: p[l...]), UnsafeBufferPointer(rebasing: t[l...])) == .match
            }
        }
    }

    /// `matches` for a String path.
    public func matches(_ path: String) -> Bool { matches(Array(path.utf8)) }

    /// False only when no file below `directory` ("a/b", "" for the root) can match, judged by the
    /// pattern's literal prefix; used to skip subtrees without reading them.
    public func mayMatch(below directory: [UInt8]) -> Bool {
        if directory.isEmpty { return true }
        var dir = directory
        dir.append(UInt8(ascii: "/"))
        // Every path below starts with dir; a match needs the pattern's literal prefix as its prefix
        // (and a literal directory match needs the whole pattern as a prefix of the path).
        let n = min(dir.count, literalPrefixLength)
        if !dir.prefix(n).elementsEqual(bytes.prefix(n)) {
            // The literal pattern may still name this directory itself ("src" for "src/"): covered
            // because "src" is then a prefix of "src/".
            return false
        }
        return true
    }
}

/// A pattern that cannot be used. One line saying what to do.
public struct GlobError: Error, CustomStringConvertible, Sendable, Equatable {
    public let pattern: String
    public let reason: String
    public var description: String { "bad pattern '\(pattern)': \(reason)" }
}

/// Any of several patterns; no pattern matches every path. A value; thread-safe.
public struct PathFilter: Sendable {
    public let patterns: [GlobPattern]

    public init(_ patterns: [GlobPattern]) { self.patterns = patterns }

    /// Parses each pattern (see `GlobPattern`).
    public init(patterns: [String]) throws(GlobError) {
        var parsed: [GlobPattern] = []
        for p in patterns { parsed.append(try GlobPattern(p)) }
        self.patterns = parsed
    }

    /// True when there is no pattern.
    public var matchesEverything: Bool { patterns.isEmpty }

    /// Whether the file at `path` matches any pattern (or there are none).
    public func matches(_ path: [UInt8]) -> Bool {
        patterns.isEmpty || patterns.contains { $0.matches(path) }
    }

    /// Whether any file below `directory` may match (false means the subtree can be skipped).
    public func mayMatch(below directory: [UInt8]) -> Bool {
        patterns.isEmpty || patterns.contains { $0.mayMatch(below: directory) }
    }
}

/// git's `wildmatch.c` (`dowild`) with `WM_PATHNAME`, on byte buffers. The text ends at its count; a NUL
/// inside is treated as an ordinary byte that no pattern byte except classes/`?`/`*` matches.
enum Wildmatch {
    enum Result { case match, noMatch, abortAll, abortToStarStar }

    static func match(_ p: UnsafeBufferPointer<UInt8>, _ t: UnsafeBufferPointer<UInt8>) -> Result {
        var memo: [Int: Result] = [:] // allocates only when a star recurses
        return dowildOnce(p, 0, t, 0, &memo)
    }

    /// `dowild` is a pure function of where the pattern and the text start, so within one match each
    /// start pair is worked out once and remembered: without that, runs of `**/` backtrack exponentially
    /// (git's own wildmatch takes seconds for `**/` twelve times against a path 20 directories deep).
    private static func dowild(_ pat: UnsafeBufferPointer<UInt8>, _ pStart: Int,
                               _ text: UnsafeBufferPointer<UInt8>, _ tStart: Int, _ memo: inout [Int: Result]) -> Result {
        let key = pStart &* (text.count &+ 1) &+ tStart
        if let known = memo[key] { return known }
        let r = dowildOnce(pat, pStart, text, tStart, &memo)
        memo[key] = r
        return r
    }

    private static let slash = UInt8(ascii: "/")

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    private static func dowildOnce(_ pat: UnsafeBufferPointer<UInt8>, _ pStart: Int,
                                   _ text: UnsafeBufferPointer<UInt8>, _ tStart: Int, _ memo: inout [Int: Result]) -> Result {
        var p = pStart
        var ti = tStart
        let pn = pat.count
        let tn = text.count
        @inline(__always) func pc(_ i: Int) -> UInt8 { i < pn ? pat[i] : 0 }
        @inline(__always) func tc(_ i: Int) -> UInt8 { i < tn ? text[i] : 0 }

        while p < pn {
            var pCh = pat[p]
            let tCh = tc(ti)
            if ti >= tn && pCh != UInt8(ascii: "*") { return .abortAll }
            switch pCh {
            case UInt8(ascii: "?"):
                if tCh == slash { return .noMatch }
            case UInt8(ascii: "*"):
                var matchSlash: Bool
                p += 1
                if pc(p) == UInt8(ascii: "*") {
                    let prevP = p - 2
                    while pc(p + 1) == UInt8(ascii: "*") { p += 1 }
                    p += 1
                    // p is now past the run of stars
                    if (prevP < pStart || pat[prevP] == slash) &&
                        (p >= pn || pat[p] == slash || (pat[p] == UInt8(ascii: "\\") && pc(p + 1) == slash)) {
                        if p < pn && pat[p] == slash && dowild(pat, p + 1, text, ti, &memo) == .match {
                            return .match
                        }
                        matchSlash = true
                    } else {
                        matchSlash = false
                    }
                } else {
                    matchSlash = false
                }
                if p >= pn {
                    // Trailing "**" matches everything; trailing "*" only when no '/' follows.
                    if !matchSlash {
                        var k = ti
                        while k < tn { if text[k] == slash { return .noMatch }; k += 1 }
                    }
                    return .match
                } else if !matchSlash && pat[p] == slash {
                    // One star followed by a slash matches up to the next directory separator.
                    var k = ti
                    while k < tn && text[k] != slash { k += 1 }
                    if k >= tn { return .noMatch }
                    ti = k
                    // The slash itself is consumed by the loop step below.
                    ti += 1
                    p += 1
                    continue
                }
                var t = ti
                while true {
                    if t >= tn { break }
                    if !isGlobSpecial(pat[p]) {
                        let want = pat[p]
                        while t < tn && (matchSlash || text[t] != slash) {
                            if text[t] == want { break }
                            t += 1
                        }
                        if t >= tn || text[t] != want { return .noMatch }
                    }
                    let matched = dowild(pat, p, text, t, &memo)
                    if matched != .noMatch {
                        if !matchSlash || matched != .abortToStarStar { return matched }
                    } else if !matchSlash && text[t] == slash {
                        return .abortToStarStar
                    }
                    t += 1
                }
                return .abortAll
            case UInt8(ascii: "["):
                p += 1
                pCh = pc(p)
                let negated = pCh == UInt8(ascii: "!") || pCh == UInt8(ascii: "^")
                if negated { p += 1; pCh = pc(p) }
                var prevCh: UInt8 = 0
                var matched = false
                repeat {
                    if p >= pn { return .abortAll }
                    if pCh == UInt8(ascii: "\\") {
                        p += 1
                        if p >= pn { return .abortAll }
                        pCh = pat[p]
                        if tCh == pCh { matched = true }
                    } else if pCh == UInt8(ascii: "-") && prevCh != 0 && p + 1 < pn && pat[p + 1] != UInt8(ascii: "]") {
                        p += 1
                        pCh = pat[p]
                        if pCh == UInt8(ascii: "\\") {
                            p += 1
                            if p >= pn { return .abortAll }
                            pCh = pat[p]
                        }
                        if tCh <= pCh && tCh >= prevCh { matched = true }
                        pCh = 0 // so that prevCh becomes 0
                    } else if pCh == UInt8(ascii: "[") && pc(p + 1) == UInt8(ascii: ":") {
                        // [:class:]
                        let start = p + 2
                        var end = start
                        while end < pn && pat[end] != UInt8(ascii: "]") { end += 1 }
                        if end >= pn { return .abortAll }
                        let len = end - start - 1
                        if len < 0 || pat[end - 1] != UInt8(ascii: ":") {
                            // Not a class: a literal '['.
                            if tCh == UInt8(ascii: "[") { matched = true }
                        } else {
                            let name = Array(pat[start..<(start + len)])
                            guard let cls = CharClass(name) else { return .abortAll }
                            if cls.contains(tCh) { matched = true }
                            p = end
                            pCh = 0 // so that prevCh becomes 0
                        }
                    } else if tCh == pCh {
                        matched = true
                    }
                    prevCh = pCh
                    p += 1
                    pCh = pc(p)
                } while p < pn && pCh != UInt8(ascii: "]")
                if p >= pn { return .abortAll }
                if matched == negated || tCh == slash { return .noMatch }
            case UInt8(ascii: "\\"):
                p += 1
                pCh = pc(p)
                if p >= pn || tCh != pCh { return .noMatch }
            default:
                if tCh != pCh { return .noMatch }
            }
            p += 1
            ti += 1
        }
        return ti < tn ? .noMatch : .match
    }

    private static func isGlobSpecial(_ c: UInt8) -> Bool {
        c == UInt8(ascii: "*") || c == UInt8(ascii: "?") || c == UInt8(ascii: "[") || c == UInt8(ascii: "\\")
    }

    /// The POSIX classes wildmatch knows (ASCII only, as git's sane-ctype).
    enum CharClass {
        case alnum, alpha, blank, cntrl, digit, graph, lower, print, punct, space, upper, xdigit

        init?(_ name: [UInt8]) {
            switch String(decoding: name, as: UTF8.self) {
            case "alnum": self = .alnum
            case "alpha": self = .alpha
            case "blank": self = .blank
            case "cntrl": self = .cntrl
            case "digit": self = .digit
            case "graph": self = .graph
            case "lower": self = .lower
            case "print": self = .print
            case "punct": self = .punct
            case "space": self = .space
            case "upper": self = .upper
            case "xdigit": self = .xdigit
            default: return nil
            }
        }

        func contains(_ c: UInt8) -> Bool {
            let digit = c >= 0x30 && c <= 0x39
            let upper = c >= 0x41 && c <= 0x5A
            let lower = c >= 0x61 && c <= 0x7A
            switch self {
            case .alnum: return digit || upper || lower
            case .alpha: return upper || lower
            case .blank: return c == 0x20 || c == 0x09
            case .cntrl: return c < 0x20 || c == 0x7F
            case .digit: return digit
            case .graph: return c > 0x20 && c < 0x7F
            case .lower: return lower
            case .print: return c >= 0x20 && c < 0x7F
            case .punct: return c > 0x20 && c < 0x7F && !(digit || upper || lower)
            case .space: return c == 0x20 || (c >= 0x09 && c <= 0x0D)
            case .upper: return upper
            case .xdigit: return digit || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
            }
        }
    }
}
