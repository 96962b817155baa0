import Basics
import ContentCache
import GitStore

/// Blob contents opened lately, by id: the chain's first source, so reads that come without a file
/// handle (the mount's no-open mode asks per request) do not reopen a cache entry each time. Bounded
/// in bytes (a cache entry counts 64 KiB — it holds one descriptor —, a blob streaming into the cache
/// 576 KiB — zlib's state and a ring of eight chunks —, content in anonymous memory its size, in file-backed
/// memory 64 KiB; content bigger than the
/// table's share per shard is not kept), and charged to the memory budget: a cache entry what it holds
/// in memory (a small entry's record, else its descriptor), a stream and content in memory nothing more
/// (their ring and buffer charged themselves when made). A stream and file-backed content are kept
/// whatever the budget's room: a reader that came after the load's single flight ended finds its blob
/// here, and dropping them would make a second stream (a second ring and a second inflate of the whole
/// blob) or a second file; content in anonymous memory is kept only while the budget has room.
/// Thread-safe (sharded locks).
final class OpenedContent: BlobSource {
    let name = "opened"
    let role = BlobSourceRole.held
    private let table: BoundedCache<ObjectID, LoadedBlob>

    init(maxBytes: Int, budget: MemoryBudget? = nil) { table = BoundedCache(maxBytes: maxBytes, budget: budget) }

    func size(of request: BlobRequest) -> Int? { table.value(for: request.id)?.size }

    func open(_ request: BlobRequest) -> LoadedBlob? { table.value(for: request.id) }

    /// Keeps content a reader opened (unless the budget has no room for it).
    func remember(_ id: ObjectID, _ blob: LoadedBlob) {
        let bytes: Int
        let charge: Int
        var evenWithoutRoom = false
        switch blob {
        case .cached(let entry):
            bytes = 64 << 10
            charge = entry.size <= 64 << 10 ? entry.storedSize + 512 : 1 << 10
        case .streaming:
            bytes = 576 << 10
            charge = 0
            evenWithoutRoom = true
        case .memory(let b):
            // File-backed content (a big blob inflated whole without a cache to stream into) holds a
            // mapping, not anonymous memory: kept like a descriptor, so its reads do not inflate it again.
            bytes = b.isFileBacked ? 64 << 10 : b.count
            charge = 0
            evenWithoutRoom = b.isFileBacked
        }
        table.set(blob, for: id, bytes: bytes, charge: charge, evenWithoutRoom: evenWithoutRoom)
    }

    /// Forgets content found damaged.
    func forget(_ id: ObjectID) { table.remove(id) }
}

/// The local content cache (cache-layout.md) as a blob source: sizes from its in-memory index (no I/O),
/// content from its entries, and every fill stored at once (verified against the id first, unless the
/// pack reader verified the bytes already). Thread-safe (the cache is).
public final class CacheSource: BlobSource {
    public let name = "cache"
    public let role = BlobSourceRole.held
    public var isDurable: Bool { true }
    public let cache: ContentCache

    public init(cache: ContentCache) { self.cache = cache }

    public func size(of request: BlobRequest) -> Int? { cache.indexedSize(request.id) }

    public func open(_ request: BlobRequest) -> LoadedBlob? { cache.lookup(request.id).map { .cached($0) } }

    /// True when an entry exists (no decompression, no checks).
    public func contains(_ request: BlobRequest) -> Bool { cache.contains(request.id) }

    public func accept(_ request: BlobRequest, _ bytes: BlobBuffer, mode: FillMode) -> FillResult? {
        let outcome = bytes.withUnsafeBytes { raw in
            Result { () throws(CacheError) in try cache.store(request.id, content: raw, verified: bytes.isVerified) }
        }
        switch outcome {
        case .success: return .stored
        case .failure(let e): return .failed(e)
        }
    }
}

/// The repository's own packs: gitfs's pack reader for whole entries, libgit2 for deltified and loose
/// objects (`Repository.blobBuffer`), and object headers for sizes (never inflates). With a streamer
/// (the resolver gives its own to every `PackSource` among its loaders), a blob a pack holds whole and
/// of at least the streamer's threshold is streamed into the content cache instead of inflated whole.
/// Thread-safe.
public struct PackSource: BlobSource {
    public let name = "packs"
    public let role = BlobSourceRole.loader
    let streamer: BlobStreamer?

    public init() { streamer = nil }

    init(streamer: BlobStreamer?) { self.streamer = streamer }

    public func size(of request: BlobRequest) throws(ResolverError) -> Int? {
        do { return try request.repository.header(request.id).size } catch {
            if error.kind == .notFound { return nil }
            throw .git(error)
        }
    }

    public func open(_ request: BlobRequest) throws(ResolverError) -> LoadedBlob? {
        if let streamer, let s = try streamer.stream(request) { return .streaming(s) }
        do { return .memory(try request.repository.blobBuffer(request.id)) } catch {
            if error.kind == .notFound { return nil }
            throw .git(error)
        }
    }
}
