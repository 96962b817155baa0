import Basics
import Foundation
import Synchronization
import GitStore
import Testing
import TestSupport

/// gitfs's own pack reader (libdeflate, delta chains rebuilt by gitfs) against git: every blob's bytes,
/// whole and deltified (offset and reference deltas, checked in the pack bytes), damaged entries, and
/// packs that appear and disappear under an open repository.
@Suite struct PackReaderTests {
    /// A mirror `NAME.git` in a fresh home, cloned (`--mirror --no-local`, so it holds one real pack) from
    /// a source repository with deltified history, a 6 MiB incompressible file (stored deflate blocks,
    /// read from the mapping into huge pages), a 2 MiB compressible one, small and empty files.
    struct Mirror {
        let home: TempDir
        let source: String
        let path: String
        let store: MirrorStore
    }

    func makeMirror(seed: UInt64) throws -> Mirror {
        let home = try TempDir("packs")
        let src = home.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try git("init", "-q", "-b", "main", cwd: src)
        func write(_ name: String, _ bytes: [UInt8]) throws {
            let url = URL(fileURLWithPath: src + "/" + name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: url)
        }
        var lines = (0..<400).map { "line \($0) of a file that is edited a little in every commit, seed \(seed)\n" }
        for round in 0..<6 {
            // Edits in the middle, so the deltas copy ranges from all over their bases.
            lines[(round * 67 + 50) % 400] = "line changed in round \(round)\n"
            lines.remove(at: (round * 31 + 200) % 390)
            try write("docs/edited.txt", Array((lines.joined() + "edit \(round)\n").utf8))
            try write("src/file\(round).swift", Array("let x = \(round) // \(seed)\n".utf8))
            try git("add", "-A", cwd: src)
            try git("commit", "-q", "-m", "round \(round)", cwd: src)
        }
        try write("data/random.bin", pseudoRandomBytes(count: 6 << 20, seed: seed))
        try write("data/text.bin", Array(String(repeating: "compressible \(seed) ", count: 150_000).utf8))
        try write("empty", [])
        try git("add", "-A", cwd: src)
        try git("commit", "-q", "-m", "data", cwd: src)
        let path = home.path + "/repos/m.git"
        try git("clone", "-q", "--mirror", "--no-local", src, path, cwd: home.path)
        return Mirror(home: home, source: src, path: path, store: MirrorStore(home: Home(path: home.path)))
    }

    /// Blob ids of every object reachable in `repo` (`git rev-list --objects --all` + `cat-file`).
    func allBlobs(_ repo: String) throws -> [String] {
        let lines = try git("rev-list", "--objects", "--all", cwd: repo).split(separator: "\n")
        let ids = lines.map { String($0.prefix(40)) }
        let types = try git("cat-file", "--batch-check=%(objecttype) %(objectname)", cwd: repo,
                            stdin: Array(ids.joined(separator: "\n").utf8) + [10])
        return types.split(separator: "\n").filter { $0.hasPrefix("blob ") }.map { String($0.dropFirst(5)) }
    }

    /// The blobs of the packs, per `git verify-pack -v`, with the type the pack gives each entry (the
    /// first byte's bits 4-6: 3 whole blob, 6 offset delta, 7 reference delta).
    func packedBlobs(_ repo: String) throws -> [String: UInt8] {
        var out: [String: UInt8] = [:]
        for idx in try FileManager.default.contentsOfDirectory(atPath: repo + "/objects/pack") where idx.hasSuffix(".idx") {
            let pack = try Data(contentsOf: URL(fileURLWithPath: repo + "/objects/pack/" + idx.dropLast(4) + ".pack"))
            for line in try git("verify-pack", "-v", "objects/pack/" + idx, cwd: repo).split(separator: "\n") {
                // "<id> blob <size> <size-in-pack> <offset>" for whole entries; deltas add depth and base.
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                if f.count >= 5, f[1] == "blob", let offset = Int(f[4]) { out[String(f[0])] = (pack[offset] >> 4) & 7 }
            }
        }
        return out
    }

