import Basics
import ContentCache
import Foundation
import GitStore
import ReadModel
import Synchronization
import Threads

#if canImport(Glibc)
import Glibc
#endif

/// Loads into the content cache every blob (files, executables, symlinks; not submodules) of one or
/// more revisions of a repository whose path matches a `PathFilter`.
///
/// How: the trees of all revisions are walked in parallel breadth-first (a tree reached twice at the
/// same place is read once; subtrees no pattern can match are skipped), the distinct blob ids are
/// collected, those already in the cache are skipped, and the rest are loaded by `jobs` worker threads
/// through the read model's chain (`RepoView.ensureCached`) — single-flight within the process, each worker on its
/// own pooled libgit2 handle, every blob verified against its id before it is published. Workers are
/// real threads, bounded by `jobs` and joined before `run` returns; nothing outlives the call.
/// Cancellation (`PrefetchCancellation`) is checked before each object: workers finish the object in
/// hand and stop; the cache only ever holds complete entries (it publishes atomically).
/// Thread-safe: one `Prefetcher` may run several times, also concurrently.
public final class Prefetcher: Sendable {
    public let view: RepoView
    public let filter: PathFilter
    public let jobs: Int
    public let cancellation: PrefetchCancellation

    /// - Parameters:
    ///   - jobs: worker threads (at least 1); the default is the number of active cores.
    public init(view: RepoView, filter: PathFilter, jobs: Int = ProcessInfo.processInfo.activeProcessorCount,
                cancellation: PrefetchCancellation = PrefetchCancellation()) {
        self.view = view
        self.filter = filter
        self.jobs = max(1, jobs)
        self.cancellation = cancellation
    }

    /// The commits `revisions` name (the default branch when empty); throws on the first bad one
    /// before anything is loaded.
    public func resolve(_ revisions: [String]) throws(ResolverError) -> [ObjectID] {
        var revs = revisions
        if revs.isEmpty {
            guard let b = try view.refs().defaultBranch else {
                throw .notFound("a default branch of repository '\(view.name)' (name a revision with --rev)")
            }
            revs = ["refs/heads/" + b]
        }
        var out: [ObjectID] = []
        for r in revs {
            let id = try view.resolve(r)
            if !out.contains(id) { out.append(id) }
        }
        return out
    }

