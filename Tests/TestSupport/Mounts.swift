import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Helpers for tests that mount a gitfs home with the real binary: the mounted home (always unmounted,
// with a watchdog that aborts the FUSE connection so no test can hang), child processes with deadlines,
// and small readers of /proc.

// MARK: - Mount table

/// One gitfs-relevant line of /proc/self/mountinfo.
public struct MountLine: Sendable, Equatable {
    public let mountpoint: String
    public let fsType: String
    public let source: String
    /// Device minor: the FUSE connection is /sys/fs/fuse/connections/<minor>.
    public let minor: Int
    /// The server pid when the source is `gitfs:<pid>`.
    public var serverPID: pid_t? { source.hasPrefix("gitfs:") ? pid_t(source.dropFirst(6)) : nil }
}

/// The whole text of a /proc file, read to its end: `String(contentsOfFile:)` keeps only the first read
/// (about 4 KiB) of a file whose size is reported as 0, so a longer mountinfo or maps loses lines.
public func procText(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    return (try? handle.readToEnd()).map { String(decoding: $0 ?? Data(), as: UTF8.self) }
}

/// The mount at exactly `path` in /proc/self/mountinfo (the last one if stacked); never touches the mount.
public func mountLine(at path: String) -> MountLine? {
    guard let text = procText("/proc/self/mountinfo") else { return nil }
    var found: MountLine?
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: false)
        guard f.count >= 10, let dash = f.firstIndex(of: "-"), dash + 2 < f.count else { continue }
        guard unescapeMountField(String(f[4])) == path else { continue }
        let dev = f[2].split(separator: ":")
        found = MountLine(mountpoint: path, fsType: String(f[dash + 1]), source: unescapeMountField(String(f[dash + 2])),
                          minor: dev.count == 2 ? Int(dev[1]) ?? -1 : -1)
    }
    return found
}

/// Whether /proc/mounts lists `path` as a mount point.
public func isMountPoint(_ path: String) -> Bool { mountLine(at: path) != nil }

private func unescapeMountField(_ s: String) -> String {
    guard s.contains("\\") else { return s }
    var out: [UInt8] = []
    let u = Array(s.utf8)
    var i = 0
    while i < u.count {
        if u[i] == 0x5C, i + 3 < u.count, let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
            out.append(v); i += 4
        } else {
            out.append(u[i]); i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Writes 1 to /sys/fs/fuse/connections/<minor>/abort: every pending and future request fails.
public func abortFuseConnection(minor: Int) {
    let fd = open("/sys/fs/fuse/connections/\(minor)/abort", O_WRONLY)
    guard fd >= 0 else { return }
    _ = write(fd, "1", 1)
    close(fd)
}

/// Whether `pid` exists (and is not a zombie).
public func processAlive(_ pid: pid_t) -> Bool {
    guard kill(pid, 0) == 0 || errno == EPERM else { return false }
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    if let close = stat.lastIndex(of: ")") {
        let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
        return state != "Z" && state != "X"
    }
    return true
}

/// VmRSS of `pid` in bytes, from /proc/<pid>/status.
public func residentBytes(_ pid: pid_t) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// `echo N > /proc/sys/vm/drop_caches` (3: page cache, dentries and inodes; the kernel then FORGETs).
public func dropKernelCaches(_ level: Int = 3) {
    sync()
    let fd = open("/proc/sys/vm/drop_caches", O_WRONLY)
    guard fd >= 0 else { return }
    let s = "\(level)\n"
    _ = s.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

/// Polls `condition` every 20 ms for up to `seconds`; returns whether it became true.
public func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

// MARK: - Child processes with deadlines

/// A child process in its own process group (stdin /dev/null, stdout+stderr to a file), killed with its
/// group by `kill()`/deinit; `wait(timeout:)` reaps it. Thread-safe.
public final class Child: @unchecked Sendable {
    public let pid: pid_t
    public let argv: [String]
    private let outputDir: TempDir
    private let state = Mutex<Int32?>(nil)   // exit status once reaped (WEXITSTATUS, or 128+signal)

    /// Starts `argv` (PATH lookup) now.
    public init(_ argv: [String]) throws {
        self.argv = argv
        outputDir = try TempDir("child")
        pid = try spawnInOwnGroup(argv, output: outputDir.sub("out"))
    }

    /// Everything the child wrote so far.
    public var output: String { (try? String(contentsOfFile: outputDir.sub("out"), encoding: .utf8)) ?? "" }

    /// Reaps without blocking; the status when it has exited.
    public func poll() -> Int32? {
        state.withLock { s in
            if let s { return s }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            guard r == pid else { return nil }
            let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            s = code
            return code
        }
    }

    /// Waits up to `timeout` seconds; the exit status, or nil when still running.
    public func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = poll() { return s }
            usleep(5_000)
        }
        return poll()
    }

    /// SIGKILL to the whole group, then reap.
    public func kill() {
        if poll() == nil {
            Glibc.kill(-pid, SIGKILL)
            _ = wait(timeout: 10)
        }
    }

    deinit { kill() }
}

/// Runs argv (PATH lookup) in its own process group with stdout and stderr captured in files, polling
/// for its exit; after `seconds` the whole group is killed and the status is 124. Uses posix_spawn and
/// waitpid directly (not Foundation.Process), so a child that exits is always noticed. The child starts
/// as from a shell: default dispositions and an empty signal mask, except `blockedSignals` (test threads
/// of this process run with most signals blocked, and a mask is inherited across exec).
@discardableResult
public func runBounded(_ argv: [String], seconds: Double = 60, env: [String: String] = [:],
                       blockedSignals: [Int32] = []) throws -> RunResult {
    let dir = try TempDir("run")
    let outPath = dir.sub("out"), errPath = dir.sub("err")
    let pid = try spawnInOwnGroup(argv, output: outPath, stderr: errPath, env: env, blockedSignals: blockedSignals)
    let deadline = Date().addingTimeInterval(seconds)
    var code: Int32 = -1
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f); break }
        if r < 0 && errno != EINTR { break }   // reaped elsewhere: status unknown (-1)
        if Date() >= deadline {
            kill(-pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            code = 124
            break
        }
        usleep(2_000)
    }
    let out = (try? Data(contentsOf: URL(fileURLWithPath: outPath))) ?? Data()
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return RunResult(status: code, stdout: Array(out), stderr: err)
}

