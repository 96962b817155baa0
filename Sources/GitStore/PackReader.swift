import Basics
import CDeflate
import CPackGuard
import Glibc
import Synchronization

/// gitfs's own reader for blobs in packs: the `.idx` lookup and the pack entry headers are parsed here,
/// zlib streams are inflated with libdeflate into buffers of exactly the size the header gives (about
/// 2.3× zlib's `inflate`, which libgit2 and git use), and delta chains are rebuilt here (`Delta`, with
/// the process-wide `DeltaBaseCache`). Every result is checked before it is returned (see
/// `MappedPack.blob`). Loose objects, other types and anything that does not check out are `.notHere`,
/// and the caller reads them with libgit2, which stays the authority. A pack that shrank under the reader
/// (truncated by disk trouble or a tool) is reported as damage, never read past its end: headers and small
/// entries are read with `pread` (a short read is the bounds check against the current size), big ones
/// from the mapping only after `fstat` says the pack still has its size, and the SIGBUS guard
/// (`CPackGuard`) turns a truncation racing with that read into zeros the checksums refuse.
/// Thread-safe: the pack set is read and swapped under a per-repository lock held for a copy of it (or a
/// rescan when the directory changed); inflating runs without a lock.
final class PackReader: Sendable {
    private let directory: String
    private let state = Mutex(PackSetState())

    private struct PackSetState: ~Copyable {
        var stamp: (sec: Int, nsec: Int)? = nil
        var packs: [MappedPack] = []
        /// When the directory was last looked at (`CLOCK_MONOTONIC`, ns).
        var checked: UInt64 = 0
    }

    /// How long a look at the pack directory stays good for reads that find their object: a `stat` per
    /// read cost 6.6% of reading small blobs. An object missing from the packs looks again at once (a
    /// fetch adds packs); this bound is how long packs a gc removed stay mapped (their space held).
    static let recheckInterval: UInt64 = 1_000_000_000

    /// Reads the packs under `objectsPack` (`<mirror>/objects/pack`) lazily, on the first read.
    init(objectsPack: String) {
        directory = objectsPack
    }

    /// Bases of deltas recently rebuilt, shared by every repository of the process (one bound in all).
    private static let bases = DeltaBaseCache()

    /// What `blob(_:)` found.
    enum Found {
        case blob(BlobBuffer)
        /// Loose, not a blob, or an entry that does not check out: the caller asks libgit2.
        case notHere
        /// The pack holding it shrank since it was opened: what `PackDamage.diagnose` says of it.
        case damaged(String)
    }

    /// The blob `id` from the first pack that holds it, inflated (and rebuilt from its delta chain when
    /// deltified); `.notHere` when it is loose, not a blob, or anything does not check out (the caller
    /// falls back to libgit2); `.damaged` when its pack is shorter than when it was opened.
    func blob(_ id: ObjectID) -> Found {
        var looked = packs(lookNow: false)
        while true {
            for pack in looked.packs {
                guard let i = pack.position(of: id) else { continue }
                if let b = pack.blob(position: i, id: id, bases: Self.bases) { return .blob(b) }
                guard let size = pack.currentSize(), size == pack.size else {
                    return .damaged(PackDamage.diagnose(packDirectory: directory)
                        ?? "pack \(pack.name).pack is damaged (it shrank from \(pack.size) bytes while open)")
                }
                return .notHere
            }
            // Not in the packs as last seen: unless they were just looked at, look again (a fetch).
            guard !looked.fresh else { return .notHere }
            looked = packs(lookNow: true)
        }
    }

