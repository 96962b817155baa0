import Foundation
import GitStore
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `gitfs prefetch` tells the truth when the cache cannot keep what it loaded (issue 17, item 6): a
/// read-only cache and a full one, made so that root really cannot write (a read-only bind mount, a
/// full tmpfs); each mount is always undone.
@Suite(.serialized)
struct PrefetchStoreTests {
    /// Runs `mount ARGS`; throws when it fails.
    static func mountOrThrow(_ args: [String]) throws {
        let r = try run(["mount"] + args, cwd: "/")
        guard r.status == 0 else { throw TestFailure("mount \(args.joined(separator: " ")): \(r.stderr)") }
    }

    static func unmount(_ path: String) {
        _ = try? run(["umount", path], cwd: "/")
    }

    /// Number of blobs `gitfs prefetch fx` considers at the fixture's default branch.
    static func blobCount(_ fixture: FixtureRepo) throws -> Int {
        Set(try PrefetchTests.blobs(fixture, fixture.defaultBranch).map(\.oid)).count
    }

    @Test func aReadOnlyCacheMakesPrefetchFail() throws {
        let fixture = try FixtureRepo.shared()
        let home = try PrefetchTests.home(fixture)
        // An initialised cache holding one entry, then made read-only underneath gitfs.
        try gitfsOK(home: home.path, ["prefetch", "fx", "README.md"])
        let cache = home.sub("cache")
        try Self.mountOrThrow(["--bind", cache, cache])
        defer { Self.unmount(cache) }
        try Self.mountOrThrow(["-o", "remount,bind,ro", cache])
        #expect(access(cache, W_OK) != 0 || open(cache + "/probe", O_CREAT | O_WRONLY, 0o644) < 0, "root can still write")

        let r = try runGitfs(home: home.path, ["prefetch", "fx"])
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        let s = try PrefetchTests.Summary(r.out)
        let total = try Self.blobCount(fixture)
        #expect(s.cached == 1 && s.loaded == 0 && s.failed == total - 1, "\(r.out)")
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("gitfs: error: ") }
        let warnings = r.stderr.split(separator: "\n").filter { $0.hasPrefix("gitfs: warning: ") }
        #expect(errors.count == 1 && errors[0].contains("could not be stored"), "\(r.stderr)")
        #expect(warnings.count == 1 && warnings[0].contains("\(total - 1) objects were loaded but could not be stored"), "said once: \(r.stderr)")
        #expect(!r.stderr.contains("gitfs.resolver"), "the read model repeated what prefetch says: \(r.stderr)")

        // Writable again: the same prefetch succeeds.
        Self.unmount(cache)
        let again = try runGitfs(home: home.path, ["prefetch", "fx"])
        #expect(again.status == 0, "\(again.stderr)")
        let s2 = try PrefetchTests.Summary(again.out)
        #expect(s2.failed == 0 && s2.loaded == total - 1 && s2.cached == 1, "\(again.out)")
    }

    @Test func aFullCacheMakesPrefetchFail() throws {
        let fixture = try FixtureRepo.shared()
        let home = try PrefetchTests.home(fixture)
        let cache = home.sub("cache")
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        try Self.mountOrThrow(["-t", "tmpfs", "-o", "size=64k", "tmpfs", cache])
        defer { Self.unmount(cache) }
        let r = try runGitfs(home: home.path, ["prefetch", "fx"])
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        let s = try PrefetchTests.Summary(r.out)
        let total = try Self.blobCount(fixture)
        #expect(s.failed > 0 && s.loaded + s.failed == total, "\(r.out)")
        #expect(r.stderr.split(separator: "\n").filter { $0.hasPrefix("gitfs: error: ") }.count == 1, "\(r.stderr)")
    }
}
