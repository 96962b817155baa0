import Basics
import CGit2
import Glibc

/// A clone from a repository on this machine that libgit2's local transport refused copies its objects
/// instead, as `git clone --local --no-hardlinks` does: its packs are copied and its loose objects packed
/// into one new pack (`git_packbuilder_insert` of each by id, which walks nothing), so the transfer that
/// follows finds every ref's object present and sends nothing. The local transport builds a pack by
/// walking and parsing every tree, so one malformed tree anywhere (say on a side branch) failed the whole
/// clone; copied, that tree is refused only when it is read. (Only as the fallback: the local transport
/// re-deltifies, and keeps big blobs whole that the source's packs may hold as deltas.) Copies, never hard
/// links: a mirror must not share the inodes of a source that may be truncated or damaged later.
/// Stateless; thread-safe.
enum LocalSource {
    /// Copies the objects of the repository at `source` (a path or `file://` URL; bare, a work tree, or a
    /// linked work tree — its common directory) into the objects directory `objects`; false, copying
    /// nothing, for remote URLs and for what libgit2 cannot open as a repository.
    static func copyObjects(of source: String, into objects: String) throws(GitStoreError) -> Bool {
        var path = source
        if path.hasPrefix("file://") { path.removeFirst("file://".count) }
        guard path.hasPrefix("/") else { return false }
        var repo: OpaquePointer?
        guard git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil) == 0, let repo else {
            return false
        }
        defer { git_repository_free(repo) }
        guard let common = git_repository_commondir(repo) else { return false }
        var dir = String(cString: common)
        if !dir.hasSuffix("/") { dir += "/" }
        let from = dir + "objects"
        do { try FileSystem.makeDirectories(objects + "/pack") } catch {
            throw GitStoreError(.io, "cannot create directory \(objects)/pack: \(error.message)")
        }
        let indexes = FileSystem.list(from + "/pack").filter { $0.hasPrefix("pack-") && $0.hasSuffix(".idx") }
        for idx in indexes.sorted() {
            let base = String(idx.dropLast(4))
            guard FileSystem.exists(from + "/pack/" + base + ".pack") else { continue }
            // The pack before its index: a reader never sees an index without its pack.
            for name in [base + ".pack", idx] { try copy(from + "/pack/" + name, objects + "/pack/" + name) }
        }
        try packLooseObjects(repo, from: from, into: objects + "/pack")
        return true
    }

    /// Writes the loose objects of `repo` (found under `from`) as one pack into `pack`.
    private static func packLooseObjects(_ repo: OpaquePointer, from: String, into pack: String) throws(GitStoreError) {
        var ids: [ObjectID] = []
        for dir in FileSystem.list(from) where dir.utf8.count == 2 && dir.allSatisfy(\.isHexDigit) {
            for file in FileSystem.list(from + "/" + dir) where file.utf8.count == 38 {
                if let id = ObjectID(hex: dir + file) { ids.append(id) }
            }
        }
        guard !ids.isEmpty else { return }
        func fail(_ rc: Int32) -> GitStoreError {
            GitStoreError(.io, "cannot pack the loose objects of \(from): \(GitStoreError.lastGitMessage(rc))")
        }
        var pb: OpaquePointer?
        let rc = git_packbuilder_new(&pb, repo)
        guard rc == 0, let pb else { throw fail(rc) }
        defer { git_packbuilder_free(pb) }
        for id in ids {
            var oid = id.gitOID
            let r = git_packbuilder_insert(pb, &oid, nil)
            guard r == 0 else { throw fail(r) }
        }
        let w = git_packbuilder_write(pb, pack, 0, nil, nil)
        guard w == 0 else { throw fail(w) }
    }

    /// Copies one file to a new file (read and write in 1 MiB blocks, `FileDescriptor`); an existing
    /// target is left as it is.
    private static func copy(_ source: String, _ target: String) throws(GitStoreError) {
        do throws(Errno) {
            let input = try FileDescriptor.open(source, O_RDONLY)
            let output: FileDescriptor
            do { output = try FileDescriptor.open(target, O_WRONLY | O_CREAT | O_EXCL, permissions: 0o444) } catch {
                if error == .exists { return }
                throw error
            }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buffer.deallocate() }
            var offset = 0
            while true {
                let n = try input.read(into: buffer, at: offset)
                if n == 0 { return }
                try output.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), at: offset)
                offset += n
            }
        } catch {
            throw GitStoreError(.io, "cannot copy \(source) to \(target): \(error.message)")
        }
    }
}
