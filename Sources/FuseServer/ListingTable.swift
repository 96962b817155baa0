import Basics
import CFuse
import Synchronization

/// Directory listings of a server that runs without OPENDIR: a listing is taken at offset 0 and reused
/// for the later offsets of the same pass, so offsets stay stable. Bounded (64 listings per shard, 16
/// shards; a full shard is emptied). Thread-safe: sharded by inode, one lock per shard, held only to
/// look up or insert; a continuation that raced another one to make the missing listing takes the one
/// that was stored first, so two continuations never walk different snapshots.
final class ListingTable<Node: Hashable & Sendable>: Sendable {
    private final class Shard: Sendable {
        let table = Mutex<[fuse_ino_t: DirectoryHandle<Node>]>([:])
    }
    private let shards: [Shard] = (0..<16).map { _ in Shard() }

    func listing(of ino: fuse_ino_t, fresh: Bool,
                 make: () throws(Errno) -> DirectoryHandle<Node>) throws(Errno) -> DirectoryHandle<Node> {
        let shard = shards[Int(truncatingIfNeeded: (ino ^ ino >> 6) & 15)]
        if !fresh, let known = shard.table.withLock({ $0[ino] }) { return known }
        let made = try make()
        return shard.table.withLock { t -> DirectoryHandle<Node> in
            if !fresh, let first = t[ino] { return first }
            if t.count >= 64 { t.removeAll(keepingCapacity: true) }
            t[ino] = made
            return made
        }
    }
}
