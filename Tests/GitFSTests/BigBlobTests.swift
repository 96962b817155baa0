import Foundation
import ReadModel
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Blobs bigger than the server's whole memory budget (issue 16), through real mounts and the real
/// binary, with git as the oracle: every byte right, several readers at once, seeks into a cold blob,
/// the server's anonymous memory bounded throughout, damage refused before any byte is served, and an
/// unmount in the middle of a stream that is prompt and publishes nothing half-written.
extension MountTests {
    @Suite(.serialized) struct BigBlobs {
        /// The repository: `big.bin` (1 GiB: zeros with pseudo-random 64 KiB patches at its start, at an
        /// odd offset in the middle and near its end, so a misplaced chunk shows), `side.bin` (12 MiB
        /// pseudo-random, streamed too) and `small.txt`; cloned once into a template home whose mirror
        /// each test copies (the pack is ~1.2 MB; libgit2's clone of it takes seconds).
        struct Repo: Sendable {
            let src: String
            let mirror: String
            let commit: String
            let big: String
            let side: String
            static let size = 1 << 30
            static let patches = [0, 300 << 20 | 12345, (1 << 30) - 70_000]
            static func patch(_ i: Int) -> [UInt8] { pseudoRandomBytes(count: 64 << 10, seed: UInt64(100 + i)) }
        }

        static let work: TempDir? = try? TempDir("bigblob")
        static let shared: Result<Repo, TestFailure> = {
            do { return .success(try makeRepo()) } catch { return .failure(TestFailure("big repository: \(error)")) }
        }()

