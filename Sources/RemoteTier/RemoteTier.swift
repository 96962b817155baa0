import Basics
import ContentCache
import GitStore
import Logging
import ReadAhead
import ReadModel
import RemoteCache
import Synchronization
import Threads

/// How a remote cache is used.
public enum RemoteCacheMode: String, Sendable, CaseIterable {
    /// Blobs are read from the remote; nothing is uploaded.
    case read
    /// Also: blobs this process stores in its local cache are uploaded in the background.
    case readWrite = "read-write"
}

/// Where the remote stands against the local packs in the chain.
public enum RemoteCacheOrder: String, Sendable, CaseIterable {
    /// By size: blobs of at least `RemoteTier.autoThreshold` (1 MiB) from the remote first, smaller ones
    /// from the packs first (a small blob inflates in microseconds; a GET costs a round trip).
    case auto
    case remoteFirst = "remote-first"
    case packsFirst = "packs-first"
}

/// Counters of a remote cache (the `remote_*` fields of the stats). A value.
public struct RemoteCounters: Sendable, Equatable {
    public var hits = 0, misses = 0, errors = 0, bytesIn = 0, uploads = 0, bytesOut = 0
    public var alreadyThere = 0, dropped = 0
    public var state = "ok"
}

/// One remote cache attached to a local content cache: the loaders to put in the chain (`loaders`),
/// the fetch-check-publish of entries, sizes from entry headers, and (read-write) the background
/// write-back of what this process stores. Failures are counted and each kind is logged once; none
/// reaches a reader. Thread-safe; `shutdown()` joins the uploaders (after a short grace).
public final class RemoteTier: Sendable {
    /// Blobs from this size up are asked of the remote before the packs in `auto` order: below it a
    /// local load (inflate, then compress for the cache) costs less than a GET and the checks of the
    /// entry; from 1 MiB up the remote costs less (measured crossover: BENCHMARKS.md, "Remote cache").
    public static let autoThreshold = 1 << 20

    public let client: RemoteCacheClient
    public let cache: ContentCache
    public let mode: RemoteCacheMode
    let logger: Logger
    let writeBack: WriteBack?

    let hits = Atomic<Int>(0)
    let misses = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let bytesIn = Atomic<Int>(0)
    private let loggedKinds = Mutex<Set<String>>([])

    /// - Parameter uploadsStores: read-write mode uploads what this process stores, in the background;
    ///   false leaves uploading to explicit `push` calls (`gitfs prefetch --push`).
    public init(client: RemoteCacheClient, cache: ContentCache, mode: RemoteCacheMode, uploadsStores: Bool = true, logger: Logger) {
        self.client = client
        self.cache = cache
        self.mode = mode
        self.logger = logger
        writeBack = mode == .readWrite ? WriteBack(client: client, cache: cache, logger: logger) : nil
        if let writeBack, uploadsStores {
            cache.observeStores { key, size in writeBack.offer(key, size: size) }
        }
    }

    /// The chain's loaders in `order`: the remote around the local packs.
    public func loaders(order: RemoteCacheOrder) -> [any BlobSource] {
        switch order {
        case .remoteFirst:
            return [RemoteCacheSource(remote: self, gate: nil, answersSizes: true), PackSource()]
        case .packsFirst:
            return [PackSource(), RemoteCacheSource(remote: self, gate: nil, answersSizes: true)]
        case .auto:
            let t = Self.autoThreshold
            return [RemoteCacheSource(remote: self, gate: { ($0 ?? 0) >= t }, answersSizes: false), PackSource(),
                    RemoteCacheSource(remote: self, gate: { ($0 ?? 0) < t }, answersSizes: true)]
        }
    }

    public var counters: RemoteCounters {
        var c = RemoteCounters()
        c.hits = hits.load(ordering: .relaxed)
        c.misses = misses.load(ordering: .relaxed)
        c.errors = errors.load(ordering: .relaxed) + (writeBack?.errors.load(ordering: .relaxed) ?? 0)
        c.bytesIn = bytesIn.load(ordering: .relaxed)
        c.uploads = writeBack?.uploads.load(ordering: .relaxed) ?? 0
        c.bytesOut = writeBack?.bytesOut.load(ordering: .relaxed) ?? 0
        c.alreadyThere = writeBack?.alreadyThere.load(ordering: .relaxed) ?? 0
        c.dropped = writeBack?.dropped.load(ordering: .relaxed) ?? 0
        c.state = client.state
        return c
    }

    /// The stats fields, in order.
    public var statsFields: [(String, String)] { Self.statsFields(counters) }

    /// The stats fields of a mount without a remote cache: the same names, zeros, state "off" (so a
    /// program reading the stats finds every field whatever the configuration).
    public static var disabledStatsFields: [(String, String)] {
        var c = RemoteCounters()
        c.state = "off"
        return statsFields(c)
    }

    private static func statsFields(_ c: RemoteCounters) -> [(String, String)] {
        [("remote_hits", "\(c.hits)"), ("remote_misses", "\(c.misses)"), ("remote_errors", "\(c.errors)"),
                ("remote_bytes_in", "\(c.bytesIn)"), ("remote_uploads", "\(c.uploads)"), ("remote_bytes_out", "\(c.bytesOut)"),
                ("remote_state", "\"\(c.state)\"")]
    }

