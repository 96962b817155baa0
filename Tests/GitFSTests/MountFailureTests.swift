import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// Mounts that fail, as root and as an ordinary user, in the foreground and in the background: each
    /// ends with its one error line, never a crash; and an ordinary user's hung mount is cleared too.
    @Suite struct Failing {
        /// A home of eight mirrors whose default branch has 10,000 directories, so the mount's warm-up
        /// (reading listings ahead) is still busy when the mount fails; owned by `user`.
        private func busyHome(for user: TestUser) throws -> String {
            let src = user.home + "/src.git"
            let files = (0..<10_000).flatMap { d in
                (0..<2).map { f in ("d\(d / 100)/e\(d)/f\(f).txt", Array("\(d) \(f)\n".utf8)) }
            }
            try fastImportRepo(at: src, commits: [files], checkout: false)
            let home = user.home + "/busy"
            try gitfsOK(home: home, ["clone", src, "r0"])
            for i in 1..<8 {
                let r = try runBounded(["cp", "-a", home + "/repos/r0.git", home + "/repos/r\(i).git"], seconds: 60)
                guard r.status == 0 else { throw TestFailure("cp: \(r.stderr)") }
            }
            try user.chownTree(home)
            return home
        }

        /// The server logs of a home, concatenated.
        private func logs(_ home: String) -> String {
            let dir = home + "/logs"
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            return files.compactMap { try? String(contentsOfFile: dir + "/" + $0, encoding: .utf8) }.joined(separator: "\n")
        }

        /// Exit 1, exactly one `gitfs: error:` line and it is the last one, no crash.
        private func expectCleanFailure(_ r: RunResult, _ what: String, failures: inout [String]) {
            let lines = r.stderr.split(separator: "\n")
            let errors = lines.filter { $0.hasPrefix("gitfs: error: ") }
            if r.status != 1 || errors.count != 1 || lines.last?.hasPrefix("gitfs: error: ") != true
                || r.stderr.contains("Fatal error") || r.stderr.contains("crashed") {
                failures.append("\(what): exit \(r.status), stderr: \(r.stderr.prefix(600))")
            }
        }

        @Test func everyFailingMountEndsWithItsOneErrorLine() throws {
            openFuseDeviceToUsers()
            let user = try TestUser("mountfail")
            defer { user.remove() }
            let home = try busyHome(for: user)
            // Root's directory: the user may not mount on it (fusermount3 refuses, after the mount's
            // repositories and cache are open and its background threads run).
            let rootsDir = user.home + "/roots-mnt"
            try FileManager.default.createDirectory(atPath: rootsDir, withIntermediateDirectories: true)
            // The user's own directory, but the cache folder is a file.
            let usersDir = user.home + "/users-mnt"
            try FileManager.default.createDirectory(atPath: usersDir, withIntermediateDirectories: true)
            let fileCacheHome = user.home + "/filecache"
            try FileManager.default.createDirectory(atPath: fileCacheHome + "/repos", withIntermediateDirectories: true)
            _ = try runBounded(["cp", "-a", home + "/repos/r0.git", fileCacheHome + "/repos/"], seconds: 60)
            _ = FileManager.default.createFile(atPath: fileCacheHome + "/cache", contents: Data("x".utf8))
            try user.chownTree(usersDir)
            try user.chownTree(fileCacheHome)
            defer {
                for mp in [rootsDir, usersDir] where isMountPoint(mp) {
                    _ = try? runBounded([gitfsBinary, "unmount", mp], seconds: 30)
                }
            }

            var failures: [String] = []
            for attempt in 0..<8 {
                for foreground in [true, false] {
                    let mode = foreground ? ["--foreground"] : []
                    let r = try user.run([gitfsBinary, "mount", rootsDir, "--home", home] + mode, seconds: 60)
                    expectCleanFailure(r, "user's mount on root's directory #\(attempt)\(foreground ? " (foreground)" : "")", failures: &failures)
                }
            }
            for foreground in [true, false] {
                let mode = foreground ? ["--foreground"] : []
                let asUser = try user.run([gitfsBinary, "mount", usersDir, "--home", fileCacheHome] + mode, seconds: 60)
                expectCleanFailure(asUser, "user's mount with a file as cache\(foreground ? " (foreground)" : "")", failures: &failures)
                let asRoot = try runBounded([gitfsBinary, "mount", rootsDir, "--home", fileCacheHome] + mode, seconds: 60)
                expectCleanFailure(asRoot, "root's mount with a file as cache\(foreground ? " (foreground)" : "")", failures: &failures)
            }
            #expect(failures.isEmpty, "\(failures.count) failing mounts did not end cleanly:\n\(summary(failures))")

            // The background servers' logs: every run ended with its error line, none crashed.
            for h in [home, fileCacheHome] {
                let log = logs(h)
                #expect(!log.contains("Fatal error") && !log.contains("Program crashed"), "server log of \(h):\n\(log.suffix(3000))")
                let last = log.split(separator: "\n").last ?? ""
                #expect(last.hasPrefix("gitfs: error: "), "server log of \(h) ends with: \(last)")
            }
            #expect(!isMountPoint(rootsDir) && !isMountPoint(usersDir))
        }

        /// An ordinary user's mount whose server is stopped: the user's `gitfs unmount` (no umount2, no
        /// fusectl mount of its own) clears it within a bound, and the blocked reader is released.
        @Test func usersHungMountIsClearedByTheUser() throws {
            openFuseDeviceToUsers()
            let user = try TestUser("hungmount")
            let src = user.home + "/src", home = user.home + "/gitfs-home", mnt = user.home + "/mnt"
            try fastImportRepo(at: src, commits: [[("a.txt", Array("one\n".utf8))], [("b/c.txt", Array("two\n".utf8))]])
            try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
            try user.chownTree(user.home)
            defer {
                if let line = mountLine(at: mnt) { abortFuseConnection(minor: line.minor); umount2(mnt, Int32(MNT_DETACH)) }
                user.remove()
            }
            try #require(try user.run([gitfsBinary, "clone", src, "r", "--home", home]).status == 0)
            let mounted = try user.run([gitfsBinary, "mount", mnt, "--home", home], seconds: 90)
            try #require(mounted.status == 0, "the user's gitfs mount: \(mounted.stderr)")
            let pid = try #require(mountLine(at: mnt)?.serverPID)
            kill(pid, SIGSTOP)
            let reader = try Child(user.command(["cat", mnt + "/r/HEAD/b/c.txt"]))
            defer { reader.kill() }
            usleep(500_000)
            #expect(reader.poll() == nil, "the reader should be blocked on the stopped server")

            let started = Date()
            let r = try user.run([gitfsBinary, "unmount", mnt], seconds: 90)
            let took = Date().timeIntervalSince(started)
            #expect(r.status == 0, "the user's gitfs unmount of a hung mount: \(r.stderr)")
            #expect(took < 20, "gitfs unmount took \(took) s")
            #expect(mountLine(at: mnt) == nil)
            let status = reader.wait(timeout: 10)
            #expect(status != nil && status != 0, "the blocked reader was not released with an error")
            #expect(waitFor(seconds: 10) { !processAlive(pid) }, "the user's server is still running")
        }
    }
}
