import Basics
import ContentCache
import Foundation
import GitStore
import ReadModel
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The read model's chain of blob sources, driven directly (no FUSE) over real mirrors and a real
/// content cache, with git as the oracle: what each source answered, one load per object however many
/// ask at once, and failures that are I/O errors, never "not found".
@Suite(.serialized)
struct ChainTests {
    /// A home with the fixture cloned as `fx`, and a resolver over it (no read-ahead: a command's chain).
    struct Home {
        let dir: TempDir
        let fixture: FixtureRepo
        var path: String { dir.path }
        init() throws {
            fixture = try FixtureRepo.shared()
            dir = try TempDir("chain")
            try gitfsOK(home: dir.path, ["clone", fixture.path, "fx"])
        }
        func resolver() throws -> Resolver {
            let home = GitStore.Home(path: path)
            return Resolver(store: MirrorStore(home: home), cache: try Resolver.openCache(home: home))
        }
        func id(_ spec: String) throws -> ObjectID { try #require(ObjectID(hex: try revParse(fixture.path, spec))) }
    }

    static func count(_ r: Resolver, _ source: String) -> BlobSourceCount {
        r.counters.sources.first { $0.name == source } ?? BlobSourceCount(name: "absent \(source)")
    }

    @Test func eachSourceIsAskedInOrderAndCounted() throws {
        let h = try Home()
        let id = try h.id("main:data/lines.txt")
        let want = try h.fixture.gitBlob("main", "data/lines.txt")
        let r1 = try h.resolver()
        // The origin is last; a full mirror never reaches it (blobless mirrors: BloblessTests).
        #expect(r1.counters.sources.map(\.name) == ["opened", "cache", "packs", "origin"])
        let view = try r1.repository(named: "fx")
        // Cold: the opened table and the cache miss, the packs load it, the cache takes the fill.
        #expect(try view.openBlob(id).readAll() == want)
        var c = r1.counters
        #expect(c.cacheMisses == 1 && c.cacheHits == 0 && c.blobLoads == 1)
        #expect(Self.count(r1, "packs").hits == 1)
        #expect(Self.count(r1, "cache").misses == 2, "asked before and once more under the single-flight")
        #expect(Self.count(r1, "cache").fills == 1)
        // Again: the opened table answers; nothing else is asked.
        #expect(try view.openBlob(id).readAll() == want)
        c = r1.counters
        #expect(c.cacheHits == 1 && c.blobLoads == 1 && Self.count(r1, "opened").hits == 1)
        #expect(Self.count(r1, "cache").hits == 0)
        // A second process (a fresh resolver over the same home): the cache answers, the packs are not asked.
        let r2 = try h.resolver()
        #expect(try r2.repository(named: "fx").openBlob(id).readAll() == want)
        #expect(Self.count(r2, "cache").hits == 1 && Self.count(r2, "packs").hits == 0 && r2.counters.blobLoads == 0)
        #expect(try r2.repository(named: "fx").blobSize(id) == want.count)
        // ensureCached: present now, so nothing loads.
        #expect(try r2.repository(named: "fx").ensureCached(id) == .present)
        #expect(r2.counters.blobLoads == 0)
    }

    @Test func concurrentReadersOfOneBlobCauseOneLoad() throws {
        let h = try Home()
        let id = try h.id("main:big/random.bin")
        let want = try h.fixture.gitBlob("main", "big/random.bin")
        let r = try h.resolver()
        let view = try r.repository(named: "fx")
        let readers = 16
        let wrong = Failures()
        let ready = Atomic<Int>(0)
        let finished = onThreads(readers, timeout: 120) { i in
            ready.add(1, ordering: .relaxed)
            while ready.load(ordering: .relaxed) < readers { sched_yield() }
            do {
                let got = try view.openBlob(id).readAll()
                if got != want { wrong.add("reader \(i): \(got.count) bytes, not git's") }
            } catch {
                wrong.add("reader \(i): \(error)")
            }
        }
        #expect(finished, "readers hung")
        #expect(wrong.all.isEmpty, "\(summary(wrong.all))")
        let c = r.counters
        #expect(c.blobLoads == 1, "\(c)")
        #expect(Self.count(r, "packs").hits == 1)
        // Every other reader joined the load or found its result (opened table or cache).
        #expect(c.singleflightJoins + c.cacheHits == readers - 1, "\(c)")
    }

