import ArgumentParser

/// `gitfs unmount` (placeholder until implemented).
struct Unmount: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unmount", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