    /// The current packs, and whether the directory was looked at by this call. It is looked at
    /// (`stat`, then the `*.idx` files when its mtime moved) when `lookNow` or when the last look is
    /// older than `recheckInterval`, so a pack gc removed is unmapped once no reader holds it.
    func packs(lookNow: Bool) -> (packs: [MappedPack], fresh: Bool) {
        let now = MonotonicTime.now.nanoseconds
        let current = state.withLock { s -> [MappedPack]? in
            lookNow || s.stamp == nil || now &- s.checked >= Self.recheckInterval ? nil : s.packs
        }
        if let current { return (current, false) }
        var st = stat()
        guard stat(directory, &st) == 0 else { return ([], true) }
        let stamp = (sec: st.st_mtim.tv_sec, nsec: st.st_mtim.tv_nsec)
        let packs = state.withLock { s -> [MappedPack] in
            s.checked = now
            if let old = s.stamp, old == stamp { return s.packs }
            var kept: [String: MappedPack] = [:]
            for p in s.packs { kept[p.name] = p }
            var fresh: [MappedPack] = []
            for name in Self.indexNames(in: directory) {
                let base = String(name.dropLast(4))
                // Same name and same file: a pack rewritten under its old name (a repack of identical
                // content) is mapped anew, so the deleted file's space is not held.
                if let p = kept[base], p.file == MappedPack.FileID(path: directory + "/" + base + ".pack") {
                    fresh.append(p)
                } else if let p = MappedPack(directory: directory, name: base) {
                    fresh.append(p)
                }
            }
            s.packs = fresh
            s.stamp = stamp
            return fresh
        }
        return (packs, true)
    }

    /// Names of the `*.idx` files in `dir` (`opendir`/`readdir`), sorted for a stable order.
    private static func indexNames(in dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix("pack-"), name.hasSuffix(".idx") { names.append(name) }
        }
        return names.sorted()
    }
}

/// One pack (`<name>.pack`) and its version-2 index (`<name>.idx`), both mapped read-only (`mmap`) after
/// their headers, sizes and shared checksum were checked, and unmapped exactly once (`munmap`) when the
/// last reference goes. The pack is read through the mapping only for big entries, after an `fstat`; a
/// mapping read past a file's end (the index or pack shrank) reads zeros instead of raising SIGBUS
/// (`CPackGuard`), and zeros fail the index lookups' bounds checks and every entry's checksums.
/// Immutable; thread-safe.
final class MappedPack: @unchecked Sendable {
    let name: String
    /// Which file the pack is (device and inode).
    let file: FileID
    /// A number no other pack of this process ever gets: keys this pack's entries in `DeltaBaseCache`.
    let serial: UInt64 = MappedPack.serials.add(1, ordering: .relaxed).newValue
    private static let serials = Atomic<UInt64>(0)
    private let index: UnsafeRawBufferPointer
    private let pack: UnsafeRawBufferPointer
    /// The pack, open for `pread` of headers and small entries.
    private let packFile: FileDescriptor

    /// A file's identity: device and inode numbers.
    struct FileID: Equatable {
        let device: UInt64
        let inode: UInt64

        init(_ st: stat) {
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
        }