// MARK: - Mounted home

/// A temporary gitfs home with repositories cloned by the real binary, mounted in the background with the
/// real binary at `mountpoint`. `unmount()` (call it in a defer; deinit calls it too) always leaves no
/// mount behind: `gitfs unmount`, then `umount -l` plus a connection abort, then SIGKILL of the server.
/// While mounted, a watchdog aborts the FUSE connection after `watchdogSeconds`, so a hung request fails
/// the test instead of hanging it. Not thread-safe to unmount from two threads at once.
public final class MountedHome: @unchecked Sendable {
    public let dir: TempDir
    public let home: String
    public let mountpoint: String
    public private(set) var serverPID: pid_t?
    public private(set) var minor: Int = -1
    /// Added to the environment of every gitfs this home runs (e.g. credentials of a remote cache).
    public var environment: [String: String] = [:]
    private final class Watchdog: Sendable {
        let generation = Atomic<Int>(0)
        let fired = Atomic<Bool>(false)
    }
    private let watchdog = Watchdog()

    public init(_ label: String = "home") throws {
        dir = try TempDir(label)
        home = dir.sub("home")
        mountpoint = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
    }

    /// `gitfs clone SOURCE NAME` into this home.
    public func clone(_ source: String, as name: String) throws {
        let r = try gitfs(["clone", source, name])
        guard r.status == 0 else { throw TestFailure("gitfs clone \(source) \(name) exited \(r.status): \(r.stderr)") }
    }

    /// `gitfs ARGS` in this home.
    @discardableResult
    public func gitfs(_ args: String...) throws -> RunResult { try gitfs(args) }

    /// `gitfs ARGS[0] --home HOME ARGS[1...]`, bounded to `seconds`.
    @discardableResult
    public func gitfs(_ args: [String], seconds: Double = 120) throws -> RunResult {
        try runBounded([gitfsBinary, args[0], "--home", home] + args.dropFirst(), seconds: seconds, env: environment)
    }

    /// `gitfs mount MOUNTPOINT` (background) and arms the watchdog. Throws when it does not exit 0.
    public func mount(extra: [String] = [], watchdogSeconds: Double = 240, blockedSignals: [Int32] = []) throws {
        let r = try runBounded([gitfsBinary, "mount", mountpoint, "--home", home] + extra, seconds: 90, env: environment,
                               blockedSignals: blockedSignals)
        guard r.status == 0 else { throw TestFailure("gitfs mount exited \(r.status): \(r.stderr)") }
        guard let line = mountLine(at: mountpoint), let pid = line.serverPID else {
            throw TestFailure("gitfs mount exited 0 but \(mountpoint) is not a gitfs mount")
        }
        serverPID = pid
        minor = line.minor
        armWatchdog(seconds: watchdogSeconds)
    }

