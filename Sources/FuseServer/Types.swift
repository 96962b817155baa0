import Basics
#if canImport(Glibc)
import Glibc
#endif

/// The kind of a node; decides the file-type bits of st_mode.
public enum NodeKind: Sendable {
    case directory, regularFile, symlink

    var modeBits: UInt32 {
        switch self {
        case .directory: return 0o040000
        case .regularFile: return 0o100000
        case .symlink: return 0o120000
        }
    }
}

/// The attributes of a node as the kernel sees them (uid/gid are the mounting user's).
public struct NodeAttributes: Sendable {
    public var kind: NodeKind
    public var permissions: UInt16      // e.g. 0o555, 0o444
    public var size: UInt64
    public var mtime: Int64             // seconds since epoch (also used for atime/ctime)
    /// Nanoseconds of `mtime`. Directories served without OPENDIR must change mtime (to the
    /// nanosecond) whenever their listing changes: the kernel drops its cached listing only then.
    public var mtimeNanoseconds: Int = 0
    public var linkCount: UInt32
    public var ttl: Double              // kernel entry+attr cache lifetime in seconds for this node
    public init(kind: NodeKind, permissions: UInt16, size: UInt64, mtime: Int64, linkCount: UInt32 = 1, ttl: Double) {
        self.kind = kind
        self.permissions = permissions
        self.size = size
        self.mtime = mtime
        self.linkCount = linkCount
        self.ttl = ttl
    }
}

/// One entry of a directory listing (never `.` or `..`).
public struct DirectoryEntry<Node: Hashable & Sendable>: Sendable {
    public let name: [UInt8]
    public let node: Node
    public let attributes: NodeAttributes
    /// READDIRPLUS gives this entry's name and type only (no inode, no attributes): its attributes
    /// cost work a listing should not do (a blobless mirror's sizes come from the origin); a later
    /// LOOKUP asks for them. Only `attributes.kind` is meaningful then.
    public var withoutAttributes = false
    public init(name: [UInt8], node: Node, attributes: NodeAttributes, withoutAttributes: Bool = false) {
        self.name = name
        self.node = node
        self.attributes = attributes
        self.withoutAttributes = withoutAttributes
    }
}

/// What `open` returns: the filesystem's handle plus page-cache flags for the kernel.
public struct OpenedFile<Handle: Sendable>: Sendable {
    public let handle: Handle
    public var keepCache: Bool   // fi->keep_cache: page cache survives reopen (immutable content)
    public var directIO: Bool    // fi->direct_io: for virtual files whose size is not known up front
    public init(handle: Handle, keepCache: Bool = false, directIO: Bool = false) {
        self.handle = handle
        self.keepCache = keepCache
        self.directIO = directIO
    }
}

/// Options of an opened directory. `cacheEntries` sets fi->cache_readdir and fi->keep_cache: the kernel
/// keeps the listing (use it for immutable directories only).
public struct OpenedDirectory: Sendable {
    public var cacheEntries: Bool
    public init(cacheEntries: Bool = false) { self.cacheEntries = cacheEntries }
}

