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
