/*
 * cpu.c — choosing the f32 kernels for this CPU.
 *
 * The *_simd.c files are compiled for AVX-512, AVX2 and SSE2 (which every x86-64
 * has); here the first one the CPU supports is assembled into a table once, at
 * first use, from the fill function of each part. Tests also ask for the other
 * tables by name to check every ISA against the same references. The
 * monotonic clock the compiler's timings read (compile stages, step
 * profiles) is here too.
 */
#include "runtime.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

uint64_t rt_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

typedef struct isa_entry {
    const char *name;
    int width;
    bool (*supported)(void);
    void (*fill[4])(rt_simd *); /* one per RT_SIMD_PARTS */
    pthread_once_t once;
    rt_simd table;
} isa_entry;

static bool has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}
static bool has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static bool has_sse2(void) { return true; }

#define FILLS(isa) {rt_simd_fill_ew_##isa, rt_simd_fill_norm_##isa, rt_simd_fill_reduce_##isa, rt_simd_fill_pack_##isa}
static isa_entry isas[] = {
    {"avx512", 16, has_avx512, FILLS(avx512), PTHREAD_ONCE_INIT, {0}},
    {"avx2", 8, has_avx2, FILLS(avx2), PTHREAD_ONCE_INIT, {0}},
    {"sse2", 4, has_sse2, FILLS(sse2), PTHREAD_ONCE_INIT, {0}},
};
#define NISAS (int)(sizeof isas / sizeof isas[0])

/* pthread_once takes no argument: one init function per entry. */
static void fill(int i) {
    isas[i].table.isa = isas[i].name;
    isas[i].table.width = isas[i].width;
    for (int p = 0; p < (int)(sizeof isas[i].fill / sizeof isas[i].fill[0]); p++) isas[i].fill[p](&isas[i].table);
}
static void fill0(void) { fill(0); }
static void fill1(void) { fill(1); }
static void fill2(void) { fill(2); }
static void (*const fillers[NISAS])(void) = {fill0, fill1, fill2};

static const rt_simd *table(int i) {
    pthread_once(&isas[i].once, fillers[i]);
    return &isas[i].table;
}

const rt_simd *rt_simd_for(const char *isa) {
    for (int i = 0; i < NISAS; i++)
        if (isa && strcmp(isa, isas[i].name) == 0) return isas[i].supported() ? table(i) : NULL;
    return NULL;
}

static const rt_simd *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    int i = 0;
    while (!isas[i].supported()) i++; /* sse2 always is */
    chosen = table(i);
}

const rt_simd *rt_simd_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

void rt_pack_panel(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst) {
    rt_simd_get()->pack_panel(kn, lanes, vb, src, ls, dst);
}
