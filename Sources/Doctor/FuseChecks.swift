import Foundation
import GitFS

extension Doctor {
    /// /dev/fuse exists and this user can open it for reading and writing.
    func fuseDeviceAccess() -> Verdict {
        let name = "fuse device"
        var st = stat()
        guard stat(fuseDevice, &st) == 0 else {
            return .problem(name, "\(fuseDevice) does not exist (\(String(cString: strerror(errno))))",
                            fix: "load the fuse module as root (modprobe fuse), or start the container with --device /dev/fuse")
        }
        let mode = String(st.st_mode & 0o777, radix: 8)
        guard access(fuseDevice, R_OK | W_OK) == 0 else {
            return .problem(name, "\(fuseDevice) (mode 0\(mode)) cannot be opened for reading and writing by \(who)",
                            fix: "as root: chmod 0666 \(fuseDevice) (Debian's default, made permanent by a udev rule KERNEL==\"fuse\", MODE=\"0666\")")
        }
        return .ok(name, "\(fuseDevice) is readable and writable (mode 0\(mode))")
    }

    /// fusermount3 is on PATH and setuid root (needed to mount and unmount without root).
    func fusermount() -> Verdict {
        let name = "fusermount3"
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        guard let path = dirs.map({ $0 + "/fusermount3" }).first(where: { access($0, X_OK) == 0 }) else {
            if isRoot { return .warning(name, "fusermount3 not found on PATH (root mounts without it)", fix: "apt install fuse3") }
            return .problem(name, "fusermount3 not found on PATH: users other than root cannot mount", fix: "as root: apt install fuse3")
        }
        var st = stat()
        guard stat(path, &st) == 0 else { return .problem(name, "cannot stat \(path)", fix: "reinstall fuse3") }
        let setuidRoot = st.st_uid == 0 && st.st_mode & 0o4000 != 0
        if !setuidRoot && !isRoot {
            return .problem(name, "\(path) is not setuid root: users other than root cannot mount",
                            fix: "as root: chown root \(path) && chmod u+s \(path)")
        }
        return .ok(name, "\(path)" + (setuidRoot ? " is setuid root" : " (not setuid; fine as root)"))
    }

    /// With allow_other configured and not root, /etc/fuse.conf must have `user_allow_other`.
    func userAllowOther() -> Verdict {
        let name = "allow_other"
        guard allowOther else { return .ok(name, "not configured (only the mounting user can read the mount)") }
        if isRoot { return .ok(name, "configured; root may always use allow_other") }
        if FuseConf.userAllowOther(path: fuseConf) {
            return .ok(name, "configured, and \(fuseConf) has user_allow_other")
        }
        return .problem(name, "allow-other is configured but \(fuseConf) lacks user_allow_other, so mounting fails",
                        fix: "as root: echo user_allow_other >> \(fuseConf); or gitfs config --unset allow-other")
    }

    /// The kernel has FUSE and is new enough for the protocol features gitfs uses (7.28, Linux 4.20:
    /// READDIRPLUS, cached listings, max_pages).
    func kernelProtocol() -> Verdict {
        let name = "kernel FUSE"
        let filesystems = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
        guard filesystems.split(separator: "\n").contains(where: { $0.hasSuffix("\tfuse") }) else {
            return .problem(name, "the kernel has no fuse filesystem loaded", fix: "as root: modprobe fuse")
        }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let version = parts.count == 2 ? parts[0] * 1000 + parts[1] : 0
        guard version >= 4020 else {
            return .problem(name, "Linux \(release) speaks a FUSE protocol older than 7.28 (Linux 4.20), which gitfs needs",
                            fix: "run a kernel of Linux 4.20 or later")
        }
        return .ok(name, "Linux \(release): FUSE protocol 7.28 or later (gitfs needs 7.28)")
    }

    /// Every gitfs mount of this namespace whose server is gone: reads there fail with "Transport
    /// endpoint is not connected" until it is unmounted.
    func mounts() -> [Verdict] {
        let name = "mounts"
        let all = GitFSMounts.all()
        var out: [Verdict] = []
        for m in all {
            guard let pid = m.serverPID, !GitFSMounts.isAlive(pid) else { continue }
            out.append(.problem(name, "\(m.mountpoint) is a dead gitfs mount (its server, pid \(pid), is gone)",
                                fix: "gitfs unmount \(m.mountpoint)"))
        }
        if out.isEmpty {
            out.append(.ok(name, all.isEmpty ? "no gitfs mounts" : "\(all.count) gitfs mount(s), every server alive"))
        }
        return out
    }
}

/// Reading /etc/fuse.conf. Stateless: thread-safe.
public enum FuseConf {
    /// Whether the file has a line that is exactly `user_allow_other` (spaces around it allowed),
    /// as fusermount3 requires.
    public static func userAllowOther(path: String = "/etc/fuse.conf") -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "user_allow_other" }
    }
}
