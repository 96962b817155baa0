import Foundation
import GitStore
import Testing
import TestSupport

/// Entries of the repos/ directory of a home (empty when it does not exist).
func reposEntries(_ home: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: home + "/repos")) ?? []).sorted()
}

/// `git for-each-ref` of refs/heads and refs/tags: "objectname refname" lines.
func refLines(_ gitDir: String) throws -> String {
    try git("--git-dir=\(gitDir)", "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags", cwd: "/tmp")
}

@Suite struct CLITests {
    /// `gitfs ls` and `gitfs cat` agree with `git ls-tree -l` and `git cat-file blob` for every entry of
    /// several revisions (default quoting and -z), and single-entry listings match `git ls-tree -l REV -- PATH`.
    @Test func lsAndCatAgreeWithGit() throws {
        let fixture = try FixtureRepo.shared()
        let home = try TempDir("home")
        defer { home.remove() }
        try gitfsOK(home: home.path, ["clone", fixture.path, "fx"])
        for rev in fixture.revisions {
            // Every tree of the revision, listed both ways.
            let trees = try git("ls-tree", "-r", "-d", "-z", rev, cwd: fixture.path).split(separator: "\0")
                .filter { $0.split(separator: " ")[1] == "tree" }.map { String($0.split(separator: "\t", maxSplits: 1)[1]) }
            #expect(trees.count >= 8)
            for dir in [""] + trees {
                let spec = dir.isEmpty ? rev : "\(rev):\(dir)"
                let ours = try gitfsOK(home: home.path, ["ls", "fx", spec]).stdout
                let theirs = try gitBytes(["ls-tree", "-l", spec], cwd: fixture.path).stdout
                #expect(ours == theirs, "ls \(spec)")
                let oursZ = try gitfsOK(home: home.path, ["ls", "-z", "fx", spec]).stdout
                let theirsZ = try gitBytes(["ls-tree", "-l", "-z", spec], cwd: fixture.path).stdout
                #expect(oursZ == theirsZ, "ls -z \(spec)")
            }
            // Every non-tree entry: a single-entry listing and its bytes.
            let records = try gitBytes(["ls-tree", "-r", "-z", "--full-tree", rev], cwd: fixture.path).stdout.split(separator: 0)
            #expect(!records.isEmpty)
            for record in records {
                let tab = record.firstIndex(of: UInt8(ascii: "\t"))!
                let type = String(decoding: record[..<tab], as: UTF8.self).split(separator: " ")[1]
                let path = String(decoding: record[(tab + 1)...], as: UTF8.self)
                let single = try gitfsOK(home: home.path, ["ls", "-z", "fx", "\(rev):\(path)"]).stdout
                #expect(single == (try gitBytes(["ls-tree", "-l", "-z", rev, "--", path], cwd: fixture.path).stdout), "ls \(rev):\(path)")
                guard type == "blob" else {
                    let r = try runGitfs(home: home.path, ["cat", "fx", "\(rev):\(path)"])
                    #expect(r.status == 1 && r.stderr.hasPrefix("gitfs: error:"), "cat of submodule \(path)")
                    continue
                }
                let bytes = try gitfsOK(home: home.path, ["cat", "fx", "\(rev):\(path)"]).stdout
                #expect(bytes == (try fixture.gitBlob(rev, path)), "cat \(rev):\(path)")
            }
        }
    }

    @Test func unknownRepoRevOrPathIsOneLineExit1() throws {
        let fixture = try FixtureRepo.shared()
        let home = try TempDir("home")
        defer { home.remove() }
        try gitfsOK(home: home.path, ["clone", fixture.path, "fx"])
        for args in [["ls", "nope", "main"], ["ls", "fx", "no-such-rev"], ["ls", "fx", "main:no/such/path"],
                     ["cat", "nope", "main:README.md"], ["cat", "fx", "no-such-rev:README.md"], ["cat", "fx", "main:nope"],
                     ["cat", "fx", "main:src"], ["ls", "fx", "main:README.md/x"], ["remove", "nope"], ["fetch", "nope"]] {
            let r = try runGitfs(home: home.path, args)
            #expect(r.status == 1, "\(args)")
            #expect(r.stdout.isEmpty, "\(args)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("gitfs: error: "), "\(args): \(r.stderr)")
        }
    }

