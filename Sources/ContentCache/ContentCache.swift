import Basics
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// One segment file (cache-layout.md, "Segments"), open for reading (and for appending when this
/// process writes it). Thread-safe: the fd is only used with pread/pwrite; `scanned` is guarded.
final class SegmentFile: Sendable {
    static let magic: [UInt8] = Array("gitfsSG1".utf8)
    let name: String
    let fd: Int32
    /// Bytes of the file already indexed (0 = magic not checked yet).
    let scanned: Mutex<Int>

    init(name: String, fd: Int32, scanned: Int) {
        self.name = name
        self.fd = fd
        self.scanned = Mutex(scanned)
    }
    deinit { SystemIO.close(fd) }
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

/// The on-disk content cache of cache-layout.md: blob contents keyed by git object id, zstd level 1
/// in independently compressed chunks, each chunk checked on read.
///
/// Thread-safe and multi-process safe: a mount, a prefetch and a gc may use one directory at once.
/// Large entries are files published by rename; small entries are records appended by one process
/// to its own locked segment file; gc only rewrites or deletes files no live process holds locked,
/// and readers keep their fds, so a read in progress is never broken. Reads take no global lock:
/// the index is sharded and zstd contexts are pooled.
public final class ContentCache: Sendable {
    /// Returns true when `content` is the blob whose object id is the key (git's SHA-1 of
    /// "blob <size>\0<content>"). Called before anything is written and by `verify`.
    public typealias Verifier = @Sendable (ObjectID, UnsafeRawBufferPointer) -> Bool

    /// The only format this build reads and writes (the VERSION file's first line).
    public static let formatVersion = "gitfs-cache 1"
    /// Default chunk size: 64 KiB (see cache-layout.md for the measurements behind it).
    public static let defaultChunkLog2 = 16
    /// Records whose encoded size is at most this go to segments; larger entries get their own file.
    static let smallRecordLimit = 32 << 10
    /// A segment is sealed (and a new one started) when it would grow past this.
    static let maxSegmentSize = 32 << 20
    /// Last-use records are flushed at most this often (seconds) unless `flushUsage` is called.
    static let usageFlushInterval: UInt32 = 60

    public let directory: String
    let verifier: Verifier
    let clock: @Sendable () -> UInt32
    let chunkLog2: Int
    let pool = ZstdPool()
    let shards: [Shard] = (0..<64).map { _ in Shard() }
    let segments = Mutex<[String: SegmentFile]>([:])
    /// Generation of segment refreshes; the lock also serializes refreshes.
    let refreshState = Mutex<UInt64>(0)
    let loaded = Atomic<Bool>(false)
    let writer = Mutex<(segment: SegmentFile?, end: Int)>((nil, 0))
    let usageWriter = Mutex<(fd: Int32, end: Int)>((-1, 0))
    let lastFlush = Atomic<UInt32>(0)
    let noSpaceLogged = Atomic<Bool>(false)
    let logger = Logger(label: "gitfs.cache")

    var objectsDir: String { directory + "/objects" }
    var segmentsDir: String { directory + "/segments" }
    var usageDir: String { directory + "/usage" }
    var tmpDir: String { directory + "/tmp" }

    /// Opens (creating if needed) the cache at `directory`: the folder, its VERSION file and
    /// sub-folders. A VERSION naming another format throws `.unsupportedVersion`.
    /// `chunkLog2` (12...20) sets the chunk size of entries this instance writes.
    public convenience init(directory: String, chunkLog2: Int = ContentCache.defaultChunkLog2, verifier: @escaping Verifier) throws(CacheError) {
        try self.init(directory: directory, chunkLog2: chunkLog2, clock: { SystemIO.now() }, verifier: verifier)
    }

