// Trees and commits: the raw object parsers, and the listing and path walk built on them.
import Basics

extension Repository {
    /// The tree as gitfs shows it: names git would not check out set aside (`TreeListing`).
    public func listing(_ id: ObjectID) throws(GitStoreError) -> TreeListing {
        TreeListing(try tree(id))
    }

    /// The entry at `path` ("a/b/c"; empty components ignored) in the tree of `commit`, walked over shown
    /// names only (`TreeWalk`, as the mount does); nil when absent or when a component on the way is not
    /// a directory. "" gives the root tree as an entry with mode 0o040000 and an empty name.
    public func entry(commit: ObjectID, path: String) throws(GitStoreError) -> TreeEntry? {
        let root = try self.commit(commit).tree
        let walked = try TreeWalk.walk(root: root, path: path) { id throws(GitStoreError) in try self.listing(id) }
        guard case .found(let e) = walked else { return nil }
        return e
    }
}

/// Parses raw tree objects: repeated "<octal mode> <name>\0<20-byte id>".
enum TreeParser {
    static func parse(_ raw: UnsafeRawBufferPointer) -> [TreeEntry]? {
        var out: [TreeEntry] = []
        var i = 0
        let n = raw.count
        while i < n {
            var mode: UInt32 = 0
            var digits = 0
            while i < n, raw[i] != UInt8(ascii: " ") {
                let d = raw[i] &- UInt8(ascii: "0")
                guard d < 8, digits < 7 else { return nil }
                mode = mode << 3 | UInt32(d)
                digits += 1
                i += 1
            }
            guard i < n, digits > 0 else { return nil }
            i += 1
            let nameStart = i
            while i < n, raw[i] != 0 { i += 1 }
            guard i < n, i > nameStart else { return nil }
            let name = Array(raw[nameStart..<i])
            i += 1
            guard i + 20 <= n else { return nil }
            let oid = ObjectID(raw: UnsafeRawBufferPointer(rebasing: raw[i..<(i + 20)]))
            i += 20
            out.append(TreeEntry(name: name, mode: mode, oid: oid))
        }
        return out
    }
}

/// Parses the header of raw commit objects: tree, parents, committer time.
enum CommitParser {
    static func parse(_ raw: UnsafeRawBufferPointer, id: ObjectID) -> CommitInfo? {
        var tree: ObjectID?
        var parents: [ObjectID] = []
        var time: Int64?
        var i = 0
        let n = raw.count
        while i < n {
            var end = i
            while end < n, raw[end] != UInt8(ascii: "\n") { end += 1 }
            if end == i { break } // blank line: end of header
            let line = UnsafeRawBufferPointer(rebasing: raw[i..<end])
            if line.starts(with: "tree ".utf8), line.count == 45 {
                guard let id = ObjectID(hexUTF8: UnsafeRawBufferPointer(rebasing: line[5...])) else { return nil }
                tree = id
            } else if line.starts(with: "parent ".utf8), line.count == 47 {
                guard let id = ObjectID(hexUTF8: UnsafeRawBufferPointer(rebasing: line[7...])) else { return nil }
                parents.append(id)
            } else if line.starts(with: "committer ".utf8) {
                // "committer Name <email> 1234567890 +0000": the number after the last '>'.
                if let gt = line.lastIndex(of: UInt8(ascii: ">")) {
                    var j = gt + 1
                    while j < line.count, line[j] == UInt8(ascii: " ") { j += 1 }
                    var negative = false
                    if j < line.count, line[j] == UInt8(ascii: "-") { negative = true; j += 1 }
                    var v: Int64 = 0
                    var any = false
                    while j < line.count, line[j] >= UInt8(ascii: "0"), line[j] <= UInt8(ascii: "9") {
                        v = v &* 10 &+ Int64(line[j] - UInt8(ascii: "0"))
                        any = true
                        j += 1
                    }
                    if any { time = negative ? -v : v }
                }
            }
            i = end + 1
        }
        guard let tree else { return nil }
        return CommitInfo(id: id, tree: tree, committerTime: time ?? 0, parents: parents)
    }
}
