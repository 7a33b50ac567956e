/*
 * alloc.c — tensor storage allocation and its accounting.
 *
 * All tensor data comes from rt_alloc: 64-byte aligned (a full AVX-512 vector or
 * cache line, so kernels never split a line at the start of a buffer), counted in
 * live and peak bytes so the benchmark can compare eager and compiled peak
 * memory from the same high-water mark. Counters are atomics: kernels allocate
 * from several threads. A test hook makes the n-th allocation fail, so the
 * allocation-failure paths of every op can be exercised without exhausting
 * memory.
 */
#include "runtime.h"

#include <stdlib.h>

static atomic_size_t live_bytes, peak_bytes;
static atomic_uint_fast64_t n_allocs;
static atomic_long fail_countdown; /* 0: off; else the allocation that fails */

static bool injected_failure(void) {
    long n = atomic_load(&fail_countdown);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1))
            return n == 1;
    }
    return false;
}

void rt_alloc_fail_after(long n) { atomic_store(&fail_countdown, n > 0 ? n : 0); }

void *rt_alloc(size_t nbytes) {
    if (injected_failure()) {
        rt_error("out of memory allocating %zu bytes (injected failure)", nbytes);
        return NULL;
    }
    size_t rounded = (nbytes + RT_ALIGN - 1) / RT_ALIGN * RT_ALIGN;
    if (rounded < nbytes) {
        rt_error("out of memory: %zu bytes is too large", nbytes);
        return NULL;
    }
    void *p = aligned_alloc(RT_ALIGN, rounded ? rounded : RT_ALIGN);
    if (!p) {
        rt_error("out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    size_t live = atomic_fetch_add(&live_bytes, nbytes) + nbytes;
    size_t peak = atomic_load(&peak_bytes);
    while (live > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, live)) {
    }
    atomic_fetch_add(&n_allocs, 1);
    return p;
}

void rt_free(void *p, size_t nbytes) {
    if (!p) return;
    atomic_fetch_sub(&live_bytes, nbytes);
    free(p);
}

void *rt_malloc(size_t nbytes, const char *what) {
    void *p = injected_failure() ? NULL : malloc(nbytes ? nbytes : 1);
    if (!p) rt_error("%s: out of memory", what);
    return p;
}

void em_memory_stats_get(em_memory_stats *out) {
    if (!out) return;
    out->live_bytes = atomic_load(&live_bytes);
    out->peak_bytes = atomic_load(&peak_bytes);
    out->allocations = atomic_load(&n_allocs);
}

void em_memory_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
