#ifndef GITFS_CGIT2_SHIM_H
#define GITFS_CGIT2_SHIM_H
#include <git2.h>
#include <git2/sys/odb_backend.h>

/* git_libgit2_opts is variadic: Swift cannot call it. One wrapper per option we set. */
static inline int gitfs_opt_set_owner_validation(int enabled) {
    return git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, enabled);
}
static inline int gitfs_opt_enable_strict_hash_verification(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, enabled);
}
static inline int gitfs_opt_set_cache_max_size(long long bytes) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, (ssize_t)bytes);
}
static inline int gitfs_opt_set_mwindow_size(size_t bytes) {
    return git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, bytes);
}
static inline int gitfs_opt_set_mwindow_mapped_limit(size_t bytes) {
    return git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, bytes);
}
#endif
