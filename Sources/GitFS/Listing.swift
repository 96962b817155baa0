import Basics
import FuseServer
import GitStore
import ReadModel

/// READDIR of the mount layout. Listings show exactly the names a lookup finds; names Linux cannot hold
/// (longer than NAME_MAX) are left out, as are tree entries git would not check out (TreeListing).
extension GitFileSystem {
    public func readDirectory(_ node: GitFSNode) throws(Errno) -> (entries: [DirectoryEntry<GitFSNode>], options: OpenedDirectory) {
        var out: [DirectoryEntry<GitFSNode>] = []
        func add(_ name: String, _ child: GitFSNode) throws(Errno) {
            out.append(DirectoryEntry(name: Array(name.utf8), node: child, attributes: try attributes(of: child)))
        }
        switch node {
        case .root:
            try add(".gitfs", .control)
            for name in resolver.store.names() {
                // A mirror that cannot be opened is left out of the listing (logged once, and a lookup
                // of its name says EIO), so one damaged repository does not hide the others.
                let repo: RepoRef
                do throws(Errno) { repo = try repository(named: name) } catch { continue }
                try add(name, .repository(repo))
            }
            return (out, OpenedDirectory(cacheEntries: false))
        case .control:
            try add("stats", takeStatsSnapshot())
            return (out, OpenedDirectory(cacheEntries: false))
        case .repository(let repo):
            if try refsOf(repo).defaultBranch != nil { try add("HEAD", .head(repo)) }
            try add("branches", .refDirectory(repo, .branch, prefix: ""))
            try add("tags", .refDirectory(repo, .tag, prefix: ""))
            try add("commits", .commits(repo))
            return (out, OpenedDirectory(cacheEntries: false))
        case .refDirectory(let repo, let kind, let prefix):
            var seenDirs = Set<String>()
            for ref in try refsOf(repo).list(tags: kind == .tag) where ref.name.hasPrefix(prefix) {
                let rest = ref.name.dropFirst(prefix.count)
                if let slash = rest.firstIndex(of: "/") {
                    let dir = String(rest[..<slash])
                    if dir.utf8.count <= TreeListing.maxNameBytes, seenDirs.insert(dir).inserted {
                        try add(dir, .refDirectory(repo, kind, prefix: prefix + dir + "/"))
                    }
                } else if rest.utf8.count <= TreeListing.maxNameBytes {
                    try add(String(rest), .ref(repo, kind, name: ref.name))
                }
            }
            return (out, OpenedDirectory(cacheEntries: false))
        case .commits(let repo):
            let refs = try refsOf(repo)
            var seen = Set<ObjectID>()
            // A ref whose target is not a commit (a tag of a tree or blob) has no directory here.
            for ref in refs.list(tags: false) + refs.list(tags: true) where seen.insert(ref.target).inserted {
                guard let root = try commitRoot(repo, ref.target, named: true) else { continue }
                try add(ref.target.hex, .object(root))
            }
            return (out, OpenedDirectory(cacheEntries: false))
        case .object(let o):
            guard o.entry.kind == .directory || o.entry.kind == .submodule else { throw .notDirectory }
            if o.entry.kind == .submodule { return ([], OpenedDirectory(cacheEntries: true)) }
            let tree = try loading(o.repo) { () throws(ResolverError) in try o.repo.view.tree(o.entry.oid) }
            o.repo.view.listing(o.entry.oid)
            let mtime = try commitTime(o)
            out.reserveCapacity(tree.entries.count)
            let partial = o.repo.view.repository.isPartial
            let namesOnly = listingPolicy.namesOnly(entries: tree.entries.count)
            for e in tree.entries {
                let child = ObjectNode(repo: o.repo, commit: o.commit, path: Self.childPath(o.path, e.name), entry: e, directory: o.entry.oid)
                // Files get their name and type only while nobody uses files (ListingPolicy: a walk
                // that only needs names pays no sizes and no inodes), and in a blobless mirror when the
                // size is not local (it would be an origin fetch). A lookup (stat, open) brings the
                // attributes: there, in a blobless mirror, the directory's blobs are fetched at once.
                if e.objectKind == .blob, namesOnly || (partial && o.repo.view.localBlobSize(e.oid) == nil) {
                    let kind: NodeKind = e.kind == .symlink ? .symlink : .regularFile
                    let typeOnly = NodeAttributes(kind: kind, permissions: e.kind == .executable ? 0o555 : 0o444, size: 0, mtime: mtime, ttl: 0)
                    out.append(DirectoryEntry(name: e.name, node: .object(child), attributes: typeOnly, withoutAttributes: true))
                    continue
                }
                out.append(DirectoryEntry(name: e.name, node: .object(child), attributes: try objectAttributes(e, in: o.repo, mtime: mtime)))
            }
            return (out, OpenedDirectory(cacheEntries: true))
        case .head, .ref, .stats:
            throw .notDirectory
        }
    }
}
