import Basics
import Foundation
import GitStore

/// A refs snapshot indexed for the mount: exact-name lookups by dictionary and "is there a ref below
/// this prefix" by binary search over the sorted names, so `ls tags/` of thousands of tags stays linear.
/// Immutable, hence thread-safe.
public struct RefIndex: Sendable {
    public let snapshot: RefSnapshot
    /// When this set of refs was first seen (wall clock): the mtime of the directories that list refs,
    /// so a kernel that caches listings notices when they change.
    public let changedAt: timespec
    private let branchTargets: [String: ObjectID]
    private let tagTargets: [String: ObjectID]

    public init(_ snapshot: RefSnapshot, changedAt: timespec) {
        self.snapshot = snapshot
        self.changedAt = changedAt
        branchTargets = Dictionary(snapshot.branches.map { ($0.name, $0.target) }, uniquingKeysWith: { a, _ in a })
        tagTargets = Dictionary(snapshot.tags.map { ($0.name, $0.target) }, uniquingKeysWith: { a, _ in a })
    }

    public var defaultBranch: String? { snapshot.defaultBranch }

    /// Branches (`tags == false`) or tags, sorted by name bytes.
    public func list(tags: Bool) -> [Ref] { tags ? snapshot.tags : snapshot.branches }

    /// The commit a branch or tag names.
    public func target(of name: String, tags: Bool) -> ObjectID? {
        tags ? tagTargets[name] : branchTargets[name]
    }

    /// Whether some branch or tag name starts with `prefix` (which ends in "/").
    public func hasRefs(under prefix: String, tags: Bool) -> Bool {
        let refs = list(tags: tags)
        let key = Array(prefix.utf8)
        var lo = 0, hi = refs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if refs[mid].name.utf8.lexicographicallyPrecedes(key) { lo = mid + 1 } else { hi = mid }
        }
        return lo < refs.count && refs[lo].name.utf8.starts(with: key)
    }
}
