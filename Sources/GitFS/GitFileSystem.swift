import Basics
import ContentCache
import Foundation
import FuseServer
import GitStore
import Logging
import Resolver
import Synchronization

/// The kernel's page cache of a mount's files, as the filesystem may use it: whether the kernel holds
/// a node's inode, and pushing a node's whole content into it (false when refused).
public struct KernelCacheAccess: Sendable {
    public let holds: @Sendable (GitFSNode) -> Bool
    public let store: @Sendable (GitFSNode, UnsafeRawBufferPointer) -> Bool
    public init(holds: @escaping @Sendable (GitFSNode) -> Bool,
                store: @escaping @Sendable (GitFSNode, UnsafeRawBufferPointer) -> Bool) {
        self.holds = holds
        self.store = store
    }
}

/// A value set once while the mount is being built, before it serves, and only read afterwards: the
/// worker threads start after the write, which orders it before every read, so reads take no lock
/// (the read path has no global lock). Setting it while requests are served is a programming error.
final class SetBeforeServing<Value: Sendable>: @unchecked Sendable {
    private var stored: Value?
    private let sealed = Atomic<Bool>(false)

    var value: Value? { stored }

    func set(_ value: Value) {
        precondition(!sealed.exchange(true, ordering: .acquiringAndReleasing), "set twice")
        stored = value
    }
}

/// What an open file of the mount reads from.
public enum GitFSHandle: Sendable {
    case blob(BlobContent)
    case bytes([UInt8])
}

/// The mount layout of DESIGN.md served through FuseServer: one directory per repository of the home,
/// with `HEAD`, `branches/`, `tags/` and `commits/`, plus `.gitfs/stats`.
/// Immutable content (everything under `commits/`) gets long kernel cache lifetimes; refs and the
/// repository list are re-read at most about once a second. Thread-safe; holds no lock while reading git.
public final class GitFileSystem: FuseFileSystem {
    public typealias Node = GitFSNode
    public typealias Handle = GitFSHandle

    public let resolver: Resolver
    let logger: Logger
    let startTime = Int64(Date().timeIntervalSince1970)
    /// Produces the JSON of `.gitfs/stats`; set by the mount once the server exists.
    let statsSource = Mutex<(@Sendable () -> [UInt8])?>(nil)
    /// Recent `.gitfs/stats` snapshots by number. Files are served without OPEN and keep their page
    /// cache, so each lookup of `stats` (entry lifetime 0) takes a fresh snapshot under a new node.
    private let statsSnapshots = Mutex<(next: UInt64, recent: [UInt64: [UInt8]])>((1, [:]))

    /// The kernel's page cache, once the mount exists: sibling files of a file being read are pushed
    /// into it ahead of the reader.
    private let kernelCacheSlot = SetBeforeServing<KernelCacheAccess>()
    private var kernelCache: KernelCacheAccess? { kernelCacheSlot.value }

    /// Lifetime in the kernel of immutable nodes (everything under commits/).
    static let immutableTTL: Double = 24 * 3600
    /// Lifetime of nodes that change when refs move or repositories come and go.
    static let mutableTTL: Double = 1

    public init(resolver: Resolver, logger: Logger) {
        self.resolver = resolver
        self.logger = logger
    }

    public func setStatsSource(_ source: @escaping @Sendable () -> [UInt8]) {
        statsSource.withLock { $0 = source }
    }

    /// Lets reads feed the kernel's page cache (see `KernelCacheAccess`). Call before the mount serves.
    public func setKernelCache(_ access: KernelCacheAccess) {
        kernelCacheSlot.set(access)
    }

    public var rootNode: GitFSNode { .root }

    // MARK: attributes

    private func directory(mtime: Int64? = nil, ttl: Double = mutableTTL) -> NodeAttributes {
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

    private func symlink(_ target: [UInt8], mtime: Int64? = nil, ttl: Double = mutableTTL) -> NodeAttributes {
        NodeAttributes(kind: .symlink, permissions: 0o777, size: UInt64(target.count), mtime: mtime ?? startTime, ttl: ttl)
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
            return try objectAttributes(o)
        }
    }

    private func objectAttributes(_ o: ObjectNode) throws(Errno) -> NodeAttributes {
        try objectAttributes(o.entry, in: o.repo, mtime: try commitTime(o))
    }

