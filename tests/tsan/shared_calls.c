/*
 * shared_calls.c — one compiled function called by 8 threads at once (200
 * calls each, two inputs of the same shape alternating, so every call after
 * the first is a guard hit running the same program with new data) while 2
 * more threads compile, call and free other functions in a loop. Run for two
 * models: an elementwise chain on [64,256] f32 (one generated kernel) and a
 * small MLP (linear, gelu, linear: generated GEMMs with their epilogues), and
 * a linear of 128 x 256 x 192 (with AMX: two kernels picked per piece; its
 * constant weight packed once, for the unit or as the FMA kernel's panels, by
 * whichever second call gets there). The
 * statistics must add up: every call counted, one compile, no fallback.
 */
#include "tsan.h"

#include <string.h>

enum { CALLERS = 8, CALLS = 200, CHURNERS = 2, CHURN_ROUNDS = 6, NOTHERS = 3 };

static em_tensor *w1, *b1, *w2, *b2, *w3;

/* gelu(x + x) * sigmoid(x): elementwise only, one generated kernel. */
static em_tensor *chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_gelu(em_add(x, x)), em_sigmoid(x)));
    em_scope_end();
    return y;
}

/* linear(gelu(linear(x, w1, b1)), w2, b2) on globals. */
static em_tensor *mlp(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_linear(em_gelu(em_linear(x, w1, b1)), w2, b2));
    em_scope_end();
    return y;
}

/* linear(x, w3): where the CPU has AMX, a GEMM with two kernels whose pieces
 * each pick one by their core's times (codegen/pick.c), and pack A together. */
static em_tensor *wide(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_linear(x, w3, NULL));
    em_scope_end();
    return y;
}

/* What the churning threads compile meanwhile. */
static em_tensor *other_softmax(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_softmax(em_mul(x, x), -1));
    em_scope_end();
    return y;
}

static em_tensor *other_tanh(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_sub(em_mul(x, x), x)));
    em_scope_end();
    return y;
}

static em_tensor *other_norm(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_relu(em_layer_norm(em_exp(x), NULL, NULL, 1e-5)));
    em_scope_end();
    return y;
}

typedef em_tensor *(*model1)(em_tensor *);

static const model1 others[NOTHERS] = {other_softmax, other_tanh, other_norm};
static const char *const other_names[NOTHERS] = {"other_softmax", "other_tanh", "other_norm"};

typedef struct shared {
    model1 fast;
    em_tensor *x[2], *want[2];
    em_tensor *ox[NOTHERS], *owant[NOTHERS]; /* the churners' inputs and eager results */
    pthread_barrier_t start;
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
        em_scope_begin();
        em_tensor *y = s->fast(s->x[k]);
        if (!y) WFAIL("caller %d, call %d: NULL", w->id, i);
        else if (!tc_matches_eager(y, s->want[k])) WFAIL("caller %d, call %d: differs from eager", w->id, i);
        em_scope_end();
    }
    return NULL;
}

static void *churner(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    pthread_barrier_wait(&s->start);
    for (int r = 0; r < CHURN_ROUNDS; r++) {
        int k = (r + w->id) % NOTHERS;
        model1 f = (model1)em_compile((void *)others[k], "tensor(tensor)", &(em_options){.name = other_names[k]});
        if (!f) {
            WFAIL("churner %d: em_compile %s", w->id, other_names[k]);
            continue;
        }
        for (int j = 0; j < 3; j++) {
            em_tensor *y = f(s->ox[k]);
            if (!y) WFAIL("churner %d: %s returned NULL", w->id, other_names[k]);
            else if (!tc_matches_eager(y, s->owant[k])) WFAIL("churner %d: %s differs from eager", w->id, other_names[k]);
            em_release(y);
        }
        em_stats st;
        if (em_compiled_stats((void *)f, &st) != 0 || st.calls != 3 || st.compiles != 1 || st.eager_fallbacks != 0)
            WFAIL("churner %d: %s stats: calls %llu compiles %llu fallbacks %llu", w->id, other_names[k],
                  (unsigned long long)st.calls, (unsigned long long)st.compiles,
                  (unsigned long long)st.eager_fallbacks);
        em_compiled_free((void *)f);
    }
    return NULL;
}

