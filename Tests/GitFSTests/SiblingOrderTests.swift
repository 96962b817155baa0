import Foundation
import Basics
import GitStore
import ReadAhead
import ReadModel
import Synchronization
import Testing
import TestSupport

/// The order in which read-ahead loads a directory's blobs for a reader (Speculator, no kernel): from
/// the far end toward the reader, so a sequential reader and the speculator do not load the same file.
@Suite struct SiblingOrderTests {
    @Test func siblingsComeFromTheFarEndTowardTheReader() throws {
        let work = try TempDir("sibling-order")
        let src = work.sub("src")
        let names = (0..<20).map { String(format: "f%02d.txt", $0) }
        try fastImportRepo(at: src, commits: [names.map { ("d/" + $0, Array("file \($0)\n".utf8)) }])
        let (resolver, view) = try readAheadResolver(mirroring: src, in: work)
        defer { resolver.shutdown() }
        let tree = try #require(ObjectID(hex: try revParse(src, "main:d")))

        // A reader started on f04.txt: f05 ... f19 are delivered, f19 first, each with git's bytes.
        let delivered = Mutex<[(name: String, bytes: [UInt8])]>([])
        let feed = SiblingFeed(key: 1, after: Array("f04.txt".utf8), wants: { _ in true }, deliver: { entry, bytes in
            delivered.withLock { $0.append((String(decoding: entry.name, as: UTF8.self), Array(bytes))) }
            return true
        })
        view.readingDirectory(tree, feed: feed)
        #expect(waitFor(seconds: 30) { delivered.withLock { $0.count } >= 15 }, "delivered: \(delivered.withLock { $0.map(\.name) })")
        let got = delivered.withLock { $0 }
        #expect(got.map(\.name) == Array(names[5...].reversed()))
        for (name, bytes) in got { #expect(bytes == Array("file \(name)\n".utf8), "\(name)") }
    }
}
