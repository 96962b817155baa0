import Foundation
import Basics
import GitStore
@testable import ReadAhead
@testable import ReadModel
import Testing
import TestSupport

/// The listing walk ahead (Speculator, no kernel) stays within its budget of entries even when one
/// directory alone is bigger than the budget: a mount whose home holds a repository with a huge
/// directory used to read every one of its sizes at mount (200,000 sizes: ~1.4 s of CPU competing with
/// the first reads).
@Suite struct WalkBudgetTests {
    @Test func aWalkStopsInsideADirectoryBiggerThanItsBudget() throws {
        let work = try TempDir("walk-budget")
        let src = work.sub("src")
        let count = Speculator.walkBudget + 2_000
        let files = (0..<count).map { i in (String(format: "big/f%06d", i), Array("file \(i)\n".utf8)) }
        try fastImportRepo(at: src, commits: [files + [("small/x.txt", Array("small\n".utf8))]], checkout: false)
        let (resolver, view) = try readAheadResolver(mirroring: src, in: work)
        defer { resolver.shutdown() }
        let big = try #require(ObjectID(hex: try revParse(src, "main:big")))
        let small = try #require(ObjectID(hex: try revParse(src, "main:small")))
        let first = try #require(ObjectID(hex: try revParse(src, "main:big/f000000")))
        let last = try #require(ObjectID(hex: try revParse(src, "main:big/" + String(format: "f%06d", count - 1))))
        let smallFile = try #require(ObjectID(hex: try revParse(src, "main:small/x.txt")))

        // Walks run one at a time, in order, on one thread: once the second walk has read small/'s size
        // the first one is over.
        view.listing(big)
        view.listing(small)
        #expect(waitFor(seconds: 300) { resolver.sizes.value(for: smallFile) != nil }, "the walks did not finish")
        #expect(resolver.sizes.value(for: first) == "file 0\n".utf8.count, "the walk read no sizes at all")
        #expect(resolver.sizes.value(for: last) == nil, "the walk read sizes past its budget")
        #expect(resolver.sizes.count <= Speculator.walkBudget + 1)
        // The sizes it left out are still there for a reader.
        #expect(try view.blobSize(last) == "file \(count - 1)\n".utf8.count)
    }
}
