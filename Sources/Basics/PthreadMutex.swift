// Only in ThreadSanitizer builds (`-Xswiftc -DGITFS_TSAN`, as tools/tsan builds): TSan does not see
// Synchronization.Mutex's futex-based locking on Linux and reports every critical section as a race.
// Each module that locks has a `Mutex.swift` shadowing `Mutex` with this type in such builds; ordinary
// builds never compile it and lock with Synchronization.Mutex.
#if GITFS_TSAN
#if canImport(Glibc)
import Glibc
#endif

/// `Synchronization.Mutex`'s `withLock` over a `pthread_mutex_t`, which ThreadSanitizer intercepts.
/// Thread-safe: the value is only reached under the lock; the lock and the value live on the heap, so the
/// mutex's address never moves. Not reentrant (locking it again on the same thread deadlocks).
public struct PthreadMutex<Value: ~Copyable>: ~Copyable, @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let value: UnsafeMutablePointer<Value>

    public init(_ initialValue: consuming sending Value) {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_mutex_t())
        precondition(pthread_mutex_init(lock, nil) == 0, "pthread_mutex_init failed")
        value = .allocate(capacity: 1)
        value.initialize(to: initialValue)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        pthread_mutex_destroy(lock)
        lock.deinitialize(count: 1)
        lock.deallocate()
    }

    /// Runs `body` with the value while holding the lock; the lock is released however `body` ends.
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body(&value.pointee)
    }
}
#endif
