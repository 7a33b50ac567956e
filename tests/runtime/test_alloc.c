/*
 * test_alloc.c — tensor storage: the cache of large freed blocks (alloc.c).
 *
 * A freed block of 128 KiB or more comes back for the next request of its
 * size; the cache stays within EMBER_ALLOC_CACHE_MB, oldest out first; a small
 * block (64 KiB at most) comes back to the thread that freed it, which keeps
 * eight and frees them when it exits; blocks in between are never kept;
 * EMBER_ALLOC_CACHE_MB=0 turns both off; em_memory_trim gives back the large
 * blocks and the calling thread's; live and peak bytes count tensors only; an injected
 * failure still fails with a block waiting; two threads allocating and freeing
 * at once never share a block. Each Criterion test runs in a fresh process, so
 * a test that sets EMBER_ALLOC_CACHE_MB before its first large allocation gets
 * that limit. Under AddressSanitizer (make SAN=1) the cache is off by design,
 * so the tests that need it check that it kept nothing instead.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ON 0
#else
#define CACHE_ON 1
#endif

#define MiB ((size_t)1 << 20)

Test(alloc, a_freed_large_block_serves_the_next_request_of_its_size) {
    void *p = rt_alloc(4 * MiB);
    cr_assert(p, "%s", em_last_error());
    memset(p, 7, 4 * MiB);
    rt_free(p, 4 * MiB);
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 4 * MiB : 0);
    void *q = rt_alloc(4 * MiB - 100); /* the same 64 KiB class */
    cr_assert(q);
    if (CACHE_ON) cr_expect_eq(q, p, "the cached block was not reused");
    cr_expect_eq(rt_alloc_cached_bytes(), 0);
    rt_free(q, 4 * MiB - 100);
    em_memory_trim();
}

Test(alloc, keeps_no_block_between_64_and_128_KiB) {
    void *p = rt_alloc(100 << 10);
    cr_assert(p);
    rt_free(p, 100 << 10);
    cr_expect_eq(rt_alloc_cached_bytes(), 0, "glibc's heap serves these without mmap");
}

Test(alloc, a_freed_block_of_512_KiB_serves_the_next_request_of_its_page_count) {
    /* what glibc mmaps: eager block's 128-768 KiB intermediates were faulted in
     * again on every call (832 faults) until the cache kept them */
    void *p = rt_alloc(512 << 10);
    cr_assert(p);
    rt_free(p, 512 << 10);
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 512 << 10 : 0);
    void *q = rt_alloc((512 << 10) - 1000); /* rounds up to the same 4 KiB page count */
    if (CACHE_ON) cr_expect_eq(q, p, "the cached block was not reused");
    rt_free(q, (512 << 10) - 1000);
    em_memory_trim();
}

Test(alloc, a_freed_small_block_serves_the_thread_s_next_request_of_its_size) {
    void *p = rt_alloc(1000);
    cr_assert(p, "%s", em_last_error());
    memset(p, 7, 1000);
    rt_free(p, 1000);
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 1024 : 0, "kept in the thread's slots");
    void *q = rt_alloc(990); /* the same 64-byte class */
    cr_assert(q);
    if (CACHE_ON) cr_expect_eq(q, p, "the kept block was not reused");
    cr_expect_eq(rt_alloc_cached_bytes(), 0);
    rt_free(q, 990);
    cr_expect_eq(em_memory_trim(), CACHE_ON ? 1024 : 0, "trim gives back the calling thread's small blocks");
    cr_expect_eq(rt_alloc_cached_bytes(), 0);
}

Test(alloc, keeps_at_most_eight_small_blocks_a_thread_dropping_the_oldest) {
    void *p[10];
    for (int i = 0; i < 10; i++) cr_assert((p[i] = rt_alloc(4096)));
    for (int i = 0; i < 10; i++) rt_free(p[i], 4096);
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 8 * 4096 : 0);
    void *q = rt_alloc(4096);
    if (CACHE_ON) cr_expect_eq(q, p[9], "the newest comes back first");
    rt_free(q, 4096);
    em_memory_trim();
}

static void *keep_three_small_blocks(void *arg) {
    (void)arg;
    for (size_t n = 100; n <= 300; n += 100) {
        void *p = rt_alloc(n);
        if (p) rt_free(p, n);
    }
    return (void *)rt_alloc_cached_bytes();
}

Test(alloc, a_thread_s_small_blocks_are_freed_when_it_exits) {
    pthread_t t;
    void *held = NULL;
    cr_assert_eq(pthread_create(&t, NULL, keep_three_small_blocks, NULL), 0);
    pthread_join(t, &held);
    cr_expect_eq((size_t)held, CACHE_ON ? 128 + 256 + 320 : 0, "the thread kept its blocks while it ran");
    cr_expect_eq(rt_alloc_cached_bytes(), 0, "and they went with it");
}

