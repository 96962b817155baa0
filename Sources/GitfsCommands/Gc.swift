import ArgumentParser
import ContentCache
import Foundation
import GitStore
import Resolver

/// `gitfs gc`: evicts least-recently-used cache entries and stale temporary files.
struct Gc: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Evict least-recently-used cache entries and remove stale temporary files.",
        discussion: "Safe while a mount or a prefetch uses the cache: reads in progress are never broken.")
    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Evict least recently used entries until the cache is under SIZE (then down to 90% of it). K, M, G suffixes.", valueName: "size"))
    var maxSize: String?

    @Option(name: .long, help: ArgumentHelp("Evict entries unused for DURATION (s, m, h, d suffixes).", valueName: "duration"))
    var maxAge: String?

    @Flag(name: .long, help: "Print what would be freed without removing anything.")
    var dryRun = false

    func validate() throws {
        if let maxSize, Units.size(maxSize) == nil { throw ValidationError("bad --max-size '\(maxSize)': use a number with an optional K, M or G suffix") }
        if let maxAge, Units.seconds(maxAge) == nil { throw ValidationError("bad --max-age '\(maxAge)': use a number with an optional s, m, h or d suffix") }
    }

    func run() throws {
        let cache = try Resolver.openCache(home: Home(path: global.resolvedHome))
        let report = try cache.gc(maxSize: maxSize.flatMap(Units.size), maxAge: maxAge.flatMap(Units.seconds), dryRun: dryRun)
        print(report)
    }
}
