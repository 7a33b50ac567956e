/*
 * test_elementwise_binary.c — the eager binary elementwise ops (em_add em_sub
 * em_mul em_div em_pow em_maximum em_minimum and the comparisons em_eq .. em_ge)
 * through the public API, against references written here: libm in double for
 * floats, exact wrapping arithmetic in uint64_t for integers.
 *
 * Covered: lengths around the vector widths and one the pool splits; 0-d, size-1
 * and zero-size dims; numpy broadcasting corners ([3,1]+[1,4], [4]+[2,3,4], 0-d +
 * n-d, [2,1,3]+[4,1], zero-size) and the error for shapes that cannot broadcast;
 * transposed, stepped, expanded and permuted inputs; f32 (SIMD), f64, i32, i64
 * and bool, and the result dtype of every pair of input dtypes for every op
 * (bool < i32 < i64 < f32 < f64, two bools compute in i64, integer division
 * gives f32, comparisons give bool); exact integer pow with the negative-exponent
 * rules of runtime/ew.c (ipow); integer overflow wraps; NaN in maximum/minimum
 * and comparisons; and the f32 loops of every ISA in every stride mode.
 *
 * Tolerances: f32 rtol 1e-5 / atol 1e-6 (add/sub/mul/div are correctly rounded;
 * pow is Sleef's u10), f64 rtol 1e-12; integers and comparisons exact.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "runtime.h" /* rt_simd_for and the rt_binary ids, for the per-ISA loops */

/* ---- helpers -------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static double uniform(double lo, double hi) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * ((double)(rng >> 11) * 0x1.0p-53);
}

static int64_t count(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    return n;
}

static void put(em_dtype dt, void *p, int64_t i, double v) {
    switch (dt) {
    case EM_F32: ((float *)p)[i] = (float)v; break;
    case EM_F64: ((double *)p)[i] = v; break;
    case EM_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case EM_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case EM_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    }
}

static double get(em_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case EM_F32: return ((const float *)p)[i];
    case EM_F64: return ((const double *)p)[i];
    case EM_I32: return ((const int32_t *)p)[i];
    case EM_I64: return (double)((const int64_t *)p)[i];
    case EM_BOOL: return ((const uint8_t *)p)[i];
    }
    return NAN;
}

static em_tensor *tensor_of(em_dtype dt, int nd, const int64_t *shape, const double *v) {
    int64_t n = count(nd, shape);
    void *raw = malloc((size_t)(n ? n : 1) * 8);
    for (int64_t i = 0; i < n; i++) put(dt, raw, i, v[i]);
    em_tensor *t = em_from_data(dt, nd, shape, raw);
    free(raw);
    cr_assert(t, "em_from_data: %s", em_last_error());
    return t;
}

static double *values_of(const em_tensor *t) {
    int64_t n = em_numel(t);
    size_t nb = (size_t)n * em_dtype_size(em_type(t));
    void *raw = malloc(nb ? nb : 1);
    cr_assert_eq(em_read(t, raw, nb), 0, "em_read: %s", em_last_error());
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = get(em_type(t), raw, i);
    free(raw);
    return v;
}

/* Logical values of a view of a dense base holding base[], from its strides. */
static double *view_values(const double *base, const em_tensor *view, int64_t offset) {
    int nd = em_ndim(view);
    const int64_t *sh = em_shape(view), *st = em_strides(view);
    int64_t n = em_numel(view), idx[EM_MAX_DIMS] = {0};
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = offset;
        for (int d = 0; d < nd; d++) off += idx[d] * st[d];
        v[i] = base[off];
        for (int d = nd - 1; d >= 0 && ++idx[d] == sh[d]; d--) idx[d] = 0;
    }
    return v;
}

static bool close_to(double got, double want, double rtol, double atol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= atol + rtol * fabs(want);
}

static int rank(em_dtype d) { return d == EM_BOOL ? 0 : d == EM_I32 ? 1 : d == EM_I64 ? 2 : d == EM_F32 ? 3 : 4; }
static em_dtype promote(em_dtype a, em_dtype b) { return rank(a) >= rank(b) ? a : b; }
static bool is_float(em_dtype d) { return d == EM_F32 || d == EM_F64; }

/* ---- the ops and their references ------------------------------------------------------- */

static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
static double r_max(double a, double b) { return isnan(a) || isnan(b) ? NAN : a > b ? a : b; }
static double r_min(double a, double b) { return isnan(a) || isnan(b) ? NAN : a < b ? a : b; }
static double r_eq(double a, double b) { return a == b; }
static double r_ne(double a, double b) { return a != b; }
static double r_lt(double a, double b) { return a < b; }
static double r_le(double a, double b) { return a <= b; }
static double r_gt(double a, double b) { return a > b; }
static double r_ge(double a, double b) { return a >= b; }

typedef struct binary_case {
    const char *name;
    em_tensor *(*fn)(em_tensor *, em_tensor *);
    rt_binary kernel;
    double (*ref)(double, double);
    bool cmp;               /* result is bool */
    double alo, ahi, blo, bhi; /* float inputs: a in [alo, ahi), b in [blo, bhi) */
    bool b_nonzero;         /* b gets a random sign and stays away from 0 */
    bool ties;              /* floats on a grid of 0.25, so equal pairs occur */
} binary_case;

