// Repository: its refs as one snapshot, and what is wrong with a damaged mirror.
import Basics
import CGit2

extension Repository {
    // MARK: damage

    /// What is wrong with this mirror's packs now ("repository 'X': pack … is damaged (…); …"); nil when
    /// they check out. Called only when a read failed; callers log it (the mount once per damage).
    public func damage() -> String? {
        PackDamage.diagnose(packDirectory: path + "/objects/pack").map(describeDamage)
    }

    /// The one-line message for `what` is wrong with this mirror.
    func describeDamage(_ what: String) -> String {
        "repository '\(name)': \(what); re-clone it ('gitfs remove \(name)', then 'gitfs clone URL \(name)')"
    }

    /// The error for a read that failed with `fallback`: `.corrupt` naming the damage when the packs are
    /// damaged (so a missing object in a damaged mirror is EIO, not ENOENT), else `fallback`.
    func failure(_ fallback: GitStoreError) -> GitStoreError {
        damage().map { GitStoreError(.corrupt, $0) } ?? fallback
    }

    // MARK: refs

    /// Branches, tags (peeled to commits; tags of non-commits are left out) and the default branch, read
    /// fresh from disk on every call (`git_reference_iterator_new`, `git_reference_peel`), so a fetch by
    /// another process shows at once. A ref whose object cannot be read is damage, not absence: it is
    /// kept with its direct target (reads under it then fail) and `damage` says what is wrong.
    public func refs() throws(GitStoreError) -> RefSnapshot {
        try withHandle { h throws(GitStoreError) in
            var branches: [Ref] = []
            var tags: [Ref] = []
            var unreadable: [String] = []
            try Repository.forEachReference(h.repo, name: name) { ref, full in
                let isBranch = full.hasPrefix("refs/heads/")
                guard isBranch || full.hasPrefix("refs/tags/") else { return }
                var obj: OpaquePointer?
                let rc = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT)
                let id: ObjectID
                if rc == 0, let obj {
                    id = ObjectID(git_object_id(obj))
                    git_object_free(obj)
                } else if rc == GIT_ENOTFOUND.rawValue || rc == GIT_ERROR.rawValue, let direct = git_reference_target(ref) {
                    // The object (or one its tag names) is missing or unreadable; a tag of a tree or blob
                    // fails with GIT_EPEEL or GIT_EINVALIDSPEC instead and is left out.
                    id = ObjectID(direct)
                    unreadable.append("\(full) -> \(id.hex): \(GitStoreError.lastGitMessage(rc))")
                } else {
                    return
                }
                if isBranch {
                    branches.append(Ref(name: String(full.dropFirst("refs/heads/".count)), target: id))
                } else {
                    tags.append(Ref(name: String(full.dropFirst("refs/tags/".count)), target: id))
                }
            }
            branches.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            tags.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            var defaultBranch: String?
            var head: OpaquePointer?
            if git_reference_lookup(&head, h.repo, "HEAD") == 0, let head {
                if let t = git_reference_symbolic_target(head) {
                    let target = String(cString: t)
                    if target.hasPrefix("refs/heads/") {
                        let b = String(target.dropFirst("refs/heads/".count))
                        if branches.contains(where: { $0.name == b }) { defaultBranch = b }
                    }
                }
                git_reference_free(head)
            }
            var damage: String?
            if !unreadable.isEmpty {
                damage = self.damage() ?? describeDamage("refs name objects that cannot be read (\(unreadable.prefix(3).joined(separator: "; ")))")
            }
            return RefSnapshot(branches: branches, tags: tags, defaultBranch: defaultBranch, damage: damage)
        }
    }

    /// Calls `body` with every reference of `repo` and its full name (`git_reference_iterator_new`,
    /// `git_reference_next`); each reference is freed after `body` returns.
    static func forEachReference(_ repo: OpaquePointer, name: String,
                                 _ body: (OpaquePointer, String) -> Void) throws(GitStoreError) {
        var it: OpaquePointer?
        let rc = git_reference_iterator_new(&it, repo)
        guard rc == 0, let it else {
            throw GitStoreError(.corrupt, "cannot read the refs of '\(name)': \(GitStoreError.lastGitMessage(rc))")
        }
        defer { git_reference_iterator_free(it) }
        while true {
            var ref: OpaquePointer?
            let r = git_reference_next(&ref, it)
            if r == GIT_ITEROVER.rawValue { return }
            guard r == 0, let ref else {
                throw GitStoreError(.corrupt, "cannot read the refs of '\(name)': \(GitStoreError.lastGitMessage(r))")
            }
            body(ref, String(cString: git_reference_name(ref)))
            git_reference_free(ref)
        }
    }

    /// Every ref under refs/ with its direct (unpeeled) target; symbolic refs are left out.
    func rawRefs() throws(GitStoreError) -> [String: ObjectID] {
        try withHandle { h throws(GitStoreError) in try Repository.rawRefs(h.repo, name: name) }
    }

    static func rawRefs(_ repo: OpaquePointer, name: String) throws(GitStoreError) -> [String: ObjectID] {
        var out: [String: ObjectID] = [:]
        try forEachReference(repo, name: name) { ref, full in
            if let t = git_reference_target(ref) { out[full] = ObjectID(t) }
        }
        return out
    }
}
