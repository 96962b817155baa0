import Basics
import Synchronization

/// The handle of an open file as stored in fi->fh (an Unmanaged, retained until release). Immutable:
/// the requests of one open file may read it from several threads at once.
final class HandleBox<Handle: Sendable> {
    let handle: Handle
    init(_ handle: Handle) { self.handle = handle }
}

/// An open directory: the listing taken once at opendir, served by index (offset = index + 1;
/// indexes 0 and 1 are `.` and `..`).
final class DirectoryHandle<Node: Hashable & Sendable>: @unchecked Sendable {  // immutable
    let entries: [DirectoryEntry<Node>]
    /// Every name NUL-terminated, one after the other (one allocation, not one per entry).
    private let names: [CChar]
    private let nameStarts: [Int32]
    init(entries: [DirectoryEntry<Node>]) {
        self.entries = entries
        var names: [CChar] = []
        names.reserveCapacity(entries.reduce(0) { $0 + $1.name.count + 1 })
        var starts: [Int32] = []
        starts.reserveCapacity(entries.count)
        for entry in entries {
            starts.append(Int32(names.count))
            for byte in entry.name { names.append(CChar(bitPattern: byte)) }
            names.append(0)
        }
        self.names = names
        self.nameStarts = starts
    }

    /// Calls `body` with the NUL-terminated name of entry `i`.
    func withName<R>(_ i: Int, _ body: (UnsafePointer<CChar>) -> R) -> R {
        names.withUnsafeBufferPointer { body($0.baseAddress! + Int(nameStarts[i])) }
    }
}

/// The handles (fi->fh values) the kernel holds open, so that handles whose RELEASE never arrives (the
/// kernel aborts queued requests when a lazily unmounted filesystem goes away) are still released once
/// at the end of serve(). Sharded by pointer bits; thread-safe; no global lock.
final class OpenHandleRegistry: Sendable {
    private final class ShardBox: Sendable {
        let handles = Mutex<[UInt64: Bool]>([:])   // fh -> isDirectory
    }
    private let shards: [ShardBox] = (0..<16).map { _ in ShardBox() }

    @inline(__always) private func shard(_ fh: UInt64) -> ShardBox { shards[Int((fh >> 4) & 15)] }

    func insert(_ fh: UInt64, isDirectory: Bool) {
        let previous = shard(fh).handles.withLock { $0.updateValue(isDirectory, forKey: fh) }
        precondition(previous == nil, "file handle registered twice")
    }

    /// True when `fh` was registered (and is now removed): the caller owns its release.
    func remove(_ fh: UInt64) -> Bool {
        shard(fh).handles.withLock { $0.removeValue(forKey: fh) != nil }
    }

    /// Removes and returns every registered handle.
    func drain() -> [(fh: UInt64, isDirectory: Bool)] {
        shards.flatMap { box in
            box.handles.withLock { handles in
                defer { handles.removeAll() }
                return handles.map { (fh: $0.key, isDirectory: $0.value) }
            }
        }
    }
}

extension FuseMount {
    /// Releases every handle the kernel never sent RELEASE for (connection ended with files open).
    /// Runs after all workers joined, so nothing else touches the handles.
    func releaseOrphanedHandles() {
        let orphans = openHandles.drain()
        for (fh, isDirectory) in orphans {
            guard let raw = UnsafeRawPointer(bitPattern: UInt(fh)) else { continue }
            if isDirectory {
                Unmanaged<DirectoryHandle<FS.Node>>.fromOpaque(raw).release()
            } else {
                filesystem.release(Unmanaged<HandleBox<FS.Handle>>.fromOpaque(raw).takeRetainedValue().handle)
            }
        }
        if !orphans.isEmpty { logger.debug("released \(orphans.count) handles the kernel never released") }
    }
}
