/*
 * test_compile.c — em_compile as a user meets it: a function pointer of the
 * model's own C type that traces once per guard and then runs the graph.
 *
 * Every result of a compiled call is compared with the eager call of the same
 * model function, bit for bit (dtype, shape, strides, bytes): the compiled path
 * interprets the captured graph with the eager kernels.
 *
 * Covered:
 *  - calling: a guard hit reuses the graph (stats: calls, compiles, guard
 *    misses) and computes with the new data; several outputs through tensor *
 *    out-parameters; scalar arguments of every C type, each value its own guard;
 *    helpers calling helpers; a compiled function called while another is
 *    traced is inlined into that trace;
 *  - constants: a global weight is captured by reference (its data is read at
 *    each call) and the graph keeps it alive after the global's reference is
 *    released, until em_compiled_free (refcounts and live bytes);
 *  - guards: misses on shape, dtype and strides (a transposed argument); the
 *    stride of a size-1 dim is no guard; the recompile limit (max_recompiles)
 *    after which calls run eagerly (stats.eager_fallbacks) and still compute
 *    the right results;
 *  - graph breaks: em_item / em_read on a traced tensor fall back to eager;
 *    with fullgraph the call fails with "graph break";
 *  - failures: malformed signatures, em_compile(NULL), em_compiled_free(NULL),
 *    stats and dumps of pointers that em_compile did not return, an op that
 *    fails while tracing (the call returns NULL with the op's message and the
 *    function keeps working), NULL tensor arguments, tensors of a trace kept
 *    past it;
 *  - ownership: results go to the caller's innermost open scope, or to the
 *    caller when none is open;
 *  - observability: em_dump of every stage (unknown stage, before any call,
 *    one-line stages, dot), dump files from opts.dump_dir and EMBER_DUMP_DIR
 *    named by opts.name, EMBER_DISABLE, EMBER_LOG=recompiles / fallbacks /
 *    graph (stderr is redirected to a temporary file around the calls; the log
 *    categories are read once per process and Criterion runs each test in a
 *    process of its own, so each test sets EMBER_LOG before its first compile);
 *  - edges: a run-time failure of a cached graph (an embedding index out of
 *    range), arguments that are views with an offset or stride 0, zero-sized
 *    dims, 32 tensor arguments of 8 dims (the longest guard key), out-
 *    parameters between scalars, two compilations of one function, compiling a
 *    compiled function, the default limit of eight graphs, an injected
 *    allocation failure at every point of em_compile and of a first call;
 *  - eager equivalence of what a model observes while traced: a model that
 *    checks an op's NULL result and recovers, and the strides of the views it
 *    makes (transpose, slice, expand, permute, unsqueeze), which a model may
 *    branch on (em_is_contiguous, em_strides).
 *
 * Models open their own scope and em_keep what they return, so they leak
 * nothing whether or not the caller has a scope open, eagerly or traced.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

/* ---- helpers ------------------------------------------------------------------------------- */

static size_t live(void) {
    em_memory_stats s;
    em_memory_stats_get(&s);
    return s.live_bytes;
}

static long refs(const em_tensor *t) { return atomic_load(&t->refs); }

/* f32 values in [lo, hi), deterministic per seed. */
static em_tensor *uniform(int nd, const int64_t *shape, double lo, double hi, uint64_t seed) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i] = (float)(lo + (hi - lo) * (double)(s >> 11) / 9007199254740992.0);
    }
    em_tensor *t = em_from_data(EM_F32, nd, shape, v);
    free(v);
    cr_assert(t, "%s", em_last_error());
    return t;
}

static em_tensor *randn(int nd, const int64_t *shape, uint64_t seed) {
    em_tensor *t = em_randn(nd, shape, seed);
    cr_assert(t, "%s", em_last_error());
    return t;
}

/* t converted to dt; t is released. */
static em_tensor *cast(em_tensor *t, em_dtype dt) {
    em_tensor *c = em_cast(t, dt);
    em_release(t);
    cr_assert(c, "%s", em_last_error());
    return c;
}

/* A transposed (non-contiguous) view of t; t is released. */
static em_tensor *transposed(em_tensor *t) {
    em_tensor *v = em_transpose(t, 0, 1);
    em_release(t);
    cr_assert(v, "%s", em_last_error());
    return v;
}

static char *bytes_of(em_tensor *t, size_t *n) {
    *n = (size_t)em_numel(t) * em_dtype_size(em_type(t));
    char *b = malloc(*n + 1);
    cr_assert_eq(em_read(t, b, *n), 0, "%s", em_last_error());
    return b;
}

/* got must equal want in dtype, shape, strides and every byte. */
static void expect_identical(em_tensor *got, em_tensor *want, const char *what) {
    cr_assert(want, "%s: the eager call failed: %s", what, em_last_error());
    cr_assert(got, "%s: the compiled call failed: %s", what, em_last_error());
    cr_assert_eq(em_type(got), em_type(want), "%s: dtype %s, eager %s", what,
                 em_dtype_name(em_type(got)), em_dtype_name(em_type(want)));
    cr_assert_eq(em_ndim(got), em_ndim(want), "%s: ndim", what);
    for (int i = 0; i < em_ndim(got); i++) {
        cr_expect_eq(em_shape(got)[i], em_shape(want)[i], "%s: dim %d", what, i);
        cr_expect_eq(em_strides(got)[i], em_strides(want)[i], "%s: stride %d", what, i);
    }
    size_t n, m;
    char *a = bytes_of(got, &n), *b = bytes_of(want, &m);
    cr_assert_eq(n, m);
    cr_expect_eq(memcmp(a, b, n), 0, "%s: values differ from eager", what);
    free(a);
    free(b);
}

static bool same_bytes(em_tensor *a, em_tensor *b) {
    size_t n, m;
    char *x = bytes_of(a, &n), *y = bytes_of(b, &m);
    bool same = n == m && memcmp(x, y, n) == 0;
    free(x);
    free(y);
    return same;
}

static em_stats stats_of(void *fn) {
    em_stats st;
    memset(&st, 0xff, sizeof st);
    cr_assert_eq(em_compiled_stats(fn, &st), 0, "%s", em_last_error());
    return st;
}

#define EXPECT_STATS(fn, calls_, compiles_, misses_, fallbacks_)                                 \
    do {                                                                                         \
        em_stats st_ = stats_of(fn);                                                             \
        cr_expect_eq(st_.calls, (uint64_t)(calls_), "calls %llu, want %d",                       \
                     (unsigned long long)st_.calls, (int)(calls_));                              \
        cr_expect_eq(st_.compiles, (uint64_t)(compiles_), "compiles %llu, want %d",              \
                     (unsigned long long)st_.compiles, (int)(compiles_));                        \
        cr_expect_eq(st_.guard_misses, (uint64_t)(misses_), "guard misses %llu, want %d",        \
                     (unsigned long long)st_.guard_misses, (int)(misses_));                      \
        cr_expect_eq(st_.eager_fallbacks, (uint64_t)(fallbacks_), "eager fallbacks %llu, want %d", \
                     (unsigned long long)st_.eager_fallbacks, (int)(fallbacks_));                \
    } while (0)

/* What em_dump(fn, stage) writes; *status receives its return value. */
static char *dump(void *fn, const char *stage, int *status) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    *status = em_dump(fn, stage, f);
    fclose(f);
    return text;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* stderr redirected into a temporary file between capture_begin and capture_end. */
typedef struct capture {
    FILE *tmp;
    int saved;
} capture;

static void capture_begin(capture *c) {
    fflush(stderr);
    c->tmp = tmpfile();
    cr_assert(c->tmp);
    c->saved = dup(2);
    cr_assert(c->saved >= 0);
    cr_assert(dup2(fileno(c->tmp), 2) >= 0);
}

/* Restores stderr; returns what was written meanwhile (malloc'd). */
static char *capture_end(capture *c) {
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    fseek(c->tmp, 0, SEEK_END);
    long n = ftell(c->tmp);
    char *text = malloc((size_t)n + 1);
    fseek(c->tmp, 0, SEEK_SET);
    size_t got = fread(text, 1, (size_t)n, c->tmp);
    text[got] = '\0';
    fclose(c->tmp);
    return text;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

/* Removes dir and the files in it. */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) remove_dir(path);
        else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int files_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- models --------------------------------------------------------------------------------- */

static em_tensor *g_w, *g_b; /* weights in globals, captured as constants */

static void globals_init(void) {
    g_w = randn(2, SH(16, 8), 101);
    g_b = randn(1, SH(8), 102);
}

static void globals_fini(void) {
    em_release(g_w);
    em_release(g_b);
    g_w = g_b = NULL;
}

/* tanh(x @ w + b) on globals. */
static em_tensor *tiny(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_add(em_matmul(x, g_w), g_b)));
    em_scope_end();
    return y;
}

/* An elementwise chain that takes any shape and dtype. */
static em_tensor *chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_gelu(em_add(x, x)), em_sigmoid(x)));
    em_scope_end();
    return y;
}

