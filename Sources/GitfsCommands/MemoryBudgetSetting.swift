import Basics
import GitFS
import GitStore
import Settings

/// The `memory-budget` setting (flag, then `GITFS_MEMORY_BUDGET`, then the home's `gitfs config`): the
/// total of the process's `MemoryBudget`. Stateless: thread-safe.
enum MemoryBudgetSetting {
    /// The budget in bytes the settings give (nil: the default); a bad or too small value is one clear
    /// error saying how to fix it.
    static func bytes(_ settings: HomeSettings, flag: String?) throws -> Int? {
        let key = SettingKey.memoryBudget
        guard let text = settings.effective(key, flag: flag) else { return nil }
        guard let bytes = try? Units.size(text) else {
            throw MountError("the \(key.name) setting '\(text)' is not valid: give a size such as 64M ('gitfs config \(key.name) VALUE', --\(key.name), or \(key.environment))")
        }
        guard bytes >= MemoryBudget.minimumTotal else {
            throw MountError("the \(key.name) setting '\(text)' is too small: give at least \(ByteCount.format(MemoryBudget.minimumTotal, style: .short))")
        }
        return bytes
    }

    /// Sets the process's budget from the home's settings (for `gitfs cat` and `gitfs prefetch`).
    static func apply(home: Home) throws {
        if let bytes = try bytes(try HomeSettings(home: home.path), flag: nil) { MemoryBudget.process.setTotal(bytes) }
    }
}
