import ArgumentParser
import GitStore

/// `gitfs cat NAME REV:PATH`: the exact bytes of a file.
struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract: "Write the exact bytes of a file at a revision to standard output (a symlink gives its target).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mirror.") var name: String
    @Argument(help: ArgumentHelp("Revision and path.", valueName: "rev:path")) var spec: String

    func run() throws {
        let repo = try MirrorStore(home: Home(path: global.resolvedHome)).open(name: name)
        let (rev, path) = RevPath.split(spec)
        guard let path, !path.isEmpty else {
            throw ValidationError("give a file as REV:PATH, e.g. 'gitfs cat \(name) \(rev):README.md'")
        }
        let (_, entry) = try RevPath.lookup(repo, rev: rev, path: path)
        switch entry.kind {
        case .directory:
            throw GitStoreError(.wrongType, "'\(path)' is a directory in '\(rev)' of repository '\(name)'; list it with 'gitfs ls \(name) \(spec)'")
        case .submodule:
            throw GitStoreError(.wrongType, "'\(path)' is a submodule in '\(rev)' of repository '\(name)'; it has no content here")
        case .file, .executable, .symlink:
            try repo.withBlob(entry.oid) { try StandardOutput.write($0) }
        }
    }
}
