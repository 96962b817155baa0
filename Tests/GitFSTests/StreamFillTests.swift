import Basics
import ContentCache
import Foundation
import GitStore
import Logging
import ReadAhead
import ReadModel
import Synchronization
import Testing
import TestSupport

/// The cache fill of a big streamed blob that fell behind its reader, driven directly (no FUSE) over a
/// real mirror, pack and content cache: the mount's background job that finishes the entry is held
/// until the reader has read the whole blob, so the ring has long moved on and the fill must go on in a
/// second pass of its own. The entry then lands in the cache exactly once, never when the pack is
/// damaged between the passes, and a stop in the middle of that pass leaves nothing behind.
@Suite(.serialized)
struct StreamFillTests {
    /// A mount's real read-ahead whose long background jobs (a stream's fill) wait until `runHeld`.
    final class HeldBackground: ReadAheadHooks, @unchecked Sendable {
        let real: MountReadAhead
        private let held = Mutex<[(job: @Sendable (@escaping @Sendable () -> Bool) -> Void, dropped: @Sendable () -> Void)]>([])
        init(cache: ContentCache) { real = MountReadAhead(cache: cache, logger: Logger(label: "gitfs.test")) }
        var pendingContent: any BlobSource { real.pendingContent }
        func listing(_ view: RepoView, tree: ObjectID) { real.listing(view, tree: tree) }
        func readingDirectory(_ view: RepoView, tree: ObjectID, feed: SiblingFeed) { real.readingDirectory(view, tree: tree, feed: feed) }
        func background(_ job: @escaping @Sendable (@escaping @Sendable () -> Bool) -> Void,
                        dropped: @escaping @Sendable () -> Void) -> Bool {
            held.withLock { $0.append((job, dropped)) }
            return true
        }
        var heldCount: Int { held.withLock { $0.count } }
        /// Runs the held jobs on this thread, each polling `stopping`.
        func runHeld(stopping: @escaping @Sendable () -> Bool = { false }) {
            for j in held.withLock({ h in defer { h = [] }; return h }) { j.job(stopping) }
        }
        func shutdown() {
            for j in held.withLock({ h in defer { h = [] }; return h }) { j.dropped() }
            real.shutdown()
        }
    }

    /// The keys the cache told its store observer of, in order.
    final class Stores: Sendable { let keys = Mutex<[ObjectID]>([]) }

    final class Setup {
        let home: ChainTests.Home
        let cache: ContentCache
        let hooks: HeldBackground
        let resolver: Resolver
        let id: ObjectID
        let want: [UInt8]
        let stores: Stores
        init() throws {
            home = try ChainTests.Home()
            cache = try Resolver.openCache(home: GitStore.Home(path: home.path))
            let stores = Stores()
            self.stores = stores
            cache.observeStores { key, _ in stores.keys.withLock { $0.append(key) } }
            hooks = HeldBackground(cache: cache)
            resolver = Resolver(store: MirrorStore(home: GitStore.Home(path: home.path)), cache: cache, readAhead: hooks)
            id = try home.id("main:big/random.bin")
            want = try home.fixture.gitBlob("main", "big/random.bin")
        }
        var published: String { cache.directory + "/objects/" + id.hex.prefix(2) + "/" + id.hex.dropFirst(2) }
        var tmpIsEmpty: Bool { ((try? FileManager.default.contentsOfDirectory(atPath: cache.directory + "/tmp")) ?? ["?"]).isEmpty }
        /// Reads the whole blob through the resolver (the fill's job held meanwhile).
        func readWhole() throws -> BlobContent {
            let content = try resolver.repository(named: "fx").openBlob(id)
            #expect(try content.readAll() == want)
            #expect(hooks.heldCount == 1, "the stream's fill was handed to the background")
            #expect(!FileManager.default.fileExists(atPath: published), "published before its fill ran")
            return content
        }
    }

    @Test func aFillThatFellBehindStoresTheEntryOnceInASecondPass() throws {
        let s = try Setup()
        defer { s.resolver.shutdown() }
        let content = try s.readWhole()
        s.hooks.runHeld()
        #expect(FileManager.default.fileExists(atPath: s.published))
        #expect(s.stores.keys.withLock { $0 } == [s.id], "stored exactly once")
        #expect(s.tmpIsEmpty)
        // Still readable from the opened content, and a fresh resolver reads it from the cache.
        #expect(try content.readAll() == s.want)
        let again = Resolver(store: MirrorStore(home: GitStore.Home(path: s.home.path)), cache: try Resolver.openCache(home: GitStore.Home(path: s.home.path)))
        defer { again.shutdown() }
        #expect(try again.repository(named: "fx").openBlob(s.id).readAll() == s.want)
        #expect(again.counters.blobLoads == 0 && again.counters.cacheHits == 1)
    }

    @Test func aPackDamagedBeforeTheSecondPassIsNeverPublished() throws {
        let s = try Setup()
        defer { s.resolver.shutdown() }
        let content = try s.readWhole()
        try damageBigEntry(s.id.hex, inPackOf: s.home.path + "/repos/fx.git")
        s.hooks.runHeld()
        #expect(!FileManager.default.fileExists(atPath: s.published), "a damaged entry was published")
        #expect(s.stores.keys.withLock { $0 }.isEmpty)
        #expect(s.tmpIsEmpty, "the half-written entry was left in tmp/")
        // The stream failed: its readers get an error now, never bytes.
        var buffer = [UInt8](repeating: 0, count: 4096)
        let read = buffer.withUnsafeMutableBytes { b -> Bool in (try? content.read(offset: 0, into: b)) != nil }
        #expect(!read, "a failed stream still served bytes")
    }

    @Test func aStopInTheMiddleOfTheSecondPassIsPromptAndLeavesNothing() throws {
        let s = try Setup()
        defer { s.resolver.shutdown() }
        _ = try s.readWhole()
        let polls = Atomic<Int>(0)
        let start = ContinuousClock.now
        s.hooks.runHeld { polls.add(1, ordering: .relaxed).newValue > 8 }
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(polls.load(ordering: .relaxed) > 8, "the fill stopped before it was told to")
        #expect(!FileManager.default.fileExists(atPath: s.published), "a half-written entry was published")
        #expect(s.stores.keys.withLock { $0 }.isEmpty)
        #expect(s.tmpIsEmpty, "the half-written entry was left in tmp/")
    }
}
