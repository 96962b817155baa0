#if canImport(Glibc)
import Glibc
#endif

/// A point on the monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`), in nanoseconds: for intervals,
/// time-outs and rate limits, never for dates. A plain value: safe to share between threads; it fits an
/// `Atomic<UInt64>` through `nanoseconds`.
public struct MonotonicTime: Hashable, Comparable, Sendable {
    /// Nanoseconds since an arbitrary start (boot, on Linux).
    public let nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// Now: `clock_gettime(CLOCK_MONOTONIC)`.
    public static var now: MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    /// The time passed since `self` (zero if `self` is in the future).
    public var elapsed: Duration { MonotonicTime.now - self }

    /// The time from `earlier` to `later` (zero if `earlier` is later).
    public static func - (later: MonotonicTime, earlier: MonotonicTime) -> Duration {
        later.nanoseconds > earlier.nanoseconds ? .nanoseconds(Int64(later.nanoseconds - earlier.nanoseconds)) : .zero
    }

    /// `self` moved `d` later.
    public static func + (t: MonotonicTime, d: Duration) -> MonotonicTime {
        MonotonicTime(nanoseconds: t.nanoseconds &+ UInt64(max(0, d.nanosecondCount)))
    }

    public static func < (l: MonotonicTime, r: MonotonicTime) -> Bool { l.nanoseconds < r.nanoseconds }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating at `Int64.max`).
    public var nanosecondCount: Int64 {
        let (s, a) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        return ns &+ a / 1_000_000_000
    }

    /// The duration in seconds as a floating-point number.
    public var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) / 1e18
    }
}
