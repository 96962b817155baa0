import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// Unmounting under load, signals, a killed server, refs moved by fetch, repositories coming and going.
    @Suite struct Lifecycle {

        @Test func unmountWithThirtyTwoReadersMidReadFinishesQuickly() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("unmount")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 120)
            let pid = try #require(m.serverPID)
            let id = fixture.branches["main"]!
            let big = m.path("fixture/commits/\(id)/big/random.bin")
            let tree = m.path("fixture/commits/\(id)")
            // Half read the big (uncached) file over and over, half cat every file of the commit over and over.
            let readers = try (0..<32).map { i in
                try Child(["sh", "-c", i % 2 == 0
                           ? "while cat \"$1\" >/dev/null; do :; done; exit 3"
                           : "while find \"$2\" -type f -exec cat {} + >/dev/null; do :; done; exit 3", "sh", big, tree])
            }
            defer { readers.forEach { $0.kill() } }
            _ = waitFor(seconds: 5) { ((try? m.stats())?["inflight"] ?? 0) > 1 }
            usleep(300_000)
            #expect(readers.allSatisfy { $0.poll() == nil }, "readers failed before the unmount")

            let started = Date()
            let r = try m.gitfs(["unmount", m.mountpoint], seconds: 60)
            let took = Date().timeIntervalSince(started)
            #expect(r.status == 0, "gitfs unmount: \(r.stderr)")
            #expect(took < 10, "gitfs unmount took \(took) s")
            var hung = 0
            for reader in readers where reader.wait(timeout: 15) == nil { hung += 1 }
            #expect(hung == 0, "\(hung) readers still running 15 s after the unmount")
            #expect(!isMountPoint(m.mountpoint))
            #expect(waitFor(seconds: 5) { !processAlive(pid) }, "server still alive")
            print("unmount with 32 readers mid-read took \(String(format: "%.2f", took)) s")
        }

        @Test(arguments: [SIGTERM, SIGINT])
        func signalUnmountsCleanly(_ signal: Int32) throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("signal")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 60)
            let pid = try #require(m.serverPID)
            #expect(try runBounded(["cat", m.path("fixture/HEAD/README.md")], seconds: 20).status == 0)
            kill(pid, signal)
            #expect(waitFor(seconds: 10) { !isMountPoint(m.mountpoint) }, "still mounted after signal \(signal)")
            #expect(waitFor(seconds: 10) { !processAlive(pid) }, "server alive after signal \(signal)")
        }

        /// The server relies on SIGTERM/SIGINT; started by a process whose threads block them (as the mask is
        /// inherited across fork/exec), it must still unmount on SIGTERM.
        @Test func sigtermWorksWhenTheStarterBlockedIt() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("sigmask")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 60, blockedSignals: [SIGTERM, SIGINT])
            let pid = try #require(m.serverPID)
            let blocked = ((try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? "")
                .split(separator: "\n").first { $0.hasPrefix("SigBlk:") } ?? "?"
            kill(pid, SIGTERM)
            #expect(waitFor(seconds: 10) { !isMountPoint(m.mountpoint) }, "SIGTERM ignored; server \(blocked)")
        }

        @Test func afterSIGKILLUnmountClearsTheDeadMountAndANewMountWorks() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("sigkill")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 90)
            let pid = try #require(m.serverPID)
            kill(pid, SIGKILL)
            #expect(waitFor(seconds: 10) { !processAlive(pid) })
            #expect(isMountPoint(m.mountpoint))
            // A request that needs the server (attributes may still be cached in the kernel).
            let d = opendir(m.mountpoint)
            let e = errno
            if let d { closedir(d) }
            // ENOTCONN, or ECONNABORTED when the kernel aborted a request in flight or (no-opendir mode)
            // answers the open itself from the aborted connection: both mean "server gone".
            #expect(d == nil && (e == ENOTCONN || e == ECONNABORTED), "opendir of a dead mount: errno \(e)")
            // Mount and stats tell a dead gitfs mount for what it is, and how to clear it.
            let again = try m.gitfs(["mount", m.mountpoint], seconds: 60)
            expectOneErrorLine(again, "mount on a dead gitfs mount")
            #expect(again.stderr.contains("dead gitfs mount") && again.stderr.contains("gitfs unmount \(m.mountpoint)"), "\(again.stderr)")
            let stats = try m.gitfs(["stats", m.mountpoint], seconds: 30)
            expectOneErrorLine(stats, "stats of a dead mount")
            #expect(stats.stderr.contains("not running"), "\(stats.stderr)")

            let r = try m.gitfs(["unmount", m.mountpoint], seconds: 30)
            #expect(r.status == 0, "gitfs unmount of a dead mount: \(r.stderr)")
            #expect(!isMountPoint(m.mountpoint))

            try m.mount(watchdogSeconds: 60)
            #expect(m.serverPID != pid)
            let readme = try runBounded(["cat", m.path("fixture/HEAD/README.md")], seconds: 20)
            let want = try fixture.gitBlob("main", "README.md")
            #expect(readme.status == 0 && readme.stdout == want)
        }

        @Test func fetchedRefsShowWithoutRemounting() throws {
            let work = try TempDir("fetch")
            let src = work.sub("src")
            try fastImportRepo(at: src, commits: [[("a.txt", Array("one\n".utf8))], [("a.txt", Array("two\n".utf8))]])
            try git("branch", "dev", "main", cwd: src)
            try git("branch", "gone", "main~1", cwd: src)
            let c0 = try revParse(src, "main~1"), c1 = try revParse(src, "main")

            let m = try MountedHome("fetch")
            defer { m.unmount() }
            try m.clone(src, as: "r")
            try m.mount(watchdogSeconds: 90)
            let link = { (b: String) in lstatInfo(m.path("r/branches/\(b)"))?.kind }
            #expect(link("main") == .symlink("../commits/\(c1)"))
            #expect(link("dev") == .symlink("../commits/\(c1)"))
            #expect(link("gone") == .symlink("../commits/\(c0)"))

            // A new commit on main, dev forced back (not a fast-forward), gone deleted.
            #expect(FileManager.default.createFile(atPath: src + "/a.txt", contents: Data("three\n".utf8)))
            try git("commit", "-q", "-am", "three", cwd: src)
            let c2 = try revParse(src, "main")
            try git("branch", "-f", "dev", c0, cwd: src)
            try git("branch", "-D", "gone", cwd: src)
            let f = try m.gitfs(["fetch", "r"])
            #expect(f.status == 0, "gitfs fetch: \(f.stderr)")

            let started = Date()
            let moved = waitFor(seconds: 5) {
                link("main") == .symlink("../commits/\(c2)") && link("dev") == .symlink("../commits/\(c0)") && link("gone") == nil
            }
            #expect(moved, "after fetch: main \(String(describing: link("main"))), dev \(String(describing: link("dev"))), gone \(String(describing: link("gone")))")
            print("moved refs visible after \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
            #expect((try? listDirectory(m.path("r/branches")).sorted()) == ["dev", "main"])
            let content = try runBounded(["cat", m.path("r/branches/main/a.txt")], seconds: 20)
            #expect(content.out == "three\n")

            // A repository cloned into the home while mounted appears; a removed one disappears.
            #expect(try m.gitfs(["clone", src, "late"]).status == 0)
            #expect(waitFor(seconds: 5) { (try? listDirectory(m.path("")))?.contains("late") == true }, "cloned repository did not appear")
            #expect(lstatInfo(m.path("late/branches/main"))?.kind == .symlink("../commits/\(c2)"))
            #expect(try m.gitfs(["remove", "late"]).status == 0)
            #expect(waitFor(seconds: 5) {
                (try? listDirectory(m.path("")))?.contains("late") == false && lstatInfo(m.path("late")) == nil
            }, "removed repository did not disappear")
            #expect(!m.watchdogHasFired)
        }
    }
}
