// BlobStream: one whole blob of a pack, CRC-checked first, then inflated in order, piece by piece (zlib).
import Basics
import CDeflate
import CZlib
import Glibc

/// A whole (non-deltified) blob of a pack inflated in order with zlib's streaming `inflate`, so a big
/// blob is served and cached without ever being held whole. Made only after the entry's packed bytes
/// matched the CRC-32 the pack index keeps for it (`git index-pack` wrote it after hashing the object):
/// what it inflates is what git checked. zlib inflates the raw deflate stream after the zlib header
/// (checked here: deflate, no preset dictionary); the Adler-32 of what it produced is computed with
/// libdeflate's SIMD `libdeflate_adler32` (zlib's own is several times slower) and must match the
/// stream's trailer, which must end exactly at the entry's end; the content must be exactly the header's
/// size; any mismatch throws `.corrupt`. Memory: zlib's state (~45 KiB)
/// plus the caller's buffer, whatever the blob's size; the pack's pages are read through the mapping
/// and dropped from this process behind the inflater (they stay in the page cache). Keeps its pack
/// mapped while it lives. Not thread-safe: one caller at a time (the owner serializes).
public final class BlobStream: @unchecked Sendable {
    /// The blob's size in bytes.
    public let size: Int
    /// Bytes produced so far.
    public private(set) var produced = 0
    private let pack: MappedPack
    private let stream: UnsafeMutablePointer<z_stream>
    /// The zlib stream's first byte, the entry's end, and the next byte to feed.
    private let data: Int
    private let end: Int
    private var fed: Int
    /// Pages of the mapping below this offset were released.
    private var released: Int
    private var ended = false
    /// The Adler-32 of the content produced so far.
    private var adler: UInt32 = 1
    /// Why the zlib header is refused (thrown at the first read), nil when it is good.
    private let badHeader: String?

    /// How much of the mapping is handed to zlib at once (and released once consumed).
    static let window = 4 << 20

    init?(pack: MappedPack, entryOffset: Int, header h: MappedPack.Header, entryEnd: Int) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard gitfs_inflate_init_raw(stream) == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
        self.pack = pack
        self.size = h.size
        self.data = h.data
        self.end = entryEnd
        self.released = entryOffset
        // The zlib header (RFC 1950): deflate with a window of at most 32 KiB, its check bits right, no
        // preset dictionary (git never writes one). The raw stream starts after it.
        if entryEnd - h.data < 2 + 4 {
            badHeader = "its zlib stream is too short"
        } else {
            let cmf = Int(pack.pack[h.data]), flg = Int(pack.pack[h.data + 1])
            if cmf & 0x0F != 8 || cmf >> 4 > 7 || (cmf << 8 | flg) % 31 != 0 {
                badHeader = "its zlib header is not deflate's"
            } else if flg & 0x20 != 0 {
                badHeader = "its zlib stream wants a preset dictionary"
            } else {
                badHeader = nil
            }
        }
        self.fed = h.data + 2
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        pack.release(from: released, count: max(0, fed - released))
    }

    /// Inflates the next bytes into `buffer` (fills it unless the content ends first); 0 once the whole
    /// content was produced. When the last byte is produced the stream must end there, exactly at the
    /// entry's end, its Adler-32 checked by zlib; anything else throws `.corrupt`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(GitStoreError) -> Int {
        if let badHeader { throw corrupt(badHeader) }
        let want = min(buffer.count, size - produced)
        var done = 0
        while done < want, !ended {
            try feedIfEmpty()
            let room = min(want - done, 1 << 30)
            stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) + done
            stream.pointee.avail_out = uInt(room)
            let rc = inflate(stream, Z_NO_FLUSH)
            let made = room - Int(stream.pointee.avail_out)
            adler = UInt32(libdeflate_adler32(adler, buffer.baseAddress! + done, made))
            done += made
            try check(rc)
        }
        produced += done
        if produced == size, !ended {
            // The content is complete: what follows must be the stream's end (its Adler-32), nothing more.
            var spare: UInt8 = 0
            while !ended {
                try feedIfEmpty()
                let rc = withUnsafeMutablePointer(to: &spare) { p -> Int32 in
                    stream.pointee.next_out = p
                    stream.pointee.avail_out = 1
                    return inflate(stream, Z_NO_FLUSH)
                }
                if stream.pointee.avail_out == 0 { throw corrupt("it inflates to more than its size") }
                try check(rc)
            }
        }
        if ended {
            guard produced == size else { throw corrupt("it inflates to \(produced) bytes, not \(size)") }
            // The trailer: the content's Adler-32, big-endian, the entry's last four bytes.
            let at = fed - Int(stream.pointee.avail_in)
            guard at + 4 == end else { throw corrupt("its zlib stream ends before the entry does") }
            guard pack.currentSize() == pack.size else { throw corrupt("its pack shrank while it was read") }
            let trailer = (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(pack.pack[at + $1]) }
            guard trailer == adler else { throw corrupt("its Adler-32 does not match (incorrect data check)") }
        }
        return done
    }

    /// Hands zlib the next window of the mapping when it has consumed the last one, releasing the pages
    /// behind it; only while the pack still has its size (a truncation racing with the inflater then
    /// reads zeros, CPackGuard, which zlib or the Adler-32 refuse).
    private func feedIfEmpty() throws(GitStoreError) {
        guard stream.pointee.avail_in == 0 else { return }
        guard fed < end else { throw corrupt("its zlib stream is cut short") }
        guard pack.currentSize() == pack.size else { throw corrupt("its pack shrank while it was read") }
        if fed > released {
            pack.release(from: released, count: fed - released)
            released = fed
        }
        let piece = min(Self.window, end - fed)
        pack.prefetch(from: fed, to: fed + piece)
        stream.pointee.next_in = UnsafeMutablePointer(mutating: pack.pack.baseAddress!.assumingMemoryBound(to: UInt8.self) + fed)
        stream.pointee.avail_in = uInt(piece)
        fed += piece
    }

    /// zlib's answer: the end, progress, or (input used up) a wait for the next window; else damage.
    private func check(_ rc: Int32) throws(GitStoreError) {
        switch rc {
        case Z_STREAM_END: ended = true
        case Z_OK: break
        case Z_BUF_ERROR where stream.pointee.avail_in == 0: break
        default:
            let why = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
            throw corrupt("it does not inflate (\(why))")
        }
    }

    private func corrupt(_ why: String) -> GitStoreError {
        GitStoreError(.corrupt, "pack \(pack.name).pack: a blob of \(size) bytes is damaged: \(why)")
    }
}

