import Synchronization

/// A map bounded in bytes with approximately least-recently-used eviction, split into shards so that
/// lookups on different keys rarely contend. Each shard keeps two generations: hits in the old
/// generation are promoted; when a value would take the young generation past its share of the budget
/// (`maxBytes / shardCount / 2`), the old generation is dropped whole and the young one becomes the old.
/// A value bigger than a generation's share is not kept at all. Memory is therefore at most `maxBytes`
/// (plus per-entry overhead estimates), whatever the values' sizes.
/// Thread-safe: every operation takes only its key's shard lock.
public final class BoundedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Generations: ~Copyable {
        var young: [Key: (Value, Int)] = [:]
        var old: [Key: (Value, Int)] = [:]
        var youngBytes = 0
    }

    private final class Shard: Sendable {
        let state = Mutex(Generations())
    }

    private let shards: [Shard]
    private let bytesPerGeneration: Int

    /// - Parameters:
    ///   - maxBytes: the total budget across shards.
    ///   - shardCount: number of independent locks.
    public init(maxBytes: Int, shardCount: Int = 16) {
        shards = (0..<shardCount).map { _ in Shard() }
        bytesPerGeneration = max(1, maxBytes / shardCount / 2)
    }

    private func shard(_ key: Key) -> Int {
        Int(UInt(bitPattern: key.hashValue) % UInt(shards.count))
    }

    /// The cached value, promoting it to the young generation.
    public func value(for key: Key) -> Value? {
        shards[shard(key)].state.withLock { g in
            if let hit = g.young[key] { return hit.0 }
            if let hit = g.old.removeValue(forKey: key) {
                Self.insert(&g, key, hit.0, hit.1, limit: bytesPerGeneration)
                return hit.0
            }
            return nil
        }
    }

    /// Stores a value with its approximate size in bytes.
    public func set(_ value: Value, for key: Key, bytes: Int) {
        shards[shard(key)].state.withLock { g in
            Self.insert(&g, key, value, bytes, limit: bytesPerGeneration)
        }
    }

    /// Drops the value of `key`, if cached.
    public func remove(_ key: Key) {
        shards[shard(key)].state.withLock { g in
            if let gone = g.young.removeValue(forKey: key) { g.youngBytes -= gone.1 }
            g.old.removeValue(forKey: key)
        }
    }

    /// Puts the value in the young generation, rotating first when it would not fit; a value bigger
    /// than a whole generation is dropped (and any older copy of it with it). Both generations then stay
    /// within `limit` bytes each.
    private static func insert(_ g: inout Generations, _ key: Key, _ value: Value, _ bytes: Int, limit: Int) {
        if let previous = g.young.removeValue(forKey: key) { g.youngBytes -= previous.1 }
        guard bytes <= limit else {
            g.old.removeValue(forKey: key)
            return
        }
        if g.youngBytes + bytes > limit {
            g.old = g.young
            g.young = [:]
            g.youngBytes = 0
        }
        g.old.removeValue(forKey: key)
        g.young[key] = (value, bytes)
        g.youngBytes += bytes
    }

    /// Bytes held across shards and generations (for tests and stats).
    public var bytes: Int {
        shards.reduce(0) { sum, s in
            sum + s.state.withLock { g in g.youngBytes + g.old.values.reduce(0) { $0 + $1.1 } }
        }
    }

    /// Number of cached values (for tests and stats).
    public var count: Int { shards.reduce(0) { sum, s in sum + s.state.withLock { $0.young.count + $0.old.count } } }
}