static void tiny_expect(void *fast, em_tensor *x, const char *what) {
    em_tensor *want = tiny(x), *got = ((em_tensor * (*)(em_tensor *)) fast)(x);
    expect_identical(got, want, what);
    em_release(got);
    em_release(want);
}

static void chain_expect(void *fast, em_tensor *x, const char *what) {
    em_tensor *want = chain(x), *got = ((em_tensor * (*)(em_tensor *)) fast)(x);
    expect_identical(got, want, what);
    em_release(got);
    em_release(want);
}

/* ---- calling ---------------------------------------------------------------------------------- */

Test(compile, reuses_the_graph_when_guards_match) {
    globals_init();
    __typeof__(&tiny) fast = EM_COMPILE(tiny, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    cr_assert_neq((void *)fast, (void *)tiny);
    EXPECT_STATS(fast, 0, 0, 0, 0);
    for (int i = 0; i < 4; i++) {
        em_tensor *x = randn(2, SH(4, 16), 10 + (uint64_t)i); /* new data, same guards */
        tiny_expect(fast, x, "call");
        em_release(x);
        EXPECT_STATS(fast, i + 1, 1, 1, 0);
    }
    em_stats st = stats_of(fast);
    cr_expect_geq(st.kernels, 1);
    cr_expect_geq(st.compile_ms, 0.0);
    em_compiled_free(fast);
    globals_fini();
}

/* Mean and centred rows, through out-parameters. */
static void moments(em_tensor *x, em_tensor **mean, em_tensor **centered) {
    em_scope_begin();
    em_tensor *m = em_mean(x, -1, 1);
    *centered = em_keep(em_sub(x, m));
    *mean = em_keep(m);
    em_scope_end();
}

Test(compile, returns_several_outputs_through_out_parameters) {
    void (*fast)(em_tensor *, em_tensor **, em_tensor **) =
        em_compile((void *)moments, "void(tensor, tensor *, tensor *)", NULL);
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 3; i++) {
        em_tensor *x = uniform(2, SH(5, 9), -2, 2, (uint64_t)i);
        em_tensor *wm = NULL, *wc = NULL, *gm = NULL, *gc = NULL;
        moments(x, &wm, &wc);
        fast(x, &gm, &gc);
        expect_identical(gm, wm, "mean");
        expect_identical(gc, wc, "centered");
        cr_expect_eq(refs(gm), 1);
        cr_expect_eq(refs(gc), 1);
        em_release(wm), em_release(wc), em_release(gm), em_release(gc), em_release(x);
    }
    EXPECT_STATS(fast, 3, 1, 1, 0);
    int status;
    char *g = dump(fast, "graph", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(g, " = mean ") && strstr(g, " = sub "), "%s", g);
    cr_expect(strstr(g, "return %"), "%s", g);
    free(g);
    em_compiled_free((void *)fast);
}

/* Three outputs: a new tensor, the same tensor again, and the argument itself. */
static void three_outs(em_tensor *x, em_tensor **a, em_tensor **b, em_tensor **c) {
    em_tensor *r = em_relu(x);
    *a = r;
    *b = em_retain(r);
    *c = em_retain(x);
}

