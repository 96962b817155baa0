import ArgumentParser

/// `gitfs remove` (placeholder until implemented).
struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
