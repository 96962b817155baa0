import Basics
import Foundation
import GitStore
import ReadModel
import Synchronization

/// Speculative, bounded work ahead of the readers, on the read-ahead lane of the background queue (one
/// thread, walks first):
/// - **Listings ahead** (`scheduleWalk`): when a directory is listed, its subtrees are parsed and the
///   sizes of their files read from the object headers (never inflated), depth first in the order
///   `find` and `tar` visit them, so their listings are answered from memory (like mesafs's child-listing
///   prefetch). At most `walkBudget` entries per walk; each tree walked once.
/// - **Blobs ahead** (`schedule`): when a reader starts on a file of a directory, the directory's other
///   small blobs go to the `SiblingFeed` (the mount: into the kernel's page cache, so the reader reads
///   them without a FUSE request each) or, where the feed cannot take them, into the content cache
///   (EdenFS's readdir prefetch, but triggered by a read, so `find` never loads blobs). They are loaded
///   from the directory's far end toward the reader: a sequential reader (`tar`, `grep -r`) loads the
///   files next to it itself, the speculator the others, and the two meet in the middle. In listing order
///   the speculator was always loading the very file the reader asked for next, so the reader waited on
///   it (a single-flight join) and its READ and the push copied the same file (cold `grep -r` of
///   hist-old: 1,530 joins and 2,514 READs for 3,064 files; from the far end 40 and 1,230).
///
/// Bounded: at most 64 walks, 256 directories and `maxQueued` blobs queued (further ones are dropped);
/// blobs larger than `maxBlobSize` skipped, at most 2048 files and 64 MiB per directory; each directory
/// scheduled once (the sets of scheduled directories and walked trees are reset when they grow past
/// 16k/64k). Loads go through the chain's single-flight like readers', so a reader that wants a blob
/// being speculated waits for that load instead of starting another. Work ahead is best effort: a failure
/// only ends that piece of work (the chain has logged it once; a reader meeting it gets the error).
/// Thread-safe.
final class Speculator: Sendable {
    private let queue: BackgroundQueue
    private let lane: Int
    private let maxQueued: Int
    private let maxBlobSize: Int
    private struct State {
        var queuedBlobs = 0
        var scheduledFeeds = Set<Int>()
        var walkedTrees = Set<ObjectID>()
    }
    private let state = Mutex(State())
    /// The buffer for delivering blobs to feeds (the lane has one thread; only its jobs touch it).
    private let feedBuffer = Mutex(UnsafeMutableRawBufferPointer(start: nil, count: 0))
    /// Queue indexes within the lane, in priority order.
    static let walkQueue = 0, blobQueue = 1
    /// The lane's queue bounds: walks, directories.
    static let queueLimits = [64, 256]
    /// One directory's blobs loaded ahead at most: this many files, this many bytes.
    static let maxFilesPerDirectory = 2048
    static let maxBytesPerDirectory = 64 << 20
    /// Tree entries one walk visits at most.
    static let walkBudget = 32_768

    init(queue: BackgroundQueue, lane: Int, maxQueued: Int = 4096, maxBlobSize: Int = 1 << 20) {
        self.queue = queue
        self.lane = lane
        self.maxQueued = maxQueued
        self.maxBlobSize = maxBlobSize
    }

    /// Schedules the small blobs of `tree`, once per feed key. Never blocks on I/O.
    func schedule(_ view: RepoView, tree: ObjectID, feed: SiblingFeed) {
        let fresh = state.withLock { s -> Bool in
            guard s.queuedBlobs < maxQueued else { return false }
            if s.scheduledFeeds.count > 16_384 { s.scheduledFeeds.removeAll(keepingCapacity: true) }
            return s.scheduledFeeds.insert(feed.key).inserted
        }
        guard fresh else { return }
        if !queue.submit(lane: lane, queue: Self.blobQueue, { [self] in loadSiblings(view, tree: tree, feed: feed) }) {
            _ = state.withLock { $0.scheduledFeeds.remove(feed.key) }   // dropped: may be scheduled again
        }
    }

