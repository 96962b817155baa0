import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A tmpfs mounted at a folder, that the test can make read-only (`mount -o remount,ro`): root can
/// write anything else. Unmounted at deinit on every path.
final class ScratchTmpfs {
    let path: String
    init(at path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let r = try runBounded(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", path], seconds: 20)
        guard r.status == 0 else { throw TestFailure("mount tmpfs at \(path): \(r.stderr)") }
    }
    func makeReadOnly() throws {
        let r = try runBounded(["mount", "-o", "remount,ro", path], seconds: 20)
        guard r.status == 0 else { throw TestFailure("remount,ro \(path): \(r.stderr)") }
    }
    /// Unmounts it (lazily when still busy); idempotent.
    func unmount() {
        guard (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?
            .split(separator: "\n").contains(where: { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }) == true else { return }
        if (try? runBounded(["umount", path], seconds: 20))?.status != 0 {
            _ = try? runBounded(["umount", "-l", path], seconds: 20)
        }
    }
    deinit { unmount() }
}

extension MountTests {
    /// Issue 17 item 9: a content cache that cannot be written never stops a reader, and says so once.
    @Suite struct ReadOnlyCache {
        /// Every regular file of `rev` (path -> git's bytes).
        static func files(_ fixture: FixtureRepo, _ rev: String) throws -> [(String, [UInt8])] {
            let out = try git("ls-tree", "-r", "-z", rev, cwd: fixture.path)
            return try out.split(separator: "\0").compactMap { rec -> (String, [UInt8])? in
                let line = String(rec)
                guard line.hasPrefix("100") else { return nil }
                let path = String(line[line.index(after: line.firstIndex(of: "\t")!)...])
                return (path, try fixture.gitBlob(rev, path))
            }
        }

        /// Lines of `text` that contain `needle`.
        static func lines(_ text: String, containing needle: String) -> [Substring] {
            text.split(separator: "\n").filter { $0.contains(needle) }
        }

        /// Reads every file of `rev` through the mount and compares it with git.
        static func readAll(_ m: MountedHome, _ fixture: FixtureRepo, _ rev: String) throws {
            let commit = try git("rev-parse", rev + "^{commit}", cwd: fixture.path).trimmingCharacters(in: .whitespacesAndNewlines)
            let want = try files(fixture, rev)
            #expect(want.count > 3)
            for (path, bytes) in want {
                #expect(compareFile(m.path("fx/commits/\(commit)/\(path)"), with: bytes) == nil, "\(path) through the mount")
            }
        }

        @Test func initialisedReadOnlyCacheServesReadsVerifiesAndSaysItOnce() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("ro-cache")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fx")
            let cache = try ScratchTmpfs(at: m.home + "/cache")
            defer { m.unmount(); cache.unmount() }
            // Initialise it and put one entry and gc.lock in it, then make it read-only.
            let files = try Self.files(fixture, "main")
            let (cachedPath, cachedBytes) = files[0]
            let (otherPath, otherBytes) = try #require(files.first { $0.1 != cachedBytes })
            let first = try m.gitfs("cat", "fx", "main:" + cachedPath)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(try m.gitfs("gc").status == 0)
            try cache.makeReadOnly()

            // A read that cannot be cached: the right bytes, one line saying why nothing is cached.
            let cat = try m.gitfs("cat", "fx", "main:" + otherPath)
            #expect(cat.status == 0, "\(cat.stderr)")
            #expect(cat.stdout == otherBytes)
            #expect(Self.lines(cat.stderr, containing: "read-only").count == 1, "stderr: \(cat.stderr)")

            // verify only reads: it works although gc.lock cannot be opened for writing.
            let verify = try m.gitfs("verify")
            #expect(verify.status == 0, "verify: \(verify.stderr)")
            #expect(verify.out.contains("checked 1 entries: 0 bad"), "verify: \(verify.out)")
            // --repair would write: one clear error.
            let repair = try m.gitfs("verify", "--repair")
            #expect(repair.status == 1)
            #expect(Self.lines(repair.stderr, containing: "gitfs: error:").count == 1, "verify --repair: \(repair.stderr)")

            // A mount reads every file; the server says once that the cache is read-only.
            try m.mount()
            try Self.readAll(m, fixture, "main")
            m.unmount()
            #expect(Self.lines(m.serverLog, containing: "read-only").count == 1, "log: \(m.serverLog)")
            #expect(Self.lines(m.serverLog, containing: "could not write").isEmpty, "log: \(m.serverLog)")
        }

        @Test func neverInitialisedReadOnlyCacheDoesNotBlockCatOrMount() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("ro-fresh-cache")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fx")
            try? FileManager.default.removeItem(atPath: m.home + "/cache")
            let cache = try ScratchTmpfs(at: m.home + "/cache")
            defer { m.unmount(); cache.unmount() }
            try cache.makeReadOnly()

            let cat = try m.gitfs("cat", "fx", "main:README.md")
            #expect(cat.status == 0, "\(cat.stderr)")
            #expect(cat.stdout == (try fixture.gitBlob("main", "README.md")))
            #expect(Self.lines(cat.stderr, containing: "not initialised").count == 1, "stderr: \(cat.stderr)")
            #expect(cat.stderr.split(separator: "\n").count == 1, "stderr: \(cat.stderr)")

            try m.mount()
            try Self.readAll(m, fixture, "main")
            m.unmount()
            #expect(Self.lines(m.serverLog, containing: "not initialised").count == 1, "log: \(m.serverLog)")
            #expect(Self.lines(m.serverLog, containing: "could not write").isEmpty, "log: \(m.serverLog)")
            // Nothing was written into the cache folder.
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: m.home + "/cache")) ?? ["?"]).isEmpty)
        }
    }
}
