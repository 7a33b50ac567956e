/*
 * test_elementwise_unary.c — the eager unary elementwise ops, em_neg .. em_silu,
 * through the public API, against references in double written here from libm
 * and the op definitions of ember.h (gelu = x/2 (1 + erf(x/sqrt 2)), gelu_tanh
 * with 0.044715, silu = x sigmoid(x), rsqrt = 1/sqrt).
 *
 * Covered: every op at 0-d, one element, size-1 dims, zero-size dims and lengths
 * around the vector widths (1, 15, 16, 17, 1023, 4097) and one the thread pool
 * splits (1<<20); transposed, stepped, expanded (stride 0) and permuted inputs;
 * f32 (the SIMD path), f64, and integer/bool inputs (computed in f32, except
 * neg/abs/relu, which stay integers and wrap, and reject bool); special values
 * (inf, NaN, overflow, large |x|); and the f32 loops of every ISA the CPU runs,
 * called directly from their table, tails included.
 *
 * Tolerances: f32 rtol 1e-5 / atol 1e-6 (Sleef's u10 functions are within one
 * ulp, 6e-8 relative); f64 rtol 1e-12 / atol 1e-14 (libm in both).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "runtime.h" /* rt_simd_for and the rt_unary ids, for the per-ISA loops */
#include "../util.h"

static tu_rng rng = {0x2545f4914f6cdd1dULL}; /* the random inputs */

/* ---- the ops and their references ------------------------------------------------------- */

static double r_neg(double x) { return -x; }
static double r_rsqrt(double x) { return 1 / sqrt(x); }
static double r_recip(double x) { return 1 / x; }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_relu(double x) { return isnan(x) ? x : x > 0 ? x : 0; }
/* x/2 (1 + erf(x/sqrt 2)), written with erfc (the same function) so that the
 * reference keeps its relative precision in the negative tail, where 1 + erf
 * cancels to 0 in double below x = -8.3. */
static double r_gelu(double x) { return x / 2 * erfc(-x / sqrt(2.0)); }
/* x/2 (1 + tanh(y)), written as x / (1 + e^(-2y)) (the same function) so that
 * the reference keeps its relative precision where tanh(y) rounds to -1 in double. */
