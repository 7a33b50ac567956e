/*
 * main.c — ember-fuzz, the differential fuzzer's driver (make fuzz).
 *
 *     ember-fuzz [-n N] [-s SEED] [-t THREADS] [-p]
 *
 * Runs the random programs of seeds SEED .. SEED+N-1 (gen.h) eagerly and
 * through em_compile with THREADS kernel threads (default 1), and exits 1 if
 * any differed or failed; each failure is shrunk and printed to stderr as a C
 * model function with the seed. -p prints program SEED and exits. A crash
 * inside the library cannot be shrunk from here: the program running when it
 * happened is printed by a signal handler, and `ember-fuzz -n 1 -s SEED`
 * replays it alone.
 *
 * Compiled code goes to EMBER_CACHE_DIR; unless it is set, the cache is off,
 * so every program really runs the LLVM pipeline.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gen.h"

static char current[64 * 1024]; /* the program now running, printed on a crash */

static void on_crash(int sig) {
    static const char head[] = "\nember-fuzz: crashed on this program (replay with -n 1 -s SEED):\n";
    (void)!write(2, head, sizeof head - 1);
    (void)!write(2, current, strlen(current));
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv) {
    long n = 100;
    unsigned long long seed = 1;
    int threads = 1, print = 0, opt;
    while ((opt = getopt(argc, argv, "n:s:t:p")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 't': threads = atoi(optarg); break;
        case 'p': print = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n N] [-s SEED] [-t THREADS] [-p]\n", argv[0]);
            return 2;
        }
    }
    setenv("EMBER_CACHE_DIR", "off", 0);
    fz_prog *p = malloc(sizeof *p);
    if (!p) return 2;
    if (print) {
        fz_generate(p, seed);
        fz_print(p, "as generated", stdout);
        free(p);
        return 0;
    }
    signal(SIGSEGV, on_crash), signal(SIGABRT, on_crash), signal(SIGBUS, on_crash), signal(SIGFPE, on_crash);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int failures = 0;
    long ops = 0;
    for (long i = 0; i < n; i++) {
        fz_generate(p, seed + (unsigned long long)i);
        FILE *f = fmemopen(current, sizeof current - 1, "w");
        if (f) {
            fz_print(p, "crashed", f);
            fclose(f);
        }
        long k;
        failures += fz_run_batch(seed + (unsigned long long)i, 1, threads, stderr, &k);
        ops += k;
        if ((i + 1) % 100 == 0) fprintf(stderr, "ember-fuzz: %ld programs, %d failing\n", i + 1, failures);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("ember-fuzz: %ld programs (seeds %llu..%llu, %ld ops, threads %d) in %.1f s: %d failing\n", n, seed,
           seed + (unsigned long long)n - 1, ops, threads,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, failures);
    free(p);
    return failures ? 1 : 0;
}
