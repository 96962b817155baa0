import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// An ordinary user made for the test mounts, reads, sees stats and unmounts, as FUSE filesystems
    /// are normally used (no root, no allow_other).
    @Suite struct NonRoot {
        /// A repository of the user's own (libgit2 refuses local sources owned by someone else) with
        /// one file whose bytes the test knows; the mount point; the user's home for gitfs.
        struct Setup {
            let user: TestUser
            let source: String
            let home: String
            let mountpoint: String
            let content: [UInt8] = Array("hello from an ordinary user\n".utf8)

            init(_ label: String) throws {
                openFuseDeviceToUsers()
                user = try TestUser(label)
                source = user.home + "/src"
                home = user.home + "/gitfs-home"
                mountpoint = user.home + "/mnt"
                try fastImportRepo(at: source, commits: [[("a.txt", Array("one\n".utf8))], [("hello.txt", content)]])
                try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
                try user.chownTree(user.home)
            }

            /// `gitfs ARGS[0] --home HOME ARGS[1...]` as the user.
            @discardableResult
            func gitfs(_ args: [String], seconds: Double = 90) throws -> RunResult {
                try user.run([gitfsBinary, args[0], "--home", home] + args.dropFirst(), seconds: seconds)
            }

            /// Whatever happens, nothing stays mounted and the user goes.
            func cleanUp() {
                if isMountPoint(mountpoint) { _ = try? gitfs(["unmount", mountpoint], seconds: 30) }
                for _ in 0..<3 where isMountPoint(mountpoint) {
                    if let line = mountLine(at: mountpoint) { abortFuseConnection(minor: line.minor) }
                    umount2(mountpoint, Int32(MNT_DETACH))
                    usleep(200_000)
                }
                user.remove()
            }
        }

        @Test func fullCycleAsAnOrdinaryUser() throws {
            let s = try Setup("cycle")
            defer { s.cleanUp() }
            let clone = try s.gitfs(["clone", s.source, "r"])
            try #require(clone.status == 0, "clone as \(s.user.name): \(clone.stderr)")

            let mount = try s.gitfs(["mount", s.mountpoint])
            try #require(mount.status == 0, "mount as \(s.user.name): \(mount.stderr)")
            let line = try #require(mountLine(at: s.mountpoint))
            let pid = try #require(line.serverPID)
            let options = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?
                .split(separator: "\n").first { $0.contains(" \(s.mountpoint) ") }.map(String.init) ?? ""
            #expect(options.contains("user_id=\(s.user.uid)"), "mounted by the user: \(options)")
            #expect(!options.contains("allow_other"), "no allow_other by default: \(options)")

            let read = try s.user.run(["cat", s.mountpoint + "/r/HEAD/hello.txt"])
            #expect(read.status == 0 && read.stdout == s.content, "read as the user: \(read.stderr)")
            // Without allow_other, even root cannot look inside the user's mount.
            var st = stat()
            let rootStat = stat(s.mountpoint + "/r", &st)
            #expect(rootStat != 0 && errno == EACCES, "root could read a mount made without allow_other")

            let stats = try s.gitfs(["stats", s.mountpoint, "--json"])
            #expect(stats.status == 0, "stats as the user: \(stats.stderr)")
            let fields = try MountedHome.integerFields(Data(stats.stdout))
            #expect((fields["reads"] ?? 0) >= 1 && (fields["bytes_read"] ?? 0) >= s.content.count, "\(fields)")
            #expect(fields["fetches"] == 0 && fields["fetch_errors"] == 0 && fields["last_fetch"] == 0, "\(fields)")
            // Cache upkeep and prefetch as the user.
            #expect(try s.gitfs(["prefetch", "r"]).status == 0)
            #expect(try s.gitfs(["gc", "--max-size", "1G"]).status == 0)

            // The server dies: mounting again first needs the dead mount cleared, which the user can do.
            kill(pid, SIGKILL)
            #expect(waitFor(seconds: 10) { !processAlive(pid) })
            let onDead = try s.gitfs(["mount", s.mountpoint])
            #expect(onDead.status == 1 && onDead.stderr.hasPrefix("gitfs: error: ") && onDead.stderr.contains("unmount it first"),
                    "mount on a dead mount: \(onDead.stderr)")
            let clear = try s.gitfs(["unmount", s.mountpoint], seconds: 30)
            #expect(clear.status == 0, "unmount of the dead mount as the user: \(clear.stderr)")
            #expect(!isMountPoint(s.mountpoint))

            let again = try s.gitfs(["mount", s.mountpoint])
            try #require(again.status == 0, "mount again as the user: \(again.stderr)")
            let pid2 = try #require(mountLine(at: s.mountpoint)?.serverPID)
            #expect(pid2 != pid)
            let reread = try s.user.run(["cat", s.mountpoint + "/r/branches/main/hello.txt"])
            #expect(reread.status == 0 && reread.stdout == s.content)

            let unmount = try s.gitfs(["unmount", s.mountpoint], seconds: 30)
            #expect(unmount.status == 0, "unmount as the user: \(unmount.stderr)")
            #expect(!isMountPoint(s.mountpoint))
            #expect(waitFor(seconds: 10) { !processAlive(pid2) }, "server still running after unmount")
        }

        /// Without `user_allow_other` in /etc/fuse.conf, `--allow-other` (flag or setting) is one clear
        /// error and mounts nothing; root may use it and gets allow_other.
        @Test func allowOtherNeedsUserAllowOther() throws {
            let conf = (try? String(contentsOfFile: "/etc/fuse.conf", encoding: .utf8)) ?? ""
            try #require(!conf.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "user_allow_other" },
                         "this machine's /etc/fuse.conf allows user_allow_other: the refusal cannot be shown here")
            let s = try Setup("allow")
            defer { s.cleanUp() }
            try #require(try s.gitfs(["clone", s.source, "r"]).status == 0)
            for (how, args) in [("flag", ["mount", s.mountpoint, "--allow-other"]), ("setting", ["mount", s.mountpoint])] {
                if how == "setting" { #expect(try s.gitfs(["config", "allow-other", "true"]).status == 0) }
                let r = try s.gitfs(args)
                let lines = r.stderr.split(separator: "\n")
                #expect(r.status == 1, "\(how): exit \(r.status)")
                #expect(lines.count == 1 && lines[0].hasPrefix("gitfs: error: ") && lines[0].contains("user_allow_other")
                        && lines[0].contains("/etc/fuse.conf"), "\(how): \(r.stderr)")
                #expect(!isMountPoint(s.mountpoint), "\(how): mounted anyway")
            }

            // Root may always use allow_other.
            let m = try MountedHome("allowroot")
            defer { m.unmount() }
            chmod(m.dir.path, 0o755)   // mkdtemp's 0700 would stop the other user before the mount does
            try m.clone(s.source, as: "r")
            try m.mount(extra: ["--allow-other"], watchdogSeconds: 60)
            let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?
                .split(separator: "\n").first { $0.contains(" \(m.mountpoint) ") }.map(String.init) ?? ""
            #expect(info.contains("allow_other"), "root --allow-other: \(info)")
            let other = try s.user.run(["cat", m.mountpoint + "/r/HEAD/hello.txt"])
            #expect(other.status == 0 && other.stdout == s.content, "another user reads an allow_other mount: \(other.stderr)")
        }
    }
}
