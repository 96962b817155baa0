import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse

/// One line of /proc/self/mountinfo.
public struct MountInfoEntry: Sendable, Equatable {
    public var device: String        // "major:minor"
    public var mountPoint: String
    public var fsType: String
    public var source: String

    /// The device minor number: a FUSE connection is /sys/fs/fuse/connections/<minor>.
    public var minor: Int? {
        device.split(separator: ":").last.flatMap { Int($0) }
    }
}

/// Reading /proc/self/mountinfo and the checks done before mounting. Stateless: thread-safe.
public enum MountTable {
    /// Decodes the octal escapes (\040 for space...) mountinfo uses in paths.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let u = Array(field.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 4 <= u.count,
               let v = UInt8(String(decoding: u[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func entries() -> [MountInfoEntry] {
        guard let data = try? FileSystem.readFile("/proc/self/mountinfo") else { return [] }
        var result: [MountInfoEntry] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            result.append(MountInfoEntry(device: String(fields[2]), mountPoint: unescape(fields[4]),
                                         fsType: String(fields[dash + 1]), source: unescape(fields[dash + 2])))
        }
        return result
    }

    public static func entries(at mountPoint: String) -> [MountInfoEntry] {
        entries().filter { $0.mountPoint == mountPoint }
    }

    /// realpath(3) of `path`, or the path itself when it cannot be resolved.
    public static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Checks that `path` can be mounted on: exists, is a directory, is not a (dead) mount, is empty,
    /// and /dev/fuse is usable. Returns the canonical path.
    public static func checkMountpoint(_ path: String) throws(FuseError) -> String {
        var st = stat()
        if stat(path, &st) != 0 {
            let e = errno
            switch e {
            case ENOENT: throw FuseError(.mountpointMissing, mountpoint: path)
            case ENOTCONN, ECONNABORTED: throw FuseError(.deadMount, mountpoint: path)
            default: throw FuseError(.system, mountpoint: path, detail: "stat: \(Errno(e))")
            }
        }
        guard st.st_mode & 0o170000 == 0o040000 else { throw FuseError(.notADirectory, mountpoint: path) }
        let canonicalPath = canonical(path)
        if !entries(at: canonicalPath).isEmpty { throw FuseError(.alreadyMounted, mountpoint: path) }
        guard let dir = opendir(path) else {
            throw FuseError(.system, mountpoint: path, detail: "opendir: \(Errno(errno))")
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { throw FuseError(.notEmpty, mountpoint: path) }
        }
        if access("/dev/fuse", R_OK | W_OK) != 0 {
            throw FuseError(.noFuseDevice, mountpoint: path, detail: String(describing: Errno(errno)))
        }
        return canonicalPath
    }

    /// Lazily detaches the mount at `path`: umount2(MNT_DETACH) as root, else `fusermount3 -u -z`.
    /// Returns 0 on success, else the errno of umount2 (or EPERM when fusermount3 failed).
    public static func lazyUnmount(_ path: String) -> Int32 {
        if umount2(path, Int32(MNT_DETACH)) == 0 { return 0 }
        let e = errno
        guard e == EPERM else { return e }
        return runFusermount(["fusermount3", "-u", "-z", path]) ? 0 : EPERM
    }

    /// Runs `fusermount3` (looked up on PATH) and waits for it; true when it exited 0.
    public static func runFusermount(_ args: [String]) -> Bool {
        var child = ChildProcess(args[0], arguments: Array(args.dropFirst()))
        child.searchPath = true
        guard let pid = try? child.spawn() else { return false }
        return ChildProcess.wait(pid) == 0
    }
}
