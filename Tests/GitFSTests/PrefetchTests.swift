import Basics
import ContentCache
import Foundation
import GitStore
import Resolver
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `gitfs prefetch` with the real binary against the fixture, with git as the oracle.
@Suite(.serialized)
struct PrefetchTests {
    /// One blob of a tree as git lists it.
    struct GitBlob: Hashable {
        let mode: String
        let oid: String
        let path: String
    }

    /// `git ls-tree -r -z REV` of the fixture: files, executables and symlinks (no submodules).
    static func blobs(_ fixture: FixtureRepo, _ rev: String) throws -> [GitBlob] {
        let out = try gitBytes(["ls-tree", "-r", "-z", rev], cwd: fixture.path).stdout
        return out.split(separator: 0).compactMap { rec -> GitBlob? in
            let line = String(decoding: rec, as: UTF8.self)
            guard let tab = line.firstIndex(of: "\t") else { return nil }
            let f = line[..<tab].split(separator: " ")
            guard f[1] == "blob" else { return nil }
            return GitBlob(mode: String(f[0]), oid: String(f[2]), path: String(line[line.index(after: tab)...]))
        }
    }

    /// The parsed summary line `prefetched N objects (...) in S s; C already cached; F failed`.
    struct Summary {
        let loaded: Int
        let cached: Int
        let failed: Int
        let interrupted: Bool
        init(_ text: String) throws {
            let lines = text.split(separator: "\n")
            guard lines.count == 1, let line = lines.first, line.hasPrefix("prefetched ") else {
                throw TestFailure("expected one summary line, got: \(text.debugDescription)")
            }
            let words = line.split(separator: " ")
            loaded = Int(words[1]) ?? -1
            let parts = line.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            cached = Int(parts[1].split(separator: " ")[0]) ?? -1
            failed = Int(parts[2].split(separator: " ")[0]) ?? -1
            interrupted = line.contains("interrupted")
        }
    }

    /// A home with the fixture cloned as `fx`.
    static func home(_ fixture: FixtureRepo) throws -> TempDir {
        let home = try TempDir("pf-home")
        try gitfsOK(home: home.path, ["clone", fixture.path, "fx"])
        return home
    }

    static func cacheContents(home: String, _ oid: String) throws -> [UInt8]? {
        let cache = try Resolver.openCache(home: Home(path: home))
        guard let key = ObjectID(hex: oid), let entry = cache.lookup(key) else { return nil }
        var out = [UInt8](repeating: 0, count: entry.size)
        var done = 0
        try out.withUnsafeMutableBytes { buf in
            while done < entry.size {
                let n = try entry.read(offset: done, into: UnsafeMutableRawBufferPointer(rebasing: buf[done...]))
                if n == 0 { break }
                done += n
            }
        }
        return Array(out.prefix(done))
    }

    static func cached(home: String, _ oids: some Sequence<String>) throws -> Set<String> {
        let cache = try Resolver.openCache(home: Home(path: home))
        return Set(oids.filter { ObjectID(hex: $0).map(cache.contains) ?? false })
    }

    @Test func prefetchesEveryBlobOfTheDefaultBranch() throws {
        let fixture = try FixtureRepo.shared()
        let home = try Self.home(fixture)
        let blobs = try Self.blobs(fixture, "main")
        let unique = Set(blobs.map(\.oid))
        #expect(blobs.contains { $0.mode == "120000" } && blobs.contains { $0.mode == "100755" })

        let first = try gitfsOK(home: home.path, ["prefetch", "fx"])
        let s1 = try Summary(first.out)
        #expect(s1.loaded == unique.count)
        #expect(s1.cached == 0 && s1.failed == 0 && !s1.interrupted)
        #expect(first.stderr.isEmpty, "no progress when stderr is not a terminal: \(first.stderr)")

        // Every blob is in the cache with git's exact bytes.
        #expect(try Self.cached(home: home.path, unique) == unique)
        for b in blobs {
            let expected = try fixture.gitBlob("main", b.path)
            #expect(try Self.cacheContents(home: home.path, b.oid) == expected, "\(b.path)")
            let cat = try runGitfs(home: home.path, ["cat", "fx", "main:" + b.path])
            #expect(cat.status == 0 && cat.stdout == expected, "gitfs cat \(b.path)")
        }

        // A second run finds everything cached.
        let s2 = try Summary(try gitfsOK(home: home.path, ["prefetch", "fx", "--rev", "main"]).out)
        #expect(s2.loaded == 0 && s2.cached == unique.count && s2.failed == 0)
        let verify = try runGitfs(home: home.path, ["verify"])
        #expect(verify.status == 0 && verify.out.contains("0 bad"), "\(verify.out) \(verify.stderr)")
    }

