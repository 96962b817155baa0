import Basics
import ContentCache
import GitStore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A big blob being streamed from its pack into the content cache: its zlib stream (CRC-32 checked
/// before the first byte) is inflated in order, one 64 KiB chunk at a time, into a ring of a few chunks,
/// from which reads are answered at once; the cache fill copies each chunk out of the ring, compresses
/// it and appends it to the cache entry being written (`EntryWriter`), from which reads of chunks that
/// left the ring are answered.
///
/// Two modes. With a background fill (`fillsInBackground`, set once a mount's stream lane took the
/// job) the reader's path only inflates: a full ring is overwritten whether or not the fill has copied
/// its oldest chunk. A fill that fell behind so goes on in a second pass of its own — a second
/// `BlobStream` of the same entry (CRC-32 checked again), inflated up to the first chunk it lacks and
/// on from there — so it never throttles the reader; a reader that wants a chunk neither in the ring nor
/// written yet (a seek backwards) drives that pass itself. Without one (`gitfs cat`, a refused job),
/// the inflater writes a ring slot's chunk itself before reusing the slot, and the fill rides along.
///
/// The entry is published once its last chunk is written, from a stream that ended at its Adler-32
/// with exactly the blob's size; a stream that fails is never published, and every later read of it is
/// an I/O error. Memory, whatever the size: the ring (`ringChunks` chunks), the fill's one-chunk
/// scratch buffer and at most two zlib states. Thread-safe (lock order: inflater, fill, state).
public final class StreamingBlob: Sendable {
    public let id: ObjectID
    public let size: Int
    let repository: String
    private let writer: EntryWriter
    private let chunkSize: Int
    private let chunkCount: Int
    /// The inflater of the readers' path (used under its lock only).
    private let inflater: Mutex<BlobStream>
    /// The cache fill: serializes copying, compressing and appending chunks.
    private let filling: Mutex<Fill>
    private let ring: Ring
    private let state = Mutex(State())
    /// True once a background job finishes the entry: the inflater then never writes chunks itself.
    private let background = Atomic<Bool>(false)

    /// Chunks held in memory between inflation and the cache entry.
    static let ringChunks = 8

    private struct State {
        /// Chunks inflated so far by the readers' inflater.
        var inflated = 0
        /// Which chunk each ring slot holds (-1: none, or being filled).
        var slots = [Int](repeating: -1, count: StreamingBlob.ringChunks)
        /// Why the stream failed (then nothing more is served).
        var failure: String?
        /// The chunks each reader in progress still needs (from its current chunk to its last), by token.
        var readers: [Int: ClosedRange<Int>] = [:]
        var nextReader = 0
        /// True when a reader in progress still needs chunk `c`.
        func needed(_ c: Int) -> Bool { readers.values.contains { $0.contains(c) } }
    }

    /// The ring's memory: `ringChunks` chunks of `chunkSize` bytes. A slot is written only by the
    /// inflater, after it claimed the slot under the state lock; read under the state lock only
    /// (copies to readers and to the fill).
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

    /// The cache fill's own memory (used under the fill lock only): one chunk to compress from, and
    /// the second-pass stream once the fill fell behind the ring.
    private final class Fill: @unchecked Sendable {
        let scratch: UnsafeMutableRawPointer
        /// Opens a second stream of the same entry (CRC-32 checked again); nil when it cannot.
        let reopen: @Sendable () throws(GitStoreError) -> BlobStream?
        var second: BlobStream?
        /// The next chunk the second pass produces.
        var secondAt = 0
        init(chunkSize: Int, reopen: @escaping @Sendable () throws(GitStoreError) -> BlobStream?) {
            scratch = .allocate(byteCount: chunkSize, alignment: 16)
            self.reopen = reopen
        }
        deinit { scratch.deallocate() }
    }

    init(id: ObjectID, repository: String, stream: BlobStream, writer: EntryWriter,
         reopen: @escaping @Sendable () throws(GitStoreError) -> BlobStream? = { nil }) {
        self.id = id
        self.size = stream.size
        self.repository = repository
        self.writer = writer
        self.chunkSize = writer.chunkSize
        self.chunkCount = writer.chunkCount
        self.inflater = Mutex(stream)
        self.filling = Mutex(Fill(chunkSize: writer.chunkSize, reopen: reopen))
        self.ring = Ring(chunkSize: writer.chunkSize)
    }

    /// True once every chunk is written (the entry published, or it could not be: still readable here).
    public var isComplete: Bool { writer.chunksWritten == chunkCount && !isFailed }

    /// True once the entry is in the cache under its key.
    public var isPublished: Bool { writer.isPublished }

    var isFailed: Bool { state.withLock { $0.failure != nil } }

    /// Says that a background job finishes the entry (`finish`): from now on the readers' inflater
    /// never waits for the fill.
    func fillsInBackground() { background.store(true, ordering: .releasing) }

    private func plainLength(_ chunk: Int) -> Int { min(chunkSize, size - chunk * chunkSize) }

    /// Copies bytes from `offset` until the buffer is full or the content ends; inflates on first when
    /// the range is not inflated yet. A failed stream throws `.unavailable`.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(ResolverError) -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = min(buffer.count, size - offset)
        // Said while reading: the inflater writes a chunk this reader still needs before it reuses its slot.
        let last = (offset + total - 1) / chunkSize
        let token = state.withLock { s -> Int in
            s.nextReader += 1
            s.readers[s.nextReader] = (offset / chunkSize)...last
            return s.nextReader
        }
        defer { state.withLock { _ = $0.readers.removeValue(forKey: token) } }
        var done = 0
        while done < total {
            let pos = offset + done
            let chunk = pos / chunkSize
            // In the ring: copied under the state lock (the slot cannot be reclaimed meanwhile).
            let inChunk = pos - chunk * chunkSize
            let take = min(total - done, plainLength(chunk) - inChunk)
            let copied = state.withLock { s -> (Bool, Int)? in
                if s.failure != nil { return nil }
                s.readers[token] = chunk...last
                guard s.slots[chunk % Self.ringChunks] == chunk, chunk < s.inflated else { return (false, s.inflated) }
                (buffer.baseAddress! + done).copyMemory(from: ring.slot(chunk) + inChunk, byteCount: take)
                return (true, s.inflated)
            }
            guard let (copied, inflated) = copied else { throw failed() }
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
            if chunk >= inflated {
                try inflate(through: chunk)
            } else if try !writeNext(), writer.chunksWritten <= chunk {
                // Left the ring before the fill took it: the fill's second pass brings it (this reader
                // drives it, a chunk per turn); nothing to write and still not written cannot be.
                throw fail("chunk \(chunk) is neither in the ring nor written")
            }
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
            if steps % 4 == 0, stopping() {
                abandon("the mount is stopping")
                throw failed()
            }
            if try !writeNext() {
                // The fill caught up with the readers. With readers still going (a background fill, the
                // readers' inflater moved lately) it waits for them: a fill at background priority
                // holding the inflater would hold up a reader. Otherwise it inflates on itself.
                let next = state.withLock { $0.inflated }
                if background.load(ordering: .acquiring), readersMoved(since: next) { continue }
                if next < chunkCount { try inflate(through: next) }
            }
        }
        if isFailed { throw failed() }
        if writer.isPublished { return nil }
        do { try writer.publish() } catch { return error }
        return nil
    }

    /// True when the readers' inflater went past chunk `next` within `idleMilliseconds` (polled).
    private func readersMoved(since next: Int) -> Bool {
        for _ in 0..<Self.idleMilliseconds {
            usleep(1000)
            if state.withLock({ $0.inflated > next || $0.failure != nil }) { return true }
        }
        return false
    }

    /// How long readers may pause before a background fill inflates on by itself.
    static let idleMilliseconds = 50

    /// Gives up on the entry: it is discarded, never published, and reads of it fail.
    func abandon(_ why: String) {
        state.withLock { s in if s.failure == nil { s.failure = why } }
        filling.withLock { _ in writer.discard() }
    }

    /// Inflates chunks in order until chunk `last` is inflated, one per turn of the inflater lock.
    /// Without a background fill, a full ring has its oldest chunk written first; with one, the oldest
    /// slot is simply reused (the fill, if it had not copied it yet, goes on in its second pass).
    private func inflate(through last: Int) throws(ResolverError) {
        while true {
            let outcome = inflater.withLock { stream -> Result<Bool, ResolverError> in
                let (k, failed) = state.withLock { ($0.inflated, $0.failure != nil) }
                if failed { return .failure(self.failed()) }
                if k > last { return .success(true) }
                // The slot of chunk k held chunk k - ringChunks: written first when nobody else will, or
                // when a reader in progress still needs it (a reader of an earlier range, behind this one).
                let old = k - Self.ringChunks
                if old >= 0, writer.chunksWritten <= old,
                   !background.load(ordering: .acquiring) || state.withLock({ $0.needed(old) }) {
                    while writer.chunksWritten <= old {
                        let wrote: Bool
                        do throws(ResolverError) { wrote = try writeNext() } catch { return .failure(error) }
                        if !wrote, writer.chunksWritten <= old { return .failure(fail("chunk \(old) was not written")) }
                    }
                }
                state.withLock { $0.slots[k % Self.ringChunks] = -1 }
                let length = plainLength(k)
                let slot = UnsafeMutableRawBufferPointer(start: ring.slot(k), count: length)
                do throws(GitStoreError) {
                    // The last chunk's read also checks that the stream ends there, at its Adler-32.
                    try Self.readChunk(stream, into: slot)
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

    /// Fills `buffer` from `stream` (its next bytes); a stream that ends first throws `.corrupt`.
    private static func readChunk(_ stream: BlobStream, into buffer: UnsafeMutableRawBufferPointer) throws(GitStoreError) {
        var done = 0
        while done < buffer.count {
            let n = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            guard n > 0 else { throw GitStoreError(.corrupt, "its stream ended early") }
            done += n
        }
    }

    /// Compresses and appends the next chunk the entry lacks (publishing the entry after the last): from
    /// the ring while it is there, else from the fill's second pass; false when that chunk is not
    /// inflated yet and no second pass runs (the caller inflates on).
    private func writeNext() throws(ResolverError) -> Bool {
        let outcome = filling.withLock { fill -> Result<Bool, ResolverError> in
            let w = writer.chunksWritten
            guard w < chunkCount else { return .success(false) }
            let length = plainLength(w)
            let plain = UnsafeMutableRawBufferPointer(start: fill.scratch, count: length)
            enum From { case ring, lost, notYet, failed }
            let from = state.withLock { s -> From in
                if s.failure != nil { return .failed }
                guard w < s.inflated else { return .notYet }
                guard s.slots[w % Self.ringChunks] == w else { return .lost }
                plain.copyMemory(from: UnsafeRawBufferPointer(start: ring.slot(w), count: length))
                return .ring
            }
            switch from {
            case .failed: return .failure(self.failed())
            case .notYet: return .success(false)
            case .ring: break
            case .lost:
                do throws(GitStoreError) { try secondPass(fill, chunk: w, into: plain) } catch {
                    return .failure(fail("its second pass: \(error.message)"))
                }
            }
            do { try writer.append(UnsafeRawBufferPointer(plain)) } catch {
                return .failure(fail("\(error)"))
            }
            if w + 1 == chunkCount { _ = try? writer.publish() }
            return .success(true)
        }
        return try outcome.get()
    }

    /// Inflates chunk `w` with the fill's own stream, opening it the first time and inflating on up to
    /// `w` (chunks the ring gave meanwhile are skipped); its last chunk's read checks the stream's end
    /// (Adler-32, size) like the first pass's.
    private func secondPass(_ fill: Fill, chunk w: Int, into plain: UnsafeMutableRawBufferPointer) throws(GitStoreError) {
        if fill.second == nil {
            guard let s = try fill.reopen() else { throw GitStoreError(.corrupt, "the entry cannot be read again") }
            fill.second = s
            fill.secondAt = 0
        }
        let second = fill.second!
        let whole = UnsafeMutableRawBufferPointer(start: fill.scratch, count: chunkSize)
        while fill.secondAt < w {
            try Self.readChunk(second, into: UnsafeMutableRawBufferPointer(rebasing: whole[0..<plainLength(fill.secondAt)]))
            fill.secondAt += 1
        }
        try Self.readChunk(second, into: plain)
        fill.secondAt = w + 1
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
        let repository = r.repository, id = r.id, threshold = self.threshold
        let made = StreamingBlob(id: r.id, repository: r.repository.name, stream: source, writer: writer,
                                 reopen: { () throws(GitStoreError) in try repository.blobStream(id, minimumSize: threshold) })
        let s = live.withLock { map -> StreamingBlob in
            if let other = map[r.id]?.stream, !other.isFailed { return other }
            map = map.filter { $0.value.stream != nil }
            map[r.id] = WeakStream(stream: made)
            return made
        }
        guard s === made else { return s }
        if let background {
            let logger = self.logger
            let taken = background.background({ stopping in
                do {
                    if let e = try made.finish(stopping: stopping) {
                        logger.error("a streamed blob could not be stored in the cache", metadata: ["object": "\(made.id)", "error": "\(e)"])
                    }
                } catch {}
            }, dropped: { made.abandon("the mount is stopping") })
            if taken { made.fillsInBackground() }
        }
        return made
    }
}
