import Synchronization

/// Maps node identities to FUSE inode numbers and back, with FUSE lookup counts.
///
/// Guarantees: find-or-create (`retain`) is one atomic step under the lock of the node's shard, so
/// concurrent lookups of one node always get one inode number; an inode number is never reused for a
/// different node (numbers come from a per-shard counter that only grows); an entry is removed when the
/// kernel's lookup count drops to zero (FORGET), so memory is bounded by what the kernel remembers.
/// The root node is inode FUSE_ROOT_ID (1), not counted, never forgotten.
/// Thread-safety: all methods may be called from any thread; there is no global lock — an inode number
/// carries its shard in its low bits, a node picks its shard from its hash.
final class InodeTable<Node: Hashable & Sendable>: Sendable {
    static var shardBits: UInt64 { 6 }
    static var shardCount: Int { 1 << Int(shardBits) }
    static var rootIno: UInt64 { 1 }

    /// A node with its hash computed once (a node's hash covers its whole path): picks the shard and
    /// keys the shard's maps without hashing the node again.
    struct HashedNode: Hashable {
        let node: Node
        let hash: Int
        init(_ node: Node) {
            self.node = node
            self.hash = node.hashValue
        }
        static func == (a: HashedNode, b: HashedNode) -> Bool { a.hash == b.hash && a.node == b.node }
        func hash(into h: inout Hasher) { h.combine(hash) }
    }

    struct Shard: ~Copyable {
        var byNode: [HashedNode: (ino: UInt64, lookups: UInt64)] = [:]
        var byIno: [UInt64: HashedNode] = [:]
        var nextSequence: UInt64 = 1   // ino = sequence << shardBits | shard, so always >= 64 (never 0 or 1)
        /// Numbers of nodes the kernel forgot lately (at most `recentLimit` per shard, oldest dropped
        /// first): a node looked up again soon gets its old number back, so `st_ino` stays stable when
        /// the kernel evicts and re-looks-up an inode. A number is only ever given to the node it was
        /// minted for.
        var recent: [HashedNode: UInt64] = [:]
        var recentOrder: [HashedNode] = []
    }

    static var recentLimit: Int { 256 }

    final class ShardBox: Sendable {
        let state = Mutex(Shard())
    }

    let root: Node
    private let shards: [ShardBox]

    init(root: Node) {
        self.root = root
        self.shards = (0..<Self.shardCount).map { _ in ShardBox() }
    }

    @inline(__always)
    private func shardIndex(of node: HashedNode) -> Int {
        Int(truncatingIfNeeded: UInt(bitPattern: node.hash) >> (UInt(UInt.bitWidth) - UInt(Self.shardBits)))
    }

    /// Find-or-create the inode of `node` and add `count` to its lookup count, in one atomic step.
    func retain(_ node: Node, count: UInt64 = 1) -> UInt64 {
        if node == root { return Self.rootIno }
        let node = HashedNode(node)
        let index = shardIndex(of: node)
        return shards[index].state.withLock { shard -> UInt64 in
            if let i = shard.byNode.index(forKey: node) {
                shard.byNode.values[i].lookups += count
                return shard.byNode.values[i].ino
            }
            let ino: UInt64
            if !shard.recent.isEmpty, let old = shard.recent.removeValue(forKey: node) {
                ino = old
            } else {
                ino = shard.nextSequence << Self.shardBits | UInt64(index)
                shard.nextSequence += 1
            }
            shard.byNode[node] = (ino, count)
            let previous = shard.byIno.updateValue(node, forKey: ino)
            precondition(previous == nil, "inode number \(ino) minted twice")
            return ino
        }
    }

    /// The inode of `node` if the kernel currently knows it, without changing any count.
    func existingIno(of node: Node) -> UInt64? {
        if node == root { return Self.rootIno }
        let node = HashedNode(node)
        return shards[shardIndex(of: node)].state.withLock { $0.byNode[node]?.ino }
    }

    /// The node of `ino`, or nil when the kernel forgot it (or never got it).
    func node(of ino: UInt64) -> Node? {
        if ino == Self.rootIno { return root }
        let index = Int(ino & UInt64(Self.shardCount - 1))
        return shards[index].state.withLock { $0.byIno[ino]?.node }
    }

    /// Subtract `count` from the lookup count of `ino` (FORGET); remove the entry at zero.
    func forget(_ ino: UInt64, count: UInt64) {
        if ino == Self.rootIno { return }
        let index = Int(ino & UInt64(Self.shardCount - 1))
        shards[index].state.withLock { shard in
            guard let node = shard.byIno[ino], let entry = shard.byNode[node] else { return }
            if entry.lookups > count {
                shard.byNode[node]!.lookups = entry.lookups - count
            } else {
                shard.byNode.removeValue(forKey: node)
                shard.byIno.removeValue(forKey: ino)
                if shard.recent.updateValue(ino, forKey: node) == nil {
                    shard.recentOrder.append(node)
                }
                if shard.recentOrder.count > Self.recentLimit {
                    // Drop the oldest remembered numbers (those re-used meanwhile are gone already).
                    for old in shard.recentOrder.prefix(Self.recentLimit / 2) where shard.byNode[old] == nil {
                        shard.recent.removeValue(forKey: old)
                    }
                    shard.recentOrder.removeFirst(Self.recentLimit / 2)
                    shard.recentOrder.removeAll { shard.recent[$0] == nil }
                }
            }
        }
    }

    /// Number of inodes known (including the root). Takes each shard lock in turn: for tests and stats.
    var count: Int {
        1 + shards.reduce(0) { sum, box in sum + box.state.withLock { $0.byIno.count } }
    }
}
