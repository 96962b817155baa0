#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor, closed exactly once: by `close()` or when the value's lifetime ends.
/// Non-copyable, so it cannot be closed twice or used after closing. Every call retries EINTR and
/// throws `Errno`. The descriptor may be used from several threads at once with the positional calls
/// (`read(into:at:)`, `write(_:at:)`), as the system calls themselves allow.
public struct FileDescriptor: ~Copyable, Sendable {
    /// The raw descriptor number, for calls this type does not wrap (valid while `self` lives).
    public let rawValue: Int32

    /// Takes ownership of an open descriptor (it is closed when this value ends).
    public init(adopting rawValue: Int32) { self.rawValue = rawValue }

    /// `open(2)` with `O_CLOEXEC` added, retrying EINTR.
    public static func open(_ path: String, _ flags: Int32, permissions: mode_t = 0o644) throws(Errno) -> FileDescriptor {
        let fd = try retryingEINTR { Glibc.open(path, flags | O_CLOEXEC, permissions) }
        return FileDescriptor(adopting: fd)
    }

    deinit { _ = Glibc.close(rawValue) }

    /// `close(2)` now (not retried: Linux always releases the descriptor).
    public consuming func close() {}

    /// `pread(2)` until `buffer` is full or end of file, retrying EINTR. Returns the bytes read
    /// (fewer than `buffer.count` only at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try retryingEINTR { Glibc.pread(rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done)) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `pread(2)` of up to `count` bytes at `offset` into a new array (shorter only at end of file).
    public func read(count: Int, at offset: Int) throws(Errno) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let r: Result<Int, Errno> = bytes.withUnsafeMutableBytes { buf in
            do throws(Errno) { return .success(try read(into: buf, at: offset)) } catch { return .failure(error) }
        }
        let n = try r.get()
        if n < count { bytes.removeLast(count - n) }
        return bytes
    }

    /// `read(2)` until `buffer` is full or end of file, retrying EINTR (for files without positions,
    /// such as procfs). Returns the bytes read.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try retryingEINTR { Glibc.read(rawValue, buffer.baseAddress! + done, buffer.count - done) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `pwrite(2)` of all of `bytes` at `offset`, retrying EINTR and short writes (a write that makes
    /// no progress throws ENOSPC).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = try retryingEINTR { Glibc.pwrite(rawValue, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            if n == 0 { throw .noSpace }
            done += n
        }
    }

    /// `pwrite(2)` of all of `bytes` at `offset` (see `write(_:at:)`).
    public func write(_ bytes: [UInt8], at offset: Int) throws(Errno) {
        let r: Result<Void, Errno> = bytes.withUnsafeBytes { raw in
            do throws(Errno) { try write(raw, at: offset); return .success(()) } catch { return .failure(error) }
        }
        try r.get()
    }

    /// `flock(2)` with `op` (`LOCK_EX`, `LOCK_SH`, `LOCK_UN`, optionally `| LOCK_NB`), retrying EINTR.
    public func lock(_ op: Int32) throws(Errno) {
        _ = try retryingEINTR { flock(rawValue, op) }
    }

    /// `flock(2)` with `op | LOCK_NB`: true when taken at once, false when another holder has it.
    public func tryLock(_ op: Int32 = LOCK_EX) -> Bool {
        do throws(Errno) { try lock(op | LOCK_NB); return true } catch { return false }
    }

    /// `flock(2)` with `LOCK_UN`.
    public func unlock() { _ = try? lock(LOCK_UN) }

    /// `ftruncate(2)`, retrying EINTR.
    public func truncate(to size: Int) throws(Errno) {
        _ = try retryingEINTR { ftruncate(rawValue, off_t(size)) }
    }

    /// `fstat(2)`.
    public func status() throws(Errno) -> stat {
        var st = stat()
        _ = try retryingEINTR { fstat(rawValue, &st) }
        return st
    }
}
