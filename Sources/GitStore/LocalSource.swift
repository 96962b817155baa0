import CGit2
import Glibc

/// Clones from a repository on this machine start by copying its objects, as `git clone --local
/// --no-hardlinks` does: the transfer that follows then finds every ref's object present and sends
/// nothing. libgit2's local transport would otherwise build a pack by walking and parsing every tree,
/// so one malformed tree anywhere (say on a side branch) failed the whole clone; copied, that tree
/// is refused only when it is read. Copies, never hard links: a mirror must not share the inodes of
/// a source that may be repacked, truncated or damaged later. Stateless; thread-safe.
enum LocalSource {
    /// The objects directory of the repository at `source` (a path or `file://` URL; bare, a work tree,
    /// or a linked work tree — its common directory); nil for remote URLs and for what libgit2 cannot open.
    static func objectsDirectory(of source: String) -> String? {
        var path = source
        if path.hasPrefix("file://") { path.removeFirst("file://".count) }
        guard path.hasPrefix("/") else { return nil }
        var repo: OpaquePointer?
        guard git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil) == 0, let repo else {
            return nil
        }
        defer { git_repository_free(repo) }
        guard let common = git_repository_commondir(repo) else { return nil }
        var dir = String(cString: common)
        if !dir.hasSuffix("/") { dir += "/" }
        return FileSystem.exists(dir + "objects/pack") ? dir + "objects" : nil
    }

    /// Copies the packs (`pack-*.pack`, then its `.idx`) and loose objects of `from` into `to` (both
    /// objects directories); files already there are kept.
    static func copyObjects(from: String, to: String) throws(GitStoreError) {
        let packs = FileSystem.list(from + "/pack").filter { $0.hasPrefix("pack-") && $0.hasSuffix(".idx") }
        for idx in packs.sorted() {
            let base = String(idx.dropLast(4))
            guard FileSystem.exists(from + "/pack/" + base + ".pack") else { continue }
            try FileSystem.makeDirectories(to + "/pack")
            // The pack before its index: a reader never sees an index without its pack.
            for name in [base + ".pack", idx] { try copy(from + "/pack/" + name, to + "/pack/" + name) }
        }
        for dir in FileSystem.list(from) where dir.utf8.count == 2 && dir.allSatisfy(\.isHexDigit) {
            for file in FileSystem.list(from + "/" + dir) where file.utf8.count == 38 && file.allSatisfy(\.isHexDigit) {
                try FileSystem.makeDirectories(to + "/" + dir)
                try copy(from + "/" + dir + "/" + file, to + "/" + dir + "/" + file)
            }
        }
    }

    /// Copies one file to a new file (read and write in 1 MiB blocks, EINTR retried); an existing target
    /// is left as it is.
    private static func copy(_ source: String, _ target: String) throws(GitStoreError) {
        func fail(_ what: String) -> GitStoreError {
            GitStoreError(.io, "cannot copy \(source) to \(target): \(what): \(String(cString: strerror(errno)))")
        }
        var input: Int32
        repeat { input = open(source, O_RDONLY | O_CLOEXEC) } while input < 0 && errno == EINTR
        guard input >= 0 else { throw fail("open") }
        defer { close(input) }
        var output: Int32
        repeat { output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444) } while output < 0 && errno == EINTR
        if output < 0 && errno == EEXIST { return }
        guard output >= 0 else { throw fail("create") }
        defer { close(output) }
        let size = 1 << 20
        guard let buffer = malloc(size) else { throw fail("allocate") }
        defer { free(buffer) }
        while true {
            let n = read(input, buffer, size)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw fail("read") }
            if n == 0 { return }
            var done = 0
            while done < n {
                let w = write(output, buffer + done, n - done)
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw fail("write") }
                done += w
            }
        }
    }
}
