import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// `gitfs unmount` and `gitfs stats` against mounts that are not gitfs, servers that hang,
    /// and mount points named by symlinks and odd paths: only gitfs mounts are touched, nothing hangs.
    @Suite struct Unmounting {
        /// Pids of processes whose command line contains `text`.
        private func processes(mentioning text: String) -> [pid_t] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return names.compactMap { name -> pid_t? in
                guard let pid = pid_t(name), pid != getpid(),
                      let raw = FileManager.default.contents(atPath: "/proc/\(name)/cmdline") else { return nil }
                return String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(text) ? pid : nil
            }
        }

        @Test func unmountLeavesOtherFilesystemsAlone() throws {
            let dir = try TempDir("notours")
            let content = dir.sub("content"), image = dir.sub("image.sqfs"), sq = dir.sub("sq")
            try FileManager.default.createDirectory(atPath: content, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: sq, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: content + "/file", contents: Data("squashed\n".utf8))
            let made = try runBounded(["mksquashfs", content, image, "-quiet", "-noappend"], seconds: 60)
            try #require(made.status == 0, "mksquashfs (tools/install-deps installs squashfs-tools): \(made.stderr)")
            let started = try runBounded(["squashfuse", image, sq], seconds: 30)
            try #require(started.status == 0, "squashfuse: \(started.stderr)")
            defer {
                _ = try? runBounded(["fusermount3", "-u", sq], seconds: 10)
                if isMountPoint(sq) { _ = try? runBounded(["umount", "-l", sq], seconds: 10) }
            }
            try #require(mountLine(at: sq)?.fsType == "fuse.squashfuse")
            let server = processes(mentioning: image)
            try #require(server.count == 1, "squashfuse server: \(server)")

            let r = try runBounded([gitfsBinary, "unmount", sq], seconds: 30)
            expectOneErrorLine(r, "unmount of squashfuse")
            #expect(r.stderr == "gitfs: error: \(sq) is a fuse.squashfuse mount, not gitfs; not touching it\n")
            #expect(mountLine(at: sq)?.fsType == "fuse.squashfuse", "the squashfuse mount must stay")
            #expect(processAlive(server[0]), "squashfuse must keep running")
            #expect(try runBounded(["cat", sq + "/file"], seconds: 10).out == "squashed\n")

            let tmp = dir.sub("tmpfs")
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            try #require(try runBounded(["mount", "-t", "tmpfs", "gitfs-test", tmp], seconds: 10).status == 0)
            defer { umount2(tmp, Int32(MNT_DETACH)) }
            let t = try runBounded([gitfsBinary, "unmount", tmp], seconds: 30)
            expectOneErrorLine(t, "unmount of tmpfs")
            #expect(t.stderr.contains("is a tmpfs mount, not gitfs; not touching it"), "\(t.stderr)")
            #expect(mountLine(at: tmp)?.fsType == "tmpfs")

            let plain = try runBounded([gitfsBinary, "unmount", content], seconds: 30)
            expectOneErrorLine(plain, "unmount of a plain directory")
            #expect(plain.stderr.contains("\(content) is not mounted"), "\(plain.stderr)")
        }

        @Test func hungServerNeitherHangsStatsNorUnmount() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("hung")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 150)
            let pid = try #require(m.serverPID)
            #expect(try runBounded(["cat", m.path("fixture/HEAD/README.md")], seconds: 20).status == 0)
            kill(pid, SIGSTOP)
            defer { if processAlive(pid) { kill(pid, SIGKILL) } }
            // Never looked up before: the kernel must ask the (stopped) server.
            let reader = try Child(["cat", m.path("fixture/commits/\(fixture.branches["main"]!)/src/main.c")])
            defer { reader.kill() }
            usleep(500_000)
            #expect(reader.poll() == nil, "the reader should be blocked on the stopped server")

            var started = Date()
            let stats = try m.gitfs(["stats", m.mountpoint], seconds: 60)
            let statsTook = Date().timeIntervalSince(started)
            expectOneErrorLine(stats, "stats of a hung mount")
            #expect(stats.stderr.contains("did not answer") && stats.stderr.contains("gitfs unmount"), "\(stats.stderr)")
            #expect(statsTook < 15, "gitfs stats took \(statsTook) s")

            started = Date()
            let r = try m.gitfs(["unmount", m.mountpoint], seconds: 90)
            let took = Date().timeIntervalSince(started)
            #expect(r.status == 0, "gitfs unmount of a hung mount: \(r.stderr)")
            #expect(took < 20, "gitfs unmount took \(took) s")
            #expect(!isMountPoint(m.mountpoint), "the hung mount is still there")
            let readerStatus = reader.wait(timeout: 10)
            #expect(readerStatus != nil && readerStatus != 0, "the blocked reader was not released with an error: \(String(describing: readerStatus))")
            #expect(waitFor(seconds: 10) { !processAlive(pid) }, "the hung server is still running")
            #expect(!m.watchdogHasFired)
            print("stats of a hung mount failed after \(String(format: "%.1f", statsTook)) s, unmount took \(String(format: "%.1f", took)) s")
        }

        /// A mount point whose name mountinfo escapes (a space, a tab), named through a symlink and a path
        /// with `..`: stats and unmount find it without touching it.
        @Test func theMountIsFoundByAnyNameOfItsPath() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("names")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            let spaced = m.dir.sub("mount point\twith space")
            let link = m.dir.sub("link")
            try FileManager.default.createDirectory(atPath: spaced, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "mount point\twith space")
            let mounted = try m.gitfs(["mount", link], seconds: 90)
            try #require(mounted.status == 0, "gitfs mount through a symlink: \(mounted.stderr)")
            let pid = try #require(mountLine(at: spaced)?.serverPID)
            defer {
                if let line = mountLine(at: spaced) { abortFuseConnection(minor: line.minor); umount2(spaced, Int32(MNT_DETACH)) }
                if processAlive(pid) { kill(pid, SIGKILL) }
            }
            let viaDots = m.dir.sub("sub/../mount point\twith space")
            for name in [link, viaDots, spaced] {
                let stats = try m.gitfs(["stats", name, "--json"], seconds: 30)
                #expect(stats.status == 0, "gitfs stats \(name): \(stats.stderr)")
                #expect(stats.out.contains("\"pid\" : \(pid)"), "\(stats.out)")
            }
            let r = try m.gitfs(["unmount", link], seconds: 60)
            #expect(r.status == 0, "gitfs unmount through a symlink: \(r.stderr)")
            #expect(mountLine(at: spaced) == nil)
            #expect(waitFor(seconds: 10) { !processAlive(pid) })
        }
    }
}
