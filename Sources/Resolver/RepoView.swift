import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import Synchronization

/// One repository as the mount and the commands read it: refs (re-read at most once a second, so a
/// fetch shows within about a second), commits, parsed trees and blob sizes from bounded in-memory
/// caches, and blob content through the content cache with single-flight loading from the packs.
/// Thread-safe; no lock is held while reading git or the cache.
public final class RepoView: Sendable {
    public let repository: Repository
    public var name: String { repository.name }
    unowned let resolver: Resolver

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

    /// The commit, from the bounded cache.
    public func commit(_ id: ObjectID) throws(ResolverError) -> CommitInfo {
        if let c = resolver.commits.value(for: id) { return c }
        let c: CommitInfo
        do { c = try repository.commit(id) } catch { throw .git(error) }
        resolver.commits.set(c, for: id, bytes: 96 + c.parents.count * 24)
        return c
    }

    /// The tree with unsafe names removed, from the bounded cache.
    public func tree(_ id: ObjectID) throws(ResolverError) -> ParsedTree {
        if let t = resolver.trees.value(for: id) { return t }
        let raw: [TreeEntry]
        do { raw = try repository.tree(id) } catch { throw .git(error) }
        let logger = resolver.logger
        let parsed = ParsedTree(entries: raw) { hidden in
            logger.warning("hiding tree entry with a name git would not check out", metadata: [
                "repository": "\(self.name)", "tree": "\(id)", "name": "\(hidden.quotedName)",
            ])
        }
        resolver.trees.set(parsed, for: id, bytes: parsed.approximateBytes)
        return parsed
    }

    /// Tells the view that the directory `tree` is being listed: the listings below it are read ahead
    /// in the background (mounts only; bounded, see Speculator).
    public func listing(_ tree: ObjectID) {
        resolver.speculator?.scheduleWalk(self, tree: tree)
    }

    /// Tells the view that a reader started on a file of the directory `tree`: its other small blobs are
    /// loaded ahead in the background and, where `feed` wants them, delivered to it (mounts only).
    public func readingDirectory(_ tree: ObjectID, feed: SiblingFeed) {
        resolver.speculator?.schedule(self, tree: tree, feed: feed)
    }

    /// A blob's size: from the bounded cache, else from the content cache's index (no I/O), else from
    /// its object header in the packs (never inflates).
    public func blobSize(_ id: ObjectID) throws(ResolverError) -> Int {
        if let s = resolver.sizes.value(for: id) { return s }
        let size: Int
        if let indexed = resolver.cache.indexedSize(id) {
            size = indexed
        } else {
            do { size = try repository.header(id).size } catch { throw .git(error) }
        }
        resolver.sizes.set(size, for: id, bytes: 48)
        return size
    }