    /// Probes the remote (see `RemoteCacheClient.probe`): nil when usable, else one line for the user.
    public func probe() -> String? {
        guard let e = client.probe() else { return nil }
        errors.add(1, ordering: .relaxed)
        noteOnce(e.kind)
        return "\(e.message); reading from the local packs meanwhile"
    }

    /// Waits up to `grace` for queued uploads, then drops the rest and joins the uploaders. Idempotent.
    public func shutdown(grace: Duration = .seconds(2)) {
        cache.observeStores(nil)
        writeBack?.shutdown(grace: grace)
    }

    /// What `push` did. A value.
    public struct PushSummary: Sendable {
        public var uploaded = 0, alreadyThere = 0, notCached = 0, failed = 0, bytes = 0
        /// Not tried: the remote was backing off after repeated failures.
        public var skipped = 0
        public var firstError: String?
        public var done: Int { uploaded + alreadyThere + notCached + failed + skipped }
    }

    /// Uploads the local cache entries of `ids` the remote lacks (HEAD first), `jobs` at a time, on
    /// threads joined before it returns. `onProgress` is called from the workers (keep it cheap).
    /// Read-write mode only (nothing is uploaded otherwise).
    public func push(_ ids: [ObjectID], jobs: Int, onProgress: (@Sendable (PushSummary) -> Void)? = nil) -> PushSummary {
        guard let writeBack else { return PushSummary() }
        let total = Mutex(PushSummary())
        let next = Atomic<Int>(0)
        WorkerThreads.run(count: max(1, min(jobs, ids.count))) { _ in
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < ids.count else { break }
                let outcome = writeBack.uploadNow(ids[i])
                let snapshot = total.withLock { t -> PushSummary in
                    switch outcome {
                    case .uploaded(let n): t.uploaded += 1; t.bytes += n
                    case .alreadyThere: t.alreadyThere += 1
                    case .notCached: t.notCached += 1
                    case .skipped: t.skipped += 1
                    case .failed(let e): t.failed += 1; if t.firstError == nil { t.firstError = e.message }
                    }
                    return t
                }
                switch outcome {
                case .uploaded(let n):
                    writeBack.uploads.add(1, ordering: .relaxed)
                    writeBack.bytesOut.add(n, ordering: .relaxed)
                case .failed: writeBack.errors.add(1, ordering: .relaxed)
                default: break
                }
                onProgress?(snapshot)
            }
        }
        return total.withLock { $0 }
    }

    // MARK: for the source

    /// GETs, checks and publishes the entry of `id`; nil on any miss or failure (counted, logged once).
    func fetch(_ id: ObjectID, sizeHint: Int?) -> CacheEntry? {
        if client.isSkipping { return nil }
        let imp: EntryImport
        do { imp = try cache.beginImport(id) } catch {
            fail(.local, "cannot import remote cache entries into the local cache: \(error)")
            return nil
        }
        var localError: CacheError?
        let fetched = client.get(id, sizeHint: sizeHint) { bytes in
            do throws(CacheError) { try imp.append(bytes) } catch {
                localError = error
                return false
            }
            return true
        }
        switch fetched {
        case .notFound:
            misses.add(1, ordering: .relaxed)
            return nil
        case .failed(let e):
            if let localError { fail(.local, "cannot write a remote cache entry locally: \(localError)") } else {
                if e.kind == .backingOff { return nil }
                fail(e.kind, e.message)
            }
            return nil
        case .found:
            break
        }
        let entry: CacheEntry
        do {
            entry = try cache.commitImport(imp) { size in
                let hasher = GitHash.BlobHasher(size: size)
                return StreamingVerifier(update: { hasher.update($0) }, matches: { hasher.finish() == id })
            }
        } catch {
            fail(.bad, "the remote cache \(client.url) gave a damaged or wrong entry for \(id) (\(error.message)); not used")
            return nil
        }
        hits.add(1, ordering: .relaxed)
        bytesIn.add(imp.written, ordering: .relaxed)
        return entry
    }

    /// The content size from the entry's header (a ranged GET of its start); nil when absent or on failure.
    func remoteSize(_ id: ObjectID) -> Int? {
        if client.isSkipping { return nil }
        var want = EntryPrefix.bytesNeeded(chunks: 64)
        for _ in 0..<2 {
            var buf: [UInt8] = []
            let limit = want
            switch client.get(id, range: 0...(want - 1), sizeHint: want, sink: { bytes in
                buf.append(contentsOf: bytes.prefix(limit - buf.count))
                return true
            }) {
            case .notFound: return nil
            case .failed(let e):
                if e.kind != .backingOff { fail(e.kind, e.message) }
                return nil
            case .found: break
            }
            switch buf.withUnsafeBytes({ EntryPrefix.parse($0, key: id) }) {
            case .size(let s): return s
            case .needMore(let n) where n > want && buf.count >= want:
                want = n
            default:
                fail(.bad, "the remote cache \(client.url) gave a damaged entry header for \(id); not used")
                return nil
            }
        }
        return nil
    }

    /// Counts a failure and logs its kind the first time.
    func fail(_ kind: RemoteError.Kind, _ message: String) {
        errors.add(1, ordering: .relaxed)
        noteOnce(kind, message)
    }

    private func noteOnce(_ kind: RemoteError.Kind, _ message: String? = nil) {
        let first = loggedKinds.withLock { $0.insert("\(kind)").inserted }
        if first, let message { logger.error("\(message) (said once; counted in remote_errors)") }
    }
}
