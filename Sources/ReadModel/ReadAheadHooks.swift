import Basics
import GitStore

/// Work a mount hands off the read path, done by the read-ahead module on its shared background queue:
/// publishing loaded blobs to the cache afterwards (`pendingContent`, a blob source of the chain that
/// takes deferred fills and serves them from memory until they are written), reading listings ahead,
/// and loading a directory's small blobs ahead of a reader. Implementations never block the caller on
/// I/O, bound every queue, and join their threads in `shutdown()`. Thread-safe.
public protocol ReadAheadHooks: Sendable {
    /// The held source of content on its way into the cache (asked right after the opened table).
    var pendingContent: any BlobSource { get }
    /// The directory `tree` is being listed.
    func listing(_ view: RepoView, tree: ObjectID)
    /// A reader started on a file of the directory `tree`.
    func readingDirectory(_ view: RepoView, tree: ObjectID, feed: SiblingFeed)
    /// Runs a long job off the read path (finishing a big blob streamed into the cache): `job` polls
    /// the closure it gets and stops when it says so (shutdown); `dropped` runs instead if it never
    /// starts. False when not taken (the job's owner copes: readers drive the stream themselves).
    func background(_ job: @escaping @Sendable (_ stopping: @escaping @Sendable () -> Bool) -> Void,
                    dropped: @escaping @Sendable () -> Void) -> Bool
    /// Stops the background work (stores in progress finish, queued work is dropped). Idempotent.
    func shutdown()
}

extension ReadAheadHooks {
    /// No background work for long jobs by default.
    public func background(_ job: @escaping @Sendable (_ stopping: @escaping @Sendable () -> Bool) -> Void,
                           dropped: @escaping @Sendable () -> Void) -> Bool { false }
}

/// Where read-ahead delivers the small blobs of one directory instead of only caching them: the
/// mount's kernel page cache. Built by the caller, which knows the directory's identity.
public struct SiblingFeed: Sendable {
    /// Identifies the target (one directory of one commit); each key is fed once.
    public let key: Int
    /// The entry that triggered the feed: a sequential reader is past it, so feeding starts after it.
    public let after: [UInt8]?
    /// True when `entry` can be delivered (for the mount: the kernel holds its inode).
    public let wants: @Sendable (TreeEntry) -> Bool
    /// Takes the blob's whole content; false when it could not be delivered.
    public let deliver: @Sendable (TreeEntry, UnsafeRawBufferPointer) -> Bool

    public init(key: Int, after: [UInt8]?, wants: @escaping @Sendable (TreeEntry) -> Bool,
                deliver: @escaping @Sendable (TreeEntry, UnsafeRawBufferPointer) -> Bool) {
        self.key = key
        self.after = after
        self.wants = wants
        self.deliver = deliver
    }
}
