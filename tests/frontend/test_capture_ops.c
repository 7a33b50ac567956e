/*
 * test_capture_ops.c — every public op, captured by em_compile and run from the
 * graph, computes what the op computes eagerly.
 *
 * For each op a tiny model function (one op, or a short chain where the op
 * needs a prepared operand) is compiled and called twice: the first call traces
 * it and runs the captured graph, the second hits the cache. Both results must
 * equal the eager call of the same function bit for bit (dtype, shape, strides
 * and bytes): today the compiled path interprets the graph with the very
 * kernels eager calls use. Each compiled function must have traced exactly once
 * (one compile, one guard miss, no eager fallback), must leave its inputs
 * untouched, and its "graph" dump must name the op as ir/ops.def does. Several
 * public names share one IR op: em_transpose records a `permute`, em_squeeze
 * and em_unsqueeze record a `reshape`.
 *
 * Covered: every binary and unary elementwise op (f32, plus integer and mixed
 * dtypes), the six comparisons, where, cast to and from every dtype, sum / mean
 * / max / min / argmax on several axes with keepdim 0 and 1 (axis and keepdim
 * are int arguments of the model, so each combination is its own guard),
 * softmax and log_softmax, layer_norm with every combination of weight and
 * bias, rms_norm with and without weight, matmul (2-D, batched, broadcast
 * batch, and each 1-D case), linear with and without bias, embedding, reshape
 * (of a contiguous input, of a transposed argument, of a transpose made inside
 * the model), permute, transpose, slice with steps, concat of three, expand,
 * unsqueeze, squeeze and contiguous; ops whose operands mix arguments and
 * globals (captured constants); and a chain of many ops in one graph.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "../util.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

/* What em_dump(fn, stage) writes. */
static char *dump(void *fn, const char *stage) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    int st = em_dump(fn, stage, f);
    fclose(f);
    cr_expect_eq(st, 0, "em_dump %s: %s", stage, em_last_error());
    return text;
}

/* ---- the runner ------------------------------------------------------------------------------ */

typedef em_tensor *(*fn1)(em_tensor *);
typedef em_tensor *(*fn2)(em_tensor *, em_tensor *);
typedef em_tensor *(*fn3)(em_tensor *, em_tensor *, em_tensor *);

static em_tensor *call(void *f, int n, em_tensor **a) {
    switch (n) {
    case 1: return ((fn1)f)(a[0]);
    case 2: return ((fn2)f)(a[0], a[1]);
    default: return ((fn3)f)(a[0], a[1], a[2]);
    }
}

static const char *const sigs[] = {"", "tensor(tensor)", "tensor(tensor, tensor)",
                                   "tensor(tensor, tensor, tensor)"};

/* Compiles model (n tensor arguments), calls it twice and expects both results
 * identical to the eager call, one trace, the inputs untouched and the op
 * `irop` in the captured graph. Releases the arguments. */
static void check_model(const char *what, void *model, const char *irop, int n, em_tensor *a0,
                        em_tensor *a1, em_tensor *a2) {
    em_tensor *a[3] = {a0, a1, a2};
    char *before[3] = {0};
    size_t len[3];
    for (int i = 0; i < n; i++) {
        cr_assert(a[i], "%s: argument %d", what, i);
        before[i] = tu_bytes_of(a[i], &len[i]);
    }
    em_clear_error();
    em_tensor *want = call(model, n, a);
    cr_assert(want, "%s: eager: %s", what, em_last_error());

    void *fast = em_compile(model, sigs[n], &(em_options){.name = what});
    cr_assert(fast, "%s: em_compile: %s", what, em_last_error());
    cr_assert_neq(fast, model);
    em_tensor *first = call(fast, n, a);
    tu_expect_compiled(first, want, what);
    em_tensor *second = call(fast, n, a);
    tu_expect_compiled(second, want, what);

    em_stats st;
    cr_assert_eq(em_compiled_stats(fast, &st), 0, "%s", em_last_error());
    cr_expect_eq(st.calls, 2, "%s: calls %llu", what, (unsigned long long)st.calls);
    cr_expect_eq(st.compiles, 1, "%s: compiles %llu", what, (unsigned long long)st.compiles);
    cr_expect_eq(st.guard_misses, 1, "%s: guard misses %llu", what,
                 (unsigned long long)st.guard_misses);
    cr_expect_eq(st.eager_fallbacks, 0, "%s: ran eagerly", what);

    char *graph = dump(fast, "graph");
    char needle[64];
    snprintf(needle, sizeof needle, " = %s ", irop);
    cr_expect(graph && strstr(graph, needle), "%s: the graph does not record `%s`:\n%s", what,
              irop, graph ? graph : "(null)");
    free(graph);

    for (int i = 0; i < n; i++) {
        size_t m;
        char *after = tu_bytes_of(a[i], &m);
        cr_expect(m == len[i] && memcmp(after, before[i], m) == 0,
                  "%s: argument %d was modified", what, i);
        free(after);
        free(before[i]);
        em_release(a[i]);
    }
    em_release(first);
    em_release(second);
    em_release(want);
    em_compiled_free(fast);
}