    /// The shortest time between two rescans of the segment folder caused by misses (0: every miss
    /// rescans). A rescan lists the folder under one lock; a process that misses often (a mount
    /// loading a cold tree) sets this to tens of milliseconds, so it sees entries that other processes
    /// wrote at most that much later (seeing them late only costs a second load of the same blob).
    public var missRescanInterval: Duration {
        get { .nanoseconds(Int64(missRescanNanos.load(ordering: .relaxed))) }
        set { missRescanNanos.store(UInt64(max(0, newValue.nanosecondCount)), ordering: .relaxed) }
    }
    let missRescanNanos = Atomic<UInt64>(0)
    let lastMissRescan = Atomic<UInt64>(0)

    /// Whether a miss may rescan the segment folder now (see `missRescanInterval`).
    private func mayRescanOnMiss() -> Bool {
        let interval = missRescanNanos.load(ordering: .relaxed)
        if interval == 0 { return true }
        let now = MonotonicTime.now.nanoseconds
        let last = lastMissRescan.load(ordering: .relaxed)
        guard now &- last >= interval else { return false }
        return lastMissRescan.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
    }

    /// `clock` gives the unix time recorded as creation and last use (tests pass their own).
    init(directory: String, chunkLog2: Int, clock: @escaping @Sendable () -> UInt32, verifier: @escaping Verifier) throws(CacheError) {
        precondition((12...20).contains(chunkLog2), "chunkLog2 must be 12...20")
        var dir = directory
        while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        self.directory = dir
        self.verifier = verifier
        self.chunkLog2 = chunkLog2
        self.clock = clock
        lastFlush.store(clock(), ordering: .relaxed)
        try Self.makeDirectories(dir)
        try Self.checkVersion(dir)
        for sub in ["objects", "segments", "usage", "tmp"] {
            let e = SystemIO.mkdir(dir + "/" + sub)
            if e != 0 { throw CacheError.io("cannot create cache folder \(dir)/\(sub): \(SystemIO.errnoText(e)); check permissions") }
        }
    }

    deinit {
        flushUsage()
        writer.withLock { w in if let s = w.segment { _ = SystemIO.lock(s.fd, LOCK_UN) } }
        usageWriter.withLock { u in if u.fd >= 0 { SystemIO.close(u.fd) } }
    }

    private static func makeDirectories(_ dir: String) throws(CacheError) {
        var path = ""
        for part in dir.split(separator: "/") {
            path += "/" + part
            let e = SystemIO.mkdir(path)
            if e != 0 { throw CacheError.io("cannot create cache folder \(path): \(SystemIO.errnoText(e)); check permissions or --home") }
        }
    }

