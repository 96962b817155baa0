// MappedPack: lookups in the version-2 pack index (object position, entry offset).
import Basics
import Glibc

extension MappedPack {
    /// The position of `id` in the index (fan-out, then binary search of the sorted ids); nil when this
    /// pack does not hold it.
    func position(of id: ObjectID) -> Int? {
        id.withUnsafeBytes { key -> Int? in
            let first = Int(key[0])
            var lo = first == 0 ? 0 : Int(MappedPack.be32(index, 8 + 4 * (first - 1)))
            var hi = Int(MappedPack.be32(index, 8 + 4 * first))
            let table = index.baseAddress! + MappedPack.shaTable
            while lo < hi {
                let mid = (lo + hi) / 2
                let c = memcmp(table + 20 * mid, key.baseAddress!, 20)
                if c == 0 { return mid }
                if c < 0 { lo = mid + 1 } else { hi = mid }
            }
            return nil
        }
    }

    /// Where the entry at index position `i` starts in the pack; nil when out of range.
    func entryOffset(_ i: Int) -> Int? {
        let small = MappedPack.be32(index, MappedPack.shaTable + 24 * count + 4 * i)
        var offset = Int(small)
        if small & 0x8000_0000 != 0 {
            let j = Int(small & 0x7fff_ffff)
            guard j < largeOffsets else { return nil }
            let big = index.loadUnaligned(fromByteOffset: MappedPack.shaTable + 28 * count + 8 * j, as: UInt64.self).bigEndian
            guard big < UInt64(Int.max) else { return nil }
            offset = Int(big)
        }
        return offset >= 12 && offset < pack.count - 20 ? offset : nil
    }
}
