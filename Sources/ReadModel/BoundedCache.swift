import Basics
import Synchronization

/// A map bounded in bytes with approximately least-recently-used eviction, split into shards so that
/// lookups on different keys rarely contend. Each shard keeps two generations: hits in the old
/// generation are promoted; when a value would take the young generation past its share of the cap
/// (`maxBytes / shardCount / 2`), the old generation is dropped whole and the young one becomes the old.
/// A value bigger than a generation's share is not kept at all. Memory is therefore at most `maxBytes`
/// (plus per-entry overhead estimates), whatever the values' sizes.
///
/// With a `MemoryBudget`, every value kept is also charged to it (its `charge`, by default its size) and
/// credited when dropped; a value the budget cannot take makes the shard drop its own old generation
/// and try again, and is declined (not kept, counted) if it still does not fit. A value charged 0 (its
/// bytes are charged by their own buffer) is kept only while the budget has room. Either way the budget's
/// `headroom` is left to bytes in flight.
/// Thread-safe: every operation takes only its key's shard lock (the budget is one atomic counter).
public final class BoundedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Held {
        let value: Value
        let bytes: Int
        let charge: Int
    }

    private struct Generations: ~Copyable {
        var young: [Key: Held] = [:]
        var old: [Key: Held] = [:]
        var youngBytes = 0
        var youngCharge = 0
        var oldCharge = 0
    }

    private final class Shard: Sendable {
        let state = Mutex(Generations())
    }

    private let shards: [Shard]
    private let bytesPerGeneration: Int
    private let budget: MemoryBudget?

    /// - Parameters:
    ///   - maxBytes: the cap across shards.
    ///   - shardCount: number of independent locks.
    ///   - budget: charged for every value kept (nil: the cap alone bounds it).
    public init(maxBytes: Int, shardCount: Int = 16, budget: MemoryBudget? = nil) {
        shards = (0..<shardCount).map { _ in Shard() }
        bytesPerGeneration = max(1, maxBytes / shardCount / 2)
        self.budget = budget
    }

    private func shard(_ key: Key) -> Int {
        Int(UInt(bitPattern: key.hashValue) % UInt(shards.count))
    }

    /// The cached value, promoting it to the young generation.
    public func value(for key: Key) -> Value? {
        shards[shard(key)].state.withLock { g in
            if let hit = g.young[key] { return hit.value }
            if let hit = g.old.removeValue(forKey: key) {
                g.oldCharge -= hit.charge
                // Already charged: moved, not charged again (credited if it cannot stay).
                if !place(&g, key, hit) { budget?.credit(hit.charge) }
                return hit.value
            }
            return nil
        }
    }

    /// Stores a value with its approximate size in bytes, charged to the budget (`charge`, default
    /// `bytes`). Returns false when it was not kept (too big, or no room in the budget). `evenWithoutRoom`
    /// keeps a value charged 0 whatever the budget's room (its own memory is charged where it was made,
    /// and dropping it would only make that memory again).
    @discardableResult
    public func set(_ value: Value, for key: Key, bytes: Int, charge: Int? = nil, evenWithoutRoom: Bool = false) -> Bool {
        let charge = max(0, charge ?? bytes)
        let admitted = evenWithoutRoom && charge == 0
        return shards[shard(key)].state.withLock { g in
            if let previous = g.young.removeValue(forKey: key) {
                g.youngBytes -= previous.bytes
                g.youngCharge -= previous.charge
                budget?.credit(previous.charge)
            }
            if let previous = g.old.removeValue(forKey: key) {
                g.oldCharge -= previous.charge
                budget?.credit(previous.charge)
            }
            guard bytes <= bytesPerGeneration else { return false }
            if let budget, !admitted, !admit(charge, budget) {
                // Make room from this shard's own oldest, then try once more.
                dropOld(&g)
                guard admit(charge, budget) else {
                    budget.noteDecline()
                    return false
                }
            }
            let held = Held(value: value, bytes: bytes, charge: charge)
            if !place(&g, key, held) {
                budget?.credit(charge)
                return false
            }
            return true
        }
    }

    /// Caches leave the budget's headroom to bytes in flight.
    private func admit(_ charge: Int, _ budget: MemoryBudget) -> Bool {
        charge > 0 ? budget.tryCharge(charge, keepingFree: budget.headroom) : budget.hasRoom(for: budget.headroom)
    }

    /// Drops the value of `key`, if cached.
    public func remove(_ key: Key) {
        shards[shard(key)].state.withLock { g in
            if let gone = g.young.removeValue(forKey: key) {
                g.youngBytes -= gone.bytes
                g.youngCharge -= gone.charge
                budget?.credit(gone.charge)
            }
            if let gone = g.old.removeValue(forKey: key) {
                g.oldCharge -= gone.charge
                budget?.credit(gone.charge)
            }
        }
    }

    /// Drops every value (crediting the budget).
    public func removeAll() {
        for s in shards {
            s.state.withLock { g in
                dropOld(&g)
                g.old = g.young
                g.oldCharge = g.youngCharge
                g.young = [:]
                g.youngBytes = 0
                g.youngCharge = 0
                dropOld(&g)
            }
        }
    }

    private func dropOld(_ g: inout Generations) {
        budget?.credit(g.oldCharge)
        g.old = [:]
        g.oldCharge = 0
    }

    /// Puts an already charged value (not in either generation) in the young generation, rotating first
    /// when it would not fit (the old generation dropped and credited); false when it is bigger than a
    /// whole generation (the caller credits it).
    private func place(_ g: inout Generations, _ key: Key, _ held: Held) -> Bool {
        guard held.bytes <= bytesPerGeneration else { return false }
        if g.youngBytes + held.bytes > bytesPerGeneration {
            dropOld(&g)
            g.old = g.young
            g.oldCharge = g.youngCharge
            g.young = [:]
            g.youngBytes = 0
            g.youngCharge = 0
        }
        g.young[key] = held
        g.youngBytes += held.bytes
        g.youngCharge += held.charge
        return true
    }

    /// Bytes held across shards and generations (for tests and stats).
    public var bytes: Int {
        shards.reduce(0) { sum, s in
            sum + s.state.withLock { g in g.youngBytes + g.old.values.reduce(0) { $0 + $1.bytes } }
        }
    }

    /// Number of cached values (for tests and stats).
    public var count: Int { shards.reduce(0) { sum, s in sum + s.state.withLock { $0.young.count + $0.old.count } } }

    deinit {
        guard let budget else { return }
        for s in shards { s.state.withLock { g in budget.credit(g.youngCharge + g.oldCharge) } }
    }
}
