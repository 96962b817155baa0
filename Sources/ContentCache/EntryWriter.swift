import Basics
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A large entry being written chunk by chunk — cache-layout.md's large entry file, in `tmp/` under its
/// writer's lock — whose chunks can be read as soon as they are written: how a big blob is streamed into
/// the cache without being held whole. `publish()` writes the header and renames the file into
/// `objects/` once every chunk is there; `discard()`, or the writer going away unpublished, removes it,
/// so a partial entry is never published. Memory: one offset per chunk (8 bytes per 64 KiB) and one
/// compressed frame while appending.
/// Thread-safe: appends, `publish` and `discard` are serialized by the owner (one producer); reads of
/// written chunks run from any number of threads at once, and stay valid after publication (same file).
public final class EntryWriter: @unchecked Sendable {
    public let key: ObjectID
    /// The content's size in bytes.
    public let size: Int
    /// Chunks the content is cut into (the last one may be short).
    public let chunkCount: Int
    private let cache: ContentCache
    private let chunkLog2: Int
    private let file: OpenFile
    /// Start of each chunk frame in the file, then the end of the last written one (`chunkCount + 1`).
    private let offsets: UnsafeMutablePointer<Int>
    private let written = Atomic<Int>(0)
    private let memoID = CacheEntry.nextID.add(1, ordering: .relaxed).newValue
    private enum Phase { case writing, published, discarded }
    private let phase = Mutex(Phase.writing)

    init(cache: ContentCache, key: ObjectID, size: Int, file: OpenFile) {
        self.cache = cache
        self.key = key
        self.size = size
        self.chunkLog2 = cache.chunkLog2
        self.chunkCount = EntryHeader.chunkCount(contentSize: size, chunkLog2: cache.chunkLog2)
        self.file = file
        offsets = .allocate(capacity: chunkCount + 1)
        offsets[0] = EntryHeader.headerSize(chunkCount: chunkCount)
    }

    deinit {
        discard()
        offsets.deallocate()
    }

    /// Bytes of content per chunk.
    public var chunkSize: Int { 1 << chunkLog2 }

    /// Chunks written so far (readable).
    public var chunksWritten: Int { written.load(ordering: .acquiring) }

    /// Content bytes readable so far (from offset 0).
    public var bytesWritten: Int { min(size, chunksWritten << chunkLog2) }

