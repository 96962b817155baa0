import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Running gitfs as an ordinary user (`nobody`), for the paths it takes without root. Stateless.
public enum Unprivileged {
    public static let user = "nobody"

    /// Makes /dev/fuse usable by every user (mode 0666, as Debian ships it; this VM ships 0600). It is
    /// left so: other tests may be using it at the same time.
    public static func openFuseDevice() throws {
        var st = stat()
        guard stat("/dev/fuse", &st) == 0 else { throw TestFailure("no /dev/fuse") }
        if st.st_mode & 0o666 != 0o666, chmod("/dev/fuse", 0o666) != 0 {
            throw TestFailure("chmod 0666 /dev/fuse: \(String(cString: strerror(errno)))")
        }
    }

    /// Gives `path` and everything below it to the user (chown -R), and lets every user enter the
    /// directories above it up to /tmp (mkdtemp makes them 0700).
    public static func give(_ path: String) throws {
        let r = try runBounded(["chown", "-R", "\(user):", path], seconds: 60)
        guard r.status == 0 else { throw TestFailure("chown -R \(user) \(path): \(r.stderr)") }
        try openUpTo(path)
    }

    /// chmod o+x on every directory from /tmp/... down to `path`, so the user can reach it.
    public static func openUpTo(_ path: String) throws {
        var dir = path
        while dir.hasPrefix("/tmp/"), dir != "/tmp" {
            var st = stat()
            if stat(dir, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, chmod(dir, (st.st_mode & 0o7777) | 0o055) != 0 {
                throw TestFailure("chmod \(dir): \(String(cString: strerror(errno)))")
            }
            dir = (dir as NSString).deletingLastPathComponent
        }
    }

    /// `argv` as the user (runuser), bounded like `runBounded`.
    @discardableResult
    public static func run(_ argv: [String], seconds: Double = 60) throws -> RunResult {
        try runBounded(["runuser", "-u", user, "--"] + argv, seconds: seconds)
    }
}
