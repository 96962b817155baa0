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

/* Parses one maps line "start-end perms offset dev inode path"; sets *end and returns 1 when addr lies
 * in [start, end) of a pack mapping. */
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
    if (addr < start || addr >= stop) return 0;
    /* Skip perms, offset, dev, inode; the path starts at the first '/' after them. */
    int fields = 0;
    while (i < n && fields < 5) {
        while (i < n && line[i] == ' ') i++;
        if (fields == 4) break;
        while (i < n && line[i] != ' ') i++;
        fields++;
    }
    if (i >= n || line[i] != '/') return 0;
    if (!is_pack_path(line + i, n - i)) return 0;
    *end = stop;
    return 1;
}

/* Looks addr up in /proc/self/maps; the end of its mapping when that maps a pack or index, else 0.
 * Reads in 4 KiB chunks into a line buffer on the stack (longer lines cannot match: paths that long are
 * skipped). */
static uintptr_t pack_mapping_end(uintptr_t addr) {
    int fd;
    do { fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) return 0;
    char chunk[4096];
    char line[8192];
    size_t used = 0;
    int overlong = 0;
    uintptr_t found = 0;
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (ssize_t k = 0; k < got && !found; k++) {
            char c = chunk[k];
            if (c == '\n') {
                uintptr_t end = 0;
                if (!overlong && line_matches(line, used, addr, &end)) found = end;
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
        uintptr_t end = pack_mapping_end(addr);
        if (end > addr) {
            uintptr_t start = addr & ~(page_size - 1);
            void *p = mmap((void *)start, end - start, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (p != MAP_FAILED) {
                atomic_fetch_add(&faults, 1);
                errno = saved;
                return; /* the faulting read runs again and sees zeros */
            }
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