static double r_gelu_tanh(double x) {
    return x / (1 + exp(-2 * sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double r_silu(double x) { return x * r_sigmoid(x); }

typedef struct unary_case {
    const char *name;
    em_tensor *(*fn)(em_tensor *);
    rt_unary kernel;
    double (*ref)(double);
    double lo, hi;   /* random inputs in [lo, hi) ... */
    bool signed_mag; /* ... with a random sign (keeps |x| >= lo, away from a pole) */
    bool int_op;     /* neg, abs, relu: keep integer dtypes, reject bool */
} unary_case;

static const unary_case ops[] = {
    {"neg", em_neg, RT_UNARY_NEG, r_neg, -8, 8, false, true},
    {"abs", em_abs, RT_UNARY_ABS, fabs, -8, 8, false, true},
    {"exp", em_exp, RT_UNARY_EXP, exp, -20, 20, false, false},
    {"log", em_log, RT_UNARY_LOG, log, 0.001, 100, false, false},
    {"sqrt", em_sqrt, RT_UNARY_SQRT, sqrt, 0, 100, false, false},
    {"rsqrt", em_rsqrt, RT_UNARY_RSQRT, r_rsqrt, 0.001, 100, false, false},
    {"reciprocal", em_reciprocal, RT_UNARY_RECIPROCAL, r_recip, 0.01, 10, true, false},
    {"sin", em_sin, RT_UNARY_SIN, sin, -10, 10, false, false},
    {"cos", em_cos, RT_UNARY_COS, cos, -10, 10, false, false},
    {"tanh", em_tanh, RT_UNARY_TANH, tanh, -6, 6, false, false},
    {"erf", em_erf, RT_UNARY_ERF, erf, -4, 4, false, false},
    {"sigmoid", em_sigmoid, RT_UNARY_SIGMOID, r_sigmoid, -20, 20, false, false},
    {"relu", em_relu, RT_UNARY_RELU, r_relu, -8, 8, false, true},
    {"gelu", em_gelu, RT_UNARY_GELU, r_gelu, -8, 8, false, false},
    {"gelu_tanh", em_gelu_tanh, RT_UNARY_GELU_TANH, r_gelu_tanh, -8, 8, false, false},
    {"silu", em_silu, RT_UNARY_SILU, r_silu, -20, 20, false, false},
};
#define NOPS (int)(sizeof ops / sizeof ops[0])

/* One random input of op c, as stored in dtype dt. */
static double random_input(const unary_case *c, em_dtype dt) {
    double x = tu_uniform(&rng, c->lo, c->hi);
    if (c->signed_mag && tu_uniform(&rng, 0, 1) < 0.5) x = -x;
    switch (dt) {
    case EM_F32: return (float)x;
    case EM_F64: return x;
    case EM_BOOL: return tu_uniform(&rng, 0, 1) < 0.5;
    default: { /* integers in the op's domain, at least 1 where 0 is a pole */
        double v = round(x);
        return v == 0 && c->lo > 0 ? 1 : v;
    }
    }
}

static double *random_inputs(const unary_case *c, em_dtype dt, int64_t n) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = random_input(c, dt);
    return v;
}

static em_dtype result_dtype(const unary_case *c, em_dtype in) {
    if (in == EM_F32 || in == EM_F64) return in;
    return c->int_op ? in : EM_F32;
}

/* Runs c on x, whose logical (row-major) values are xv; checks dtype, shape, values.
 * Everything it creates lives in its own scope. */
static void check_unary(const unary_case *c, em_tensor *x, const double *xv, const char *what) {
    em_scope_begin();
    em_tensor *y = c->fn(x);
    cr_assert(y, "em_%s on %s: %s", c->name, what, em_last_error());
    em_dtype want_dt = result_dtype(c, em_type(x));
    cr_assert_eq(em_type(y), want_dt, "em_%s on %s: dtype %s, want %s", c->name, what,
                 em_dtype_name(em_type(y)), em_dtype_name(want_dt));
    tu_expect_shape(y, em_ndim(x), em_shape(x), what);
    double *got = tu_values_of(y);
    double rtol = tu_rtol_of(want_dt), atol = tu_atol_of(want_dt);
    for (int64_t i = 0; i < em_numel(y); i++) {
        double want = c->ref(xv[i]);
        if (!tu_close_to(got[i], want, rtol, atol))
            cr_assert_fail("em_%s on %s, element %lld of %lld: x = %.9g gives %.9g, want %.9g",
                           c->name, what, (long long)i, (long long)em_numel(y), xv[i], got[i], want);
    }
    free(got);
    em_scope_end();
}

/* A fresh random dense tensor of shape and dtype; checks the ops whose bit is set
 * in `which` on it. */
static void check_ops_on_shape(unsigned which, em_dtype dt, int nd, const int64_t *shape,
                               const char *what) {
    int64_t n = tu_count(nd, shape);
    for (int k = 0; k < NOPS; k++) {
        if (!(which >> k & 1u) || (dt == EM_BOOL && ops[k].int_op)) continue;
        em_scope_begin();
        double *xv = random_inputs(&ops[k], dt, n);
        check_unary(&ops[k], tu_tensor_of(dt, nd, shape, xv), xv, what);
        free(xv);
        em_scope_end();
    }
}

#define ALL_OPS ((1u << NOPS) - 1)
#define check_all_ops_on_shape(...) check_ops_on_shape(ALL_OPS, __VA_ARGS__)
/* neg, exp, sigmoid, relu, gelu: the cheap and the Sleef loops, for the large
 * iterator tests. */
#define SOME_OPS (1u << 0 | 1u << 2 | 1u << 11 | 1u << 12 | 1u << 13)

/* ---- shapes ----------------------------------------------------------------------------- */

Test(unary, matches_the_reference_at_lengths_around_the_vector_widths) {
    const int64_t lens[] = {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 1023, 4097};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char what[40];
        snprintf(what, sizeof what, "f32[%lld]", (long long)lens[i]);
        check_all_ops_on_shape(EM_F32, 1, &lens[i], what);
    }
}

Test(unary, keeps_0d_tensors_0d) {
    check_all_ops_on_shape(EM_F32, 0, NULL, "f32 0-d");
    check_all_ops_on_shape(EM_F64, 0, NULL, "f64 0-d");
    check_all_ops_on_shape(EM_I32, 0, NULL, "i32 0-d");
}

Test(unary, keeps_size_1_dims) {
    check_all_ops_on_shape(EM_F32, 3, (int64_t[]){1, 1, 1}, "f32[1,1,1]");
    check_all_ops_on_shape(EM_F32, 3, (int64_t[]){1, 17, 1}, "f32[1,17,1]");
    check_all_ops_on_shape(EM_F32, 4, (int64_t[]){3, 1, 5, 1}, "f32[3,1,5,1]");
}

Test(unary, gives_zero_size_results_when_the_zero_dim_leads) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 5; d++) {
        check_all_ops_on_shape(dts[d], 3, (int64_t[]){0, 1, 1}, "a [0,1,1] tensor");
        check_all_ops_on_shape(dts[d], 2, (int64_t[]){0, 5}, "a [0,5] tensor");
        check_all_ops_on_shape(dts[d], 1, (int64_t[]){0}, "a [0] tensor");
    }
}

