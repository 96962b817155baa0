import Basics
import CCurl
import Synchronization

/// One HTTP exchange over libcurl: GET (optionally a byte range, the body handed to a sink as it
/// arrives), HEAD, or PUT (the body pulled from a source as it goes). Easy handles are pooled, so
/// connections stay alive between requests (libcurl keeps each handle's connections). Time-outs: a
/// connect time-out, and a total deadline the caller scales to the size. Thread-safe.
final class Transport: Sendable {
    enum Method: Sendable { case get, head, put }

    struct Request {
        var method: Method
        var url: String
        var headers: [String] = []
        /// Bytes [lower, upper] (inclusive), GET only.
        var range: ClosedRange<Int>?
        /// PUT: the body's size and a source filling the buffer from an offset (returns the count).
        var bodySize = 0
        var body: ((Int, UnsafeMutableRawBufferPointer) -> Int)?
        /// GET: receives the body of a 2xx answer; false aborts the transfer.
        var sink: ((UnsafeRawBufferPointer) -> Bool)?
        var timeout: Duration
        var connectTimeout: Duration = .seconds(2)
    }

    enum Outcome {
        /// The server answered with this status (the body went to the sink when it was 2xx).
        case status(Int)
        /// No answer: could not connect, timed out, or the transfer broke (libcurl's message).
        case failed(String, timedOut: Bool)
        /// The sink (or the body source) stopped the transfer.
        case aborted
    }

    private let auth: Auth
    /// A libcurl easy handle; used by one thread at a time (taken from and returned to the pool).
    private struct Handle: @unchecked Sendable { let raw: UnsafeMutableRawPointer }
    private let pool = Mutex<[Handle]>([])
    private static let maxPooled = 16
    private static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK }()

    enum Auth: Sendable {
        case none
        case netrc
        case basic(user: String, password: String)
        case sigv4(provider: String, access: String, secret: String)
    }

    init(auth: Auth) {
        _ = Self.globalInit
        self.auth = auth
    }

    deinit {
        for h in pool.withLock({ $0 }) { curl_easy_cleanup(h.raw) }
    }

    /// Runs one request to completion on the calling thread.
    func perform(_ r: Request) -> Outcome {
        guard let handle = pool.withLock({ $0.popLast() })?.raw ?? curl_easy_init() else {
            return .failed("cannot create a libcurl handle", timedOut: false)
        }
        defer {
            curl_easy_reset(handle)
            let kept = pool.withLock { p -> Bool in
                guard p.count < Self.maxPooled else { return false }
                p.append(Handle(raw: handle))
                return true
            }
            if !kept { curl_easy_cleanup(handle) }
        }
        let ctx = Context(handle: handle, request: r)
        let unmanaged = Unmanaged.passRetained(ctx)
        defer { unmanaged.release() }
        let opaque = unmanaged.toOpaque()

        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(list) }
        for h in r.headers { list = curl_slist_append(list, h) }
        // No "Expect: 100-continue" round trip before a PUT body. Not with SigV4: libcurl would sign the
        // emptied header it then does not send, and the server would reject the signature.
        if r.method == .put, case .sigv4 = auth {} else if r.method == .put { list = curl_slist_append(list, "Expect:") }

        _ = gitfs_curl_setopt_string(handle, CURLOPT_URL, r.url)
        _ = gitfs_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = gitfs_curl_setopt_long(handle, CURLOPT_TCP_NODELAY, 1)
        _ = gitfs_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, Int(r.timeout.milliseconds)))
        _ = gitfs_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(r.connectTimeout.milliseconds)))
        // A transfer that stalls (under 1 KiB/s for 2 s) is given up whatever its size allowed.
        _ = gitfs_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1024)
        _ = gitfs_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, 2)
        _ = gitfs_curl_setopt_list(handle, CURLOPT_HTTPHEADER, list)
        switch auth {
        case .none: break
        case .netrc:
            _ = gitfs_curl_setopt_long(handle, CURLOPT_NETRC, Int(CURL_NETRC_OPTIONAL.rawValue))
        case .basic(let user, let password):
            _ = gitfs_curl_setopt_string(handle, CURLOPT_USERNAME, user)
            _ = gitfs_curl_setopt_string(handle, CURLOPT_PASSWORD, password)
        case .sigv4(let provider, let access, let secret):
            _ = gitfs_curl_setopt_string(handle, CURLOPT_AWS_SIGV4, provider)
            _ = gitfs_curl_setopt_string(handle, CURLOPT_USERNAME, access)
            _ = gitfs_curl_setopt_string(handle, CURLOPT_PASSWORD, secret)
        }
        switch r.method {
        case .get:
            _ = gitfs_curl_setopt_long(handle, CURLOPT_HTTPGET, 1)
            if let range = r.range { _ = gitfs_curl_setopt_string(handle, CURLOPT_RANGE, "\(range.lowerBound)-\(range.upperBound)") }
        case .head:
            _ = gitfs_curl_setopt_long(handle, CURLOPT_NOBODY, 1)
        case .put:
            _ = gitfs_curl_setopt_long(handle, CURLOPT_UPLOAD, 1)
            _ = gitfs_curl_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(r.bodySize))
            _ = gitfs_curl_set_read(handle, { buf, size, n, ctx in
                let c = Unmanaged<Context>.fromOpaque(ctx!).takeUnretainedValue()
                guard let body = c.request.body else { return 0 }
                let want = min(size * n, c.request.bodySize - c.sent)
                guard want > 0 else { return 0 }
                let got = body(c.sent, UnsafeMutableRawBufferPointer(start: buf, count: want))
                guard got > 0 else {
                    c.aborted = true
                    return Int(CURL_READFUNC_ABORT)
                }
                c.sent += got
                return got
            }, opaque)
        }
        _ = gitfs_curl_set_write(handle, { data, size, n, ctx in
            let c = Unmanaged<Context>.fromOpaque(ctx!).takeUnretainedValue()
            let count = size * n
            let code = gitfs_curl_response_code(c.handle)
            // Error bodies (an S3 XML error, an HTML page) are read and dropped.
            guard (200..<300).contains(code), let sink = c.request.sink else { return count }
            guard sink(UnsafeRawBufferPointer(start: data, count: count)) else {
                c.aborted = true
                return 0
            }
            return count
        }, opaque)
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let rc = errorBuffer.withUnsafeMutableBufferPointer { eb -> CURLcode in
            _ = gitfs_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, eb.baseAddress)
            return curl_easy_perform(handle)
        }
        _ = gitfs_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)
        if ctx.aborted { return .aborted }
        guard rc == CURLE_OK else {
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let message = detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
            return .failed(message, timedOut: rc == CURLE_OPERATION_TIMEDOUT)
        }
        return .status(gitfs_curl_response_code(handle))
    }

    private final class Context {
        let handle: UnsafeMutableRawPointer
        let request: Request
        var sent = 0
        var aborted = false
        init(handle: UnsafeMutableRawPointer, request: Request) {
            self.handle = handle
            self.request = request
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}