    /// The mtime of everything under commits/<id>/: the commit's committer time.
    private func commitTime(_ o: ObjectNode) throws(Errno) -> Int64 {
        try mapped { () throws(ResolverError) in try o.repo.view.commit(o.commit).committerTime }
    }

    private func objectAttributes(_ entry: TreeEntry, in repo: RepoRef, mtime: Int64) throws(Errno) -> NodeAttributes {
        let ttl = Self.immutableTTL
        switch entry.kind {
        case .directory, .submodule:
            return directory(mtime: mtime, ttl: ttl)
        case .file, .executable, .symlink:
            let size = try mapped { () throws(ResolverError) in try repo.view.blobSize(entry.oid) }
            let kind: NodeKind = entry.kind == .symlink ? .symlink : .regularFile
            let perm: UInt16 = switch entry.kind {
            case .executable: 0o555
            case .symlink: 0o777
            default: 0o444
            }
            return NodeAttributes(kind: kind, permissions: perm, size: UInt64(size), mtime: mtime, ttl: ttl)
        }
    }

    // MARK: lookup

    public func lookup(_ name: [UInt8], in parent: GitFSNode) throws(Errno) -> (node: GitFSNode, attributes: NodeAttributes) {
        let child = try child(named: name, of: parent)
        return (child, try attributes(of: child))
    }

    private func child(named name: [UInt8], of parent: GitFSNode) throws(Errno) -> GitFSNode {
        let text = String(decoding: name, as: UTF8.self)
        switch parent {
        case .root:
            if text == ".gitfs" { return .control }
            guard (try? MirrorStore.validateName(text)) != nil,
                  let view = try? resolver.repository(named: text) else { throw .noEntry }
            return .repository(RepoRef(view: view))
        case .control:
            guard text == "stats" else { throw .noEntry }
            return takeStatsSnapshot()
        case .repository(let repo):
            switch text {
            case "HEAD":
                let refs = try refsOf(repo)
                guard refs.defaultBranch != nil else { throw .noEntry }
                return .head(repo)
            case "branches": return .refDirectory(repo, .branch, prefix: "")
            case "tags": return .refDirectory(repo, .tag, prefix: "")
            case "commits": return .commits(repo)
            default: throw .noEntry
            }
        case .refDirectory(let repo, let kind, let prefix):
            let full = prefix + text
            let refs = try refsOf(repo)
            if refs.target(of: full, tags: kind == .tag) != nil { return .ref(repo, kind, name: full) }
            let dirPrefix = full + "/"
            if refs.hasRefs(under: dirPrefix, tags: kind == .tag) { return .refDirectory(repo, kind, prefix: dirPrefix) }
            throw .noEntry
        case .commits(let repo):
            guard let id = ObjectID(hex: text) else { throw .noEntry }
            let info: CommitInfo
            do { info = try repo.view.commit(id) } catch {
                // Not a commit of this mirror: ENOENT; a damaged mirror: EIO (logged by `mapped`).
                guard case .git(let g) = error, g.kind == .corrupt else { throw .noEntry }
                info = try mapped { () throws(ResolverError) in throw error }
            }
            return .object(ObjectNode(repo: repo, commit: id, path: [],
                                      entry: TreeEntry(name: [], mode: 0o040000, oid: info.tree)))
        case .object(let o):
            guard o.entry.kind == .directory else {
                if o.entry.kind == .submodule { throw .noEntry }
                throw .notDirectory
            }
            let tree = try mapped { () throws(ResolverError) in try o.repo.view.tree(o.entry.oid) }
            guard let e = tree.entry(named: name) else { throw .noEntry }
            return .object(ObjectNode(repo: o.repo, commit: o.commit, path: Self.childPath(o.path, e.name), entry: e, directory: o.entry.oid))
        case .head, .ref, .stats:
            throw .notDirectory
        }
    }

    private static func childPath(_ parent: [UInt8], _ name: [UInt8]) -> [UInt8] {
        parent.isEmpty ? name : parent + [0x2F] + name
    }

    // MARK: directories

