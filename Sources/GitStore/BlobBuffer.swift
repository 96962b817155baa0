// BlobBuffer: the inflated bytes of one blob, owned and freed exactly once.
import CGit2
import Glibc
import Synchronization

/// The inflated bytes of one blob, in libgit2's buffer (`git_odb_read`) or in a buffer the pack reader
/// filled (`allocate`: `malloc`, or `mmap` for big ones); freed exactly once (`git_odb_object_free`,
/// `free` or `munmap`) when the last reference goes. Immutable; thread-safe.
public final class BlobBuffer: @unchecked Sendable {
    private let object: OpaquePointer?
    private let base: UnsafeRawPointer?
    /// Size in bytes.
    public let count: Int
    /// True when the reader already checked these bytes against the object id: gitfs's pack reader
    /// matched the entry's CRC-32 from the pack index (which `git index-pack` wrote after hashing the
    /// object) and the stream's Adler-32. The content cache may then store them without hashing again.
    /// False for libgit2 reads, which gitfs runs with hash verification off.
    public let isVerified: Bool

    init(object: OpaquePointer) {
        self.object = object
        self.base = git_odb_object_data(object)
        self.count = git_odb_object_size(object)
        self.isVerified = false
    }

    /// Takes ownership of `bytes`, `count` bytes long, from `allocate(count)`.
    init(owning bytes: UnsafeMutableRawPointer, count: Int, verified: Bool) {
        self.object = nil
        self.base = UnsafeRawPointer(bytes)
        self.count = count
        self.isVerified = verified
    }

    /// Buffers of at least this size are mapped on their own (`mmap`), so their memory goes back to the
    /// system when they are freed. Transparent huge pages were measured and left out: on this VM they
    /// made single big reads faster (cold 200 MB: 230 vs 298 ms) but reading many files slower and
    /// erratic (cold read of every file: 1117–1851 vs 1166–1350 ms), from clearing fresh 2 MiB pages.
    static let mappedThreshold = 4 << 20

    /// Buffers of at least this size are file-backed when a scratch folder is set (`useScratchFolder`):
    /// a nameless file there (created and unlinked at once), mapped shared, so the kernel can write the bytes out under
    /// pressure instead of holding them as anonymous memory. Used for deltified blobs rebuilt whole and
    /// their big bases; whole blobs this big are streamed instead (`BlobStream`).
    public static let fileBackedThreshold = 8 << 20

    private static let scratchFolder = Mutex<String?>(nil)

    /// Where big buffers are file-backed from now on (a mount or command sets its content cache's
    /// `tmp/`); nil: anonymous memory. Thread-safe; process-wide.
    public static func useScratchFolder(_ path: String?) { scratchFolder.withLock { $0 = path } }

    /// A buffer of `count` bytes for `init(owning:count:)`: `malloc`, or for big ones an anonymous
    /// `mmap` (see `mappedThreshold`), or from `fileBackedThreshold` on a shared mapping of a nameless
    /// scratch file (anonymous when none can be made). Nil when memory is short.
    static func allocate(_ count: Int) -> UnsafeMutableRawPointer? {
        guard count >= mappedThreshold else { return malloc(max(count, 1)) }
        if count >= fileBackedThreshold, let p = fileBacked(count) { return p }
        guard let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return nil }
        return p
    }

    /// `count` bytes of a new nameless file in the scratch folder (`mkstemps`, `unlink`, `ftruncate`), mapped
    /// `MAP_SHARED`; the file goes with the mapping (`munmap`). Nil without a folder or on any failure.
    private static func fileBacked(_ count: Int) -> UnsafeMutableRawPointer? {
        guard let folder = scratchFolder.withLock({ $0 }) else { return nil }
        var template = Array((folder + "/scratch-XXXXXX.tmp").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, 4) }
        guard fd >= 0 else { return nil }
        unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })   // nameless from here on
        defer { close(fd) }
        guard ftruncate(fd, off_t(count)) == 0,
              let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else { return nil }
        return p
    }

    /// Frees what `allocate(count)` returned.
    static func deallocate(_ p: UnsafeMutableRawPointer, _ count: Int) {
        if count >= mappedThreshold {
            munmap(p, count)
        } else {
            free(p)
        }
    }

    /// The bytes, valid during `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    deinit {
        if let object {
            git_odb_object_free(object)
        } else if let base {
            BlobBuffer.deallocate(UnsafeMutableRawPointer(mutating: base), count)
        }
    }
}
