import ArgumentParser

/// `gitfs verify` (placeholder until implemented).
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
