import Basics
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A background thread that keeps the cache under a size: every `interval` it flushes last-use
/// records and, when the entries' du is over `maxSize`, runs one gc pass (down to the low-water
/// mark). One tracked thread; `stop()` wakes it, waits for it to finish and is idempotent.
/// Thread-safe.
public final class SizeEnforcer: Sendable {
    private let state = Mutex<(stopped: Bool, joined: Bool)>((false, false))
    private let thread = Mutex<pthread_t?>(nil)
    let cache: ContentCache
    let maxSize: Int
    let interval: Duration
    /// gc passes run so far.
    public var passes: Int { passCount.load(ordering: .relaxed) }
    private let passCount = Atomic<Int>(0)

    init(cache: ContentCache, maxSize: Int, interval: Duration) {
        self.cache = cache
        self.maxSize = maxSize
        self.interval = interval
    }

    func start() {
        let box = Unmanaged.passRetained(self)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let me = Unmanaged<SizeEnforcer>.fromOpaque(arg!).takeRetainedValue()
            me.loop()
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            cache.logger.error("cache size enforcer not started: \(SystemIO.errnoText(rc))")
            return
        }
        thread.withLock { $0 = tid }
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func loop() {
        while !stopped {
            // Sleep in short steps so stop() returns quickly.
            let (s, a) = interval.components
            var left = Double(s) + Double(a) / 1e18
            while left > 0 && !stopped {
                let step = min(left, 0.05)
                usleep(UInt32(step * 1_000_000))
                left -= step
            }
            if stopped { break }
            cache.flushUsage()
            if cache.entriesDiskBytes() > maxSize {
                do {
                    let r = try cache.gc(maxSize: maxSize, maxAge: nil, dryRun: false)
                    passCount.add(1, ordering: .relaxed)
                    cache.logger.info("cache size enforcer: \(r)")
                } catch {
                    cache.logger.error("cache size enforcer: gc failed: \(error)")
                }
            }
        }
    }

    /// Stops the thread and waits for it (including a gc pass in progress). Safe to call twice.
    public func stop() {
        let join = state.withLock { s -> Bool in
            s.stopped = true
            if s.joined { return false }
            s.joined = true
            return true
        }
        guard join, let tid = thread.withLock({ $0 }) else { return }
        pthread_join(tid, nil)
    }
}

extension ContentCache {
    /// Starts a background enforcer of `maxSize` (du of entries) checking every `interval`.
    /// The caller must `stop()` it before exiting.
    public func startSizeEnforcer(maxSize: Int, interval: Duration) -> SizeEnforcer {
        let e = SizeEnforcer(cache: self, maxSize: maxSize, interval: interval)
        e.start()
        return e
    }
}
