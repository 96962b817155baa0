import Basics
import Foundation
import GitStore
import Testing
import TestSupport

/// Clones the shared fixture into a fresh home with the library and opens it.
func openFixtureMirror() throws -> (TempDir, FixtureRepo, MirrorStore, Repository) {
    let fixture = try FixtureRepo.shared()
    let home = try TempDir("home")
    let store = MirrorStore(home: Home(path: home.path))
    _ = try store.clone(url: fixture.path, name: "fx", progress: nil)
    return (home, fixture, store, try store.open(name: "fx"))
}

func trimmed(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }

@Suite struct RepositoryTests {
    @Test func objectIDRoundTripAndOrder() throws {
        let hexes = ["0000000000000000000000000000000000000000", "00000000000000000000000000000000000000ff",
                     "0123456789abcdef0123456789abcdef01234567", "ff00000000000000000000000000000000000000",
                     "fffffffffffffffffffffffffffffffffffffffe", "ffffffffffffffffffffffffffffffffffffffff",
                     "80000000000000010000000000000000000000ff"]
        let ids = hexes.map { ObjectID(hex: $0)! }
        #expect(ids.map(\.hex) == hexes)
        #expect(ids.sorted().map(\.hex) == hexes.sorted())
        #expect(ObjectID(hex: "0123456789ABCDEF0123456789ABCDEF01234567")?.hex == "0123456789abcdef0123456789abcdef01234567")
        #expect(ObjectID(hex: "0123") == nil)
        #expect(ObjectID(hex: "g123456789abcdef0123456789abcdef01234567") == nil)
        #expect(ObjectID(hex: "0123456789abcdef0123456789abcdef012345678") == nil)
        let raw = ids[2].withUnsafeBytes { Array($0) }
        #expect(raw.count == 20 && raw[0] == 0x01 && raw[19] == 0x67)
        #expect(raw.withUnsafeBytes { ObjectID(raw: $0) } == ids[2])
        #expect(Set(ids).count == ids.count)
        #expect(ids[2].description == hexes[2])
    }

    @Test func blobHashMatchesGit() throws {
        let dir = try TempDir()
        for content in [[UInt8](), Array("hello\n".utf8), pseudoRandomBytes(count: 100_003, seed: 7)] {
            let expected = trimmed(try git("hash-object", "--stdin", cwd: dir.path, stdin: content))
            #expect(content.withUnsafeBytes { GitHash.blobID(of: $0) }.hex == expected)
        }
    }

    @Test func refsMatchFixture() throws {
        let (home, fixture, _, repo) = try openFixtureMirror()
        defer { home.remove() }
        let refs = try repo.refs()
        #expect(Dictionary(uniqueKeysWithValues: refs.branches.map { ($0.name, $0.target.hex) }) == fixture.branches)
        #expect(Dictionary(uniqueKeysWithValues: refs.tags.map { ($0.name, $0.target.hex) }) == fixture.tags)
        #expect(refs.branches.map(\.name) == refs.branches.map(\.name).sorted())
        #expect(refs.defaultBranch == "main")
        #expect(fixture.branches["feature/x/y"] != nil && fixture.annotatedTags.contains("v1.0"))
    }

    @Test func resolveCommitTreeHeader() throws {
        let (home, fixture, _, repo) = try openFixtureMirror()
        defer { home.remove() }
        for rev in fixture.revisions + ["HEAD", "main^", "feature/x/y~1", "refs/tags/v1.0"] {
            let expected = trimmed(try git("rev-parse", "\(rev)^{commit}", cwd: fixture.path))
            let id = try repo.resolve(rev)
            #expect(id.hex == expected, "rev \(rev)")
            #expect(try repo.resolve(String(expected.prefix(10))) == id)
            #expect(try repo.resolve(expected) == id)
            let info = try repo.commit(id)
            #expect(info.id == id)
            #expect(info.tree.hex == trimmed(try git("rev-parse", "\(rev)^{tree}", cwd: fixture.path)))
            let parents = try git("log", "-1", "--format=%P", expected, cwd: fixture.path).split(separator: " ").map { trimmed(String($0)) }.filter { !$0.isEmpty }
            #expect(info.parents.map(\.hex) == parents)
            #expect(String(info.committerTime) == trimmed(try git("log", "-1", "--format=%ct", expected, cwd: fixture.path)))
        }
        // Every object of every tree of main: entry() and tree() agree with ls-tree, header() with cat-file.
        let main = try repo.resolve("main")
        let records = try gitBytes(["ls-tree", "-r", "-t", "-l", "-z", "--full-tree", "main"], cwd: fixture.path).stdout
            .split(separator: 0)
        #expect(records.count > 20)
        for record in records {
            let tab = record.firstIndex(of: UInt8(ascii: "\t"))!
            let f = String(decoding: record[..<tab], as: UTF8.self).split(separator: " ", omittingEmptySubsequences: true)
            let path = String(decoding: record[(tab + 1)...], as: UTF8.self)
            let id = ObjectID(hex: String(f[2]))!
            let entry = try #require(try repo.entry(commit: main, path: path), "\(path)")
            #expect(entry.oid == id)
            #expect(entry.mode == UInt32(f[0], radix: 8)!)
            switch f[1] {
            case "blob":
                let h = try repo.header(id)
                #expect(h.kind == .blob && String(h.size) == f[3])
                #expect(try repo.readBlob(id) == fixture.gitBlob("main", path))
                #expect(repo.contains(id))
            case "tree":
                let h = try repo.header(id)
                #expect(h.kind == .tree)
                let names = try gitBytes(["ls-tree", "--name-only", "-z", id.hex], cwd: fixture.path).stdout.split(separator: 0).map(Array.init)
                #expect(try repo.tree(id).map(\.name) == names)
            default:
                #expect(f[1] == "commit" && entry.kind == .submodule)
                #expect(!repo.contains(id))
            }
        }
        let root = try #require(try repo.entry(commit: main, path: ""))
        #expect(root.mode == 0o040000 && root.kind == .directory && root.name.isEmpty)
        #expect(try repo.entry(commit: main, path: "no/such/file") == nil)
        #expect(try repo.entry(commit: main, path: "README.md/x") == nil)
        #expect(try repo.entry(commit: main, path: "link-rel")?.kind == .symlink)
        #expect(try repo.entry(commit: main, path: "bin/run.sh")?.kind == .executable)
        #expect(try repo.entry(commit: main, path: "sub")?.kind == .submodule)
        #expect(try repo.entry(commit: main, path: "big/random.bin").map { try repo.header($0.oid).size } == FixtureRepo.bigFileSize)
    }

