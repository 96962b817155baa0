import Basics
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

    /// `--home` before the subcommand; each subcommand's own group receives this value.
    @OptionGroup var global: GlobalOptions

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

/// A command that failed for a reason the user can act on; `description` is one line saying what to do.
public struct CommandFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
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
        FileHandle.standardError.write(Data(line(error).utf8))
        Foundation.exit(1)
    }

    /// Like `fail`, but leaves with `_exit`, running no exit handlers: for when a thread is stuck in a
    /// request to a hung FUSE server (a sanitizer's exit-time leak check would wait for it forever).
    static func failNow(_ error: any Error) -> Never {
        FileHandle.standardError.write(Data(line(error).utf8))
        _exit(1)
    }

    private static func line(_ error: any Error) -> String {
        "gitfs: error: \(Credentials.redacted(String(describing: error)).replacingOccurrences(of: "\n", with: " "))\n"
    }
}
