import Basics
#if canImport(Glibc)
import Glibc
#endif

/// What `gc` removed (or, in a dry run, would remove). A value type.
public struct GCReport: Sendable, CustomStringConvertible {
    public var dryRun: Bool
    /// Entries evicted (least recently used first, or unused for longer than max age).
    public var entriesRemoved = 0
    /// Bytes of evicted entries (file allocation or record length).
    public var entryBytesRemoved = 0
    /// Duplicate records and damaged segment tails dropped by compaction, in bytes.
    public var compactedBytes = 0
    /// Stale temporary files (left by killed writers) removed, and their bytes.
    public var tempFilesRemoved = 0
    public var tempBytesRemoved = 0
    /// Cache size (du of entries and segments) before and after.
    public var sizeBefore = 0
    public var sizeAfter = 0
    /// Entries left in the cache.
    public var entriesRemaining = 0

    /// All bytes freed (estimate in a dry run).
    public var bytesFreed: Int { entryBytesRemoved + compactedBytes + tempBytesRemoved }

    public var description: String {
        let verb = dryRun ? "would free" : "freed"
        return "\(verb) \(ByteCount.format(bytesFreed)): \(entriesRemoved) entries (\(ByteCount.format(entryBytesRemoved))), "
            + "\(tempFilesRemoved) temporary files (\(ByteCount.format(tempBytesRemoved))), "
            + "\(ByteCount.format(compactedBytes)) of duplicates/damage; cache \(ByteCount.format(sizeBefore)) -> "
            + "\(ByteCount.format(sizeAfter)) in \(entriesRemaining) entries"
    }
}

/// One bad thing `verify` found.
public struct BadEntry: Sendable, CustomStringConvertible {
    /// The entry's key, when the damaged thing is an entry.
    public var key: ObjectID?
    /// The file (and offset, for records in segments).
    public var location: String
    public var reason: String
    /// True when `--repair` removed it.
    public var removed: Bool
    public var description: String {
        "\(key.map { "\($0) " } ?? "")\(location): \(reason)\(removed ? " (removed)" : "")"
    }
}

/// What `verify` checked and found. A value type.
public struct VerifyReport: Sendable, CustomStringConvertible {
    public var checked = 0
    public var bad: [BadEntry] = []
    public var removed: Int { bad.filter(\.removed).count }
    /// Bad items still in the cache.
    public var remaining: Int { bad.count - removed }
    public var description: String {
        "checked \(checked) entries: \(bad.count) bad, \(removed) removed, \(remaining) remaining"
    }
}

/// Cache totals. `diskBytes` is what `du` reports for the cache folder.
public struct CacheTotals: Sendable, Equatable {
    public var entries = 0
    /// Decompressed bytes of all entries.
    public var contentBytes = 0
    /// Compressed bytes of all entries (chunk frames plus headers).
    public var storedBytes = 0
    public var diskBytes = 0
}

/// A file found while walking the cache.
struct FileItem {
    let key: ObjectID
    let path: String
    let disk: Int
    let header: EntryHeader
}

struct RecordItem {
    let header: EntryHeader
    let offset: Int
}

/// A segment found while walking the cache; `sealed` means this walk holds its lock (no live writer).
final class SegmentItem {
    let name: String
    let path: String
    let fd: Int32
    let sealed: Bool
    let size: Int
    let disk: Int
    var records: [RecordItem] = []
    var scan: ContentCache.ScanResult
    init(name: String, path: String, fd: Int32, sealed: Bool, size: Int, disk: Int) {
        self.name = name; self.path = path; self.fd = fd; self.sealed = sealed; self.size = size; self.disk = disk
        scan = .init(end: 0, stop: nil, incomplete: false)
    }
    deinit { SystemIO.close(fd) }
}

struct Inventory {
    var files: [FileItem] = []
    var segments: [SegmentItem] = []
    var junk: [(path: String, reason: String, key: ObjectID?)] = []
    /// Temporary files no live process holds (fd kept open and locked until removed).
    var staleTemps: [(path: String, bytes: Int, fd: Int32)] = []
}

