import Basics
@testable import ContentCache
import Foundation
import Testing

/// The running totals statfs and `.gitfs/stats` read: kept by the cache, equal to a full count after
/// every change this process makes, not recounted per call.
@Suite(.serialized) struct TotalsTests {
    /// What a full walk counts: distinct entries and the du of objects/ and segments/.
    func counted(_ c: ContentCache) -> CacheUsage {
        CacheUsage(entries: c.totals().entries, diskBytes: c.entriesDiskBytes())
    }

    @Test func runningTotalsMatchAFullCountAfterStoresGcAndDamage() throws {
        let t = TempDir()
        let clock = TestClock()
        do {
            let w = try openCache(t.path, clock: clock)
            for i in 0..<40 { try store(w, makeContent(200 + i * 37, seed: UInt64(i))) }
            try store(w, makeContent(300_000, seed: 1000, random: true))
        }
        // Counted on first use from what is on disk.
        let c = try openCache(t.path, clock: clock)
        #expect(c.runningTotals() == counted(c))
        #expect(c.runningTotals().entries == 41)

        // Kept on every store, small and large.
        var keys: [ObjectID] = []
        for i in 0..<300 {
            clock.advance(1)
            keys.append(try store(c, makeContent(100 + i * 11, seed: UInt64(5000 + i))))
        }
        let big = makeContent(700_000, seed: 9, random: true)
        let bigKey = try store(c, big)
        #expect(c.runningTotals() == counted(c))
        #expect(c.runningTotals().entries == 342)

        // A damaged large entry found by a reader is removed and leaves the totals.
        try patch(objectFile(t.path, bigKey), at: 10)
        #expect(c.lookup(bigKey) == nil)
        #expect(c.runningTotals() == counted(c))
        #expect(c.runningTotals().entries == 341)

        // gc by this instance: recounted.
        let r = try c.gc(maxSize: c.entriesDiskBytes() / 2, maxAge: nil, dryRun: false)
        #expect(r.entriesRemoved > 0)
        #expect(c.runningTotals() == counted(c))
        #expect(c.runningTotals().entries == r.entriesRemaining)
    }

    @Test func otherProcessesSmallEntriesShowAsTheirSegmentsAreReadLargeOnesAtTheNextGc() throws {
        let t = TempDir()
        let a = try openCache(t.path)
        try store(a, makeContent(500, seed: 1))
        #expect(a.runningTotals().entries == 1)
        let b = try openCache(t.path)
        let small = try store(b, makeContent(700, seed: 2))
        let large = try store(b, makeContent(400_000, seed: 3, random: true))
        // Kept, not counted: nothing changes in `a` until it reads the folder again.
        #expect(a.runningTotals().entries == 1)
        // A miss rescans the segments: b's small entry is indexed and counted.
        #expect(a.lookup(small) != nil)
        #expect(a.runningTotals().entries == 2)
        // b's large entry (a file) is counted at a's next gc.
        _ = try a.gc(maxSize: nil, maxAge: nil, dryRun: false)
        #expect(a.runningTotals().entries == 3)
        #expect(a.runningTotals() == counted(a))
        #expect(a.lookup(large) != nil)
    }
}
