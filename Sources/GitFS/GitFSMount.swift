import Basics
import ContentCache
import Foundation
import FuseServer
import GitStore
import Logging
import ReadAhead
import ReadModel
import RemoteCache
import RemoteTier
import Synchronization

/// How to mount a home.
public struct MountConfiguration: Sendable {
    public var home: Home
    public var mountpoint: String
    public var threads: Int = 32
    public var cacheMaxSize: Int?
    public var debug = false
    /// Where the server logs (nil: standard error); reported in the stats.
    public var logFile: String?
    /// Mount with `allow_other` (other users may read the mount); off: only the mounting user.
    public var allowOther = false
    /// Seconds between background fetches of every mirror; nil: no background fetch.
    public var fetchInterval: Double?
    /// A shared remote cache (its URL), how it is used and where it stands against the packs.
    public var remoteCache: String?
    public var remoteCacheMode: RemoteCacheMode = .read
    public var remoteCacheOrder: RemoteCacheOrder = .auto
    /// The total of the process's memory budget (nil: `MemoryBudget.defaultTotal`).
    public var memoryBudget: Int?

    public init(home: Home, mountpoint: String) {
        self.home = home
        self.mountpoint = mountpoint
    }
}

/// A mounted home: the resolver, the content cache, the FUSE server and, when a size limit is set, the
/// cache's background size enforcer. `serve()` blocks until the mount ends; `stop()` from any thread
/// (SIGTERM and SIGINT call it) unmounts cleanly, answering every request the kernel has handed over.
public final class GitFSMount: Sendable {
    public let configuration: MountConfiguration
    public let resolver: Resolver
    public let filesystem: GitFileSystem
    let server: FuseMount<GitFileSystem>
    let logger: Logger
    /// The background fetcher while `serve()` runs with a fetch interval.
    let fetcher = Mutex<BackgroundFetcher?>(nil)
    /// The remote cache, when one is configured.
    public let remote: RemoteTier?

    /// The `source` field the mount shows in /proc/mounts: `gitfs:<pid>` lets `gitfs unmount` find the
    /// server without touching the (possibly dead) mount.
    public static func sourceName(pid: Int32) -> String { "gitfs:\(pid)" }

    public init(configuration: MountConfiguration, logger: Logger) throws(MountError) {
        self.configuration = configuration
        self.logger = logger
        let store = MirrorStore(home: configuration.home)
        if store.names().isEmpty {
            throw MountError("no repositories in \(configuration.home.reposPath): add one with 'gitfs clone URL' first")
        }
        if let total = configuration.memoryBudget { MemoryBudget.process.setTotal(total) }
        let cache: ContentCache
        do { cache = try Resolver.openCache(home: configuration.home) } catch { throw MountError("\(error)") }
        var remote: RemoteTier?
        if let text = configuration.remoteCache {
            do {
                let client = try RemoteCacheClient(url: try RemoteURL(text))
                remote = RemoteTier(client: client, cache: cache, mode: configuration.remoteCacheMode, logger: logger)
            } catch { throw MountError("\(error)") }
            // A remote that refuses us or does not answer: one line, and the mount serves from its packs.
            if let problem = remote?.probe() {
                FileHandle.standardError.write(Data("gitfs: warning: \(problem)\n".utf8))
            }
        }
        self.remote = remote
        let resolver = Resolver(store: store, cache: cache, readAhead: MountReadAhead(cache: cache, logger: logger),
                                loaders: remote?.loaders(order: configuration.remoteCacheOrder) ?? [PackSource()],
                                logsFailures: false, logger: logger)   // GitFileSystem logs each failure once
        self.resolver = resolver
        filesystem = GitFileSystem(resolver: resolver, logger: logger)
        var options = FuseMountOptions()
        options.threads = max(1, configuration.threads)
        options.debug = configuration.debug
        options.fsName = Self.sourceName(pid: getpid())
        options.allowOther = configuration.allowOther
        do {
            server = try FuseMount(filesystem: filesystem, mountpoint: configuration.mountpoint, options: options, logger: logger)
        } catch {
            // The resolver's background threads must be joined before it goes: a read-ahead walk
            // still running would reach the freed resolver through its views (issue 17, defect 8).
            resolver.shutdown()
            remote?.shutdown(grace: .zero)
            throw MountError("\(error)")
        }
        // Only a mount that exists is worth warming up.
        resolver.warmUp()
        let server = self.server
        filesystem.setKernelCache(KernelCacheAccess(
            holds: { [unowned server] node in server.holdsInode(of: node) },
            store: { [unowned server] node, bytes in server.storeInKernelCache(node, offset: 0, bytes: bytes) }))
        let started = Date()
        filesystem.setStatsSource { [weak self] in
            guard let self else { return Array("{}\n".utf8) }
            return self.statsJSON(uptime: Date().timeIntervalSince(started))
        }
    }