/* Regression: rt_tensor_is_contiguous multiplied its running stride by a 0 dim,
 * so the fresh [3,0,2] output (strides [2,2,1] from rt_tensor_contig_strides)
 * was "not contiguous" and rt_iter_run's EM_ASSERT aborted before its
 * numel == 0 return: every elementwise op crashed on a zero-size tensor whose
 * zero dim was not the first (fixed in 9401fca). */
Test(unary, gives_zero_size_results_when_a_later_dim_is_zero) {
    const int64_t shapes[][3] = {{3, 0, 2}, {2, 5, 0}};
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int s = 0; s < 2; s++)
        for (int d = 0; d < 5; d++)
            check_all_ops_on_shape(dts[d], 3, shapes[s], "a zero-size tensor");
}

Test(unary, splits_a_million_elements_across_threads) {
    check_all_ops_on_shape(EM_F32, 1, (int64_t[]){1 << 20}, "f32[1<<20]");
    check_ops_on_shape(SOME_OPS, EM_F64, 2, (int64_t[]){1 << 10, 1 << 10}, "f64[1024,1024]");
}

/* ---- non-contiguous inputs ---------------------------------------------------------------- */

/* Builds view = make(base) over a dense random base of shape bshape for every op
 * (and dtype dt) and checks the op against the view's logical values. */
typedef em_tensor *(*view_fn)(em_tensor *base, int64_t *offset);

static void check_ops_on_view(unsigned which, em_dtype dt, int nd, const int64_t *bshape,
                              view_fn make, const char *what) {
    int64_t n = tu_count(nd, bshape);
    for (int k = 0; k < NOPS; k++) {
        if (!(which >> k & 1u) || (dt == EM_BOOL && ops[k].int_op)) continue;
        em_scope_begin();
        double *bv = random_inputs(&ops[k], dt, n);
        em_tensor *base = tu_tensor_of(dt, nd, bshape, bv);
        int64_t off = 0;
        em_tensor *v = make(base, &off);
        cr_assert(v, "%s: %s", what, em_last_error());
        double *xv = tu_view_values(bv, v, off);
        check_unary(&ops[k], v, xv, what);
        free(xv);
        free(bv);
        em_scope_end();
    }
}

#define check_all_ops_on_view(...) check_ops_on_view(ALL_OPS, __VA_ARGS__)

static em_tensor *transposed(em_tensor *b, int64_t *off) { (void)off; return em_transpose(b, 0, 1); }
static em_tensor *step2(em_tensor *b, int64_t *off) {
    *off = 3 * em_strides(b)[1];
    return em_slice(b, 1, 3, 1000, 2);
}
static em_tensor *step3(em_tensor *b, int64_t *off) {
    *off = 1;
    return em_slice(b, 0, 1, -1, 3);
}
static em_tensor *expand_cols(em_tensor *b, int64_t *off) { /* [40,1] -> [40,50] */
    (void)off;
    return em_expand(b, 2, (int64_t[]){40, 50});
}
static em_tensor *expand_rows(em_tensor *b, int64_t *off) { /* [1,50] -> [3,40,50] */
    (void)off;
    return em_expand(b, 3, (int64_t[]){3, 40, 50});
}
static em_tensor *expand_big(em_tensor *b, int64_t *off) { /* [1] -> [1<<20] */
    (void)off;
    return em_expand(b, 1, (int64_t[]){1 << 20});
}
static em_tensor *permuted(em_tensor *b, int64_t *off) {
    (void)off;
    return em_permute(b, (int[]){2, 0, 1});
}

Test(unary, reads_a_transposed_input) {
    check_all_ops_on_view(EM_F32, 2, (int64_t[]){37, 19}, transposed, "f32 [37,19]^T");
    check_all_ops_on_view(EM_F64, 2, (int64_t[]){5, 33}, transposed, "f64 [5,33]^T");
    check_all_ops_on_view(EM_I32, 2, (int64_t[]){9, 8}, transposed, "i32 [9,8]^T");
}

Test(unary, reads_a_large_transposed_input_split_across_threads) {
    check_ops_on_view(SOME_OPS, EM_F32, 2, (int64_t[]){1100, 1000}, transposed, "f32 [1100,1000]^T");
}

Test(unary, reads_slices_with_steps_2_and_3) {
    check_all_ops_on_view(EM_F32, 2, (int64_t[]){3, 1000}, step2, "f32 [3,1000][:, 3::2]");
    check_all_ops_on_view(EM_F32, 1, (int64_t[]){10000}, step3, "f32 [10000][1:-1:3]");
    check_all_ops_on_view(EM_I64, 1, (int64_t[]){100}, step3, "i64 [100][1:-1:3]");
    check_all_ops_on_view(EM_BOOL, 1, (int64_t[]){100}, step3, "bool [100][1:-1:3]");
}

