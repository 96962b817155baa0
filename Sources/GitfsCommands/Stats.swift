import ArgumentParser
import Foundation
import GitFS
import GitStore
import ReadModel

/// `gitfs stats [MOUNTPOINT] [--json]`: the counters of a running mount and the cache totals. A server
/// that does not answer within `--timeout` seconds is an error, never a hang.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Counters of a running mount and content cache totals.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "A gitfs mount point (default: the only gitfs mount of the home, if any).") var mountpoint: String?
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Seconds to wait for the mount to answer.") var timeout = 5

    func validate() throws {
        if timeout < 1 { throw ValidationError("--timeout must be at least 1 second") }
    }

    func run() throws {
        var fields: [String: Any] = [:]
        let target: GitFSMountInfo?
        if let mountpoint {
            let (path, found) = MountLookup.find(mountpoint)
            guard let found, found.fsType == "fuse.gitfs", found.serverPID != nil else {
                throw CommandFailure("\(path) is not a gitfs mount")
            }
            target = found
        } else {
            let mounts = GitFSMounts.all().filter { serves(global.resolvedHome, $0) }
            target = mounts.count == 1 ? mounts[0] : nil
        }
        if let target {
            fields = try read(target)
        } else {
            let home = try global.checkedHome()
            let totals = CacheAccess.exists(home) ? try Resolver.openCache(home: home).totals() : nil
            fields = ["cache_entries": totals?.entries ?? 0, "cache_bytes": totals?.diskBytes ?? 0,
                      "cache_content_bytes": totals?.contentBytes ?? 0]
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for key in fields.keys.sorted() { print("\(key): \(fields[key]!)") }
        }
    }

    /// Whether the server of `mount` serves `home`, judged from its command line alone (`--home DIR`, as
    /// the background start always passes it); a server started without `--home` counts as serving the
    /// home of a command given none.
    private func serves(_ home: String, _ mount: GitFSMountInfo) -> Bool {
        guard let pid = mount.serverPID,
              let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = raw.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        var serverHome: String?
        for (i, arg) in args.enumerated() {
            if arg == "--home", i + 1 < args.count { serverHome = args[i + 1] }
            if arg.hasPrefix("--home=") { serverHome = String(arg.dropFirst(7)) }
        }
        guard let serverHome else { return global.home == nil }
        let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? "/"
        return MountLookup.normalized(serverHome.hasPrefix("/") ? serverHome : cwd + "/" + serverHome) == MountLookup.normalized(home)
    }

    /// Reads `.gitfs/stats` of the mount on another thread and waits at most `timeout` seconds: a read
    /// from a hung server cannot be cancelled, so on time-out that thread is left blocked and the
    /// command fails at once (exiting the process ends it).
    private func read(_ mount: GitFSMountInfo) throws(CommandFailure) -> [String: Any] {
        let path = mount.mountpoint
        let pid = mount.serverPID ?? 0
        if GitFSMounts.serverState(pid) == .gone {
            throw CommandFailure("the server of \(path) (pid \(pid)) is not running: 'gitfs unmount \(path)' clears the dead mount")
        }
        let result = StatsRead()
        let thread = Thread { result.finish(FileManager.default.contents(atPath: path + "/.gitfs/stats")) }
        thread.start()
        guard let answer = result.wait(seconds: Double(timeout)) else {
            let state = GitFSMounts.serverState(pid) == .stopped ? "; the server (pid \(pid)) is stopped: 'kill -CONT \(pid)' resumes it" : ""
            CommandLineError.failNow(CommandFailure("\(path) did not answer within \(timeout) seconds\(state); 'gitfs unmount \(path)' clears a hung mount"))
        }
        guard let data = answer, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CommandFailure("cannot read \(path)/.gitfs/stats: is the server alive? ('gitfs unmount \(path)' clears a dead mount)")
        }
        return object
    }
}

/// The outcome of one read, handed from the reading thread to the waiting one. Thread-safe.
private final class StatsRead: @unchecked Sendable {
    private let condition = NSCondition()
    private var done = false
    private var data: Data?

    func finish(_ data: Data?) {
        condition.lock()
        self.data = data
        done = true
        condition.signal()
        condition.unlock()
    }

    /// The data read (nil inside when the read failed), or nil when `seconds` passed first.
    func wait(seconds: Double) -> Data?? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !done {
            if !condition.wait(until: deadline) { break }
        }
        return done ? .some(data) : nil
    }
}
