// MirrorStore: listing mirrors, what one shows (info), and removing one.
import Basics
import CGit2
import Foundation

extension MirrorStore {
    // MARK: list, names, remove

    /// Names of the valid mirrors present now (directories `repos/<name>.git` with a valid name and a
    /// HEAD), sorted.
    public func names() -> [String] {
        FileSystem.list(home.reposPath).compactMap { entry -> String? in
            guard entry.hasSuffix(".git") else { return nil }
            let name = String(entry.dropLast(4))
            guard (try? MirrorStore.validateName(name)) != nil,
                  FileSystem.exists(home.reposPath + "/" + entry + "/HEAD") else { return nil }
            return name
        }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Every mirror with its URL, default branch, ref counts, last fetch and size on disk. Mirrors that
    /// cannot be read are left out.
    public func list() -> [MirrorInfo] {
        names().compactMap { try? info(name: $0) }
    }

    /// What `list` shows of one mirror.
    public func info(name: String) throws(GitStoreError) -> MirrorInfo {
        let path = try existingMirror(name)
        let repo = try Repository(name: name, path: path, maxIdle: 1)
        let refs = try repo.refs()
        let url = try repo.originURL()
        let record = FetchRecord.read(mirror: path)
        var info = MirrorInfo(name: name, path: path, url: url, defaultBranch: refs.defaultBranch,
                              branchCount: refs.branches.count, tagCount: refs.tags.count,
                              lastFetch: record.map { Date(timeIntervalSince1970: $0.time) },
                              sizeOnDisk: FileSystem.diskUsage(path), damage: refs.damage ?? repo.damage())
        if let filter = repo.partialFilter {
            info.filter = filter
            info.fetchedBlobs = FetchedPack.scan(mirror: path).reduce(0) { $0 + $1.objectCount }
        }
        return info
    }

    /// Deletes a mirror: waits for a running fetch of it, renames it out of sight in one step, then
    /// deletes the files. The content cache is not touched.
    public func remove(name: String) throws(GitStoreError) {
        let path = try existingMirror(name)
        let lock = try FileLock(path: path + "/" + MirrorStore.lockName)
        lock.lock()
        defer { lock.unlock() }
        let trash = home.reposPath + "/.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-removing-\(name)"
        guard rename(path, trash) == 0 else {
            let err = errno
            if err == ENOENT { throw GitStoreError(.notFound, "no repository named '\(name)' (removed meanwhile)") }
            throw GitStoreError(.io, "cannot remove \(path): \(String(cString: strerror(err)))")
        }
        FileSystem.removeTree(trash)
    }
}

extension Repository {
    /// The URL of the mirror's remote "origin" (`git_remote_lookup`, `git_remote_url`); "" when none.
    func originURL() throws(GitStoreError) -> String {
        let h = try GitHandle.open(path: path, name: name)
        defer { h.close() }
        var remote: OpaquePointer?
        guard git_remote_lookup(&remote, h.repo, "origin") == 0, let remote else { return "" }
        defer { git_remote_free(remote) }
        return git_remote_url(remote).map { String(cString: $0) } ?? ""
    }
}
