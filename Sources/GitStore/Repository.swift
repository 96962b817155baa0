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
    private let packs: PackReader?
    private let packedReads = Atomic<Int>(0)

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

    private func acquire() throws(GitStoreError) -> GitHandle {
        if let h = pool.withLock({ $0.popLast() }) { return h }
        return try GitHandle.open(path: path, name: name)
    }

    private func release(_ h: GitHandle) {
        let kept = pool.withLock { handles -> Bool in
            guard handles.count < maxIdle else { return false }
            handles.append(h)
            return true
        }
        if !kept { h.close() }
    }

    private func withHandle<R>(_ body: (GitHandle) throws(GitStoreError) -> R) throws(GitStoreError) -> R {
        let h = try acquire()
        defer { release(h) }
        return try body(h)
    }

    // MARK: damage

    /// What is wrong with this mirror's packs now ("repository 'X': pack … is damaged (…); …"); nil when
    /// they check out. Called only when a read failed; callers log it (the mount once per damage).
    public func damage() -> String? {
        PackDamage.diagnose(packDirectory: path + "/objects/pack").map(describeDamage)
    }

    /// The one-line message for `what` is wrong with this mirror.
    private func describeDamage(_ what: String) -> String {
        "repository '\(name)': \(what); re-clone it ('gitfs remove \(name)', then 'gitfs clone URL \(name)')"
    }

    /// The error for a read that failed with `fallback`: `.corrupt` naming the damage when the packs are
    /// damaged (so a missing object in a damaged mirror is EIO, not ENOENT), else `fallback`.
    private func failure(_ fallback: GitStoreError) -> GitStoreError {
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
    /// inflated by gitfs's own pack reader (libdeflate); loose ones, and any its checks refuse, by libgit2.
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
        return BlobBuffer(object: try readObject(id, expect: GIT_OBJECT_BLOB))
    }

    /// The bytes of a blob.
    public func readBlob(_ id: ObjectID) throws(GitStoreError) -> [UInt8] {
        try blobBuffer(id).withUnsafeBytes { Array($0) }
    }

    /// The tree as gitfs shows it: names git would not check out set aside (`TreeListing`).
    public func listing(_ id: ObjectID) throws(GitStoreError) -> TreeListing {
        TreeListing(try tree(id))
    }

    /// The entry at `path` ("a/b/c"; empty components ignored) in the tree of `commit`, walked over shown
    /// names only (`TreeWalk`, as the mount does); nil when absent or when a component on the way is not
    /// a directory. "" gives the root tree as an entry with mode 0o040000 and an empty name.
    public func entry(commit: ObjectID, path: String) throws(GitStoreError) -> TreeEntry? {
        let root = try self.commit(commit).tree
        let walked = try TreeWalk.walk(root: root, path: path) { id throws(GitStoreError) in try self.listing(id) }
        guard case .found(let e) = walked else { return nil }
        return e
    }

    /// Whether the object exists in the mirror (`git_odb_exists`).
    public func contains(_ id: ObjectID) -> Bool {
        guard let h = try? acquire() else { return false }
        defer { release(h) }
        var oid = id.gitOID
        return git_odb_exists(h.odb, &oid) == 1
    }
}

/// Parses raw tree objects: repeated "<octal mode> <name>\0<20-byte id>".
enum TreeParser {
    static func parse(_ raw: UnsafeRawBufferPointer) -> [TreeEntry]? {
        var out: [TreeEntry] = []
        var i = 0
        let n = raw.count
        while i < n {
            var mode: UInt32 = 0
            var digits = 0
            while i < n, raw[i] != UInt8(ascii: " ") {
                let d = raw[i] &- UInt8(ascii: "0")
                guard d < 8, digits < 7 else { return nil }
                mode = mode << 3 | UInt32(d)
                digits += 1
                i += 1
            }
            guard i < n, digits > 0 else { return nil }
            i += 1
            let nameStart = i
            while i < n, raw[i] != 0 { i += 1 }
            guard i < n, i > nameStart else { return nil }
            let name = Array(raw[nameStart..<i])
            i += 1
            guard i + 20 <= n else { return nil }
            let oid = ObjectID(raw: UnsafeRawBufferPointer(rebasing: raw[i..<(i + 20)]))
            i += 20
            out.append(TreeEntry(name: name, mode: mode, oid: oid))
        }
        return out
    }
}

