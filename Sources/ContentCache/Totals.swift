import Basics
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Cache totals counted by a full walk (`totals()`). `diskBytes` is what `du` reports for the cache folder.
public struct CacheTotals: Sendable, Equatable {
    public var entries = 0
    /// Decompressed bytes of all entries.
    public var contentBytes = 0
    /// Compressed bytes of all entries (chunk frames plus headers).
    public var storedBytes = 0
    public var diskBytes = 0
}

/// Totals the cache keeps while it runs (`runningTotals()`), so `statfs` and `.gitfs/stats` cost the
/// same however big the cache is. A value type.
public struct CacheUsage: Sendable, Equatable {
    /// Distinct entries.
    public var entries = 0
    /// Disk bytes of the entry files and segments (`du` of objects/ and segments/).
    public var diskBytes = 0
}

/// The running totals of one `ContentCache` instance: counted from the folder on first use, adjusted
/// on every store, damaged entry removed and segment indexed, and counted again after this
/// instance's gc or repair. Changes made by other processes show up as their segments are indexed
/// (small entries) or at the next recount (their large entries, their gc). Thread-safe (one `Mutex`).
final class RunningTotals: Sendable {
    private struct State { var usage = CacheUsage(); var counted = false }
    private let state = Mutex(State())

    func add(entries: Int = 0, diskBytes: Int = 0) {
        guard entries != 0 || diskBytes != 0 else { return }
        state.withLock { s in
            s.usage.entries += entries
            s.usage.diskBytes += diskBytes
        }
    }

    var counted: Bool { state.withLock { $0.counted } }

    func set(_ usage: CacheUsage) { state.withLock { $0 = State(usage: usage, counted: true) } }

    var usage: CacheUsage { state.withLock { $0.usage } }
}

extension ContentCache {
    /// Entries and disk bytes, kept up to date by this instance rather than counted: after the first
    /// call (which indexes the segments and lists objects/) its cost does not grow with the cache.
    public func runningTotals() -> CacheUsage {
        guard isInitialised else { return CacheUsage() }
        if !running.counted { recountRunningTotals() }
        return running.usage
    }

    /// Sets the running totals from the folder: the segment index (records of every segment) plus one
    /// `lstat` per entry file in objects/ (no file is opened).
    func recountRunningTotals() {
        refresh(ifGeneration: nil)
        var usage = CacheUsage()
        for sh in shards { usage.entries += sh.index.withLock { $0.count } }
        usage.diskBytes = segments.withLock { $0.values.reduce(0) { $0 + $1.allocated.load(ordering: .relaxed) } }
        for d in FileSystem.list(objectsDir) where Self.isHexName(d, length: 2) {
            for f in FileSystem.list(objectsDir + "/" + d) where Self.isHexName(f, length: 38) {
                guard let st = try? FileSystem.linkStatus(objectsDir + "/" + d + "/" + f),
                      (st.st_mode & S_IFMT) == S_IFREG, let key = ObjectID(hex: d + f) else { continue }
                usage.diskBytes += FileSystem.diskBytes(st)
                if shard(key).index.withLock({ $0[key] == nil }) { usage.entries += 1 }
            }
        }
        running.set(usage)
    }

    /// Counts entries (distinct keys), their content and compressed bytes, and the folder's du, by
    /// reading every entry header and scanning every segment (cost grows with the cache; `gitfs stats`
    /// without a mount and tests use it; a mount uses `runningTotals()`).
    public func totals() -> CacheTotals {
        guard isInitialised else { return CacheTotals() }
        let inv = takeInventory()
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

    /// du of objects/ and segments/ (the size gc compares with its limit).
    public func entriesDiskBytes() -> Int {
        var total = 0
        for d in FileSystem.list(objectsDir) {
            for f in FileSystem.list(objectsDir + "/" + d) {
                if let st = try? FileSystem.linkStatus(objectsDir + "/" + d + "/" + f) { total += FileSystem.diskBytes(st) }
            }
        }
        for s in FileSystem.list(segmentsDir) {
            if let st = try? FileSystem.linkStatus(segmentsDir + "/" + s) { total += FileSystem.diskBytes(st) }
        }
        return total
    }

    /// du of the whole cache folder.
    func folderDiskBytes() -> Int { FileSystem.diskUsage(directory) }

    /// `name` is `length` lowercase hexadecimal digits (a cache file name part).
    static func isHexName(_ name: String, length: Int) -> Bool {
        name.utf8.count == length && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