static void run_model(const char *name, model1 model, int nd, const int64_t *shape) {
    shared s;
    memset(&s, 0, sizeof s);
    for (int k = 0; k < 2; k++) {
        s.x[k] = em_randn(nd, shape, 100 + (uint64_t)k);
        s.want[k] = model(s.x[k]);
        CHECK(s.x[k] && s.want[k], "%s: eager", name);
    }
    for (int k = 0; k < NOTHERS; k++) {
        s.ox[k] = em_randn(2, SH(5 + k, 24), 200 + (uint64_t)k);
        s.owant[k] = others[k](s.ox[k]);
        CHECK(s.ox[k] && s.owant[k], "%s: eager", other_names[k]);
    }
    s.fast = (model1)em_compile((void *)model, "tensor(tensor)", &(em_options){.name = name});
    CHECK(s.fast, "em_compile %s", name);
    pthread_barrier_init(&s.start, NULL, CALLERS + CHURNERS);

    worker w[CALLERS + CHURNERS];
    pthread_t t[CALLERS + CHURNERS];
    for (int i = 0; i < CALLERS + CHURNERS; i++) {
        w[i] = (worker){&s, i};
        CHECK(pthread_create(&t[i], NULL, i < CALLERS ? caller : churner, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < CALLERS + CHURNERS; i++) pthread_join(t[i], NULL);

    em_stats st;
    CHECK(em_compiled_stats((void *)s.fast, &st) == 0, "stats");
    CHECK(st.calls == CALLERS * CALLS, "%s: calls %llu, want %d", name, (unsigned long long)st.calls,
          CALLERS * CALLS);
    CHECK(st.compiles == 1, "%s: compiles %llu: one guard, one trace however many threads missed it", name,
          (unsigned long long)st.compiles);
    CHECK(st.guard_misses >= 1 && st.guard_misses <= CALLERS, "%s: guard misses %llu", name,
          (unsigned long long)st.guard_misses);
    CHECK(st.eager_fallbacks == 0, "%s: eager fallbacks %llu", name, (unsigned long long)st.eager_fallbacks);
    /* wide's weight, a constant, is packed once by whichever second call gets there: for the
     * AMX unit (6 bytes a weight) or as the FMA kernel's panels (4) */
    CHECK(model != wide || st.packed_bytes == 192 * 256 * 6 || st.packed_bytes == 192 * 256 * 4,
          "%s: packed %zu bytes", name, st.packed_bytes);

    /* The model runs generated code (else this scenario does not test it). */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f && em_dump((void *)s.fast, "llvm", f) == 0, "em_dump llvm");
    fclose(f);
    CHECK(strstr(text, "define"), "%s: no generated code:\n%s", name, text);
    free(text);

    em_compiled_free((void *)s.fast);
    pthread_barrier_destroy(&s.start);
    for (int k = 0; k < 2; k++) em_release(s.x[k]), em_release(s.want[k]);
    for (int k = 0; k < NOTHERS; k++) em_release(s.ox[k]), em_release(s.owant[k]);
}

void scenario_shared_calls(void) {
    w1 = em_randn(2, SH(64, 32), 1);
    b1 = em_randn(1, SH(64), 2);
    w2 = em_randn(2, SH(16, 64), 3);
    b2 = em_randn(1, SH(16), 4);
    w3 = em_randn(2, SH(192, 256), 5);
    CHECK(w1 && b1 && w2 && b2 && w3, "weights");

    run_model("chain", chain, 2, SH(64, 256));
    ts_pass("shared_calls_elementwise_chain");
    run_model("mlp", mlp, 2, SH(8, 32));
    ts_pass("shared_calls_mlp");
    run_model("wide", wide, 2, SH(128, 256));
    ts_pass("shared_calls_linear_with_two_kernels");

    em_release(w1), em_release(b1), em_release(w2), em_release(b2), em_release(w3);
    w1 = b1 = w2 = b2 = w3 = NULL;
}