Test(compile, returns_the_same_tensor_twice_and_an_argument_as_outputs) {
    void (*fast)(em_tensor *, em_tensor **, em_tensor **, em_tensor **) =
        em_compile((void *)three_outs, "void(tensor, tensor*, tensor*, tensor*)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = uniform(2, SH(3, 4), -1, 1, 1);
    for (int i = 0; i < 2; i++) {
        em_tensor *wa, *wb, *wc, *ga = NULL, *gb = NULL, *gc = NULL;
        three_outs(x, &wa, &wb, &wc);
        fast(x, &ga, &gb, &gc);
        expect_identical(ga, wa, "a");
        cr_expect_eq(ga, gb, "one value written to two out-parameters is one tensor, as eagerly");
        cr_expect_eq(gc, x, "an argument returned as is is the argument, as eagerly");
        cr_expect_eq(refs(ga), 2);
        em_release(wa), em_release(wb), em_release(wc);
        em_release(ga), em_release(gb), em_release(gc);
        cr_expect_eq(refs(x), 1, "the references handed out were returned");
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    em_release(x);
    em_compiled_free((void *)fast);
}

/* ((x * i + l) * f - d): every scalar type, each baked into the graph. */
static em_tensor *scaled(em_tensor *x, int i, int64_t l, float f, double d) {
    em_scope_begin();
    em_tensor *y = em_mul(x, em_scalar(EM_I32, i));
    y = em_add(y, em_scalar(EM_I64, (double)l));
    y = em_mul(y, em_scalar(EM_F32, f));
    y = em_keep(em_sub(y, em_scalar(EM_F64, d)));
    em_scope_end();
    return y;
}

Test(compile, guards_scalar_arguments_of_every_type_by_value) {
    __typeof__(&scaled) fast = EM_COMPILE(scaled, "tensor(tensor, int, int64_t, float, double)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = uniform(2, SH(3, 7), -2, 2, 1);
    static const struct {
        int i;
        int64_t l;
        float f;
        double d;
        bool miss;
    } calls[] = {
        {3, 5, 0.5f, 1.25, true},
        {3, 5, 0.5f, 1.25, false},             /* the same values: a hit */
        {4, 5, 0.5f, 1.25, true},              /* int */
        {4, 7, 0.5f, 1.25, true},              /* int64_t */
        {4, 7, 0.75f, 1.25, true},             /* float */
        {4, 7, 0.75f, -3.5, true},             /* double */
        {3, 5, 0.5f, 1.25, false},             /* the first values again: still cached */
        {4, (1LL << 40), 0.75f, -3.5, true},   /* int64_t beyond 32 bits */
        {4, (1LL << 40) + 1, 0.75f, -3.5, true},
    };
    int misses = 0;
    em_tensor *prev = NULL;
    for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "call %zu", k);
        em_tensor *want = scaled(x, calls[k].i, calls[k].l, calls[k].f, calls[k].d);
        em_tensor *got = fast(x, calls[k].i, calls[k].l, calls[k].f, calls[k].d);
        expect_identical(got, want, what);
        if (prev && k >= 2 && k <= 5)
            cr_expect(!same_bytes(got, prev), "%s: the new scalar value was not used", what);
        em_release(prev);
        prev = got;
        em_release(want);
        misses += calls[k].miss;
        EXPECT_STATS(fast, k + 1, misses, misses, 0);
    }
    em_release(prev);
    em_release(x);
    em_compiled_free((void *)fast);
}

/* Out-parameters between scalars: every argument keeps its place. */
static void interleaved(em_tensor *x, int k, em_tensor **top, double s, em_tensor **scaled_) {
    em_scope_begin();
    *top = em_keep(em_slice(em_softmax(x, -1), -1, 0, k, 1));
    *scaled_ = em_keep(em_mul(x, em_scalar(EM_F64, s)));
    em_scope_end();
}

Test(compile, keeps_out_parameters_and_scalars_in_their_places) {
    void (*fast)(em_tensor *, int, em_tensor **, double, em_tensor **) =
        em_compile((void *)interleaved, "void(tensor, int, tensor *, double, tensor *)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = uniform(2, SH(3, 6), -1, 1, 1);
    static const struct { int k; double s; } calls[] = {{2, 0.5}, {2, 0.5}, {4, 0.5}, {4, -2.0}};
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        em_tensor *wt, *ws, *gt = NULL, *gs = NULL;
        interleaved(x, calls[i].k, &wt, calls[i].s, &ws);
        fast(x, calls[i].k, &gt, calls[i].s, &gs);
        expect_identical(gt, wt, "top");
        expect_identical(gs, ws, "scaled");
        em_release(wt), em_release(ws), em_release(gt), em_release(gs);
    }
    EXPECT_STATS(fast, 4, 3, 3, 0);
    em_release(x);
    em_compiled_free((void *)fast);
}

/* Helpers calling helpers: all of it is one graph. */
static em_tensor *h_act(em_tensor *x) { return em_silu(x); }
static em_tensor *h_dense(em_tensor *x, em_tensor *w, em_tensor *b) {
    return h_act(em_linear(x, w, b));
}
static em_tensor *h_norm_dense(em_tensor *x, em_tensor *w, em_tensor *b) {
    return h_dense(em_rms_norm(x, NULL, 1e-6), w, b);
}
static em_tensor *h_residual(em_tensor *x, em_tensor *w, em_tensor *b) {
    return em_add(x, h_norm_dense(x, w, b));
}
static em_tensor *helpers(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(h_residual(h_residual(x, w, b), w, b));
    em_scope_end();
    return y;
}

Test(compile, captures_helpers_that_call_helpers_into_one_graph) {
    __typeof__(&helpers) fast = EM_COMPILE(helpers, "tensor(tensor, tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *w = randn(2, SH(12, 12), 1), *b = randn(1, SH(12), 2);
    for (int i = 0; i < 2; i++) {
        em_tensor *x = randn(2, SH(6, 12), 3 + (uint64_t)i);
        em_tensor *want = helpers(x, w, b), *got = fast(x, w, b);
        expect_identical(got, want, "helpers");
        em_release(want), em_release(got), em_release(x);
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    int status;
    char *g = dump(fast, "graph", &status);
    cr_expect_eq(count_of(g, " = silu "), 2, "two inlined residual blocks:\n%s", g);
    cr_expect_eq(count_of(g, " = linear "), 2, "%s", g);
    cr_expect_eq(count_of(g, " = rms_norm "), 2, "%s", g);
    cr_expect_eq(count_of(g, " = add "), 2, "%s", g);
    free(g);
    em_compiled_free((void *)fast);
    em_release(w), em_release(b);
}

/* The inner function, compiled on its own; the outer model calls it. */
static em_tensor *inner(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_exp(em_neg(em_abs(x))));
    em_scope_end();
    return y;
}
static em_tensor *(*inner_fast)(em_tensor *);
static em_tensor *(*inner_used)(em_tensor *); /* inner or inner_fast */

static em_tensor *outer(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_softmax(em_mul(inner_used(x), x), -1));
    em_scope_end();
    return y;
}

Test(compile, inlines_a_compiled_function_called_while_tracing_another) {
    inner_fast = EM_COMPILE(inner, "tensor(tensor)");
    __typeof__(&outer) fast = EM_COMPILE(outer, "tensor(tensor)");
    cr_assert(inner_fast && fast, "%s", em_last_error());
    for (int i = 0; i < 3; i++) {
        em_tensor *x = uniform(2, SH(4, 10), -3, 3, (uint64_t)i);
        inner_used = inner;
        em_tensor *want = outer(x);
        inner_used = inner_fast;
        em_tensor *got = fast(x);
        expect_identical(got, want, "outer");
        em_release(want), em_release(got), em_release(x);
    }
    EXPECT_STATS(fast, 3, 1, 1, 0);
    /* Called once, while outer was traced: it ran on proxies and was not compiled. */
    EXPECT_STATS(inner_fast, 1, 0, 0, 0);
    int status;
    char *g = dump((void *)fast, "graph", &status);
    cr_expect(strstr(g, " = abs ") && strstr(g, " = exp ") && strstr(g, " = softmax "),
              "inner's ops are in outer's graph:\n%s", g);
    free(g);
    g = dump((void *)inner_fast, "graph", &status);
    cr_expect(strstr(g, "no graph"), "inner has no graph of its own:\n%s", g);
    free(g);
    /* Called on its own, inner compiles as usual. */
    em_tensor *x = uniform(2, SH(4, 10), -3, 3, 9);
    em_tensor *want = inner(x), *got = inner_fast(x);
    expect_identical(got, want, "inner");
    EXPECT_STATS(inner_fast, 2, 1, 1, 0);
    em_release(want), em_release(got), em_release(x);
    em_compiled_free((void *)fast);
    em_compiled_free((void *)inner_fast);
}

/* ---- constants captured by reference ---------------------------------------------------------- */

static em_tensor *linear_global(em_tensor *x) { return em_linear(x, g_w, g_b); }

Test(compile, keeps_a_global_weight_alive_after_the_global_releases_it) {
    size_t start = live();
    g_w = randn(2, SH(8, 16), 1); /* [out, in] for em_linear */
    g_b = randn(1, SH(8), 2);
    em_tensor *x = randn(2, SH(4, 16), 3);
    size_t w_bytes = 8 * 16 * 4, b_bytes = 8 * 4, x_bytes = 4 * 16 * 4, y_bytes = 4 * 8 * 4;
    cr_assert_eq(live(), start + w_bytes + b_bytes + x_bytes);

    __typeof__(&linear_global) fast = EM_COMPILE(linear_global, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *want = linear_global(x), *got = fast(x);
    expect_identical(got, want, "first call");
    em_release(got);
    /* The captured graph (for em_dump's `graph`) and the optimised one share it. */
    cr_expect_eq(refs(g_w), 3, "the graphs hold a reference to the weight");
    cr_expect_eq(refs(g_b), 3, "the graphs hold a reference to the bias");

    em_tensor *w = g_w, *b = g_b;
    em_release(g_w), em_release(g_b);
    g_w = g_b = NULL; /* the global lets go; the model could not even be traced again */
    cr_expect_eq(refs(w), 2);
    cr_expect_eq(refs(b), 2);
    cr_expect_eq(live(), start + w_bytes + b_bytes + x_bytes + y_bytes,
                 "the weights' storage is still alive");
    got = fast(x);
    expect_identical(got, want, "after the global released the weight");
    em_release(got);
    EXPECT_STATS(fast, 2, 1, 1, 0);

    em_compiled_free((void *)fast);
    cr_expect_eq(live(), start + x_bytes + y_bytes, "freeing the function released the weights");
    em_release(want), em_release(x);
    cr_expect_eq(live(), start);
}

Test(compile, reads_a_global_weight_by_reference_at_each_call) {
    globals_init();
    __typeof__(&tiny) fast = EM_COMPILE(tiny, "tensor(tensor)");
    em_tensor *x = randn(2, SH(3, 16), 5);
    tiny_expect(fast, x, "before");
    /* Change the weight's data in place: the next call must see it. */
    float *w = (float *)rt_tensor_data(g_w), *b = (float *)rt_tensor_data(g_b);
    for (int i = 0; i < 16 * 8; i++) w[i] = -0.5f * w[i] + 0.25f;
    for (int i = 0; i < 8; i++) b[i] += 1.0f;
    tiny_expect(fast, x, "after the weights changed");
    EXPECT_STATS(fast, 2, 1, 1, 0);
    em_release(x);
    em_compiled_free((void *)fast);
    globals_fini();
}

static em_tensor *const_only(void) { return em_mul(g_w, g_w); }

Test(compile, compiles_a_function_of_no_arguments_over_globals) {
    globals_init();
    __typeof__(&const_only) fast = EM_COMPILE(const_only, "tensor(void)");
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        em_tensor *want = const_only(), *got = fast();
        expect_identical(got, want, "no arguments");
        em_release(want), em_release(got);
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    em_compiled_free((void *)fast);
    globals_fini();
}

/* ---- guards ------------------------------------------------------------------------------------- */

Test(compile, retraces_on_a_new_shape_dtype_or_layout_and_keeps_the_old_graphs) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = uniform(2, SH(4, 8), -2, 2, 1);
    em_tensor *shape = uniform(2, SH(6, 8), -2, 2, 2);
    em_tensor *dtype = cast(uniform(2, SH(4, 8), -2, 2, 3), EM_F64);
    em_tensor *layout = transposed(uniform(2, SH(8, 4), -2, 2, 4)); /* [4,8], not contiguous */
    chain_expect(fast, a, "first");
    EXPECT_STATS(fast, 1, 1, 1, 0);
    chain_expect(fast, a, "hit");
    EXPECT_STATS(fast, 2, 1, 1, 0);
    chain_expect(fast, shape, "shape");
    EXPECT_STATS(fast, 3, 2, 2, 0);
    chain_expect(fast, dtype, "dtype");
    EXPECT_STATS(fast, 4, 3, 3, 0);
    chain_expect(fast, layout, "strides");
    EXPECT_STATS(fast, 5, 4, 4, 0);
    chain_expect(fast, a, "first again");
    chain_expect(fast, shape, "shape again");
    chain_expect(fast, dtype, "dtype again");
    chain_expect(fast, layout, "strides again");
    EXPECT_STATS(fast, 9, 4, 4, 0);
    em_release(a), em_release(shape), em_release(dtype), em_release(layout);
    em_compiled_free((void *)fast);
}

Test(compile, ignores_the_stride_of_a_size_1_dim) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_tensor *row = uniform(2, SH(1, 8), -2, 2, 1);            /* strides [8,1] */
    em_tensor *col = transposed(uniform(2, SH(8, 1), -2, 2, 2)); /* [1,8], strides [1,1] */
    cr_assert_neq(em_strides(row)[0], em_strides(col)[0]);
    chain_expect(fast, row, "row");
    chain_expect(fast, col, "transposed column");
    EXPECT_STATS(fast, 2, 1, 1, 0);
    em_release(row), em_release(col);
    em_compiled_free((void *)fast);
}

Test(compile, runs_eagerly_past_max_recompiles_with_correct_results) {
    __typeof__(&chain) fast = em_compile((void *)chain, "tensor(tensor)",
                                         &(em_options){.max_recompiles = 2, .name = "chain"});
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x[5];
    for (int i = 0; i < 5; i++) x[i] = uniform(2, SH(2 + i, 8), -2, 2, (uint64_t)i);
    chain_expect(fast, x[0], "shape 1");
    chain_expect(fast, x[1], "shape 2");
    EXPECT_STATS(fast, 2, 2, 2, 0);
    chain_expect(fast, x[2], "shape 3: past the limit");
    EXPECT_STATS(fast, 3, 2, 3, 1);
    chain_expect(fast, x[3], "shape 4");
    chain_expect(fast, x[2], "shape 3 again");
    EXPECT_STATS(fast, 5, 2, 5, 3);
    /* The graphs made before the limit still run. */
    chain_expect(fast, x[0], "shape 1 again");
    chain_expect(fast, x[1], "shape 2 again");
    EXPECT_STATS(fast, 7, 2, 5, 3);
    for (int i = 0; i < 5; i++) em_release(x[i]);
    em_compiled_free((void *)fast);
}

