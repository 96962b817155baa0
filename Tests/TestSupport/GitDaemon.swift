import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real `git daemon` serving `basePath` on 127.0.0.1 at a free port, in its own process group so that
/// `stop()` kills it and every connection child. Always call `stop()` (e.g. `defer { daemon.stop() }`);
/// deinit stops it too. Its verbose log is kept, so tests can count the fetches it served.
public final class GitDaemon: @unchecked Sendable {
    public let basePath: String
    public let port: Int
    /// The daemon's process group and its log (`logDir/log`).
    private let process: ServerProcess

    private init(basePath: String, port: Int, pid: pid_t, logDir: TempDir) {
        self.basePath = basePath
        self.port = port
        self.process = ServerProcess(dir: logDir, pid: pid)
    }

    /// `git://127.0.0.1:PORT/<repo>` for a repository under the base path.
    public func url(_ repo: String) -> String { "git://127.0.0.1:\(port)/\(repo)" }

    /// Starts `git daemon --export-all --base-path=B --listen=127.0.0.1 --port=P --reuseaddr
    /// --enable=receive-pack --verbose --log-destination=stderr` (with `env` added to its environment)
    /// and waits until it accepts connections.
    public static func start(basePath: String, env: [String: String] = [:]) throws -> GitDaemon {
        var lastError = "no attempt"
        for _ in 0..<5 {
            let port = try freePort()
            let logDir = try TempDir("daemon")
            let args = ["git", "daemon", "--export-all", "--base-path=\(basePath)", "--listen=127.0.0.1", "--port=\(port)",
                        "--reuseaddr", "--enable=receive-pack", "--informative-errors", "--verbose",
                        "--log-destination=stderr", basePath]
            let pid = try spawnInOwnGroup(args, output: logDir.sub("log"), env: env)
            let daemon = GitDaemon(basePath: basePath, port: port, pid: pid, logDir: logDir)
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if canConnect(port: port) { return daemon }
                if !daemon.isRunning { break }
                usleep(20_000)
            }
            lastError = (try? String(contentsOfFile: logDir.sub("log"), encoding: .utf8)) ?? "?"
            daemon.stop()
        }
        throw TestFailure("git daemon did not start: \(lastError)")
    }

    private var isRunning: Bool { process.isRunning }

    /// Kills the daemon's process group (SIGTERM, then SIGKILL after 3 s) and reaps the daemon. Idempotent.
    public func stop() { process.stop() }

    /// The daemon's log so far.
    public func log() -> String { process.log() }

    /// How many upload-pack (clone/fetch) requests the daemon has served.
    public func uploadPackRequests() -> Int {
        log().components(separatedBy: "\n").filter { $0.contains("Request upload-pack") }.count
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
            bind(fd, sp, len) == 0 && getsockname(fd, sp, &len) == 0
        }
    }
    guard ok else { throw TestFailure("bind failed: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
public func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// posix_spawn of argv (PATH lookup) as the leader of a new process group, stdin from /dev/null, stdout
/// and stderr appended to `output` (or written to `stdout`/`stderr` when given), with `gitEnvironment`
/// and `env` added to the environment. The child starts as from a shell: default dispositions and an
/// empty signal mask, except `blockedSignals` (test threads run with most signals blocked, and a mask
/// is inherited across exec). The one spawner of the test helpers.
public func spawnInOwnGroup(_ argv: [String], output: String, stderr errorPath: String? = nil,
                            env: [String: String] = [:], blockedSignals: [Int32] = []) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    posix_spawnattr_setpgroup(&attr, 0)
    var mask = sigset_t()
    sigemptyset(&mask)
    for sig in blockedSignals { sigaddset(&mask, sig) }
    posix_spawnattr_setsigmask(&attr, &mask)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
    posix_spawnattr_setsigdefault(&attr, &defaults)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    if let errorPath {
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
    }
    var environment = ProcessInfo.processInfo.environment
    for (k, v) in gitEnvironment { environment[k] = v }
    for (k, v) in env { environment[k] = v }
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cArgs, cEnv)
    guard rc == 0 else { throw TestFailure("posix_spawnp \(argv[0]) failed: \(String(cString: strerror(rc)))") }
    return pid
}
