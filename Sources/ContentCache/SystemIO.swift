import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over POSIX file calls, each retrying EINTR. Free functions; thread-safe as the
/// underlying calls are.
enum SystemIO {
    static func errnoText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

    /// `open(2)`, retrying EINTR. Returns the fd or -errno.
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { return -errno }
        }
    }

    /// `pread(2)` until `count` bytes or EOF, retrying EINTR. Returns bytes read or -errno.
    static func preadFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ offset: Int) -> Int {
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, buf + done, count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            return -Int(errno)
        }
        return done
    }

    /// `pwrite(2)` of all bytes, retrying EINTR and short writes. Returns 0 or errno.
    static func pwriteFull(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int, _ offset: Int) -> Int32 {
        var done = 0
        while done < count {
            let n = Glibc.pwrite(fd, buf + done, count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            return n == 0 ? ENOSPC : errno
        }
        return 0
    }

    /// `flock(2)`, retrying EINTR. True when the lock was taken.
    static func lock(_ fd: Int32, _ op: Int32) -> Bool {
        while true {
            if sysFlock(fd, op) == 0 { return true }
            if errno != EINTR { return false }
        }
    }

    /// `close(2)` (not retried: Linux always releases the fd).
    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// `fstat(2)`.
    static func fstat(_ fd: Int32) -> stat? { sysFstat(fd) }

    /// `stat(2)`.
    static func stat(_ path: String) -> stat? { sysStat(path) }

    /// `lstat(2)`.
    static func lstat(_ path: String) -> stat? { sysLstat(path) }

    /// `ftruncate(2)`, retrying EINTR.
    static func ftruncate(_ fd: Int32, _ size: Int) {
        while Glibc.ftruncate(fd, off_t(size)) != 0 && errno == EINTR {}
    }

    /// `mkdir(2)`; an existing directory is success. Returns 0 or errno.
    static func mkdir(_ path: String) -> Int32 {
        if Glibc.mkdir(path, 0o755) == 0 || errno == EEXIST { return 0 }
        return errno
    }

    /// Entry names of a directory (`opendir`/`readdir`), without "." and ".."; empty when unreadable.
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `unlink(2)`. True when removed.
    @discardableResult
    static func unlink(_ path: String) -> Bool { Glibc.unlink(path) == 0 }

    /// Removes a file, or a folder with everything in it (`unlink`/`rmdir`). True when gone.
    static func removeTree(_ path: String) -> Bool {
        if let st = lstat(path), (st.st_mode & S_IFMT) == S_IFDIR {
            for name in list(path) { _ = removeTree(path + "/" + name) }
            return Glibc.rmdir(path) == 0
        }
        return unlink(path)
    }

    /// Removes `path` only if it is still the file `fd` has open (same device and inode), so a
    /// newer copy published by another process is never deleted.
    static func unlinkIfSame(_ path: String, fd: Int32) {
        guard let a = fstat(fd), let b = lstat(path), a.st_dev == b.st_dev, a.st_ino == b.st_ino else { return }
        unlink(path)
    }

    /// 16 random lowercase hex digits (getrandom via SystemRandomNumberGenerator).
    static func randomName() -> String {
        let v = UInt64.random(in: 0...UInt64.max)
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func now() -> UInt32 { UInt32(truncatingIfNeeded: time(nil)) }

    /// Disk bytes allocated to a file (du-like: st_blocks * 512).
    static func diskBytes(_ st: stat) -> Int { Int(st.st_blocks) * 512 }
}

private func sysFlock(_ fd: Int32, _ op: Int32) -> Int32 { flock(fd, op) }
private func sysFstat(_ fd: Int32) -> stat? {
    var st = stat()
    return fstat(fd, &st) == 0 ? st : nil
}
private func sysStat(_ path: String) -> stat? {
    var st = stat()
    return stat(path, &st) == 0 ? st : nil
}
private func sysLstat(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}