Test(unary, reads_expanded_inputs_with_stride_0) {
    check_all_ops_on_view(EM_F32, 2, (int64_t[]){40, 1}, expand_cols, "f32 [40,1]->[40,50]");
    check_all_ops_on_view(EM_F32, 2, (int64_t[]){1, 50}, expand_rows, "f32 [1,50]->[3,40,50]");
    check_ops_on_view(SOME_OPS, EM_F32, 1, (int64_t[]){1}, expand_big, "f32 [1]->[1<<20]");
    check_all_ops_on_view(EM_F64, 2, (int64_t[]){40, 1}, expand_cols, "f64 [40,1]->[40,50]");
    check_all_ops_on_view(EM_I32, 2, (int64_t[]){1, 50}, expand_rows, "i32 [1,50]->[3,40,50]");
}

Test(unary, reads_a_permuted_3d_input) {
    check_all_ops_on_view(EM_F32, 3, (int64_t[]){4, 5, 6}, permuted, "f32 [4,5,6] perm (2,0,1)");
    check_all_ops_on_view(EM_F32, 3, (int64_t[]){64, 33, 17}, permuted, "f32 [64,33,17] perm (2,0,1)");
    check_all_ops_on_view(EM_F64, 3, (int64_t[]){4, 5, 6}, permuted, "f64 [4,5,6] perm (2,0,1)");
}

/* ---- dtypes --------------------------------------------------------------------------------- */

Test(unary, computes_f64_in_f64) {
    check_all_ops_on_shape(EM_F64, 1, (int64_t[]){1023}, "f64[1023]");
    check_all_ops_on_shape(EM_F64, 2, (int64_t[]){3, 17}, "f64[3,17]");
}

Test(unary, computes_float_math_on_integers_and_bools_in_f32) {
    const em_dtype dts[] = {EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 3; d++) {
        check_all_ops_on_shape(dts[d], 1, (int64_t[]){1023}, em_dtype_name(dts[d]));
        check_all_ops_on_shape(dts[d], 2, (int64_t[]){4, 5}, em_dtype_name(dts[d]));
    }
    /* exp(i32) is f32, exp(bool) is f32, exp(f64) stays f64. */
    em_scope_begin();
    cr_expect_eq(em_type(em_exp(em_scalar(EM_I32, 1))), EM_F32);
    cr_expect_eq(em_type(em_exp(em_scalar(EM_I64, 1))), EM_F32);
    cr_expect_eq(em_type(em_exp(em_scalar(EM_BOOL, 1))), EM_F32);
    cr_expect_eq(em_type(em_exp(em_scalar(EM_F64, 1))), EM_F64);
    cr_expect_eq(em_type(em_neg(em_scalar(EM_I64, 1))), EM_I64);
    cr_expect_eq(em_type(em_relu(em_scalar(EM_I32, 1))), EM_I32);
    em_scope_end();
}

Test(unary, negates_and_takes_abs_of_the_most_negative_integer_by_wrapping) {
    em_scope_begin();
    int32_t a32[] = {INT32_MIN, INT32_MAX, -1, 0, 7};
    int64_t a64[] = {INT64_MIN, INT64_MAX, -1, 0, 7};
    em_tensor *x32 = em_from_data(EM_I32, 1, (int64_t[]){5}, a32);
    em_tensor *x64 = em_from_data(EM_I64, 1, (int64_t[]){5}, a64);
    int32_t n32[5], b32[5], r32[5];
    int64_t n64[5], b64[5], r64[5];
    cr_assert_eq(em_read(em_neg(x32), n32, sizeof n32), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_abs(x32), b32, sizeof b32), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_relu(x32), r32, sizeof r32), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_neg(x64), n64, sizeof n64), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_abs(x64), b64, sizeof b64), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_relu(x64), r64, sizeof r64), 0, "%s", em_last_error());
    const int32_t wn32[] = {INT32_MIN, -INT32_MAX, 1, 0, -7}, wb32[] = {INT32_MIN, INT32_MAX, 1, 0, 7},
                  wr32[] = {0, INT32_MAX, 0, 0, 7};
    const int64_t wn64[] = {INT64_MIN, -INT64_MAX, 1, 0, -7}, wb64[] = {INT64_MIN, INT64_MAX, 1, 0, 7},
                  wr64[] = {0, INT64_MAX, 0, 0, 7};
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(n32[i], wn32[i], "neg i32 [%d]: %d", i, n32[i]);
        cr_expect_eq(b32[i], wb32[i], "abs i32 [%d]: %d", i, b32[i]);
        cr_expect_eq(r32[i], wr32[i], "relu i32 [%d]: %d", i, r32[i]);
        cr_expect_eq(n64[i], wn64[i], "neg i64 [%d]: %lld", i, (long long)n64[i]);
        cr_expect_eq(b64[i], wb64[i], "abs i64 [%d]: %lld", i, (long long)b64[i]);
        cr_expect_eq(r64[i], wr64[i], "relu i64 [%d]: %lld", i, (long long)r64[i]);
    }
    em_scope_end();
}

