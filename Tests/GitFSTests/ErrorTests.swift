import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// Refused mounts, refused writes, crafted trees, and the counters.
    @Suite struct Errors {

        @Test func mountRefusesBadMountpointsAndEmptyHomes() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("errors")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")

            let missing = m.dir.sub("missing")
            expectOneErrorLine(try m.gitfs(["mount", missing], seconds: 30), "missing mountpoint")
            #expect(!FileManager.default.fileExists(atPath: missing))

            let full = m.dir.sub("full")
            try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: full + "/x", contents: Data())
            expectOneErrorLine(try m.gitfs(["mount", full], seconds: 30), "non-empty mountpoint")
            #expect(!isMountPoint(full))

            let empty = try TempDir("emptyhome")
            let mp = empty.sub("mnt")
            try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
            expectOneErrorLine(try runBounded([gitfsBinary, "mount", mp, "--home", empty.sub("home")], seconds: 30), "home without repositories")
            #expect(!isMountPoint(mp))

            try m.mount(watchdogSeconds: 60)
            let pid = m.serverPID
            expectOneErrorLine(try m.gitfs(["mount", m.mountpoint], seconds: 30), "already mounted")
            #expect(mountLine(at: m.mountpoint)?.serverPID == pid, "the first mount must stay")
            #expect(try runBounded(["cat", m.path("fixture/HEAD/README.md")], seconds: 20).status == 0)
        }

        @Test func everyKindOfWriteFailsWithEROFS() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("erofs")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 60)
            let root = m.path("fixture/commits/\(fixture.branches["main"]!)")
            let file = root + "/README.md", dir = root + "/src", exe = root + "/bin/run.sh"
            let before = try #require(try? readWholeFile(file).get())

            func expectEROFS(_ what: String, _ rc: @autoclosure () -> Int) {
                errno = 0
                let r = rc()
                let e = errno
                #expect(r < 0 && e == EROFS, "\(what): rc \(r), errno \(e) (\(String(cString: strerror(e))))")
            }
            func openFD(_ path: String, _ flags: Int32) -> Int {
                let fd = open(path, flags, 0o644)
                if fd >= 0 { close(fd) }
                return Int(fd)
            }
            expectEROFS("create", openFD(dir + "/new.txt", O_CREAT | O_WRONLY))
            expectEROFS("create at the root", openFD(m.path("new.txt"), O_CREAT | O_WRONLY))
            expectEROFS("open for writing", openFD(file, O_WRONLY))
            expectEROFS("open read-write", openFD(file, O_RDWR))
            expectEROFS("open with O_TRUNC", openFD(file, O_WRONLY | O_TRUNC))
            expectEROFS("append", openFD(file, O_WRONLY | O_APPEND))
            expectEROFS("mkdir", Int(mkdir(dir + "/newdir", 0o755)))
            expectEROFS("mkdir in branches/", Int(mkdir(m.path("fixture/branches/new"), 0o755)))
            expectEROFS("unlink", Int(unlink(file)))
            expectEROFS("unlink a branch", Int(unlink(m.path("fixture/branches/main"))))
            expectEROFS("rmdir", Int(rmdir(dir)))
            expectEROFS("rename", Int(rename(file, dir + "/moved.md")))
            expectEROFS("rename a repository", Int(rename(m.path("fixture"), m.path("other"))))
            expectEROFS("chmod", Int(chmod(exe, 0o777)))
            expectEROFS("chown", Int(chown(file, 1, 1)))
            expectEROFS("setxattr", Int(c_setxattr(file, "user.test", "x", 1, 0)))
            expectEROFS("truncate", Int(truncate(file, 0)))
            expectEROFS("symlink", Int(symlink("README.md", dir + "/ln")))
            expectEROFS("link", Int(link(file, dir + "/hard")))
            expectEROFS("mknod", Int(mkfifo(dir + "/fifo", 0o644)))
            var times = [timespec(tv_sec: 1, tv_nsec: 0), timespec(tv_sec: 1, tv_nsec: 0)]
            expectEROFS("utimensat", Int(utimensat(AT_FDCWD, file, &times, 0)))
            #expect((try? readWholeFile(file).get()) == before)
            #expect(lstatInfo(exe)?.permissions == 0o555)
        }

        /// Builds tree bytes from (mode, name, id) entries in the given order.
        private func treeBytes(_ entries: [(String, [UInt8], String)]) -> [UInt8] {
            var out: [UInt8] = []
            for (mode, name, hex) in entries {
                out += Array("\(mode) ".utf8) + name + [0]
                var i = hex.startIndex
                while i < hex.endIndex {
                    let j = hex.index(i, offsetBy: 2)
                    out.append(UInt8(hex[i..<j], radix: 16)!)
                    i = j
                }
            }
            return out
        }

        @Test func craftedTreeWithBadNamesIsServedWithoutThem() throws {
            let work = try TempDir("evil")
            let src = work.sub("src")
            try fastImportRepo(at: src, commits: [[("good.txt", Array("good\n".utf8)), ("ok/inner.txt", Array("inner\n".utf8))]])
            let m = try MountedHome("evil")
            defer { m.unmount() }
            try m.clone(src, as: "r")
            // Crafted objects go straight into the mirror (what a hostile remote could have sent).
            let mirror = m.home + "/repos/r.git"
            #expect(FileManager.default.fileExists(atPath: mirror), "mirror layout changed: \(mirror)")
            func hashObject(_ type: String, _ bytes: [UInt8]) throws -> String {
                try gitBytes(["--git-dir", mirror, "hash-object", "-t", type, "--literally", "-w", "--stdin"], cwd: work.path, stdin: bytes)
                    .out.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let good = try revParse(src, "main:good.txt")
            let ok = try revParse(src, "main:ok")
            let config = try hashObject("blob", Array("[core]\n\tfsmonitor = touch /tmp/pwned\n".utf8))
            let gitDir = try hashObject("tree", treeBytes([("100644", Array("config".utf8), config)]))
            let escape = try hashObject("tree", treeBytes([("100644", Array("escape.txt".utf8), good)]))
            // Git's order: "." < ".." < ".GIT" < ".git" < "a/b" < "good.txt" < "ok".
            let bad1 = try hashObject("tree", treeBytes([
                ("100644", Array(".".utf8), good), ("40000", Array("..".utf8), escape),
                ("40000", Array(".GIT".utf8), gitDir), ("40000", Array(".git".utf8), gitDir),
                ("100644", Array("good.txt".utf8), good), ("40000", Array("ok".utf8), ok),
            ]))
            let bad2 = try hashObject("tree", treeBytes([
                ("40000", Array(".Git".utf8), gitDir), ("100644", Array("a/b".utf8), good),
                ("100644", Array("good.txt".utf8), good), ("40000", Array("ok".utf8), ok),
            ]))
            var commits: [String] = []
            for (i, tree) in [bad1, bad2].enumerated() {
                let c = try gitBytes(["--git-dir", mirror, "commit-tree", tree, "-m", "crafted \(i)"], cwd: work.path)
                    .out.trimmingCharacters(in: .whitespacesAndNewlines)
                try git("--git-dir", mirror, "update-ref", "refs/heads/evil\(i)", c, cwd: work.path)
                commits.append(c)
            }
            try m.mount(watchdogSeconds: 90)
            let pid = try #require(m.serverPID)

            for c in commits {
                let root = m.path("r/commits/\(c)")
                let names = try listDirectory(root).sorted()
                #expect(names == ["good.txt", "ok"], "\(c): listing \(names)")
                for hidden in [".", "..", ".git", ".GIT", ".Git", "escape.txt", "a", "config"] where hidden != "." && hidden != ".." {
                    #expect(lstatInfo(root + "/" + hidden) == nil, "\(c): \(hidden) is reachable")
                }
                #expect(lstatInfo(root + "/.git/config") == nil)
                #expect((try? readWholeFile(root + "/good.txt").get()) == Array("good\n".utf8))
                #expect((try? readWholeFile(root + "/ok/inner.txt").get()) == Array("inner\n".utf8))
                // ".." inside the commit is the kernel's parent (commits/), not the crafted tree.
                #expect(lstatInfo(root + "/../\(c)")?.kind == .directory)
                #expect(lstatInfo(root + "/../escape.txt") == nil)
                let walked = try walkTree(root)
                #expect(Set(walked.keys) == ["", "good.txt", "ok", "ok/inner.txt"], "\(c): \(walked.keys.sorted())")
            }
            // `gitfs ls` and `gitfs cat` walk the same names as the mount: hidden ones are marked, and no path
            // leads through them.
            let listed = try m.gitfs(["ls", "r", commits[0]])
            #expect(listed.status == 0, "\(listed.stderr)")
            let lines = listed.out.split(separator: "\n").map { String($0.split(separator: "\t").last ?? "") }
            #expect(lines == ["good.txt", "ok", ". (hidden)", ".. (hidden)", ".GIT (hidden)", ".git (hidden)"], "\(listed.out)")
            let listedZ = try m.gitfs(["ls", "-z", "r", commits[0]])
            #expect(listedZ.out.split(separator: "\0").map { String($0.split(separator: "\t").last ?? "") } == ["good.txt", "ok"])
            for hidden in [".git/config", ".GIT/config", "../escape.txt"] {
                let cat = try m.gitfs(["cat", "r", "\(commits[0]):\(hidden)"])
                #expect(cat.status == 1 && cat.stderr.contains("does not exist"), "cat \(hidden): \(cat.status) \(cat.stderr)")
            }
            #expect(try m.gitfs(["cat", "r", "\(commits[0]):ok/inner.txt"]).stdout == Array("inner\n".utf8))
            #expect(processAlive(pid), "server died on a crafted tree")
            #expect(try listDirectory(m.path("r/branches")).sorted() == ["evil0", "evil1", "main"])
            #expect(m.serverLog.contains("hiding") || m.serverLog.lowercased().contains("name"), "hidden names are logged")
        }

        @Test func statsCountForReal() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("stats")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 60)
            let fields = ["requests", "reads", "bytes_read", "cache_hits", "cache_misses", "blob_loads",
                          "singleflight_joins", "errors", "inflight",
                          // every mount has the remote-cache and origin counters, zeros when unused
                          "remote_hits", "remote_misses", "remote_errors", "remote_bytes_in", "remote_uploads",
                          "remote_bytes_out", "origin_fetches", "origin_objects", "origin_bytes", "origin_errors"]
            let s0 = try m.stats()
            for f in fields { #expect(s0[f] != nil, ".gitfs/stats lacks the integer field \(f): \(s0)") }
            #expect(try RemoteFleet.statsText(m).contains("\"remote_state\": \"off\""))

            let file = m.path("fixture/commits/\(fixture.branches["main"]!)/data/lines.txt")
            let want = try fixture.gitBlob("main", "data/lines.txt")
            #expect(compareFile(file, with: want) == nil)
            let s1 = try m.stats()
            #expect(s1["reads"]! > s0["reads"]!)
            #expect(s1["bytes_read"]! - s0["bytes_read"]! >= want.count)
            #expect(s1["cache_misses"]! > s0["cache_misses"]!)
            #expect(s1["blob_loads"]! == s0["blob_loads"]! + 1)
            #expect(s1["requests"]! > s0["requests"]!)

            dropKernelCaches()
            #expect(compareFile(file, with: want) == nil)
            let s2 = try m.stats()
            #expect(s2["cache_hits"]! > s1["cache_hits"]!, "cache_hits \(s1["cache_hits"]!) -> \(s2["cache_hits"]!)")
            #expect(s2["reads"]! > s1["reads"]!)
            #expect(s2["bytes_read"]! - s1["bytes_read"]! >= want.count)
            #expect(s2["blob_loads"]! == s1["blob_loads"]!, "a cached blob was loaded again")

            let cli = try m.gitfs(["stats", m.mountpoint, "--json"], seconds: 30)
            #expect(cli.status == 0, "gitfs stats: \(cli.stderr)")
            let c = try MountedHome.integerFields(Data(cli.stdout))
            for f in fields { #expect(c[f] != nil, "gitfs stats --json lacks the integer field \(f): \(cli.out)") }
            #expect(c["requests"]! > s2["requests"]!)
            #expect(c["errors"] == 0)
        }
    }
}
