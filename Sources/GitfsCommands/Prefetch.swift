import ArgumentParser

/// `gitfs prefetch` (placeholder until implemented).
struct Prefetch: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prefetch", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
