import Basics
/// An error of the content cache: a kind plus one line saying what went wrong and what to do.
/// A value type; safe to share between threads.
public struct CacheError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is.
    public enum Kind: Sendable, Equatable {
        /// An entry or cache file is damaged, truncated or foreign.
        case corrupt
        /// The disk holding the cache is full (ENOSPC/EDQUOT).
        case noSpace
        /// The cache refuses writes (a read-only file system or folder: EROFS, EACCES, EPERM).
        case readOnly
        /// Any other system call failure.
        case io
        /// The cache directory has a VERSION this build does not understand.
        case unsupportedVersion
        /// Content offered to `store` does not hash to its key.
        case verifyFailed
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public static func corrupt(_ m: String) -> CacheError { CacheError(.corrupt, m) }
    public static func io(_ m: String) -> CacheError { CacheError(.io, m) }
}
