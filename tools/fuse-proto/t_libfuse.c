/* fuse-proto transport (1): libfuse 3 lowlevel API, as gitfs uses it (worker threads sharing one
   /dev/fuse fd, fuse_session_receive_buf + fuse_session_process_buf; splice off). */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include "core.h"
#include "proto.h"
#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUFSZ (1 << 20)
static __thread char *tbuf;
static char *buf(void) { if (!tbuf) tbuf = malloc(BUFSZ); return tbuf; }

static void to_stat(const struct pattr *a, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = a->ino; st->st_mode = a->mode; st->st_nlink = a->nlink; st->st_uid = a->uid; st->st_gid = a->gid;
    st->st_size = (off_t)a->size; st->st_blocks = (blkcnt_t)a->blocks; st->st_blksize = 4096;
    st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = a->mtime;
}
static void entry(uint64_t ino, struct fuse_entry_param *e) {
    struct pattr a;
    memset(e, 0, sizeof *e);
    core_getattr(ino, &a);
    e->ino = ino; to_stat(&a, &e->attr);
    e->attr_timeout = core_attr_ttl; e->entry_timeout = core_entry_ttl;
}

static void lf_init(void *ud, struct fuse_conn_info *c) {
    (void)ud;
    core_count_op(26);
    unsigned want = c->want;
#define ON(f) do { if (c->capable & (f)) want |= (f); } while (0)
    ON(FUSE_CAP_ASYNC_READ); ON(FUSE_CAP_READDIRPLUS); ON(FUSE_CAP_READDIRPLUS_AUTO); ON(FUSE_CAP_PARALLEL_DIROPS);
    want &= ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_WRITEBACK_CACHE);
    c->want = want;
    c->max_background = PROTO_MAX_BACKGROUND;
    c->congestion_threshold = PROTO_CONGESTION;
    if (opts.verbose)
        fprintf(stderr, "fuse-proto: libfuse INIT proto %u.%u capable 0x%x want 0x%x max_write %u max_readahead %u\n",
                c->proto_major, c->proto_minor, c->capable, want, c->max_write, c->max_readahead);
}
static void lf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    core_count_op(1);
    uint64_t ino;
    int r = core_lookup(parent, name, &ino);
    if (r) { fuse_reply_err(req, -r); return; }
    struct fuse_entry_param e;
    entry(ino, &e);
    fuse_reply_entry(req, &e);
}
static void lf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) { (void)ino; (void)n; core_count_op(2); fuse_reply_none(req); }
static void lf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f) { (void)count; (void)f; core_count_op(42); fuse_reply_none(req); }
static void lf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    core_count_op(3);
    struct pattr a;
    int r = core_getattr(ino, &a);
    if (r) { fuse_reply_err(req, -r); return; }
    struct stat st;
    to_stat(&a, &st);
    fuse_reply_attr(req, &st, core_attr_ttl);
}
static void lf_readlink(fuse_req_t req, fuse_ino_t ino) {
    core_count_op(5);
    const char *t;
    int r = core_readlink(ino, &t);
    if (r) fuse_reply_err(req, -r); else fuse_reply_readlink(req, t);
}
static void lf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    core_count_op(14);
    if (opts.no_open) { fuse_reply_err(req, ENOSYS); return; }  /* the kernel stops sending OPEN and RELEASE */
    int fd, r = core_open(ino, &fd);
    if (r) { fuse_reply_err(req, -r); return; }
    fi->fh = (uint64_t)fd; fi->keep_cache = 1;
    if (fuse_reply_open(req, fi) != 0) core_release(fd);
}
static void lf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    core_count_op(15);
    if (size > BUFSZ) size = BUFSZ;
    int fd = (int)fi->fh, own = 0;
    if (opts.no_open) {  /* no handle: open by inode for this READ */
        int r = core_open(ino, &fd);
        if (r) { fuse_reply_err(req, -r); return; }
        own = 1;
    }
    ssize_t n = core_read(fd, buf(), size, off);
    if (own) core_release(fd);
    if (n < 0) fuse_reply_err(req, (int)-n); else fuse_reply_buf(req, tbuf, (size_t)n);
}
static void lf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino; core_count_op(18); core_release((int)fi->fh); fuse_reply_err(req, 0);
}
static void lf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; (void)fi; core_count_op(27); fuse_reply_err(req, ENOSYS); }
static void lf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; (void)fi; core_count_op(29); fuse_reply_err(req, 0); }
static void dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
    core_count_op(plus ? 44 : 28);
    uint32_t first, count;
    int r = core_dir(ino, &first, &count);
    if (r) { fuse_reply_err(req, -r); return; }
    if (size > BUFSZ) size = BUFSZ;
    char *b = buf();
    size_t pos = 0;
    for (uint64_t k = (uint64_t)off; k < count; k++) {
        uint64_t child = (uint64_t)first + k + 1;
        const char *name = core_nodes[first + k].name;
        size_t need;
        if (plus) {
            struct fuse_entry_param e;
            entry(child, &e);
            need = fuse_add_direntry_plus(req, b + pos, size - pos, name, &e, (off_t)k + 1);
        } else {
            struct stat st = { .st_ino = child, .st_mode = core_nodes[first + k].mode };
            need = fuse_add_direntry(req, b + pos, size - pos, name, &st, (off_t)k + 1);
        }
        if (need > size - pos) break;
        pos += need;
    }
    fuse_reply_buf(req, b, pos);
}
static void lf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) { (void)fi; dir(req, ino, size, off, 0); }
static void lf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) { (void)fi; dir(req, ino, size, off, 1); }
static void lf_statfs(fuse_req_t req, fuse_ino_t ino) {
    (void)ino; core_count_op(17);
    struct statvfs s = { .f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255, .f_files = core_count };
    fuse_reply_statfs(req, &s);
}

static const struct fuse_lowlevel_ops ops = {
    .init = lf_init, .lookup = lf_lookup, .forget = lf_forget, .forget_multi = lf_forget_multi,
    .getattr = lf_getattr, .readlink = lf_readlink, .open = lf_open, .read = lf_read, .release = lf_release,
    .opendir = lf_opendir, .releasedir = lf_releasedir, .readdir = lf_readdir, .readdirplus = lf_readdirplus,
    .statfs = lf_statfs,
};

static void *worker(void *arg) {
    struct fuse_session *se = arg;
    struct fuse_buf fb = { 0 };
    while (!fuse_session_exited(se)) {
        int r = fuse_session_receive_buf(se, &fb);
        if (r == -EINTR || r == -EAGAIN) continue;
        if (r <= 0) break;
        fuse_session_process_buf(se, &fb);
    }
    free(fb.mem);
    fuse_session_exit(se);
    return NULL;
}

int libfuse_serve(const char *mnt) {
    char *argv[] = { "fuse-proto", "-o", PROTO_MOUNT_OPTS ",fsname=" PROTO_FSNAME ",subtype=" PROTO_FSNAME, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) { fprintf(stderr, "fuse-proto: error: fuse_session_new failed\n"); return 1; }
    if (fuse_session_mount(se, mnt) != 0) { fprintf(stderr, "fuse-proto: error: cannot mount %s\n", mnt); fuse_session_destroy(se); return 1; }
    pthread_t *t = calloc((size_t)opts.threads, sizeof *t);
    for (int i = 0; i < opts.threads; i++) pthread_create(&t[i], NULL, worker, se);
    for (int i = 0; i < opts.threads; i++) pthread_join(t[i], NULL);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    free(t);
    return 0;
}
