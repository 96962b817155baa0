import ArgumentParser
import ContentCache
import Foundation
import GitStore
import Logging
import ReadModel
import RemoteCache
import RemoteTier
import Settings

extension RemoteCacheMode: ExpressibleByArgument {}
extension RemoteCacheOrder: ExpressibleByArgument {}

/// The remote-cache options of `mount`, `prefetch` and `cat`.
struct RemoteCacheOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A shared content cache: s3://BUCKET/PREFIX?endpoint=URL&region=R or http(s)://HOST/PATH. Setting: remote-cache; env GITFS_REMOTE_CACHE.", valueName: "url"))
    var remoteCache: String?
    @Option(help: ArgumentHelp("read: take blobs from the remote cache; read-write: also upload what this process stores (default: read; read-write for prefetch --push).", valueName: "mode"))
    var remoteCacheMode: RemoteCacheMode?
    @Option(help: ArgumentHelp("Where the remote cache stands against the local packs: auto (big blobs from the remote first, small ones from the packs), remote-first, packs-first.", valueName: "order"))
    var remoteCacheOrder: RemoteCacheOrder = .auto

    /// The remote cache URL in force: the flag, then GITFS_REMOTE_CACHE, then the home's setting.
    func url(home: Home) throws -> String? {
        let settings = try HomeSettings(home: home.path)
        guard let text = settings.effective(.remoteCache, flag: remoteCache), !text.isEmpty else { return nil }
        return text
    }

    /// The remote tier for a command (nil without a remote cache). A remote that cannot be used is
    /// said in one warning line, and the command goes on with its packs.
    func tier(home: Home, cache: ContentCache, defaultMode: RemoteCacheMode, uploadsStores: Bool = true) throws -> RemoteTier? {
        guard let text = try url(home: home) else { return nil }
        let client: RemoteCacheClient
        do { client = try RemoteCacheClient(url: try RemoteURL(text)) } catch { throw CommandFailure(error.description) }
        let tier = RemoteTier(client: client, cache: cache, mode: remoteCacheMode ?? defaultMode, uploadsStores: uploadsStores, logger: Logger(label: "gitfs.remote"))
        if let problem = tier.probe() {
            FileHandle.standardError.write(Data("gitfs: warning: \(problem)\n".utf8))
        }
        return tier
    }

    /// The chain's loaders with `tier` (the packs alone without one).
    func loaders(_ tier: RemoteTier?) -> [any BlobSource] {
        tier?.loaders(order: remoteCacheOrder) ?? [PackSource()]
    }
}
