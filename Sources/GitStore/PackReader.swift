// PackReader: the set of packs of one mirror, rescanned when the directory changes, and the blob lookup over it.
import Basics
import Glibc
import Synchronization

/// gitfs's own reader for blobs in packs: the `.idx` lookup and the pack entry headers are parsed here,
/// zlib streams are inflated with libdeflate into buffers of exactly the size the header gives (about
/// 2.3× zlib's `inflate`, which libgit2 and git use), and delta chains are rebuilt here (`Delta`, with
/// the process-wide `DeltaBaseCache`). Every result is checked before it is returned (see
/// `MappedPack.blob`). Loose objects, other types and anything that does not check out are `.notHere`,
/// and the caller reads them with libgit2, which stays the authority. A pack that shrank under the reader
/// (truncated by disk trouble or a tool) is reported as damage, never read past its end: headers and small
/// entries are read with `pread` (a short read is the bounds check against the current size), big ones
/// from the mapping only after `fstat` says the pack still has its size, and the SIGBUS guard
/// (`CPackGuard`) turns a truncation racing with that read into zeros the checksums refuse.
/// Thread-safe: the pack set is read and swapped under a per-repository lock held for a copy of it (or a
/// rescan when the directory changed); inflating runs without a lock.
final class PackReader: Sendable {
    private let directory: String
    private let state = Mutex(PackSetState())

    private struct PackSetState: ~Copyable {
        var stamp: (sec: Int, nsec: Int)? = nil
        var packs: [MappedPack] = []
        /// When the directory was last looked at (`CLOCK_MONOTONIC`, ns).
        var checked: UInt64 = 0
    }

    /// How long a look at the pack directory stays good for reads that find their object: a `stat` per
    /// read cost 6.6% of reading small blobs. An object missing from the packs looks again at once (a
    /// fetch adds packs); this bound is how long packs a gc removed stay mapped (their space held).
    static let recheckInterval: UInt64 = 1_000_000_000

    /// Reads the packs under `objectsPack` (`<mirror>/objects/pack`) lazily, on the first read.
    init(objectsPack: String) {
        directory = objectsPack
    }

    /// Bases of deltas recently rebuilt, shared by every repository of the process (one bound in all).
    private static let bases = DeltaBaseCache()

    /// What `blob(_:)` found.
    enum Found {
        case blob(BlobBuffer)
        /// Loose, not a blob, or an entry that does not check out: the caller asks libgit2.
        case notHere
        /// The pack holding it shrank since it was opened: what `PackDamage.diagnose` says of it.
        case damaged(String)
    }

    /// The blob `id` from the first pack that holds it, inflated (and rebuilt from its delta chain when
    /// deltified); `.notHere` when it is loose, not a blob, or anything does not check out (the caller
    /// falls back to libgit2); `.damaged` when its pack is shorter than when it was opened.
    func blob(_ id: ObjectID) -> Found {
        var looked = packs(lookNow: false)
        while true {
            for pack in looked.packs {
                guard let i = pack.position(of: id) else { continue }
                if let b = pack.blob(position: i, id: id, bases: Self.bases) { return .blob(b) }
                guard let size = pack.currentSize(), size == pack.size else {
                    return .damaged(PackDamage.diagnose(packDirectory: directory)
                        ?? "pack \(pack.name).pack is damaged (it shrank from \(pack.size) bytes while open)")
                }
                return .notHere
            }
            // Not in the packs as last seen: unless they were just looked at, look again (a fetch).
            guard !looked.fresh else { return .notHere }
            looked = packs(lookNow: true)
        }
    }

    /// The current packs, and whether the directory was looked at by this call. It is looked at
    /// (`stat`, then the `*.idx` files when its mtime moved) when `lookNow` or when the last look is
    /// older than `recheckInterval`, so a pack gc removed is unmapped once no reader holds it.
    func packs(lookNow: Bool) -> (packs: [MappedPack], fresh: Bool) {
        let now = MonotonicTime.now.nanoseconds
        let current = state.withLock { s -> [MappedPack]? in
            lookNow || s.stamp == nil || now &- s.checked >= Self.recheckInterval ? nil : s.packs
        }
        if let current { return (current, false) }
        var st = stat()
        guard stat(directory, &st) == 0 else { return ([], true) }
        let stamp = (sec: st.st_mtim.tv_sec, nsec: st.st_mtim.tv_nsec)
        let packs = state.withLock { s -> [MappedPack] in
            s.checked = now
            if let old = s.stamp, old == stamp { return s.packs }
            var kept: [String: MappedPack] = [:]
            for p in s.packs { kept[p.name] = p }
            var fresh: [MappedPack] = []
            for name in Self.indexNames(in: directory) {
                let base = String(name.dropLast(4))
                // Same name and same file: a pack rewritten under its old name (a repack of identical
                // content) is mapped anew, so the deleted file's space is not held.
                if let p = kept[base], p.file == MappedPack.FileID(path: directory + "/" + base + ".pack") {
                    fresh.append(p)
                } else if let p = MappedPack(directory: directory, name: base) {
                    fresh.append(p)
                }
            }
            s.packs = fresh
            s.stamp = stamp
            return fresh
        }
        return (packs, true)
    }

    /// Names of the `*.idx` files in `dir` (`opendir`/`readdir`), sorted for a stable order.
    private static func indexNames(in dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix("pack-"), name.hasSuffix(".idx") { names.append(name) }
        }
        return names.sorted()
    }
}