Test(unary, rejects_bool_in_neg_abs_and_relu_with_a_message) {
    em_scope_begin();
    em_tensor *b = em_full(EM_BOOL, 1, (int64_t[]){3}, 1);
    em_tensor *(*fns[])(em_tensor *) = {em_neg, em_abs, em_relu};
    const char *names[] = {"em_neg", "em_abs", "em_relu"};
    for (int i = 0; i < 3; i++) {
        em_clear_error();
        cr_expect_null(fns[i](b), "%s accepted a bool tensor", names[i]);
        char want[80];
        snprintf(want, sizeof want, "%s: bool tensors are not supported", names[i]);
        cr_expect_str_eq(em_last_error(), want);
    }
    em_scope_end();
}

/* ---- special values ------------------------------------------------------------------------ */

typedef struct special {
    em_tensor *(*fn)(em_tensor *);
    const char *name;
    double x, want;
    bool f32_only; /* the value overflows f32 only */
} special;

/* Each row in f32 and f64 (unless f32_only): exact where want is 0 (|got| <= 1e-30),
 * +-inf or NaN; else within rtol. */
static const special specials[] = {
    {em_exp, "exp", 100, INFINITY, true}, {em_exp, "exp", 89, INFINITY, true},
    {em_exp, "exp", 1000, INFINITY},
    {em_exp, "exp", -200, 0},          {em_exp, "exp", -INFINITY, 0},
    {em_exp, "exp", INFINITY, INFINITY}, {em_exp, "exp", NAN, NAN},
    {em_log, "log", 0, -INFINITY},     {em_log, "log", -0.0, -INFINITY},
    {em_log, "log", -1, NAN},          {em_log, "log", INFINITY, INFINITY},
    {em_log, "log", 1, 0},             {em_sqrt, "sqrt", -1, NAN},
    {em_sqrt, "sqrt", 0, 0},           {em_sqrt, "sqrt", INFINITY, INFINITY},
    {em_rsqrt, "rsqrt", 0, INFINITY},  {em_rsqrt, "rsqrt", -1, NAN},
    {em_rsqrt, "rsqrt", INFINITY, 0},  {em_reciprocal, "reciprocal", 0, INFINITY},
    {em_reciprocal, "reciprocal", -0.0, -INFINITY}, {em_reciprocal, "reciprocal", INFINITY, 0},
    {em_tanh, "tanh", 100, 1},         {em_tanh, "tanh", -100, -1},
    {em_tanh, "tanh", INFINITY, 1},    {em_erf, "erf", 10, 1},
    {em_erf, "erf", -10, -1},          {em_erf, "erf", INFINITY, 1},
    {em_sigmoid, "sigmoid", 100, 1},   {em_sigmoid, "sigmoid", 1000, 1},
    {em_sigmoid, "sigmoid", INFINITY, 1}, {em_sigmoid, "sigmoid", -INFINITY, 0},
    {em_sigmoid, "sigmoid", 0, 0.5},   {em_relu, "relu", NAN, NAN},
    {em_relu, "relu", -INFINITY, 0},   {em_relu, "relu", INFINITY, INFINITY},
    {em_gelu, "gelu", 10, 10},         {em_gelu, "gelu", 100, 100},
    {em_gelu, "gelu", 1e4, 1e4},       {em_gelu, "gelu", 1e30, 1e30},
    {em_gelu, "gelu", -100, 0},        {em_gelu, "gelu", -1e4, 0},
    {em_gelu, "gelu", -1e30, 0},       {em_gelu, "gelu", INFINITY, INFINITY},
    {em_gelu, "gelu", 0, 0},           {em_gelu_tanh, "gelu_tanh", 10, 10},
    {em_gelu_tanh, "gelu_tanh", 100, 100}, {em_gelu_tanh, "gelu_tanh", 1e4, 1e4},
    {em_gelu_tanh, "gelu_tanh", 1e30, 1e30}, {em_gelu_tanh, "gelu_tanh", -100, 0},
    {em_gelu_tanh, "gelu_tanh", -1e4, 0}, {em_gelu_tanh, "gelu_tanh", -1e30, 0},
    {em_silu, "silu", 100, 100},       {em_silu, "silu", 1e4, 1e4},
    {em_silu, "silu", -1e4, 0},        {em_silu, "silu", INFINITY, INFINITY},
    {em_neg, "neg", NAN, NAN},         {em_abs, "abs", -INFINITY, INFINITY},
    {em_abs, "abs", NAN, NAN},         {em_sin, "sin", NAN, NAN},
    {em_cos, "cos", INFINITY, NAN},    {em_tanh, "tanh", NAN, NAN},
    {em_gelu, "gelu", NAN, NAN},       {em_silu, "silu", NAN, NAN},
    {em_sigmoid, "sigmoid", NAN, NAN},
};