#define CHECK1(model, irop, x) check_model(#model, (void *)model, irop, 1, x, NULL, NULL)
#define CHECK2(model, irop, x, y) check_model(#model, (void *)model, irop, 2, x, y, NULL)
#define CHECK3(model, irop, x, y, z) check_model(#model, (void *)model, irop, 3, x, y, z)

/* ---- elementwise ------------------------------------------------------------------------------ */

static em_tensor *m_add(em_tensor *a, em_tensor *b) { return em_add(a, b); }
static em_tensor *m_sub(em_tensor *a, em_tensor *b) { return em_sub(a, b); }
static em_tensor *m_mul(em_tensor *a, em_tensor *b) { return em_mul(a, b); }
static em_tensor *m_div(em_tensor *a, em_tensor *b) { return em_div(a, b); }
static em_tensor *m_pow(em_tensor *a, em_tensor *b) { return em_pow(a, b); }
static em_tensor *m_maximum(em_tensor *a, em_tensor *b) { return em_maximum(a, b); }
static em_tensor *m_minimum(em_tensor *a, em_tensor *b) { return em_minimum(a, b); }
static em_tensor *m_eq(em_tensor *a, em_tensor *b) { return em_eq(a, b); }
static em_tensor *m_ne(em_tensor *a, em_tensor *b) { return em_ne(a, b); }
static em_tensor *m_lt(em_tensor *a, em_tensor *b) { return em_lt(a, b); }
static em_tensor *m_le(em_tensor *a, em_tensor *b) { return em_le(a, b); }
static em_tensor *m_gt(em_tensor *a, em_tensor *b) { return em_gt(a, b); }
static em_tensor *m_ge(em_tensor *a, em_tensor *b) { return em_ge(a, b); }
static em_tensor *m_where(em_tensor *c, em_tensor *a, em_tensor *b) { return em_where(c, a, b); }

static const struct {
    const char *name;
    fn2 fn;
} binary_ops[] = {
    {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow},
    {"maximum", m_maximum}, {"minimum", m_minimum}, {"eq", m_eq}, {"ne", m_ne},
    {"lt", m_lt}, {"le", m_le}, {"gt", m_gt}, {"ge", m_ge},
};

Test(capture, records_every_binary_op_with_broadcasting_as_eager_computes_it) {
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++) {
        /* Positive bases keep pow real; small integers in floats give ties for
         * the comparisons. */
        em_tensor *a = tu_ints(EM_F32, 3, SH(4, 1, 6), 5, 1);
        em_tensor *b = tu_uniform_tensor(2, SH(3, 1), 0.5, 3.0, 7 + i);
        check_model(binary_ops[i].name, (void *)binary_ops[i].fn, binary_ops[i].name, 2, a, b, NULL);
    }
}

Test(capture, records_binary_ops_on_integers_and_mixed_dtypes) {
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s_i64", binary_ops[i].name);
        check_model(what, (void *)binary_ops[i].fn, binary_ops[i].name, 2,
                    tu_ints(EM_I64, 2, SH(3, 5), 9, -4), tu_ints(EM_I64, 1, SH(5), 3, 1), NULL);
        snprintf(what, sizeof what, "%s_i32_f64", binary_ops[i].name);
        check_model(what, (void *)binary_ops[i].fn, binary_ops[i].name, 2,
                    tu_ints(EM_I32, 2, SH(3, 5), 7, 1),
                    tu_cast(tu_uniform_tensor(0, NULL, 1, 2, 3), EM_F64), NULL);
    }
}

