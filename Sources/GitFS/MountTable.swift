import Foundation
import FuseServer

/// What the CLI needs to know about gitfs mounts, read from the kernel's mount table (FuseServer's
/// `MountTable`) without touching any mount, so a dead or hung server cannot block it.
public enum GitFSMounts {
    /// The gitfs mount at exactly `path` (the last one if stacked), or nil.
    public static func mount(at path: String) -> GitFSMountInfo? {
        MountTable.entries(at: path).last.map(GitFSMountInfo.init)
    }

    /// Every gitfs mount of this mount namespace.
    public static func all() -> [GitFSMountInfo] {
        MountTable.entries().map(GitFSMountInfo.init).filter { $0.serverPID != nil }
    }

    /// Checks that `path` can be mounted on (exists, is an empty directory, not a mount, /dev/fuse usable);
    /// returns its canonical path.
    public static func checkMountpoint(_ path: String) throws(MountError) -> String {
        do { return try MountTable.checkMountpoint(path) } catch { throw MountError(error.description) }
    }

    /// Lazily detaches the mount (umount2(MNT_DETACH), or `fusermount3 -u -z` when not privileged).
    public static func detach(_ path: String) -> Bool { MountTable.lazyUnmount(path) == 0 }

    /// Writes to /sys/fs/fuse/connections/<minor>/abort: every pending request of the connection fails at once.
    public static func abortConnection(minor: Int?) {
        guard let minor, let h = FileHandle(forWritingAtPath: "/sys/fs/fuse/connections/\(minor)/abort") else { return }
        h.write(Data("1".utf8))
        try? h.close()
    }

    /// Whether the process exists and has not exited: kill(pid, 0), and a zombie (state Z or X in
    /// /proc/<pid>/stat, not reaped yet) counts as gone.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state != "Z" && state != "X"
    }
}

/// A mount-table entry as gitfs sees it.
public struct GitFSMountInfo: Sendable, Equatable {
    public let entry: MountInfoEntry
    public var mountpoint: String { entry.mountPoint }
    public var fsType: String { entry.fsType }
    public var minor: Int? { entry.minor }

    /// The server's pid: gitfs mounts show `gitfs:<pid>` as their source.
    public var serverPID: Int32? {
        guard entry.source.hasPrefix("gitfs:") else { return nil }
        return Int32(entry.source.dropFirst(6))
    }
}
