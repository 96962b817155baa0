import Basics
import CGit2
import Foundation

/// A failure of the git store, with a kind for programs and one line for people that says what went wrong
/// and what to do. A value; thread-safe.
public struct GitStoreError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What class of failure this is.
    public enum Kind: Sendable, Hashable {
        /// No such repository, revision, path or object.
        case notFound
        /// A repository name that is not allowed.
        case invalidName
        /// A repository of that name exists already.
        case exists
        /// The remote could not be reached or the transfer failed.
        case network
        /// An object or repository on disk is damaged or not what it should be.
        case corrupt
        /// A local file system operation failed.
        case io
        /// The object exists but has another type than the one asked for.
        case wrongType
        case other
    }

    public let kind: Kind
    public let message: String

    /// A password or secret in the message (a remote URL's `user:password@`, a signed query; git's and
    /// libgit2's messages quote URLs) is masked here, so it can reach no log, error line or stats.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = Credentials.redacted(message)
    }

    public var description: String { message }

    /// The message of libgit2's last error on this thread (`git_error_last`), or a fallback.
    static func lastGitMessage(_ rc: Int32) -> String {
        if let e = git_error_last(), let m = e.pointee.message {
            let s = String(cString: m).trimmingCharacters(in: .whitespacesAndNewlines)
            if !s.isEmpty { return s }
        }
        return "libgit2 error \(rc)"
    }
}

