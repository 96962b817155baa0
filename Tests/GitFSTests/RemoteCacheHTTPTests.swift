import Foundation
import Testing
import TestSupport

extension MountTests {
    /// Issue 12 on a plain HTTP cache: nginx's WebDAV module (GET/HEAD/PUT) as the shared remote.
    @Suite(.enabled(if: NginxDAV.isAvailable, "needs nginx (tools/install-deps)"))
    struct RemoteCacheHTTP {
        /// Machine A's fills are uploaded to nginx; machine B reads the tree from it with no blob
        /// inflated and every byte equal to git's; the files nginx holds are exactly the entries.
        @Test func machineBReadsWhatMachineAFilled() throws {
            let dav = try NginxDAV.start()
            defer { dav.stop() }
            let fleet = try RemoteFleet()
            let url = dav.url(prefix: "cache/team")

            let a = try fleet.machine("http-a", environment: [:])
            defer { a.unmount() }
            try a.mount(extra: ["--remote-cache", url, "--remote-cache-mode", "read-write"])
            try fleet.readAndCompare(a)
            let want = fleet.blobIDs.count
            let uploaded = waitFor(seconds: 60) { ((try? a.stats()["remote_uploads"]) ?? 0) >= want }
            #expect(uploaded, "remote_uploads \((try? a.stats()["remote_uploads"]) ?? -1), want \(want)")
            a.unmount()
            let stored = try FileManager.default.subpathsOfDirectory(atPath: dav.root + "/cache/team/gitfs/v1")
                .filter { $0.count == 41 }.map { $0.replacingOccurrences(of: "/", with: "") }
            #expect(Set(stored) == fleet.blobIDs)

            let b = try fleet.machine("http-b", environment: [:])
            defer { b.unmount() }
            try b.mount(extra: ["--remote-cache", url, "--remote-cache-order", "remote-first"])
            try fleet.readAndCompare(b)
            let stats = try b.stats()
            #expect(stats["blob_loads"] == 0 && stats["speculative_loads"] == 0, "machine B inflated blobs: \(stats)")
            #expect(stats["remote_hits"] == want)
            #expect(stats["remote_errors"] == 0)
            b.unmount()

            // The default order (auto): blobs of 1 MiB and more from the remote, smaller ones from packs.
            let c = try fleet.machine("http-c", environment: [:])
            defer { c.unmount() }
            try c.mount(extra: ["--remote-cache", url])
            try fleet.readAndCompare(c)
            var big = Set<String>()
            for f in fleet.files {
                let size = Int(try git("cat-file", "-s", f.id, cwd: fleet.fixture.path).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                if size >= 1 << 20 { big.insert(f.id) }
            }
            let statsC = try c.stats()
            #expect(!big.isEmpty && statsC["remote_hits"] == big.count, "\(statsC)")
            #expect((statsC["blob_loads"] ?? 0) + (statsC["speculative_loads"] ?? 0) == want - big.count)
        }

        /// A blob the mirror lacks (a blobless mirror, as `git clone --filter=blob:none` makes) comes from
        /// the remote: its size from a ranged read of the entry's header, its content checked; nothing is
        /// inflated and no reader gets an error.
        @Test func aBlobTheMirrorLacksComesFromTheRemote() throws {
            let dav = try NginxDAV.start()
            defer { dav.stop() }
            let fleet = try RemoteFleet()
            let url = dav.url(prefix: "blobless")
            let p = try fleet.machine("http-bl-p", environment: [:])
            #expect(try p.gitfs(["prefetch", "fx", "--push", "--remote-cache", url]).status == 0)

            let b = try fleet.machine("http-bl-b", environment: [:])
            defer { b.unmount() }
            // B's mirror becomes blobless: the same refs and trees, no blob, gitfs's own files kept.
            let mirror = b.home + "/repos/fx.git", full = b.dir.sub("fx-full.git")
            try git("config", "uploadpack.allowFilter", "true", cwd: fleet.base.sub("fx.git"))
            try FileManager.default.moveItem(atPath: mirror, toPath: full)
            try git("clone", "-q", "--mirror", "--filter=blob:none", fleet.source, mirror, cwd: "/tmp")
            for name in try FileManager.default.contentsOfDirectory(atPath: full) where name.hasPrefix("gitfs") {
                try FileManager.default.copyItem(atPath: full + "/" + name, toPath: mirror + "/" + name)
            }
            let missing = try git("rev-list", "--objects", "--all", "--missing=print", cwd: mirror)
                .split(separator: "\n").filter { $0.hasPrefix("?") }.map { String($0.dropFirst()) }
            #expect(fleet.blobIDs.isSubset(of: Set(missing)), "the blobless mirror should lack every blob")
            try b.mount(extra: ["--remote-cache", url])
            try fleet.readAndCompare(b)
            let stats = try b.stats()
            #expect(stats["blob_loads"] == 0 && stats["speculative_loads"] == 0, "\(stats)")
            #expect(stats["remote_hits"] == fleet.blobIDs.count)
            #expect(stats["errors"] == 0)
        }

        /// Bad remote-cache input is one clear error line, and nothing is mounted or changed.
        @Test func badInputIsOneErrorLine() throws {
            let fleet = try RemoteFleet()
            let m = try fleet.machine("http-bad", environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                                                                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"])
            defer { m.unmount() }
            expectOneErrorLine(try m.gitfs(["mount", m.mountpoint, "--remote-cache", "ftp://host/x"]), "an ftp URL")
            #expect(!isMountPoint(m.mountpoint))
            expectOneErrorLine(try m.gitfs(["cat", "fx", "main:README.md", "--remote-cache", "s3://bucket/p"]), "S3 without credentials")
            expectOneErrorLine(try m.gitfs(["prefetch", "fx", "--push"]), "--push without a remote cache")
            expectOneErrorLine(try m.gitfs(["prefetch", "fx", "--push", "--remote-cache", "http://127.0.0.1:1/x", "--remote-cache-mode", "read"]),
                               status: 2, "--push in read mode")
        }

        /// Basic-auth credentials in the URL never show in `gitfs config`, errors or the stats.
        @Test func credentialsInTheURLAreMasked() throws {
            let dav = try NginxDAV.start()
            defer { dav.stop() }
            let fleet = try RemoteFleet()
            let m = try fleet.machine("http-cred", environment: [:])
            defer { m.unmount() }
            let secret = "s3cr3t-pa55"
            let url = "http://fleet:\(secret)@127.0.0.1:\(dav.port)/c"
            #expect(try m.gitfs(["config", "remote-cache", url]).status == 0)
            let shown = try m.gitfs(["config"])
            let text = String(decoding: shown.stdout, as: UTF8.self) + shown.stderr
            #expect(text.contains("remote-cache") && !text.contains(secret), "\(text)")
            try m.mount()
            try fleet.readAndCompare(m)
            #expect(try !RemoteFleet.statsText(m).contains(secret))
            #expect(!m.serverLog.contains(secret))
            let cat = try m.gitfs(["cat", "fx", "main:README.md", "--remote-cache", "http://u:\(secret)@127.0.0.1:1/x", "--remote-cache-order", "remote-first"])
            #expect(cat.status == 0 && !cat.stderr.contains(secret), "\(cat.stderr)")
        }
    }
}