static const binary_case ops[] = {
    {"add", em_add, RT_BINARY_ADD, r_add, false, -100, 100, -100, 100, false, false},
    {"sub", em_sub, RT_BINARY_SUB, r_sub, false, -100, 100, -100, 100, false, false},
    {"mul", em_mul, RT_BINARY_MUL, r_mul, false, -10, 10, -10, 10, false, false},
    {"div", em_div, RT_BINARY_DIV, r_div, false, -10, 10, 0.1, 10, true, false},
    {"pow", em_pow, RT_BINARY_POW, pow, false, 0.05, 4, -3, 3, false, false},
    {"maximum", em_maximum, RT_BINARY_MAX, r_max, false, -3, 3, -3, 3, false, true},
    {"minimum", em_minimum, RT_BINARY_MIN, r_min, false, -3, 3, -3, 3, false, true},
    {"eq", em_eq, RT_BINARY_EQ, r_eq, true, -1, 1, -1, 1, false, true},
    {"ne", em_ne, RT_BINARY_NE, r_ne, true, -1, 1, -1, 1, false, true},
    {"lt", em_lt, RT_BINARY_LT, r_lt, true, -1, 1, -1, 1, false, true},
    {"le", em_le, RT_BINARY_LE, r_le, true, -1, 1, -1, 1, false, true},
    {"gt", em_gt, RT_BINARY_GT, r_gt, true, -1, 1, -1, 1, false, true},
    {"ge", em_ge, RT_BINARY_GE, r_ge, true, -1, 1, -1, 1, false, true},
};
#define NOPS (int)(sizeof ops / sizeof ops[0])

/* Integer results wrap to `bits` (32 or 64), computed in uint64_t. */
static int64_t wrap(uint64_t v, int bits) { return bits == 32 ? (int32_t)(uint32_t)v : (int64_t)v; }

/* Integer pow as runtime/ew.c defines it: exact (wrapping) for e >= 0; for e < 0,
 * 1 for base 1, +-1 for base -1 by parity, else 0 (the truncated 1/b^-e). */
static int64_t ipow_ref(int64_t b, int64_t e, int bits) {
    if (e < 0) return b == 1 ? 1 : b == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t r = 1;
    for (int64_t i = 0; i < e; i++) r *= (uint64_t)b;
    return wrap(r, bits);
}

static int64_t int_ref(rt_binary k, int64_t a, int64_t b, int bits) {
    switch (k) {
    case RT_BINARY_ADD: return wrap((uint64_t)a + (uint64_t)b, bits);
    case RT_BINARY_SUB: return wrap((uint64_t)a - (uint64_t)b, bits);
    case RT_BINARY_MUL: return wrap((uint64_t)a * (uint64_t)b, bits);
    case RT_BINARY_POW: return ipow_ref(a, b, bits);
    case RT_BINARY_MAX: return a > b ? a : b;
    case RT_BINARY_MIN: return a < b ? a : b;
    default: cr_assert_fail("no integer reference for op %d", (int)k);
    }
    return 0;
}

/* The result dtype of c on (da, db) by the rules of ir/shape.c. */
static em_dtype result_dtype(const binary_case *c, em_dtype da, em_dtype db) {
    if (c->cmp) return EM_BOOL;
    em_dtype p = promote(da, db);
    if (p == EM_BOOL) p = EM_I64;
    if (c->kernel == RT_BINARY_DIV && !is_float(p)) p = EM_F32;
    return p;
}

/* Expected element for inputs u, v (exact values of their dtypes da, db). */
static double expected(const binary_case *c, em_dtype da, em_dtype db, double u, double v) {
    em_dtype p = promote(da, db), out = result_dtype(c, da, db);
    if (c->cmp) { /* computed in the promoted dtype: f32 rounds both sides */
        if (p == EM_F32) u = (float)u, v = (float)v;
        return c->ref(u, v);
    }
    if (!is_float(out)) return (double)int_ref(c->kernel, (int64_t)u, (int64_t)v, out == EM_I32 ? 32 : 64);
    if (out == EM_F32) u = (float)u, v = (float)v;
    return c->ref(u, v);
}

/* One random input for side (0: a, 1: b) of c in dtype dt. */
static double random_input(const binary_case *c, int side, em_dtype dt) {
    double lo = side ? c->blo : c->alo, hi = side ? c->bhi : c->ahi;
    if (dt == EM_BOOL) return uniform(0, 1) < 0.5;
    if (!is_float(dt)) {
        if (c->kernel == RT_BINARY_POW) return side ? round(uniform(0, 9)) : round(uniform(-6, 6));
        if (c->kernel == RT_BINARY_DIV && side) {
            double v = round(uniform(1, 20));
            return uniform(0, 1) < 0.5 ? -v : v;
        }
        return round(uniform(c->cmp ? -3 : -100, c->cmp ? 3 : 100));
    }
    double x = uniform(lo, hi);
    if (side && c->b_nonzero && uniform(0, 1) < 0.5) x = -x;
    if (c->ties) x = round(x * 4) / 4;
    return dt == EM_F32 ? (float)x : x;
}

static double *random_inputs(const binary_case *c, int side, em_dtype dt, int64_t n) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = random_input(c, side, dt);
    return v;
}

/* Numpy broadcast of two shapes; false if they do not broadcast. */
static bool broadcast(int na, const int64_t *sa, int nb, const int64_t *sb, int *no, int64_t *so) {
    *no = na > nb ? na : nb;
    for (int i = 0; i < *no; i++) {
        int ia = i - (*no - na), ib = i - (*no - nb);
        int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        so[i] = da == 1 ? db : da;
    }
    return true;
}

/* Row-major index into an input of shape (nd, shape) of output element idx. */
static int64_t source_index(int no, const int64_t *idx, int nd, const int64_t *shape) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++) {
        int64_t i = idx[d + no - nd];
        off = off * shape[d] + (shape[d] == 1 ? 0 : i);
    }
    return off;
}

