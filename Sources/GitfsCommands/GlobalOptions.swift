import ArgumentParser
import Basics
import Foundation
import GitStore

/// Options every command shares. The root command declares them too, so `--home DIR` may come before
/// the subcommand as well as after it (argument-parser hands the root's value to the subcommand's group).
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

    /// The resolved home, checked: it may be missing (commands that write create it), but what is
    /// there must be a directory.
    public func checkedHome() throws(CommandFailure) -> Home {
        let path = resolvedHome
        let st: stat
        do { st = try FileSystem.status(path) } catch {
            switch error {
            case .noEntry: return Home(path: path)
            case .notDirectory: throw CommandFailure("the gitfs home \(path) is not a directory: part of that path is a file; give --home (or GITFS_HOME) a directory")
            default: throw CommandFailure("cannot use the gitfs home \(path): \(error.message)")
            }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw CommandFailure("the gitfs home \(path) is not a directory: give --home (or GITFS_HOME) a directory, or move that file away")
        }
        return Home(path: path)
    }

    private func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}
