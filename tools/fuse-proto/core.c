/* fuse-proto: snapshot and server logic (see core.h). */
#define _GNU_SOURCE
#include "core.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pnode *core_nodes;
uint32_t core_count;
double core_entry_ttl = 3600, core_attr_ttl = 3600;
int core_rootfd = -1;
uint64_t core_ops[64];
static uint32_t cap;
static uid_t uid;
static gid_t gid;
static const int64_t snapshot_time = 1700000000;

static uint32_t add(const char *name, const char *path, uint32_t parent) {
    if (core_count == cap) {
        cap = cap ? cap * 2 : 1024;
        core_nodes = realloc(core_nodes, cap * sizeof *core_nodes);
        if (!core_nodes) { perror("realloc"); exit(1); }
    }
    struct pnode *n = &core_nodes[core_count];
    memset(n, 0, sizeof *n);
    n->name = name; n->path = path; n->parent = parent;
    return core_count++;
}

static int byname(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Breadth first, so that the children of one directory are contiguous and sorted. */
int core_load(const char *root) {
    uid = geteuid(); gid = getegid();
    core_rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (core_rootfd < 0) return -errno;
    add("", ".", 0);
    for (uint32_t i = 0; i < core_count; i++) {
        struct stat st;
        if (fstatat(core_rootfd, core_nodes[i].path, &st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
        struct pnode *n = &core_nodes[i];
        n->size = (uint64_t)st.st_size;
        if (S_ISLNK(st.st_mode)) {
            char buf[4096];
            ssize_t l = readlinkat(core_rootfd, n->path, buf, sizeof buf - 1);
            if (l < 0) return -errno;
            buf[l] = 0; n->target = strdup(buf); n->mode = S_IFLNK | 0777; n->size = (uint64_t)l;
            continue;
        }
        if (S_ISREG(st.st_mode)) { n->mode = S_IFREG | ((st.st_mode & 0100) ? 0555 : 0444); continue; }
        if (!S_ISDIR(st.st_mode)) { n->mode = S_IFREG | 0444; n->size = 0; continue; }
        n->mode = S_IFDIR | 0555; n->size = 0;
        int dfd = openat(core_rootfd, n->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) return -errno;
        DIR *d = fdopendir(dfd);
        size_t nn = 0, nc = 64;
        char **names = malloc(nc * sizeof *names);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (i == 0 && !strcmp(e->d_name, ".git")) continue;
            if (nn == nc) names = realloc(names, (nc *= 2) * sizeof *names);
            names[nn++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, nn, sizeof *names, byname);
        uint32_t first = core_count;
        for (size_t k = 0; k < nn; k++) {
            char *p;
            const char *pp = core_nodes[i].path;
            if (asprintf(&p, "%s/%s", i == 0 ? "." : pp, names[k]) < 0) return -ENOMEM;
            add(names[k], p, i);
        }
        core_nodes[i].first = first; core_nodes[i].count = (uint32_t)nn;
        free(names);
    }
    return 0;
}

static struct pnode *node(uint64_t ino) { return ino >= 1 && ino <= core_count ? &core_nodes[ino - 1] : NULL; }

int core_lookup(uint64_t parent, const char *name, uint64_t *ino) {
    struct pnode *p = node(parent);
    if (!p) return -ESTALE;
    if (!S_ISDIR(p->mode)) return -ENOTDIR;
    uint32_t lo = p->first, hi = p->first + p->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(core_nodes[mid].name, name);
        if (c == 0) { *ino = (uint64_t)mid + 1; return 0; }
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -ENOENT;
}

int core_getattr(uint64_t ino, struct pattr *a) {
    struct pnode *n = node(ino);
    if (!n) return -ESTALE;
    a->ino = ino; a->size = n->size; a->blocks = (n->size + 511) / 512; a->mtime = snapshot_time;
    a->mode = n->mode; a->nlink = S_ISDIR(n->mode) ? 2 : 1; a->uid = uid; a->gid = gid;
    return 0;
}

int core_open(uint64_t ino, int *fd) {
    struct pnode *n = node(ino);
    if (!n) return -ESTALE;
    if (S_ISDIR(n->mode)) return -EISDIR;
    int f = openat(core_rootfd, n->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) return -errno;
    *fd = f;
    return 0;
}

ssize_t core_read(int fd, void *buf, size_t size, off_t off) {
    size_t done = 0;
    while (done < size) {
        ssize_t r = pread(fd, (char *)buf + done, size - done, off + (off_t)done);
        if (r < 0) { if (errno == EINTR) continue; return -errno; }
        if (r == 0) break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

void core_release(int fd) { close(fd); }

int core_readlink(uint64_t ino, const char **target) {
    struct pnode *n = node(ino);
    if (!n) return -ESTALE;
    if (!n->target) return -EINVAL;
    *target = n->target;
    return 0;
}

int core_dir(uint64_t ino, uint32_t *first, uint32_t *count) {
    struct pnode *n = node(ino);
    if (!n) return -ESTALE;
    if (!S_ISDIR(n->mode)) return -ENOTDIR;
    *first = n->first; *count = n->count;
    return 0;
}

void core_print_counts(void) {
    static const char *names[64] = { [1] = "LOOKUP", [2] = "FORGET", [3] = "GETATTR", [5] = "READLINK",
        [14] = "OPEN", [15] = "READ", [17] = "STATFS", [18] = "RELEASE", [22] = "GETXATTR", [25] = "FLUSH",
        [26] = "INIT", [27] = "OPENDIR", [28] = "READDIR", [29] = "RELEASEDIR", [34] = "ACCESS",
        [36] = "INTERRUPT", [42] = "BATCH_FORGET", [44] = "READDIRPLUS", [52] = "STATX" };
    uint64_t total = 0;
    for (int i = 0; i < 64; i++) total += core_ops[i];
    fprintf(stderr, "fuse-proto: requests %llu:", (unsigned long long)total);
    for (int i = 0; i < 64; i++)
        if (core_ops[i]) fprintf(stderr, " %s=%llu", names[i] ? names[i] : "op", (unsigned long long)core_ops[i]);
    fprintf(stderr, "\n");
}