extension ContentCache {
    /// Walks objects/, segments/ and tmp/. Segments and temps are probed with `flock(LOCK_EX|LOCK_NB)`:
    /// the ones this walk locks have no live writer.
    func takeInventory() -> Inventory {
        var inv = Inventory()
        for d in SystemIO.list(objectsDir).sorted() {
            let dpath = objectsDir + "/" + d
            guard d.count == 2, d.allSatisfy(\.isHexDigit), d == d.lowercased() else {
                inv.junk.append((dpath, "foreign file in objects/", nil)); continue
            }
            for f in SystemIO.list(dpath).sorted() {
                let path = dpath + "/" + f
                guard f.count == 38, f.allSatisfy(\.isHexDigit), f == f.lowercased(), let key = ObjectID(hex: d + f) else {
                    inv.junk.append((path, "foreign file in objects/", nil)); continue
                }
                let fd = SystemIO.open(path, O_RDONLY)
                if fd < 0 { continue }
                defer { SystemIO.close(fd) }
                let st = SystemIO.fstat(fd)
                switch Self.readFileHeader(fd) {
                case .success(let h) where h.key == key:
                    inv.files.append(FileItem(key: key, path: path, disk: st.map(SystemIO.diskBytes) ?? 0, header: h))
                case .success:
                    inv.junk.append((path, "holds another key", key))
                case .failure(let e):
                    inv.junk.append((path, e.message, key))
                }
            }
        }
        for name in SystemIO.list(segmentsDir).sorted() {
            let path = segmentsDir + "/" + name
            guard name.hasSuffix(".seg") else { inv.junk.append((path, "foreign file in segments/", nil)); continue }
            let fd = SystemIO.open(path, O_RDONLY)
            if fd < 0 { continue }
            guard let st = SystemIO.fstat(fd) else { SystemIO.close(fd); continue }
            let sealed = SystemIO.lock(fd, LOCK_EX | LOCK_NB)
            let item = SegmentItem(name: name, path: path, fd: fd, sealed: sealed, size: Int(st.st_size), disk: SystemIO.diskBytes(st))
            item.scan = Self.scanRecords(fd: fd, from: 0, size: item.size) { h, off in
                item.records.append(RecordItem(header: h, offset: off))
            }
            inv.segments.append(item)
        }
        for name in SystemIO.list(tmpDir) {
            let path = tmpDir + "/" + name
            let fd = SystemIO.open(path, O_RDONLY)
            if fd < 0 { continue }
            if SystemIO.lock(fd, LOCK_EX | LOCK_NB), let st = SystemIO.fstat(fd) {
                inv.staleTemps.append((path, SystemIO.diskBytes(st), fd))
            } else {
                SystemIO.close(fd)
            }
        }
        for name in SystemIO.list(directory) where name.hasPrefix("VERSION.") && name.hasSuffix(".tmp") {
            if let st = SystemIO.lstat(directory + "/" + name), time(nil) - st.st_mtim.tv_sec > 60 {
                inv.staleTemps.append((directory + "/" + name, SystemIO.diskBytes(st), -1))
            }
        }
        return inv
    }

    /// Runs `body` holding `<cache>/gc.lock` exclusively (gc and verify never run at once).
    func withMaintenanceLock<R>(_ body: () throws(CacheError) -> R) throws(CacheError) -> R {
        let path = directory + "/gc.lock"
        let fd = SystemIO.open(path, O_RDWR | O_CREAT)
        if fd < 0 { throw Self.failure(-fd, "cannot open \(path)") }
        defer { SystemIO.close(fd) }
        _ = SystemIO.lock(fd, LOCK_EX)
        return try body()
    }

    /// du of objects/ and segments/ (the size gc compares with its limit).
    public func entriesDiskBytes() -> Int {
        var total = 0
        for d in SystemIO.list(objectsDir) {
            for f in SystemIO.list(objectsDir + "/" + d) {
                if let st = SystemIO.lstat(objectsDir + "/" + d + "/" + f) { total += SystemIO.diskBytes(st) }
            }
        }
        for s in SystemIO.list(segmentsDir) {
            if let st = SystemIO.lstat(segmentsDir + "/" + s) { total += SystemIO.diskBytes(st) }
        }
        return total
    }

