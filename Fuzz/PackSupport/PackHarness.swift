// The harness of the pack targets: gitfs's own pack reading (PackReader.swift): the version-2 `.idx`
// checks, fan-out and binary-search lookup, entry offsets (small and large), entry headers, inflating
// whole entries and rebuilding delta chains (offset and reference deltas) through the delta-base cache.
// Input: a byte (how far to shrink the pack, for `shrink`), a part (the `.idx`), then the `.pack`. Before
// writing them the harness copies the pack's trailing checksum into the index and the index's object
// count into the pack header, the two fields that tie the files together, so mutations get past the
// open and reach the entries.
#if canImport(Glibc)
import Glibc
#endif
import Basics
import FuzzSupport
@testable import GitStore

/// Runs one input. `shrink`: after the pack is open, truncate its file (as an external `git gc` or a
/// full disk may) to the share of its size the first byte gives, before anything is read.
public func fuzzPack(_ data: UnsafePointer<UInt8>?, _ size: Int, shrink: Bool) {
    var input = FuzzInput(data, size)
    let share = Int(input.byte())
    var idx = input.part()
    var pack = input.rest()
    if idx.count >= 1072, pack.count >= 32 {
        idx.replaceSubrange((idx.count - 40)..<(idx.count - 20), with: pack[(pack.count - 20)...])
        pack.replaceSubrange(8..<12, with: idx[1028..<1032])
    }
    ScratchDirectory.write("pack-fuzz.idx", idx)
    ScratchDirectory.write("pack-fuzz.pack", pack)
    guard let mapped = MappedPack(directory: ScratchDirectory.path, name: "pack-fuzz") else { return }
    if shrink { truncate(ScratchDirectory.path + "/pack-fuzz.pack", off_t(pack.count * share / 256)) }
    let count = idx.count >= 1072 ? Int(idx[1028]) << 24 | Int(idx[1029]) << 16 | Int(idx[1030]) << 8 | Int(idx[1031]) : 0
    let bases = DeltaBaseCache()
    // Every listed object (at most 256): looked up by its id, then read. A read either fails (nil, the
    // caller then asks libgit2) or gives bytes the reader checked.
    for i in 0..<min(count, 256) {
        let id = idx.withUnsafeBytes { ObjectID(raw: UnsafeRawBufferPointer(rebasing: $0[(1032 + 20 * i)..<(1052 + 20 * i)])) }
        guard let at = mapped.position(of: id) else { continue }
        guard let blob = mapped.blob(position: at, id: id, bases: bases) else { continue }
        precondition(blob.isVerified, "pack reader returned unverified bytes")
        // A rebuilt delta is checked by hashing, so it must hash to its id. (A whole entry is checked by
        // the index's CRC-32 and the stream's Adler-32: a mutated index may pair a matching CRC with
        // another id, which the reader trusts by design, as it trusts what `git index-pack` wrote.)
        if let type = entryType(mapped, idx, count, at), type == 6 || type == 7 {
            let hash = blob.withUnsafeBytes { GitHash.blobID(of: $0) }
            precondition(hash == id, "pack reader rebuilt a delta that does not hash to \(id)")
        }
    }
    // Headers at arbitrary offsets (a delta's base offset can point anywhere).
    for offset in stride(from: 0, to: min(pack.count, 4096), by: 7) { _ = mapped.header(at: offset) }
}

/// The type of the entry at index position `i`, read by the harness from the index's 4-byte offset
/// table (nil for large offsets and out-of-range ones).
private func entryType(_ pack: MappedPack, _ idx: [UInt8], _ count: Int, _ i: Int) -> UInt8? {
    let at = 1032 + 24 * count + 4 * i
    guard at + 4 <= idx.count, idx[at] & 0x80 == 0 else { return nil }
    let offset = Int(idx[at]) << 24 | Int(idx[at + 1]) << 16 | Int(idx[at + 2]) << 8 | Int(idx[at + 3])
    return pack.header(at: offset)?.type
}