/// Parses the header of raw commit objects: tree, parents, committer time.
enum CommitParser {
    static func parse(_ raw: UnsafeRawBufferPointer, id: ObjectID) -> CommitInfo? {
        var tree: ObjectID?
        var parents: [ObjectID] = []
        var time: Int64?
        var i = 0
        let n = raw.count
        while i < n {
            var end = i
            while end < n, raw[end] != UInt8(ascii: "\n") { end += 1 }
            if end == i { break } // blank line: end of header
            let line = UnsafeRawBufferPointer(rebasing: raw[i..<end])
            if line.starts(with: "tree ".utf8), line.count == 45 {
                guard let id = ObjectID(hexUTF8: UnsafeRawBufferPointer(rebasing: line[5...])) else { return nil }
                tree = id
            } else if line.starts(with: "parent ".utf8), line.count == 47 {
                guard let id = ObjectID(hexUTF8: UnsafeRawBufferPointer(rebasing: line[7...])) else { return nil }
                parents.append(id)
            } else if line.starts(with: "committer ".utf8) {
                // "committer Name <email> 1234567890 +0000": the number after the last '>'.
                if let gt = line.lastIndex(of: UInt8(ascii: ">")) {
                    var j = gt + 1
                    while j < line.count, line[j] == UInt8(ascii: " ") { j += 1 }
                    var negative = false
                    if j < line.count, line[j] == UInt8(ascii: "-") { negative = true; j += 1 }
                    var v: Int64 = 0
                    var any = false
                    while j < line.count, line[j] >= UInt8(ascii: "0"), line[j] <= UInt8(ascii: "9") {
                        v = v &* 10 &+ Int64(line[j] - UInt8(ascii: "0"))
                        any = true
                        j += 1
                    }
                    if any { time = negative ? -v : v }
                }
            }
            i = end + 1
        }
        guard let tree else { return nil }
        return CommitInfo(id: id, tree: tree, committerTime: time ?? 0, parents: parents)
    }
}

/// The inflated bytes of one blob, in libgit2's buffer (`git_odb_read`) or in a buffer the pack reader
/// filled (`allocate`: `malloc`, or `mmap` for big ones); freed exactly once (`git_odb_object_free`,
/// `free` or `munmap`) when the last reference goes. Immutable; thread-safe.
public final class BlobBuffer: @unchecked Sendable {
    private let object: OpaquePointer?
    private let base: UnsafeRawPointer?
    /// Size in bytes.
    public let count: Int
    /// True when the reader already checked these bytes against the object id: gitfs's pack reader
    /// matched the entry's CRC-32 from the pack index (which `git index-pack` wrote after hashing the
    /// object) and the stream's Adler-32. The content cache may then store them without hashing again.
    /// False for libgit2 reads, which gitfs runs with hash verification off.
    public let isVerified: Bool

    init(object: OpaquePointer) {
        self.object = object
        self.base = git_odb_object_data(object)
        self.count = git_odb_object_size(object)
        self.isVerified = false
    }

    /// Takes ownership of `bytes`, `count` bytes long, from `allocate(count)`.
    init(owning bytes: UnsafeMutableRawPointer, count: Int, verified: Bool) {
        self.object = nil
        self.base = UnsafeRawPointer(bytes)
        self.count = count
        self.isVerified = verified
    }

    /// Buffers of at least this size are mapped on their own (`mmap`), so their memory goes back to the
    /// system when they are freed. Transparent huge pages were measured and left out: on this VM they
    /// made single big reads faster (cold 200 MB: 230 vs 298 ms) but reading many files slower and
    /// erratic (cold read of every file: 1117–1851 vs 1166–1350 ms), from clearing fresh 2 MiB pages.
    static let mappedThreshold = 4 << 20

    /// A buffer of `count` bytes for `init(owning:count:)`: `malloc`, or for big ones an anonymous
    /// `mmap` (see `mappedThreshold`). Nil when memory is short.
    static func allocate(_ count: Int) -> UnsafeMutableRawPointer? {
        guard count >= mappedThreshold else { return malloc(max(count, 1)) }
        guard let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return nil }
        return p
    }

    /// Frees what `allocate(count)` returned.
    static func deallocate(_ p: UnsafeMutableRawPointer, _ count: Int) {
        if count >= mappedThreshold {
            munmap(p, count)
        } else {
            free(p)
        }
    }

    /// The bytes, valid during `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    deinit {
        if let object {
            git_odb_object_free(object)
        } else if let base {
            BlobBuffer.deallocate(UnsafeMutableRawPointer(mutating: base), count)
        }
    }
}
