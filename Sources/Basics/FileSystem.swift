#if canImport(Glibc)
import Glibc
#endif

/// Path-based POSIX calls: thin wrappers, each named for the call it makes, retrying EINTR where the
/// call can be interrupted and throwing `Errno`. Stateless: thread-safe as the calls are.
public enum FileSystem {
    /// `stat(2)` (follows symlinks).
    public static func status(_ path: String) throws(Errno) -> stat {
        var st = stat()
        _ = try retryingEINTR { stat(path, &st) }
        return st
    }

    /// `lstat(2)` (does not follow a final symlink).
    public static func linkStatus(_ path: String) throws(Errno) -> stat {
        var st = stat()
        _ = try retryingEINTR { lstat(path, &st) }
        return st
    }

    /// `lstat(2)` succeeds: something (even a dangling symlink) is at `path`.
    public static func exists(_ path: String) -> Bool { (try? linkStatus(path)) != nil }

    /// `access(2)`: the caller may use `path` as `mode` (`F_OK`, `R_OK | W_OK`...).
    public static func access(_ path: String, _ mode: Int32) -> Bool { Glibc.access(path, mode) == 0 }

    /// `mkdir(2)`; an existing entry at `path` counts as success.
    public static func makeDirectory(_ path: String, permissions: mode_t = 0o755) throws(Errno) {
        if Glibc.mkdir(path, permissions) == 0 { return }
        let e = Errno.current
        if e != .exists { throw e }
    }

    /// `mkdir -p`: `mkdir(2)` of `path` and every missing parent.
    public static func makeDirectories(_ path: String, permissions: mode_t = 0o755) throws(Errno) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            try makeDirectory(prefix, permissions: permissions)
        }
    }

    /// Entry names of a directory (`opendir(3)`/`readdir(3)`), without "." and "..".
    public static func entries(of path: String) throws(Errno) -> [String] {
        guard let dir = opendir(path) else { throw Errno.current }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `entries(of:)`, or no names when the directory cannot be read.
    public static func list(_ path: String) -> [String] { (try? entries(of: path)) ?? [] }

    /// `unlink(2)`.
    public static func remove(_ path: String) throws(Errno) {
        if Glibc.unlink(path) != 0 { throw Errno.current }
    }

    /// `rmdir(2)`.
    public static func removeDirectory(_ path: String) throws(Errno) {
        if Glibc.rmdir(path) != 0 { throw Errno.current }
    }

    /// `rm -rf`: removes a file, or a folder with everything in it (`unlink`/`rmdir`, symlinks not
    /// followed). True when nothing is left at `path`.
    @discardableResult
    public static func removeTree(_ path: String) -> Bool {
        guard let st = try? linkStatus(path) else { return true }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in list(path) { removeTree(path + "/" + name) }
            return (try? removeDirectory(path)) != nil
        }
        return (try? remove(path)) != nil
    }

    /// `rename(2)`.
    public static func rename(_ from: String, to: String) throws(Errno) {
        if Glibc.rename(from, to) != 0 { throw Errno.current }
    }

    /// `link(2)`: a second name for a file; fails with EEXIST when `to` exists.
    public static func link(_ from: String, to: String) throws(Errno) {
        if Glibc.link(from, to) != 0 { throw Errno.current }
    }

    /// Bytes allocated to a file as `du` counts them (`st_blocks` × 512).
    public static func diskBytes(_ st: stat) -> Int { Int(st.st_blocks) * 512 }

    /// Bytes allocated under `path` (`lstat(2)` of every file, like `du`), symlinks not followed.
    public static func diskUsage(_ path: String) -> Int {
        guard let st = try? linkStatus(path) else { return 0 }
        var total = diskBytes(st)
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in list(path) { total += diskUsage(path + "/" + name) }
        }
        return total
    }

    /// The whole content of a small file (`open(2)` and `read(2)` to end of file), at most `limit`
    /// bytes; works for procfs files, whose size `stat` does not know.
    public static func readFile(_ path: String, limit: Int = 16 << 20) throws(Errno) -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while data.count < limit {
            let r: Result<Int, Errno> = chunk.withUnsafeMutableBytes { buf in
                do throws(Errno) { return .success(try fd.read(into: buf)) } catch { return .failure(error) }
            }
            let n = try r.get()
            data.append(contentsOf: chunk[0..<min(n, limit - data.count)])
            if n < chunk.count { break }
        }
        return data
    }
}
