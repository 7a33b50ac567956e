/*
 * limits.c — the machine's limits, measured in the same run as the workloads:
 * stream triad bandwidth (a[i] = b[i] + s*c[i] over arrays far larger than the
 * caches) and the FMA peak (independent vector FMA chains, 512-bit when the
 * CPU has AVX-512F, else 256-bit). Both use the run's thread count, with
 * plain pthreads so they measure the machine, not ember.
 *
 * Each workload's bound is also measured again beside each of its compiled
 * rounds (bench_bound_ms, called by timing.c): a short FMA run for GEMM-bound
 * work, a triad over arrays as large as the workload's traffic for memory-
 * bound work, AVX-512 with non-temporal and with plain stores, the faster of
 * the two (compiled code streams large outputs past the caches too). This
 * machine's speed moved by up to 2x within a minute, so a peak measured once
 * at the start made "of bound" swing with the minute (mlp: 62-85% in four runs
 * of the same code); a bound from the same second as the compiled round does
 * not.
 */
#include "bench.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { TRIAD_N = 1 << 24 }; /* 64 MiB per array */

typedef struct part {
    float *a, *b, *c;
    long lo, hi;
    bool nt;                     /* triad_simd_part: non-temporal stores */
    long iters;                  /* fma_part: iterations */
    double flops;
    int avx512;
    pthread_barrier_t *bar;
} part;

static void *triad_part(void *p) {
    part *t = p;
    for (long i = t->lo; i < t->hi; i++) t->a[i] = t->b[i] + 3.0f * t->c[i];
    return NULL;
}

/* Twelve independent FMA chains in named registers (an array would live in
 * memory at -O2 and measure store forwarding instead): enough to cover the FMA
 * latency (4) times two ports. */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx512f"))) static float fma512(long iters) {
    __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
#define INIT(i) __m512 c##i = _mm512_set1_ps((float)i);
#define STEP(i) c##i = _mm512_fmadd_ps(c##i, m, a);
#define SUM(i) s = _mm512_add_ps(s, c##i);
    CHAINS(INIT)
    for (long k = 0; k < iters; k++) { CHAINS(STEP) }
    __m512 s = _mm512_setzero_ps();
    CHAINS(SUM)
    return _mm512_reduce_add_ps(s);
#undef INIT
#undef STEP
#undef SUM
}

__attribute__((target("avx2,fma"))) static float fma256(long iters) {
    __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
#define INIT(i) __m256 c##i = _mm256_set1_ps((float)i);
#define STEP(i) c##i = _mm256_fmadd_ps(c##i, m, a);
#define SUM(i) s = _mm256_add_ps(s, c##i);
    CHAINS(INIT)
    for (long k = 0; k < iters; k++) { CHAINS(STEP) }
    __m256 s = _mm256_setzero_ps();
    CHAINS(SUM)
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
#undef INIT
#undef STEP
#undef SUM
}

static volatile float sink;

/* The triad with AVX-512, its stores non-temporal or not. */
__attribute__((target("avx512f"))) static void triad512(float *a, const float *b, const float *c, long lo, long hi,
                                                        bool nt) {
    __m512 s = _mm512_set1_ps(3.0f);
    long i = lo;
    for (; i < hi && (i & 15); i++) a[i] = b[i] + 3.0f * c[i];
    for (; i + 16 <= hi; i += 16) {
        __m512 v = _mm512_fmadd_ps(s, _mm512_loadu_ps(c + i), _mm512_loadu_ps(b + i));
        if (nt) _mm512_stream_ps(a + i, v);
        else _mm512_store_ps(a + i, v);
    }
    if (nt) _mm_sfence();
    for (; i < hi; i++) a[i] = b[i] + 3.0f * c[i];
}

/* triad512 where the CPU has AVX-512, else the plain loop. */
static void *triad_simd_part(void *p) {
    part *t = p;
    if (t->avx512) triad512(t->a, t->b, t->c, t->lo, t->hi, t->nt);
    else triad_part(p);
    return NULL;
}

static void *fma_part(void *p) {
    part *t = p;
    long iters = t->iters;
    pthread_barrier_wait(t->bar);
    double t0 = now_s();
    sink = t->avx512 ? fma512(iters) : fma256(iters);
    double dt = now_s() - t0;
    t->flops = (double)iters * 12 * (t->avx512 ? 16 : 8) * 2 / dt;
    return NULL;
}

