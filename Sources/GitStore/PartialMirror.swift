// Partial (blobless) mirrors: cloning, fetching and fetching missing objects through the git command.
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

extension MirrorStore {
    /// Options for every git run on a mirror: no automatic gc or maintenance (gitfs gc decides), no
    /// lazy fetches of anything the command itself might need.
    static let quietConfig = ["-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "fetch.writeCommitGraph=false"]

    /// Makes the partial mirror in the empty directory `tmp`: `git init --bare`, the mirror's remote
    /// (branches and tags only, as every gitfs mirror), marked as promisor with `filter`, one
    /// `git fetch --filter`, and HEAD pointed at the remote's default branch (`git ls-remote --symref`).
    static func gitClone(_ source: String, into tmp: String, filter: PartialFilter) throws(GitStoreError) {
        func git(_ args: [String], timeout: Duration = .seconds(60)) throws(GitStoreError) -> Data {
            do { return try GitCommand(args, timeout: timeout).run() } catch {
                throw GitStoreError(.network, "cloning \(source) failed: \(error); nothing was created — check the URL, that the remote is reachable and that it allows filters")
            }
        }
        _ = try git(["init", "-q", "--bare", tmp])
        for kv in [["remote.origin.url", source], ["remote.origin.promisor", "true"],
                   ["remote.origin.partialclonefilter", filter.spec], ["gc.auto", "0"]] {
            _ = try git(["-C", tmp, "config", kv[0], kv[1]])
        }
        if source.hasPrefix("/") || source.hasPrefix("file://") {
            // A repository on this machine: its upload-pack runs here, with filters and fetch by id allowed
            // (git does not pass `-c` settings to a local upload-pack, so they go on its command line).
            _ = try git(["-C", tmp, "config", "remote.origin.uploadpack",
                         "git -c uploadpack.allowFilter=true -c uploadpack.allowAnySHA1InWant=true upload-pack"])
        }
        for spec in ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"] {
            _ = try git(["-C", tmp, "config", "--add", "remote.origin.fetch", spec])
        }
        _ = try git(["-C", tmp] + quietConfig + ["fetch", "-q", "--no-write-fetch-head", "--recurse-submodules=no",
                                                 "--filter=\(filter.spec)", "origin"], timeout: .seconds(6 * 3600))
        let symref = String(decoding: (try? GitCommand(["-C", tmp, "ls-remote", "--symref", "origin", "HEAD"], timeout: .seconds(60)).run()) ?? Data(), as: UTF8.self)
        var defaultBranch: String?
        for line in symref.split(separator: "\n") where line.hasPrefix("ref: ") && line.hasSuffix("\tHEAD") {
            defaultBranch = String(line.dropFirst(5).dropLast(5))
        }
        let handle = try GitHandle.open(path: tmp, name: "new mirror")
        defer { handle.close() }
        setHead(handle.repo, defaultBranch)
    }

    /// Fetches a partial mirror through git (libgit2 1.5.1 knows no filters: it would fetch every new
    /// blob): `git fetch --filter=FILTER --prune --atomic`, so refs move all together only after the
    /// pack is in, or not at all.
    static func gitFetch(path: String, filter: String, url: String, name: String,
                         cancelled: (@Sendable () -> Bool)?) throws(GitStoreError) {
        do {
            _ = try GitCommand(["-C", path] + quietConfig + [
                "fetch", "-q", "--prune", "--atomic", "--no-write-fetch-head", "--recurse-submodules=no",
                "--filter=\(filter)", "origin",
            ], timeout: .seconds(6 * 3600)).run(cancelled: cancelled)
        } catch {
            throw GitStoreError(.network, "fetching \(url) for '\(name)' failed: \(error); refs unchanged — check the network and the URL, then retry")
        }
    }
}
