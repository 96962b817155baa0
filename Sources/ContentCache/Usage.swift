import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Last-use journals (cache-layout.md, "Last use"): `usage/<16 hex>.log`, magic "gitfsUS1", then
/// 24-byte records (20-byte key, u32 LE unix seconds). Each process appends to its own locked journal.
extension ContentCache {
    static let usageMagic: [UInt8] = Array("gitfsUS1".utf8)
    static let usageRotateSize = 4 << 20
    static let touchedFlushCount = 65_536

    /// Records a use of `key` in memory; flushes when the interval has passed.
    func touch(_ key: ObjectID) {
        let now = clock()
        let count = shard(key).touched.withLock { t -> Int in
            t[key] = now
            return t.count
        }
        let last = lastFlush.load(ordering: .relaxed)
        if now &- last >= Self.usageFlushInterval || count >= Self.touchedFlushCount / shards.count {
            if lastFlush.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
                flushUsage()
            }
        }
    }

    /// Persists the recorded last-use times now (one append to this process's usage journal).
    /// Also done every minute during lookups and when the cache is released. Failures are logged.
    public func flushUsage() {
        var records: [UInt8] = []
        for sh in shards {
            let t = sh.touched.withLock { t -> [ObjectID: UInt32] in
                let copy = t
                t.removeAll(keepingCapacity: true)
                return copy
            }
            for (k, v) in t {
                records += k.bytes
                appendLE(&records, v)
            }
        }
        lastFlush.store(clock(), ordering: .relaxed)
        if records.isEmpty { return }
        usageWriter.withLock { u in
            if u.fd >= 0 && u.end + records.count > Self.usageRotateSize {
                SystemIO.close(u.fd) // releases the lock: gc may now fold this journal
                u.fd = -1
            }
            if u.fd < 0 {
                do {
                    let (fd, tmp) = try createLockedTemp("usage")
                    let e = SystemIO.pwriteFull(fd, Self.usageMagic, 8, 0)
                    if e != 0 { SystemIO.unlink(tmp); SystemIO.close(fd); throw Self.failure(e, "cannot write a usage journal") }
                    do { try publish(tmp, usageDir + "/" + SystemIO.randomName() + ".log") } catch {
                        SystemIO.unlink(tmp); SystemIO.close(fd); throw error
                    }
                    u.fd = fd
                    u.end = 8
                } catch {
                    logger.warning("cache last-use not recorded: \(error)")
                    return
                }
            }
            let e = SystemIO.pwriteFull(u.fd, records, records.count, u.end)
            if e != 0 {
                SystemIO.ftruncate(u.fd, u.end)
                logger.warning("cache last-use not recorded: \(SystemIO.errnoText(e))")
                return
            }
            u.end += records.count
        }
    }

    /// Reads one journal into `into` (keeping the latest time per key). Partial trailing records are ignored.
    static func readJournal(_ path: String, into: inout [ObjectID: UInt32]) -> Bool {
        let fd = SystemIO.open(path, O_RDONLY)
        if fd < 0 { return false }
        defer { SystemIO.close(fd) }
        guard let st = SystemIO.fstat(fd) else { return false }
        let size = Int(st.st_size)
        var buf = [UInt8](repeating: 0, count: size)
        let n = buf.withUnsafeMutableBytes { SystemIO.preadFull(fd, $0.baseAddress!, size, 0) }
        guard n >= 8, Array(buf[0..<8]) == usageMagic else { return false }
        buf.withUnsafeBytes { raw in
            var p = 8
            while p + 24 <= n {
                let k = ObjectID(raw: UnsafeRawBufferPointer(rebasing: raw[p..<(p + 20)]))
                let t = raw.loadUnaligned(fromByteOffset: p + 20, as: UInt32.self).littleEndian
                if t > into[k, default: 0] { into[k] = t }
                p += 24
            }
        }
        return true
    }
}