    static let siblingBytes = Array(String(repeating: "an intact sibling\n", count: 200).utf8)

    /// A mirror `r` in `home` (one real pack, cloned with --no-local) whose `victim.bin` entry has a byte
    /// flipped in the middle of its compressed data; `sibling.txt` is intact. Returns the ids and commit.
    static func damagedMirror(home: String, work: TempDir) throws -> (victim: ObjectID, sibling: ObjectID, commit: String) {
        let src = work.sub("src")
        try fastImportRepo(at: src, commits: [[
            ("victim.bin", pseudoRandomBytes(count: 300_000, seed: 0xDA_4A6E)),
            ("sibling.txt", siblingBytes),
        ]])
        let mirror = home + "/repos/r.git"
        try FileManager.default.createDirectory(atPath: home + "/repos", withIntermediateDirectories: true)
        try git("clone", "-q", "--mirror", "--no-local", src, mirror, cwd: work.path)
        let victim = try revParse(mirror, "main:victim.bin")
        let sibling = try revParse(mirror, "main:sibling.txt")
        let packDir = mirror + "/objects/pack"
        let idx = try #require(try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".idx") })
        // verify-pack -v: "<id> <type> <size> <size-in-pack> <offset>".
        let line = try #require(try git("verify-pack", "-v", packDir + "/" + idx, cwd: mirror)
            .split(separator: "\n").first { $0.hasPrefix(victim) })
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        let (inPack, offset) = (Int(f[3])!, Int(f[4])!)
        let pack = packDir + "/" + idx.dropLast(4) + ".pack"
        let fd = open(pack, O_RDWR)
        #expect(fd >= 0)
        var byte: UInt8 = 0
        _ = pread(fd, &byte, 1, off_t(offset + inPack / 2))
        byte ^= 0x5a
        _ = pwrite(fd, &byte, 1, off_t(offset + inPack / 2))
        close(fd)
        return (try #require(ObjectID(hex: victim)), try #require(ObjectID(hex: sibling)), try revParse(mirror, "main"))
    }

