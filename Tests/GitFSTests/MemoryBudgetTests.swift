import Basics
import Foundation
import ReadModel
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The one memory budget (issue 16): the blobs that are not streamed from a pack — a big loose blob, a
/// big packed blob with no cache to stream into — are read in bounded anonymous memory, verified before
/// any byte is served, through real mounts and the real binary with git as the oracle; the budget is a
/// setting and its figures are in the stats; and the budget's own bookkeeping holds.
extension MountTests {
    @Suite(.serialized) struct MemoryBudgets {
        /// 256 MiB: bigger than the budget the tests give (32 MiB) and than the RssAnon they allow.
        static let size = 256 << 20
        static let patches = [0, 100 << 20 | 4321, size - 70_000]

        /// A work tree whose commit holds `big.bin` and `big2.bin` (same size, zeros with pseudo-random
        /// patches, `big2.bin` differing in one) as loose objects (git writes them loose below
        /// core.bigFileThreshold, 512 MiB), and `small.txt`.
        struct Loose {
            let src: String
            let commit: String
            let big: String
            let big2: String
        }

        static func makeBig(_ path: String, seedOffset: UInt64) throws {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0, ftruncate(fd, off_t(size)) == 0 else { throw TestFailure("cannot make \(path)") }
            defer { close(fd) }
            for (i, at) in patches.enumerated() {
                let p = pseudoRandomBytes(count: 64 << 10, seed: UInt64(200 + i) + (i == 1 ? seedOffset : 0))
                guard p.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, off_t(at)) }) == p.count else { throw TestFailure("pwrite") }
            }
        }

        static func makeLoose(_ work: TempDir) throws -> Loose {
            let src = work.sub("src")
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            _ = try git("init", "-q", "-b", "main", cwd: src)
            try makeBig(src + "/big.bin", seedOffset: 0)
            try makeBig(src + "/big2.bin", seedOffset: 50)
            try Data("small\n".utf8).write(to: URL(fileURLWithPath: src + "/small.txt"))
            _ = try git("add", ".", cwd: src)
            _ = try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "loose", cwd: src)
            try? FileManager.default.removeItem(atPath: src + "/big.bin")
            try? FileManager.default.removeItem(atPath: src + "/big2.bin")
            return Loose(src: src, commit: try revParse(src, "main"), big: try revParse(src, "main:big.bin"),
                         big2: try revParse(src, "main:big2.bin"))
        }

        /// A home whose mirror `l` is a copy of the work tree's `.git` (bare, its objects loose).
        static func looseHome(_ label: String, _ loose: Loose) throws -> MountedHome {
            let m = try MountedHome(label)
            try FileManager.default.createDirectory(atPath: m.home + "/repos", withIntermediateDirectories: true)
            let r = try runBounded(["cp", "-a", loose.src + "/.git", m.home + "/repos/l.git"], seconds: 60)
            guard r.status == 0 else { throw TestFailure("cp: \(r.stderr)") }
            _ = try git("config", "core.bare", "true", cwd: m.home + "/repos/l.git")
            return m
        }

        static func loosePath(_ gitDir: String, _ id: String) -> String { gitDir + "/objects/" + id.prefix(2) + "/" + id.dropFirst(2) }

        @Test func aBigLooseBlobIsReadInBoundedMemoryAndTheBudgetIsASetting() throws {
            let work = try TempDir("budget-loose")
            let loose = try Self.makeLoose(work)
            let m = try Self.looseHome("budget-loose", loose)
            defer { m.unmount() }
            #expect(FileManager.default.fileExists(atPath: Self.loosePath(m.home + "/repos/l.git", loose.big)), "big.bin is not loose")
            m.environment["GITFS_MEMORY_BUDGET"] = "32M"
            try m.mount(watchdogSeconds: 300)
            let pid = try #require(m.serverPID)
            let sampler = MemorySampler(pid: pid)
            let file = m.path("l/commits/\(loose.commit)/big.bin")
            let hashes = Mutex<[String]>([])
            let done = onThreads(3, timeout: 240) { _ in
                if let h = try? MountTests.BigBlobs.gitHash(file) { hashes.withLock { $0.append(h) } }
            }
            #expect(done, "readers did not finish")
            #expect(hashes.withLock { $0 } == [loose.big, loose.big, loose.big])
            #expect(try MountTests.BigBlobs.gitHash(m.path("l/commits/\(loose.commit)/big2.bin")) == loose.big2)
            let peak = sampler.stop()
            print("server reading a 256 MiB loose blob 3x: peak RssAnon \(peak.rssAnon >> 20) MiB, VmHWM \(peak.hwm >> 20) MiB")
            #expect(peak.rssAnon < 96 << 20, "server RssAnon reached \(peak.rssAnon >> 20) MiB: the loose blob was inflated whole")
            let stats = try m.stats()
            #expect(stats["memory_budget_bytes"] == 32 << 20, "the setting did not reach the mount: \(stats["memory_budget_bytes"] ?? -1)")
            #expect((stats["memory_used_bytes"] ?? -1) >= 0)
            #expect((stats["memory_peak_bytes"] ?? 0) > 0)
            for key in ["memory_waits", "memory_declines", "memory_overdrafts", "memory_fallbacks"] { #expect(stats[key] != nil, "\(key) missing") }
            m.unmount()

            // gitfs cat of it: exact bytes, bounded anonymous memory (not cached: a fresh cache).
            try? FileManager.default.removeItem(atPath: m.home + "/cache")
            let out = m.dir.sub("cat.out")
            let child = try Child(["sh", "-c", "exec \"$1\" cat --home \"$2\" l main:big.bin > \"$3\"", "sh", gitfsBinary, m.home, out])
            let catSampler = MemorySampler(pid: child.pid)
            let status = child.wait(timeout: 180)
            let catPeak = catSampler.stop()
            #expect(status == 0, "gitfs cat: \(child.output)")
            print("gitfs cat of a 256 MiB loose blob: peak RssAnon \(catPeak.rssAnon >> 20) MiB")
            #expect(catPeak.rssAnon < 96 << 20, "gitfs cat reached RssAnon \(catPeak.rssAnon >> 20) MiB")
            #expect(try MountTests.BigBlobs.gitHash(out) == loose.big)
        }

        @Test func aBigLooseBlobThatDoesNotHashToItsIdServesNoByte() throws {
            let work = try TempDir("budget-loose-bad")
            let loose = try Self.makeLoose(work)
            let m = try Self.looseHome("budget-loose-bad", loose)
            defer { m.unmount() }
            // big.bin's loose file replaced by big2.bin's: it inflates fine, Adler-32 and size right,
            // only its SHA-1 tells.
            let gitDir = m.home + "/repos/l.git"
            let target = Self.loosePath(gitDir, loose.big)
            _ = try runBounded(["chmod", "u+w", target])
            try FileManager.default.removeItem(atPath: target)
            try FileManager.default.copyItem(atPath: Self.loosePath(gitDir, loose.big2), toPath: target)
            try m.mount(watchdogSeconds: 200)
            let root = m.path("l/commits/\(loose.commit)")
            for offset in [0, Self.patches[1], Self.size - 4096] {
                switch MountTests.BigBlobs.pread(root + "/big.bin", offset: offset, count: 4096) {
                case .success(let bytes): Issue.record("read \(bytes.count) bytes at \(offset) of a blob that does not hash to its id")
                case .failure(let e): #expect(e.code == .EIO, "\(e.code) at \(offset)")
                }
            }
            #expect(compareFile(root + "/small.txt", with: Array("small\n".utf8)) == nil)
            #expect(try MountTests.BigBlobs.gitHash(root + "/big2.bin") == loose.big2)
            #expect(!FileManager.default.fileExists(atPath: m.home + "/cache/objects/" + loose.big.prefix(2) + "/" + loose.big.dropFirst(2)))
        }

        @Test func aBigPackedBlobWithoutAWritableCacheIsServedFromFileBackedMemory() throws {
            let work = try TempDir("budget-rocache")
            let src = work.sub("src")
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            _ = try git("init", "-q", "-b", "main", cwd: src)
            try Self.makeBig(src + "/big.bin", seedOffset: 7)
            _ = try git("add", ".", cwd: src)
            _ = try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big", cwd: src)
            let big = try revParse(src, "main:big.bin")
            let commit = try revParse(src, "main")
            try? FileManager.default.removeItem(atPath: src + "/big.bin")

            let m = try MountedHome("budget-rocache")
            defer { m.unmount() }
            try m.clone(src, as: "p")
            // A cache folder that was never initialised and cannot be written (read-only tmpfs).
            let cache = try ScratchTmpfs(at: m.home + "/cache")
            defer { m.unmount(); cache.unmount() }
            try cache.makeReadOnly()
            let scratch = m.dir.sub("tmpdir")
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            m.environment["TMPDIR"] = scratch
            m.environment["GITFS_MEMORY_BUDGET"] = "32M"
            try m.mount(watchdogSeconds: 300)
            let pid = try #require(m.serverPID)
            let sampler = MemorySampler(pid: pid)
            let file = m.path("p/commits/\(commit)/big.bin")
            let hashes = Mutex<[String]>([])
            let done = onThreads(2, timeout: 240) { _ in
                if let h = try? MountTests.BigBlobs.gitHash(file) { hashes.withLock { $0.append(h) } }
            }
            #expect(done, "readers did not finish")
            #expect(hashes.withLock { $0 } == [big, big])
            let end = Self.size - 70_000
            let tail = try MountTests.BigBlobs.pread(file, offset: end, count: 70_000).get()
            #expect(tail == pseudoRandomBytes(count: 64 << 10, seed: 202) + [UInt8](repeating: 0, count: 70_000 - (64 << 10)))
            let peak = sampler.stop()
            print("server reading a 256 MiB packed blob with a read-only cache: peak RssAnon \(peak.rssAnon >> 20) MiB, VmHWM \(peak.hwm >> 20) MiB")
            #expect(peak.rssAnon < 96 << 20, "server RssAnon reached \(peak.rssAnon >> 20) MiB: the blob was inflated into anonymous memory")
            m.unmount()
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty, "scratch files left in $TMPDIR")
        }

        @Test func aBadMemoryBudgetIsOneClearError() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("budget-bad")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fx")
            let small = try m.gitfs(["mount", m.mountpoint, "--memory-budget", "1M"])
            #expect(small.status != 0)
            #expect(small.stderr.contains("gitfs: error: the memory-budget setting '1M' is too small"), "\(small.stderr)")
            #expect(!isMountPoint(m.mountpoint))
            #expect(try m.gitfs("config", "memory-budget", "lots").status != 0, "a size that is not one was stored")
            let tiny = try m.gitfs("config", "memory-budget", "2k")
            #expect(tiny.status != 0 && tiny.stderr.contains("too small"), "a budget below the minimum was stored: \(tiny.stderr)")
            #expect(try m.gitfs("config", "memory-budget", "48M").status == 0)
            try m.mount()
            #expect(try m.stats()["memory_budget_bytes"] == 48 << 20)
        }

        @Test func theBudgetNeverPassesItsTotalOnItsOwnAndCachesCreditWhatTheyDrop() {
            let budget = MemoryBudget(total: 1 << 20)
            #expect(budget.tryCharge(700 << 10))
            #expect(!budget.tryCharge(400 << 10), "a charge passed the total")
            #expect(budget.usedBytes == 700 << 10)
            budget.overdraw(400 << 10)
            #expect(budget.snapshot.overdrafts == 1 && budget.peakBytes == 1100 << 10)
            budget.credit(1100 << 10)
            #expect(budget.usedBytes == 0)
            // A wait for room is bounded: nothing frees it, it gives up and counts a decline.
            budget.overdraw(2 << 20)
            let started = MonotonicTime.now
            #expect(!budget.waitForRoom(upTo: .milliseconds(20)))
            #expect(started.elapsed < .seconds(2) && budget.snapshot.waits == 1 && budget.snapshot.declines == 1)
            budget.credit(2 << 20)

            // A cache under the budget: never over it together, evicts its own to make room, credits all.
            let shared = MemoryBudget(total: 4 << 20)
            do {
                let a = BoundedCache<Int, Int>(maxBytes: 64 << 20, budget: shared)
                let b = BoundedCache<Int, Int>(maxBytes: 64 << 20, budget: shared)
                for i in 0..<2_000 {
                    a.set(i, for: i, bytes: 16 << 10)
                    b.set(i, for: i, bytes: 16 << 10)
                    #expect(shared.usedBytes <= shared.total - shared.headroom, "caches took the headroom left to bytes in flight")
                }
                #expect(a.count > 0 && b.count > 0 && a.count + b.count < 4_000, "a: \(a.count), b: \(b.count) kept")
                #expect(shared.usedBytes == a.bytes + b.bytes, "charges and holdings disagree")
                a.remove(1_999)
                a.removeAll()
                #expect(shared.usedBytes == b.bytes)
            }
            #expect(shared.usedBytes == 0, "a cache that went did not credit what it held")
        }
    }
}
