import Basics
import Foundation
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// Many readers at once: single-flight loads, sustained load, bounded server memory.
    @Suite struct Concurrency {

        @Test func thirtyTwoReadersOfOneUncachedBlobLoadItOnce() throws {
            let work = try TempDir("sf")
            let src = work.sub("src")
            let big = pseudoRandomBytes(count: 50 << 20, seed: 0x5EED_50)
            try fastImportRepo(at: src, commits: [[("big50.bin", big), ("small.txt", Array("small\n".utf8))]])
            let id = try revParse(src, "main")
            let want = String(try run(["sha1sum", src + "/big50.bin"]).out.prefix(40))
            #expect(want == String(try run(["sh", "-c", "git cat-file blob main:big50.bin | sha1sum"], cwd: src).out.prefix(40)))

            let m = try MountedHome("sf")
            defer { m.unmount() }
            try m.clone(src, as: "sf")
            try m.mount(watchdogSeconds: 120)
            let file = m.path("sf/commits/\(id)/big50.bin")
            #expect(lstatInfo(file)?.size == 50 << 20)   // lookup/getattr: header only, no load
            let before = try m.stats()

            let go = work.sub("GO")
            // Each reader first reads 1 MiB at its own offset (distinct pages, so the kernel's page cache
            // cannot merge the 32 first reads into one request), then the whole file.
            let readers = try (0..<32).map { i in
                try Child(["sh", "-c", "while [ ! -e \"$1\" ]; do sleep 0.005; done; dd if=\"$2\" of=/dev/null bs=1M skip=\(i) count=1 status=none && exec sha1sum \"$2\"",
                           "sh", go, file])
            }
            defer { readers.forEach { $0.kill() } }
            usleep(300_000)
            #expect(FileManager.default.createFile(atPath: go, contents: Data()))
            var sums: [String] = []
            for r in readers {
                let status = r.wait(timeout: 120)
                #expect(status == 0, "reader exited \(String(describing: status)): \(r.output)")
                sums.append(String(r.output.prefix(40)))
            }
            #expect(sums.allSatisfy { $0 == want }, "sha1 of the readers: \(Set(sums)), git: \(want)")
            let after = try m.stats()
            let loads = after["blob_loads"]! - before["blob_loads"]!
            #expect(loads == 1, "blob_loads \(before["blob_loads"]!) -> \(after["blob_loads"]!), errors \(after["errors"] ?? -1); the server's log:\n\(loads == 1 ? "" : m.serverLog)")
            #expect(after["singleflight_joins"]! > before["singleflight_joins"]!,
                    "singleflight_joins \(before["singleflight_joins"]!) -> \(after["singleflight_joins"]!)")
            #expect(!m.watchdogHasFired)
        }

        @Test func sixtyFourReadersOverSeveralCommitsGetEveryByteRight() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("load")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 150)

            // Every regular file of four commits, with git's bytes for each blob.
            var blobs: [String: [UInt8]] = [:]
            var files: [(path: String, oid: String)] = []
            for rev in ["main", "main~1", "feature/x/y", "v1.0"] {
                let id = try revParse(fixture.path, "\(rev)^{commit}")
                for (rel, object) in try gitTreeObjects(fixture.path, id) where object.mode.hasPrefix("100") {
                    if blobs[object.oid] == nil {
                        blobs[object.oid] = try gitBytes(["cat-file", "blob", object.oid], cwd: fixture.path).stdout
                    }
                    files.append((m.path("fixture/commits/\(id)/\(rel)"), object.oid))
                }
            }
            #expect(files.count > 40)
            let expected = blobs
            let list = files
            let failures = Failures()
            let reads = Atomic<Int>(0)
            let deadline = Date().addingTimeInterval(20)
            let finished = onThreads(64, timeout: 120) { i in
                var order = Array(list.indices)
                var rng = SystemRandomNumberGenerator()
                order.shuffle(using: &rng)
                var k = i
                while Date() < deadline {
                    let f = list[order[k % order.count]]
                    k += 1
                    if let problem = compareFile(f.path, with: expected[f.oid]!) { failures.add(problem) }
                    reads.add(1, ordering: .relaxed)
                }
            }
            #expect(finished, "readers did not finish")
            #expect(failures.all.isEmpty, "\(failures.all.count) failures:\n\(summary(failures.all))")
            #expect(reads.load(ordering: .relaxed) > 640)
            let stats = try m.stats()
            #expect(stats["errors"] == 0, "server errors: \(stats)")
            #expect(!m.watchdogHasFired)
        }

        @Test func serverMemoryStaysBoundedWhileFindWalksManyCommits() throws {
            let work = try TempDir("mem")
            let src = work.sub("hist")
            // 100 commits over 200 files in 10 directories; each commit rewrites 10 files.
            var commits: [[(String, [UInt8])]] = [(0..<200).map { ("d\($0 % 10)/f\($0).txt", Array("v0 \($0)\n".utf8)) }]
            for c in 1..<100 {
                commits.append((0..<10).map { j in let f = (c * 10 + j) % 200; return ("d\(f % 10)/f\(f).txt", Array("v\(c) \(f)\n".utf8)) })
            }
            try fastImportRepo(at: src, commits: commits)
            let ids = try git("rev-list", "main", cwd: src).split(separator: "\n").map(String.init)
            #expect(ids.count == 100)

            let m = try MountedHome("mem")
            defer { m.unmount() }
            try m.clone(src, as: "hist")
            try m.mount(watchdogSeconds: 200)
            let pid = try #require(m.serverPID)
            let dirs = ids.map { m.path("hist/commits/\($0)") }
            let expectedLines = ids.count * (200 + 10 + 1)

            func walk() throws -> Int {
                let r = try runBounded(["find"] + dirs, seconds: 120)
                #expect(r.status == 0, "find exited \(r.status): \(r.stderr.prefix(500))")
                let lines = r.stdout.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                #expect(lines == expectedLines)
                dropKernelCaches()   // the kernel forgets every inode: the server must release them
                usleep(500_000)
                return try #require(residentBytes(pid))
            }
            let start = try #require(residentBytes(pid))
            let after1 = try walk()
            _ = try walk()
            let after3 = try walk()
            let mib = { (b: Int) in ByteCount.format(b) }
            print("server RSS: start \(mib(start)), after 1 walk \(mib(after1)), after 3 walks \(mib(after3)) (\(expectedLines) entries per walk)")
            #expect(after3 < 256 << 20, "RSS after 3 walks \(mib(after3))")
            #expect(after3 <= after1 + max(after1 / 4, 24 << 20), "RSS grew from \(mib(after1)) to \(mib(after3))")
            #expect(!m.watchdogHasFired)
        }
    }
}