    /// The entry at `path` ("a/b/c", "" for the root tree) of a commit, walking cached trees.
    public func entry(commit: ObjectID, path: String) throws(ResolverError) -> TreeEntry {
        let info = try self.commit(commit)
        var current = TreeEntry(name: [], mode: 0o040000, oid: info.tree)
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            guard current.kind == .directory else { throw .notADirectory(path) }
            guard let next = try tree(current.oid).entry(named: Array(component.utf8)) else {
                throw .notFound("path '\(path)'")
            }
            current = next
        }
        return current
    }

    // MARK: content

    /// Opens a blob's content: content opened lately (a bounded table), else the content cache, else
    /// loaded once from the packs (single-flight across every concurrent caller) and written to the
    /// cache. Reads that come without a file handle (the mount's no-open mode) call this per request,
    /// so the opened table keeps them from reopening the cache entry each time.
    /// `speculative`: opened ahead of any reader (the mount feeding the kernel's page cache): not
    /// counted as a hit or miss, a load from the packs counts in `speculative_loads`, and the content
    /// is not kept in the opened table (the kernel holds it now; it would evict content being read).
    public func openBlob(_ id: ObjectID, speculative: Bool = false) throws(ResolverError) -> BlobContent {
        let counter = speculative ? nil : resolver
        if let open = resolver.opened.value(for: id) {
            counter?.hits.add(1, ordering: .relaxed)
            return open
        }
        let loaded: LoadedBlob
        if let entry = resolver.cache.lookup(id) {
            counter?.hits.add(1, ordering: .relaxed)
            loaded = .cached(entry)
        } else if let waiting = resolver.filler?.pendingBytes(of: id) {
            // Loaded moments ago, on its way into the cache.
            counter?.hits.add(1, ordering: .relaxed)
            loaded = .memory(waiting)
        } else {
            counter?.misses.add(1, ordering: .relaxed)
            loaded = try load(id, deferStore: true, speculative: speculative)
        }
        let content = BlobContent(id: id, view: self, loaded: loaded)
        if !speculative { resolver.opened.set(content, for: id, bytes: content.memoryBytes ?? (64 << 10)) }
        return content
    }

    /// Makes sure a blob is in the content cache; returns true when this call loaded it from the packs.
    /// `speculative` (the mount's speculator): skip a blob that is already on its way into the cache;
    /// a load counts in `speculative_loads`.
    public func ensureCached(_ id: ObjectID, speculative: Bool = false) throws(ResolverError) -> Bool {
        if resolver.cache.contains(id) { return false }
        if speculative, resolver.filler?.pendingBytes(of: id) != nil { return false }
        _ = try load(id, deferStore: false, speculative: speculative)
        return true
    }

    /// Loads a blob out of the packs through the single-flight loader.
    /// `speculative` loads count in `speculativeLoads`, not in `blobLoads` (loads readers asked for).
    func load(_ id: ObjectID, deferStore: Bool, speculative: Bool = false) throws(ResolverError) -> LoadedBlob {
        let resolver = self.resolver
        let outcome: (value: LoadedBlob, joined: Bool)
        do {
            outcome = try resolver.loads.run(id) { () throws(ResolverError) -> LoadedBlob in
                // Another process (or a load that just finished) may have filled it meanwhile.
                if let entry = resolver.cache.lookup(id) { return .cached(entry) }
                if let waiting = resolver.filler?.pendingBytes(of: id) {
                    // Loaded moments ago for a reader and not written yet.
                    if !deferStore { try self.storeNow(id, waiting) }
                    return .memory(waiting)
                }
                if speculative {
                    resolver.speculativeLoads.add(1, ordering: .relaxed)
                } else {
                    resolver.blobLoads.add(1, ordering: .relaxed)
                }
                return try self.loadFromPacks(id, deferStore: deferStore)
            }
        } catch let e as ResolverError {
            throw e
        } catch {
            throw .notFound("\(error)")
        }
        if outcome.joined { resolver.joins.add(1, ordering: .relaxed) }
        return outcome.value
    }

    private func storeNow(_ id: ObjectID, _ bytes: BlobBuffer) throws(ResolverError) {
        do {
            try bytes.withUnsafeBytes { try resolver.cache.store(id, content: $0, verified: bytes.isVerified) }
        } catch let e as CacheError {
            throw .cache(e)
        } catch {
            throw .notFound("\(error)")
        }
    }

    /// Inflates a blob (kept in libgit2's buffer, no copy) and either hands it to the background filler
    /// (`deferStore`, mounts) or writes it to the cache now. A blob whose bytes do not match its id is
    /// never served; a full disk only costs the cache entry.
    private func loadFromPacks(_ id: ObjectID, deferStore: Bool) throws(ResolverError) -> LoadedBlob {
        let buffer: BlobBuffer
        do { buffer = try repository.blobBuffer(id) } catch { throw .git(error) }
        if deferStore, let filler = resolver.filler, filler.submit(id, bytes: buffer) {
            return .memory(buffer)
        }
        do {
            try storeNow(id, buffer)
        } catch {
            guard case .cache(let cacheError) = error, cacheError.kind != .verifyFailed,
                  buffer.isVerified || buffer.withUnsafeBytes({ GitHash.blobID(of: $0) }) == id else { throw error }
            // Full disk or I/O trouble: serve from the pack anyway; the cache logs it once.
            return .memory(buffer)
        }
        if buffer.count > resolver.memoryServeLimit, let entry = resolver.cache.lookup(id) {
            return .cached(entry)
        }
        return .memory(buffer)
    }
}

/// The content of one blob, opened for reading. Thread-safe: reads at any offsets from many threads.
/// A cache entry found damaged while reading is dropped and the blob reloaded from the packs, so damaged
/// bytes are never returned.
public final class BlobContent: Sendable {
    public let id: ObjectID
    let view: RepoView
    private let loaded: Mutex<LoadedBlob>

    init(id: ObjectID, view: RepoView, loaded: LoadedBlob) {
        self.id = id
        self.view = view
        self.loaded = Mutex(loaded)
    }

    /// Bytes held in memory when the content is served from memory; nil when it reads a cache entry.
    public var memoryBytes: Int? {
        switch loaded.withLock({ $0 }) {
        case .cached: return nil
        case .memory(let b): return b.count
        }
    }

    /// Content size in bytes.
    public var size: Int {
        switch loaded.withLock({ $0 }) {
        case .cached(let e): return e.size
        case .memory(let b): return b.count
        }
    }

    /// Copies bytes from `offset` until the buffer is full or the content ends; returns the count.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(ResolverError) -> Int {
        var attempts = 0
        while true {
            let current = loaded.withLock { $0 }
            switch current {
            case .memory(let bytes):
                guard offset < bytes.count else { return 0 }
                let n = min(buffer.count, bytes.count - offset)
                bytes.withUnsafeBytes { src in
                    buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
                }
                return n
            case .cached(let entry):
                do {
                    var done = 0
                    while done < buffer.count {
                        let n = try entry.read(offset: offset + done,
                                               into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
                        if n == 0 { break }
                        done += n
                    }
                    return done
                } catch {
                    attempts += 1
                    view.resolver.logger.error("damaged cache entry, reloading from the packs", metadata: [
                        "object": "\(id)", "error": "\(error)",
                    ])
                    guard attempts < 3 else { throw .cache(error) }
                                let reloaded = try view.load(id, deferStore: false)
                    loaded.withLock { $0 = reloaded }
                }
            }
        }
    }

    /// The whole content (for `gitfs cat` and small files such as symlink targets).
    public func readAll() throws(ResolverError) -> [UInt8] {
        let total = size
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { buffer.deallocate() }
        var done = 0
        while done < total {
            let n = try read(offset: done, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<total]))
            if n == 0 { break }
            done += n
        }
        return Array(buffer.prefix(done))
    }
}