/* Runs c on (a, b) with logical values av, bv; checks dtype, shape and values. */
static void check_binary(const binary_case *c, em_tensor *a, const double *av, em_tensor *b,
                         const double *bv, const char *what) {
    em_scope_begin();
    em_tensor *y = c->fn(a, b);
    cr_assert(y, "em_%s on %s: %s", c->name, what, em_last_error());
    em_dtype da = em_type(a), db = em_type(b), want_dt = result_dtype(c, da, db);
    cr_assert_eq(em_type(y), want_dt, "em_%s on %s (%s, %s): dtype %s, want %s", c->name, what,
                 em_dtype_name(da), em_dtype_name(db), em_dtype_name(em_type(y)),
                 em_dtype_name(want_dt));
    int no;
    int64_t so[EM_MAX_DIMS];
    cr_assert(broadcast(em_ndim(a), em_shape(a), em_ndim(b), em_shape(b), &no, so));
    cr_assert_eq(em_ndim(y), no, "em_%s on %s: ndim %d, want %d", c->name, what, em_ndim(y), no);
    for (int d = 0; d < no; d++)
        cr_assert_eq(em_shape(y)[d], so[d], "em_%s on %s: dim %d is %lld, want %lld", c->name,
                     what, d, (long long)em_shape(y)[d], (long long)so[d]);
    double *got = values_of(y);
    double rtol = want_dt == EM_F32 ? 1e-5 : want_dt == EM_F64 ? 1e-12 : 0;
    double atol = want_dt == EM_F32 ? 1e-6 : want_dt == EM_F64 ? 1e-14 : 0;
    int64_t idx[EM_MAX_DIMS] = {0}, n = em_numel(y);
    int nda = em_ndim(a), ndb = em_ndim(b);
    const int64_t *sha = em_shape(a), *shb = em_shape(b);
    for (int64_t i = 0; i < n; i++) {
        double u = av[source_index(no, idx, nda, sha)];
        double v = bv[source_index(no, idx, ndb, shb)];
        double want = expected(c, da, db, u, v);
        if (!close_to(got[i], want, rtol, atol))
            cr_assert_fail("em_%s on %s (%s, %s), element %lld of %lld: (%.9g, %.9g) gives %.9g, want %.9g",
                           c->name, what, em_dtype_name(da), em_dtype_name(db), (long long)i,
                           (long long)n, u, v, got[i], want);
        for (int d = no - 1; d >= 0 && ++idx[d] == so[d]; d--) idx[d] = 0;
    }
    free(got);
    em_scope_end();
}

/* Random dense a (da, shape sa) and b (db, shape sb); checks the ops whose bit is
 * set in `which` on them. */
static void check_ops(unsigned which, em_dtype da, int na, const int64_t *sa, em_dtype db, int nb,
                      const int64_t *sb, const char *what) {
    for (int k = 0; k < NOPS; k++) {
        if (!(which >> k & 1u)) continue;
        em_scope_begin();
        double *av = random_inputs(&ops[k], 0, da, count(na, sa));
        double *bv = random_inputs(&ops[k], 1, db, count(nb, sb));
        check_binary(&ops[k], tensor_of(da, na, sa, av), av, tensor_of(db, nb, sb, bv), bv, what);
        free(av);
        free(bv);
        em_scope_end();
    }
}

#define ALL_OPS ((1u << NOPS) - 1)
#define check_all_ops(...) check_ops(ALL_OPS, __VA_ARGS__)
/* add, div, pow, maximum, ge: one of each kind of loop, for the large iterator tests. */
#define SOME_OPS (1u << 0 | 1u << 3 | 1u << 4 | 1u << 5 | 1u << 12)

#define SH(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define SCALAR 0, NULL

/* ---- shapes and broadcasting ------------------------------------------------------------------- */

Test(binary, matches_the_reference_at_lengths_around_the_vector_widths) {
    const int64_t lens[] = {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 1023, 4097};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char what[60];
        snprintf(what, sizeof what, "[%lld] and [%lld]", (long long)lens[i], (long long)lens[i]);
        check_all_ops(EM_F32, 1, &lens[i], EM_F32, 1, &lens[i], what);
        snprintf(what, sizeof what, "[%lld] and a 0-d tensor", (long long)lens[i]);
        check_all_ops(EM_F32, 1, &lens[i], EM_F32, SCALAR, what);
        snprintf(what, sizeof what, "a 0-d tensor and [%lld]", (long long)lens[i]);
        check_all_ops(EM_F32, SCALAR, EM_F32, 1, &lens[i], what);
    }
}

Test(binary, keeps_0d_tensors_0d_and_size_1_dims) {
    check_all_ops(EM_F32, SCALAR, EM_F32, SCALAR, "two 0-d tensors");
    check_all_ops(EM_F64, SCALAR, EM_F64, SCALAR, "two 0-d f64 tensors");
    check_all_ops(EM_I32, SCALAR, EM_I32, SCALAR, "two 0-d i32 tensors");
    check_all_ops(EM_F32, SH(1, 1, 1), EM_F32, SH(1), "[1,1,1] and [1]");
    check_all_ops(EM_F32, SH(1, 17, 1), EM_F32, SH(1, 17, 1), "[1,17,1] twice");
}

Test(binary, splits_a_million_elements_across_threads) {
    check_all_ops(EM_F32, SH(1 << 20), EM_F32, SH(1 << 20), "[1<<20] twice");
    check_ops(SOME_OPS, EM_F32, SH(1024, 1024), EM_F32, SH(1024, 1), "[1024,1024] and [1024,1]");
    check_ops(SOME_OPS, EM_F32, SH(1, 1024), EM_F32, SH(1024, 1), "[1,1024] and [1024,1]");
    check_ops(SOME_OPS, EM_I64, SH(1 << 20), EM_I64, SH(1), "i64 [1<<20] and [1]");
}

Test(binary, gives_zero_size_results_when_the_zero_dim_leads) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 5; d++) {
        em_dtype t = dts[d];
        check_all_ops(t, SH(0, 3), t, SH(1, 3), "[0,3] and [1,3]");
        check_all_ops(t, SH(0), t, SCALAR, "[0] and a 0-d tensor");
        check_all_ops(t, SH(1), t, SH(0), "[1] and [0]");
        check_all_ops(t, SH(0, 1), t, SH(5), "[0,1] and [5]");
    }
}

