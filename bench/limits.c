/*
 * limits.c — the machine's limits, measured in the same run as the workloads:
 * stream triad bandwidth (a[i] = b[i] + s*c[i] over arrays far larger than the
 * caches) and the FMA peak (independent vector FMA chains, 512-bit when the
 * CPU has AVX-512F, else 256-bit). Both use the run's thread count, with
 * plain pthreads so they measure the machine, not ember.
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

static void *fma_part(void *p) {
    part *t = p;
    long iters = 20 * 1000 * 1000;
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
    for (int i = 0; i < threads; i++) parts[i] = (part){.avx512 = avx512, .bar = &bar};
    run_parts(threads, fma_part, parts);
    pthread_barrier_destroy(&bar);
    out->fma_gflops = 0;
    for (int i = 0; i < threads; i++) out->fma_gflops += parts[i].flops / 1e9;
    out->fma_isa = avx512 ? "AVX-512" : "AVX2";
}
