import Basics
#if canImport(Glibc)
import Glibc
#endif

/// An entry file found while walking the cache.
struct FileItem {
    let key: ObjectID
    let path: String
    let disk: Int
    let header: EntryHeader
}

/// A valid record of a segment, by offset.
struct RecordItem {
    let header: EntryHeader
    let offset: Int
}

/// A segment found while walking the cache; `sealed` means this walk holds its lock (no live writer).
/// The file stays open (and locked when sealed) for the walk's lifetime.
final class SegmentItem {
    let name: String
    let path: String
    let fd: FileDescriptor
    let sealed: Bool
    let size: Int
    let disk: Int
    var records: [RecordItem] = []
    var scan: ContentCache.ScanResult
    init(name: String, path: String, fd: consuming FileDescriptor, sealed: Bool, size: Int, disk: Int) {
        self.name = name; self.path = path; self.fd = fd; self.sealed = sealed; self.size = size; self.disk = disk
        scan = .init(end: 0, stop: nil, incomplete: false)
    }
}

/// A temporary file no live process holds: kept open and locked (when it has a descriptor) until
/// the walk ends, so no writer can take it meanwhile.
final class StaleTemp {
    let path: String
    let bytes: Int
    let fd: FileDescriptor?
    init(path: String, bytes: Int, fd: consuming FileDescriptor?) {
        self.path = path; self.bytes = bytes; self.fd = fd
    }
}

/// Everything one walk of the cache folder found.
struct Inventory {
    var files: [FileItem] = []
    var segments: [SegmentItem] = []
    var junk: [(path: String, reason: String, key: ObjectID?)] = []
    var staleTemps: [StaleTemp] = []
}

extension ContentCache {
    /// Walks objects/, segments/ and tmp/, reading every entry header and scanning every segment.
    /// Segments and temps are probed with `flock(LOCK_EX|LOCK_NB)`: the ones this walk locks have no
    /// live writer.
    func takeInventory() -> Inventory {
        var inv = Inventory()
        takeEntryFiles(into: &inv)
        takeSegments(into: &inv)
        takeStaleTemps(into: &inv)
        return inv
    }

    private func takeEntryFiles(into inv: inout Inventory) {
        for d in FileSystem.list(objectsDir).sorted() {
            let dpath = objectsDir + "/" + d
            guard Self.isHexName(d, length: 2) else { inv.junk.append((dpath, "foreign file in objects/", nil)); continue }
            for f in FileSystem.list(dpath).sorted() {
                let path = dpath + "/" + f
                guard Self.isHexName(f, length: 38), let key = ObjectID(hex: d + f) else {
                    inv.junk.append((path, "foreign file in objects/", nil)); continue
                }
                guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { continue }
                let disk = (try? fd.status()).map(FileSystem.diskBytes) ?? 0
                switch Self.readFileHeader(fd) {
                case .success(let h) where h.key == key:
                    inv.files.append(FileItem(key: key, path: path, disk: disk, header: h))
                case .success:
                    inv.junk.append((path, "holds another key", key))
                case .failure(let e):
                    inv.junk.append((path, e.message, key))
                }
            }
        }
    }

    private func takeSegments(into inv: inout Inventory) {
        for name in FileSystem.list(segmentsDir).sorted() {
            let path = segmentsDir + "/" + name
            guard name.hasSuffix(".seg") else { inv.junk.append((path, "foreign file in segments/", nil)); continue }
            guard let fd = try? FileDescriptor.open(path, O_RDONLY), let st = try? fd.status() else { continue }
            let sealed = fd.tryLock(LOCK_EX)
            let item = SegmentItem(name: name, path: path, fd: fd, sealed: sealed, size: Int(st.st_size), disk: FileSystem.diskBytes(st))
            item.scan = Self.scanRecords(item.fd, from: 0, size: item.size) { h, off in
                item.records.append(RecordItem(header: h, offset: off))
            }
            inv.segments.append(item)
        }
    }

    private func takeStaleTemps(into inv: inout Inventory) {
        for name in FileSystem.list(tmpDir) {
            let path = tmpDir + "/" + name
            guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { continue }
            if fd.tryLock(LOCK_EX), let st = try? fd.status() {
                inv.staleTemps.append(StaleTemp(path: path, bytes: FileSystem.diskBytes(st), fd: fd))
            }
        }
        for name in FileSystem.list(directory) where name.hasPrefix("VERSION.") && name.hasSuffix(".tmp") {
            if let st = try? FileSystem.linkStatus(directory + "/" + name), time(nil) - st.st_mtim.tv_sec > 60 {
                inv.staleTemps.append(StaleTemp(path: directory + "/" + name, bytes: FileSystem.diskBytes(st), fd: nil))
            }
        }
    }

    /// Runs `body` holding `<cache>/gc.lock` exclusively (gc and verify never run at once). With
    /// `writing` false (a verify that changes nothing) the lock file is opened read-only, and when it
    /// does not exist and cannot be created (a read-only cache: no gc can run in it) `body` runs without it.
    func withMaintenanceLock<R>(writing: Bool = true, _ body: () throws(CacheError) -> R) throws(CacheError) -> R {
        let path = directory + "/gc.lock"
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDWR | O_CREAT) } catch {
            guard !writing, error.isWriteRefused else { throw Self.failure(error, "cannot open \(path)") }
            do { fd = try FileDescriptor.open(path, O_RDONLY) } catch {
                guard error == .noEntry else { throw Self.failure(error, "cannot open \(path)") }
                return try body()
            }
        }
        try? fd.lock(LOCK_EX)
        return try body()
    }
}
