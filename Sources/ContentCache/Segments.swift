import Basics
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One segment file (cache-layout.md, "Segments"), open for reading (and for appending when this
/// process writes it). Thread-safe: the fd is only used with pread/pwrite; `scanned` is guarded.
final class SegmentFile: Sendable {
    static let magic: [UInt8] = Array("gitfsSG1".utf8)
    let name: String
    let fd: FileDescriptor
    /// Bytes of the file already indexed (0 = magic not checked yet).
    let scanned: Mutex<Int>
    /// Disk bytes of the file as last counted in the running totals.
    let allocated = Atomic<Int>(0)

    init(name: String, fd: consuming FileDescriptor, scanned: Int) {
        self.name = name
        self.fd = fd
        self.scanned = Mutex(scanned)
    }

    /// Re-reads the file's allocation (`fstat`); returns how much it grew since last counted.
    func updateAllocation() -> Int {
        guard let st = try? fd.status() else { return 0 }
        return FileSystem.diskBytes(st) - allocated.exchange(FileSystem.diskBytes(st), ordering: .relaxed)
    }
}

/// Where a small entry's record lives.
struct Location: Sendable {
    let segment: SegmentFile
    let offset: Int
    let length: Int
    /// The entry's content size (from its header), so sizes are known without reading the record.
    let contentSize: Int
}

/// One shard of the in-memory index and of the last-use set. Each map has its own lock.
final class Shard: Sendable {
    let index = Mutex<[ObjectID: Location]>([:])
    let touched = Mutex<[ObjectID: UInt32]>([:])
}

/// The segment files: this process's writer segment, and the index of every segment's records.
extension ContentCache {
    /// A new segment for this process: created and locked in tmp/, magic written, then renamed into
    /// segments/ (so no other process ever sees it unlocked while it is being written).
    func newSegment() throws(CacheError) -> SegmentFile {
        let name = Self.randomName() + ".seg"
        let temp = try createLockedTemp("segment")
        do { try temp.fd.write(SegmentFile.magic, at: 0) } catch {
            try? FileSystem.remove(temp.path)
            throw Self.failure(error, "cannot create a cache segment")
        }
        do { try publish(temp.path, segmentsDir + "/" + name) } catch {
            try? FileSystem.remove(temp.path)
            throw error
        }
        let seg = SegmentFile(name: name, fd: temp.fd, scanned: SegmentFile.magic.count)
        segments.withLock { $0[name] = seg }
        return seg
    }

    /// Seals this process's current segment (unlocks it) so gc may compact it; the next small store
    /// starts a new one.
    func sealWriter() {
        writer.withLock { w in
            w.segment?.fd.unlock()
            w.segment = nil
            w.end = 0
        }
    }

    func ensureLoaded() {
        if loaded.load(ordering: .acquiring) { return }
        refresh(ifGeneration: nil)
    }

    /// Re-reads the segment folder: indexes records appended since the last scan and records of new
    /// segments, and forgets segments that were deleted. Skipped if another refresh completed since
    /// generation `gen` was observed.
    func refresh(ifGeneration gen: UInt64?) {
        refreshState.withLock { g in
            if let gen, g != gen { return }
            let names = Set(FileSystem.list(segmentsDir).filter { $0.hasSuffix(".seg") })
            var vanished: [SegmentFile] = []
            let current: [SegmentFile] = segments.withLock { table in
                for (name, seg) in table where !names.contains(name) {
                    vanished.append(seg)
                    table[name] = nil
                }
                for name in names where table[name] == nil {
                    if let fd = try? FileDescriptor.open(segmentsDir + "/" + name, O_RDONLY) {
                        table[name] = SegmentFile(name: name, fd: fd, scanned: 0)
                    }
                }
                return Array(table.values)
            }
            for seg in current { scanTail(seg) }
            if !vanished.isEmpty {
                var forgotten = 0
                for sh in shards {
                    sh.index.withLock { idx in
                        for (k, loc) in idx where vanished.contains(where: { $0 === loc.segment }) {
                            idx[k] = nil
                            forgotten += 1
                        }
                    }
                }
                running.add(entries: -forgotten, diskBytes: -vanished.reduce(0) { $0 + $1.allocated.load(ordering: .relaxed) })
                // Re-scan so keys whose record moved (compaction) are found in the new segment.
                for seg in current { seg.scanned.withLock { $0 = 0 } ; scanTail(seg) }
            }
            g += 1
            loaded.store(true, ordering: .releasing)
        }
    }

    /// Indexes the valid records of `seg` past its scanned offset (and counts new keys and the
    /// segment's growth in the running totals).
    func scanTail(_ seg: SegmentFile) {
        var added = 0
        seg.scanned.withLock { scanned in
            guard let st = try? seg.fd.status() else { return }
            let size = Int(st.st_size)
            if scanned >= size { return }
            let result = Self.scanRecords(seg.fd, from: scanned, size: size) { h, off in
                let loc = Location(segment: seg, offset: off, length: h.recordSize, contentSize: h.contentSize)
                shard(h.key).index.withLock { idx in
                    if idx[h.key] == nil { idx[h.key] = loc; added += 1 }
                }
            }
            scanned = result.end
        }
        running.add(entries: added, diskBytes: seg.updateAllocation())
    }

    struct ScanResult {
        /// Offset just past the last valid record (or of the magic).
        var end: Int
        /// Why scanning stopped before the file size, if it did.
        var stop: String?
        var incomplete: Bool
    }

    /// Walks the records of a segment file from `from` (0 = check the magic first), calling `body`
    /// for each valid record (header checked; frames not decompressed). Stops at EOF, at an
    /// incomplete record or at an invalid one.
    static func scanRecords(_ fd: borrowing FileDescriptor, from: Int, size: Int, _ body: (EntryHeader, Int) -> Void) -> ScanResult {
        var pos = from
        if pos == 0 {
            let m = (try? fd.read(count: 8, at: 0)) ?? []
            if m.count < 8 { return ScanResult(end: 0, stop: "too short for a segment", incomplete: true) }
            if m != SegmentFile.magic { return ScanResult(end: 0, stop: "not a segment (bad magic)", incomplete: false) }
            pos = 8
        }
        var bufSize = 1 << 20
        while pos < size {
            let want = min(bufSize, size - pos)
            let buf = (try? fd.read(count: want, at: pos)) ?? []
            let n = buf.count
            if n == 0 { return ScanResult(end: pos, stop: "read failed", incomplete: true) }
            var p = 0
            var needBigger = 0
            parse: while p < n {
                let r = buf.withUnsafeBytes { EntryHeader.parse(UnsafeRawBufferPointer(rebasing: $0[p..<n])) }
                switch r {
                case .ok(let h):
                    if p + h.recordSize > n {
                        needBigger = h.recordSize
                        break parse
                    }
                    body(h, pos + p)
                    p += h.recordSize
                case .needMore(let m):
                    needBigger = m
                    break parse
                case .invalid(let why):
                    return ScanResult(end: pos + p, stop: "invalid record at offset \(pos + p): \(why)", incomplete: false)
                }
            }
            if p == 0 {
                if pos + needBigger > size || n < want {
                    return ScanResult(end: pos, stop: "incomplete record at offset \(pos)", incomplete: true)
                }
                bufSize = max(bufSize * 2, needBigger)
                continue
            }
            pos += p
        }
        return ScanResult(end: pos, stop: nil, incomplete: false)
    }
}
