import CFuse
@testable import FuseServer
import Logging
import Foundation
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

let quietLogger: Logger = {
    var logger = Logger(label: "gitfs.test.fuse")
    logger.logLevel = .warning
    return logger
}()

/// Real mounts of FixtureFS in /tmp; serialized so timing assertions (shutdown, forget) are not skewed by
/// other mounts competing for the two cores.
@Suite(.serialized) struct FuseServerTests {

    @Test func listingContentModesSizesAndSymlink() throws {
        let m = try MountedFixture(label: "basic")
        defer { m.shutdown() }

        let root = try FileManager.default.contentsOfDirectory(atPath: m.path).sorted()
        #expect(root == ["big.bin", "dir", "empty", "exec.sh", "gen", "hello.txt", "link", "many", "slow"])

        for path in ["/hello.txt", "/exec.sh", "/empty", "/dir/a.txt", "/dir/sub/deep.txt", "/big.bin"] {
            let data = try readFile(m.sub(path)).get()
            #expect(data == m.fs.expectedContent(path), "content of \(path)")
            var st = stat()
            #expect(stat(m.sub(path), &st) == 0)
            #expect(Int(st.st_size) == m.fs.expectedContent(path)!.count, "size of \(path)")
            #expect(st.st_mode & 0o170000 == 0o100000)
            #expect(st.st_mode & 0o7777 == (path == "/exec.sh" ? 0o555 : 0o444), "mode of \(path)")
            #expect(st.st_mtim.tv_sec == Int(FixtureFS.mtime))
            #expect(Int(st.st_blocks) == (Int(st.st_size) + 511) / 512)
        }
        var st = stat()
        #expect(stat(m.sub("/dir"), &st) == 0)
        #expect(st.st_mode == 0o040555)
        #expect(lstat(m.sub("/link"), &st) == 0)
        #expect(st.st_mode & 0o170000 == 0o120000)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: m.sub("/link")) == "dir/sub/deep.txt")
        // Following the symlink reaches the file.
        #expect(try readFile(m.sub("/link")).get() == m.fs.expectedContent("/dir/sub/deep.txt"))

        // ls -la shows . and .. plus the entries; find sees every node.
        let ls = try run(["ls", "-la", m.sub("/dir")])
        #expect(ls.status == 0)
        #expect(ls.out.contains(" .\n") && ls.out.contains(" ..\n") && ls.out.contains(" a.txt\n") && ls.out.contains(" sub\n"))
        let find = try run(["find", m.path])
        #expect(find.status == 0, "\(find.stderr)")
        let found = find.out.split(separator: "\n").count
        // root + 9 root entries + dir/{a.txt,sub} + sub/deep.txt + many/* + slow/*
        #expect(found == 1 + 9 + 2 + 1 + FixtureFS.manyCount + FixtureFS.slowCount)

        // A 10,000-entry directory lists completely and in order, twice (second time from the kernel cache).
        for _ in 0..<2 {
            let many = try FileManager.default.contentsOfDirectory(atPath: m.sub("/many")).sorted()
            #expect(many.count == FixtureFS.manyCount)
            #expect(many.first == "f00000" && many.last == "f09999")
        }
        let lsMany = try run(["ls", "-l", m.sub("/many")])
        #expect(lsMany.status == 0)
        #expect(lsMany.out.split(separator: "\n").count == FixtureFS.manyCount + 1)   // "total N" line

        // cat and stat processes agree.
        #expect(try run(["cat", m.sub("/hello.txt")]).out == "hello world\n")
        #expect(try run(["stat", "-c", "%s %a %F", m.sub("/big.bin")]).out == "\(FixtureFS.bigSize) 444 regular file\n")

        // Missing names are ENOENT.
        #expect(stat(m.sub("/nope"), &st) == -1 && errno == ENOENT)

        // statfs
        var sv = statvfs()
        #expect(statvfs(m.path, &sv) == 0)
        #expect(sv.f_flag & UInt(ST_RDONLY) != 0)
        #expect(sv.f_files == UInt(m.fs.specs.count))

        // The bdi read-ahead was raised after INIT.
        var mst = stat()
        #expect(stat(m.path, &mst) == 0)
        let bdi = "/sys/class/bdi/\(UInt32(mst.st_dev >> 8) & 0xfff):\(UInt32(mst.st_dev & 0xff) | UInt32(mst.st_dev >> 12) & 0xfff00)/read_ahead_kb"
        let readAhead = (try? String(contentsOfFile: bdi, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(readAhead == "1024", "\(bdi): \(readAhead ?? "unreadable")")

        let c = m.mount.counters
        #expect(c.requests > 0 && c.reads > 0 && c.bytesRead >= FixtureFS.bigSize && c.inflight >= 0)
    }

    @Test func extendedAttributes() throws {
        let m = try MountedFixture(label: "xattr")
        defer { m.shutdown() }
        let file = m.sub("/hello.txt")

        let getfattr = try run(["getfattr", "--only-values", "-n", "user.fixture.path", file])
        #expect(getfattr.status == 0, "\(getfattr.stderr)")
        #expect(getfattr.out == "/hello.txt")
        let dump = try run(["getfattr", "-d", m.sub("/dir")])
        #expect(dump.out.contains("user.fixture.path=\"/dir\""))

        // Size probing protocol: size 0 -> length; too small -> ERANGE; absent -> ENODATA.
        #expect(getxattr(file, "user.fixture.big", nil, 0) == FixtureFS.bigXattr.count)
        var small = [UInt8](repeating: 0, count: 10)
        #expect(getxattr(file, "user.fixture.big", &small, small.count) == -1 && errno == ERANGE)
        var big = [UInt8](repeating: 0, count: 1000)
        let n = getxattr(file, "user.fixture.big", &big, big.count)
        #expect(n == FixtureFS.bigXattr.count && Array(big[0..<max(0, n)]) == FixtureFS.bigXattr)
        #expect(getxattr(file, "user.absent", &big, big.count) == -1 && errno == ENODATA)

        let listSize = listxattr(file, nil, 0)
        let expectedList = "user.fixture.path\0user.fixture.big\0"
        #expect(listSize == expectedList.utf8.count)
        var names = [CChar](repeating: 0, count: 4)
        #expect(listxattr(file, &names, names.count) == -1 && errno == ERANGE)
        names = [CChar](repeating: 0, count: 200)
        let listed = listxattr(file, &names, names.count)
        #expect(listed == expectedList.utf8.count)
        #expect(String(decoding: names[0..<max(0, listed)].map { UInt8(bitPattern: $0) }, as: UTF8.self) == expectedList)
        // Only the user namespace is served: any other is "not supported", as the kernel answers for a
        // namespace a filesystem has no handler for (ENODATA would say it exists but is empty here).
        for name in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
            #expect(getxattr(file, name, &big, big.count) == -1 && errno == EOPNOTSUPP, "\(name)")
        }
        // ENODATA/ERANGE/EOPNOTSUPP probing are not counted as errors.
        #expect(m.mount.counters.errors == 0)

        // So `ls -l` of 10,000 files asks for neither per file (coreutils remembers that the device does
        // not support them): READDIRPLUS carries every stat, and the requests stay far below one per file
        // (with ENODATA answers, two GETXATTR per file: 20,020 requests).
        let before = m.mount.counters.requests
        let ls = try run(["ls", "-l", m.sub("/many")])
        #expect(ls.status == 0 && ls.out.split(separator: "\n").count == FixtureFS.manyCount + 1, "\(ls.stderr)")
        let requests = m.mount.counters.requests - before
        #expect(requests < FixtureFS.manyCount / 10, "ls -l of \(FixtureFS.manyCount) files made \(requests) requests")
    }

    @Test func writesOfEveryKindFailWithEROFS() throws {
        let m = try MountedFixture(label: "erofs")
        defer { m.shutdown() }
        func expectEROFS(_ result: Int32, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let e = errno
            #expect(result == -1 && e == EROFS, "\(what): result \(result) errno \(e)", sourceLocation: sourceLocation)
        }
        expectEROFS(open(m.sub("/hello.txt"), O_WRONLY), "open O_WRONLY")
        expectEROFS(open(m.sub("/hello.txt"), O_RDWR), "open O_RDWR")
        expectEROFS(open(m.sub("/new.txt"), O_WRONLY | O_CREAT, 0o644), "create")
        expectEROFS(mkdir(m.sub("/newdir"), 0o755), "mkdir")
        expectEROFS(rename(m.sub("/hello.txt"), m.sub("/renamed.txt")), "rename")
        expectEROFS(chmod(m.sub("/hello.txt"), 0o777), "chmod")
        expectEROFS(unlink(m.sub("/hello.txt")), "unlink")
        expectEROFS(rmdir(m.sub("/dir/sub")), "rmdir")
        expectEROFS(symlink("x", m.sub("/newlink")), "symlink")
        expectEROFS(link(m.sub("/hello.txt"), m.sub("/hardlink")), "link")
        expectEROFS(truncate(m.sub("/hello.txt"), 0), "truncate")
        expectEROFS(setxattr(m.sub("/hello.txt"), "user.x", "v", 1, 0), "setxattr")
        expectEROFS(removexattr(m.sub("/hello.txt"), "user.fixture.path"), "removexattr")
        let touch = try run(["touch", m.sub("/hello.txt")])
        #expect(touch.status != 0 && touch.stderr.contains("Read-only file system"))
        // Nothing changed.
        #expect(try readFile(m.sub("/hello.txt")).get() == Array("hello world\n".utf8))
    }

    @Test func concurrentLookupsOfOneFreshNameMintOneInode() throws {
        let m = try MountedFixture(label: "ino")
        defer { m.shutdown() }
        for round in 0..<20 {
            let name = m.sub("/gen/n\(round)-\(UInt32.random(in: 0...UInt32.max))")
            let inodes = Collector<UInt64>()
            let finished = onThreads(32) { _ in
                var st = stat()
                if stat(name, &st) == 0 { inodes.append(UInt64(st.st_ino)) } else { inodes.append(0) }
            }
            #expect(finished)
            let all = inodes.all
            #expect(all.count == 32)
            #expect(!all.contains(0), "a stat failed in round \(round)")
            #expect(Set(all).count == 1, "round \(round): inode numbers \(Set(all))")
        }
        // Distinct names get distinct inodes; the same name keeps its inode while the kernel holds it.
        var a = stat(), b = stat(), a2 = stat()
        #expect(stat(m.sub("/dir/a.txt"), &a) == 0 && stat(m.sub("/hello.txt"), &b) == 0)
        #expect(a.st_ino != b.st_ino)
        #expect(stat(m.sub("/dir/a.txt"), &a2) == 0 && a2.st_ino == a.st_ino)
        var root = stat()
        #expect(stat(m.path, &root) == 0 && root.st_ino == 1)
    }

    @Test func concurrentLookupsOfDifferentNamesForOneNodeMintOneInode() throws {
        let m = try MountedFixture(label: "alias")
        defer { m.shutdown() }
        // "/gen/nX~k" is another name (a hard link) of node "/gen/nX": 32 different names, so the kernel
        // sends 32 lookups at once, all resolving to one node.
        for round in 0..<20 {
            let base = "n\(round)-\(UInt32.random(in: 0...UInt32.max))"
            let inodes = Collector<UInt64>()
            #expect(onThreads(32) { k in
                var st = stat()
                inodes.append(stat(m.sub("/gen/\(base)~\(k)"), &st) == 0 ? UInt64(st.st_ino) : 0)
            })
            let all = inodes.all
            #expect(all.count == 32 && !all.contains(0))
            #expect(Set(all).count == 1, "round \(round): inode numbers \(Set(all))")
        }
    }

    @Test func inodeTableFindOrCreateIsAtomicAndForgetRemoves() {
        let table = InodeTable<String>(root: "/")
        #expect(table.retain("/") == 1 && table.node(of: 1) == "/")
        for round in 0..<50 {
            let inodes = Collector<UInt64>()
            #expect(onThreads(16) { _ in
                for _ in 0..<100 { inodes.append(table.retain("/node\(round)")) }
            })
            #expect(Set(inodes.all).count == 1)
            let ino = inodes.all[0]
            #expect(table.node(of: ino) == "/node\(round)")
            table.forget(ino, count: 1599)
            #expect(table.node(of: ino) == "/node\(round)")
            table.forget(ino, count: 1)
            #expect(table.node(of: ino) == nil)
            // Looked up again soon after being forgotten: the same number (st_ino stays stable), and
            // a number is never handed to another node.
            let other = table.retain("/other\(round)")
            #expect(other != ino)
            let again = table.retain("/node\(round)")
            #expect(again == ino)
            #expect(table.node(of: ino) == "/node\(round)" && table.node(of: other) == "/other\(round)")
            table.forget(again, count: 1)
            table.forget(other, count: 1)
        }
        #expect(table.count == 1)
    }

    @Test func sixtyFourParallelReadersGetTheRightBytes() throws {
        let m = try MountedFixture(label: "par")
        defer { m.shutdown() }
        let paths = ["/hello.txt", "/exec.sh", "/empty", "/dir/a.txt", "/dir/sub/deep.txt", "/big.bin", "/link"]
            + stride(from: 0, to: FixtureFS.manyCount, by: 7).map { String(format: "/many/f%05d", $0) }
        let expected = Dictionary(uniqueKeysWithValues: paths.map { p in
            (p, m.fs.expectedContent(p == "/link" ? "/dir/sub/deep.txt" : p)!)
        })
        let bad = Collector<String>()
        let bytes = Atomic<Int>(0)
        let started = Date()
        let finished = onThreads(64, timeout: 120) { t in
            // Each thread reads every path, starting at a different place, plus big.bin with odd chunks.
            for k in 0..<paths.count {
                let p = paths[(k + t * 13) % paths.count]
                switch readFile(m.sub(p), chunk: p == "/big.bin" ? 65_537 + t : 4096) {
                case .success(let data):
                    if data != expected[p] { bad.append("\(p): wrong bytes (\(data.count))") }
                    bytes.add(data.count, ordering: .relaxed)
                case .failure(let e):
                    bad.append("\(p): \(e)")
                }
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(finished)
        #expect(bad.all.isEmpty, "\(bad.all.prefix(5))")
        print("64 readers x \(paths.count) files: \(bytes.load(ordering: .relaxed) >> 20) MiB in \(String(format: "%.2f", elapsed)) s")
        #expect(m.mount.counters.errors == 0)
    }

    @Test func forgetKeepsTheInodeTableBounded() throws {
        guard access("/proc/sys/vm/drop_caches", W_OK) == 0 else {
            Issue.record("cannot write /proc/sys/vm/drop_caches: run the tests as root")
            return
        }
        let m = try MountedFixture(label: "forget")
        defer { m.shutdown() }
        let before = m.mount.inodeCount
        let find = try run(["find", m.sub("/many"), "-type", "f", "-size", "-100c"])
        #expect(find.status == 0)
        #expect(find.out.split(separator: "\n").count == FixtureFS.manyCount)
        let walked = m.mount.inodeCount
        #expect(walked >= FixtureFS.manyCount, "find stat()s every file, so the kernel holds >= 10,000 inodes: \(walked)")
        var shrunk = walked
        let deadline = Date().addingTimeInterval(15)
        repeat {
            try "2\n".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
            usleep(200_000)
            shrunk = m.mount.inodeCount
        } while shrunk > 100 && Date() < deadline
        print("inode table: \(before) before, \(walked) after find, \(shrunk) after drop_caches")
        #expect(shrunk <= 100, "FORGET must remove inodes: \(shrunk) left of \(walked)")
        // Names still resolve after being forgotten (fresh inodes).
        #expect(try readFile(m.sub("/many/f01234")).get() == Array("entry 1234\n".utf8))
    }

    @Test func stopWithThirtyTwoReadersMidReadCompletesAndNobodyHangs() throws {
        var options = FuseMountOptions()
        options.shutdownGrace = 2
        // Each read request sleeps 0.4 s: an 8 MiB file takes >= 3 s, longer than the grace period.
        let m = try MountedFixture(fs: FixtureFS(slowReadMicroseconds: 400_000), options: options, label: "stop")
        defer { m.shutdown() }
        let outcomes = Collector<String>()
        let group = DispatchGroup()
        for i in 0..<32 {
            group.enter()
            let path = m.sub(String(format: "/slow/s%02d", i))
            let expected = m.fs.expectedContent(String(format: "/slow/s%02d", i))!
            Thread {
                switch readFile(path, chunk: 256 << 10) {
                case .success(let data):
                    outcomes.append(data == expected ? "data" : "WRONG \(data.count)")
                case .failure(let e):
                    outcomes.append("error \(e.rawValue)")
                }
                group.leave()
            }.start()
        }
        // Wait until every reader is mid-read (has had at least one read answered).
        let midDeadline = Date().addingTimeInterval(20)
        while m.mount.counters.reads < 40 && Date() < midDeadline { usleep(20_000) }
        #expect(m.mount.counters.reads >= 40)
        #expect(m.mount.counters.inflight > 0)
        let stopStart = Date()
        m.mount.stop()
        let returned = m.waitForServe(timeout: 15)
        let stopSeconds = Date().timeIntervalSince(stopStart)
        #expect(returned, "serve() did not return within 15 s of stop()")
        let readersDone = group.wait(timeout: .now() + 15) == .success
        let readersSeconds = Date().timeIntervalSince(stopStart)
        #expect(readersDone, "a reader hangs after stop()")
        let all = outcomes.all
        print("stop(): serve returned after \(String(format: "%.2f", stopSeconds)) s, readers done after \(String(format: "%.2f", readersSeconds)) s; outcomes \(Dictionary(grouping: all, by: { $0 }).mapValues(\.count))")
        #expect(all.count == 32)
        #expect(!all.contains { $0.hasPrefix("WRONG") })
        #expect(stopSeconds < 10)
        #expect(all.contains { $0.hasPrefix("error") }, "readers still reading after the grace period get an error")
        // Handles whose RELEASE the kernel dropped were released by serve(): every open got one release.
        #expect(m.fs.opens.load(ordering: .relaxed) == m.fs.releases.load(ordering: .relaxed))
        #expect(!isMounted(m.path))
        // The mountpoint is usable again: a new mount on it works.
        let again = try FuseMount(filesystem: FixtureFS(), mountpoint: m.path, options: FuseMountOptions(),
                                  logger: quietLogger)
        let t = Thread { again.serve() }
        t.start()
        #expect(try readFile(m.sub("/hello.txt")).get() == Array("hello world\n".utf8))
        again.stop()
        var spins = 0
        while isMounted(m.path) && spins < 100 { usleep(50_000); spins += 1 }
        #expect(!isMounted(m.path))
    }

    @Test func stopWithReadersThatFinishWithinTheGracePeriodGivesThemTheirData() throws {
        var options = FuseMountOptions()
        options.shutdownGrace = 10
        let m = try MountedFixture(fs: FixtureFS(slowReadMicroseconds: 20_000), options: options, label: "grace")
        defer { m.shutdown() }
        let outcomes = Collector<String>()
        let group = DispatchGroup()
        for i in 0..<8 {
            group.enter()
            let p = String(format: "/slow/s%02d", i)
            let expected = m.fs.expectedContent(p)!
            Thread {
                switch readFile(m.sub(p), chunk: 1 << 20) {
                case .success(let data): outcomes.append(data == expected ? "data" : "WRONG")
                case .failure(let e): outcomes.append("error \(e)")
                }
                group.leave()
            }.start()
        }
        // Every reader holds its file open (8 READs may come from fewer readers: a reader that has not
        // opened yet when the mount is detached gets ENOENT, which is not what this test is about).
        while m.mount.counters.reads < 8 || m.fs.opens.load(ordering: .relaxed) < 8 { usleep(10_000) }
        m.mount.stop()
        #expect(group.wait(timeout: .now() + 30) == .success)
        #expect(m.waitForServe(timeout: 15))
        #expect(outcomes.all == Array(repeating: "data", count: 8), "\(outcomes.all)")
        #expect(!isMounted(m.path))
        // Every open got exactly one release.
        #expect(m.fs.opens.load(ordering: .relaxed) == m.fs.releases.load(ordering: .relaxed))
    }

    @Test func externalLazyUnmountEndsServe() throws {
        let m = try MountedFixture(label: "ext")
        defer { m.shutdown() }
        #expect(try readFile(m.sub("/hello.txt")).get() == Array("hello world\n".utf8))
        let started = Date()
        #expect(try run(["umount", "-l", m.path]).status == 0)
        #expect(m.waitForServe(timeout: 10), "serve() must return after an external umount -l")
        print("serve returned \(String(format: "%.3f", Date().timeIntervalSince(started))) s after umount -l")
        #expect(!isMounted(m.path))
        #expect(m.fs.opens.load(ordering: .relaxed) == m.fs.releases.load(ordering: .relaxed))
    }

    @Test func externalFusermountEndsServe() throws {
        let m = try MountedFixture(label: "fusermount")
        defer { m.shutdown() }
        #expect(try readFile(m.sub("/dir/a.txt")).get() == Array("file a\n".utf8))
        #expect(try run(["fusermount3", "-u", m.path]).status == 0)
        #expect(m.waitForServe(timeout: 10))
        #expect(!isMounted(m.path))
    }

    @Test func sigtermStopsTheMount() throws {
        let m = try MountedFixture(label: "sig")
        defer {
            m.shutdown()
            signal(SIGTERM, SIG_DFL)
            signal(SIGINT, SIG_DFL)
            signal(SIGHUP, SIG_DFL)
        }
        m.mount.installSignalHandlers()
        #expect(try readFile(m.sub("/hello.txt")).get() == Array("hello world\n".utf8))
        kill(getpid(), SIGTERM)
        #expect(m.waitForServe(timeout: 10), "SIGTERM must unmount and end serve()")
        #expect(!isMounted(m.path))
    }

    @Test func mountErrorsAreClear() throws {
        let dir = try TempDir("errors")
        let logger = quietLogger
        func reason(_ path: String) -> FuseError.Reason? {
            do throws(FuseError) {
                let mount = try FuseMount(filesystem: FixtureFS(), mountpoint: path, options: FuseMountOptions(), logger: logger)
                mount.stop()
                mount.serve()
                return nil
            } catch {
                #expect(!error.description.contains("\n"))
                return error.reason
            }
        }
        #expect(reason(dir.sub("missing")) == .mountpointMissing)
        _ = FileManager.default.createFile(atPath: dir.sub("file"), contents: Data("x".utf8))
        #expect(reason(dir.sub("file")) == .notADirectory)
        mkdir(dir.sub("full"), 0o755)
        _ = FileManager.default.createFile(atPath: dir.sub("full/x"), contents: Data())
        #expect(reason(dir.sub("full")) == .notEmpty)

        let m = try MountedFixture(label: "twice")
        defer { m.shutdown() }
        #expect(reason(m.path) == .alreadyMounted)
        do throws(FuseError) {
            _ = try FuseMount(filesystem: FixtureFS(), mountpoint: dir.sub("missing"), options: FuseMountOptions(), logger: logger)
        } catch {
            #expect(error.description == "mountpoint \(dir.sub("missing")) does not exist: create it with mkdir first")
        }
    }
}
