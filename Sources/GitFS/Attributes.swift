import Basics
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import FuseServer
import GitStore
import ReadModel

/// GETATTR, the extended attributes and STATFS of the mount layout.
extension GitFileSystem {
    func directory(mtime: Int64? = nil, ttl: Double = mutableTTL) -> NodeAttributes {
        NodeAttributes(kind: .directory, permissions: 0o555, size: 0, mtime: mtime ?? startTime, linkCount: 1, ttl: ttl)
    }

    /// A directory whose listing changes: its mtime changes with it (to the nanosecond), which is what
    /// makes the kernel drop its cached listing.
    private func changingDirectory(_ changed: timespec) -> NodeAttributes {
        var a = directory(mtime: Int64(changed.tv_sec))
        a.mtimeNanoseconds = changed.tv_nsec
        return a
    }

    /// The mtime of the repos folder: a clone or remove renames a mirror in or out, changing it.
    private func reposChanged() -> timespec {
        var st = stat()
        guard stat(resolver.store.home.reposPath, &st) == 0 else { return timespec(tv_sec: Int(startTime), tv_nsec: 0) }
        return st.st_mtim
    }

    private func symlink(_ target: [UInt8]) -> NodeAttributes {
        NodeAttributes(kind: .symlink, permissions: 0o777, size: UInt64(target.count), mtime: startTime, ttl: Self.mutableTTL)
    }

    public func attributes(of node: GitFSNode) throws(Errno) -> NodeAttributes {
        switch node {
        case .control:
            return directory()
        case .root:
            return changingDirectory(reposChanged())
        case .repository(let repo), .refDirectory(let repo, _, _), .commits(let repo):
            return changingDirectory(try refsOf(repo).changedAt)
        case .stats(let snapshot):
            let size = statsSnapshots.withLock { $0.recent[snapshot]?.count ?? 0 }
            return NodeAttributes(kind: .regularFile, permissions: 0o444, size: UInt64(size), mtime: Int64(Date().timeIntervalSince1970), ttl: 0)
        case .head(let repo):
            return symlink(try headTarget(repo))
        case .ref(let repo, let kind, let name):
            return symlink(try refTarget(repo, kind, name))
        case .object(let o):
            return try objectAttributes(o.entry, in: o.repo, mtime: try commitTime(o))
        }
    }

    /// The mtime of everything under commits/<id>/: the commit's committer time.
    func commitTime(_ o: ObjectNode) throws(Errno) -> Int64 {
        try loading(o.repo) { () throws(ResolverError) in try o.repo.view.commit(o.commit).committerTime }
    }

    /// Mode 0555 for directories and executables, 0444 for files, 0777 for symlinks; the size from the
    /// object header (never inflates a blob).
    func objectAttributes(_ entry: TreeEntry, in repo: RepoRef, mtime: Int64) throws(Errno) -> NodeAttributes {
        let ttl = Self.immutableTTL
        switch entry.kind {
        case .directory, .submodule:
            return directory(mtime: mtime, ttl: ttl)
        case .file, .executable, .symlink:
            let size = try loading(repo) { () throws(ResolverError) in try repo.view.blobSize(entry.oid) }
            let kind: NodeKind = entry.kind == .symlink ? .symlink : .regularFile
            let perm: UInt16 = switch entry.kind {
            case .executable: 0o555
            case .symlink: 0o777
            default: 0o444
            }
            return NodeAttributes(kind: kind, permissions: perm, size: UInt64(size), mtime: mtime, ttl: ttl)
        }
    }

    /// `user.git.oid` (and `user.git.commit`) on everything under commits/, `user.git.oid` (the commit)
    /// on a branch or tag; nothing elsewhere.
    public func extendedAttributes(of node: GitFSNode) throws(Errno) -> [(name: String, value: [UInt8])] {
        switch node {
        case .object(let o):
            return [("user.git.oid", Array(o.entry.oid.hex.utf8)), ("user.git.commit", Array(o.commit.hex.utf8))]
        case .ref(let repo, let kind, let name):
            guard let target = try refsOf(repo).target(of: name, tags: kind == .tag) else { throw .noEntry }
            return [("user.git.oid", Array(target.hex.utf8))]
        default:
            return []
        }
    }

    /// For statfs: the content cache's size and entries.
    public func statistics() -> (totalBytes: UInt64, files: UInt64) {
        let totals = resolver.cache.runningTotals()
        return (UInt64(max(0, totals.diskBytes)), UInt64(max(0, totals.entries)))
    }
}
