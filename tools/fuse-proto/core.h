/* fuse-proto: the server logic shared by every transport (a measurement prototype, see README.md).
   A static snapshot of a directory tree (scanned once at start), served read-only; file contents are
   pread from the scanned directory. Every function is safe to call from many threads at once (the
   snapshot never changes after core_load). */
#ifndef FUSE_PROTO_CORE_H
#define FUSE_PROTO_CORE_H
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

struct pnode {
    const char *name;      /* last component */
    const char *path;      /* relative to the snapshot root ("." for the root) */
    const char *target;    /* symlink target or NULL */
    uint64_t size;
    uint32_t parent;       /* node index */
    uint32_t first, count; /* children: nodes[first .. first+count), sorted by name */
    uint32_t mode;         /* S_IFDIR|0555, S_IFREG|0444/0555, S_IFLNK|0777 */
};

/* Node index i is inode i+1 (the root, index 0, is FUSE_ROOT_ID 1). */
extern struct pnode *core_nodes;
extern uint32_t core_count;
extern double core_entry_ttl, core_attr_ttl;
extern int core_rootfd;

struct pattr { uint64_t ino, size, blocks; int64_t mtime; uint32_t mode, nlink, uid, gid; };

int core_load(const char *root);                                   /* 0 or -errno */
int core_lookup(uint64_t parent, const char *name, uint64_t *ino); /* 0 or -errno */
int core_getattr(uint64_t ino, struct pattr *a);
int core_open(uint64_t ino, int *fd);
ssize_t core_read(int fd, void *buf, size_t size, off_t off);      /* bytes or -errno */
void core_release(int fd);
int core_readlink(uint64_t ino, const char **target);
/* Directory listing: entry k (k >= 0) of directory ino is child k; its offset for the next call is k+1.
   Returns 0 and sets first and count, or -errno. */
int core_dir(uint64_t ino, uint32_t *first, uint32_t *count);

/* Request counters per opcode (relaxed atomics), printed at exit with -v. */
extern uint64_t core_ops[64];
static inline void core_count_op(uint32_t op) { __atomic_fetch_add(&core_ops[op < 64 ? op : 63], 1, __ATOMIC_RELAXED); }
void core_print_counts(void);
#endif
