import Basics
import FuseServer
import Foundation
import Logging
import Synchronization
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A FixtureFS mounted in a fresh /tmp directory and served in-process on a background thread.
/// `shutdown()` (call it in a defer) stops the mount, waits for serve() to return, and falls back to
/// `umount -l` so no mount outlives the test.
final class MountedFixture: @unchecked Sendable {
    let dir: TempDir
    let mountpoint: String
    let fs: FixtureFS
    let mount: FuseMount<FixtureFS>
    private let served = DispatchSemaphore(value: 0)
    private let serveReturned = Atomic<Bool>(false)
    private var shutDown = false

    init(fs: FixtureFS = FixtureFS(), options: FuseMountOptions = FuseMountOptions(), label: String = "fs") throws {
        dir = try TempDir(label)
        mountpoint = dir.sub("mnt")
        mkdir(mountpoint, 0o755)
        self.fs = fs
        var logger = Logger(label: "gitfs.test.fuse")
        logger.logLevel = options.debug ? .debug : .warning
        mount = try FuseMount(filesystem: fs, mountpoint: mountpoint, options: options, logger: logger)
        let thread = Thread { [self] in
            mount.serve()
            serveReturned.store(true, ordering: .releasing)
            served.signal()
        }
        thread.start()
    }

    var path: String { mountpoint }
    func sub(_ p: String) -> String { mountpoint + p }
    var hasReturned: Bool { serveReturned.load(ordering: .acquiring) }

    /// Waits for serve() to return; true when it did within `timeout` seconds.
    func waitForServe(timeout: Double) -> Bool {
        if hasReturned { return true }
        if served.wait(timeout: .now() + timeout) == .success {
            served.signal()   // keep it signalled for later waiters
            return true
        }
        return false
    }

    /// stop() + wait; `umount -l` fallback. Idempotent.
    func shutdown() {
        guard !shutDown else { return }
        shutDown = true
        mount.stop()
        if !waitForServe(timeout: 20) {
            _ = try? run(["umount", "-l", mountpoint])
            _ = waitForServe(timeout: 10)
        }
        if isMounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
    }

    deinit { shutdown() }
}

/// Whether /proc/mounts lists `path` as a mount point.
func isMounted(_ path: String) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return false }
    return text.split(separator: "\n").contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 1 && fields[1] == path
    }
}

/// Reads a whole file with open/read; the errno of the first failure otherwise.
func readFile(_ path: String, chunk: Int = 1 << 20) -> Result<[UInt8], Errno> {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return .failure(Errno(errno)) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: chunk)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(Errno(errno))
        }
        if n == 0 { return .success(out) }
        out.append(contentsOf: buffer[0..<n])
    }
}

/// Runs `body(i)` for i in 0..<count on `count` separate threads, all released at once; returns false
/// when they did not all finish within `timeout` seconds.
@discardableResult
func onThreads(_ count: Int, timeout: Double = 60, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    let ready = Atomic<Int>(0)
    let go = Atomic<Bool>(false)
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            ready.add(1, ordering: .relaxed)
            while !go.load(ordering: .acquiring) { sched_yield() }
            body(i)
            group.leave()
        }
        thread.start()
    }
    while ready.load(ordering: .relaxed) < count { usleep(100) }
    go.store(true, ordering: .releasing)
    return group.wait(timeout: .now() + timeout) == .success
}

/// Thread-safe collection of results from worker threads.
final class Collector<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
}