    @Test func aDamagedPackIsAnIOErrorAndAMissingPathIsNotFound() throws {
        let dir = try TempDir("damaged")
        let (victim, sibling, _) = try Self.damagedMirror(home: dir.sub("home"), work: dir)
        let home = GitStore.Home(path: dir.sub("home"))
        let r = Resolver(store: MirrorStore(home: home), cache: try Resolver.openCache(home: home))
        let view = try r.repository(named: "r")
        do {
            let bytes = try view.openBlob(victim).readAll()
            Issue.record("a damaged blob was served (\(bytes.count) bytes)")
        } catch {
            #expect(!error.isNotFound, "a damaged pack reported as not found: \(error)")
            guard case .unavailable(let object, let repository, _) = error else {
                Issue.record("expected .unavailable, got \(error)")
                return
            }
            #expect(object == victim && repository == "r")
        }
        #expect(Self.count(r, "packs").errors == 1)
        #expect(try view.openBlob(sibling).readAll() == Self.siblingBytes)
        #expect(!r.cache.contains(victim), "the damaged blob reached the cache")
        do { _ = try view.ensureCached(victim); Issue.record("a damaged blob was cached") } catch {
            #expect(!error.isNotFound, "\(error)")
        }
        let main = try view.resolve("main")
        #expect(throws: ResolverError.self) { try view.entry(commit: main, path: "no/such/file") }
        do { _ = try view.entry(commit: main, path: "no-such-file") } catch { #expect(error.isNotFound) }
        do { _ = try view.resolve("no-such-branch") } catch { #expect(error.isNotFound) }
    }

    @Test func aBlobATreeNamesButTheMirrorLacksIsAnIOError() throws {
        let h = try Home()
        let mirror = h.path + "/repos/fx.git"
        // A tree naming a blob that exists nowhere (what a damaged or incomplete mirror holds).
        let ghost = "1234567890abcdef1234567890abcdef12345678"
        let tree = try git("mktree", "--missing", cwd: mirror, stdin: Array("100644 blob \(ghost)\tghost.txt\n".utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let commit = try git("commit-tree", tree, "-m", "ghost", cwd: mirror).trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try h.resolver()
        let view = try r.repository(named: "fx")
        let entry = try view.entry(commit: try #require(ObjectID(hex: commit)), path: "ghost.txt")
        do { _ = try view.blobSize(entry.oid); Issue.record("a size for a missing blob") } catch {
            #expect(!error.isNotFound, "\(error)")
        }
        do { _ = try view.openBlob(entry.oid); Issue.record("content for a missing blob") } catch {
            #expect(!error.isNotFound, "\(error)")
            #expect(error.description.contains(ghost) && error.description.contains("'fx'"), "\(error)")
        }
    }

    @Test func aDamagedBlobReadsAsEIOThroughTheMountAndIsLoggedOnce() throws {
        let m = try MountedHome("damaged-mount")
        defer { m.unmount() }
        let (victim, _, commit) = try Self.damagedMirror(home: m.home, work: m.dir)
        try m.mount(watchdogSeconds: 90)
        let dir = m.path("r/commits/\(commit)")
        for attempt in 0..<2 {
            switch readWholeFile(dir + "/victim.bin") {
            case .success(let got): Issue.record("attempt \(attempt): a damaged blob was served (\(got.count) bytes)")
            case .failure(let e): #expect(e.code == .EIO, "attempt \(attempt): \(e.code), not EIO")
            }
        }
        #expect((try? readWholeFile(dir + "/sibling.txt").get()) == Self.siblingBytes, "the sibling still reads")
        switch readWholeFile(dir + "/no-such-file") {
        case .success: Issue.record("a missing name was served")
        case .failure(let e): #expect(e.code == .ENOENT)
        }
        let lines = m.serverLog.split(separator: "\n").filter { $0.contains(victim.hex) }
        #expect(lines.count == 1, "the failure is logged once with its object: \(lines)")
        #expect(lines.first?.contains("repository=r") == true, "\(lines)")
    }

    /// A directory of tens of thousands of entries stays parsed: the tree cache used to drop a tree too
    /// big for one of its shards' generations, and every LOOKUP of one of its names parsed it again.
    @Test func theTreeCacheKeepsABigTreeWithinItsBudget() {
        func id(_ i: Int) -> ObjectID { ObjectID(hex: String(format: "%040x", i))! }
        func listing(_ entries: Int) -> TreeListing {
            TreeListing((0..<entries).map { TreeEntry(name: Array("f\($0)".utf8), mode: 0o100644, oid: id($0)) })
        }
        let cache = TreeCache(maxBytes: 64 << 20)
        let big = listing(20_000)
        #expect(big.approximateBytes > cache.bigThreshold, "the test's tree is not big")
        cache.set(big, for: id(1), bytes: big.approximateBytes)
        cache.set(listing(3), for: id(2), bytes: 400)
        #expect(cache.value(for: id(1))?.entries.count == 20_000, "the big tree was dropped")
        #expect(cache.value(for: id(2))?.entries.count == 3, "a small tree was dropped")
        // Big trees past half the budget: the least recently used go first, the bound holds.
        for i in 10..<30 { cache.set(big, for: id(i), bytes: 8 << 20) }
        #expect(cache.bytes <= 64 << 20, "\(cache.bytes) bytes held")
        #expect(cache.value(for: id(29)) != nil && cache.value(for: id(10)) == nil)
        cache.set(big, for: id(99), bytes: 40 << 20)
        #expect(cache.value(for: id(99)) == nil, "a tree bigger than half the budget was kept")

        // With a memory budget: every big tree kept is charged, the budget's headroom is left free (its
        // own oldest trees go first), and what is dropped is credited.
        let budget = MemoryBudget(total: 32 << 20)
        let charged = TreeCache(maxBytes: 64 << 20, budget: budget)
        for i in 10..<20 { charged.set(big, for: id(i), bytes: 8 << 20) }
        #expect(budget.usedBytes == charged.bytes, "charged \(budget.usedBytes), held \(charged.bytes)")
        #expect(budget.usedBytes <= budget.total - budget.headroom, "\(budget.usedBytes) bytes charged")
        #expect(charged.value(for: id(19)) != nil && charged.value(for: id(10)) == nil)
    }
}
