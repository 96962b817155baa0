// Repository: revisions and object reads (commits, trees, headers, blobs) through libgit2 or the pack reader.
import Basics
import CGit2
import CPackGuard

extension Repository {
    // MARK: revisions and objects

    /// The commit a revision names: a branch, tag, full or abbreviated id, `REV~N`, anything
    /// `git_revparse_single` takes; peeled to a commit (`git_object_peel`).
    public func resolve(_ rev: String) throws(GitStoreError) -> ObjectID {
        try withHandle { h throws(GitStoreError) in
            var obj: OpaquePointer?
            let rc = rev.isEmpty ? GIT_ENOTFOUND.rawValue : git_revparse_single(&obj, h.repo, rev)
            guard rc == 0, let obj else {
                if rc == GIT_EAMBIGUOUS.rawValue {
                    throw GitStoreError(.notFound, "revision '\(rev)' is ambiguous in repository '\(name)'; give more of the id or a full ref name")
                }
                if let d = damage() { throw GitStoreError(.corrupt, d) }
                throw GitStoreError(.notFound, "revision '\(rev)' not found in repository '\(name)'; see its branches and tags with 'gitfs ls' or fetch it with 'gitfs fetch \(name)'")
            }
            defer { git_object_free(obj) }
            var commit: OpaquePointer?
            guard git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) == 0, let commit else {
                if let d = damage() { throw GitStoreError(.corrupt, d) }
                throw GitStoreError(.wrongType, "revision '\(rev)' of repository '\(name)' does not name a commit")
            }
            defer { git_object_free(commit) }
            return ObjectID(git_object_id(commit))
        }
    }

    /// Reads an object (`git_odb_read`, which inflates it) that must be of type `expect`; the caller
    /// owns the result (`git_odb_object_free`).
    private func readObject(_ id: ObjectID, expect: git_object_t) throws(GitStoreError) -> OpaquePointer {
        let h = try acquire()
        defer { release(h) }
        var oid = id.gitOID
        var obj: OpaquePointer?
        let faults = gitfs_pack_guard_faults()
        let rc = git_odb_read(&obj, h.odb, &oid)
        guard rc == 0, let obj else {
            if rc == GIT_ENOTFOUND.rawValue {
                throw failure(GitStoreError(.notFound, "object \(id.hex) not found in repository '\(name)'"))
            }
            throw failure(GitStoreError(.corrupt, "cannot read object \(id.hex) of repository '\(name)': \(GitStoreError.lastGitMessage(rc))"))
        }
        // A pack read past its end meanwhile (some repository's: the guard counts them all) gave zeros,
        // which libgit2 almost surely refused; if ours is damaged, do not trust what it returned.
        if gitfs_pack_guard_faults() != faults, let d = damage() {
            git_odb_object_free(obj)
            throw GitStoreError(.corrupt, d)
        }
        let type = git_odb_object_type(obj)
        guard type == expect else {
            git_odb_object_free(obj)
            throw GitStoreError(.wrongType, "object \(id.hex) of repository '\(name)' is a \(Repository.kind(type)?.name ?? "unknown object"), not a \(Repository.kind(expect)?.name ?? "?")")
        }
        return obj
    }

    /// Reads an object and hands its bytes to `body` without a copy.
    private func withObject<R>(_ id: ObjectID, expect: git_object_t, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let obj = try readObject(id, expect: expect)
        defer { git_odb_object_free(obj) }
        return try body(UnsafeRawBufferPointer(start: git_odb_object_data(obj), count: git_odb_object_size(obj)))
    }

    private func withTypedObject<R>(_ id: ObjectID, expect: git_object_t, _ body: (UnsafeRawBufferPointer) throws(GitStoreError) -> R) throws(GitStoreError) -> R {
        do {
            return try withObject(id, expect: expect) { raw in try body(raw) }
        } catch let e as GitStoreError {
            throw e
        } catch {
            throw GitStoreError(.other, "\(error)")
        }
    }

    static func kind(_ t: git_object_t) -> ObjectKind? {
        switch t {
        case GIT_OBJECT_BLOB: return .blob
        case GIT_OBJECT_TREE: return .tree
        case GIT_OBJECT_COMMIT: return .commit
        case GIT_OBJECT_TAG: return .tag
        default: return nil
        }
    }

    /// The tree id, committer time and parents of a commit (parsed from the raw object).
    public func commit(_ id: ObjectID) throws(GitStoreError) -> CommitInfo {
        let name = self.name
        return try withTypedObject(id, expect: GIT_OBJECT_COMMIT) { raw throws(GitStoreError) in
            guard let info = CommitParser.parse(raw, id: id) else {
                throw GitStoreError(.corrupt, "commit \(id.hex) of repository '\(name)' is malformed")
            }
            return info
        }
    }

    /// The entries of a tree, in git order, names and modes exactly as stored.
    public func tree(_ id: ObjectID) throws(GitStoreError) -> [TreeEntry] {
        let name = self.name
        return try withTypedObject(id, expect: GIT_OBJECT_TREE) { raw throws(GitStoreError) in
            guard let entries = TreeParser.parse(raw) else {
                throw GitStoreError(.corrupt, "tree \(id.hex) of repository '\(name)' is malformed (it cannot be parsed as a tree: git fsck's badTree); it is refused, the rest of the repository is served")
            }
            return entries
        }
    }

    /// Type and size of an object without inflating it (`git_odb_read_header`).
    public func header(_ id: ObjectID) throws(GitStoreError) -> (kind: ObjectKind, size: Int) {
        try withHandle { h throws(GitStoreError) in
            var oid = id.gitOID
            var size = 0
            var type = GIT_OBJECT_INVALID
            let faults = gitfs_pack_guard_faults()
            let rc = git_odb_read_header(&size, &type, h.odb, &oid)
            guard rc == 0 else {
                if rc == GIT_ENOTFOUND.rawValue {
                    throw failure(GitStoreError(.notFound, "object \(id.hex) not found in repository '\(name)'"))
                }
                throw failure(GitStoreError(.corrupt, "cannot read object \(id.hex) of repository '\(name)': \(GitStoreError.lastGitMessage(rc))"))
            }
            if gitfs_pack_guard_faults() != faults, let d = damage() { throw GitStoreError(.corrupt, d) }
            guard let kind = Repository.kind(type) else {
                throw GitStoreError(.corrupt, "object \(id.hex) of repository '\(name)' has an unknown type")
            }
            return (kind, size)
        }
    }

    /// Inflates a blob once (`git_odb_read`) and hands its bytes to `body` without a copy; the buffer is
    /// valid only inside `body`. Throws `GitStoreError` (.notFound, .wrongType, .corrupt) or what body throws.
    public func withBlob<R>(_ id: ObjectID, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try blobBuffer(id).withUnsafeBytes(body)
    }

    /// A blob's inflated bytes, kept (no copy) for as long as the result lives. A blob in a pack is
    /// inflated by gitfs's own pack reader (libdeflate); a big loose one by `LooseObject` (file-backed,
    /// its SHA-1 checked); small loose ones, and any the pack reader's checks refuse, by libgit2.
    /// A pack that shrank under the reader throws `.corrupt` (libgit2 is not asked to read it).
    public func blobBuffer(_ id: ObjectID) throws(GitStoreError) -> BlobBuffer {
        if let packs {
            switch packs.blob(id) {
            case .blob(let buffer):
                packedReads.add(1, ordering: .relaxed)
                return buffer
            case .damaged(let what):
                throw GitStoreError(.corrupt, describeDamage(what))
            case .notHere:
                break
            }
        }
        // A big loose blob: inflated piece by piece into file-backed memory (libgit2 would hold it whole).
        if let loose = try bigLooseBlob(id) { return loose }
        return BlobBuffer(object: try readObject(id, expect: GIT_OBJECT_BLOB))
    }

    /// The bytes of a blob.
    public func readBlob(_ id: ObjectID) throws(GitStoreError) -> [UInt8] {
        try blobBuffer(id).withUnsafeBytes { Array($0) }
    }

    /// Whether the object exists in the mirror (`git_odb_exists`).
    public func contains(_ id: ObjectID) -> Bool {
        guard let h = try? acquire() else { return false }
        defer { release(h) }
        var oid = id.gitOID
        return git_odb_exists(h.odb, &oid) == 1
    }
}
