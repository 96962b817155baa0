import Basics
@testable import ContentCache
import Foundation
import Testing

func objectFile(_ dir: String, _ k: ObjectID) -> String { dir + "/objects/" + k.hex.prefix(2) + "/" + k.hex.dropFirst(2) }

func patch(_ path: String, at offset: Int, xor: UInt8 = 0x5A) throws {
    let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.seek(toOffset: UInt64(offset))
    let b = try h.read(upToCount: 1)!
    try h.seek(toOffset: UInt64(offset))
    try h.write(contentsOf: Data([b[0] ^ xor]))
}

@Suite(.serialized) struct FaultTests {
    @Test func truncatedFileIsAMissAndRemoved() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let bytes = makeContent(600_000, seed: 1, random: true)
        let k = try store(c, bytes)
        let path = objectFile(t.path, k)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        #expect(truncate(path, off_t(size - 100)) == 0)
        #expect(c.lookup(k) == nil)
        #expect(!FileManager.default.fileExists(atPath: path))
        try store(c, bytes)
        #expect(try readAll(try #require(c.lookup(k))) == bytes)
    }

    @Test func flippedByteInAChunkIsNeverServed() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let bytes = makeContent(400_000, seed: 2)
        let k = try store(c, bytes)
        let path = objectFile(t.path, k)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        try patch(path, at: size - 20)   // inside the last chunk's frame
        let e = try #require(c.lookup(k))  // header is intact
        var buf = [UInt8](repeating: 0, count: 4096)
        // The first chunk is fine; the last one fails its checksum.
        #expect(try buf.withUnsafeMutableBytes { try e.read(offset: 0, into: $0) } == 4096)
        do {
            _ = try buf.withUnsafeMutableBytes { try e.read(offset: bytes.count - 10, into: $0) }
            Issue.record("damaged chunk was served")
        } catch let error as CacheError { #expect(error.kind == .corrupt) }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(c.lookup(k) == nil)
    }

    @Test func flippedByteInASegmentRecord() throws {
        let t = TempDir()
        var keys: [(ObjectID, [UInt8])] = []
        do {
            let c = try openCache(t.path)
            for i in 0..<20 { let b = makeContent(300, seed: UInt64(i)); keys.append((try store(c, b), b)) }
        }
        let seg = t.path + "/segments/" + files(t.path + "/segments")[0]
        let size = try FileManager.default.attributesOfItem(atPath: seg)[.size] as! Int
        try patch(seg, at: size - 10)   // inside the last record's frame
        let c = try openCache(t.path)
        let (badKey, badBytes) = keys.last!
        if let e = c.lookup(badKey) {
            #expect(throws: CacheError.self) { try readAll(e) }
        }
        #expect(c.lookup(badKey) == nil)
        for (k, b) in keys.dropLast() { #expect(try readAll(try #require(c.lookup(k))) == b) }
        // verify reports it; --repair removes it for good; a refill works.
        let report = try c.verify(repair: false)
        #expect(report.bad.count == 1 && report.bad[0].key == badKey && report.remaining == 1)
        let repaired = try c.verify(repair: true)
        #expect(repaired.remaining == 0 && repaired.removed == 1)
        #expect(try c.verify(repair: false).bad.isEmpty)
        #expect(try openCache(t.path).lookup(badKey) == nil)
        try store(c, badBytes)
        #expect(try readAll(try #require(try openCache(t.path).lookup(badKey))) == badBytes)
    }

    @Test func junkAndForeignFilesAreIgnoredReportedAndRemoved() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let good = makeContent(300_000, seed: 3, random: true)
        let kg = try store(c, good)
        let small = makeContent(100, seed: 4)
        let ks = try store(c, small)
        let fm = FileManager.default
        // A valid entry copied under another key's name, random bytes under a valid name, junk names.
        let victim = gitKey(makeContent(5000, seed: 5))
        try fm.createDirectory(atPath: t.path + "/objects/" + victim.hex.prefix(2), withIntermediateDirectories: true)
        try fm.copyItem(atPath: objectFile(t.path, kg), toPath: objectFile(t.path, victim))
        let victim2 = gitKey(makeContent(5001, seed: 6))
        try fm.createDirectory(atPath: t.path + "/objects/" + victim2.hex.prefix(2), withIntermediateDirectories: true)
        fm.createFile(atPath: objectFile(t.path, victim2), contents: Data(makeContent(9000, seed: 7, random: true)))
        fm.createFile(atPath: t.path + "/objects/zz", contents: Data("junk".utf8))
        fm.createFile(atPath: t.path + "/segments/notes.txt", contents: Data("junk".utf8))
        fm.createFile(atPath: t.path + "/segments/0000000000000000.seg", contents: Data(makeContent(5000, seed: 8, random: true)))
        let c2 = try openCache(t.path)
        #expect(c2.lookup(victim) == nil)
        #expect(!fm.fileExists(atPath: objectFile(t.path, victim)))
        #expect(c2.lookup(victim2) == nil)
        #expect(try readAll(try #require(c2.lookup(kg))) == good)
        #expect(try readAll(try #require(c2.lookup(ks))) == small)
        let report = try c2.verify(repair: false)
        #expect(report.remaining == 3)   // objects/zz, segments/notes.txt, the random .seg
        let r2 = try c2.verify(repair: true)
        #expect(r2.remaining == 0)
        #expect(try c2.verify(repair: false).bad.isEmpty)
        #expect(try readAll(try #require(try openCache(t.path).lookup(ks))) == small)
        _ = try c2.gc(maxSize: nil, maxAge: nil, dryRun: false)
    }

    @Test func unknownVersionIsRefused() throws {
        let t = TempDir()
        FileManager.default.createFile(atPath: t.path + "/VERSION", contents: Data("gitfs-cache 99\n".utf8))
        do {
            _ = try openCache(t.path)
            Issue.record("unknown version accepted")
        } catch let e as CacheError {
            #expect(e.kind == .unsupportedVersion)
            #expect(e.description.contains("gitfs-cache 99") && !e.description.contains("\n"))
        }
        #expect(!FileManager.default.fileExists(atPath: t.path + "/objects"))
        // A fresh folder gets the version file.
        let t2 = TempDir()
        _ = try openCache(t2.path + "/nested/cache")
        #expect(try String(contentsOfFile: t2.path + "/nested/cache/VERSION", encoding: .utf8) == "gitfs-cache 1\n")
    }

    @Test func diskFullFailsCleanly() throws {
        let t = TempDir()
        let mnt = t.path + "/tmpfs"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let (rc, out) = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt])
        try #require(rc == 0, "mount tmpfs: \(out)")
        defer { _ = try? run("/bin/umount", [mnt]) }
        let c = try openCache(mnt + "/cache")
        // A large entry that cannot fit.
        let big = makeContent(3 << 20, seed: 1, random: true)
        do { try store(c, big); Issue.record("stored 3 MiB on a 1 MiB tmpfs") } catch let e as CacheError { #expect(e.kind == .noSpace) }
        #expect(files(mnt + "/cache/tmp").isEmpty)
        #expect(files(mnt + "/cache/objects").isEmpty)
        // Small entries until the disk is full: the segment holds only whole records.
        var stored: [(ObjectID, [UInt8])] = []
        var failed = false
        for i in 0..<2000 {
            let b = makeContent(3000, seed: UInt64(i), random: true)
            do { stored.append((try store(c, b), b)) } catch let e as CacheError {
                #expect(e.kind == .noSpace); failed = true; break
            }
        }
        #expect(failed && stored.count > 10)
        #expect(files(mnt + "/cache/tmp").isEmpty)
        let segs = files(mnt + "/cache/segments")
        for s in segs {
            let fd = try FileDescriptor.open(mnt + "/cache/segments/" + s, O_RDONLY)
            let st = try fd.status()
            let r = ContentCache.scanRecords(fd, from: 0, size: Int(st.st_size)) { _, _ in }
            #expect(r.end == Int(st.st_size) && r.stop == nil)
        }
        let c2 = try openCache(mnt + "/cache")
        for (k, b) in stored { #expect(try readAll(try #require(c2.lookup(k))) == b) }
        #expect(try c2.verify(repair: false).bad.isEmpty)
    }

    @Test func writerKilledMidWriteLeavesOnlyATempFileThatGcRemoves() throws {
        let t = TempDir()
        let exe = try benchBinary()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["store-random", t.path, String(96 << 20)]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
        // Wait until the temporary file has data, then kill the writer.
        let deadline = Date().addingTimeInterval(60)
        var sawTemp = false
        while Date() < deadline && p.isRunning {
            if let f = files(t.path + "/tmp").first,
               let size = try? FileManager.default.attributesOfItem(atPath: t.path + "/tmp/" + f)[.size] as? Int, size > 1 << 20 {
                sawTemp = true; break
            }
            usleep(5000)
        }
        try #require(sawTemp, "writer never started writing")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        #expect(files(t.path + "/objects").isEmpty)
        #expect(files(t.path + "/tmp").count == 1)
        let c = try openCache(t.path)
        let r = try c.gc(maxSize: nil, maxAge: nil, dryRun: true)
        #expect(r.tempFilesRemoved == 1 && r.tempBytesRemoved > 1 << 20)
        #expect(files(t.path + "/tmp").count == 1)
        let r2 = try c.gc(maxSize: nil, maxAge: nil, dryRun: false)
        #expect(r2.tempFilesRemoved == 1)
        #expect(files(t.path + "/tmp").isEmpty)
    }

    @Test func gcLeavesTempFilesOfLiveWritersAlone() throws {
        let t = TempDir()
        let c = try openCache(t.path)
        let temp = try c.createLockedTemp("inflight")
        let r = try c.gc(maxSize: nil, maxAge: nil, dryRun: false)
        #expect(r.tempFilesRemoved == 0)
        #expect(FileManager.default.fileExists(atPath: temp.path))
    }
}