Test(unary, handles_infinities_nan_overflow_and_large_magnitudes_in_f32_and_f64) {
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
            const special *s = &specials[i];
            if (s->f32_only && dts[d] != EM_F32) continue;
            em_scope_begin();
            /* At several positions of a 33-element vector, so the vector body and the
             * tail both see the value. */
            double xv[33];
            for (int j = 0; j < 33; j++) xv[j] = (j % 16 == 5 || j == 32) ? s->x : 0.25;
            em_tensor *y = s->fn(tu_tensor_of(dts[d], 1, (int64_t[]){33}, xv));
            cr_assert(y, "em_%s: %s", s->name, em_last_error());
            double *got = tu_values_of(y), w = s->want;
            for (int j = 5; j < 33; j = j == 21 ? 32 : j + 16) {
                bool ok = isnan(w) ? isnan(got[j])
                          : w == 0 ? fabs(got[j]) <= 1e-30
                          : isinf(w) ? got[j] == w : tu_close_to(got[j], w, tu_rtol_of(dts[d]), 0);
                cr_expect(ok, "em_%s(%g) in %s at %d: got %.9g, want %.9g", s->name, s->x,
                          em_dtype_name(dts[d]), j, got[j], w);
            }
            free(got);
            em_scope_end();
        }
}

/* BUG (runtime/create.c:17-18, filled()): em_scalar and em_full zero-fill when
 * v == 0, which -0.0 also satisfies, so em_scalar(EM_F32, -0.0) holds +0.0 and
 * 1/x gives +inf. The same -0.0 through em_from_data keeps its sign (checked
 * first, so the op itself is not at fault). Fix: zero-fill only when
 * v == 0 && !signbit(v); otherwise rt_fill. */
Test(unary, reciprocal_of_a_negative_zero_scalar_is_minus_infinity) {
    em_scope_begin();
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int d = 0; d < 2; d++) {
        double mz = -0.0;
        double *r = tu_values_of(em_reciprocal(tu_tensor_of(dts[d], 0, NULL, &mz)));
        cr_expect_eq(r[0], -INFINITY, "%s: 1/-0 from em_from_data gave %g", em_dtype_name(dts[d]), r[0]);
        free(r);
        r = tu_values_of(em_reciprocal(em_scalar(dts[d], -0.0)));
        cr_expect_eq(r[0], -INFINITY, "%s: 1/em_scalar(-0.0) gave %g", em_dtype_name(dts[d]), r[0]);
        free(r);
        r = tu_values_of(em_reciprocal(em_full(dts[d], 1, (int64_t[]){3}, -0.0)));
        cr_expect_eq(r[2], -INFINITY, "%s: 1/em_full(-0.0) gave %g", em_dtype_name(dts[d]), r[2]);
        free(r);
    }
    em_scope_end();
}

Test(unary, sigmoid_and_silu_stay_in_range_at_plus_minus_100) {
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int d = 0; d < 2; d++) {
        em_scope_begin();
        double xv[] = {-100, 100, -88, 88, -30, 30};
        em_tensor *x = tu_tensor_of(dts[d], 1, (int64_t[]){6}, xv);
        double *s = tu_values_of(em_sigmoid(x)), *u = tu_values_of(em_silu(x));
        for (int i = 0; i < 6; i++) {
            cr_expect(s[i] >= 0 && s[i] <= 1, "sigmoid(%g) = %g", xv[i], s[i]);
            cr_expect(tu_close_to(s[i], r_sigmoid(xv[i]), tu_rtol_of(dts[d]), 1e-30) ||
                          (dts[d] == EM_F32 && r_sigmoid(xv[i]) < 1e-37 && s[i] < 1e-37),
                      "sigmoid(%g) in %s = %.9g, want %.9g", xv[i], em_dtype_name(dts[d]), s[i],
                      r_sigmoid(xv[i]));
            cr_expect(tu_close_to(u[i], r_silu(xv[i]), tu_rtol_of(dts[d]), 1e-30) ||
                          (dts[d] == EM_F32 && fabs(r_silu(xv[i])) < 1e-35 && fabs(u[i]) < 1e-35),
                      "silu(%g) in %s = %.9g, want %.9g", xv[i], em_dtype_name(dts[d]), u[i],
                      r_silu(xv[i]));
        }
        free(s);
        free(u);
        em_scope_end();
    }
}

/* op over a grid of f32 x from `from` to 2 step 0.0005, each within 1e-5 of
 * ref relative (no atol), rtol_far below `far`. */
