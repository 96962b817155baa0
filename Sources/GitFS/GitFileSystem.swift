import Basics
import ContentCache
import Foundation
import FuseServer
import GitStore
import Logging
import ReadModel
import Synchronization

/// The mount layout (README "Mount layout") served through FuseServer: one directory per repository of
/// the home, with `HEAD`, `branches/`, `tags/` and `commits/`, plus `.gitfs/stats`.
/// Immutable content (everything under `commits/`) gets long kernel cache lifetimes; refs are re-read
/// at most every `RepoView.refsLifetime` (500 ms) and the kernel keeps ref nodes and the repository
/// list `mutableTTL` (1 s), so a fetch shows within about a second. Files are served without OPEN
/// (no handles). Errors tell the truth: ENOENT only for a name that does not exist, EIO for a failure
/// to read what does (logged once). Thread-safe; holds no lock while reading git.
///
/// The operations live by job: Attributes.swift (getattr, xattrs, statfs), Lookup.swift (lookup,
/// readlink), Listing.swift (readdir), Files.swift (read, `.gitfs/stats`), KernelCache.swift (pushing
/// siblings into the page cache).
public final class GitFileSystem: FuseFileSystem {
    public typealias Node = GitFSNode
    public typealias Handle = Never

    public let resolver: Resolver
    let logger: Logger
    let startTime = Int64(Date().timeIntervalSince1970)
    /// Produces the JSON of `.gitfs/stats`; set by the mount once the server exists.
    let statsSource = Mutex<(@Sendable () -> [UInt8])?>(nil)
    /// Recent `.gitfs/stats` snapshots by number. Files are served without OPEN and keep their page
    /// cache, so each lookup of `stats` (entry lifetime 0) takes a fresh snapshot under a new node.
    let statsSnapshots = Mutex<(next: UInt64, recent: [UInt64: [UInt8]])>((1, [:]))
    /// Failures already logged (each is logged once).
    let logged = LogOnce()

    /// The kernel's page cache, once the mount exists: sibling files of a file being read are pushed
    /// into it ahead of the reader.
    private let kernelCacheSlot = SetBeforeServing<KernelCacheAccess>()
    var kernelCache: KernelCacheAccess? { kernelCacheSlot.value }

    /// Whether listings of small directories give their files' attributes (ListingPolicy).
    let listingPolicy: ListingPolicy

    /// Lifetime in the kernel of immutable nodes (everything under commits/).
    static let immutableTTL: Double = 24 * 3600
    /// Lifetime of nodes that change when refs move or repositories come and go.
    static let mutableTTL: Double = 1

    /// `namesOnlyWindow`: how long after a file was looked up or read listings give attributes again
    /// (ListingPolicy); tests shorten it.
    public init(resolver: Resolver, logger: Logger, namesOnlyWindow: Duration = .seconds(2)) {
        self.resolver = resolver
        self.logger = logger
        self.listingPolicy = ListingPolicy(window: namesOnlyWindow)
    }

    public func setStatsSource(_ source: @escaping @Sendable () -> [UInt8]) {
        statsSource.withLock { $0 = source }
    }

    /// Lets reads feed the kernel's page cache (see `KernelCacheAccess`). Call before the mount serves.
    public func setKernelCache(_ access: KernelCacheAccess) {
        kernelCacheSlot.set(access)
    }

    public var rootNode: GitFSNode { .root }

    /// Regular files are served without OPEN/RELEASE: warm reads never leave the kernel.
    public var servesWithoutOpen: Bool { true }

    // MARK: errors

    /// Reads what an existing node stands for (its refs, commit, tree, blob): every failure is an I/O
    /// error (EIO, logged once), also "not found" — an object a tree names but the mirror lacks is a
    /// damaged repository, not a missing name. Only a node of a repository removed since (`gitfs
    /// remove` while mounted) is ENOENT: it no longer exists.
    func loading<T>(_ repo: RepoRef?, _ body: () throws(ResolverError) -> T) throws(Errno) -> T {
        do {
            return try body()
        } catch {
            if case .notADirectory = error { throw .notDirectory }
            if let repo, !FileManager.default.fileExists(atPath: repo.view.repository.path) { throw .noEntry }
            logFailure(error, repo)
            throw .io
        }
    }

    private func logFailure(_ error: ResolverError, _ repo: RepoRef?) {
        let text = "\(error)"
        let repository = repo?.view.name ?? "-"
        guard logged.first(repository + "\u{0}" + text) else { return }
        logger.error("request failed (EIO)", metadata: ["repository": "\(repository)", "error": "\(text)"])
    }
}

/// Keys of messages already logged, so a failure met by every request is logged once. Bounded: after
/// `limit` distinct keys, nothing more is logged. Thread-safe.
final class LogOnce: Sendable {
    private let seen = Mutex<Set<String>>([])
    private let limit: Int
    init(limit: Int = 4096) { self.limit = limit }

    /// True the first time `key` is offered (while fewer than `limit` keys were seen).
    func first(_ key: String) -> Bool {
        seen.withLock { set in
            guard set.count < limit else { return false }
            return set.insert(key).inserted
        }
    }
}
