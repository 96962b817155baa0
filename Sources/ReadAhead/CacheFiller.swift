import Basics
import ContentCache
import GitStore
import Logging
import ReadModel
import Synchronization

/// Publishes freshly loaded blobs to the content cache off the read path: a reader gets the inflated
/// bytes at once, and the fill lane of the background queue verifies, compresses and writes them
/// afterwards. Until an entry is written its bytes stay findable here — this is the chain's "pending"
/// blob source — so no second load happens.
///
/// Bounded: at most `maxPendingBytes` of small blobs wait, plus blobs larger than `largeBlob` up to
/// `maxLargeBytes` in all (never one beyond that, whatever its size: big whole blobs are streamed into
/// the cache and never come here; a bigger one is stored by the chain at once and served from the
/// cache), and at most 65,536 blobs; and by the memory budget (the bytes charge it themselves): a fill
/// waits at most `roomWait` for room in it. A fill beyond that is refused and the chain stores synchronously. Tracked: fills queued at
/// shutdown are dropped (loaded again when next read) and release their bytes. A store that fails is
/// logged once per kind (a full disk or a read-only cache by the cache itself); the bytes were served
/// from the pack, whose zlib streams carry their own checksums. Thread-safe.
final class CacheFiller: BlobSource {
    let name = "pending"
    let role = BlobSourceRole.held
    private let cache: CacheSource
    private let logger: Logger
    private let queue: BackgroundQueue
    private let lane: Int
    private let maxPendingBytes: Int
    private let largeBlob: Int
    private let maxLargeBytes: Int

    private struct Budget {
        var count = 0
        var bytes = 0
        var largeBytes = 0
    }
    /// What the pending bytes use; changed together with the shards (the shard lock is taken inside).
    private let budget = Mutex(Budget())
    /// The bytes waiting to be written, sharded by id so readers looking for them take only their
    /// shard's lock.
    private let pending: [PendingShard] = (0..<16).map { _ in PendingShard() }
    private final class PendingShard: Sendable {
        let map = Mutex<[ObjectID: BlobBuffer]>([:])
        func withLock<R>(_ body: (inout [ObjectID: BlobBuffer]) -> R) -> R { map.withLock { body(&$0) } }
    }
    private let failureLogged = Atomic<Bool>(false)
    private let memory: MemoryBudget

    /// How long a fill waits for room in the memory budget before it is dropped (the reader waits).
    static let roomWait: Duration = .milliseconds(10)

    init(cache: ContentCache, logger: Logger, queue: BackgroundQueue, lane: Int, maxPendingBytes: Int = 64 << 20,
         largeBlob: Int = 8 << 20, maxLargeBytes: Int = 32 << 20, memory: MemoryBudget = .process) {
        self.memory = memory
        self.cache = CacheSource(cache: cache)
        self.logger = logger
        self.queue = queue
        self.lane = lane
        // At most half the memory budget for small blobs and a quarter for big ones.
        self.maxPendingBytes = min(maxPendingBytes, memory.total / 2)
        self.largeBlob = largeBlob
        self.maxLargeBytes = min(maxLargeBytes, memory.total / 4)
    }

    private func shard(_ id: ObjectID) -> PendingShard {
        pending[Int(id.firstByte & 15)]
    }

    // MARK: BlobSource

    func size(of request: BlobRequest) -> Int? { shard(request.id).withLock { $0[request.id]?.count } }

    func open(_ request: BlobRequest) -> LoadedBlob? { shard(request.id).withLock { $0[request.id] }.map { .memory($0) } }

    func contains(_ request: BlobRequest) -> Bool { shard(request.id).withLock { $0[request.id] != nil } }

    /// Takes a deferred fill within the bounds; nil (the chain stores it now) otherwise.
    func accept(_ request: BlobRequest, _ bytes: BlobBuffer, mode: FillMode) -> FillResult? {
        guard mode == .deferred, reserve(request.id, bytes) else { return nil }
        let id = request.id
        // The job names the blob only: its bytes stay owned by the budgeted pending map.
        let queued = queue.submit(lane: lane, { [self] in
            if let held = shard(id).withLock({ $0[id] }) { store(request, held) }
            release(id)
        }, dropped: { [self] in release(id) })
        if !queued {
            release(id)
            return nil
        }
        return .deferred
    }

    // MARK: inside

    private func reserve(_ id: ObjectID, _ bytes: BlobBuffer) -> Bool {
        // The bytes charged the memory budget when they were made; keeping them waits (bounded) for
        // room, else the fill is dropped here and the chain stores the blob at once.
        guard memory.waitForRoom(upTo: Self.roomWait) else { return false }
        return budget.withLock { b in
            guard b.count < 65_536 else { return false }
            if bytes.count > largeBlob {
                guard b.largeBytes + bytes.count <= maxLargeBytes else { return false }
            } else {
                guard b.bytes + bytes.count <= maxPendingBytes else { return false }
            }
            let inserted = shard(id).withLock { map -> Bool in
                guard map[id] == nil else { return false }
                map[id] = bytes
                return true
            }
            guard inserted else { return false }
            b.count += 1
            if bytes.count > largeBlob { b.largeBytes += bytes.count } else { b.bytes += bytes.count }
            return true
        }
    }

    private func release(_ id: ObjectID) {
        budget.withLock { b in
            guard let held = shard(id).withLock({ $0.removeValue(forKey: id) }) else { return }
            b.count -= 1
            if held.count > largeBlob { b.largeBytes -= held.count } else { b.bytes -= held.count }
        }
    }

    private func store(_ request: BlobRequest, _ bytes: BlobBuffer) {
        guard case .failed(let error) = cache.accept(request, bytes, mode: .now) else { return }
        let id = request.id
        switch error.kind {
        case .noSpace, .readOnly:
            break   // the cache logs a full disk or a read-only cache once; the blob was served anyway
        case .verifyFailed:
            logger.error("a blob's content does not match its id; not cached", metadata: ["object": "\(id)", "error": "\(error)"])
        default:
            if !failureLogged.exchange(true, ordering: .relaxed) {
                logger.error("blobs are not being written to the content cache", metadata: ["object": "\(id)", "error": "\(error)"])
            }
        }
    }
}