    /// Walks, checks and loads (see the type's documentation). `onProgress` is called from a separate
    /// thread at most once per `progressInterval` while work is going on, and once more at the end.
    /// Throws only for a bad revision or an unreadable tree; failures of single blobs (loads, and
    /// stores into the cache) are counted in the summary.
    public func run(revisions: [String], progressInterval: Duration = .milliseconds(100),
                    onProgress: (@Sendable (PrefetchProgress) -> Void)? = nil) throws(ResolverError) -> PrefetchSummary {
        let start = MonotonicTime.now
        let commits = try resolve(revisions)
        var roots: [ObjectID] = []
        for c in commits { roots.append(try view.commit(c).tree) }

        let state = RunState()
        let reporter = onProgress.map { cb in
            WorkerThreads.start(count: 1) { _ in
                while !state.finished.load(ordering: .acquiring) {
                    var slept = Duration.zero
                    while slept < progressInterval, !state.finished.load(ordering: .acquiring) {
                        usleep(10_000)
                        slept += .milliseconds(10)
                    }
                    if state.finished.load(ordering: .acquiring) { break }
                    cb(state.snapshot(elapsed: MonotonicTime.now - start))
                }
            }
        }
        let blobs: [FoundBlob]
        do { blobs = try walk(roots: roots, state: state) } catch {
            state.finished.store(true, ordering: .releasing)
            reporter?.join()
            throw error
        }
        var summary = PrefetchSummary()
        summary.matched = blobs.count

        // A blobless mirror: every blob it lacks comes from the origin first, in a few large requests
        // (not one per directory); a failure shows when the objects are loaded below.
        if view.repository.isPartial, !cancellation.isCancelled {
            let cancellation = self.cancellation
            _ = try? view.fetchMissing(blobs.map(\.id), cancelled: { cancellation.isCancelled })
        }

        // Check which are cached already; learn the sizes of the others (object headers, no inflating).
        state.phase.store(1, ordering: .relaxed)
        state.total.store(blobs.count, ordering: .relaxed)
        state.done.store(0, ordering: .relaxed)
        let cache = view.cache
        let missing = Mutex<[(index: Int, size: Int)]>([])
        let cachedCount = Atomic<Int>(0)
        let next = Atomic<Int>(0)
        WorkerThreads.run(count: jobs) { _ in
            var local: [(index: Int, size: Int)] = []
            while !self.cancellation.isCancelled {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < blobs.count else { break }
                let id = blobs[i].id
                if cache.contains(id) {
                    cachedCount.add(1, ordering: .relaxed)
                } else {
                    // The size only feeds the progress bar; a failure shows when the object is loaded.
                    local.append((i, (try? self.view.blobSize(id)) ?? 0))
                }
                state.done.add(1, ordering: .relaxed)
            }
            missing.withLock { $0.append(contentsOf: local) }
        }
        // Walk order: neighbours in the tree tend to be neighbours in the pack.
        let toLoad = missing.withLock { $0 }.sorted { $0.index < $1.index }
        summary.alreadyCached = cachedCount.load(ordering: .relaxed)

        // Load.
        state.phase.store(2, ordering: .relaxed)
        state.total.store(toLoad.count, ordering: .relaxed)
        state.done.store(0, ordering: .relaxed)
        state.bytesTotal.store(toLoad.reduce(0) { $0 + $1.size }, ordering: .relaxed)
        let loadedCount = Atomic<Int>(0)
        let loadedBytes = Atomic<Int>(0)
        let failures = Mutex<(count: Int, first: [(path: String, id: ObjectID, error: String)])>((0, []))
        let notStored = Mutex<(count: Int, reason: String?)>((0, nil))
        let next2 = Atomic<Int>(0)
        let view = self.view
        if !cancellation.isCancelled {
            WorkerThreads.run(count: jobs) { _ in
                while !self.cancellation.isCancelled {
                    let i = next2.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < toLoad.count else { break }
                    let (index, size) = toLoad[i]
                    let blob = blobs[index]
                    do throws(ResolverError) {
                        // Missing when checked: through the chain's single-flight load (it looks in the
                        // cache once more, so an object another process filled meanwhile is not reloaded).
                        switch try view.ensureCached(blob.id) {
                        case .present, .loaded:
                            loadedCount.add(1, ordering: .relaxed)
                            loadedBytes.add(size, ordering: .relaxed)
                        case .loadedNotStored(let why):
                            notStored.withLock { n in
                                n.count += 1
                                if n.reason == nil { n.reason = why.description }
                            }
                        }
                    } catch {
                        let path = String(decoding: blob.path, as: UTF8.self)
                        failures.withLock { (f: inout (count: Int, first: [(path: String, id: ObjectID, error: String)])) in
                            f.count += 1
                            if f.first.count < 5 { f.first.append((path, blob.id, error.description)) }
                        }
                    }
                    state.bytesDone.add(size, ordering: .relaxed)
                    state.done.add(1, ordering: .relaxed)
                }
            }
        }
        summary.loaded = loadedCount.load(ordering: .relaxed)
        summary.loadedBytes = loadedBytes.load(ordering: .relaxed)
        let f = failures.withLock { $0 }
        let n = notStored.withLock { $0 }
        summary.notStored = n.count
        summary.notStoredReason = n.reason
        summary.failed = f.count + n.count
        summary.failures = f.first
        summary.interrupted = cancellation.isCancelled
        summary.skipped = summary.matched - summary.loaded - summary.alreadyCached - summary.failed
        summary.seconds = (MonotonicTime.now - start).seconds
        view.cache.flushUsage()
        state.finished.store(true, ordering: .releasing)
        reporter?.join()
        onProgress?(state.snapshot(elapsed: MonotonicTime.now - start))
        return summary
    }

