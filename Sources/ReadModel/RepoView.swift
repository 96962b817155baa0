import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization

/// One repository as the mount and the commands read it: refs (re-read at most every `refsLifetime`, so
/// a fetch shows within about a second), commits, parsed trees and blob sizes from bounded in-memory
/// caches, paths walked by the one `TreeWalk`, and blob content through the chain of blob sources.
/// Thread-safe; no lock is held while reading git or the cache.
public final class RepoView: Sendable {
    public let repository: Repository
    public var name: String { repository.name }
    unowned let resolver: Resolver
    /// The content cache the blob chain fills (shared by every view of the resolver).
    public var cache: ContentCache { resolver.cache }

    private struct RefsState: Sendable {
        var refs: RefIndex?
        var readAt: MonotonicTime?
    }
    private let refsState = Mutex(RefsState())

    /// How long a refs snapshot is reused before it is re-read from disk.
    static let refsLifetime: Duration = .milliseconds(500)

    init(repository: Repository, resolver: Resolver) {
        self.repository = repository
        self.resolver = resolver
    }

    // MARK: refs

    /// Branches, tags and default branch, indexed, at most `refsLifetime` old.
    public func refs() throws(ResolverError) -> RefIndex {
        let now = MonotonicTime.now
        if let fresh = refsState.withLock({ s -> RefIndex? in
            if let refs = s.refs, let at = s.readAt, now - at < Self.refsLifetime { return refs }
            return nil
        }) { return fresh }
        let snap: RefSnapshot
        do { snap = try repository.refs() } catch { throw .git(error) }
        return refsState.withLock { s -> RefIndex in
            s.readAt = now
            if let known = s.refs, known.snapshot == snap { return known }
            var changed = timespec()
            clock_gettime(CLOCK_REALTIME, &changed)
            let index = RefIndex(snap, changedAt: changed)
            s.refs = index
            if let damage = snap.damage { resolver.logger.error("\(damage)") }
            return index
        }
    }

    /// Resolves a revision (branch, tag, id, `REV~N`) to a commit id.
    public func resolve(_ rev: String) throws(ResolverError) -> ObjectID {
        do { return try repository.resolve(rev) } catch { throw .git(error) }
    }

    // MARK: objects

    /// The commit, from the bounded cache. An id that names no commit is not found.
    public func commit(_ id: ObjectID) throws(ResolverError) -> CommitInfo {
        if let c = resolver.commits.value(for: id) { return c }
        let c: CommitInfo
        do { c = try repository.commit(id) } catch { throw .git(error) }
        resolver.commits.set(c, for: id, bytes: 96 + c.parents.count * 24)
        return c
    }

    /// The tree as shown (names git would not check out set aside and logged), from the bounded cache.
    /// A tree that a commit or tree names but the mirror lacks is an I/O error, not "not found".
    public func tree(_ id: ObjectID) throws(ResolverError) -> TreeListing {
        if let t = resolver.trees.value(for: id) { return t }
        let listing: TreeListing
        do { listing = try repository.listing(id) } catch {
            guard error.kind == .notFound else { throw .git(error) }
            throw resolver.chain.failure(object: id, kind: "tree", repository: name, error.description)
        }
        for hidden in listing.hidden {
            resolver.logger.warning("hiding tree entry with a name git would not check out", metadata: [
                "repository": "\(name)", "tree": "\(id)", "name": "\(hidden.quotedName)",
            ])
        }
        resolver.trees.set(listing, for: id, bytes: listing.approximateBytes)
        if repository.isPartial {
            // A blobless mirror fetches a missing blob together with its directory's: remember the way.
            for e in listing.entries where e.objectKind == .blob { resolver.parents.set(id, for: e.oid, bytes: 64) }
        }
        return listing
    }

    /// A tree parsed ahead of any listing (read-ahead walks): as `tree`, counted in `treesReadAhead`.
    public func treeAhead(_ id: ObjectID) throws(ResolverError) -> TreeListing {
        let t = try tree(id)
        resolver.treesReadAhead.add(1, ordering: .relaxed)
        return t
    }

    /// Tells the view that the directory `tree` is being listed: the listings below it are read ahead
    /// in the background (mounts only; bounded, see ReadAheadHooks).
    public func listing(_ tree: ObjectID) {
        resolver.readAhead?.listing(self, tree: tree)
    }

