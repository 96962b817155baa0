import Basics
import Foundation

/// Where a remote cache lives, parsed from its URL: an S3 bucket and prefix (`s3://BUCKET/PREFIX?
/// endpoint=URL&region=R`; path-style requests when an endpoint is given, virtual-hosted AWS style
/// otherwise) or an HTTP(S) folder (`http[s]://[USER:PASSWORD@]HOST[:PORT]/PATH`). Objects are named
/// `PREFIX/gitfs/v1/<2 hex>/<38 hex>` (cache-layout.md, "Remote caches"). A value; `description` never
/// shows a password.
public struct RemoteURL: Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case s3, http }

    public let kind: Kind
    /// Everything before the object name, ending in "/gitfs/v1/" (no credentials in it).
    let base: String
    /// S3: the region signed for.
    public let region: String
    /// HTTP: basic-auth user and password from the URL (else ~/.netrc is consulted).
    let user: String?
    let password: String?
    /// The URL as given, with any password masked.
    public let description: String

    /// Parses `text`; throws one line saying what is wrong (never echoing a password).
    public init(_ text: String) throws(RemoteError) {
        let shown = Self.redact(text)
        guard let comps = URLComponents(string: text), let scheme = comps.scheme?.lowercased() else {
            throw RemoteError(.invalid, "the remote cache URL '\(shown)' is not a URL: use s3://BUCKET/PREFIX?endpoint=…&region=… or http(s)://HOST/PATH")
        }
        description = shown
        let path = comps.percentEncodedPath.split(separator: "/").joined(separator: "/")
        let prefix = path.isEmpty ? "" : path + "/"
        switch scheme {
        case "s3":
            guard let bucket = comps.host, !bucket.isEmpty else {
                throw RemoteError(.invalid, "the remote cache URL '\(shown)' names no bucket: use s3://BUCKET/PREFIX")
            }
            kind = .s3
            user = nil
            password = nil
            let items = comps.queryItems ?? []
            region = items.first { $0.name == "region" }?.value ?? ProcessInfo.processInfo.environment["AWS_REGION"] ?? "us-east-1"
            if let endpoint = items.first(where: { $0.name == "endpoint" })?.value {
                guard let e = URLComponents(string: endpoint), let es = e.scheme, es == "http" || es == "https", e.host != nil else {
                    throw RemoteError(.invalid, "the remote cache URL '\(shown)' has an endpoint that is not an http(s) URL")
                }
                var root = endpoint
                while root.hasSuffix("/") { root.removeLast() }
                base = root + "/" + bucket + "/" + prefix + "gitfs/v1/"
            } else {
                base = "https://" + bucket + ".s3." + region + ".amazonaws.com/" + prefix + "gitfs/v1/"
            }
        case "http", "https":
            guard let host = comps.percentEncodedHost, !host.isEmpty else {
                throw RemoteError(.invalid, "the remote cache URL '\(shown)' names no host")
            }
            kind = .http
            region = ""
            user = comps.user
            password = comps.password
            let port = comps.port.map { ":\($0)" } ?? ""
            base = scheme + "://" + host + port + "/" + prefix + "gitfs/v1/"
        default:
            throw RemoteError(.invalid, "the remote cache URL '\(shown)' has scheme '\(scheme)': use s3://, http:// or https://")
        }
    }

    /// The object URL of `key`.
    public func objectURL(_ key: ObjectID) -> String {
        let hex = key.hex
        return base + hex.prefix(2) + "/" + hex.dropFirst(2)
    }

    /// `text` with a URL password and secret query values masked.
    static func redact(_ text: String) -> String {
        guard var comps = URLComponents(string: text) else { return "(unparsable URL)" }
        if comps.password != nil { comps.password = "***" }
        if let items = comps.queryItems {
            comps.queryItems = items.map { i in
                ["endpoint", "region"].contains(i.name) ? i : URLQueryItem(name: i.name, value: "***")
            }
        }
        return comps.string ?? "(unparsable URL)"
    }
}

/// A remote cache failure, one line; never carries a credential. A value.
public struct RemoteError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The URL or the credentials are not usable as given.
        case invalid
        /// The server refused the credentials or the key's rights (401/403).
        case denied
        /// The server could not be reached in time, or answered 5xx/429 after retries.
        case unavailable
        /// The breaker is open: the remote is skipped for a while after repeated failures.
        case backingOff
        /// The server answered something unexpected, or the content failed its checks.
        case bad
        /// The local side failed (writing the local cache).
        case local
    }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}
