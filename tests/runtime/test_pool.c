/*
 * test_pool.c — the thread pool and ember used from several threads.
 *
 * rt_parallel_for must cover [0, n) exactly once in pieces that start at
 * multiples of the grain and are one grain long (the last may be shorter),
 * for n = 0, n < grain, n not a multiple of the grain and for 1 or 2 threads,
 * and so must rt_parallel_for_hot, whose workers spin between jobs;
 * a call made from inside a piece runs inline on that thread; a job ends once
 * its pieces have run even when no worker comes (rt_pool_hold_workers), and
 * workers that come late run nothing of it; rt_pool_quiet ends the workers'
 * spin without losing the next job. Above it: two
 * user threads running ops at the same time both get correct results and
 * their own error messages, em_set_threads changes em_get_threads, random
 * tensors do not depend on the thread count, and the pool needs no
 * EMBER_THREADS (each Criterion test runs in a fresh process, so the
 * environment is read for the first time inside the test).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

/* ---- coverage and piece boundaries -------------------------------------------------- */

typedef struct cover {
    atomic_int *hits;      /* per index */
    int64_t n, grain;
    atomic_int bad_pieces; /* pieces not aligned to the grain or of the wrong length */
    atomic_int calls;
} cover;

static void cover_fn(void *vctx, int64_t b, int64_t e) {
    cover *c = vctx;
    atomic_fetch_add(&c->calls, 1);
    bool ok = b >= 0 && e <= c->n && b < e && b % c->grain == 0 &&
              (e - b == c->grain || e == c->n);
    if (!ok) atomic_fetch_add(&c->bad_pieces, 1);
    for (int64_t i = b; i < e && i >= 0 && i < c->n; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void (*parallel_for)(int64_t, int64_t, rt_range_fn, void *) = rt_parallel_for;

static void check_cover(int64_t n, int64_t grain) {
    cover c = {.n = n, .grain = grain < 1 ? 1 : grain};
    c.hits = calloc((size_t)(n ? n : 1), sizeof *c.hits);
    parallel_for(n, grain, cover_fn, &c);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&c.hits[i]), 1, "n=%lld grain=%lld: index %lld ran %d times",
                     (long long)n, (long long)grain, (long long)i, atomic_load(&c.hits[i]));
    cr_expect_eq(atomic_load(&c.bad_pieces), 0, "n=%lld grain=%lld: misaligned pieces",
                 (long long)n, (long long)grain);
    int64_t pieces = n > 0 ? (n + c.grain - 1) / c.grain : 0;
    cr_expect_eq(atomic_load(&c.calls), pieces, "n=%lld grain=%lld: %d calls, want %lld",
                 (long long)n, (long long)grain, atomic_load(&c.calls), (long long)pieces);
    free(c.hits);
}

static void check_all_sizes(void) {
    const int64_t grains[] = {1, 7, 64, 1000, 0, -5};
    for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) {
        int64_t gr = grains[g] < 1 ? 1 : grains[g];
        const int64_t ns[] = {0, 1, gr - 1, gr, gr + 1, 10 * gr, 10 * gr + 3, 100003};
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) check_cover(ns[k], grains[g]);
    }
}

Test(pool, covers_every_index_once_in_grain_aligned_pieces_with_two_threads) {
    cr_assert_eq(em_set_threads(2), 0);
    check_all_sizes();
}

Test(pool, covers_every_index_once_in_grain_aligned_pieces_with_one_thread) {
    cr_assert_eq(em_set_threads(1), 0);
    check_all_sizes();
}

Test(pool, covers_every_index_once_with_more_threads_than_cores) {
    cr_assert_eq(em_set_threads(5), 0);
    check_all_sizes();
}

/* rt_parallel_for_hot (a compiled program's steps): the same pieces, back to
 * back, mixed with plain jobs, and after the workers' spin has run out (they
 * sleep and must still wake for the next job). */
