import Basics
import CGit2
import Synchronization

/// One-time process-wide libgit2 setup.
public enum LibGit2 {
    /// `git_libgit2_init` once, then: owner validation off (mirrors and local sources may belong to other
    /// users), strict hash verification off (the content cache verifies on fill; +76% read speed), and a
    /// bounded object cache (the resolver above keeps its own bounded caches), and bounded pack mappings:
    /// by default libgit2 maps whole packs (up to 8 GiB), which a long-running mount keeps resident;
    /// 32 MiB windows and 128 MiB mapped in all keep the server's memory budget. Thread-safe (lazy static).
    static func ensureInitialized() { _ = initialized }

    private static let initialized: Bool = {
        git_libgit2_init()
        _ = gitfs_opt_set_owner_validation(0)
        _ = gitfs_opt_enable_strict_hash_verification(0)
        _ = gitfs_opt_set_cache_max_size(32 << 20)
        _ = gitfs_opt_set_mwindow_size(32 << 20)
        _ = gitfs_opt_set_mwindow_mapped_limit(128 << 20)
        return true
    }()

    private static let budgetShared = Mutex<Int?>(nil)

    /// libgit2's object cache (raw commits and small trees it read) as a share of the process's memory
    /// budget: its cap becomes an eighth of the budget (at most 32 MiB), charged up front as it
    /// cannot report what it holds. Once per process (later calls change nothing). Thread-safe.
    public static func shareMemoryBudget(_ budget: MemoryBudget) {
        ensureInitialized()
        budgetShared.withLock { shared in
            guard shared == nil else { return }
            let share = min(32 << 20, budget.total / 8)
            _ = gitfs_opt_set_cache_max_size(Int64(share))
            budget.overdraw(share)
            shared = share
        }
    }
}