        static func makeRepo() throws -> Repo {
            guard let work else { throw TestFailure("no temp dir") }
            let src = work.sub("src")
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            _ = try git("init", "-q", "-b", "main", cwd: src)
            let fd = open(src + "/big.bin", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0, ftruncate(fd, off_t(Repo.size)) == 0 else { throw TestFailure("cannot make big.bin") }
            for (i, at) in Repo.patches.enumerated() {
                let p = Repo.patch(i)
                guard p.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, off_t(at)) }) == p.count else { throw TestFailure("pwrite") }
            }
            close(fd)
            try Data(pseudoRandomBytes(count: 12 << 20, seed: 7)).write(to: URL(fileURLWithPath: src + "/side.bin"))
            try Data("small\n".utf8).write(to: URL(fileURLWithPath: src + "/small.txt"))
            _ = try git("add", ".", cwd: src)
            _ = try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big", cwd: src)
            let template = work.sub("template")
            try FileManager.default.createDirectory(atPath: template, withIntermediateDirectories: true)
            _ = try gitfsOK(home: template, ["clone", src, "r"])
            try? FileManager.default.removeItem(atPath: src + "/big.bin")
            return Repo(src: src, mirror: template + "/repos/r.git", commit: try revParse(src, "main"),
                        big: try revParse(src, "main:big.bin"), side: try revParse(src, "main:side.bin"))
        }

        /// A home holding a copy of the template mirror (and an empty cache).
        static func home(_ label: String) throws -> (MountedHome, Repo) {
            let repo = try shared.get()
            let m = try MountedHome(label)
            try FileManager.default.createDirectory(atPath: m.home + "/repos", withIntermediateDirectories: true)
            let r = try runBounded(["cp", "-a", repo.mirror, m.home + "/repos/r.git"], seconds: 60)
            guard r.status == 0 else { throw TestFailure("cp: \(r.stderr)") }
            return (m, repo)
        }

        /// The expected bytes of `big.bin` at `[offset, offset + count)`.
        static func expected(offset: Int, count: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            for (i, at) in Repo.patches.enumerated() {
                let p = Repo.patch(i)
                let lo = max(offset, at), hi = min(offset + count, at + p.count)
                if lo < hi { out.replaceSubrange((lo - offset)..<(hi - offset), with: p[(lo - at)..<(hi - at)]) }
            }
            return out
        }

        /// `pread` of `count` bytes at `offset` (fewer at the end), or the errno.
        static func pread(_ path: String, offset: Int, count: Int) -> Result<[UInt8], POSIXError> {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
            defer { close(fd) }
            var out = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = out.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
                if n < 0 { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
                if n == 0 { break }
                done += n
            }
            return .success(Array(out[0..<done]))
        }

        /// git's id of a file's content (`git hash-object`, which streams big files), run as a child.
        static func gitHash(_ path: String, seconds: Double = 180) throws -> String {
            let r = try runBounded(["git", "hash-object", path], seconds: seconds)
            guard r.status == 0 else { throw TestFailure("git hash-object \(path): \(r.status) \(r.stderr)") }
            return String(decoding: r.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test func severalReadersAndASeekIntoABlobBiggerThanTheBudgetInBoundedMemory() throws {
            let (m, repo) = try Self.home("bigread")
            defer { m.unmount() }
            try m.mount(watchdogSeconds: 300)
            let pid = try #require(m.serverPID)
            let sampler = MemorySampler(pid: pid)
            let file = m.path("r/commits/\(repo.commit)/big.bin")
            let published = m.home + "/cache/objects/" + repo.big.prefix(2) + "/" + repo.big.dropFirst(2)

            // A seek into the middle of the cold blob: its bytes come while the rest is still being
            // inflated (the entry is published only when complete).
            let mid = Repo.patches[1] - 1000
            let got = Self.pread(file, offset: mid, count: 70_000)
            #expect((try? got.get()) == Self.expected(offset: mid, count: 70_000), "bytes at \(mid)")
            #expect(!FileManager.default.fileExists(atPath: published), "the seek waited for the whole blob")

            // Three whole readers at once and a reader of the end, twice.
            for round in 1...2 {
                let hashes = Mutex<[String]>([])
                let failures = Mutex<[String]>([])
                let done = onThreads(4, timeout: 240) { i in
                    if i == 3 {
                        let end = Repo.size - 70_000 - 4096
                        if (try? Self.pread(file, offset: end, count: 80_000).get()) != Self.expected(offset: end, count: 70_000 + 4096) {
                            failures.withLock { $0.append("round \(round): wrong bytes at the end") }
                        }
                        return
                    }
                    do {
                        let h = try Self.gitHash(file)
                        hashes.withLock { $0.append(h) }
                    } catch {
                        failures.withLock { $0.append("round \(round): \(error)") }
                    }
                }
                #expect(done, "round \(round): readers did not finish")
                #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
                #expect(hashes.withLock { $0 } == [repo.big, repo.big, repo.big], "round \(round)")
            }
            let side = m.path("r/commits/\(repo.commit)/side.bin")
            #expect(try Self.gitHash(side) == repo.side)
            let peak = sampler.stop()
            print("server while reading a 1 GiB blob 4x twice: peak RssAnon \(peak.rssAnon >> 20) MiB, VmHWM \(peak.hwm >> 20) MiB")
            #expect(peak.rssAnon < 96 << 20, "server RssAnon reached \(peak.rssAnon >> 20) MiB")
            #expect(peak.hwm < 256 << 20, "server VmHWM reached \(peak.hwm >> 20) MiB")
            #expect(waitFor(seconds: 30) { FileManager.default.fileExists(atPath: published) }, "the streamed entry was not published")
            #expect(try FileManager.default.contentsOfDirectory(atPath: m.home + "/cache/tmp").isEmpty)
            #expect(!m.watchdogHasFired)
        }

        @Test func catAndPrefetchOfABlobBiggerThanTheBudgetStreamInBoundedMemory() throws {
            let (m, repo) = try Self.home("bigcat")
            defer { m.unmount() }
            let out = m.dir.sub("cat.out")
            let cat = try peakOfChild(["sh", "-c", "exec \"$1\" cat --home \"$2\" r main:big.bin > \"$3\"", "sh", gitfsBinary, m.home, out])
            #expect(cat.status == 0)
            print("gitfs cat of a 1 GiB blob: VmHWM \(cat.hwm >> 20) MiB")
            #expect(cat.hwm < 128 << 20, "gitfs cat reached VmHWM \(cat.hwm >> 20) MiB")
            #expect(try Self.gitHash(out) == repo.big)
            try? FileManager.default.removeItem(atPath: out)

            let (p, _) = try Self.home("bigprefetch")
            defer { p.unmount() }
            let prefetch = try peakOfChild([gitfsBinary, "prefetch", "--home", p.home, "r"])
            #expect(prefetch.status == 0)
            print("gitfs prefetch of a 1 GiB blob: VmHWM \(prefetch.hwm >> 20) MiB")
            #expect(prefetch.hwm < 128 << 20, "gitfs prefetch reached VmHWM \(prefetch.hwm >> 20) MiB")
            #expect(FileManager.default.fileExists(atPath: p.home + "/cache/objects/" + repo.big.prefix(2) + "/" + repo.big.dropFirst(2)))
            // Served from the cache now: mount and read it back.
            try p.mount(watchdogSeconds: 200)
            #expect(try Self.gitHash(p.path("r/commits/\(repo.commit)/big.bin")) == repo.big)
            #expect(try p.stats()["blob_loads"] == 0)
        }

        @Test func aDamagedByteInABigEntryServesNoByteOfItAndItsSiblingsRead() throws {
            let (m, repo) = try Self.home("bigdamage")
            defer { m.unmount() }
            try damageBigEntry(repo.big, inPackOf: m.home + "/repos/r.git")
            try m.mount(watchdogSeconds: 200)
            let root = m.path("r/commits/\(repo.commit)")
            for offset in [0, Repo.patches[1], Repo.size - 4096] {
                switch Self.pread(root + "/big.bin", offset: offset, count: 4096) {
                case .success(let bytes): Issue.record("read \(bytes.count) bytes at \(offset) of a damaged blob")
                case .failure(let e): #expect(e.code == .EIO, "\(e.code) at \(offset)")
                }
            }
            #expect(try Self.gitHash(root + "/side.bin") == repo.side)
            #expect(compareFile(root + "/small.txt", with: Array("small\n".utf8)) == nil)
            // side.bin (streamed too) is filled in the background: once it is published, nothing of
            // either blob is left in tmp/.
            let sidePublished = m.home + "/cache/objects/" + repo.side.prefix(2) + "/" + repo.side.dropFirst(2)
            #expect(waitFor(seconds: 30) { FileManager.default.fileExists(atPath: sidePublished) }, "side.bin was not published")
            #expect(try FileManager.default.contentsOfDirectory(atPath: m.home + "/cache/tmp").isEmpty)
            #expect(!FileManager.default.fileExists(atPath: m.home + "/cache/objects/" + repo.big.prefix(2) + "/" + repo.big.dropFirst(2)))
            #expect(m.serverLog.contains("CRC-32"), "the log says why")
        }

        @Test func unmountWhileABigBlobStreamsIsPromptAndPublishesNothing() throws {
            let (m, repo) = try Self.home("bigunmount")
            defer { m.unmount() }
            try m.mount(watchdogSeconds: 200)
            let pid = try #require(m.serverPID)
            let file = m.path("r/commits/\(repo.commit)/big.bin")
            // A slow reader keeps the stream going (the background job streams on meanwhile).
            let reader = try Child(["sh", "-c", "dd if=\"$1\" bs=65536 count=20 2>/dev/null >/dev/null; sleep 30", "sh", file])
            defer { reader.kill() }
            #expect(waitFor(seconds: 30) {
                ((try? FileManager.default.contentsOfDirectory(atPath: m.home + "/cache/tmp")) ?? []).contains { $0.hasPrefix(repo.big) }
            }, "no entry being written")
            reader.kill()
            let started = Date()
            let r = try m.gitfs(["unmount", m.mountpoint], seconds: 60)
            let took = Date().timeIntervalSince(started)
            #expect(r.status == 0, "gitfs unmount: \(r.stderr)")
            #expect(waitFor(seconds: 10) { !processAlive(pid) }, "server still alive")
            print("unmount while a 1 GiB blob streams took \(String(format: "%.2f", took)) s")
            #expect(took < 5, "gitfs unmount took \(took) s")
            #expect(!FileManager.default.fileExists(atPath: m.home + "/cache/objects/" + repo.big.prefix(2) + "/" + repo.big.dropFirst(2)),
                    "a half-written entry was published")
            #expect(try FileManager.default.contentsOfDirectory(atPath: m.home + "/cache/tmp").isEmpty, "the half-written entry was left in tmp/")
        }

        @Test func aBigDeltifiedBlobIsRebuiltOutsideAnonymousMemory() throws {
            let work = try TempDir("bigdelta")
            let src = work.sub("src")
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            let size = 40 << 20
            _ = try git("init", "-q", "-b", "main", cwd: src)
            try Data(pseudoRandomBytes(count: size, seed: 21)).write(to: URL(fileURLWithPath: src + "/v.bin"))
            _ = try git("add", ".", cwd: src)
            _ = try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd: src)
            let first = try revParse(src, "main:v.bin")
            let commit1 = try revParse(src, "main")
            let h = try #require(FileHandle(forUpdatingAtPath: src + "/v.bin"))
            try h.seek(toOffset: 12_345_678)
            try h.write(contentsOf: Data("a small edit".utf8))
            try h.close()
            _ = try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two", cwd: src)
            let second = try revParse(src, "main:v.bin")
            let commit2 = try revParse(src, "main")

            let m = try MountedHome("bigdelta")
            defer { m.unmount() }
            try m.clone(src, as: "d")
            let mirror = m.home + "/repos/d.git"
            _ = try git("repack", "-adf", "-q", cwd: mirror)
            let idx = try #require(try FileManager.default.contentsOfDirectory(atPath: mirror + "/objects/pack").first { $0.hasSuffix(".idx") })
            let listing = try git("verify-pack", "-v", mirror + "/objects/pack/" + idx, cwd: mirror)
            let deltas = listing.split(separator: "\n").filter { l in
                (l.hasPrefix(first) || l.hasPrefix(second)) && l.split(separator: " ", omittingEmptySubsequences: true).count > 5
            }
            try #require(deltas.count == 1, "one version of v.bin should be a delta: \(deltas)")

            try m.mount(watchdogSeconds: 200)
            let pid = try #require(m.serverPID)
            let sampler = MemorySampler(pid: pid)
            #expect(try Self.gitHash(m.path("d/commits/\(commit2)/v.bin")) == second)
            #expect(try Self.gitHash(m.path("d/commits/\(commit1)/v.bin")) == first)
            let peak = sampler.stop()
            print("server while reading a 40 MiB deltified blob and its base: peak RssAnon \(peak.rssAnon >> 20) MiB")
            #expect(peak.rssAnon < 40 << 20, "server RssAnon reached \(peak.rssAnon >> 20) MiB: the rebuild used anonymous memory")
        }

        @Test func theOpenedTableKeepsNoValueBiggerThanItsShare() {
            let table = BoundedCache<Int, [UInt8]>(maxBytes: 64 << 20)
            table.set([1], for: 1, bytes: 3 << 30)
            #expect(table.count == 0 && table.bytes == 0, "a 3 GiB value was kept")
            for i in 0..<10_000 { table.set([], for: i, bytes: 100 << 10) }
            #expect(table.bytes <= 64 << 20, "\(table.bytes) bytes held")
            #expect(table.value(for: 9_999) != nil, "the latest value is kept")
        }
    }
}

