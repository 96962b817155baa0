import CGit2

/// One-time process-wide libgit2 setup.
enum LibGit2 {
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
}
