import Basics
import Foundation

/// The type of a git object.
public enum ObjectKind: Sendable, Hashable {
    case blob, tree, commit, tag

    /// The name git uses ("blob", "tree", "commit", "tag").
    public var name: String {
        switch self {
        case .blob: return "blob"
        case .tree: return "tree"
        case .commit: return "commit"
        case .tag: return "tag"
        }
    }
}

/// What a tree entry is, derived from its git file mode.
public enum EntryKind: Sendable, Hashable {
    case file, executable, symlink, directory, submodule
}

/// One entry of a git tree, exactly as stored (raw name bytes, raw mode). A value; thread-safe.
public struct TreeEntry: Sendable, Hashable {
    /// Raw name bytes exactly as in the tree (never contains `/` or NUL in a well-formed tree).
    public let name: [UInt8]
    /// The git file mode as stored: 0o100644, 0o100755, 0o120000, 0o040000, 0o160000.
    public let mode: UInt32
    public let oid: ObjectID

    public init(name: [UInt8], mode: UInt32, oid: ObjectID) {
        self.name = name
        self.mode = mode
        self.oid = oid
    }

    /// The kind implied by `mode` (anything unusual with the regular-file type counts as a file,
    /// executable when the owner-execute bit is set).
    public var kind: EntryKind {
        switch mode & 0o170000 {
        case 0o040000: return .directory
        case 0o120000: return .symlink
        case 0o160000: return .submodule
        default: return mode & 0o100 != 0 ? .executable : .file
        }
    }

    /// The object type the entry points at: tree for directories, commit for submodules, blob otherwise.
    public var objectKind: ObjectKind {
        switch kind {
        case .directory: return .tree
        case .submodule: return .commit
        default: return .blob
        }
    }

    /// Lossy display form of `name` (invalid UTF-8 replaced).
    public var nameString: String { String(decoding: name, as: UTF8.self) }
}

/// The parts of a commit the layers above need.
public struct CommitInfo: Sendable, Hashable {
    public let id: ObjectID
    public let tree: ObjectID
    /// Committer time, seconds since the epoch.
    public let committerTime: Int64
    public let parents: [ObjectID]

    public init(id: ObjectID, tree: ObjectID, committerTime: Int64, parents: [ObjectID]) {
        self.id = id
        self.tree = tree
        self.committerTime = committerTime
        self.parents = parents
    }
}

/// A branch or tag: short name (without `refs/heads/` or `refs/tags/`) and the commit it points at
/// (annotated tags peeled to their commit).
public struct Ref: Sendable, Hashable {
    public let name: String
    public let target: ObjectID

    public init(name: String, target: ObjectID) {
        self.name = name
        self.target = target
    }
}

/// Branches and tags of a mirror at one moment, each sorted by name. `defaultBranch` is the branch HEAD
/// names, when that branch exists. `damage`, when set, says why some refs' objects cannot be read
/// (those refs are listed with their direct targets).
public struct RefSnapshot: Sendable, Hashable {
    public let branches: [Ref]
    public let tags: [Ref]
    public let defaultBranch: String?
    public let damage: String?

    public init(branches: [Ref], tags: [Ref], defaultBranch: String?, damage: String? = nil) {
        self.branches = branches
        self.tags = tags
        self.defaultBranch = defaultBranch
        self.damage = damage
    }
}

/// One ref changed by a fetch: full ref name, old target (nil = created), new target (nil = deleted).
/// Targets are the refs' direct targets (an annotated tag's tag object, not peeled).
public struct RefChange: Sendable, Hashable, Codable {
    public let ref: String
    public let old: ObjectID?
    public let new: ObjectID?

    public init(ref: String, old: ObjectID?, new: ObjectID?) {
        self.ref = ref
        self.old = old
        self.new = new
    }

    /// `<old> <new> <ref>`, with 40 zeros for a missing side (the format of git's ref-update hooks).
    public var line: String {
        "\((old ?? .zero).hex) \((new ?? .zero).hex) \(ref)"
    }

    enum CodingKeys: String, CodingKey { case ref, old, new }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ref = try c.decode(String.self, forKey: .ref)
        old = try c.decodeIfPresent(String.self, forKey: .old).flatMap(ObjectID.init(hex:))
        new = try c.decodeIfPresent(String.self, forKey: .new).flatMap(ObjectID.init(hex:))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ref, forKey: .ref)
        try c.encodeIfPresent(old?.hex, forKey: .old)
        try c.encodeIfPresent(new?.hex, forKey: .new)
    }
}

/// Transfer progress of a clone (libgit2's `git_indexer_progress`).
public struct TransferProgress: Sendable, Hashable {
    public var totalObjects: Int
    public var indexedObjects: Int
    public var receivedObjects: Int
    public var localObjects: Int
    public var totalDeltas: Int
    public var indexedDeltas: Int
    public var receivedBytes: Int
}

/// What `gitfs list` shows about one mirror.
public struct MirrorInfo: Sendable, Hashable {
    public let name: String
    public let path: String
    public let url: String
    public let defaultBranch: String?
    public let branchCount: Int
    public let tagCount: Int
    /// Time of the last successful fetch (or of the clone); nil when unknown.
    public let lastFetch: Date?
    /// Bytes allocated on disk by the mirror directory (like `du`).
    public let sizeOnDisk: Int
    /// What is wrong with the mirror ("repository 'X': pack … is damaged (…)"): refs whose objects cannot be
    /// read, or packs that do not check out against their indexes (`PackDamage`); nil when neither.
    public let damage: String?
    /// Blobless mirrors: the partial-clone filter (`blob:none`, `blob:limit=N`); nil for a full mirror.
    public var filter: String? = nil
    /// Blobless mirrors: blobs fetched from the origin on demand and held in the mirror (objects of its
    /// fetched-blob packs, `FetchedPack`); 0 for a full mirror.
    public var fetchedBlobs = 0
}

/// The gitfs home: `<home>/repos/<name>.git` bare mirrors and `<home>/cache`. A value; thread-safe.
public struct Home: Sendable, Hashable {
    public let path: String

    public init(path: String) { self.path = path }

    public var reposPath: String { path + "/repos" }
    public var cachePath: String { path + "/cache" }
    public func mirrorPath(_ name: String) -> String { reposPath + "/" + name + ".git" }
}
