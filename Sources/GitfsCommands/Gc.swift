import ArgumentParser
import Basics
import ContentCache
import Foundation
import GitStore
import ReadModel

/// The home's content cache as the commands see it.
enum CacheAccess {
    /// Whether the home has a cache yet: commands that only look (`stats`, `verify`) must not create one.
    static func exists(_ home: Home) -> Bool {
        FileManager.default.fileExists(atPath: home.cachePath)
    }
}

/// `gitfs gc`: evicts least-recently-used cache entries and stale temporary files.
struct Gc: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Evict least-recently-used cache entries and remove stale temporary files; blobless mirrors drop fetched blobs the cache holds.",
        discussion: "Safe while a mount or a prefetch uses the cache: reads in progress are never broken.")
    @OptionGroup var global: GlobalOptions

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Evict least recently used entries until the cache is under SIZE (then down to 90% of it). K, M, G suffixes.", valueName: "size"))
    var maxSize: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Evict entries unused for DURATION (s, m, h, d suffixes).", valueName: "duration"))
    var maxAge: String?

    @Flag(name: .long, help: "Print what would be freed without removing anything.")
    var dryRun = false

    func validate() throws {
        try Units.validateSize(maxSize, option: "--max-size")
        try Units.validateDuration(maxAge, option: "--max-age")
    }

    func run() throws {
        let home = try global.checkedHome()
        let cache = try Resolver.openCache(home: home)
        let report = try cache.gc(maxSize: maxSize.map(Units.size), maxAge: maxAge.map(Units.seconds), dryRun: dryRun)
        print(report)
        // Blobless mirrors: blobs fetched from the origin that the cache now holds too.
        let packs = FetchedPackReclaim.run(store: MirrorStore(home: home), cache: cache, dryRun: dryRun)
        if packs.packs > 0 {
            print("\(dryRun ? "would remove" : "removed") \(packs.packs) pack\(packs.packs == 1 ? "" : "s") of \(packs.blobs) blobs fetched by blobless mirrors (\(ByteCount.format(packs.bytes))), which the cache holds")
        }
    }
}
