import Foundation
import Basics
import FuseServer
import GitFS
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Listings that give files' names and types only while nobody uses files (ListingPolicy): through
/// GitFileSystem directly, and through a real mount, where the kernel must then look each file up.
@Suite(.serialized) struct NamesOnlyListingTests {
    /// `top.txt`, `a/` and `b/` with 12 files each, `wide/` with 1,100 (more than a names-only listing
    /// may have).
    static func repo(in dir: TempDir) throws -> String {
        let src = dir.sub("src")
        var files: [(String, [UInt8])] = [("top.txt", Array("top\n".utf8))]
        for d in ["a", "b"] {
            for i in 0..<12 { files.append(("\(d)/f\(i).txt", Array(String(repeating: "\(d)\(i) ", count: i + 1).utf8))) }
        }
        for i in 0..<1100 { files.append(("wide/w\(i).txt", Array("wide \(i)\n".utf8))) }
        try fastImportRepo(at: src, commits: [files])
        return src
    }

    /// Sizes of the blobs of `path` at main, by name, from git.
    static func gitSizes(_ src: String, _ path: String) throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in try git("ls-tree", "-l", "main:\(path)", cwd: src).split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 1)
            let size = parts[0].split(separator: " ", omittingEmptySubsequences: true)[3]
            if let n = UInt64(size) { out[String(parts[1])] = n }
        }
        return out
    }

    @Test func smallListingsGiveNamesOnlyUntilAFileIsUsed() throws {
        let work = try TempDir("namesonly")
        let src = try Self.repo(in: work)
        let d = try DirectFS("namesonly-fs", mirrors: [(src, "r")], namesOnlyWindow: .milliseconds(400))
        let root = "r/commits/\(try revParse(src, "main"))"
        func listing(_ path: String) throws -> [String: DirectoryEntry<GitFSNode>] {
            var out: [String: DirectoryEntry<GitFSNode>] = [:]
            for e in try d.fs.readDirectory(try d.node(root + (path.isEmpty ? "" : "/" + path))).entries {
                out[String(decoding: e.name, as: UTF8.self)] = e
            }
            return out
        }
        func expectFull(_ path: String, _ why: String) throws {
            let want = try Self.gitSizes(src, path.isEmpty ? "" : path)
            let got = try listing(path)
            #expect(got.values.allSatisfy { !$0.withoutAttributes }, "\(path): \(why)")
            for (name, size) in want { #expect(got[name]?.attributes.size == size, "\(path)/\(name): size") }
        }

        // The first listing is whole (`ls dir`, then its files read, wants the kernel to hold them).
        try expectFull("", "the first listing")
        // Listed right after it, with no file used (a walk): files are names and types only,
        // subdirectories whole.
        let top = try listing("")
        #expect(Set(top.keys) == ["top.txt", "a", "b", "wide"])
        #expect(top["top.txt"]?.withoutAttributes == true && top["top.txt"]?.attributes.kind == .regularFile)
        for dir in ["a", "b", "wide"] {
            #expect(top[dir]?.withoutAttributes == false && top[dir]?.attributes.kind == .directory, "\(dir)")
        }
        let a = try listing("a")
        #expect(a.count == 12 && a.values.allSatisfy { $0.withoutAttributes && $0.attributes.kind == .regularFile })
        // More entries than a names-only listing may have: attributes, as `ls -l` of it needs them all.
        try expectFull("wide", "a directory of 1,100 entries is always listed whole")

        // A file looked up (stat, open): listings give attributes again, with git's sizes.
        #expect(try d.attributes(root + "/a/f3.txt").size == Self.gitSizes(src, "a")["f3.txt"])
        try expectFull("b", "listed right after a file lookup")
        // ... until nobody used a file for the window: after a pause the first listing is whole, the
        // next names-only again.
        Thread.sleep(forTimeInterval: 0.6)
        try expectFull("b", "the first listing after a pause")
        #expect(try listing("b").values.allSatisfy { $0.withoutAttributes }, "a walk again")
        // A read from a file's start counts as a use too.
        #expect(try d.readAll(d.node(root + "/top.txt")) == Array("top\n".utf8))
        try expectFull("a", "listed right after a read")
    }

}

extension MountTests {
    /// The same through a real mount: the kernel gets names only, and looks each file up when asked.
    @Suite struct NamesOnlyListing {
    @Test func aMountedFindListsNamesAndAStatAfterwardsLooksEachFileUp() throws {
        typealias T = NamesOnlyListingTests
        let work = try TempDir("namesonly-mount")
        let src = try T.repo(in: work)
        let commit = try revParse(src, "main")
        let m = try MountedHome("namesonly")
        defer { m.unmount() }
        try m.clone(src, as: "r")
        try m.mount(watchdogSeconds: 120)
        let root = m.path("r/commits/\(commit)")

        // find of a fresh mount: names and types as git has them. The first listing (the commit's) is
        // whole, a/ listed right after it names-only.
        func expectFind(_ sub: String) throws {
            let found = try runBounded(["find", root + "/" + sub, "-printf", "%y %P\\n"], seconds: 60)
            #expect(found.status == 0)
            var want: Set<String> = ["d "]
            for line in try git("ls-tree", "-r", "-t", "main:" + sub, cwd: src).split(separator: "\n") {
                let parts = line.split(separator: "\t", maxSplits: 1)
                want.insert((parts[0].hasPrefix("040000") ? "d " : "f ") + parts[1])
            }
            #expect(Set(found.out.split(separator: "\n").map(String.init)) == want, "find \(sub)")
        }
        #expect(try listDirectory(root).count == 4)
        try expectFind("a")

        // The kernel got names only for the files of a/: a stat of each is a LOOKUP. (Counted requests;
        // reading .gitfs/stats costs `own` of its own.)
        _ = try m.stats()   // the first read also looks up .gitfs
        let before = try m.stats()["requests"]!
        let own = try m.stats()["requests"]! - before
        let s0 = try m.stats()
        let sizesA = try T.gitSizes(src, "a")
        for (name, size) in sizesA { #expect(lstatInfo(root + "/a/" + name)?.size == Int(size), "a/\(name)") }
        let s1 = try m.stats()
        let statA = s1["requests"]! - s0["requests"]!
        #expect(statA >= own + sizesA.count - 2, "stat of 12 files listed names-only: \(s0["requests"]!) -> \(s1["requests"]!)")

        // Files were just used: b/, listed now for the first time, comes with attributes, so its stats
        // ask nothing.
        #expect(try listDirectory(root + "/b").count == 12)
        let s2 = try m.stats()
        let sizesB = try T.gitSizes(src, "b")
        for (name, size) in sizesB { #expect(lstatInfo(root + "/b/" + name)?.size == Int(size), "b/\(name)") }
        let s3 = try m.stats()
        let statB = s3["requests"]! - s2["requests"]!
        #expect(statB <= own + 2, "stat of 12 files listed whole: \(s2["requests"]!) -> \(s3["requests"]!) (stats reads cost \(own))")
        #expect(statA - statB >= sizesA.count - 2, "one LOOKUP per file listed names-only: \(statA) vs \(statB) requests")
        try expectFind("")
        #expect(s3["errors"] == 0)
    }
}
}