static em_tensor *m_neg(em_tensor *t) { return em_neg(t); }
static em_tensor *m_abs(em_tensor *t) { return em_abs(t); }
static em_tensor *m_exp(em_tensor *t) { return em_exp(t); }
static em_tensor *m_log(em_tensor *t) { return em_log(t); }
static em_tensor *m_sqrt(em_tensor *t) { return em_sqrt(t); }
static em_tensor *m_rsqrt(em_tensor *t) { return em_rsqrt(t); }
static em_tensor *m_reciprocal(em_tensor *t) { return em_reciprocal(t); }
static em_tensor *m_sin(em_tensor *t) { return em_sin(t); }
static em_tensor *m_cos(em_tensor *t) { return em_cos(t); }
static em_tensor *m_tanh(em_tensor *t) { return em_tanh(t); }
static em_tensor *m_erf(em_tensor *t) { return em_erf(t); }
static em_tensor *m_sigmoid(em_tensor *t) { return em_sigmoid(t); }
static em_tensor *m_relu(em_tensor *t) { return em_relu(t); }
static em_tensor *m_gelu(em_tensor *t) { return em_gelu(t); }
static em_tensor *m_gelu_tanh(em_tensor *t) { return em_gelu_tanh(t); }
static em_tensor *m_silu(em_tensor *t) { return em_silu(t); }

static const struct {
    const char *name;
    fn1 fn;
    bool positive; /* needs inputs > 0 */
} unary_ops[] = {
    {"neg", m_neg, false}, {"abs", m_abs, false}, {"exp", m_exp, false},
    {"log", m_log, true}, {"sqrt", m_sqrt, true}, {"rsqrt", m_rsqrt, true},
    {"reciprocal", m_reciprocal, true}, {"sin", m_sin, false}, {"cos", m_cos, false},
    {"tanh", m_tanh, false}, {"erf", m_erf, false}, {"sigmoid", m_sigmoid, false},
    {"relu", m_relu, false}, {"gelu", m_gelu, false}, {"gelu_tanh", m_gelu_tanh, false},
    {"silu", m_silu, false},
};

Test(capture, records_every_unary_op_as_eager_computes_it) {
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++) {
        /* 37 elements: a full vector or two plus a tail. */
        em_tensor *x = unary_ops[i].positive ? tu_uniform_tensor(2, SH(37, 3), 0.05, 9.0, i)
                                             : tu_uniform_tensor(2, SH(37, 3), -4.0, 4.0, i);
        check_model(unary_ops[i].name, (void *)unary_ops[i].fn, unary_ops[i].name, 1, x, NULL, NULL);
    }
}

Test(capture, records_unary_ops_on_integer_f64_and_transposed_inputs) {
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s_i32", unary_ops[i].name);
        check_model(what, (void *)unary_ops[i].fn, unary_ops[i].name, 1,
                    tu_ints(EM_I32, 2, SH(4, 5), 9, unary_ops[i].positive ? 1 : -4), NULL, NULL);
        snprintf(what, sizeof what, "%s_f64", unary_ops[i].name);
        em_tensor *x = unary_ops[i].positive ? tu_uniform_tensor(1, SH(19), 0.1, 5.0, i)
                                             : tu_uniform_tensor(1, SH(19), -3.0, 3.0, i);
        check_model(what, (void *)unary_ops[i].fn, unary_ops[i].name, 1, tu_cast(x, EM_F64), NULL,
                    NULL);
        snprintf(what, sizeof what, "%s_transposed", unary_ops[i].name);
        check_model(what, (void *)unary_ops[i].fn, unary_ops[i].name, 1,
                    tu_transposed(tu_uniform_tensor(2, SH(6, 9), 0.2, 3.0, i), 0, 1), NULL, NULL);
    }
}

Test(capture, records_where_with_a_computed_condition) {
    em_tensor *x = tu_uniform_tensor(2, SH(5, 6), -1, 1, 1), *zero = em_scalar(EM_F32, 0);
    em_tensor *cond = em_gt(x, zero);
    em_release(x);
    em_release(zero);
    cr_assert(cond);
    CHECK3(m_where, "where", cond, tu_uniform_tensor(2, SH(5, 6), -5, 5, 2),
           tu_uniform_tensor(1, SH(6), 10, 20, 3));
    CHECK3(m_where, "where", tu_ints(EM_I32, 2, SH(3, 4), 2, 0), tu_ints(EM_I64, 2, SH(3, 4), 50, 0),
           tu_uniform_tensor(0, NULL, 1, 2, 4));
}

