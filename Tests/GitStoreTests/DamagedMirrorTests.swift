import Basics
import Foundation
import GitStore
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Damaged mirrors through a real mount of two repositories and the CLI: a pack truncated under the
/// running server (read by gitfs's own reader and by libgit2), and mirrors damaged before the server
/// starts (pack truncated, index deleted). The damaged repository gives EIO and says what is wrong (log,
/// `gitfs list`, errors); the other repository keeps serving git's bytes.
@Suite(.serialized) struct DamagedMirrorTests {
    /// A source repository: `main` with 30 incompressible 100 KB files and `g/one.txt`, `side` adding the tree `s/t`
    /// (git writes it after main's blobs, near the pack's end). Sources of other `seed`s share no object
    /// (the mount's caches are shared by all repositories, keyed by object id).
    func makeSource(_ work: TempDir, seed: UInt64) throws -> String {
        let src = work.sub("src\(seed)")
        try FileManager.default.createDirectory(atPath: src + "/s/t", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: src + "/g", withIntermediateDirectories: true)
        try Data("one of \(seed)\n".utf8).write(to: URL(fileURLWithPath: src + "/g/one.txt"))
        try git("init", "-q", "-b", "main", cwd: src)
        for i in 1...30 {
            try Data(pseudoRandomBytes(count: 100_000, seed: seed << 8 | UInt64(i))).write(to: URL(fileURLWithPath: src + "/f\(i).bin"))
        }
        try git("add", "-A", cwd: src)
        try git("commit", "-q", "-m", "main", cwd: src)
        try git("checkout", "-q", "-b", "side", cwd: src)
        for i in 1...30 { try Data("side \(i) of \(seed)\n".utf8).write(to: URL(fileURLWithPath: src + "/s/t/x\(i).txt")) }
        try git("add", "-A", cwd: src)
        try git("commit", "-q", "-m", "side", cwd: src)
        try git("checkout", "-q", "main", cwd: src)
        return src
    }

