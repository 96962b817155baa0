import Basics
import ContentCache
import GitStore
import Logging
import Synchronization

/// A big blob being streamed from its pack into the content cache: its zlib stream (CRC-32 checked
/// before the first byte) is inflated in order, one 64 KiB chunk at a time, into a ring of a few chunks,
/// from which reads are answered at once; each chunk is then compressed into the cache entry being
/// written (`EntryWriter`), from which reads of chunks that left the ring are answered. Inflating (one
/// at a time, under the inflater lock) is done by whoever needs the next chunk — a reader further on,
/// or the background job; compressing and writing (one at a time, under the writer lock) by the
/// background job, or by an inflater that finds the ring full. So a reader waits for its own chunk's
/// inflation only, and a mount's background thread compresses meanwhile. When the last chunk is written
/// and the stream ended at its Adler-32 with exactly the blob's size, the entry is published; a stream
/// that fails is never published, and every later read of it is an I/O error. Memory: zlib's state and
/// the ring (`ringChunks` chunks), whatever the size. Thread-safe (lock order: inflater, writer, state).
public final class StreamingBlob: Sendable {
    public let id: ObjectID
    public let size: Int
    let repository: String
    private let writer: EntryWriter
    private let chunkSize: Int
    private let chunkCount: Int
    /// The inflater (used under its lock only).
    private let inflater: Mutex<BlobStream>
    /// Serializes compressing and appending chunks.
    private let writing = Mutex(())
    private let ring: Ring
    private let state = Mutex(State())

    /// Chunks held in memory between inflation and the cache entry.
    static let ringChunks = 8

    private struct State {
        /// Chunks inflated so far (each in the ring until written).
        var inflated = 0
        /// Which chunk each ring slot holds (-1: none, or being filled).
        var slots = [Int](repeating: -1, count: StreamingBlob.ringChunks)
        /// Why the stream failed (then nothing more is served).
        var failure: String?
    }

    /// The ring's memory: `ringChunks` chunks of `chunkSize` bytes. A slot is written only by the
    /// inflater, after it claimed the slot under the state lock; read under the state lock (copies to
    /// readers) or by the writer for a chunk inflated and not yet written (its slot cannot be claimed).
    private final class Ring: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let chunkSize: Int
        init(chunkSize: Int) {
            self.chunkSize = chunkSize
            base = .allocate(byteCount: chunkSize * StreamingBlob.ringChunks, alignment: 16)
        }
        func slot(_ chunk: Int) -> UnsafeMutableRawPointer { base + (chunk % StreamingBlob.ringChunks) * chunkSize }
        deinit { base.deallocate() }
    }

    init(id: ObjectID, repository: String, stream: BlobStream, writer: EntryWriter) {
        self.id = id
        self.size = stream.size
        self.repository = repository
        self.writer = writer
        self.chunkSize = writer.chunkSize
        self.chunkCount = writer.chunkCount
        self.inflater = Mutex(stream)
        self.ring = Ring(chunkSize: writer.chunkSize)
    }

    /// True once every chunk is written (the entry published, or it could not be: still readable here).
    public var isComplete: Bool { writer.chunksWritten == chunkCount && !isFailed }

    /// True once the entry is in the cache under its key.
    public var isPublished: Bool { writer.isPublished }

    var isFailed: Bool { state.withLock { $0.failure != nil } }

    private func plainLength(_ chunk: Int) -> Int { min(chunkSize, size - chunk * chunkSize) }

    /// Copies bytes from `offset` until the buffer is full or the content ends; inflates on first when
    /// the range is not inflated yet. A failed stream throws `.unavailable`.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(ResolverError) -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = min(buffer.count, size - offset)
        var done = 0
        while done < total {
            let pos = offset + done
            let chunk = pos / chunkSize
            // In the ring: copied under the state lock (the slot cannot be reclaimed meanwhile).
            let inChunk = pos - chunk * chunkSize
            let take = min(total - done, plainLength(chunk) - inChunk)
            let copied = state.withLock { s -> Bool? in
                if s.failure != nil { return nil }
                guard s.slots[chunk % Self.ringChunks] == chunk, chunk < s.inflated else { return false }
                (buffer.baseAddress! + done).copyMemory(from: ring.slot(chunk) + inChunk, byteCount: take)
                return true
            }
            guard let copied else { throw failed() }
            if copied {
                done += take
                continue
            }
            let written = writer.chunksWritten
            if chunk < written {
                // Written and gone from the ring: from the entry (as many written chunks as the range covers).
                let upTo = min(total, written * chunkSize - offset)
                let n: Int
                do { n = try writer.read(offset: pos, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<upTo])) } catch {
                    throw fail("\(error)")
                }
                guard n > 0 else { throw fail("the entry being written gave no bytes at \(pos)") }
                done += n
                continue
            }
            try inflate(through: chunk)
        }
        return done
    }

    /// Inflates and writes the whole entry (and publishes it); `stopping` is polled between chunks: true
    /// abandons the entry (discarded, never published). Returns the store error if the entry could not be
    /// published (the content itself was fine).
    @discardableResult
    func finish(stopping: () -> Bool = { false }) throws(ResolverError) -> CacheError? {
        var steps = 0
        while writer.chunksWritten < chunkCount {
            steps += 1
            if steps % 16 == 0, stopping() {
                abandon("the mount is stopping")
                throw failed()
            }
            if try !writeNext() {
                let next = state.withLock { $0.inflated }
                if next < chunkCount { try inflate(through: next) }
            }
        }
        if isFailed { throw failed() }
        if writer.isPublished { return nil }
        do { try writer.publish() } catch { return error }
        return nil
    }

    /// Gives up on the entry: it is discarded, never published, and reads of it fail.
    func abandon(_ why: String) {
        state.withLock { s in if s.failure == nil { s.failure = why } }
        writing.withLock { _ in writer.discard() }
    }

    /// Inflates chunks in order until chunk `last` is inflated, one per turn of the inflater lock;
    /// a full ring has its oldest chunk written first.
    private func inflate(through last: Int) throws(ResolverError) {
        while true {
            let outcome = inflater.withLock { stream -> Result<Bool, ResolverError> in
                let (k, failed) = state.withLock { ($0.inflated, $0.failure != nil) }
                if failed { return .failure(self.failed()) }
                if k > last { return .success(true) }
                // The slot of chunk k held chunk k - ringChunks: it must be written before it is reused.
                while writer.chunksWritten <= k - Self.ringChunks {
                    let wrote: Bool
                    do throws(ResolverError) { wrote = try writeNext() } catch { return .failure(error) }
                    if !wrote, writer.chunksWritten <= k - Self.ringChunks { return .failure(fail("chunk \(k - Self.ringChunks) was not written")) }
                }
                state.withLock { $0.slots[k % Self.ringChunks] = -1 }
                let length = plainLength(k)
                let slot = UnsafeMutableRawBufferPointer(start: ring.slot(k), count: length)
                do throws(GitStoreError) {
                    // The last chunk's read also checks that the stream ends there, at its Adler-32.
                    var done = 0
                    while done < length {
                        let n = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: slot[done...]))
                        guard n > 0 else { return .failure(fail("its stream ended early")) }
                        done += n
                    }
                } catch {
                    return .failure(fail(error.message))
                }
                state.withLock { s in
                    s.slots[k % Self.ringChunks] = k
                    s.inflated = k + 1
                }
                return .success(k >= last)
            }
            switch outcome {
            case .failure(let e): throw e
            case .success(true): return
            case .success(false): continue
            }
        }
    }

    /// Compresses and appends the oldest inflated chunk not yet written (publishing the entry after the
    /// last); false when there is none.
    private func writeNext() throws(ResolverError) -> Bool {
        let outcome = writing.withLock { _ -> Result<Bool, ResolverError> in
            let w = writer.chunksWritten
            let (inflated, failed) = state.withLock { ($0.inflated, $0.failure != nil) }
            if failed { return .failure(self.failed()) }
            guard w < inflated, w < chunkCount else { return .success(false) }
            do { try writer.append(UnsafeRawBufferPointer(start: ring.slot(w), count: plainLength(w))) } catch {
                return .failure(fail("\(error)"))
            }
            if w + 1 == chunkCount { _ = try? writer.publish() }
            return .success(true)
        }
        return try outcome.get()
    }

    /// The error a reader gets once the stream failed; the entry is discarded.
    private func fail(_ why: String) -> ResolverError {
        state.withLock { s in if s.failure == nil { s.failure = why } }
        writer.discard()
        return failed()
    }

    private func failed() -> ResolverError {
        .unavailable(object: id, repository: repository, reason: state.withLock { $0.failure } ?? "failed")
    }
}

