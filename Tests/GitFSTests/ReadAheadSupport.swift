import Foundation
import GitStore
import Logging
import ReadAhead
import ReadModel
import TestSupport

/// A mount's read path without the kernel: `src` mirrored as "r" into a home under `work`, read through a
/// Resolver with the mount's read-ahead (`MountReadAhead`). The caller shuts the resolver down.
func readAheadResolver(mirroring src: String, in work: TempDir) throws -> (resolver: Resolver, view: RepoView) {
    let home = Home(path: work.sub("home"))
    try FileManager.default.createDirectory(atPath: home.reposPath, withIntermediateDirectories: true)
    let store = MirrorStore(home: home)
    _ = try store.clone(url: src, name: "r", progress: nil)
    let logger = Logger(label: "gitfs.test")
    let cache = try Resolver.openCache(home: home)
    let resolver = Resolver(store: store, cache: cache, readAhead: MountReadAhead(cache: cache, logger: logger), logger: logger)
    do {
        return (resolver, try resolver.repository(named: "r"))
    } catch {
        resolver.shutdown()
        throw error
    }
}