    /// The only pack of a mirror.
    func packOf(_ mirror: String) throws -> String {
        let dir = mirror + "/objects/pack"
        let packs = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".pack") }
        try #require(packs.count == 1, "\(packs)")
        return dir + "/" + packs[0]
    }

    /// Offset and length in the pack of every object, per `git verify-pack -v`.
    func entries(_ mirror: String) throws -> [String: (offset: Int, length: Int)] {
        let idx = String(try packOf(mirror).dropLast(5)) + ".idx"
        var out: [String: (offset: Int, length: Int)] = [:]
        for line in try git("verify-pack", "-v", idx, cwd: mirror).split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 5, f[0].count == 40, let length = Int(f[3]), let offset = Int(f[4]) { out[String(f[0])] = (offset, length) }
        }
        return out
    }

    /// `truncate -s SIZE/3 FILE`.
    func truncateToAThird(_ path: String) throws -> Int {
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(truncate(path, off_t(size / 3)) == 0)
        return size / 3
    }

    /// The errno of `opendir` + `readdir` of `path`, 0 when it lists.
    func listErrno(_ path: String) -> Int32 {
        guard let d = opendir(path) else { return errno }
        defer { closedir(d) }
        errno = 0
        while readdir(d) != nil {}
        return errno
    }

    /// Every file of `rev` in the mount's repository `repo` has git's bytes.
    func expectServes(_ m: MountedHome, _ repo: String, _ src: String, rev: String) throws {
        let files = try git("ls-tree", "-r", "--name-only", rev, cwd: src).split(separator: "\n").map(String.init)
        #expect(files.count > 30)
        for f in files {
            let want = try gitBytes(["cat-file", "blob", "\(rev):\(f)"], cwd: src).stdout
            #expect(compareFile(m.path("\(repo)/branches/\(rev)/\(f)"), with: want) == nil, "\(repo) \(rev):\(f)")
        }
    }

    /// The damage lines `gitfs list` gives: its warnings and the `damage` fields of `--json` by name.
    func listedDamage(_ m: MountedHome) throws -> (warnings: String, json: [String: String], branches: [String: Int]) {
        let table = try m.gitfs(["list"])
        #expect(table.status == 0, "\(table.stderr)")
        let json = try m.gitfs(["list", "--json"])
        let objects = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [[String: Any]])
        var damage: [String: String] = [:]
        var branches: [String: Int] = [:]
        for o in objects {
            let name = o["name"] as? String ?? "?"
            if let d = o["damage"] as? String { damage[name] = d }
            branches[name] = o["branches"] as? Int
        }
        return (table.stderr, damage, branches)
    }

    @Test func aPackTruncatedUnderTheMountFailsOnlyItsRepository() throws {
        let work = try TempDir("trunc")
        let src = try makeSource(work, seed: 1)
        let other = try makeSource(work, seed: 2)
        let m = try MountedHome("trunc")
        defer { m.unmount() }
        try m.clone(src, as: "a")
        try m.clone(other, as: "b")
        try m.mount(watchdogSeconds: 120)
        let pid = try #require(m.serverPID)
        let mirror = m.home + "/repos/a.git"
        let objects = try entries(mirror)
        // Read once before the damage: gitfs's reader and libgit2 (trees) have the pack open and mapped.
        // (A file alone in its directory: reading it loads no siblings ahead into the content cache.)
        let first = try gitBytes(["cat-file", "blob", "main:g/one.txt"], cwd: src).stdout
        #expect(compareFile(m.path("a/branches/main/g/one.txt"), with: first) == nil)

        let cut = try truncateToAThird(try packOf(mirror))
        // Unread blobs: those past the cut give EIO (gitfs's reader), the others their bytes.
        var failed = 0
        for i in 1...30 {
            let id = trimmed(try git("rev-parse", "main:f\(i).bin", cwd: src))
            let entry = try #require(objects[id])
            let want = try gitBytes(["cat-file", "blob", id], cwd: src).stdout
            switch readWholeFile(m.path("a/branches/main/f\(i).bin")) {
            case .success(let got):
                #expect(got == want, "f\(i).bin: wrong bytes served from a truncated pack")
                #expect(entry.offset + entry.length <= cut, "f\(i).bin lies past the cut and was served")
            case .failure(let e):
                #expect(e.code == .EIO, "f\(i).bin: \(e)")
                failed += 1
            }
        }
        #expect(failed >= 10)
        // A tree past the cut, read by libgit2 from the mapping it made before the truncation.
        let tree = trimmed(try git("rev-parse", "side:s/t", cwd: src))
        #expect(try #require(objects[tree]).offset > cut)
        #expect(listErrno(m.path("a/branches/side/s/t")) == EIO)

        #expect(processAlive(pid), "the server died on a truncated pack")
        try expectServes(m, "b", other, rev: "main")
        try expectServes(m, "b", other, rev: "side")
        let log = m.serverLog
        #expect(log.contains("repository 'a': pack pack-") && log.contains(".pack is damaged ("), "\(log.suffix(2000))")
        let listed = try listedDamage(m)
        #expect(listed.json["a"]?.contains("is damaged") == true && listed.json["b"] == nil, "\(listed.json)")
        #expect(listed.warnings.contains("gitfs: warning: repository 'a': pack pack-"), "\(listed.warnings)")
    }

    /// A mirror damaged while no server runs: `list`, `doctor`, `cat` and the mount say so; reads give EIO.
    func checkDamagedBeforeStart(_ damage: (String) throws -> Void, says detail: String) throws {
        let work = try TempDir("dmg")
        let src = try makeSource(work, seed: 3)
        let other = try makeSource(work, seed: 4)
        let m = try MountedHome("dmg")
        defer { m.unmount() }
        try m.clone(src, as: "a")
        try m.clone(other, as: "b")
        try damage(m.home + "/repos/a.git")

        let listed = try listedDamage(m)
        #expect(listed.branches["a"] == 2, "refs whose objects cannot be read are damage, not absence")
        #expect(listed.json["a"]?.contains(detail) == true && listed.json["b"] == nil, "\(listed.json)")
        #expect(listed.warnings.contains("repository 'a': pack pack-"), "\(listed.warnings)")
        let doctor = try m.gitfs(["doctor"])
        #expect(doctor.status == 1, "gitfs doctor: \(doctor.out)")
        let verdict = doctor.out.split(separator: "\n").filter { $0.contains("mirror a") }
        #expect(verdict.count == 1 && verdict[0].contains("repository 'a': pack pack-") && verdict[0].contains(detail),
                "gitfs doctor: \(doctor.out)")
        let cat = try m.gitfs(["cat", "a", "main:f1.bin"])
        let lines = cat.stderr.split(separator: "\n")
        #expect(cat.status == 1 && lines.count == 1, "\(cat.stderr)")
        #expect(cat.stderr.hasPrefix("gitfs: error: repository 'a': pack pack-") && cat.stderr.contains(detail), "\(cat.stderr)")

        try m.mount(watchdogSeconds: 120)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: m.path("a/branches")).sorted()) ?? []
        #expect(names == ["main", "side"])
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: m.path("a/HEAD"))) == "branches/main")
        #expect(listErrno(m.path("a/branches/main/")) == EIO)
        if case .failure(let e) = readWholeFile(m.path("a/branches/main/f1.bin")) {
            #expect(e.code == .EIO)
        } else {
            Issue.record("a file of a damaged mirror was served")
        }
        try expectServes(m, "b", other, rev: "main")
        #expect(m.serverLog.contains("repository 'a': pack pack-"), "\(m.serverLog.suffix(2000))")
    }

    @Test func aMirrorWithATruncatedPackSaysSo() throws {
        try checkDamagedBeforeStart({ mirror in _ = try truncateToAThird(try packOf(mirror)) },
                                    says: "truncated or overwritten")
    }

    @Test func aMirrorWithoutItsPackIndexSaysSo() throws {
        try checkDamagedBeforeStart({ mirror in
            try FileManager.default.removeItem(atPath: String(try packOf(mirror).dropLast(5)) + ".idx")
        }, says: ".idx is missing")
    }

    @Test func anIndexCutShortUnderAnOpenRepositoryIsDamageNotACrash() throws {
        let home = try TempDir("idx")
        let src = home.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        try git("init", "-q", "-b", "main", cwd: src)
        // 2,000 objects: an index of about 60 KiB, many pages past the one it is cut to.
        for i in 0..<1999 { try Data("file \(i)\n".utf8).write(to: URL(fileURLWithPath: src + "/d/f\(i).txt")) }
        try git("add", "-A", cwd: src)
        try git("commit", "-q", "-m", "many", cwd: src)
        try git("clone", "-q", "--mirror", "--no-local", src, home.path + "/repos/m.git", cwd: home.path)
        let store = MirrorStore(home: Home(path: home.path))
        let repo = try store.open(name: "m")
        // "100644 blob <id>\td/f<i>.txt" lines, in index order.
        var byIndex: [Int: ObjectID] = [:]
        for line in try git("ls-tree", "-r", "main", cwd: src).split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            byIndex[Int(f[3].dropFirst("d/f".count).dropLast(".txt".count))!] = ObjectID(hex: String(f[2]))
        }
        let ids = try (0..<1999).map { i in try #require(byIndex[i]) }
        #expect(try repo.blobBuffer(ids[0]).withUnsafeBytes { Array($0) } == Array("file 0\n".utf8))
        // Both readers have the index mapped now; cut it to its first page.
        let idx = String(try packOf(home.path + "/repos/m.git").dropLast(5)) + ".idx"
        #expect(truncate(idx, 4096) == 0)
        var served = 0
        for (i, id) in ids.enumerated().dropFirst() {
            do {
                let got = try repo.blobBuffer(id).withUnsafeBytes { Array($0) }
                #expect(got == Array("file \(i)\n".utf8), "d/f\(i).txt")
                served += 1
            } catch {
                #expect(error.kind == .corrupt && error.message.hasPrefix("repository 'm': pack pack-"), "\(error)")
                #expect(error.message.contains(".idx is cut short"), "\(error)")
            }
        }
        #expect(served < 1000, "\(served) blobs read through an index cut to 4 KiB")
    }

    /// `git hash-object -t TYPE --literally -w` of `bytes` into the repository at `gitDir`.
    func hashObject(_ gitDir: String, _ type: String, _ bytes: [UInt8]) throws -> String {
        trimmed(try gitBytes(["--git-dir", gitDir, "hash-object", "-t", type, "--literally", "-w", "--stdin"],
                             cwd: "/tmp", stdin: bytes).out)
    }

    /// The 20 bytes of a hex object id.
    func rawID(_ hex: String) -> [UInt8] {
        stride(from: 0, to: 40, by: 2).map { k in
            UInt8(hex[hex.index(hex.startIndex, offsetBy: k)...].prefix(2), radix: 16)!
        }
    }

    /// Raw tree bytes of `entries` (mode, name, hex id), in the order given.
    func treeBytes(_ entries: [(String, [UInt8], String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (mode, name, hex) in entries {
            out += Array(mode.utf8)
            out.append(0x20)
            out += name
            out.append(0)
            out += rawID(hex)
        }
        return out
    }

    /// A commit of `tree` with `parent` on `branch` of the repository at `gitDir`.
    func commit(_ gitDir: String, tree: String, parent: String?, branch: String) throws {
        let c = trimmed(try gitBytes(["--git-dir", gitDir, "commit-tree", tree, "-m", branch] + (parent.map { ["-p", $0] } ?? []),
                                     cwd: "/tmp").out)
        try git("--git-dir", gitDir, "update-ref", "refs/heads/" + branch, c, cwd: "/tmp")
    }

    @Test func oneMalformedTreeOnASideBranchIsRefusedAloneAndTheRestClones() throws {
        let work = try TempDir("badtree")
        let src = try makeSource(work, seed: 5)
        let gitDir = src + "/.git"
        let good = trimmed(try git("rev-parse", "main:f1.bin", cwd: src))
        // "100644bad.txt": no space after the mode; git fsck: "badTree: cannot be parsed as a tree".
        let bad = try hashObject(gitDir, "tree", Array("100644bad.txt".utf8) + [0] + rawID(good))
        let fsck = try run(["git", "--git-dir", gitDir, "fsck", "--no-dangling"], env: gitEnvironment)
        #expect(fsck.stderr.contains("badTree") || fsck.out.contains("badTree"), "git fsck: \(fsck.stderr)")
        let root = try hashObject(gitDir, "tree", treeBytes([("40000", Array("broken".utf8), bad), ("100644", Array("ok.bin".utf8), good)]))
        try commit(gitDir, tree: root, parent: trimmed(try git("rev-parse", "main", cwd: src)), branch: "crafted")

        let m = try MountedHome("badtree")
        defer { m.unmount() }
        let clone = try m.gitfs(["clone", src, "r"])
        #expect(clone.status == 0, "one malformed tree refused the whole clone: \(clone.stderr)")
        #expect(try m.gitfs(["ls", "r", "main"]).stdout == (try gitBytes(["ls-tree", "-l", "main"], cwd: src).stdout))
        let ls = try m.gitfs(["ls", "r", "crafted:broken"])
        #expect(ls.status == 1 && ls.stderr.hasPrefix("gitfs: error: tree \(bad) of repository 'r' is malformed"), "\(ls.stderr)")
        try m.mount(watchdogSeconds: 120)
        try expectServes(m, "r", src, rev: "main")
        #expect(compareFile(m.path("r/branches/crafted/ok.bin"), with: try gitBytes(["cat-file", "blob", good], cwd: src).stdout) == nil)
        #expect(listErrno(m.path("r/branches/crafted/broken")) == EIO)
        #expect(m.serverLog.contains("tree \(bad) of repository 'r' is malformed"), "\(m.serverLog.suffix(2000))")
    }

    @Test func hiddenNamesAreLoggedQuotedAsGitQuotesPaths() throws {
        let work = try TempDir("quoted")
        let src = try makeSource(work, seed: 6)
        let gitDir = src + "/.git"
        let good = trimmed(try git("rev-parse", "main:f1.bin", cwd: src))
        let root = try hashObject(gitDir, "tree", treeBytes([
            ("100644", Array(".GIT".utf8), good), ("100644", Array("ok.bin".utf8), good), ("100644", [0x78, 0x2f, 0xff, 0x0a], good),
        ]))
        try commit(gitDir, tree: root, parent: nil, branch: "crafted")
        let m = try MountedHome("quoted")
        defer { m.unmount() }
        try m.clone(src, as: "r")
        try m.mount(watchdogSeconds: 120)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: m.path("r/branches/crafted"))) == ["ok.bin"])
        let log = m.serverLog
        #expect(log.contains("name=.GIT") && log.contains(#"name="x/\377\n""#), "\(log.suffix(2000))")
        #expect(!log.contains("[46, 71, 73, 84]") && !log.contains("[120, 47"), "names logged as byte arrays")
    }
}