/* Regression: see unary/gives_zero_size_results_when_a_later_dim_is_zero. */
Test(binary, gives_zero_size_results_when_a_later_dim_is_zero) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 5; d++) {
        em_dtype t = dts[d];
        check_all_ops(t, SH(2, 0), t, SH(2, 1), "[2,0] and [2,1]");
        check_all_ops(t, SH(3, 1), t, SH(1, 0), "[3,1] and [1,0]");
        check_all_ops(t, SH(2, 0, 3), t, SH(3), "[2,0,3] and [3]");
        check_all_ops(t, SH(4, 1, 0), t, SH(5, 1), "[4,1,0] and [5,1]");
    }
}

Test(binary, broadcasts_a_column_against_a_row) {
    check_all_ops(EM_F32, SH(3, 1), EM_F32, SH(1, 4), "[3,1] and [1,4]");
    check_all_ops(EM_F32, SH(1, 4), EM_F32, SH(3, 1), "[1,4] and [3,1]");
    check_all_ops(EM_F32, SH(100, 1), EM_F32, SH(1, 37), "[100,1] and [1,37]");
}

Test(binary, broadcasts_a_vector_against_a_3d_tensor) {
    check_all_ops(EM_F32, SH(4), EM_F32, SH(2, 3, 4), "[4] and [2,3,4]");
    check_all_ops(EM_F32, SH(2, 3, 4), EM_F32, SH(4), "[2,3,4] and [4]");
    check_all_ops(EM_F32, SH(3, 1), EM_F32, SH(2, 3, 4), "[3,1] and [2,3,4]");
}

Test(binary, broadcasts_a_0d_tensor_against_an_nd_tensor) {
    check_all_ops(EM_F32, SCALAR, EM_F32, SH(2, 3, 4), "a 0-d tensor and [2,3,4]");
    check_all_ops(EM_F32, SH(2, 3, 4), EM_F32, SCALAR, "[2,3,4] and a 0-d tensor");
    check_all_ops(EM_F64, SCALAR, EM_F64, SH(5, 7), "a 0-d f64 tensor and [5,7]");
}

Test(binary, broadcasts_2_1_3_against_4_1_into_2_4_3) {
    check_all_ops(EM_F32, SH(2, 1, 3), EM_F32, SH(4, 1), "[2,1,3] and [4,1]");
    check_all_ops(EM_F32, SH(4, 1), EM_F32, SH(2, 1, 3), "[4,1] and [2,1,3]");
    check_all_ops(EM_I32, SH(2, 1, 3), EM_I32, SH(4, 1), "i32 [2,1,3] and [4,1]");
}

Test(binary, broadcasts_8d_tensors_with_alternating_size_1_dims) {
    check_all_ops(EM_F32, SH(2, 1, 3, 1, 2, 1, 2, 1), EM_F32, SH(1, 3, 1, 2, 1, 2, 1, 3),
                  "[2,1,3,1,2,1,2,1] and [1,3,1,2,1,2,1,3]");
    check_all_ops(EM_I32, SH(2, 1, 3, 1, 2, 1, 2, 1), EM_I64, SH(3, 1, 2, 1, 2, 1, 3),
                  "i32 [2,1,3,1,2,1,2,1] and i64 [3,1,2,1,2,1,3]");
}

Test(binary, rejects_shapes_that_cannot_broadcast_with_a_message) {
    em_scope_begin();
    em_tensor *a = em_zeros(EM_F32, 2, (int64_t[]){2, 3}), *b = em_zeros(EM_F32, 1, (int64_t[]){4});
    em_clear_error();
    cr_assert_null(em_add(a, b));
    cr_assert_str_eq(em_last_error(), "em_add: shapes [2,3] and [4] cannot be broadcast");
    for (int k = 0; k < NOPS; k++) {
        char want[80];
        snprintf(want, sizeof want, "em_%s: shapes [2,3] and [4] cannot be broadcast", ops[k].name);
        em_clear_error();
        cr_expect_null(ops[k].fn(a, b), "em_%s broadcast [2,3] with [4]", ops[k].name);
        cr_expect_str_eq(em_last_error(), want);
    }
    em_tensor *z = em_zeros(EM_F32, 1, (int64_t[]){0}), *two = em_zeros(EM_I32, 1, (int64_t[]){2});
    cr_expect_null(em_mul(z, two), "[0] and [2] do not broadcast");
    cr_expect_str_eq(em_last_error(), "em_mul: shapes [0] and [2] cannot be broadcast");
    em_tensor *c = em_zeros(EM_F32, 2, (int64_t[]){3, 2});
    cr_expect_null(em_lt(a, c));
    cr_expect_str_eq(em_last_error(), "em_lt: shapes [2,3] and [3,2] cannot be broadcast");
    em_scope_end();
}

/* ---- non-contiguous inputs ------------------------------------------------------------------- */

typedef em_tensor *(*view_fn)(em_tensor *base, int64_t *offset);

/* a = view_a(dense random base of shape sa) (or the dense tensor when NULL), likewise
 * b; every op checked against the views' logical values. */
static void check_ops_on_views(unsigned which, em_dtype dt, int na, const int64_t *sa, view_fn va,
                               int nb, const int64_t *sb, view_fn vb, const char *what) {
    for (int k = 0; k < NOPS; k++) {
        if (!(which >> k & 1u)) continue;
        em_scope_begin();
        double *abase = random_inputs(&ops[k], 0, dt, count(na, sa));
        double *bbase = random_inputs(&ops[k], 1, dt, count(nb, sb));
        em_tensor *a = tensor_of(dt, na, sa, abase), *b = tensor_of(dt, nb, sb, bbase);
        int64_t aoff = 0, boff = 0;
        if (va) a = va(a, &aoff);
        if (vb) b = vb(b, &boff);
        cr_assert(a && b, "%s: %s", what, em_last_error());
        double *av = view_values(abase, a, aoff), *bv = view_values(bbase, b, boff);
        check_binary(&ops[k], a, av, b, bv, what);
        free(av);
        free(bv);
        free(abase);
        free(bbase);
        em_scope_end();
    }
}

