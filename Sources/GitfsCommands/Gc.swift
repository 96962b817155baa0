import ArgumentParser

/// `gitfs gc` (placeholder until implemented).
struct Gc: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
