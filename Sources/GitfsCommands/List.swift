import ArgumentParser

/// `gitfs list` (placeholder until implemented).
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
