import ArgumentParser
import Basics
import Foundation
import Settings

/// `gitfs config [KEY [VALUE]] [--unset]`: shows, sets or removes the settings kept in the home.
struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show, set or remove settings kept in the home.",
        discussion: "Without KEY: every stored setting as KEY=VALUE. With KEY: its stored value (exit 1 when unset). "
            + "With KEY VALUE: store it. Flags and environment variables override stored settings. Keys:\n"
            + SettingKey.all.map { "  \($0.name) (env \($0.environment)): \($0.help)" }.joined(separator: "\n"))

    @OptionGroup var global: GlobalOptions
    @Argument(help: "A setting name.") var key: String?
    @Argument(help: "The value to store.") var value: String?
    @Flag(help: "Remove KEY from the home's settings.") var unset = false

    func validate() throws {
        if let key, SettingKey.named(key) == nil {
            throw ValidationError("unknown setting '\(key)'; known: \(SettingKey.all.map(\.name).joined(separator: ", "))")
        }
        if unset && (key == nil || value != nil) { throw ValidationError("--unset takes exactly one KEY") }
        if let key = key.flatMap(SettingKey.named), let value, let problem = Self.problem(key, value) {
            throw ValidationError("\(key.name): \(problem)")
        }
    }

    /// Why `value` is not valid for `key`, or nil.
    static func problem(_ key: SettingKey, _ value: String) -> String? {
        switch key.kind {
        case .duration: do { _ = try Units.seconds(value); return nil } catch { return error.description }
        case .size:
            let bytes: Int
            do { bytes = try Units.size(value) } catch { return error.description }
            if key == .memoryBudget, bytes < MemoryBudget.minimumTotal {
                return "'\(value)' is too small: give at least \(ByteCount.format(MemoryBudget.minimumTotal, style: .short))"
            }
            return nil
        case .bool: return SettingKey.bool(value) == nil ? "'\(value)' is not true or false" : nil
        case .url: return value.contains("://") ? nil : "'\(key.display(value))' is not a URL"
        }
    }

    func run() throws {
        var settings = try HomeSettings(home: global.resolvedHome)
        guard let name = key, let key = SettingKey.named(name) else {
            for entry in settings.entries {
                let shown = SettingKey.named(entry.key)?.display(entry.value) ?? Credentials.redacted(entry.value)
                print("\(entry.key)=\(shown)")
            }
            return
        }
        if unset {
            try settings.set(key, nil)
        } else if let value {
            try settings.set(key, value)
        } else if let stored = settings.stored(key) {
            print(key.display(stored))
        } else {
            throw ExitCode(1)
        }
    }
}
