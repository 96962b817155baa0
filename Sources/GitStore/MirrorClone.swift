// MirrorStore: cloning a new mirror into place in one rename.
import Basics
import CGit2
import Foundation

extension MirrorStore {
    // MARK: clone

    /// Clones `url` as a bare mirror `repos/<name>.git` (all branches and tags, HEAD = the remote's
    /// default branch) into a temporary directory under `repos/`, renamed into place only on success: a
    /// failure leaves nothing behind. A local source that git and libgit2 cannot transfer (a malformed
    /// tree) has its objects copied instead (`LocalSource`, through libgit2). Refuses an invalid or existing name before creating
    /// anything; of two clones onto one name at once one wins, the other fails with `.exists`.
    /// The transfer is the git command's (`gitClone`: git's index-pack streams objects, so memory stays
    /// bounded whatever the blob sizes), libgit2 only when git is not installed. With `filter` the mirror
    /// is partial (blobless; git required): blobs come from the origin later, on first use. `progress`
    /// non-nil shows git's own progress lines on standard error (the closure is called only by libgit2).
    public func clone(url: String, name: String?, filter: PartialFilter? = nil,
                      progress: (@Sendable (TransferProgress) -> Void)?) throws(GitStoreError) -> MirrorInfo {
        LibGit2.ensureInitialized()
        let source = try MirrorStore.normalizeURL(url)
        let name = name ?? MirrorStore.defaultName(forURL: source)
        try MirrorStore.validateName(name)
        let final = home.mirrorPath(name)
        if FileSystem.exists(final) {
            throw GitStoreError(.exists, "a repository named '\(name)' already exists; pick another name or 'gitfs remove \(name)' first")
        }
        do { try FileSystem.makeDirectories(home.reposPath) } catch {
            throw GitStoreError(.io, "cannot create directory \(home.reposPath): \(error.message)")
        }
        removeStaleTemporaries()
        let tmp = home.reposPath + "/.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
        var keepTmp = false
        defer { if !keepTmp { FileSystem.removeTree(tmp) } }

        if filter != nil || GitCommand.executable != nil {
            do {
                try MirrorStore.gitClone(source, into: tmp, filter: filter, showProgress: progress != nil)
            } catch {
                // A source on this machine that git refuses to send (its pack-objects stops at one malformed
                // tree anywhere): libgit2 with its copy of the objects (`LocalSource`) still mirrors it.
                guard filter == nil, source.hasPrefix("/") || source.hasPrefix("file://") else { throw error }
                FileSystem.removeTree(tmp)
                try libgit2Clone(source, into: tmp, progress: nil)
            }
        } else {
            // No git command: libgit2, which holds each object whole while it indexes (unbounded memory).
            try libgit2Clone(source, into: tmp, progress: progress)
        }
        MirrorStore.packRefs(tmp)
        FetchRecord(seq: 0, time: Date().timeIntervalSince1970, changes: []).write(mirror: tmp)

        if rename(tmp, final) != 0 {
            let err = errno
            if err == EEXIST || err == ENOTEMPTY {
                throw GitStoreError(.exists, "a repository named '\(name)' already exists (another clone finished first); nothing else was created")
            }
            throw GitStoreError(.io, "cannot move the new mirror into \(final): \(String(cString: strerror(err)))")
        }
        keepTmp = true // renamed: nothing left to clean up
        return try info(name: name)
    }

    /// Packs the new mirror's refs into its one `packed-refs` file (`git_refdb_compress`), as `git clone`
    /// leaves them: `git fetch` into an empty repository writes a file per ref, and a mount re-reads every
    /// ref (at most every 500 ms), so 1,000 tags were 1,000 files to open each time (a cold `ls tags/` of
    /// 1,000 tags: 90 ms loose, 21 ms packed). Only on a new mirror before it is renamed into place, where
    /// nothing else reads its refs. Best effort: loose refs are as correct, only slower to read.
    static func packRefs(_ path: String) {
        guard let handle = try? GitHandle.open(path: path, name: "new mirror") else { return }
        defer { handle.close() }
        var refdb: OpaquePointer?
        guard git_repository_refdb(&refdb, handle.repo) == 0, let refdb else { return }
        _ = git_refdb_compress(refdb)
        git_refdb_free(refdb)
    }