Test(compile, keeps_eight_graphs_by_default) {
    __typeof__(&chain) fast = em_compile((void *)chain, "tensor(tensor)", &(em_options){.max_recompiles = -3});
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 10; i++) {
        em_tensor *x = uniform(1, SH(1 + i), -1, 1, (uint64_t)i);
        chain_expect(fast, x, "a new shape");
        em_release(x);
    }
    EXPECT_STATS(fast, 10, 8, 10, 2);
    em_compiled_free((void *)fast);
}

Test(compile, compiles_a_function_that_is_already_compiled) {
    __typeof__(&chain) once = EM_COMPILE(chain, "tensor(tensor)");
    __typeof__(&chain) twice = em_compile((void *)once, "tensor(tensor)", NULL);
    cr_assert(once && twice, "%s", em_last_error());
    em_tensor *x = uniform(2, SH(3, 3), -1, 1, 1);
    chain_expect(twice, x, "first");
    chain_expect(twice, x, "second");
    EXPECT_STATS(twice, 2, 1, 1, 0);
    EXPECT_STATS(once, 1, 0, 0, 0); /* inlined into the outer trace */
    em_release(x);
    em_compiled_free((void *)twice);
    em_compiled_free((void *)once);
}

/* ---- graph breaks -------------------------------------------------------------------------------- */

/* Divides by the largest element: em_item reads data, so the graph breaks. */
static em_tensor *by_max(em_tensor *x) {
    em_scope_begin();
    double m = em_item(em_max(em_reshape(x, 1, SH(-1)), 0, 0));
    em_tensor *s = em_scalar(EM_F32, m > 0 ? m : 1.0);
    em_tensor *y = em_keep(em_div(x, s));
    em_scope_end();
    return y;
}

/* Adds the first element, read with em_read. */
static void plus_first(em_tensor *x, em_tensor **y) {
    float first = 0;
    float all[64];
    if (em_numel(x) <= 64 && em_read(x, all, sizeof all) == 0) first = all[0];
    em_scope_begin();
    *y = em_keep(em_add(x, em_scalar(EM_F32, first)));
    em_scope_end();
}

Test(compile, falls_back_to_eager_at_a_graph_break) {
    __typeof__(&by_max) fast = EM_COMPILE(by_max, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 3; i++) {
        em_tensor *x = uniform(2, SH(3, 5), -1, 4, (uint64_t)i);
        em_tensor *want = by_max(x), *got = fast(x);
        expect_identical(got, want, "em_item");
        em_release(want), em_release(got), em_release(x);
    }
    /* The break is remembered for these guards: one trace, three eager runs. */
    EXPECT_STATS(fast, 3, 0, 1, 3);
    int status;
    char *g = dump((void *)fast, "graph", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(g, "no graph"), "%s", g);
    free(g);
    em_compiled_free((void *)fast);

    void (*fast2)(em_tensor *, em_tensor **) = em_compile((void *)plus_first, "void(tensor, tensor *)", NULL);
    cr_assert(fast2, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        em_tensor *x = uniform(2, SH(4, 4), -1, 1, (uint64_t)i), *want = NULL, *got = NULL;
        plus_first(x, &want);
        fast2(x, &got);
        expect_identical(got, want, "em_read");
        em_release(want), em_release(got), em_release(x);
    }
    EXPECT_STATS(fast2, 2, 0, 1, 2);
    em_compiled_free((void *)fast2);
}

Test(compile, fails_a_graph_break_with_fullgraph) {
    __typeof__(&by_max) fast = em_compile((void *)by_max, "tensor(tensor)",
                                          &(em_options){.fullgraph = 1, .name = "by_max"});
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = uniform(2, SH(3, 5), -1, 4, 1);
    for (int i = 0; i < 2; i++) {
        em_clear_error();
        em_tensor *got = fast(x);
        cr_expect_null(got);
        cr_expect(strstr(em_last_error(), "graph break"), "message: %s", em_last_error());
        cr_expect(strstr(em_last_error(), "em_item"), "the reason names em_item: %s", em_last_error());
        em_release(got);
    }
    EXPECT_STATS(fast, 2, 0, 2, 0);
    em_compiled_free((void *)fast);

    void (*fast2)(em_tensor *, em_tensor **) =
        em_compile((void *)plus_first, "void(tensor, tensor *)", &(em_options){.fullgraph = 1});
    em_tensor *out = (em_tensor *)&out; /* must be overwritten */
    fast2(x, &out);
    cr_expect_null(out, "a failed call writes NULL to its out-parameters");
    cr_expect(strstr(em_last_error(), "graph break"), "message: %s", em_last_error());
    cr_expect(strstr(em_last_error(), "em_read"), "message: %s", em_last_error());
    em_compiled_free((void *)fast2);
    em_release(x);
}

/* ---- failures -------------------------------------------------------------------------------------- */

Test(compile, rejects_malformed_signatures_with_a_message) {
    static const char *bad[] = {
        "", "tensor", "tensor(", "tensor(tensor", "tensor(tensor,)", "tensor(,tensor)",
        "float(tensor)", "int(tensor)", "void(tensor)", "tensor(tensor *)", "tensor(tensr)",
        "tensor(tensor) x", "tensor(void, tensor)", "tensor(tensor **)", "(tensor)",
        "tensor((tensor))", "void()", "tensor(unsigned)",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        em_clear_error();
        void *f = em_compile((void *)chain, bad[i], NULL);
        cr_expect_null(f, "\"%s\" was accepted", bad[i]);
        em_compiled_free(f);
        cr_expect(strstr(em_last_error(), "em_compile") && strstr(em_last_error(), "signature"),
                  "\"%s\": message \"%s\"", bad[i], em_last_error());
    }
    em_clear_error();
    cr_expect_null(em_compile((void *)chain, NULL, NULL));
    cr_expect_neq(em_last_error()[0], '\0', "a NULL signature has a message");
}

Test(compile, fails_cleanly_on_a_null_function) {
    em_clear_error();
    cr_expect_null(em_compile(NULL, "tensor(tensor)", NULL));
    cr_expect(strstr(em_last_error(), "em_compile") && strstr(em_last_error(), "NULL"), "%s",
              em_last_error());
    cr_expect_null(em_compile(NULL, NULL, &(em_options){.fullgraph = 1}));
}

Test(compile, free_of_null_or_of_a_plain_function_is_a_no_op) {
    em_compiled_free(NULL);
    em_compiled_free((void *)chain);
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_compiled_free((void *)fast);
    em_compiled_free((void *)fast); /* already freed: not in the registry any more */
}

Test(compile, stats_and_dump_reject_pointers_that_are_not_compiled_functions) {
    em_stats st;
    em_clear_error();
    cr_expect_eq(em_compiled_stats((void *)chain, &st), -1);
    cr_expect(strstr(em_last_error(), "em_compiled_stats") && strstr(em_last_error(), "em_compile"),
              "%s", em_last_error());
    em_clear_error();
    cr_expect_eq(em_compiled_stats(NULL, &st), -1);
    cr_expect_neq(em_last_error()[0], '\0');
    em_clear_error();
    cr_expect_eq(em_dump((void *)chain, "graph", stdout), -1);
    cr_expect(strstr(em_last_error(), "em_dump") && strstr(em_last_error(), "em_compile"), "%s",
              em_last_error());
    em_clear_error();
    cr_expect_eq(em_dump(NULL, "graph", stdout), -1);
    cr_expect_neq(em_last_error()[0], '\0');

    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_clear_error();
    cr_expect_eq(em_compiled_stats((void *)fast, NULL), -1);
    cr_expect_neq(em_last_error()[0], '\0');
    em_clear_error();
    cr_expect_eq(em_dump((void *)fast, "graph", NULL), -1);
    cr_expect_neq(em_last_error()[0], '\0');
    em_clear_error();
    cr_expect_eq(em_dump((void *)fast, NULL, stdout), -1);
    cr_expect_neq(em_last_error()[0], '\0');
    em_compiled_free((void *)fast);
}

/* x + w with w a global [4,16]: other shapes fail to broadcast while tracing. */
static em_tensor *add_global(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_relu(em_add(x, g_w)));
    em_scope_end();
    return y;
}

static void add_global_out(em_tensor *x, em_tensor **y, em_tensor **z) {
    *y = add_global(x);
    *z = em_neg(x);
}

