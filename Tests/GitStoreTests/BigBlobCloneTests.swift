import Foundation
import Testing
import TestSupport

/// `gitfs clone` and `gitfs fetch` of a repository holding blobs far bigger than any memory budget (zeros:
/// the pack stays a few hundred KiB) hold none of them whole: the peak resident size of gitfs and of every
/// child it reaped (git, index-pack, a local source's upload-pack and pack-objects), as `/usr/bin/time`
/// reports it from `wait4`, stays far below the blob size, and the mirror has every ref and the blob.
@Suite struct BigBlobCloneTests {
    static let blobSize = 384 << 20
    /// Peak resident size allowed for the whole clone (gitfs and its children): a quarter of the blob.
    static let limitKiB = 96 << 10

    /// Writes a blob of `size` zero bytes into `src` (streamed into a pack: git's bulk check-in of a file
    /// above core.bigFileThreshold) and commits it as `name` on main.
    func commitZeros(_ src: String, name: String, size: Int, work: TempDir) throws {
        let file = work.sub("zeros-\(size)")
        #expect(FileManager.default.createFile(atPath: file, contents: nil))
        #expect(truncate(file, off_t(size)) == 0) // sparse: nothing written to disk
        let blob = trimmed(try git("-c", "core.bigFileThreshold=1m", "hash-object", "-w", file, cwd: src))
        unlink(file)
        try git("update-index", "--add", "--cacheinfo", "100644,\(blob),\(name)", cwd: src)
        try git("commit", "-q", "-m", "zeros \(name)", cwd: src)
    }

    /// `gitfs ARGS` under `/usr/bin/time`: the result and the peak resident KiB of gitfs and its children.
    func measured(_ home: String, _ args: [String]) throws -> (RunResult, Int) {
        let r = try runBounded(["/usr/bin/time", "-f", "maxrss=%M", gitfsBinary, args[0], "--home", home] + args.dropFirst(),
                               seconds: 300)
        let line = r.stderr.split(separator: "\n").last(where: { $0.hasPrefix("maxrss=") })
        return (r, line.flatMap { Int($0.dropFirst(7)) } ?? -1)
    }

    @Test func cloneAndFetchOfHugeBlobsStayFarBelowTheBlobSize() throws {
        let work = try TempDir("bigclone")
        defer { work.remove() }
        let src = work.sub("src.git")
        try git("init", "-q", "-b", "main", src, cwd: "/tmp")
        try commitZeros(src, name: "big.bin", size: Self.blobSize, work: work)
        #expect(try FileSystemSize.of(src) < 8 << 20, "the source should be small")
        let daemon = try GitDaemon.start(basePath: work.path)
        defer { daemon.stop() }
        let home = try TempDir("bigclone-home")
        defer { home.remove() }

        for (name, url) in [("viadaemon", daemon.url("src.git")), ("viapath", src)] {
            let (r, kib) = try measured(home.path, ["clone", url, name])
            #expect(r.status == 0, "clone of \(url): \(r.stderr)")
            #expect(kib > 0 && kib < Self.limitKiB, "clone of \(url) peaked at \(kib) KiB for a \(Self.blobSize >> 20) MiB blob")
            let mirror = home.sub("repos/\(name).git")
            #expect(try refLines(mirror) == refLines(src + "/.git"))
            #expect(try git("--git-dir=\(mirror)", "symbolic-ref", "HEAD", cwd: "/tmp") == "refs/heads/main\n")
            #expect(trimmed(try git("--git-dir=\(mirror)", "cat-file", "-s", "main:big.bin", cwd: "/tmp")) == "\(Self.blobSize)")
            #expect(try git("--git-dir=\(mirror)", "count-objects", cwd: "/tmp").hasPrefix("0 objects"), "loose objects: the pack was unpacked")
        }

        // A second huge blob arrives by fetch, as bounded; the moved ref is printed.
        let before = trimmed(try git("rev-parse", "main", cwd: src))
        try commitZeros(src, name: "big2.bin", size: Self.blobSize + 4096, work: work)
        let after = trimmed(try git("rev-parse", "main", cwd: src))
        let (r, kib) = try measured(home.path, ["fetch", "viadaemon"])
        #expect(r.status == 0, "fetch: \(r.stderr)")
        #expect(kib > 0 && kib < Self.limitKiB, "fetch peaked at \(kib) KiB for a \(Self.blobSize >> 20) MiB blob")
        #expect(r.out == "viadaemon \(before) \(after) refs/heads/main\n", "fetch printed: \(r.out)")
        let mirror = home.sub("repos/viadaemon.git")
        #expect(try refLines(mirror) == refLines(src + "/.git"))
        #expect(trimmed(try git("--git-dir=\(mirror)", "cat-file", "-s", "main:big2.bin", cwd: "/tmp")) == "\(Self.blobSize + 4096)")
        #expect(try git("--git-dir=\(mirror)", "count-objects", cwd: "/tmp").hasPrefix("0 objects"), "loose objects: the pack was unpacked")
    }
}

/// Bytes on disk under a directory (allocated blocks, so sparse files count for what they use).
enum FileSystemSize {
    static func of(_ path: String) throws -> Int {
        let out = try run(["du", "-sk", path])
        return (Int(out.out.split(separator: "\t").first ?? "") ?? Int.max / 2048) * 1024
    }
}