    /// The distinct blobs of `revisions` whose paths match the filter, in walk order (what `run`
    /// loads; `gitfs prefetch --push` uploads their cache entries).
    public func matchingBlobs(revisions: [String]) throws(ResolverError) -> [ObjectID] {
        var roots: [ObjectID] = []
        for c in try resolve(revisions) { roots.append(try view.commit(c).tree) }
        return try walk(roots: roots, state: RunState()).map(\.id)
    }

    /// One blob to load: its id and the first path it was found at (for messages).
    struct FoundBlob: Sendable {
        let id: ObjectID
        let path: [UInt8]
    }

    private struct TreeKey: Hashable {
        let id: ObjectID
        let path: [UInt8]
    }

    /// Breadth-first, one level at a time, each level's trees spread over the workers. Returns the
    /// distinct matching blobs in walk order.
    func walk(roots: [ObjectID], state: RunState) throws(ResolverError) -> [FoundBlob] {
        let byPath = !filter.matchesEverything
        var visited = Set<TreeKey>()
        var level: [(id: ObjectID, path: [UInt8])] = []
        for r in roots where visited.insert(TreeKey(id: r, path: [])).inserted { level.append((r, [])) }
        var seen = Set<ObjectID>()
        var found: [FoundBlob] = []
        let filter = self.filter
        let view = self.view
        while !level.isEmpty, !cancellation.isCancelled {
            let current = level
            let slots = Mutex<[(dirs: [(ObjectID, [UInt8])], blobs: [FoundBlob])]>(Array(repeating: ([], []), count: jobs))
            let firstError = Mutex<ResolverError?>(nil)
            let next = Atomic<Int>(0)
            let workers = min(jobs, current.count)
            WorkerThreads.run(count: workers) { w in
                var dirs: [(ObjectID, [UInt8])] = []
                var blobs: [FoundBlob] = []
                while !self.cancellation.isCancelled {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < current.count else { break }
                    let (treeID, dir) = current[i]
                    let tree: TreeListing
                    do throws(ResolverError) { tree = try view.tree(treeID) } catch {
                        firstError.withLock { if $0 == nil { $0 = error } }
                        break
                    }
                    for e in tree.entries {
                        var path = dir
                        if !path.isEmpty { path.append(UInt8(ascii: "/")) }
                        path.append(contentsOf: e.name)
                        switch e.kind {
                        case .directory:
                            if filter.mayMatch(below: path) { dirs.append((e.oid, path)) }
                        case .file, .executable, .symlink:
                            if filter.matches(path) { blobs.append(FoundBlob(id: e.oid, path: path)) }
                        case .submodule:
                            break
                        }
                    }
                    state.done.add(1, ordering: .relaxed)
                }
                slots.withLock { $0[w] = (dirs, blobs) }
            }
            if let e = firstError.withLock({ $0 }) { throw e }
            level = []
            for (dirs, blobs) in slots.withLock({ $0 }) {
                for b in blobs where seen.insert(b.id).inserted { found.append(b) }
                for (id, path) in dirs where visited.insert(TreeKey(id: id, path: byPath ? path : [])).inserted {
                    level.append((id, path))
                }
            }
        }
        return found
    }

    /// Counters the workers update and the progress reporter reads.
    final class RunState: Sendable {
        let phase = Atomic<Int>(0)
        let done = Atomic<Int>(0)
        let total = Atomic<Int>(0)
        let bytesDone = Atomic<Int>(0)
        let bytesTotal = Atomic<Int>(0)
        let finished = Atomic<Bool>(false)

        func snapshot(elapsed: Duration) -> PrefetchProgress {
            let p: PrefetchProgress.Phase
            switch phase.load(ordering: .relaxed) {
            case 0: p = .walking
            case 1: p = .checking
            default: p = .loading
            }
            return PrefetchProgress(phase: p, objectsDone: done.load(ordering: .relaxed), objectsTotal: total.load(ordering: .relaxed),
                                    bytesDone: bytesDone.load(ordering: .relaxed), bytesTotal: bytesTotal.load(ordering: .relaxed),
                                    elapsed: elapsed)
        }
    }
}
