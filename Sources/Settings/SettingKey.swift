import Basics

/// One setting a home can keep (`gitfs config KEY VALUE`): its name, what values it takes, the
/// environment variable that overrides it, and how it is shown. Plain values: thread-safe.
public struct SettingKey: Sendable, Hashable {
    /// What values a key takes; the command line checks them (sizes and durations as its flags do).
    public enum Kind: Sendable, Hashable {
        case duration, size, bool, url
    }

    public let name: String
    public let kind: Kind
    /// The environment variable that overrides the stored value (a flag overrides both).
    public let environment: String
    public let help: String

    /// The keys a home knows. Add one line per new setting (e.g. `remote-cache`, kind `.url`: URLs are
    /// shown with their credentials masked).
    public static let all: [SettingKey] = [
        SettingKey(name: "fetch-interval", kind: .duration, environment: "GITFS_FETCH_INTERVAL",
                   help: "fetch every mirror in the background this often while mounted (e.g. 15m; 0 or unset: never)"),
        SettingKey(name: "allow-other", kind: .bool, environment: "GITFS_ALLOW_OTHER",
                   help: "mount with allow_other so other users can read the mount (true/false; needs user_allow_other in /etc/fuse.conf)"),
        SettingKey(name: "cache-max-size", kind: .size, environment: "GITFS_CACHE_MAX_SIZE",
                   help: "keep the content cache under this size while mounted (e.g. 10G)"),
        SettingKey(name: "remote-cache", kind: .url, environment: "GITFS_REMOTE_CACHE",
                   help: "a shared content cache: s3://BUCKET/PREFIX?endpoint=URL&region=R or http(s)://HOST/PATH (mount, prefetch, cat)"),
        SettingKey(name: "memory-budget", kind: .size, environment: "GITFS_MEMORY_BUDGET",
                   help: "what a mount (or cat, prefetch) keeps in memory for its caches, pending fills and streams, in all (e.g. 64M; at least 16M)"),
    ]

    public static func named(_ name: String) -> SettingKey? { all.first { $0.name == name } }

    public static let fetchInterval = named("fetch-interval")!
    public static let allowOther = named("allow-other")!
    public static let cacheMaxSize = named("cache-max-size")!
    public static let remoteCache = named("remote-cache")!
    public static let memoryBudget = named("memory-budget")!

    /// `value` as it may be printed: URLs with any password, token or signature masked.
    public func display(_ value: String) -> String {
        kind == .url ? Credentials.redacted(value) : value
    }

    /// "true"/"yes"/"on"/"1" and "false"/"no"/"off"/"0"; nil otherwise.
    public static func bool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: return nil
        }
    }
}
