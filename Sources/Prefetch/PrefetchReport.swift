import Basics
import Foundation
import GitStore
import Synchronization

/// A stop request shared by a prefetch and whoever wants to stop it (a SIGINT handler, a test).
/// `cancel()` is async-signal-safe (one atomic store). Thread-safe.
public final class PrefetchCancellation: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    /// Asks the prefetch to stop: workers finish the object in hand and take no other.
    public func cancel() { flag.store(true, ordering: .relaxed) }

    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
}

/// Where a prefetch stands; handed to the progress callback. A value.
public struct PrefetchProgress: Sendable, Equatable {
    public enum Phase: Sendable, Equatable { case walking, checking, loading }
    public var phase: Phase
    /// Trees read so far (walking) / objects checked (checking) / objects loaded or failed (loading).
    public var objectsDone: Int
    /// Objects to check or load in this phase (0 while walking).
    public var objectsTotal: Int
    /// Content bytes loaded so far and to load in all (loading only).
    public var bytesDone: Int
    public var bytesTotal: Int
    public var elapsed: Duration

    /// One line for a terminal: objects and bytes done of total, rate, time left.
    public var line: String {
        switch phase {
        case .walking:
            return "prefetch: reading trees: \(objectsDone) read"
        case .checking:
            return "prefetch: checking the cache: \(objectsDone)/\(objectsTotal) objects"
        case .loading:
            let secs = max(elapsed.seconds, 0.001)
            let rate = Double(bytesDone) / secs
            var text = "prefetch: \(objectsDone)/\(objectsTotal) objects, \(ByteCount.format(bytesDone))/\(ByteCount.format(bytesTotal)), \(ByteCount.format(Int(rate)))/s"
            if bytesDone > 0, bytesTotal > bytesDone, rate > 0 {
                let left = Int((Double(bytesTotal - bytesDone) / rate).rounded(.up))
                text += String(format: ", %d:%02d left", left / 60, left % 60)
            }
            return text
        }
    }
}

/// The outcome of a prefetch. A value.
public struct PrefetchSummary: Sendable, CustomStringConvertible {
    /// Objects missing from the cache when checked that this run loaded (or, rarely, saw loaded by a
    /// mount or another prefetch meanwhile), and their content bytes.
    public var loaded = 0
    public var loadedBytes = 0
    /// Matching objects that were in the cache already.
    public var alreadyCached = 0
    /// Objects that could not be loaded or stored (included in this count: `notStored`); the first few
    /// load failures with their path and error.
    public var failed = 0
    public var failures: [(path: String, id: ObjectID, error: String)] = []
    /// Objects loaded but not stored in the cache (full disk, read-only cache), and why (said once).
    public var notStored = 0
    public var notStoredReason: String?
    /// Matching objects not attempted because the run was cancelled.
    public var skipped = 0
    public var interrupted = false
    public var seconds = 0.0
    /// Distinct matching blobs across all revisions.
    public var matched = 0

    /// `prefetched 1234 objects (56.7 MiB) in 3.2 s; 100 already cached; 0 failed` (plus
    /// ` (N loaded but not stored in the cache)` and `; interrupted, N not attempted` when so).
    public var description: String {
        var s = String(format: "prefetched %d objects (%@) in %.1f s; %d already cached; %d failed",
                       loaded, ByteCount.format(loadedBytes), seconds, alreadyCached, failed)
        if notStored > 0 { s += " (\(notStored) loaded but not stored in the cache)" }
        if interrupted { s += "; interrupted, \(skipped) not attempted" }
        return s
    }
}
