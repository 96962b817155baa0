import Basics
import Foundation
import CMalloc
import GitFS

/// Starting helper processes.
enum Spawn {
    /// This executable's path (/proc/self/exe).
    static func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// posix_spawn in a new session (POSIX_SPAWN_SETSID), stdin from /dev/null, stdout and stderr to
    /// `outputFD`, every other descriptor closed (so a caller's pipes do not stay open in the server),
    /// an empty signal mask and default signal actions (so SIGTERM reaches the server even when the
    /// caller had it blocked or ignored). Returns the child's pid.
    static func detached(executable: String, arguments: [String], outputFD: Int32) throws(MountError) -> Int32 {
        markDescriptorsCloseOnExec(from: 3)
        var child = ChildProcess(executable, arguments: Array(arguments.dropFirst()))
        child.redirects = [(0, .open("/dev/null", flags: O_RDONLY)), (1, .duplicate(outputFD)), (2, .duplicate(outputFD))]
        child.grouping = .newSession
        do { return try child.spawn() } catch {
            throw MountError("cannot start the mount server: \(error.message)")
        }
    }
}

/// Sets FD_CLOEXEC on every open descriptor from `first` on (listed in /proc/self/fd), so a process we
/// start inherits none of them.
func markDescriptorsCloseOnExec(from first: Int32) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
    for name in names {
        guard let fd = Int32(name), fd >= first else { continue }
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }
}

/// Process resource limits.
enum Limits {
    /// Raises RLIMIT_NOFILE's soft limit to its hard limit (every open file of the mount holds a cache fd).
    static func raiseOpenFiles() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Caps glibc's malloc arenas (`mallopt(M_ARENA_MAX, 2)`), before the server starts its threads.
    /// By default every thread that allocates may get an arena of its own (up to 8 per core), and
    /// each keeps the memory freed into it: a mount's 16-odd worker and background threads held
    /// 3–16 MiB apiece after the buffers they used were gone, which put the server's RssAnon over
    /// its 128 MiB budget under `tools/stress` (peaks of 133–153 MiB; 103 MiB with two arenas).
    /// Big buffers are their own mmaps and unaffected. An explicit `MALLOC_ARENA_MAX` wins.
    static func capMallocArenas() {
        if ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil { _ = gitfs_set_malloc_arena_max(2) }
        fixMallocMmapThreshold()
    }

    /// Makes every allocation of 256 KiB or more an mmap of its own (`mallopt(M_MMAP_THRESHOLD)`), so the
    /// blob buffers the memory budget credits go back to the system when freed: glibc's default
    /// threshold climbs to 32 MiB after the first big free, after which freed buffers of up to 4 MiB
    /// stay in the heap. Measured (every file of six git.git releases through one mount): server
    /// RssAnon 120 → 87 MiB (BENCHMARKS.md, bigblobs). An explicit `MALLOC_MMAP_THRESHOLD_` wins.
    static func fixMallocMmapThreshold() {
        guard ProcessInfo.processInfo.environment["MALLOC_MMAP_THRESHOLD_"] == nil else { return }
        _ = gitfs_set_malloc_mmap_threshold(256 << 10)
    }
}
