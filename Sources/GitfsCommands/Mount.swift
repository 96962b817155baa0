import ArgumentParser
import Doctor
import Foundation
import GitFS
import GitStore
import Logging
import RemoteCache
import Settings

/// `gitfs mount MOUNTPOINT`: mounts every repository of the home. Without `--foreground` it starts the
/// server in the background (its log goes to a file in the home) and returns once the mount answers.
struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount", abstract: "Mount every repository of the home at MOUNTPOINT.",
        discussion: "Only you can read the mount unless --allow-other is given. From /etc/fstab (type fuse.gitfs), mount.fuse3 runs 'gitfs HOME MOUNTPOINT -o OPTIONS' with options fetch-interval=D, cache-max-size=S, memory-budget=S, threads=N, remote-cache=URL, remote-cache-mode=M, remote-cache-order=O, allow_other, debug.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "An existing, empty directory.") var mountpoint: String
    @Flag(help: "Serve in the foreground, logging to standard error.") var foreground = false
    @Option(help: "FUSE worker threads.") var threads = 32
    @Option(parsing: .unconditional, help: "Keep the content cache under this size (K, M, G suffixes), enforced in the background.")
    var cacheMaxSize: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("What the server keeps in memory (caches, pending fills, streams) in all, e.g. 64M (at least 16M). Setting: memory-budget; env GITFS_MEMORY_BUDGET.", valueName: "size"))
    var memoryBudget: String?
    @Flag(help: "Log every request.") var debug = false
    @Flag(help: "Let other users read the mount (FUSE allow_other; as non-root it needs user_allow_other in /etc/fuse.conf). Setting: allow-other.")
    var allowOther = false
    @Option(parsing: .unconditional, help: ArgumentHelp("Fetch every mirror in the background this often (e.g. 15m; 0: never). Setting: fetch-interval; env GITFS_FETCH_INTERVAL.", valueName: "duration"))
    var fetchInterval: String?
    @Option(help: .hidden) var logFile: String?
    @OptionGroup var remote: RemoteCacheOptions

    func validate() throws {
        try Units.validateSize(cacheMaxSize, option: "--cache-max-size")
        try Units.validateSize(memoryBudget, option: "--memory-budget")
        try Units.validateDuration(fetchInterval, option: "--fetch-interval")
        if threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024") }
    }

    /// What this mount runs with: flags, then environment variables, then the home's settings.
    struct Resolved {
        var allowOther: Bool
        var fetchInterval: Int?
        var cacheMaxSize: String?
        var remoteCache: String?
        var memoryBudget: Int?
    }

    func resolve(_ home: Home) throws -> Resolved {
        let settings = try HomeSettings(home: home.path)
        func checked<T>(_ key: SettingKey, _ flag: String?, _ parse: (String) -> T?) throws -> T? {
            guard let text = settings.effective(key, flag: flag) else { return nil }
            guard let value = parse(text) else {
                throw MountError("the \(key.name) setting '\(key.display(text))' is not valid: fix it with 'gitfs config \(key.name) VALUE' or unset \(key.environment)")
            }
            return value
        }
        let interval = try checked(.fetchInterval, fetchInterval) { try? Units.seconds($0) }
        let allow = try checked(.allowOther, allowOther ? "true" : nil, SettingKey.bool) ?? false
        let size = try checked(.cacheMaxSize, cacheMaxSize) { text in (try? Units.size(text)).map { _ in text } }
        let remoteURL = try checked(.remoteCache, remote.remoteCache) { text in
            text.isEmpty ? nil : ((try? RemoteURL(text)).map { _ in text })
        }
        let budget = try MemoryBudgetSetting.bytes(settings, flag: memoryBudget)
        return Resolved(allowOther: allow, fetchInterval: interval.flatMap { $0 > 0 ? $0 : nil }, cacheMaxSize: size,
                        remoteCache: remoteURL, memoryBudget: budget)
    }

    func run() throws {
        let home = try global.checkedHome()
        let resolved = try resolve(home)
        if resolved.allowOther, geteuid() != 0, !FuseConf.userAllowOther() {
            throw MountError("--allow-other (or the allow-other setting) needs a line 'user_allow_other' in /etc/fuse.conf: add it as root, or mount without --allow-other ('gitfs config --unset allow-other')")
        }
        let (path, existing) = MountLookup.find(mountpoint)
        if let existing { throw CommandFailure(Self.occupied(path, by: existing)) }
        let target = try GitFSMounts.checkMountpoint(path)
        if MirrorStore(home: home).names().isEmpty {
            throw MountError("no repositories in \(home.reposPath): add one with 'gitfs clone URL' first")
        }
        if foreground {
            try serve(home: home, mountpoint: target, resolved)
        } else {
            try startInBackground(home: home, mountpoint: target, resolved)
        }
    }

    private func serve(home: Home, mountpoint: String, _ resolved: Resolved) throws {
        let level: Logger.Level = debug ? .debug : .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        Limits.raiseOpenFiles()
        Limits.capMallocArenas()
        var config = MountConfiguration(home: home, mountpoint: mountpoint)
        config.threads = threads
        config.cacheMaxSize = try resolved.cacheMaxSize.map(Units.size)
        config.memoryBudget = resolved.memoryBudget
        config.allowOther = resolved.allowOther
        config.fetchInterval = resolved.fetchInterval.map(Double.init)
        config.debug = debug
        config.logFile = logFile
        config.remoteCache = resolved.remoteCache
        config.remoteCacheMode = remote.remoteCacheMode ?? .read
        config.remoteCacheOrder = remote.remoteCacheOrder
        let mount = try GitFSMount(configuration: config, logger: Logger(label: "gitfs"))
        mount.installSignalHandlers()
        // The parent of a background mount waits for this line (in the log) before returning.
        FileHandle.standardError.write(Data("gitfs: mounted \(mountpoint)\n".utf8))
        mount.serve()
    }

    /// Re-runs this command with --foreground in a new session, output to a log file in the home, and
    /// waits until the mount answers or the server gives up.
    private func startInBackground(home: Home, mountpoint: String, _ resolved: Resolved) throws {
        let logDir = home.path + "/logs"
        try? FileManager.default.createDirectory(atPath: logDir, withIntermediateDirectories: true)
        let logPath = logDir + "/mount-" + mountpoint.replacingOccurrences(of: "/", with: "_") + ".log"
        var args = [CommandLine.arguments[0], "mount", mountpoint, "--home", home.path, "--foreground",
                    "--threads", "\(threads)", "--log-file", logPath]
        if let s = resolved.cacheMaxSize { args += ["--cache-max-size", s] }
        if let b = resolved.memoryBudget { args += ["--memory-budget", "\(b)"] }
        args += ["--fetch-interval", "\(resolved.fetchInterval ?? 0)s"]
        if resolved.allowOther { args.append("--allow-other") }
        if debug { args.append("--debug") }
        if let url = resolved.remoteCache {
            // Through the environment, not the command line: the URL may hold a password (ps shows argv).
            setenv(SettingKey.remoteCache.environment, url, 1)
            if let m = remote.remoteCacheMode { args += ["--remote-cache-mode", m.rawValue] }
            args += ["--remote-cache-order", remote.remoteCacheOrder.rawValue]
        }
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw MountError("cannot write the log file \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }
        let startOffset = lseek(logFD, 0, SEEK_END)
        let pid = try Spawn.detached(executable: Spawn.selfExecutable(), arguments: args, outputFD: logFD)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let m = GitFSMounts.mount(at: mountpoint), m.serverPID == pid,
               FileManager.default.fileExists(atPath: mountpoint + "/.gitfs/stats") {
                // Warnings the server printed while starting (a remote cache that refuses us) reach the user.
                for line in Self.warnings(in: logPath, from: startOffset) {
                    FileHandle.standardError.write(Data((line + "\n").utf8))
                }
                print("mounted \(mountpoint) (server pid \(pid), log \(logPath)); unmount with 'gitfs unmount \(mountpoint)'")
                return
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw MountError(Self.lastError(in: logPath, from: startOffset)
                    ?? "the mount server exited before the mount answered; see \(logPath)")
            }
            usleep(20_000)
        }
        kill(pid, SIGTERM)
        throw MountError("the mount did not answer within 60 seconds; see \(logPath)")
    }

    /// Why `path` cannot be mounted on: something is mounted there already (read from the mount table
    /// only, so a dead or hung mount is told apart without touching it).
    static func occupied(_ path: String, by mount: GitFSMountInfo) -> String {
        guard mount.fsType == "fuse.gitfs", let pid = mount.serverPID else {
            return "\(path) is already a \(mount.fsType) mount point: unmount it first"
        }
        if GitFSMounts.serverState(pid) == .gone {
            return "\(path) is a dead gitfs mount (its server, pid \(pid), is gone): unmount it first with 'gitfs unmount \(path)'"
        }
        return "\(path) is already a gitfs mount (server pid \(pid)): 'gitfs unmount \(path)' unmounts it"
    }

    /// The "gitfs: warning: " lines written to the log from `offset` on.
    static func warnings(in path: String, from offset: off_t) -> [String] {
        guard let data = FileManager.default.contents(atPath: path), data.count > Int(offset) else { return [] }
        return String(decoding: data[Int(offset)...], as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix("gitfs: warning: ") }.map(String.init)
    }

    static func lastError(in path: String, from offset: off_t) -> String? {
        guard let data = FileManager.default.contents(atPath: path), data.count > Int(offset) else { return nil }
        let text = String(decoding: data[Int(offset)...], as: UTF8.self)
        let prefix = "gitfs: error: "
        return text.split(separator: "\n").last { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }
}
