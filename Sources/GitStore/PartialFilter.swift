// Partial (blobless) mirrors: the filter, and fetching missing objects by id through the git command.
import Basics
import CGit2
import Foundation

/// A partial-clone filter gitfs accepts: `blob:none` or `blob:limit=SIZE` (SIZE in bytes, or with a
/// k/m/g suffix as git takes it). A value.
public struct PartialFilter: Sendable, Hashable, CustomStringConvertible {
    /// The filter as git spells it.
    public let spec: String

    public init(_ text: String) throws(GitStoreError) {
        let t = text.lowercased()
        if t == "blob:none" { spec = t; return }
        if t.hasPrefix("blob:limit="), let n = Self.parseSize(String(t.dropFirst(11))) {
            spec = "blob:limit=\(n)"
            return
        }
        throw GitStoreError(.other, "unsupported filter '\(text)': use --filter=blob:none or --filter=blob:limit=SIZE (e.g. blob:limit=1m)")
    }

    public var description: String { spec }

    /// Bytes of a size such as 1024, 100k, 1m, 2g (powers of 1024, as git reads them).
    static func parseSize(_ s: String) -> Int? {
        guard let last = s.last else { return nil }
        let shift: Int
        var digits = Substring(s)
        switch last {
        case "k": shift = 10; digits = digits.dropLast()
        case "m": shift = 20; digits = digits.dropLast()
        case "g": shift = 30; digits = digits.dropLast()
        default: shift = 0
        }
        guard let n = Int(digits), n >= 0, n <= Int.max >> shift else { return nil }
        return n << shift
    }
}

extension Repository {
    /// The mirror's partial-clone filter (`remote.origin.partialclonefilter` with `remote.origin.promisor`),
    /// or nil for a full mirror. Read once when the repository is opened.
    static func readPartialFilter(_ repo: OpaquePointer) -> String? {
        var cfg: OpaquePointer?
        guard git_repository_config_snapshot(&cfg, repo) == 0, let cfg else { return nil }
        defer { git_config_free(cfg) }
        var promisor: Int32 = 0
        guard git_config_get_bool(&promisor, cfg, "remote.origin.promisor") == 0, promisor != 0 else { return nil }
        var value: UnsafePointer<CChar>?
        guard git_config_get_string(&value, cfg, "remote.origin.partialclonefilter") == 0, let value else { return "blob:none" }
        return String(cString: value)
    }

    /// True for a blobless (partial) mirror: blobs it lacks come from its origin.
    public var isPartial: Bool { partialFilter != nil }

    /// Fetches objects by id from the origin into the mirror the way git's promisor code does (one
    /// `git fetch` with the ids on standard input, no negotiation, no tags, no FETCH_HEAD, no refs
    /// moved); the pack git writes is marked `.promisor` and read like any other from then on. Objects
    /// already present are not asked for again by git. Throws `.network` with git's one-line reason.
    public func fetchObjects(_ ids: [ObjectID], timeout: Duration, cancelled: (@Sendable () -> Bool)? = nil) throws(GitStoreError) {
        guard !ids.isEmpty else { return }
        var cmd = GitCommand(["-C", path] + MirrorStore.quietConfig + [
            "-c", "fetch.negotiationAlgorithm=noop",
            "fetch", "-q", "origin", "--no-tags", "--no-write-fetch-head", "--recurse-submodules=no",
            "--no-show-forced-updates", "--filter=blob:none", "--stdin",
        ], timeout: timeout)
        var input = Data(capacity: ids.count * 41)
        for id in ids { input.append(contentsOf: Array((id.hex + "\n").utf8)) }
        cmd.input = input
        do { _ = try cmd.run(cancelled: cancelled) } catch {
            throw GitStoreError(.network, "fetching \(ids.count) object\(ids.count == 1 ? "" : "s") of '\(name)' from its origin failed: \(error)")
        }
    }
}
