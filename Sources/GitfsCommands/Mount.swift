import ArgumentParser

/// `gitfs mount` (placeholder until implemented).
struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mount", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