    @Test func twoRevisionsShareTheWork() throws {
        let fixture = try FixtureRepo.shared()
        let home = try Self.home(fixture)
        let a = Set(try Self.blobs(fixture, "main").map(\.oid))
        let b = Set(try Self.blobs(fixture, "feature/x/y").map(\.oid))
        #expect(!a.isDisjoint(with: b) && a != b)
        let s = try Summary(try gitfsOK(home: home.path, ["prefetch", "fx", "--rev", "main", "--rev", "feature/x/y", "--jobs", "3"]).out)
        #expect(s.loaded == a.union(b).count && s.cached == 0)
        #expect(try Self.cached(home: home.path, a.union(b)) == a.union(b))

        // Then a tag: only what is new to it is loaded.
        let c = Set(try Self.blobs(fixture, "v1.0").map(\.oid))
        let s2 = try Summary(try gitfsOK(home: home.path, ["prefetch", "fx", "--rev", "v1.0", "--rev", "main"]).out)
        #expect(s2.loaded == c.subtracting(a.union(b)).count)
        #expect(s2.cached == c.union(a).count - s2.loaded)
    }

    /// Patterns checked against `git ls-files ':(glob)PATTERN'` in a checkout of the fixture.
    static let patterns = [
        "*.md", "*", "**", "**/*.txt", "*.txt", "src", "src/", "a/**", "a/**/deep.txt", "**/deep.txt", "a/b/**/deep.txt",
        "?in/*", "bin/[a-s]*", "bin/[!r]*", "bin/[^r]*", "data/*.txt", "*/*", "*.[td][xa]?", "link-*", "nomatch*",
        "a/b/*", "a/*/c", "[[:alpha:]]*/run.sh", "[[:upper:]]*", "**/b/**", "big/**", "a/**/h", "**/h/*",
        "-leading-dash.txt", "*spaces*", "a*", "b*/**", "*/**/*.c", "bin/r?n.sh", "[a-c]/**", "link-[a-e]??",
        "quote\"back\\\\slash.txt", "\\*", "[]]*", "*[[:digit:]]*", "a/b/c/d/e/f/g/h/deep.txt", "a/b/c", "a/b/c/",
    ]

    @Test func patternsAgreeWithGitPathspecs() throws {
        let fixture = try FixtureRepo.shared()
        let all = try gitBytes(["ls-files", "-z"], cwd: fixture.path).stdout.split(separator: 0).map { Array($0) }
        #expect(all.count >= 15)
        for p in Self.patterns {
            let oracle = Set(try gitBytes(["ls-files", "-z", ":(glob)" + p], cwd: fixture.path).stdout.split(separator: 0).map { Array($0) })
            let pattern = try GlobPattern(p)
            let ours = Set(all.filter { pattern.matches($0) })
            #expect(ours == oracle, "pattern \(p): ours \(ours.map { String(decoding: $0, as: UTF8.self) }.sorted()) git \(oracle.map { String(decoding: $0, as: UTF8.self) }.sorted())")
            // Pruning never loses a match: every directory of a matching path may match below.
            for path in oracle {
                var dir: [UInt8] = []
                for comp in path.split(separator: UInt8(ascii: "/")).dropLast() {
                    if !dir.isEmpty { dir.append(UInt8(ascii: "/")) }
                    dir.append(contentsOf: comp)
                    #expect(pattern.mayMatch(below: dir), "pattern \(p) pruned \(String(decoding: dir, as: UTF8.self))")
                }
            }
        }
    }

