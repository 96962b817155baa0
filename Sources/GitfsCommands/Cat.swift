import ArgumentParser

/// `gitfs cat` (placeholder until implemented).
struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cat", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