#define check_all_ops_on_views(...) check_ops_on_views(ALL_OPS, __VA_ARGS__)

static em_tensor *transposed(em_tensor *b, int64_t *off) { (void)off; return em_transpose(b, 0, 1); }
static em_tensor *transposed_last(em_tensor *b, int64_t *off) { (void)off; return em_transpose(b, -1, -2); }
static em_tensor *step2_cols(em_tensor *b, int64_t *off) { /* [n, 2m+1] -> [:, 1::2] */
    *off = 1;
    return em_slice(b, 1, 1, em_shape(b)[1], 2);
}
static em_tensor *step3(em_tensor *b, int64_t *off) { /* [3n+2] -> [2::3] */
    *off = 2;
    return em_slice(b, 0, 2, em_shape(b)[0], 3);
}
static em_tensor *expand_40_50(em_tensor *b, int64_t *off) {
    (void)off;
    return em_expand(b, 2, (int64_t[]){40, 50});
}
static em_tensor *expand_3_40_50(em_tensor *b, int64_t *off) {
    (void)off;
    return em_expand(b, 3, (int64_t[]){3, 40, 50});
}
static em_tensor *permute_201(em_tensor *b, int64_t *off) {
    (void)off;
    return em_permute(b, (int[]){2, 0, 1});
}
static em_tensor *permute_120(em_tensor *b, int64_t *off) {
    (void)off;
    return em_permute(b, (int[]){1, 2, 0});
}

Test(binary, reads_transposed_inputs) {
    check_all_ops_on_views(EM_F32, SH(19, 37), transposed, SH(37, 19), NULL, "[19,37]^T and [37,19]");
    check_all_ops_on_views(EM_F32, SH(19, 37), transposed, SH(19, 37), transposed, "two transposes");
    check_all_ops_on_views(EM_F32, SH(37, 19), NULL, SH(19, 37), transposed, "[37,19] and [19,37]^T");
    check_all_ops_on_views(EM_F64, SH(5, 9), transposed, SH(9, 5), NULL, "f64 [5,9]^T and [9,5]");
    check_all_ops_on_views(EM_I64, SH(5, 9), transposed, SH(9, 5), NULL, "i64 [5,9]^T and [9,5]");
}

Test(binary, reads_a_transposed_input_broadcast_against_a_row) {
    check_all_ops_on_views(EM_F32, SH(19, 37), transposed, SH(1, 19), NULL, "[19,37]^T and [1,19]");
    check_all_ops_on_views(EM_F32, SH(2, 19, 37), transposed_last, SH(37, 1), NULL,
                           "[2,19,37] with its last two dims swapped and [37,1]");
}

Test(binary, reads_a_large_transposed_input_split_across_threads) {
    check_ops_on_views(SOME_OPS, EM_F32, SH(1100, 1000), transposed, SH(1000, 1100), NULL,
                       "[1100,1000]^T and [1000,1100]");
}

Test(binary, reads_slices_with_steps_2_and_3) {
    check_all_ops_on_views(EM_F32, SH(3, 2001), step2_cols, SH(3, 1000), NULL, "[3,2001][:,1::2] and [3,1000]");
    check_all_ops_on_views(EM_F32, SH(9002), step3, SH(9002), step3, "two [9002][2::3]");
    check_all_ops_on_views(EM_F32, SH(9002), step3, SCALAR, NULL, "[9002][2::3] and a 0-d tensor");
    check_all_ops_on_views(EM_I32, SH(302), step3, SH(100), NULL, "i32 [302][2::3] and [100]");
    check_all_ops_on_views(EM_BOOL, SH(302), step3, SH(100), NULL, "bool [302][2::3] and [100]");
}

Test(binary, reads_expanded_inputs_with_stride_0) {
    check_all_ops_on_views(EM_F32, SH(40, 1), expand_40_50, SH(40, 50), NULL, "[40,1]->[40,50] and [40,50]");
    check_all_ops_on_views(EM_F32, SH(40, 50), NULL, SH(1, 50), expand_40_50, "[40,50] and [1,50]->[40,50]");
    check_all_ops_on_views(EM_F32, SH(1, 50), expand_3_40_50, SH(40, 1), expand_40_50,
                           "[1,50]->[3,40,50] and [40,1]->[40,50]");
    check_all_ops_on_views(EM_F64, SH(40, 1), expand_40_50, SH(50), NULL, "f64 [40,1]->[40,50] and [50]");
}

Test(binary, reads_permuted_3d_inputs) {
    check_all_ops_on_views(EM_F32, SH(4, 5, 6), permute_201, SH(6, 4, 5), NULL, "[4,5,6] perm (2,0,1)");
    check_all_ops_on_views(EM_F32, SH(4, 5, 6), permute_201, SH(5, 6, 4), permute_120,
                           "perm (2,0,1) and perm (1,2,0)");
    check_all_ops_on_views(EM_F32, SH(40, 33, 17), permute_201, SH(40, 1), NULL,
                           "[40,33,17] perm (2,0,1) and [40,1]");
}

/* ---- dtypes ------------------------------------------------------------------------------------ */

Test(binary, computes_f64_i32_i64_and_bool_with_broadcasting) {
    const em_dtype dts[] = {EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 4; d++) {
        em_dtype t = dts[d];
        check_all_ops(t, SH(1023), t, SH(1023), em_dtype_name(t));
        check_all_ops(t, SH(5, 1, 7), t, SH(3, 1), em_dtype_name(t));
        check_all_ops(t, SCALAR, t, SH(17), em_dtype_name(t));
    }
}