Test(compile, fails_a_call_whose_op_fails_while_tracing_and_keeps_working) {
    g_w = randn(2, SH(4, 16), 1);
    __typeof__(&add_global) fast = EM_COMPILE(add_global, "tensor(tensor)");
    em_tensor *ok = randn(2, SH(4, 16), 2), *bad = randn(2, SH(6, 16), 3), *row = randn(2, SH(1, 16), 4);
    em_tensor *want = add_global(ok), *got = fast(ok);
    expect_identical(got, want, "first");
    em_release(got);
    EXPECT_STATS(fast, 1, 1, 1, 0);

    for (int i = 0; i < 2; i++) {
        em_clear_error();
        got = fast(bad);
        cr_expect_null(got);
        cr_expect(strstr(em_last_error(), "cannot be broadcast"), "message: %s", em_last_error());
        cr_expect(strstr(em_last_error(), "em_add"), "names the op: %s", em_last_error());
        em_release(got);
    }
    EXPECT_STATS(fast, 3, 1, 3, 0);

    got = fast(ok);
    expect_identical(got, want, "the cached graph after the failures");
    em_release(got), em_release(want);
    want = add_global(row);
    got = fast(row);
    expect_identical(got, want, "a new shape after the failures");
    em_release(got), em_release(want);
    EXPECT_STATS(fast, 5, 2, 4, 0);
    em_compiled_free((void *)fast);

    void (*fast2)(em_tensor *, em_tensor **, em_tensor **) =
        em_compile((void *)add_global_out, "void(tensor, tensor *, tensor *)", NULL);
    em_tensor *y = (em_tensor *)&y, *z = (em_tensor *)&z;
    fast2(bad, &y, &z);
    cr_expect_null(y);
    cr_expect_null(z, "no out-parameter of a failed call is set");
    cr_expect(strstr(em_last_error(), "cannot be broadcast"), "message: %s", em_last_error());
    em_tensor *wy, *wz;
    add_global_out(ok, &wy, &wz);
    fast2(ok, &y, &z);
    expect_identical(y, wy, "y");
    expect_identical(z, wz, "z");
    em_release(y), em_release(z), em_release(wy), em_release(wz);
    em_compiled_free((void *)fast2);

    em_release(ok), em_release(bad), em_release(row);
    em_release(g_w);
    g_w = NULL;
}

static em_tensor *add2(em_tensor *a, em_tensor *b) { return em_add(a, b); }

Test(compile, gives_null_with_a_message_for_a_null_tensor_argument) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    __typeof__(&add2) fast2 = EM_COMPILE(add2, "tensor(tensor, tensor)");
    em_tensor *x = uniform(2, SH(2, 3), -1, 1, 1);
    em_clear_error();
    cr_expect_null(fast(NULL));
    cr_expect(strstr(em_last_error(), "NULL"), "message: %s", em_last_error());
    em_clear_error();
    cr_expect_null(fast2(x, NULL));
    cr_expect(strstr(em_last_error(), "NULL"), "message: %s", em_last_error());
    em_clear_error();
    cr_expect_null(fast2(NULL, x));
    cr_expect(strstr(em_last_error(), "NULL"), "message: %s", em_last_error());
    chain_expect(fast, x, "a real call afterwards");
    em_tensor *want = add2(x, x), *got = fast2(x, x);
    expect_identical(got, want, "add afterwards");
    em_release(want), em_release(got), em_release(x);
    em_compiled_free((void *)fast);
    em_compiled_free((void *)fast2);
}

/* Keeps a tensor of its trace in a global, which a user must not do. */
static em_tensor *g_kept;
static em_tensor *keeper(em_tensor *x) {
    if (!g_kept) g_kept = em_retain(x);
    return em_neg(x);
}
static em_tensor *uses_kept(em_tensor *x) { return em_add(x, g_kept); }

Test(compile, rejects_a_traced_tensor_used_after_its_trace_without_crashing) {
    __typeof__(&keeper) fast = EM_COMPILE(keeper, "tensor(tensor)");
    em_tensor *x = uniform(2, SH(2, 3), -1, 1, 1);
    em_tensor *y = fast(x);
    cr_assert(y, "%s", em_last_error());
    cr_assert(g_kept && g_kept != x, "the model kept its proxy");
    em_clear_error();
    cr_expect_null(em_add(g_kept, x));
    cr_expect_neq(em_last_error()[0], '\0');
    em_clear_error();
    cr_expect(isnan(em_item(g_kept)));
    cr_expect_neq(em_last_error()[0], '\0');
    float buf[6];
    cr_expect_neq(em_read(g_kept, buf, sizeof buf), 0);


    __typeof__(&uses_kept) fast2 = EM_COMPILE(uses_kept, "tensor(tensor)");
    em_clear_error();
    em_tensor *z = fast2(x);
    cr_expect_null(z, "a stale proxy in another trace is an error");
    cr_expect_neq(em_last_error()[0], '\0');
    em_release(z);
    em_compiled_free((void *)fast2);

    em_release(y), em_release(x), em_release(g_kept);
    g_kept = NULL;
    em_compiled_free((void *)fast);
}

Test(compile, fails_a_call_on_a_traced_tensor_kept_past_its_trace_instead_of_crashing) {
    __typeof__(&keeper) fast = EM_COMPILE(keeper, "tensor(tensor)");
    em_tensor *x = uniform(2, SH(2, 3), -1, 1, 1);
    em_tensor *y = fast(x); /* traces; the model keeps its proxy of x in g_kept */
    cr_assert(y && g_kept, "%s", em_last_error());
    /* Eagerly, an op on it is an error (see the test above). Passed back to
     * the compiled function, its guards match the cached graph. */
    em_tensor *want = keeper(g_kept);
    cr_expect_null(want);
    em_clear_error();
    em_tensor *got = fast(g_kept);
    cr_expect_null(got, "a compiled call on a stale traced tensor fails as the eager call does");
    cr_expect_neq(em_last_error()[0], '\0');
    em_release(got), em_release(y), em_release(x), em_release(g_kept);
    g_kept = NULL;
    em_compiled_free((void *)fast);
}

/* ---- ownership -------------------------------------------------------------------------------------- */

static em_tensor *tanh_mm(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_matmul(x, g_w)));
    em_scope_end();
    return y;
}

Test(compile, gives_results_to_the_callers_open_scope) {
    globals_init();
    em_tensor *x = randn(2, SH(4, 16), 1);
    __typeof__(&tanh_mm) fast = EM_COMPILE(tanh_mm, "tensor(tensor)");
    size_t base = live();
    for (int i = 0; i < 3; i++) { /* the first call traces inside the scope */
        em_scope_begin();
        em_tensor *want = tanh_mm(x), *got = fast(x);
        expect_identical(got, want, "in a scope");
        cr_expect_eq(refs(got), 1, "the scope holds the one reference");
        em_scope_end(); /* releases both; nothing released by hand */
        cr_expect_eq(live(), base, "call %d left tensors behind", i);
    }
    /* Nested: the innermost scope takes it; em_keep moves it out. */
    em_scope_begin();
    em_scope_begin();
    em_tensor *kept = em_keep(fast(x));
    em_tensor *dropped = fast(x);
    cr_assert(kept && dropped);
    em_scope_end();
    cr_expect_eq(live(), base + 4 * 8 * 4, "the kept result is alive, the other freed");
    cr_expect_eq(refs(kept), 1);
    em_scope_end();
    cr_expect_eq(live(), base);

    void (*fast2)(em_tensor *, em_tensor **, em_tensor **) =
        em_compile((void *)moments, "void(tensor, tensor *, tensor *)", NULL);
    for (int i = 0; i < 2; i++) {
        em_scope_begin();
        em_tensor *m, *c;
        fast2(x, &m, &c);
        cr_expect(m && c, "%s", em_last_error());
        em_scope_end();
        cr_expect_eq(live(), base, "out-parameters are adopted by the scope too");
    }
    em_compiled_free((void *)fast2);
    EXPECT_STATS(fast, 5, 1, 1, 0);
    em_compiled_free((void *)fast);
    em_release(x);
    globals_fini();
}

Test(compile, gives_results_to_the_caller_when_no_scope_is_open) {
    globals_init();
    em_tensor *x = randn(2, SH(4, 16), 1);
    __typeof__(&tanh_mm) fast = EM_COMPILE(tanh_mm, "tensor(tensor)");
    size_t base = live();
    for (int i = 0; i < 2; i++) {
        em_tensor *got = fast(x);
        cr_assert(got, "%s", em_last_error());
        cr_expect_eq(refs(got), 1);
        cr_expect_eq(live(), base + 4 * 8 * 4);
        em_release(got);
        cr_expect_eq(live(), base);
    }
    em_compiled_free((void *)fast);
    em_release(x);
    globals_fini();
}

/* ---- em_dump ------------------------------------------------------------------------------------------ */

Test(compile, dump_says_no_graph_yet_before_the_first_call) {
    __typeof__(&chain) fast = em_compile((void *)chain, "tensor(tensor)", &(em_options){.name = "chain"});
    static const char *stages[] = {"graph", "opt", "kernels", "memplan", "llvm", "asm", "dot"};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        int status;
        char *text = dump((void *)fast, stages[i], &status);
        cr_expect_eq(status, 0, "%s: %s", stages[i], em_last_error());
        cr_expect_eq(count_lines(text), 1, "%s: %s", stages[i], text);
        cr_expect(strstr(text, "no graph") && strstr(text, "chain"), "%s: %s", stages[i], text);
        free(text);
    }
    em_compiled_free((void *)fast);
}

