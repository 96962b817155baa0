import Foundation
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Every test of this target mounts real filesystems with the real binary: one serialized root suite,
/// the groups of tests are nested suites in the other files (serialization applies to nested suites).
@Suite(.serialized) struct MountTests {}

// MARK: - Walking a directory tree

/// What lstat and readlink say about one path.
struct NodeInfo: Equatable, CustomStringConvertible {
    enum Kind: Equatable { case file, directory, symlink(String), other }
    var kind: Kind
    var permissions: UInt32
    var size: Int
    var mtime: Int

    var description: String { "\(kind) mode \(String(permissions, radix: 8)) size \(size) mtime \(mtime)" }
    var isExecutableFile: Bool { kind == .file && permissions & 0o111 != 0 }
}

func lstatInfo(_ path: String) -> NodeInfo? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    let kind: NodeInfo.Kind
    switch st.st_mode & S_IFMT {
    case S_IFREG: kind = .file
    case S_IFDIR: kind = .directory
    case S_IFLNK:
        var buf = [Int8](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        kind = .symlink(n >= 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "<readlink failed>")
    default: kind = .other
    }
    return NodeInfo(kind: kind, permissions: UInt32(st.st_mode & 0o7777), size: Int(st.st_size), mtime: Int(st.st_mtim.tv_sec))
}

/// Names in a directory (without . and ..), with opendir/readdir; throws on failure.
func listDirectory(_ path: String) throws -> [String] {
    guard let d = opendir(path) else { throw TestFailure("opendir \(path): \(String(cString: strerror(errno)))") }
    defer { closedir(d) }
    var names: [String] = []
    errno = 0
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { p in
            p.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    if errno != 0 { throw TestFailure("readdir \(path): \(String(cString: strerror(errno)))") }
    return names
}

/// Every path under `root` ("" for the root itself) with its lstat info, not following symlinks.
func walkTree(_ root: String) throws -> [String: NodeInfo] {
    var out: [String: NodeInfo] = [:]
    func visit(_ rel: String) throws {
        let full = rel.isEmpty ? root : root + "/" + rel
        guard let info = lstatInfo(full) else { throw TestFailure("lstat \(full): \(String(cString: strerror(errno)))") }
        out[rel] = info
        if info.kind == .directory {
            for name in try listDirectory(full) { try visit(rel.isEmpty ? name : rel + "/" + name) }
        }
    }
    try visit("")
    return out
}

// <sys/xattr.h> is not part of the Glibc module: bind the two calls the tests need.
@_silgen_name("lgetxattr")
func c_lgetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int
@_silgen_name("setxattr")
func c_setxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32

/// `user.git.oid` of a path (lgetxattr), nil when absent.
func gitOIDAttribute(_ path: String) -> String? {
    var buf = [UInt8](repeating: 0, count: 128)
    let n = c_lgetxattr(path, "user.git.oid", &buf, buf.count)
    return n >= 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
}

// MARK: - git as the oracle

/// `git ls-tree -r -t -z ID` as path -> (mode, object id), plus "" -> the root tree.
func gitTreeObjects(_ repo: String, _ commit: String) throws -> [String: (mode: String, oid: String)] {
    var out: [String: (mode: String, oid: String)] = [:]
    out[""] = ("040000", try git("rev-parse", "\(commit)^{tree}", cwd: repo).trimmingCharacters(in: .whitespacesAndNewlines))
    let r = try gitBytes(["ls-tree", "-r", "-t", "-z", commit], cwd: repo)
    for record in r.stdout.split(separator: 0) {
        guard let tab = record.firstIndex(of: 0x09) else { continue }
        let meta = String(decoding: record[record.startIndex..<tab], as: UTF8.self).split(separator: " ")
        let path = String(decoding: record[(tab + 1)...], as: UTF8.self)
        out[path] = (String(meta[0]), String(meta[2]))
    }
    return out
}

/// Extracts `git archive ID` into `dest` (created).
func gitArchive(_ repo: String, _ commit: String, into dest: String) throws {
    try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
    let r = try run(["sh", "-c", "git archive --format=tar \"$1\" | tar -x -C \"$2\"", "sh", commit, dest], cwd: repo,
                    env: gitEnvironment)
    guard r.status == 0 else { throw TestFailure("git archive \(commit) | tar -x failed: \(r.stderr)") }
}

func commitTime(_ repo: String, _ commit: String) throws -> Int {
    Int(try git("show", "-s", "--format=%ct", commit, cwd: repo).trimmingCharacters(in: .whitespacesAndNewlines))!
}

func revParse(_ repo: String, _ rev: String) throws -> String {
    try git("rev-parse", "--verify", "-q", rev, cwd: repo).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Builds a repository at `dir` with `git fast-import` from a stream of commits: each commit is a
/// list of (path, content) set on top of the previous one. Commit i has committer time base + i*60.
/// `checkout: false` makes a bare repository (checking out many files is slow).
func fastImportRepo(at dir: String, branch: String = "main", commits: [[(String, [UInt8])]], base: Int = 1_700_100_000,
                    checkout: Bool = true) throws {
    if checkout { try git("init", "-q", "-b", branch, dir, cwd: "/tmp") } else { try git("init", "-q", "--bare", "-b", branch, dir, cwd: "/tmp") }
    var stream: [UInt8] = []
    func add(_ s: String) { stream += Array(s.utf8) }
    for (i, files) in commits.enumerated() {
        add("commit refs/heads/\(branch)\nmark :\(i + 1)\n")
        add("committer Fixture <fixture@example.com> \(base + i * 60) +0000\n")
        let msg = "commit \(i)\n"
        add("data \(msg.utf8.count)\n\(msg)")
        if i > 0 { add("from :\(i)\n") }
        for (path, content) in files {
            add("M 100644 inline \(path)\ndata \(content.count)\n")
            stream += content
            add("\n")
        }
        add("\n")
    }
    try gitBytes(["fast-import", "--quiet"], cwd: dir, stdin: stream)
    if checkout { try git("checkout", "-q", "-f", branch, cwd: dir) }
}

/// Shared state for readers on many threads.
final class Failures: Sendable {
    private let items = Mutex<[String]>([])
    func add(_ s: String) { items.withLock { if $0.count < 50 { $0.append(s) } } }
    var all: [String] { items.withLock { $0 } }
}

/// Runs `body(i)` on `count` threads and waits up to `timeout` seconds; false when some did not finish.
@discardableResult
func onThreads(_ count: Int, timeout: Double, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        Thread.detachNewThread {
            body(i)
            group.leave()
        }
    }
    return group.wait(timeout: .now() + timeout) == .success
}

/// One line per failure, for #expect messages.
func summary(_ items: [String]) -> String { items.prefix(20).joined(separator: "\n") }
