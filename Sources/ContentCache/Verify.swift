import Basics
#if canImport(Glibc)
import Glibc
#endif

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

extension ContentCache {
    /// Checks every entry: header, every chunk's checksum and the content against its object id
    /// (the verifier). Reports damaged entries, damaged segment tails and foreign files; with
    /// `repair`, removes them (records in segments a live process is writing cannot be removed and
    /// stay reported as remaining). Without `repair` nothing is written, so it works on a read-only
    /// cache (see `withMaintenanceLock`).
    public func verify(repair: Bool) throws(CacheError) -> VerifyReport {
        guard isInitialised else { return VerifyReport() }
        return try withMaintenanceLock(writing: repair) { () throws(CacheError) -> VerifyReport in
            if repair { sealWriter() }
            let inv = takeInventory()
            var report = VerifyReport()
            for j in inv.junk {
                let removed = repair && FileSystem.removeTree(j.path)
                report.bad.append(BadEntry(key: j.key, location: j.path, reason: j.reason, removed: removed))
            }
            verifyFiles(inv, repair: repair, into: &report)
            let (dirty, badRecords) = verifySegments(inv, repair: repair, into: &report)
            if repair && !dirty.isEmpty {
                _ = try rewrite(dirty) { s, r in !badRecords.contains("\(s.name)@\(r.offset)") }
            }
            if repair { recountRunningTotals() }
            return report
        }
    }

    private func verifyFiles(_ inv: Inventory, repair: Bool, into report: inout VerifyReport) {
        for f in inv.files {
            report.checked += 1
            guard let fd = try? FileDescriptor.open(f.path, O_RDONLY) else { continue }
            let entry = CacheEntry(header: f.header, backing: .file(fd), pool: pool) { _ in }
            guard let why = check(entry) else { continue }
            if repair {
                switch entry.backing {
                case .file(let fd): unlinkIfSame(f.path, fd: fd)
                case .memory: break
                }
            }
            report.bad.append(BadEntry(key: f.key, location: f.path, reason: why, removed: repair))
        }
    }

    /// Checks every record; returns the sealed segments to rewrite and the bad records ("name@offset").
    private func verifySegments(_ inv: Inventory, repair: Bool, into report: inout VerifyReport) -> ([SegmentItem], Set<String>) {
        var badRecords = Set<String>()
        var dirty: [SegmentItem] = []
        for s in inv.segments {
            var segBad = false
            for r in s.records {
                report.checked += 1
                let len = r.header.recordSize
                let bytes = (try? s.fd.read(count: len, at: r.offset)) ?? []
                let why: String?
                if bytes.count != len { why = "record unreadable" } else {
                    why = check(CacheEntry(header: r.header, backing: .memory(bytes), pool: pool) { _ in })
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
        return (dirty, badRecords)
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
