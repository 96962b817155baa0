import Basics
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import FuseServer
import GitStore
import ReadModel

/// LOOKUP and READLINK of the mount layout. ENOENT means the name does not exist; a failure to read
/// what would decide it (refs, a commit, a tree, a damaged or unreadable mirror) is EIO.
extension GitFileSystem {
    public func lookup(_ name: [UInt8], in parent: GitFSNode) throws(Errno) -> (node: GitFSNode, attributes: NodeAttributes) {
        let child = try child(named: name, of: parent)
        if case .object(let o) = child, o.entry.objectKind == .blob { listingPolicy.noteFileUse() }
        return (child, try attributes(of: child))
    }

    private func child(named name: [UInt8], of parent: GitFSNode) throws(Errno) -> GitFSNode {
        let text = String(decoding: name, as: UTF8.self)
        switch parent {
        case .root:
            if text == ".gitfs" { return .control }
            return .repository(try repository(named: text))
        case .control:
            guard text == "stats" else { throw .noEntry }
            return takeStatsSnapshot()
        case .repository(let repo):
            switch text {
            case "HEAD":
                guard try refsOf(repo).defaultBranch != nil else { throw .noEntry }
                return .head(repo)
            case "branches": return .refDirectory(repo, .branch, prefix: "")
            case "tags": return .refDirectory(repo, .tag, prefix: "")
            case "commits": return .commits(repo)
            default: throw .noEntry
            }
        case .refDirectory(let repo, let kind, let prefix):
            let full = prefix + text
            let refs = try refsOf(repo)
            if refs.target(of: full, tags: kind == .tag) != nil { return .ref(repo, kind, name: full) }
            let dirPrefix = full + "/"
            if refs.hasRefs(under: dirPrefix, tags: kind == .tag) { return .refDirectory(repo, kind, prefix: dirPrefix) }
            throw .noEntry
        case .commits(let repo):
            guard let id = ObjectID(hex: text), let root = try commitRoot(repo, id) else { throw .noEntry }
            return .object(root)
        case .object(let o):
            guard o.entry.kind == .directory else {
                if o.entry.kind == .submodule { throw .noEntry }
                throw .notDirectory
            }
            let tree = try loading(o.repo) { () throws(ResolverError) in try o.repo.view.tree(o.entry.oid) }
            guard let e = tree.entry(named: name) else { throw .noEntry }
            return .object(ObjectNode(repo: o.repo, commit: o.commit, path: Self.childPath(o.path, e.name), entry: e, directory: o.entry.oid))
        case .head, .ref, .stats:
            throw .notDirectory
        }
    }

    /// The repository `name` of the home: ENOENT for a name no mirror can have or that has none, EIO
    /// for a mirror that is there (its HEAD exists) but cannot be opened.
    func repository(named name: String) throws(Errno) -> RepoRef {
        do { try MirrorStore.validateName(name) } catch { throw .noEntry }
        do throws(ResolverError) {
            return RepoRef(view: try resolver.repository(named: name))
        } catch {
            guard FileManager.default.fileExists(atPath: resolver.store.home.mirrorPath(name) + "/HEAD") else { throw .noEntry }
            return try loading(nil) { () throws(ResolverError) in throw error }
        }
    }

    /// The root directory node of commit `id`; nil when the mirror has no commit of that id (an object
    /// of another type included). With `named` (a ref names it), a missing object is a damaged mirror:
    /// EIO, never an empty `commits/`.
    func commitRoot(_ repo: RepoRef, _ id: ObjectID, named: Bool = false) throws(Errno) -> ObjectNode? {
        let info: CommitInfo
        do throws(ResolverError) {
            info = try repo.view.commit(id)
        } catch {
            switch error {
            case .git(let g) where g.kind == .wrongType: return nil
            case .git(let g) where g.kind == .notFound && !named: return nil
            default: return try loading(repo) { () throws(ResolverError) in throw error }
            }
        }
        return ObjectNode(repo: repo, commit: id, path: [], entry: TreeEntry(name: [], mode: 0o040000, oid: info.tree))
    }

    static func childPath(_ parent: [UInt8], _ name: [UInt8]) -> [UInt8] {
        parent.isEmpty ? name : parent + [0x2F] + name
    }

    /// The longest symlink target Linux takes (PATH_MAX less the NUL).
    static let maxLinkTarget = Int(PATH_MAX) - 1

    /// A symlink's target: HEAD and refs point into the layout, git symlinks carry git's target. A git
    /// target longer than `maxLinkTarget` is ENAMETOOLONG (logged once), never its truncation.
    public func readLink(_ node: GitFSNode) throws(Errno) -> [UInt8] {
        switch node {
        case .head(let repo): return try headTarget(repo)
        case .ref(let repo, let kind, let name): return try refTarget(repo, kind, name)
        case .object(let o) where o.entry.kind == .symlink:
            let size = try loading(o.repo) { () throws(ResolverError) in try o.repo.view.blobSize(o.entry.oid) }
            guard size <= Self.maxLinkTarget else {
                if logged.first("long link " + o.entry.oid.hex) {
                    logger.warning("symlink target longer than Linux allows: ENAMETOOLONG", metadata: [
                        "repository": "\(o.repo.view.name)", "object": "\(o.entry.oid.hex)", "bytes": "\(size)",
                        "path": "\(String(decoding: o.path, as: UTF8.self).debugDescription)",
                    ])
                }
                throw Errno(ENAMETOOLONG)
            }
            return try loading(o.repo) { () throws(ResolverError) in try o.repo.view.openBlob(o.entry.oid).readAll() }
        default: throw .invalid
        }
    }

    func headTarget(_ repo: RepoRef) throws(Errno) -> [UInt8] {
        guard let branch = try refsOf(repo).defaultBranch else { throw .noEntry }
        return Array("branches/\(branch)".utf8)
    }

    func refTarget(_ repo: RepoRef, _ kind: RefKind, _ name: String) throws(Errno) -> [UInt8] {
        guard let target = try refsOf(repo).target(of: name, tags: kind == .tag) else { throw .noEntry }
        let depth = name.split(separator: "/", omittingEmptySubsequences: false).count
        return Array((String(repeating: "../", count: depth) + "commits/" + target.hex).utf8)
    }

    func refsOf(_ repo: RepoRef) throws(Errno) -> RefIndex {
        try loading(repo) { () throws(ResolverError) in try repo.view.refs() }
    }
}