/// Polls a process's RssAnon and VmHWM (from /proc/PID/status) every 10 ms until `stop()`.
final class MemorySampler: Sendable {
    private final class State: Sendable {
        let peak = Mutex((rssAnon: 0, hwm: 0))
        let running = Atomic<Bool>(true)
    }
    private let state = State()

    init(pid: pid_t) {
        let state = self.state
        Thread.detachNewThread {
            while state.running.load(ordering: .relaxed) {
                if let s = procStatus(pid) { state.peak.withLock { p in p = (max(p.rssAnon, s.rssAnon), max(p.hwm, s.hwm)) } }
                usleep(10_000)
            }
        }
    }

    func stop() -> (rssAnon: Int, hwm: Int) {
        state.running.store(false, ordering: .relaxed)
        usleep(30_000)
        return state.peak.withLock { $0 }
    }
}

/// RssAnon and VmHWM of `pid` in bytes; nil when it is gone.
func procStatus(_ pid: pid_t) -> (rssAnon: Int, hwm: Int)? {
    guard let text = procText("/proc/\(pid)/status") else { return nil }
    var anon: Int?, hwm: Int?
    for line in text.split(separator: "\n") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        if line.hasPrefix("RssAnon:") { anon = kb }
        if line.hasPrefix("VmHWM:") { hwm = kb }
    }
    guard let anon, let hwm else { return nil }
    return (anon, hwm)
}

