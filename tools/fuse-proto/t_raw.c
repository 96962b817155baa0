/* fuse-proto transports (2) and (3): the kernel FUSE protocol spoken directly.
   (2) raw /dev/fuse: mount(2) with fd=N (or fusermount3 and its fd passing), INIT negotiated here
       (PARALLEL_DIROPS, READDIRPLUS, MAX_PAGES, optional PASSTHROUGH), one cloned fd per worker thread
       (FUSE_DEV_IOC_CLONE: each clone has its own processing queue; a reply goes to the fd that read it).
   (3) FUSE over io_uring (7.42): after INIT (FUSE_OVER_IO_URING), every ring thread registers one ring
       entry (headers + payload buffers) on queue qid = thread % nr_cpu_ids, then loops COMMIT_AND_FETCH:
       one io_uring_enter per request instead of read + writev. FORGET and INTERRUPT still come on /dev/fuse. */
#define _GNU_SOURCE
#include "core.h"
#include "proto.h"
#include "proto_ext.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_WRITE (1u << 20)
#define MAX_PAGES 256
#define INBUF (MAX_WRITE + 4096)
#define PAYLOAD (MAX_PAGES * 4096)

static int devfd = -1;
static int negotiated_uring, negotiated_passthrough;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t init_cond = PTHREAD_COND_INITIALIZER;
static int init_done;
static uint64_t ring_requests;   /* requests served through a ring (the rest came on /dev/fuse) */

/* Where one reply goes: written to a /dev/fuse fd, or left in a ring entry's buffers for the next commit. */
struct sink {
    int uring;
    int fd;                               /* /dev/fuse fd (not uring) */
    char *buf; size_t cap;                /* the reply's payload is built here */
    struct proto_uring_req_header *hdr;   /* uring */
};

static void finish(struct sink *s, uint64_t unique, int err, size_t len) {
    if (err) len = 0;
    if (!s->uring) {
        struct fuse_out_header oh = { .len = (uint32_t)(sizeof oh + len), .error = err, .unique = unique };
        struct iovec iov[2] = { { &oh, sizeof oh }, { s->buf, len } };
        if (writev(s->fd, iov, len ? 2 : 1) < 0 && errno != ENOENT && errno != ENODEV)
            perror("fuse-proto: writev /dev/fuse");
    } else {
        struct fuse_out_header *oh = (struct fuse_out_header *)s->hdr->in_out;
        oh->len = (uint32_t)(sizeof *oh + len); oh->error = err; oh->unique = unique;
        s->hdr->ring_ent_in_out.payload_sz = (uint32_t)len;
    }
}

static void fill_attr(uint64_t ino, struct fuse_attr *fa) {
    struct pattr a;
    core_getattr(ino, &a);
    memset(fa, 0, sizeof *fa);
    fa->ino = ino; fa->size = a.size; fa->blocks = a.blocks;
    fa->atime = fa->mtime = fa->ctime = (uint64_t)a.mtime;
    fa->mode = a.mode; fa->nlink = a.nlink; fa->uid = a.uid; fa->gid = a.gid; fa->blksize = 4096;
}
static void ttl(double t, uint64_t *sec, uint32_t *nsec) { *sec = (uint64_t)t; *nsec = (uint32_t)((t - (double)*sec) * 1e9); }
static void fill_entry(uint64_t ino, struct fuse_entry_out *e) {
    memset(e, 0, sizeof *e);
    e->nodeid = ino;
    ttl(core_entry_ttl, &e->entry_valid, &e->entry_valid_nsec);
    ttl(core_attr_ttl, &e->attr_valid, &e->attr_valid_nsec);
    fill_attr(ino, &e->attr);
}

