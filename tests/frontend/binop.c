/*
 * binop.c — the binary elementwise ops as test cases (see binop.h): their
 * references, and the checker the binary tests run every op through.
 *
 * References are written here, not taken from the library: libm in double for
 * floats, exact wrapping arithmetic in uint64_t for integers (runtime/ew.c's
 * integer pow included), and the result dtype by the rules of ir/shape.c. The
 * random inputs come from one sequence kept here, so a test draws the same
 * values whichever file it is in: each test runs in a process of its own and
 * starts the sequence from its seed.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>

#include "../util.h"
#include "binop.h"

static tu_rng rng = {0x9e3779b97f4a7c15ULL}; /* the random inputs */

static bool is_float(em_dtype d) { return d == EM_F32 || d == EM_F64; }

/* ---- the ops and their references ------------------------------------------------------- */

static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
double binop_max(double a, double b) { return isnan(a) || isnan(b) ? NAN : a > b ? a : b; }
double binop_min(double a, double b) { return isnan(a) || isnan(b) ? NAN : a < b ? a : b; }
static double r_eq(double a, double b) { return a == b; }
static double r_ne(double a, double b) { return a != b; }
static double r_lt(double a, double b) { return a < b; }
static double r_le(double a, double b) { return a <= b; }
static double r_gt(double a, double b) { return a > b; }
static double r_ge(double a, double b) { return a >= b; }

const binop_case binop_cases[BINOP_COUNT] = {
    {"add", em_add, RT_BINARY_ADD, r_add, false, -100, 100, -100, 100, false, false},
    {"sub", em_sub, RT_BINARY_SUB, r_sub, false, -100, 100, -100, 100, false, false},
    {"mul", em_mul, RT_BINARY_MUL, r_mul, false, -10, 10, -10, 10, false, false},
    {"div", em_div, RT_BINARY_DIV, r_div, false, -10, 10, 0.1, 10, true, false},
    {"pow", em_pow, RT_BINARY_POW, pow, false, 0.05, 4, -3, 3, false, false},
    {"maximum", em_maximum, RT_BINARY_MAX, binop_max, false, -3, 3, -3, 3, false, true},
    {"minimum", em_minimum, RT_BINARY_MIN, binop_min, false, -3, 3, -3, 3, false, true},
    {"eq", em_eq, RT_BINARY_EQ, r_eq, true, -1, 1, -1, 1, false, true},
    {"ne", em_ne, RT_BINARY_NE, r_ne, true, -1, 1, -1, 1, false, true},
    {"lt", em_lt, RT_BINARY_LT, r_lt, true, -1, 1, -1, 1, false, true},
    {"le", em_le, RT_BINARY_LE, r_le, true, -1, 1, -1, 1, false, true},
    {"gt", em_gt, RT_BINARY_GT, r_gt, true, -1, 1, -1, 1, false, true},
    {"ge", em_ge, RT_BINARY_GE, r_ge, true, -1, 1, -1, 1, false, true},
};

/* Integer results wrap to `bits` (32 or 64), computed in uint64_t. */
static int64_t wrap(uint64_t v, int bits) { return bits == 32 ? (int32_t)(uint32_t)v : (int64_t)v; }

int64_t binop_ipow(int64_t b, int64_t e, int bits) {
    if (e < 0) return b == 1 ? 1 : b == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t r = 1;
    for (int64_t i = 0; i < e; i++) r *= (uint64_t)b;
    return wrap(r, bits);
}

int64_t binop_int_ref(rt_binary k, int64_t a, int64_t b, int bits) {
    switch (k) {
    case RT_BINARY_ADD: return wrap((uint64_t)a + (uint64_t)b, bits);
    case RT_BINARY_SUB: return wrap((uint64_t)a - (uint64_t)b, bits);
    case RT_BINARY_MUL: return wrap((uint64_t)a * (uint64_t)b, bits);
    case RT_BINARY_POW: return binop_ipow(a, b, bits);
    case RT_BINARY_MAX: return a > b ? a : b;
    case RT_BINARY_MIN: return a < b ? a : b;
    default: cr_assert_fail("no integer reference for op %d", (int)k);
    }
    return 0;
}

