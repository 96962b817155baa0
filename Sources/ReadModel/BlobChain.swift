import Basics
import ContentCache
import GitStore
import Logging
import Synchronization

/// The ordered chain of blob sources every blob read goes through: the opened table, then the held
/// sources (in-memory pending fills, the local content cache), then the loaders (the local packs).
/// Everything that is not "answer from where you are" happens here, once, for every source:
/// - **single-flight**: one load per object at a time, whoever asks (readers, read-ahead, prefetch);
///   under it the held sources are asked once more (a load that just finished, another process's fill);
/// - **counting**: reader hits and misses, loads (reader or speculative), joins, and per source asks
///   answered, missed, failed and fills taken;
/// - **fill-back**: content a loader made is offered to the held sources in order (a background fill
///   when the reader may not wait, else the cache at once); a blob bigger than `memoryServeLimit` that
///   was stored is then served from the cache, so memory stays bounded; content a loader streams into
///   the cache itself (`.streaming`) needs none (in `.now` mode it is streamed to the end first);
/// - **errors**: a source failing, or no source having an object a tree names, is one
///   `ResolverError.unavailable` (an I/O error for the reader), logged once per object with its
///   repository (unless the caller reports failures itself) — never "not found".
/// Thread-safe; no lock is held while a source works.
final class BlobChain: Sendable {
    let opened: OpenedContent
    /// Held sources, then loaders, in the order asked (the opened table not included).
    let sources: [any BlobSource]
    private let counts: [SourceCounter]
    private let openedCount = SourceCounter()
    private let flights = SingleFlight<ObjectID, LoadOutcome, ResolverError>()
    private let memoryServeLimit: Int
    private let logsFailures: Bool
    private let logger: Logger
    /// Objects whose failure was logged lately (each is logged once, not per reader or retry).
    private let loggedFailures = BoundedCache<ObjectID, Bool>(maxBytes: 256 << 10)
    private let storeFailureLogged = Atomic<Bool>(false)

    let hits = Atomic<Int>(0)
    let misses = Atomic<Int>(0)
    let blobLoads = Atomic<Int>(0)
    let speculativeLoads = Atomic<Int>(0)
    let joins = Atomic<Int>(0)

    init(opened: OpenedContent, sources: [any BlobSource], memoryServeLimit: Int, logsFailures: Bool, logger: Logger) {
        self.opened = opened
        self.sources = sources.filter { $0.role == .held } + sources.filter { $0.role == .loader }
        self.counts = self.sources.map { _ in SourceCounter() }
        self.memoryServeLimit = memoryServeLimit
        self.logsFailures = logsFailures
        self.logger = logger
    }

    /// Per-source counts, the opened table first.
    var sourceCounts: [BlobSourceCount] {
        [openedCount.snapshot(opened.name)] + zip(sources, counts).map { $1.snapshot($0.name) }
    }

    // MARK: the three questions

    /// The blob's content for a reader (or, `speculative`, for read-ahead: not counted for readers and
    /// not kept in the opened table — the kernel holds it then).
    func open(_ r: BlobRequest) throws(ResolverError) -> LoadedBlob {
        if let b = opened.open(r) {
            openedCount.hits.add(1, ordering: .relaxed)
            if !r.speculative { hits.add(1, ordering: .relaxed) }
            return b
        }
        openedCount.misses.add(1, ordering: .relaxed)
        let blob: LoadedBlob
        if let (b, _) = try askHeld(r) {
            if !r.speculative { hits.add(1, ordering: .relaxed) }
            blob = b
        } else {
            if !r.speculative { misses.add(1, ordering: .relaxed) }
            blob = try load(r, mode: .deferred).blob
        }
        if !r.speculative { opened.remember(r.id, blob) }
        return blob
    }

    /// Makes sure a durable source (the content cache) holds the blob. `speculative` read-ahead also
    /// takes content on its way there (pending) as present.
    func ensureStored(_ r: BlobRequest) throws(ResolverError) -> EnsureOutcome {
        if sources.contains(where: { ($0.isDurable || r.speculative) && $0.contains(r) }) { return .present }
        switch try load(r, mode: .now).fill {
        case .present, .stored, .deferred: return .loaded
        case .failed(let e): return .loadedNotStored(e)
        }
    }

