/*
 * bench.h — what ember-bench's files share: one result row per workload, the
 * timing of a model eager against compiled, the machine's measured limits, the
 * report writers and the GEMM sweep.
 */
#ifndef EMBER_BENCH_H
#define EMBER_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "models.h"

typedef struct bench_row {
    const bm_model *m;
    int threads;
    double eager_med, eager_best;       /* ms per call */
    double comp_med, comp_best;         /* ms per call, compiled */
    double speedup;                     /* median of the rounds' eager / compiled */
    double cold_ms;                     /* em_compile + first call (trace, passes, build) */
    double warm_ms;                     /* the same once freed: code from the object cache */
    double proc_ms;                     /* the same in a new process (median of 3), or 0 */
    int kernels;
    size_t arena, eager_peak, comp_peak; /* bytes */
    size_t packed;                       /* bytes of constant weights kept packed (em_stats) */
    double torch_eager, torchscript;    /* ms (median of the peer's runs), or 0 when not measured */
    double vs_torch;                    /* median of the runs' torch eager / compiled just before, or 0 */
    double bound_ms;                    /* the machine's limit for this work, ms (median over rounds) */
    double of_bound;                    /* median of the rounds' bound / compiled time */
    const char *bound_kind;             /* "memory" or "fma" */
    bool ok;                            /* compiled agreed with eager */
} bench_row;

typedef struct bench_limits {
    double triad_gbs;                   /* stream triad, GB/s, with the run's threads */
    double fma_gflops;                  /* AVX-512 (else AVX2) FMA peak, GFLOP/s */
    const char *fma_isa;
} bench_limits;

/* timing.c: eager and compiled ms per call in alternating rounds */
typedef em_tensor *(*bench_fn)(em_tensor *);
typedef struct bench_timing { double med, best; } bench_timing; /* ms per call */
double bench_now_ms(void);
int bench_cmp_double(const void *a, const void *b); /* qsort's, ascending */
/* ms per call of fn over about `seconds` of back-to-back calls (after the
 * wait for OpenBLAS's threads that compiled rounds take at 2+ threads) */
double bench_time_calls(bench_fn fn, em_tensor *x, double seconds, int threads);
typedef struct bench_bound bench_bound;
/* bound (or NULL): measured after each compiled round; *of_bound is the
 * median of the rounds' bound / compiled, *bound_ms the median bound. */
void bench_time_pair(bench_fn eager, bench_fn fast, em_tensor *x, double seconds, int threads, bench_timing *te,
                     bench_timing *tc, double *speedup, bench_bound *bound, double *of_bound, double *bound_ms);

/* limits.c */
void bench_measure_limits(int threads, bench_limits *out);
/* A workload's bound measured again beside each compiled round: FMA-bound
 * (flops > 0) or memory-bound (triad arrays of `bytes` in all). */
typedef struct bench_bound {
    int threads, avx512;
    double flops, bytes;                /* one call's work */
    float *a, *b, *c;                   /* triad arrays, memory-bound only */
    long n;
} bench_bound;
bench_bound *bench_bound_new(double flops, double bytes, int threads); /* NULL when out of memory */
void bench_bound_free(bench_bound *b);
double bench_bound_ms(bench_bound *b); /* the machine's time for one call's work, now */

/* report.c */
void bench_print_table(FILE *out, const bench_row *rows, int n, const bench_limits *lim,
                       bool have_torch);
void bench_print_json(FILE *out, const bench_row *rows, int n, const bench_limits *lim);
int bench_write_svg(const char *path, const bench_row *rows, int n, bool have_torch);

/* gemm.c: ember-bench --gemm; returns the number of products that failed */
int bench_gemm_sweep(FILE *out, double seconds, int threads, const bench_limits *lim);

#endif
