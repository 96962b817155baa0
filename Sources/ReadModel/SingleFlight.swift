import Foundation
import Synchronization

/// Runs at most one load per key at a time: the first caller for a key runs the load, every caller that
/// arrives while it is in flight waits for and shares its result (value or typed error). Nothing is
/// remembered once the load finishes — a failure is retried by the next caller, a success is expected to
/// be served from the content cache afterwards.
///
/// Guarantees: find-or-join is one atomic step under the map lock; only the leader removes its own key,
/// before it publishes the result, so a late joiner either joined before removal (and is woken with the
/// result) or starts a new load; waiters never remove keys. The leader always finishes its load even if
/// its own FUSE request was interrupted, so one caller going away never fails the others. Errors keep
/// their type (`Failure`): a joiner gets exactly the leader's error, never a replacement.
/// Thread-safe.
public final class SingleFlight<Key: Hashable & Sendable, Value: Sendable, Failure: Error>: Sendable {
    private final class Flight: Sendable {
        let condition = NSCondition()
        // Guarded by `condition`.
        nonisolated(unsafe) var result: Result<Value, Failure>?

        func wait() -> Result<Value, Failure> {
            condition.lock()
            defer { condition.unlock() }
            while result == nil { condition.wait() }
            return result!
        }

        func finish(_ r: Result<Value, Failure>) {
            condition.lock()
            result = r
            condition.broadcast()
            condition.unlock()
        }
    }

    private let flights = Mutex<[Key: Flight]>([:])

    public init() {}

    /// Returns the result of `load` for `key`, running it only if no load of `key` is in flight;
    /// `joined` tells whether this call waited for another caller's load.
    public func run(_ key: Key, _ load: () throws(Failure) -> Value) throws(Failure) -> (value: Value, joined: Bool) {
        let (flight, leader) = flights.withLock { map -> (Flight, Bool) in
            if let existing = map[key] { return (existing, false) }
            let created = Flight()
            map[key] = created
            return (created, true)
        }
        if !leader {
            return (try flight.wait().get(), true)
        }
        let result = Result { () throws(Failure) -> Value in try load() }
        flights.withLock { map in
            if map[key] === flight { map.removeValue(forKey: key) }
        }
        flight.finish(result)
        return (try result.get(), false)
    }
}
