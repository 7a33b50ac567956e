/*
 * test_compile_threads.c — compiled functions called from several threads.
 *
 * A compiled function is one function pointer that any thread may call: the
 * cache hit path is lock-free, a miss takes the function's compile lock, and a
 * trace is private to the thread doing it. Here two threads call one compiled
 * function concurrently, many times, with the same shape and with different
 * shapes (so that misses, traces and hits of the same function overlap), while
 * a third thread compiles, calls and frees other functions, and a fourth reads
 * the statistics. Every result is compared bit for bit with an eager result
 * computed beforehand on the main thread; mismatches and failures are counted
 * by the workers and checked once they have joined. The statistics must add
 * up: every call counted, one compile per distinct guard however many threads
 * missed it at once, no eager fallback.
 *
 * Each worker opens a scope per iteration (scopes are per thread), so results
 * it does not release by hand are freed by its own scope; everything is
 * released at the end (the suite runs under ASan and LeakSanitizer).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "../util.h"
#include "../contract.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

enum { ITERS = 600, SHAPES = 3 };

static em_tensor *g_w, *g_b;

/* gelu(x @ w + b) * sigmoid(x @ w) */
static em_tensor *model(em_tensor *x) {
    em_scope_begin();
    em_tensor *h = em_matmul(x, g_w);
    em_tensor *y = em_keep(em_mul(em_gelu(em_add(h, g_b)), em_sigmoid(h)));
    em_scope_end();
    return y;
}

/* Other functions the third thread compiles meanwhile. */
static em_tensor *other_softmax(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_softmax(em_mul(x, x), -1));
    em_scope_end();
    return y;
}

static em_tensor *other_norm(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_linear(em_layer_norm(x, NULL, NULL, 1e-5), em_transpose(g_w, 0, 1), NULL));
    em_scope_end();
    return y;
}


/* ---- shared state ------------------------------------------------------------------------------ */

typedef struct shared {
    em_tensor *(*fast)(em_tensor *);
    em_tensor *x[SHAPES], *want[SHAPES]; /* inputs and their eager results */
    pthread_barrier_t start;
    atomic_int mismatches, failures, other_mismatches, compilers_done;
    atomic_bool stop;
} shared;

typedef struct worker {
    shared *s;
    int first, stride; /* shapes visited: first, first + stride, ... (mod SHAPES) */
    int calls;
} worker;

static void *caller(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    pthread_barrier_wait(&s->start);
    for (int i = 0; i < ITERS; i++) {
        int k = (w->first + i * w->stride) % SHAPES;
        em_scope_begin();
        em_tensor *y = s->fast(s->x[k]);
        if (!y) atomic_fetch_add(&s->failures, 1);
        else if (!tc_matches_eager(y, s->want[k])) atomic_fetch_add(&s->mismatches, 1);
        em_scope_end(); /* releases y */
        w->calls++;
    }
    return NULL;
}

static void *compiler(void *arg) {
    shared *s = arg;
    pthread_barrier_wait(&s->start);
    for (int i = 0; i < 12; i++) {
        em_tensor *(*fn)(em_tensor *) = i % 2 ? other_softmax : other_norm;
        em_tensor *(*f)(em_tensor *) =
            em_compile((void *)fn, "tensor(tensor)", &(em_options){.name = i % 2 ? "softmax" : "norm"});
        if (!f) {
            atomic_fetch_add(&s->failures, 1);
            continue;
        }
        em_tensor *x = em_randn(2, SH(3 + i, 16), 50 + (uint64_t)i);
        for (int j = 0; j < 3; j++) {
            em_tensor *want = fn(x), *got = f(x);
            if (!tc_matches_eager(got, want)) atomic_fetch_add(&s->other_mismatches, 1);
            em_release(want);
            em_release(got);
        }
        em_release(x);
        em_compiled_free((void *)f);
    }
    atomic_fetch_add(&s->compilers_done, 1);
    return NULL;
}

/* Reads the statistics of the shared function while it runs. */
static void *watcher(void *arg) {
    shared *s = arg;
    pthread_barrier_wait(&s->start);
    uint64_t last = 0;
    while (!atomic_load(&s->stop)) {
        em_stats st;
        if (em_compiled_stats((void *)s->fast, &st) != 0 || st.calls < last ||
            st.compiles > SHAPES || st.eager_fallbacks != 0)
            atomic_fetch_add(&s->failures, 1);
        last = st.calls;
    }
    return NULL;
}

static void shared_init(shared *s, int nthreads) {
    memset(s, 0, sizeof *s);
    g_w = tu_randn(2, SH(16, 24), 1);
    g_b = tu_randn(1, SH(24), 2);
    static const int64_t rows[SHAPES] = {8, 5, 33};
    for (int k = 0; k < SHAPES; k++) {
        s->x[k] = tu_randn(2, SH(rows[k], 16), 10 + (uint64_t)k);
        s->want[k] = model(s->x[k]);
        cr_assert(s->want[k], "%s", em_last_error());
    }
    s->fast = em_compile((void *)model, "tensor(tensor)", &(em_options){.name = "model"});
    cr_assert(s->fast, "%s", em_last_error());
    pthread_barrier_init(&s->start, NULL, (unsigned)nthreads);
}