    /// Content found damaged while read: forgotten, then loaded again and stored at once.
    func reload(_ r: BlobRequest) throws(ResolverError) -> LoadedBlob {
        opened.forget(r.id)
        let blob = try load(r, mode: .now).blob
        if !r.speculative { opened.remember(r.id, blob) }
        return blob
    }

    /// A cache entry failed while being read (it drops itself); the blob is about to be reloaded.
    func logDamagedEntry(_ r: BlobRequest, _ error: CacheError) {
        logger.error("damaged cache entry, reloading from the packs", metadata: [
            "repository": "\(r.repository.name)", "object": "\(r.id)", "error": "\(error)",
        ])
    }

    /// The blob's size from the first source that knows it without loading content.
    func size(_ r: BlobRequest) throws(ResolverError) -> Int {
        if let s = opened.size(of: r) { return s }
        for (i, source) in sources.enumerated() {
            do { if let s = try source.size(of: r) { return s } } catch {
                counts[i].errors.add(1, ordering: .relaxed)
                throw failure(r, "\(source.name): \(error)")
            }
        }
        throw failure(r, "no blob source has it (the mirror is damaged or incomplete)")
    }

    /// The blob's size if a source other than the origin knows it (no fetch); nil otherwise.
    func localSize(_ r: BlobRequest) -> Int? {
        if let s = opened.size(of: r) { return s }
        for source in sources where !(source is OriginSource) {
            if let s = try? source.size(of: r) { return s }
        }
        return nil
    }

    // MARK: inside

    /// The first held source that has the blob, and its index.
    private func askHeld(_ r: BlobRequest) throws(ResolverError) -> (LoadedBlob, Int)? {
        for (i, source) in sources.enumerated() where source.role == .held {
            let found: LoadedBlob?
            do { found = try source.open(r) } catch {
                counts[i].errors.add(1, ordering: .relaxed)
                throw failure(r, "\(source.name): \(error)")
            }
            if let found {
                counts[i].hits.add(1, ordering: .relaxed)
                return (found, i)
            }
            counts[i].misses.add(1, ordering: .relaxed)
        }
        return nil
    }

    /// One load through the single-flight: held sources once more, then the loaders in order, then
    /// fill-back. Joiners share the leader's outcome, error included. A reader's blob (an open, `.deferred`)
    /// goes into the opened table before the flight ends (invariant relied on: a reader that comes after the flight finds it
    /// there, or in a held source, and never starts a second load of a blob still streaming).
    /// The opened table is asked again first, under the flight, for an open (`.deferred`): a reader that
    /// missed it while an earlier flight was still loading, and reached `flights.run` only after that
    /// flight ended, finds the blob the earlier leader put there instead of loading it again.
    private func load(_ r: BlobRequest, mode: FillMode) throws(ResolverError) -> LoadOutcome {
        let outcome = try flights.run(r.id) { () throws(ResolverError) -> LoadOutcome in
            if mode == .deferred, let b = opened.open(r) { return LoadOutcome(blob: b, fill: .present) }
            let made = try loadOnce(r, mode: mode)
            // A reader's open (`.deferred`); `ensureStored` and `reload` store now and hold nothing here.
            if !r.speculative, mode == .deferred { opened.remember(r.id, made.blob) }
            return made
        }
        if outcome.joined { joins.add(1, ordering: .relaxed) }
        return outcome.value
    }

    /// The leader's work in `load`.
    private func loadOnce(_ r: BlobRequest, mode: FillMode) throws(ResolverError) -> LoadOutcome {
        if let (found, i) = try askHeld(r) {
            // Held only in memory (a pending fill) but wanted on disk now: store it.
            guard mode == .now, !sources[i].isDurable, case .memory(let bytes) = found else {
                return LoadOutcome(blob: found, fill: .present)
            }
            return try fillBack(r, bytes, mode: .now, from: i)
        }
        for (i, source) in sources.enumerated() where source.role == .loader {
            let made: LoadedBlob?
            do { made = try source.open(r) } catch {
                counts[i].errors.add(1, ordering: .relaxed)
                throw failure(r, "\(source.name): \(error)")
            }
            guard let made else {
                counts[i].misses.add(1, ordering: .relaxed)
                continue
            }
            counts[i].hits.add(1, ordering: .relaxed)
            switch made {
            case .cached:
                // A ready-made entry the loader put in the cache itself (a remote cache): nothing was
                // inflated, so it is no blob load, and there is nothing to fill back.
                return LoadOutcome(blob: made, fill: .present)
            case .streaming(let s):
                if r.speculative { speculativeLoads.add(1, ordering: .relaxed) } else { blobLoads.add(1, ordering: .relaxed) }
                // Being written into the cache by the loader; a caller that needs it stored now
                // (prefetch, a reload) streams it to the end here.
                guard mode == .now else { return LoadOutcome(blob: made, fill: .deferred) }
                if let e = try s.finish() { return LoadOutcome(blob: made, fill: .failed(e)) }
                return LoadOutcome(blob: made, fill: .stored)
            case .memory(let bytes):
                if r.speculative { speculativeLoads.add(1, ordering: .relaxed) } else { blobLoads.add(1, ordering: .relaxed) }
                return try fillBack(r, bytes, mode: mode, from: i)
            }
        }
        throw failure(r, "no blob source has it (the mirror is damaged or incomplete)")
    }

