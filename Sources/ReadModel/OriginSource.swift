import Basics
import ContentCache
import Foundation
import GitStore
import Synchronization

/// The origin of a blobless (partial) mirror as the last blob source: a blob the mirror lacks is fetched
/// from the origin (`Repository.fetchObjects`, one `git fetch` by id) into the mirror, then read from the
/// new pack like any local blob. Never one request per file: a miss fetches, in that one request, the
/// missing blobs of the directory the blob was reached through (the request's `batch` hint; at most
/// `maxBatch` ids), so listing, stat-ing and reading a directory cost one fetch. Sizes likewise: the
/// chain asks this source last, after the packs (nil for a missing blob) and any remote cache, and the
/// size it gives is read from the fetched object's header — exact, never guessed.
///
/// Single-flight per object is the chain's; per batch it is this source's: a blob covered by a batch in
/// flight waits for that batch and never starts a second fetch. Offline: a failed fetch is an error at
/// once (the chain makes it EIO and logs it once per object), and for `retryAfter` further misses of
/// that repository fail at once without starting git again; git itself runs under a time-out and is
/// killed and reaped when it passes. Full mirrors are never touched (nil at once).
/// Thread-safe; no lock is held while git runs.
public final class OriginSource: BlobSource {
    public let name = "origin"
    public let role = BlobSourceRole.loader
    private let cache: ContentCache?
    private let packs: PackSource
    /// Most ids asked in one fetch for a directory.
    public let maxBatch: Int
    /// Most ids asked in one fetch by `fetchAll` (prefetch).
    public let maxBulk: Int
    public let timeout: Duration
    public let retryAfter: Duration

    private final class Batch: Sendable {
        let condition = NSCondition()
        nonisolated(unsafe) var outcome: Result<Void, GitStoreError>?   // guarded by `condition`

        func wait() -> Result<Void, GitStoreError> {
            condition.lock()
            defer { condition.unlock() }
            while outcome == nil { condition.wait() }
            return outcome!
        }

        func finish(_ r: Result<Void, GitStoreError>) {
            condition.lock()
            outcome = r
            condition.broadcast()
            condition.unlock()
        }
    }

    private struct RepoState {
        var inflight: [ObjectID: Batch] = [:]
        var failedAt: MonotonicTime?
        var failure: GitStoreError?
    }
    /// Per repository (by path): the batches in flight and the last failure.
    private let state = Mutex<[String: RepoState]>([:])

    /// Set by `shutdown`: fetches in flight are stopped (git killed and reaped) and no new one starts.
    private let stopping = Atomic<Bool>(false)

    let fetches = Atomic<Int>(0)
    let objects = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let batchJoins = Atomic<Int>(0)

    /// - Parameters:
    ///   - cache: blobs it holds are left out of a directory's batch (they need no fetch).
    ///   - timeout: how long one fetch may take before git is killed (plus a second per 100 ids); nil:
    ///     `GITFS_ORIGIN_TIMEOUT` (seconds) from the environment, else 120 s.
    ///   - packs: reads a blob once it is fetched into the mirror (the resolver's streaming packs source).
    public init(cache: ContentCache?, packs: PackSource = PackSource(), maxBatch: Int = 5000, maxBulk: Int = 50_000,
                timeout: Duration? = nil, retryAfter: Duration = .seconds(5)) {
        self.cache = cache
        self.packs = packs
        self.maxBatch = maxBatch
        self.maxBulk = maxBulk
        let fromEnvironment = ProcessInfo.processInfo.environment["GITFS_ORIGIN_TIMEOUT"].flatMap(Double.init)
            .flatMap { $0 > 0 ? Duration.milliseconds(Int64($0 * 1000)) : nil }
        self.timeout = timeout ?? fromEnvironment ?? .seconds(120)
        self.retryAfter = retryAfter
    }

    /// Stops fetches in flight and refuses new ones (their readers get EIO): an unmount does not wait
    /// for a slow origin. Idempotent.
    public func shutdown() { stopping.store(true, ordering: .relaxed) }