Test(binary, promotes_every_pair_of_dtypes_for_every_op) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            char what[40];
            snprintf(what, sizeof what, "%s and %s", em_dtype_name(dts[i]), em_dtype_name(dts[j]));
            check_all_ops(dts[i], SH(3, 1), dts[j], SH(1, 37), what);
        }
}

Test(binary, gives_the_documented_result_dtypes) {
    em_scope_begin();
    em_tensor *f = em_scalar(EM_F32, 1), *d = em_scalar(EM_F64, 1), *i = em_scalar(EM_I32, 3),
              *l = em_scalar(EM_I64, 2), *b = em_scalar(EM_BOOL, 1);
    cr_expect_eq(em_type(em_add(i, f)), EM_F32, "i32 + f32");
    cr_expect_eq(em_type(em_add(i, l)), EM_I64, "i32 + i64");
    cr_expect_eq(em_type(em_add(b, b)), EM_I64, "bool + bool");
    cr_expect_eq(em_type(em_add(b, i)), EM_I32, "bool + i32");
    cr_expect_eq(em_type(em_div(i, i)), EM_F32, "i32 / i32");
    cr_expect_eq(em_type(em_div(l, b)), EM_F32, "i64 / bool");
    cr_expect_eq(em_type(em_div(i, d)), EM_F64, "i32 / f64");
    cr_expect_eq(em_type(em_pow(i, i)), EM_I32, "i32 ** i32");
    cr_expect_eq(em_type(em_maximum(b, b)), EM_I64, "maximum(bool, bool)");
    cr_expect_eq(em_type(em_lt(d, i)), EM_BOOL, "f64 < i32");
    cr_expect_eq(em_type(em_eq(b, b)), EM_BOOL, "bool == bool");
    cr_expect_eq(em_item(em_div(i, l)), 1.5, "3 / 2 is 1.5");
    cr_expect_eq(em_item(em_add(b, b)), 2, "true + true is 2");
    cr_expect_eq(em_item(em_sub(em_scalar(EM_BOOL, 0), b)), -1, "false - true is -1");
    em_scope_end();
}

Test(binary, raises_integers_to_integer_powers_exactly) {
    const int64_t cases[][2] = {
        {2, 10}, {3, 5}, {-2, 3}, {-3, 4}, {0, 0}, {5, 0}, {0, 3}, {-7, 0}, {1, 1000000}, {-1, 999999},
        {2, -1}, {1, -7}, {-1, -3}, {-1, -4}, {0, -1}, {7, -2}, {-2, -1}, {10, 9}, {2, 30}, {-2, 31},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    for (int bits = 32; bits <= 64; bits += 32) {
        em_dtype dt = bits == 32 ? EM_I32 : EM_I64;
        em_scope_begin();
        double bv[32], ev[32];
        for (int i = 0; i < n; i++) bv[i] = (double)cases[i][0], ev[i] = (double)cases[i][1];
        double *got = values_of(em_pow(tensor_of(dt, 1, (int64_t[]){n}, bv), tensor_of(dt, 1, (int64_t[]){n}, ev)));
        for (int i = 0; i < n; i++) {
            int64_t want = ipow_ref(cases[i][0], cases[i][1], bits);
            cr_expect_eq(got[i], (double)want, "%s: %lld ** %lld gives %.17g, want %lld",
                         em_dtype_name(dt), (long long)cases[i][0], (long long)cases[i][1], got[i],
                         (long long)want);
        }
        free(got);
        em_scope_end();
    }
}

Test(binary, wraps_integer_overflow_in_add_sub_mul_and_pow) {
    em_scope_begin();
    const int32_t a32[] = {INT32_MAX, INT32_MIN, 65536, 46341, INT32_MIN, 3, 2, -2};
    const int32_t b32[] = {1, 1, 65536, 46341, -1, 21, 31, 33};
    int64_t n = 8;
    em_tensor *x = em_from_data(EM_I32, 1, &n, a32), *y = em_from_data(EM_I32, 1, &n, b32);
    int32_t s[8], d[8], m[8], p[8];
    cr_assert_eq(em_read(em_add(x, y), s, sizeof s), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_sub(x, y), d, sizeof d), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_mul(x, y), m, sizeof m), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_pow(x, y), p, sizeof p), 0, "%s", em_last_error());
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(s[i], (int32_t)int_ref(RT_BINARY_ADD, a32[i], b32[i], 32), "i32 %d + %d = %d", a32[i], b32[i], s[i]);
        cr_expect_eq(d[i], (int32_t)int_ref(RT_BINARY_SUB, a32[i], b32[i], 32), "i32 %d - %d = %d", a32[i], b32[i], d[i]);
        cr_expect_eq(m[i], (int32_t)int_ref(RT_BINARY_MUL, a32[i], b32[i], 32), "i32 %d * %d = %d", a32[i], b32[i], m[i]);
        if (i >= 5) /* 3**21, 2**31, (-2)**33 */
            cr_expect_eq(p[i], (int32_t)ipow_ref(a32[i], b32[i], 32), "i32 %d ** %d = %d", a32[i], b32[i], p[i]);
    }
    cr_expect_eq(s[0], INT32_MIN);
    cr_expect_eq(d[1], INT32_MAX);
    cr_expect_eq(m[2], 0);
    cr_expect_eq(p[6], INT32_MIN);

    const int64_t a64[] = {INT64_MAX, INT64_MIN, INT64_MIN, 4294967296LL, 3, 2, -3, 3037000500LL};
    const int64_t b64[] = {1, 1, -1, 4294967296LL, 40, 63, 41, 3037000500LL};
    em_tensor *u = em_from_data(EM_I64, 1, &n, a64), *v = em_from_data(EM_I64, 1, &n, b64);
    int64_t S[8], D[8], M[8], P[8];
    cr_assert_eq(em_read(em_add(u, v), S, sizeof S), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_sub(u, v), D, sizeof D), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_mul(u, v), M, sizeof M), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_pow(u, v), P, sizeof P), 0, "%s", em_last_error());
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(S[i], int_ref(RT_BINARY_ADD, a64[i], b64[i], 64), "i64 %lld + %lld", (long long)a64[i], (long long)b64[i]);
        cr_expect_eq(D[i], int_ref(RT_BINARY_SUB, a64[i], b64[i], 64), "i64 %lld - %lld", (long long)a64[i], (long long)b64[i]);
        cr_expect_eq(M[i], int_ref(RT_BINARY_MUL, a64[i], b64[i], 64), "i64 %lld * %lld", (long long)a64[i], (long long)b64[i]);
        if (i >= 4 && i <= 6) /* 3**40, 2**63, (-3)**41 */
            cr_expect_eq(P[i], ipow_ref(a64[i], b64[i], 64), "i64 %lld ** %lld = %lld", (long long)a64[i],
                         (long long)b64[i], (long long)P[i]);
    }
    cr_expect_eq(S[0], INT64_MIN);
    cr_expect_eq(M[2], INT64_MIN, "INT64_MIN * -1 wraps to itself");
    cr_expect_eq(M[3], 0, "2**32 * 2**32 wraps to 0");
    cr_expect_eq(P[5], INT64_MIN, "2**63 wraps to INT64_MIN");
    em_scope_end();
}

