/* statstorm DIR SECONDS THREADS: stat(2) the entries of DIR round robin from THREADS threads for SECONDS;
   prints stats per second, the number of stats and this process's CPU seconds. Over a FUSE mount with attr_ttl 0 every stat is one GETATTR round trip; with a
   long attr_ttl the kernel answers alone (the baseline). */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <time.h>

static char **paths;
static size_t npaths;
static volatile int stop;
struct arg { size_t start; unsigned long long n; };

static void *run(void *p) {
    struct arg *a = p;
    struct stat st;
    size_t i = a->start;
    while (!stop) {
        for (int k = 0; k < 64; k++) { if (stat(paths[i], &st) != 0) { perror(paths[i]); exit(1); } if (++i == npaths) i = 0; }
        a->n += 64;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: statstorm DIR SECONDS THREADS\n"); return 2; }
    DIR *d = opendir(argv[1]);
    if (!d) { perror(argv[1]); return 1; }
    struct dirent *e;
    size_t cap = 1024;
    paths = malloc(cap * sizeof *paths);
    while ((e = readdir(d)) && npaths < 4096) {
        if (e->d_name[0] == '.') continue;
        if (npaths == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        if (asprintf(&paths[npaths++], "%s/%s", argv[1], e->d_name) < 0) return 1;
    }
    closedir(d);
    if (!npaths) { fprintf(stderr, "statstorm: %s is empty\n", argv[1]); return 1; }
    struct stat st;
    for (size_t i = 0; i < npaths; i++) stat(paths[i], &st);   /* every dentry cached */
    int nt = atoi(argv[3]);
    double secs = atof(argv[2]);
    pthread_t *t = calloc((size_t)nt, sizeof *t);
    struct arg *a = calloc((size_t)nt, sizeof *a);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < nt; i++) { a[i].start = (npaths * (size_t)i) / (size_t)nt; pthread_create(&t[i], NULL, run, &a[i]); }
    struct timespec sl = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
    nanosleep(&sl, NULL);
    stop = 1;
    unsigned long long total = 0;
    for (int i = 0; i < nt; i++) { pthread_join(t[i], NULL); total += a[i].n; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec + ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    printf("%.0f %llu %.6f\n", (double)total / el, total, cpu);   /* stats/s, stats, CPU seconds of this process */
    return 0;
}