static void expect_relative_tail(const char *name, em_tensor *(*op)(em_tensor *), double (*ref)(double),
                                 double from, double far, double rtol_far) {
    em_scope_begin();
    int64_t n = (int64_t)(-from / 0.0005) + 4001;
    double *xv = malloc((size_t)n * sizeof *xv);
    for (int64_t i = 0; i < n; i++) xv[i] = (float)(from + 0.0005 * (double)i);
    double *got = tu_values_of(op(tu_tensor_of(EM_F32, 1, &n, xv)));
    for (int64_t i = 0; i < n; i++) {
        double want = ref(xv[i]), rtol = xv[i] < far ? rtol_far : 1e-5;
        if (!tu_close_to(got[i], want, rtol, 0))
            cr_assert_fail("%s(%.9g) = %.9g, want %.9g (relative error %.3g)", name, xv[i], got[i], want,
                           (got[i] - want) / want);
    }
    free(got);
    free(xv);
    em_scope_end();
}

/* gelu over a dense grid of its negative tail in f32, against the reference to a
 * *relative* tolerance (no atol): an absolute-error erf inside 1 + erf would lose
 * every digit here. rtol 1e-5 down to x = -6.4, and 1e-6 below, down to -13.1
 * (the last results above FLT_MIN), where runtime.h's rt_tailfn splits v^2 so
 * that the rounding of -x^2/2 (ulp 4e-6 .. 8e-6 at -50 .. -85) does not pass
 * into exp's result (an SSE2-only CPU, without FMA, would need 1e-5). */
Test(unary, gelu_keeps_its_relative_accuracy_in_the_negative_tail) {
    expect_relative_tail("gelu", em_gelu, r_gelu, -13.1, -6.4, 1e-6);
}

/* gelu_tanh the same way: x / (1 + e^(-2y)) keeps the tail's relative accuracy,
 * where x/2 (1 + tanh(y)) would cancel to 0 or noise once tanh(y) rounds to -1
 * (from x = -4.5 on in f32). rtol 1e-5, 3e-5 where the exponent passes 50. */
Test(unary, gelu_tanh_keeps_its_relative_accuracy_in_the_negative_tail) {
    expect_relative_tail("gelu_tanh", em_gelu_tanh, r_gelu_tanh, -10, -8, 3e-5);
}

/* ---- the f32 loops of every ISA, called directly ---------------------------------------------- */

Test(unary_simd, every_isa_matches_the_reference_at_lengths_1_to_40_and_1023) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    int ran = 0;
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue; /* the CPU lacks this ISA */
        ran++;
        for (int k = 0; k < NOPS; k++) {
            const unary_case *c = &ops[k];
            cr_assert(t->unary[c->kernel], "%s has no %s loop", isas[s], c->name);
            for (int64_t n = 1; n <= 1023; n = n == 40 ? 1023 : n + 1) {
                /* Exactly n inputs (ASan sees any over-read); guarded output. */
                float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)(n + 16) * sizeof *y);
                for (int64_t i = 0; i < n; i++) x[i] = (float)random_input(c, EM_F32);
                for (int64_t i = 0; i < n + 16; i++) y[i] = -12345.0f;
                float *x0 = malloc((size_t)n * sizeof *x0);
                memcpy(x0, x, (size_t)n * sizeof *x);
                t->unary[c->kernel](n, x, y);
                for (int64_t i = 0; i < n; i++) {
                    double want = c->ref(x[i]);
                    if (!tu_close_to(y[i], want, 1e-5, 1e-6))
                        cr_assert_fail("%s %s n=%lld [%lld]: x = %.9g gives %.9g, want %.9g",
                                       isas[s], c->name, (long long)n, (long long)i, x[i], y[i], want);
                }
                for (int64_t i = n; i < n + 16; i++)
                    cr_assert_eq(y[i], -12345.0f, "%s %s n=%lld wrote past the end at %lld",
                                 isas[s], c->name, (long long)n, (long long)i);
                cr_assert(memcmp(x, x0, (size_t)n * sizeof *x) == 0, "%s %s modified its input",
                          isas[s], c->name);
                free(x);
                free(x0);
                free(y);
            }
        }
    }
    cr_assert(ran >= 1 && rt_simd_for("sse2"), "sse2 runs on every x86-64");
}

