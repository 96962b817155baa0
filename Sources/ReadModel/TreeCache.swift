import Basics
import GitStore
import Synchronization

/// The parsed-tree cache: bounded in bytes (`maxBytes` in all), and able to keep a tree of any size
/// up to half the budget. Ordinary trees live in a sharded `BoundedCache` (half the budget); a tree
/// too big for one of its generations (a directory of tens of thousands of entries) would be dropped
/// there and parsed again on every LOOKUP of one of its names (an `ls -l` of 200,000 entries parsed
/// the whole tree per name), so it goes to a short least-recently-used list of its own (the other
/// half), where the most recently used big trees stay while they fit. With a `MemoryBudget` every tree
/// kept is charged to it (leaving its `headroom`) and credited when dropped; a big tree the budget cannot
/// take makes the list drop its own least recently used trees first, and is declined if it still does not fit.
/// Thread-safe: ordinary trees take only their shard's lock; the big-tree list has one lock, held
/// only to scan its few entries (at most `maxBytes / 2` over the smallest big tree's size) or insert.
public final class TreeCache: Sendable {
    private struct Big {
        var entries: [(id: ObjectID, listing: TreeListing, bytes: Int)] = []   // least recent first
        var bytes = 0
    }

    private let small: BoundedCache<ObjectID, TreeListing>
    /// Trees larger than this go to the big-tree list (the small cache would not keep them).
    public let bigThreshold: Int
    private let bigBudget: Int
    private let big = Mutex(Big())
    private let budget: MemoryBudget?

    public init(maxBytes: Int, budget: MemoryBudget? = nil) {
        let half = max(1, maxBytes / 2)
        small = BoundedCache(maxBytes: half, shardCount: 16, budget: budget)
        self.budget = budget
        bigThreshold = max(1, half / 16 / 2)   // BoundedCache's share of one generation
        bigBudget = half
    }

    public func value(for id: ObjectID) -> TreeListing? {
        if let t = small.value(for: id) { return t }
        return big.withLock { b -> TreeListing? in
            guard let i = b.entries.lastIndex(where: { $0.id == id }) else { return nil }
            let hit = b.entries.remove(at: i)
            b.entries.append(hit)
            return hit.listing
        }
    }

    /// Stores a parsed tree with its approximate size; a tree bigger than half the budget is not kept.
    public func set(_ listing: TreeListing, for id: ObjectID, bytes: Int) {
        guard bytes > bigThreshold else {
            small.set(listing, for: id, bytes: bytes)
            return
        }
        guard bytes <= bigBudget else { return }
        big.withLock { b in
            if let i = b.entries.firstIndex(where: { $0.id == id }) { drop(&b, at: i) }
            while b.bytes + bytes > bigBudget, !b.entries.isEmpty { drop(&b, at: 0) }
            if let budget {
                while !budget.tryCharge(bytes, keepingFree: budget.headroom) {
                    guard !b.entries.isEmpty else { return budget.noteDecline() }
                    drop(&b, at: 0)
                }
            }
            b.entries.append((id, listing, bytes))
            b.bytes += bytes
        }
    }

    /// Removes a big tree and credits its bytes. Called with the list's lock held.
    private func drop(_ b: inout Big, at i: Int) {
        let gone = b.entries.remove(at: i)
        b.bytes -= gone.bytes
        budget?.credit(gone.bytes)
    }

    /// Bytes held (for tests and stats).
    public var bytes: Int { small.bytes + big.withLock { $0.bytes } }
}
