import Foundation
import Threads

/// The one background engine of a mount's work off the read path (cache fills, read-ahead): lanes of
/// bounded job queues served by worker threads, under one lock, one stop flag and one shutdown.
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

    private let lanes: [Lane]
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queues: [[Queue]]
    private var stopping = false
    private var workers: [WorkerThreads] = []

    public init(lanes: [Lane]) {
        self.lanes = lanes
        self.queues = lanes.map { lane in lane.queueLimits.map { _ in Queue() } }
        condition.lock()
        defer { condition.unlock() }
        var started = 0
        for (l, lane) in lanes.enumerated() {
            let w = WorkerThreads.start(count: lane.threads, background: lane.background) { [unowned self] _ in self.work(lane: l) }
            started += w.count
            workers.append(w)
        }
        if started == 0 { stopping = true }   // no thread: every submit is refused (the caller does the work)
    }

    /// Queues `run` on queue `queue` of lane `lane`; false (and nothing queued) when that queue is full
    /// or the engine is stopping. `dropped` runs instead of `run` if the job is dropped at shutdown.
    @discardableResult
    public func submit(lane: Int, queue: Int = 0, _ run: @escaping () -> Void, dropped: @escaping () -> Void = {}) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, queues[lane][queue].count < lanes[lane].queueLimits[queue] else { return false }
        queues[lane][queue].push(Job(run: run, dropped: dropped))
        condition.broadcast()
        return true
    }

    /// True once `shutdown()` began: long jobs stop early.
    public var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    /// Drops the queued jobs, lets the running ones finish, joins every thread. Idempotent.
    public func shutdown() {
        condition.lock()
        stopping = true
        var dropped: [Job] = []
        for l in queues.indices {
            for q in queues[l].indices { dropped += queues[l][q].drain() }
        }
        let joining = workers
        workers = []
        condition.broadcast()
        condition.unlock()
        for job in dropped { job.dropped() }
        for w in joining { w.join() }
    }

    private func work(lane l: Int) {
        while true {
            condition.lock()
            var next: Job?
            while !stopping {
                if let q = queues[l].firstIndex(where: { $0.count > 0 }) {
                    next = queues[l][q].pop()
                    break
                }
                condition.wait()
            }
            condition.unlock()
            guard let job = next else { return }
            job.run()
        }
    }

    deinit { shutdown() }
}