Test(compile, dump_rejects_an_unknown_stage) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_tensor *x = uniform(1, SH(5), -1, 1, 1);
    for (int called = 0; called <= 1; called++) {
        int status;
        em_clear_error();
        char *text = dump((void *)fast, "bogus", &status);
        cr_expect_eq(status, -1);
        cr_expect(strstr(em_last_error(), "bogus"), "%s", em_last_error());
        cr_expect_eq(text[0], '\0', "nothing written for an unknown stage: %s", text);
        free(text);
        chain_expect(fast, x, "call");
    }
    em_release(x);
    em_compiled_free((void *)fast);
}

Test(compile, dumps_every_stage_of_the_newest_graph) {
    globals_init();
    __typeof__(&tiny) fast = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    em_tensor *x = randn(2, SH(4, 16), 1);
    tiny_expect(fast, x, "call");
    int status;
    char *g = dump((void *)fast, "graph", &status);
    cr_expect_eq(status, 0);
    cr_expect(strncmp(g, "graph tiny\n", 11) == 0, "%s", g);
    cr_expect(strstr(g, " = input 0 : f32[4,16]"), "%s", g);
    cr_expect(strstr(g, " = const f32[16,8]"), "%s", g);
    cr_expect(strstr(g, " = matmul ") && strstr(g, " = add ") && strstr(g, " = tanh "), "%s", g);
    cr_expect(strstr(g, "  return %"), "%s", g);
    free(g);
    char *o = dump((void *)fast, "opt", &status); /* after the passes: nothing to simplify here */
    cr_expect_eq(status, 0);
    cr_expect(strncmp(o, "graph tiny\n", 11) == 0, "%s", o);
    cr_expect(strstr(o, " = matmul ") && strstr(o, " = add ") && strstr(o, " = tanh "), "%s", o);
    free(o);
    static const char *later[] = {"kernels", "memplan", "llvm", "asm"};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        char *t = dump((void *)fast, later[i], &status);
        cr_expect_eq(status, 0, "%s", later[i]);
        cr_expect_eq(count_lines(t), 1, "%s writes one line: %s", later[i], t);
        free(t);
    }
    char *d = dump((void *)fast, "dot", &status);
    cr_expect_eq(status, 0);
    cr_expect(strncmp(d, "digraph", 7) == 0, "%s", d);
    cr_expect(strstr(d, "tanh") && strstr(d, "->"), "%s", d);
    cr_expect(strstr(d, "}\n"), "%s", d);
    free(d);
    /* A second shape: the dump is of the newest graph. */
    em_tensor *x2 = randn(2, SH(7, 16), 2);
    tiny_expect(fast, x2, "second shape");
    g = dump((void *)fast, "graph", &status);
    cr_expect(strstr(g, " = input 0 : f32[7,16]"), "%s", g);
    free(g);
    em_release(x), em_release(x2);
    em_compiled_free((void *)fast);
    globals_fini();
}

static void expect_dump_files(const char *dir, const char *name, int n) {
    static const char *stages[] = {"graph", "opt", "kernels", "memplan", "llvm", "asm"};
    char path[1024];
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.%d.%s.txt", dir, name, n, stages[i]);
        char *text = read_file(path);
        cr_expect(text, "missing %s", path);
        if (text) cr_expect_gt(strlen(text), 0, "%s is empty", path);
        free(text);
    }
    snprintf(path, sizeof path, "%s/%s.%d.graph.txt", dir, name, n);
    char *g = read_file(path);
    if (g) {
        cr_expect(strstr(g, " = matmul ") && strstr(g, " = add ") && strstr(g, " = tanh "),
                  "%s:\n%s", path, g);
        free(g);
    }
    snprintf(path, sizeof path, "%s/%s.%d.dot", dir, name, n);
    char *d = read_file(path);
    cr_expect(d && strncmp(d, "digraph", 7) == 0, "%s: %s", path, d ? d : "missing");
    free(d);
}

Test(compile, writes_each_stage_of_each_graph_to_the_dump_dir) {
    globals_init();
    char dir[] = "/tmp/ember-dump-XXXXXX";
    cr_assert(mkdtemp(dir));
    __typeof__(&tiny) fast =
        em_compile((void *)tiny, "tensor(tensor)", &(em_options){.dump_dir = dir, .name = "tiny"});
    cr_assert(fast, "%s", em_last_error());
    cr_expect_eq(files_in(dir), 0, "nothing is written before a graph exists");
    em_tensor *x = randn(2, SH(4, 16), 1), *x2 = randn(2, SH(2, 16), 2);
    tiny_expect(fast, x, "first");
    expect_dump_files(dir, "tiny", 1);
    cr_expect_eq(files_in(dir), 7);
    tiny_expect(fast, x, "hit");
    cr_expect_eq(files_in(dir), 7, "a hit writes nothing");
    tiny_expect(fast, x2, "second shape");
    expect_dump_files(dir, "tiny", 2);
    cr_expect_eq(files_in(dir), 14);
    em_release(x), em_release(x2);
    em_compiled_free((void *)fast);
    remove_dir(dir);
    globals_fini();
}

Test(compile, writes_dumps_to_ember_dump_dir_and_creates_it) {
    globals_init();
    char dir[] = "/tmp/ember-dump-XXXXXX";
    cr_assert(mkdtemp(dir));
    char sub[64];
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* not there yet */
    setenv("EMBER_DUMP_DIR", sub, 1);
    __typeof__(&tiny) fast = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "mlp"});
    unsetenv("EMBER_DUMP_DIR");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = randn(2, SH(4, 16), 1);
    tiny_expect(fast, x, "call");
    expect_dump_files(sub, "mlp", 1);
    em_release(x);
    em_compiled_free((void *)fast);
    remove_dir(dir);
    globals_fini();
}

/* ---- environment ---------------------------------------------------------------------------------------- */

Test(compile, ember_disable_returns_the_function_itself) {
    setenv("EMBER_DISABLE", "1", 1);
    void *p = em_compile((void *)chain, "tensor(tensor)", NULL);
    void *q = em_compile((void *)chain, "not even a signature", NULL);
    unsetenv("EMBER_DISABLE");
    cr_expect_eq(p, (void *)chain);
    cr_expect(q == NULL || q == (void *)chain);
    em_tensor *x = uniform(1, SH(5), -1, 1, 1);
    chain_expect(p, x, "disabled");
    em_compiled_free(p); /* not a compiled function: a no-op */
    setenv("EMBER_DISABLE", "0", 1);
    void *r = em_compile((void *)chain, "tensor(tensor)", NULL);
    unsetenv("EMBER_DISABLE");
    cr_expect(r && r != (void *)chain, "EMBER_DISABLE=0 compiles");
    chain_expect(r, x, "enabled");
    EXPECT_STATS(r, 1, 1, 1, 0);
    em_compiled_free(r);
    em_release(x);
}

static em_tensor *mlp(em_tensor *x, float scale) {
    em_scope_begin();
    em_tensor *h = em_gelu(em_linear(x, g_w, g_b));
    em_tensor *y = em_keep(em_mul(h, em_scalar(EM_F32, scale)));
    em_scope_end();
    return y;
}

Test(compile, logs_why_it_recompiles) {
    setenv("EMBER_LOG", "recompiles", 1);
    g_w = randn(2, SH(8, 16), 1);
    g_b = randn(1, SH(8), 2);
    __typeof__(&mlp) fast = em_compile((void *)mlp, "tensor(tensor, float)", &(em_options){.name = "mlp"});
    em_tensor *a = randn(2, SH(4, 16), 3), *b = randn(2, SH(6, 16), 4);
    em_tensor *c = cast(randn(2, SH(6, 16), 5), EM_F64), *d = transposed(randn(2, SH(16, 6), 6));
    capture cap;
    capture_begin(&cap);
    /* Each line compares with the newest graph: a, then b, b at 2.5, d, c. */
    em_tensor *r[6] = {fast(a, 1.0f), fast(a, 1.0f), fast(b, 1.0f), fast(b, 2.5f), fast(d, 2.5f),
                       fast(c, 2.5f)};
    char *log = capture_end(&cap);
    for (int i = 0; i < 6; i++) {
        cr_expect(r[i], "call %d: %s", i, em_last_error());
        em_release(r[i]);
    }
    cr_expect(strstr(log, "recompile mlp: arg 0 shape [6,16] != [4,16]"), "log:\n%s", log);
    cr_expect(strstr(log, "recompile mlp: arg 1 value 2.5 != 1"), "log:\n%s", log);
    cr_expect(strstr(log, "recompile mlp: arg 0 dtype f64 != f32"), "log:\n%s", log);
    cr_expect(strstr(log, "recompile mlp: arg 0 strides [1,6] != [16,1]"), "log:\n%s", log);
    cr_expect_eq(count_of(log, "recompile mlp:"), 4, "one line per retrace, none for the first "
                 "trace or a hit:\n%s", log);
    cr_expect(!strstr(log, "ember[graph]"), "only the categories asked for:\n%s", log);
    free(log);
    EXPECT_STATS(fast, 6, 5, 5, 0);
    em_release(a), em_release(b), em_release(c), em_release(d);
    em_compiled_free((void *)fast);
    globals_fini();
    unsetenv("EMBER_LOG");
}

