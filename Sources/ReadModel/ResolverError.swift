import Basics
import ContentCache
import GitStore

/// Errors of the read model, typed end to end. A value; thread-safe.
///
/// Only `notFound` (and `git` errors of kind `.notFound`: a repository, revision or commit id that does
/// not exist) mean "no such name" (ENOENT); `notADirectory` is ENOTDIR. Everything else is a failure
/// underneath — a damaged pack, an unreadable cache, an object a tree names that no blob source could
/// give — and reaches a reader as an I/O error (EIO), never as "not found".
public enum ResolverError: Error, CustomStringConvertible, Sendable {
    case notFound(String)
    case notADirectory(String)
    case git(GitStoreError)
    case cache(CacheError)
    /// An object that a commit or tree names could not be read from any source (missing from the mirror,
    /// or every source failed). The chain logged it once, with the object and repository.
    case unavailable(object: ObjectID, repository: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let what): return "\(what) not found"
        case .notADirectory(let what): return "\(what) is not a directory"
        case .git(let e): return e.description
        case .cache(let e): return e.description
        case .unavailable(let id, let repo, let reason):
            return "object \(id.hex) of repository '\(repo)' cannot be read: \(reason)"
        }
    }

    /// True when the error says a name does not exist (ENOENT), false for every failure (EIO, ENOTDIR).
    public var isNotFound: Bool {
        switch self {
        case .notFound: return true
        case .git(let e): return e.kind == .notFound
        case .notADirectory, .cache, .unavailable: return false
        }
    }

    /// True when the read model has logged this failure already (the layer above need not log it again).
    public var isLogged: Bool {
        if case .unavailable = self { return true }
        return false
    }
}

/// Counters of the read model, shared by every repository view; updated atomically.
public struct ResolverCounters: Sendable, Equatable {
    public var cacheHits = 0
    public var cacheMisses = 0
    public var blobLoads = 0
    public var singleflightJoins = 0
    /// Blobs loaded from the packs ahead of any reader (siblings of a file that missed the cache, content
    /// fed to the kernel's page cache); not included in `blobLoads`, which counts the loads readers asked for.
    public var speculativeLoads = 0
    /// Trees parsed ahead of any listing by the background walks (listings read ahead).
    public var treesReadAhead = 0
    /// Per blob source, in chain order: how often it was asked, had the blob, and failed.
    public var sources: [BlobSourceCount] = []
}

/// How one blob source of the chain fared. A value.
public struct BlobSourceCount: Sendable, Equatable {
    public var name: String
    /// Asks this source answered with the content (for a loader: loads).
    public var hits = 0
    /// Asks it answered "not here".
    public var misses = 0
    /// Asks that failed (the failure went to the caller as an I/O error).
    public var errors = 0
    /// Content loaded elsewhere that this source took as a fill.
    public var fills = 0

    public init(name: String, hits: Int = 0, misses: Int = 0, errors: Int = 0, fills: Int = 0) {
        self.name = name
        self.hits = hits
        self.misses = misses
        self.errors = errors
        self.fills = fills
    }
}
