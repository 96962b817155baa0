import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// The mount works ahead of readers: listings read ahead, and sibling files pushed into the
    /// kernel's page cache once a reader starts on a directory.
    @Suite struct Ahead {

        /// A mounted home with one repository `kc`: 60 small files with distinct contents in `dir/`, one
        /// large file in `dir/`, one file in `other/`. `dir` is the path of `dir/` in the mount.
        struct Fixture {
            let work: TempDir
            let m: MountedHome
            let dir: String
            var names: [String] = []
            var contents: [String: [UInt8]] = [:]

            init(_ label: String) throws {
                work = try TempDir(label)
                let src = work.sub("src")
                var files: [(String, [UInt8])] = []
                for i in 0..<60 {
                    let name = String(format: "f%02d.txt", i)
                    let bytes = pseudoRandomBytes(count: 1_000 + i * 397, seed: UInt64(1_000 + i))
                    files.append(("dir/" + name, bytes))
                    contents[name] = bytes
                    names.append(name)
                }
                files.append(("dir/large.bin", pseudoRandomBytes(count: 3 << 20, seed: 77)))
                files.append(("other/g.txt", Array("other\n".utf8)))
                try fastImportRepo(at: src, commits: [files])
                let id = try revParse(src, "main")
                m = try MountedHome(label)
                do {
                    try m.clone(src, as: "kc")
                    try m.mount(watchdogSeconds: 120)
                } catch {
                    m.unmount()
                    throw error
                }
                dir = m.path("kc/commits/\(id)/dir")
            }

            /// Reads `name` through the mount; nil when every byte is what git has.
            func mismatch(_ name: String) -> String? {
                compareFile(dir + "/" + name, with: contents[name]!)
            }
        }

        @Test func readingOneFileFeedsItsSiblingsIntoTheKernelCache() throws {
            let f = try Fixture("kc")
            let m = f.m, names = f.names, contents = f.contents
            defer { m.unmount() }
            // A listing makes the kernel hold the files' inodes (READDIRPLUS); nothing is read yet.
            #expect(try listDirectory(f.dir).count == 61)
            let before = try m.stats()
            #expect(before["pushed_bytes"] == 0)

            // Reading the first file reaches the server and starts the feed of the 59 others.
            #expect(f.mismatch(names[0]) == nil)
            let expected = names.dropFirst().reduce(0) { $0 + contents[$1]!.count }
            let fed = waitFor(seconds: 20) { ((try? m.stats())?["pushed_bytes"] ?? 0) >= expected }
            let after = try m.stats()
            #expect(fed, "pushed_bytes \(after["pushed_bytes"] ?? -1), expected at least \(expected)")
            // The large file (over 1 MiB) is left to the kernel's own read-ahead.
            #expect(after["pushed_bytes"]! < expected + (1 << 20))

            // The siblings are read from the kernel's page cache: every byte right, no read request.
            for name in names.dropFirst() {
                #expect(f.mismatch(name) == nil, "\(name)")
            }
            let end = try m.stats()
            // The one read request in between is the read of the `after` snapshot of .gitfs/stats itself.
            #expect(end["reads"]! - after["reads"]! == 1, "reads \(after["reads"]!) -> \(end["reads"]!): siblings were not cached")
            #expect(end["errors"] == 0)
            #expect(!m.watchdogHasFired)
        }

        @Test func filesTheKernelHasNotListedAreNotFedButStillCached() throws {
            let f = try Fixture("kc2")
            let m = f.m, names = f.names
            defer { m.unmount() }
            // No listing: the kernel holds only the inode of the file looked up.
            #expect(f.mismatch(names[0]) == nil)
            // Its siblings are loaded into the content cache ahead (speculative loads), not pushed.
            #expect(waitFor(seconds: 20) { ((try? m.stats())?["speculative_loads"] ?? 0) >= 59 })
            let s = try m.stats()
            #expect(s["pushed_bytes"] == 0)
            #expect(s["blob_loads"] == 1)
            for name in names.dropFirst(30) {
                #expect(f.mismatch(name) == nil, "\(name)")
            }
            #expect(try m.stats()["blob_loads"] == 1, "the siblings were not cached ahead")
        }

        /// Two branches whose trees are all distinct: `main` with 2 + 3 + 1 trees below the root, `other`
        /// with 2, made at `src`. Returns the number of trees (root included) of each branch.
        static func twoBranches(at src: String) throws -> (main: Int, other: Int) {
            var files: [(String, [UInt8])] = []
            for d in ["a", "b"] {
                for s in ["x", "y", "z"] where d == "a" || s == "x" {
                    files.append(("\(d)/\(s)/f.txt", Array("main \(d) \(s)\n".utf8)))
                }
                files.append(("\(d)/top.txt", Array("main \(d)\n".utf8)))
            }
            try fastImportRepo(at: src, commits: [files])
            try git("checkout", "-q", "-b", "other", cwd: src)
            try git("rm", "-q", "-r", "a", "b", cwd: src)
            for d in ["p", "q"] {
                try FileManager.default.createDirectory(atPath: src + "/" + d, withIntermediateDirectories: true)
                FileManager.default.createFile(atPath: src + "/\(d)/g.txt", contents: Data("other \(d)\n".utf8))
            }
            try git("add", "-A", cwd: src)
            try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "other", cwd: src)
            try git("checkout", "-q", "main", cwd: src)
            func trees(_ rev: String) throws -> Int {
                1 + (try git("ls-tree", "-r", "-t", rev, cwd: src)).split(separator: "\n").filter { $0.contains(" tree ") }.count
            }
            return (try trees("main"), try trees("other"))
        }

        @Test func theMountReadsTheDefaultBranchListingsAheadAndAListingReadsItsSubtrees() throws {
            let work = try TempDir("ahead")
            let src = work.sub("src")
            let count = try Self.twoBranches(at: src)
            #expect(count.main == 7 && count.other == 3)
            let other = try revParse(src, "other")
            let m = try MountedHome("ahead")
            defer { m.unmount() }
            try m.clone(src, as: "ah")
            try m.mount(watchdogSeconds: 120)
            // Nothing listed yet: the walk of the default branch, started with the mount, parses each
            // of its trees once, and only those.
            #expect(waitFor(seconds: 20) { (try? m.stats())?["trees_read_ahead"] == count.main })
            usleep(200_000)
            #expect(try m.stats()["trees_read_ahead"] == count.main)
            // Listing another commit's root walks the trees below it.
            #expect(try listDirectory(m.path("ah/commits/\(other)")).sorted() == ["p", "q"])
            #expect(waitFor(seconds: 20) { (try? m.stats())?["trees_read_ahead"] == count.main + count.other },
                    "trees_read_ahead \(String(describing: try? m.stats()["trees_read_ahead"]))")
            // What a walk read ahead is what git has.
            #expect(try listDirectory(m.path("ah/commits/\(other)/p")) == ["g.txt"])
            #expect(lstatInfo(m.path("ah/commits/\(other)/p/g.txt"))?.size == "other p\n".utf8.count)
            #expect(try m.stats()["errors"] == 0)
        }
    }
}
