import Basics
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// Issue 13: blobless mirrors (`gitfs clone --filter=blob:none`), served from a real `git daemon` on
    /// 127.0.0.1 that allows filters and fetching by id; blobs come from it on first use, in batches.
    @Suite struct Blobless {
        /// A served copy of `source` (bare) under a fresh base directory, with the two settings a blobless
        /// clone needs, and a daemon serving it. Stop the daemon (defer).
        static func serve(_ source: String, bare: Bool = false) throws -> (daemon: GitDaemon, base: TempDir, url: String, path: String) {
            let base = try TempDir("blobless-srv")
            let path = base.sub("r.git")
            try git("clone", "-q", "--bare", source, path, cwd: "/tmp")
            try git("config", "uploadpack.allowFilter", "true", cwd: path)
            try git("config", "uploadpack.allowAnySHA1InWant", "true", cwd: path)
            let daemon = try GitDaemon.start(basePath: base.path)
            return (daemon, base, daemon.url("r.git"), path)
        }

        /// Ids of the blobs a mirror holds (`git cat-file --batch-all-objects`, which never fetches).
        static func localBlobs(_ mirror: String) throws -> Set<String> {
            let out = try git("cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectname)", cwd: mirror)
            return Set(out.split(separator: "\n").filter { $0.hasPrefix("blob ") }.map { String($0.dropFirst(5)) })
        }

        /// Compares the mount's `root` with `git archive` of `id`: every path, kind, mode, size and byte.
        static func compare(root: String, repo: String, id: String, scratch: TempDir) throws -> [String] {
            let expectedDir = scratch.sub("archive-\(id)")
            try gitArchive(repo, id, into: expectedDir)
            defer { try? FileManager.default.removeItem(atPath: expectedDir) }
            let expected = try walkTree(expectedDir)
            let actual = try walkTree(root)
            var problems: [String] = []
            if Set(expected.keys) != Set(actual.keys) {
                problems.append("paths differ: missing \(Set(expected.keys).subtracting(actual.keys).sorted().prefix(5)), extra \(Set(actual.keys).subtracting(expected.keys).sorted().prefix(5))")
            }
            for (rel, want) in expected.sorted(by: { $0.key < $1.key }) where !rel.isEmpty {
                guard let got = actual[rel] else { continue }
                if got.kind != want.kind || got.size != want.size && want.kind != .directory
                    || (want.kind == .file && got.permissions != (want.isExecutableFile ? 0o555 : 0o444)) {
                    problems.append("\(rel): \(got), git archive: \(want)")
                    continue
                }
                if want.kind == .file, case .success(let bytes) = readWholeFile(expectedDir + "/" + rel),
                   let diff = compareFile(root + "/" + rel, with: bytes) {
                    problems.append(diff)
                }
                if problems.count > 20 { break }
            }
            return problems
        }

        @Test func cloneIsSmallerHoldsNoBlobsAndMountsLikeGit() throws {
            let fixture = try FixtureRepo.shared()
            let srv = try Self.serve(fixture.path)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-fid")
            defer { m.unmount() }
            try m.clone(srv.url, as: "full")
            let c = try m.gitfs(["clone", "--filter=blob:none", srv.url, "bl"])
            #expect(c.status == 0, "\(c.stderr)")
            let c2 = try m.gitfs(["clone", "--filter=blob:limit=1k", srv.url, "lim"])
            #expect(c2.status == 0, "\(c2.stderr)")
            // A repository on this machine (no server settings needed): blobless too, blobs fetched from it.
            let other = try TempDir("blobless-local")
            #expect(try runGitfs(home: other.path, ["clone", "--filter=blob:none", fixture.path, "local"]).status == 0)
            let localMirror = other.sub("repos/local.git")
            #expect(try Self.localBlobs(localMirror).isEmpty)
            let localCat = try runGitfs(home: other.path, ["cat", "local", "main:src/main.c"])
            let wantMain = try fixture.gitBlob("main", "src/main.c")
            #expect(localCat.status == 0 && localCat.stdout == wantMain, "\(localCat.stderr)")
            #expect(try Self.localBlobs(localMirror).count >= 1)
            let full = m.home + "/repos/full.git", bl = m.home + "/repos/bl.git", lim = m.home + "/repos/lim.git"

            // Smaller than a full mirror, no blobs at all; the limited one has its small blobs only.
            let duFull = try Int(git("-C", full, "count-objects", "-v", cwd: "/").split(separator: "\n")
                .first { $0.hasPrefix("size-pack: ") }!.dropFirst(11))!
            let duBl = try Int(git("-C", bl, "count-objects", "-v", cwd: "/").split(separator: "\n")
                .first { $0.hasPrefix("size-pack: ") }!.dropFirst(11))!
            #expect(duBl * 10 < duFull, "blobless pack \(duBl) KiB vs full \(duFull) KiB")
            #expect(try Self.localBlobs(bl).isEmpty)
            let limBlobs = try Self.localBlobs(lim)
            let fullBlobs = try Self.localBlobs(full)
            #expect(!limBlobs.isEmpty && limBlobs.count < fullBlobs.count)
            // The same refs as a full mirror.
            let refs = { (p: String) in try git("for-each-ref", "--format=%(objectname) %(refname)", cwd: p) }
            #expect(try refs(bl) == refs(full))
            #expect(try git("symbolic-ref", "HEAD", cwd: bl) == git("symbolic-ref", "HEAD", cwd: full))

            let list = try m.gitfs(["list", "--json"])
            #expect(list.out.contains("\"filter\" : \"blob:none\"") && list.out.contains("\"filter\" : \"blob:limit=1024\""), "\(list.out)")

            try m.mount(watchdogSeconds: 240)
            // Refs as for the full mirror.
            for dir in ["branches", "tags", "branches/feature/x", "tags/nested"] {
                #expect(try listDirectory(m.path("bl/\(dir)")).sorted() == listDirectory(m.path("full/\(dir)")).sorted(), "\(dir)")
            }
            #expect(lstatInfo(m.path("bl/HEAD")) == lstatInfo(m.path("full/HEAD")))
            // Every commit of every ref, every path, size and byte as git archive gives them.
            let scratch = try TempDir("blobless-archive")
            let commits = try git("rev-list", "--all", cwd: fixture.path).split(separator: "\n").map(String.init)
            for name in ["bl", "lim"] {
                for id in commits {
                    let problems = try Self.compare(root: m.path("\(name)/commits/\(id)"), repo: fixture.path, id: id, scratch: scratch)
                    #expect(problems.isEmpty, "\(name) \(id):\n\(summary(problems))")
                }
            }
            let stats = try m.stats()
            #expect((stats["origin_fetches"] ?? 0) > 0 && stats["origin_errors"] == 0, "\(stats)")
            #expect((stats["origin_objects"] ?? 0) > 0 && (stats["origin_bytes"] ?? 0) > FixtureRepo.bigFileSize)
            // Fetched blobs stayed in the mirror: fewer fetches than directories read twice over.
            let fetches = stats["origin_fetches"] ?? 0
            _ = try Self.compare(root: m.path("bl/commits/\(commits[0])"), repo: fixture.path, id: commits[0], scratch: scratch)
            #expect(try m.stats()["origin_fetches"] == fetches)
            // `list` counts what came from the origin (the limited mirror read its big blobs from the
            // content cache the blobless one had filled: nothing to fetch).
            let after = try JSONSerialization.jsonObject(with: Data(try m.gitfs(["list", "--json"]).stdout)) as? [[String: Any]] ?? []
            let fetched = after.first { $0["name"] as? String == "bl" }?["fetched_blobs"] as? Int ?? 0
            let blBlobs = try Self.localBlobs(bl).count
            #expect(fetched > 0 && fetched <= blBlobs, "\(after)")
            #expect(!m.watchdogHasFired)
        }

        @Test func findAndStatOfAWideDirectoryIsOneFetch() throws {
            let work = try TempDir("blobless-wide")
            let src = work.sub("wide")
            let many = (0..<3000).map { (String(format: "many/f%04d.txt", $0), Array("entry \($0) of the wide directory\n".utf8)) }
            try fastImportRepo(at: src, commits: [[("README", Array("wide\n".utf8))] + many], checkout: false)
            let srv = try Self.serve(src)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-wide")
            defer { m.unmount() }
            let c = try m.gitfs(["clone", "--filter=blob:none", srv.url, "w"])
            #expect(c.status == 0, "\(c.stderr)")
            try m.mount(watchdogSeconds: 180)
            let id = try revParse(src, "main")
            let before = srv.daemon.uploadPackRequests()
            // Listing names and types needs no size: nothing is fetched.
            #expect(try listDirectory(m.path("w/commits/\(id)/many")).count == 3000)
            let listed = try runBounded(["find", m.path("w/commits/\(id)"), "-type", "f"], seconds: 60)
            #expect(listed.out.split(separator: "\n").count == 3001)
            #expect(try m.stats()["origin_fetches"] == 0)
            let r = try runBounded(["sh", "-c", "find \"$1\" -type f | xargs stat -c '%n %s' | wc -l", "sh", m.path("w/commits/\(id)/many")], seconds: 120)
            #expect(r.out.trimmingCharacters(in: .whitespacesAndNewlines) == "3000", "\(r.out) \(r.stderr)")
            var stats = try m.stats()
            #expect(stats["origin_fetches"] == 1 && stats["origin_objects"] == 3000, "\(stats)")
            #expect(srv.daemon.uploadPackRequests() - before == 1)
            // Sizes are exact, and every file reads as git has it, with no further fetch.
            let want = try git("ls-tree", "-l", "main:many", cwd: src).split(separator: "\n").map { line -> (String, Int) in
                let f = line.split(separator: "\t")
                return (String(f[1]), Int(f[0].split(separator: " ").last!)!)
            }
            var problems: [String] = []
            for (name, size) in want {
                let path = m.path("w/commits/\(id)/many/\(name)")
                if lstatInfo(path)?.size != size { problems.append("\(name): size \(String(describing: lstatInfo(path)?.size)), git \(size)") }
                if name.hasSuffix("7.txt"), let diff = compareFile(path, with: try gitBytes(["cat-file", "blob", "main:many/\(name)"], cwd: src).stdout) {
                    problems.append(diff)
                }
            }
            #expect(problems.isEmpty, "\(summary(problems))")
            stats = try m.stats()
            #expect(stats["origin_fetches"] == 1, "\(stats)")
        }

        @Test func concurrentReadersOfOneMissingBlobCauseOneFetch() throws {
            let work = try TempDir("blobless-sf")
            let src = work.sub("one")
            try fastImportRepo(at: src, commits: [[("lonely/blob.bin", pseudoRandomBytes(count: 3 << 20, seed: 13))]], checkout: false)
            let srv = try Self.serve(src)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-sf")
            defer { m.unmount() }
            #expect(try m.gitfs(["clone", "--filter=blob:none", srv.url, "o"]).status == 0)
            try m.mount(watchdogSeconds: 120)
            let id = try revParse(src, "main")
            _ = try listDirectory(m.path("o/commits/\(id)"))
            let path = m.path("o/commits/\(id)/lonely/blob.bin")
            let want = try gitBytes(["cat-file", "blob", "main:lonely/blob.bin"], cwd: src).stdout
            let failures = Failures()
            let finished = onThreads(32, timeout: 90) { _ in
                if let diff = compareFile(path, with: want) { failures.add(diff) }
            }
            #expect(finished)
            #expect(failures.all.isEmpty, "\(failures.all)")
            let stats = try m.stats()
            #expect(stats["origin_fetches"] == 1 && stats["origin_objects"] == 1, "\(stats)")
        }

        @Test func offlineCachedBlobsReadMissingOnesFailFastAndTheMountServes() throws {
            let fixture = try FixtureRepo.shared()
            let srv = try Self.serve(fixture.path)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-off")
            defer { m.unmount() }
            #expect(try m.gitfs(["clone", "--filter=blob:none", srv.url, "bl"]).status == 0)
            // A second home, prefetched while the origin answers.
            let p = try MountedHome("blobless-pre")
            defer { p.unmount() }
            #expect(try p.gitfs(["clone", "--filter=blob:none", srv.url, "bl"]).status == 0)
            let before = srv.daemon.uploadPackRequests()
            let pf = try p.gitfs(["prefetch", "bl"])
            #expect(pf.status == 0 && pf.out.contains(" 0 failed"), "\(pf.out) \(pf.stderr)")
            #expect(srv.daemon.uploadPackRequests() - before == 1, "prefetch asked the origin \(srv.daemon.uploadPackRequests() - before) times")

            try m.mount(watchdogSeconds: 120)
            let main = try revParse(fixture.path, "main")
            let readme = m.path("bl/commits/\(main)/README.md")
            #expect(compareFile(readme, with: try fixture.gitBlob("main", "README.md")) == nil)

            srv.daemon.stop()
            // Cached: still reads. Missing: EIO, promptly, and logged with the repository and the object.
            #expect(compareFile(readme, with: try fixture.gitBlob("main", "README.md")) == nil)
            let missing = try git("rev-parse", "main:src/main.c", cwd: fixture.path).trimmingCharacters(in: .whitespacesAndNewlines)
            let t0 = Date()
            let r = try runBounded(["cat", m.path("bl/commits/\(main)/src/main.c")], seconds: 30)
            #expect(r.status != 0 && r.stderr.contains("Input/output error"), "\(r.status) \(r.stderr)")
            #expect(Date().timeIntervalSince(t0) < 5)
            #expect(waitFor(seconds: 5) { m.serverLog.contains(missing) && m.serverLog.contains("bl") }, "\(m.serverLog.suffix(2000))")
            #expect((try m.stats()["origin_errors"] ?? 0) >= 1)
            // The mount keeps serving.
            #expect(try listDirectory(m.path("bl/branches")).contains("main"))
            #expect(compareFile(readme, with: try fixture.gitBlob("main", "README.md")) == nil)

            // The prefetched home reads its whole revision offline.
            try p.mount(watchdogSeconds: 120)
            let scratch = try TempDir("blobless-off-archive")
            let problems = try Self.compare(root: p.path("bl/commits/\(main)"), repo: fixture.path, id: main, scratch: scratch)
            #expect(problems.isEmpty, "\(summary(problems))")
            #expect(try p.stats()["origin_fetches"] == 0)
        }

        @Test func failedCloneLeavesNothingFetchKeepsTheFilterAndAFailedFetchKeepsRefs() throws {
            let fixture = try FixtureRepo.shared()
            let srv = try Self.serve(fixture.path)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-fetch")
            defer { m.unmount() }
            let bad = try m.gitfs(["clone", "--filter=blob:none", srv.daemon.url("nothing.git"), "bad"])
            expectOneErrorLine(bad, "a clone of a repository the daemon does not have")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: m.home + "/repos")) ?? [] == [])
            let usage = try m.gitfs(["clone", "--filter=tree:0", srv.url, "bad"])
            expectOneErrorLine(usage, status: 2, "an unsupported filter")

            #expect(try m.gitfs(["clone", "--filter=blob:none", srv.url, "bl"]).status == 0)
            let mirror = m.home + "/repos/bl.git"
            // A new commit on the origin: fetched with the filter kept (its new blob stays on the origin).
            let work = try TempDir("blobless-work")
            try git("clone", "-q", srv.path, work.sub("w"), cwd: "/tmp")
            try FileManager.default.createDirectory(atPath: work.sub("w/new"), withIntermediateDirectories: true)
            try Data("fresh content \(UUID())\n".utf8).write(to: URL(fileURLWithPath: work.sub("w/new/file.txt")))
            try git("add", ".", cwd: work.sub("w"))
            try git("-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "new", cwd: work.sub("w"))
            try git("push", "-q", "origin", "HEAD:main", cwd: work.sub("w"))
            let f = try m.gitfs(["fetch", "bl"])
            #expect(f.status == 0 && f.out.contains("main"), "\(f.out) \(f.stderr)")
            let newBlob = try git("rev-parse", "HEAD:new/file.txt", cwd: work.sub("w")).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try git("rev-parse", "main", cwd: mirror) == git("rev-parse", "HEAD", cwd: work.sub("w")))
            #expect(try !Self.localBlobs(mirror).contains(newBlob))
            #expect(try git("config", "remote.origin.partialclonefilter", cwd: mirror).hasPrefix("blob:none"))
            let cat = try m.gitfs(["cat", "bl", "main:new/file.txt"])
            let wantNew = try gitBytes(["cat-file", "blob", "HEAD:new/file.txt"], cwd: work.sub("w")).stdout
            #expect(cat.status == 0 && cat.stdout == wantNew)

            // The origin gone: one error line naming it, every ref kept.
            let refsBefore = try git("for-each-ref", "--format=%(objectname) %(refname)", cwd: mirror)
            srv.daemon.stop()
            let failed = try m.gitfs(["fetch", "bl"])
            expectOneErrorLine(failed, "a fetch with the origin stopped")
            #expect(failed.stderr.contains(srv.url))
            #expect(try git("for-each-ref", "--format=%(objectname) %(refname)", cwd: mirror) == refsBefore)
        }

        @Test func gcRemovesFetchedPacksWhoseBlobsTheCacheHolds() throws {
            let fixture = try FixtureRepo.shared()
            let srv = try Self.serve(fixture.path)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-gc")
            defer { m.unmount() }
            #expect(try m.gitfs(["clone", "--filter=blob:none", srv.url, "bl"]).status == 0)
            let mirror = m.home + "/repos/bl.git"
            let promisorPacks = { () -> [String] in
                ((try? FileManager.default.contentsOfDirectory(atPath: mirror + "/objects/pack")) ?? []).filter { $0.hasSuffix(".promisor") }.sorted()
            }
            #expect(promisorPacks().count == 1)   // the clone's commits and trees
            let pf = try m.gitfs(["prefetch", "bl"])
            #expect(pf.status == 0, "\(pf.stderr)")
            #expect(promisorPacks().count == 2)
            // A blob fetched into the mirror that the cache does not hold: its pack stays.
            let other = try git("rev-parse", "v1.0:src/main.c", cwd: fixture.path).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try git("rev-parse", "main:src/main.c", cwd: fixture.path).trimmingCharacters(in: .whitespacesAndNewlines) != other)
            try git("-c", "fetch.negotiationAlgorithm=noop", "fetch", "-q", "origin", "--no-tags", "--no-write-fetch-head",
                    "--filter=blob:none", "--stdin", cwd: mirror, stdin: Array((other + "\n").utf8))
            #expect(promisorPacks().count == 3)
            let sizeBefore = FileSystem.diskUsage(mirror)

            let dry = try m.gitfs(["gc", "--dry-run"])
            #expect(dry.status == 0 && dry.out.contains("would remove 1 pack of "), "\(dry.out)")
            #expect(promisorPacks().count == 3)
            let gc = try m.gitfs(["gc"])
            #expect(gc.status == 0 && gc.out.contains("removed 1 pack of "), "\(gc.out) \(gc.stderr)")
            #expect(promisorPacks().count == 2)
            #expect(FileSystem.diskUsage(mirror) + FixtureRepo.bigFileSize / 2 < sizeBefore)
            #expect(try Self.localBlobs(mirror) == [other])
            #expect(try m.gitfs(["gc"]).out.contains("removed") == false)

            // Offline, the revision still reads in full (from the cache), and the kept blob from the mirror.
            srv.daemon.stop()
            try m.mount(watchdogSeconds: 120)
            let main = try revParse(fixture.path, "main")
            let scratch = try TempDir("blobless-gc-archive")
            let problems = try Self.compare(root: m.path("bl/commits/\(main)"), repo: fixture.path, id: main, scratch: scratch)
            #expect(problems.isEmpty, "\(summary(problems))")
            #expect(try m.stats()["origin_fetches"] == 0)
            let v1 = try revParse(fixture.path, "v1.0^{commit}")
            #expect(compareFile(m.path("bl/commits/\(v1)/src/main.c"), with: try fixture.gitBlob("v1.0", "src/main.c")) == nil)
        }

        @Test func aHungOriginIsStoppedAfterItsTimeOutAndTheReaderGetsEIO() throws {
            let fixture = try FixtureRepo.shared()
            let srv = try Self.serve(fixture.path)
            defer { srv.daemon.stop() }
            let m = try MountedHome("blobless-hung")
            defer { m.unmount() }
            #expect(try m.gitfs(["clone", "--filter=blob:none", srv.url, "bl"]).status == 0)
            // An origin that accepts connections and never answers.
            let port = try freePort()
            let silentLog = try TempDir("blobless-silent")
            let silent = try spawnInOwnGroup(["python3", "-c", """
                import socket, time
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", \(port))); s.listen(64); held = []
                while True:
                    c, _ = s.accept(); held.append(c)
                """], output: silentLog.sub("log"))
            defer { kill(-silent, SIGKILL); var st: Int32 = 0; waitpid(silent, &st, 0) }
            #expect(waitFor(seconds: 10) { canConnect(port: port) })
            try git("config", "remote.origin.url", "git://127.0.0.1:\(port)/r.git", cwd: m.home + "/repos/bl.git")

            let mount = try runBounded([gitfsBinary, "mount", m.mountpoint, "--home", m.home], seconds: 90, env: ["GITFS_ORIGIN_TIMEOUT": "3"])
            #expect(mount.status == 0, "\(mount.stderr)")
            m.adoptCurrentMount()
            m.armWatchdog(seconds: 90)
            let main = try revParse(fixture.path, "main")
            let t0 = Date()
            let r = try runBounded(["cat", m.path("bl/commits/\(main)/README.md")], seconds: 60)
            let took = Date().timeIntervalSince(t0)
            #expect(r.status != 0 && r.stderr.contains("Input/output error"), "\(r.status) \(r.stderr)")
            #expect(took >= 2.5 && took < 15, "the read took \(took) s")
            // git was killed and reaped: no git process of this mirror is left.
            let left = try runBounded(["pgrep", "-f", "bl.git.*fetch"], seconds: 10)
            #expect(left.out.isEmpty, "\(left.out)")
            #expect(waitFor(seconds: 5) { m.serverLog.contains("3 s and was stopped") }, "\(m.serverLog.suffix(1500))")
            let stats = try m.stats()
            #expect(stats["origin_errors"] == 1 && stats["origin_fetches"] == 1, "\(stats)")
            // The mount keeps serving.
            #expect(try listDirectory(m.path("bl/branches")).contains("main"))
            #expect(!m.watchdogHasFired)
        }
    }
}