    /// du of the whole cache folder.
    func folderDiskBytes() -> Int {
        var total = 0
        func walk(_ path: String) {
            guard let st = SystemIO.lstat(path) else { return }
            total += SystemIO.diskBytes(st)
            if (st.st_mode & S_IFMT) == S_IFDIR { for n in SystemIO.list(path) { walk(path + "/" + n) } }
        }
        walk(directory)
        return total
    }

    /// Counts entries (distinct keys), their content and compressed bytes, and the folder's du.
    public func totals() -> CacheTotals {
        let inv = takeInventory()
        for t in inv.staleTemps where t.fd >= 0 { SystemIO.close(t.fd) }
        var seen = Set<ObjectID>()
        var t = CacheTotals()
        func add(_ h: EntryHeader) {
            guard seen.insert(h.key).inserted else { return }
            t.entries += 1
            t.contentBytes += h.contentSize
            t.storedBytes += h.recordSize
        }
        for f in inv.files { add(f.header) }
        for s in inv.segments { for r in s.records { add(r.header) } }
        t.diskBytes = folderDiskBytes()
        return t
    }

    /// Writes the kept records of `segments` into new segments (temp file, then rename), then
    /// deletes the old ones. Readers holding the old files keep reading them; a crash in between
    /// leaves duplicates that the next gc drops. Returns bytes dropped.
    func rewrite(_ segs: [SegmentItem], keep: (SegmentItem, RecordItem) -> Bool) throws(CacheError) -> Int {
        var out: (fd: Int32, tmp: String, end: Int)?
        var outputs: [(Int32, String)] = []
        var dropped = 0
        func finish() {
            guard let o = out else { return }
            out = nil
            outputs.append((o.fd, o.tmp))
        }
        do throws(CacheError) {
            for seg in segs {
                dropped += seg.size - seg.scan.end
                for r in seg.records {
                    let len = r.header.recordSize
                    guard keep(seg, r) else { dropped += len; continue }
                    if let o = out, o.end + len > Self.maxSegmentSize { finish() }
                    if out == nil {
                        let (fd, tmp) = try createLockedTemp("compact")
                        out = (fd, tmp, 8)
                        let e = SystemIO.pwriteFull(fd, SegmentFile.magic, 8, 0)
                        if e != 0 { throw Self.failure(e, "cannot write a compacted segment") }
                    }
                    var buf = [UInt8](repeating: 0, count: len)
                    let n = buf.withUnsafeMutableBytes { SystemIO.preadFull(seg.fd, $0.baseAddress!, len, r.offset) }
                    if n != len { throw CacheError.io("cannot read segment \(seg.path)") }
                    let e = SystemIO.pwriteFull(out!.fd, buf, len, out!.end)
                    if e != 0 { throw Self.failure(e, "cannot write a compacted segment") }
                    out!.end += len
                }
            }
            finish()
            while let (fd, tmp) = outputs.first {
                try publish(tmp, segmentsDir + "/" + SystemIO.randomName() + ".seg")
                SystemIO.close(fd)
                outputs.removeFirst()
            }
        } catch {
            if let o = out { outputs.append((o.fd, o.tmp)) }
            for (fd, tmp) in outputs { SystemIO.unlink(tmp); SystemIO.close(fd) }
            throw error
        }
        for seg in segs { SystemIO.unlink(seg.path) }
        return dropped
    }