static void dir(struct sink *s, const struct fuse_in_header *h, const struct fuse_read_in *in, int plus) {
    uint32_t first, count;
    int r = core_dir(h->nodeid, &first, &count);
    if (r) { finish(s, h->unique, r, 0); return; }
    size_t size = in->size < s->cap ? in->size : s->cap, pos = 0;
    for (uint64_t k = in->offset; k < count; k++) {
        const struct pnode *n = &core_nodes[first + k];
        size_t namelen = strlen(n->name);
        uint64_t child = (uint64_t)first + k + 1;
        size_t need = plus ? FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + namelen) : FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
        if (need > size - pos) break;
        struct fuse_dirent *d;
        if (plus) {
            struct fuse_direntplus *dp = (struct fuse_direntplus *)(s->buf + pos);
            fill_entry(child, &dp->entry_out);
            d = &dp->dirent;
        } else d = (struct fuse_dirent *)(s->buf + pos);
        d->ino = child; d->off = k + 1; d->namelen = (uint32_t)namelen; d->type = (n->mode & S_IFMT) >> 12;
        memcpy(d->name, n->name, namelen);
        memset(d->name + namelen, 0, need - (size_t)((char *)d->name - (s->buf + pos)) - namelen);
        pos += need;
    }
    finish(s, h->unique, 0, pos);
}

/* Passthrough: one backing file per inode (the kernel refuses a second, different backing for an inode
   that is open), registered at its first OPEN and kept for the life of the mount (a static snapshot). */
