import ArgumentParser

/// `gitfs stats` (placeholder until implemented).
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
