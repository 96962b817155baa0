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
        guard isInitialised else { return }
        usageWriter.withLock { u in
            if u.journal != nil && u.end + records.count > Self.usageRotateSize {
                u.journal = nil // closing it releases the lock: gc may now fold this journal
            }
            if u.journal == nil {
                do throws(CacheError) {
                    u.journal = try newJournal()
                    u.end = 8
                } catch {
                    noteUsageFailure(error)
                    return
                }
            }
            let j = u.journal!
            do throws(Errno) { try j.fd.write(records, at: u.end) } catch {
                try? j.fd.truncate(to: u.end)
                noteUsageFailure(Self.failure(error, "cannot append to \(j.path)"))
                return
            }
            u.end += records.count
        }
    }

    /// A new journal of this process: created and locked in tmp/, magic written, renamed into usage/.
    private func newJournal() throws(CacheError) -> OpenFile {
        let temp = try createLockedTemp("usage")
        do { try temp.fd.write(Self.usageMagic, at: 0) } catch {
            try? FileSystem.remove(temp.path)
            throw Self.failure(error, "cannot write a usage journal")
        }
        let path = usageDir + "/" + Self.randomName() + ".log"
        do { try publish(temp.path, path) } catch {
            try? FileSystem.remove(temp.path)
            throw error
        }
        return OpenFile(path: path, fd: temp.fd)
    }

    /// A read-only cache or a full disk is said once (`logOnce`); other failures each time.
    private func noteUsageFailure(_ error: CacheError) {
        switch error.kind {
        case .readOnly, .noSpace: logOnce(error)
        default: logger.warning("cache last-use not recorded: \(error)")
        }
    }

    /// Replaces the journals no live process holds with one journal of the surviving keys' times
    /// (gc's last step).
    func foldUsage(_ paths: [String], lastUse: [ObjectID: UInt32], live: Set<ObjectID>) {
        guard !paths.isEmpty else { return }
        var bytes = Self.usageMagic
        for (k, t) in lastUse where live.contains(k) {
            bytes += k.bytes
            appendLE(&bytes, t)
        }
        guard let temp = try? createLockedTemp("usage") else { return }
        do throws(CacheError) {
            do { try temp.fd.write(bytes, at: 0) } catch { throw Self.failure(error, "cannot write a usage journal") }
            try publish(temp.path, usageDir + "/" + Self.randomName() + ".log")
        } catch {
            try? FileSystem.remove(temp.path)
            return
        }
        for p in paths { try? FileSystem.remove(p) }
    }

    /// Reads one journal into `into` (keeping the latest time per key). Partial trailing records are ignored.
    static func readJournal(_ path: String, into: inout [ObjectID: UInt32]) -> Bool {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY), let st = try? fd.status(),
              let buf = try? fd.read(count: Int(st.st_size), at: 0) else { return false }
        let n = buf.count
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
