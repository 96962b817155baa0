import Basics
import Synchronization

/// A circuit breaker for the remote: after `threshold` failures within `window` it opens and the remote
/// is skipped for `backoff` (doubling on each failed probe, up to `maxBackoff`); then exactly one
/// request goes through as a probe — success closes it, failure opens it again. The hot path (`allow`
/// while closed) is one atomic load. Thread-safe.
final class Breaker: Sendable {
    private let threshold: Int
    private let window: Duration
    private let initialBackoff: Duration
    private let maxBackoff: Duration
    /// Monotonic nanoseconds until which the remote is skipped; 0 when closed.
    private let openUntil = Atomic<UInt64>(0)
    private let probing = Atomic<Bool>(false)
    private struct Failures { var times: [MonotonicTime] = []; var backoff: Duration }
    private let failures: Mutex<Failures>

    init(threshold: Int = 3, window: Duration = .seconds(10), backoff: Duration = .seconds(5), maxBackoff: Duration = .seconds(120)) {
        self.threshold = threshold
        self.window = window
        self.initialBackoff = backoff
        self.maxBackoff = maxBackoff
        failures = Mutex(Failures(backoff: backoff))
    }

    /// True while the remote is being skipped (a failed probe or repeated failures).
    var isOpen: Bool { openUntil.load(ordering: .relaxed) != 0 }

    /// True while requests are skipped and no probe is due yet (cheap: one atomic load, one clock read).
    var isSkipping: Bool {
        let until = openUntil.load(ordering: .relaxed)
        return until != 0 && MonotonicTime.now.nanoseconds < until
    }

    enum Permission { case go, probe, skip }

    /// Whether a request may go out now: `.go` while closed; `.probe` for the one caller that tries the
    /// remote again once the backoff has passed; `.skip` otherwise.
    func allow() -> Permission {
        let until = openUntil.load(ordering: .relaxed)
        if until == 0 { return .go }
        guard MonotonicTime.now.nanoseconds >= until else { return .skip }
        return probing.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged ? .probe : .skip
    }

    func succeeded() {
        guard openUntil.load(ordering: .relaxed) != 0 || probing.load(ordering: .relaxed) else { return }
        failures.withLock { f in
            f.times.removeAll()
            f.backoff = initialBackoff
            openUntil.store(0, ordering: .relaxed)
            probing.store(false, ordering: .relaxed)
        }
    }

    /// Records a failure; true when it opened the breaker (the caller says so once).
    @discardableResult
    func failed() -> Bool {
        let now = MonotonicTime.now
        return failures.withLock { f -> Bool in
            let wasProbe = probing.load(ordering: .relaxed)
            f.times.removeAll { now - $0 > window }
            f.times.append(now)
            guard wasProbe || f.times.count >= threshold || openUntil.load(ordering: .relaxed) != 0 else { return false }
            let opened = openUntil.load(ordering: .relaxed) == 0
            openUntil.store((now + f.backoff).nanoseconds, ordering: .relaxed)
            if wasProbe { f.backoff = min(f.backoff * 2, maxBackoff) }
            f.times.removeAll()
            probing.store(false, ordering: .relaxed)
            return opened
        }
    }

    /// Opens at once (a failed probe at start: the remote is unreachable or refuses us).
    func trip() {
        failures.withLock { f in
            openUntil.store((MonotonicTime.now + f.backoff).nanoseconds, ordering: .relaxed)
            probing.store(false, ordering: .relaxed)
        }
    }
}
