/*
 * test_compile.c — em_compile as a user meets it: a function pointer of the
 * model's own C type that traces once per guard and then runs the graph.
 * Guards, graph breaks and failures are in test_compile_guards.c; em_dump,
 * dump files, the environment and out-of-memory in test_compile_observe.c;
 * the models and helpers they share in compile_util.h.
 *
 * Every result of a compiled call is compared with the eager call of the same
 * model function, bit for bit (dtype, shape, strides, bytes): the compiled path
 * interprets the captured graph with the eager kernels.
 *
 * Covered:
 *  - calling: a guard hit reuses the graph (stats: calls, compiles, guard
 *    misses) and computes with the new data; several outputs through tensor *
 *    out-parameters; scalar arguments of every C type, each value its own guard;
 *    out-parameters between scalars; helpers calling helpers; a compiled
 *    function called while another is traced is inlined into that trace;
 *  - constants: a global weight is captured by reference (its data is read at
 *    each call) and the graph keeps it alive after the global's reference is
 *    released, until em_compiled_free (refcounts and live bytes);
 *  - ownership: results go to the caller's innermost open scope, or to the
 *    caller when none is open;
 *  - eager equivalence of what a model observes while traced: a model that
 *    checks an op's NULL result and recovers, and the strides of the views it
 *    makes (transpose, slice, expand, permute, unsqueeze), which a model may
 *    branch on (em_is_contiguous, em_strides).
 *
 * Models open their own scope and em_keep what they return, so they leak
 * nothing whether or not the caller has a scope open, eagerly or traced.
 */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "../util.h"
#include "compile_util.h"

/* ---- helpers ------------------------------------------------------------------------------------- */

static bool same_bytes(em_tensor *a, em_tensor *b) {
    size_t n, m;
    char *x = tu_bytes_of(a, &n), *y = tu_bytes_of(b, &m);
    bool same = n == m && memcmp(x, y, n) == 0;
    free(x);
    free(y);
    return same;
}

/* ---- calling ---------------------------------------------------------------------------------- */