Test(binary, compares_i64_values_beyond_2_pow_53_exactly) {
    em_scope_begin();
    const int64_t a[] = {(1LL << 53) + 1, INT64_MAX, INT64_MIN + 1, (1LL << 62) + 1};
    const int64_t b[] = {(1LL << 53), INT64_MAX - 1, INT64_MIN, (1LL << 62)};
    int64_t n = 4;
    em_tensor *x = em_from_data(EM_I64, 1, &n, a), *y = em_from_data(EM_I64, 1, &n, b);
    uint8_t eq[4], gt[4];
    int64_t mx[4], df[4];
    cr_assert_eq(em_read(em_eq(x, y), eq, sizeof eq), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_gt(x, y), gt, sizeof gt), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_minimum(x, y), mx, sizeof mx), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_sub(x, y), df, sizeof df), 0, "%s", em_last_error());
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(eq[i], 0, "%lld == %lld", (long long)a[i], (long long)b[i]);
        cr_expect_eq(gt[i], 1, "%lld > %lld", (long long)a[i], (long long)b[i]);
        cr_expect_eq(mx[i], b[i], "minimum(%lld, %lld)", (long long)a[i], (long long)b[i]);
        cr_expect_eq(df[i], 1, "%lld - %lld", (long long)a[i], (long long)b[i]);
    }
    em_scope_end();
}

/* ---- special values ---------------------------------------------------------------------------- */

Test(binary, maximum_and_minimum_propagate_nan_from_either_side) {
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int d = 0; d < 2; d++) {
        em_scope_begin();
        /* NaN on the left, on the right, on both, at body and tail positions. */
        double av[35], bv[35];
        for (int i = 0; i < 35; i++) {
            av[i] = (i % 3 == 0) ? NAN : i;
            bv[i] = (i % 3 == 1) ? NAN : 34 - i;
        }
        av[34] = bv[34] = NAN;
        em_tensor *a = tensor_of(dts[d], 1, (int64_t[]){35}, av), *b = tensor_of(dts[d], 1, (int64_t[]){35}, bv);
        double *mx = values_of(em_maximum(a, b)), *mn = values_of(em_minimum(a, b));
        for (int i = 0; i < 35; i++) {
            cr_expect(close_to(mx[i], r_max(av[i], bv[i]), 0, 0), "%s maximum(%g, %g) = %g",
                      em_dtype_name(dts[d]), av[i], bv[i], mx[i]);
            cr_expect(close_to(mn[i], r_min(av[i], bv[i]), 0, 0), "%s minimum(%g, %g) = %g",
                      em_dtype_name(dts[d]), av[i], bv[i], mn[i]);
        }
        free(mx);
        free(mn);
        /* A broadcast NaN scalar on either side makes every element NaN. */
        em_tensor *nan = em_scalar(dts[d], NAN), *x = em_arange(dts[d], 0, 35, 1);
        em_tensor *r[] = {em_maximum(nan, x), em_maximum(x, nan), em_minimum(nan, x), em_minimum(x, nan)};
        for (int k = 0; k < 4; k++) {
            double *v = values_of(r[k]);
            for (int i = 0; i < 35; i++)
                cr_expect(isnan(v[i]), "%s case %d element %d: %g, want NaN", em_dtype_name(dts[d]), k, i, v[i]);
            free(v);
        }
        em_scope_end();
    }
}

Test(binary, compares_nan_as_unordered_and_infinities_in_order) {
    const em_dtype dts[] = {EM_F32, EM_F64};
    const double av[] = {NAN, 1, NAN, INFINITY, -INFINITY, INFINITY, 0.0, -0.0};
    const double bv[] = {1, NAN, NAN, INFINITY, INFINITY, 1e30, -0.0, 0.0};
    for (int d = 0; d < 2; d++)
        for (int k = 7; k < NOPS; k++) {
            em_scope_begin();
            /* Repeated to 41 so the values land in vector bodies and tails alike. */
            double a[41], b[41];
            for (int i = 0; i < 41; i++) a[i] = av[i % 8], b[i] = bv[i % 8];
            double *got = values_of(ops[k].fn(tensor_of(dts[d], 1, (int64_t[]){41}, a),
                                              tensor_of(dts[d], 1, (int64_t[]){41}, b)));
            for (int i = 0; i < 41; i++)
                cr_expect_eq(got[i], ops[k].ref(a[i], b[i]), "%s em_%s(%g, %g) = %g",
                             em_dtype_name(dts[d]), ops[k].name, a[i], b[i], got[i]);
            free(got);
            em_scope_end();
        }
}