static em_tensor *m_cast_f32(em_tensor *t) { return em_cast(t, EM_F32); }
static em_tensor *m_cast_f64(em_tensor *t) { return em_cast(t, EM_F64); }
static em_tensor *m_cast_i32(em_tensor *t) { return em_cast(t, EM_I32); }
static em_tensor *m_cast_i64(em_tensor *t) { return em_cast(t, EM_I64); }
static em_tensor *m_cast_bool(em_tensor *t) { return em_cast(t, EM_BOOL); }

Test(capture, records_cast_between_every_pair_of_dtypes) {
    static const fn1 casts[] = {m_cast_f32, m_cast_f64, m_cast_i32, m_cast_i64, m_cast_bool};
    static const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int from = 0; from < 5; from++)
        for (int to = 0; to < 5; to++) {
            char what[64];
            snprintf(what, sizeof what, "cast_%s_to_%s", em_dtype_name(dts[from]),
                     em_dtype_name(dts[to]));
            /* Fractions and negatives, and zeros for the bools. */
            em_tensor *x = tu_uniform_tensor(2, SH(7, 3), -40, 40, (uint64_t)(from * 5 + to));
            check_model(what, (void *)casts[to], "cast", 1, tu_cast(x, dts[from]), NULL, NULL);
        }
}

/* ---- reductions --------------------------------------------------------------------------------- */

static em_tensor *m_sum(em_tensor *t, int axis, int keepdim) { return em_sum(t, axis, keepdim); }
static em_tensor *m_mean(em_tensor *t, int axis, int keepdim) { return em_mean(t, axis, keepdim); }
static em_tensor *m_max(em_tensor *t, int axis, int keepdim) { return em_max(t, axis, keepdim); }
static em_tensor *m_min(em_tensor *t, int axis, int keepdim) { return em_min(t, axis, keepdim); }
static em_tensor *m_argmax(em_tensor *t, int axis, int keepdim) {
    return em_argmax(t, axis, keepdim);
}

typedef em_tensor *(*reduce_fn)(em_tensor *, int, int);

/* One compiled function per op, called for each (axis, keepdim): each
 * combination is a guard of its own, traced once and hit once. */
static void check_reduction(const char *name, reduce_fn model, em_tensor *x) {
    static const int axes[] = {0, 1, -1};
    void *fast = em_compile((void *)model, "tensor(tensor, int, int)", &(em_options){.name = name});
    cr_assert(fast, "%s", em_last_error());
    reduce_fn f = (reduce_fn)fast;
    int combos = 0;
    for (int i = 0; i < 3; i++)
        for (int keepdim = 0; keepdim <= 1; keepdim++, combos++) {
            char what[64];
            snprintf(what, sizeof what, "%s axis %d keepdim %d", name, axes[i], keepdim);
            em_tensor *want = model(x, axes[i], keepdim);
            em_tensor *got = f(x, axes[i], keepdim);
            tu_expect_compiled(got, want, what);
            em_release(got);
            got = f(x, axes[i], keepdim);
            tu_expect_compiled(got, want, what);
            cr_expect_eq(em_ndim(got), em_ndim(x) - !keepdim, "%s", what);
            em_release(got);
            em_release(want);
        }
    em_stats st;
    cr_assert_eq(em_compiled_stats(fast, &st), 0);
    cr_expect_eq(st.compiles, (uint64_t)combos, "%s: %llu compiles", name,
                 (unsigned long long)st.compiles);
    cr_expect_eq(st.calls, (uint64_t)(2 * combos));
    cr_expect_eq(st.eager_fallbacks, 0);
    char *graph = dump(fast, "graph");
    char needle[64];
    snprintf(needle, sizeof needle, " = %s ", name);
    cr_expect(strstr(graph, needle), "%s not in\n%s", name, graph);
    cr_expect(strstr(graph, "keepdim=1"), "the newest graph is axis -1 keepdim 1:\n%s", graph);
    free(graph);
    em_compiled_free(fast);
}

