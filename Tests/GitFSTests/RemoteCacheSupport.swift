import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// What the remote-cache tests share: one bare copy of the fixture that every "machine" (a home of its
/// own) clones, the blobs of its default branch as git has them, and reading them through a mount.
struct RemoteFleet {
    let base: TempDir
    let fixture: FixtureRepo
    /// `file://` URL of the bare copy every home clones.
    let source: String
    /// The regular files of the default branch: path and blob id (symlinks and submodules left out).
    let files: [(path: String, id: String)]

    init() throws {
        fixture = try FixtureRepo.shared()
        base = try TempDir("remote-fleet")
        try fixture.bareCopy(to: base.sub("fx.git"))
        source = "file://" + base.sub("fx.git")
        let out = try gitBytes(["ls-tree", "-r", "-z", fixture.defaultBranch], cwd: fixture.path).stdout
        var files: [(String, String)] = []
        for rec in out.split(separator: 0) {
            let line = String(decoding: rec, as: UTF8.self)
            let tab = line.firstIndex(of: "\t")!
            let meta = line[..<tab].split(separator: " ")
            guard meta[1] == "blob", meta[0] != "120000" else { continue }
            files.append((String(line[line.index(after: tab)...]), String(meta[2])))
        }
        self.files = files
    }

    /// Distinct blob ids of the files.
    var blobIDs: Set<String> { Set(files.map(\.id)) }

    /// A home (a "machine") with the fixture cloned as `fx` and `environment` for every gitfs it runs.
    func machine(_ label: String, environment: [String: String]) throws -> MountedHome {
        let m = try MountedHome(label)
        m.environment = environment
        try m.clone(source, as: "fx")
        return m
    }

    /// Reads `subset` (default: every file) of the default branch through the mount and expects every
    /// byte to equal git's.
    func readAndCompare(_ m: MountedHome, _ subset: ArraySlice<(path: String, id: String)>? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        for f in subset ?? files[...] {
            let got = FileManager.default.contents(atPath: m.path("fx/HEAD/" + f.path)).map { [UInt8]($0) }
            let want = try fixture.gitBlob(fixture.defaultBranch, f.path)
            #expect(got == want, "\(f.path): \(got.map { "\($0.count) bytes" } ?? "unreadable") through the mount, \(want.count) in git",
                    sourceLocation: sourceLocation)
        }
    }

    /// The mount's stats as text (for string fields such as remote_state).
    static func statsText(_ m: MountedHome) throws -> String {
        let r = try runBounded(["cat", m.path(".gitfs/stats")], seconds: 20)
        return String(decoding: r.stdout, as: UTF8.self)
    }

    /// The stderr lines of a command that mention the remote cache.
    static func remoteLines(_ r: RunResult) -> [Substring] {
        r.stderr.split(separator: "\n").filter { $0.contains("remote cache") }
    }
}
