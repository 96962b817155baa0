import Basics
import FuseServer
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small deterministic filesystem used to exercise FuseMount through real mounts: nested directories,
/// files with computable content (one of a few MB), an executable, a symlink, a directory of 10,000
/// entries, slow files (each read sleeps), a directory that answers any lookup of `n*` (fresh names), and
/// extended attributes. It is the fixture the server serves, not a mock of FUSE.
final class FixtureFS: FuseFileSystem {
    typealias Node = String   // absolute path inside the mount, "/" for the root

    enum Content: Sendable {
        case bytes([UInt8])
        case generated(seed: UInt64, size: Int)

        var size: Int {
            switch self {
            case .bytes(let b): return b.count
            case .generated(_, let size): return size
            }
        }

        /// Generated content is a fixed pseudo-random pattern of prime length, started at a seed-dependent
        /// position: copying is memcpy (fast even in debug builds), and a block read from the wrong offset
        /// does not match (no power-of-two period).
        static let pattern: [UInt8] = {
            var state: UInt64 = 0x1234_5678_9ABC_DEF1
            return (0..<65_521).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
        }()

        func copy(offset: Int, into buffer: UnsafeMutableRawBufferPointer) -> Int {
            let n = max(0, min(buffer.count, size - offset))
            guard n > 0 else { return 0 }
            switch self {
            case .bytes(let b):
                b.withUnsafeBytes { src in
                    buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
                }
            case .generated(let seed, _):
                Self.pattern.withUnsafeBytes { p in
                    var position = Int((UInt64(offset) &+ seed &* 4099) % UInt64(p.count))
                    var done = 0
                    while done < n {
                        let k = min(n - done, p.count - position)
                        (buffer.baseAddress! + done).copyMemory(from: p.baseAddress! + position, byteCount: k)
                        done += k
                        position = 0
                    }
                }
            }
            return n
        }

        var allBytes: [UInt8] {
            var out = [UInt8](repeating: 0, count: size)
            _ = out.withUnsafeMutableBytes { copy(offset: 0, into: $0) }
            return out
        }
    }

    enum Spec: Sendable {
        case directory([String])
        case file(Content, executable: Bool, slow: Bool)
        case symlink(String)
    }

    struct Handle: Sendable {
        let path: String
        let content: Content
        let slow: Bool
    }

    static let manyCount = 10_000
    static let slowCount = 32
    static let slowSize = 8 << 20
    static let bigSize = (4 << 20) + 123
    static let mtime: Int64 = 1_700_000_000
    static let bigXattr = [UInt8]((0..<300).map { UInt8($0 % 251) })

    let specs: [String: Spec]
    /// Sleep per read call of the files in /slow, in microseconds.
    let slowReadMicroseconds: UInt32
    let opens = Atomic<Int>(0)
    let releases = Atomic<Int>(0)
    let lookups = Atomic<Int>(0)

    var rootNode: String { "/" }

    init(slowReadMicroseconds: UInt32 = 100_000) {
        self.slowReadMicroseconds = slowReadMicroseconds
        var specs: [String: Spec] = [:]
        specs["/"] = .directory(["hello.txt", "exec.sh", "dir", "big.bin", "link", "many", "slow", "gen", "empty"])
        specs["/hello.txt"] = .file(.bytes(Array("hello world\n".utf8)), executable: false, slow: false)
        specs["/exec.sh"] = .file(.bytes(Array("#!/bin/sh\necho hi\n".utf8)), executable: true, slow: false)
        specs["/empty"] = .file(.bytes([]), executable: false, slow: false)
        specs["/dir"] = .directory(["a.txt", "sub"])
        specs["/dir/a.txt"] = .file(.bytes(Array("file a\n".utf8)), executable: false, slow: false)
        specs["/dir/sub"] = .directory(["deep.txt"])
        specs["/dir/sub/deep.txt"] = .file(.generated(seed: 7, size: 70_000), executable: false, slow: false)
        specs["/big.bin"] = .file(.generated(seed: 42, size: Self.bigSize), executable: false, slow: false)
        specs["/link"] = .symlink("dir/sub/deep.txt")
        specs["/gen"] = .directory([])
        var many: [String] = []
        for i in 0..<Self.manyCount {
            let name = String(format: "f%05d", i)
            many.append(name)
            specs["/many/" + name] = .file(.bytes(Array("entry \(i)\n".utf8)), executable: false, slow: false)
        }
        specs["/many"] = .directory(many)
        var slow: [String] = []
        for i in 0..<Self.slowCount {
            let name = String(format: "s%02d", i)
            slow.append(name)
            specs["/slow/" + name] = .file(.generated(seed: UInt64(1000 + i), size: Self.slowSize), executable: false, slow: true)
        }
        specs["/slow"] = .directory(slow)
        self.specs = specs
    }

