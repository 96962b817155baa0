import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A background thread that keeps the cache under a size: every `interval` it flushes last-use
/// records and, when the entries' du is over `maxSize`, runs one gc pass (down to the low-water
/// mark). One tracked thread, asleep on a condition between passes; `stop()` wakes it, waits for it to
/// finish (a gc pass in progress completes first) and is idempotent. Thread-safe: its state is
/// guarded by the condition's lock.
public final class SizeEnforcer: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false   // guarded by `condition`
    private var joined = false    // guarded by `condition`
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
            cache.logger.error("cache size enforcer not started: \(Errno(rc).message)")
            return
        }
        thread.withLock { $0 = tid }
    }

    /// Sleeps `interval` (or until `stop()`); false once stopped.
    private func sleep() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: interval.seconds)
        while !stopped && condition.wait(until: deadline) {}
        return !stopped
    }

    private func loop() {
        while sleep() {
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
        condition.lock()
        stopped = true
        let join = !joined
        joined = true
        condition.broadcast()
        condition.unlock()
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