Test(capture, records_every_reduction_on_each_axis_with_and_without_keepdim) {
    static const struct {
        const char *name;
        reduce_fn fn;
    } ops[] = {{"sum", m_sum}, {"mean", m_mean}, {"max", m_max}, {"min", m_min}, {"argmax", m_argmax}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        em_tensor *x = tu_uniform_tensor(3, SH(4, 5, 33), -3, 3, i);
        check_reduction(ops[i].name, ops[i].fn, x);
        em_release(x);
        em_tensor *n = tu_ints(EM_I32, 3, SH(3, 4, 5), 7, -3); /* ties for argmax; ints sum to i64 */
        check_reduction(ops[i].name, ops[i].fn, n);
        em_release(n);
    }
}

/* ---- row-wise ops ------------------------------------------------------------------------------------ */

static em_tensor *m_softmax_last(em_tensor *t) { return em_softmax(t, -1); }
static em_tensor *m_softmax_first(em_tensor *t) { return em_softmax(t, 0); }
static em_tensor *m_log_softmax_last(em_tensor *t) { return em_log_softmax(t, -1); }
static em_tensor *m_log_softmax_first(em_tensor *t) { return em_log_softmax(t, 0); }

Test(capture, records_softmax_and_log_softmax_on_first_and_last_axes) {
    CHECK1(m_softmax_last, "softmax", tu_uniform_tensor(2, SH(6, 37), -5, 5, 1));
    CHECK1(m_softmax_first, "softmax", tu_uniform_tensor(3, SH(6, 4, 5), -5, 5, 2));
    CHECK1(m_log_softmax_last, "log_softmax", tu_uniform_tensor(2, SH(6, 37), -5, 5, 3));
    CHECK1(m_log_softmax_first, "log_softmax", tu_uniform_tensor(3, SH(6, 4, 5), -5, 5, 4));
    CHECK1(m_softmax_last, "softmax", tu_cast(tu_uniform_tensor(2, SH(5, 8), -2, 2, 5), EM_F64));
}

static em_tensor *m_layer_norm_wb(em_tensor *x, em_tensor *w, em_tensor *b) {
    return em_layer_norm(x, w, b, 1e-5);
}
static em_tensor *m_layer_norm_w(em_tensor *x, em_tensor *w) { return em_layer_norm(x, w, NULL, 1e-5); }
static em_tensor *m_layer_norm_b(em_tensor *x, em_tensor *b) { return em_layer_norm(x, NULL, b, 1e-3); }
static em_tensor *m_layer_norm_plain(em_tensor *x) { return em_layer_norm(x, NULL, NULL, 1e-5); }
static em_tensor *m_rms_norm_w(em_tensor *x, em_tensor *w) { return em_rms_norm(x, w, 1e-6); }
static em_tensor *m_rms_norm_plain(em_tensor *x) { return em_rms_norm(x, NULL, 1e-6); }

Test(capture, records_layer_norm_with_and_without_weight_and_bias) {
    CHECK3(m_layer_norm_wb, "layer_norm", tu_uniform_tensor(3, SH(2, 6, 40), -3, 3, 1),
           tu_uniform_tensor(1, SH(40), 0.5, 2, 2), tu_uniform_tensor(1, SH(40), -1, 1, 3));
    CHECK2(m_layer_norm_w, "layer_norm", tu_uniform_tensor(2, SH(6, 40), -3, 3, 4),
           tu_uniform_tensor(1, SH(40), 0.5, 2, 5));
    CHECK2(m_layer_norm_b, "layer_norm", tu_uniform_tensor(2, SH(6, 40), -3, 3, 6),
           tu_uniform_tensor(1, SH(40), -1, 1, 7));
    CHECK1(m_layer_norm_plain, "layer_norm", tu_uniform_tensor(2, SH(6, 40), -3, 3, 8));
    CHECK1(m_layer_norm_plain, "layer_norm",
           tu_transposed(tu_uniform_tensor(2, SH(40, 6), -3, 3, 9), 0, 1));
}

Test(capture, records_rms_norm_with_and_without_weight) {
    CHECK2(m_rms_norm_w, "rms_norm", tu_uniform_tensor(3, SH(2, 6, 40), -3, 3, 1),
           tu_uniform_tensor(1, SH(40), 0.5, 2, 2));
    CHECK1(m_rms_norm_plain, "rms_norm", tu_uniform_tensor(2, SH(6, 40), -3, 3, 3));
}

