import Basics
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The client of one remote cache (S3 or HTTP, see `RemoteURL`): GET of an entry (streamed to a sink,
/// optionally a byte range), HEAD, PUT (streamed from a source) and a start-up probe. Every request
/// goes through the breaker; 429 and 5xx answers are retried (three tries, jittered backoff);
/// time-outs grow with the size moved. Credentials stay inside the transport: no error, log line or
/// description carries them. Thread-safe.
public final class RemoteCacheClient: Sendable {
    public let url: RemoteURL
    private let transport: Transport
    private let breaker: Breaker
    private let extraHeaders: [String]

    /// Bytes per second assumed when scaling time-outs to a size (slow links get room, a dead server
    /// is noticed within the base time).
    static let assumedRate = 4 << 20
    static let baseTimeout: Duration = .milliseconds(1500)
    /// Time-out of the HEAD that tries a backing-off remote again.
    static let probeTimeout: Duration = .milliseconds(750)

    private var backingOff: RemoteError {
        RemoteError(.backingOff, "the remote cache \(url) is skipped for a while after repeated failures")
    }

    /// - Parameter environment: where S3 credentials are looked up (tests pass their own).
    public init(url: RemoteURL, environment: [String: String]? = nil) throws(RemoteError) {
        self.url = url
        switch url.kind {
        case .s3:
            let c: S3Credentials
            if let environment { c = try S3Credentials.load(environment: environment) } else { c = try S3Credentials.load() }
            transport = Transport(auth: .sigv4(provider: "aws:amz:\(url.region):s3", access: c.accessKey, secret: c.secretKey))
            // libcurl 7.88 signs with this header's value as the payload hash but does not add it itself.
            var h = ["x-amz-content-sha256: UNSIGNED-PAYLOAD"]
            if let t = c.sessionToken { h.append("x-amz-security-token: \(t)") }
            extraHeaders = h
        case .http:
            if let user = url.user {
                transport = Transport(auth: .basic(user: user.removingPercentEncoding ?? user,
                                                   password: (url.password ?? "").removingPercentEncoding ?? ""))
            } else {
                transport = Transport(auth: .netrc)
            }
            extraHeaders = []
        }
        breaker = Breaker()
    }

    /// "ok", or "backing off" while the breaker skips the remote.
    public var state: String { breaker.isOpen ? "backing off" : "ok" }

    /// True when requests are being skipped now.
    public var isBackingOff: Bool { breaker.isOpen }

    /// True when a request now would be skipped without trying (backing off, no probe due yet).
    public var isSkipping: Bool { breaker.isSkipping }

    public enum Fetch: Sendable {
        case found
        case notFound
        case failed(RemoteError)
    }

    /// GETs the entry of `key` (or `range` of it), handing the body to `sink` as it arrives (false
    /// from the sink aborts: `.failed(.bad)`). `sizeHint`: the expected size, to scale the time-out.
    public func get(_ key: ObjectID, range: ClosedRange<Int>? = nil, sizeHint: Int? = nil,
                    sink: @escaping (UnsafeRawBufferPointer) -> Bool) -> Fetch {
        var delivered = false
        let request = Transport.Request(method: .get, url: url.objectURL(key), headers: extraHeaders, range: range,
                                        sink: { bytes in delivered = true; return sink(bytes) },
                                        timeout: Self.timeout(for: sizeHint ?? (range.map { $0.count } ?? (64 << 20))))
        switch run(request, retryable: { !delivered }) {
        case .success(200), .success(206): return .found
        case .success(404): return .notFound
        case .success(let code): return .failed(statusError(code, "GET"))
        case .failure(let e): return .failed(e)
        }
    }

    public enum Presence: Sendable {
        case present, absent
        case failed(RemoteError)
    }

    /// HEADs the entry of `key`.
    public func head(_ key: ObjectID) -> Presence {
        let request = Transport.Request(method: .head, url: url.objectURL(key), headers: extraHeaders, timeout: Self.baseTimeout)
        switch run(request, retryable: { true }) {
        case .success(200): return .present
        case .success(404): return .absent
        case .success(let code): return .failed(statusError(code, "HEAD"))
        case .failure(let e): return .failed(e)
        }
    }

    /// PUTs `size` bytes as the entry of `key`, pulled from `body(offset, buffer)` (returns the count
    /// copied; 0 stops the upload as failed).
    public func put(_ key: ObjectID, size: Int, body: @escaping (Int, UnsafeMutableRawBufferPointer) -> Int) -> RemoteError? {
        let request = Transport.Request(method: .put, url: url.objectURL(key), headers: extraHeaders + ["Content-Type: application/octet-stream"],
                                        bodySize: size, body: body, timeout: Self.timeout(for: size))
        switch run(request, retryable: { true }) {
        case .success(let code) where (200..<300).contains(code): return nil
        case .success(let code): return statusError(code, "PUT")
        case .failure(let e): return e
        }
    }

    /// Checks at start that the remote answers and accepts the credentials (a HEAD of a key no blob
    /// has): nil when usable; otherwise the reason, and the breaker opens, so reads do not wait on it.
    public func probe() -> RemoteError? {
        switch head(ObjectID.zero) {
        case .present, .absent: return nil
        case .failed(let e):
            breaker.trip()
            return e
        }
    }

    // MARK: inside

    static func timeout(for bytes: Int) -> Duration {
        baseTimeout + .milliseconds(Int64(bytes) * 1000 / Int64(assumedRate))
    }

    private func statusError(_ code: Int, _ method: String) -> RemoteError {
        switch code {
        case 401, 403:
            return RemoteError(.denied, "the remote cache \(url) refused a \(method) (HTTP \(code)): check its credentials and the key's rights")
        case 429, 500...599:
            return RemoteError(.unavailable, "the remote cache \(url) answered HTTP \(code) to a \(method)")
        default:
            return RemoteError(.bad, "the remote cache \(url) answered HTTP \(code) to a \(method)")
        }
    }

    /// One request through the breaker, with retries on 429/5xx while `retryable()` holds. A status is
    /// returned as is; the breaker counts transport failures, 429/5xx and refusals (401/403) as failures.
    private func run(_ request: Transport.Request, retryable: () -> Bool) -> Result<Int, RemoteError> {
        switch breaker.allow() {
        case .go: break
        case .skip: return .failure(backingOff)
        case .probe:
            // Backing off, and this caller tries the remote again: a short HEAD first, so a remote still
            // down costs this reader at most `probeTimeout`, not a whole transfer's time-out.
            let probe = Transport.Request(method: .head, url: url.objectURL(ObjectID.zero), headers: extraHeaders,
                                          timeout: Self.probeTimeout, connectTimeout: Self.probeTimeout)
            switch transport.perform(probe) {
            case .status(let code) where code == 200 || code == 404:
                breaker.succeeded()
            default:
                breaker.failed()
                return .failure(backingOff)
            }
        }
        var attempt = 0
        while true {
            switch transport.perform(request) {
            case .status(let code) where code == 429 || (500...599).contains(code):
                attempt += 1
                if attempt < 3 && retryable() {
                    Self.backoffSleep(attempt)
                    continue
                }
                breaker.failed()
                return .success(code)
            case .status(let code) where code == 401 || code == 403:
                // A refused read means the credentials are wrong: back off. A refused upload may be a
                // read-only key, whose reads still work: not the breaker's business.
                if request.method == .put { breaker.succeeded() } else { breaker.failed() }
                return .success(code)
            case .status(let code):
                breaker.succeeded()
                return .success(code)
            case .aborted:
                breaker.succeeded()
                return .failure(RemoteError(.bad, "a transfer from the remote cache \(url) was stopped: its content failed a check"))
            case .failed(let message, let timedOut):
                breaker.failed()
                let what = timedOut ? "did not answer in time" : "could not be reached"
                return .failure(RemoteError(.unavailable, "the remote cache \(url) \(what) (\(Self.scrub(message)))"))
            }
        }
    }

    /// Jittered exponential backoff: 25–75 ms, then 50–150 ms.
    private static func backoffSleep(_ attempt: Int) {
        let base = 50_000 << (attempt - 1)
        usleep(UInt32(base / 2 + Int.random(in: 0...base)))
    }

    /// libcurl's messages name hosts and ports, never credentials; cut them short anyway.
    private static func scrub(_ message: String) -> String { String(message.prefix(200)) }
}
