// MappedPack: blobs inflated (libdeflate) and rebuilt from delta chains, checked before they are returned.
import Basics
import CDeflate
import Glibc
import Synchronization

/// Idle libdeflate decompressors, reused: `libdeflate_alloc_decompressor` per entry (a ~10 KB
/// allocation) was ~3% of a cold read's server CPU. At most `keep` are kept; thread-safe (one lock,
/// held only to pop or push a pointer).
enum DeflatePool {
    static let keep = 32
    /// The idle decompressors' addresses (a pointer is not Sendable; an address is).
    private static let idle = Mutex<[UInt]>([])

    /// Calls `body` with a decompressor no other thread uses meanwhile; nil when none can be allocated.
    static func withDecompressor<R>(_ body: (OpaquePointer) -> R) -> R? {
        let reused = idle.withLock { $0.popLast() }.flatMap { OpaquePointer(bitPattern: $0) }
        guard let d = reused ?? libdeflate_alloc_decompressor() else { return nil }
        defer {
            let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(d)))
            let kept = idle.withLock { pool -> Bool in
                guard pool.count < keep else { return false }
                pool.append(address)
                return true
            }
            if !kept { libdeflate_free_decompressor(d) }
        }
        return body(d)
    }
}

extension MappedPack {
    /// Entries this small (inflated size) are read with `pread` into a scratch buffer; larger ones are
    /// inflated straight from the mapping.
    static let mappedThreshold = 1 << 20

    /// Reads the blob at index position `i`.
    /// - Whole (type 3): inflated into a buffer of exactly the header's size. The entry's bytes must match
    ///   the CRC-32 the index keeps for it (written by `git index-pack`, which hashed the object when the
    ///   pack arrived) and inflate (`libdeflate_zlib_decompress_ex`, Adler-32 checked) to exactly that size.
    /// - Deltified (types 6, 7): the chain is followed to a whole base (or one in `bases`), and the deltas
    ///   applied in turn; the result must hash to `id` (SHA-1).
    /// Either way the result is marked verified. Nil for other types, chains longer than 10,000, sizes
    /// that cannot be allocated, or any mismatch (the caller then asks libgit2).
    func blob(position i: Int, id: ObjectID, bases: DeltaBaseCache) -> BlobBuffer? {
        guard let offset = entryOffset(i), let h = header(at: offset) else { return nil }
        if h.type == 6 || h.type == 7 { return rebuild(offset: offset, header: h, id: id, bases: bases) }
        guard h.type == 3, let out = BlobBuffer.allocate(h.size) else { return nil }
        let expectedCRC = MappedPack.be32(index, MappedPack.shaTable + 20 * count + 4 * i)
        guard inflate(offset: offset, header: h, into: out.pointer, crc: expectedCRC) else {
            BlobBuffer.deallocate(out)
            return nil
        }
        out.dropResidentPages()   // file-backed (a big blob without a cache to stream into): out of the RSS
        return BlobBuffer(owning: out, verified: true)
    }

    /// Inflates the entry's zlib stream into `out` (exactly `h.size` bytes), checking the entry's CRC-32
    /// when `crc` is given: small entries through `pread`, big ones from the mapping.
    private func inflate(offset: Int, header h: Header, into out: UnsafeMutableRawPointer, crc: UInt32?) -> Bool {
        h.size < MappedPack.mappedThreshold
            ? inflateCopy(offset: offset, data: h.data, size: h.size, into: out, crc: crc)
            : inflateMapped(offset: offset, data: h.data, size: h.size, into: out, crc: crc)
    }

    /// Rebuilds a deltified blob: walks the chain back to a whole object of type blob (or a base found in
    /// `bases`), then applies each delta from the base forward. Intermediate results of at most
    /// `DeltaBaseCache.maxObject` bytes are offered to `bases`; the result must hash to `id`.
    private func rebuild(offset: Int, header first: Header, id: ObjectID, bases: DeltaBaseCache) -> BlobBuffer? {
        var chain = [(offset: offset, header: first)]
        var base: DeltaBaseCache.Bytes?
        var next = first.base
        while let at = next {
            if let cached = bases.object(pack: serial, offset: at) {
                base = cached
                break
            }
            guard chain.count < 10_000, let h = header(at: at) else { return nil }
            if h.type == 6 || h.type == 7 {
                chain.append((at, h))
                next = h.base
                continue
            }
            guard h.type == 3, let bytes = DeltaBaseCache.Bytes(count: h.size),
                  inflate(offset: at, header: h, into: bytes.pointer, crc: nil) else { return nil }
            bases.keep(bytes, pack: serial, offset: at)
            base = bytes
            break
        }
        guard var current = base else { return nil }
        for (k, link) in chain.enumerated().reversed() {
            guard let delta = DeltaBaseCache.Bytes(count: link.header.size),
                  inflate(offset: link.offset, header: link.header, into: delta.pointer, crc: nil),
                  let resultSize = Delta.resultSize(delta.buffer, baseSize: current.count) else { return nil }
            if k == 0 {
                guard let out = BlobBuffer.allocate(resultSize) else { return nil }
                guard Delta.apply(delta.buffer, to: current.buffer, into: UnsafeMutableRawBufferPointer(start: out.pointer, count: resultSize)),
                      GitHash.blobID(of: UnsafeRawBufferPointer(start: out.pointer, count: resultSize)) == id else {
                    BlobBuffer.deallocate(out)
                    return nil
                }
                return BlobBuffer(owning: out, verified: true)
            }
            guard let result = DeltaBaseCache.Bytes(count: resultSize),
                  Delta.apply(delta.buffer, to: current.buffer, into: UnsafeMutableRawBufferPointer(start: result.pointer, count: resultSize))
            else { return nil }
            bases.keep(result, pack: serial, offset: link.offset)
            current = result
        }
        return nil
    }

