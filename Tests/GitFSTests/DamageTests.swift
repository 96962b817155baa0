import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// A damaged mirror through a real mount: the damaged file gives EIO, never wrong bytes or ENOENT,
    /// and everything else keeps serving.
    @Suite struct Damage {
        @Test func aBlobDamagedInThePackGivesEIOWhileItsSiblingsRead() throws {
            let work = try TempDir("damage-mount")
            let src = try LayoutEdgeTests.smallRepo(in: work)
            let m = try MountedHome("damage")
            defer { m.unmount() }
            try m.clone(src, as: "r")
            let a = try revParse(src, "main:a.txt")
            try damageObject(a, inPackOf: m.home + "/repos/r.git")
            try m.mount(watchdogSeconds: 90)
            let pid = try #require(m.serverPID)
            let root = m.path("r/commits/\(try revParse(src, "main"))")
            let before = try m.stats()

            #expect(try listDirectory(root).sorted() == ["a.txt", "b.txt", "c"])
            #expect(lstatInfo(root + "/a.txt")?.size == uniqueText(lines: 400, seed: 11).count)
            for attempt in 1...2 {
                dropKernelCaches()
                switch readWholeFile(root + "/a.txt") {
                case .success(let bytes):
                    Issue.record("attempt \(attempt): read \(bytes.count) bytes of a damaged blob")
                case .failure(let e):
                    #expect(e.code == .EIO, "attempt \(attempt): \(e.code) (\(e.localizedDescription))")
                }
            }
            #expect(compareFile(root + "/b.txt", with: Array("bee\n".utf8)) == nil)
            for i in 0..<6 {
                #expect(compareFile(root + "/c/file-with-a-long-name-\(i).txt", with: Array("c\(i)\n".utf8)) == nil)
            }
            #expect(processAlive(pid), "the server died on a damaged pack")

            let mid = try m.stats()
            #expect(mid["errors"]! >= before["errors"]! + 2, "errors \(before["errors"]!) -> \(mid["errors"]!)")
            // A missing name is ENOENT, counted as not_found, not as an error.
            for name in ["nope", "nope2", "nope3"] {
                #expect(lstatInfo(root + "/" + name) == nil && errno == ENOENT)
            }
            let after = try m.stats()
            #expect(after["errors"] == mid["errors"], "errors \(mid["errors"]!) -> \(after["errors"]!) after ENOENTs")
            #expect(after["not_found"]! >= mid["not_found"]! + 3, "not_found \(mid["not_found"]!) -> \(after["not_found"]!)")
            let logged = m.serverLog.components(separatedBy: "request failed (EIO)").count - 1
            #expect(logged == 1, "the failure is logged once, not per request: \(logged) times")
            #expect(m.serverLog.contains(a), "the log names the object")
        }
    }
}