/// What a filesystem served by FuseMount provides. Every method may be called from many threads at once.
/// Node is the identity of a file (e.g. (repository, commit, path)); the server maps it to inode numbers:
/// equal Nodes get the same inode number for as long as the kernel remembers it.
public protocol FuseFileSystem: Sendable {
    associatedtype Node: Hashable & Sendable
    associatedtype Handle: Sendable
    var rootNode: Node { get }
    func attributes(of node: Node) throws(Errno) -> NodeAttributes
    func lookup(_ name: [UInt8], in parent: Node) throws(Errno) -> (node: Node, attributes: NodeAttributes)
    /// The listing without `.` and `..`; taken once per opendir, so offsets stay stable.
    func readDirectory(_ node: Node) throws(Errno) -> (entries: [DirectoryEntry<Node>], options: OpenedDirectory)
    func readLink(_ node: Node) throws(Errno) -> [UInt8]
    func open(_ node: Node) throws(Errno) -> OpenedFile<Handle>
    /// Bytes written into buffer; 0 = end of file. The server calls again until the request is full or 0.
    func read(_ handle: Handle, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int
    /// Called exactly once per handle returned by a successful `open` (also when the open reply could
    /// not be delivered because the caller was interrupted). Handles still open when the connection ends
    /// (the kernel drops their RELEASE) are released by serve() after its workers joined.
    func release(_ handle: Handle)
    /// Every extended attribute of `node`; names are in the user namespace (`user.`): the server answers
    /// a GETXATTR of any other name EOPNOTSUPP without asking.
    func extendedAttributes(of node: Node) throws(Errno) -> [(name: String, value: [UInt8])]
    func statistics() -> (totalBytes: UInt64, files: UInt64)   // for statfs; may be rough

    /// True to serve without OPEN/RELEASE and OPENDIR/RELEASEDIR (FUSE "no open support"): the server
    /// answers both with ENOSYS, after which the kernel sends none of them for the whole connection,
    /// keeps every file's page cache across opens (FOPEN_KEEP_CACHE) and caches every directory listing
    /// (FOPEN_CACHE_DIR). Reads then arrive without a handle and go to `read(node:offset:into:)`, so file
    /// content must be immutable per node; listings are taken with `readDirectory` at offset 0, and a
    /// directory whose listing can change must change its mtime with it (auto_inval_data is turned on,
    /// so the kernel re-checks the mtime once the attribute lifetime ran out). Default false.
    var servesWithoutOpen: Bool { get }
    /// Reads a file by node when `servesWithoutOpen` is true. Same contract as `read(_:offset:into:)`.
    func read(node: Node, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int
}

extension FuseFileSystem {
    public var servesWithoutOpen: Bool { false }
    public func read(node: Node, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        throw .notSupported
    }
}

/// A filesystem without handles (`Handle == Never`) serves without OPEN: it writes no `open`, handle
/// `read` or `release` (never called), and must set `servesWithoutOpen` and read by node.
extension FuseFileSystem where Handle == Never {
    public func open(_ node: Node) throws(Errno) -> OpenedFile<Never> { throw .notSupported }
    public func read(_ handle: Never, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {}
    public func release(_ handle: Never) {}
}

/// How a FuseMount mounts and serves.
public struct FuseMountOptions: Sendable {
    public var threads: Int = 32          // worker threads (a request waiting for a load holds one)
    public var maxBackground: Int = 64    // conn->max_background (kernel default 12 limits parallel reads)
    public var fsName: String = "gitfs"
    public var debug: Bool = false        // log every request (swift-log, level debug)
    public var allowOther: Bool = false   // allow_other: other users may use the mount (needs root or user_allow_other)
    /// After stop(): how long (seconds) to keep answering requests of readers that still hold open files
    /// on the lazily unmounted filesystem before the connection is closed (they then get an error).
    public var shutdownGrace: Double = 3
    /// Kernel read-ahead for the mount (written to /sys/class/bdi/<dev>/read_ahead_kb once INIT is
    /// answered); 0 leaves the kernel default (128 KiB). Best effort.
    public var readAheadBytes: Int = 1 << 20
    public init() {}
}

/// Request counters of a mount, updated atomically on every request; read from any thread.
/// `requests`: requests answered (FORGET, which gets no reply, included); `errors`: error replies that
/// report a failure (EIO, EROFS, ESTALE...), never ENOENT nor the protocol answers ENOSYS (no open
/// support), ENODATA (no such attribute) and ERANGE (buffer size probe); `notFound`: ENOENT replies
/// (a name or node that does not exist: ordinary, e.g. every shell's PATH search); `inflight`: being
/// served now. `pushedBytes`: file content put into the kernel's page cache ahead of reads
/// (storeInKernelCache).
public struct ServerCounters: Sendable {
    public var requests, reads, bytesRead, errors, notFound, inflight, pushedBytes: Int
    public init(requests: Int = 0, pushedBytes: Int = 0, reads: Int = 0, bytesRead: Int = 0, errors: Int = 0,
                notFound: Int = 0, inflight: Int = 0) {
        self.requests = requests
        self.pushedBytes = pushedBytes
        self.reads = reads
        self.bytesRead = bytesRead
        self.errors = errors
        self.notFound = notFound
        self.inflight = inflight
    }
}

/// Why a mount could not be made (or unmounted); `description` is one line saying what went wrong and
/// what to do.
public struct FuseError: Error, CustomStringConvertible, Sendable {
    public enum Reason: Sendable, Equatable {
        case mountpointMissing, notADirectory, notEmpty, alreadyMounted, deadMount, noFuseDevice
        case sessionCreationFailed, mountFailed, unmountFailed, system
    }
    public let reason: Reason
    public let mountpoint: String
    public let detail: String

    public init(_ reason: Reason, mountpoint: String, detail: String = "") {
        self.reason = reason
        self.mountpoint = mountpoint
        self.detail = detail
    }

    public var description: String {
        let extra = detail.isEmpty ? "" : " (\(detail))"
        switch reason {
        case .mountpointMissing:
            return "mountpoint \(mountpoint) does not exist: create it with mkdir first"
        case .notADirectory:
            return "mountpoint \(mountpoint) is not a directory: mount on an empty directory"
        case .notEmpty:
            return "mountpoint \(mountpoint) is not empty: mount on an empty directory"
        case .alreadyMounted:
            return "\(mountpoint) is already a mount point: unmount it first"
        case .deadMount:
            return "\(mountpoint) is a dead FUSE mount (transport endpoint is not connected): unmount it first"
        case .noFuseDevice:
            return "cannot use /dev/fuse\(extra): load the fuse module (modprobe fuse) or give the container --device /dev/fuse"
        case .sessionCreationFailed:
            return "fuse_session_new failed for \(mountpoint)\(extra): see the messages above"
        case .mountFailed:
            return "fuse_session_mount failed for \(mountpoint)\(extra): see the messages above; 'gitfs doctor' checks /dev/fuse, fusermount3 and allow_other"
        case .unmountFailed:
            return "cannot unmount \(mountpoint)\(extra): close programs using it, or run umount -l \(mountpoint) as root"
        case .system:
            return "cannot mount on \(mountpoint)\(extra)"
        }
    }
}
