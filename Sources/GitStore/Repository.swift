// Repository: an open mirror and the pool of libgit2 handles its reads run on.
import Basics
import CGit2
import CPackGuard
import Foundation
import Synchronization

/// One libgit2 repository handle with its object database. Used by one thread at a time (the pool hands
/// it out exclusively), hence `@unchecked Sendable`.
struct GitHandle: @unchecked Sendable {
    let repo: OpaquePointer
    let odb: OpaquePointer

    /// `git_repository_open_bare` + `git_repository_odb`.
    static func open(path: String, name: String) throws(GitStoreError) -> GitHandle {
        LibGit2.ensureInitialized()
        var repo: OpaquePointer?
        let rc = git_repository_open_bare(&repo, path)
        guard rc == 0, let repo else {
            let msg = GitStoreError.lastGitMessage(rc)
            throw GitStoreError(rc == GIT_ENOTFOUND.rawValue ? .notFound : .corrupt,
                                "cannot open repository '\(name)' at \(path): \(msg)")
        }
        var odb: OpaquePointer?
        let rc2 = git_repository_odb(&odb, repo)
        guard rc2 == 0, let odb else {
            let msg = GitStoreError.lastGitMessage(rc2)
            git_repository_free(repo)
            throw GitStoreError(.corrupt, "cannot open the object database of '\(name)' at \(path): \(msg)")
        }
        return GitHandle(repo: repo, odb: odb)
    }

    /// `git_odb_free` + `git_repository_free`.
    func close() {
        git_odb_free(odb)
        git_repository_free(repo)
    }
}

/// An open mirror. Thread-safe: every method may be called from many threads at once. Object reads use
/// a pool of libgit2 handles — one per concurrent caller, created on demand, reused, at most `maxIdle`
/// kept when idle — so reads do not serialize behind one `git_odb` mutex. Never blocks waiting for a
/// handle. Objects written by a later fetch (even by another process) become visible: libgit2 rescans
/// packs when an object is missing, and refs are read from disk on every call. A damaged pack (truncated,
/// its index missing) is never taken for a missing object: every failed read asks `PackDamage` and then
/// throws `.corrupt` "repository 'X': pack … is damaged (…)".
public final class Repository: Sendable {
    public let name: String
    public let path: String
    private let pool: Mutex<[GitHandle]>
    private let maxIdle: Int
    let packs: PackReader?
    let packedReads = Atomic<Int>(0)
    /// The partial-clone filter of a blobless mirror (`blob:none`, `blob:limit=N`); nil for a full one.
    public let partialFilter: String?

    /// Blobs inflated by gitfs's own pack reader rather than libgit2, since open (for tests and benchmarks).
    public var blobsReadFromPacks: Int { packedReads.load(ordering: .relaxed) }

    /// Opens the bare repository at `path` (one handle now, to fail early).
    /// `ownPackReader: false` reads every object with libgit2 (the oracle in tests).
    init(name: String, path: String, maxIdle: Int = max(2, 2 * ProcessInfo.processInfo.activeProcessorCount),
         ownPackReader: Bool = true) throws(GitStoreError) {
        self.name = name
        self.path = path
        self.maxIdle = maxIdle
        self.packs = ownPackReader ? PackReader(objectsPack: path + "/objects/pack") : nil
        gitfs_pack_guard_install()
        let first = try GitHandle.open(path: path, name: name)
        partialFilter = Repository.readPartialFilter(first.repo)
        pool = Mutex([first])
    }

    deinit {
        pool.withLock { handles in
            for h in handles { h.close() }
            handles.removeAll()
        }
    }

    /// Number of idle handles kept right now (for tests and stats).
    public var idleHandles: Int { pool.withLock { $0.count } }

    func acquire() throws(GitStoreError) -> GitHandle {
        if let h = pool.withLock({ $0.popLast() }) { return h }
        return try GitHandle.open(path: path, name: name)
    }

    func release(_ h: GitHandle) {
        let kept = pool.withLock { handles -> Bool in
            guard handles.count < maxIdle else { return false }
            handles.append(h)
            return true
        }
        if !kept { h.close() }
    }

    func withHandle<R>(_ body: (GitHandle) throws(GitStoreError) -> R) throws(GitStoreError) -> R {
        let h = try acquire()
        defer { release(h) }
        return try body(h)
    }
}