/* ---- contractions and gathers -------------------------------------------------------------------------- */

static em_tensor *m_matmul(em_tensor *a, em_tensor *b) { return em_matmul(a, b); }
static em_tensor *m_linear(em_tensor *x, em_tensor *w, em_tensor *b) { return em_linear(x, w, b); }
static em_tensor *m_linear_nobias(em_tensor *x, em_tensor *w) { return em_linear(x, w, NULL); }
static em_tensor *m_embedding(em_tensor *table, em_tensor *idx) { return em_embedding(table, idx); }

Test(capture, records_matmul_of_matrices_and_batches) {
    CHECK2(m_matmul, "matmul", tu_randn(2, SH(5, 7), 1), tu_randn(2, SH(7, 3), 2));
    CHECK2(m_matmul, "matmul", tu_randn(3, SH(2, 5, 7), 3), tu_randn(3, SH(2, 7, 3), 4));
    CHECK2(m_matmul, "matmul", tu_randn(3, SH(2, 5, 7), 5), tu_randn(2, SH(7, 3), 6));
    CHECK2(m_matmul, "matmul", tu_randn(4, SH(4, 1, 5, 7), 7), tu_randn(3, SH(3, 7, 2), 8));
    CHECK2(m_matmul, "matmul", tu_transposed(tu_randn(2, SH(7, 5), 9), 0, 1),
           tu_transposed(tu_randn(2, SH(3, 7), 10), 0, 1));
    CHECK2(m_matmul, "matmul", tu_cast(tu_randn(2, SH(4, 6), 11), EM_F64),
           tu_cast(tu_randn(2, SH(6, 3), 12), EM_F64));
}

Test(capture, records_matmul_with_one_dimensional_operands) {
    CHECK2(m_matmul, "matmul", tu_randn(1, SH(7), 1), tu_randn(1, SH(7), 2));        /* -> 0-d */
    CHECK2(m_matmul, "matmul", tu_randn(2, SH(5, 7), 3), tu_randn(1, SH(7), 4));     /* -> [5] */
    CHECK2(m_matmul, "matmul", tu_randn(1, SH(7), 5), tu_randn(2, SH(7, 3), 6));     /* -> [3] */
    CHECK2(m_matmul, "matmul", tu_randn(1, SH(7), 7), tu_randn(3, SH(2, 7, 3), 8));  /* -> [2,3] */
    CHECK2(m_matmul, "matmul", tu_randn(3, SH(2, 5, 7), 9), tu_randn(1, SH(7), 10)); /* -> [2,5] */
}

Test(capture, records_linear_with_and_without_bias) {
    CHECK3(m_linear, "linear", tu_randn(2, SH(5, 7), 1), tu_randn(2, SH(3, 7), 2),
           tu_randn(1, SH(3), 3));
    CHECK3(m_linear, "linear", tu_randn(3, SH(2, 5, 7), 4), tu_randn(2, SH(3, 7), 5),
           tu_randn(1, SH(3), 6));
    CHECK2(m_linear_nobias, "linear", tu_randn(2, SH(5, 7), 7), tu_randn(2, SH(3, 7), 8));
    CHECK2(m_linear_nobias, "linear", tu_randn(1, SH(7), 9), tu_randn(2, SH(3, 7), 10));
}

Test(capture, records_embedding_with_i64_and_i32_indices) {
    CHECK2(m_embedding, "embedding", tu_randn(2, SH(10, 4), 1), tu_ints(EM_I64, 2, SH(2, 3), 10, 0));
    CHECK2(m_embedding, "embedding", tu_randn(2, SH(10, 4), 2), tu_ints(EM_I32, 1, SH(7), 10, 0));
}

/* ---- shape ops -------------------------------------------------------------------------------------------- */

