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

/// What one gc pass decided, step by step (cache-layout.md, "Garbage collection").
struct GCPlan {
    /// One key's entry (its file and/or records): last use, bytes, and whether a live writer's
    /// segment holds a record of it (then it cannot be evicted this pass).
    struct Unit { var lastUse: UInt32; var bytes: Int; var pinned: Bool }
    var lastUse: [ObjectID: UInt32] = [:]
    /// Journals no live process holds: folded into one at the end.
    var foldable: [String] = []
    var units: [ObjectID: Unit] = [:]
    /// The record kept for each key held only in segments: segment name and offset.
    var canonical: [ObjectID: (segment: String, offset: Int)] = [:]
    var evict = Set<ObjectID>()
    var toRewrite: [SegmentItem] = []

    /// Whether record `r` of segment `s` survives: not evicted, and the one copy kept of its key.
    func keep(_ s: SegmentItem, _ r: RecordItem) -> Bool {
        let k = r.header.key
        if evict.contains(k) { return false }
        guard let c = canonical[k] else { return false }   // a file holds it
        return c.segment == s.name && c.offset == r.offset
    }
}

extension ContentCache {
    /// Evicts entries: those unused for `maxAge` seconds, then least recently used ones while the
    /// cache (du of entries) is over `maxSize`, down to 90% of it (the low-water mark). Removes stale
    /// temporary files and compacts sealed segments (duplicates, damaged tails, many small segments).
    /// With `dryRun` nothing is changed and the report says what would be freed. Safe while other
    /// processes read and write the cache: files held by live writers are skipped, and readers keep
    /// their open files. Recounts the running totals afterwards.
    public func gc(maxSize: Int?, maxAge: Int?, dryRun: Bool) throws(CacheError) -> GCReport {
        guard isInitialised else { return GCReport(dryRun: dryRun) }
        return try withMaintenanceLock { () throws(CacheError) -> GCReport in
            flushUsage()
            if !dryRun { sealWriter() }
            let inv = takeInventory()
            var report = GCReport(dryRun: dryRun)
            var plan = GCPlan()
            readJournals(into: &plan)
            collectUnits(inv, into: &plan)
            report.sizeBefore = inv.files.reduce(0) { $0 + $1.disk } + inv.segments.reduce(0) { $0 + $1.disk }
            report.entryBytesRemoved = chooseEvictions(&plan, sizeBefore: report.sizeBefore, maxSize: maxSize, maxAge: maxAge)
            report.entriesRemoved = plan.evict.count
            report.entriesRemaining = plan.units.count - plan.evict.count
            report.tempFilesRemoved = inv.staleTemps.count
            report.tempBytesRemoved = inv.staleTemps.reduce(0) { $0 + $1.bytes }
            report.compactedBytes = chooseRewrites(inv, &plan)
            if dryRun {
                report.sizeAfter = report.sizeBefore - report.entryBytesRemoved - report.compactedBytes
                return report
            }
            try apply(plan, inv)
            report.sizeAfter = entriesDiskBytes()
            return report
        }
    }

    /// Step 1: every journal's last-use times; the journals no live process holds can be folded.
    private func readJournals(into plan: inout GCPlan) {
        for name in FileSystem.list(usageDir) where name.hasSuffix(".log") {
            let path = usageDir + "/" + name
            _ = Self.readJournal(path, into: &plan.lastUse)
            if let fd = try? FileDescriptor.open(path, O_RDONLY), fd.tryLock(LOCK_EX) { plan.foldable.append(path) }
        }
    }

    /// Step 2: one unit per key, from its file and records; records in live writers' segments pin it.
    private func collectUnits(_ inv: Inventory, into plan: inout GCPlan) {
        let fileKeys = Set(inv.files.map(\.key))
        for f in inv.files {
            plan.units[f.key] = GCPlan.Unit(lastUse: max(f.header.created, plan.lastUse[f.key] ?? 0), bytes: f.disk, pinned: false)
        }
        for s in inv.segments {
            for r in s.records {
                let k = r.header.key
                let lu = max(r.header.created, plan.lastUse[k] ?? 0)
                if var u = plan.units[k] {
                    u.lastUse = max(u.lastUse, lu)
                    if !s.sealed { u.pinned = true; u.bytes += r.header.recordSize }
                    plan.units[k] = u
                    if !s.sealed, plan.canonical[k] == nil, !fileKeys.contains(k) { plan.canonical[k] = (s.name, r.offset) }
                } else {
                    plan.units[k] = GCPlan.Unit(lastUse: lu, bytes: r.header.recordSize, pinned: !s.sealed)
                    if !fileKeys.contains(k) { plan.canonical[k] = (s.name, r.offset) }
                }
            }
        }
    }