    @Test func prefetchWithPatternsLoadsExactlyTheMatchingFiles() throws {
        let fixture = try FixtureRepo.shared()
        let home = try Self.home(fixture)
        let blobs = try Self.blobs(fixture, "main")
        let everything = Set(blobs.map(\.oid))
        for patterns in [["**/*.txt"], ["src", "bin/*"], ["a/**", "*.md"], ["*"]] {
            try? FileManager.default.removeItem(atPath: home.sub("cache"))
            let oracleArgs = ["ls-files", "-z"] + patterns.map { ":(glob)" + $0 }
            let matched = Set(try gitBytes(oracleArgs, cwd: fixture.path).stdout.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
            let want = Set(blobs.filter { matched.contains($0.path) }.map(\.oid))
            let s = try Summary(try gitfsOK(home: home.path, ["prefetch", "fx"] + patterns).out)
            #expect(s.loaded == want.count, "\(patterns)")
            #expect(try Self.cached(home: home.path, everything) == want, "\(patterns)")
        }
    }

    @Test func badRevisionFailsAndNoMatchSucceedsWithZero() throws {
        let fixture = try FixtureRepo.shared()
        let home = try Self.home(fixture)
        let bad = try runGitfs(home: home.path, ["prefetch", "fx", "--rev", "main", "--rev", "no-such-branch"])
        #expect(bad.status == 1)
        #expect(bad.stderr.hasPrefix("gitfs: error: ") && bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        #expect(bad.stderr.contains("no-such-branch"))
        #expect(bad.out.isEmpty)
        // Nothing was loaded for the good revision either.
        let fresh = try Resolver.openCache(home: Home(path: home.path))
        #expect(try Self.blobs(fixture, "main").allSatisfy { !fresh.contains(ObjectID(hex: $0.oid)!) })

        let none = try runGitfs(home: home.path, ["prefetch", "fx", "does/not/*/exist", "*.nothing"])
        #expect(none.status == 0, "\(none.stderr)")
        let s = try Summary(none.out)
        #expect(s.loaded == 0 && s.cached == 0 && s.failed == 0)
        #expect(none.out.hasPrefix("prefetched 0 objects"))

        let noRepo = try runGitfs(home: home.path, ["prefetch", "nope"])
        #expect(noRepo.status == 1 && noRepo.stderr.hasPrefix("gitfs: error: "))
        let badJobs = try runGitfs(home: home.path, ["prefetch", "fx", "--jobs", "0"])
        #expect(badJobs.status == 2)
    }

    /// A repository of `count` small distinct files in 100 directories, made with `git fast-import`.
    static func manyFilesRepo(in dir: String, count: Int) throws -> String {
        let path = dir + "/big.git"
        try git("init", "-q", "--bare", path, cwd: dir)
        var stream = [UInt8]()
        stream.reserveCapacity(count * 300)
        for i in 0..<count {
            let data = String(repeating: "object \(i) ", count: 16) + "\n"
            stream += Array("blob\nmark :\(i + 1)\ndata \(data.utf8.count)\n\(data)\n".utf8)
        }
        stream += Array("commit refs/heads/main\ncommitter T <t@example.com> 1700000000 +0000\ndata 4\nbig\n".utf8)
        for i in 0..<count {
            stream += Array("M 100644 :\(i + 1) d\(i % 100)/f\(i).txt\n".utf8)
        }
        stream += [0x0A]
        try gitBytes(["fast-import", "--quiet"], cwd: path, stdin: stream)
        try git("symbolic-ref", "HEAD", "refs/heads/main", cwd: path)
        return path
    }

    /// Bytes in the cache's files (entries are written to segment files and object files).
    static func cacheBytes(_ home: TempDir) -> Int {
        let root = home.sub("cache")
        let files = (try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? []
        return files.reduce(0) { sum, f in
            var st = stat()
            return sum + (lstat(root + "/" + f, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : 0)
        }
    }

    @Test func sigintStopsPromptlyAndLeavesOnlyCompleteEntries() throws {
        let dir = try TempDir("pf-big")
        let count = 100_000
        let repo = try Self.manyFilesRepo(in: dir.path, count: count)
        let home = try TempDir("pf-home")
        try gitfsOK(home: home.path, ["clone", repo, "big"])

        let p = Process()
        p.executableURL = URL(fileURLWithPath: gitfsBinary)
        p.arguments = ["prefetch", "--home", home.path, "big", "--jobs", "2"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        // Wait until loading is under way: entries appear in the cache.
        let started = waitFor(seconds: 60) { Self.cacheBytes(home) > 200_000 }
        #expect(started)
        #expect(p.isRunning, "the prefetch finished before it could be interrupted; make the repository bigger")
        let sent = MonotonicTime.now
        p.interrupt()
        let exited = waitFor(seconds: 5) { !p.isRunning }
        let took = MonotonicTime.now - sent
        #expect(exited, "prefetch did not stop within 5 s of SIGINT")
        p.waitUntilExit()
        #expect(took < .seconds(2), "stopping took \(took)")
        #expect(p.terminationReason == .exit && p.terminationStatus == 130)
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let s = try Summary(text)
        #expect(s.interrupted && s.loaded > 0 && s.loaded < count, "\(text)")

        let verify = try runGitfs(home: home.path, ["verify"])
        #expect(verify.status == 0 && verify.out.contains("0 bad"), "\(verify.out) \(verify.stderr)")
        // A second run loads exactly the rest.
        let s2 = try Summary(try gitfsOK(home: home.path, ["prefetch", "big"]).out)
        #expect(s2.loaded + s2.cached == count && s2.cached >= s.loaded && s2.failed == 0)
    }

    @Test func fetchFlagWarnsWhenTheRemoteIsGoneAndContinues() throws {
        let fixture = try FixtureRepo.shared()
        let dir = try TempDir("pf-fetch")
        try fixture.bareCopy(to: dir.sub("src.git"))
        let home = try TempDir("pf-home")
        try gitfsOK(home: home.path, ["clone", dir.sub("src.git"), "fx"])
        try FileManager.default.removeItem(atPath: dir.sub("src.git"))
        let r = try runGitfs(home: home.path, ["prefetch", "fx", "--fetch", "src/**"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("gitfs: warning: fetch failed (") && lines[0].hasSuffix("): prefetching from what is mirrored"), "\(r.stderr)")
        #expect(try Summary(r.out).loaded == 1)
    }

    @Test func progressOnlyOnATerminal() throws {
        let fixture = try FixtureRepo.shared()
        let home = try Self.home(fixture)
        // `script` gives the command a pseudo-terminal; its output is what the terminal showed.
        let cmd = "'\(gitfsBinary)' prefetch --home '\(home.path)' fx --rev main --rev v1.0"
        let r = try run(["script", "-qec", cmd, "/dev/null"])
        #expect(r.status == 0, "\(r.out)")
        #expect(r.out.contains("\rprefetch: "), "no progress line on a terminal: \(r.out.debugDescription)")
        #expect(r.out.contains(" objects, ") && r.out.contains("/s"), "\(r.out.debugDescription)")
        #expect(r.out.contains("prefetched "))
        // Not a terminal: only the summary line.
        try FileManager.default.removeItem(atPath: home.sub("cache"))
        let plain = try gitfsOK(home: home.path, ["prefetch", "fx", "--rev", "main", "--rev", "v1.0"])
        #expect(plain.stderr.isEmpty && plain.out.split(separator: "\n").count == 1)
    }

    @Test func safeWhileAMountAndGcRun() throws {
        let dir = try TempDir("pf-gc")
        let count = 30_000
        let repo = try Self.manyFilesRepo(in: dir.path, count: count)
        let home = try TempDir("pf-home")
        try gitfsOK(home: home.path, ["clone", repo, "big"])
        let mp = try TempDir("pf-mp")
        defer { OfflineTests.unmount(home: home.path, mp.path) }
        let m = try offlineRunGitfs(home: home.path, ["mount", mp.path], seconds: 90)
        #expect(m.status == 0, "\(m.stderr)")

        let p = Process()
        p.executableURL = URL(fileURLWithPath: gitfsBinary)
        p.arguments = ["prefetch", "--home", home.path, "big", "--jobs", "2"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        var gcRuns = 0
        var reads = 0
        var i = 0
        while p.isRunning {
            let gc = try offlineRunGitfs(home: home.path, ["gc", "--max-size", "256K"], seconds: 60)
            #expect(gc.status == 0, "\(gc.stderr)")
            if p.isRunning { gcRuns += 1 }
            for _ in 0..<50 {
                let path = mp.sub("big/HEAD/d\(i % 100)/f\(i).txt")
                let want = String(repeating: "object \(i) ", count: 16) + "\n"
                #expect((try? String(contentsOfFile: path, encoding: .utf8)) == want, "\(path)")
                reads += 1
                i = (i + 7919) % count
            }
        }
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let s = try Summary(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        #expect(s.failed == 0 && s.loaded + s.cached == count)
        #expect(gcRuns >= 1, "gc never ran while the prefetch did")

        let verify = try runGitfs(home: home.path, ["verify"])
        #expect(verify.status == 0 && verify.out.contains("0 bad"), "\(verify.out) \(verify.stderr)")
        // Whatever gc evicted is loaded again; nothing fails.
        let s2 = try Summary(try gitfsOK(home: home.path, ["prefetch", "big"]).out)
        #expect(s2.failed == 0 && s2.loaded + s2.cached == count)
    }

    /// Many more patterns against git, on a checkout made for glob corner cases.
    @Test func globCornerCasesAgreeWithGit() throws {
        let dir = try TempDir("pf-glob")
        let repo = dir.sub("r")
        try git("init", "-q", repo, cwd: dir.path)
        let paths = ["a.c", "b/a.c", "b/c/a.c", "foo/bar/baz.txt", "foo/barx/y", "x[y]z", "star*file", "q?mark", "ab/cd/ef/gh.md",
                     ".hidden/x", ".dot", "dir.with.dots/file", "deep/a/b/c/d/e.c", "aXb/c", "a/b", "a/x/b", "a/x/y/b", "-dash/f",
                     "[bracket]/f", "b.c", "c.c", "1.c", "foo/bar", "z/y/x/w"]
        for p in paths {
            let full = repo + "/" + p
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: full.replacingOccurrences(of: "/foo/bar", with: "/foo/bar"), contents: Data(p.utf8))
        }
        try git("add", "-A", cwd: repo)
        let all = try gitBytes(["ls-files", "-z"], cwd: repo).stdout.split(separator: 0).map { Array($0) }
        let patterns = ["**/a.c", "b/**", "b/**/a.c", "**/c/*", "*/*/*.c", "a/**/b", "a/*/b", "**b", "a**", "a/**b", "*.c", "?.c",
                        "[ab].c", "[!a].c", "[^a].c", "x\\[y]z", "x[[]y]z", "star\\*file", "star*", "q\\?mark", "q?mark", "**/*.md",
                        "ab/**/gh.md", ".*", "**/.*", "*/", "foo/bar", "foo/bar/", "foo/ba?", "foo/ba*/**", "deep/**/e.c",
                        "deep/*/**/e.c", "[[:punct:]]*/f", "[a-]*", "[]-]*", "*[[:digit:]].c", "dir.with.dots/*", "**/**/e.c",
                        "a/**/**/b", "[0-9a].c", "[c-a].c", "*/**", "**/*", "z/**/w", "z/*/x/*", "***/a.c", "b/***", "[[:alpha:][:digit:]].c",
                        "\\[bracket]/f", "[[]bracket]/*", "*X*/*", "**/x", "a/x/**"]
        var compared = 0
        for p in patterns {
            let r = try run(["git", "ls-files", "-z", ":(glob)" + p], cwd: repo, env: gitEnvironment)
            guard r.status == 0 else { continue }
            let oracle = Set(r.stdout.split(separator: 0).map { Array($0) })
            let pattern = try GlobPattern(p)
            let ours = Set(all.filter { pattern.matches($0) })
            #expect(ours == oracle, "pattern \(p): ours \(ours.map { String(decoding: $0, as: UTF8.self) }.sorted()) git \(oracle.map { String(decoding: $0, as: UTF8.self) }.sorted())")
            for path in oracle {
                let comps = path.split(separator: UInt8(ascii: "/")).dropLast()
                var d: [UInt8] = []
                for c in comps {
                    if !d.isEmpty { d.append(UInt8(ascii: "/")) }
                    d.append(contentsOf: c)
                    #expect(pattern.mayMatch(below: d), "pattern \(p) pruned \(String(decoding: d, as: UTF8.self))")
                }
            }
            compared += 1
        }
        #expect(compared > 40)
    }

    /// Runs of `**/` used to backtrack exponentially (found by Fuzz/glob: its input is the last case; git's
    /// own wildmatch takes seconds on the first); each now takes microseconds and gives git's answer.
    @Test func starStarRunsMatchInPolynomialTime() throws {
        let deep = Array(repeating: "a", count: 20).joined(separator: "/")
        let fuzzInput = Array(Data(base64Encoded: "Ki8qKiovKiovKioqLyoqKi8qKiovKioqLyoqKioqLyoqKi8qKiovKioqKi8qKiovKiovKgAqKgAAYi8AACoqLyoqKi8qKiovXFwqKi8qKiovLyoqKi8qKiovKioqL1xcXFxcXFxcXFwqKi///zEqKioqKi8qSGFT")!)
        let cut = 2 + (Int(fuzzInput[0]) | Int(fuzzInput[1]) << 8) % (fuzzInput.count - 1)
        let cases: [(pattern: String, path: [UInt8], match: Bool)] = [
            (String(repeating: "**/", count: 12) + "c", Array((deep + "/b").utf8), false),
            (String(repeating: "**/", count: 12) + "b", Array((deep + "/b").utf8), true),
            (String(repeating: "*/**/", count: 8) + "x*", Array((deep + "/b").utf8), false),
            (String(decoding: fuzzInput[2..<cut], as: UTF8.self), Array(fuzzInput[cut...]), false),
        ]
        for c in cases {
            let start = ContinuousClock.now
            let matched = try GlobPattern(c.pattern).matches(c.path)
            let took = ContinuousClock.now - start
            #expect(matched == c.match, "pattern \(c.pattern.debugDescription)")
            #expect(took < .seconds(5), "pattern \(c.pattern.debugDescription) took \(took)")
        }
    }
}
