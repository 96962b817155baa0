import ArgumentParser

/// `gitfs clone` (placeholder until implemented).
struct Clone: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clone", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
