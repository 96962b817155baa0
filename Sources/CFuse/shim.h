#ifndef GITFS_CFUSE_SHIM_H
#define GITFS_CFUSE_SHIM_H
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse.h>
#include <sys/eventfd.h>
#include <sys/poll.h>
#include <sys/xattr.h>
#include <sys/mount.h>
#include <errno.h>

/* FUSE_ARGS_INIT is a macro. */
static inline struct fuse_args gitfs_fuse_args_init(int argc, char **argv) {
    struct fuse_args a = FUSE_ARGS_INIT(argc, argv);
    return a;
}
#endif
