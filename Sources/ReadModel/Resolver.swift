import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization

/// Finds or opens the view of each repository of a home, and holds what all views share: the content
/// cache, the in-memory caches of parsed trees, blob sizes and commits (bounded in bytes), the chain of
/// blob sources (with its single-flight loads and counters) and the read-ahead hooks of a mount.
/// Thread-safe; opening a view is one atomic find-or-create.
public final class Resolver: Sendable {
    public let store: MirrorStore
    public let cache: ContentCache
    let trees: TreeCache
    let sizes: BoundedCache<ObjectID, Int>
    let commits: BoundedCache<ObjectID, CommitInfo>
    /// Blobless mirrors: the tree each blob was last listed in (the directory a fetch of it covers).
    let parents: BoundedCache<ObjectID, ObjectID>
    /// The origin of blobless mirrors: the chain's last source (full mirrors never reach it).
    public let origin: OriginSource
    let chain: BlobChain
    let logger: Logger
    /// The one memory budget every in-memory holder of this resolver charges (see `MemoryBudget`).
    public let budget: MemoryBudget
    private let views = Mutex<[String: RepoView]>([:])
    /// Trees parsed by read-ahead walks.
    let treesReadAhead = Atomic<Int>(0)

    /// Background fills and read-ahead (mounts); nil for commands, which store before they return.
    let readAhead: (any ReadAheadHooks)?

    /// - Parameters:
    ///   - treeCacheBytes: budget of the parsed-tree cache.
    ///   - memoryServeLimit: blobs up to this size are handed to readers from memory right after a load;
    ///     larger ones that were stored are read back from the content cache, so memory stays bounded.
    ///   - readAhead: a mount's background work (see `ReadAheadHooks`); call `shutdown()` before
    ///     exiting so pending fills are written or dropped cleanly.
    ///   - loaders: the blob sources asked after the held ones, in order (default: the local packs); the
    ///     origin of blobless mirrors (`origin`) is asked after them all.
    ///   - logsFailures: log each object that cannot be read, and a cache that cannot store, once (a
    ///     mount); commands that report every failure themselves turn it off, so nothing is said twice.
    ///   - budget: the memory budget the caches charge (the process's: the pack reader's buffers and
    ///     delta-base cache, the pending fills and the streams charge it too).
    public init(store: MirrorStore, cache: ContentCache, treeCacheBytes: Int = 64 << 20,
                memoryServeLimit: Int = 1 << 20, readAhead: (any ReadAheadHooks)? = nil,
                loaders: [any BlobSource] = [PackSource()], logsFailures: Bool = true,
                budget: MemoryBudget = .process, logger: Logger = Logger(label: "gitfs.resolver")) {
        self.store = store
        self.cache = cache
        self.readAhead = readAhead
        self.budget = budget
        // Small-valued caches are capped at their share of the budget (so none can starve the others);
        // parsed trees and opened contents keep their own caps (a big tree, a stream or a 2 MiB blob must
        // fit); the budget bounds them all together.
        let total = budget.total
        LibGit2.shareMemoryBudget(budget)
        self.trees = TreeCache(maxBytes: treeCacheBytes, budget: budget)
        self.sizes = BoundedCache(maxBytes: min(8 << 20, total / 16), budget: budget)
        self.commits = BoundedCache(maxBytes: min(4 << 20, total / 32), budget: budget)
        self.parents = BoundedCache(maxBytes: min(16 << 20, total / 8), budget: budget)
        self.logger = logger
        var held: [any BlobSource] = []
        if let pending = readAhead?.pendingContent { held.append(pending) }
        held.append(CacheSource(cache: cache))
        // Big blobs inflated or rebuilt whole live in files of the cache's tmp/ (not anonymous memory);
        // where that cannot be written (a read-only cache, none), in $TMPDIR (BlobBuffer's fallback).
        BlobBuffer.useScratchFolder(cache.isInitialised ? cache.temporaryFolder : nil)
        // Big whole blobs of the packs stream into this cache (finished in the background by a mount).
        let streamer = BlobStreamer(cache: cache, background: readAhead, logger: logger)
        let loaders = loaders.map { ($0 is PackSource) ? PackSource(streamer: streamer) : $0 }
        self.origin = OriginSource(cache: cache, packs: PackSource(streamer: streamer))
        chain = BlobChain(opened: OpenedContent(maxBytes: 64 << 20, budget: budget), sources: held + loaders + [origin],
                          memoryServeLimit: memoryServeLimit, logsFailures: logsFailures, logger: logger)
    }

    /// Opens a content cache in a home with git's blob hash as its verifier.
    public static func openCache(home: Home) throws(CacheError) -> ContentCache {
        let cache = try ContentCache(directory: home.cachePath, verifier: GitHash.isBlob)
        cache.missRescanInterval = .milliseconds(50)
        return cache
    }

    /// Does the one-time work of the first requests ahead of them: libgit2's initialisation (with
    /// mbedTLS it parses the system's CA bundle, ~10 ms), OpenSSL's SHA-1 set-up, opening the views of
    /// up to `maxRepositories` repositories and (mounts) reading the listings of their default branches
    /// ahead in the background, as a listing would (bounded, see ReadAheadHooks). Errors are left for
    /// the requests that meet them.
    public func warmUp(maxRepositories: Int = 16) {
        _ = GitHash.blobID(of: UnsafeRawBufferPointer(start: nil, count: 0))
        for name in store.names().prefix(maxRepositories) {
            guard let view = try? repository(named: name), readAhead != nil,
                  let refs = try? view.refs(), let branch = refs.defaultBranch,
                  let commit = refs.target(of: branch, tags: false),
                  let root = try? view.commit(commit).tree else { continue }
            view.listing(root)
        }
    }

    /// Stops the background work (stores in progress finish, queued ones are dropped). Idempotent.
    public func shutdown() {
        origin.shutdown()
        readAhead?.shutdown()
    }

    public var counters: ResolverCounters {
        ResolverCounters(cacheHits: chain.hits.load(ordering: .relaxed), cacheMisses: chain.misses.load(ordering: .relaxed),
                         blobLoads: chain.blobLoads.load(ordering: .relaxed), singleflightJoins: chain.joins.load(ordering: .relaxed),
                         speculativeLoads: chain.speculativeLoads.load(ordering: .relaxed),
                         treesReadAhead: treesReadAhead.load(ordering: .relaxed),
                         sources: chain.sourceCounts)
    }

    /// The view of repository `name`, opened on first use. A view whose mirror was removed from disk is
    /// dropped and the name reported as not found.
    public func repository(named name: String) throws(ResolverError) -> RepoView {
        let existing = views.withLock { $0[name] }
        if let existing {
            if FileManager.default.fileExists(atPath: existing.repository.path) { return existing }
            views.withLock { map in
                if map[name] === existing { map.removeValue(forKey: name) }
            }
            throw .notFound("repository '\(name)'")
        }
        let opened: Repository
        do { opened = try store.open(name: name) } catch { throw .git(error) }
        let candidate = RepoView(repository: opened, resolver: self)
        // One atomic find-or-insert: a concurrent opener's view wins if it got there first.
        return views.withLock { map in
            if let winner = map[name] { return winner }
            map[name] = candidate
            return candidate
        }
    }
}
