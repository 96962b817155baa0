import Foundation
import Synchronization
import Threads

/// The one background engine of a mount's work off the read path (cache fills, read-ahead): lanes of
/// bounded job queues served by worker threads, a lock per lane, one stop flag and one shutdown.
///
/// Each lane has its own threads (at background priority or not: Linux nice values are per thread and
/// an unprivileged thread cannot lower its own again, so a lane keeps its threads) and one or more
/// queues in priority order, each bounded in jobs; a submit beyond a bound is refused, never blocks.
/// Tracked: `shutdown()` stops taking jobs, drops the queued ones (calling their `dropped` handler, so
/// their owners release what they reserved), lets the jobs in progress finish and joins every thread.
/// Long jobs poll `isStopping`. Thread-safe.
public final class BackgroundQueue: @unchecked Sendable {
    /// One lane: `threads` workers at `background` priority taking jobs from `queueLimits.count` queues,
    /// the first non-empty queue first; queue `i` holds at most `queueLimits[i]` jobs.
    public struct Lane: Sendable {
        public let threads: Int
        public let background: Bool
        public let queueLimits: [Int]
        public init(threads: Int, background: Bool, queueLimits: [Int]) {
            self.threads = threads
            self.background = background
            self.queueLimits = queueLimits
        }
    }

    private struct Job {
        let run: () -> Void
        let dropped: () -> Void
    }

    /// A FIFO with an advancing head (no O(n) removeFirst per job). A popped slot is cleared at once:
    /// a job's closure holds what it captured (a pending fill's bytes) only until it has run.
    private struct Queue {
        var jobs: [Job?] = []
        var head = 0
        var count: Int { jobs.count - head }
        mutating func push(_ j: Job) { jobs.append(j) }
        mutating func pop() -> Job {
            let j = jobs[head].take()!
            head += 1
            if head > 256, head * 2 > jobs.count { jobs.removeFirst(head); head = 0 }
            return j
        }
        mutating func drain() -> [Job] {
            defer { jobs = []; head = 0 }
            return jobs[head...].compactMap { $0 }
        }
    }

    /// A lane's queues and its own condition: a submit wakes one of that lane's idle threads, never the
    /// other lanes' (one shared condition broadcast on every submit woke all five threads of a mount, and
    /// they fought for its lock: ~2,400 contended waits in a cold read of 3,000 files).
    private final class LaneState: @unchecked Sendable {
        let condition = NSCondition()
        // Guarded by `condition`.
        var queues: [Queue]
        var stopping = false
        init(queues: Int) { self.queues = Array(repeating: Queue(), count: queues) }
    }

    private let lanes: [Lane]
    private let states: [LaneState]
    /// Set before any lane's `stopping`, read without a lock by `isStopping` (polled per file by long jobs).
    private let stopRequested = Atomic<Bool>(false)
    private let workersLock = NSLock()
    private var workers: [WorkerThreads] = []   // guarded by workersLock; emptied by the first shutdown

    public init(lanes: [Lane]) {
        self.lanes = lanes
        self.states = lanes.map { LaneState(queues: $0.queueLimits.count) }
        var started: [WorkerThreads] = []
        for (l, lane) in lanes.enumerated() {
            started.append(WorkerThreads.start(count: lane.threads, background: lane.background) { [unowned self] _ in self.work(lane: l) })
        }
        // A lane that got no thread refuses every submit (the caller does the work); with none at all the
        // engine counts as stopping.
        for (l, w) in started.enumerated() where w.count == 0 {
            states[l].condition.lock()
            states[l].stopping = true
            states[l].condition.unlock()
        }
        if started.allSatisfy({ $0.count == 0 }) { stopRequested.store(true, ordering: .releasing) }
        workersLock.withLock { workers = started }
    }

    /// Queues `run` on queue `queue` of lane `lane`; false (and nothing queued) when that queue is full
    /// or the engine is stopping. `dropped` runs instead of `run` if the job is dropped at shutdown.
    @discardableResult
    public func submit(lane: Int, queue: Int = 0, _ run: @escaping () -> Void, dropped: @escaping () -> Void = {}) -> Bool {
        let state = states[lane]
        state.condition.lock()
        defer { state.condition.unlock() }
        guard !state.stopping, state.queues[queue].count < lanes[lane].queueLimits[queue] else { return false }
        state.queues[queue].push(Job(run: run, dropped: dropped))
        state.condition.signal()
        return true
    }

    /// True once `shutdown()` began: long jobs stop early. Lock-free.
    public var isStopping: Bool { stopRequested.load(ordering: .acquiring) }

    /// Drops the queued jobs, lets the running ones finish, joins every thread. Idempotent.
    public func shutdown() {
        stopRequested.store(true, ordering: .releasing)
        var dropped: [Job] = []
        for state in states {
            state.condition.lock()
            state.stopping = true
            for q in state.queues.indices { dropped += state.queues[q].drain() }
            state.condition.broadcast()
            state.condition.unlock()
        }
        let joining = workersLock.withLock { () -> [WorkerThreads] in
            defer { workers = [] }
            return workers
        }
        for job in dropped { job.dropped() }
        for w in joining { w.join() }
    }

    private func work(lane l: Int) {
        let state = states[l]
        while true {
            state.condition.lock()
            var next: Job?
            while !state.stopping {
                if let q = state.queues.firstIndex(where: { $0.count > 0 }) {
                    next = state.queues[q].pop()
                    break
                }
                state.condition.wait()
            }
            state.condition.unlock()
            guard let job = next else { return }
            job.run()
        }
    }

    deinit { shutdown() }
}