Test(unary_simd, every_isa_handles_special_values_in_body_and_tail) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e30f, -1e30f, 100.0f, -100.0f};
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue;
        for (int k = 0; k < NOPS; k++) {
            const unary_case *c = &ops[k];
            for (int p = 0; p < 9; p++) {
                float x[21], y[21];
                for (int i = 0; i < 21; i++) x[i] = (i == 3 || i == 20) ? sp[p] : 0.5f;
                t->unary[c->kernel](21, x, y);
                for (int j = 3; j <= 20; j += 17) {
                    double want = (float)c->ref(x[j]);
                    if (isnan(want) && (c->ref == r_gelu || c->ref == r_gelu_tanh || c->ref == r_silu))
                        continue; /* -inf * 0 in the definition itself */
                    bool ok = isnan(want) ? isnan(y[j])
                              : fabs(want) < 1e-30 ? fabs(y[j]) < 1e-30
                                                   : tu_close_to(y[j], want, 1e-5, 1e-6);
                    cr_expect(ok, "%s %s(%g) at %d: got %.9g, want %.9g", isas[s], c->name, x[j], j,
                              y[j], want);
                }
            }
        }
    }
}

/* ember's exp (runtime/simd.h's V_EXP, which generated code mirrors): within one
 * ulp of libm's over its whole finite range, 200,000 points from -104 to 89 and
 * the edges of that range, where the clamp, the overflow to inf and the
 * gradual underflow into denormals take over. */
static double ulps_off(float y, double want) {
    if (isinf((float)want) || isinf(y)) return y == (float)want ? 0 : INFINITY; /* past FLT_MAX: inf */
    int e;
    frexp(want, &e);
    double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24)); /* of the float nearest want */
    return fabs((double)y - want) / ulp;
}

/* The largest ulps_off of y[i] from ref(x[i]) over n points, and where. */
static double worst_ulps(const float *x, const float *y, int n, double (*ref)(double), int *at) {
    double worst = 0;
    *at = 0;
    for (int i = 0; i < n; i++) {
        double u = ulps_off(y[i], ref((double)x[i]));
        if (u > worst) worst = u, *at = i;
    }
    return worst;
}

Test(unary_simd, every_isa_s_exp_is_within_one_ulp_of_libm_over_its_range) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    enum { N = 200000 };
    static float x[N + 12], y[N + 12];
    for (int i = 0; i < N; i++) x[i] = (float)(-104.0 + 193.0 * i / (N - 1));
    const float edges[] = {-104.5f, -103.97f, -103.3f, -87.5f, 88.7f, 88.72f, 88.73f, 99.9f, 1e-8f, -1e-8f, 0.0f, -0.0f};
    memcpy(x + N, edges, sizeof edges);
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue;
        t->unary[RT_UNARY_EXP](N + 12, x, y);
        int at;
        double worst = worst_ulps(x, y, N + 12, exp, &at);
        cr_expect(worst <= 1.0, "%s exp(%.9g) = %.9g is %.3g ulp from %.9g", isas[s], x[at], y[at], worst,
                  exp((double)x[at]));
    }
}

/* ember's tanh (runtime/simd.h's rt_tanh, mirrored by generated code; SSE2
 * calls Sleef's 3.5-ulp one): within 3 ulp of libm's, 200,000 points over
 * [-12, 12], 20,000 over [-1e-3, 1e-3] where tanh(x) ~ x, and the edges:
 * signed zeros, denormals, the clamp at 10, infinities. */
Test(unary_simd, every_isa_s_tanh_is_within_three_ulp_of_libm) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    enum { N = 200000, M = 20000, E = 12 };
    static float x[N + M + E], y[N + M + E];
    for (int i = 0; i < N; i++) x[i] = (float)(-12.0 + 24.0 * i / (N - 1));
    for (int i = 0; i < M; i++) x[N + i] = (float)(-1e-3 + 2e-3 * i / (M - 1));
    const float edges[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 1e-30f, 9.99f, 10.0f, 10.01f, 9.0f, -9.0f, INFINITY, -INFINITY};
    memcpy(x + N + M, edges, sizeof edges);
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue;
        t->unary[RT_UNARY_TANH](N + M + E, x, y);
        int at;
        double worst = worst_ulps(x, y, N + M + E, tanh, &at);
        cr_expect(worst <= 3.0, "%s tanh(%.9g) = %.9g is %.3g ulp from %.9g", isas[s], x[at], y[at], worst,
                  tanh((double)x[at]));
        cr_log_info("%s tanh: worst %.3g ulp at %.9g", isas[s], worst, x[at]);
        cr_expect(y[N + M] == 0 && !signbit(y[N + M]) && y[N + M + 1] == 0 && signbit(y[N + M + 1]),
                  "%s: tanh(+-0) = +-0", isas[s]);
        cr_expect(y[N + M + E - 2] == 1.0f && y[N + M + E - 1] == -1.0f, "%s: tanh(+-inf) = +-1", isas[s]);
        float nan = NAN, out = 0;
        t->unary[RT_UNARY_TANH](1, &nan, &out);
        cr_expect(isnan(out), "%s: tanh(NaN) is NaN", isas[s]);
    }
}