    /// A full mirror of `source` made with libgit2 in the new directory `tmp`.
    private func libgit2Clone(_ source: String, into tmp: String, progress: (@Sendable (TransferProgress) -> Void)?) throws(GitStoreError) {
        var repo: OpaquePointer?
        var iopts = git_repository_init_options()
        git_repository_init_options_init(&iopts, UInt32(GIT_REPOSITORY_INIT_OPTIONS_VERSION))
        iopts.flags = GIT_REPOSITORY_INIT_BARE.rawValue | GIT_REPOSITORY_INIT_MKPATH.rawValue | GIT_REPOSITORY_INIT_NO_REINIT.rawValue
        let irc = git_repository_init_ext(&repo, tmp, &iopts)
        guard irc == 0, let repo else {
            throw GitStoreError(.io, "cannot create a repository in \(tmp): \(GitStoreError.lastGitMessage(irc))")
        }
        do {
            defer { git_repository_free(repo) }
            var remote: OpaquePointer?
            let rrc = MirrorStore.createMirrorRemote(&remote, repo, "origin", source)
            guard rrc == 0, let remote else {
                throw GitStoreError(.other, "cannot configure the remote \(source): \(GitStoreError.lastGitMessage(rrc))")
            }
            defer { git_remote_free(remote) }
            let defaultBranch: String?
            do {
                defaultBranch = try MirrorStore.transfer(remote, progress: progress, prune: false)
            } catch {
                // A source on this machine whose trees libgit2's local transport cannot walk (one malformed
                // tree fails it): its objects copied as they are, the transfer then sends nothing.
                guard (try? LocalSource.copyObjects(of: source, into: tmp + "/objects")) == true,
                      let second = try? MirrorStore.transfer(remote, progress: progress, prune: false) else {
                    throw GitStoreError(.network, "cloning \(source) failed: \(error.message); nothing was created — check the URL and that the remote is reachable")
                }
                defaultBranch = second
            }
            MirrorStore.setHead(repo, defaultBranch)
        }
    }

    /// `git_remote_create_with_opts` without the default refspec, then the mirror refspecs, reloaded.
    private static func createMirrorRemote(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ repo: OpaquePointer?,
                                           _ remoteName: UnsafePointer<CChar>?, _ remoteURL: UnsafePointer<CChar>?) -> Int32 {
        guard let out, let repo, let remoteName, let remoteURL else { return -1 }
        var copts = git_remote_create_options()
        git_remote_create_options_init(&copts, UInt32(GIT_REMOTE_CREATE_OPTIONS_VERSION))
        copts.repository = repo
        copts.name = remoteName
        copts.flags = GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC.rawValue
        var created: OpaquePointer?
        var rc = git_remote_create_with_opts(&created, remoteURL, &copts)
        guard rc == 0 else { return rc }
        git_remote_free(created)
        rc = git_remote_add_fetch(repo, remoteName, "+refs/heads/*:refs/heads/*")
        guard rc == 0 else { return rc }
        rc = git_remote_add_fetch(repo, remoteName, "+refs/tags/*:refs/tags/*")
        guard rc == 0 else { return rc }
        return git_remote_lookup(out, repo, remoteName)
    }

    /// Removes `.tmp-<pid>-*` directories under repos/ whose process is gone (an interrupted clone or remove).
    private func removeStaleTemporaries() {
        for entry in FileSystem.list(home.reposPath) where entry.hasPrefix(".tmp-") {
            let fields = entry.dropFirst(5).split(separator: "-", maxSplits: 1)
            guard let pidText = fields.first, let pid = pid_t(pidText) else { continue }
            if pid != getpid(), kill(pid, 0) != 0, errno == ESRCH {
                FileSystem.removeTree(home.reposPath + "/" + entry)
            }
        }
    }
}
