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

    // MARK: clone

    /// Clones `url` as a bare mirror `repos/<name>.git` (all branches and tags, HEAD = the remote's
    /// default branch) into a temporary directory under `repos/`, renamed into place only on success: a
    /// failure leaves nothing behind. A local source that libgit2 cannot transfer (a malformed tree) has
    /// its objects copied instead (`LocalSource`). Refuses an invalid or existing name before creating
    /// anything; of two clones onto one name at once one wins, the other fails with `.exists`.
    public func clone(url: String, name: String?, progress: (@Sendable (TransferProgress) -> Void)?) throws(GitStoreError) -> MirrorInfo {
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

    /// Installs the transfer-progress and credential callbacks with `box` as payload.
    private static func setCallbacks(_ cb: inout git_remote_callbacks, _ box: CallbackBox) {
        cb.payload = Unmanaged.passUnretained(box).toOpaque()
        if box.progress != nil || box.cancelled != nil {
            cb.transfer_progress = { stats, payload in
                guard let stats, let payload else { return 0 }
                let box = Unmanaged<CallbackBox>.fromOpaque(payload).takeUnretainedValue()
                if box.cancelled?() == true { return GIT_EUSER.rawValue }
                let s = stats.pointee
                box.progress?(TransferProgress(
                    totalObjects: Int(s.total_objects), indexedObjects: Int(s.indexed_objects),
                    receivedObjects: Int(s.received_objects), localObjects: Int(s.local_objects),
                    totalDeltas: Int(s.total_deltas), indexedDeltas: Int(s.indexed_deltas),
                    receivedBytes: Int(s.received_bytes)))
                return 0
            }
        }
        if box.cancelled != nil {
            cb.sideband_progress = { _, _, payload in
                guard let payload else { return 0 }
                return Unmanaged<CallbackBox>.fromOpaque(payload).takeUnretainedValue().cancelled?() == true ? GIT_EUSER.rawValue : 0
            }
        }
        // ssh: try the ssh agent once; everything else anonymous.
        cb.credentials = { out, _, username, allowed, payload in
            guard let out, let payload else { return GIT_PASSTHROUGH.rawValue }
            let box = Unmanaged<CallbackBox>.fromOpaque(payload).takeUnretainedValue()
            guard allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0, box.takeCredentialAttempt() else {
                return GIT_PASSTHROUGH.rawValue
            }
            if let username { return git_credential_ssh_key_from_agent(out, username) }
            return git_credential_ssh_key_from_agent(out, "git")
        }
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

    // MARK: fetch

    /// Fetches every branch and tag of the mirror's origin (`git_remote_fetch` with prune), returning the
    /// refs that changed, sorted. Single-flight across processes: a fetch that finds another one running
    /// waits for its lock and returns that fetch's result instead of fetching again. A failed fetch throws
    /// `.network` naming the URL and changes no ref (libgit2 moves refs only after the pack is in).
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
        do {
            defaultBranch = try MirrorStore.transfer(remote, progress: progress, cancelled: cancelled, prune: true)
        } catch {
            throw GitStoreError(.network, "fetching \(url) for '\(name)' failed: \(error.message); refs unchanged — check the network and the URL, then retry")
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

    /// Connects to the mirror's origin and disconnects (`git_remote_connect`), fetching nothing: throws
    /// `.network` when the origin does not answer. Used by `gitfs doctor --network`.
    public func checkReachable(name: String) throws(GitStoreError) {
        LibGit2.ensureInitialized()
        let path = try existingMirror(name)
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

    /// One transfer from the remote: `git_remote_connect`, `git_remote_default_branch`,
    /// `git_remote_download`, `git_remote_update_tips` (refs move only after the pack is in), and with
    /// `prune` `git_remote_prune`. Returns the remote's default branch ("refs/heads/..."), if it has one.
    static func transfer(_ remote: OpaquePointer, progress: (@Sendable (TransferProgress) -> Void)?,
                         cancelled: (@Sendable () -> Bool)? = nil, prune: Bool) throws(GitStoreError) -> String? {
        let box = CallbackBox(progress: progress, cancelled: cancelled)
        defer { withExtendedLifetime(box) {} }
        var cb = git_remote_callbacks()
        git_remote_init_callbacks(&cb, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
        setCallbacks(&cb, box)
        func fail(_ rc: Int32) -> GitStoreError { GitStoreError(.network, GitStoreError.lastGitMessage(rc)) }
        var rc = git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, nil, nil)
        guard rc == 0 else { throw fail(rc) }
        defer { git_remote_disconnect(remote) }
        var defaultBranch: String?
        var buf = git_buf()
        if git_remote_default_branch(&buf, remote) == 0, let p = buf.ptr { defaultBranch = String(cString: p) }
        git_buf_dispose(&buf)
        var opts = git_fetch_options()
        git_fetch_options_init(&opts, UInt32(GIT_FETCH_OPTIONS_VERSION))
        opts.callbacks = cb
        opts.update_fetchhead = 0
        opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE // the refspec takes every tag
        opts.prune = prune ? GIT_FETCH_PRUNE : GIT_FETCH_NO_PRUNE
        rc = git_remote_download(remote, nil, &opts)
        guard rc == 0 else { throw fail(rc) }
        rc = git_remote_update_tips(remote, &cb, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE, "gitfs fetch")
        guard rc == 0 else { throw fail(rc) }
        if prune {
            rc = git_remote_prune(remote, &cb)
            guard rc == 0 else { throw fail(rc) }
        }
        return defaultBranch
    }

    /// Points HEAD at `branch` (a full "refs/heads/..." name) when that branch exists locally
    /// (`git_reference_symbolic_create`); otherwise, when HEAD names no existing branch, at main or master
    /// if present. Best effort.
    static func setHead(_ repo: OpaquePointer, _ branch: String?) {
        func exists(_ ref: String) -> Bool {
            var r: OpaquePointer?
            guard git_reference_lookup(&r, repo, ref) == 0 else { return false }
            git_reference_free(r)
            return true
        }
        var target = branch.flatMap { $0.hasPrefix("refs/heads/") && exists($0) ? $0 : nil }
        if target == nil {
            var head: OpaquePointer?
            if git_reference_lookup(&head, repo, "HEAD") == 0, let head {
                let current = git_reference_symbolic_target(head).map { String(cString: $0) }
                git_reference_free(head)
                if let current, exists(current) { return }
            }
            target = ["refs/heads/main", "refs/heads/master"].first(where: exists)
        }
        guard let target else { return }
        var head: OpaquePointer?
        if git_reference_symbolic_create(&head, repo, "HEAD", target, 1, "gitfs: remote HEAD") == 0 {
            git_reference_free(head)
        }
    }

    // MARK: list, names, remove, open

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
        return MirrorInfo(name: name, path: path, url: url, defaultBranch: refs.defaultBranch,
                          branchCount: refs.branches.count, tagCount: refs.tags.count,
                          lastFetch: record.map { Date(timeIntervalSince1970: $0.time) },
                          sizeOnDisk: FileSystem.diskUsage(path), damage: refs.damage ?? repo.damage())
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

    /// Opens a mirror for object reads. `ownPackReader: false` reads every object with libgit2 (the
    /// oracle that tests compare gitfs's own pack reader against).
    public func open(name: String, ownPackReader: Bool = true) throws(GitStoreError) -> Repository {
        let path = try existingMirror(name)
        return try Repository(name: name, path: path, ownPackReader: ownPackReader)
    }

    /// Validates the name and returns the mirror's path, or throws `.notFound`.
    private func existingMirror(_ name: String) throws(GitStoreError) -> String {
        try MirrorStore.validateName(name)
        let path = home.mirrorPath(name)
        guard FileSystem.exists(path + "/HEAD") else {
            throw GitStoreError(.notFound, "no repository named '\(name)' in \(home.reposPath); see 'gitfs list' or add it with 'gitfs clone URL \(name)'")
        }
        return path
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

/// Payload of libgit2 remote callbacks: the progress closure and the credential attempt count.
final class CallbackBox: @unchecked Sendable {
    let progress: (@Sendable (TransferProgress) -> Void)?
    let cancelled: (@Sendable () -> Bool)?
    private var credentialAttempts = 0 // only touched on the thread running the transfer

    init(progress: (@Sendable (TransferProgress) -> Void)?, cancelled: (@Sendable () -> Bool)? = nil) {
        self.progress = progress
        self.cancelled = cancelled
    }

    func takeCredentialAttempt() -> Bool {
        credentialAttempts += 1
        return credentialAttempts <= 1
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