    /// Evicts entries: those unused for `maxAge` seconds, then least recently used ones while the
    /// cache (du of entries) is over `maxSize`, down to 90% of it (the low-water mark). Removes stale
    /// temporary files and compacts sealed segments (duplicates, damaged tails, many small segments).
    /// With `dryRun` nothing is changed and the report says what would be freed. Safe while other
    /// processes read and write the cache: files held by live writers are skipped, and readers keep
    /// their open files.
    public func gc(maxSize: Int?, maxAge: Int?, dryRun: Bool) throws(CacheError) -> GCReport {
        try withMaintenanceLock { () throws(CacheError) -> GCReport in
            flushUsage()
            if !dryRun { sealWriter() }
            let inv = takeInventory()
            var report = GCReport(dryRun: dryRun)
            defer { for t in inv.staleTemps where t.fd >= 0 { SystemIO.close(t.fd) } }

            var lastUse: [ObjectID: UInt32] = [:]
            var foldable: [String] = []
            for name in SystemIO.list(usageDir) where name.hasSuffix(".log") {
                let path = usageDir + "/" + name
                _ = Self.readJournal(path, into: &lastUse)
                let fd = SystemIO.open(path, O_RDONLY)
                if fd >= 0 {
                    if SystemIO.lock(fd, LOCK_EX | LOCK_NB) { foldable.append(path) }
                    SystemIO.close(fd)
                }
            }

            // One unit per key: its file and/or records. Records in live writers' segments are pinned.
            struct Unit { var lastUse: UInt32; var bytes: Int; var pinned: Bool }
            var units: [ObjectID: Unit] = [:]
            var canonical: [ObjectID: (String, Int)] = [:]   // kept record: segment name, offset
            for f in inv.files {
                units[f.key] = Unit(lastUse: max(f.header.created, lastUse[f.key] ?? 0), bytes: f.disk, pinned: false)
            }
            for s in inv.segments {
                for r in s.records {
                    let k = r.header.key
                    let lu = max(r.header.created, lastUse[k] ?? 0)
                    if var u = units[k] {
                        u.lastUse = max(u.lastUse, lu)
                        if !s.sealed { u.pinned = true; u.bytes += r.header.recordSize }
                        units[k] = u
                        if !s.sealed, canonical[k] == nil, !inv.files.contains(where: { $0.key == k }) { canonical[k] = (s.name, r.offset) }
                    } else {
                        units[k] = Unit(lastUse: lu, bytes: r.header.recordSize, pinned: !s.sealed)
                        if !inv.files.isEmpty && inv.files.contains(where: { $0.key == k }) { continue }
                        canonical[k] = (s.name, r.offset)
                    }
                }
            }
            report.sizeBefore = inv.files.reduce(0) { $0 + $1.disk } + inv.segments.reduce(0) { $0 + $1.disk }

            var evict = Set<ObjectID>()
            var freed = 0
            let now = clock()
            if let maxAge {
                for (k, u) in units where !u.pinned && Int(now) - Int(u.lastUse) > maxAge {
                    evict.insert(k); freed += u.bytes
                }
            }
            if let maxSize, report.sizeBefore - freed > maxSize {
                let lowWater = maxSize / 10 * 9
                let order = units.filter { !$0.value.pinned && !evict.contains($0.key) }
                    .sorted { $0.value.lastUse != $1.value.lastUse ? $0.value.lastUse < $1.value.lastUse : $0.key.hex < $1.key.hex }
                for (k, u) in order {
                    if report.sizeBefore - freed <= lowWater { break }
                    evict.insert(k); freed += u.bytes
                }
            }
            report.entriesRemoved = evict.count
            report.entryBytesRemoved = freed
            report.entriesRemaining = units.count - evict.count
            report.tempFilesRemoved = inv.staleTemps.count
            report.tempBytesRemoved = inv.staleTemps.reduce(0) { $0 + $1.bytes }

            // Segments to rewrite: sealed ones with something to drop, plus small sealed ones (merged).
            func keep(_ s: SegmentItem, _ r: RecordItem) -> Bool {
                let k = r.header.key
                if evict.contains(k) { return false }
                guard let c = canonical[k] else { return false }   // a file holds it
                return c.0 == s.name && c.1 == r.offset
            }
            let sealed = inv.segments.filter(\.sealed)
            let dirty = sealed.filter { s in s.scan.end < s.size || s.records.contains { !keep(s, $0) } }
            let small = sealed.filter { s in !dirty.contains { $0 === s } && s.size < 4 << 20 }
            let toRewrite = dirty + (small.count + dirty.count >= 2 ? small : [])
            let dupBytes = dirty.reduce(0) { acc, s in
                acc + (s.size - s.scan.end) + s.records.filter { !keep(s, $0) && !evict.contains($0.header.key) }.reduce(0) { $0 + $1.header.recordSize }
            }
            report.compactedBytes = dupBytes

            if dryRun {
                report.sizeAfter = report.sizeBefore - freed - dupBytes
                return report
            }
            for t in inv.staleTemps { SystemIO.unlink(t.path) }
            for f in inv.files where evict.contains(f.key) { SystemIO.unlink(f.path) }
            _ = try rewrite(toRewrite, keep: keep)
            foldUsage(foldable, lastUse: lastUse, live: Set(units.keys).subtracting(evict))
            refresh(ifGeneration: nil)
            report.sizeAfter = entriesDiskBytes()
            return report
        }
    }