    /// Offers loaded bytes to the held sources in order (never back to the one they came from); the
    /// first that takes them ends the fill.
    private func fillBack(_ r: BlobRequest, _ bytes: BlobBuffer, mode: FillMode, from origin: Int) throws(ResolverError) -> LoadOutcome {
        for (i, source) in sources.enumerated() where i != origin && source.role == .held {
            guard let result = source.accept(r, bytes, mode: mode) else { continue }
            counts[i].fills.add(1, ordering: .relaxed)
            switch result {
            case .deferred:
                return LoadOutcome(blob: .memory(bytes), fill: .deferred)
            case .stored:
                if bytes.count > memoryServeLimit, let entry = try? source.open(r) {
                    return LoadOutcome(blob: entry, fill: .stored)
                }
                return LoadOutcome(blob: .memory(bytes), fill: .stored)
            case .failed(let e) where e.kind == .verifyFailed:
                // The bytes do not hash to their id: damage, never served.
                throw failure(r, "its content does not match its id (\(e))")
            case .failed(let e):
                // Full disk, read-only cache: the reader is served from memory anyway; said once (those
                // two by the cache itself, other failures here).
                if logsFailures, e.kind != .noSpace, e.kind != .readOnly, !storeFailureLogged.exchange(true, ordering: .relaxed) {
                    logger.error("blobs are not being stored in the \(source.name): \(e)")
                }
                return LoadOutcome(blob: .memory(bytes), fill: .failed(e))
            }
        }
        return LoadOutcome(blob: .memory(bytes), fill: .present)
    }

    /// The error a reader gets for an object no source could give, logged once per object.
    private func failure(_ r: BlobRequest, _ reason: String) -> ResolverError {
        failure(object: r.id, kind: "blob", repository: r.repository.name, reason)
    }

    /// `.unavailable` for an object (a blob, or a tree a commit names), logged once per object.
    func failure(object id: ObjectID, kind: String, repository: String, _ reason: String) -> ResolverError {
        if logsFailures, loggedFailures.value(for: id) == nil {
            loggedFailures.set(true, for: id, bytes: 64)
            logger.error("cannot read a \(kind)", metadata: [
                "repository": "\(repository)", "object": "\(id.hex)", "reason": "\(reason)",
            ])
        }
        return .unavailable(object: id, repository: repository, reason: reason)
    }
}

/// What one load gave: the content and what became of its fill.
struct LoadOutcome: Sendable {
    let blob: LoadedBlob
    let fill: FillState
}

/// Where a load's content went: already held (no fill needed), queued, stored, or not storable.
enum FillState: Sendable {
    case present, deferred, stored
    case failed(CacheError)
}

/// What `ensureStored` did.
public enum EnsureOutcome: Sendable, Equatable {
    /// The cache held it already; nothing was loaded.
    case present
    /// Loaded (by this call or a load it joined) and stored.
    case loaded
    /// Loaded, but the cache could not store it (full disk, read-only cache).
    case loadedNotStored(CacheError)
}

/// Per-source counters.
final class SourceCounter: Sendable {
    let hits = Atomic<Int>(0)
    let misses = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let fills = Atomic<Int>(0)

    func snapshot(_ name: String) -> BlobSourceCount {
        BlobSourceCount(name: name, hits: hits.load(ordering: .relaxed), misses: misses.load(ordering: .relaxed),
                        errors: errors.load(ordering: .relaxed), fills: fills.load(ordering: .relaxed))
    }
}
