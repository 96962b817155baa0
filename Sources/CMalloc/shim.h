#ifndef GITFS_CMALLOC_SHIM_H
#define GITFS_CMALLOC_SHIM_H
// glibc's malloc tuning, for the mount server (no library to link: it is libc's).
#include <malloc.h>

/// mallopt(M_ARENA_MAX, n): at most n malloc arenas in the process. Returns 1 on success.
static inline int gitfs_set_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

/// mallopt(M_MMAP_THRESHOLD, bytes): allocations of at least `bytes` are mmaps of their own, returned to
/// the system when freed (and glibc's dynamic threshold, which climbs to 32 MiB, is off). Returns 1 on success.
static inline int gitfs_set_malloc_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

#endif