    /// Replaces the journals no live process holds with one journal of the surviving keys' times.
    func foldUsage(_ paths: [String], lastUse: [ObjectID: UInt32], live: Set<ObjectID>) {
        guard !paths.isEmpty else { return }
        var bytes = Self.usageMagic
        for (k, t) in lastUse where live.contains(k) {
            bytes += k.bytes
            appendLE(&bytes, t)
        }
        guard let (fd, tmp) = try? createLockedTemp("usage") else { return }
        defer { SystemIO.close(fd) }
        if SystemIO.pwriteFull(fd, bytes, bytes.count, 0) != 0 { SystemIO.unlink(tmp); return }
        do { try publish(tmp, usageDir + "/" + SystemIO.randomName() + ".log") } catch { SystemIO.unlink(tmp); return }
        for p in paths { SystemIO.unlink(p) }
    }

    /// Checks every entry: header, every chunk's checksum and the content against its object id
    /// (the verifier). Reports damaged entries, damaged segment tails and foreign files; with
    /// `repair`, removes them (records in segments a live process is writing cannot be removed and
    /// stay reported as remaining).
    public func verify(repair: Bool) throws(CacheError) -> VerifyReport {
        try withMaintenanceLock { () throws(CacheError) -> VerifyReport in
            if repair { sealWriter() }
            let inv = takeInventory()
            defer { for t in inv.staleTemps where t.fd >= 0 { SystemIO.close(t.fd) } }
            var report = VerifyReport()
            for j in inv.junk {
                let removed = repair && SystemIO.removeTree(j.path)
                report.bad.append(BadEntry(key: j.key, location: j.path, reason: j.reason, removed: removed))
            }
            for f in inv.files {
                report.checked += 1
                let fd = SystemIO.open(f.path, O_RDONLY)
                if fd < 0 { continue }
                let entry = CacheEntry(header: f.header, backing: .file(fd), pool: pool) { _ in }
                if let why = check(entry) {
                    if repair { SystemIO.unlinkIfSame(f.path, fd: fd) }
                    report.bad.append(BadEntry(key: f.key, location: f.path, reason: why, removed: repair))
                }
            }
            var badRecords = Set<String>()
            var dirty: [SegmentItem] = []
            for s in inv.segments {
                var segBad = false
                for r in s.records {
                    report.checked += 1
                    let len = r.header.recordSize
                    var bytes = [UInt8](repeating: 0, count: len)
                    let n = bytes.withUnsafeMutableBytes { SystemIO.preadFull(s.fd, $0.baseAddress!, len, r.offset) }
                    let why: String?
                    if n != len { why = "record unreadable" } else {
                        let entry = CacheEntry(header: r.header, backing: .memory(bytes), pool: pool) { _ in }
                        why = check(entry)
                    }
                    if let why {
                        segBad = true
                        badRecords.insert("\(s.name)@\(r.offset)")
                        report.bad.append(BadEntry(key: r.header.key, location: "\(s.path)@\(r.offset)", reason: why, removed: repair && s.sealed))
                    }
                }
                if s.sealed, s.scan.end < s.size {
                    segBad = true
                    report.bad.append(BadEntry(key: nil, location: "\(s.path)@\(s.scan.end)",
                        reason: "\(s.size - s.scan.end) unreadable bytes (\(s.scan.stop ?? "damaged"))", removed: repair))
                }
                if segBad && s.sealed { dirty.append(s) }
            }
            if repair && !dirty.isEmpty {
                _ = try rewrite(dirty) { s, r in !badRecords.contains("\(s.name)@\(r.offset)") }
                refresh(ifGeneration: nil)
            }
            return report
        }
    }

    /// Nil when the entry decompresses fully and matches its key; otherwise why not.
    private func check(_ entry: CacheEntry) -> String? {
        do {
            let content = try entry.readAll()
            let ok = content.withUnsafeBytes { verifier(entry.key, $0) }
            return ok ? nil : "content does not match its object id"
        } catch {
            return error.message
        }
    }
}
