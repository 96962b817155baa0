import Basics
import Glibc
import Synchronization

/// git's delta format (pack entries of type 6 and 7, once inflated): the base's size and the result's
/// size as little-endian 7-bit varints, then instructions: copy (high bit set; which of four offset and
/// three size bytes follow is in the low bits; size 0 means 0x10000) a range of the base, or insert the
/// next 1-127 bytes of the delta. Every read and write is bounds-checked; stateless.
enum Delta {
    /// The size of the result when `delta` applies to a base of `baseSize` bytes; nil when malformed or
    /// meant for another base size.
    static func resultSize(_ delta: UnsafeRawBufferPointer, baseSize: Int) -> Int? {
        var i = 0
        guard let source = varint(delta, &i), source == baseSize, let result = varint(delta, &i) else { return nil }
        return result
    }

    /// Applies `delta` to `base`, filling `out` (of exactly `resultSize` bytes); false when malformed.
    static func apply(_ delta: UnsafeRawBufferPointer, to base: UnsafeRawBufferPointer,
                      into out: UnsafeMutableRawBufferPointer) -> Bool {
        var i = 0
        guard varint(delta, &i) == base.count, varint(delta, &i) == out.count else { return false }
        let n = delta.count
        var written = 0
        while i < n {
            let op = delta[i]
            i += 1
            if op & 0x80 != 0 {
                var offset = 0
                var size = 0
                for bit in 0..<4 where op & (1 << bit) != 0 {
                    guard i < n else { return false }
                    offset |= Int(delta[i]) << (8 * bit)
                    i += 1
                }
                for bit in 0..<3 where op & (0x10 << bit) != 0 {
                    guard i < n else { return false }
                    size |= Int(delta[i]) << (8 * bit)
                    i += 1
                }
                if size == 0 { size = 0x10000 }
                guard offset + size <= base.count, written + size <= out.count else { return false }
                (out.baseAddress! + written).copyMemory(from: base.baseAddress! + offset, byteCount: size)
                written += size
            } else if op != 0 {
                let size = Int(op)
                guard i + size <= n, written + size <= out.count else { return false }
                (out.baseAddress! + written).copyMemory(from: delta.baseAddress! + i, byteCount: size)
                written += size
                i += size
            } else {
                return false
            }
        }
        return written == out.count
    }

    private static func varint(_ b: UnsafeRawBufferPointer, _ i: inout Int) -> Int? {
        var value = 0
        var shift = 0
        while true {
            guard i < b.count, shift <= 56 else { return nil }
            let c = b[i]
            i += 1
            value |= Int(c & 0x7f) << shift
            shift += 7
            if c & 0x80 == 0 { return value }
        }
    }
}

/// Objects rebuilt or inflated on the way along delta chains, kept for the next chain that passes
/// through them (versions of one file share their chain). Bounded: objects of at most `maxObject` bytes,
/// `maxBytes` in all (at most a quarter of the memory budget), the oldest dropped first; and by the process's memory budget (the objects charge it
/// themselves, `Bytes`): when the budget has no room, a shard drops its own oldest to make some, and an
/// object is not kept when that is not enough. Keyed by pack serial and entry offset, so an entry of a
/// pack that was replaced is never found. Thread-safe: 16 shards, each under its own lock; the bytes are
/// immutable once kept.
final class DeltaBaseCache: Sendable {
    /// Bytes in a buffer from `BlobBuffer.allocate` (`malloc`; big ones mapped, file-backed from
    /// `BlobBuffer.fileBackedThreshold` on), freed once when the last reference goes. Immutable once filled.
    /// Charged to the process's memory budget while it lives (unless file-backed).
    final class Bytes: @unchecked Sendable {
        private let allocation: BlobBuffer.Allocation
        var pointer: UnsafeMutableRawPointer { allocation.pointer }
        var count: Int { allocation.count }

        init?(count: Int) {
            guard count >= 0, let a = BlobBuffer.allocate(count) else { return nil }
            allocation = a
        }

        var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

        deinit { BlobBuffer.deallocate(allocation) }
    }

    static let maxObject = 1 << 20
    static let maxBytes = 32 << 20

    private struct Key: Hashable {
        let pack: UInt64
        let offset: Int
    }

    private struct Shard: ~Copyable {
        var objects: [Key: Bytes] = [:]
        var order: [Key] = []
        var head = 0
        var bytes = 0
    }

    private final class ShardBox: Sendable {
        let state = Mutex(Shard())
    }

    private let shards: [ShardBox] = (0..<16).map { _ in ShardBox() }

    private func shard(_ key: Key) -> ShardBox { shards[(key.offset ^ Int(truncatingIfNeeded: key.pack)) & 15] }

    func object(pack: UInt64, offset: Int) -> Bytes? {
        let key = Key(pack: pack, offset: offset)
        return shard(key).state.withLock { $0.objects[key] }
    }

    func keep(_ bytes: Bytes, pack: UInt64, offset: Int) {
        guard bytes.count <= Self.maxObject else { return }
        let key = Key(pack: pack, offset: offset)
        let budget = MemoryBudget.process
        let limit = min(Self.maxBytes, budget.total / 4) / shards.count
        shard(key).state.withLock { s in
            // No room in the budget: drop this shard's oldest (freed when no chain holds them any more).
            while !budget.hasRoom(for: budget.headroom), s.head < s.order.count {
                if let old = s.objects.removeValue(forKey: s.order[s.head]) { s.bytes -= old.count }
                s.head += 1
            }
            guard budget.hasRoom(for: budget.headroom) else {
                budget.noteDecline()
                return
            }
            guard s.objects.updateValue(bytes, forKey: key) == nil else { return }
            s.order.append(key)
            s.bytes += bytes.count
            while s.bytes > limit, s.head < s.order.count {
                if let old = s.objects.removeValue(forKey: s.order[s.head]) { s.bytes -= old.count }
                s.head += 1
            }
            if s.head > 1024, s.head * 2 > s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
        }
    }
}
