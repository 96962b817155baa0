// Blobless mirrors: the packs of blobs fetched from the origin on demand (counted by `list`, reclaimed by `gc`).
import Basics
import Foundation
import Glibc

/// A pack of a blobless mirror that holds only blobs: one the origin sent for a fetch by id (a miss of
/// the mount, `gitfs prefetch`). Recognised without reading it whole: it is marked `.promisor` (git marks
/// every pack from a promisor remote) and its first object, in pack order, is a blob (git writes
/// commits, then trees, then blobs, and bases before their deltas, so a pack with any commit or tree
/// starts with one). A value.
public struct FetchedPack: Sendable, Hashable {
    /// `pack-<hash>` under `<mirror>/objects/pack`.
    public let name: String
    public let directory: String
    public let objectCount: Int
    /// Bytes on disk of the pack and its companion files.
    public let diskBytes: Int

    /// The fetched-blob packs of the mirror at `mirror`, sorted by name.
    public static func scan(mirror: String) -> [FetchedPack] {
        let dir = mirror + "/objects/pack"
        return FileSystem.list(dir).filter { $0.hasPrefix("pack-") && $0.hasSuffix(".promisor") }.sorted().compactMap { entry in
            let name = String(entry.dropLast(9))
            guard let count = indexCount(dir + "/" + name + ".idx"), firstObjectIsBlob(dir + "/" + name + ".pack") else { return nil }
            let bytes = companions.reduce(0) { sum, ext in
                sum + ((try? FileSystem.linkStatus(dir + "/" + name + ext)).map(FileSystem.diskBytes) ?? 0)
            }
            return FetchedPack(name: name, directory: dir, objectCount: count, diskBytes: bytes)
        }
    }

    /// The ids the pack holds (from its index's sorted id table).
    public func ids() -> [ObjectID] {
        guard let raw = try? FileSystem.readFile(directory + "/" + name + ".idx", limit: 1 << 30),
              raw.count >= 8 + 1024 + 20 * objectCount else { return [] }
        return raw.withUnsafeBytes { all in
            (0..<objectCount).map { i in ObjectID(raw: UnsafeRawBufferPointer(rebasing: all[(1032 + 20 * i)..<(1052 + 20 * i)])) }
        }
    }

    /// Deletes the pack: its index first (so no reader finds it any more), then the rest.
    public func remove() {
        for ext in [".idx"] + Self.companions.filter({ $0 != ".idx" }) { unlink(directory + "/" + name + ext) }
    }

    private static let companions = [".idx", ".pack", ".rev", ".promisor", ".keep", ".bitmap"]

    /// The object count of a version-2 pack index (the last fan-out entry).
    static func indexCount(_ path: String) -> Int? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        guard let head = try? fd.read(count: 8 + 1024, at: 0), head.count == 8 + 1024, head[0] == 0xff, head[1] == 0x74, head[2] == 0x4f, head[3] == 0x63 else { return nil }
        return Int(head[1028]) << 24 | Int(head[1029]) << 16 | Int(head[1030]) << 8 | Int(head[1031])
    }

    /// True when the pack's first entry (at offset 12) is a whole blob (type 3).
    static func firstObjectIsBlob(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return false }
        guard let byte = try? fd.read(count: 1, at: 12).first else { return false }
        return (byte >> 4) & 0x7 == 3
    }
}
