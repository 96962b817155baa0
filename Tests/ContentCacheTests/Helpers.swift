import Basics
@testable import ContentCache
import Foundation
import GitStore
import Synchronization
import Testing

/// git's blob id of `bytes`, as a cache key (libgit2's git_odb_hash; cross-checked against
/// `git hash-object` in a test).
func gitKey(_ bytes: [UInt8]) -> ObjectID {
    bytes.withUnsafeBytes { c in GitHash.blobID(of: c) }
}

let gitVerifier: ContentCache.Verifier = GitHash.isBlob

/// A temporary folder removed at deinit.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "/cc-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A settable clock for tests.
final class TestClock: Sendable {
    let now = Atomic<UInt32>(1_700_000_000)
    func advance(_ s: UInt32) { now.add(s, ordering: .relaxed) }
    var closure: @Sendable () -> UInt32 { { [self] in now.load(ordering: .relaxed) } }
}

func openCache(_ dir: String, clock: TestClock? = nil, chunkLog2: Int = ContentCache.defaultChunkLog2) throws -> ContentCache {
    if let clock {
        return try ContentCache(directory: dir, chunkLog2: chunkLog2, clock: clock.closure, verifier: gitVerifier)
    }
    return try ContentCache(directory: dir, chunkLog2: chunkLog2, verifier: gitVerifier)
}

/// Deterministic content: text-like (compressible) or random (incompressible).
func makeContent(_ size: Int, seed: UInt64, random: Bool = false) -> [UInt8] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8](repeating: 0, count: size)
    let words = Array("let value = cache.lookup(key) // gitfs content \n func read(offset: Int) { }\n".utf8)
    for i in 0..<size {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        out[i] = random ? UInt8(truncatingIfNeeded: s) : (s % 29 == 0 ? UInt8(truncatingIfNeeded: s >> 8) : words[(i + Int(seed)) % words.count])
    }
    return out
}

func readAll(_ e: CacheEntry) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: e.size)
    var off = 0
    while off < e.size {
        let n = try out.withUnsafeMutableBytes { try e.read(offset: off, into: UnsafeMutableRawBufferPointer(rebasing: $0[off...])) }
        if n == 0 { break }
        off += n
    }
    #expect(off == e.size)
    return out
}

@discardableResult
func store(_ c: ContentCache, _ bytes: [UInt8]) throws -> ObjectID {
    let k = gitKey(bytes)
    try bytes.withUnsafeBytes { try c.store(k, content: $0) }
    return k
}

func files(_ dir: String) -> [String] {
    (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter { p in
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: dir + "/" + p, isDirectory: &isDir)
        return !isDir.boolValue
    }.sorted()
}

@discardableResult
func run(_ exe: String, _ args: [String]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self))
}

/// The helper executable built next to the test bundle (a real second process).
func benchBinary() throws -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("gitfs-cache-bench").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    let fallback = FileManager.default.currentDirectoryPath + "/.build-cc/debug/gitfs-cache-bench"
    try #require(FileManager.default.isExecutableFile(atPath: fallback), "gitfs-cache-bench not built (swift build --product gitfs-cache-bench)")
    return fallback
}
