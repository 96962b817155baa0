import ArgumentParser

/// `gitfs ls` (placeholder until implemented).
struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
