import Basics
import ContentCache
import GitStore
import Logging
import Synchronization

/// A big blob being streamed from its pack into the content cache: its zlib stream (CRC-32 checked
/// before the first byte) is inflated in order, one 64 KiB chunk at a time, straight into the cache
/// entry being written (`EntryWriter`), and a read is answered as soon as its range is there. A reader
/// past the written part inflates on until its range is there (one producer at a time, under this
/// blob's lock; the blob's other readers wait for their own chunks only); a background job finishes the
/// entry when a mount gives one. When the last chunk is written and the stream ended at its Adler-32
/// with exactly the blob's size, the entry is published; a stream that fails is never published, and
/// every later read of it is an I/O error. Memory: zlib's state and one chunk, whatever the size.
/// Thread-safe.
public final class StreamingBlob: Sendable {
    public let id: ObjectID
    public let size: Int
    let repository: String
    private let writer: EntryWriter
    private let producer: Mutex<Producer>
    /// Why the stream failed (then nothing more is served), once it has.
    private let failure = Mutex<String?>(nil)

    /// The inflater and its one-chunk buffer, used under the producer lock only.
    private final class Producer: @unchecked Sendable {
        let stream: BlobStream
        let chunk: UnsafeMutableRawBufferPointer
        init(stream: BlobStream, chunkSize: Int) {
            self.stream = stream
            self.chunk = .allocate(byteCount: chunkSize, alignment: 16)
        }
        deinit { chunk.deallocate() }
    }

    init(id: ObjectID, repository: String, stream: BlobStream, writer: EntryWriter) {
        self.id = id
        self.size = stream.size
        self.repository = repository
        self.writer = writer
        self.producer = Mutex(Producer(stream: stream, chunkSize: writer.chunkSize))
    }

    /// True once every chunk is written and the entry published (or could not be: still readable here).
    public var isComplete: Bool { writer.chunksWritten == writer.chunkCount && failure.withLock({ $0 }) == nil }

    /// True once the entry is in the cache under its key.
    public var isPublished: Bool { writer.isPublished }

    /// Bytes of content readable now without inflating more.
    public var bytesReady: Int { writer.bytesWritten }

    /// Copies bytes from `offset` until the buffer is full or the content ends; inflates on first when
    /// the range is not written yet. A failed stream throws `.unavailable`.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(ResolverError) -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let end = min(size, offset + buffer.count)
        try produce(through: (end - 1) / writer.chunkSize)
        do { return try writer.read(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(end - offset)])) } catch {
            throw fail("\(error)")
        }
    }

    /// Inflates and writes the whole entry (and publishes it); `stopping` is polled between batches of
    /// chunks: true abandons the entry (discarded, never published). Returns the store error, if the
    /// entry could not be published (the content itself was fine).
    @discardableResult
    func finish(stopping: () -> Bool = { false }) throws(ResolverError) -> CacheError? {
        var next = writer.chunksWritten
        while next < writer.chunkCount {
            if stopping() {
                abandon("the mount is stopping")
                throw .unavailable(object: id, repository: repository, reason: "the mount is stopping")
            }
            next = min(writer.chunkCount, next + 16)
            try produce(through: next - 1)
        }
        return try publishError()
    }

    /// Gives up on the entry: it is discarded, never published, and reads of it fail.
    func abandon(_ why: String) {
        failure.withLock { f in if f == nil { f = why } }
        producer.withLock { _ in writer.discard() }
    }

    /// Inflates chunks in order until chunk `last` is written: one chunk per turn of the producer lock,
    /// so concurrent producers (readers further on, the background job) take turns and `abandon` gets in.
    private func produce(through last: Int) throws(ResolverError) {
        while writer.chunksWritten <= last {
            let outcome = producer.withLock { p -> String? in
                if let why = failure.withLock({ $0 }) { return why }
                let i = writer.chunksWritten
                guard i <= last else { return nil }
                let length = min(writer.chunkSize, size - i * writer.chunkSize)
                let chunk = UnsafeMutableRawBufferPointer(rebasing: p.chunk[0..<length])
                do throws(GitStoreError) {
                    // The last chunk's read also checks that the stream ends there, at its Adler-32.
                    var done = 0
                    while done < length {
                        let n = try p.stream.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[done...]))
                        guard n > 0 else { return "its stream ended early" }
                        done += n
                    }
                } catch {
                    return error.message
                }
                do { try writer.append(UnsafeRawBufferPointer(chunk)) } catch {
                    return "\(error)"
                }
                if writer.chunksWritten == writer.chunkCount { _ = try? writer.publish() }
                return nil
            }
            if let why = outcome { throw fail(why) }
        }
    }

    /// The error a reader gets once the stream failed; the entry is discarded.
    private func fail(_ why: String) -> ResolverError {
        let first = failure.withLock { f -> String in
            if f == nil { f = why }
            return f!
        }
        writer.discard()
        return .unavailable(object: id, repository: repository, reason: first)
    }

    /// After the last chunk: nil when published, else why not (the content is still served from here).
    private func publishError() throws(ResolverError) -> CacheError? {
        if let why = failure.withLock({ $0 }) { throw .unavailable(object: id, repository: repository, reason: why) }
        if writer.isPublished { return nil }
        do { try writer.publish() } catch { return error }
        return nil
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

extension StreamingBlob {
    var isFailed: Bool { failure.withLock { $0 != nil } }
}
