import ArgumentParser
import GitStore
import ReadModel

/// `gitfs cat NAME REV:PATH`: the exact bytes of a file, read through the resolver and content cache the
/// mount uses (a miss is loaded from the packs once and cached).
struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract: "Write the exact bytes of a file at a revision to standard output (a symlink gives its target).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mirror.") var name: String
    @Argument(help: ArgumentHelp("Revision and path.", valueName: "rev:path")) var spec: String
    @OptionGroup var remote: RemoteCacheOptions

    func run() throws {
        let home = try global.checkedHome()
        let store = MirrorStore(home: home)
        let repo = try store.open(name: name)
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
            try MemoryBudgetSetting.apply(home: home)
            let cache = try Resolver.openCache(home: home)
            let tier = try remote.tier(home: home, cache: cache, defaultMode: .read)
            defer { tier?.shutdown() }
            let resolver = Resolver(store: store, cache: cache, loaders: remote.loaders(tier), logsFailures: false)
            let content = try resolver.repository(named: name).openBlob(entry.oid)
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { chunk.deallocate() }
            var offset = 0
            while true {
                let n = try content.read(offset: offset, into: chunk)
                if n == 0 { break }
                try StandardOutput.write(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
                offset += n
            }
        }
    }
}