Test(compile, reuses_the_graph_when_guards_match) {
    globals_init();
    __typeof__(&tiny) fast = EM_COMPILE(tiny, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    cr_assert_neq((void *)fast, (void *)tiny);
    EXPECT_STATS(fast, 0, 0, 0, 0);
    for (int i = 0; i < 4; i++) {
        em_tensor *x = tu_randn(2, SH(4, 16), 10 + (uint64_t)i); /* new data, same guards */
        tiny_expect(fast, x, "call");
        em_release(x);
        EXPECT_STATS(fast, i + 1, 1, 1, 0);
    }
    em_stats st = cu_stats_of(fast);
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
        em_tensor *x = tu_uniform_tensor(2, SH(5, 9), -2, 2, (uint64_t)i);
        em_tensor *wm = NULL, *wc = NULL, *gm = NULL, *gc = NULL;
        moments(x, &wm, &wc);
        fast(x, &gm, &gc);
        tu_expect_compiled(gm, wm, "mean");
        tu_expect_compiled(gc, wc, "centered");
        cr_expect_eq(cu_refs(gm), 1);
        cr_expect_eq(cu_refs(gc), 1);
        em_release(wm), em_release(wc), em_release(gm), em_release(gc), em_release(x);
    }
    EXPECT_STATS(fast, 3, 1, 1, 0);
    int status;
    char *g = cu_dump(fast, "graph", &status);
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
    em_tensor *x = tu_uniform_tensor(2, SH(3, 4), -1, 1, 1);
    for (int i = 0; i < 2; i++) {
        em_tensor *wa, *wb, *wc, *ga = NULL, *gb = NULL, *gc = NULL;
        three_outs(x, &wa, &wb, &wc);
        fast(x, &ga, &gb, &gc);
        tu_expect_compiled(ga, wa, "a");
        cr_expect_eq(ga, gb, "one value written to two out-parameters is one tensor, as eagerly");
        cr_expect_eq(gc, x, "an argument returned as is is the argument, as eagerly");
        cr_expect_eq(cu_refs(ga), 2);
        em_release(wa), em_release(wb), em_release(wc);
        em_release(ga), em_release(gb), em_release(gc);
        cr_expect_eq(cu_refs(x), 1, "the references handed out were returned");
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
    em_tensor *x = tu_uniform_tensor(2, SH(3, 7), -2, 2, 1);
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
        tu_expect_compiled(got, want, what);
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
    em_tensor *x = tu_uniform_tensor(2, SH(3, 6), -1, 1, 1);
    static const struct { int k; double s; } calls[] = {{2, 0.5}, {2, 0.5}, {4, 0.5}, {4, -2.0}};
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        em_tensor *wt, *ws, *gt = NULL, *gs = NULL;
        interleaved(x, calls[i].k, &wt, calls[i].s, &ws);
        fast(x, calls[i].k, &gt, calls[i].s, &gs);
        tu_expect_compiled(gt, wt, "top");
        tu_expect_compiled(gs, ws, "scaled");
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
    em_tensor *w = tu_randn(2, SH(12, 12), 1), *b = tu_randn(1, SH(12), 2);
    for (int i = 0; i < 2; i++) {
        em_tensor *x = tu_randn(2, SH(6, 12), 3 + (uint64_t)i);
        em_tensor *want = helpers(x, w, b), *got = fast(x, w, b);
        tu_expect_compiled(got, want, "helpers");
        em_release(want), em_release(got), em_release(x);
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    int status;
    char *g = cu_dump(fast, "graph", &status);
    cr_expect_eq(cu_count_of(g, " = silu "), 2, "two inlined residual blocks:\n%s", g);
    cr_expect_eq(cu_count_of(g, " = linear "), 2, "%s", g);
    cr_expect_eq(cu_count_of(g, " = rms_norm "), 2, "%s", g);
    cr_expect_eq(cu_count_of(g, " = add "), 2, "%s", g);
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
        em_tensor *x = tu_uniform_tensor(2, SH(4, 10), -3, 3, (uint64_t)i);
        inner_used = inner;
        em_tensor *want = outer(x);
        inner_used = inner_fast;
        em_tensor *got = fast(x);
        tu_expect_compiled(got, want, "outer");
        em_release(want), em_release(got), em_release(x);
    }
    EXPECT_STATS(fast, 3, 1, 1, 0);
    /* Called once, while outer was traced: it ran on proxies and was not compiled. */
    EXPECT_STATS(inner_fast, 1, 0, 0, 0);
    int status;
    char *g = cu_dump((void *)fast, "graph", &status);
    cr_expect(strstr(g, " = abs ") && strstr(g, " = exp ") && strstr(g, " = softmax "),
              "inner's ops are in outer's graph:\n%s", g);
    free(g);
    g = cu_dump((void *)inner_fast, "graph", &status);
    cr_expect(strstr(g, "no graph"), "inner has no graph of its own:\n%s", g);
    free(g);
    /* Called on its own, inner compiles as usual. */
    em_tensor *x = tu_uniform_tensor(2, SH(4, 10), -3, 3, 9);
    em_tensor *want = inner(x), *got = inner_fast(x);
    tu_expect_compiled(got, want, "inner");
    EXPECT_STATS(inner_fast, 2, 1, 1, 0);
    em_release(want), em_release(got), em_release(x);
    em_compiled_free((void *)fast);
    em_compiled_free((void *)inner_fast);
}

/* ---- constants captured by reference ---------------------------------------------------------- */

static em_tensor *linear_global(em_tensor *x) { return em_linear(x, g_w, g_b); }

Test(compile, keeps_a_global_weight_alive_after_the_global_releases_it) {
    size_t start = tu_live_bytes();
    g_w = tu_randn(2, SH(8, 16), 1); /* [out, in] for em_linear */
    g_b = tu_randn(1, SH(8), 2);
    em_tensor *x = tu_randn(2, SH(4, 16), 3);
    size_t w_bytes = 8 * 16 * 4, b_bytes = 8 * 4, x_bytes = 4 * 16 * 4, y_bytes = 4 * 8 * 4;
    cr_assert_eq(tu_live_bytes(), start + w_bytes + b_bytes + x_bytes);

    __typeof__(&linear_global) fast = EM_COMPILE(linear_global, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *want = linear_global(x), *got = fast(x);
    tu_expect_compiled(got, want, "first call");
    em_release(got);
    /* The captured graph (for em_dump's `graph`) and the optimised one share it. */
    cr_expect_eq(cu_refs(g_w), 3, "the graphs hold a reference to the weight");
    cr_expect_eq(cu_refs(g_b), 3, "the graphs hold a reference to the bias");

    em_tensor *w = g_w, *b = g_b;
    em_release(g_w), em_release(g_b);
    g_w = g_b = NULL; /* the global lets go; the model could not even be traced again */
    cr_expect_eq(cu_refs(w), 2);
    cr_expect_eq(cu_refs(b), 2);
    cr_expect_eq(tu_live_bytes(), start + w_bytes + b_bytes + x_bytes + y_bytes,
                 "the weights' storage is still alive");
    got = fast(x);
    tu_expect_compiled(got, want, "after the global released the weight");
    em_release(got);
    EXPECT_STATS(fast, 2, 1, 1, 0);

    em_compiled_free((void *)fast);
    cr_expect_eq(tu_live_bytes(), start + x_bytes + y_bytes, "freeing the function released the weights");
    em_release(want), em_release(x);
    cr_expect_eq(tu_live_bytes(), start);
}

Test(compile, reads_a_global_weight_by_reference_at_each_call) {
    globals_init();
    __typeof__(&tiny) fast = EM_COMPILE(tiny, "tensor(tensor)");
    em_tensor *x = tu_randn(2, SH(3, 16), 5);
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
        tu_expect_compiled(got, want, "no arguments");
        em_release(want), em_release(got);
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    em_compiled_free((void *)fast);
    globals_fini();
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
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    __typeof__(&tanh_mm) fast = EM_COMPILE(tanh_mm, "tensor(tensor)");
    size_t base = tu_live_bytes();
    for (int i = 0; i < 3; i++) { /* the first call traces inside the scope */
        em_scope_begin();
        em_tensor *want = tanh_mm(x), *got = fast(x);
        tu_expect_compiled(got, want, "in a scope");
        cr_expect_eq(cu_refs(got), 1, "the scope holds the one reference");
        em_scope_end(); /* releases both; nothing released by hand */
        cr_expect_eq(tu_live_bytes(), base + cu_arena((void *)fast), "call %d left tensors behind "
                     "(the arena is kept for the next call)", i);
    }
    /* Nested: the innermost scope takes it; em_keep moves it out. */
    em_scope_begin();
    em_scope_begin();
    em_tensor *kept = em_keep(fast(x));
    em_tensor *dropped = fast(x);
    cr_assert(kept && dropped);
    em_scope_end();
    size_t arena = cu_arena((void *)fast);
    cr_expect_eq(arena, 0, "x@w+b stays in registers: the GEMM's epilogue writes the output");
    cr_expect_eq(tu_live_bytes(), base + arena + 4 * 8 * 4, "the kept result is alive, the other freed");
    cr_expect_eq(cu_refs(kept), 1);
    em_scope_end();
    cr_expect_eq(tu_live_bytes(), base + arena);

    void (*fast2)(em_tensor *, em_tensor **, em_tensor **) =
        em_compile((void *)moments, "void(tensor, tensor *, tensor *)", NULL);
    for (int i = 0; i < 2; i++) {
        em_scope_begin();
        em_tensor *m, *c;
        fast2(x, &m, &c);
        cr_expect(m && c, "%s", em_last_error());
        em_scope_end();
        cr_expect_eq(tu_live_bytes(), base + arena + cu_arena((void *)fast2),
                     "out-parameters are adopted by the scope too");
    }
    em_compiled_free((void *)fast2);
    EXPECT_STATS(fast, 5, 1, 1, 0);
    em_compiled_free((void *)fast);
    em_release(x);
    globals_fini();
}

Test(compile, gives_results_to_the_caller_when_no_scope_is_open) {
    globals_init();
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    __typeof__(&tanh_mm) fast = EM_COMPILE(tanh_mm, "tensor(tensor)");
    size_t base = tu_live_bytes();
    for (int i = 0; i < 2; i++) {
        em_tensor *got = fast(x);
        cr_assert(got, "%s", em_last_error());
        cr_expect_eq(cu_refs(got), 1);
        size_t arena = cu_arena((void *)fast);
        cr_expect_eq(tu_live_bytes(), base + arena + 4 * 8 * 4);
        em_release(got);
        cr_expect_eq(tu_live_bytes(), base + arena);
    }
    em_compiled_free((void *)fast);
    cr_expect_eq(tu_live_bytes(), base, "em_compiled_free releases the kept arena");
    em_release(x);
    globals_fini();
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
    em_tensor *x = tu_uniform_tensor(2, SH(3, 4), -2, 2, 1);
    em_tensor *want = layout_branch(x), *got = fast(x);
    tu_expect_compiled(got, want, "a branch on em_is_contiguous of a transpose");
    em_release(want), em_release(got), em_release(x);
    em_compiled_free((void *)fast);
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
    em_tensor *x = tu_uniform_tensor(2, SH(4, 6), -1, 1, 1);
    em_tensor *want = views(x);
    int64_t eager[NVIEWS][EM_MAX_DIMS];
    int eager_nd[NVIEWS];
    memcpy(eager, seen, sizeof eager);
    memcpy(eager_nd, seen_nd, sizeof eager_nd);
    __typeof__(&views) fast = EM_COMPILE(views, "tensor(tensor)");
    em_tensor *got = fast(x); /* traces: the model runs on proxies */
    tu_expect_compiled(got, want, "views");
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
        tu_expect_compiled(got, want, "the op succeeds");
        em_release(want), em_release(got);
        want = model(odd);
        cr_assert(want, "eagerly the model recovers: %s", em_last_error());
        em_clear_error();
        got = fast(odd);
        cr_expect(got, "the model returned a tensor, yet the compiled call failed: %s",
                  em_last_error());
        if (got) tu_expect_compiled(got, want, "the op fails and the model recovers");
        em_release(want), em_release(got);
    }
    EXPECT_STATS(fast, 4, 2, 2, 0);
    em_compiled_free((void *)fast);
}

Test(compile, follows_a_model_that_recovers_from_a_failed_squeeze_as_eager_does) {
    em_tensor *one = tu_uniform_tensor(2, SH(1, 5), -1, 1, 1), *three = tu_uniform_tensor(2, SH(3, 5), -1, 1, 2);
    expect_recovery(squeeze_if_possible, one, three);
    em_release(one), em_release(three);
}

Test(compile, follows_a_model_that_recovers_from_a_failed_add_as_eager_does) {
    globals_init();
    em_tensor *fits = tu_uniform_tensor(2, SH(3, 8), -1, 1, 1), *odd = tu_uniform_tensor(2, SH(3, 5), -1, 1, 2);
    expect_recovery(bias_if_it_fits, fits, odd);
    em_release(fits), em_release(odd);
    globals_fini();
}

