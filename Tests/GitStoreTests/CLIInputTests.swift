import Foundation
import Testing
import TestSupport

/// Bad values and odd homes on the command line: one `gitfs: error:` line and the right exit status,
/// never a crash, and nothing created by commands that only look.
@Suite struct CLIInputTests {

    /// A one-commit repository made with git.
    private func smallRepo(in dir: TempDir) throws -> String {
        let src = dir.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try git("init", "-q", "-b", "main", cwd: src)
        _ = FileManager.default.createFile(atPath: src + "/README", contents: Data("hello\n".utf8))
        try git("add", "README", cwd: src)
        try git("commit", "-q", "-m", "one", cwd: src)
        return src
    }

    static let overflowing: [[String]] = [
        ["gc", "--max-size", "99999999999G"],
        ["gc", "--max-size", "9223372036854775807K"],
        ["gc", "--max-size", "9223372036854775808"],
        ["gc", "--max-age", "99999999999999999d"],
        ["gc", "--max-age", "9223372036854775807m"],
        ["gc", "--max-size", "-1"],
        ["gc", "--max-age", "-1d"],
        ["gc", "--max-size", "G"],
        ["mount", "MNT", "--cache-max-size", "99999999999G"],
        ["mount", "MNT", "--cache-max-size", "-5M"],
    ]

    @Test(arguments: overflowing)
    func sizesAndDurationsOutOfRangeAreOneUsageError(_ args: [String]) throws {
        let dir = try TempDir("units")
        let mnt = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let argv = args.map { $0 == "MNT" ? mnt : $0 }
        let r = try runBounded([gitfsBinary] + argv + ["--home", dir.sub("home")], seconds: 30)
        expectOneErrorLine(r, status: 2, argv.joined(separator: " "))
        let value = argv.last!
        #expect(r.stderr.contains("'\(value)'"), "the error names the value: \(r.stderr)")
        #expect(!r.stderr.contains("Missing value"), "\(r.stderr)")
        #expect(mountLine(at: mnt) == nil)
    }

    @Test func theLargestSizesAndDurationsAreAccepted() throws {
        let dir = try TempDir("units")
        for args in [["--max-size", "8589934591G"], ["--max-size", "9223372036854775807"], ["--max-age", "106751991167300d"]] {
            let r = try runBounded([gitfsBinary, "gc", "--dry-run", "--home", dir.sub("home")] + args, seconds: 30)
            #expect(r.status == 0, "gc \(args): \(r.stderr)")
        }
    }

    @Test func homeBeforeOrAfterTheSubcommand() throws {
        let dir = try TempDir("home")
        let src = try smallRepo(in: dir)
        let home = dir.sub("home")
        let cloned = try runBounded([gitfsBinary, "--home", home, "clone", src, "first"], seconds: 60)
        #expect(cloned.status == 0, "\(cloned.stderr)")
        #expect(FileManager.default.fileExists(atPath: home + "/repos/first.git/HEAD"))
        let equals = try runBounded([gitfsBinary, "--home=\(home)", "clone", src, "second"], seconds: 60)
        #expect(equals.status == 0, "\(equals.stderr)")
        for argv in [["--home", home, "list"], ["list", "--home", home], ["--home=\(home)", "list", "--json"]] {
            let r = try runBounded([gitfsBinary] + argv, seconds: 30)
            #expect(r.status == 0 && r.out.contains("first") && r.out.contains("second"), "gitfs \(argv): \(r.out) \(r.stderr)")
        }
        let cat = try runBounded([gitfsBinary, "--home", home, "cat", "first", "main:README"], seconds: 30)
        #expect(cat.status == 0 && cat.out == "hello\n", "\(cat.stderr)")
    }

    @Test func aHomeThatIsAFileIsOneClearError() throws {
        let dir = try TempDir("filehome")
        let src = try smallRepo(in: dir)
        let file = dir.sub("home")
        _ = FileManager.default.createFile(atPath: file, contents: Data("not a directory\n".utf8))
        let mnt = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let commands: [[String]] = [["list"], ["clone", src, "x"], ["fetch"], ["stats"], ["verify"], ["gc"],
                                    ["ls", "x", "main"], ["cat", "x", "main:README"], ["remove", "x"], ["mount", mnt],
                                    ["prefetch", "x"]]
        for home in [file, file + "/below"] {
            for args in commands {
                let r = try runBounded([gitfsBinary, "--home", home] + args, seconds: 30)
                expectOneErrorLine(r, status: 1, "\(args) with home \(home)")
                #expect(r.stderr.contains("is not a directory"), "\(args): \(r.stderr)")
                #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("no repositories"), "\(r.stderr)")
            }
        }
        #expect((try? String(contentsOfFile: file, encoding: .utf8)) == "not a directory\n")
        #expect(mountLine(at: mnt) == nil)
    }

    @Test func commandsThatOnlyLookCreateNoCache() throws {
        let dir = try TempDir("nocache")
        let src = try smallRepo(in: dir)
        let home = dir.sub("home")
        try gitfsOK(home: home, ["clone", src, "x"])
        try? FileManager.default.removeItem(atPath: home + "/cache")
        for args in [["list"], ["list", "--json"], ["stats"], ["stats", "--json"], ["verify"]] {
            let r = try runGitfs(home: home, args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: home + "/cache"), "gitfs \(args) created cache/")
        }
        let stats = try runGitfs(home: home, ["stats", "--json"])
        #expect(stats.out.contains("\"cache_entries\" : 0"), "\(stats.out)")
        // An empty home (no repos/, no cache/) stays empty too.
        let empty = dir.sub("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        for args in [["list"], ["stats"], ["verify"]] { _ = try runGitfs(home: empty, args) }
        #expect((try FileManager.default.contentsOfDirectory(atPath: empty)).isEmpty)
    }

    /// A password in a remote URL reaches no error line: not through libgit2's messages (a full clone),
    /// not through git's stderr (a blobless clone, run by the git command), and no mirror is left behind.
    @Test func aPasswordInACloneURLIsNeverPrinted() throws {
        let dir = try TempDir("secret-url")
        let home = dir.sub("home")
        // Port 9 (discard) on loopback: nothing listens, the transfer fails at once.
        for extra in [[], ["--filter=blob:none"]] {
            for url in ["http://me:s3cr3t-pw@127.0.0.1:9/x.git", "https://me:s3cr3t-pw@127.0.0.1:9/x.git?token=t0ken-val"] {
                let r = try runGitfs(home: home, ["clone"] + extra + [url, "x"])
                #expect(r.status == 1, "\(extra) \(url): \(r.status) \(r.stderr)")
                #expect(r.stderr.hasPrefix("gitfs: error:"), "\(r.stderr)")
                #expect(!r.stderr.contains("s3cr3t") && !r.out.contains("s3cr3t"), "password shown: \(r.stderr)")
                #expect(!r.stderr.contains("t0ken-val"), "token shown: \(r.stderr)")
                #expect(!FileManager.default.fileExists(atPath: home + "/repos/x.git"))
            }
        }
    }
}