    public func readDirectory(_ node: GitFSNode) throws(Errno) -> (entries: [DirectoryEntry<GitFSNode>], options: OpenedDirectory) {
        var out: [DirectoryEntry<GitFSNode>] = []
        func add(_ name: String, _ child: GitFSNode) throws(Errno) {
            out.append(DirectoryEntry(name: Array(name.utf8), node: child, attributes: try attributes(of: child)))
        }
        switch node {
        case .root:
            try add(".gitfs", .control)
            for name in resolver.store.names() {
                guard let view = try? resolver.repository(named: name) else { continue }
                try add(name, .repository(RepoRef(view: view)))
            }
            return (out, OpenedDirectory(cacheEntries: false))
        case .control:
            try add("stats", takeStatsSnapshot())
            return (out, OpenedDirectory(cacheEntries: false))
        case .repository(let repo):
            if try refsOf(repo).defaultBranch != nil { try add("HEAD", .head(repo)) }
            try add("branches", .refDirectory(repo, .branch, prefix: ""))
            try add("tags", .refDirectory(repo, .tag, prefix: ""))
            try add("commits", .commits(repo))
            return (out, OpenedDirectory(cacheEntries: false))
        case .refDirectory(let repo, let kind, let prefix):
            var seenDirs = Set<String>()
            for ref in try refsOf(repo).list(tags: kind == .tag) where ref.name.hasPrefix(prefix) {
                let rest = ref.name.dropFirst(prefix.count)
                if let slash = rest.firstIndex(of: "/") {
                    let dir = String(rest[..<slash])
                    if seenDirs.insert(dir).inserted {
                        try add(dir, .refDirectory(repo, kind, prefix: prefix + dir + "/"))
                    }
                } else {
                    try add(String(rest), .ref(repo, kind, name: ref.name))
                }
            }
            return (out, OpenedDirectory(cacheEntries: false))
        case .commits(let repo):
            let refs = try refsOf(repo)
            var seen = Set<ObjectID>()
            for ref in refs.list(tags: false) + refs.list(tags: true) where seen.insert(ref.target).inserted {
                guard let info = try? repo.view.commit(ref.target) else { continue }
                try add(ref.target.hex, .object(ObjectNode(repo: repo, commit: ref.target, path: [],
                                                           entry: TreeEntry(name: [], mode: 0o040000, oid: info.tree))))
            }
            return (out, OpenedDirectory(cacheEntries: false))
        case .object(let o):
            guard o.entry.kind == .directory || o.entry.kind == .submodule else { throw .notDirectory }
            if o.entry.kind == .submodule { return ([], OpenedDirectory(cacheEntries: true)) }
            let tree = try mapped { () throws(ResolverError) in try o.repo.view.tree(o.entry.oid) }
            o.repo.view.listing(o.entry.oid)
            let mtime = try commitTime(o)
            out.reserveCapacity(tree.entries.count)
            for e in tree.entries {
                let child = ObjectNode(repo: o.repo, commit: o.commit, path: Self.childPath(o.path, e.name), entry: e, directory: o.entry.oid)
                out.append(DirectoryEntry(name: e.name, node: .object(child), attributes: try objectAttributes(e, in: o.repo, mtime: mtime)))
            }
            return (out, OpenedDirectory(cacheEntries: true))
        case .head, .ref, .stats:
            throw .notDirectory
        }
    }

    // MARK: links

    public func readLink(_ node: GitFSNode) throws(Errno) -> [UInt8] {
        switch node {
        case .head(let repo): return try headTarget(repo)
        case .ref(let repo, let kind, let name): return try refTarget(repo, kind, name)
        case .object(let o) where o.entry.kind == .symlink:
            return try mapped { () throws(ResolverError) in try o.repo.view.openBlob(o.entry.oid).readAll() }
        default: throw .invalid
        }
    }

    private func headTarget(_ repo: RepoRef) throws(Errno) -> [UInt8] {
        guard let branch = try refsOf(repo).defaultBranch else { throw .noEntry }
        return Array("branches/\(branch)".utf8)
    }

    private func refTarget(_ repo: RepoRef, _ kind: RefKind, _ name: String) throws(Errno) -> [UInt8] {
        guard let target = try refsOf(repo).target(of: name, tags: kind == .tag) else { throw .noEntry }
        let depth = name.split(separator: "/", omittingEmptySubsequences: false).count
        return Array((String(repeating: "../", count: depth) + "commits/" + target.hex).utf8)
    }

    private func refsOf(_ repo: RepoRef) throws(Errno) -> RefIndex {
        try mapped { () throws(ResolverError) in try repo.view.refs() }
    }

    // MARK: files