    /// Counters since start.
    public var counters: OriginCounters {
        OriginCounters(fetches: fetches.load(ordering: .relaxed), objects: objects.load(ordering: .relaxed),
                       bytes: bytes.load(ordering: .relaxed), errors: errors.load(ordering: .relaxed),
                       batchJoins: batchJoins.load(ordering: .relaxed))
    }

    public func size(of request: BlobRequest) throws(ResolverError) -> Int? {
        guard request.repository.isPartial else { return nil }
        // A large cache entry's size is in its file's header, not in the cache's index: read before asking
        // the origin (the blob may be cached and no longer in the mirror after `gitfs gc`).
        if let entry = cache?.lookup(request.id) { return entry.size }
        try obtain(request)
        do { return try request.repository.header(request.id).size } catch {
            throw missing(request, error)
        }
    }

    public func open(_ request: BlobRequest) throws(ResolverError) -> LoadedBlob? {
        guard request.repository.isPartial else { return nil }
        try obtain(request)
        // Read from the fetched pack the way the packs source reads any blob (a big one streamed into
        // the cache, never inflated whole).
        guard let read = try packs.open(request) else {
            throw missing(request, GitStoreError(.notFound, "object \(request.id.hex) is not in the mirror"))
        }
        return read
    }

    /// Fetches every blob of `ids` that neither the mirror nor the content cache holds, in requests of
    /// at most `maxBulk` ids (blobs in a batch already in flight are waited for, not asked twice).
    /// Returns how many ids were asked of the origin. For `gitfs prefetch`: a few large requests instead
    /// of one per directory.
    public func fetchAll(_ ids: [ObjectID], repository: Repository, cancelled: (@Sendable () -> Bool)? = nil) throws(ResolverError) -> Int {
        guard repository.isPartial else { return 0 }
        var seen = Set<ObjectID>()
        let wanted = ids.filter { seen.insert($0).inserted && !isLocal($0, repository) }
        var asked = 0
        var start = 0
        while start < wanted.count, cancelled?() != true {
            let chunk = Array(wanted[start..<min(start + maxBulk, wanted.count)])
            start += chunk.count
            let (mine, others) = claim(chunk, repository: repository)
            asked += mine?.ids.count ?? 0
            if let mine { try wrap(run(mine.batch, mine.ids, repository, cancelled: cancelled)) }
            for b in others { try wrap(b.wait()) }
        }
        return asked
    }

    // MARK: inside

    /// Makes sure a fetch covering `request.id` has run (started here or joined), or throws.
    private func obtain(_ r: BlobRequest) throws(ResolverError) {
        let repo = r.repository
        // Fetched meanwhile (by a batch for a sibling): nothing to do.
        if repo.contains(r.id) { return }
        if let failure = recentFailure(repo) { throw .git(GitStoreError(.network, failure.message)) }
        if let existing = state.withLock({ $0[repo.path]?.inflight[r.id] }) {
            batchJoins.add(1, ordering: .relaxed)
            try wrap(existing.wait())
            return
        }
        var ids = [r.id]
        if let siblings = r.batch?() {
            var seen: Set<ObjectID> = [r.id]
            // The directory's blobs from the one asked for on (then from the start), so a directory bigger
            // than a batch is covered by consecutive batches.
            let at = siblings.firstIndex(of: r.id) ?? 0
            for id in siblings[at...] + siblings[..<at] where ids.count < maxBatch {
                if seen.insert(id).inserted, !isLocal(id, repo) { ids.append(id) }
            }
        }
        let (mine, others) = claim(ids, repository: repo)
        if let mine {
            try wrap(run(mine.batch, mine.ids, repo))
        }
        // `r.id` was claimed by another batch between the look above and the claim: wait for it.
        if mine?.ids.contains(r.id) != true, let b = others.first {
            batchJoins.add(1, ordering: .relaxed)
            try wrap(b.wait())
        }
    }

