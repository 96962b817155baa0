import Basics
import FuseServer
import GitStore
import ReadModel

/// What a file of the mount reads from.
enum FileContent {
    case blob(BlobContent)
    case bytes([UInt8])
}

/// READ of the mount layout (by node: files are served without OPEN) and the `.gitfs/stats` snapshots.
extension GitFileSystem {
    /// What a file node reads from: a stats snapshot, or the blob's opened content.
    private func content(of node: GitFSNode) throws(Errno) -> FileContent {
        switch node {
        case .stats(let snapshot):
            return .bytes(statsSnapshots.withLock { $0.recent[snapshot] } ?? [])
        case .object(let o) where o.entry.kind == .file || o.entry.kind == .executable:
            return .blob(try loading(o.repo) { () throws(ResolverError) in try o.repo.view.openBlob(o.entry.oid) })
        case .object(let o) where o.entry.kind == .directory || o.entry.kind == .submodule:
            throw .isDirectory
        case .root, .control, .repository, .refDirectory, .commits:
            throw .isDirectory
        default:
            throw .invalid
        }
    }

    /// Bytes of `node` at `offset` (0 at the end). A read from the start of a file the kernel had not
    /// cached also pushes the file's small siblings into the page cache (KernelCache.swift).
    public func read(node: GitFSNode, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        let n: Int
        switch try content(of: node) {
        case .bytes(let bytes):
            guard offset < bytes.count else { return 0 }
            n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        case .blob(let blob):
            guard case .object(let o) = node else { return 0 }
            n = try loading(o.repo) { () throws(ResolverError) in try blob.read(offset: offset, into: buffer) }
            if offset == 0 {
                listingPolicy.noteFileUse()
                if let directory = o.directory, let kernel = kernelCache { feedSiblings(of: o, in: directory, to: kernel) }
            }
        }
        return n
    }

    /// A new numbered snapshot of the stats JSON; the 64 most recent are kept.
    func takeStatsSnapshot() -> GitFSNode {
        let bytes = statsSource.withLock { $0 }?() ?? Array("{}\n".utf8)
        let number = statsSnapshots.withLock { s -> UInt64 in
            let n = s.next
            s.next += 1
            s.recent[n] = bytes
            s.recent.removeValue(forKey: n &- 64)
            return n
        }
        return .stats(snapshot: number)
    }
}