    /// Tells the view that a reader started on a file of the directory `tree`: its other small blobs are
    /// loaded ahead in the background and, where `feed` wants them, delivered to it (mounts only).
    public func readingDirectory(_ tree: ObjectID, feed: SiblingFeed) {
        resolver.readAhead?.readingDirectory(self, tree: tree, feed: feed)
    }

    /// The entry at `path` ("a/b/c", "" for the root tree) of a commit, walked over shown names only.
    public func entry(commit: ObjectID, path: String) throws(ResolverError) -> TreeEntry {
        let root = try self.commit(commit).tree
        switch try TreeWalk.walk(root: root, path: path, listing: { id throws(ResolverError) in try tree(id) }) {
        case .found(let e): return e
        case .missing: throw .notFound("path '\(path)'")
        case .notADirectory: throw .notADirectory(path)
        }
    }

    // MARK: content

    func request(_ id: ObjectID, speculative: Bool = false) -> BlobRequest {
        guard repository.isPartial, let parent = resolver.parents.value(for: id) else {
            return BlobRequest(id: id, repository: repository, speculative: speculative)
        }
        return BlobRequest(id: id, repository: repository, speculative: speculative, batch: { [self] in
            ((try? tree(parent))?.entries ?? []).compactMap { $0.objectKind == .blob ? $0.oid : nil }
        })
    }

    /// Blobless mirrors: fetches from the origin, in a few large requests, every blob of `ids` that
    /// neither the mirror nor the content cache holds (`gitfs prefetch`, before it loads them one by
    /// one). Returns how many were asked of the origin; 0 for a full mirror.
    public func fetchMissing(_ ids: [ObjectID], cancelled: (@Sendable () -> Bool)? = nil) throws(ResolverError) -> Int {
        try resolver.origin.fetchAll(ids, repository: repository, cancelled: cancelled)
    }

    /// A blob's size: from the bounded cache, else from the first blob source that knows it without
    /// loading (opened or pending content, the content cache's index, the object header in the packs).
    public func blobSize(_ id: ObjectID) throws(ResolverError) -> Int {
        if let s = resolver.sizes.value(for: id) { return s }
        let size = try resolver.chain.size(request(id))
        resolver.sizes.set(size, for: id, bytes: 48)
        return size
    }

    /// A blob's size when it is known without asking the origin of a blobless mirror (for listings, which
    /// then leave the size to a lookup); for a full mirror the same as `blobSize`, nil on failure.
    public func localBlobSize(_ id: ObjectID) -> Int? {
        guard repository.isPartial else { return try? blobSize(id) }
        if let s = resolver.sizes.value(for: id) { return s }
        // Cheap look first: a blob in neither the mirror nor the cache is the common case of a listing.
        guard resolver.cache.contains(id) || repository.contains(id),
              let size = resolver.chain.localSize(request(id)) else { return nil }
        resolver.sizes.set(size, for: id, bytes: 48)
        return size
    }

    /// Opens a blob's content through the chain of blob sources (opened lately, pending, the content
    /// cache, else one single-flight load from the packs, filled back to the cache). Reads that come
    /// without a file handle (the mount's no-open mode) call this per request; the opened table keeps
    /// them from reopening the cache entry each time.
    /// `speculative`: opened ahead of any reader (the mount feeding the kernel's page cache): not
    /// counted as a hit or miss, a load from the packs counts in `speculative_loads`, and the content
    /// is not kept in the opened table (the kernel holds it now; it would evict content being read).
    public func openBlob(_ id: ObjectID, speculative: Bool = false) throws(ResolverError) -> BlobContent {
        let r = request(id, speculative: speculative)
        return BlobContent(request: r, chain: resolver.chain, loaded: try resolver.chain.open(r))
    }

    /// Makes sure a blob is in the content cache, loading it (single-flight) when it is not.
    /// `speculative` (read-ahead): a blob already on its way into the cache counts as present; a load
    /// counts in `speculative_loads`.
    @discardableResult
    public func ensureCached(_ id: ObjectID, speculative: Bool = false) throws(ResolverError) -> EnsureOutcome {
        try resolver.chain.ensureStored(request(id, speculative: speculative))
    }
}
