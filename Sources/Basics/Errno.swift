#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number (ENOENT, EIO, ENOSPC...): what the system calls of this module throw and what a
/// filesystem operation fails with. A plain value: safe to share between threads.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`, right after a failed call.
    public static var current: Errno { Errno(errno) }

    public static let noEntry = Errno(ENOENT)
    public static let io = Errno(EIO)
    public static let readOnlyFileSystem = Errno(EROFS)
    public static let notDirectory = Errno(ENOTDIR)
    public static let isDirectory = Errno(EISDIR)
    public static let invalid = Errno(EINVAL)
    public static let noData = Errno(ENODATA)
    public static let notSupported = Errno(ENOTSUP)
    public static let range = Errno(ERANGE)
    public static let badFileDescriptor = Errno(EBADF)
    public static let interrupted = Errno(EINTR)
    public static let exists = Errno(EEXIST)
    public static let noSpace = Errno(ENOSPC)
    public static let quotaExceeded = Errno(EDQUOT)
    public static let permissionDenied = Errno(EACCES)
    public static let notPermitted = Errno(EPERM)
    public static let wouldBlock = Errno(EWOULDBLOCK)

    /// True for a full disk or quota (ENOSPC, EDQUOT).
    public var isNoSpace: Bool { self == .noSpace || self == .quotaExceeded }

    /// True when the file system or file refuses writes (EROFS, EACCES, EPERM).
    public var isWriteRefused: Bool { self == .readOnlyFileSystem || self == .permissionDenied || self == .notPermitted }

    /// The `strerror` text alone, e.g. "No such file or directory".
    public var message: String { String(cString: strerror(rawValue)) }

    /// `strerror` text and number, e.g. "No such file or directory (errno 2)".
    public var description: String { "\(message) (errno \(rawValue))" }
}

/// Runs a system call returning -1 on failure until it does not fail with EINTR; the result, or the
/// `errno` it failed with.
@inline(__always)
func retryingEINTR<T: SignedInteger>(_ call: () -> T) throws(Errno) -> T {
    while true {
        let r = call()
        if r >= 0 { return r }
        let e = Errno.current
        if e != .interrupted { throw e }
    }
}