extension MappedPack {
    /// A stream of the whole blob at index position `i` when it is stored whole (type 3) and at least
    /// `minimumSize` bytes, after its packed bytes matched the index's CRC-32 (read through the mapping
    /// in windows, each dropped from this process once checked). Nil when the entry is deltified, another
    /// type, smaller, or cannot be set up; throws `.corrupt` when the CRC-32 does not match.
    func blobStream(position i: Int, minimumSize: Int) throws(GitStoreError) -> BlobStream? {
        guard let offset = entryOffset(i), let h = header(at: offset), h.type == 3, h.size >= minimumSize else { return nil }
        let end = entryEnd(after: offset)
        let expected = MappedPack.be32(index, MappedPack.shaTable + 20 * count + 4 * i)
        guard currentSize() == pack.count else { return nil }
        var crc: UInt32 = 0
        var at = offset
        // The kernel reads the whole entry ahead at once (it stays in the page cache for the inflater),
        // while each window is dropped from this process once checked.
        prefetch(from: offset, to: end)
        while at < end {
            let piece = min(BlobStream.window, end - at)
            crc = UInt32(libdeflate_crc32(crc, pack.baseAddress! + at, piece))
            release(from: at, count: piece)
            at += piece
        }
        guard crc == expected else {
            throw GitStoreError(.corrupt, "pack \(name).pack: the entry of a blob of \(h.size) bytes does not match its CRC-32 in \(name).idx (the pack is damaged); it is not served")
        }
        return BlobStream(pack: self, entryOffset: offset, header: h, entryEnd: end)
    }

    /// Where the entry at `offset` ends: the next entry's start (a scan of the index's offsets), or the
    /// pack's trailer.
    func entryEnd(after offset: Int) -> Int {
        var next = pack.count - 20
        for j in 0..<count {
            if let o = entryOffset(j), o > offset, o < next { next = o }
        }
        return next
    }
}

extension Repository {
    /// A stream of blob `id` when a pack holds it whole and it is at least `minimumSize` bytes (after its
    /// packed bytes matched the index's CRC-32); nil when it is smaller, deltified, loose or not in the
    /// packs (read it with `blobBuffer`). Throws `.corrupt` when the entry fails its CRC-32 or its pack
    /// shrank: a big blob is never handed to libgit2, which would inflate it whole.
    public func blobStream(_ id: ObjectID, minimumSize: Int) throws(GitStoreError) -> BlobStream? {
        guard let packs else { return nil }
        for pack in packs.packs(lookNow: false).packs {
            guard let i = pack.position(of: id) else { continue }
            do {
                guard let s = try pack.blobStream(position: i, minimumSize: minimumSize) else { return nil }
                packedReads.add(1, ordering: .relaxed)
                return s
            } catch {
                if let d = damage() { throw GitStoreError(.corrupt, d) }
                throw GitStoreError(.corrupt, "repository '\(name)': object \(id.hex): \(error.message)")
            }
        }
        return nil
    }
}
