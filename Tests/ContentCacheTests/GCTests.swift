import Basics
@testable import ContentCache
import Foundation
import Testing

@Suite(.serialized) struct GCTests {
    @Test func gcEvictsLeastRecentlyUsedDownToLowWaterAndDryRunChangesNothing() throws {
        let t = TempDir()
        let clock = TestClock()
        let c = try openCache(t.path, clock: clock)
        var keys: [ObjectID] = []
        for i in 0..<6 {
            keys.append(try store(c, makeContent(200_000, seed: UInt64(i), random: true)))
            clock.advance(10)
        }
        clock.advance(100)
        _ = c.lookup(keys[0])       // most recently used now
        c.flushUsage()
        let total = c.entriesDiskBytes()
        let maxSize = total * 6 / 10
        let before = files(t.path + "/objects")
        let dry = try c.gc(maxSize: maxSize, maxAge: nil, dryRun: true)
        #expect(dry.dryRun && dry.entriesRemoved == 3)
        #expect(files(t.path + "/objects") == before)
        let r = try c.gc(maxSize: maxSize, maxAge: nil, dryRun: false)
        #expect(r.entriesRemoved == 3 && r.entriesRemaining == 3)
        #expect(r.sizeAfter <= maxSize * 9 / 10)
        let c2 = try openCache(t.path, clock: clock)
        #expect(c2.contains(keys[0]))
        for k in keys[1...3] { #expect(!c2.contains(k)) }
        for k in keys[4...5] { #expect(c2.contains(k)) }
        // Under the limit now: another pass evicts nothing.
        #expect(try c2.gc(maxSize: maxSize, maxAge: nil, dryRun: false).entriesRemoved == 0)
        // Max age: only the entry used recently survives.
        clock.advance(1000)
        _ = c2.lookup(keys[5])
        let aged = try c2.gc(maxSize: nil, maxAge: 500, dryRun: false)
        #expect(aged.entriesRemoved == 2)
        #expect(try openCache(t.path).contains(keys[5]))
        #expect(!(try openCache(t.path).contains(keys[0])))
    }

    @Test func gcCompactsSegmentsAndEvictsSmallEntriesByLastUse() throws {
        let t = TempDir()
        let clock = TestClock()
        var entries: [(ObjectID, [UInt8])] = []
        for batch in 0..<4 {   // four writer "processes": four sealed segments
            let c = try openCache(t.path, clock: clock)
            for i in 0..<100 {
                let b = makeContent(2000, seed: UInt64(batch * 1000 + i), random: true)
                entries.append((try store(c, b), b))
            }
            clock.advance(60)
        }
        #expect(files(t.path + "/segments").count == 4)
        let c = try openCache(t.path, clock: clock)
        let size = c.entriesDiskBytes()
        let r = try c.gc(maxSize: size / 2, maxAge: nil, dryRun: false)
        #expect(r.entriesRemoved >= 200 && r.entriesRemoved < 300)
        #expect(c.entriesDiskBytes() <= size / 2)
        // The oldest batches went first; everything left reads back intact, in this and a new instance.
        let fresh = try openCache(t.path, clock: clock)
        for (i, (k, b)) in entries.enumerated() {
            if i >= 300 { #expect(try readAll(try #require(fresh.lookup(k))) == b) }
            if i < 200 { #expect(fresh.lookup(k) == nil) }
            if let e = c.lookup(k) { #expect(try readAll(e) == b) }
        }
        #expect(try fresh.verify(repair: false).bad.isEmpty)
    }

    @Test func readsSurviveGcInAnotherProcess() throws {
        let t = TempDir()
        let exe = try benchBinary()
        var entries: [(ObjectID, [UInt8])] = []
        do {
            let w = try openCache(t.path)
            for i in 0..<20 { let b = makeContent(300_000, seed: UInt64(i)); entries.append((try store(w, b), b)) }
            for i in 0..<300 { let b = makeContent(500, seed: UInt64(100 + i)); entries.append((try store(w, b), b)) }
        }
        let r = try openCache(t.path)
        let open = try entries.map { try #require(r.lookup($0.0)) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["gc", t.path, "0", "20"]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
        var rounds = 0
        var buf = [UInt8](repeating: 0, count: 8192)
        repeat {
            for (i, e) in open.enumerated() {
                let b = entries[i].1
                let off = (rounds * 4099) % b.count
                let n = try buf.withUnsafeMutableBytes { try e.read(offset: off, into: $0) }
                #expect(Array(buf[0..<n]) == Array(b[off..<(off + n)]))
            }
            // Fresh lookups may miss while gc runs, but never return wrong bytes.
            for (k, b) in entries.prefix(25) { if let e = r.lookup(k) { #expect(try readAll(e) == b) } }
            rounds += 1
        } while p.isRunning
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(rounds >= 1)
        // Everything was evicted on disk, yet the entries opened before still read in full.
        #expect(files(t.path + "/objects").isEmpty)
        for (i, e) in open.enumerated() { #expect(try readAll(e) == entries[i].1) }
    }

    @Test func sizeEnforcerKeepsTheCacheUnderTheLimit() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        for i in 0..<10 { try store(c, makeContent(200_000, seed: UInt64(i), random: true)) }
        let limit = c.entriesDiskBytes() / 2
        let enforcer = c.startSizeEnforcer(maxSize: limit, interval: .milliseconds(50))
        defer { enforcer.stop() }
        let deadline = Date().addingTimeInterval(20)
        while c.entriesDiskBytes() > limit && Date() < deadline { usleep(20_000) }
        #expect(c.entriesDiskBytes() <= limit)
        enforcer.stop()
        #expect(enforcer.passes >= 1)
        enforcer.stop()   // idempotent
    }

    @Test func totalsAndDiskFootprintOfSmallEntries() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        for i in 0..<2000 { try store(c, makeContent(100 + i % 400, seed: UInt64(i))) }
        let totals = c.totals()
        #expect(totals.entries == 2000)
        // One shared segment: du stays close to the compressed bytes (one file per entry would be ~8 MB).
        #expect(c.entriesDiskBytes() <= totals.storedBytes * 12 / 10 + 8192)
    }
}