static int *backing;
static pthread_mutex_t backing_lock = PTHREAD_MUTEX_INITIALIZER;
static int backing_id(uint64_t ino, int fd) {
    int id = __atomic_load_n(&backing[ino - 1], __ATOMIC_ACQUIRE);
    if (id) return id;
    pthread_mutex_lock(&backing_lock);
    id = backing[ino - 1];
    if (!id) {
        struct proto_backing_map m = { .fd = fd };
        id = ioctl(devfd, PROTO_DEV_IOC_BACKING_OPEN, &m);
        if (id < 0) { perror("fuse-proto: FUSE_DEV_IOC_BACKING_OPEN"); id = -1; }
        __atomic_store_n(&backing[ino - 1], id, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&backing_lock);
    return id;
}

/* The server logic for one request. a0: the opcode's own header; name: a LOOKUP's name. Returns 0 when
   the request needs no reply (FORGET, BATCH_FORGET, INTERRUPT). */
static int dispatch(struct sink *s, const struct fuse_in_header *h, const void *a0, const char *name) {
    core_count_op(h->opcode);
    switch (h->opcode) {
    case FUSE_LOOKUP: {
        uint64_t ino;
        int r = core_lookup(h->nodeid, name, &ino);
        if (r) { finish(s, h->unique, r, 0); break; }
        fill_entry(ino, (struct fuse_entry_out *)s->buf);
        finish(s, h->unique, 0, sizeof(struct fuse_entry_out));
        break;
    }
    case FUSE_FORGET: case FUSE_BATCH_FORGET: case FUSE_INTERRUPT:
        return 0;
    case FUSE_GETATTR: {
        struct fuse_attr_out *o = (struct fuse_attr_out *)s->buf;
        memset(o, 0, sizeof *o);
        if (h->nodeid < 1 || h->nodeid > core_count) { finish(s, h->unique, -ESTALE, 0); break; }
        uint64_t sec; ttl(core_attr_ttl, &sec, &o->attr_valid_nsec); o->attr_valid = sec;
        fill_attr(h->nodeid, &o->attr);
        finish(s, h->unique, 0, sizeof *o);
        break;
    }
    case FUSE_READLINK: {
        const char *t;
        int r = core_readlink(h->nodeid, &t);
        size_t l = r ? 0 : strlen(t);
        if (!r) memcpy(s->buf, t, l);
        finish(s, h->unique, r, l);
        break;
    }
    case FUSE_OPEN: {
        int fd, r = core_open(h->nodeid, &fd);
        if (r) { finish(s, h->unique, r, 0); break; }
        struct fuse_open_out *o = (struct fuse_open_out *)s->buf;
        memset(o, 0, sizeof *o);
        o->fh = (uint64_t)(uint32_t)fd; o->open_flags = FOPEN_KEEP_CACHE;
        if (negotiated_passthrough) {
            int id = backing_id(h->nodeid, fd);
            if (id > 0) { o->open_flags = FOPEN_PASSTHROUGH; o->padding = (uint32_t)id; }   /* KEEP_CACHE is refused with it */
        }
        finish(s, h->unique, 0, sizeof *o);
        break;
    }
    case FUSE_READ: {
        const struct fuse_read_in *in = a0;
        size_t size = in->size < s->cap ? in->size : s->cap;
        ssize_t n = core_read((int)(uint32_t)in->fh, s->buf, size, (off_t)in->offset);
        finish(s, h->unique, n < 0 ? (int)n : 0, n < 0 ? 0 : (size_t)n);
        break;
    }
    case FUSE_RELEASE: {
        const struct fuse_release_in *in = a0;
        core_release((int)(uint32_t)in->fh);
        finish(s, h->unique, 0, 0);
        break;
    }
    case FUSE_RELEASEDIR: finish(s, h->unique, 0, 0); break;
    case FUSE_READDIR: dir(s, h, a0, 0); break;
    case FUSE_READDIRPLUS: dir(s, h, a0, 1); break;
    case FUSE_STATFS: {
        struct fuse_statfs_out *o = (struct fuse_statfs_out *)s->buf;
        memset(o, 0, sizeof *o);
        o->st.bsize = o->st.frsize = 4096; o->st.namelen = 255; o->st.files = core_count;
        finish(s, h->unique, 0, sizeof *o);
        break;
    }
    default: finish(s, h->unique, -ENOSYS, 0); break;   /* OPENDIR (no-opendir mode), FLUSH, xattrs, ... */
    }
    return 1;
}

static void do_init(struct sink *s, const struct fuse_in_header *h) {
    const struct fuse_init_in *in = (const void *)(h + 1);
    core_count_op(FUSE_INIT);
    if (in->major != 7) { fprintf(stderr, "fuse-proto: error: kernel protocol %u\n", in->major); finish(s, h->unique, -EPROTO, 0); return; }
    uint64_t kflags = in->flags;
    if (in->flags & FUSE_INIT_EXT) kflags |= (uint64_t)in->flags2 << 32;
    uint64_t want = FUSE_ASYNC_READ | FUSE_PARALLEL_DIROPS | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
                    FUSE_MAX_PAGES | FUSE_BIG_WRITES | FUSE_INIT_EXT;
    if (opts.serial_dirops) want &= ~(uint64_t)FUSE_PARALLEL_DIROPS;
    if (opts.passthrough) want |= FUSE_PASSTHROUGH;
    if (opts.uring) want |= FUSE_OVER_IO_URING;
    want &= kflags;
    negotiated_passthrough = !!(want & FUSE_PASSTHROUGH);
    negotiated_uring = !!(want & FUSE_OVER_IO_URING);
    if (opts.uring && !negotiated_uring)
        fprintf(stderr, "fuse-proto: the kernel offers no FUSE_OVER_IO_URING (echo 1 > /sys/module/fuse/parameters/enable_uring): serving on /dev/fuse\n");
    if (opts.passthrough && !negotiated_passthrough) fprintf(stderr, "fuse-proto: the kernel offers no FUSE_PASSTHROUGH\n");
    struct fuse_init_out *o = (struct fuse_init_out *)s->buf;
    memset(o, 0, sizeof *o);
    o->major = 7; o->minor = in->minor < 42 ? in->minor : 42;
    o->max_readahead = in->max_readahead;
    o->flags = (uint32_t)want; o->flags2 = (uint32_t)(want >> 32);
    o->max_background = PROTO_MAX_BACKGROUND; o->congestion_threshold = PROTO_CONGESTION;
    o->max_write = MAX_WRITE; o->time_gran = 1; o->max_pages = MAX_PAGES;
    if (negotiated_passthrough) o->unused[0] = 1;   /* max_stack_depth (7.40) */
    if (opts.verbose)
        fprintf(stderr, "fuse-proto: raw INIT kernel 7.%u flags 0x%llx, reply 7.%u flags 0x%llx\n", in->minor,
                (unsigned long long)kflags, o->minor, (unsigned long long)want);
    finish(s, h->unique, 0, sizeof *o);
    pthread_mutex_lock(&init_lock); init_done = 1; pthread_cond_broadcast(&init_cond); pthread_mutex_unlock(&init_lock);
}

static void *dev_loop(void *arg) {
    int fd = (int)(intptr_t)arg;
    char *in = malloc(INBUF);
    struct sink s = { .fd = fd, .buf = malloc(PAYLOAD), .cap = PAYLOAD };
    for (;;) {
        ssize_t n = read(fd, in, INBUF);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
            if (errno != ENODEV) perror("fuse-proto: read /dev/fuse");
            break;
        }
        const struct fuse_in_header *h = (const void *)in;
        if (h->opcode == FUSE_INIT) { do_init(&s, h); continue; }
        dispatch(&s, h, h + 1, (const char *)(h + 1));
    }
    free(in); free(s.buf);
    return NULL;
}

