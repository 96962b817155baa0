// MirrorStore: the mirrors of a gitfs home, their names and paths, and opening one.
import Basics
import CGit2
import Foundation

/// Mirror management in a gitfs home: clone, fetch, list, remove, open. Safe to use from several threads
/// and processes at once: a clone builds in a private temporary directory and appears by one `rename`;
/// fetches of one mirror are single-flight across processes through `flock` on `<mirror>/gitfs.lock`.
public struct MirrorStore: Sendable {
    public let home: Home

    /// File in each mirror recording the last successful fetch (time and changed refs).
    static let fetchRecordName = "gitfs-fetch.json"
    static let lockName = "gitfs.lock"

    public init(home: Home) { self.home = home }

    // MARK: names

    /// Letters, digits, `.`, `_`, `-`; not starting with `.`; 1 to 100 characters.
    public static func validateName(_ name: String) throws(GitStoreError) {
        let ok = !name.isEmpty && name.utf8.count <= 100 && !name.hasPrefix(".")
            && name.utf8.allSatisfy { c in
                (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                    || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                    || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
            }
        guard ok else {
            throw GitStoreError(.invalidName, "invalid repository name '\(name)': use 1 to 100 letters, digits, '.', '_' or '-', not starting with '.'")
        }
    }

    /// The URL's last path component without `.git` (a trailing `/.git` uses the component before it),
    /// with characters not allowed in names replaced by `_`; "repo" when nothing is left.
    public static func defaultName(forURL url: String) -> String {
        var parts = url.split(whereSeparator: { $0 == "/" || $0 == ":" || $0 == "\\" }).map(String.init)
        while let last = parts.last, last == ".git" || last == "." || last.isEmpty { parts.removeLast() }
        var base = parts.last ?? ""
        if base.hasSuffix(".git") { base.removeLast(4) }
        var out = String(base.unicodeScalars.map { s -> Character in
            let ok = (s.isASCII && (("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)))
                || s == "." || s == "_" || s == "-"
            return ok ? Character(s) : "_"
        })
        while out.hasPrefix(".") { out.removeFirst() }
        if out.utf8.count > 100 { out = String(out.utf8.prefix(100))! }
        return out.isEmpty ? "repo" : out
    }

    /// Makes local paths absolute (URLs with a scheme and scp-like `host:path` stay as they are) and
    /// refuses a local path that does not exist.
    static func normalizeURL(_ url: String) throws(GitStoreError) -> String {
        if url.contains("://") { return url }
        if let colon = url.firstIndex(of: ":"), !url.hasPrefix("/"), !url.hasPrefix("."),
           url[..<colon].firstIndex(of: "/") == nil {
            return url // scp-like ssh: user@host:path
        }
        let abs = url.hasPrefix("/") ? url : FileManager.default.currentDirectoryPath + "/" + url
        let standardized = URL(fileURLWithPath: abs).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: standardized) else {
            throw GitStoreError(.notFound, "no repository at local path '\(url)'; give an existing path or a URL (file://, git://, https://, ssh://)")
        }
        return standardized
    }

    /// Opens a mirror for object reads. `ownPackReader: false` reads every object with libgit2 (the
    /// oracle that tests compare gitfs's own pack reader against).
    public func open(name: String, ownPackReader: Bool = true) throws(GitStoreError) -> Repository {
        let path = try existingMirror(name)
        return try Repository(name: name, path: path, ownPackReader: ownPackReader)
    }

    /// Validates the name and returns the mirror's path, or throws `.notFound`.
    func existingMirror(_ name: String) throws(GitStoreError) -> String {
        try MirrorStore.validateName(name)
        let path = home.mirrorPath(name)
        guard FileSystem.exists(path + "/HEAD") else {
            throw GitStoreError(.notFound, "no repository named '\(name)' in \(home.reposPath); see 'gitfs list' or add it with 'gitfs clone URL \(name)'")
        }
        return path
    }
}
