#ifndef GITFS_PACKGUARD_H
#define GITFS_PACKGUARD_H

/* A SIGBUS guard for mappings of git packs and pack indexes (gitfs's own and libgit2's).
 *
 * A file shrunk under a mapping (a pack truncated by disk trouble or a tool) makes a read past its new
 * end raise SIGBUS, which kills the whole process. Once installed, the handler looks the faulting
 * address up in /proc/self/maps; when it lies in a mapping of a file named like a git pack or index
 * (".../objects/pack/pack-*.pack" or ".idx"), it maps anonymous zero pages from the faulting page to the
 * end of that mapping (MAP_FIXED), counts the fault and returns: the read sees zeros, which every
 * reader of packs refuses (CRC-32, Adler-32 and SHA-1 checks in gitfs; zlib and format checks in
 * libgit2). Any other SIGBUS goes to the handler installed before (or the default action). The handler
 * uses only async-signal-safe calls (open, read, close, mmap) and no allocation. Thread-safe. */

/* Installs the handler once per process; later calls do nothing. */
void gitfs_pack_guard_install(void);

/* How many faults the handler turned into zero pages since the process started. */
unsigned long gitfs_pack_guard_faults(void);

#endif
