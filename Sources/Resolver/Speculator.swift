import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization
import Threads

/// Speculative, bounded background work on one thread, ahead of the readers:
/// - **Listings ahead** (`scheduleWalk`): when a directory is listed, its subtrees are parsed and the
///   sizes of their files read from the object headers (never inflated), depth first in the order
///   `find` and `tar` visit them, so their listings are answered from memory (like mesafs's child-listing
///   prefetch). At most `walkBudget` entries per walk; each tree walked once. Walks go first.
/// - **Blobs ahead** (`schedule`): when a reader starts on a file of a directory, the directory's other
///   small blobs go to the `SiblingFeed` (the mount: into the kernel's page cache, so the reader reads
///   them without a FUSE request each) or, where the feed cannot take them, into the content cache
///   (EdenFS's readdir prefetch, but triggered by a read, so `find` never loads blobs).
///
/// Bounded: one worker thread; at most 64 walks, 256 directories and `maxQueued` blobs queued (further
/// ones are dropped); blobs larger than `maxBlobSize` skipped, at most 2048 files and 64 MiB per
/// directory; each directory scheduled once (the sets of scheduled directories and walked trees are
/// reset when they grow past 16k/64k). Tracked: `shutdown()` drops the queues and joins the thread.
/// Loads go through the same single-flight loader as readers, so a reader that wants a blob being
/// speculated waits for that load instead of starting another. Thread-safe.
final class Speculator: @unchecked Sendable {
    private let maxQueued: Int
    private let maxBlobSize: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [(view: RepoView, tree: ObjectID, feed: SiblingFeed)] = []
    private var queuedBlobs = 0
    private var scheduledFeeds = Set<Int>()
    private var walks: [(view: RepoView, tree: ObjectID)] = []
    private var walkedTrees = Set<ObjectID>()
    private var stopping = false
    private var workers: WorkerThreads?
    /// The worker's buffer for delivering blobs to feeds (only the worker thread touches it).
    private var feedBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// Directories waiting to be expanded; further ones are dropped.
    static let maxQueuedTrees = 256
    /// One directory's blobs loaded ahead at most: this many files, this many bytes.
    static let maxFilesPerDirectory = 2048
    static let maxBytesPerDirectory = 64 << 20
    /// Tree entries one walk visits at most.
    static let walkBudget = 32_768

    init(maxQueued: Int = 4096, maxBlobSize: Int = 1 << 20) {
        self.maxQueued = maxQueued
        self.maxBlobSize = maxBlobSize
        workers = WorkerThreads.start(count: 1) { [unowned self] _ in self.work() }
        if workers?.count == 0 { stopping = true }   // no thread: nothing is scheduled
    }

    /// Schedules the small blobs of `tree`, once per feed key: the blobs the feed wants are delivered
    /// to it, the others loaded into the content cache. Never blocks on I/O.
    func schedule(_ view: RepoView, tree: ObjectID, feed: SiblingFeed) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, queuedBlobs < maxQueued, queue.count < Self.maxQueuedTrees else { return }
        if scheduledFeeds.count > 16_384 { scheduledFeeds.removeAll(keepingCapacity: true) }
        guard scheduledFeeds.insert(feed.key).inserted else { return }
        queue.append((view, tree, feed))
        condition.signal()
    }

    /// Schedules reading the listings below `tree` ahead (depth first, once per tree). Never blocks on I/O.
    func scheduleWalk(_ view: RepoView, tree: ObjectID) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, walks.count < 64, !walkedTrees.contains(tree) else { return }
        walks.append((view, tree))
        condition.signal()
    }

    /// Drops what is queued and joins the worker. Idempotent.
    func shutdown() {
        condition.lock()
        stopping = true
        queue.removeAll()
        walks.removeAll()
        condition.broadcast()
        let w = workers
        workers = nil
        condition.unlock()
        w?.join()
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    private func work() {
        while true {
            condition.lock()
            while queue.isEmpty && walks.isEmpty && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            if !walks.isEmpty {
                let walk = walks.removeFirst()
                condition.unlock()
                readListingsAhead(walk.view, from: walk.tree)
                continue
            }
            let job = queue.removeFirst()
            condition.unlock()

            guard let tree = try? job.view.tree(job.tree) else { continue }
            var files = tree.entries.filter { $0.kind == .file || $0.kind == .executable }
            if let after = job.feed.after, let i = files.firstIndex(where: { $0.name == after }) {
                files.removeFirst(i + 1)   // a sequential reader is past these already
            }
            if files.count > Self.maxFilesPerDirectory { files.removeLast(files.count - Self.maxFilesPerDirectory) }
            var bytesLeft = Self.maxBytesPerDirectory
            condition.lock()
            queuedBlobs += files.count
            condition.unlock()
            var remaining = files.count
            for entry in files {
                remaining -= 1
                condition.lock()
                queuedBlobs -= 1
                condition.unlock()
                if isStopping { break }
                guard let size = try? job.view.blobSize(entry.oid), size <= maxBlobSize else { continue }
                bytesLeft -= size
                if bytesLeft < 0 { break }
                if size > 0, job.feed.wants(entry) {
                    deliver(entry, size: size, of: job.view, to: job.feed)
                } else {
                    _ = try? job.view.ensureCached(entry.oid, speculative: true)
                }
            }
            if remaining > 0 {
                condition.lock()
                queuedBlobs -= remaining
                condition.unlock()
            }
        }
    }

    /// Opens a blob (content cache, else one load from the packs) and hands its bytes to the feed.
    private func deliver(_ entry: TreeEntry, size: Int, of view: RepoView, to feed: SiblingFeed) {
        guard let content = try? view.openBlob(entry.oid, speculative: true), content.size == size else { return }
        if feedBuffer.count < size {
            feedBuffer.deallocate()
            feedBuffer = .allocate(byteCount: max(size, 64 << 10), alignment: 16)
        }
        let bytes = UnsafeMutableRawBufferPointer(rebasing: feedBuffer[0..<size])
        guard let n = try? content.read(offset: 0, into: bytes), n == size else { return }
        _ = feed.deliver(entry, UnsafeRawBufferPointer(bytes))
    }

    /// Parses the trees below `root` depth first (children in listing order) and reads their files'
    /// sizes, skipping trees another walk took; stops after `walkBudget` entries or at shutdown.
    private func readListingsAhead(_ view: RepoView, from root: ObjectID) {
        var stack = [root]
        var visited = 0
        while let id = stack.popLast(), visited < Self.walkBudget {
            condition.lock()
            if walkedTrees.count > 65_536 { walkedTrees.removeAll(keepingCapacity: true) }
            let fresh = !stopping && walkedTrees.insert(id).inserted
            let stop = stopping
            condition.unlock()
            if stop { return }
            guard fresh, let tree = try? view.tree(id) else { continue }
            view.resolver.treesReadAhead.add(1, ordering: .relaxed)
            visited += tree.entries.count
            for entry in tree.entries {
                switch entry.kind {
                case .file, .executable, .symlink: _ = try? view.blobSize(entry.oid)
                default: break
                }
            }
            for entry in tree.entries.reversed() where entry.kind == .directory {
                stack.append(entry.oid)
            }
        }
    }

    deinit {
        shutdown()
        feedBuffer.deallocate()
    }
}

/// Where the speculator delivers the small blobs of one directory instead of only caching them: the
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