    /// Every blob of the mirror read through `Repository` equals git's and libgit2's bytes, and every
    /// packed one was read by gitfs's pack reader, verified. Returns the pack types seen.
    func checkEveryBlob(_ m: Mirror) throws -> Set<UInt8> {
        let blobs = try allBlobs(m.path)
        let packed = try packedBlobs(m.path)
        #expect(blobs.count > 12 && packed.count == blobs.count)
        let repo = try m.store.open(name: "m")
        let oracle = try m.store.open(name: "m", ownPackReader: false)
        for id in blobs {
            let before = repo.blobsReadFromPacks
            let got = try bytes(repo, id)
            #expect(got == (try gitBytes(["cat-file", "blob", id], cwd: m.path).stdout), "blob \(id)")
            #expect(got == (try bytes(oracle, id)), "blob \(id) against libgit2")
            #expect(repo.blobsReadFromPacks - before == 1, "blob \(id) (pack type \(packed[id] ?? 0)) was not read by gitfs")
            #expect(try repo.blobBuffer(ObjectID(hex: id)!).isVerified)
        }
        #expect(oracle.blobsReadFromPacks == 0)
        return Set(packed.values)
    }

    /// Offset and size in pack of one entry, per `git verify-pack -v`.
    func entry(_ id: String, in repo: String) throws -> (pack: String, offset: Int, length: Int) {
        for idx in try FileManager.default.contentsOfDirectory(atPath: repo + "/objects/pack") where idx.hasSuffix(".idx") {
            for line in try git("verify-pack", "-v", "objects/pack/" + idx, cwd: repo).split(separator: "\n") where line.hasPrefix(id) {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                return (repo + "/objects/pack/" + idx.dropLast(4) + ".pack", Int(f[4])!, Int(f[3])!)
            }
        }
        throw TestFailure("\(id) is not in a pack of \(repo)")
    }

