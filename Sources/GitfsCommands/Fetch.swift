import ArgumentParser
import Foundation
import GitStore

/// `gitfs fetch [NAME...]`: update mirrors; one line per changed ref.
struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Update mirrors (all when none is named); print each ref that changed.",
        discussion: "Output: one line per changed ref, 'NAME OLD NEW REF' (40 zeros for a created or deleted ref). A failed fetch changes nothing and exits 1.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Mirrors to update.") var names: [String] = []

    func run() throws {
        let store = MirrorStore(home: try global.checkedHome())
        let targets = names.isEmpty ? store.names() : names
        var failed = false
        for name in targets {
            do {
                let lines = try store.fetch(name: name).map { "\(name) \($0.line)\n" }.joined()
                try StandardOutput.write(Array(lines.utf8))
            } catch {
                FileHandle.standardError.write(Data("gitfs: error: \(error)\n".utf8))
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }
}
