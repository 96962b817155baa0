/* fuse-proto: a read-only FUSE server of a static snapshot, with interchangeable transports
   (libfuse 3 lowlevel, raw /dev/fuse, FUSE over io_uring). A measurement prototype: see README.md. */
#define _GNU_SOURCE
#include "core.h"
#include "proto.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct proto_opts opts = { .threads = 16 };

static void usage(void) {
    fprintf(stderr, "usage: fuse-proto [-t libfuse|raw|uring] [-j threads] [-O] [-P] [-U] [-S] [-N] [-E entry_ttl] [-A attr_ttl] [-v] SRCDIR MOUNTPOINT\n"
                    "  serves SRCDIR (scanned once) read-only at MOUNTPOINT until it is unmounted\n"
                    "  -O no-open mode: OPEN answered ENOSYS, as gitfs (libfuse)\n"
                    "  -P passthrough reads (raw, uring)   -U mount through fusermount3 (raw, uring)\n"
                    "  -S one shared /dev/fuse fd, no clones (raw)   -N no PARALLEL_DIROPS (raw, uring)\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *transport = "raw";
    int c;
    while ((c = getopt(argc, argv, "t:j:OPUSNE:A:v")) != -1) {
        switch (c) {
        case 't': transport = optarg; break;
        case 'j': opts.threads = atoi(optarg); break;
        case 'O': opts.no_open = 1; break;
        case 'P': opts.passthrough = 1; break;
        case 'U': opts.fusermount = 1; break;
        case 'S': opts.shared_fd = 1; break;
        case 'N': opts.serial_dirops = 1; break;
        case 'E': core_entry_ttl = atof(optarg); break;
        case 'A': core_attr_ttl = atof(optarg); break;
        case 'v': opts.verbose = 1; break;
        default: usage();
        }
    }
    if (argc - optind != 2 || opts.threads < 1) usage();
    int r = core_load(argv[optind]);
    if (r) { fprintf(stderr, "fuse-proto: error: cannot scan %s: %s\n", argv[optind], strerror(-r)); return 1; }
    if (opts.verbose) fprintf(stderr, "fuse-proto: %u nodes, transport %s, %d threads\n", core_count, transport, opts.threads);
    if (!strcmp(transport, "libfuse")) {
        if (opts.passthrough || opts.fusermount || opts.shared_fd || opts.serial_dirops) { fprintf(stderr, "fuse-proto: error: -P, -U, -S and -N are for raw and uring\n"); return 2; }
        r = libfuse_serve(argv[optind + 1]);
    } else if (!strcmp(transport, "raw") || !strcmp(transport, "uring")) {
        if (opts.no_open) { fprintf(stderr, "fuse-proto: error: -O is for libfuse\n"); return 2; }
        opts.uring = !strcmp(transport, "uring");
        r = raw_serve(argv[optind + 1]);
    } else usage();
    if (opts.verbose) core_print_counts();
    return r;
}