Test(compile, logs_a_fallback_once_per_graph_break_and_once_at_the_recompile_limit) {
    setenv("EMBER_LOG", "fallbacks", 1);
    __typeof__(&by_max) brk = em_compile((void *)by_max, "tensor(tensor)", &(em_options){.name = "by_max"});
    __typeof__(&chain) lim = em_compile((void *)chain, "tensor(tensor)",
                                        &(em_options){.name = "chain", .max_recompiles = 1});
    em_tensor *x = uniform(2, SH(2, 3), 0, 1, 1), *y = uniform(2, SH(3, 3), 0, 1, 2),
              *z = uniform(2, SH(4, 3), 0, 1, 3);
    capture cap;
    capture_begin(&cap);
    em_tensor *r[7] = {brk(x), brk(x), brk(x), lim(x), lim(y), lim(z), lim(y)};
    char *log = capture_end(&cap);
    for (int i = 0; i < 7; i++) {
        cr_expect(r[i], "call %d: %s", i, em_last_error());
        em_release(r[i]);
    }
    cr_expect_eq(count_of(log, "fallback by_max"), 1, "log:\n%s", log);
    cr_expect(strstr(log, "em_item"), "the reason names the read:\n%s", log);
    cr_expect_eq(count_of(log, "fallback chain"), 1, "log:\n%s", log);
    cr_expect(strstr(log, "max_recompiles"), "log:\n%s", log);
    free(log);
    EXPECT_STATS(brk, 3, 0, 1, 3);
    EXPECT_STATS(lim, 4, 1, 4, 3); /* every new guard past the limit is a miss run eagerly */
    em_release(x), em_release(y), em_release(z);
    em_compiled_free((void *)brk);
    em_compiled_free((void *)lim);
    unsetenv("EMBER_LOG");
}

Test(compile, logs_the_captured_graph) {
    setenv("EMBER_LOG", "graph", 1);
    __typeof__(&chain) fast = em_compile((void *)chain, "tensor(tensor)", &(em_options){.name = "chain"});
    em_tensor *x = uniform(2, SH(2, 3), 0, 1, 1);
    capture cap;
    capture_begin(&cap);
    em_tensor *r[2] = {fast(x), fast(x)};
    char *log = capture_end(&cap);
    cr_expect(strstr(log, "graph chain\n") && strstr(log, " = gelu ") && strstr(log, " = sigmoid "),
              "log:\n%s", log);
    cr_expect_eq(count_of(log, "graph chain\n"), 1, "printed once, at the trace:\n%s", log);
    free(log);
    em_release(r[0]), em_release(r[1]), em_release(x);
    em_compiled_free((void *)fast);
    unsetenv("EMBER_LOG");
}

Test(compile, opts_threads_sets_the_thread_count) {
    int before = em_get_threads();
    void *f = em_compile((void *)chain, "tensor(tensor)", &(em_options){.threads = 1});
    cr_assert(f, "%s", em_last_error());
    cr_expect_eq(em_get_threads(), 1);
    em_compiled_free(f);
    em_set_threads(before);
}

/* ---- layout of views while tracing -------------------------------------------------------------------- */

/* Branches on the layout of a view: eagerly a transpose is not contiguous. */
static em_tensor *layout_branch(em_tensor *x) {
    em_scope_begin();
    em_tensor *t = em_transpose(x, 0, 1);
    em_tensor *y = em_keep(em_is_contiguous(t) ? em_neg(t) : em_abs(t));
    em_scope_end();
    return y;
}

Test(compile, sees_the_layout_of_a_view_while_tracing_as_eager_code_does) {
    __typeof__(&layout_branch) fast = EM_COMPILE(layout_branch, "tensor(tensor)");
    em_tensor *x = uniform(2, SH(3, 4), -2, 2, 1);
    em_tensor *want = layout_branch(x), *got = fast(x);
    expect_identical(got, want, "a branch on em_is_contiguous of a transpose");
    em_release(want), em_release(got), em_release(x);
    em_compiled_free((void *)fast);
}

/* ---- models that recover from a failed op ------------------------------------------------------------- */

/* Models that check an op's NULL result and go on, as C code written against
 * this API may: em_squeeze fails in its entry point (axis not of size 1), em_add
 * in its shape rule (shapes that cannot broadcast). */
static em_tensor *squeeze_if_possible(em_tensor *x) {
    em_scope_begin();
    em_tensor *s = em_squeeze(x, 0);
    em_tensor *y = em_keep(em_relu(s ? s : x));
    em_scope_end();
    return y;
}

static em_tensor *bias_if_it_fits(em_tensor *x) {
    em_scope_begin();
    em_tensor *s = em_add(x, g_b); /* g_b is [8] */
    em_tensor *y = em_keep(em_relu(s ? s : x));
    em_scope_end();
    return y;
}

static void expect_recovery(em_tensor *(*model)(em_tensor *), em_tensor *ok, em_tensor *odd) {
    em_tensor *(*fast)(em_tensor *) = em_compile((void *)model, "tensor(tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        em_tensor *want = model(ok), *got = fast(ok);
        expect_identical(got, want, "the op succeeds");
        em_release(want), em_release(got);
        want = model(odd);
        cr_assert(want, "eagerly the model recovers: %s", em_last_error());
        em_clear_error();
        got = fast(odd);
        cr_expect(got, "the model returned a tensor, yet the compiled call failed: %s",
                  em_last_error());
        if (got) expect_identical(got, want, "the op fails and the model recovers");
        em_release(want), em_release(got);
    }
    EXPECT_STATS(fast, 4, 2, 2, 0);
    em_compiled_free((void *)fast);
}

Test(compile, follows_a_model_that_recovers_from_a_failed_squeeze_as_eager_does) {
    em_tensor *one = uniform(2, SH(1, 5), -1, 1, 1), *three = uniform(2, SH(3, 5), -1, 1, 2);
    expect_recovery(squeeze_if_possible, one, three);
    em_release(one), em_release(three);
}

Test(compile, follows_a_model_that_recovers_from_a_failed_add_as_eager_does) {
    globals_init();
    em_tensor *fits = uniform(2, SH(3, 8), -1, 1, 1), *odd = uniform(2, SH(3, 5), -1, 1, 2);
    expect_recovery(bias_if_it_fits, fits, odd);
    em_release(fits), em_release(odd);
    globals_fini();
}

/* ---- run-time failures of a cached graph ---------------------------------------------------------------- */

static em_tensor *lookup_rows(em_tensor *table, em_tensor *idx) {
    em_scope_begin();
    em_tensor *y = em_keep(em_sum(em_embedding(table, idx), -1, 0));
    em_scope_end();
    return y;
}

Test(compile, returns_the_kernels_message_when_a_cached_graph_fails_at_run_time) {
    __typeof__(&lookup_rows) fast = EM_COMPILE(lookup_rows, "tensor(tensor, tensor)");
    em_tensor *table = randn(2, SH(6, 4), 1);
    int64_t good_i[3] = {0, 5, 2}, bad_i[3] = {1, 6, 2};
    em_tensor *good = em_from_data(EM_I64, 1, SH(3), good_i), *bad = em_from_data(EM_I64, 1, SH(3), bad_i);
    em_tensor *want = lookup_rows(table, good), *got = fast(table, good);
    expect_identical(got, want, "valid indices");
    em_release(got);
    em_clear_error();
    got = fast(table, bad); /* the same guards: the cached graph runs and its kernel fails */
    cr_expect_null(got);
    cr_expect(strstr(em_last_error(), "out of range"), "message: %s", em_last_error());
    em_release(got);
    got = fast(table, good);
    expect_identical(got, want, "valid indices again");
    EXPECT_STATS(fast, 3, 1, 1, 0);
    em_release(got), em_release(want), em_release(table), em_release(good), em_release(bad);
    em_compiled_free((void *)fast);
}

/* ---- layouts of arguments --------------------------------------------------------------------------------- */

Test(compile, runs_a_view_with_an_offset_and_a_broadcast_view_as_eager_does) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_tensor *base = uniform(2, SH(4, 8), -2, 2, 1);
    em_tensor *fresh = uniform(2, SH(2, 8), -2, 2, 2);
    em_tensor *rows = em_slice(base, 0, 1, 3, 1); /* [2,8] at offset 8, contiguous strides */
    em_tensor *row = uniform(2, SH(1, 8), -2, 2, 3);
    em_tensor *wide = em_expand(row, 2, SH(2, 8)); /* stride 0 */
    chain_expect(fast, fresh, "fresh");
    chain_expect(fast, rows, "a slice with an offset: the same guards");
    EXPECT_STATS(fast, 2, 1, 1, 0);
    chain_expect(fast, wide, "expanded");
    EXPECT_STATS(fast, 3, 2, 2, 0);
    em_release(base), em_release(fresh), em_release(rows), em_release(row), em_release(wide);
    em_compiled_free((void *)fast);
}