    private static func checkVersion(_ dir: String) throws(CacheError) {
        let path = dir + "/VERSION"
        for _ in 0..<3 {
            if let text = readSmallFile(path) {
                let first = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
                if first == formatVersion { return }
                throw CacheError(.unsupportedVersion,
                    "cache \(dir) has format '\(first.prefix(40))', this gitfs reads only '\(formatVersion)'; use the gitfs that wrote it or point --home elsewhere")
            }
            // Absent: write a temporary file and link it into place (link fails if another process won).
            let tmp = dir + "/VERSION." + SystemIO.randomName() + ".tmp"
            let fd = SystemIO.open(tmp, O_WRONLY | O_CREAT | O_EXCL)
            if fd < 0 { throw CacheError.io("cannot write \(path): \(SystemIO.errnoText(-fd))") }
            let bytes = Array((formatVersion + "\n").utf8)
            let e = SystemIO.pwriteFull(fd, bytes, bytes.count, 0)
            SystemIO.close(fd)
            defer { SystemIO.unlink(tmp) }
            if e != 0 { throw CacheError(e == ENOSPC ? .noSpace : .io, "cannot write \(path): \(SystemIO.errnoText(e))") }
            _ = Glibc.link(tmp, path)
        }
        throw CacheError.io("cannot read \(path)")
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = SystemIO.open(path, O_RDONLY)
        if fd < 0 { return nil }
        defer { SystemIO.close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { SystemIO.preadFull(fd, $0.baseAddress!, 4096, 0) }
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    func shard(_ key: ObjectID) -> Shard { shards[Int(key.firstByte & 63)] }

    func objectPath(_ key: ObjectID) -> String {
        let hex = key.hex
        return objectsDir + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
    }

    // MARK: lookup

    /// The entry for `key`, or nil on a miss. A damaged, truncated or foreign entry is removed and
    /// reported as a miss. Cost on a hit: one open and one header read (large entries) or one pread
    /// of the record (small entries). Records the key's last use in memory (flushed periodically).
    public func lookup(_ key: ObjectID) -> CacheEntry? {
        ensureLoaded()
        touch(key)
        if let e = lookupIndexed(key) { return e }
        if let e = lookupFile(key) { return e }
        guard mayRescanOnMiss() else { return nil }
        let gen = refreshState.withLock { $0 }
        refresh(ifGeneration: gen)
        return lookupIndexed(key)
    }

    /// True when an entry for `key` exists (no decompression, no checks).
    public func contains(_ key: ObjectID) -> Bool {
        ensureLoaded()
        if containsCheap(key) { return true }
        guard mayRescanOnMiss() else { return false }
        let gen = refreshState.withLock { $0 }
        refresh(ifGeneration: gen)
        return shard(key).index.withLock { $0[key] != nil }
    }

    /// The content size of a small entry from the in-memory index (no I/O); nil when the entry is not
    /// indexed (absent, or a large entry, whose size is in its file's header).
    public func indexedSize(_ key: ObjectID) -> Int? {
        ensureLoaded()
        return shard(key).index.withLock { $0[key]?.contentSize }
    }

    func containsCheap(_ key: ObjectID) -> Bool {
        if shard(key).index.withLock({ $0[key] != nil }) { return true }
        return Glibc.access(objectPath(key), F_OK) == 0
    }

    private func lookupIndexed(_ key: ObjectID) -> CacheEntry? {
        let sh = shard(key)
        guard let loc = sh.index.withLock({ $0[key] }) else { return nil }
        var bytes = [UInt8](repeating: 0, count: loc.length)
        let n = bytes.withUnsafeMutableBytes { SystemIO.preadFull(loc.segment.fd, $0.baseAddress!, loc.length, loc.offset) }
        var header: EntryHeader?
        if n == loc.length, case .ok(let h) = bytes.withUnsafeBytes({ EntryHeader.parse($0) }),
           h.key == key, h.recordSize == loc.length {
            header = h
        }
        guard let header else {
            dropIndexed(key, at: loc)
            return nil
        }
        return CacheEntry(header: header, backing: .memory(bytes), pool: pool) { [weak self] _ in
            self?.dropIndexed(key, at: loc)
        }
    }

    /// Removes `key` from the index if it still points at `loc` (the record is damaged).
    func dropIndexed(_ key: ObjectID, at loc: Location) {
        logger.warning("cache record \(key) in segment \(loc.segment.name) is damaged; dropped")
        shard(key).index.withLock { idx in
            if let cur = idx[key], cur.segment === loc.segment, cur.offset == loc.offset { idx[key] = nil }
        }
    }

    private func lookupFile(_ key: ObjectID) -> CacheEntry? {
        let path = objectPath(key)
        let fd = SystemIO.open(path, O_RDONLY)
        if fd < 0 { return nil }
        switch Self.readFileHeader(fd) {
        case .success(let h) where h.key == key:
            let entry = CacheEntry(header: h, backing: .file(fd), pool: pool) { [weak self] e in
                self?.logger.warning("cache entry \(key) is damaged; removed")
                if case .file(let fd) = e.backing { SystemIO.unlinkIfSame(path, fd: fd) }
            }
            return entry
        case .success:
            logger.warning("cache file \(path) holds another key; removed")
        case .failure(let err):
            logger.warning("cache file \(path): \(err); removed")
        }
        SystemIO.unlinkIfSame(path, fd: fd)
        SystemIO.close(fd)
        return nil
    }

    /// Reads and checks the header of an entry file; also checks the file size equals the entry size.
    static func readFileHeader(_ fd: Int32) -> Result<EntryHeader, CacheError> {
        var want = 64 << 10
        while true {
            var buf = [UInt8](repeating: 0, count: want)
            let n = buf.withUnsafeMutableBytes { SystemIO.preadFull(fd, $0.baseAddress!, want, 0) }
            if n < 0 { return .failure(.io("read failed: \(SystemIO.errnoText(Int32(-n)))")) }
            switch buf.withUnsafeBytes({ EntryHeader.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) {
            case .ok(let h):
                guard let st = SystemIO.fstat(fd), Int(st.st_size) == h.recordSize else {
                    return .failure(.corrupt("file size does not match its header (truncated or extended)"))
                }
                return .success(h)
            case .needMore(let m):
                if n < want || m <= want { return .failure(.corrupt("truncated header")) }
                want = m
            case .invalid(let why):
                return .failure(.corrupt(why))
            }
        }
    }

    // MARK: store

    /// Verifies `content` against `key` (`.verifyFailed` if it does not match), compresses it at zstd
    /// level 1 in chunks and publishes it atomically. Storing a key already present does nothing.
    /// A full disk throws `.noSpace` (logged once per instance) and leaves nothing half-written.
    /// `verified`: the caller has already checked `content` against `key` by other means (gitfs's pack
    /// reader: the pack index's CRC-32 and zlib's Adler-32), so the verifier is not run again.
    public func store(_ key: ObjectID, content: UnsafeRawBufferPointer, verified: Bool = false) throws(CacheError) {
        guard verified || verifier(key, content) else {
            throw CacheError(.verifyFailed, "content offered for \(key) does not hash to that object id; not cached")
        }
        ensureLoaded()
        if containsCheap(key) { return }
        do throws(CacheError) {
            if content.count <= 1 << chunkLog2 {
                let record = try encodeSmall(key, content)
                if record.count <= Self.smallRecordLimit {
                    try appendRecord(key, record, contentSize: content.count)
                } else {
                    try writeFile(key, content, prebuilt: record)
                }
            } else {
                try writeFile(key, content, prebuilt: nil)
            }
        } catch {
            if error.kind == .noSpace, !noSpaceLogged.exchange(true, ordering: .relaxed) {
                logger.error("content cache \(directory) is out of disk space; entries are not being cached (\(error))")
            }
            throw error
        }
    }

    /// A complete record (header + at most one frame) for content of at most one chunk.
    private func encodeSmall(_ key: ObjectID, _ content: UnsafeRawBufferPointer) throws(CacheError) -> [UInt8] {
        if content.isEmpty {
            return EntryHeader.encode(key: key, chunkLog2: chunkLog2, contentSize: 0, created: clock(), lengths: [])
        }
        var frame = [UInt8](repeating: 0, count: Compressor.bound(content.count))
        let n = try pool.withCompressor { (c) throws(CacheError) -> Int in
            let r = frame.withUnsafeMutableBytes { dst -> Result<Int, CacheError> in
                do throws(CacheError) { return .success(try c.compress(content, into: dst)) } catch { return .failure(error) }
            }
            return try r.get()
        }
        var record = EntryHeader.encode(key: key, chunkLog2: chunkLog2, contentSize: content.count, created: clock(), lengths: [UInt32(n)])
        record += frame[0..<n]
        return record
    }

    static func failure(_ e: Int32, _ what: String) -> CacheError {
        if e == ENOSPC || e == EDQUOT { return CacheError(.noSpace, "\(what): disk full (\(SystemIO.errnoText(e))); free space or lower the cache size (gitfs gc --max-size)") }
        return CacheError.io("\(what): \(SystemIO.errnoText(e))")
    }

    /// Creates a locked temporary file in tmp/ (O_EXCL, then `flock(LOCK_EX)`). Returns fd and path.
    func createLockedTemp(_ stem: String) throws(CacheError) -> (Int32, String) {
        let path = tmpDir + "/" + stem + "." + SystemIO.randomName() + ".tmp"
        let fd = SystemIO.open(path, O_RDWR | O_CREAT | O_EXCL)
        if fd < 0 { throw Self.failure(-fd, "cannot create \(path)") }
        _ = SystemIO.lock(fd, LOCK_EX)
        return (fd, path)
    }

    /// Renames `tmp` to `path` (creating the parent folder if needed).
    func publish(_ tmp: String, _ path: String) throws(CacheError) {
        if Glibc.rename(tmp, path) == 0 { return }
        if errno == ENOENT, Glibc.access(tmp, F_OK) == 0 {
            let parent = String(path[..<path.lastIndex(of: "/")!])
            _ = SystemIO.mkdir(parent)
            if Glibc.rename(tmp, path) == 0 { return }
        }
        throw Self.failure(errno, "cannot publish \(path)")
    }

    /// Writes an entry file: frames first (after room for the header), then the header, then rename.
    private func writeFile(_ key: ObjectID, _ content: UnsafeRawBufferPointer, prebuilt: [UInt8]?) throws(CacheError) {
        let (fd, tmp) = try createLockedTemp(key.hex)
        var published = false
        defer {
            if !published { SystemIO.unlink(tmp) }
            SystemIO.close(fd)
        }
        if let prebuilt {
            let e = SystemIO.pwriteFull(fd, prebuilt, prebuilt.count, 0)
            if e != 0 { throw Self.failure(e, "cannot write cache entry \(key)") }
        } else {
            let chunk = 1 << chunkLog2
            let n = EntryHeader.chunkCount(contentSize: content.count, chunkLog2: chunkLog2)
            var lengths = [UInt32]()
            lengths.reserveCapacity(n)
            var pos = EntryHeader.headerSize(chunkCount: n)
            let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: Compressor.bound(chunk), alignment: 16)
            defer { frame.deallocate() }
            try pool.withCompressor { (c) throws(CacheError) in
                for i in 0..<n {
                    let lo = i * chunk, hi = min(content.count, lo + chunk)
                    let m = try c.compress(UnsafeRawBufferPointer(rebasing: content[lo..<hi]), into: frame)
                    let e = SystemIO.pwriteFull(fd, frame.baseAddress!, m, pos)
                    if e != 0 { throw Self.failure(e, "cannot write cache entry \(key)") }
                    lengths.append(UInt32(m))
                    pos += m
                }
            }
            let header = EntryHeader.encode(key: key, chunkLog2: chunkLog2, contentSize: content.count, created: clock(), lengths: lengths)
            let e = SystemIO.pwriteFull(fd, header, header.count, 0)
            if e != 0 { throw Self.failure(e, "cannot write cache entry \(key)") }
        }
        try publish(tmp, objectPath(key))
        published = true
    }

    /// Appends one record to this process's segment (one pwrite; on failure the segment is truncated
    /// back, so no partial record stays) and indexes it.
    private func appendRecord(_ key: ObjectID, _ record: [UInt8], contentSize: Int) throws(CacheError) {
        let loc = try writer.withLock { (w) throws(CacheError) -> Location in
            if w.segment == nil || w.end + record.count > Self.maxSegmentSize {
                if let old = w.segment { _ = SystemIO.lock(old.fd, LOCK_UN) }
                w.segment = nil
                let seg = try newSegment()
                w.segment = seg
                w.end = SegmentFile.magic.count
            }
            let seg = w.segment!
            let e = SystemIO.pwriteFull(seg.fd, record, record.count, w.end)
            if e != 0 {
                SystemIO.ftruncate(seg.fd, w.end)
                throw Self.failure(e, "cannot append cache record \(key)")
            }
            let loc = Location(segment: seg, offset: w.end, length: record.count, contentSize: contentSize)
            w.end += record.count
            let end = w.end
            seg.scanned.withLock { $0 = max($0, end) }
            return loc
        }
        shard(key).index.withLock { idx in if idx[key] == nil { idx[key] = loc } }
    }

    /// A new segment for this process: created and locked in tmp/, magic written, then renamed into
    /// segments/ (so no other process ever sees it unlocked while it is being written).
    private func newSegment() throws(CacheError) -> SegmentFile {
        let name = SystemIO.randomName() + ".seg"
        let (fd, tmp) = try createLockedTemp("segment")
        let e = SystemIO.pwriteFull(fd, SegmentFile.magic, SegmentFile.magic.count, 0)
        if e != 0 {
            SystemIO.unlink(tmp); SystemIO.close(fd)
            throw Self.failure(e, "cannot create a cache segment")
        }
        do { try publish(tmp, segmentsDir + "/" + name) } catch {
            SystemIO.unlink(tmp); SystemIO.close(fd)
            throw error
        }
        let seg = SegmentFile(name: name, fd: fd, scanned: SegmentFile.magic.count)
        segments.withLock { $0[name] = seg }
        return seg
    }

    /// Seals this process's current segment (unlocks it) so gc may compact it; the next small store
    /// starts a new one.
    func sealWriter() {
        writer.withLock { w in
            if let s = w.segment { _ = SystemIO.lock(s.fd, LOCK_UN) }
            w.segment = nil
            w.end = 0
        }
    }

    // MARK: segment index

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
            let names = Set(SystemIO.list(segmentsDir).filter { $0.hasSuffix(".seg") })
            var vanished: [SegmentFile] = []
            let current: [SegmentFile] = segments.withLock { table in
                for (name, seg) in table where !names.contains(name) {
                    vanished.append(seg)
                    table[name] = nil
                }
                for name in names where table[name] == nil {
                    let fd = SystemIO.open(segmentsDir + "/" + name, O_RDONLY)
                    if fd >= 0 { table[name] = SegmentFile(name: name, fd: fd, scanned: 0) }
                }
                return Array(table.values)
            }
            for seg in current { scanTail(seg) }
            if !vanished.isEmpty {
                for sh in shards {
                    sh.index.withLock { idx in
                        for (k, loc) in idx where vanished.contains(where: { $0 === loc.segment }) { idx[k] = nil }
                    }
                }
                // Re-scan so keys whose record moved (compaction) are found in the new segment.
                for seg in current { seg.scanned.withLock { $0 = 0 } ; scanTail(seg) }
            }
            g += 1
            loaded.store(true, ordering: .releasing)
        }
    }