/* ---- a minimal io_uring (SQE128), one per ring thread ---- */
struct ring { int fd; unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask, tail; struct io_uring_cqe *cqes; char *sqes; };

static int ring_init(struct ring *r, unsigned entries) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (fd < 0 && errno == EINVAL) { memset(&p, 0, sizeof p); p.flags = IORING_SETUP_SQE128; fd = (int)syscall(__NR_io_uring_setup, entries, &p); }
    if (fd < 0) return -errno;
    size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned), cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cqsz > sqsz) sqsz = cqsz;
    char *sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    char *cq = sq;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) cq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED) return -ENOMEM;
    r->fd = fd;
    r->sq_head = (unsigned *)(sq + p.sq_off.head); r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask); r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head); r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask); r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->tail = *r->sq_tail;
    return 0;
}
static struct io_uring_sqe *ring_sqe(struct ring *r) {
    unsigned idx = r->tail & *r->sq_mask;
    r->sq_array[idx] = idx;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)(r->sqes + (size_t)idx * 128);
    memset(sqe, 0, 128);
    r->tail++;
    return sqe;
}
static void fuse_cmd(struct ring *r, int op, uint64_t ent, uint16_t qid, uint64_t commit_id, struct iovec *iov) {
    struct io_uring_sqe *sqe = ring_sqe(r);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = devfd;
    sqe->cmd_op = (uint32_t)op;
    sqe->user_data = ent;
    if (iov) { sqe->addr = (uint64_t)(uintptr_t)iov; sqe->len = 2; }
    struct proto_uring_cmd_req *c = (struct proto_uring_cmd_req *)sqe->cmd;
    c->commit_id = commit_id; c->qid = qid;
}

struct uthread { int qid, nent; };

static void *uring_loop(void *arg) {
    struct uthread *u = arg;
    struct ring r = { 0 };
    int e = ring_init(&r, 8);
    if (e) { fprintf(stderr, "fuse-proto: io_uring_setup: %s\n", strerror(-e)); return NULL; }
    struct ent { struct proto_uring_req_header *hdr; char *payload; struct iovec iov[2]; } *ents = calloc((size_t)u->nent, sizeof *ents);
    for (int i = 0; i < u->nent; i++) {
        ents[i].hdr = aligned_alloc(4096, 4096);
        ents[i].payload = aligned_alloc(4096, PAYLOAD);
        ents[i].iov[0] = (struct iovec){ ents[i].hdr, sizeof *ents[i].hdr };
        ents[i].iov[1] = (struct iovec){ ents[i].payload, PAYLOAD };
        fuse_cmd(&r, PROTO_IO_URING_CMD_REGISTER, (uint64_t)i, (uint16_t)u->qid, 0, ents[i].iov);
    }
    for (;;) {
        __atomic_store_n(r.sq_tail, r.tail, __ATOMIC_RELEASE);
        unsigned submit = r.tail - __atomic_load_n(r.sq_head, __ATOMIC_ACQUIRE);
        int n = (int)syscall(__NR_io_uring_enter, r.fd, submit, 1, IORING_ENTER_GETEVENTS, NULL, 0);
        if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) { perror("fuse-proto: io_uring_enter"); break; }
        unsigned head = *r.cq_head, tail = __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE);
        int stop = 0;
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &r.cqes[head & *r.cq_mask];
            struct ent *en = &ents[cqe->user_data];
            if (cqe->res < 0) {
                if (cqe->res != -ENOTCONN && cqe->res != -ECANCELED && cqe->res != -ENODEV)
                    fprintf(stderr, "fuse-proto: ring entry (queue %d): %s\n", u->qid, strerror(-cqe->res));
                stop = 1;
                continue;
            }
            uint64_t commit = en->hdr->ring_ent_in_out.commit_id;
            __atomic_fetch_add(&ring_requests, 1, __ATOMIC_RELAXED);
            struct fuse_in_header h = *(struct fuse_in_header *)en->hdr->in_out;
            struct sink s = { .uring = 1, .buf = en->payload, .cap = PAYLOAD, .hdr = en->hdr };
            if (!dispatch(&s, &h, en->hdr->op_in, en->payload)) finish(&s, h.unique, 0, 0);
            fuse_cmd(&r, PROTO_IO_URING_CMD_COMMIT_AND_FETCH, cqe->user_data, (uint16_t)u->qid, commit, NULL);
        }
        __atomic_store_n(r.cq_head, head, __ATOMIC_RELEASE);
        if (stop) break;
    }
    return NULL;
}