    @Test func errorsHaveKinds() throws {
        let (home, _, store, repo) = try openFixtureMirror()
        defer { home.remove() }
        do { _ = try repo.resolve("no-such-branch"); Issue.record("resolved a missing branch") } catch { #expect(error.kind == .notFound) }
        do { _ = try repo.resolve(""); Issue.record("resolved empty") } catch { #expect(error.kind == .notFound) }
        let missing = ObjectID(hex: "00000000000000000000000000000000000000aa")!
        do { _ = try repo.header(missing); Issue.record("header of missing") } catch { #expect(error.kind == .notFound) }
        do { _ = try repo.readBlob(missing); Issue.record("blob of missing") } catch { #expect(error.kind == .notFound) }
        do { _ = try repo.commit(missing); Issue.record("commit of missing") } catch { #expect(error.kind == .notFound) }
        let tree = try repo.commit(try repo.resolve("main")).tree
        do { _ = try repo.readBlob(tree); Issue.record("tree read as blob") } catch { #expect(error.kind == .wrongType) }
        do { _ = try repo.commit(tree); Issue.record("tree read as commit") } catch { #expect(error.kind == .wrongType) }
        do { _ = try store.open(name: "nope"); Issue.record("opened missing") } catch { #expect(error.kind == .notFound) }
        do { _ = try store.open(name: "../x"); Issue.record("opened bad name") } catch { #expect(error.kind == .invalidName) }
        #expect(!repo.contains(missing))
    }

    /// 8 threads read every blob of two revisions at once through one Repository and get git's bytes.
    @Test func concurrentReadersGetGitsBytes() throws {
        let (home, fixture, _, repo) = try openFixtureMirror()
        defer { home.remove() }
        var expected: [ObjectID: [UInt8]] = [:]
        for rev in ["main", "feature/x/y", "v1.0"] {
            for record in try gitBytes(["ls-tree", "-r", "-z", "--full-tree", rev], cwd: fixture.path).stdout.split(separator: 0) {
                let tab = record.firstIndex(of: UInt8(ascii: "\t"))!
                let f = String(decoding: record[..<tab], as: UTF8.self).split(separator: " ")
                guard f[1] == "blob", let id = ObjectID(hex: String(f[2])), expected[id] == nil else { continue }
                expected[id] = try gitBytes(["cat-file", "blob", id.hex], cwd: fixture.path).stdout
            }
        }
        #expect(expected.count > 20)
        let ids = Array(expected.keys)
        let want = expected
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for round in 0..<3 {
                for k in 0..<ids.count {
                    let id = ids[(k * (t + 1) + round) % ids.count]
                    do {
                        // memcmp: the debug build's generic elementsEqual over the 20 MB blob, 24 times, took
                        // 152 s of this test with both cores busy.
                        let same = try repo.withBlob(id) { got in
                            want[id]!.withUnsafeBytes { w in w.count == got.count && (w.isEmpty || memcmp(w.baseAddress!, got.baseAddress!, w.count) == 0) }
                        }
                        if !same { failures.add("thread \(t): wrong bytes for \(id)") }
                        if try repo.header(id).size != want[id]!.count { failures.add("thread \(t): wrong size for \(id)") }
                    } catch {
                        failures.add("thread \(t): \(error)")
                    }
                }
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")
        #expect(repo.idleHandles >= 1 && repo.idleHandles <= max(2, 2 * ProcessInfo.processInfo.activeProcessorCount))
    }

    @Test func namesAreValidated() throws {
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "sp ace", "x\u{0}y", "ü", String(repeating: "a", count: 101), "a:b"] {
            #expect(throws: GitStoreError.self, "\(bad)") { try MirrorStore.validateName(bad) }
        }
        for good in ["a", "A-b_c.d", "1", String(repeating: "z", count: 100), "x.git2"] {
            try MirrorStore.validateName(good)
        }
        #expect(MirrorStore.defaultName(forURL: "https://example.com/org/project.git") == "project")
        #expect(MirrorStore.defaultName(forURL: "git@example.com:org/project.git") == "project")
        #expect(MirrorStore.defaultName(forURL: "/srv/repos/thing/") == "thing")
        #expect(MirrorStore.defaultName(forURL: "/srv/work/.git") == "work")
        #expect(MirrorStore.defaultName(forURL: "git://h/.hidden.git") == "hidden")
    }
}

/// Thread-safe list of failure messages.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
