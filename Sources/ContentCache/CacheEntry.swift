import Basics
import Synchronization

/// An open cache entry (one blob's content). Thread-safe: `read` may be called from any number of
/// threads at once. It decompresses only the chunks a read touches and checks each chunk's zstd
/// frame checksum; a damaged chunk throws `.corrupt`, and the entry is removed from the cache (the
/// caller refills it). The entry keeps its file open, so a gc in another process that unlinks the
/// file never breaks a read in progress.
public final class CacheEntry: Sendable {
    /// The object id this entry holds.
    public let key: ObjectID
    /// Decompressed content size in bytes.
    public let size: Int

    enum Backing: ~Copyable, Sendable {
        /// A large entry: its own file, open for the entry's lifetime; offsets are file offsets.
        case file(FileDescriptor)
        /// A small entry read from a segment in one pread: the whole record in memory.
        case memory([UInt8])
    }

    let header: EntryHeader
    let backing: Backing
    let id: UInt64
    private let pool: ZstdPool
    private let onCorrupt: @Sendable (CacheEntry) -> Void
    private let reportedCorrupt = Atomic<Bool>(false)

    static let nextID = Atomic<UInt64>(1)

    init(header: EntryHeader, backing: consuming Backing, pool: ZstdPool, onCorrupt: @escaping @Sendable (CacheEntry) -> Void) {
        self.key = header.key
        self.size = header.contentSize
        self.header = header
        self.backing = backing
        self.pool = pool
        self.onCorrupt = onCorrupt
        self.id = CacheEntry.nextID.add(1, ordering: .relaxed).newValue
    }

    /// Compressed bytes of the chunks (without header).
    public var storedSize: Int { header.storedSize }

    /// Copies content from `offset` into `buffer`; returns the number of bytes copied (0 at or past
    /// the end). Decompresses only the chunks in range; a chunk that fails its checksum throws
    /// `.corrupt` and removes the entry from the cache.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(CacheError) -> Int {
        guard offset >= 0, offset < size, buffer.count > 0 else { return 0 }
        let total = min(buffer.count, size - offset)
        do throws(CacheError) {
            return try pool.withDecompressor { (d) throws(CacheError) -> Int in
                var done = 0
                while done < total {
                    let pos = offset + done
                    let ci = pos >> header.chunkLog2
                    let inChunk = pos - (ci << header.chunkLog2)
                    let plainLen = header.plainLength(ci)
                    let take = min(total - done, plainLen - inChunk)
                    let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + take)])
                    if d.memoEntry == id && d.memoChunk == ci {
                        dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: d.plain[inChunk..<(inChunk + take)]))
                    } else if inChunk == 0 && take == plainLen {
                        try decode(ci, d, into: dst)
                    } else {
                        let plain = d.plainBuffer(header.chunkSize)
                        d.memoEntry = 0
                        try decode(ci, d, into: UnsafeMutableRawBufferPointer(rebasing: plain[0..<plainLen]))
                        d.memoEntry = id
                        d.memoChunk = ci
                        dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: plain[inChunk..<(inChunk + take)]))
                    }
                    done += take
                }
                return done
            }
        } catch {
            if error.kind == .corrupt, !reportedCorrupt.exchange(true, ordering: .relaxed) { onCorrupt(self) }
            throw error
        }
    }

    /// Decompresses chunk `i` into `dst` (exactly its plain length).
    private func decode(_ i: Int, _ d: Decompressor, into dst: UnsafeMutableRawBufferPointer) throws(CacheError) {
        let start = header.offsets[i], end = header.offsets[i + 1]
        switch backing {
        case .memory(let bytes):
            let r = bytes.withUnsafeBytes { raw -> Result<Void, CacheError> in
                do throws(CacheError) {
                    try d.decompress(UnsafeRawBufferPointer(rebasing: raw[start..<end]), into: dst)
                    return .success(())
                } catch { return .failure(error) }
            }
            try r.get()
        case .file(let fd):
            let packed = d.packedBuffer(end - start)
            let n: Int
            do { n = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: packed[0..<(end - start)]), at: start) } catch {
                throw CacheError.io("cannot read cache entry \(key): \(error.message)")
            }
            if n != end - start { throw CacheError.corrupt("cache entry \(key) is truncated") }
            try d.decompress(UnsafeRawBufferPointer(rebasing: packed[0..<n]), into: dst)
        }
    }

    /// The whole content (for verify); checks every chunk.
    func readAll() throws(CacheError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        let r = out.withUnsafeMutableBytes { b -> Result<Int, CacheError> in
            do throws(CacheError) { return .success(try read(offset: 0, into: b)) } catch { return .failure(error) }
        }
        let n = try r.get()
        if n != size { throw CacheError.corrupt("cache entry \(key) is short") }
        return out
    }
}