static void check_hot(void) {
    parallel_for = rt_parallel_for_hot;
    check_all_sizes();
    for (int round = 0; round < 50; round++) {
        parallel_for = round % 3 ? rt_parallel_for_hot : rt_parallel_for;
        check_cover(1000 + round, 7);
        if (round % 10 == 9) usleep(2000); /* past EMBER_SPIN_US */
    }
    parallel_for = rt_parallel_for;
}

Test(pool, hot_jobs_cover_every_index_once_back_to_back_and_after_the_spin_with_two_threads) {
    cr_assert_eq(em_set_threads(2), 0);
    check_hot();
}

Test(pool, hot_jobs_cover_every_index_once_with_more_threads_than_cores) {
    cr_assert_eq(em_set_threads(5), 0);
    check_hot();
}

Test(pool, hot_jobs_work_with_spinning_turned_off_by_ember_spin_us_0) {
    setenv("EMBER_SPIN_US", "0", 1); /* read when the pool starts, in this fresh process */
    cr_assert_eq(em_set_threads(2), 0);
    check_hot();
}

Test(pool, a_malformed_ember_spin_us_keeps_the_default_and_jobs_still_run) {
    setenv("EMBER_SPIN_US", "fast", 1);
    cr_assert_eq(em_set_threads(2), 0);
    check_hot();
}

Test(pool, negative_n_runs_nothing) {
    cover c = {.n = 0, .grain = 1, .hits = NULL};
    rt_parallel_for(-10, 4, cover_fn, &c);
    cr_expect_eq(atomic_load(&c.calls), 0);
}

/* ---- threads that run pieces ----------------------------------------------------------- */

typedef struct who {
    pthread_t caller;
    atomic_int on_caller, elsewhere;
    atomic_int nested_moved; /* inner pieces that ran on another thread than their outer piece */
    atomic_int nested_hits[64 * 16];
} who;

typedef struct inner { who *w; pthread_t outer; int64_t base; } inner;

static void inner_fn(void *vctx, int64_t b, int64_t e) {
    inner *in = vctx;
    if (!pthread_equal(pthread_self(), in->outer)) atomic_fetch_add(&in->w->nested_moved, 1);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&in->w->nested_hits[in->base + i], 1);
}

static void outer_fn(void *vctx, int64_t b, int64_t e) {
    who *w = vctx;
    bool mine = pthread_equal(pthread_self(), w->caller);
    atomic_fetch_add(mine ? &w->on_caller : &w->elsewhere, 1);
    usleep(2000); /* slow pieces so that the worker surely takes some */
    for (int64_t p = b; p < e; p++) {
        inner in = {w, pthread_self(), p * 16};
        rt_parallel_for(16, 1, inner_fn, &in);
    }
}

Test(pool, a_call_from_inside_a_piece_runs_inline_on_that_thread) {
    cr_assert_eq(em_set_threads(2), 0);
    who *w = calloc(1, sizeof *w);
    w->caller = pthread_self();
    rt_parallel_for(64, 1, outer_fn, w);
    cr_expect_eq(atomic_load(&w->on_caller) + atomic_load(&w->elsewhere), 64);
    cr_expect_gt(atomic_load(&w->elsewhere), 0, "no piece ran on a worker");
    cr_expect_gt(atomic_load(&w->on_caller), 0, "the caller did not take part");
    cr_expect_eq(atomic_load(&w->nested_moved), 0, "a nested call left its thread");
    for (int i = 0; i < 64 * 16; i++) cr_assert_eq(atomic_load(&w->nested_hits[i]), 1, "index %d", i);
    free(w);
}

Test(pool, runs_inline_when_n_fits_in_one_grain_or_one_thread_is_set) {
    cr_assert_eq(em_set_threads(2), 0);
    who *w = calloc(1, sizeof *w);
    w->caller = pthread_self();
    rt_parallel_for(8, 8, outer_fn, w);
    cr_expect_eq(atomic_load(&w->elsewhere), 0);
    cr_assert_eq(em_set_threads(1), 0);
    rt_parallel_for(16, 1, outer_fn, w);
    cr_expect_eq(atomic_load(&w->elsewhere), 0);
    cr_expect_eq(atomic_load(&w->on_caller), 17);
    free(w);
}

