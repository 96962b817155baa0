#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One byte budget for everything a process holds in anonymous memory on behalf of its readers: opened
/// contents, pending cache fills, the delta-base cache, parsed trees / sizes / commits, blob buffers and
/// streaming rings. A mount's server (one mount per process) and each `gitfs cat` / `gitfs prefetch` run
/// use `MemoryBudget.process`; a holder charges before it keeps bytes and credits when it drops them.
///
/// Invariant: `used` is the sum of all charges not yet credited; `tryCharge` never takes it past
/// `total`, so holders that only use `tryCharge` (caches) stay within the budget together — caches
/// within `total - headroom`, leaving the last quarter to bytes in flight. The only
/// charges that may pass `total` are `overdraw` ones — bytes a reader must be given to be answered at
/// all (a small blob in flight, a stream's ring): those are counted (`overdrafts`), never waited for,
/// and caches then make room by evicting their own oldest or decline to keep more. Nobody waits on
/// memory without a deadline (`waitForRoom(_:upTo:)` polls, then gives up), so a reader never waits on
/// bytes only it could free.
///
/// Thread-safe without a lock: one atomic counter (compare-and-swap), so charging on the read path
/// never serializes readers behind a lock.
public final class MemoryBudget: Sendable {
    private let limit: Atomic<Int>
    private let used = Atomic<Int>(0)
    private let peakUsed = Atomic<Int>(0)
    private let waitCount = Atomic<Int>(0)
    private let declineCount = Atomic<Int>(0)
    private let overdraftCount = Atomic<Int>(0)
    private let fallbackCount = Atomic<Int>(0)

    /// The default total: chosen so that a mount reading every file of six git.git releases stays under
    /// 128 MiB of anonymous memory (BENCHMARKS.md, bigblobs: "one memory budget").
    public static let defaultTotal = 64 << 20
    /// The smallest total a setting may give (below it caches keep too little to be useful).
    public static let minimumTotal = 16 << 20

    /// The budget of this process (one mount, or one `gitfs cat` / `gitfs prefetch`); set its total with
    /// `setTotal` before the first read.
    public static let process = MemoryBudget(total: defaultTotal)

    public init(total: Int) { limit = Atomic(max(0, total)) }

    /// The budget's total in bytes.
    public var total: Int { limit.load(ordering: .relaxed) }

    /// Changes the total (a setting read at start); what is held already is not dropped.
    public func setTotal(_ bytes: Int) { limit.store(max(0, bytes), ordering: .relaxed) }

    /// Bytes charged and not yet credited (may pass `total` by overdrafts only).
    public var usedBytes: Int { used.load(ordering: .relaxed) }

    /// The most bytes ever charged at once.
    public var peakBytes: Int { peakUsed.load(ordering: .relaxed) }

    /// True when `bytes` more would fit now (a hint: another thread may take the room first).
    public func hasRoom(for bytes: Int = 0) -> Bool { used.load(ordering: .relaxed) + bytes <= total }

    /// What caches leave free for bytes in flight (buffers being read, streams, pending fills): a
    /// quarter of the total. Caches charge with `tryCharge(_:keepingFree: headroom)` and keep values only
    /// while `hasRoom(for: headroom)`, so a budget full of cached values never makes a fill wait.
    public var headroom: Int { total / 4 }

    /// Charges `bytes` if they fit within the total less `keepingFree`; false (nothing charged) otherwise.
    public func tryCharge(_ bytes: Int, keepingFree: Int = 0) -> Bool {
        guard bytes > 0 else { return true }
        let cap = total - keepingFree
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + bytes <= cap else { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged {
                notePeak(current + bytes)
                return true
            }
            current = original
        }
    }

    /// Charges `bytes` whatever the total (memory a reader needs to be answered at all); a charge that
    /// passes the total is counted as an overdraft.
    public func overdraw(_ bytes: Int) {
        guard bytes > 0 else { return }
        let now = used.add(bytes, ordering: .relaxed).newValue
        if now > total { overdraftCount.add(1, ordering: .relaxed) }
        notePeak(now)
    }

    /// Waits up to `limit` (polling, no lock) until the budget has room for `bytes` more (charging
    /// nothing); false, and a decline counted, when it still has none. For holders of bytes that are
    /// charged already (a pending fill keeps a buffer that charged itself) and may be dropped instead.
    public func waitForRoom(_ bytes: Int = 0, upTo limit: Duration) -> Bool {
        if hasRoom(for: bytes) { return true }
        waitCount.add(1, ordering: .relaxed)
        let deadline = MonotonicTime.now + limit
        while MonotonicTime.now < deadline {
            var pause = timespec(tv_sec: 0, tv_nsec: 500_000)
            _ = nanosleep(&pause, nil)
            if hasRoom(for: bytes) { return true }
        }
        declineCount.add(1, ordering: .relaxed)
        return false
    }

    /// Returns `bytes` charged earlier.
    public func credit(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.subtract(bytes, ordering: .relaxed)
    }

    /// Counts a holder that declined to keep a value for want of room.
    public func noteDecline() { declineCount.add(1, ordering: .relaxed) }

    /// Counts a buffer that went to file-backed memory (or a stream) for want of room.
    public func noteFallback() { fallbackCount.add(1, ordering: .relaxed) }

    private func notePeak(_ value: Int) {
        var seen = peakUsed.load(ordering: .relaxed)
        while value > seen {
            let (exchanged, original) = peakUsed.compareExchange(expected: seen, desired: value, ordering: .relaxed)
            if exchanged { return }
            seen = original
        }
    }

    /// The figures `.gitfs/stats` shows.
    public var snapshot: Snapshot {
        Snapshot(total: total, used: usedBytes, peak: peakBytes, waits: waitCount.load(ordering: .relaxed),
                 declines: declineCount.load(ordering: .relaxed), overdrafts: overdraftCount.load(ordering: .relaxed),
                 fallbacks: fallbackCount.load(ordering: .relaxed))
    }

    /// A budget's figures at one moment.
    public struct Snapshot: Sendable, Equatable {
        public let total: Int
        public let used: Int
        public let peak: Int
        /// Charges that had to wait for room (pending fills).
        public let waits: Int
        /// Values a holder did not keep (or a fill dropped) for want of room.
        public let declines: Int
        /// Charges that passed the total (bytes a reader needed at once).
        public let overdrafts: Int
        /// Buffers put in file-backed memory instead for want of room.
        public let fallbacks: Int
    }
}