static em_tensor *m_reshape(em_tensor *t) { return em_reshape(t, 2, SH(3, -1)); }
static em_tensor *m_reshape_flat(em_tensor *t) { return em_reshape(t, 1, SH(-1)); }
static em_tensor *m_transpose_then_reshape(em_tensor *t) {
    em_scope_begin();
    em_tensor *r = em_keep(em_reshape(em_transpose(t, 0, 1), 2, SH(2, -1)));
    em_scope_end();
    return r;
}
static em_tensor *m_permute(em_tensor *t) { return em_permute(t, (int[]){2, 0, 1}); }
static em_tensor *m_transpose(em_tensor *t) { return em_transpose(t, 0, 1); }
static em_tensor *m_transpose_neg(em_tensor *t) { return em_transpose(t, -1, -3); }
static em_tensor *m_slice_step2(em_tensor *t) { return em_slice(t, 1, 1, 8, 2); }
static em_tensor *m_slice_step3_neg(em_tensor *t) { return em_slice(t, -1, -7, 100, 3); }
static em_tensor *m_concat3(em_tensor *a, em_tensor *b, em_tensor *c) {
    return em_concat((em_tensor *[]){a, b, c}, 3, 1);
}
static em_tensor *m_concat3_first(em_tensor *a, em_tensor *b, em_tensor *c) {
    return em_concat((em_tensor *[]){a, b, c}, 3, 0);
}
static em_tensor *m_expand(em_tensor *t) { return em_expand(t, 2, SH(3, 4)); }
static em_tensor *m_expand_new_dims(em_tensor *t) { return em_expand(t, 3, SH(2, -1, 5)); }
static em_tensor *m_unsqueeze_first(em_tensor *t) { return em_unsqueeze(t, 0); }
static em_tensor *m_unsqueeze_last(em_tensor *t) { return em_unsqueeze(t, -1); }
static em_tensor *m_squeeze(em_tensor *t) { return em_squeeze(t, 1); }
static em_tensor *m_contiguous(em_tensor *t) { return em_contiguous(t); }
static em_tensor *m_transpose_contiguous(em_tensor *t) {
    em_scope_begin();
    em_tensor *r = em_keep(em_contiguous(em_transpose(t, 0, 1)));
    em_scope_end();
    return r;
}

Test(capture, records_reshape_of_contiguous_and_transposed_inputs) {
    CHECK1(m_reshape, "reshape", tu_uniform_tensor(2, SH(4, 6), -1, 1, 1));
    CHECK1(m_reshape_flat, "reshape", tu_uniform_tensor(3, SH(2, 3, 4), -1, 1, 2));
    /* A transposed argument cannot be viewed: reshape copies, as eager does. */
    CHECK1(m_reshape, "reshape", tu_transposed(tu_uniform_tensor(2, SH(6, 4), -1, 1, 3), 0, 1));
    CHECK1(m_transpose_then_reshape, "reshape", tu_uniform_tensor(2, SH(4, 6), -1, 1, 4));
    CHECK1(m_transpose_then_reshape, "permute", tu_uniform_tensor(2, SH(4, 6), -1, 1, 5));
}

Test(capture, records_permute_and_transpose_as_permute) {
    CHECK1(m_permute, "permute", tu_uniform_tensor(3, SH(2, 3, 4), -1, 1, 1));
    CHECK1(m_transpose, "permute", tu_uniform_tensor(2, SH(3, 5), -1, 1, 2));
    CHECK1(m_transpose_neg, "permute", tu_uniform_tensor(3, SH(2, 3, 4), -1, 1, 3));
    CHECK1(m_transpose, "permute", tu_transposed(tu_uniform_tensor(2, SH(5, 3), -1, 1, 4), 0, 1));
}

Test(capture, records_slices_with_steps) {
    CHECK1(m_slice_step2, "slice", tu_uniform_tensor(2, SH(3, 9), -1, 1, 1));
    CHECK1(m_slice_step3_neg, "slice", tu_uniform_tensor(3, SH(2, 3, 20), -1, 1, 2));
    CHECK1(m_slice_step2, "slice", tu_transposed(tu_uniform_tensor(2, SH(9, 3), -1, 1, 3), 0, 1));
}

Test(capture, records_concat_of_three_tensors) {
    CHECK3(m_concat3, "concat", tu_uniform_tensor(2, SH(2, 3), -1, 1, 1),
           tu_uniform_tensor(2, SH(2, 1), -1, 1, 2), tu_uniform_tensor(2, SH(2, 4), -1, 1, 3));
    CHECK3(m_concat3_first, "concat", tu_ints(EM_I64, 2, SH(1, 3), 9, 0),
           tu_ints(EM_I64, 2, SH(2, 3), 9, 5), tu_transposed(tu_ints(EM_I64, 2, SH(3, 4), 9, 1), 0, 1));
}

