import Basics
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// The on-disk content cache of cache-layout.md: blob contents keyed by git object id, zstd level 1
/// in independently compressed chunks, each chunk checked on read.
///
/// Thread-safe and multi-process safe: a mount, a prefetch and a gc may use one directory at once.
/// Large entries are files published by rename; small entries are records appended by one process
/// to its own locked segment file; gc only rewrites or deletes files no live process holds locked,
/// and readers keep their fds, so a read in progress is never broken. Reads take no global lock:
/// the index is sharded and zstd contexts are pooled.
///
/// The jobs live in their own files: Lookup.swift (finding entries), Store.swift (writing them),
/// Segments.swift (segment files and the index), Usage.swift (last-use journals), Totals.swift
/// (running totals), Inventory.swift, GC.swift and Verify.swift (maintenance).
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
    /// False when the folder has no VERSION and cannot be initialised (a read-only file system or
    /// folder): the cache is then empty, reads nothing in the folder and stores nothing.
    public let isInitialised: Bool
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
    let usageWriter = Mutex<(journal: OpenFile?, end: Int)>((nil, 0))
    let lastFlush = Atomic<UInt32>(0)
    /// Set once a full disk or a read-only cache has been logged (each is said once per instance).
    let noSpaceLogged = Atomic<Bool>(false)
    let readOnlyLogged = Atomic<Bool>(false)
    let running = RunningTotals()
    /// Told the key of every entry this instance stores (not of imports): a remote cache's write-back.
    let storeObserver = Mutex<(@Sendable (ObjectID, Int) -> Void)?>(nil)
    let logger = Logger(label: "gitfs.cache")

    var objectsDir: String { directory + "/objects" }
    var segmentsDir: String { directory + "/segments" }
    var usageDir: String { directory + "/usage" }
    var tmpDir: String { directory + "/tmp" }
    /// The folder of files being written (`tmp/`), also where big scratch buffers may be file-backed.
    public var temporaryFolder: String { tmpDir }

    /// Opens (creating if needed) the cache at `directory`: the folder, its VERSION file and
    /// sub-folders. A VERSION naming another format throws `.unsupportedVersion`. A folder that has
    /// no VERSION and cannot be written opens as an empty cache that stores nothing (`isInitialised`
    /// false; said once in the log), so reads are served from elsewhere.
    /// `chunkLog2` (12...20) sets the chunk size of entries this instance writes.
    public convenience init(directory: String, chunkLog2: Int = ContentCache.defaultChunkLog2, verifier: @escaping Verifier) throws(CacheError) {
        try self.init(directory: directory, chunkLog2: chunkLog2, clock: { ContentCache.now() }, verifier: verifier)
    }

    /// Calls `observer(key, contentSize)` after each entry this instance stores (`store`), on the storing
    /// thread: it must not block (queue the work). Not called for imported entries or keys already present.
    public func observeStores(_ observer: (@Sendable (ObjectID, Int) -> Void)?) {
        storeObserver.withLock { $0 = observer }
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
        do {
            try Self.makeFolders(dir)
            isInitialised = true
        } catch {
            switch error {
            case .cache(let e): throw e
            case .uninitialised(let e):
                isInitialised = false
                readOnlyLogged.store(true, ordering: .relaxed)
                logger.error("content cache \(dir) is not initialised and cannot be (\(e.errno.message)): nothing is cached; blobs are read from the mirrors")
            }
        }
    }

    deinit {
        flushUsage()
        writer.withLock { w in w.segment?.fd.unlock() }
    }

    /// The folder, its VERSION and its sub-folders; `Uninitialised` when that cannot be written.
    private static func makeFolders(_ dir: String) throws(FolderError) {
        do { try FileSystem.makeDirectories(dir) } catch {
            if error.isWriteRefused && !FileSystem.exists(dir + "/VERSION") { throw .uninitialised(Uninitialised(errno: error)) }
            throw .cache(.io("cannot create cache folder \(dir): \(error.message); check permissions or --home"))
        }
        try checkVersion(dir)
        for sub in ["objects", "segments", "usage", "tmp"] {
            do { try FileSystem.makeDirectory(dir + "/" + sub) } catch {
                throw .cache(.io("cannot create cache folder \(dir)/\(sub): \(error.message); check permissions"))
            }
        }
    }

    private static func checkVersion(_ dir: String) throws(FolderError) {
        let path = dir + "/VERSION"
        for _ in 0..<3 {
            if let bytes = try? FileSystem.readFile(path, limit: 4096) {
                let text = String(decoding: bytes, as: UTF8.self)
                let first = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
                if first == formatVersion { return }
                throw .cache(CacheError(.unsupportedVersion,
                    "cache \(dir) has format '\(first.prefix(40))', this gitfs reads only '\(formatVersion)'; use the gitfs that wrote it or point --home elsewhere"))
            }
            // Absent: write a temporary file and link it into place (link fails if another process won).
            let tmp = dir + "/VERSION." + randomName() + ".tmp"
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_EXCL) } catch {
                if error.isWriteRefused { throw .uninitialised(Uninitialised(errno: error)) }
                throw .cache(.io("cannot write \(path): \(error.message)"))
            }
            defer { try? FileSystem.remove(tmp) }
            do { try fd.write(Array((formatVersion + "\n").utf8), at: 0) } catch {
                throw .cache(failure(error, "cannot write \(path)"))
            }
            try? FileSystem.link(tmp, to: path)
        }
        throw .cache(.io("cannot read \(path)"))
    }

    /// Why the folder could not be made ready.
    private enum FolderError: Error {
        case cache(CacheError)
        case uninitialised(Uninitialised)
    }
    private struct Uninitialised: Error { let errno: Errno }

    func shard(_ key: ObjectID) -> Shard { shards[Int(key.firstByte & 63)] }

    func objectPath(_ key: ObjectID) -> String {
        let hex = key.hex
        return objectsDir + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
    }

    /// 16 random lowercase hex digits (getrandom via SystemRandomNumberGenerator), for new file names.
    static func randomName() -> String {
        let s = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// The unix time in seconds (`time(2)`), as entries and journals record it.
    static func now() -> UInt32 { UInt32(truncatingIfNeeded: time(nil)) }

    /// The cache error for a failed system call: a full disk, a cache that refuses writes, or I/O.
    static func failure(_ e: Errno, _ what: String) -> CacheError {
        if e.isNoSpace { return CacheError(.noSpace, "\(what): disk full (\(e.message)); free space or lower the cache size (gitfs gc --max-size)") }
        if e.isWriteRefused { return CacheError(.readOnly, "\(what): \(e.message)") }
        return CacheError.io("\(what): \(e.message)")
    }

    /// Logs a store-side failure the first time its kind occurs (a full disk, a read-only cache), so a
    /// cache that cannot be written says so once, not once per blob.
    func logOnce(_ error: CacheError) {
        switch error.kind {
        case .noSpace where !noSpaceLogged.exchange(true, ordering: .relaxed):
            logger.error("content cache \(directory) is out of disk space; entries are not being cached (\(error))")
        case .readOnly where !readOnlyLogged.exchange(true, ordering: .relaxed):
            logger.error("content cache \(directory) is read-only; blobs are served from the mirrors but not cached (\(error))")
        default:
            break
        }
    }
}

/// One open file of the cache (a journal, a temporary file) with its path. The descriptor closes when
/// the last reference goes. Thread-safe: immutable.
final class OpenFile: Sendable {
    let path: String
    let fd: FileDescriptor
    init(path: String, fd: consuming FileDescriptor) {
        self.path = path
        self.fd = fd
    }
}

/// Removes `path` only if it is still the file `fd` has open (same device and inode), so a newer copy
/// published by another process is never deleted. True when removed.
@discardableResult
func unlinkIfSame(_ path: String, fd: borrowing FileDescriptor) -> Bool {
    guard let a = try? fd.status(), let b = try? FileSystem.linkStatus(path), a.st_dev == b.st_dev, a.st_ino == b.st_ino else { return false }
    return (try? FileSystem.remove(path)) != nil
}
