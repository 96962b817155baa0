import Basics
import ContentCache
import Foundation
import GitStore

/// `gitfs gc` for blobless mirrors: a blob fetched from the origin on demand lands in the mirror (a
/// fetched-blob pack, `FetchedPack`) and, once read, in the content cache too. The packs whose every
/// blob the content cache holds are that space twice: they are deleted (the cache serves those blobs;
/// should the cache later evict one, the origin is asked again). Packs with any blob the cache lacks,
/// and every pack with commits or trees, are kept. Run it after the cache's own eviction, so what it
/// relies on is what the cache keeps. Safe while a mount reads: a pack is unlinked, and readers that have
/// it open or mapped keep reading it.
public enum FetchedPackReclaim {
    public struct Report: Sendable, Equatable {
        public var packs = 0
        public var blobs = 0
        public var bytes = 0
    }

    /// Deletes (or with `dryRun` only counts) the fetched-blob packs of every blobless mirror of `store`
    /// whose blobs are all in `cache`.
    public static func run(store: MirrorStore, cache: ContentCache, dryRun: Bool) -> Report {
        var report = Report()
        for name in store.names() {
            guard let repo = try? store.open(name: name), repo.isPartial else { continue }
            for pack in FetchedPack.scan(mirror: repo.path) {
                let ids = pack.ids()
                guard !ids.isEmpty, ids.count == pack.objectCount, ids.allSatisfy(cache.contains) else { continue }
                if !dryRun { pack.remove() }
                report.packs += 1
                report.blobs += ids.count
                report.bytes += pack.diskBytes
            }
        }
        return report
    }
}
