import Basics
import Foundation
import GitStore
import Logging
import Settings
import Synchronization
import Threads

/// Counters of a mount's background fetches: `fetches` (mirror fetches that succeeded), `errors`
/// (that failed) and `lastFetch` (Unix time of the last success, 0 before the first).
public struct FetchCounters: Sendable, Equatable {
    public var fetches = 0
    public var errors = 0
    public var lastFetch = 0
}

/// Keeps a mounted home current: one background thread fetches every mirror of the home (mirrors
/// cloned while mounted included) every `interval`, jittered by ±10% so many mounts do not fetch in
/// step. Each fetch is `MirrorStore.fetch`, so it takes the same per-mirror `flock` as `gitfs fetch`
/// and joins a fetch already running in any process instead of fetching again. The mount re-reads refs
/// within a second, so moved refs show then. A mirror whose fetch fails is retried after twice the
/// wait, up to 8× the interval, and its failure is logged once when it starts failing and once when
/// it recovers, never per attempt. Reads never wait for it (they go on with the refs on disk).
/// `stop()` wakes the thread, cancels a transfer in progress and joins the thread. Thread-safe.
public final class BackgroundFetcher: @unchecked Sendable {
    public let interval: Double
    private let store: MirrorStore
    private let logger: Logger
    private let counters = Mutex(FetchCounters())
    private let control: Control
    /// Set in init, taken once by `stop()` under `control.condition`.
    private var workers: WorkerThreads?

    /// The sleeping thread's condition; `stopping` is read under it and, during a fetch, without it.
    private final class Control: @unchecked Sendable {
        let condition = NSCondition()
        let stopping = Atomic<Bool>(false)
    }

    /// What the thread knows about one mirror.
    private struct MirrorState {
        var due: Date
        var failures = 0
        var lastError: String?
    }

    /// Starts the thread; the first round runs one jittered interval after the start.
    public init(store: MirrorStore, interval: Double, logger: Logger) {
        self.store = store
        self.interval = max(0.05, interval)
        self.logger = logger
        self.control = Control()
        let started = WorkerThreads.start(count: 1, background: true) { [self] _ in self.run() }
        if started.count == 0 { logger.error("cannot start the background fetch thread: mirrors stay as they are") }
        control.condition.lock()
        workers = started
        control.condition.unlock()
    }

    /// The counters so far.
    public var snapshot: FetchCounters { counters.withLock { $0 } }

    /// Ends the thread (a transfer in progress is cancelled) and joins it. Idempotent.
    public func stop() {
        control.condition.lock()
        control.stopping.store(true, ordering: .releasing)
        control.condition.broadcast()
        let taken = workers
        workers = nil
        control.condition.unlock()
        taken?.join()
    }

    private var stopping: Bool { control.stopping.load(ordering: .acquiring) }

    private func jittered(_ seconds: Double) -> Double { seconds * Double.random(in: 0.9...1.1) }

    private func run() {
        var mirrors: [String: MirrorState] = [:]
        var firstDue = Date().addingTimeInterval(jittered(interval))
        while !stopping {
            let now = Date()
            let names = store.names()
            mirrors = mirrors.filter { names.contains($0.key) }   // removed mirrors are forgotten
            for name in names where mirrors[name] == nil { mirrors[name] = MirrorState(due: firstDue) }
            for name in names where !stopping {
                guard var state = mirrors[name], state.due <= now else { continue }
                fetch(name, &state)
                mirrors[name] = state
            }
            firstDue = Date().addingTimeInterval(jittered(interval))
            let next = mirrors.values.map(\.due).min() ?? firstDue
            sleep(until: min(next, firstDue))
        }
    }

    private func fetch(_ name: String, _ state: inout MirrorState) {
        let control = self.control
        do {
            let changes = try store.fetch(name: name, progress: nil, cancelled: { control.stopping.load(ordering: .acquiring) })
            counters.withLock {
                $0.fetches += 1
                $0.lastFetch = Int(Date().timeIntervalSince1970)
            }
            if state.failures > 0 {
                logger.notice("background fetch of '\(name)' works again after \(state.failures) failed attempts")
            }
            if !changes.isEmpty { logger.info("background fetch of '\(name)': \(changes.count) refs changed") }
            state = MirrorState(due: Date().addingTimeInterval(jittered(interval)))
        } catch {
            if stopping { return }   // cancelled by the unmount: not a failure of the remote
            counters.withLock { $0.errors += 1 }
            let message = Credentials.redacted(error.message)
            if state.failures == 0 {
                logger.warning("background fetch of '\(name)' failed: \(message); reads go on from the mirror, retrying with backoff (logged again when it works)")
            } else if state.lastError != message {
                logger.debug("background fetch of '\(name)' still failing: \(message)")
            }
            state.failures += 1
            state.lastError = message
            let backoff = interval * Double(1 << min(state.failures, 3))
            state.due = Date().addingTimeInterval(jittered(backoff))
        }
    }

    private func sleep(until deadline: Date) {
        control.condition.lock()
        while !stopping, Date() < deadline {
            _ = control.condition.wait(until: deadline)
        }
        control.condition.unlock()
    }
}