    /// Compresses the next chunk (`plain` must be exactly its length: `chunkSize`, or the remainder for
    /// the last) at zstd level -1 (a reader may be waiting: see `ZstdPool.withFastCompressor`) and
    /// writes it; readable once this returns. A full disk throws `.noSpace`.
    public func append(_ plain: UnsafeRawBufferPointer) throws(CacheError) {
        let i = written.load(ordering: .relaxed)
        precondition(i < chunkCount && plain.count == min(chunkSize, size - (i << chunkLog2)), "chunk \(i) of the wrong length")
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: Compressor.bound(chunkSize), alignment: 16)
        defer { frame.deallocate() }
        let m = try cache.pool.withFastCompressor { (c) throws(CacheError) in try c.compress(plain, into: frame) }
        do { try file.fd.write(UnsafeRawBufferPointer(rebasing: frame[0..<m]), at: offsets[i]) } catch {
            let e = ContentCache.failure(error, "cannot write cache entry \(key)")
            cache.logOnce(e)
            throw e
        }
        offsets[i + 1] = offsets[i] + m
        written.store(i + 1, ordering: .releasing)
    }

    /// Writes the header and publishes the entry by rename (cache-layout.md). Only once every chunk is
    /// written; the caller has checked the content (size, checksums). The file stays readable here.
    public func publish() throws(CacheError) {
        precondition(chunksWritten == chunkCount, "publishing an incomplete entry")
        let outcome = phase.withLock { p -> Result<Bool, CacheError> in
            guard p == .writing else { return .success(false) }
            do throws(CacheError) {
                try writeHeaderAndRename()
                p = .published
                return .success(true)
            } catch {
                return .failure(error)
            }
        }
        let publishedNow = try outcome.get()
        file.fd.unlock()
        // A streamed entry is a store like any other: the store observer (a remote cache's write-back)
        // hears of it once, as `ContentCache.store` tells it of the entries it writes.
        if publishedNow, let observer = cache.storeObserver.withLock({ $0 }) { observer(key, size) }
    }

    private func writeHeaderAndRename() throws(CacheError) {
        var lengths = [UInt32]()
        lengths.reserveCapacity(chunkCount)
        for i in 0..<chunkCount { lengths.append(UInt32(offsets[i + 1] - offsets[i])) }
        let header = EntryHeader.encode(key: key, chunkLog2: chunkLog2, contentSize: size, created: cache.clock(), lengths: lengths)
        do { try file.fd.write(header, at: 0) } catch {
            let e = ContentCache.failure(error, "cannot write cache entry \(key)")
            cache.logOnce(e)
            throw e
        }
        let disk = (try? file.fd.status()).map(FileSystem.diskBytes) ?? 0
        let path = cache.objectPath(key)
        let replaced = (try? FileSystem.linkStatus(path)).map(FileSystem.diskBytes)
        try cache.publish(file.path, path)
        cache.running.add(entries: replaced == nil ? 1 : 0, diskBytes: disk - (replaced ?? 0))
    }

    /// Removes the unpublished file (idempotent; nothing once published). Reads of it fail afterwards.
    public func discard() {
        phase.withLock { p in
            guard p == .writing else { return }
            p = .discarded
            try? FileSystem.remove(file.path)
        }
    }

    /// True once `publish()` succeeded.
    public var isPublished: Bool { phase.withLock { $0 == .published } }

    /// Copies content from `offset` into `buffer`, up to the end of the chunks written so far; returns
    /// the count (0 at or past that point). Each chunk's frame is checked (zstd checksum) as on any read.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(CacheError) -> Int {
        let limit = bytesWritten
        guard offset >= 0, offset < limit, buffer.count > 0 else { return 0 }
        let total = min(buffer.count, limit - offset)
        return try cache.pool.withDecompressor { (d) throws(CacheError) -> Int in
            var done = 0
            while done < total {
                let pos = offset + done
                let ci = pos >> chunkLog2
                let inChunk = pos - (ci << chunkLog2)
                let plainLen = min(chunkSize, size - (ci << chunkLog2))
                let take = min(total - done, plainLen - inChunk)
                let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + take)])
                if d.memoEntry == memoID && d.memoChunk == ci {
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: d.plain[inChunk..<(inChunk + take)]))
                } else if inChunk == 0 && take == plainLen {
                    try decode(ci, d, into: dst)
                } else {
                    let plain = d.plainBuffer(chunkSize)
                    d.memoEntry = 0
                    try decode(ci, d, into: UnsafeMutableRawBufferPointer(rebasing: plain[0..<plainLen]))
                    d.memoEntry = memoID
                    d.memoChunk = ci
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: plain[inChunk..<(inChunk + take)]))
                }
                done += take
            }
            return done
        }
    }

    private func decode(_ i: Int, _ d: Decompressor, into dst: UnsafeMutableRawBufferPointer) throws(CacheError) {
        let start = offsets[i], end = offsets[i + 1]
        let packed = d.packedBuffer(end - start)
        let n: Int
        do { n = try file.fd.read(into: UnsafeMutableRawBufferPointer(rebasing: packed[0..<(end - start)]), at: start) } catch {
            throw CacheError.io("cannot read cache entry \(key) being written: \(error.message)")
        }
        if n != end - start { throw CacheError.corrupt("cache entry \(key) being written is truncated") }
        try d.decompress(UnsafeRawBufferPointer(rebasing: packed[0..<n]), into: dst)
    }
}

extension ContentCache {
    /// Starts a large entry for `key` of `size` bytes (`EntryWriter`): a locked file in tmp/. Throws
    /// `.readOnly` when the cache cannot be written, `.noSpace` on a full disk.
    public func beginEntry(_ key: ObjectID, size: Int) throws(CacheError) -> EntryWriter {
        guard isInitialised else {
            throw CacheError(.readOnly, "content cache \(directory) is not initialised and cannot be; \(key) not cached")
        }
        ensureLoaded()
        let temp: TempFile
        do { temp = try createLockedTemp(key.hex) } catch {
            logOnce(error)
            throw error
        }
        return EntryWriter(cache: self, key: key, size: size, file: OpenFile(path: temp.path, fd: temp.fd))
    }
}
