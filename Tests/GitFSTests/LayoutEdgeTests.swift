import Foundation
import Basics
import FuseServer
import GitFS
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Names and targets Linux cannot hold, and damaged objects, through GitFileSystem directly (no FUSE).
@Suite(.serialized) struct LayoutEdgeTests {
    /// A small repository for crafting: `a.txt` (text unique to this run of the fixture), `b.txt`,
    /// `c/` with six files (a tree large enough to damage).
    static func smallRepo(in dir: TempDir) throws -> String {
        let src = dir.sub("src")
        var files: [(String, [UInt8])] = [("a.txt", uniqueText(lines: 400, seed: 11)), ("b.txt", Array("bee\n".utf8))]
        for i in 0..<6 { files.append(("c/file-with-a-long-name-\(i).txt", Array("c\(i)\n".utf8))) }
        try fastImportRepo(at: src, commits: [files])
        return src
    }

    @Test func namesAndLinkTargetsLinuxCannotHoldAreHiddenOrENAMETOOLONG() throws {
        let work = try TempDir("edge")
        let src = try Self.smallRepo(in: work)
        let d = try DirectFS("edge-fs", mirrors: [(src, "r")])
        let mirror = d.home.mirrorPath("r")
        func hashObject(_ type: String, _ bytes: [UInt8]) throws -> String {
            try gitBytes(["--git-dir", mirror, "hash-object", "-t", type, "--literally", "-w", "--stdin"], cwd: work.path, stdin: bytes)
                .out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let blob = try revParse(src, "main:b.txt")
        let longTarget = Array(repeating: UInt8(ascii: "x"), count: 5000)
        let maxTarget = Array(repeating: UInt8(ascii: "y"), count: 4095)
        let longLink = try hashObject("blob", longTarget)
        let maxLink = try hashObject("blob", maxTarget)
        let dotGit = try hashObject("tree", [])
        let name255 = String(repeating: "n", count: 255), name256 = String(repeating: "m", count: 256)
        // git mktree sorts and writes the tree; it accepts names no file system could hold.
        let listing = ["100644 blob \(blob)\t\(name255)", "100644 blob \(blob)\t\(name256)",
                       "040000 tree \(dotGit)\t.git", "120000 blob \(longLink)\tlong-link",
                       "120000 blob \(maxLink)\tmax-link", "100644 blob \(blob)\tok.txt"].joined(separator: "\n") + "\n"
        let tree = try gitBytes(["--git-dir", mirror, "mktree", "--missing"], cwd: work.path, stdin: Array(listing.utf8))
            .out.trimmingCharacters(in: .whitespacesAndNewlines)
        let commit = try gitBytes(["--git-dir", mirror, "commit-tree", tree, "-m", "crafted"], cwd: work.path)
            .out.trimmingCharacters(in: .whitespacesAndNewlines)
        try git("--git-dir", mirror, "update-ref", "refs/heads/crafted", commit, cwd: work.path)
        // A branch whose name is longer than a file name may be: only packed-refs can hold it.
        let longBranch = String(repeating: "b", count: 300)
        let packed = mirror + "/packed-refs"
        let before = (try? String(contentsOfFile: packed, encoding: .utf8)) ?? "# pack-refs with: peeled fully-peeled sorted \n"
        try (before + "\(commit) refs/heads/\(longBranch)\n").write(toFile: packed, atomically: true, encoding: .utf8)
        #expect(try git("--git-dir", mirror, "for-each-ref", "--format=%(refname)", cwd: work.path).contains(longBranch))

        let root = "r/commits/\(commit)"
        #expect(try d.names(root) == ["long-link", "max-link", name255, "ok.txt"])
        #expect(d.lookupError(root + "/" + name255) == nil)
        #expect(d.failure { () throws(Errno) in try d.node(root, raw: Array(name256.utf8)) } == ENOENT)
        #expect(d.lookupError(root + "/.git") == ENOENT)
        #expect(try d.attributes(root + "/long-link").size == 5000)
        #expect(d.failure { () throws(Errno) in try d.link(root + "/long-link") } == ENAMETOOLONG)
        #expect(d.failure { () throws(Errno) in try d.link(root + "/long-link") } == ENAMETOOLONG, "the second time too")
        #expect(try d.fs.readLink(try d.node(root + "/max-link")) == maxTarget)
        #expect(Set(try d.names("r/branches")) == ["crafted", "main"], "a 300-byte branch name is not listed")
    }

    @Test func aDamagedBlobIsEIOAndItsSiblingsStillRead() throws {
        let work = try TempDir("damage")
        let src = try Self.smallRepo(in: work)
        let d = try DirectFS("damage-fs", mirrors: [(src, "r")])
        let a = try revParse(src, "main:a.txt")
        try damageObject(a, inPackOf: d.home.mirrorPath("r"))
        let root = "r/commits/\(try revParse(src, "main"))"

        // The name exists and its size comes from the object header: no ENOENT, no error before reading.
        #expect(d.lookupError(root + "/a.txt") == nil)
        #expect(try d.attributes(root + "/a.txt").size == UInt64(uniqueText(lines: 400, seed: 11).count))
        #expect(d.failure { () throws(Errno) in try d.readAll(root + "/a.txt") } == EIO)
        #expect(d.failure { () throws(Errno) in try d.readAll(root + "/a.txt") } == EIO, "a failure is not cached as content")
        #expect(try d.readAll(root + "/b.txt") == Array("bee\n".utf8))
        for i in 0..<6 {
            #expect(try d.readAll(root + "/c/file-with-a-long-name-\(i).txt") == Array("c\(i)\n".utf8))
        }
    }

    @Test func aDamagedTreeIsEIONotAnEmptyOrMissingDirectory() throws {
        let work = try TempDir("damage-tree")
        let src = try Self.smallRepo(in: work)
        let d = try DirectFS("damage-tree-fs", mirrors: [(src, "r")])
        try damageObject(try revParse(src, "main:c"), inPackOf: d.home.mirrorPath("r"))
        let root = "r/commits/\(try revParse(src, "main"))"
        #expect(try d.attributes(root + "/c").kind == .directory)
        #expect(d.failure { () throws(Errno) in try d.names(root + "/c") } == EIO)
        #expect(d.lookupError(root + "/c/file-with-a-long-name-0.txt") == EIO)
        #expect(try d.readAll(root + "/b.txt") == Array("bee\n".utf8))
    }

    @Test func aRepositoryRemovedWhileItsNodesAreHeldIsENOENTNotEIO() throws {
        let work = try TempDir("removed")
        let src = try Self.smallRepo(in: work)
        let d = try DirectFS("removed-fs", mirrors: [(src, "r")])
        let branches = try d.node("r/branches")
        #expect(try d.fs.attributes(of: branches).kind == .directory)
        try FileManager.default.removeItem(atPath: d.home.mirrorPath("r"))
        usleep(600_000)   // past the refs lifetime (500 ms)
        #expect(d.failure { () throws(Errno) in try d.fs.attributes(of: branches) } == ENOENT)
        #expect(d.failure { () throws(Errno) in try d.fs.readDirectory(branches) } == ENOENT)
        #expect(d.lookupError("r") == ENOENT)
        #expect(try d.names("") == [".gitfs"])
    }

    @Test func aMirrorThatCannotBeOpenedIsEIOAndTheOthersServe() throws {
        let work = try TempDir("unopenable")
        let src = try Self.smallRepo(in: work)
        let d = try DirectFS("unopenable-fs", mirrors: [(src, "good"), (src, "bad")])
        try FileManager.default.removeItem(atPath: d.home.mirrorPath("bad") + "/objects")
        #expect(d.lookupError("bad") == EIO, "a mirror that is there but unreadable is not a missing name")
        #expect(try d.names("") == [".gitfs", "good"])
        #expect(try d.readAll("good/commits/\(try revParse(src, "main"))/b.txt") == Array("bee\n".utf8))
    }
}
