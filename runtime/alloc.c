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
 *
 * Large blocks (128 KiB and up: what glibc would mmap) are kept for reuse
 * when freed, up to EMBER_ALLOC_CACHE_MB (256 MiB) in all, oldest out first;
 * a request takes the newest block of its size. Eager programs free their
 * intermediates at a scope's end and allocate the same sizes again on the
 * next call; glibc gave those back to the kernel and the next call faulted
 * every page in again:
 *   - the eager chain workload (16 MiB blocks) took 21,000 page faults a
 *     call, most of its time;
 *   - the eager GPT-2 block (128-768 KiB blocks) took 832 a call, 3.9 ms
 *     against 2.5 ms without. glibc mmaps blocks from 128 KiB up until it
 *     sees one freed, which raises its threshold; but the big blocks this
 *     cache kept never reached its free, so its threshold stayed put. Keeping
 *     every block glibc would mmap leaves it nothing to fault in.
 * Sizes round to 4 KiB below 1 MiB and to 64 KiB above, so near sizes share.
 *
 * Small blocks (up to 64 KiB) are kept too, eight per thread, in the freeing
 * thread's own slots (no lock). A compiled call of a small model allocates
 * one output and frees the last call's: through glibc, the 64-byte aligned
 * request of 1 KiB or more consolidated the fastbins that the tensor headers'
 * frees had filled, on every call. tiny, in alternating runs: 580-1020 ns a
 * call without the slots, 460-830 ns with them. A thread's slots are freed
 * when it exits.
 *
 * Live and peak bytes count what tensors hold, not the caches;
 * em_memory_trim empties the large one and the calling thread's slots;
 * EMBER_ALLOC_CACHE_MB=0 turns both off. Under AddressSanitizer both are off,
 * so that a use after free stays visible.
 */
#include "runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static atomic_size_t live_bytes, peak_bytes;

/* ---- the cache of large blocks ------------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHE_ON 0
#endif
#endif
#ifndef CACHE_ON
#define CACHE_ON 1
#endif

enum { CACHE_MIN = 128 << 10, CACHE_BIG = 1 << 20, CACHE_SLOTS = 64 };
static struct {
    pthread_mutex_t mu;
    pthread_once_t once;
    size_t cap, bytes;                       /* the limit; what the slots hold */
    int n;                                   /* slots used, oldest first */
    struct { void *p; size_t size; } slot[CACHE_SLOTS];
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static void cache_init(void) {
    cache.cap = CACHE_ON ? (size_t)256 << 20 : 0;
    const char *env = getenv("EMBER_ALLOC_CACHE_MB");
    if (CACHE_ON && env && *env) {
        char *end;
        long mb = strtol(env, &end, 10);
        if (*end == '\0' && mb >= 0 && mb <= (1L << 20)) cache.cap = (size_t)mb << 20;
    }
}

/* A cached block of exactly `size` bytes (the newest), or NULL. */
static void *cache_take(size_t size) {
    if (size < CACHE_MIN) return NULL;
    pthread_once(&cache.once, cache_init);
    void *p = NULL;
    pthread_mutex_lock(&cache.mu);
    for (int i = cache.n - 1; i >= 0 && !p; i--) {
        if (cache.slot[i].size != size) continue;
        p = cache.slot[i].p;
        cache.bytes -= size;
        memmove(&cache.slot[i], &cache.slot[i + 1], (size_t)(cache.n - 1 - i) * sizeof cache.slot[0]);
        cache.n--;
    }
    pthread_mutex_unlock(&cache.mu);
    return p;
}

/* Keeps p (size bytes) for reuse, making room by freeing the oldest; false when
 * it is not cached (small, larger than the cache, or the cache is off). */
static bool cache_keep(void *p, size_t size) {
    if (size < CACHE_MIN) return false;
    pthread_once(&cache.once, cache_init);
    if (size > cache.cap) return false;
    void *evicted[CACHE_SLOTS];
    int ne = 0;
    pthread_mutex_lock(&cache.mu);
    while (cache.n > 0 && (cache.n == CACHE_SLOTS || cache.bytes + size > cache.cap)) {
        evicted[ne++] = cache.slot[0].p;
        cache.bytes -= cache.slot[0].size;
        memmove(&cache.slot[0], &cache.slot[1], (size_t)(cache.n - 1) * sizeof cache.slot[0]);
        cache.n--;
    }
    cache.slot[cache.n].p = p, cache.slot[cache.n].size = size;
    cache.n++, cache.bytes += size;
    pthread_mutex_unlock(&cache.mu);
    for (int i = 0; i < ne; i++) free(evicted[i]);
    return true;
}

/* ---- the calling thread's small blocks -------------------------------------------------- */

enum { SMALL_MAX = 64 << 10, SMALL_SLOTS = 8 };
typedef struct small_cache {
    int n;                                   /* slots used, oldest first */
    bool registered;                         /* its exit destructor is set */
    bool closed;                             /* the thread is exiting: keep nothing */
    struct { void *p; size_t size; } slot[SMALL_SLOTS];
} small_cache;
static _Thread_local small_cache small;
static pthread_key_t small_key;
static pthread_once_t small_once = PTHREAD_ONCE_INIT;
static atomic_size_t small_bytes; /* in every thread's slots */

