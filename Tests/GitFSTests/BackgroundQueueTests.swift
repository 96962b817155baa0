import Foundation
import ReadAhead
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
}