Test(alloc, counts_kept_blocks_neither_live_nor_peak) {
    em_memory_stats s0, s1;
    em_memory_stats_get(&s0);
    void *p = rt_alloc(8 * MiB);
    cr_assert(p);
    rt_free(p, 8 * MiB);
    em_memory_reset_peak();
    em_memory_stats_get(&s1);
    cr_expect_eq(s1.live_bytes, s0.live_bytes);
    cr_expect_eq(s1.peak_bytes, s0.live_bytes);
    em_memory_trim();
}

Test(alloc, stays_within_ember_alloc_cache_mb_dropping_the_oldest) {
    setenv("EMBER_ALLOC_CACHE_MB", "8", 1);
    void *p[4];
    for (int i = 0; i < 4; i++) cr_assert((p[i] = rt_alloc(3 * MiB)));
    for (int i = 0; i < 4; i++) {
        rt_free(p[i], 3 * MiB);
        cr_expect_leq(rt_alloc_cached_bytes(), 8 * MiB);
    }
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 6 * MiB : 0, "the two newest 3 MiB blocks fit in 8 MiB");
    void *big = rt_alloc(9 * MiB); /* larger than the cache: freed, not kept */
    cr_assert(big);
    rt_free(big, 9 * MiB);
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 6 * MiB : 0);
    cr_expect_eq(em_memory_trim(), CACHE_ON ? 6 * MiB : 0);
    cr_expect_eq(rt_alloc_cached_bytes(), 0);
    cr_expect_eq(em_memory_trim(), 0, "a second trim has nothing to give back");
}

Test(alloc, ember_alloc_cache_mb_0_turns_both_caches_off) {
    setenv("EMBER_ALLOC_CACHE_MB", "0", 1);
    void *p = rt_alloc(4 * MiB), *q = rt_alloc(1000);
    cr_assert(p && q);
    rt_free(p, 4 * MiB);
    rt_free(q, 1000);
    cr_expect_eq(rt_alloc_cached_bytes(), 0);
}

Test(alloc, a_malformed_ember_alloc_cache_mb_keeps_the_default) {
    setenv("EMBER_ALLOC_CACHE_MB", "lots", 1);
    void *p = rt_alloc(4 * MiB);
    cr_assert(p);
    rt_free(p, 4 * MiB);
    cr_expect_eq(rt_alloc_cached_bytes(), CACHE_ON ? 4 * MiB : 0);
    em_memory_trim();
}

Test(alloc, an_injected_failure_fails_even_with_a_block_waiting) {
    void *p = rt_alloc(2 * MiB);
    cr_assert(p);
    rt_free(p, 2 * MiB);
    rt_alloc_fail_after(1);
    cr_expect_null(rt_alloc(2 * MiB));
    cr_expect(strstr(em_last_error(), "out of memory"), "%s", em_last_error());
    void *q = rt_alloc(2 * MiB); /* the library keeps working */
    cr_expect(q);
    rt_free(q, 2 * MiB);
    em_memory_trim();
}

/* Eager ops through the public API: the big intermediates of one call are the
 * blocks of the next, with identical results. */
Test(alloc, an_eager_program_reuses_its_intermediates_and_gets_the_same_result) {
    em_tensor *x = em_randn(2, (int64_t[]){512, 1024}, 1);
    float first[8], again[8];
    for (int call = 0; call < 2; call++) {
        em_scope_begin();
        em_tensor *y = em_mul(em_gelu(em_add(x, x)), em_sigmoid(x));
        cr_assert(y, "%s", em_last_error());
        float out[8];
        cr_assert_eq(em_read(em_slice(em_reshape(y, 1, (int64_t[]){512 * 1024}), 0, 0, 8, 1), out, sizeof out), 0);
        memcpy(call ? again : first, out, sizeof out);
        em_scope_end();
        if (CACHE_ON) cr_expect_geq(rt_alloc_cached_bytes(), 2 * MiB, "the intermediates were kept");
    }
    cr_expect_arr_eq(first, again, sizeof first);
    em_release(x);
    em_memory_trim();
}

typedef struct worker_arg {
    unsigned char tag;
    int bad;
} worker_arg;

static void *churn(void *v) {
    worker_arg *w = v;
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)(1 + i % 3) * MiB;
        unsigned char *p = rt_alloc(n);
        if (!p) {
            w->bad++;
            continue;
        }
        memset(p, w->tag, n);
        for (size_t k = 0; k < n; k += 4096) w->bad += p[k] != w->tag;
        rt_free(p, n);
    }
    return NULL;
}

Test(alloc, two_threads_allocating_and_freeing_at_once_never_share_a_block) {
    pthread_t t[2];
    worker_arg w[2] = {{.tag = 0x11}, {.tag = 0x22}};
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&t[i], NULL, churn, &w[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    cr_expect_eq(w[0].bad + w[1].bad, 0);
    em_memory_trim();
}