    /// Malformed options of the mount.fuse3 form (`gitfs HOME MOUNTPOINT -o OPTIONS`) are bad usage with
    /// one error line, whatever their shape: "=" used to trap (index out of range; found by
    /// Fuzz/mount-options) and "allow_other=" was taken as allow_other.
    @Test func malformedMountHelperOptionsAreBadUsage() throws {
        let dir = try TempDir("helper-form")
        defer { dir.remove() }
        let mountpoint = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        for options in ["=", "=5", "rw,=", "allow_other=", "debug=1", "threads=", "threads", ",=,"] {
            let r = try runBounded([gitfsBinary, dir.sub("home"), mountpoint, "-o", options], seconds: 30)
            let lines = r.stderr.split(separator: "\n")
            #expect(r.status == 2 && lines.count == 1 && lines[0].hasPrefix("gitfs: error: "), "-o '\(options)': \(r.status) \(r.stderr)")
            #expect(!isMountPoint(mountpoint), "-o '\(options)' mounted")
        }
    }

    @Test func badNamesAreRefusedBeforeAnythingIsCreated() throws {
        let fixture = try FixtureRepo.shared()
        let home = try TempDir("home")
        defer { home.remove() }
        for bad in ["../x", "a/b", "", ".hidden", "sp ace", String(repeating: "n", count: 101), "..", "ü"] {
            let r = try runGitfs(home: home.path, ["clone", fixture.path, bad])
            #expect(r.status == 1, "\(bad)")
            #expect(r.stderr.contains("invalid repository name"), "\(bad): \(r.stderr)")
            #expect(reposEntries(home.path).isEmpty, "\(bad)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/x.git"))
        try gitfsOK(home: home.path, ["clone", fixture.path, "ok"])
        let again = try runGitfs(home: home.path, ["clone", fixture.path, "ok"])
        #expect(again.status == 1 && again.stderr.contains("already exists"))
        #expect(reposEntries(home.path) == ["ok.git"])
        // The default name comes from the URL.
        try gitfsOK(home: home.path, ["clone", fixture.path])
        #expect(reposEntries(home.path) == ["fixture.git", "ok.git"])
        try gitfsOK(home: home.path, ["remove", "ok"])
        #expect(reposEntries(home.path) == ["fixture.git"])
    }

    @Test func badURLCloneLeavesNothing() throws {
        let home = try TempDir("home")
        defer { home.remove() }
        let serve = try TempDir("serve")
        let daemon = try GitDaemon.start(basePath: serve.path)
        defer { daemon.stop() }
        let closedPort = try freePort()
        for url in ["git://127.0.0.1:\(closedPort)/nothing.git", daemon.url("missing.git"), "/nonexistent/repo",
                    "file:///nonexistent/repo.git", serve.path] {
            let r = try runGitfs(home: home.path, ["clone", url, "x"])
            #expect(r.status == 1, "\(url)")
            #expect(r.stderr.hasPrefix("gitfs: error: ") && r.stderr.split(separator: "\n").count == 1, "\(url): \(r.stderr)")
            #expect(reposEntries(home.path).isEmpty, "\(url): \(reposEntries(home.path))")
        }
    }

    /// Clone over git:// from a real daemon, then fetch new commits, a force-push, a deleted branch and
    /// a new tag; then fetch with the daemon stopped fails naming the URL and keeps every ref.
    @Test func cloneAndFetchOverGitDaemon() throws {
        let fixture = try FixtureRepo.shared()
        let served = try ServedFixture(fixture)
        defer { served.close() }
        let (serve, home, origin, daemon) = (served.serve, served.home, served.origin, served.daemon)

        try gitfsOK(home: home.path, ["clone", daemon.url("origin.git")])
        let mirror = home.path + "/repos/origin.git"
        #expect(try refLines(mirror) == refLines(origin))
        // As git clone leaves them: every ref in packed-refs, none as a file of its own.
        #expect(FileManager.default.fileExists(atPath: mirror + "/packed-refs"))
        #expect(FileManager.default.enumerator(atPath: mirror + "/refs")?.allObjects.compactMap { entry -> String? in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: mirror + "/refs/" + (entry as! String), isDirectory: &isDir) && !isDir.boolValue ? entry as? String : nil
        } == [])
        #expect(try git("--git-dir=\(mirror)", "symbolic-ref", "HEAD", cwd: "/tmp") == "refs/heads/main\n")
        #expect(try git("--git-dir=\(mirror)", "fsck", "--no-dangling", cwd: "/tmp").isEmpty)
        let list = try JSONSerialization.jsonObject(with: Data(gitfsOK(home: home.path, ["list", "--json"]).stdout)) as! [[String: Any]]
        #expect(list.count == 1)
        #expect(list.first?["name"] as? String == "origin")
        #expect(list.first?["url"] as? String == daemon.url("origin.git"))
        #expect(list.first?["default_branch"] as? String == "main")
        #expect(list.first?["branches"] as? Int == fixture.branches.count)
        #expect(list.first?["tags"] as? Int == fixture.tags.count)
        #expect((list.first?["size_bytes"] as? Int ?? 0) > FixtureRepo.bigFileSize)
        #expect(list.first?["last_fetch"] is String)
        // Nothing changed yet: fetch prints nothing.
        #expect(try gitfsOK(home: home.path, ["fetch", "origin"]).stdout.isEmpty)