    /// (Re)starts the watchdog: after `seconds` it aborts the connection and detaches the mount.
    public func armWatchdog(seconds: Double) {
        let generation = watchdog.generation.add(1, ordering: .relaxed).newValue
        let minor = self.minor, mp = mountpoint
        let w = watchdog
        Thread.detachNewThread {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if w.generation.load(ordering: .relaxed) != generation { return }
                usleep(100_000)
            }
            guard w.generation.load(ordering: .relaxed) == generation else { return }
            w.fired.store(true, ordering: .relaxed)
            FileHandle.standardError.write(Data("watchdog: aborting the FUSE connection of \(mp) after \(seconds) s\n".utf8))
            abortFuseConnection(minor: minor)
            umount2(mp, Int32(MNT_DETACH))
        }
    }

    /// Whether the watchdog had to abort the mount.
    public var watchdogHasFired: Bool { watchdog.fired.load(ordering: .relaxed) }

    /// Disarms the watchdog without unmounting.
    public func disarmWatchdog() { watchdog.generation.add(1, ordering: .relaxed) }

    /// Forgets the server (e.g. after the test killed it itself and mounted again).
    public func adoptCurrentMount() {
        if let line = mountLine(at: mountpoint) { serverPID = line.serverPID; minor = line.minor }
    }

    /// `MOUNTPOINT/rel`.
    public func path(_ rel: String) -> String { rel.isEmpty ? mountpoint : mountpoint + "/" + rel }

    /// The log file of the background server.
    public var serverLog: String {
        let logs = home + "/logs"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: logs)) ?? []
        return files.compactMap { try? String(contentsOfFile: logs + "/" + $0, encoding: .utf8) }.joined(separator: "\n")
    }

    /// The integer fields of `MOUNTPOINT/.gitfs/stats` (read by a child process with a deadline).
    public func stats() throws -> [String: Int] {
        let r = try runBounded(["cat", path(".gitfs/stats")], seconds: 20)
        guard r.status == 0 else { throw TestFailure("cat .gitfs/stats exited \(r.status): \(r.stderr)") }
        return try Self.integerFields(Data(r.stdout))
    }

    /// The fields of a JSON object whose values are written as plain integers (no fraction, no exponent),
    /// checked on the text itself; throws when the text is not a JSON object.
    public static func integerFields(_ data: Data) throws -> [String: Int] {
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestFailure("stats are not a JSON object: \(String(decoding: data, as: UTF8.self))")
        }
        let text = String(decoding: data, as: UTF8.self)
        var out: [String: Int] = [:]
        for key in object.keys {
            guard let r = text.range(of: "\"\(key)\"") else { continue }
            var rest = text[r.upperBound...].drop { $0 == " " || $0 == "\n" || $0 == "\t" }
            guard rest.first == ":" else { continue }
            rest = rest.dropFirst().drop { $0 == " " || $0 == "\n" || $0 == "\t" }
            let number = rest.prefix { $0 == "-" || $0.isNumber }
            let after = rest.dropFirst(number.count).first
            if let v = Int(number), after == nil || after == "," || after == "}" || after == "\n" || after == " " {
                out[key] = v
            }
        }
        return out
    }

    /// Unmounts whatever is mounted at the mountpoint, by every means needed, and makes sure the server
    /// is gone. Idempotent; never throws; never hangs (each step is bounded).
    public func unmount() {
        disarmWatchdog()
        if isMountPoint(mountpoint) {
            _ = try? runBounded([gitfsBinary, "unmount", mountpoint, "--home", home], seconds: 30)
        }
        for _ in 0..<5 {
            guard let line = mountLine(at: mountpoint) else { break }
            abortFuseConnection(minor: line.minor)
            _ = try? runBounded(["umount", "-l", mountpoint], seconds: 10)
            _ = waitFor(seconds: 1) { !isMountPoint(mountpoint) }
        }
        if let pid = serverPID {
            if !waitFor(seconds: 5, { !processAlive(pid) }) {
                kill(pid, SIGKILL)
                _ = waitFor(seconds: 5, { !processAlive(pid) })
            }
        }
        serverPID = nil
    }

    deinit { unmount() }
}

// MARK: - Reading files

/// Reads a whole file with open/read, the errno of the first failure otherwise.
public func readWholeFile(_ path: String) -> Result<[UInt8], POSIXError> {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO))
        }
        if n == 0 { return .success(out) }
        out.append(contentsOf: buffer[0..<n])
    }
}

/// Reads `path` in chunks and compares with `expected` as it goes; nil when equal, else what differed.
public func compareFile(_ path: String, with expected: [UInt8], chunk: Int = 128 << 10) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return "open \(path): \(String(cString: strerror(errno)))" }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: chunk)
    var offset = 0
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return "read \(path) at \(offset): \(String(cString: strerror(errno)))"
        }
        if n == 0 { return offset == expected.count ? nil : "\(path): \(offset) bytes, expected \(expected.count)" }
        if offset + n > expected.count { return "\(path): more than \(expected.count) bytes" }
        let same = buffer.withUnsafeBytes { b in
            expected.withUnsafeBytes { e in memcmp(b.baseAddress!, e.baseAddress! + offset, n) == 0 }
        }
        if !same { return "\(path): wrong bytes in [\(offset), \(offset + n))" }
        offset += n
    }
}