static size_t small_drop(small_cache *c) {
    size_t bytes = 0;
    for (int i = 0; i < c->n; i++) free(c->slot[i].p), bytes += c->slot[i].size;
    c->n = 0;
    atomic_fetch_sub(&small_bytes, bytes);
    return bytes;
}
static void small_at_exit(void *c) {
    ((small_cache *)c)->closed = true; /* blocks freed later in the exit are freed at once */
    small_drop(c);
}
static bool small_key_ok;
static void small_key_init(void) { small_key_ok = pthread_key_create(&small_key, small_at_exit) == 0; }

static bool small_on(size_t size) {
    if (size > SMALL_MAX) return false;
    pthread_once(&cache.once, cache_init);
    return cache.cap > 0;
}

static void *small_take(size_t size) {
    if (!small_on(size)) return NULL;
    for (int i = small.n - 1; i >= 0; i--) {
        if (small.slot[i].size != size) continue;
        void *p = small.slot[i].p;
        memmove(&small.slot[i], &small.slot[i + 1], (size_t)(small.n - 1 - i) * sizeof small.slot[0]);
        small.n--;
        atomic_fetch_sub(&small_bytes, size);
        return p;
    }
    return NULL;
}

/* Keeps p in this thread's slots, freeing the oldest when they are full. */
static bool small_keep(void *p, size_t size) {
    if (!small_on(size) || small.closed) return false;
    if (!small.registered) { /* first block of this thread: free its slots when it exits */
        pthread_once(&small_once, small_key_init);
        if (!small_key_ok || pthread_setspecific(small_key, &small) != 0) return false;
        small.registered = true;
    }
    if (small.n == SMALL_SLOTS) {
        free(small.slot[0].p);
        atomic_fetch_sub(&small_bytes, small.slot[0].size);
        memmove(&small.slot[0], &small.slot[1], (SMALL_SLOTS - 1) * sizeof small.slot[0]);
        small.n--;
    }
    small.slot[small.n].p = p, small.slot[small.n].size = size;
    small.n++;
    atomic_fetch_add(&small_bytes, size);
    return true;
}

size_t em_memory_trim(void) {
    void *blocks[CACHE_SLOTS];
    pthread_mutex_lock(&cache.mu);
    int n = cache.n;
    size_t bytes = cache.bytes;
    for (int i = 0; i < n; i++) blocks[i] = cache.slot[i].p;
    cache.n = 0, cache.bytes = 0;
    pthread_mutex_unlock(&cache.mu);
    for (int i = 0; i < n; i++) free(blocks[i]);
    return bytes + small_drop(&small);
}

size_t rt_alloc_cached_bytes(void) {
    pthread_mutex_lock(&cache.mu);
    size_t b = cache.bytes;
    pthread_mutex_unlock(&cache.mu);
    return b + atomic_load(&small_bytes);
}

/* ---- allocation ------------------------------------------------------------------------- */

/* The bytes a request of nbytes takes: whole cache lines below CACHE_MIN,
 * whole pages up to CACHE_BIG and whole 64 KiB above, so that near sizes
 * share cached blocks. */
static size_t block_size(size_t nbytes) {
    size_t q = nbytes >= CACHE_BIG ? (size_t)64 << 10 : nbytes >= CACHE_MIN ? (size_t)4 << 10 : RT_ALIGN;
    return (nbytes + q - 1) / q * q;
}
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
    size_t rounded = block_size(nbytes);
    if (rounded < nbytes) {
        rt_error("out of memory: %zu bytes is too large", nbytes);
        return NULL;
    }
    void *p = rounded >= CACHE_MIN ? cache_take(rounded) : small_take(rounded);
    if (!p) p = aligned_alloc(RT_ALIGN, rounded ? rounded : RT_ALIGN);
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
    size_t size = block_size(nbytes);
    if (!(size >= CACHE_MIN ? cache_keep(p, size) : small_keep(p, size))) free(p);
}

void *rt_malloc(size_t nbytes, const char *what) {
    void *p = injected_failure() ? NULL : malloc(nbytes ? nbytes : 1);
    if (!p) rt_error("%s: out of memory", what);
    return p;
}

/* Faulting the pages in as they are first written cost this VM about 0.6 ms
 * a MiB (1.5 MiB of packed weights: 1.0-1.1 ms to pack into fresh memory,
 * 0.2 into memory written before); populated by the kernel when mapped, 0.5
 * ms and then 0.2 to pack. */
void *rt_map(size_t nbytes) {
    void *p = injected_failure() ? MAP_FAILED
                                 : mmap(NULL, nbytes ? nbytes : 1, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void rt_unmap(void *p, size_t nbytes) {
    if (p) munmap(p, nbytes ? nbytes : 1);
}

void em_memory_stats_get(em_memory_stats *out) {
    if (!out) return;
    out->live_bytes = atomic_load(&live_bytes);
    out->peak_bytes = atomic_load(&peak_bytes);
    out->allocations = atomic_load(&n_allocs);
}

void em_memory_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
