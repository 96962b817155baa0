import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization
import Threads

/// Publishes freshly loaded blobs to the content cache off the read path: a reader gets the inflated
/// bytes at once, and a small fixed set of threads verifies, compresses and writes them afterwards.
/// Until an entry is written, its bytes stay findable here (`pending`) so no second load happens.
///
/// Bounded: at most `maxPendingBytes` of small blobs wait, plus blobs larger than `largeBlob` up to
/// `maxLargeBytes` in all, or one of any size (they are in memory anyway, having just been inflated;
/// compressing a 100 MB blob on the reader's path took longer than inflating it). A submit beyond
/// that is refused and the caller stores synchronously. The threads run at background priority.
/// Tracked: `shutdown()` joins the threads, letting the stores in progress finish and dropping the
/// queued ones (they are loaded again when next read), so an unmount stays quick. A store that fails
/// (full disk, content that does not match its id) is logged; the bytes were served from the pack,
/// whose zlib streams carry their own checksums. Thread-safe.
final class CacheFiller: @unchecked Sendable {
    private let cache: ContentCache
    private let logger: Logger
    private let maxPendingBytes: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [ObjectID] = []
    private var queueHead = 0
    /// The bytes waiting to be written, sharded by id so readers looking for them (`pendingBytes(of:)`,
    /// on the read path) take only their shard's lock. Changed only under `condition` (then the shard).
    private let pending: [PendingShard] = (0..<16).map { _ in PendingShard() }
    private final class PendingShard: Sendable {
        let map = Mutex<[ObjectID: BlobBuffer]>([:])
        func withLock<R>(_ body: (inout [ObjectID: BlobBuffer]) -> R) -> R { map.withLock { body(&$0) } }
    }
    private var pendingCount = 0
    private var pendingBytes = 0
    private var largePendingBytes = 0
    private var stopping = false
    private var workers: WorkerThreads?

    private let largeBlob: Int
    private let maxLargeBytes: Int

    init(cache: ContentCache, logger: Logger, threads: Int = 2, maxPendingBytes: Int = 64 << 20,
         largeBlob: Int = 8 << 20, maxLargeBytes: Int = 512 << 20) {
        self.cache = cache
        self.logger = logger
        self.maxPendingBytes = maxPendingBytes
        self.largeBlob = largeBlob
        self.maxLargeBytes = maxLargeBytes
        workers = WorkerThreads.start(count: threads, background: true) { [unowned self] _ in self.work() }
        if workers?.count == 0 { stopping = true }   // no thread: every submit is refused (stored in place)
    }

    /// Queues `bytes` for publication under `id`; false when the queue is full or shutting down.
    func submit(_ id: ObjectID, bytes: BlobBuffer) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let shard = pending[Self.shard(of: id)]
        guard !stopping, pendingCount < 65_536, shard.withLock({ $0[id] == nil }) else { return false }
        if bytes.count > largeBlob {
            guard largePendingBytes == 0 || largePendingBytes + bytes.count <= maxLargeBytes else { return false }
            largePendingBytes += bytes.count
        } else {
            guard pendingBytes + bytes.count <= maxPendingBytes else { return false }
            pendingBytes += bytes.count
        }
        shard.withLock { $0[id] = bytes }
        pendingCount += 1
        queue.append(id)
        condition.signal()
        return true
    }

    /// The bytes of a blob waiting to be written, if any.
    func pendingBytes(of id: ObjectID) -> BlobBuffer? {
        pending[Self.shard(of: id)].withLock { $0[id] }
    }

    private static func shard(of id: ObjectID) -> Int {
        id.withUnsafeBytes { Int($0[0] & 15) }
    }

    /// Finishes the stores in progress, drops the queued ones, joins the threads. Idempotent.
    func shutdown() {
        condition.lock()
        stopping = true
        queue.removeAll()
        queueHead = 0
        for shard in pending { shard.withLock { $0.removeAll() } }
        pendingCount = 0
        pendingBytes = 0
        largePendingBytes = 0
        condition.broadcast()
        let w = workers
        workers = nil
        condition.unlock()
        w?.join()
    }

    private func work() {
        while true {
            condition.lock()
            while queueHead == queue.count && !stopping { condition.wait() }
            if stopping || queueHead == queue.count {
                condition.unlock()
                return
            }
            let id = queue[queueHead]
            queueHead += 1
            if queueHead > 1024 && queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            let bytes = pending[Self.shard(of: id)].withLock { $0[id] }
            condition.unlock()

            do {
                if let bytes {
                    try bytes.withUnsafeBytes { try cache.store(id, content: $0, verified: bytes.isVerified) }
                }
            } catch let error as CacheError where error.kind == .noSpace || error.kind == .readOnly {
                // The cache logs a full disk or a read-only cache once; the blob was served anyway.
            } catch {
                logger.error("could not write a blob to the content cache", metadata: ["object": "\(id)", "error": "\(error)"])
            }
            condition.lock()
            if let held = pending[Self.shard(of: id)].withLock({ $0.removeValue(forKey: id) }) {
                pendingCount -= 1
                if held.count > largeBlob { largePendingBytes -= held.count } else { pendingBytes -= held.count }
            }
            condition.unlock()
            _ = bytes
        }
    }

    deinit { shutdown() }
}
