import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on a file, for single-flight across processes. One instance per holder; not
/// shared between threads.
final class FileLock {
    private let fd: Int32

    /// Opens (creating) the lock file.
    init(path: String) throws(GitStoreError) {
        var fd: Int32
        repeat { fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            throw GitStoreError(.io, "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// `flock(LOCK_EX | LOCK_NB)`: true when taken without waiting.
    func tryLock() -> Bool {
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            if errno != EINTR { return false }
        }
    }

    /// `flock(LOCK_EX)`, waiting as long as it takes (EINTR retried).
    func lock() {
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
    }

    /// `flock(LOCK_UN)`.
    func unlock() {
        _ = flock(fd, LOCK_UN)
    }
}

/// Small file-system helpers over POSIX calls.
enum FileSystem {
    /// `lstat` succeeds.
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(GitStoreError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw GitStoreError(.io, "cannot create directory \(path): \(error.localizedDescription)")
        }
    }

    /// Entry names of a directory (empty when it cannot be read).
    static func list(_ path: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    }

    /// `rm -rf`, best effort.
    static func removeTree(_ path: String) {
        guard exists(path) else { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Bytes allocated under `path` (`st_blocks` × 512 of every file, like `du`), symlinks not followed.
    static func diskUsage(_ path: String) -> Int {
        var st = stat()
        guard lstat(path, &st) == 0 else { return 0 }
        var total = Int(st.st_blocks) * 512
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for entry in list(path) { total += diskUsage(path + "/" + entry) }
        }
        return total
    }
}