/// Runs `argv` as a child and polls its VmHWM until it exits (the last reading before exit is the peak).
func peakOfChild(_ argv: [String], seconds: Double = 300) throws -> (status: Int32?, hwm: Int) {
    let child = try Child(argv)
    var hwm = 0
    let deadline = Date().addingTimeInterval(seconds)
    while child.poll() == nil, Date() < deadline {
        if let s = procStatus(child.pid) { hwm = max(hwm, s.hwm) }
        usleep(5_000)
    }
    let status = child.poll()
    if status == nil { child.kill() }
    if status != 0 { print("\(argv): \(child.output)") }
    return (status, hwm)
}

/// Flips one byte in the middle of a big whole entry of the mirror's pack (its offset and packed size
/// from `git show-index` and the next entry's offset, without inflating anything).
func damageBigEntry(_ oid: String, inPackOf gitDir: String) throws {
    let packDir = gitDir + "/objects/pack"
    let idx = try FileManager.default.contentsOfDirectory(atPath: packDir).filter { $0.hasSuffix(".idx") }
    guard idx.count == 1 else { throw TestFailure("expected one pack in \(packDir), found \(idx)") }
    let r = try gitBytes(["show-index"], cwd: gitDir, stdin: Array(try Data(contentsOf: URL(fileURLWithPath: packDir + "/" + idx[0]))))
    // "<offset> <oid> (<crc>)"
    var offsets: [(Int, String)] = []
    for line in String(decoding: r.stdout, as: UTF8.self).split(separator: "\n") {
        let f = line.split(separator: " ")
        if f.count >= 2, let o = Int(f[0]) { offsets.append((o, String(f[1]))) }
    }
    offsets.sort { $0.0 < $1.0 }
    let pack = packDir + "/" + idx[0].dropLast(4) + ".pack"
    let packSize = Int(try FileManager.default.attributesOfItem(atPath: pack)[.size] as! UInt64)
    guard let i = offsets.firstIndex(where: { $0.1 == oid }) else { throw TestFailure("\(oid) not in the pack") }
    let start = offsets[i].0, end = i + 1 < offsets.count ? offsets[i + 1].0 : packSize - 20
    guard let h = FileHandle(forUpdatingAtPath: pack) else { throw TestFailure("cannot open \(pack)") }
    defer { try? h.close() }
    let at = UInt64(start + (end - start) / 2)
    try h.seek(toOffset: at)
    guard let byte = try h.read(upToCount: 1)?.first else { throw TestFailure("short pack \(pack)") }
    try h.seek(toOffset: at)
    try h.write(contentsOf: Data([byte ^ 0x5A]))
}
