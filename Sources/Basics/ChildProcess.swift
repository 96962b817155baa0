#if canImport(Glibc)
import Glibc
#endif

/// One program to start with `posix_spawn(3)` — the one way gitfs starts processes (git, fusermount3,
/// the detached mount server). The child always gets an empty signal mask and the default actions for
/// SIGTERM, SIGINT, SIGHUP and SIGPIPE, so it can be stopped even when the parent blocks or ignores
/// them. A value; `spawn` is thread-safe (it touches no shared state but the environment it reads).
public struct ChildProcess: Sendable {
    /// Where one of the child's descriptors comes from.
    public enum Redirect: Sendable {
        /// `open(path, flags, mode)` in the child.
        case open(String, flags: Int32, mode: mode_t = 0)
        /// `dup2(fd, target)` of the parent's `fd`.
        case duplicate(Int32)
    }

    /// Which process group or session the child joins.
    public enum Grouping: Sendable {
        /// The parent's.
        case inherit
        /// A new process group led by the child (`POSIX_SPAWN_SETPGROUP`), so `kill(-pid, …)` reaches
        /// every process it starts.
        case newProcessGroup
        /// A new session (`POSIX_SPAWN_SETSID`), detached from the parent's terminal.
        case newSession
    }

    /// The program: a path, or a name looked up on PATH when `searchPath` is set (`posix_spawnp`).
    public var executable: String
    /// argv[1...]; argv[0] is `executable`.
    public var arguments: [String]
    /// The child's whole environment; nil inherits the parent's.
    public var environment: [String: String]?
    /// Descriptors set up in the child, in order (`posix_spawn_file_actions_*`).
    public var redirects: [(fd: Int32, Redirect)] = []
    public var grouping: Grouping = .inherit
    public var searchPath = false

    public init(_ executable: String, arguments: [String] = [], environment: [String: String]? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
    }

    /// Starts the child (`posix_spawn`/`posix_spawnp`) and returns its pid; the caller must reap it
    /// (`ChildProcess.wait`).
    public func spawn() throws(Errno) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, redirect) in redirects {
            switch redirect {
            case .open(let path, let flags, let mode): posix_spawn_file_actions_addopen(&actions, fd, path, flags, mode)
            case .duplicate(let from): posix_spawn_file_actions_adddup2(&actions, from, fd)
            }
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        switch grouping {
        case .inherit: break
        case .newProcessGroup:
            posix_spawnattr_setpgroup(&attr, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        case .newSession: flags |= 0x80  // POSIX_SPAWN_SETSID (glibc ≥ 2.26; not exported to Swift)
        }
        posix_spawnattr_setflags(&attr, Int16(flags))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc: Int32
        if let environment {
            let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { envp.forEach { free($0) } }
            rc = searchPath ? posix_spawnp(&pid, executable, &actions, &attr, argv, envp)
                            : posix_spawn(&pid, executable, &actions, &attr, argv, envp)
        } else {
            rc = searchPath ? posix_spawnp(&pid, executable, &actions, &attr, argv, environ)
                            : posix_spawn(&pid, executable, &actions, &attr, argv, environ)
        }
        guard rc == 0 else { throw Errno(rc) }
        return pid
    }

    /// `waitpid(pid, &status, 0)`, EINTR retried: the raw wait status, or nil when waitpid failed.
    public static func wait(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return nil }
        }
        return status
    }
}
