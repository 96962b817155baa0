import ArgumentParser
import ContentCache
import Foundation
import GitStore
import ReadModel

/// `gitfs verify`: checks every cache entry against its object id; exit 1 while bad entries remain.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every cache entry against its object id.",
        discussion: "Exits 1 when bad entries remain; --repair deletes them (they are refilled from the mirrors on next use).")
    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Delete the bad entries.")
    var repair = false

    func run() throws {
        let home = try global.checkedHome()
        guard CacheAccess.exists(home) else {
            print("checked 0 entries: no content cache in \(home.path) yet")
            return
        }
        let cache = try Resolver.openCache(home: home)
        let report = try cache.verify(repair: repair)
        for bad in report.bad { print("bad: \(bad)") }
        print(report)
        if report.remaining > 0 {
            FileHandle.standardError.write(Data("gitfs: error: \(report.remaining) bad cache entries remain; run 'gitfs verify --repair' to delete them\n".utf8))
            throw ExitCode(1)
        }
    }
}
