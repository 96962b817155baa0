import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Finding entries: the segment index first, then the entry file, then (rate-limited) a rescan of
/// the segment folder for records other processes appended.
extension ContentCache {
    /// The entry for `key`, or nil on a miss. A damaged, truncated or foreign entry is removed and
    /// reported as a miss. Cost on a hit: one open and one header read (large entries) or one pread
    /// of the record (small entries). Records the key's last use in memory (flushed periodically).
    public func lookup(_ key: ObjectID) -> CacheEntry? {
        guard isInitialised else { return nil }
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
        guard isInitialised else { return false }
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
        guard isInitialised else { return nil }
        ensureLoaded()
        return shard(key).index.withLock { $0[key]?.contentSize }
    }

    /// Indexed in a segment, or an entry file exists (`access(2)`).
    func containsCheap(_ key: ObjectID) -> Bool {
        if shard(key).index.withLock({ $0[key] != nil }) { return true }
        return FileSystem.access(objectPath(key), F_OK)
    }

    /// Whether a miss may rescan the segment folder now (see `missRescanInterval`).
    private func mayRescanOnMiss() -> Bool {
        let interval = missRescanNanos.load(ordering: .relaxed)
        if interval == 0 { return true }
        let now = MonotonicTime.now.nanoseconds
        let last = lastMissRescan.load(ordering: .relaxed)
        guard now &- last >= interval else { return false }
        return lastMissRescan.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
    }

    private func lookupIndexed(_ key: ObjectID) -> CacheEntry? {
        let sh = shard(key)
        guard let loc = sh.index.withLock({ $0[key] }) else { return nil }
        var header: EntryHeader?
        let bytes = (try? loc.segment.fd.read(count: loc.length, at: loc.offset)) ?? []
        if bytes.count == loc.length, case .ok(let h) = bytes.withUnsafeBytes({ EntryHeader.parse($0) }),
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
        let dropped = shard(key).index.withLock { idx -> Bool in
            guard let cur = idx[key], cur.segment === loc.segment, cur.offset == loc.offset else { return false }
            idx[key] = nil
            return true
        }
        if dropped { running.add(entries: -1) }
    }

    private func lookupFile(_ key: ObjectID) -> CacheEntry? {
        let path = objectPath(key)
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        switch Self.readFileHeader(fd) {
        case .success(let h) where h.key == key:
            return CacheEntry(header: h, backing: .file(fd), pool: pool) { [weak self] e in
                self?.logger.warning("cache entry \(key) is damaged; removed")
                switch e.backing {
                case .file(let fd): self?.removeDamagedFile(path, fd: fd)
                case .memory: break
                }
            }
        case .success:
            logger.warning("cache file \(path) holds another key; removed")
        case .failure(let err):
            logger.warning("cache file \(path): \(err); removed")
        }
        removeDamagedFile(path, fd: fd)
        return nil
    }

    /// Unlinks a damaged entry file if it is still the one `fd` has open, and takes it off the totals.
    func removeDamagedFile(_ path: String, fd: borrowing FileDescriptor) {
        let disk = (try? fd.status()).map(FileSystem.diskBytes) ?? 0
        if unlinkIfSame(path, fd: fd) { running.add(entries: -1, diskBytes: -disk) }
    }

    /// Reads and checks the header of an entry file; also checks the file size equals the entry size.
    static func readFileHeader(_ fd: borrowing FileDescriptor) -> Result<EntryHeader, CacheError> {
        var want = 64 << 10
        while true {
            let buf: [UInt8]
            do { buf = try fd.read(count: want, at: 0) } catch {
                return .failure(.io("read failed: \(error.message)"))
            }
            switch buf.withUnsafeBytes({ EntryHeader.parse($0) }) {
            case .ok(let h):
                guard let st = try? fd.status(), Int(st.st_size) == h.recordSize else {
                    return .failure(.corrupt("file size does not match its header (truncated or extended)"))
                }
                return .success(h)
            case .needMore(let m):
                if buf.count < want || m <= want { return .failure(.corrupt("truncated header")) }
                want = m
            case .invalid(let why):
                return .failure(.corrupt(why))
            }
        }
    }
}