    static func child(_ parent: String, _ name: String) -> String {
        parent == "/" ? "/" + name : parent + "/" + name
    }

    /// The spec of a path, including the synthetic `/gen/n*` files.
    func spec(_ path: String) -> Spec? {
        if let s = specs[path] { return s }
        if path.hasPrefix("/gen/n"), !path.dropFirst(5).contains("/") {
            return .file(.bytes(Array("gen:\(path.dropFirst(5))\n".utf8)), executable: false, slow: false)
        }
        return nil
    }

    func attributes(for spec: Spec) -> NodeAttributes {
        switch spec {
        case .directory:
            return NodeAttributes(kind: .directory, permissions: 0o555, size: 4096, mtime: Self.mtime, linkCount: 2, ttl: 60)
        case .file(let content, let executable, _):
            return NodeAttributes(kind: .regularFile, permissions: executable ? 0o555 : 0o444,
                                  size: UInt64(content.size), mtime: Self.mtime, ttl: 60)
        case .symlink(let target):
            return NodeAttributes(kind: .symlink, permissions: 0o777, size: UInt64(target.utf8.count), mtime: Self.mtime, ttl: 60)
        }
    }

    func attributes(of node: String) throws(Errno) -> NodeAttributes {
        guard let spec = spec(node) else { throw .noEntry }
        return attributes(for: spec)
    }

    func lookup(_ name: [UInt8], in parent: String) throws(Errno) -> (node: String, attributes: NodeAttributes) {
        lookups.add(1, ordering: .relaxed)
        guard case .directory = spec(parent) else { throw .notDirectory }
        let path = Self.child(parent, String(decoding: name, as: UTF8.self))
        // "/gen/nX~k" is another name of node "/gen/nX" (like a hard link).
        let node = path.hasPrefix("/gen/n") ? String(path.split(separator: "~", maxSplits: 1)[0]) : path
        guard let spec = spec(node) else { throw .noEntry }
        return (node, attributes(for: spec))
    }

    func readDirectory(_ node: String) throws(Errno) -> (entries: [DirectoryEntry<String>], options: OpenedDirectory) {
        guard let spec = spec(node) else { throw .noEntry }
        guard case .directory(let names) = spec else { throw .notDirectory }
        let entries = names.map { name -> DirectoryEntry<String> in
            let path = Self.child(node, name)
            return DirectoryEntry(name: Array(name.utf8), node: path, attributes: attributes(for: self.spec(path)!))
        }
        return (entries, OpenedDirectory(cacheEntries: node != "/gen"))
    }

    func readLink(_ node: String) throws(Errno) -> [UInt8] {
        guard case .symlink(let target) = spec(node) else { throw .invalid }
        return Array(target.utf8)
    }

    func open(_ node: String) throws(Errno) -> OpenedFile<Handle> {
        guard let spec = spec(node) else { throw .noEntry }
        guard case .file(let content, _, let slow) = spec else { throw .isDirectory }
        opens.add(1, ordering: .relaxed)
        return OpenedFile(handle: Handle(path: node, content: content, slow: slow), keepCache: !slow)
    }

    func read(_ handle: Handle, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        if handle.slow { usleep(slowReadMicroseconds) }
        return handle.content.copy(offset: offset, into: buffer)
    }

    func release(_ handle: Handle) {
        releases.add(1, ordering: .relaxed)
    }

    func extendedAttributes(of node: String) throws(Errno) -> [(name: String, value: [UInt8])] {
        guard spec(node) != nil else { throw .noEntry }
        var result: [(name: String, value: [UInt8])] = [("user.fixture.path", Array(node.utf8))]
        if node == "/hello.txt" { result.append(("user.fixture.big", Self.bigXattr)) }
        return result
    }

    func statistics() -> (totalBytes: UInt64, files: UInt64) {
        (UInt64(Self.bigSize + Self.slowCount * Self.slowSize), UInt64(specs.count))
    }

    /// The bytes a file at `path` must read as.
    func expectedContent(_ path: String) -> [UInt8]? {
        guard case .file(let content, _, _) = spec(path) else { return nil }
        return content.allBytes
    }
}