/// Makes `StreamingBlob`s: for a blob a pack holds whole and of at least `threshold` bytes, the one
/// stream of that blob in this process (found or started in one atomic step, so concurrent openers
/// share it), with a background job to finish it when the mount gives one. Thread-safe.
public final class BlobStreamer: Sendable {
    /// Blobs at least this big are streamed (smaller ones are inflated whole: one libdeflate call).
    public let threshold: Int
    let cache: ContentCache
    /// Where a stream is finished off the read path (a mount's background queue); nil: by its readers.
    private let background: (any ReadAheadHooks)?
    private let live = Mutex<[ObjectID: WeakStream]>([:])
    private let logger: Logger

    private struct WeakStream: @unchecked Sendable { weak var stream: StreamingBlob? }

    /// The default threshold: 8 MiB (the size from which a whole inflate's memory starts to matter; below
    /// it libdeflate's single call is faster than a stream).
    public static let defaultThreshold = 8 << 20

    public init(cache: ContentCache, threshold: Int = BlobStreamer.defaultThreshold, background: (any ReadAheadHooks)? = nil,
                logger: Logger = Logger(label: "gitfs.stream")) {
        self.cache = cache
        self.threshold = threshold
        self.background = background
        self.logger = logger
    }

    /// The stream of the blob, or nil when it is not streamed (small, deltified, loose, not in the
    /// packs, or the cache cannot be written: the caller inflates it whole). Throws for a damaged entry.
    func stream(_ r: BlobRequest) throws(ResolverError) -> StreamingBlob? {
        if let s = live.withLock({ $0[r.id]?.stream }), !s.isFailed { return s }
        let source: BlobStream
        do {
            guard let s = try r.repository.blobStream(r.id, minimumSize: threshold) else { return nil }
            source = s
        } catch {
            throw .git(error)
        }
        let writer: EntryWriter
        do { writer = try cache.beginEntry(r.id, size: source.size) } catch { return nil }
        let made = StreamingBlob(id: r.id, repository: r.repository.name, stream: source, writer: writer)
        let s = live.withLock { map -> StreamingBlob in
            if let other = map[r.id]?.stream, !other.isFailed { return other }
            map = map.filter { $0.value.stream != nil }
            map[r.id] = WeakStream(stream: made)
            return made
        }
        guard s === made else { return s }
        if let background {
            let logger = self.logger
            _ = background.background({ stopping in
                do {
                    if let e = try made.finish(stopping: stopping) {
                        logger.error("a streamed blob could not be stored in the cache", metadata: ["object": "\(made.id)", "error": "\(e)"])
                    }
                } catch {}
            }, dropped: { made.abandon("the mount is stopping") })
        }
        return made
    }
}
