// GitCommand: running the `git` command for the jobs libgit2 1.5.1 cannot do (partial clones).
import Basics
import Foundation
import Glibc

/// One run of the `git` command: arguments, extra environment, optional standard input, a time-out and a
/// cancellation check. The process runs in its own process group (so a time-out or cancellation kills git
/// and every helper it started: index-pack, remote-http, upload-pack) and is always reaped before `run`
/// returns. Standard input comes from a temporary file (no pipe to deadlock on), standard output and
/// standard error go to temporary files read back bounded (`maxOutput`; stderr keeps its last line for the
/// error). Never prompts for credentials (`GIT_TERMINAL_PROMPT=0`). A value; thread-safe.
public struct GitCommand: Sendable {
    /// Why a run failed.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// git is not installed (or not on PATH).
        case notInstalled
        /// git exited with `status`; `message` is the last line it wrote to standard error.
        case failed(status: Int32, message: String)
        /// Killed after `seconds` without finishing.
        case timedOut(seconds: Double)
        /// Killed because the caller cancelled.
        case cancelled
        /// The process could not be started or its files made.
        case io(String)

        public var description: String {
            switch self {
            case .notInstalled: return "the git command is not installed (blobless mirrors need git 2.25 or later)"
            case .failed(let status, let message): return message.isEmpty ? "git exited with status \(status)" : message
            case .timedOut(let s): return "git did not finish within \(Int(s)) s and was stopped"
            case .cancelled: return "cancelled"
            case .io(let m): return m
            }
        }
    }

    public var arguments: [String]
    public var environment: [String: String] = [:]
    public var input: Data?
    public var timeout: Duration
    public var maxOutput = 16 << 20
    /// Copies git's standard error to ours while it runs (its progress lines), leaving out its
    /// "fatal:"/"error:" lines (the caller reports the failure in its own words).
    public var echoProgress = false

    public init(_ arguments: [String], timeout: Duration = .seconds(600)) {
        self.arguments = arguments
        self.timeout = timeout
    }

    /// Runs git to the end (or the time-out, or `cancelled` returning true, polled every 20 ms) and
    /// returns its standard output; a non-zero exit throws `.failed` with git's last stderr line.
    public func run(cancelled: (@Sendable () -> Bool)? = nil) throws(Failure) -> Data {
        guard let git = Self.executable else { throw .notInstalled }
        let dir = NSTemporaryDirectory() + "gitfs-git-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        guard mkdir(dir, 0o700) == 0 else { throw .io("cannot create \(dir): \(String(cString: strerror(errno)))") }
        defer { _ = FileSystem.removeTree(dir) }
        let inPath = dir + "/in", outPath = dir + "/out", errPath = dir + "/err"
        guard FileManager.default.createFile(atPath: inPath, contents: input ?? Data()) else {
            throw .io("cannot write \(inPath)")
        }
        var env = ProcessInfo.processInfo.environment
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GIT_ASKPASS"] = "/bin/false"
        env["LC_ALL"] = "C"
        // git ≥ 2.44: no lazy fetch of a missing object behind our back (gitfs asks for what it needs).
        env["GIT_NO_LAZY_FETCH"] = "1"
        for (k, v) in environment { env[k] = v }
        var child = ChildProcess(git, arguments: arguments, environment: env)
        child.redirects = [(0, .open(inPath, flags: O_RDONLY)),
                           (1, .open(outPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)),
                           (2, .open(errPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600))]
        child.grouping = .newProcessGroup
        let pid: pid_t
        do { pid = try child.spawn() } catch { throw .io("cannot start git: \(error.message)") }

        let deadline = MonotonicTime.now + timeout
        var status: Int32 = 0
        var stop: Failure?
        var echo = echoProgress ? ProgressEcho(path: errPath) : nil
        defer { echo?.finish() }
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            echo?.pump()
            if r == pid { break }
            if r < 0, errno != EINTR { status = -1; break }
            if stop == nil {
                if cancelled?() == true { stop = .cancelled } else if MonotonicTime.now >= deadline {
                    stop = .timedOut(seconds: Double(timeout.components.seconds))
                }
                if stop != nil {
                    kill(-pid, SIGKILL)
                    while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                    break
                }
            }
            usleep(5_000)
        }
        // Helpers git left behind in its group (a killed run, or a helper that outlived git) go too.
        kill(-pid, SIGKILL)
        if let stop { throw stop }
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard code == 0 else { throw .failed(status: code, message: Self.lastLine(of: errPath)) }
        return Self.head(of: outPath, max: maxOutput)
    }

    /// The first `max` bytes of a file.
    private static func head(of path: String, max: Int) -> Data {
        guard let h = FileHandle(forReadingAtPath: path) else { return Data() }
        defer { try? h.close() }
        return (try? h.read(upToCount: max)) ?? Data()
    }

    /// The last non-empty line of a file's last 4 KiB, without git's "fatal: " prefix.
    private static func lastLine(of path: String) -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? h.close() }
        let size = (try? h.seekToEnd()) ?? 0
        try? h.seek(toOffset: size > 4096 ? size - 4096 : 0)
        let text = String(decoding: (try? h.readToEnd()) ?? Data(), as: UTF8.self)
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        // git's most telling line is its "fatal:" one, often followed by nothing useful.
        let telling = { (l: String) in l.hasPrefix("fatal: ") || l.hasPrefix("error: ") }
        var at = lines.lastIndex(where: telling) ?? (lines.count - 1)
        // "Could not read from remote repository." only says that the line before it gave the reason.
        if at > 0, lines[at].hasSuffix("Could not read from remote repository."),
           let reason = lines[..<at].lastIndex(where: telling) { at = reason }
        guard at >= 0 else { return "" }
        var line = lines[at]
        // "unable to connect to host:" is followed by the reason on the next line.
        if line.hasSuffix(":"), at + 1 < lines.count { line += " " + lines[at + 1] }
        for prefix in ["fatal: ", "error: "] where line.hasPrefix(prefix) { return String(line.dropFirst(prefix.count)) }
        return line
    }

    /// The installed git's version ("git version 2.39.5" → (2, 39)), or nil when git is missing.
    public static func version() -> (major: Int, minor: Int)? {
        guard let out = try? GitCommand(["--version"], timeout: .seconds(10)).run() else { return nil }
        let words = String(decoding: out, as: UTF8.self).split(separator: " ")
        guard words.count >= 3 else { return nil }
        let parts = words[2].split(separator: ".").compactMap { Int($0.prefix(while: \.isNumber)) }
        return parts.count >= 2 ? (parts[0], parts[1]) : nil
    }

    /// The `git` executable found on PATH (then /usr/bin), or nil.
    public static let executable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let dirs: [Substring] = path.split(separator: ":") + ["/usr/bin"]
        for dir in dirs where !dir.isEmpty {
            let candidate = "\(dir)/git"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }()
}

/// Copies the lines git writes to a file to standard error as they come (split at "\r" and "\n", so
/// progress redraws pass through), credentials masked, except its "fatal:"/"error:" lines. Only the
/// running thread uses it.
private struct ProgressEcho {
    private let fd: Int32
    private var offset = 0
    private var pending: [UInt8] = []

    init(path: String) { fd = open(path, O_RDONLY | O_CLOEXEC) }

    mutating func pump() {
        guard fd >= 0 else { return }
        var buf = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard n > 0 else { break }
            offset += n
            pending += buf[0..<n]
        }
        var out: [UInt8] = []
        while let end = pending.firstIndex(where: { $0 == 0x0d || $0 == 0x0a }) {
            let line = Array(pending[...end])
            pending.removeFirst(end + 1)
            let text = String(decoding: line, as: UTF8.self)
            if !text.hasPrefix("fatal: ") && !text.hasPrefix("error: ") { out += Array(Credentials.redacted(text).utf8) }
        }
        if !out.isEmpty { out.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) } }
    }

    mutating func finish() {
        pump()
        if fd >= 0 { close(fd) }
    }
}