    /// Indexes the valid records of `seg` past its scanned offset.
    func scanTail(_ seg: SegmentFile) {
        seg.scanned.withLock { scanned in
            guard let st = SystemIO.fstat(seg.fd) else { return }
            let size = Int(st.st_size)
            if scanned >= size { return }
            let result = Self.scanRecords(fd: seg.fd, from: scanned, size: size) { h, off in
                let loc = Location(segment: seg, offset: off, length: h.recordSize, contentSize: h.contentSize)
                shard(h.key).index.withLock { idx in if idx[h.key] == nil { idx[h.key] = loc } }
            }
            scanned = result.end
        }
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
    static func scanRecords(fd: Int32, from: Int, size: Int, _ body: (EntryHeader, Int) -> Void) -> ScanResult {
        var pos = from
        if pos == 0 {
            var m = [UInt8](repeating: 0, count: 8)
            let n = m.withUnsafeMutableBytes { SystemIO.preadFull(fd, $0.baseAddress!, 8, 0) }
            if n < 8 { return ScanResult(end: 0, stop: "too short for a segment", incomplete: true) }
            if m != SegmentFile.magic { return ScanResult(end: 0, stop: "not a segment (bad magic)", incomplete: false) }
            pos = 8
        }
        var bufSize = 1 << 20
        var buf = [UInt8](repeating: 0, count: bufSize)
        while pos < size {
            let want = min(bufSize, size - pos)
            let n = buf.withUnsafeMutableBytes { SystemIO.preadFull(fd, $0.baseAddress!, want, pos) }
            if n <= 0 { return ScanResult(end: pos, stop: "read failed", incomplete: true) }
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
                buf = [UInt8](repeating: 0, count: bufSize)
                continue
            }
            pos += p
        }
        return ScanResult(end: pos, stop: nil, incomplete: false)
    }
}