    /// XORs the byte at `offset` of the file at `path` with `mask`, in place.
    func flipBits(in path: String, at offset: Int, mask: UInt8) throws {
        let fh = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? fh.close() }
        try fh.seek(toOffset: UInt64(offset))
        let old = try #require(try fh.read(upToCount: 1)).first!
        try fh.seek(toOffset: UInt64(offset))
        try fh.write(contentsOf: [old ^ mask])
    }

    /// Reads `id` through a freshly opened repository of `m`: its bytes, or the store's error, which must
    /// say `.corrupt`; and how many blobs gitfs's own reader returned.
    func readFresh(_ m: Mirror, _ id: String) throws -> (result: Result<[UInt8], GitStoreError>, ownReads: Int) {
        let repo = try m.store.open(name: "m")
        let result: Result<[UInt8], GitStoreError>
        do {
            result = .success(try repo.blobBuffer(ObjectID(hex: id)!).withUnsafeBytes { Array($0) })
        } catch {
            #expect(error.kind == .corrupt, "\(error)")
            result = .failure(error)
        }
        return (result, repo.blobsReadFromPacks)
    }

    func bytes(_ repo: Repository, _ id: String) throws -> [UInt8] {
        try repo.blobBuffer(ObjectID(hex: id)!).withUnsafeBytes { Array($0) }
    }

    @Test func wholeBlobsAndOffsetDeltaChainsMatchGit() throws {
        let m = try makeMirror(seed: 11)
        defer { m.home.remove() }
        #expect(try checkEveryBlob(m) == [3, 6], "the fixture must hold whole blobs and offset deltas")
    }

    @Test func referenceDeltaChainsMatchGit() throws {
        let m = try makeMirror(seed: 16)
        defer { m.home.remove() }
        // Repacked without offset deltas, every delta names its base by id.
        try git("-c", "repack.useDeltaBaseOffset=false", "repack", "-q", "-a", "-d", "-f", cwd: m.path)
        #expect(try checkEveryBlob(m) == [3, 7], "the repack must hold whole blobs and reference deltas")
    }

    @Test func manyThreadsReadingAtOnceGetGitsBytes() throws {
        let m = try makeMirror(seed: 18)
        defer { m.home.remove() }
        let blobs = try allBlobs(m.path)
        var expected: [String: [UInt8]] = [:]
        for id in blobs { expected[id] = try gitBytes(["cat-file", "blob", id], cwd: m.path).stdout }
        let repo = try m.store.open(name: "m")
        let wrong = Atomic<Int>(0)
        let frozen = expected
        // 8 threads, each through every blob from its own starting point: shared delta bases, the
        // shared pack fd and the big entry's madvise calls, all at once.
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for k in 0..<blobs.count {
                let id = blobs[(k + t * 13) % blobs.count]
                let got = try? repo.blobBuffer(ObjectID(hex: id)!).withUnsafeBytes { Array($0) }
                if got != frozen[id] { wrong.add(1, ordering: .relaxed) }
            }
        }
        #expect(wrong.load(ordering: .relaxed) == 0)
        #expect(repo.blobsReadFromPacks == 8 * blobs.count)
    }

    @Test func aDamagedDeltaIsNeverServed() throws {
        let m = try makeMirror(seed: 17)
        defer { m.home.remove() }
        let packed = try packedBlobs(m.path)
        let id = try #require(packed.first { $0.value == 6 }?.key)
        let e = try entry(id, in: m.path)
        try flipBits(in: e.pack, at: e.offset + e.length - 3, mask: 0x10)   // in the zlib stream's tail
        let read = try readFresh(m, id)
        if case .success(let got) = read.result {
            #expect(got == (try gitBytes(["cat-file", "blob", id], cwd: m.source).stdout), "damaged delta served wrong bytes")
        }
        #expect(read.ownReads == 0)
    }

    @Test func anIndexWithEveryOffsetInTheLargeTableAndALooseObject() throws {
        let m = try makeMirror(seed: 15)
        defer { m.home.remove() }
        // Rewrite the index so every entry past the first goes through the 64-bit offset table (git's
        // test-suite option; git refuses more), as in packs over 2 GiB.
        let packDir = m.path + "/objects/pack"
        let pack = try #require(try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".pack") })
        let idx = packDir + "/" + pack.dropLast(5) + ".idx"
        let before = try Data(contentsOf: URL(fileURLWithPath: idx))
        try FileManager.default.removeItem(atPath: idx)
        try git("index-pack", "--index-version=2,12", "-o", idx, packDir + "/" + pack, cwd: m.path)
        let after = try Data(contentsOf: URL(fileURLWithPath: idx))
        let entries = (before.count - 8 - 1024 - 40) / 28
        #expect(after.count == before.count + 8 * (entries - 1), "offsets moved to the 64-bit table")
        // And one blob only as a loose object.
        let loose = Array("only loose, seed 15\n".utf8)
        let looseID = trimmed(try git("hash-object", "-w", "--stdin", cwd: m.path, stdin: loose))
        let repo = try m.store.open(name: "m")
        let blobs = try allBlobs(m.path)
        for id in blobs {
            #expect(try bytes(repo, id) == (try gitBytes(["cat-file", "blob", id], cwd: m.path).stdout), "blob \(id)")
        }
        #expect(repo.blobsReadFromPacks == blobs.count)
        #expect(try bytes(repo, looseID) == loose)
        #expect(repo.blobsReadFromPacks == blobs.count)
    }

    @Test func aFlippedByteInAStoredBlockIsNeverServed() throws {
        let m = try makeMirror(seed: 12)
        defer { m.home.remove() }
        let id = trimmed(try git("rev-parse", "main:data/random.bin", cwd: m.path))
        let e = try entry(id, in: m.path)
        // The middle of incompressible data is a stored block: deflate itself cannot notice the change.
        try flipBits(in: e.pack, at: e.offset + e.length / 2, mask: 0x5a)
        let read = try readFresh(m, id)
        if case .success(let got) = read.result { Issue.record("a damaged blob was returned (\(got.count) bytes)") }
        #expect(read.ownReads == 0)
    }

    @Test func aWrongIndexChecksumSendsTheReadToLibgit2() throws {
        let m = try makeMirror(seed: 13)
        defer { m.home.remove() }
        let id = trimmed(try git("rev-parse", "main:data/text.bin", cwd: m.path))
        let e = try entry(id, in: m.path)
        // The entry is intact but the index's CRC-32 for it is not: gitfs must not trust it (libgit2 does
        // not check CRCs when reading, so it still returns the right bytes).
        let idxPath = String(e.pack.dropLast(5)) + ".idx"
        // show-index lists "<offset> <id> (<crc>)" in index order (sorted by id).
        let listed = try git("show-index", cwd: m.path, stdin: Array(try Data(contentsOf: URL(fileURLWithPath: idxPath))))
            .split(separator: "\n").map { String($0.split(separator: " ")[1]) }
        let count = listed.count
        let position = try #require(listed.firstIndex(of: id))
        let crcAt = 8 + 1024 + 20 * count + 4 * position
        try flipBits(in: idxPath, at: crcAt, mask: 1)
        let repo = try m.store.open(name: "m")
        #expect(try bytes(repo, id) == (try gitBytes(["cat-file", "blob", id], cwd: m.source).stdout))
        #expect(repo.blobsReadFromPacks == 0)
        #expect(try repo.blobBuffer(ObjectID(hex: id)!).isVerified == false)
    }

    @Test func packsAddedByFetchAndRemovedByRepackAreSeenByAnOpenRepository() throws {
        let m = try makeMirror(seed: 14)
        defer { m.home.remove() }
        let repo = try m.store.open(name: "m")
        let first = trimmed(try git("rev-parse", "main:data/random.bin", cwd: m.path))
        #expect(try bytes(repo, first).count == 6 << 20)
        #expect(repo.blobsReadFromPacks == 1)
        // A fetch brings a second pack (unpackLimit 1: never loose objects).
        let added = pseudoRandomBytes(count: 3 << 20, seed: 99)
        try Data(added).write(to: URL(fileURLWithPath: m.source + "/added.bin"))
        try git("add", "added.bin", cwd: m.source)
        try git("commit", "-q", "-m", "added", cwd: m.source)
        try git("-c", "fetch.unpackLimit=1", "fetch", "-q", "origin", cwd: m.path)
        let packs = { try FileManager.default.contentsOfDirectory(atPath: m.path + "/objects/pack").filter { $0.hasSuffix(".pack") } }
        let oldPacks = try packs()
        #expect(oldPacks.count == 2)
        let second = trimmed(try git("rev-parse", "main:added.bin", cwd: m.path))
        #expect(try bytes(repo, second) == added)
        #expect(repo.blobsReadFromPacks == 2)
        // gc folds both into a new pack and deletes the old ones: the first read after the reader's
        // recheck interval maps the new pack and the deleted ones are unmapped (no "(deleted)" pack left
        // in this process's mappings). Reads within the interval may still use the old mappings.
        try git("repack", "-q", "-a", "-d", cwd: m.path)
        let newPacks = try packs()
        #expect(newPacks.count == 1 && !oldPacks.contains(newPacks[0]))
        usleep(1_100_000)
        #expect(try bytes(repo, first) == (try gitBytes(["cat-file", "blob", first], cwd: m.path).stdout))
        #expect(repo.blobsReadFromPacks == 3)
        let maps = try #require(procText("/proc/self/maps"))
        let stillMapped = oldPacks.filter { maps.contains($0) }
        let newMapped = maps.contains(newPacks[0])
        #expect(stillMapped.isEmpty)
        #expect(newMapped)
    }
}
