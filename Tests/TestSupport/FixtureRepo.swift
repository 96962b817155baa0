import Foundation

/// A non-bare git repository built with the git CLI that exercises what gitfs must show faithfully:
/// branches with `/` in their names, annotated and lightweight tags, symlinks (relative, absolute,
/// dangling), executable files, a submodule gitlink, an empty file, binary files, names with spaces,
/// unicode and leading dashes, a 20 MB pseudo-random file, deep directories, several commits with edits,
/// packed with `git gc` so packs hold deltas. Commit dates are fixed, so ids are the same on every run.
public struct FixtureRepo: Sendable {
    /// The work tree (its .git holds the repository).
    public let path: String
    public let defaultBranch: String
    /// Branch name -> commit id (hex).
    public let branches: [String: String]
    /// Tag name -> commit id it peels to (hex).
    public let tags: [String: String]
    /// Tags that are annotated (tag objects).
    public let annotatedTags: Set<String>
    /// Revisions worth comparing entry by entry (branches, tags, `main~N`).
    public let revisions: [String]
    /// The id the submodule gitlink `sub` points at.
    public static let submoduleID = "1234567890abcdef1234567890abcdef12345678"
    /// Size of `big/random.bin`.
    public static let bigFileSize = 20 << 20

    /// Builds the fixture in `dir/fixture`. `bigFile: false` leaves out the 20 MB file (faster).
    public static func make(in dir: String, bigFile: Bool = true) throws -> FixtureRepo {
        let p = dir + "/fixture"
        let fm = FileManager.default
        try fm.createDirectory(atPath: p, withIntermediateDirectories: true)
        func write(_ rel: String, _ text: String) throws { try write(rel, Array(text.utf8)) }
        func write(_ rel: String, _ bytes: [UInt8]) throws {
            let full = p + "/" + rel
            try fm.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard fm.createFile(atPath: full, contents: Data(bytes)) else { throw TestFailure("cannot write \(full)") }
        }
        func commit(_ message: String, date: Int) throws {
            let d = "@\(1_700_000_000 + date * 3600) +0000"
            try git("add", "-A", cwd: p)
            try git("commit", "-q", "-m", message, cwd: p, env: ["GIT_AUTHOR_DATE": d, "GIT_COMMITTER_DATE": d])
        }

        try git("init", "-q", "-b", "main", cwd: p)
        // Commit 1: the variety of entry kinds.
        try write("README.md", "# Fixture\n\nA repository for gitfs tests.\n")
        try write("src/main.c", (1...200).map { "int line\($0) = \($0);\n" }.joined())
        try write("bin/run.sh", "#!/bin/sh\necho run\n")
        try write("empty.txt", "")
        try write("binary.dat", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 8)) })
        try write("name with spaces.txt", "spaces\n")
        try write("ünïcödé ✓.txt", "unicode\n")
        try write("-leading-dash.txt", "dash\n")
        try write("tab\there.txt", "tab in name\n")
        try write("quote\"back\\slash.txt", "quotes\n")
        try write("a/b/c/d/e/f/g/h/deep.txt", "deep\n")
        try write("data/lines.txt", (1...3000).map { "line \($0) of a text file that changes a little between commits\n" }.joined())
        guard chmod(p + "/bin/run.sh", 0o755) == 0 else { throw TestFailure("chmod failed") }
        for (name, target) in [("link-rel", "README.md"), ("link-abs", "/etc/hostname"),
                               ("link-dangling", "does/not/exist"), ("link-dir", "src"), ("a/b/up", "../../README.md")] {
            guard symlink(target, p + "/" + name) == 0 else { throw TestFailure("symlink \(name) failed") }
        }
        try commit("initial: every kind of entry", date: 0)
        try git("tag", "-a", "v1.0", "-m", "release 1.0", cwd: p, env: ["GIT_COMMITTER_DATE": "@1700000100 +0000"])

        // Commit 2: a submodule gitlink and edits.
        try git("update-index", "--add", "--cacheinfo", "160000,\(submoduleID),sub", cwd: p)
        try fm.createDirectory(atPath: p + "/sub", withIntermediateDirectories: true) // an unpopulated submodule
        try write("src/main.c", (1...200).map { "int line\($0) = \($0 % 7 == 0 ? $0 * 2 : $0);\n" }.joined())
        try write("data/lines.txt", (1...3000).map { "line \($0) of a text file that changes \($0 % 500 == 0 ? "a lot" : "a little") between commits\n" }.joined())
        try commit("second: submodule gitlink, edits", date: 1)
        try git("tag", "v1.1-light", cwd: p)

        // A branch with slashes, diverging from here.
        try git("checkout", "-q", "-b", "feature/x/y", cwd: p)
        try write("feature.txt", "feature work\n")
        try git("rm", "-q", "empty.txt", cwd: p)
        try commit("feature: add and delete", date: 2)
        try git("tag", "-a", "nested/tag", "-m", "a tag with a slash", cwd: p, env: ["GIT_COMMITTER_DATE": "@1700010000 +0000"])
        try git("checkout", "-q", "main", cwd: p)

        // Commit 3: the big file and more edits.
        if bigFile {
            try write("big/random.bin", pseudoRandomBytes(count: bigFileSize, seed: 0x9E37_79B9_7F4A_7C15))
        }
        try write("data/lines.txt", (1...3100).map { "line \($0) of a text file that changes \($0 % 300 == 0 ? "again" : "a little") between commits\n" }.joined())
        try write("bin/tool", "#!/bin/sh\necho tool\n")
        guard chmod(p + "/bin/tool", 0o755) == 0 else { throw TestFailure("chmod failed") }
        try commit("third: big file, more edits", date: 3)
        try write("README.md", "# Fixture\n\nA repository for gitfs tests.\n\nNow with a fourth commit.\n")
        try commit("fourth: readme", date: 4)
        try git("branch", "release-1.x", "v1.1-light", cwd: p)
        try git("gc", "-q", cwd: p)

        var branches: [String: String] = [:]
        for line in try git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", cwd: p).split(separator: "\n") {
            let f = line.split(separator: " ")
            branches[String(f[0])] = String(f[1])
        }
        var tags: [String: String] = [:]
        var annotated: Set<String> = []
        for line in try git("for-each-ref", "--format=%(refname:strip=2) %(objecttype) %(objectname) %(*objectname)", "refs/tags", cwd: p).split(separator: "\n") {
            let f = line.split(separator: " ")
            let isTag = f[1] == "tag"
            tags[String(f[0])] = String(isTag ? f[3] : f[2])
            if isTag { annotated.insert(String(f[0])) }
        }
        return FixtureRepo(path: p, defaultBranch: "main", branches: branches, tags: tags, annotatedTags: annotated,
                           revisions: ["main", "main~1", "main~3", "feature/x/y", "v1.0", "v1.1-light", "nested/tag", "release-1.x"])
    }

    /// One fixture per test process (with the big file), built on first use and removed at exit.
    public static func shared() throws -> FixtureRepo {
        sharedLock.lock()
        defer { sharedLock.unlock() }
        if let f = sharedFixture { return f }
        let dir = try TempDir("fixture")
        let f = try make(in: dir.path)
        sharedDir = dir
        sharedFixture = f
        atexit { sharedDir?.remove() }
        return f
    }

    /// `git clone --bare` of the fixture into `dest` (all branches and tags; cheap, hardlinked): a
    /// repository a test may change freely.
    public func bareCopy(to dest: String) throws {
        try git("clone", "-q", "--bare", path, dest, cwd: "/tmp")
    }

    /// The bytes git gives for `REV:PATH`.
    public func gitBlob(_ rev: String, _ path: String) throws -> [UInt8] {
        try gitBytes(["cat-file", "blob", "\(rev):\(path)"], cwd: self.path).stdout
    }
}

nonisolated(unsafe) private var sharedFixture: FixtureRepo?
nonisolated(unsafe) private var sharedDir: TempDir?
private let sharedLock = NSLock()

/// `count` deterministic pseudo-random bytes (xorshift64*): incompressible, the same on every run.
public func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var x = seed == 0 ? 1 : seed
    out.withUnsafeMutableBytes { buf in
        var i = 0
        while i + 8 <= count {
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27
            buf.storeBytes(of: (x &* 0x2545_F491_4F6C_DD1D).littleEndian, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27
            buf[i] = UInt8(truncatingIfNeeded: x &* 0x2545_F491_4F6C_DD1D)
            i += 1
        }
    }
    return out
}
