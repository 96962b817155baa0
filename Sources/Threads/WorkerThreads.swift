#if canImport(Glibc)
import Glibc
#endif

/// A fixed number of POSIX threads (`pthread_create`) running one body each, joined by `join()`
/// (`pthread_join`): bounded and tracked — no work outlives the owner that joins them.
public final class WorkerThreads {
    private var threads: [pthread_t]

    private init(threads: [pthread_t]) { self.threads = threads }

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts up to `count` threads running `body(workerIndex)`; `count` of the result says how many
    /// started (thread creation can fail). `background`: the threads run at nice 10 (Linux nice values
    /// are per thread), so work done ahead of or after readers yields the CPU to the readers themselves.
    public static func start(count: Int, background: Bool = false, _ body: @escaping @Sendable (Int) -> Void) -> WorkerThreads {
        var threads: [pthread_t] = []
        for w in 0..<count {
            let box = Unmanaged.passRetained(Box {
                // setpriority(PRIO_PROCESS, 0, …) changes the calling thread only on Linux.
                if background { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10) }
                body(w)
            }).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
                b.body()
                return nil
            }, box)
            if rc == 0 {
                threads.append(tid)
            } else {
                Unmanaged<Box>.fromOpaque(box).release()
            }
        }
        return WorkerThreads(threads: threads)
    }

    /// How many threads started and are not joined yet.
    public var count: Int { threads.count }

    /// Waits for every thread to finish (idempotent; call from the owning thread only).
    public func join() {
        for t in threads { pthread_join(t, nil) }
        threads = []
    }

    /// Runs `body` on `count` threads and waits for all of them; on the calling thread when no thread
    /// could be started, so the work is still done.
    public static func run(count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let workers = start(count: count, body)
        if workers.count == 0 { body(0) }
        workers.join()
    }
}
