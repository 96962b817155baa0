import Basics
import ArgumentParser
import Foundation
import GitStore
import ReadModel

/// `gitfs ls NAME REV[:PATH]`: list a tree like `git ls-tree -l`.
struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List a tree like 'git ls-tree -l': mode, type, id, size, name.",
        discussion: """
        REV: a branch, tag, (abbreviated) commit id or REV~N. Of a directory PATH its entries are listed; of \
        any other PATH that single entry. Names are those the mount shows: entries git would not check out \
        ('.git' in any case, '.', '..', names with '/') are listed last marked '(hidden)', and left out \
        with -z; paths through them do not exist.
        """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mirror.") var name: String
    @Argument(help: ArgumentHelp("Revision and optional path.", valueName: "rev[:path]")) var spec: String
    @Flag(name: .customShort("z"), help: "End lines with NUL and print names unquoted.") var nulTerminated = false

    func run() throws {
        let home = try global.checkedHome()
        let store = MirrorStore(home: home)
        let repo = try store.open(name: name)
        let (rev, path) = RevPath.split(spec)
        let (commit, entry) = try RevPath.lookup(repo, rev: rev, path: path ?? "")
        // A blobless mirror lacks sizes: they come through the read model (one origin fetch per directory).
        let resolver = repo.isPartial ? Resolver(store: store, cache: try Resolver.openCache(home: home), logsFailures: false) : nil
        let view = try resolver?.repository(named: name)
        defer { withExtendedLifetime(resolver) {} }
        var out = [UInt8]()
        if entry.kind == .directory {
            if let view { _ = try view.tree(entry.oid) }
            let listing = try repo.listing(entry.oid)
            for e in listing.entries { try appendLine(&out, repo, view, e, name: e.name) }
            if !nulTerminated {
                for e in listing.hidden { try appendLine(&out, repo, view, e, name: e.name, hidden: true) }
            }
        } else {
            let shown = Array((path ?? "").utf8.split(separator: UInt8(ascii: "/")).joined(separator: [UInt8(ascii: "/")]))
            try appendLine(&out, repo, view, entry, name: shown)
        }
        _ = commit
        try StandardOutput.write(out)
    }

    private func appendLine(_ out: inout [UInt8], _ repo: Repository, _ view: RepoView?, _ e: TreeEntry, name: [UInt8], hidden: Bool = false) throws {
        let size: String
        switch e.kind {
        case .directory, .submodule: size = "-"
        default: size = String(try view.map { v throws(ResolverError) in try v.blobSize(e.oid) } ?? repo.header(e.oid).size)
        }
        let padded = String(repeating: " ", count: max(0, 7 - size.count)) + size
        let mode = String(e.mode, radix: 8)
        let head = String(repeating: "0", count: max(0, 6 - mode.count)) + mode + " \(e.objectKind.name) \(e.oid.hex) \(padded)\t"
        out.append(contentsOf: head.utf8)
        if nulTerminated {
            out.append(contentsOf: name)
            out.append(0)
        } else {
            out.append(contentsOf: GitQuote.cStyle(name))
            if hidden { out.append(contentsOf: " (hidden)".utf8) }
            out.append(UInt8(ascii: "\n"))
        }
    }
}

/// `REV[:PATH]` specs of `ls` and `cat`.
enum RevPath {
    /// Splits at the first ':'; nil path when there is none.
    static func split(_ spec: String) -> (rev: String, path: String?) {
        guard let colon = spec.firstIndex(of: ":") else { return (spec, nil) }
        return (String(spec[..<colon]), String(spec[spec.index(after: colon)...]))
    }

    /// Resolves REV to a commit and PATH to its entry ("" = root) over the names the mount shows
    /// (`Repository.entry`, the one `TreeWalk`), or throws one clear not-found line.
    static func lookup(_ repo: Repository, rev: String, path: String) throws -> (ObjectID, TreeEntry) {
        let commit = try repo.resolve(rev)
        guard let entry = try repo.entry(commit: commit, path: path) else {
            throw GitStoreError(.notFound, "path '\(path)' does not exist in '\(rev)' of repository '\(repo.name)'; list it with 'gitfs ls \(repo.name) \(rev)'")
        }
        return (commit, entry)
    }
}

/// Writes to file descriptor 1, retrying short writes and EINTR.
enum StandardOutput {
    static func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    static func write(_ buf: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < buf.count {
            let n = Foundation.write(1, buf.baseAddress! + off, buf.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw GitStoreError(.io, "cannot write to standard output: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }
}
