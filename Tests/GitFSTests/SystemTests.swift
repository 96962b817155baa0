import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// gitfs as part of the system: fstab through mount.fuse3, systemd units, settings, doctor.
    @Suite struct System {
        /// mount(8) runs helpers with PATH removed, and mount.fuse3 runs `gitfs` through /bin/sh, whose
        /// default PATH starts with /usr/local/sbin: the test links the binary there for its duration
        /// (refusing to replace a gitfs someone installed) and removes the link on every path.
        final class HelperLink {
            static let path = "/usr/local/sbin/gitfs"
            init() throws {
                if let existing = try? FileManager.default.destinationOfSymbolicLink(atPath: Self.path) {
                    guard existing == gitfsBinary else { throw TestFailure("\(Self.path) links to \(existing): not replacing it") }
                    unlink(Self.path)
                } else if FileManager.default.fileExists(atPath: Self.path) {
                    throw TestFailure("\(Self.path) exists: not replacing an installed gitfs")
                }
                guard symlink(gitfsBinary, Self.path) == 0 else { throw TestFailure("symlink \(Self.path): \(String(cString: strerror(errno)))") }
            }
            func remove() { unlink(Self.path) }
            deinit { remove() }
        }

        /// An fstab line `HOME MOUNTPOINT fuse.gitfs OPTIONS 0 0` mounts with `mount` (through
        /// mount.fuse3 and `gitfs HOME MOUNTPOINT -o OPTIONS`) and `umount` ends it; gitfs's own
        /// options take effect (a 1 s fetch interval moves a branch by itself), unknown ones are refused.
        @Test func fstabLineMountsWithMountAndUnmountsWithUmount() throws {
            let work = try TempDir("fstab")
            let src = work.sub("src")
            try fastImportRepo(at: src, commits: [[("a.txt", Array("one\n".utf8))]])
            let m = try MountedHome("fstab")
            defer { m.unmount() }
            try m.clone(src, as: "r")
            let link = try HelperLink()
            defer { link.remove() }
            let fstab = work.sub("fstab")
            let line = "\(m.home) \(m.mountpoint) fuse.gitfs defaults,noauto,nofail,x-systemd.automount,fetch-interval=1s,threads=8 0 0\n"
            try Data(line.utf8).write(to: URL(fileURLWithPath: fstab))
            let r = try runBounded(["mount", "-T", fstab, m.mountpoint], seconds: 90)
            #expect(r.status == 0, "mount -T fstab: \(r.stderr)")
            let mounted = try #require(mountLine(at: m.mountpoint))
            #expect(mounted.fsType == "fuse.gitfs")
            m.adoptCurrentMount()
            m.armWatchdog(seconds: 90)
            let readme = try runBounded(["cat", m.path("r/HEAD/a.txt")], seconds: 20)
            #expect(readme.status == 0 && readme.out == "one\n")
            #expect(FileManager.default.createFile(atPath: src + "/a.txt", contents: Data("two\n".utf8)))
            try git("commit", "-q", "-am", "two", cwd: src)
            let c1 = try revParse(src, "main")
            #expect(waitFor(seconds: 5) { lstatInfo(m.path("r/branches/main"))?.kind == .symlink("../commits/\(c1)") },
                    "fetch-interval=1s from the fstab line had no effect")

            let pid = mounted.serverPID
            let u = try runBounded(["umount", m.mountpoint], seconds: 30)
            #expect(u.status == 0, "umount: \(u.stderr)")
            #expect(!isMountPoint(m.mountpoint))
            if let pid { #expect(waitFor(seconds: 10) { !processAlive(pid) }, "server alive after umount") }

            // The same form with an option gitfs does not know: one line, bad usage, nothing mounted.
            let bad = try runBounded([gitfsBinary, m.home, m.mountpoint, "-o", "rw,frobnicate=3"], seconds: 30)
            #expect(bad.status == 2 && bad.stderr.hasPrefix("gitfs: error: ") && bad.stderr.contains("frobnicate")
                    && bad.stderr.split(separator: "\n").count == 1, "\(bad.status): \(bad.stderr)")
            #expect(!isMountPoint(m.mountpoint))
        }

        /// `gitfs service install` writes a unit that systemd accepts, naming the mount point and home;
        /// `remove` deletes it.
        @Test func serviceUnitInstallVerifyRemove() throws {
            let dir = try TempDir("service")
            let env = ["XDG_CONFIG_HOME": dir.sub("config")]
            let mountpoint = dir.sub("mnt")
            let home = dir.sub("home")
            let install = try run([gitfsBinary, "service", "install", mountpoint, "--user", "--home", home, "--fetch-interval", "15m"], env: env)
            #expect(install.status == 0, "\(install.stderr)")
            let units = (try? FileManager.default.contentsOfDirectory(atPath: dir.sub("config/systemd/user"))) ?? []
            #expect(units.count == 1 && units[0].hasPrefix("gitfs-") && units[0].hasSuffix("-mnt.service"), "\(units)")
            let unitPath = dir.sub("config/systemd/user/") + (units.first ?? "")
            let text = (try? String(contentsOfFile: unitPath, encoding: .utf8)) ?? ""
            let executable = URL(fileURLWithPath: gitfsBinary).resolvingSymlinksInPath().path
            #expect(text.contains("ExecStart=\(executable) mount \(mountpoint) --home \(home) --foreground --fetch-interval 15m"), "\(text)")
            #expect(text.contains("WantedBy=default.target"))

            if let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
                // No user manager runs here (no XDG_RUNTIME_DIR), so the unit is checked by the system
                // instance's rules, which are the same for these directives.
                let v = try run([analyze, "verify", unitPath])
                #expect(v.status == 0, "systemd-analyze verify: \(v.stdout) \(v.stderr)")
                // The check can fail: a unit whose ExecStart is not an absolute path is refused.
                let broken = dir.sub("broken.service")
                try Data(text.replacingOccurrences(of: "ExecStart=\(gitfsBinary)", with: "ExecStart=no/such/gitfs").replacingOccurrences(of: "ExecStart=\(executable)", with: "ExecStart=no/such/gitfs").utf8)
                    .write(to: URL(fileURLWithPath: broken))
                #expect(try run([analyze, "verify", broken]).status != 0, "systemd-analyze accepted a broken unit")
            } else {
                print("systemd-analyze not installed: skipping 'systemd-analyze verify' of the unit")
            }

            let remove = try run([gitfsBinary, "service", "remove", mountpoint, "--user"], env: env)
            #expect(remove.status == 0, "\(remove.stderr)")
            #expect(!FileManager.default.fileExists(atPath: unitPath))
            let again = try run([gitfsBinary, "service", "remove", mountpoint, "--user"], env: env)
            #expect(again.status == 1 && again.stderr.hasPrefix("gitfs: error: "))
        }

        /// `gitfs config`: set, get, list, unset; bad keys and values are refused; the environment and
        /// flags override the stored value.
        @Test func configKeepsSettingsInTheHome() throws {
            let home = try TempDir("config")
            #expect(try gitfsOK(home: home.path, ["config"]).out.isEmpty)
            try gitfsOK(home: home.path, ["config", "fetch-interval", "15m"])
            #expect(try gitfsOK(home: home.path, ["config", "fetch-interval"]).out == "15m\n")
            try gitfsOK(home: home.path, ["config", "allow-other", "false"])
            #expect(try gitfsOK(home: home.path, ["config"]).out == "fetch-interval=15m\nallow-other=false\n")
            var st = stat()
            #expect(stat(home.sub("config"), &st) == 0 && st.st_mode & 0o077 == 0, "the settings file is readable by others")
            for bad in [["config", "no-such-key", "1"], ["config", "fetch-interval", "soon"], ["config", "allow-other", "maybe"],
                        ["config", "--unset"], ["config", "cache-max-size", "lots"]] {
                let r = try runGitfs(home: home.path, bad)
                #expect(r.status == 2 && r.stderr.hasPrefix("gitfs: error: ") && r.stderr.split(separator: "\n").count == 1, "\(bad): \(r.stderr)")
            }
            #expect(try gitfsOK(home: home.path, ["config", "fetch-interval"]).out == "15m\n", "a refused value changed the setting")
            try gitfsOK(home: home.path, ["config", "--unset", "fetch-interval"])
            #expect(try runGitfs(home: home.path, ["config", "fetch-interval"]).status == 1)
            #expect(try gitfsOK(home: home.path, ["config"]).out == "allow-other=false\n")

            // Lines of keys this gitfs does not know (a newer one's) survive a rewrite.
            try Data("# mine\nfuture-key = kept\nallow-other = false\n".utf8).write(to: URL(fileURLWithPath: home.sub("config")))
            try gitfsOK(home: home.path, ["config", "fetch-interval", "1h"])
            #expect(try gitfsOK(home: home.path, ["config"]).out == "future-key=kept\nallow-other=false\nfetch-interval=1h\n")

            // A stored setting that is not valid (edited by hand) stops a mount with one clear line; the
            // environment overrides it, and a flag overrides the environment.
            try Data("fetch-interval = whenever\n".utf8).write(to: URL(fileURLWithPath: home.sub("config")))
            let mp = try TempDir("config-mnt")
            let bad = try runGitfs(home: home.path, ["mount", mp.path])
            #expect(bad.status == 1 && bad.stderr.contains("fetch-interval") && bad.stderr.contains("whenever"), "\(bad.stderr)")
            let envBad = try runGitfs(home: home.path, ["mount", mp.path], env: ["GITFS_FETCH_INTERVAL": "nope"])
            #expect(envBad.status == 1 && envBad.stderr.contains("nope"), "\(envBad.stderr)")
            // With the environment valid, the mount gets past the settings (and stops at the empty home).
            let envGood = try runGitfs(home: home.path, ["mount", mp.path], env: ["GITFS_FETCH_INTERVAL": "1m"])
            #expect(envGood.status == 1 && envGood.stderr.contains("no repositories"), "\(envGood.stderr)")
            let flag = try runGitfs(home: home.path, ["mount", mp.path, "--fetch-interval", "2m"], env: ["GITFS_FETCH_INTERVAL": "nope"])
            #expect(flag.status == 1 && flag.stderr.contains("no repositories"), "\(flag.stderr)")
            #expect(!isMountPoint(mp.path))
        }

        @Test func completionScriptsNameTheNewCommands() throws {
            for shell in ["bash", "zsh", "fish"] {
                let r = try run([gitfsBinary, "--generate-completion-script", shell])
                #expect(r.status == 0 && ["doctor", "config", "service", "mount"].allSatisfy(r.out.contains), "\(shell)")
            }
        }
    }
}
