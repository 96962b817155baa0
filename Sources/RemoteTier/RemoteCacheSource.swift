import Basics
import ContentCache
import GitStore
import Logging
import ReadModel
import RemoteCache
import Synchronization

/// A remote cache as a loader of the blob chain. `open` GETs the blob's entry, streaming it into a
/// temporary file of the local content cache (never the whole entry in memory), checks it as untrusted
/// input — integrity rules 1–4 and git's hash of the content — and only then publishes it locally and
/// returns it `.cached` (so the chain does no fill-back). A 404, a failed check, a refused or broken
/// transfer, a time-out or the breaker being open all return nil: the read goes on to the next source.
/// `gate` limits which blobs this placement asks for (the size policy of `--remote-cache-order auto`).
/// Thread-safe.
struct RemoteCacheSource: BlobSource {
    let name = "remote"
    let role = BlobSourceRole.loader
    let remote: RemoteTier
    /// Whether to ask the remote for a blob whose size the packs give (nil: the packs lack it); nil
    /// gate: every blob (no size needed).
    let gate: (@Sendable (Int?) -> Bool)?
    /// Whether this placement answers sizes (only the one after the packs, so a size the packs know is
    /// never asked of the remote).
    let answersSizes: Bool

    func size(of request: BlobRequest) -> Int? {
        guard answersSizes, !remote.client.isSkipping, packSize(request) == nil else { return nil }
        return remote.remoteSize(request.id)
    }

    func open(_ request: BlobRequest) -> LoadedBlob? {
        // A remote being skipped costs a reader nothing: no pack header read, no file, no request.
        if remote.client.isSkipping { return nil }
        let known = packSize(request)
        if let gate, !gate(known) { return nil }
        return remote.fetch(request.id, sizeHint: known).map { .cached($0) }
    }

    /// The blob's size from the repository's pack headers (no inflating); nil when the packs lack it.
    private func packSize(_ request: BlobRequest) -> Int? {
        try? request.repository.header(request.id).size
    }
}
