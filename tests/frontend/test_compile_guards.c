/*
 * test_compile_guards.c — when em_compile's cached graphs are used, retraced
 * or bypassed, and how its calls fail (suite `compile`; test_compile.c has the
 * overview, compile_util.h the shared models).
 *
 * Covered:
 *  - guards: misses on shape, dtype and strides (a transposed argument); the
 *    stride of a size-1 dim is no guard; the recompile limit (max_recompiles)
 *    after which calls run eagerly (stats.eager_fallbacks) and still compute
 *    the right results; the default limit of eight graphs; compiling a
 *    compiled function;
 *  - graph breaks: em_item / em_read on a traced tensor fall back to eager;
 *    with fullgraph the call fails with "graph break";
 *  - failures: malformed signatures, em_compile(NULL), em_compiled_free(NULL),
 *    stats and dumps of pointers that em_compile did not return, an op that
 *    fails while tracing (the call returns NULL with the op's message and the
 *    function keeps working), NULL tensor arguments, tensors of a trace kept
 *    past it, a run-time failure of a cached graph (an embedding index out of
 *    range);
 *  - layouts of arguments: views with an offset or stride 0, zero-sized dims,
 *    32 tensor arguments of 8 dims (the longest guard key), two compilations
 *    of one function.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frontend.h"
#include "../util.h"
#include "compile_util.h"

/* ---- helpers ------------------------------------------------------------------------------------- */

/* A transposed view of t; t is released. Unlike tu_transposed it may be
 * contiguous, as a [1,8] view with strides [1,1] is. */
static em_tensor *transposed_any(em_tensor *t) {
    em_tensor *v = em_transpose(t, 0, 1);
    em_release(t);
    cr_assert(v, "%s", em_last_error());
    return v;
}

/* ---- guards ------------------------------------------------------------------------------------- */

Test(compile, retraces_on_a_new_shape_dtype_or_layout_and_keeps_the_old_graphs) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = tu_uniform_tensor(2, SH(4, 8), -2, 2, 1);
    em_tensor *shape = tu_uniform_tensor(2, SH(6, 8), -2, 2, 2);
    em_tensor *dtype = tu_cast(tu_uniform_tensor(2, SH(4, 8), -2, 2, 3), EM_F64);
    em_tensor *layout = tu_transposed(tu_uniform_tensor(2, SH(8, 4), -2, 2, 4), 0, 1); /* [4,8], not contiguous */
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
    em_tensor *row = tu_uniform_tensor(2, SH(1, 8), -2, 2, 1);            /* strides [8,1] */
    em_tensor *col = transposed_any(tu_uniform_tensor(2, SH(8, 1), -2, 2, 2)); /* [1,8], strides [1,1] */
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
    for (int i = 0; i < 5; i++) x[i] = tu_uniform_tensor(2, SH(2 + i, 8), -2, 2, (uint64_t)i);
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
        em_tensor *x = tu_uniform_tensor(1, SH(1 + i), -1, 1, (uint64_t)i);
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
    em_tensor *x = tu_uniform_tensor(2, SH(3, 3), -1, 1, 1);
    chain_expect(twice, x, "first");
    chain_expect(twice, x, "second");
    EXPECT_STATS(twice, 2, 1, 1, 0);
    EXPECT_STATS(once, 1, 0, 0, 0); /* inlined into the outer trace */
    em_release(x);
    em_compiled_free((void *)twice);
    em_compiled_free((void *)once);
}

/* ---- graph breaks -------------------------------------------------------------------------------- */

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
        em_tensor *x = tu_uniform_tensor(2, SH(3, 5), -1, 4, (uint64_t)i);
        em_tensor *want = by_max(x), *got = fast(x);
        tu_expect_identical(got, want, "em_item");
        em_release(want), em_release(got), em_release(x);
    }
    /* The break is remembered for these guards: one trace, three eager runs. */
    EXPECT_STATS(fast, 3, 0, 1, 3);
    int status;
    char *g = cu_dump((void *)fast, "graph", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(g, "no graph"), "%s", g);
    free(g);
    em_compiled_free((void *)fast);

    void (*fast2)(em_tensor *, em_tensor **) = em_compile((void *)plus_first, "void(tensor, tensor *)", NULL);
    cr_assert(fast2, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        em_tensor *x = tu_uniform_tensor(2, SH(4, 4), -1, 1, (uint64_t)i), *want = NULL, *got = NULL;
        plus_first(x, &want);
        fast2(x, &got);
        tu_expect_identical(got, want, "em_read");
        em_release(want), em_release(got), em_release(x);
    }
    EXPECT_STATS(fast2, 2, 0, 1, 2);
    em_compiled_free((void *)fast2);
}

