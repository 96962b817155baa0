import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization

/// Counters of the resolver, shared by every repository view; updated atomically.
public struct ResolverCounters: Sendable, Equatable {
    public var cacheHits = 0
    public var cacheMisses = 0
    public var blobLoads = 0
    public var singleflightJoins = 0
    /// Blobs loaded from the packs ahead of any reader (siblings of a file that missed the cache, content
    /// fed to the kernel's page cache); not included in `blobLoads`, which counts the loads readers asked for.
    public var speculativeLoads = 0
    /// Trees parsed ahead of any listing by the background walks (listings read ahead).
    public var treesReadAhead = 0
}

/// Errors of the resolver: a path, revision or object that does not exist, or a failure underneath.
public enum ResolverError: Error, CustomStringConvertible, Sendable {
    case notFound(String)
    case notADirectory(String)
    case git(GitStoreError)
    case cache(CacheError)

    public var description: String {
        switch self {
        case .notFound(let what): return "\(what) not found"
        case .notADirectory(let what): return "\(what) is not a directory"
        case .git(let e): return e.description
        case .cache(let e): return e.description
        }
    }
}

/// Finds or opens the view of each repository of a home, and holds what all views share: the content
/// cache, the in-memory caches of parsed trees, blob sizes and commits (bounded in bytes), the single-flight
/// loader and the counters. Thread-safe; opening a view is one atomic find-or-create.
public final class Resolver: Sendable {
    public let store: MirrorStore
    public let cache: ContentCache
    let trees: BoundedCache<ObjectID, ParsedTree>
    let sizes: BoundedCache<ObjectID, Int>
    let commits: BoundedCache<ObjectID, CommitInfo>
    let loads = SingleFlight<ObjectID, LoadedBlob>()
    /// Blob contents opened lately, by id. Bounded: a cache entry counts 64 KiB (it holds one fd), a blob
    /// held in memory its size (larger than a generation's share: not kept).
    let opened = BoundedCache<ObjectID, BlobContent>(maxBytes: 64 << 20)
    let logger: Logger
    private let views = Mutex<[String: RepoView]>([:])

    let hits = Atomic<Int>(0)
    let misses = Atomic<Int>(0)
    let blobLoads = Atomic<Int>(0)
    let joins = Atomic<Int>(0)
    /// Blobs loaded from the packs ahead of any reader (speculator, kernel-cache feeding).
    let speculativeLoads = Atomic<Int>(0)
    /// Trees parsed by the speculator's walks.
    let treesReadAhead = Atomic<Int>(0)

    /// Blobs up to this size are handed to readers from memory right after a load; larger ones are read
    /// back from the content cache so that memory stays bounded.
    let memoryServeLimit: Int

    /// Writes blobs loaded for readers to the cache off the read path (nil: written before the reader gets them).
    let filler: CacheFiller?
    /// Loads the other small blobs of a directory after one of its files missed the cache (mounts only).
    let speculator: Speculator?

    /// - Parameters:
    ///   - treeCacheBytes: budget of the parsed-tree cache.
    ///   - backgroundFill: publish blobs loaded by `openBlob` to the cache on background threads (a
    ///     mount); call `shutdown()` before exiting so they are written. Commands leave it off.
    public init(store: MirrorStore, cache: ContentCache, treeCacheBytes: Int = 64 << 20,
                memoryServeLimit: Int = 1 << 20, backgroundFill: Bool = false,
                logger: Logger = Logger(label: "gitfs.resolver")) {
        self.store = store
        self.cache = cache
        self.filler = backgroundFill ? CacheFiller(cache: cache, logger: logger) : nil
        self.speculator = backgroundFill ? Speculator() : nil
        self.trees = BoundedCache(maxBytes: treeCacheBytes)
        self.sizes = BoundedCache(maxBytes: 8 << 20)
        self.commits = BoundedCache(maxBytes: 4 << 20)
        self.memoryServeLimit = memoryServeLimit
        self.logger = logger
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
    /// ahead in the background, as a listing would (bounded, see Speculator). Errors are left for the
    /// requests that meet them.
    public func warmUp(maxRepositories: Int = 16) {
        _ = GitHash.blobID(of: UnsafeRawBufferPointer(start: nil, count: 0))
        for name in store.names().prefix(maxRepositories) {
            guard let view = try? repository(named: name), speculator != nil,
                  let refs = try? view.refs(), let branch = refs.defaultBranch,
                  let commit = refs.target(of: branch, tags: false),
                  let root = try? view.commit(commit).tree else { continue }
            view.listing(root)
        }
    }

    /// Stops the background threads (stores in progress finish, queued ones are dropped). Idempotent.
    public func shutdown() {
        speculator?.shutdown()
        filler?.shutdown()
    }

    public var counters: ResolverCounters {
        ResolverCounters(cacheHits: hits.load(ordering: .relaxed), cacheMisses: misses.load(ordering: .relaxed),
                         blobLoads: blobLoads.load(ordering: .relaxed), singleflightJoins: joins.load(ordering: .relaxed),
                         speculativeLoads: speculativeLoads.load(ordering: .relaxed),
                         treesReadAhead: treesReadAhead.load(ordering: .relaxed))
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

/// A tree as the mount shows it: entries whose names git would refuse to check out are dropped.
public struct ParsedTree: Sendable {
    public let entries: [TreeEntry]
    private let index: [[UInt8]: Int]

    init(entries raw: [TreeEntry], hidden: (TreeEntry) -> Void) {
        var kept: [TreeEntry] = []
        kept.reserveCapacity(raw.count)
        var index: [[UInt8]: Int] = [:]
        index.reserveCapacity(raw.count)
        for e in raw {
            guard ParsedTree.isCheckoutSafe(e.name), index[e.name] == nil else { hidden(e); continue }
            index[e.name] = kept.count
            kept.append(e)
        }
        self.entries = kept
        self.index = index
    }

    /// The entry named `name`, if shown.
    public func entry(named name: [UInt8]) -> TreeEntry? {
        index[name].map { entries[$0] }
    }

    /// Approximate memory held, for the bounded cache.
    var approximateBytes: Int {
        entries.reduce(64) { $0 + $1.name.count * 2 + 96 }
    }

    /// False for names git would never check out: empty, `.`, `..`, `.git` in any letter case, or
    /// containing `/` or NUL.
    public static func isCheckoutSafe(_ name: [UInt8]) -> Bool {
        if name.isEmpty || name == [0x2E] || name == [0x2E, 0x2E] { return false }
        if name.contains(0x2F) || name.contains(0) { return false }
        if name.count == 4, name[0] == 0x2E, (name[1] | 0x20) == 0x67, (name[2] | 0x20) == 0x69, (name[3] | 0x20) == 0x74 {
            return false
        }
        return true
    }
}

/// The result of one load of a blob out of the packs.
enum LoadedBlob: Sendable {
    case cached(CacheEntry)
    case memory(BlobBuffer)
}
