import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Writing entries: small ones appended to this process's segment, large ones as files published by
/// rename (cache-layout.md, "Large and small entries").
extension ContentCache {
    /// Verifies `content` against `key` (`.verifyFailed` if it does not match), compresses it at zstd
    /// level 1 in chunks and publishes it atomically. Storing a key already present does nothing.
    /// A full disk throws `.noSpace` and a cache that refuses writes `.readOnly` (each logged once per
    /// instance); nothing is left half-written.
    /// `verified`: the caller has already checked `content` against `key` by other means (gitfs's pack
    /// reader: the pack index's CRC-32 and zlib's Adler-32), so the verifier is not run again.
    public func store(_ key: ObjectID, content: UnsafeRawBufferPointer, verified: Bool = false) throws(CacheError) {
        guard verified || verifier(key, content) else {
            throw CacheError(.verifyFailed, "content offered for \(key) does not hash to that object id; not cached")
        }
        guard isInitialised else {
            throw CacheError(.readOnly, "content cache \(directory) is not initialised and cannot be; \(key) not cached")
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
            logOnce(error)
            throw error
        }
        if let observer = storeObserver.withLock({ $0 }) { observer(key, content.count) }
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

    /// Creates a locked temporary file in tmp/ (O_EXCL, then `flock(LOCK_EX)`).
    func createLockedTemp(_ stem: String) throws(CacheError) -> TempFile {
        let path = tmpDir + "/" + stem + "." + Self.randomName() + ".tmp"
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDWR | O_CREAT | O_EXCL) } catch {
            throw Self.failure(error, "cannot create \(path)")
        }
        try? fd.lock(LOCK_EX)
        return TempFile(fd: fd, path: path)
    }

    /// Renames `tmp` to `path` (creating the parent folder if needed).
    func publish(_ tmp: String, _ path: String) throws(CacheError) {
        do { try FileSystem.rename(tmp, to: path); return } catch {
            guard error == .noEntry, FileSystem.access(tmp, F_OK) else { throw Self.failure(error, "cannot publish \(path)") }
        }
        let parent = String(path[..<path.lastIndex(of: "/")!])
        try? FileSystem.makeDirectory(parent)
        do { try FileSystem.rename(tmp, to: path) } catch { throw Self.failure(error, "cannot publish \(path)") }
    }

    /// Writes an entry file: frames first (after room for the header), then the header, then rename.
    private func writeFile(_ key: ObjectID, _ content: UnsafeRawBufferPointer, prebuilt: [UInt8]?) throws(CacheError) {
        let temp = try createLockedTemp(key.hex)
        var published = false
        defer { if !published { try? FileSystem.remove(temp.path) } }
        let fail = { (e: Errno) in Self.failure(e, "cannot write cache entry \(key)") }
        if let prebuilt {
            do { try temp.fd.write(prebuilt, at: 0) } catch { throw fail(error) }
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
                    do throws(Errno) { try temp.fd.write(UnsafeRawBufferPointer(rebasing: frame[0..<m]), at: pos) } catch { throw fail(error) }
                    lengths.append(UInt32(m))
                    pos += m
                }
            }
            let header = EntryHeader.encode(key: key, chunkLog2: chunkLog2, contentSize: content.count, created: clock(), lengths: lengths)
            do { try temp.fd.write(header, at: 0) } catch { throw fail(error) }
        }
        let disk = (try? temp.fd.status()).map(FileSystem.diskBytes) ?? 0
        let path = objectPath(key)
        let replaced = (try? FileSystem.linkStatus(path)).map(FileSystem.diskBytes)   // another writer's copy
        try publish(temp.path, path)
        published = true
        running.add(entries: replaced == nil ? 1 : 0, diskBytes: disk - (replaced ?? 0))
    }

    /// Appends one record to this process's segment (one pwrite; on failure the segment is truncated
    /// back, so no partial record stays) and indexes it.
    func appendRecord(_ key: ObjectID, _ record: [UInt8], contentSize: Int) throws(CacheError) {
        let loc = try writer.withLock { (w) throws(CacheError) -> Location in
            if w.segment == nil || w.end + record.count > Self.maxSegmentSize {
                w.segment?.fd.unlock()
                w.segment = nil
                w.segment = try newSegment()
                w.end = SegmentFile.magic.count
            }
            let seg = w.segment!
            do throws(Errno) { try seg.fd.write(record, at: w.end) } catch {
                try? seg.fd.truncate(to: w.end)
                throw Self.failure(error, "cannot append cache record \(key)")
            }
            let loc = Location(segment: seg, offset: w.end, length: record.count, contentSize: contentSize)
            w.end += record.count
            let end = w.end
            seg.scanned.withLock { $0 = max($0, end) }
            return loc
        }
        let inserted = shard(key).index.withLock { idx -> Bool in
            guard idx[key] == nil else { return false }
            idx[key] = loc
            return true
        }
        running.add(entries: inserted ? 1 : 0, diskBytes: loc.segment.updateAllocation())
    }
}

/// A temporary file in tmp/, created with O_EXCL and locked by its writer, with its path. The
/// descriptor closes (and the lock goes) when the value ends; removing the file is the caller's.
struct TempFile: ~Copyable {
    let fd: FileDescriptor
    let path: String
}