static int nr_cpu_ids(void) {
    FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
    int a = 0, b = 0;
    if (f) { if (fscanf(f, "%d-%d", &a, &b) < 2) b = a; fclose(f); }
    return b + 1;
}

/* fusermount3's protocol: it mounts, then passes the /dev/fuse fd back over the socket named by _FUSE_COMMFD. */
static int mount_fusermount(const char *mnt) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char env[16];
        snprintf(env, sizeof env, "%d", sv[1]);
        setenv("_FUSE_COMMFD", env, 1);
        execlp("fusermount3", "fusermount3", "-o", PROTO_MOUNT_OPTS ",fsname=" PROTO_FSNAME ",subtype=" PROTO_FSNAME, "--", mnt, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    char byte;
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { &byte, 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
    int fd = -1;
    ssize_t n;
    do { n = recvmsg(sv[0], &m, 0); } while (n < 0 && errno == EINTR);
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    close(sv[0]);
    int st;
    waitpid(pid, &st, 0);
    return fd;
}

int raw_serve(const char *mnt) {
    if (opts.fusermount) {
        devfd = mount_fusermount(mnt);
        if (devfd < 0) { fprintf(stderr, "fuse-proto: error: fusermount3 did not pass a /dev/fuse fd\n"); return 1; }
    } else {
        devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (devfd < 0) { perror("fuse-proto: open /dev/fuse"); return 1; }
        char o[256];
        snprintf(o, sizeof o, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,default_permissions,allow_other", devfd, geteuid(), getegid());
        if (mount(PROTO_FSNAME, mnt, "fuse." PROTO_FSNAME, MS_RDONLY | MS_NOSUID | MS_NODEV, o) != 0) {
            fprintf(stderr, "fuse-proto: error: mount %s: %s\n", mnt, strerror(errno)); return 1;
        }
    }
    backing = calloc(core_count, sizeof *backing);
    int ndev = opts.uring ? 1 : opts.threads;
    pthread_t *t = calloc((size_t)ndev, sizeof *t);
    for (int i = 0; i < ndev; i++) {
        int fd = devfd;
        if (i > 0 && !opts.shared_fd) {
            fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
            uint32_t src = (uint32_t)devfd;
            if (fd < 0 || ioctl(fd, FUSE_DEV_IOC_CLONE, &src) != 0) { perror("fuse-proto: FUSE_DEV_IOC_CLONE"); if (fd >= 0) close(fd); fd = devfd; }
        }
        pthread_create(&t[i], NULL, dev_loop, (void *)(intptr_t)fd);
    }
    if (opts.uring) {
        pthread_mutex_lock(&init_lock);
        while (!init_done) pthread_cond_wait(&init_cond, &init_lock);
        pthread_mutex_unlock(&init_lock);
        if (negotiated_uring) {
            int nq = nr_cpu_ids(), n = opts.threads < nq ? nq : opts.threads;
            pthread_t ut;
            for (int i = 0; i < n; i++) {
                struct uthread *u = malloc(sizeof *u);
                u->qid = i % nq; u->nent = 1;
                pthread_create(&ut, NULL, uring_loop, u);
                pthread_detach(ut);
            }
            if (opts.verbose) fprintf(stderr, "fuse-proto: io_uring: %d ring threads over %d queues\n", n, nq);
        }
    }
    for (int i = 0; i < ndev; i++) pthread_join(t[i], NULL);
    free(t);
    if (opts.verbose && opts.uring) fprintf(stderr, "fuse-proto: %llu requests through io_uring\n", (unsigned long long)__atomic_load_n(&ring_requests, __ATOMIC_RELAXED));
    return 0;
}
