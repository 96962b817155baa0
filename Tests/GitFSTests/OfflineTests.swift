import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Runs `gitfs ARGS` (with `--home` after the subcommand) through `runBounded` (posix_spawn + waitpid,
/// killed after `seconds`): Foundation.Process can miss the exit of `gitfs mount`, whose server lives on.
func offlineRunGitfs(home: String, _ args: [String], seconds: Double = 120) throws -> RunResult {
    try runBounded([gitfsBinary, args[0], "--home", home] + args.dropFirst(), seconds: seconds)
}

/// Issue 5 "Offline": a repository cloned from a `git daemon` that is then stopped can still be mounted,
/// walked, read, prefetched, listed and printed; `gitfs fetch` fails with one clear line naming the
/// remote and keeps every ref.
@Suite(.serialized)
struct OfflineTests {
    /// Whether /proc/self/mountinfo lists `path` as a mount point.
    static func mounted(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { line in
            let f = line.split(separator: " ")
            return f.count > 4 && f[4] == path
        }
    }

    /// `gitfs unmount`, then `umount -l` as a last resort.
    static func unmount(home: String, _ mp: String) {
        if mounted(mp) { _ = try? offlineRunGitfs(home: home, ["unmount", mp], seconds: 30) }
        if mounted(mp) { _ = umount2(mp, Int32(MNT_DETACH)) }
    }

    /// What git says a tree holds: path -> (kind, git blob bytes for files and symlinks).
    enum Kind: Equatable { case dir, file(executable: Bool), symlink }

    static func expected(_ fixture: FixtureRepo, _ rev: String) throws -> [String: Kind] {
        let out = try gitBytes(["ls-tree", "-r", "-t", "-z", rev], cwd: fixture.path).stdout
        var map: [String: Kind] = [:]
        for rec in out.split(separator: 0) {
            let line = String(decoding: rec, as: UTF8.self)
            let tab = line.firstIndex(of: "\t")!
            let mode = line[..<tab].split(separator: " ")[0]
            let path = String(line[line.index(after: tab)...])
            switch mode {
            case "040000", "160000": map[path] = .dir
            case "120000": map[path] = .symlink
            default: map[path] = .file(executable: mode == "100755")
            }
        }
        return map
    }

    /// Walks a directory of the mount with lstat: relative path -> kind.
    static func walk(_ root: String) throws -> [String: Kind] {
        var out: [String: Kind] = [:]
        var stack = [""]
        while let rel = stack.popLast() {
            let dir = rel.isEmpty ? root : root + "/" + rel
            for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
                let path = rel.isEmpty ? name : rel + "/" + name
                var st = stat()
                guard lstat(root + "/" + path, &st) == 0 else { throw TestFailure("lstat \(path): \(errno)") }
                switch st.st_mode & S_IFMT {
                case S_IFDIR: out[path] = .dir; stack.append(path)
                case S_IFLNK: out[path] = .symlink
                default: out[path] = .file(executable: st.st_mode & 0o111 != 0)
                }
            }
        }
        return out
    }

    @Test func everythingButFetchWorksWithoutTheRemote() throws {
        let fixture = try FixtureRepo.shared()
        let base = try TempDir("offline-remote")
        try fixture.bareCopy(to: base.sub("fx.git"))
        let daemon = try GitDaemon.start(basePath: base.path)
        defer { daemon.stop() }
        let url = daemon.url("fx.git")
        let home = try TempDir("offline-home")
        try gitfsOK(home: home.path, ["clone", url, "fx"])
        #expect(daemon.uploadPackRequests() >= 1)

        // The remote goes away.
        daemon.stop()
        #expect(!canConnect(port: daemon.port))
        let mirror = home.sub("repos/fx.git")
        let refsBefore = try git("for-each-ref", "--format=%(objectname) %(refname)", cwd: mirror)
        #expect(refsBefore.contains("refs/heads/main") && refsBefore.contains("refs/tags/v1.0"))

        let mp = try TempDir("offline-mp")
        defer { Self.unmount(home: home.path, mp.path) }
        let m = try offlineRunGitfs(home: home.path, ["mount", mp.path], seconds: 90)
        #expect(m.status == 0, "\(m.stderr)")
        #expect(Self.mounted(mp.path))

        // Walk and read every file of several revisions through the mount.
        for rev in ["main", "main~1", "feature/x/y", "v1.0", "nested/tag"] {
            let id = try git("rev-parse", rev + "^{commit}", cwd: fixture.path).trimmingCharacters(in: .whitespacesAndNewlines)
            let root = mp.sub("fx/commits/" + id)
            let want = try Self.expected(fixture, rev)
            let got = try Self.walk(root)
            #expect(got == want, "tree of \(rev) through the mount differs from git ls-tree")
            for (path, kind) in want {
                switch kind {
                case .dir:
                    continue
                case .symlink:
                    let target = try FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + path)
                    #expect(Array(target.utf8) == (try fixture.gitBlob(rev, path)), "\(rev):\(path)")
                case .file:
                    let bytes = try Data(contentsOf: URL(fileURLWithPath: root + "/" + path))
                    #expect(Array(bytes) == (try fixture.gitBlob(rev, path)), "\(rev):\(path)")
                }
            }
        }
        // Branch and tag symlinks lead to the same content.
        let readme = try Data(contentsOf: URL(fileURLWithPath: mp.sub("fx/branches/feature/x/y/README.md")))
        #expect(Array(readme) == (try fixture.gitBlob("feature/x/y", "README.md")))
        #expect(FileManager.default.fileExists(atPath: mp.sub("fx/tags/v1.0/src/main.c")))

        // Prefetch, cat and ls work (while the mount runs).
        let pf = try offlineRunGitfs(home: home.path, ["prefetch", "fx", "--rev", "main", "--rev", "v1.0", "--rev", "release-1.x"])
        #expect(pf.status == 0 && pf.out.hasPrefix("prefetched ") && pf.out.contains("0 failed"), "\(pf.out) \(pf.stderr)")
        let pf2 = try offlineRunGitfs(home: home.path, ["prefetch", "fx", "--fetch", "**/*.txt"])
        #expect(pf2.status == 0 && pf2.out.hasPrefix("prefetched "), "\(pf2.stderr)")
        #expect(pf2.stderr.hasPrefix("gitfs: warning: fetch failed (") && pf2.stderr.contains(url), "\(pf2.stderr)")
        for rev in ["main", "v1.0"] {
            let cat = try offlineRunGitfs(home: home.path, ["cat", "fx", rev + ":src/main.c"])
            let expectedMain = try fixture.gitBlob(rev, "src/main.c")
            #expect(cat.status == 0 && cat.stdout == expectedMain)
            let ls = try offlineRunGitfs(home: home.path, ["ls", "fx", rev])
            #expect(ls.status == 0, "\(ls.stderr)")
            let expectedLs = try git("ls-tree", "-l", rev, cwd: fixture.path)
            #expect(ls.out == expectedLs, "gitfs ls \(rev)")
        }
        let verify = try offlineRunGitfs(home: home.path, ["verify"])
        #expect(verify.status == 0, "\(verify.out) \(verify.stderr)")

        // Fetch fails with one line naming the remote, and keeps every ref.
        for args in [["fetch", "fx"], ["fetch"]] {
            let f = try offlineRunGitfs(home: home.path, args)
            #expect(f.status == 1)
            let lines = f.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("gitfs: error: ") && lines[0].contains(url), "\(f.stderr)")
            #expect(f.out.isEmpty)
            let refsAfter = try git("for-each-ref", "--format=%(objectname) %(refname)", cwd: mirror)
            #expect(refsAfter == refsBefore)
        }
        // The mount still serves after the failed fetch.
        #expect(FileManager.default.fileExists(atPath: mp.sub("fx/HEAD/README.md")))

        Self.unmount(home: home.path, mp.path)
        #expect(!Self.mounted(mp.path))
    }
}
