import Basics

/// A tree as gitfs shows it everywhere (the mount, `gitfs ls`, `gitfs cat`, prefetch): the entries
/// whose names git would check out, indexed by name, and the others set aside as `hidden` (a name
/// git refuses — see `isCheckoutSafe` — or a second entry of one name). Immutable, hence thread-safe.
public struct TreeListing: Sendable {
    /// Shown entries, in git order.
    public let entries: [TreeEntry]
    /// Entries never shown, in git order.
    public let hidden: [TreeEntry]
    private let index: [[UInt8]: Int]

    public init(_ raw: [TreeEntry]) {
        var kept: [TreeEntry] = []
        kept.reserveCapacity(raw.count)
        var hidden: [TreeEntry] = []
        var index: [[UInt8]: Int] = [:]
        index.reserveCapacity(raw.count)
        for e in raw {
            guard Self.isCheckoutSafe(e.name), index[e.name] == nil else { hidden.append(e); continue }
            index[e.name] = kept.count
            kept.append(e)
        }
        self.entries = kept
        self.hidden = hidden
        self.index = index
    }

    /// The shown entry named `name`, if any.
    public func entry<Name: Collection<UInt8>>(named name: Name) -> TreeEntry? {
        index[Array(name)].map { entries[$0] }
    }

    /// Approximate memory held, for bounded caches.
    public var approximateBytes: Int {
        let perEntry = { (sum: Int, e: TreeEntry) in sum + e.name.count * 2 + 96 }
        return hidden.reduce(entries.reduce(64, perEntry), perEntry)
    }

    /// The longest name Linux can hold (NAME_MAX; what the mount's statfs reports as namemax).
    public static let maxNameBytes = 255

    /// False for names git would never check out or Linux cannot hold: empty, `.`, `..`, `.git` in any
    /// letter case, containing `/` or NUL, or longer than `maxNameBytes`.
    public static func isCheckoutSafe(_ name: [UInt8]) -> Bool {
        if name.isEmpty || name.count > maxNameBytes || name == [0x2E] || name == [0x2E, 0x2E] { return false }
        if name.contains(0x2F) || name.contains(0) { return false }
        if name.count == 4, name[0] == 0x2E, (name[1] | 0x20) == 0x67, (name[2] | 0x20) == 0x69, (name[3] | 0x20) == 0x74 {
            return false
        }
        return true
    }
}

/// The one path walk of gitfs: "a/b/c" (empty components ignored) from a root tree, one shown name
/// per step, through whatever supplies listings (the read model's cached trees, or a repository).
public enum TreeWalk {
    /// Where a path leads.
    public enum Outcome: Sendable, Equatable {
        case found(TreeEntry)
        /// Some component is not a shown name of its directory.
        case missing
        /// A component before the last is not a directory.
        case notADirectory
    }

    /// Walks `path` from the tree `root`; "" gives the root as an entry with mode 0o040000 and no name.
    public static func walk<Failure: Error>(root: ObjectID, path: some StringProtocol,
                                            listing: (ObjectID) throws(Failure) -> TreeListing) throws(Failure) -> Outcome {
        var current = TreeEntry(name: [], mode: 0o040000, oid: root)
        for component in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            guard current.kind == .directory else { return .notADirectory }
            guard let next = try listing(current.oid).entry(named: component) else { return .missing }
            current = next
        }
        return .found(current)
    }
}
