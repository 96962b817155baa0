import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization

/// Speculative, bounded loading of a directory's other small blobs when one of its files had to be
/// loaded from the packs: a sequential reader (`tar`, `grep -r`) then finds the next files already
/// loaded. Like EdenFS's readdir prefetch, but triggered by a read rather than a listing, so `find`
/// never pays for it.
///
/// Bounded: one worker thread, at most 256 directories and `maxQueued` blobs queued (further ones are dropped), blobs
/// larger than `maxBlobSize` skipped, each directory scheduled once (the set of scheduled trees is reset
/// when it grows past 16k). Tracked: `shutdown()` drops the queue and joins the thread. Loads go through
/// the same single-flight loader as readers, so a reader that wants a blob being speculated waits for
/// that load instead of starting another. Thread-safe.
final class Speculator: @unchecked Sendable {
    private let maxQueued: Int
    private let maxBlobSize: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [(view: RepoView, tree: ObjectID)] = []
    private var queuedBlobs = 0
    private var scheduledTrees = Set<ObjectID>()
    private var stopping = false
    private var workers: WorkerThreads?
    let loads = Atomic<Int>(0)
    /// Directories waiting to be expanded; further ones are dropped.
    static let maxQueuedTrees = 256

    init(maxQueued: Int = 4096, maxBlobSize: Int = 1 << 20) {
        self.maxQueued = maxQueued
        self.maxBlobSize = maxBlobSize
        workers = WorkerThreads.start(count: 1) { [unowned self] _ in self.work() }
    }

    /// Schedules the small blobs of `tree` (once per tree). Never blocks on I/O.
    func schedule(_ view: RepoView, tree: ObjectID) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, queuedBlobs < maxQueued, queue.count < Self.maxQueuedTrees else { return }
        if scheduledTrees.count > 16_384 { scheduledTrees.removeAll(keepingCapacity: true) }
        guard scheduledTrees.insert(tree).inserted else { return }
        queue.append((view, tree))
        condition.signal()
    }

    /// Drops what is queued and joins the worker. Idempotent.
    func shutdown() {
        condition.lock()
        stopping = true
        queue.removeAll()
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
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            let job = queue.removeFirst()
            condition.unlock()

            guard let tree = try? job.view.tree(job.tree) else { continue }
            let files = tree.entries.filter { $0.kind == .file || $0.kind == .executable }
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
                if (try? job.view.ensureCached(entry.oid, speculative: true)) == true {
                    loads.add(1, ordering: .relaxed)
                }
            }
            if remaining > 0 {
                condition.lock()
                queuedBlobs -= remaining
                condition.unlock()
            }
        }
    }

    deinit { shutdown() }
}