static double run_parts(int threads, void *(*fn)(void *), part *parts) {
    pthread_t tid[64];
    double t0 = now_s();
    for (int i = 1; i < threads; i++) pthread_create(&tid[i], NULL, fn, &parts[i]);
    fn(&parts[0]);
    for (int i = 1; i < threads; i++) pthread_join(tid[i], NULL);
    return now_s() - t0;
}

void bench_measure_limits(int threads, bench_limits *out) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    size_t bytes = sizeof(float) * TRIAD_N;
    float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *c = aligned_alloc(64, bytes);
    part parts[64];
    pthread_barrier_t bar;
    double best = 1e9;
    for (long i = 0; a && b && c && i < TRIAD_N; i++) a[i] = 0, b[i] = 1, c[i] = 2;
    for (int i = 0; i < threads; i++)
        parts[i] = (part){a, b, c, (long)TRIAD_N * i / threads, (long)TRIAD_N * (i + 1) / threads};
    for (int rep = 0; rep < 7 && a && b && c; rep++) {
        double dt = run_parts(threads, triad_part, parts);
        if (dt < best) best = dt;
    }
    out->triad_gbs = a && b && c ? 3.0 * (double)bytes / best / 1e9 : 0;
    free(a), free(b), free(c);
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    pthread_barrier_init(&bar, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) parts[i] = (part){.iters = 20 * 1000 * 1000, .avx512 = avx512, .bar = &bar};
    run_parts(threads, fma_part, parts);
    pthread_barrier_destroy(&bar);
    out->fma_gflops = 0;
    for (int i = 0; i < threads; i++) out->fma_gflops += parts[i].flops / 1e9;
    out->fma_isa = avx512 ? "AVX-512" : "AVX2";
}

/* ---- a workload's bound, beside each compiled round ---------------------------------- */

bench_bound *bench_bound_new(double flops, double bytes, int threads) {
    bench_bound *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    __builtin_cpu_init();
    b->threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    b->avx512 = __builtin_cpu_supports("avx512f");
    b->flops = flops, b->bytes = bytes;
    if (b->flops > 0) return b;
    b->n = (long)(bytes / 3 / sizeof(float)) / 16 * 16; /* three arrays: the workload's traffic */
    size_t sz = (size_t)b->n * sizeof(float);
    b->a = aligned_alloc(64, sz), b->b = aligned_alloc(64, sz), b->c = aligned_alloc(64, sz);
    if (!b->a || !b->b || !b->c) return bench_bound_free(b), NULL;
    for (long i = 0; i < b->n; i++) b->a[i] = 0, b->b[i] = 1, b->c[i] = 2;
    return b;
}

void bench_bound_free(bench_bound *b) {
    if (!b) return;
    free(b->a), free(b->b), free(b->c), free(b);
}

/* The machine's time for one call's work, measured now: flops at the FMA rate
 * of a 2M-iteration run (about 5 ms), or bytes at the triad rate of the
 * fastest of four passes over the arrays, two with non-temporal stores (faster
 * once the arrays outgrow the caches) and two with plain ones (faster while
 * the L3 holds them). */
double bench_bound_ms(bench_bound *b) {
    part parts[64];
    pthread_barrier_t bar;
    if (b->flops > 0) {
        pthread_barrier_init(&bar, NULL, (unsigned)b->threads);
        for (int i = 0; i < b->threads; i++) parts[i] = (part){.iters = 2 * 1000 * 1000, .avx512 = b->avx512, .bar = &bar};
        run_parts(b->threads, fma_part, parts);
        pthread_barrier_destroy(&bar);
        double flops = 0;
        for (int i = 0; i < b->threads; i++) flops += parts[i].flops;
        return b->flops / flops * 1e3;
    }
    for (int i = 0; i < b->threads; i++)
        parts[i] = (part){b->a, b->b, b->c, b->n * i / b->threads, b->n * (i + 1) / b->threads, .avx512 = b->avx512};
    double best = 1e9;
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < b->threads; i++) parts[i].nt = rep % 2 == 0;
        double dt = run_parts(b->threads, triad_simd_part, parts);
        if (dt < best) best = dt;
    }
    double gbs = 3.0 * (double)b->n * sizeof(float) / best / 1e9;
    return b->bytes / (gbs * 1e9) * 1e3;
}