    /// `libdeflate_zlib_decompress_ex` of the stream at `data` into exactly `size` bytes, then the CRC-32
    /// of the whole entry (`[offset, data + consumed)`) against `crc`.
    private static func inflate(_ base: UnsafeRawPointer, offset: Int, data: Int, available: Int,
                                size: Int, into out: UnsafeMutableRawPointer, crc: UInt32?) -> (ok: Bool, consumed: Int) {
        var consumed = 0
        var produced = 0
        guard let rc = DeflatePool.withDecompressor({ d in
            libdeflate_zlib_decompress_ex(d, base + data, available, out, size, &consumed, &produced)
        }), rc == LIBDEFLATE_SUCCESS, produced == size else { return (false, consumed) }
        guard let crc else { return (true, consumed) }
        return (libdeflate_crc32(0, base + offset, data - offset + consumed) == crc, consumed)
    }

    /// Small entries: one `pread` of at most the most a zlib stream of `size` bytes can take (stored
    /// blocks) into a scratch buffer, so the pack's pages never enter this process's mappings.
    private func inflateCopy(offset: Int, data: Int, size: Int, into out: UnsafeMutableRawPointer, crc: UInt32?) -> Bool {
        let bound = size + 5 * (size / 16_000 + 1) + 6
        let length = min(data - offset + bound, pack.count - 20 - offset)
        guard let scratch = malloc(length) else { return false }
        defer { free(scratch) }
        // A short read: the pack is shorter now than when it was opened (the caller reports it).
        let wanted = UnsafeMutableRawBufferPointer(start: scratch, count: length)
        guard (try? packFile.read(into: wanted, at: offset)) == length else { return false }
        let header = data - offset
        return MappedPack.inflate(UnsafeRawPointer(scratch), offset: 0, data: header, available: length - header,
                                  size: size, into: out, crc: crc).ok
    }

    /// Big entries: inflated from the mapping, the whole compressed entry read ahead first
    /// (`madvise(MADV_WILLNEED)`) and its pages dropped from this process afterwards
    /// (`madvise(MADV_DONTNEED)`; they stay in the page cache), so big reads do not grow the RSS. Only
    /// while the pack still has its size (`fstat`); a truncation racing with the inflate reads zeros
    /// (`CPackGuard`), which the CRC-32 and Adler-32 checks refuse.
    private func inflateMapped(offset: Int, data: Int, size: Int, into out: UnsafeMutableRawPointer, crc: UInt32?) -> Bool {
        guard currentSize() == pack.count else { return false }
        let end = pack.count - 20
        prefetch(from: offset, to: nextEntry(after: offset) ?? end)
        let r = MappedPack.inflate(pack.baseAddress!, offset: offset, data: data, available: end - data,
                                   size: size, into: out, crc: crc)
        release(from: offset, count: data - offset + (r.ok ? r.consumed : min(end - data, size + 64)))
        return r.ok
    }

    /// Where the entry after the one at `offset` starts (a scan of the index's offsets, for big entries
    /// only); nil in packs with over a million objects, where the scan would cost more than it saves.
    private func nextEntry(after offset: Int) -> Int? {
        guard count <= 1 << 20 else { return nil }
        var next = pack.count - 20
        for i in 0..<count {
            if let o = entryOffset(i), o > offset, o < next { next = o }
        }
        return next
    }

    /// `madvise(MADV_WILLNEED)` on `[from, to)`: the kernel starts reading the whole compressed entry
    /// from disk at once, instead of 8 MiB read-ahead windows behind the inflater's page faults.
    func prefetch(from: Int, to: Int) {
        let page = 4096
        let start = from / page * page
        guard to > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: pack.baseAddress! + start), to - start, MADV_WILLNEED)
    }

    /// `madvise(MADV_DONTNEED)` on the pages that hold `[from, from + count)`. A page shared with an entry
    /// another thread is inflating is simply faulted in again from the page cache.
    func release(from: Int, count: Int) {
        let page = 4096
        let start = from / page * page
        let stop = min((from + count + page - 1) / page * page, (pack.count + page - 1) / page * page)
        guard stop > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: pack.baseAddress! + start), stop - start, MADV_DONTNEED)
    }
}
