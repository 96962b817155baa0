#ifndef GITFS_CMALLOC_SHIM_H
#define GITFS_CMALLOC_SHIM_H
// glibc's malloc tuning, for the mount server (no library to link: it is libc's).
#include <malloc.h>

/// mallopt(M_ARENA_MAX, n): at most n malloc arenas in the process. Returns 1 on success.
static inline int gitfs_set_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

#endif
