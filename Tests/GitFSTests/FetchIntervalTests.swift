import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// `--fetch-interval`: the mount keeps itself current from a real git daemon, and an unreachable
    /// origin neither disturbs reads nor floods the log.
    @Suite struct FetchInterval {
        @Test func pushedCommitShowsWithoutAnyCommandAndAnOfflineOriginIsHarmless() throws {
            let serve = try TempDir("serve")
            let origin = serve.sub("origin.git")
            let work = serve.sub("work")
            try fastImportRepo(at: work, commits: [[("a.txt", Array("one\n".utf8))]])
            try git("clone", "-q", "--bare", work, origin, cwd: "/tmp")
            try git("remote", "add", "daemon", origin, cwd: work)
            let daemon = try GitDaemon.start(basePath: serve.path)
            defer { daemon.stop() }

            let m = try MountedHome("interval")
            defer { m.unmount() }
            try m.clone(daemon.url("origin.git"), as: "r")
            try m.mount(extra: ["--fetch-interval", "1s"], watchdogSeconds: 120)
            let link = { lstatInfo(m.path("r/branches/main"))?.kind }
            let c0 = try revParse(work, "main")
            #expect(link() == .symlink("../commits/\(c0)"))

            // A commit pushed to the origin (over git://) shows up by itself.
            #expect(FileManager.default.createFile(atPath: work + "/a.txt", contents: Data("two\n".utf8)))
            try git("commit", "-q", "-am", "two", cwd: work)
            let c1 = try revParse(work, "main")
            try git("push", "-q", daemon.url("origin.git"), "main", cwd: work)
            let pushed = Date()
            let shown = waitFor(seconds: 3) { link() == .symlink("../commits/\(c1)") }
            let took = Date().timeIntervalSince(pushed)
            #expect(shown, "branches/main still \(String(describing: link())) 3 s after the push")
            print("pushed commit visible in branches/ after \(String(format: "%.2f", took)) s (interval 1 s)")
            let content = try runBounded(["cat", m.path("r/branches/main/a.txt")], seconds: 20)
            #expect(content.status == 0 && content.out == "two\n")
            let before = try m.stats()
            #expect((before["fetches"] ?? 0) >= 1, "\(before)")
            #expect(before["fetch_errors"] == 0, "\(before)")
            let lastFetch = before["last_fetch"] ?? 0
            #expect(abs(lastFetch - Int(Date().timeIntervalSince1970)) < 30, "last_fetch \(lastFetch)")

            // The origin goes away: reads go on, errors are counted, the log says so once.
            daemon.stop()
            let failing = waitFor(seconds: 15) { ((try? m.stats())?["fetch_errors"] ?? 0) >= 3 }
            let after = try m.stats()
            #expect(failing, "fetch_errors did not grow with the origin down: \(after)")
            for path in ["r/branches/main/a.txt", "r/commits/\(c0)/a.txt"] {
                let r = try runBounded(["cat", m.path(path)], seconds: 20)
                #expect(r.status == 0, "read of \(path) with the origin down: \(r.stderr)")
            }
            #expect((try? listDirectory(m.path("r/branches"))) == ["main"])
            #expect(link() == .symlink("../commits/\(c1)"))
            let failureLines = m.serverLog.split(separator: "\n").filter { $0.contains("background fetch of 'r' failed") }
            #expect(failureLines.count == 1, "expected one log line for the failing origin, got \(failureLines.count): \(failureLines.prefix(3))")
            #expect(m.serverLog.split(separator: "\n").count < 40, "log flood: \(m.serverLog.split(separator: "\n").count) lines")

            // The origin answers again (a new daemon, the mirror pointed at it): fetching resumes, and
            // the log says so once.
            let daemon2 = try GitDaemon.start(basePath: serve.path)
            defer { daemon2.stop() }
            try git("--git-dir=\(m.home)/repos/r.git", "config", "remote.origin.url", daemon2.url("origin.git"), cwd: "/tmp")
            let fetchesBefore = try m.stats()["fetches"] ?? 0
            // Backoff is at most 8 intervals (8 s, ±10%).
            #expect(waitFor(seconds: 15) { ((try? m.stats())?["fetches"] ?? 0) > fetchesBefore }, "no successful fetch after the origin came back")
            let recovered = m.serverLog.split(separator: "\n").filter { $0.contains("background fetch of 'r' works again") }
            #expect(recovered.count == 1, "\(recovered)")

            // Unmount joins the fetch thread promptly, even in the middle of retries.
            let started = Date()
            let r = try m.gitfs(["unmount", m.mountpoint], seconds: 30)
            #expect(r.status == 0 && Date().timeIntervalSince(started) < 10, "unmount: \(r.stderr)")
        }

        /// A `gitfs fetch` from the command line and the mount's background fetch share one lock per
        /// mirror: run together again and again, their transfers never overlap at the daemon. Every
        /// fetch has a new commit to take, and the daemon's pack-objects is slowed to 0.4 s (git's
        /// uploadpack.packObjectsHook), so without the lock a 1 s background fetch would overlap the
        /// command-line fetches again and again.
        @Test func commandLineAndBackgroundFetchesNeverOverlap() throws {
            let serve = try TempDir("serve")
            let origin = serve.sub("origin.git")
            let work = serve.sub("work")
            try fastImportRepo(at: work, commits: [[("a.txt", Array("one\n".utf8))]])
            try git("clone", "-q", "--bare", work, origin, cwd: "/tmp")
            let hook = serve.sub("slow-pack-objects")
            #expect(FileManager.default.createFile(atPath: hook, contents: Data("#!/bin/sh\nsleep 0.4\nexec \"$@\"\n".utf8),
                                                   attributes: [.posixPermissions: 0o755]))
            // Command-line configuration (GIT_CONFIG_*) counts as protected, where git honours this hook.
            let daemon = try GitDaemon.start(basePath: serve.path, env: [
                "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "uploadpack.packObjectsHook", "GIT_CONFIG_VALUE_0": hook])
            defer { daemon.stop() }
            let m = try MountedHome("overlap")
            defer { m.unmount() }
            try m.clone(daemon.url("origin.git"), as: "r")
            try m.mount(extra: ["--fetch-interval", "1s"], watchdogSeconds: 120)
            let deadline = Date().addingTimeInterval(8)
            var cli = 0
            while Date() < deadline {
                #expect(FileManager.default.createFile(atPath: work + "/a.txt", contents: Data("\(cli)\n".utf8)))
                try git("commit", "-q", "-am", "c\(cli)", cwd: work)
                try git("push", "-q", origin, "main", cwd: work)
                #expect(try m.gitfs(["fetch", "r"]).status == 0)
                cli += 1
            }
            let background = try m.stats()["fetches"] ?? 0
            #expect(background >= 4, "background fetches: \(background)")
            // Every upload-pack the daemon served ran alone: between its request and its end no other began.
            var open = Set<String>(), overlaps = 0
            // "[CHILD] Request upload-pack for ..." and "[DAEMON] [CHILD] Disconnected".
            for line in daemon.log().split(separator: "\n") {
                let words = line.split(separator: " ")
                if let i = words.firstIndex(of: "Request"), i > 0, words.dropFirst(i + 1).first == "upload-pack" {
                    if !open.isEmpty { overlaps += 1 }
                    open.insert(String(words[i - 1]))
                } else if let i = words.firstIndex(where: { $0.hasPrefix("Disconnected") }), i > 0 {
                    open.remove(String(words[i - 1]))
                }
            }
            #expect(daemon.uploadPackRequests() >= cli)
            #expect(overlaps == 0, "\(overlaps) upload-packs began while another ran (\(cli) CLI fetches, \(background) background)")
            #expect(try revParse(m.home + "/repos/r.git", "main") == revParse(work, "main"))
        }
    }
}
