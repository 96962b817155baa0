import Foundation
import ReadAhead
import Synchronization
import Testing

/// The background queue lets go of a job's captures once the job has run: a queued fill captures a
/// blob's bytes, and a finished job that kept them would hold memory beyond the fill budget.
@Suite struct BackgroundQueueTests {
    final class Payload: Sendable {
        let bytes = [UInt8](repeating: 7, count: 1 << 10)
    }
    struct Weak { weak var payload: Payload? }

    @Test func aJobThatHasRunNoLongerHoldsWhatItCaptured() throws {
        let queue = BackgroundQueue(lanes: [.init(threads: 1, background: false, queueLimits: [1_000])])
        defer { queue.shutdown() }
        let ran = DispatchSemaphore(value: 0)
        var refs: [Weak] = []
        for _ in 0..<100 {
            let payload = Payload()
            refs.append(Weak(payload: payload))
            #expect(queue.submit(lane: 0, { _ = payload.bytes.count; ran.signal() }))
        }
        for _ in 0..<100 { ran.wait() }
        let deadline = Date().addingTimeInterval(5)
        while refs.contains(where: { $0.payload != nil }), Date() < deadline { usleep(10_000) }
        #expect(refs.filter { $0.payload != nil }.count == 0, "finished jobs still hold their captures")
    }

    /// Lanes are independent (a lane whose thread is busy does not hold up another's jobs), every queued
    /// job runs exactly once, a full queue refuses, and shutdown drops what is queued (calling `dropped`),
    /// lets the running job finish, refuses new jobs and joins.
    @Test func lanesAreIndependentBoundedAndShutDownCleanly() throws {
        let queue = BackgroundQueue(lanes: [
            .init(threads: 1, background: false, queueLimits: [2]),
            .init(threads: 2, background: true, queueLimits: [10_000]),
        ])
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let finished = Atomic<Int>(0)
        let dropped = Atomic<Int>(0)
        #expect(queue.submit(lane: 0, { started.signal(); release.wait(); finished.add(1, ordering: .relaxed) }))
        started.wait()   // lane 0's only thread is busy now
        #expect(queue.submit(lane: 0, { finished.add(1, ordering: .relaxed) }, dropped: { dropped.add(1, ordering: .relaxed) }))
        #expect(queue.submit(lane: 0, { finished.add(1, ordering: .relaxed) }, dropped: { dropped.add(1, ordering: .relaxed) }))
        #expect(!queue.submit(lane: 0, {}), "a full queue took a job")

        let ran = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<5_000 {
            #expect(queue.submit(lane: 1, { if ran.add(1, ordering: .relaxed).newValue == 5_000 { done.signal() } }))
        }
        #expect(done.wait(timeout: .now() + 30) == .success, "lane 1 waited for lane 0's busy thread")
        #expect(ran.load(ordering: .relaxed) == 5_000)

        #expect(!queue.isStopping)
        let stopper = Thread { queue.shutdown() }
        stopper.start()
        let deadline = Date().addingTimeInterval(10)
        while !queue.isStopping, Date() < deadline { usleep(1_000) }
        #expect(queue.isStopping)
        #expect(!queue.submit(lane: 1, {}), "a stopping queue took a job")
        while dropped.load(ordering: .relaxed) < 2, Date() < deadline { usleep(1_000) }
        release.signal()   // the running job finishes; shutdown joins its thread
        while stopper.isExecuting || !stopper.isFinished, Date() < deadline { usleep(1_000) }
        #expect(stopper.isFinished, "shutdown did not return")
        #expect(finished.load(ordering: .relaxed) == 1 && dropped.load(ordering: .relaxed) == 2)
        queue.shutdown()   // idempotent
    }
}
