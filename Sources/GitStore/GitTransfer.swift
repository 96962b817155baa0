// Cloning and fetching mirrors (full and partial) through the git command.
import Basics
import Foundation

extension MirrorStore {
    /// Options for every git run on a mirror: no automatic gc or maintenance (gitfs gc decides), no
    /// lazy fetches of anything the command itself might need, big objects streamed, and every fetched pack
    /// kept as a pack (`fetch.unpackLimit=1`: git's default unpacks a pack of fewer than 100 objects into
    /// loose objects, which gitfs's pack reader does not read and libgit2 inflates whole).
    static let quietConfig = ["-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "fetch.writeCommitGraph=false",
                              "-c", "core.bigFileThreshold=\(bigFileThreshold)", "-c", "fetch.unpackLimit=1"]

    /// Objects above this size are streamed by git's index-pack (inflated and hashed in chunks, never held
    /// whole; its default, 512 MiB, would let one object of 500 MiB take 500 MiB); a mirror's git also
    /// leaves them undeltified.
    static let bigFileThreshold = "16m"

    /// Makes the mirror in the empty directory `tmp` with the git command (its `index-pack` streams every
    /// object, so memory stays bounded whatever the blob sizes; libgit2 1.5.1 inflates whole objects while
    /// it indexes): `git init --bare`, the mirror's remote (branches and tags only, as every gitfs mirror),
    /// with `filter` marked as promisor, one `git fetch` (`--filter` when partial), and HEAD pointed at the
    /// remote's default branch (`git ls-remote --symref`). With `showProgress` git's progress lines reach
    /// standard error.
    static func gitClone(_ source: String, into tmp: String, filter: PartialFilter?, showProgress: Bool = false) throws(GitStoreError) {
        func git(_ args: [String], timeout: Duration = .seconds(60), echo: Bool = false) throws(GitStoreError) -> Data {
            var cmd = GitCommand(args, timeout: timeout)
            cmd.echoProgress = echo
            do { return try cmd.run() } catch {
                let hint = filter == nil ? "" : " and that it allows filters"
                throw GitStoreError(.network, "cloning \(source) failed: \(error); nothing was created — check the URL, that the remote is reachable\(hint)")
            }
        }
        _ = try git(["init", "-q", "--bare", tmp])
        var settings = [["remote.origin.url", source], ["gc.auto", "0"]]
        if let filter {
            settings += [["remote.origin.promisor", "true"], ["remote.origin.partialclonefilter", filter.spec]]
        }
        if source.hasPrefix("/") || source.hasPrefix("file://") {
            // A repository on this machine: its upload-pack runs here (a child of ours), with filters and fetch
            // by id allowed and big objects streamed by its pack-objects (git does not pass `-c` settings to a
            // local upload-pack, so they go on its command line).
            settings.append(["remote.origin.uploadpack",
                             "git -c uploadpack.allowFilter=true -c uploadpack.allowAnySHA1InWant=true -c core.bigFileThreshold=\(bigFileThreshold) upload-pack"])
        }
        for kv in settings { _ = try git(["-C", tmp, "config", kv[0], kv[1]]) }
        for spec in ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"] {
            _ = try git(["-C", tmp, "config", "--add", "remote.origin.fetch", spec])
        }
        _ = try git(["-C", tmp] + quietConfig + ["fetch", showProgress ? "--progress" : "-q", "--no-write-fetch-head",
                                                 "--recurse-submodules=no"] + (filter.map { ["--filter=\($0.spec)"] } ?? []) + ["origin"],
                    timeout: .seconds(6 * 3600), echo: showProgress)
        let handle = try GitHandle.open(path: tmp, name: "new mirror")
        defer { handle.close() }
        setHead(handle.repo, remoteDefaultBranch(path: tmp, cancelled: nil))
    }

    /// The origin's default branch ("refs/heads/...") as `git ls-remote --symref origin HEAD` reports it,
    /// or nil (no answer, or a remote without a symbolic HEAD). Best effort.
    static func remoteDefaultBranch(path: String, cancelled: (@Sendable () -> Bool)?) -> String? {
        let out = (try? GitCommand(["-C", path, "ls-remote", "--symref", "origin", "HEAD"], timeout: .seconds(60)).run(cancelled: cancelled)) ?? Data()
        var branch: String?
        for line in String(decoding: out, as: UTF8.self).split(separator: "\n") where line.hasPrefix("ref: ") && line.hasSuffix("\tHEAD") {
            branch = String(line.dropFirst(5).dropLast(5))
        }
        return branch
    }

    /// Fetches a mirror through git (libgit2 1.5.1 knows no filters, and inflates whole objects while it
    /// indexes a pack): `git fetch --prune --atomic` (with `--filter=FILTER` for a partial mirror), so refs
    /// move all together only after the pack is in, or not at all. One connection to the origin (no
    /// `ls-remote`): the caller asks for the default branch only when HEAD's branch is gone.
    static func gitFetch(path: String, filter: String?, url: String, name: String,
                         cancelled: (@Sendable () -> Bool)?) throws(GitStoreError) {
        do {
            _ = try GitCommand(["-C", path] + quietConfig + [
                "fetch", "-q", "--prune", "--atomic", "--no-write-fetch-head", "--recurse-submodules=no",
            ] + (filter.map { ["--filter=\($0)"] } ?? []) + ["origin"], timeout: .seconds(6 * 3600)).run(cancelled: cancelled)
        } catch {
            throw GitStoreError(.network, "fetching \(url) for '\(name)' failed: \(error); refs unchanged — check the network and the URL, then retry")
        }
    }
}
