import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// `gitfs doctor` passes a healthy home and names each problem of a broken one with its fix.
    @Suite struct DoctorChecks {
        /// The problem lines of a doctor run.
        static func problems(_ r: RunResult) -> [String] {
            r.out.split(separator: "\n").map(String.init).filter { $0.hasPrefix("[problem]") }
        }

        @Test func healthyHomeExitsZeroAndEachBreakageIsNamed() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("doctor")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 120)
            // Fill the cache with the top-level blobs of the default branch, which doctor samples.
            for name in try listDirectory(m.path("fixture/HEAD")) {
                let p = m.path("fixture/HEAD/\(name)")
                if lstatInfo(p)?.kind == .file { _ = readWholeFile(p) }
            }

            let healthy = try m.gitfs(["doctor"])
            #expect(healthy.status == 0, "doctor on a healthy home: \(healthy.out) \(healthy.stderr)")
            #expect(Self.problems(healthy).isEmpty, "\(healthy.out)")
            #expect(healthy.out.contains("[ok] cache sample: ") && !healthy.out.contains("no cached blobs"), "\(healthy.out)")
            #expect(healthy.out.contains("[ok] mirror fixture: origin \(fixture.path)"), "\(healthy.out)")
            let json = try m.gitfs(["doctor", "--json"])
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [[String: Any]])
            #expect(json.status == 0 && list.count >= 8 && list.allSatisfy { ($0["status"] as? String) != "problem" })
            #expect(Set(list.compactMap { $0["check"] as? String }).isSuperset(of: ["fuse device", "fusermount3", "kernel FUSE", "mounts", "home", "cache"]))

            // 1. A stale mount: the server killed, the mount left behind.
            let pid = try #require(m.serverPID)
            kill(pid, SIGKILL)
            #expect(waitFor(seconds: 10) { !processAlive(pid) })
            let stale = try m.gitfs(["doctor"])
            #expect(stale.status == 1)
            #expect(Self.problems(stale).contains { $0.contains("\(m.mountpoint) is a dead gitfs mount") && $0.contains("fix: gitfs unmount \(m.mountpoint)") },
                    "\(stale.out)")
            let staleJSON = try m.gitfs(["doctor", "--json"])
            let staleList = try #require(try JSONSerialization.jsonObject(with: Data(staleJSON.stdout)) as? [[String: Any]])
            #expect(staleJSON.status == 1 && staleList.contains { $0["check"] as? String == "mounts" && $0["status"] as? String == "problem" && $0["fix"] is String })
            #expect(try m.gitfs(["unmount", m.mountpoint], seconds: 30).status == 0)
            #expect(try m.gitfs(["doctor"]).status == 0, "doctor after clearing the dead mount")

            // 2. The cache written by another format version.
            let version = m.home + "/cache/VERSION"
            let original = try String(contentsOfFile: version, encoding: .utf8)
            try Data("gitfs-cache 99\n".utf8).write(to: URL(fileURLWithPath: version))
            let wrong = try m.gitfs(["doctor"])
            try Data(original.utf8).write(to: URL(fileURLWithPath: version))
            #expect(wrong.status == 1)
            #expect(Self.problems(wrong).contains { $0.contains("[problem] cache:") && $0.contains("gitfs-cache 99") && $0.contains("fix:") }, "\(wrong.out)")

            // 3. /dev/fuse closed to an ordinary user (as this VM ships it): named for that user.
            let user = try TestUser("doctor")
            defer { user.remove() }
            let userHome = user.home + "/gitfs-home"
            let userSource = user.home + "/src"
            try fastImportRepo(at: userSource, commits: [[("a.txt", Array("one\n".utf8))]])
            try user.chownTree(user.home)
            let cloned = try user.run([gitfsBinary, "clone", userSource, "r", "--home", userHome], seconds: 120)
            #expect(cloned.status == 0, "\(cloned.stderr)")
            chmod("/dev/fuse", 0o600)
            let closed = try user.run([gitfsBinary, "doctor", "--home", userHome])
            chmod("/dev/fuse", 0o666)   // as Debian ships it (see openFuseDeviceToUsers)
            #expect(closed.status == 1, "\(closed.out)")
            #expect(Self.problems(closed).contains { $0.contains("/dev/fuse (mode 0600) cannot be opened") && $0.contains("uid \(user.uid)") && $0.contains("chmod 0666") },
                    "\(closed.out)")
            let open = try user.run([gitfsBinary, "doctor", "--home", userHome])
            #expect(open.status == 0 && Self.problems(open).isEmpty, "doctor as the user with /dev/fuse open: \(open.out)")
            // --network: the origin answers; moved away, it does not.
            let reachable = try user.run([gitfsBinary, "doctor", "--network", "--home", userHome])
            #expect(reachable.status == 0 && reachable.out.contains("[ok] mirror r: origin \(userSource) answers"), "\(reachable.out)")
            #expect(rename(userSource, userSource + ".gone") == 0)
            let unreachable = try user.run([gitfsBinary, "doctor", "--network", "--home", userHome])
            #expect(rename(userSource + ".gone", userSource) == 0)
            #expect(unreachable.status == 1 && Self.problems(unreachable).contains { $0.contains("mirror r: origin \(userSource) does not answer") },
                    "\(unreachable.out)")
            // A password in an origin URL never reaches the output.
            try git("--git-dir=\(userHome)/repos/r.git", "config", "remote.origin.url", "https://me:s3cr3t-pw@127.0.0.1:9/x.git", cwd: "/tmp")
            for args in [["doctor"], ["doctor", "--json"], ["doctor", "--network"]] {
                let r = try user.run([gitfsBinary] + args + ["--home", userHome])
                #expect(!r.out.contains("s3cr3t") && !r.stderr.contains("s3cr3t") && r.out.contains("me:***@127.0.0.1:9"),
                        "\(args): \(r.out) \(r.stderr)")
            }
            // The allow_other check follows the setting: without user_allow_other it is a problem.
            #expect(try user.run([gitfsBinary, "config", "allow-other", "true", "--home", userHome]).status == 0)
            let allow = try user.run([gitfsBinary, "doctor", "--home", userHome])
            if !FuseConfHasUserAllowOther() {
                #expect(allow.status == 1 && Self.problems(allow).contains { $0.contains("user_allow_other") }, "\(allow.out)")
            }
        }
    }
}

/// Whether this machine's /etc/fuse.conf has the `user_allow_other` line.
func FuseConfHasUserAllowOther() -> Bool {
    let conf = (try? String(contentsOfFile: "/etc/fuse.conf", encoding: .utf8)) ?? ""
    return conf.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "user_allow_other" }
}
