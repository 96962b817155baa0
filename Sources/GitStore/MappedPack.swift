// MappedPack: one pack and its index, checked and mapped, and the parsing of its entry headers.
import Basics
import CPackGuard
import Glibc
import Synchronization

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
    let index: UnsafeRawBufferPointer
    let pack: UnsafeRawBufferPointer
    /// The pack, open for `pread` of headers and small entries.
    let packFile: FileDescriptor

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
    let count: Int
    let largeOffsets: Int

    static let shaTable = 8 + 256 * 4

    init?(directory: String, name: String) {
        gitfs_pack_guard_install()
        guard let indexFile = try? FileDescriptor.open(directory + "/" + name + ".idx", O_RDONLY),
              let index = MappedPack.map(indexFile) else { return nil }
        indexFile.close()
        guard let opened = try? FileDescriptor.open(directory + "/" + name + ".pack", O_RDONLY),
              let pack = MappedPack.map(opened) else {
            munmap(UnsafeMutableRawPointer(mutating: index.baseAddress), index.count)
            return nil
        }
        self.file = FileID((try? opened.status()) ?? stat())
        self.name = name
        self.index = index
        self.pack = pack
        self.packFile = opened
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

    /// `fstat` + `mmap(PROT_READ, MAP_SHARED)` of the whole open `file`; nil when either fails or the
    /// file is empty (the caller's descriptor then closes when it goes).
    private static func map(_ file: borrowing FileDescriptor) -> UnsafeRawBufferPointer? {
        guard let st = try? file.status(), st.st_size > 0,
              let p = mmap(nil, Int(st.st_size), PROT_READ, MAP_SHARED, file.rawValue, 0), p != MAP_FAILED else {
            return nil
        }
        return UnsafeRawBufferPointer(start: p, count: Int(st.st_size))
    }

    static func be32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
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
}