        // A Repository opened before the fetch must see its results (refs and new objects).
        let repo = try MirrorStore(home: Home(path: home.path)).open(name: "origin")
        _ = try repo.refs()

        let before = try refLines(origin)
        let work = serve.sub("work")
        try git("clone", "-q", origin, work, cwd: "/tmp")
        try FileManager.default.createDirectory(atPath: work + "/new", withIntermediateDirectories: true)
        try Data("new content\n".utf8).write(to: URL(fileURLWithPath: work + "/new/file.txt"))
        try git("add", "-A", cwd: work)
        try git("commit", "-q", "-m", "new commit", cwd: work)
        try git("push", "-q", "origin", "main", cwd: work)
        try git("push", "-q", "-f", "origin", "\(fixture.branches["main"]!)~3:refs/heads/feature/x/y", cwd: work)
        try git("push", "-q", "origin", ":refs/heads/release-1.x", cwd: work)
        try git("tag", "-a", "v2.0", "-m", "two", cwd: work)
        try git("push", "-q", "origin", "v2.0", cwd: work)
        let after = try refLines(origin)
        #expect(before != after)

        let out = try gitfsOK(home: home.path, ["fetch"]).out
        #expect(try refLines(mirror) == after)
        var expected: [String] = []
        let old = parseRefLines(before), new = parseRefLines(after)
        for ref in Set(old.keys).union(new.keys).sorted() where old[ref] != new[ref] {
            expected.append("origin \(old[ref] ?? String(repeating: "0", count: 40)) \(new[ref] ?? String(repeating: "0", count: 40)) \(ref)")
        }
        #expect(out.split(separator: "\n").map(String.init) == expected)
        #expect(expected.count == 4)

        let refs = try repo.refs()
        #expect(refs.branches.first { $0.name == "main" }?.target.hex == trimmed(try git("rev-parse", "main", cwd: work)))
        #expect(!refs.branches.contains { $0.name == "release-1.x" })
        #expect(refs.tags.contains { $0.name == "v2.0" })
        let newFile = try #require(try repo.entry(commit: try repo.resolve("main"), path: "new/file.txt"))
        #expect(try repo.readBlob(newFile.oid) == Array("new content\n".utf8))

