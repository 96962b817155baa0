import Basics
import FuseServer
import GitStore
import ReadModel
import Synchronization

/// The kernel's page cache of a mount's files, as the filesystem may use it: whether the kernel holds
/// a node's inode, and pushing a node's whole content into it (false when refused). A value of
/// Sendable closures, callable from any thread.
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

extension GitFileSystem {
    /// A read of `o` reached the server (the kernel had not cached it): the other small files of its
    /// directory are pushed into the kernel's page cache in the background, where the kernel holds
    /// their inodes (a listing made them), so a reader going through the directory (`tar`, `grep -r`)
    /// finds them cached instead of sending a request per file. Each directory of a commit once.
    func feedSiblings(of o: ObjectNode, in directory: ObjectID, to kernel: KernelCacheAccess) {
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
}