Test(compile, fails_a_graph_break_with_fullgraph) {
    __typeof__(&by_max) fast = em_compile((void *)by_max, "tensor(tensor)",
                                          &(em_options){.fullgraph = 1, .name = "by_max"});
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(3, 5), -1, 4, 1);
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
    g_w = tu_randn(2, SH(4, 16), 1);
    __typeof__(&add_global) fast = EM_COMPILE(add_global, "tensor(tensor)");
    em_tensor *ok = tu_randn(2, SH(4, 16), 2), *bad = tu_randn(2, SH(6, 16), 3), *row = tu_randn(2, SH(1, 16), 4);
    em_tensor *want = add_global(ok), *got = fast(ok);
    tu_expect_identical(got, want, "first");
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
    tu_expect_identical(got, want, "the cached graph after the failures");
    em_release(got), em_release(want);
    want = add_global(row);
    got = fast(row);
    tu_expect_identical(got, want, "a new shape after the failures");
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
    tu_expect_identical(y, wy, "y");
    tu_expect_identical(z, wz, "z");
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
    em_tensor *x = tu_uniform_tensor(2, SH(2, 3), -1, 1, 1);
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
    tu_expect_identical(got, want, "add afterwards");
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
    em_tensor *x = tu_uniform_tensor(2, SH(2, 3), -1, 1, 1);
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
    em_tensor *x = tu_uniform_tensor(2, SH(2, 3), -1, 1, 1);
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

/* ---- run-time failures of a cached graph ---------------------------------------------------------------- */

static em_tensor *lookup_rows(em_tensor *table, em_tensor *idx) {
    em_scope_begin();
    em_tensor *y = em_keep(em_sum(em_embedding(table, idx), -1, 0));
    em_scope_end();
    return y;
}

Test(compile, returns_the_kernels_message_when_a_cached_graph_fails_at_run_time) {
    __typeof__(&lookup_rows) fast = EM_COMPILE(lookup_rows, "tensor(tensor, tensor)");
    em_tensor *table = tu_randn(2, SH(6, 4), 1);
    int64_t good_i[3] = {0, 5, 2}, bad_i[3] = {1, 6, 2};
    em_tensor *good = em_from_data(EM_I64, 1, SH(3), good_i), *bad = em_from_data(EM_I64, 1, SH(3), bad_i);
    em_tensor *want = lookup_rows(table, good), *got = fast(table, good);
    tu_expect_identical(got, want, "valid indices");
    em_release(got);
    em_clear_error();
    got = fast(table, bad); /* the same guards: the cached graph runs and its kernel fails */
    cr_expect_null(got);
    cr_expect(strstr(em_last_error(), "out of range"), "message: %s", em_last_error());
    em_release(got);
    got = fast(table, good);
    tu_expect_identical(got, want, "valid indices again");
    EXPECT_STATS(fast, 3, 1, 1, 0);
    em_release(got), em_release(want), em_release(table), em_release(good), em_release(bad);
    em_compiled_free((void *)fast);
}

/* ---- layouts of arguments --------------------------------------------------------------------------------- */

Test(compile, runs_a_view_with_an_offset_and_a_broadcast_view_as_eager_does) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_tensor *base = tu_uniform_tensor(2, SH(4, 8), -2, 2, 1);
    em_tensor *fresh = tu_uniform_tensor(2, SH(2, 8), -2, 2, 2);
    em_tensor *rows = em_slice(base, 0, 1, 3, 1); /* [2,8] at offset 8, contiguous strides */
    em_tensor *row = tu_uniform_tensor(2, SH(1, 8), -2, 2, 3);
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
    for (int i = 0; i < 32; i++) t[i] = tu_uniform_tensor(8, SH(1, 2, 1, 2, 1, 1, 2, 1 + i % 2), 0.5, 1, (uint64_t)i);
#define T8(k) t[k], t[k + 1], t[k + 2], t[k + 3], t[k + 4], t[k + 5], t[k + 6], t[k + 7]
    for (int r = 0; r < 2; r++) {
        em_tensor *want = sum32(T8(0), T8(8), T8(16), T8(24));
        em_tensor *got = fast(T8(0), T8(8), T8(16), T8(24));
        tu_expect_identical(got, want, "32 arguments");
        em_release(want), em_release(got);
    }
    EXPECT_STATS(fast, 2, 1, 1, 0);
    /* A different last argument is a miss: the whole key is compared. */
    em_tensor *last = t[31];
    t[31] = tu_cast(em_retain(last), EM_F64);
    em_tensor *want = sum32(T8(0), T8(8), T8(16), T8(24));
    em_tensor *got = fast(T8(0), T8(8), T8(16), T8(24));
    tu_expect_identical(got, want, "the last argument changed");
    EXPECT_STATS(fast, 3, 2, 2, 0);
    em_release(want), em_release(got), em_release(last);
    for (int i = 0; i < 32; i++) em_release(t[i]);
    em_compiled_free((void *)fast);
}

Test(compile, keeps_two_compilations_of_one_function_apart) {
    __typeof__(&chain) f = EM_COMPILE(chain, "tensor(tensor)"), g = EM_COMPILE(chain, "tensor(tensor)");
    cr_assert(f && g && f != g);
    em_tensor *x = tu_uniform_tensor(2, SH(2, 3), -1, 1, 1), *y = tu_uniform_tensor(2, SH(4, 3), -1, 1, 2);
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

