#ifndef GITFS_CZSTD_SHIM_H
#define GITFS_CZSTD_SHIM_H
/* Only zstd's stable API: ZSTD_STATIC_LINKING_ONLY (which turns on the unstable one when defined,
   whatever its value) stays undefined. */
#include <zstd.h>
#endif