Test(binary, divides_by_zero_into_infinities_and_nan) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64};
    for (int d = 0; d < 4; d++) {
        em_scope_begin();
        double a[] = {1, -1, 0, 5}, b[] = {0, 0, 0, 0};
        double *got = values_of(em_div(tensor_of(dts[d], 1, (int64_t[]){4}, a), tensor_of(dts[d], 1, (int64_t[]){4}, b)));
        cr_expect(got[0] == INFINITY && got[1] == -INFINITY && isnan(got[2]) && got[3] == INFINITY,
                  "%s: 1/0, -1/0, 0/0, 5/0 gave %g %g %g %g", em_dtype_name(dts[d]), got[0], got[1],
                  got[2], got[3]);
        free(got);
        em_scope_end();
    }
}

Test(binary, raises_floats_to_powers_at_the_edges) {
    const double a[] = {0, 0, -2, -2, 2, 2, 1, INFINITY, 4, NAN, 1, -8};
    const double b[] = {0, -1, 3, 0.5, 128, -150, NAN, -1, 0.5, 0, INFINITY, 1.0 / 3};
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int d = 0; d < 2; d++) {
        em_scope_begin();
        double *got = values_of(em_pow(tensor_of(dts[d], 1, (int64_t[]){12}, a), tensor_of(dts[d], 1, (int64_t[]){12}, b)));
        for (int i = 0; i < 12; i++) {
            double want = dts[d] == EM_F32 ? (float)pow(a[i], b[i]) : pow(a[i], b[i]);
            cr_expect(close_to(got[i], want, 1e-6, 0) || (want == 0 && fabs(got[i]) < 1e-38),
                      "%s pow(%g, %g) = %.9g, want %.9g", em_dtype_name(dts[d]), a[i], b[i], got[i], want);
        }
        free(got);
        em_scope_end();
    }
}

/* ---- the f32 loops of every ISA, called directly ---------------------------------------------- */

/* Runs table t's loop for c on n elements in stride mode (sa, sb) and checks it,
 * including that nothing is written past n and the inputs are untouched. */
static void check_simd_binary(const char *isa, const rt_simd *t, const binary_case *c, int64_t n,
                              int sa, int sb, const float *special, int nspecial) {
    int64_t na = sa ? n : 1, nb = sb ? n : 1;
    float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    for (int64_t i = 0; i < na; i++) a[i] = (float)random_input(c, 0, EM_F32);
    for (int64_t i = 0; i < nb; i++) b[i] = (float)random_input(c, 1, EM_F32);
    for (int i = 0; i < nspecial && i < na; i++) a[(i * 7) % na] = special[i];
    for (int i = 0; i < nspecial && i < nb; i++) b[(i * 5 + 1) % nb] = special[nspecial - 1 - i];
    size_t esz = c->cmp ? 1 : sizeof(float), nbytes = (size_t)(n + 64) * esz;
    unsigned char *out = malloc(nbytes), *a0 = malloc((size_t)na * 4), *b0 = malloc((size_t)nb * 4);
    memset(out, 0xA5, nbytes);
    memcpy(a0, a, (size_t)na * 4);
    memcpy(b0, b, (size_t)nb * 4);
    t->binary[c->kernel](n, a, sa, b, sb, out);
    for (int64_t i = 0; i < n; i++) {
        double u = a[sa ? i : 0], v = b[sb ? i : 0], want = c->ref(u, v);
        double got = c->cmp ? out[i] : ((float *)out)[i];
        if (c->cmp ? got != want : !close_to(got, want, 1e-5, 1e-6))
            cr_assert_fail("%s %s n=%lld sa=%d sb=%d [%lld]: (%.9g, %.9g) gives %.9g, want %.9g", isa,
                           c->name, (long long)n, sa, sb, (long long)i, u, v, got, want);
    }
    for (size_t i = (size_t)n * esz; i < nbytes; i++)
        cr_assert_eq(out[i], 0xA5, "%s %s n=%lld sa=%d sb=%d wrote past the end (byte %zu)", isa,
                     c->name, (long long)n, sa, sb, i);
    cr_assert(memcmp(a, a0, (size_t)na * 4) == 0 && memcmp(b, b0, (size_t)nb * 4) == 0,
              "%s %s modified an input", isa, c->name);
    free(a);
    free(b);
    free(a0);
    free(b0);
    free(out);
}

Test(binary_simd, every_isa_matches_the_reference_in_every_stride_mode) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    cr_assert(rt_simd_for("sse2"), "sse2 runs on every x86-64");
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue; /* the CPU lacks this ISA */
        for (int k = 0; k < NOPS; k++) {
            cr_assert(t->binary[ops[k].kernel], "%s has no %s loop", isas[s], ops[k].name);
            for (int64_t n = 1; n <= 1023; n = n == 40 ? 1023 : n + 1)
                for (int mode = 0; mode < 4; mode++)
                    check_simd_binary(isas[s], t, &ops[k], n, mode & 1, mode >> 1, NULL, 0);
        }
    }
}

Test(binary_simd, every_isa_propagates_nan_and_compares_it_unordered) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, NAN};
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue;
        for (int k = 0; k < NOPS; k++) {
            if (ops[k].kernel == RT_BINARY_POW) continue; /* edges in raises_floats_to_powers_at_the_edges */
            for (int64_t n = 1; n <= 40; n++)
                for (int mode = 0; mode < 4; mode++)
                    check_simd_binary(isas[s], t, &ops[k], n, mode & 1, mode >> 1, sp, 6);
        }
    }
}
