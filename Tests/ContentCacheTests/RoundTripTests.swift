import Basics
@testable import ContentCache
import Foundation
import Testing

let chunk = 1 << ContentCache.defaultChunkLog2

@Suite struct RoundTripTests {
    @Test func keyMatchesGitHashObject() throws {
        let t = TempDir()
        let bytes = makeContent(1000, seed: 3)
        FileManager.default.createFile(atPath: t.path + "/f", contents: Data(bytes))
        let (rc, out) = try run("/usr/bin/git", ["hash-object", t.path + "/f"])
        #expect(rc == 0)
        #expect(gitKey(bytes).hex == out.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(ObjectID(hex: gitKey(bytes).hex) == gitKey(bytes))
        #expect(ObjectID(hex: "zz") == nil)
    }

    @Test(arguments: [0, 1, 182, 4095, 4096, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 17, 5 << 20])
    func roundTrip(size: Int) throws {
        let t = TempDir()
        let c = try openCache(t.path)
        for random in [false, true] {
            let bytes = makeContent(size, seed: UInt64(size) + (random ? 7 : 0), random: random)
            let k = try store(c, bytes)
            #expect(c.contains(k))
            let e = try #require(c.lookup(k))
            #expect(e.size == size)
            #expect(try readAll(e) == bytes)
            // Random-offset reads against the original bytes.
            var buf = [UInt8](repeating: 0, count: 70_000)
            for i in 0..<40 where size > 0 {
                let off = Int.random(in: 0..<size)
                let len = [1, 4096, 70_000, Int.random(in: 1...70_000)][i % 4]
                let n = try buf.withUnsafeMutableBytes { try e.read(offset: off, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<len])) }
                #expect(n == min(len, size - off))
                #expect(Array(buf[0..<n]) == Array(bytes[off..<(off + n)]))
            }
            #expect(try buf.withUnsafeMutableBytes { try e.read(offset: size, into: $0) } == 0)
            #expect(try buf.withUnsafeMutableBytes { try e.read(offset: size + 10, into: $0) } == 0)
            // A second instance (as another process would) finds it too.
            let c2 = try openCache(t.path)
            #expect(try readAll(try #require(c2.lookup(k))) == bytes)
        }
    }

    @Test func indexedSizesOfSmallEntriesNeedNoRead() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let small = makeContent(10_000, seed: 11)
        let large = makeContent(3 * chunk, seed: 12, random: true)
        let ks = try store(c, small), kl = try store(c, large)
        #expect(c.indexedSize(ks) == small.count)
        #expect(c.indexedSize(kl) == nil)   // a large entry: its size is in its own file's header
        #expect(c.indexedSize(gitKey(makeContent(5, seed: 13))) == nil)
        // Another instance learns the size from scanning the segment.
        let c2 = try openCache(t.path)
        #expect(c2.indexedSize(ks) == small.count)
    }

    @Test func wrongContentIsRefusedAndNothingStored() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let k = gitKey(makeContent(100, seed: 1))
        let other = makeContent(300_000, seed: 2)
        #expect(throws: CacheError.self) { try other.withUnsafeBytes { try c.store(k, content: $0) } }
        do { try other.withUnsafeBytes { try c.store(k, content: $0) } } catch let error as CacheError { #expect(error.kind == .verifyFailed) }
        #expect(c.lookup(k) == nil)
        #expect(files(t.path + "/objects").isEmpty && files(t.path + "/tmp").isEmpty)
    }

    @Test func smallEntriesShareSegmentsLargeOnesGetFiles() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        var keys: [ObjectID: [UInt8]] = [:]
        for i in 0..<500 { let b = makeContent(50 + i, seed: UInt64(i)); keys[try store(c, b)] = b }
        let big = makeContent(1 << 20, seed: 99, random: true)
        let bk = try store(c, big)
        #expect(files(t.path + "/segments").count == 1)
        #expect(files(t.path + "/objects") == [String(bk.hex.prefix(2)) + "/" + bk.hex.dropFirst(2)])
        let c2 = try openCache(t.path)
        for (k, b) in keys { #expect(try readAll(try #require(c2.lookup(k))) == b) }
        let totals = c2.totals()
        #expect(totals.entries == 501)
        #expect(totals.contentBytes == keys.values.reduce(0) { $0 + $1.count } + big.count)
    }

    @Test func twoInstancesSeeEachOthersStores() throws {
        let t = TempDir()
        let a = try openCache(t.path), b = try openCache(t.path)
        _ = b.lookup(gitKey([1]))   // b has loaded its index before a writes
        let small = makeContent(200, seed: 5), large = makeContent(400_000, seed: 6, random: true)
        let ks = try store(a, small), kl = try store(a, large)
        #expect(try readAll(try #require(b.lookup(ks))) == small)
        #expect(try readAll(try #require(b.lookup(kl))) == large)
        // Both storing the same key is harmless.
        try store(b, small); try store(b, large)
        #expect(try readAll(try #require(a.lookup(ks))) == small)
    }

    @Test func concurrentReadersOfOneEntry() async throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let bytes = makeContent(3 << 20, seed: 11)
        let k = try store(c, bytes)
        let e = try #require(c.lookup(k))
        try await withThrowingTaskGroup(of: Bool.self) { g in
            for w in 0..<8 {
                g.addTask {
                    var buf = [UInt8](repeating: 0, count: 4096)
                    for i in 0..<300 {
                        let off = (w * 7919 + i * 104_729) % (bytes.count - 4096)
                        let n = try buf.withUnsafeMutableBytes { try e.read(offset: off, into: $0) }
                        if n != 4096 || buf != Array(bytes[off..<(off + 4096)]) { return false }
                    }
                    return true
                }
            }
            for try await ok in g { #expect(ok) }
        }
    }
}
