import Foundation
import Basics
import FuseServer
import GitFS
import GitStore
import Logging
import ReadModel
import TestSupport

/// The git filesystem type driven directly, without FUSE or root (as mountpoint-s3 tests its
/// filesystem without the kernel): a home in a temporary directory, its mirrors cloned through the
/// mirror store, a resolver and a GitFileSystem over them, and helpers that walk paths by lookup the
/// way the kernel does. Every answer is the one a mount would send for the same request.
final class DirectFS: @unchecked Sendable {
    let dir: TempDir
    let home: Home
    let resolver: Resolver
    let fs: GitFileSystem

    /// Clones every (source, name) into a fresh home and opens the filesystem over it.
    /// `namesOnlyWindow`: GitFileSystem's (how long a file use keeps listings full).
    init(_ label: String, mirrors: [(source: String, name: String)], namesOnlyWindow: Duration = .seconds(2)) throws {
        dir = try TempDir(label)
        home = Home(path: dir.sub("home"))
        try FileManager.default.createDirectory(atPath: home.reposPath, withIntermediateDirectories: true)
        let store = MirrorStore(home: home)
        for m in mirrors { _ = try store.clone(url: m.source, name: m.name, progress: nil) }
        let logger = Logger(label: "gitfs.test")
        resolver = Resolver(store: store, cache: try Resolver.openCache(home: home), logger: logger)
        fs = GitFileSystem(resolver: resolver, logger: logger, namesOnlyWindow: namesOnlyWindow)
    }

    deinit { resolver.shutdown() }

    /// The node at `path` ("" for the root; components separated by "/"), found by one lookup per
    /// component from the root, as the kernel resolves a path.
    func node(_ path: String) throws(Errno) -> GitFSNode {
        var node = fs.rootNode
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            node = try fs.lookup(Array(component.utf8), in: node).node
        }
        return node
    }

    /// Like `node`, with the last component given as raw bytes (names that are not UTF-8 or too long).
    func node(_ parent: String, raw name: [UInt8]) throws(Errno) -> GitFSNode {
        try fs.lookup(name, in: try node(parent)).node
    }

    func attributes(_ path: String) throws(Errno) -> NodeAttributes { try fs.attributes(of: try node(path)) }

    /// The errno a lookup of `path` fails with, nil when it succeeds.
    func lookupError(_ path: String) -> Int32? {
        do throws(Errno) { _ = try node(path); return nil } catch { return error.rawValue }
    }

    /// The errno `body` fails with, nil when it succeeds.
    func failure<T>(_ body: () throws(Errno) -> T) -> Int32? {
        do throws(Errno) { _ = try body(); return nil } catch { return error.rawValue }
    }

    /// Names of the listing of `path`, in listing order.
    func names(_ path: String) throws(Errno) -> [String] {
        try fs.readDirectory(try node(path)).entries.map { String(decoding: $0.name, as: UTF8.self) }
    }

    /// The whole content of a file node, read in 128 KiB requests as the kernel would.
    func readAll(_ node: GitFSNode) throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 << 10, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let n = try fs.read(node: node, offset: out.count, into: chunk)
            if n <= 0 { return out }
            out += chunk[0..<n]
        }
    }

    func readAll(_ path: String) throws(Errno) -> [UInt8] { try readAll(try node(path)) }

    func link(_ path: String) throws(Errno) -> String {
        String(decoding: try fs.readLink(try node(path)), as: UTF8.self)
    }

    func xattr(_ path: String, _ name: String) throws(Errno) -> String? {
        try fs.extendedAttributes(of: try node(path)).first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }
}

// MARK: - damaging packs

/// Flips one byte in the middle of the zlib stream of object `oid` in the pack of the bare repository
/// at `gitDir` (offsets from `git verify-pack -v`). The object must be stored whole (not as a delta)
/// and its compressed form at least 64 bytes, so the byte is inside the deflate data, not the header.
func damageObject(_ oid: String, inPackOf gitDir: String) throws {
    let packDir = gitDir + "/objects/pack"
    let idx = try FileManager.default.contentsOfDirectory(atPath: packDir).filter { $0.hasSuffix(".idx") }
    guard idx.count == 1 else { throw TestFailure("expected one pack in \(packDir), found \(idx)") }
    let listing = try git("verify-pack", "-v", packDir + "/" + idx[0], cwd: gitDir)
    // "<oid> <type> <size> <size-in-pack> <offset>" (delta entries carry depth and base after it).
    guard let line = listing.split(separator: "\n").first(where: { $0.hasPrefix(oid + " ") }) else {
        throw TestFailure("\(oid) is not in the pack")
    }
    let f = line.split(separator: " ", omittingEmptySubsequences: true)
    guard f.count == 5, let inPack = Int(f[3]), let offset = Int(f[4]), inPack >= 64 else {
        throw TestFailure("\(oid) is stored as a delta or too small to damage: \(line)")
    }
    let pack = packDir + "/" + idx[0].dropLast(4) + ".pack"
    guard let h = FileHandle(forUpdatingAtPath: pack) else { throw TestFailure("cannot open \(pack)") }
    defer { try? h.close() }
    let at = UInt64(offset + inPack / 2)
    try h.seek(toOffset: at)
    guard let byte = try h.read(upToCount: 1)?.first else { throw TestFailure("short pack \(pack)") }
    try h.seek(toOffset: at)
    try h.write(contentsOf: Data([byte ^ 0x5A]))
}

/// Text that compresses (Huffman-coded deflate, not stored blocks) but is unique to `seed`.
func uniqueText(lines: Int, seed: UInt64) -> [UInt8] {
    let random = pseudoRandomBytes(count: lines * 24, seed: seed)
    var out: [UInt8] = []
    for i in 0..<lines {
        out += Array("line \(i): ".utf8)
        for b in random[(i * 24)..<(i * 24 + 24)] { out += Array(String(b % 64, radix: 8).utf8) + [0x20] }
        out.append(0x0A)
    }
    return out
}
