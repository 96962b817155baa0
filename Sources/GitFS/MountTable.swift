import Foundation

/// One line of /proc/self/mountinfo.
public struct MountInfo: Sendable, Equatable {
    public let mountpoint: String
    public let fsType: String
    public let source: String
    /// The device minor number: the FUSE connection is /sys/fs/fuse/connections/<minor>.
    public let minor: Int

    /// The server's pid when the source is `gitfs:<pid>`.
    public var serverPID: Int32? {
        guard source.hasPrefix("gitfs:") else { return nil }
        return Int32(source.dropFirst(6))
    }
}

/// Reads the kernel's mount table without touching any mount (a dead FUSE server cannot hang it).
public enum MountTable {
    public static func entries() -> [MountInfo] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        var result: [MountInfo] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            let devParts = fields[2].split(separator: ":")
            result.append(MountInfo(mountpoint: unescape(String(fields[4])), fsType: String(fields[dash + 1]),
                                    source: unescape(String(fields[dash + 2])),
                                    minor: devParts.count == 2 ? Int(devParts[1]) ?? -1 : -1))
        }
        return result
    }

    /// The mount at exactly `path` (the last one if stacked).
    public static func mount(at path: String) -> MountInfo? {
        entries().last { $0.mountpoint == path }
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var bytes: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == 0x5C, i + 3 < u.count, let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Detaches a mount and, when its server does not go away, aborts the FUSE connection.
public enum Unmounter {
    /// umount2(MNT_DETACH); falls back to `fusermount3 -u -z` when not privileged.
    public static func detach(_ path: String) -> Bool {
        if umount2(path, Int32(MNT_DETACH)) == 0 { return true }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/fusermount3")
        p.arguments = ["-u", "-z", path]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// Writes to /sys/fs/fuse/connections/<minor>/abort: every pending request fails at once.
    public static func abortConnection(minor: Int) {
        let path = "/sys/fs/fuse/connections/\(minor)/abort"
        if let h = FileHandle(forWritingAtPath: path) {
            h.write(Data("1".utf8))
            try? h.close()
        }
    }

    public static func isAlive(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }
}
