import Basics
#if canImport(Glibc)
import Glibc
#endif
import CZstd
import Synchronization

/// A zstd compression context set to level 1 (or another `level`) with the frame checksum on
/// (`ZSTD_createCCtx`, `ZSTD_CCtx_setParameter`). Not thread-safe: one user at a time, handed out by
/// `ZstdPool`.
final class Compressor: @unchecked Sendable {
    let cctx: OpaquePointer
    init(level: Int32 = 1) {
        cctx = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)
    }
    deinit { ZSTD_freeCCtx(cctx) }

    /// Compresses one chunk into one zstd frame (`ZSTD_compress2`). Returns the frame size.
    func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(CacheError) -> Int {
        let n = ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(n) != 0 {
            throw CacheError.io("zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))")
        }
        return n
    }

    static func bound(_ n: Int) -> Int { ZSTD_compressBound(n) }
}

/// A zstd decompression context (`ZSTD_createDCtx`) plus scratch buffers and a one-chunk memo
/// (which entry and chunk the `plain` buffer holds). Not thread-safe: one user at a time.
final class Decompressor: @unchecked Sendable {
    let dctx: OpaquePointer
    var plain: UnsafeMutableRawBufferPointer = .init(start: nil, count: 0)
    var packed: UnsafeMutableRawBufferPointer = .init(start: nil, count: 0)
    /// Which (entry id, chunk index) `plain` currently holds; entry 0 = none.
    var memoEntry: UInt64 = 0
    var memoChunk: Int = -1

    init() { dctx = ZSTD_createDCtx() }
    deinit {
        ZSTD_freeDCtx(dctx)
        plain.deallocate()
        packed.deallocate()
    }

    func plainBuffer(_ n: Int) -> UnsafeMutableRawBufferPointer {
        if plain.count < n {
            plain.deallocate()
            plain = .allocate(byteCount: n, alignment: 16)
            memoEntry = 0
        }
        return plain
    }

    func packedBuffer(_ n: Int) -> UnsafeMutableRawBufferPointer {
        if packed.count < n {
            packed.deallocate()
            packed = .allocate(byteCount: n, alignment: 16)
        }
        return packed
    }

    /// Decompresses one frame into exactly `dst.count` bytes (`ZSTD_decompressDCtx`, which checks the
    /// frame's XXH64 checksum). Throws `.corrupt` on any error or size mismatch.
    func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(CacheError) {
        guard hasChecksum(src) else { throw CacheError.corrupt("chunk frame has no checksum") }
        let n = ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(n) != 0 {
            throw CacheError.corrupt("chunk does not decompress: \(String(cString: ZSTD_getErrorName(n)))")
        }
        if n != dst.count { throw CacheError.corrupt("chunk decompressed to \(n) bytes, expected \(dst.count)") }
    }

    /// True when the frame header (byte 4, Frame_Header_Descriptor bit 2) declares a content checksum,
    /// so a frame with the checksum stripped is not accepted.
    private func hasChecksum(_ src: UnsafeRawBufferPointer) -> Bool {
        src.count >= 9 && (src[4] & 0x04) != 0
    }
}

/// Bounded pools of zstd contexts. Decompressors (the read path) are sharded by thread, so reads on
/// different threads take different locks (no global lock on the read path); compressors (the fill
/// path, a few threads) share one list. Thread-safe (a `Mutex` around each free list); at most `keep`
/// idle decompressors are retained per shard and `keepCompressors` compressors, so memory stays bounded.
final class ZstdPool: Sendable {
    private final class Shard: Sendable {
        let decompressors = Mutex<[Decompressor]>([])
    }
    private let compressors = Mutex<[Compressor]>([])
    private let fastCompressors = Mutex<[Compressor]>([])
    private let shards: [Shard]
    private let keep: Int
    private let keepCompressors: Int

    init(keep: Int = 4, keepCompressors: Int = 16, shardCount: Int = 8) {
        self.keep = keep
        self.keepCompressors = keepCompressors
        self.shards = (0..<shardCount).map { _ in Shard() }
    }

    /// The calling thread's shard (`pthread_self`, the thread's control block address, mixed).
    private var shard: Shard {
        let t = UInt(bitPattern: Int(bitPattern: UInt(pthread_self())))
        return shards[Int((t >> 12 ^ t >> 20) % UInt(shards.count))]
    }

    func withCompressor<R>(_ body: (Compressor) throws(CacheError) -> R) throws(CacheError) -> R {
        let c = compressors.withLock { $0.popLast() } ?? Compressor()
        defer { compressors.withLock { if $0.count < keepCompressors { $0.append(c) } } }
        return try body(c)
    }

    /// A compressor at level -1 (zstd's fast levels: about 1.7x level 1's speed here, for entries
    /// streamed while a reader waits on them; on nearly incompressible data the same size).
    func withFastCompressor<R>(_ body: (Compressor) throws(CacheError) -> R) throws(CacheError) -> R {
        let c = fastCompressors.withLock { $0.popLast() } ?? Compressor(level: -1)
        defer { fastCompressors.withLock { if $0.count < keepCompressors { $0.append(c) } } }
        return try body(c)
    }

    func withDecompressor<R>(_ body: (Decompressor) throws(CacheError) -> R) throws(CacheError) -> R {
        let s = shard
        let d = s.decompressors.withLock { $0.popLast() } ?? Decompressor()
        defer { s.decompressors.withLock { if $0.count < keep { $0.append(d) } } }
        return try body(d)
    }
}
