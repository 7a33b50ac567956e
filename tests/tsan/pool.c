/*
 * pool.c — the runtime's thread pool running generated kernels. With
 * em_set_threads(2), a compiled elementwise chain on [512,1024] f32 (big
 * enough that its generated kernel is split over the pool in row pieces) is
 * called from 2 threads at once: one submits its job to the pool, the other
 * runs its pieces inline (one job at a time). Then the same again while a
 * third thread resizes the pool (em_set_threads 1 and 2 in turn), and while
 * a third thread holds the workers back and lets them go in turn (the
 * runtime's test hook rt_pool_hold_workers: jobs end without them, and they
 * wake to jobs that are over). Every result must equal eager's, byte for byte.
 */
#include "tsan.h"

#include <string.h>
#include <time.h>

enum { CALLERS = 2, CALLS = 12, RESIZES = 6 };

void rt_pool_hold_workers(bool on); /* runtime/runtime.h's test hook */

/* silu(x) * exp(-|x|): elementwise only, one generated kernel over 512 rows. */
static em_tensor *big_chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_silu(x), em_exp(em_neg(em_abs(x)))));
    em_scope_end();
    return y;
}

typedef struct shared {
    em_tensor *(*fast)(em_tensor *);
    em_tensor *x[2], *want[2];
    pthread_barrier_t start;
    atomic_int running; /* callers not finished */
} shared;

typedef struct worker {
    shared *s;
    int id;
} worker;

static void *caller(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    pthread_barrier_wait(&s->start);
    for (int i = 0; i < CALLS; i++) {
        int k = (i + w->id) % 2;
        em_tensor *y = s->fast(s->x[k]);
        if (!y) WFAIL("caller %d, call %d: NULL", w->id, i);
        else if (!tc_matches_eager(y, s->want[k])) WFAIL("caller %d, call %d: differs from eager", w->id, i);
        em_release(y);
    }
    atomic_fetch_sub(&s->running, 1);
    return NULL;
}

static void *resizer(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    pthread_barrier_wait(&s->start);
    for (int i = 0; i < RESIZES || atomic_load(&s->running) > 0; i++) {
        int n = i % 2 ? 2 : 1;
        if (em_set_threads(n) != 0) WFAIL("em_set_threads(%d)", n);
        if (i >= 4 * RESIZES) break; /* the callers are slow: enough resizing */
    }
    if (em_set_threads(2) != 0) WFAIL("em_set_threads(2)");
    return NULL;
}

static void *holder(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    pthread_barrier_wait(&s->start);
    for (int i = 0; atomic_load(&s->running) > 0; i++) {
        rt_pool_hold_workers(i % 2 == 0);
        struct timespec ts = {0, 300000}; /* 0.3 ms */
        nanosleep(&ts, NULL);
    }
    rt_pool_hold_workers(false);
    return NULL;
}

static void run(shared *s, void *(*third)(void *)) {
    int n = CALLERS + (third ? 1 : 0);
    pthread_barrier_init(&s->start, NULL, (unsigned)n);
    atomic_store(&s->running, CALLERS);
    worker w[CALLERS + 1];
    pthread_t t[CALLERS + 1];
    for (int i = 0; i < n; i++) {
        w[i] = (worker){s, i};
        CHECK(pthread_create(&t[i], NULL, i < CALLERS ? caller : third, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&s->start);
}

void scenario_pool(void) {
    int before = em_get_threads();
    CHECK(em_set_threads(2) == 0 && em_get_threads() == 2, "em_set_threads(2)");
    shared s;
    memset(&s, 0, sizeof s);
    for (int k = 0; k < 2; k++) {
        s.x[k] = em_randn(2, SH(512, 1024), 400 + (uint64_t)k);
        s.want[k] = big_chain(s.x[k]);
        CHECK(s.x[k] && s.want[k], "eager");
    }
    s.fast = em_compile((void *)big_chain, "tensor(tensor)", &(em_options){.name = "big_chain"});
    CHECK(s.fast, "em_compile");

    run(&s, NULL);
    em_stats st;
    CHECK(em_compiled_stats((void *)s.fast, &st) == 0, "stats");
    CHECK(st.calls == CALLERS * CALLS && st.compiles == 1 && st.eager_fallbacks == 0,
          "calls %llu compiles %llu fallbacks %llu", (unsigned long long)st.calls,
          (unsigned long long)st.compiles, (unsigned long long)st.eager_fallbacks);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f && em_dump((void *)s.fast, "llvm", f) == 0, "em_dump llvm");
    fclose(f);
    CHECK(strstr(text, "define"), "no generated code:\n%s", text);
    free(text);
    ts_pass("pool_two_callers_split_generated_kernels");

    run(&s, resizer);
    CHECK(em_get_threads() == 2, "threads %d", em_get_threads());
    CHECK(em_compiled_stats((void *)s.fast, &st) == 0 && st.calls == 2 * CALLERS * CALLS && st.compiles == 1,
          "calls %llu compiles %llu", (unsigned long long)st.calls, (unsigned long long)st.compiles);
    ts_pass("pool_resized_while_generated_kernels_run");

    run(&s, holder);
    CHECK(em_compiled_stats((void *)s.fast, &st) == 0 && st.calls == 3 * CALLERS * CALLS && st.compiles == 1,
          "calls %llu compiles %llu", (unsigned long long)st.calls, (unsigned long long)st.compiles);
    ts_pass("pool_workers_held_back_and_let_go_while_generated_kernels_run");

    em_compiled_free((void *)s.fast);
    for (int k = 0; k < 2; k++) em_release(s.x[k]), em_release(s.want[k]);
    CHECK(em_set_threads(before) == 0, "em_set_threads(%d)", before);
}
