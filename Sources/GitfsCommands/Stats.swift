import ArgumentParser
import Foundation
import GitFS
import GitStore
import ReadModel

/// `gitfs stats [MOUNTPOINT] [--json]`: the counters of a running mount and the cache totals.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Counters of a running mount and content cache totals.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "A gitfs mount point (default: the only gitfs mount, if any).") var mountpoint: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        var fields: [String: Any] = [:]
        let target: String? = mountpoint.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? {
            let mounts = GitFSMounts.all()
            return mounts.count == 1 ? mounts[0].mountpoint : nil
        }()
        if let target {
            guard GitFSMounts.mount(at: target)?.serverPID != nil else { throw MountError("\(target) is not a gitfs mount") }
            guard let data = FileManager.default.contents(atPath: target + "/.gitfs/stats"),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw MountError("cannot read \(target)/.gitfs/stats: is the server alive? ('gitfs unmount \(target)' clears a dead mount)")
            }
            fields = object
        } else {
            let cache = try Resolver.openCache(home: Home(path: global.resolvedHome))
            let totals = cache.totals()
            fields = ["cache_entries": totals.entries, "cache_bytes": totals.diskBytes, "cache_content_bytes": totals.contentBytes]
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for key in fields.keys.sorted() { print("\(key): \(fields[key]!)") }
        }
    }
}