Test(compile, runs_tensors_with_zero_sized_dims_as_eager_does) {
    globals_init();
    __typeof__(&tiny) fast = EM_COMPILE(tiny, "tensor(tensor)");
    __typeof__(&chain) fast2 = EM_COMPILE(chain, "tensor(tensor)");
    em_tensor *x = em_zeros(EM_F32, 2, SH(0, 16));
    tiny_expect(fast, x, "no rows");
    chain_expect(fast2, x, "no rows");
    em_release(x);
    em_compiled_free((void *)fast);
    em_compiled_free((void *)fast2);
    globals_fini();
}

/* 32 tensor arguments of 8 dims each: the largest signature and guard key. */
#define P8(a) em_tensor *a##0, em_tensor *a##1, em_tensor *a##2, em_tensor *a##3, em_tensor *a##4, \
              em_tensor *a##5, em_tensor *a##6, em_tensor *a##7
#define A8(a) a##0, a##1, a##2, a##3, a##4, a##5, a##6, a##7
static em_tensor *sum32(P8(a), P8(b), P8(c), P8(d)) {
    em_tensor *all[32] = {A8(a), A8(b), A8(c), A8(d)};
    em_scope_begin();
    em_tensor *s = all[0];
    for (int i = 1; i < 32; i++) s = em_add(em_mul(s, all[i]), all[i]);
    s = em_keep(s == all[0] ? NULL : s);
    em_scope_end();
    return s;
}

Test(compile, takes_thirty_two_tensor_arguments_of_eight_dims) {
    char sig[512] = "tensor(";
    for (int i = 0; i < 32; i++) strcat(sig, i ? ", tensor" : "tensor");
    strcat(sig, ")");
    __typeof__(&sum32) fast = em_compile((void *)sum32, sig, NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *t[32];
    for (int i = 0; i < 32; i++) t[i] = uniform(8, SH(1, 2, 1, 2, 1, 1, 2, 1 + i % 2), 0.5, 1, (uint64_t)i);
#define T8(k) t[k], t[k + 1], t[k + 2], t[k + 3], t[k + 4], t[k + 5], t[k + 6], t[k + 7]
    for (int r = 0; r < 2; r++) {
        em_tensor *want = sum32(T8(0), T8(8), T8(16), T8(24));
        em_tensor *got = fast(T8(0), T8(8), T8(16), T8(24));
        expect_identical(got, want, "32 arguments");
        em_release(want), em_release(got);
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    /* A different last argument is a miss: the whole key is compared. */
    em_tensor *last = t[31];
    t[31] = cast(em_retain(last), EM_F64);
    em_tensor *want = sum32(T8(0), T8(8), T8(16), T8(24));
    em_tensor *got = fast(T8(0), T8(8), T8(16), T8(24));
    expect_identical(got, want, "the last argument changed");
    EXPECT_STATS(fast, 3, 2, 2, 0);
    em_release(want), em_release(got), em_release(last);
    for (int i = 0; i < 32; i++) em_release(t[i]);
    em_compiled_free((void *)fast);
}

Test(compile, keeps_two_compilations_of_one_function_apart) {
    __typeof__(&chain) f = EM_COMPILE(chain, "tensor(tensor)"), g = EM_COMPILE(chain, "tensor(tensor)");
    cr_assert(f && g && f != g);
    em_tensor *x = uniform(2, SH(2, 3), -1, 1, 1), *y = uniform(2, SH(4, 3), -1, 1, 2);
    chain_expect(f, x, "f");
    chain_expect(f, x, "f");
    chain_expect(g, y, "g");
    EXPECT_STATS(f, 2, 1, 1, 0);
    EXPECT_STATS(g, 1, 1, 1, 0);
    em_compiled_free((void *)f);
    chain_expect(g, y, "g after f was freed");
    EXPECT_STATS(g, 2, 1, 1, 0);
    em_release(x), em_release(y);
    em_compiled_free((void *)g);
}

/* ---- out of memory ------------------------------------------------------------------------------------------ */

Test(compile, survives_an_allocation_failure_at_every_point_of_em_compile) {
    for (long n = 1; n <= 12; n++) {
        rt_alloc_fail_after(n);
        em_clear_error();
        void *f = em_compile((void *)chain, "tensor(tensor)", &(em_options){.name = "chain"});
        rt_alloc_fail_after(0);
        if (!f) {
            cr_expect(strstr(em_last_error(), "out of memory"), "n=%ld: %s", n, em_last_error());
            continue;
        }
        em_tensor *x = uniform(1, SH(9), -1, 1, (uint64_t)n);
        chain_expect(f, x, "after an injected failure");
        em_release(x);
        em_compiled_free(f);
    }
}

Test(compile, survives_an_allocation_failure_at_every_point_of_the_first_call) {
    globals_init();
    em_tensor *x = randn(2, SH(4, 16), 1);
    em_tensor *want = tiny(x);
    size_t base = live();
    int failed = 0, succeeded = 0;
    for (long n = 1; n <= 80; n++) {
        __typeof__(&tiny) fast = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
        cr_assert(fast, "%s", em_last_error());
        for (int scoped = 0; scoped <= 1; scoped++) {
            if (scoped) em_scope_begin();
            rt_alloc_fail_after(n);
            em_clear_error();
            em_tensor *got = fast(x);
            rt_alloc_fail_after(0);
            if (got) {
                expect_identical(got, want, "a call that survived an injected failure");
                succeeded++;
            } else {
                cr_expect_neq(em_last_error()[0], '\0', "n=%ld: NULL without a message", n);
                failed++;
            }
            if (!scoped) em_release(got);
            if (scoped) em_scope_end();
            /* Afterwards the function works. */
            got = fast(x);
            expect_identical(got, want, "the call after an injected failure");
            em_release(got);
        }
        em_compiled_free((void *)fast);
        cr_expect_eq(live(), base, "n=%ld: tensors left behind", n);
    }
    cr_expect_gt(failed, 0, "the injected failures were hit");
    cr_expect_gt(succeeded, 0, "late injections leave the call intact");
    em_release(want), em_release(x);
    globals_fini();
}

/* What a model sees of the layout of each view it makes (strides of a
 * transpose, a stepped slice, an expand, a permute of a reshape, an unsqueeze
 * of a transpose), recorded by the model itself on each run. */
enum { NVIEWS = 5 };
static int64_t seen[NVIEWS][EM_MAX_DIMS]; /* strides; 0 for size-1 dims, whose stride is moot */
static int seen_nd[NVIEWS];

static void note(int k, const em_tensor *t) {
    memset(seen[k], 0, sizeof seen[k]);
    seen_nd[k] = t ? em_ndim(t) : -1;
    for (int i = 0; t && i < em_ndim(t); i++) seen[k][i] = em_shape(t)[i] == 1 ? 0 : em_strides(t)[i];
}

static em_tensor *views(em_tensor *x) { /* x: [4,6] */
    em_scope_begin();
    note(0, em_transpose(x, 0, 1));
    note(1, em_slice(x, 1, 0, 6, 2));
    note(2, em_expand(em_slice(x, 0, 0, 1, 1), 2, SH(3, 6)));
    note(3, em_permute(em_reshape(x, 3, SH(2, 2, 6)), (int[]){2, 0, 1}));
    note(4, em_unsqueeze(em_transpose(x, 0, 1), 1));
    em_tensor *y = em_keep(em_neg(x));
    em_scope_end();
    return y;
}

Test(compile, sees_the_strides_of_every_view_while_tracing_as_eager_code_does) {
    static const char *names[NVIEWS] = {"transpose", "slice step 2", "expand", "permute",
                                        "unsqueeze of a transpose"};
    em_tensor *x = uniform(2, SH(4, 6), -1, 1, 1);
    em_tensor *want = views(x);
    int64_t eager[NVIEWS][EM_MAX_DIMS];
    int eager_nd[NVIEWS];
    memcpy(eager, seen, sizeof eager);
    memcpy(eager_nd, seen_nd, sizeof eager_nd);
    __typeof__(&views) fast = EM_COMPILE(views, "tensor(tensor)");
    em_tensor *got = fast(x); /* traces: the model runs on proxies */
    expect_identical(got, want, "views");
    for (int k = 0; k < NVIEWS; k++) {
        char e[128], t[128];
        cr_assert_eq(seen_nd[k], eager_nd[k], "%s", names[k]);
        cr_assert_gt(eager_nd[k], 0, "%s failed: %s", names[k], em_last_error());
        rt_shape_str(e, sizeof e, eager_nd[k], eager[k]);
        rt_shape_str(t, sizeof t, seen_nd[k], seen[k]);
        cr_expect(memcmp(seen[k], eager[k], sizeof eager[k]) == 0,
                  "%s: strides %s while tracing, %s eagerly", names[k], t, e);
    }
    em_release(want), em_release(got), em_release(x);
    em_compiled_free((void *)fast);
}
