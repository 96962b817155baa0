import Basics
#if canImport(Glibc)
import Glibc
#endif
import ContentCache
import Logging
import ReadAhead
import RemoteCache
import Synchronization

/// Uploads entries this process stored locally to the remote, in the background: a bounded queue
/// (`maxEntries` keys and `maxBytes` of content; an offer beyond either is dropped and counted — a
/// reader is never blocked or slowed), `threads` uploaders, HEAD before PUT, and a bounded memory of
/// keys known to be in the remote so nothing is uploaded twice. The queue holds keys only: the bytes
/// are read back from the local cache entry as they are sent. Thread-safe.
final class WriteBack: Sendable {
    private let client: RemoteCacheClient
    private let cache: ContentCache
    private let logger: Logger
    private let queue: BackgroundQueue
    private let maxBytes: Int
    private let queuedBytes = Atomic<Int>(0)
    private let queuedCount = Atomic<Int>(0)
    let known: KnownKeys
    private let refusalLogged = Atomic<Bool>(false)

    let uploads = Atomic<Int>(0)
    let bytesOut = Atomic<Int>(0)
    let alreadyThere = Atomic<Int>(0)
    let dropped = Atomic<Int>(0)
    let errors = Atomic<Int>(0)

    init(client: RemoteCacheClient, cache: ContentCache, logger: Logger, threads: Int = 3,
         maxEntries: Int = 4096, maxBytes: Int = 256 << 20) {
        self.client = client
        self.cache = cache
        self.logger = logger
        self.maxBytes = maxBytes
        known = KnownKeys(capacity: 200_000)
        queue = BackgroundQueue(lanes: [.init(threads: threads, background: true, queueLimits: [maxEntries])])
    }

    /// Queues `key` for upload unless known present or the queue is full (then dropped). Never blocks
    /// on I/O.
    func offer(_ key: ObjectID, size: Int) {
        guard !known.contains(key) else { return }
        guard queuedBytes.add(size, ordering: .relaxed).newValue <= maxBytes else {
            queuedBytes.subtract(size, ordering: .relaxed)
            dropped.add(1, ordering: .relaxed)
            return
        }
        queuedCount.add(1, ordering: .relaxed)
        let done = { [self] in
            queuedBytes.subtract(size, ordering: .relaxed)
            queuedCount.subtract(1, ordering: .relaxed)
        }
        let queued = queue.submit(lane: 0, { [self] in
            upload(key)
            done()
        }, dropped: { [self] in
            dropped.add(1, ordering: .relaxed)
            done()
        })
        if !queued {
            dropped.add(1, ordering: .relaxed)
            done()
        }
    }

    /// Uploads one entry (HEAD first). Outcome counted.
    func upload(_ key: ObjectID) {
        switch uploadNow(key) {
        case .uploaded(let bytes):
            uploads.add(1, ordering: .relaxed)
            bytesOut.add(bytes, ordering: .relaxed)
        case .alreadyThere:
            alreadyThere.add(1, ordering: .relaxed)
        case .skipped, .notCached:
            break
        case .failed(let e):
            errors.add(1, ordering: .relaxed)
            if !refusalLogged.exchange(true, ordering: .relaxed) {
                logger.error("uploads to the remote cache fail: \(e.message) (said once; counted in remote_errors)")
            }
        }
    }

    enum Upload { case uploaded(Int), alreadyThere, notCached, skipped, failed(RemoteError) }

    /// HEAD, then PUT of the local entry's bytes; the key is remembered as present once it is.
    func uploadNow(_ key: ObjectID) -> Upload {
        if known.contains(key) { return .alreadyThere }
        switch client.head(key) {
        case .present:
            known.insert(key)
            return .alreadyThere
        case .failed(let e):
            return e.kind == .backingOff ? .skipped : .failed(e)
        case .absent:
            break
        }
        guard let entry = cache.lookup(key) else { return .notCached }
        let size = entry.encodedSize
        if let e = client.put(key, size: size, body: { offset, buffer in (try? entry.readEncoded(offset: offset, into: buffer)) ?? 0 }) {
            return e.kind == .backingOff ? .skipped : .failed(e)
        }
        known.insert(key)
        return .uploaded(size)
    }

    /// Stops taking offers, waits up to `grace` for the queue to empty, then drops what is left and
    /// joins the uploaders (an upload in progress finishes; its time-out bounds it).
    func shutdown(grace: Duration) {
        let deadline = MonotonicTime.now + grace
        while queuedCount.load(ordering: .relaxed) > 0 && MonotonicTime.now < deadline {
            usleep(10_000)
        }
        queue.shutdown()
    }
}

/// A bounded set of keys known to be in the remote: the oldest are forgotten first (forgetting one
/// only costs a HEAD). Thread-safe.
final class KnownKeys: Sendable {
    private struct State { var set = Set<ObjectID>(); var order: [ObjectID] = []; var head = 0 }
    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func contains(_ key: ObjectID) -> Bool { state.withLock { $0.set.contains(key) } }

    func insert(_ key: ObjectID) {
        state.withLock { s in
            guard s.set.insert(key).inserted else { return }
            s.order.append(key)
            if s.set.count > capacity {
                s.set.remove(s.order[s.head])
                s.head += 1
                if s.head > 4096, s.head * 2 > s.order.count { s.order.removeFirst(s.head); s.head = 0 }
            }
        }
    }
}
