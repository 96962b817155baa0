import Basics
import ContentCache
import GitStore

/// One blob asked of the blob sources: its id (also its key in the content cache) and the repository it
/// was reached through (a loader reads that repository's packs). A value.
public struct BlobRequest: Sendable {
    public let id: ObjectID
    public let repository: Repository
    /// Asked ahead of any reader (read-ahead): nothing is counted as a hit or miss for a reader.
    public let speculative: Bool
    /// The other blobs of the directory the blob was reached through, when the view knows it (blobless
    /// mirrors only): a source that must fetch may fetch them in the same request. Called at most once.
    public let batch: (@Sendable () -> [ObjectID])?

    init(id: ObjectID, repository: Repository, speculative: Bool, batch: (@Sendable () -> [ObjectID])? = nil) {
        self.id = id
        self.repository = repository
        self.speculative = speculative
        self.batch = batch
    }
}

/// Content as a blob source hands it over: an entry of the content cache (read from disk on demand),
/// inflated bytes in memory, or an entry being written (a big blob streamed into the cache, each range
/// readable once inflated; like `.cached`, no fill-back is needed). A value; thread-safe.
public enum LoadedBlob: Sendable {
    case cached(CacheEntry)
    case memory(BlobBuffer)
    case streaming(StreamingBlob)

    public var size: Int {
        switch self {
        case .cached(let e): return e.size
        case .memory(let b): return b.count
        case .streaming(let s): return s.size
        }
    }
}

/// What a blob source is to the chain.
public enum BlobSourceRole: Sendable {
    /// Holds content ready to serve (memory, the local content cache): asked on every open, and once
    /// more under the single-flight load before any loader runs.
    case held
    /// Makes content by work (inflating packs; later a remote GET, an origin fetch): asked only inside
    /// the single-flight load, in order; what it gives is counted as a load and filled back.
    case loader
}

/// How a fill may be taken.
public enum FillMode: Sendable {
    /// The reader is waiting: a background fill (published later, off the read path) is welcome.
    case deferred
    /// The content must be stored before the call returns (commands, prefetch, a reload after damage).
    case now
}

/// What became of content offered as a fill.
public enum FillResult: Sendable {
    /// Queued to be stored in the background; meanwhile the source serves it from memory.
    case deferred
    /// Stored; the source now holds it.
    case stored
    /// Could not be stored (full disk, read-only cache): the content is still served, just not kept.
    case failed(CacheError)
}

/// One place a blob can come from. The chain (`BlobChain`) asks its sources in order and does the rest
/// once, for all of them: single-flight, counting, logging, fill-back. A source only answers.
///
/// Contract: `open` and `size` return nil when the source does not have the blob and throw only for a
/// real failure (damage, I/O), which the chain reports as an I/O error and never as "not found". Sources
/// must be thread-safe and must not block on one another.
public protocol BlobSource: Sendable {
    /// Short name for counters and logs ("opened", "pending", "cache", "packs").
    var name: String { get }
    var role: BlobSourceRole { get }
    /// The blob's size if this source knows it without loading the content; nil when it does not.
    func size(of request: BlobRequest) throws(ResolverError) -> Int?
    /// The blob's content, or nil when this source does not have it.
    func open(_ request: BlobRequest) throws(ResolverError) -> LoadedBlob?
    /// Offered content another source loaded. A source that keeps content takes it (returns what
    /// happened); nil: not taken (not a keeping source, or it cannot take it in this `mode`).
    func accept(_ request: BlobRequest, _ bytes: BlobBuffer, mode: FillMode) -> FillResult?
    /// True when the source holds the blob now (cheap: no decompression, no checks).
    func contains(_ request: BlobRequest) -> Bool
    /// True for a source that keeps content beyond this process (the content cache): what `gitfs prefetch`
    /// must reach, and where a fill in `.now` mode must land.
    var isDurable: Bool { get }
}

extension BlobSource {
    public func contains(_ request: BlobRequest) -> Bool { false }
    public var isDurable: Bool { false }
    public func accept(_ request: BlobRequest, _ bytes: BlobBuffer, mode: FillMode) -> FillResult? { nil }
}
