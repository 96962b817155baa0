// MirrorStore: fetching a mirror single-flight across processes, and the record of the last fetch.
import Basics
import CGit2
import Foundation

extension MirrorStore {
    // MARK: fetch

    /// Fetches every branch and tag of the mirror's origin (`git fetch --prune --atomic`; libgit2's fetch
    /// with prune when git is not installed), returning the
    /// refs that changed, sorted. Single-flight across processes: a fetch that finds another one running
    /// waits for its lock and returns that fetch's result instead of fetching again. A failed fetch throws
    /// `.network` naming the URL and changes no ref (refs move only after the pack is in).
    public func fetch(name: String) throws(GitStoreError) -> [RefChange] {
        try fetch(name: name, progress: nil)
    }

    /// `fetch(name:)` with transfer progress; `cancelled`, polled during the transfer, ends it early
    /// (throwing `.network`, refs unchanged) once it returns true — an unmount does not wait for a slow remote.
    public func fetch(name: String, progress: (@Sendable (TransferProgress) -> Void)?,
                      cancelled: (@Sendable () -> Bool)? = nil) throws(GitStoreError) -> [RefChange] {
        LibGit2.ensureInitialized()
        let path = try existingMirror(name)
        let before = FetchRecord.read(mirror: path)?.seq
        let lock = try FileLock(path: path + "/" + MirrorStore.lockName)
        defer { lock.unlock() }
        if !lock.tryLock() {
            lock.lock()
            if let record = FetchRecord.read(mirror: path), record.seq != before {
                return record.changes // the fetch we waited for
            }
        }
        let handle = try GitHandle.open(path: path, name: name)
        defer { handle.close() }
        let old = try Repository.rawRefs(handle.repo, name: name)

        var remote: OpaquePointer?
        guard git_remote_lookup(&remote, handle.repo, "origin") == 0, let remote else {
            throw GitStoreError(.corrupt, "repository '\(name)' has no remote 'origin': \(GitStoreError.lastGitMessage(-1))")
        }
        defer { git_remote_free(remote) }
        let url = git_remote_url(remote).map { String(cString: $0) } ?? "?"
        let defaultBranch: String?
        let filter = Repository.readPartialFilter(handle.repo)
        if filter != nil || GitCommand.executable != nil {
            // git: its index-pack streams objects (bounded memory), and it keeps a blobless mirror's filter.
            try MirrorStore.gitFetch(path: path, filter: filter, url: url, name: name, cancelled: cancelled)
            defaultBranch = MirrorStore.headBranchExists(handle.repo) ? nil : MirrorStore.remoteDefaultBranch(path: path, cancelled: cancelled)
        } else {
            do {
                defaultBranch = try MirrorStore.transfer(remote, progress: progress, cancelled: cancelled, prune: true)
            } catch {
                throw GitStoreError(.network, "fetching \(url) for '\(name)' failed: \(error.message); refs unchanged — check the network and the URL, then retry")
            }
        }
        MirrorStore.setHead(handle.repo, defaultBranch)

        let new = try Repository.rawRefs(handle.repo, name: name)
        var changes: [RefChange] = []
        for ref in Set(old.keys).union(new.keys) {
            let o = old[ref], n = new[ref]
            if o != n { changes.append(RefChange(ref: ref, old: o, new: n)) }
        }
        changes.sort { $0.ref.utf8.lexicographicallyPrecedes($1.ref.utf8) }
        FetchRecord(seq: (before ?? 0) &+ 1, time: Date().timeIntervalSince1970, changes: changes).write(mirror: path)
        return changes
    }

    /// True when HEAD names a branch the mirror has.
    static func headBranchExists(_ repo: OpaquePointer) -> Bool {
        var head: OpaquePointer?
        guard git_reference_lookup(&head, repo, "HEAD") == 0, let head else { return false }
        defer { git_reference_free(head) }
        guard let target = git_reference_symbolic_target(head) else { return false }
        var branch: OpaquePointer?
        guard git_reference_lookup(&branch, repo, target) == 0 else { return false }
        git_reference_free(branch)
        return true
    }

    /// Asks the mirror's origin for its HEAD, fetching nothing, through the same transport a fetch uses:
    /// `git ls-remote origin HEAD` (30 s time-out), or `git_remote_connect` where git is not installed.
    /// Throws `.network` when the origin does not answer. Used by `gitfs doctor --network`.
    public func checkReachable(name: String) throws(GitStoreError) {
        let path = try existingMirror(name)
        if GitCommand.executable != nil {
            do { _ = try GitCommand(["-C", path, "ls-remote", "origin", "HEAD"], timeout: .seconds(30)).run() } catch {
                throw GitStoreError(.network, error.description)
            }
            return
        }
        LibGit2.ensureInitialized()
        let handle = try GitHandle.open(path: path, name: name)
        defer { handle.close() }
        var remote: OpaquePointer?
        guard git_remote_lookup(&remote, handle.repo, "origin") == 0, let remote else {
            throw GitStoreError(.corrupt, "repository '\(name)' has no remote 'origin'")
        }
        defer { git_remote_free(remote) }
        let box = CallbackBox(progress: nil)
        var cb = git_remote_callbacks()
        git_remote_init_callbacks(&cb, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
        MirrorStore.setCallbacks(&cb, box)
        let rc = withExtendedLifetime(box) { git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, nil, nil) }
        guard rc == 0 else { throw GitStoreError(.network, GitStoreError.lastGitMessage(rc)) }
        git_remote_disconnect(remote)
    }
}

/// The record of the last successful fetch kept in the mirror: a sequence number, when, and what changed.
struct FetchRecord: Codable {
    var seq: UInt64
    var time: Double
    var changes: [RefChange]

    static func read(mirror: String) -> FetchRecord? {
        guard let data = FileManager.default.contents(atPath: mirror + "/" + MirrorStore.fetchRecordName) else { return nil }
        return try? JSONDecoder().decode(FetchRecord.self, from: data)
    }

    /// Written to a temporary file and renamed over the old record: readers see one or the other.
    func write(mirror: String) {
        guard let data = try? JSONEncoder().encode(self) else { return }
        let target = mirror + "/" + MirrorStore.fetchRecordName
        let tmp = target + ".tmp-\(getpid())"
        if FileManager.default.createFile(atPath: tmp, contents: data) {
            if rename(tmp, target) != 0 { unlink(tmp) }
        }
    }
}