    /// Registers a new batch for the ids of `ids` no batch in flight covers; returns it (nil when every
    /// id is covered) and the batches in flight that cover the rest. One atomic step.
    private func claim(_ ids: [ObjectID], repository: Repository) -> (mine: (batch: Batch, ids: [ObjectID])?, others: [Batch]) {
        state.withLock { all in
            var s = all[repository.path] ?? RepoState()
            var fresh: [ObjectID] = []
            var others: [Batch] = []
            var othersSeen = Set<ObjectIdentifier>()
            for id in ids {
                if let b = s.inflight[id] {
                    if othersSeen.insert(ObjectIdentifier(b)).inserted { others.append(b) }
                } else {
                    fresh.append(id)
                }
            }
            guard !fresh.isEmpty else {
                all[repository.path] = s
                return (nil, others)
            }
            let b = Batch()
            for id in fresh { s.inflight[id] = b }
            all[repository.path] = s
            return ((b, fresh), others)
        }
    }

    /// Runs one fetch for a claimed batch, then releases its ids and wakes its waiters.
    private func run(_ batch: Batch, _ ids: [ObjectID], _ repo: Repository,
                     cancelled: (@Sendable () -> Bool)? = nil) -> Result<Void, GitStoreError> {
        // A bulk request may take long: its time-out grows with its size (a second per 100 ids).
        let limit = timeout + .seconds(ids.count / 100)
        let stop: @Sendable () -> Bool = { [self] in stopping.load(ordering: .relaxed) || cancelled?() == true }
        let outcome = Result { () throws(GitStoreError) in
            if stop() { throw GitStoreError(.network, "the mount is stopping") }
            try repo.fetchObjects(ids, timeout: limit, cancelled: stop)
        }
        fetches.add(1, ordering: .relaxed)
        switch outcome {
        case .success:
            objects.add(ids.count, ordering: .relaxed)
            var total = 0
            for id in ids { total += (try? repo.header(id).size) ?? 0 }
            bytes.add(total, ordering: .relaxed)
        case .failure:
            errors.add(1, ordering: .relaxed)
        }
        state.withLock { all in
            guard var s = all[repo.path] else { return }
            for id in ids where s.inflight[id] === batch { s.inflight.removeValue(forKey: id) }
            switch outcome {
            case .success: s.failedAt = nil; s.failure = nil
            case .failure(let e): s.failedAt = .now; s.failure = e
            }
            all[repo.path] = s
        }
        batch.finish(outcome)
        return outcome
    }

    /// The last failure of this repository's origin if it is younger than `retryAfter`.
    private func recentFailure(_ repo: Repository) -> GitStoreError? {
        state.withLock { all in
            guard let s = all[repo.path], let at = s.failedAt, MonotonicTime.now - at < retryAfter else { return nil }
            return s.failure
        }
    }

    /// True when the mirror or the content cache holds the blob.
    private func isLocal(_ id: ObjectID, _ repo: Repository) -> Bool {
        cache?.contains(id) == true || repo.contains(id)
    }

    /// A fetch's failure as the source's error (the chain makes it `.unavailable`, EIO, logged once).
    private func wrap(_ r: Result<Void, GitStoreError>) throws(ResolverError) {
        if case .failure(let e) = r { throw .git(GitStoreError(.network, e.message)) }
    }

    /// A blob still missing after its fetch succeeded: the origin did not send it.
    private func missing(_ r: BlobRequest, _ error: GitStoreError) -> ResolverError {
        if error.kind != .notFound { return .git(error) }
        return .git(GitStoreError(.network, "the origin of '\(r.repository.name)' did not send object \(r.id.hex)"))
    }
}

/// Counters of the origin source: fetches run, objects asked, uncompressed bytes of the blobs they
/// brought, failed fetches, and reads that waited for a batch in flight instead of fetching.
public struct OriginCounters: Sendable, Equatable {
    public let fetches: Int
    public let objects: Int
    public let bytes: Int
    public let errors: Int
    public let batchJoins: Int
}
