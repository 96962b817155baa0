#ifndef GITFS_CFUSE_SHIM_H
#define GITFS_CFUSE_SHIM_H
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/poll.h>
#include <sys/xattr.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <string.h>
#include <stdint.h>
#include <errno.h>

/* FUSE_ARGS_INIT is a macro. */
static inline struct fuse_args gitfs_fuse_args_init(int argc, char **argv) {
    struct fuse_args a = FUSE_ARGS_INIT(argc, argv);
    return a;
}

/* fcntl is variadic: set O_NONBLOCK (and keep the other status flags) on fd, retrying EINTR.
   Returns 0, or -1 with errno set. */
static inline int gitfs_set_nonblocking(int fd) {
    int flags;
    do { flags = fcntl(fd, F_GETFL); } while (flags == -1 && errno == EINTR);
    if (flags == -1) return -1;
    int r;
    do { r = fcntl(fd, F_SETFL, flags | O_NONBLOCK); } while (r == -1 && errno == EINTR);
    return r;
}

/* epoll_ctl(EPOLL_CTL_ADD) for readability of fd, tagged with `tag`. With `exclusive`, EPOLLEXCLUSIVE:
   the kernel wakes only one idle epoll instance per event (no thundering herd over many workers).
   Returns 0, or -1 with errno set. */
static inline int gitfs_epoll_add(int epfd, int fd, int exclusive, uint64_t tag) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0);
    ev.data.u64 = tag;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* epoll_wait for at most 8 events; writes each event's tag to tags[i]. Returns the count, or -1
   with errno set (EINTR is returned to the caller, which retries). */
static inline int gitfs_epoll_wait_tags(int epfd, uint64_t *tags, int max, int timeout_ms) {
    struct epoll_event evs[8];
    if (max > 8) max = 8;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) tags[i] = evs[i].data.u64;
    return n;
}
/* fuse_lowlevel_notify_store with one memory buffer (FUSE_BUFVEC_INIT is a macro): copies `size`
   bytes into the kernel's page cache of inode `ino` at `offset`. Returns 0 or -errno. */
static inline int gitfs_notify_store(struct fuse_session *se, fuse_ino_t ino, off_t offset,
                                     const void *data, size_t size) {
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].mem = (void *)data;
    return fuse_lowlevel_notify_store(se, ino, offset, &bv, 0);
}
#endif
