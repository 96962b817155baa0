import ArgumentParser
import GitStore

/// `gitfs remove NAME`: delete a mirror.
struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Delete a mirror (the shared cache keeps its content until gc).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mirror to delete.") var name: String

    func run() throws {
        try MirrorStore(home: try global.checkedHome()).remove(name: name)
        print("removed '\(name)'")
    }
}