    /// What a file node reads from: a stats snapshot, or the blob's opened content.
    private func handle(for node: GitFSNode) throws(Errno) -> GitFSHandle {
        switch node {
        case .stats(let snapshot):
            return .bytes(statsSnapshots.withLock { $0.recent[snapshot] } ?? [])
        case .object(let o) where o.entry.kind == .file || o.entry.kind == .executable:
            return .blob(try mapped { () throws(ResolverError) in try o.repo.view.openBlob(o.entry.oid) })
        case .object(let o) where o.entry.kind == .directory || o.entry.kind == .submodule:
            throw .isDirectory
        case .root, .control, .repository, .refDirectory, .commits:
            throw .isDirectory
        default:
            throw .invalid
        }
    }

    /// Used only when the kernel lacks no-open support (the mount serves files without OPEN).
    public func open(_ node: GitFSNode) throws(Errno) -> OpenedFile<GitFSHandle> {
        let h = try handle(for: node)
        if case .bytes = h { return OpenedFile(handle: h, keepCache: false, directIO: true) }
        return OpenedFile(handle: h, keepCache: true, directIO: false)
    }

    public func read(_ handle: GitFSHandle, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        switch handle {
        case .bytes(let bytes):
            guard offset < bytes.count else { return 0 }
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            return n
        case .blob(let content):
            return try mapped { () throws(ResolverError) in try content.read(offset: offset, into: buffer) }
        }
    }

    public func release(_ handle: GitFSHandle) {}

    /// Regular files are served without OPEN/RELEASE: warm reads never leave the kernel.
    public var servesWithoutOpen: Bool { true }

    public func read(node: GitFSNode, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        let n = try read(try handle(for: node), offset: offset, into: buffer)
        if offset == 0, case .object(let o) = node, let directory = o.directory, let kernel = kernelCache {
            feedSiblings(of: o, in: directory, to: kernel)
        }
        return n
    }

    /// A read of `o` reached the server (the kernel had not cached it): the other small files of its
    /// directory are pushed into the kernel's page cache in the background, where the kernel holds
    /// their inodes (a listing made them), so a reader going through the directory (`tar`, `grep -r`)
    /// finds them cached instead of sending a request per file. Each directory of a commit once.
    private func feedSiblings(of o: ObjectNode, in directory: ObjectID, to kernel: KernelCacheAccess) {
        let parent = ObjectNode(repo: o.repo, commit: o.commit, path: o.path.lastIndex(of: 0x2F).map { Array(o.path[..<$0]) } ?? [],
                                entry: TreeEntry(name: [], mode: 0o040000, oid: directory))
        let sibling: @Sendable (TreeEntry) -> GitFSNode = { e in
            .object(ObjectNode(repo: parent.repo, commit: parent.commit, path: Self.childPath(parent.path, e.name),
                               entry: e, directory: directory))
        }
        // The key is the directory's node identity (repository, commit, path).
        let feed = SiblingFeed(key: parent.hashValue, after: o.entry.name,
                               wants: { kernel.holds(sibling($0)) },
                               deliver: { kernel.store(sibling($0), $1) })
        o.repo.view.readingDirectory(directory, feed: feed)
    }


    /// A new numbered snapshot of the stats JSON; the 64 most recent are kept.
    private func takeStatsSnapshot() -> GitFSNode {
        let bytes = statsSource.withLock { $0 }?() ?? Array("{}\n".utf8)
        let number = statsSnapshots.withLock { s -> UInt64 in
            let n = s.next
            s.next += 1
            s.recent[n] = bytes
            s.recent.removeValue(forKey: n &- 64)
            return n
        }
        return .stats(snapshot: number)
    }

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

    public func statistics() -> (totalBytes: UInt64, files: UInt64) {
        let totals = resolver.cache.runningTotals()
        return (UInt64(max(0, totals.diskBytes)), UInt64(max(0, totals.entries)))
    }

    // MARK: errors

    /// Runs a resolver call, turning its error into the errno the kernel gets (logged unless ENOENT).
    private func mapped<T>(_ body: () throws(ResolverError) -> T) throws(Errno) -> T {
        do {
            return try body()
        } catch {
            switch error {
            case .notFound: throw .noEntry
            case .notADirectory: throw .notDirectory
            case .git(let g) where g.kind == .notFound: throw .noEntry
            default:
                logger.error("request failed", metadata: ["error": "\(error)"])
                throw .io
            }
        }
    }
}
