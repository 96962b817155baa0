#define _GNU_SOURCE
#include "packguard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct sigaction previous;
static atomic_int installed;
static atomic_ulong faults;
static uintptr_t page_size = 4096;

/* The ranges this handler replaced with zero pages (the last 64), stored before the replacement: a
 * thread that faults in a range another thread is replacing finds its address in an anonymous mapping
 * listed here, and retries. */
#define ZEROED_SLOTS 64
static _Atomic uintptr_t zeroed_start[ZEROED_SLOTS];
static _Atomic uintptr_t zeroed_end[ZEROED_SLOTS];
static atomic_uint zeroed_next;

static int was_zeroed(uintptr_t addr) {
    for (int k = 0; k < ZEROED_SLOTS; k++) {
        if (atomic_load(&zeroed_start[k]) <= addr && addr < atomic_load(&zeroed_end[k])) return 1;
    }
    return 0;
}

/* Whether a /proc/self/maps path names a git pack or index: ".../objects/pack/pack-*.pack" or ".idx",
 * possibly followed by " (deleted)". */
static int is_pack_path(const char *path, size_t n) {
    static const char deleted[] = " (deleted)";
    size_t d = sizeof deleted - 1;
    if (n > d && memcmp(path + n - d, deleted, d) == 0) n -= d;
    static const char dir[] = "/objects/pack/pack-";
    if (!memmem(path, n, dir, sizeof dir - 1)) return 0;
    return (n > 5 && memcmp(path + n - 5, ".pack", 5) == 0) || (n > 4 && memcmp(path + n - 4, ".idx", 4) == 0);
}

enum { NOT_OURS = 0, PACK_MAPPING = 1, ANONYMOUS = 2 };

/* Parses one maps line "start-end perms offset dev inode path": NOT_OURS when addr is not in
 * [start, end); else PACK_MAPPING (setting *end) for a pack or index file, ANONYMOUS for a mapping
 * without a path, NOT_OURS for anything else. */
static int line_matches(const char *line, size_t n, uintptr_t addr, uintptr_t *end) {
    uintptr_t start = 0, stop = 0;
    size_t i = 0;
    for (; i < n && line[i] != '-'; i++) {
        char c = line[i];
        start = start * 16 + (uintptr_t)(c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    for (i++; i < n && line[i] != ' '; i++) {
        char c = line[i];
        stop = stop * 16 + (uintptr_t)(c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    if (addr < start || addr >= stop) return NOT_OURS;
    /* Skip perms, offset, dev, inode; the path starts at the first '/' after them. */
    int fields = 0;
    while (i < n && fields < 5) {
        while (i < n && line[i] == ' ') i++;
        if (fields == 4) break;
        while (i < n && line[i] != ' ') i++;
        fields++;
    }
    if (i >= n) return ANONYMOUS;
    if (line[i] != '/' || !is_pack_path(line + i, n - i)) return NOT_OURS;
    *end = stop;
    return PACK_MAPPING;
}

/* Looks addr up in /proc/self/maps: what line_matches says of the mapping holding it (NOT_OURS when
 * none does). Reads in 4 KiB chunks into a line buffer on the stack (longer lines cannot match: paths
 * that long are skipped). */
static int classify(uintptr_t addr, uintptr_t *end) {
    int fd;
    do { fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) return 0;
    char chunk[4096];
    char line[8192];
    size_t used = 0;
    int overlong = 0;
    int found = NOT_OURS;
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (ssize_t k = 0; k < got && !found; k++) {
            char c = chunk[k];
            if (c == '\n') {
                if (!overlong) found = line_matches(line, used, addr, end);
                used = 0;
                overlong = 0;
            } else if (used < sizeof line) {
                line[used++] = c;
            } else {
                overlong = 1;
            }
        }
        if (found) break;
    }
    close(fd);
    return found;
}

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    int saved = errno;
    if (info && info->si_code == BUS_ADRERR) {
        uintptr_t addr = (uintptr_t)info->si_addr;
        uintptr_t end = 0;
        int kind = classify(addr, &end);
        if (kind == PACK_MAPPING && end > addr) {
            uintptr_t start = addr & ~(page_size - 1);
            unsigned slot = atomic_fetch_add(&zeroed_next, 1) % ZEROED_SLOTS;
            atomic_store(&zeroed_end[slot], 0);
            atomic_store(&zeroed_start[slot], start);
            atomic_store(&zeroed_end[slot], end);
            void *p = mmap((void *)start, end - start, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (p != MAP_FAILED) {
                atomic_fetch_add(&faults, 1);
                errno = saved;
                return; /* the faulting read runs again and sees zeros */
            }
            atomic_store(&zeroed_end[slot], 0);
        } else if (kind == ANONYMOUS && was_zeroed(addr)) {
            errno = saved;
            return; /* another thread replaced this range meanwhile: the read runs again */
        }
    }
    errno = saved;
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        /* Not ours: the default action, taken when the faulting read runs again. */
        signal(SIGBUS, SIG_DFL);
    }
}

void gitfs_pack_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return;
    long p = sysconf(_SC_PAGESIZE);
    if (p > 0) page_size = (uintptr_t)p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous);
}

unsigned long gitfs_pack_guard_faults(void) {
    return atomic_load(&faults);
}
