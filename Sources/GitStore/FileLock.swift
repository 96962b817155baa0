import Basics
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on a file, for single-flight across processes. One instance per holder; not
/// shared between threads. The file stays open (and the lock, if taken, held) until the instance ends.
final class FileLock {
    private let fd: FileDescriptor

    /// Opens (creating) the lock file.
    init(path: String) throws(GitStoreError) {
        do { fd = try FileDescriptor.open(path, O_RDWR | O_CREAT) } catch {
            throw GitStoreError(.io, "cannot open lock file \(path): \(error.message)")
        }
    }

    /// `flock(LOCK_EX | LOCK_NB)`: true when taken without waiting.
    func tryLock() -> Bool { fd.tryLock(LOCK_EX) }

    /// `flock(LOCK_EX)`, waiting as long as it takes.
    func lock() { _ = try? fd.lock(LOCK_EX) }

    /// `flock(LOCK_UN)`.
    func unlock() { fd.unlock() }
}
