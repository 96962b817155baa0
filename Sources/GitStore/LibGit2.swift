import CGit2

/// One-time process-wide libgit2 setup.
enum LibGit2 {
    /// `git_libgit2_init` once, then: owner validation off (mirrors and local sources may belong to other
    /// users), strict hash verification off (the content cache verifies on fill; +76% read speed), and a
    /// bounded object cache (the resolver above keeps its own bounded caches). Thread-safe (lazy static).
    static func ensureInitialized() { _ = initialized }

    private static let initialized: Bool = {
        git_libgit2_init()
        _ = gitfs_opt_set_owner_validation(0)
        _ = gitfs_opt_enable_strict_hash_verification(0)
        _ = gitfs_opt_set_cache_max_size(32 << 20)
        return true
    }()
}
