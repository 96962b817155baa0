import Basics
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

    /// Unmounts as an unprivileged user: `fusermount3 -u`, then `fusermount3 -u -z` (lazy) when that
    /// fails (busy). True when one of them succeeded.
    public static func fusermountUnmount(_ path: String) -> Bool {
        MountTable.runFusermount(["fusermount3", "-u", path]) || MountTable.runFusermount(["fusermount3", "-u", "-z", path])
    }

    /// Writes to /sys/fs/fuse/connections/<minor>/abort: every pending request of the connection fails
    /// at once and the server can answer no more. As root, mounts the `fusectl` filesystem there first
    /// when it is not mounted; the owner of a connection may write its abort file too. True when written.
    public static func abortConnection(minor: Int?) -> Bool {
        guard let minor else { return false }
        let dir = "/sys/fs/fuse/connections"
        if geteuid() == 0, !MountTable.entries().contains(where: { $0.fsType == "fusectl" && $0.mountPoint == dir }) {
            _ = Glibc.mount("fusectl", dir, "fusectl", 0, nil)
        }
        guard let abort = try? FileDescriptor.open("\(dir)/\(minor)/abort", O_WRONLY) else { return false }
        return (try? abort.write([UInt8(ascii: "1")], at: 0)) != nil
    }

    /// What /proc says of the process named as a mount's server.
    public enum ServerState: Sendable, Equatable {
        /// No such process, a zombie, or a process without /dev/fuse open (the pid was reused).
        case gone
        /// Stopped (SIGSTOP, a debugger): it answers nothing until resumed.
        case stopped
        case running
        /// Another user's process: this user may not signal it.
        case notPermitted
    }

    /// The state of `pid` as a FUSE server: kill(pid, 0), its state in /proc/<pid>/stat and whether it
    /// holds /dev/fuse open.
    public static func serverState(_ pid: Int32) -> ServerState {
        if kill(pid, 0) != 0 { return errno == EPERM ? .notPermitted : .gone }
        guard let state = procState(pid), state != "Z", state != "X" else { return .gone }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        let holdsFuse = fds.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) == "/dev/fuse" }
        guard holdsFuse else { return .gone }
        return state == "T" || state == "t" ? .stopped : .running
    }

    /// Whether the process exists and has not exited: kill(pid, 0), and a zombie (state Z or X in
    /// /proc/<pid>/stat, not reaped yet) counts as gone.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let state = procState(pid) else { return true }
        return state != "Z" && state != "X"
    }

    /// The state letter of /proc/<pid>/stat (R, S, D, T, t, Z, X...), nil when unreadable.
    private static func procState(_ pid: Int32) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
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
