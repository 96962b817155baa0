import ArgumentParser
import Foundation

/// The `gitfs` root command. Subcommands live one per file in this module; each only parses its
/// arguments and calls the library modules.
public struct Gitfs: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "gitfs",
        abstract: "A read-only FUSE filesystem of git repositories: every branch, tag and commit as a directory.",
        subcommands: [
            Clone.self, Fetch.self, List.self, Remove.self, Ls.self, Cat.self,
            Mount.self, Unmount.self, Stats.self, Prefetch.self, Gc.self, Verify.self,
            Config.self, DoctorCommand.self, Service.self,
        ]
    )

    public init() {}

    /// Runs the command line: `gitfs: error: ...` on standard error for every failure, exit 1 for
    /// failures and 2 for bad usage.
    public static func runMain(_ arguments: [String]? = nil) -> Never {
        do {
            var command = try parseAsRoot(try mountHelperArguments(arguments))
            do {
                try command.run()
            } catch let error as CleanExit {
                exit(withError: error)
            } catch let error as ExitCode {
                Foundation.exit(error.rawValue)
            } catch {
                // `gitfs help CMD` and `CMD --help` arrive here as errors whose exit code is success.
                if exitCode(for: error) == .success { exit(withError: error) }
                CommandLineError.fail(error)
            }
            Foundation.exit(0)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)
            }
            let message = fullMessage(for: error).split(separator: "\n").first.map(String.init) ?? "bad usage"
            let trimmed = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
            FileHandle.standardError.write(Data("gitfs: error: \(trimmed) (see 'gitfs --help')\n".utf8))
            Foundation.exit(2)
        }
    }
}

extension Gitfs {
    /// `gitfs HOME MOUNTPOINT -o OPTIONS` (as mount.fuse3 runs it) as `mount` arguments; other
    /// command lines unchanged.
    static func mountHelperArguments(_ arguments: [String]?) throws -> [String]? {
        let args = arguments ?? Array(CommandLine.arguments.dropFirst())
        let names = Set(configuration.subcommands.compactMap { $0.configuration.commandName } + ["help"])
        do { return try MountHelperForm.rewrite(args, subcommands: names) ?? arguments } catch {
            throw ValidationError(error.description)
        }
    }
}

/// Prints an error as the single line `gitfs: error: ...` and exits 1.
enum CommandLineError {
    static func fail(_ error: any Error) -> Never {
        let text = String(describing: error).replacingOccurrences(of: "\n", with: " ")
        FileHandle.standardError.write(Data("gitfs: error: \(text)\n".utf8))
        Foundation.exit(1)
    }
}