static void shared_fini(shared *s) {
    em_compiled_free((void *)s->fast);
    for (int k = 0; k < SHAPES; k++) {
        em_release(s->x[k]);
        em_release(s->want[k]);
    }
    pthread_barrier_destroy(&s->start);
    em_release(g_w);
    em_release(g_b);
}

/* ---- tests ---------------------------------------------------------------------------------------- */

Test(compile_threads, two_threads_call_one_function_while_a_third_compiles_others) {
    shared s;
    shared_init(&s, 4);
    /* Thread A stays on shape 0; thread B cycles through all shapes, so its
     * misses and traces overlap A's hits. */
    worker a = {&s, 0, 0, 0}, b = {&s, 0, 1, 0};
    pthread_t ta, tb, tc, tw;
    pthread_create(&ta, NULL, caller, &a);
    pthread_create(&tb, NULL, caller, &b);
    pthread_create(&tc, NULL, compiler, &s);
    pthread_create(&tw, NULL, watcher, &s);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    atomic_store(&s.stop, true);
    pthread_join(tw, NULL);

    cr_expect_eq(atomic_load(&s.failures), 0, "failed calls: %s", em_last_error());
    cr_expect_eq(atomic_load(&s.mismatches), 0, "compiled results that differ from eager");
    cr_expect_eq(atomic_load(&s.other_mismatches), 0, "the other functions differ from eager");
    cr_expect_eq(atomic_load(&s.compilers_done), 1);
    em_stats st;
    cr_assert_eq(em_compiled_stats((void *)s.fast, &st), 0);
    cr_expect_eq(st.calls, (uint64_t)(a.calls + b.calls), "calls %llu, want %d",
                 (unsigned long long)st.calls, a.calls + b.calls);
    cr_expect_eq(st.calls, 2 * ITERS);
    cr_expect_eq(st.compiles, SHAPES, "one trace per shape, not per thread: %llu",
                 (unsigned long long)st.compiles);
    cr_expect_geq(st.guard_misses, SHAPES);
    cr_expect_leq(st.guard_misses, SHAPES + 1, "only a simultaneous miss may count twice");
    cr_expect_eq(st.eager_fallbacks, 0);
    shared_fini(&s);
}

Test(compile_threads, threads_missing_the_same_guard_at_once_trace_it_once) {
    enum { N = 4 };
    shared s;
    shared_init(&s, N + 1);
    worker w[N];
    pthread_t t[N], tw;
    for (int i = 0; i < N; i++) {
        w[i] = (worker){&s, i % SHAPES, 1, 0}; /* all start on a miss, at the same moment */
        pthread_create(&t[i], NULL, caller, &w[i]);
    }
    pthread_create(&tw, NULL, watcher, &s);
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        total += w[i].calls;
    }
    atomic_store(&s.stop, true);
    pthread_join(tw, NULL);
    cr_expect_eq(atomic_load(&s.failures), 0);
    cr_expect_eq(atomic_load(&s.mismatches), 0);
    em_stats st;
    cr_assert_eq(em_compiled_stats((void *)s.fast, &st), 0);
    cr_expect_eq(st.calls, (uint64_t)total);
    cr_expect_eq(st.compiles, SHAPES, "compiles %llu", (unsigned long long)st.compiles);
    cr_expect_leq(st.guard_misses, (uint64_t)(SHAPES * N));
    cr_expect_eq(st.eager_fallbacks, 0);
    shared_fini(&s);
}

/* With max_recompiles = 1 the shapes not compiled run eagerly from every thread. */
Test(compile_threads, threads_past_the_recompile_limit_run_eagerly_with_correct_results) {
    shared s;
    shared_init(&s, 2);
    em_compiled_free((void *)s.fast);
    s.fast = em_compile((void *)model, "tensor(tensor)", &(em_options){.max_recompiles = 1});
    cr_assert(s.fast);
    worker a = {&s, 0, 1, 0}, b = {&s, 1, 1, 0}; /* both visit every shape ITERS/SHAPES times */
    pthread_t ta, tb;
    pthread_create(&ta, NULL, caller, &a);
    pthread_create(&tb, NULL, caller, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_expect_eq(atomic_load(&s.failures), 0);
    cr_expect_eq(atomic_load(&s.mismatches), 0);
    em_stats st;
    cr_assert_eq(em_compiled_stats((void *)s.fast, &st), 0);
    cr_expect_eq(st.calls, 2 * ITERS);
    cr_expect_eq(st.compiles, 1);
    cr_expect_eq(st.eager_fallbacks, 2 * ITERS * (SHAPES - 1) / SHAPES,
                 "every call of the two shapes not compiled runs eagerly: %llu",
                 (unsigned long long)st.eager_fallbacks);
    shared_fini(&s);
}