Test(capture, records_expand_unsqueeze_and_squeeze) {
    CHECK1(m_expand, "expand", tu_uniform_tensor(2, SH(3, 1), -1, 1, 1));
    CHECK1(m_expand_new_dims, "expand", tu_uniform_tensor(2, SH(1, 5), -1, 1, 2));
    CHECK1(m_unsqueeze_first, "reshape", tu_uniform_tensor(2, SH(3, 4), -1, 1, 3));
    CHECK1(m_unsqueeze_last, "reshape", tu_uniform_tensor(2, SH(3, 4), -1, 1, 4));
    CHECK1(m_squeeze, "reshape", tu_uniform_tensor(3, SH(3, 1, 4), -1, 1, 5));
    CHECK1(m_unsqueeze_first, "reshape",
           tu_transposed(tu_uniform_tensor(2, SH(4, 3), -1, 1, 6), 0, 1));
}

Test(capture, records_contiguous_of_dense_and_transposed_tensors) {
    CHECK1(m_contiguous, "contiguous", tu_uniform_tensor(2, SH(3, 4), -1, 1, 1));
    CHECK1(m_contiguous, "contiguous", tu_transposed(tu_uniform_tensor(2, SH(4, 3), -1, 1, 2), 0, 1));
    CHECK1(m_transpose_contiguous, "contiguous", tu_uniform_tensor(2, SH(4, 3), -1, 1, 3));
}

/* ---- ops mixing traced arguments and captured constants ---------------------------------------------- */

static em_tensor *g_table, *g_cond, *g_weight, *g_piece;

static em_tensor *m_embed_global(em_tensor *idx) { return em_embedding(g_table, idx); }
static em_tensor *m_where_global(em_tensor *x) { return em_where(g_cond, x, g_piece); }
static em_tensor *m_norm_global(em_tensor *x) { return em_layer_norm(x, g_weight, NULL, 1e-5); }
static em_tensor *m_concat_global(em_tensor *x) {
    return em_concat((em_tensor *[]){x, g_piece, x}, 3, 0);
}
static em_tensor *m_matmul_global(em_tensor *x) { return em_matmul(g_table, x); }

Test(capture, records_ops_whose_operands_mix_arguments_and_globals) {
    g_table = tu_randn(2, SH(10, 6), 1);
    g_cond = tu_ints(EM_BOOL, 2, SH(1, 6), 2, 0);
    g_weight = tu_uniform_tensor(1, SH(6), 0.5, 2, 2);
    g_piece = tu_uniform_tensor(2, SH(1, 6), -1, 1, 3);
    CHECK1(m_embed_global, "embedding", tu_ints(EM_I64, 2, SH(3, 2), 10, 0));
    CHECK1(m_where_global, "where", tu_uniform_tensor(2, SH(4, 6), -1, 1, 4));
    CHECK1(m_norm_global, "layer_norm", tu_uniform_tensor(2, SH(4, 6), -1, 1, 5));
    CHECK1(m_concat_global, "concat", tu_uniform_tensor(2, SH(2, 6), -1, 1, 6));
    CHECK1(m_matmul_global, "matmul", tu_randn(2, SH(6, 3), 7));
    em_release(g_table), em_release(g_cond), em_release(g_weight), em_release(g_piece);
}

/* ---- a chain of ops, in one graph ---------------------------------------------------------------------- */

static em_tensor *m_block(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *h = em_layer_norm(x, NULL, NULL, 1e-5);
    em_tensor *a = em_softmax(em_matmul(h, em_transpose(h, -1, -2)), -1);
    em_tensor *y = em_add(em_gelu(em_linear(em_matmul(a, h), w, b)), x);
    em_tensor *out = em_keep(em_sum(em_mul(y, em_sigmoid(y)), -1, 1));
    em_scope_end();
    return out;
}

Test(capture, records_a_chain_of_many_ops_into_one_graph) {
    CHECK3(m_block, "linear", tu_randn(2, SH(8, 16), 1), tu_randn(2, SH(16, 16), 2),
           tu_randn(1, SH(16), 3));
    CHECK3(m_block, "softmax", tu_randn(3, SH(2, 8, 16), 4), tu_randn(2, SH(16, 16), 5),
           tu_randn(1, SH(16), 6));
}