/* The result dtype of c on (da, db) by the rules of ir/shape.c. */
static em_dtype result_dtype(const binop_case *c, em_dtype da, em_dtype db) {
    if (c->cmp) return EM_BOOL;
    em_dtype p = tu_promote(da, db);
    if (p == EM_BOOL) p = EM_I64;
    if (c->kernel == RT_BINARY_DIV && !is_float(p)) p = EM_F32;
    return p;
}

/* Expected element for inputs u, v (exact values of their dtypes da, db). */
static double expected(const binop_case *c, em_dtype da, em_dtype db, double u, double v) {
    em_dtype p = tu_promote(da, db), out = result_dtype(c, da, db);
    if (c->cmp) { /* computed in the promoted dtype: f32 rounds both sides */
        if (p == EM_F32) u = (float)u, v = (float)v;
        return c->ref(u, v);
    }
    if (!is_float(out))
        return (double)binop_int_ref(c->kernel, (int64_t)u, (int64_t)v, out == EM_I32 ? 32 : 64);
    if (out == EM_F32) u = (float)u, v = (float)v;
    return c->ref(u, v);
}

double binop_random_input(const binop_case *c, int side, em_dtype dt) {
    double lo = side ? c->blo : c->alo, hi = side ? c->bhi : c->ahi;
    if (dt == EM_BOOL) return tu_uniform(&rng, 0, 1) < 0.5;
    if (!is_float(dt)) {
        if (c->kernel == RT_BINARY_POW)
            return side ? round(tu_uniform(&rng, 0, 9)) : round(tu_uniform(&rng, -6, 6));
        if (c->kernel == RT_BINARY_DIV && side) {
            double v = round(tu_uniform(&rng, 1, 20));
            return tu_uniform(&rng, 0, 1) < 0.5 ? -v : v;
        }
        return round(tu_uniform(&rng, c->cmp ? -3 : -100, c->cmp ? 3 : 100));
    }
    double x = tu_uniform(&rng, lo, hi);
    if (side && c->b_nonzero && tu_uniform(&rng, 0, 1) < 0.5) x = -x;
    if (c->ties) x = round(x * 4) / 4;
    return dt == EM_F32 ? (float)x : x;
}

double *binop_random_inputs(const binop_case *c, int side, em_dtype dt, int64_t n) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = binop_random_input(c, side, dt);
    return v;
}

/* ---- the checker --------------------------------------------------------------------------- */

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

void binop_check(const binop_case *c, em_tensor *a, const double *av, em_tensor *b,
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
    double *got = tu_values_of(y);
    double rtol = tu_rtol_of(want_dt), atol = tu_atol_of(want_dt);
    int64_t idx[EM_MAX_DIMS] = {0}, n = em_numel(y);
    int nda = em_ndim(a), ndb = em_ndim(b);
    const int64_t *sha = em_shape(a), *shb = em_shape(b);
    for (int64_t i = 0; i < n; i++) {
        double u = av[tu_source_index(no, idx, nda, sha)];
        double v = bv[tu_source_index(no, idx, ndb, shb)];
        double want = expected(c, da, db, u, v);
        if (!tu_close_to(got[i], want, rtol, atol))
            cr_assert_fail("em_%s on %s (%s, %s), element %lld of %lld: (%.9g, %.9g) gives %.9g, want %.9g",
                           c->name, what, em_dtype_name(da), em_dtype_name(db), (long long)i,
                           (long long)n, u, v, got[i], want);
        for (int d = no - 1; d >= 0 && ++idx[d] == so[d]; d--) idx[d] = 0;
    }
    free(got);
    em_scope_end();
}

void binop_check_ops(unsigned which, em_dtype da, int na, const int64_t *sa, em_dtype db, int nb,
                     const int64_t *sb, const char *what) {
    for (int k = 0; k < BINOP_COUNT; k++) {
        if (!(which >> k & 1u)) continue;
        em_scope_begin();
        double *av = binop_random_inputs(&binop_cases[k], 0, da, tu_count(na, sa));
        double *bv = binop_random_inputs(&binop_cases[k], 1, db, tu_count(nb, sb));
        binop_check(&binop_cases[k], tu_tensor_of(da, na, sa, av), av, tu_tensor_of(db, nb, sb, bv),
                    bv, what);
        free(av);
        free(bv);
        em_scope_end();
    }
}
