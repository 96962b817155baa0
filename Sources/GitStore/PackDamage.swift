import Basics
import Glibc

/// Says what is wrong with the packs of a mirror, from the files as they are now: a pack without its
/// index, an index that is cut short or not an index, a pack whose header or trailing checksum does not
/// match its index (truncated or overwritten). Reads only with `pread` (never a mapping) and only on the
/// failure paths of object reads, so it costs nothing while the packs are fine. Stateless; thread-safe.
enum PackDamage {
    /// One line for each damaged pack of `packDirectory` (`<mirror>/objects/pack`), joined with "; " —
    /// each "pack pack-….pack is damaged (…)" — or nil when every pack and index checks out.
    static func diagnose(packDirectory dir: String) -> String? {
        let names = FileSystem.list(dir).filter { $0.hasPrefix("pack-") }
        let packs = Set(names.filter { $0.hasSuffix(".pack") }.map { String($0.dropLast(5)) })
        let indexes = Set(names.filter { $0.hasSuffix(".idx") }.map { String($0.dropLast(4)) })
        var found: [String] = []
        for base in packs.union(indexes).sorted() {
            let why: String?
            if !indexes.contains(base) {
                // git renames a fetched pack into place before its index: a blobless mirror's pack marked
                // `.promisor` a moment ago is a fetch finishing, not damage.
                if let st = try? FileSystem.status(dir + "/" + base + ".promisor"), time(nil) - st.st_mtim.tv_sec < 60 { continue }
                why = "its index \(base).idx is missing"
            } else if !packs.contains(base) {
                why = "it is missing; only its index \(base).idx is left"
            } else {
                why = check(pack: dir + "/" + base + ".pack", index: dir + "/" + base + ".idx", base: base)
            }
            if let why { found.append("pack \(base).pack is damaged (\(why))") }
        }
        return found.isEmpty ? nil : found.joined(separator: "; ")
    }

    /// What is wrong with one pack and its version-2 index, or nil.
    private static func check(pack: String, index: String, base: String) -> String? {
        guard let idx = OpenFile(index) else { return "its index \(base).idx cannot be opened or read" }
        guard let pk = OpenFile(pack) else { return "it cannot be opened or read" }
        let fixed = 8 + 256 * 4 + 40
        guard idx.size >= fixed, let magic = idx.read(0, 8), magic == [0xff, 0x74, 0x4f, 0x63, 0, 0, 0, 2] else {
            return "its index \(base).idx is not a version-2 pack index (\(idx.size) bytes)"
        }
        guard let countBytes = idx.read(8 + 255 * 4, 4) else { return "its index \(base).idx cannot be read" }
        let count = countBytes.reduce(0) { $0 << 8 | Int($1) }
        let rest = idx.size - fixed - 28 * count
        guard rest >= 0, rest % 8 == 0 else {
            return "its index \(base).idx is cut short or overwritten: \(idx.size) bytes for \(count) objects"
        }
        guard pk.size >= 32, let head = pk.read(0, 12) else { return "it is cut short: \(pk.size) bytes" }
        let objects = head[8...].reduce(0) { $0 << 8 | Int($1) }
        guard head[0..<4].elementsEqual("PACK".utf8), objects == count else {
            return "its header does not match its index (\(objects) objects, the index lists \(count))"
        }
        guard let trailer = pk.read(pk.size - 20, 20), let recorded = idx.read(idx.size - 40, 20) else {
            return "it cannot be read"
        }
        guard trailer == recorded else {
            return "\(pk.size) bytes, and its last 20 bytes are not the checksum its index records: truncated or overwritten"
        }
        return nil
    }

    /// A file open for `pread`, with its size; closed exactly once.
    private struct OpenFile: ~Copyable {
        let file: FileDescriptor
        let size: Int

        init?(_ path: String) {
            guard let file = try? FileDescriptor.open(path, O_RDONLY), let st = try? file.status() else { return nil }
            self.file = file
            self.size = Int(st.st_size)
        }

        /// `count` bytes at `offset`; nil when fewer could be read.
        func read(_ offset: Int, _ count: Int) -> [UInt8]? {
            guard offset >= 0, let bytes = try? file.read(count: count, at: offset), bytes.count == count else { return nil }
            return bytes
        }
    }
}