    /// Step 3: the keys to evict (too old, then least recently used down to the low-water mark);
    /// returns their bytes.
    private func chooseEvictions(_ plan: inout GCPlan, sizeBefore: Int, maxSize: Int?, maxAge: Int?) -> Int {
        var freed = 0
        let now = clock()
        if let maxAge {
            for (k, u) in plan.units where !u.pinned && Int(now) - Int(u.lastUse) > maxAge {
                plan.evict.insert(k); freed += u.bytes
            }
        }
        if let maxSize, sizeBefore - freed > maxSize {
            let lowWater = maxSize / 10 * 9
            let order = plan.units.filter { !$0.value.pinned && !plan.evict.contains($0.key) }
                .sorted { $0.value.lastUse != $1.value.lastUse ? $0.value.lastUse < $1.value.lastUse : $0.key < $1.key }
            for (k, u) in order {
                if sizeBefore - freed <= lowWater { break }
                plan.evict.insert(k); freed += u.bytes
            }
        }
        return freed
    }

    /// Step 4: sealed segments with something to drop, plus the small sealed ones (merged); returns
    /// the bytes of duplicates and damaged tails dropped (evicted records are counted in step 3).
    private func chooseRewrites(_ inv: Inventory, _ plan: inout GCPlan) -> Int {
        let sealed = inv.segments.filter(\.sealed)
        let dirty = sealed.filter { s in s.scan.end < s.size || s.records.contains { !plan.keep(s, $0) } }
        let small = sealed.filter { s in !dirty.contains { $0 === s } && s.size < 4 << 20 }
        plan.toRewrite = dirty + (small.count + dirty.count >= 2 ? small : [])
        return dirty.reduce(0) { acc, s in
            acc + (s.size - s.scan.end) + s.records.filter { !plan.keep(s, $0) && !plan.evict.contains($0.header.key) }
                .reduce(0) { $0 + $1.header.recordSize }
        }
    }

    /// Step 5: removes stale temps and evicted files, rewrites segments, folds journals, re-indexes
    /// and recounts the running totals.
    private func apply(_ plan: GCPlan, _ inv: Inventory) throws(CacheError) {
        for t in inv.staleTemps { try? FileSystem.remove(t.path) }
        for f in inv.files where plan.evict.contains(f.key) { try? FileSystem.remove(f.path) }
        _ = try rewrite(plan.toRewrite, keep: plan.keep)
        foldUsage(plan.foldable, lastUse: plan.lastUse, live: Set(plan.units.keys).subtracting(plan.evict))
        recountRunningTotals()
    }

    /// Writes the kept records of `segments` into new segments (temp file, then rename), then
    /// deletes the old ones. Readers holding the old files keep reading them; a crash in between
    /// leaves duplicates that the next gc drops. Returns bytes dropped.
    func rewrite(_ segs: [SegmentItem], keep: (SegmentItem, RecordItem) -> Bool) throws(CacheError) -> Int {
        var outputs: [OpenFile] = []
        var out: (file: OpenFile, end: Int)?
        var dropped = 0
        let fail = { (e: Errno) in Self.failure(e, "cannot write a compacted segment") }
        do throws(CacheError) {
            for seg in segs {
                dropped += seg.size - seg.scan.end
                for r in seg.records {
                    let len = r.header.recordSize
                    guard keep(seg, r) else { dropped += len; continue }
                    if let o = out, o.end + len > Self.maxSegmentSize { outputs.append(o.file); out = nil }
                    if out == nil {
                        let temp = try createLockedTemp("compact")
                        let file = OpenFile(path: temp.path, fd: temp.fd)
                        out = (file, 8)
                        do { try file.fd.write(SegmentFile.magic, at: 0) } catch { throw fail(error) }
                    }
                    let bytes = (try? seg.fd.read(count: len, at: r.offset)) ?? []
                    if bytes.count != len { throw CacheError.io("cannot read segment \(seg.path)") }
                    do { try out!.file.fd.write(bytes, at: out!.end) } catch { throw fail(error) }
                    out!.end += len
                }
            }
            if let o = out { outputs.append(o.file); out = nil }
            while let file = outputs.first {
                try publish(file.path, segmentsDir + "/" + Self.randomName() + ".seg")
                outputs.removeFirst()
            }
        } catch {
            if let o = out { outputs.append(o.file) }
            for file in outputs { try? FileSystem.remove(file.path) }
            throw error
        }
        for seg in segs { try? FileSystem.remove(seg.path) }
        return dropped
    }
}
