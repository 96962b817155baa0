// BlobBuffer: the inflated bytes of one blob, owned and freed exactly once.
import Basics
import CGit2
import Glibc
import Synchronization

/// The inflated bytes of one blob, in libgit2's buffer (`git_odb_read`) or in a buffer the pack reader
/// filled (`allocate`: `malloc`, or `mmap` for big ones); freed exactly once (`git_odb_object_free`,
/// `free` or `munmap`) when the last reference goes. Anonymous memory is charged to the process's
/// `MemoryBudget` while the buffer lives (file-backed buffers are not). Immutable; thread-safe.
public final class BlobBuffer: @unchecked Sendable {
    private let object: OpaquePointer?
    private let base: UnsafeRawPointer?
    /// Bytes charged to the budget (credited in deinit).
    private let charged: Int
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
        // Already in memory (libgit2 inflated it): charged whatever the room, for as long as it lives.
        self.charged = count
        MemoryBudget.process.overdraw(count)
    }

    /// Takes ownership of an allocation from `allocate(_:)` (and of its charge).
    init(owning a: Allocation, verified: Bool) {
        self.object = nil
        self.base = UnsafeRawPointer(a.pointer)
        self.count = a.count
        self.charged = a.charged
        self.isVerified = verified
    }

    /// True when the bytes are in file-backed memory (a nameless scratch file mapped shared), which the
    /// kernel can write out: not anonymous memory, not charged to the budget.
    public var isFileBacked: Bool { object == nil && charged == 0 && count >= BlobBuffer.budgetFallbackThreshold }

    /// Memory from `allocate(_:)`: where it is, its size, and what it charged to the process's budget
    /// (0 when file-backed). Give it back with `deallocate(_:)` exactly once, or hand it to a `BlobBuffer`.
    struct Allocation {
        let pointer: UnsafeMutableRawPointer
        let count: Int
        let charged: Int

        /// True for a shared mapping of a scratch file (only those are not charged).
        var isFileBacked: Bool { charged == 0 && count >= BlobBuffer.budgetFallbackThreshold }

        /// Drops the pages of `[from, from + length)` from this process when file-backed (they stay in
        /// the scratch file, read back on the next access), so inflating a big blob does not grow the
        /// resident set; nothing for anonymous memory (it would lose the bytes). `from` page-aligned.
        func dropResidentPages(from: Int = 0, length: Int? = nil) {
            guard isFileBacked else { return }
            let n = min(length ?? count, count - from)
            guard n > 0 else { return }
            _ = madvise(pointer + from, (n + 4095) / 4096 * 4096, MADV_DONTNEED)
        }
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

    /// Buffers of at least this size go to file-backed memory when the budget has no room for them
    /// (smaller ones are charged anyway: a reader needs them at once, and they are short-lived).
    static let budgetFallbackThreshold = 1 << 20

    /// A buffer of `count` bytes for `init(owning:)`: `malloc`, or for big ones an anonymous `mmap` (see
    /// `mappedThreshold`), charged to the process's budget; from `fileBackedThreshold` on — or from
    /// `budgetFallbackThreshold` on when the budget has no room — a shared mapping of a nameless scratch
    /// file, not charged (anonymous and charged when none can be made). Nil when memory is short.
    static func allocate(_ count: Int) -> Allocation? {
        let budget = MemoryBudget.process
        if count >= fileBackedThreshold || (count >= budgetFallbackThreshold && !budget.tryCharge(count)) {
            if let p = fileBacked(count) {
                if count < fileBackedThreshold { budget.noteFallback() }
                return Allocation(pointer: p, count: count, charged: 0)
            }
            budget.overdraw(count)
        } else if count < budgetFallbackThreshold {
            budget.overdraw(count)
        }
        let p: UnsafeMutableRawPointer?
        if count < mappedThreshold {
            p = malloc(max(count, 1))
        } else if let m = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED {
            p = m
        } else {
            p = nil
        }
        guard let p else {
            budget.credit(count)
            return nil
        }
        return Allocation(pointer: p, count: count, charged: count)
    }

    /// `count` bytes of a new nameless file in the scratch folder (`mkstemps`, `unlink`, `ftruncate`), mapped
    /// `MAP_SHARED`; the file goes with the mapping (`munmap`). Without a scratch folder, or when it
    /// cannot be written (a read-only cache), in `$TMPDIR` (or /tmp). Nil on any failure.
    private static func fileBacked(_ count: Int) -> UnsafeMutableRawPointer? {
        if let folder = scratchFolder.withLock({ $0 }), let p = fileBacked(count, in: folder) { return p }
        let tmp = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return fileBacked(count, in: tmp)
    }

    private static func fileBacked(_ count: Int, in folder: String) -> UnsafeMutableRawPointer? {
        var template = Array((folder + "/gitfs-scratch-XXXXXX.tmp").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, 4) }
        guard fd >= 0 else { return nil }
        unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })   // nameless from here on
        defer { close(fd) }
        guard ftruncate(fd, off_t(count)) == 0,
              let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else { return nil }
        return p
    }

    /// Frees what `allocate(_:)` returned, crediting its charge.
    static func deallocate(_ a: Allocation) {
        if a.count >= mappedThreshold {
            munmap(a.pointer, a.count)
        } else {
            free(a.pointer)
        }
        MemoryBudget.process.credit(a.charged)
    }

    /// The bytes, valid during `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    deinit {
        if let object {
            git_odb_object_free(object)
            MemoryBudget.process.credit(charged)
        } else if let base {
            BlobBuffer.deallocate(Allocation(pointer: UnsafeMutableRawPointer(mutating: base), count: count, charged: charged))
        }
    }
}
