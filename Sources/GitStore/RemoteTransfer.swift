// MirrorStore: one libgit2 transfer from a remote, its callbacks, and pointing HEAD afterwards.
import Basics
import CGit2

extension MirrorStore {
    /// Installs the transfer-progress and credential callbacks with `box` as payload.
    static func setCallbacks(_ cb: inout git_remote_callbacks, _ box: CallbackBox) {
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