    /// Schedules reading the listings below `tree` ahead (depth first, once per tree). Never blocks on I/O.
    func scheduleWalk(_ view: RepoView, tree: ObjectID) {
        guard !state.withLock({ $0.walkedTrees.contains(tree) }) else { return }
        queue.submit(lane: lane, queue: Self.walkQueue, { [self] in readListingsAhead(view, from: tree) })
    }

    private func loadSiblings(_ view: RepoView, tree id: ObjectID, feed: SiblingFeed) {
        guard let tree = try? view.tree(id) else { return }
        var files = tree.entries.filter { $0.kind == .file || $0.kind == .executable }
        if let after = feed.after, let i = files.firstIndex(where: { $0.name == after }) {
            files.removeFirst(i + 1)   // a sequential reader is past these already
        }
        if files.count > Self.maxFilesPerDirectory { files.removeLast(files.count - Self.maxFilesPerDirectory) }
        files.reverse()   // from the far end toward the reader (see the type's comment)
        state.withLock { $0.queuedBlobs += files.count }
        var remaining = files.count
        defer { state.withLock { $0.queuedBlobs -= remaining } }
        var bytesLeft = Self.maxBytesPerDirectory
        for entry in files {
            remaining -= 1
            state.withLock { $0.queuedBlobs -= 1 }
            if queue.isStopping { break }
            guard let size = try? view.blobSize(entry.oid), size <= maxBlobSize else { continue }
            bytesLeft -= size
            if bytesLeft < 0 { break }
            if size > 0, feed.wants(entry) {
                deliver(entry, size: size, of: view, to: feed)
            } else {
                _ = try? view.ensureCached(entry.oid, speculative: true)
            }
        }
    }

    /// Opens a blob (chain: cache, else one load from the packs) and hands its bytes to the feed.
    private func deliver(_ entry: TreeEntry, size: Int, of view: RepoView, to feed: SiblingFeed) {
        guard let content = try? view.openBlob(entry.oid, speculative: true), content.size == size else { return }
        feedBuffer.withLock { buffer in
            if buffer.count < size {
                buffer.deallocate()
                buffer = .allocate(byteCount: max(size, 64 << 10), alignment: 16)
            }
            let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size])
            guard let n = try? content.read(offset: 0, into: bytes), n == size else { return }
            _ = feed.deliver(entry, UnsafeRawBufferPointer(bytes))
        }
    }

    /// Parses the trees below `root` depth first (children in listing order) and reads their files'
    /// sizes, skipping trees another walk took; stops after `walkBudget` entries (counted one by one, so
    /// one huge directory is cut short too: the 200,000 sizes of one directory cost ~1.4 s of CPU) or at
    /// shutdown.
    private func readListingsAhead(_ view: RepoView, from root: ObjectID) {
        var stack = [root]
        var visited = 0
        while let id = stack.popLast() {
            if queue.isStopping { return }
            let fresh = state.withLock { s -> Bool in
                if s.walkedTrees.count > 65_536 { s.walkedTrees.removeAll(keepingCapacity: true) }
                return s.walkedTrees.insert(id).inserted
            }
            guard fresh, let tree = try? view.treeAhead(id) else { continue }
            // A blobless mirror would fetch each directory's blobs from the origin for their sizes:
            // only the trees are read ahead there.
            let sizes = !view.repository.isPartial
            for entry in tree.entries {
                guard visited < Self.walkBudget else { return }
                visited += 1
                if visited % 1024 == 0, queue.isStopping { return }
                if sizes, entry.kind == .file || entry.kind == .executable || entry.kind == .symlink {
                    _ = try? view.blobSize(entry.oid)
                }
            }
            for entry in tree.entries.reversed() where entry.kind == .directory {
                stack.append(entry.oid)
            }
        }
    }

    deinit { feedBuffer.withLock { $0.deallocate() } }
}