/* Regression: a worker created by a resize used to read the job generation only
 * when it first ran, so a job published before that slept through it and the
 * caller waited for the worker forever. */
Test(pool, a_job_published_right_after_a_resize_reaches_the_new_workers, .timeout = 60) {
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(em_set_threads(1 + i % 2), 0);
        cr_assert_eq(em_set_threads(2 + i % 2), 0);
        check_cover(64, 1);
    }
}

/* A worker that is slow to run (its core halted, or taken by the host) must
 * not hold a job up once the caller has run every piece: the job ends when its
 * pieces have run. With the workers held, every job is the caller's alone; a
 * caller that waited for the workers to check in, as the pool once did, hangs
 * here (the timeout fails the test). Released, the workers wake to jobs that
 * are over and must run no piece of them (their contexts are gone), and then
 * take pieces of new jobs again. */
Test(pool, a_job_ends_when_its_pieces_have_run_even_if_no_worker_comes, .timeout = 60) {
    cr_assert_eq(em_set_threads(2), 0);
    rt_pool_hold_workers(true);
    enum { JOBS = 40 };
    cover *done = calloc(JOBS, sizeof *done);
    for (int j = 0; j < JOBS; j++) {
        done[j] = (cover){.n = 1000 + j, .grain = 7};
        done[j].hits = calloc((size_t)done[j].n, sizeof *done[j].hits);
        (j % 2 ? rt_parallel_for_hot : rt_parallel_for)(done[j].n, 7, cover_fn, &done[j]);
        for (int64_t i = 0; i < done[j].n; i++)
            cr_assert_eq(atomic_load(&done[j].hits[i]), 1, "job %d: index %lld", j, (long long)i);
    }
    who *w = calloc(1, sizeof *w);
    w->caller = pthread_self();
    rt_parallel_for(8, 1, outer_fn, w);
    cr_expect_eq(atomic_load(&w->elsewhere), 0, "a held worker ran a piece");
    rt_pool_hold_workers(false);
    usleep(20000); /* the workers wake, find the jobs over */
    for (int j = 0; j < JOBS; j++) {
        int64_t pieces = (done[j].n + 6) / 7;
        cr_expect_eq(atomic_load(&done[j].calls), pieces, "job %d ran pieces after it ended", j);
        free(done[j].hits);
    }
    free(done);
    memset(w, 0, sizeof *w);
    w->caller = pthread_self();
    rt_parallel_for(64, 1, outer_fn, w);
    cr_expect_gt(atomic_load(&w->elsewhere), 0, "released workers take pieces again");
    cr_expect_eq(atomic_load(&w->on_caller) + atomic_load(&w->elsewhere), 64);
    free(w);
}

Test(pool, quiet_sends_spinning_workers_to_sleep_and_the_next_hot_job_still_runs) {
    cr_assert_eq(em_set_threads(2), 0);
    parallel_for = rt_parallel_for_hot;
    for (int round = 0; round < 50; round++) {
        check_cover(1000 + round, 7); /* the workers spin after it */
        if (round % 2) rt_pool_quiet(); /* as blas.c does before OpenBLAS runs */
    }
    parallel_for = rt_parallel_for;
    who *w = calloc(1, sizeof *w);
    w->caller = pthread_self();
    rt_pool_quiet();
    rt_parallel_for_hot(64, 1, outer_fn, w);
    cr_expect_gt(atomic_load(&w->elsewhere), 0, "a worker woke from its quiet sleep");
    free(w);
}

/* ---- thread count ----------------------------------------------------------------------- */

Test(pool, set_threads_changes_get_threads) {
    const int counts[] = {1, 2, 3, 1, 4, 2};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        cr_assert_eq(em_set_threads(counts[i]), 0, "%s", em_last_error());
        cr_expect_eq(em_get_threads(), counts[i]);
        check_cover(1000, 10); /* the resized pool works */
    }
}

