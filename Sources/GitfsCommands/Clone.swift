import ArgumentParser
import Foundation
import GitStore

/// `gitfs clone URL [NAME]`: mirror a repository into the home.
struct Clone: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Mirror a repository (all branches and tags) into the home.",
        discussion: "URL: a local path, file://, git://, https:// or ssh://. NAME defaults to the URL's last component without .git.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The repository to mirror.") var url: String
    @Argument(help: "The name of the mirror (letters, digits, '.', '_', '-').") var name: String?
    @Option(help: ArgumentHelp("A blobless mirror: 'blob:none' (commits and trees only) or 'blob:limit=SIZE' (blobs up to SIZE come with the clone); the other blobs are fetched from the origin on first use, in batches. Needs git 2.25 or later and a server that allows filters.", valueName: "FILTER"))
    var filter: String?

    func validate() throws {
        if let filter { do { _ = try PartialFilter(filter) } catch { throw ValidationError(error.description) } }
    }

    func run() throws {
        let store = MirrorStore(home: try global.checkedHome())
        let progress: (@Sendable (TransferProgress) -> Void)? = isatty(2) == 1 ? ProgressLine.clone() : nil
        let filter = try self.filter.map { text throws(GitStoreError) in try PartialFilter(text) }
        // With git (the usual transfer) git's own progress lines show; libgit2's count only without git.
        let info = try store.clone(url: url, name: name, filter: filter, progress: progress)
        if progress != nil, GitCommand.executable == nil { FileHandle.standardError.write(Data("\n".utf8)) }
        print("cloned \(info.url) as '\(info.name)': \(info.branchCount) branches, \(info.tagCount) tags, default branch \(info.defaultBranch ?? "(none)")")
    }
}

/// Transfer progress on standard error, redrawn in place at most ten times a second.
enum ProgressLine {
    static func clone() -> @Sendable (TransferProgress) -> Void {
        let start = Date()
        let last = LockedDate()
        return { p in
            let now = Date()
            let done = p.receivedObjects == p.totalObjects && p.indexedDeltas == p.totalDeltas
            guard done || last.advance(to: now, minimum: 0.1) else { return }
            let secs = max(now.timeIntervalSince(start), 0.001)
            let mib = Double(p.receivedBytes) / 1_048_576
            let line = String(format: "\rReceiving objects: %d/%d, %.1f MiB, %.1f MiB/s; deltas %d/%d   ",
                              p.receivedObjects, p.totalObjects, mib, mib / secs, p.indexedDeltas, p.totalDeltas)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}

/// A time stamp advanced under a lock (progress callbacks may come from any thread).
final class LockedDate: @unchecked Sendable {
    private let lock = NSLock()
    private var value = Date.distantPast

    func advance(to now: Date, minimum: TimeInterval) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard now.timeIntervalSince(value) >= minimum else { return false }
        value = now
        return true
    }
}
