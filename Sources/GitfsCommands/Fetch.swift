import ArgumentParser

/// `gitfs fetch` (placeholder until implemented).
struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch", abstract: "TODO")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw ValidationError("not implemented") }
}