Test(pool, needs_no_ember_threads_variable) {
    unsetenv("EMBER_THREADS");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_expect_eq(em_get_threads(), cpus < 1 ? 1 : cpus > 1024 ? 1024 : (int)cpus);
    check_cover(5000, 3);
}

Test(pool, ignores_an_ember_threads_value_that_is_not_a_count) {
    setenv("EMBER_THREADS", "two", 1);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_expect_eq(em_get_threads(), cpus < 1 ? 1 : cpus > 1024 ? 1024 : (int)cpus);
}

Test(pool, honours_ember_threads_when_set) {
    setenv("EMBER_THREADS", "3", 1);
    cr_expect_eq(em_get_threads(), 3);
    check_cover(5000, 3);
}

/* ---- results independent of the thread count -------------------------------------------- */

static void *random_bytes(bool normal, int threads, int64_t n) {
    cr_assert_eq(em_set_threads(threads), 0);
    em_tensor *t = normal ? em_randn(1, &n, 99) : em_rand(1, &n, 99);
    cr_assert(t, "%s", em_last_error());
    void *p = malloc((size_t)n * 4);
    cr_assert_eq(em_read(t, p, (size_t)n * 4), 0);
    em_release(t);
    return p;
}

Test(pool, random_tensors_are_identical_for_one_and_two_threads) {
    const int64_t n = (1 << 18) + 5; /* many pieces of the generator's grain */
    for (int normal = 0; normal <= 1; normal++) {
        void *one = random_bytes(normal, 1, n), *two = random_bytes(normal, 2, n);
        cr_expect_eq(memcmp(one, two, (size_t)n * 4), 0, "normal=%d differs", normal);
        free(one), free(two);
    }
}

/* ---- user threads -------------------------------------------------------------------------- */

typedef struct job {
    int id;
    int failures;
    char error[128];
} job;

/* Big enough that kernels go to the pool; each thread checks its own results. */
static void *user_thread(void *arg) {
    job *j = arg;
    const int64_t n = 1 << 17;
    for (int it = 0; it < 20; it++) {
        em_scope_begin();
        double v = j->id * 100 + it;
        em_tensor *a = em_full(EM_F32, 2, SH(256, n / 256), v);
        em_tensor *b = em_rand(2, SH(256, n / 256), (uint64_t)it);
        em_tensor *s = em_sum(em_sum(em_sub(em_add(a, b), b), 1, 0), 0, 0);
        double got = em_item(s);
        if (!(fabs(got - v * (double)n) <= 1e-4 * v * (double)n + 1)) j->failures++;
        em_tensor *m = em_matmul(em_full(EM_F32, 2, SH(64, 32), 1), em_full(EM_F32, 2, SH(32, 16), v));
        float out[64 * 16];
        if (!m || em_read(m, out, sizeof out) != 0 || out[0] != (float)(32 * v) ||
            out[64 * 16 - 1] != (float)(32 * v))
            j->failures++;
        /* errors are per thread: this thread's message is its own */
        em_clear_error();
        em_tensor *bad = em_add(em_zeros(EM_F32, 1, SH(j->id + 2)), NULL);
        snprintf(j->error, sizeof j->error, "%s", em_last_error());
        if (bad) j->failures++;
        em_scope_end();
    }
    return NULL;
}

Test(pool, two_user_threads_running_ops_at_once_get_correct_results) {
    cr_assert_eq(em_set_threads(2), 0);
    job jobs[2] = {{.id = 1}, {.id = 2}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, user_thread, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(jobs[i].failures, 0, "thread %d: %d wrong results", i, jobs[i].failures);
        cr_expect_str_eq(jobs[i].error, "em_add: tensor argument 2 is NULL");
    }
    cr_expect_str_eq(em_last_error(), "", "another thread's error showed up here");
}
