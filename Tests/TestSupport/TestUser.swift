import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An ordinary (non-root) user made for one test with `useradd`, whose home is a fresh directory under
/// a temporary folder it can read, removed with `userdel` by `remove()` (deinit calls it) after every
/// process of the user has been killed. Commands run as the user through `setpriv` with a clean
/// environment (HOME, PATH, and no XDG_* of root). Not thread-safe to remove from two threads.
public final class TestUser: @unchecked Sendable {
    public let name: String
    public let uid: uid_t
    public let gid: gid_t
    /// The user's home directory (owned by the user, mode 0755), inside `dir`.
    public let home: String
    private let dir: TempDir
    private var removed = false

    /// Creates the user (root only: throws otherwise).
    public init(_ label: String = "user") throws {
        guard geteuid() == 0 else { throw TestFailure("creating a test user needs root") }
        dir = try TempDir("user-\(label)")
        // mkdtemp makes the folder 0700: the user must be able to reach its home inside it.
        chmod(dir.path, 0o755)
        home = dir.sub("home")
        name = "gitfs-t\(UInt32.random(in: 100_000...999_999))"
        let r = try runBounded(["useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh",
                                "--user-group", name], seconds: 30)
        guard r.status == 0 else { throw TestFailure("useradd \(name) exited \(r.status): \(r.stderr)") }
        guard let pw = getpwnam(name) else { throw TestFailure("useradd made no user \(name)") }
        uid = pw.pointee.pw_uid
        gid = pw.pointee.pw_gid
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try chownTree(home)
    }

    /// `chown -R user:group path`.
    public func chownTree(_ path: String) throws {
        let r = try runBounded(["chown", "-R", "\(uid):\(gid)", path], seconds: 60)
        guard r.status == 0 else { throw TestFailure("chown -R \(path) exited \(r.status): \(r.stderr)") }
    }

    /// The environment the user's commands see.
    public var environment: [String: String] {
        ["HOME": home, "USER": name, "LOGNAME": name, "XDG_DATA_HOME": home + "/.local/share",
         "XDG_CONFIG_HOME": home + "/.config", "XDG_RUNTIME_DIR": "", "GITFS_HOME": "",
         "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]
    }

    /// The argv that runs `argv` as the user (real and effective ids, supplementary groups).
    public func command(_ argv: [String]) -> [String] {
        ["setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--init-groups", "--"] + argv
    }

    /// Runs `argv` as the user, bounded to `seconds`, in the user's home.
    @discardableResult
    public func run(_ argv: [String], seconds: Double = 60, env: [String: String] = [:]) throws -> RunResult {
        try runBounded(["sh", "-c", "cd \"$0\" && exec \"$@\"", home] + command(argv), seconds: seconds,
                       env: environment.merging(env) { $1 })
    }

    /// Kills every process of the user (by pid, found in /proc), then `userdel`. Idempotent.
    public func remove() {
        guard !removed else { return }
        removed = true
        for _ in 0..<3 {
            let pids = processes()
            if pids.isEmpty { break }
            for pid in pids { kill(pid, SIGKILL) }
            usleep(200_000)
        }
        _ = try? runBounded(["userdel", name], seconds: 30)
        dir.remove()
    }

    /// Pids whose real uid is the user's.
    public func processes() -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                  let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
            let ids = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().compactMap { UInt32($0) }
            return ids.first == uid ? pid : nil
        }
    }

    deinit { remove() }
}

/// /dev/fuse as Debian ships it: mode 0666, so ordinary users can mount through fusermount3 (some VMs
/// and containers make it 0600, as root-only). Sets that mode when the device lacks it and returns
/// the mode it had. `.ci/run` does the same for the whole run.
@discardableResult
public func openFuseDeviceToUsers() -> mode_t {
    var st = stat()
    guard stat("/dev/fuse", &st) == 0 else { return 0 }
    let mode = st.st_mode & 0o7777
    if mode & 0o006 != 0o006 { chmod("/dev/fuse", 0o666) }
    return mode
}
