import ArgumentParser
import Basics
import Foundation
import GitStore

/// `gitfs list [--json]`: the mirrors of the home.
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the repositories: name, URL, default branch, branches, tags, last fetch, size on disk, blobless filter and blobs fetched.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print a JSON array.") var json = false

    func run() throws {
        let infos = MirrorStore(home: try global.checkedHome()).list()
        if json {
            let iso = ISO8601DateFormatter()
            let objects: [[String: Any]] = infos.map { i in
                ["name": i.name, "url": Credentials.redacted(i.url), "default_branch": i.defaultBranch ?? NSNull(),
                 "branches": i.branchCount, "tags": i.tagCount,
                 "last_fetch": i.lastFetch.map { iso.string(from: $0) } ?? NSNull(), "size_bytes": i.sizeOnDisk,
                 "damage": i.damage ?? NSNull(),
                 "filter": i.filter ?? NSNull(), "fetched_blobs": i.filter == nil ? NSNull() : i.fetchedBlobs]
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let fmt = DateFormatter()
        fmt.dateFormat = "yyyy-MM-dd HH:mm"
        var rows = [["NAME", "DEFAULT", "BRANCHES", "TAGS", "LAST FETCH", "SIZE", "BLOBS", "URL"]]
        for i in infos {
            rows.append([i.name, i.defaultBranch ?? "-", String(i.branchCount), String(i.tagCount),
                         i.lastFetch.map { fmt.string(from: $0) } ?? "-", ByteCount.format(i.sizeOnDisk, style: .short),
                         i.filter.map { "\($0), \(i.fetchedBlobs) fetched" } ?? "all", Credentials.redacted(i.url)])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
            print(cells.joined(separator: "  "))
        }
        for i in infos {
            if let damage = i.damage { FileHandle.standardError.write(Data("gitfs: warning: \(damage)\n".utf8)) }
        }
        if infos.isEmpty {
            FileHandle.standardError.write(Data("no repositories in \(global.resolvedHome); add one with 'gitfs clone URL'\n".utf8))
        }
    }
}