        /// `stat` of `path`; nil when it fails.
        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            self.init(st)
        }
    }
    private let count: Int
    private let largeOffsets: Int

    private static let shaTable = 8 + 256 * 4

    init?(directory: String, name: String) {
        gitfs_pack_guard_install()
        guard let (index, ifd) = MappedPack.map(directory + "/" + name + ".idx") else { return nil }
        close(ifd)
        guard let (pack, pfd) = MappedPack.map(directory + "/" + name + ".pack") else {
            munmap(UnsafeMutableRawPointer(mutating: index.baseAddress), index.count)
            return nil
        }
        var st = stat()
        _ = fstat(pfd, &st)
        self.file = FileID(st)
        self.name = name
        self.index = index
        self.pack = pack
        self.packFile = FileDescriptor(adopting: pfd)
        let fixed = MappedPack.shaTable + 40
        var n = 0
        var large = -1
        if index.count >= fixed, MappedPack.be32(index, 0) == 0xff74_4f63, MappedPack.be32(index, 4) == 2 {
            n = Int(MappedPack.be32(index, MappedPack.shaTable - 4))
            let rest = index.count - fixed - 28 * n
            if rest >= 0, rest % 8 == 0 { large = rest / 8 }
        }
        count = n
        largeOffsets = large
        // The pack's header and trailer by `pread` (not the mapping: the file may shrink meanwhile).
        var head = [UInt8](repeating: 0, count: 12)
        var trailer = [UInt8](repeating: 0, count: 20)
        guard large >= 0, MappedPack.fanoutIsSorted(index), pack.count >= 32,
              MappedPack.read(packFile, into: &head, at: 0) == 12,
              MappedPack.read(packFile, into: &trailer, at: pack.count - 20) == 20
        else { return nil }
        let h = head.withUnsafeBytes { b in (MappedPack.be32(b, 0), MappedPack.be32(b, 4), MappedPack.be32(b, 8)) }
        guard h.0 == 0x5041_434b, [2, 3].contains(h.1), Int(h.2) == n, // "PACK", version, object count
              trailer.withUnsafeBytes({ memcmp(index.baseAddress! + index.count - 40, $0.baseAddress!, 20) }) == 0
        else { return nil }
    }

    /// The pack's size in bytes when it was opened (and mapped).
    var size: Int { pack.count }

    /// The pack's size now (`fstat` of the open file); nil when that fails.
    func currentSize() -> Int? {
        return (try? packFile.status()).map { Int($0.st_size) }
    }

    /// `pread` into `buffer` at `offset` (`FileDescriptor.read`): the bytes read, fewer at the end of the
    /// file, -1 on an error.
    static func read(_ file: borrowing FileDescriptor, into buffer: inout [UInt8], at offset: Int) -> Int {
        buffer.withUnsafeMutableBytes { (try? file.read(into: $0, at: offset)) ?? -1 }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: index.baseAddress), index.count)
        munmap(UnsafeMutableRawPointer(mutating: pack.baseAddress), pack.count)
    }

    /// `open` + `fstat` + `mmap(PROT_READ, MAP_SHARED)` of a whole file, and the open descriptor; nil
    /// (nothing left open) when any fails or the file is empty.
    private static func map(_ path: String) -> (UnsafeRawBufferPointer, Int32)? {
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0,
              let p = mmap(nil, Int(st.st_size), PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            close(fd)
            return nil
        }
        return (UnsafeRawBufferPointer(start: p, count: Int(st.st_size)), fd)
    }

    private static func be32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        b.loadUnaligned(fromByteOffset: at, as: UInt32.self).bigEndian
    }

    private static func fanoutIsSorted(_ index: UnsafeRawBufferPointer) -> Bool {
        var previous: UInt32 = 0
        for i in 0..<256 {
            let v = be32(index, 8 + 4 * i)
            if v < previous { return false }
            previous = v
        }
        return true
    }

    /// The position of `id` in the index (fan-out, then binary search of the sorted ids); nil when this
    /// pack does not hold it.
    func position(of id: ObjectID) -> Int? {
        id.withUnsafeBytes { key -> Int? in
            let first = Int(key[0])
            var lo = first == 0 ? 0 : Int(MappedPack.be32(index, 8 + 4 * (first - 1)))
            var hi = Int(MappedPack.be32(index, 8 + 4 * first))
            let table = index.baseAddress! + MappedPack.shaTable
            while lo < hi {
                let mid = (lo + hi) / 2
                let c = memcmp(table + 20 * mid, key.baseAddress!, 20)
                if c == 0 { return mid }
                if c < 0 { lo = mid + 1 } else { hi = mid }
            }
            return nil
        }
    }

    /// Where the entry at index position `i` starts in the pack; nil when out of range.
    private func entryOffset(_ i: Int) -> Int? {
        let small = MappedPack.be32(index, MappedPack.shaTable + 24 * count + 4 * i)
        var offset = Int(small)
        if small & 0x8000_0000 != 0 {
            let j = Int(small & 0x7fff_ffff)
            guard j < largeOffsets else { return nil }
            let big = index.loadUnaligned(fromByteOffset: MappedPack.shaTable + 28 * count + 8 * j, as: UInt64.self).bigEndian
            guard big < UInt64(Int.max) else { return nil }
            offset = Int(big)
        }
        return offset >= 12 && offset < pack.count - 20 ? offset : nil
    }

    /// Entries this small (inflated size) are read with `pread` into a scratch buffer; larger ones are
    /// inflated straight from the mapping.
    static let mappedThreshold = 1 << 20

    /// An entry's header: its type (1-4 whole objects, 6 offset delta, 7 reference delta), the inflated
    /// size of its data, where the zlib stream starts, and for deltas where the base entry starts.
    struct Header {
        let type: UInt8
        let size: Int
        let data: Int
        let base: Int?
    }

    /// The most bytes an entry header takes: the type-and-size byte, 9 more size bytes, a 20-byte base id.
    static let maxHeader = 30

    /// Parses the entry header at `offset`, read with `pread` (bounds-checked against the pack's size when
    /// opened, and a short read against its current size); nil when malformed, cut short, or when a
    /// delta's base is not in this pack.
    func header(at offset: Int) -> Header? {
        guard offset >= 12, offset < pack.count - 20 else { return nil }
        let want = min(MappedPack.maxHeader, pack.count - 20 - offset)
        return withUnsafeTemporaryAllocation(byteCount: MappedPack.maxHeader, alignment: 8) { buf -> Header? in
            let wanted = UnsafeMutableRawBufferPointer(rebasing: buf[0..<want])
            guard (try? packFile.read(into: wanted, at: offset)) == want else { return nil }
            return parseHeader(UnsafeRawBufferPointer(rebasing: buf[0..<want]), at: offset)
        }
    }

    /// Parses an entry header from `bytes`, the pack's bytes from `offset` on.
    private func parseHeader(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Header? {
        let end = bytes.count
        // Type in bits 4-6 of the first byte, then the size in 7-bit groups.
        var at = 0
        var c = bytes[at]
        at += 1
        let type = (c >> 4) & 7
        var size = Int(c & 15)
        var shift = 4
        while c & 0x80 != 0 {
            guard at < end, shift <= 56 else { return nil }
            c = bytes[at]
            at += 1
            size |= Int(c & 0x7f) << shift
            shift += 7
        }
        guard size < Int.max / 4 else { return nil }
        var base: Int?
        if type == 6 {
            // The base's distance back: big-endian 7-bit groups, each continuation adding one.
            guard at < end else { return nil }
            c = bytes[at]
            at += 1
            var distance = Int(c & 0x7f)
            while c & 0x80 != 0 {
                guard at < end, distance < Int.max >> 8 else { return nil }
                c = bytes[at]
                at += 1
                distance = ((distance + 1) << 7) | Int(c & 0x7f)
            }
            guard distance > 0, distance <= offset - 12 else { return nil }
            base = offset - distance
        } else if type == 7 {
            guard at + 20 <= end else { return nil }
            let id = ObjectID(raw: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + 20)]))
            at += 20
            guard let p = position(of: id), let o = entryOffset(p) else { return nil }
            base = o
        }
        guard offset + at < pack.count - 20 else { return nil }
        return Header(type: type, size: size, data: offset + at, base: base)
    }

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
        guard inflate(offset: offset, header: h, into: out, crc: expectedCRC) else {
            BlobBuffer.deallocate(out, h.size)
            return nil
        }
        return BlobBuffer(owning: out, count: h.size, verified: true)
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
                guard Delta.apply(delta.buffer, to: current.buffer, into: UnsafeMutableRawBufferPointer(start: out, count: resultSize)),
                      GitHash.blobID(of: UnsafeRawBufferPointer(start: out, count: resultSize)) == id else {
                    BlobBuffer.deallocate(out, resultSize)
                    return nil
                }
                return BlobBuffer(owning: out, count: resultSize, verified: true)
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
        guard let d = libdeflate_alloc_decompressor() else { return (false, 0) }
        var consumed = 0
        var produced = 0
        let rc = libdeflate_zlib_decompress_ex(d, base + data, available, out, size, &consumed, &produced)
        libdeflate_free_decompressor(d)
        guard rc == LIBDEFLATE_SUCCESS, produced == size else { return (false, consumed) }
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
    private func prefetch(from: Int, to: Int) {
        let page = 4096
        let start = from / page * page
        guard to > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: pack.baseAddress! + start), to - start, MADV_WILLNEED)
    }

    /// `madvise(MADV_DONTNEED)` on the pages that hold `[from, from + count)`. A page shared with an entry
    /// another thread is inflating is simply faulted in again from the page cache.
    private func release(from: Int, count: Int) {
        let page = 4096
        let start = from / page * page
        let stop = min((from + count + page - 1) / page * page, (pack.count + page - 1) / page * page)
        guard stop > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: pack.baseAddress! + start), stop - start, MADV_DONTNEED)
    }
}