    /// Serves until unmounted; enforces the cache size limit and fetches in the background meanwhile
    /// (both stopped and joined before it returns).
    public func serve() {
        let enforcer = configuration.cacheMaxSize.map {
            resolver.cache.startSizeEnforcer(maxSize: $0, interval: .seconds(30))
        }
        let background = configuration.fetchInterval.map {
            BackgroundFetcher(store: resolver.store, interval: $0, logger: logger)
        }
        fetcher.withLock { $0 = background }
        logger.info("serving", metadata: ["mountpoint": "\(configuration.mountpoint)", "threads": "\(configuration.threads)",
                                          "fetch_interval": "\(configuration.fetchInterval.map { "\($0)s" } ?? "off")"])
        server.serve()
        background?.stop()
        resolver.shutdown()
        remote?.shutdown()
        enforcer?.stop()
        resolver.cache.flushUsage()
        logger.info("unmounted", metadata: ["mountpoint": "\(configuration.mountpoint)"])
    }

    /// Begins a clean unmount. Thread-safe and idempotent.
    public func stop() {
        resolver.origin.shutdown()   // blobless mirrors: fetches in flight stop, so requests waiting on them end
        server.stop()
    }

    /// SIGTERM, SIGINT and SIGHUP stop the mount cleanly.
    public func installSignalHandlers() { server.installSignalHandlers() }

    /// The counters of `.gitfs/stats` as one JSON object.
    public func statsJSON(uptime: Double) -> [UInt8] {
        let s = server.counters
        let r = resolver.counters
        let totals = resolver.cache.runningTotals()
        var fields: [(String, String)] = [
            ("requests", "\(s.requests)"), ("reads", "\(s.reads)"), ("bytes_read", "\(s.bytesRead)"),
            ("cache_hits", "\(r.cacheHits)"), ("cache_misses", "\(r.cacheMisses)"), ("blob_loads", "\(r.blobLoads)"),
            ("singleflight_joins", "\(r.singleflightJoins)"), ("pushed_bytes", "\(s.pushedBytes)"), ("speculative_loads", "\(r.speculativeLoads)"), ("trees_read_ahead", "\(r.treesReadAhead)"), ("errors", "\(s.errors)"), ("not_found", "\(s.notFound)"), ("inflight", "\(s.inflight)"),
            ("cache_entries", "\(totals.entries)"), ("cache_bytes", "\(totals.diskBytes)"),
            ("pid", "\(getpid())"), ("uptime_seconds", String(format: "%.1f", uptime)),
            ("mountpoint", jsonString(configuration.mountpoint)), ("home", jsonString(configuration.home.path)),
        ]
        let f = fetcher.withLock { $0?.snapshot } ?? FetchCounters()
        fields += [("fetches", "\(f.fetches)"), ("fetch_errors", "\(f.errors)"), ("last_fetch", "\(f.lastFetch)")]
        let o = resolver.origin.counters
        fields += [("origin_fetches", "\(o.fetches)"), ("origin_objects", "\(o.objects)"), ("origin_bytes", "\(o.bytes)"),
                   ("origin_errors", "\(o.errors)"), ("origin_batch_joins", "\(o.batchJoins)")]
        fields += remote?.statsFields ?? RemoteTier.disabledStatsFields
        let m = resolver.budget.snapshot
        fields += [("memory_budget_bytes", "\(m.total)"), ("memory_used_bytes", "\(m.used)"), ("memory_peak_bytes", "\(m.peak)"),
                   ("memory_waits", "\(m.waits)"), ("memory_declines", "\(m.declines)"), ("memory_overdrafts", "\(m.overdrafts)"),
                   ("memory_fallbacks", "\(m.fallbacks)")]
        fields.append(("log_file", configuration.logFile.map(jsonString) ?? "null"))
        let body = fields.map { "  \"\($0.0)\": \($0.1)" }.joined(separator: ",\n")
        return Array("{\n\(body)\n}\n".utf8)
    }
}

/// Escapes a string as a JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}

/// Why a mount could not be made: one line that says what to do.
public struct MountError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