        // Daemon gone: the fetch fails with the URL in one line and every ref stays.
        try git("commit", "-q", "--allow-empty", "-m", "unfetched", cwd: work)
        try git("push", "-q", "origin", "main", cwd: work)
        daemon.stop()
        let kept = try refLines(mirror)
        let failed = try runGitfs(home: home.path, ["fetch", "origin"])
        #expect(failed.status == 1)
        #expect(failed.stderr.hasPrefix("gitfs: error: ") && failed.stderr.contains(daemon.url("origin.git")), "\(failed.stderr)")
        #expect(failed.stderr.split(separator: "\n").count == 1)
        #expect(try refLines(mirror) == kept)
        #expect(try git("--git-dir=\(mirror)", "fsck", "--no-dangling", cwd: "/tmp").isEmpty)
    }

    /// A fetch whose daemon dies mid-transfer leaves the refs as they were: the daemon serves a huge new
    /// pack and is killed while the client is still receiving it.
    @Test func fetchInterruptedMidTransferKeepsRefs() throws {
        let fixture = try FixtureRepo.shared()
        let served = try ServedFixture(fixture)
        defer { served.close() }
        let (serve, home, origin, daemon) = (served.serve, served.home, served.origin, served.daemon)
        try gitfsOK(home: home.path, ["clone", daemon.url("origin.git"), "m"])
        let mirror = home.path + "/repos/m.git"
        let kept = try refLines(mirror)
        // 64 MB of new incompressible content on main.
        let work = serve.sub("work")
        try git("clone", "-q", origin, work, cwd: "/tmp")
        try Data(pseudoRandomBytes(count: 64 << 20, seed: 99)).write(to: URL(fileURLWithPath: work + "/huge.bin"))
        try git("add", "huge.bin", cwd: work)
        try git("commit", "-q", "-m", "huge", cwd: work)
        try git("push", "-q", "origin", "main", cwd: work)
        let result = ResultBox()
        let thread = Thread { result.set(try? runGitfs(home: home.path, ["fetch", "m"])) }
        thread.start()
        // Kill the daemon once the client has started receiving the pack.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !(try FileManager.default.contentsOfDirectory(atPath: mirror + "/objects/pack").contains { $0.hasPrefix("pack_git2_") || $0.hasPrefix("tmp") }) {
            usleep(2_000)
        }
        daemon.stop()
        let r = try #require(result.wait())
        print("fetchInterruptedMidTransferKeepsRefs: fetch exited \(r.status)")
        if r.status == 0 {
            // The transfer won the race; then the refs must be the new ones.
            #expect(try refLines(mirror) == refLines(origin))
        } else {
            #expect(r.stderr.contains(daemon.url("origin.git")))
            #expect(try refLines(mirror) == kept)
        }
    }

    /// Two clones onto one name at once: exactly one wins, the others fail clearly, nothing else is left.
    @Test func concurrentClonesOntoOneName() throws {
        let fixture = try FixtureRepo.shared()
        let home = try TempDir("home")
        defer { home.remove() }
        let results = ResultList()
        DispatchQueue.concurrentPerform(iterations: 3) { _ in
            results.add(try? runGitfs(home: home.path, ["clone", fixture.path, "same"]))
        }
        let all = results.all
        #expect(all.count == 3)
        #expect(all.filter { $0.status == 0 }.count == 1)
        for r in all where r.status != 0 {
            #expect(r.status == 1 && r.stderr.contains("already exists"), "\(r.stderr)")
        }
        #expect(reposEntries(home.path) == ["same.git"])
        #expect(try refLines(home.path + "/repos/same.git") == refLines(fixture.path + "/.git"))
    }

    /// Two fetches of one mirror at once do one network fetch; the second waits and reports the same.
    @Test func concurrentFetchesAreSingleFlight() throws {
        let fixture = try FixtureRepo.shared()
        let served = try ServedFixture(fixture)
        defer { served.close() }
        let (serve, home, origin, daemon) = (served.serve, served.home, served.origin, served.daemon)
        try gitfsOK(home: home.path, ["clone", daemon.url("origin.git"), "m"])
        let work = serve.sub("work")
        try git("clone", "-q", origin, work, cwd: "/tmp")
        try git("commit", "-q", "--allow-empty", "-m", "one more", cwd: work)
        try git("push", "-q", "origin", "main", cwd: work)

        // Hold the mirror's lock so both fetches start while a "fetch" is in flight.
        let lockFD = open(home.path + "/repos/m.git/gitfs.lock", O_RDWR | O_CREAT, 0o644)
        #expect(lockFD >= 0)
        defer { close(lockFD) }
        #expect(flock(lockFD, LOCK_EX) == 0)
        let requestsBefore = daemon.uploadPackRequests()
        let results = ResultList()
        let group = DispatchGroup()
        for _ in 0..<2 {
            DispatchQueue.global().async(group: group) { results.add(try? runGitfs(home: home.path, ["fetch", "m"])) }
        }
        usleep(1_500_000)
        #expect(results.all.isEmpty) // both are waiting for the lock
        flock(lockFD, LOCK_UN)
        group.wait()
        let all = results.all
        #expect(all.count == 2 && all.allSatisfy { $0.status == 0 })
        #expect(all.count == 2 && all[0].out == all[1].out)
        #expect(all.first?.out.contains("refs/heads/main") == true)
        #expect(daemon.uploadPackRequests() - requestsBefore == 1)
        #expect(try refLines(home.path + "/repos/m.git") == refLines(origin))
    }
}

func parseRefLines(_ text: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ")
        out[String(f[1])] = String(f[0])
    }
    return out
}

final class ResultList: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [RunResult] = []
    func add(_ r: RunResult?) { lock.lock(); if let r { items.append(r) }; lock.unlock() }
    var all: [RunResult] { lock.lock(); defer { lock.unlock() }; return items }
}

final class ResultBox: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: RunResult?
    func set(_ r: RunResult?) { value = r; done.signal() }
    func wait() -> RunResult? { done.wait(); return value }
}

/// A bare copy of a fixture at `serve/origin.git`, served by a `git daemon` on 127.0.0.1, and an empty
/// gitfs home. `close()` stops the daemon and removes both folders.
final class ServedFixture {
    let serve: TempDir
    let home: TempDir
    let origin: String
    let daemon: GitDaemon

    init(_ fixture: FixtureRepo) throws {
        serve = try TempDir("serve")
        home = try TempDir("home")
        origin = serve.sub("origin.git")
        try fixture.bareCopy(to: origin)
        daemon = try GitDaemon.start(basePath: serve.path)
    }

    func close() {
        daemon.stop()
        serve.remove()
        home.remove()
    }
}
