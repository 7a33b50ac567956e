/*
 * cache.c — the object cache shared by threads. EMBER_CACHE_DIR points at a
 * fresh folder (set while no other thread runs ember code); then 4 threads,
 * in 3 rounds that start together, each compile the same model, call it,
 * compare with eager and free it. Identical code is one unit shared by key
 * while any function holding it is alive, and is compiled once: the first
 * compile misses and stores the only entry, and a compile after every holder
 * freed it loads it from the folder. At the end the folder holds that one
 * *.o file and no temporary, and nothing failed to store. The first round's
 * threads may each miss once: with no unit live, keyed.c reads the folder
 * before it takes its lock (CI once counted 2 misses for the round; the test
 * had wanted exactly 1); a thread whose read missed reads again under the
 * lock if an entry was stored since, so the code is still compiled once.
 */
#include "tsan.h"
#include "codegen.h"

#include <string.h>

enum { THREADS = 4, ROUNDS = 3 };

/* tanh(x * a + b), a and b broadcast over rows: one generated kernel. */
static em_tensor *affine_tanh(em_tensor *x, em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_add(em_mul(x, a), b)));
    em_scope_end();
    return y;
}

typedef em_tensor *(*model3)(em_tensor *, em_tensor *, em_tensor *);

typedef struct shared {
    em_tensor *x, *a, *b, *want;
    pthread_barrier_t round;
} shared;

typedef struct worker {
    shared *s;
    int id;
} worker;

static void *compiler(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(&s->round);
        model3 f = (model3)em_compile((void *)affine_tanh, "tensor(tensor, tensor, tensor)",
                                      &(em_options){.name = "affine_tanh"});
        if (!f) {
            WFAIL("thread %d, round %d: em_compile", w->id, r);
            continue;
        }
        for (int j = 0; j < 2; j++) {
            em_tensor *y = f(s->x, s->a, s->b);
            if (!y) WFAIL("thread %d, round %d: NULL", w->id, r);
            else if (!tc_matches_eager(y, s->want)) WFAIL("thread %d, round %d: differs from eager", w->id, r);
            em_release(y);
        }
        em_compiled_free((void *)f);
    }
    return NULL;
}

void scenario_cache(void) {
    const char *old = getenv("EMBER_CACHE_DIR");
    char *saved = old ? strdup(old) : NULL;
    char dir[512];
    ts_tmpdir(dir, sizeof dir, "shared-cache");
    CHECK(setenv("EMBER_CACHE_DIR", dir, 1) == 0, "setenv");

    shared s;
    memset(&s, 0, sizeof s);
    s.x = em_randn(2, SH(64, 256), 500);
    s.a = em_randn(1, SH(256), 501);
    s.b = em_randn(1, SH(256), 502);
    s.want = s.x && s.a && s.b ? affine_tanh(s.x, s.a, s.b) : NULL;
    CHECK(s.want, "eager");
    pthread_barrier_init(&s.round, NULL, THREADS);
    cg_cache_stats c0, c1;
    cg_cache_stats_get(&c0);

    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) w[i] = (worker){&s, i};
    ts_run(THREADS, compiler, w, sizeof w[0]);

    cg_cache_stats_get(&c1);
    CHECK(c1.store_failures == c0.store_failures, "store failures +%ld", c1.store_failures - c0.store_failures);
    CHECK(c1.stores - c0.stores == 1, "stores +%ld: identical code is compiled and stored once",
          c1.stores - c0.stores);
    CHECK(c1.misses - c0.misses >= 1 && c1.misses - c0.misses <= THREADS,
          "misses +%ld: the first round's reads, at most one a thread", c1.misses - c0.misses);
    CHECK(c1.rejected == c0.rejected, "rejected +%ld", c1.rejected - c0.rejected);
    CHECK(ts_count_files(dir, ".o") == 1 && ts_count_files(dir, "") == 1,
          "%d *.o files, %d entries in %s (one entry, no temporary)", ts_count_files(dir, ".o"),
          ts_count_files(dir, ""), dir);

    /* Every holder freed it: a new compile loads it from the folder. */
    model3 f = (model3)em_compile((void *)affine_tanh, "tensor(tensor, tensor, tensor)", NULL);
    CHECK(f, "em_compile");
    em_tensor *y = f(s.x, s.a, s.b);
    CHECK(tc_matches_eager(y, s.want), "after the threads");
    em_release(y);
    em_compiled_free((void *)f);
    cg_cache_stats c2;
    cg_cache_stats_get(&c2);
    CHECK(c2.hits - c1.hits == 1 && c2.stores == c1.stores, "hits +%ld stores +%ld", c2.hits - c1.hits,
          c2.stores - c1.stores);

    pthread_barrier_destroy(&s.round);
    em_release(s.x), em_release(s.a), em_release(s.b), em_release(s.want);
    tu_remove_tree(dir);
    if (saved) setenv("EMBER_CACHE_DIR", saved, 1);
    else unsetenv("EMBER_CACHE_DIR");
    free(saved);
    ts_pass("object_cache_shared_by_threads");
}
