import Basics
import CFuse
import Synchronization

/// Directory listings of a server that runs without OPENDIR: a listing is taken at offset 0 and reused
/// for the later offsets of the same pass, so offsets stay stable. Bounded per shard (16 shards) by 64
/// listings and `maxEntriesPerShard` entries, except that the listing just taken is always kept for
/// its pass: a full shard is emptied first. (Counted in entries, not bytes: an entry holds its name,
/// node and attributes, a few hundred bytes; a 200,000-entry listing stayed until 64 others came.)
/// Thread-safe: sharded by inode, one lock per shard, held only to look up or insert; a continuation
/// that raced another one to make the missing listing takes the one that was stored first, so two
/// continuations never walk different snapshots.
final class ListingTable<Node: Hashable & Sendable>: Sendable {
    private struct Listings {
        var byIno: [fuse_ino_t: DirectoryHandle<Node>] = [:]
        var entries = 0
    }
    private final class Shard: Sendable {
        let table = Mutex(Listings())
    }
    private let shards: [Shard] = (0..<16).map { _ in Shard() }
    static var maxListingsPerShard: Int { 64 }
    static var maxEntriesPerShard: Int { 16_384 }

    func listing(of ino: fuse_ino_t, fresh: Bool,
                 make: () throws(Errno) -> DirectoryHandle<Node>) throws(Errno) -> DirectoryHandle<Node> {
        let shard = shards[Int(truncatingIfNeeded: (ino ^ ino >> 6) & 15)]
        if !fresh, let known = shard.table.withLock({ $0.byIno[ino] }) { return known }
        let made = try make()
        return shard.table.withLock { t -> DirectoryHandle<Node> in
            if !fresh, let first = t.byIno[ino] { return first }
            if let old = t.byIno.removeValue(forKey: ino) { t.entries -= old.entries.count }
            if t.byIno.count >= Self.maxListingsPerShard || t.entries + made.entries.count > Self.maxEntriesPerShard {
                t.byIno.removeAll(keepingCapacity: true)
                t.entries = 0
            }
            t.byIno[ino] = made
            t.entries += made.entries.count
            return made
        }
    }
}
