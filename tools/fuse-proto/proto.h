/* fuse-proto: options and the two transports' entry points. */
#ifndef FUSE_PROTO_H
#define FUSE_PROTO_H
struct proto_opts {
    int threads;       /* worker threads (libfuse, raw) or ring threads (uring) */
    int passthrough;   /* raw/uring: FUSE_PASSTHROUGH, reads go to the checkout file in the kernel */
    int uring;         /* raw: FUSE over io_uring (7.42) */
    int fusermount;    /* raw: mount through fusermount3 (fd passing) instead of mount(2) */
    int no_open;       /* libfuse: OPEN answered ENOSYS (the kernel's no-open mode, as gitfs): no OPEN or RELEASE, READ by inode */
    int shared_fd;     /* raw: every worker reads the one /dev/fuse fd (no FUSE_DEV_IOC_CLONE), as libfuse */
    int serial_dirops; /* raw: no FUSE_PARALLEL_DIROPS in INIT, as libfuse 3.14 */
    int verbose;
};
extern struct proto_opts opts;
int libfuse_serve(const char *mnt);   /* mounts, serves until unmounted; 0 or 1 */
int raw_serve(const char *mnt);
#define PROTO_MOUNT_OPTS "ro,default_permissions,allow_other"
#define PROTO_FSNAME "fuse-proto"
#define PROTO_MAX_BACKGROUND 64        /* as gitfs (FuseMountOptions.maxBackground) */
#define PROTO_CONGESTION 48
#endif
