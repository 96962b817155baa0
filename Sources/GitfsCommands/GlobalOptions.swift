import ArgumentParser
import Foundation

/// Options every subcommand shares.
public struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The gitfs home (mirrors and content cache). Env: GITFS_HOME.", valueName: "dir"))
    public var home: String?

    public init() {}

    /// The home directory: --home, then $GITFS_HOME, then ${XDG_DATA_HOME:-$HOME/.local/share}/gitfs.
    public var resolvedHome: String {
        let env = ProcessInfo.processInfo.environment
        if let home, !home.isEmpty { return absolute(home) }
        if let h = env["GITFS_HOME"], !h.isEmpty { return absolute(h) }
        let base = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.local/share")
        return absolute(base + "/gitfs")
    }

    private func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}
