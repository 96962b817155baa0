import Basics
import ContentCache
import GitStore
import Logging
import ReadModel

/// A mount's work off the read path, on one shared `BackgroundQueue`: the cache filler (fill lane:
/// two threads at background priority), the speculator (read-ahead lane: one thread, listings
/// walked before sibling blobs are loaded) and the streams of big blobs into the cache (stream lane:
/// two threads at normal priority, at most 64 streams waiting; a stream not taken is driven by its
/// readers alone). Plugged into the read model as its `ReadAheadHooks`.
/// `shutdown()` drops what is queued, lets the stores in progress finish and joins every thread.
/// Thread-safe.
public final class MountReadAhead: ReadAheadHooks {
    private let queue: BackgroundQueue
    private let filler: CacheFiller
    private let speculator: Speculator
    static let fillLane = 0, readAheadLane = 1, streamLane = 2

    public init(cache: ContentCache, logger: Logger, fillThreads: Int = 2) {
        queue = BackgroundQueue(lanes: [
            .init(threads: fillThreads, background: true, queueLimits: [65_536]),
            .init(threads: 1, background: false, queueLimits: Speculator.queueLimits),
            // Not at background priority: a reader's next chunks wait for this lane's compression once
            // the stream's ring is full.
            .init(threads: 2, background: false, queueLimits: [64]),
        ])
        filler = CacheFiller(cache: cache, logger: logger, queue: queue, lane: Self.fillLane)
        speculator = Speculator(queue: queue, lane: Self.readAheadLane)
    }

    public var pendingContent: any BlobSource { filler }

    public func listing(_ view: RepoView, tree: ObjectID) {
        speculator.scheduleWalk(view, tree: tree)
    }

    public func readingDirectory(_ view: RepoView, tree: ObjectID, feed: SiblingFeed) {
        speculator.schedule(view, tree: tree, feed: feed)
    }

    public func background(_ job: @escaping @Sendable (_ stopping: @escaping @Sendable () -> Bool) -> Void,
                           dropped: @escaping @Sendable () -> Void) -> Bool {
        let queue = self.queue
        return queue.submit(lane: Self.streamLane, { job { queue.isStopping } }, dropped: dropped)
    }

    public func shutdown() { queue.shutdown() }
}
