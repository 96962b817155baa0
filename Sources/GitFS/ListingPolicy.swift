import Basics
import Synchronization

/// Whether a listing of a small directory under `commits/` gives its files' attributes, or their
/// names and types only (`DirectoryEntry.withoutAttributes`), decided from what the mount's users did
/// lately.
///
/// A READDIRPLUS entry with attributes costs the server the blob's size and an inode, and costs the
/// kernel an inode it builds in the reader's time: a tree walk that never looks at its files (`find`,
/// `find -type f`, `fd`) pays that for every file. An entry with the name and type only costs
/// neither, but a reader that then stats or opens the file sends one LOOKUP for it, and the kernel
/// does not hold the file, so reading a sibling cannot push it into the page cache. So a listing is
/// names-only when it looks like part of a walk that uses no files: another directory was listed less
/// than `window` before it, and no file was looked up or read from its start for `window`. A first
/// listing after a pause (`ls dir`, then reading its files) is whole; the first directory of a `tar`,
/// `grep -r` or build that holds files is whole, and its first `stat` or read keeps the following
/// listings whole. Directories of more than `maxNamesOnlyEntries` entries are always whole: `ls -l` of
/// a huge directory reads the whole listing before its first stat, and one LOOKUP per entry there is
/// what READDIRPLUS is for. Subdirectories are always whole (a walk descends into them).
///
/// Cost: one atomic exchange per listing of a tree, and on the read path one relaxed atomic load per
/// LOOKUP of a file or read from offset 0, with a store at most every `refresh`. Thread-safe, lock-free.
final class ListingPolicy: Sendable {
    /// How long a file lookup or read keeps listings full.
    let window: Duration
    /// Directories larger than this are always listed with attributes.
    static let maxNamesOnlyEntries = 1024
    /// The last use is stored at most this often (the loads stay shared, read-only cache lines).
    static let refresh: UInt64 = 50_000_000
    /// When a file was last looked up or read from its start (monotonic ns; 0: never).
    private let lastFileUse = Atomic<UInt64>(0)
    /// When a tree was last listed (monotonic ns; 0: never).
    private let lastListing = Atomic<UInt64>(0)

    init(window: Duration = .seconds(2)) {
        self.window = window
    }

    /// A file was looked up or read from its start: someone uses files, not just names.
    func noteFileUse() {
        let now = MonotonicTime.now.nanoseconds
        if now &- lastFileUse.load(ordering: .relaxed) > Self.refresh {
            lastFileUse.store(now, ordering: .relaxed)
        }
    }

    /// A tree of `entries` entries is being listed: true when the listing should give its files' names
    /// and types only.
    func namesOnly(entries: Int) -> Bool {
        let now = MonotonicTime.now
        let previous = lastListing.exchange(now.nanoseconds, ordering: .relaxed)
        guard entries <= Self.maxNamesOnlyEntries, previous != 0,
              now - MonotonicTime(nanoseconds: previous) <= window else { return false }
        let used = lastFileUse.load(ordering: .relaxed)
        return used == 0 || now - MonotonicTime(nanoseconds: used) > window
    }
}
