/* The few kernel FUSE protocol definitions newer than Debian's <linux/fuse.h> (7.38, kernel 6.1):
   passthrough (7.40) and FUSE over io_uring (7.42), written from the kernel's uapi documentation. */
#ifndef FUSE_PROTO_EXT_H
#define FUSE_PROTO_EXT_H
#include <linux/fuse.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37)      /* INIT flags2 bit 5; init_out.unused[0] is max_stack_depth */
#endif
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41)    /* INIT flags2 bit 9 */
#endif
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1 << 7)         /* open_out.padding is backing_id */
#endif

struct proto_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define PROTO_DEV_IOC_BACKING_OPEN  _IOW(FUSE_DEV_IOC_MAGIC, 1, struct proto_backing_map)
#define PROTO_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)

/* FUSE over io_uring: each ring entry registers two buffers (iovec[0] the headers, iovec[1] the payload). */
#define PROTO_URING_IN_OUT_HEADER_SZ 128
#define PROTO_URING_OP_IN_OUT_SZ 128
struct proto_uring_ent_in_out { uint64_t flags; uint64_t commit_id; uint32_t payload_sz; uint32_t padding; uint64_t reserved; };
struct proto_uring_req_header {
    char in_out[PROTO_URING_IN_OUT_HEADER_SZ];   /* fuse_in_header in, fuse_out_header out */
    char op_in[PROTO_URING_OP_IN_OUT_SZ];        /* the opcode's own header (e.g. fuse_read_in) */
    struct proto_uring_ent_in_out ring_ent_in_out;
};
enum { PROTO_IO_URING_CMD_REGISTER = 1, PROTO_IO_URING_CMD_COMMIT_AND_FETCH = 2 };
struct proto_uring_cmd_req { uint64_t flags; uint64_t commit_id; uint16_t qid; uint8_t padding[6]; }; /* in the SQE's 80-byte cmd area */
#endif
