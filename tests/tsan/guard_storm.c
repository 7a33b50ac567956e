/*
 * guard_storm.c — threads missing the guards of one compiled function at
 * once: 6 threads, each starting on a different shape of 6 and cycling
 * through all of them, with max_recompiles = 3, so several recompiles race
 * for the compile lock, the limit is reached while other threads are mid-miss,
 * and the shapes not compiled run eagerly from then on. A watcher thread
 * reads the statistics meanwhile (they may only grow). Four rounds, each with
 * a freshly compiled function (which shapes win the race varies).
 *
 * Afterwards: every result was right; calls == the calls made; compiles == 3;
 * the eager fallbacks are exactly the calls of the 3 shapes that were not
 * compiled (which 3 were is up to the race, so some 3 of the 6 must fit); every
 * fallback and every compile came from a guard miss.
 */
#include "tsan.h"

#include <string.h>

enum { THREADS = 6, SHAPES = 6, CALLS = 48, LIMIT = 3, ROUNDS = 4 };

static em_tensor *bias;

/* softmax(x + bias) * sigmoid(x): a reduction between generated kernels. */
static em_tensor *model(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_softmax(em_add(x, bias), -1), em_sigmoid(x)));
    em_scope_end();
    return y;
}

typedef struct shared {
    em_tensor *(*fast)(em_tensor *);
    em_tensor *x[SHAPES], *want[SHAPES];
    pthread_barrier_t start;
    atomic_bool stop;
} shared;

typedef struct worker {
    shared *s;
    int id;
    int calls[SHAPES]; /* calls made per shape */
} worker;

static void *caller(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    pthread_barrier_wait(&s->start);
    for (int i = 0; i < CALLS; i++) {
        int k = (w->id + i) % SHAPES;
        em_scope_begin();
        em_tensor *y = s->fast(s->x[k]);
        if (!y) WFAIL("thread %d, shape %d: NULL", w->id, k);
        else if (!tc_matches_eager(y, s->want[k])) WFAIL("thread %d, shape %d: differs from eager", w->id, k);
        em_scope_end();
        w->calls[k]++;
    }
    return NULL;
}

static void *watcher(void *arg) {
    shared *s = arg;
    pthread_barrier_wait(&s->start);
    em_stats last = {0};
    while (!atomic_load(&s->stop)) {
        em_stats st;
        if (em_compiled_stats((void *)s->fast, &st) != 0) {
            WFAIL("em_compiled_stats");
            break;
        }
        if (st.calls < last.calls || st.compiles < last.compiles || st.guard_misses < last.guard_misses ||
            st.eager_fallbacks < last.eager_fallbacks || st.compiles > LIMIT)
            WFAIL("statistics went back or past the limit: calls %llu compiles %llu",
                  (unsigned long long)st.calls, (unsigned long long)st.compiles);
        last = st;
    }
    return NULL;
}

static void storm_once(void) {
    static const int64_t rows[SHAPES] = {3, 4, 5, 7, 9, 12};
    shared s;
    memset(&s, 0, sizeof s);
    bias = em_randn(1, SH(24), 7);
    for (int k = 0; k < SHAPES; k++) {
        s.x[k] = em_randn(2, SH(rows[k], 24), 300 + (uint64_t)k);
        s.want[k] = model(s.x[k]);
        CHECK(s.x[k] && s.want[k], "eager, shape %d", k);
    }
    s.fast = em_compile((void *)model, "tensor(tensor)", &(em_options){.name = "storm", .max_recompiles = LIMIT});
    CHECK(s.fast, "em_compile");
    pthread_barrier_init(&s.start, NULL, THREADS + 1);

    worker w[THREADS];
    pthread_t t[THREADS], tw;
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = &s, w[i].id = i;
        CHECK(pthread_create(&t[i], NULL, caller, &w[i]) == 0, "pthread_create");
    }
    CHECK(pthread_create(&tw, NULL, watcher, &s) == 0, "pthread_create");
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    atomic_store(&s.stop, true);
    pthread_join(tw, NULL);

    int per_shape[SHAPES] = {0}, total = 0;
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < SHAPES; k++) per_shape[k] += w[i].calls[k], total += w[i].calls[k];
    em_stats st;
    CHECK(em_compiled_stats((void *)s.fast, &st) == 0, "stats");
    CHECK(st.calls == (uint64_t)total, "calls %llu, made %d", (unsigned long long)st.calls, total);
    CHECK(st.compiles == LIMIT, "compiles %llu, want %d", (unsigned long long)st.compiles, LIMIT);
    /* Some LIMIT shapes were compiled: the fallbacks are the calls of the others. */
    bool fits = false;
    for (int m = 0; m < (1 << SHAPES) && !fits; m++) {
        if (__builtin_popcount((unsigned)m) != LIMIT) continue;
        uint64_t eager = 0;
        for (int k = 0; k < SHAPES; k++)
            if (!(m & (1 << k))) eager += (uint64_t)per_shape[k];
        fits = eager == st.eager_fallbacks;
    }
    CHECK(fits, "eager fallbacks %llu are not the calls of any %d shapes not compiled",
          (unsigned long long)st.eager_fallbacks, SHAPES - LIMIT);
    CHECK(st.guard_misses >= st.eager_fallbacks + st.compiles,
          "guard misses %llu < fallbacks %llu + compiles %llu", (unsigned long long)st.guard_misses,
          (unsigned long long)st.eager_fallbacks, (unsigned long long)st.compiles);
    CHECK(st.guard_misses <= st.eager_fallbacks + (uint64_t)(LIMIT * THREADS),
          "guard misses %llu: at most one per thread per compiled shape besides the fallbacks",
          (unsigned long long)st.guard_misses);

    em_compiled_free((void *)s.fast);
    pthread_barrier_destroy(&s.start);
    for (int k = 0; k < SHAPES; k++) em_release(s.x[k]), em_release(s.want[k]);
    em_release(bias);
    bias = NULL;
}

void scenario_guard_storm(void) {
    for (int r = 0; r < ROUNDS; r++) storm_once(); /* which shapes win the race varies */
    ts_pass("guard_storm");
}
