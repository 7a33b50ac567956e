/*
 * timing.c — how ember-bench times a model: eager and compiled in alternating
 * rounds.
 *
 * Each round runs one side for about seconds / ROUNDS and gives its ms per
 * call; the rounds alternate, an eager one then a compiled one, so that both
 * sides of each ratio ran in the same second: on a shared machine the speed
 * of a core drifts by up to 2x over a minute, and timing one side after the
 * other turned that into ratios that swung from run to run (block: 1.03x to
 * 1.75x in four runs of one minute). The speedup is the median of the
 * rounds' ratios.
 */
#include "bench.h"

#include <stdlib.h>
#include <time.h>

enum { ROUNDS = 9 };

double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double per_call(bench_fn fn, em_tensor *x, long n) {
    double t = bench_now_ms();
    for (long i = 0; i < n; i++) em_release(fn(x));
    return (bench_now_ms() - t) / n;
}

static long calls_per_round(bench_fn fn, em_tensor *x, double seconds) {
    double one = per_call(fn, x, 1);
    long per = (long)(seconds * 1e3 / ROUNDS / (one > 1e-3 ? one : 1e-3));
    return per < 1 ? 1 : per;
}

static bench_timing summarize(double *r) {
    qsort(r, ROUNDS, sizeof *r, bench_cmp_double);
    return (bench_timing){r[ROUNDS / 2], r[0]};
}

/* OpenBLAS's threads spin for about 0.1 s after an eager GEMM; compiled calls
 * made then, with threads of their own, ran up to 1.8x slower (mlp at 2
 * threads: 6.8 ms a call against 4.1 ms). With more than one thread, each
 * compiled round waits for them to sleep. */
static void settle(int threads) {
    if (threads > 1) nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
}

double bench_time_calls(bench_fn fn, em_tensor *x, double seconds, int threads) {
    settle(threads);
    return per_call(fn, x, calls_per_round(fn, x, seconds * ROUNDS));
}

void bench_time_pair(bench_fn eager, bench_fn fast, em_tensor *x, double seconds, int threads, bench_timing *te,
                     bench_timing *tc, double *speedup, bench_bound *bound, double *of_bound, double *bound_ms) {
    long pe = calls_per_round(eager, x, seconds), pc = calls_per_round(fast, x, seconds);
    double e[ROUNDS], c[ROUNDS], q[ROUNDS], b[ROUNDS], f[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        e[k] = per_call(eager, x, pe);
        settle(threads);
        c[k] = per_call(fast, x, pc);
        q[k] = e[k] / c[k];
        if (bound) b[k] = bench_bound_ms(bound), f[k] = b[k] / c[k];
    }
    *te = summarize(e), *tc = summarize(c), *speedup = summarize(q).med;
    if (bound) *bound_ms = summarize(b).med, *of_bound = summarize(f).med;
}
