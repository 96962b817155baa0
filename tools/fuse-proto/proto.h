/* fuse-proto: options and the two transports' entry points. */
#ifndef FUSE_PROTO_H
#define FUSE_PROTO_H
struct proto_opts {
    int threads;       /* worker threads (libfuse, raw) or ring threads (uring) */
    int passthrough;   /* raw/uring: FUSE_PASSTHROUGH, reads go to the checkout file in the kernel */
    int uring;         /* raw: FUSE over io_uring (7.42) */
    int fusermount;    /* raw: mount through fusermount3 (fd passing) instead of mount(2) */
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
