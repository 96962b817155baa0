#ifndef GITFS_CZLIB_SHIM_H
#define GITFS_CZLIB_SHIM_H
/* zlib: streaming inflate of big pack entries, piece by piece (libdeflate inflates whole buffers only). */
#include <zlib.h>

/* inflateInit is a macro (it passes the header's version and the stream's size): wrapped for Swift. */
static inline int gitfs_inflate_init(z_stream *stream) { return inflateInit(stream); }
/* A raw deflate stream (no zlib header or trailer: the caller checks those, and the Adler-32 itself). */
static inline int gitfs_inflate_init_raw(z_stream *stream) { return inflateInit2(stream, -15); }
#endif
