/*
 * test_elementwise.c — what the eager elementwise ops share, through the public
 * API: em_where (bool and non-bool conditions, all three operands broadcast,
 * branch promotion), em_cast between all 25 dtype pairs (float -> int saturates
 * and sends NaN to 0, nonzero -> true, i64 -> i32 keeps the low bits), results
 * that are bit-identical with one thread and with two, inputs that are never
 * modified, and NULL inputs, which every op rejects with a message naming it.
 * The unary and binary ops themselves are in test_elementwise_unary.c,
 * test_elementwise_binary.c and test_elementwise_binary_values.c.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "../util.h"

/* ---- helpers -------------------------------------------------------------------------- */

static tu_rng rng = {0xd1342543de82ef95ULL};

/* Random values that every dtype holds exactly: small integers, or (floats) quarters. */
static double *random_values(em_dtype dt, int64_t n) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = dt == EM_BOOL ? tu_uniform(&rng, 0, 1) < 0.5
             : dt == EM_F32 || dt == EM_F64 ? round(tu_uniform(&rng, -40, 40)) / 4
                                            : round(tu_uniform(&rng, -50, 50));
    return v;
}

static const em_dtype all_dtypes[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};

/* ---- em_where ---------------------------------------------------------------------------- */

typedef struct operand { em_dtype dt; int nd; int64_t shape[4]; } operand;

/* where(c, a, b) on random operands; checks dtype, broadcast shape and values. */
static void check_where(operand c, operand a, operand b, int no, const int64_t *so) {
    em_scope_begin();
    double *cv = random_values(c.dt, tu_count(c.nd, c.shape)),
           *av = random_values(a.dt, tu_count(a.nd, a.shape)),
           *bv = random_values(b.dt, tu_count(b.nd, b.shape));
    int64_t nc = tu_count(c.nd, c.shape);
    for (int64_t i = 0; i < nc; i++) /* conditions that are often exactly zero */
        if (c.dt != EM_BOOL && tu_uniform(&rng, 0, 1) < 0.4) cv[i] = 0;
    em_tensor *y = em_where(tu_tensor_of(c.dt, c.nd, c.shape, cv), tu_tensor_of(a.dt, a.nd, a.shape, av),
                            tu_tensor_of(b.dt, b.nd, b.shape, bv));
    char what[80];
    snprintf(what, sizeof what, "where(%s, %s, %s)", em_dtype_name(c.dt), em_dtype_name(a.dt),
             em_dtype_name(b.dt));
    cr_assert(y, "%s: %s", what, em_last_error());
    cr_assert_eq(em_type(y), tu_promote(a.dt, b.dt), "%s gave %s", what, em_dtype_name(em_type(y)));
    tu_expect_shape(y, no, so, what);
    double *got = tu_values_of(y);
    int64_t idx[8] = {0};
    for (int64_t i = 0; i < em_numel(y); i++) {
        double cond = cv[tu_source_index(no, idx, c.nd, c.shape)];
        double want = cond != 0 ? av[tu_source_index(no, idx, a.nd, a.shape)]
                                : bv[tu_source_index(no, idx, b.nd, b.shape)];
        cr_assert_eq(got[i], want, "%s element %lld: cond %g gives %g, want %g", what,
                     (long long)i, cond, got[i], want);
        for (int d = no - 1; d >= 0 && ++idx[d] == so[d]; d--) idx[d] = 0;
    }
    free(got);
    free(cv);
    free(av);
    free(bv);
    em_scope_end();
}

Test(where, picks_from_a_or_b_by_a_bool_condition) {
    const int64_t lens[] = {1, 15, 16, 17, 1023, 4097, 1 << 20};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        operand v = {EM_F32, 1, {lens[i]}}, c = {EM_BOOL, 1, {lens[i]}};
        check_where(c, v, v, 1, &lens[i]);
    }
    operand s = {EM_F32, 0, {0}}, cs = {EM_BOOL, 0, {0}};
    check_where(cs, s, s, 0, NULL);
}

Test(where, treats_any_nonzero_condition_as_true) {
    for (int d = 0; d < 4; d++) {
        operand c = {all_dtypes[d], 1, {1023}}, v = {EM_I32, 1, {1023}};
        check_where(c, v, v, 1, (int64_t[]){1023});
    }
    em_scope_begin();
    double cv[] = {0, -0.0, 2.5, NAN, -1, INFINITY, 1e-30}, av[7], bv[7];
    for (int i = 0; i < 7; i++) av[i] = 1, bv[i] = 0;
    const em_dtype cdt[] = {EM_F32, EM_F64};
    for (int d = 0; d < 2; d++) {
        double *got = tu_values_of(em_where(tu_tensor_of(cdt[d], 1, (int64_t[]){7}, cv),
                                            tu_tensor_of(EM_I64, 1, (int64_t[]){7}, av),
                                            tu_tensor_of(EM_I64, 1, (int64_t[]){7}, bv)));
        for (int i = 0; i < 7; i++)
            cr_expect_eq(got[i], cv[i] != 0, "%s condition %g picked %s", em_dtype_name(cdt[d]),
                         cv[i], got[i] ? "a" : "b");
        free(got);
    }
    em_scope_end();
}

Test(where, broadcasts_the_condition_and_both_branches) {
    operand c = {EM_BOOL, 3, {3, 1, 1}}, a = {EM_F32, 3, {1, 4, 1}}, b = {EM_F32, 1, {5}};
    check_where(c, a, b, 3, (int64_t[]){3, 4, 5});
    operand c2 = {EM_BOOL, 2, {2, 3}}, s = {EM_F64, 0, {0}};
    check_where(c2, s, s, 2, (int64_t[]){2, 3});
    operand c3 = {EM_I32, 0, {0}}, a3 = {EM_I64, 1, {4}}, b3 = {EM_I64, 2, {2, 1}};
    check_where(c3, a3, b3, 2, (int64_t[]){2, 4});
    operand c4 = {EM_BOOL, 2, {1000, 1}}, a4 = {EM_F32, 2, {1, 1000}}, b4 = {EM_F32, 0, {0}};
    check_where(c4, a4, b4, 2, (int64_t[]){1000, 1000});
}

Test(where, promotes_the_branches_without_turning_bools_into_i64) {
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            operand c = {EM_BOOL, 2, {3, 1}}, a = {all_dtypes[i], 1, {17}}, b = {all_dtypes[j], 2, {1, 17}};
            check_where(c, a, b, 2, (int64_t[]){3, 17});
        }
}

Test(where, reads_non_contiguous_operands) {
    em_scope_begin();
    double *cv = random_values(EM_BOOL, 30 * 20), *av = random_values(EM_F32, 20 * 91),
           *bv = random_values(EM_F32, 20);
    em_tensor *c = em_transpose(tu_tensor_of(EM_BOOL, 2, (int64_t[]){30, 20}, cv), 0, 1); /* [20,30] */
    em_tensor *a = em_slice(tu_tensor_of(EM_F32, 2, (int64_t[]){20, 91}, av), 1, 1, 91, 3); /* [20,30] */
    em_tensor *b = em_expand(tu_tensor_of(EM_F32, 2, (int64_t[]){20, 1}, bv), 2, (int64_t[]){20, 30});
    double *got = tu_values_of(em_where(c, a, b));
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < 30; j++) {
            double want = cv[j * 20 + i] ? av[i * 91 + 1 + 3 * j] : bv[i];
            cr_assert_eq(got[i * 30 + j], want, "[%d,%d]: %g, want %g", i, j, got[i * 30 + j], want);
        }
    free(got);
    free(cv);
    free(av);
    free(bv);
    /* Runs longer than the iterator's gather chunk (1024), all three operands strided:
     * c = x[::3] and a = z[1::2] viewed as [2,1500], b a transposed [1500,2]. */
    cv = random_values(EM_BOOL, 9000), av = random_values(EM_I64, 6000), bv = random_values(EM_F64, 3000);
    c = em_reshape(em_slice(tu_tensor_of(EM_BOOL, 1, (int64_t[]){9000}, cv), 0, 0, 9000, 3), 2,
                   (int64_t[]){2, 1500});
    a = em_reshape(em_slice(tu_tensor_of(EM_I64, 1, (int64_t[]){6000}, av), 0, 1, 6000, 2), 2,
                   (int64_t[]){2, 1500});
    b = em_transpose(tu_tensor_of(EM_F64, 2, (int64_t[]){1500, 2}, bv), 0, 1);
    em_tensor *y = em_where(c, a, b);
    cr_assert(y, "%s", em_last_error());
    got = tu_values_of(y);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 1500; j++) {
            int k = i * 1500 + j;
            double want = cv[3 * k] != 0 ? av[1 + 2 * k] : bv[j * 2 + i];
            cr_assert_eq(got[k], want, "[%d,%d]: %g, want %g", i, j, got[k], want);
        }
    free(got);
    free(cv);
    free(av);
    free(bv);
    em_scope_end();
}

Test(where, gives_zero_size_results_when_the_zero_dim_leads) {
    operand c = {EM_BOOL, 2, {0, 3}}, a = {EM_F32, 2, {1, 3}}, b = {EM_F32, 0, {0}};
    check_where(c, a, b, 2, (int64_t[]){0, 3});
    operand c2 = {EM_F32, 1, {1}}, a2 = {EM_I32, 1, {0}}, b2 = {EM_I64, 1, {1}};
    check_where(c2, a2, b2, 1, (int64_t[]){0});
}

/* Regression: see unary/gives_zero_size_results_when_a_later_dim_is_zero. */
Test(where, gives_zero_size_results_when_a_later_dim_is_zero) {
    operand c = {EM_BOOL, 2, {3, 1}}, a = {EM_F32, 2, {1, 0}}, b = {EM_F32, 0, {0}};
    check_where(c, a, b, 2, (int64_t[]){3, 0});
}

Test(where, rejects_shapes_that_cannot_broadcast_with_a_message) {
    em_scope_begin();
    em_tensor *c = em_zeros(EM_BOOL, 2, (int64_t[]){2, 3}), *a = em_zeros(EM_F32, 1, (int64_t[]){3}),
              *b = em_zeros(EM_F32, 1, (int64_t[]){4});
    em_clear_error();
    cr_expect_null(em_where(c, a, b));
    cr_expect_str_eq(em_last_error(), "em_where: shapes [3] and [4] cannot be broadcast");
    em_clear_error();
    cr_expect_null(em_where(b, c, a));
    cr_expect(strncmp(em_last_error(), "em_where: shapes ", 17) == 0 &&
                  strstr(em_last_error(), "cannot be broadcast"),
              "message: %s", em_last_error());
    em_scope_end();
}

/* ---- em_cast ------------------------------------------------------------------------------ */

/* Converts element s of dtype src to dst into d, by the documented rules. */
static void cast_ref(em_dtype src, const void *s, em_dtype dst, void *d) {
    if (src == EM_F32 || src == EM_F64) {
        double x = src == EM_F32 ? *(const float *)s : *(const double *)s;
        switch (dst) {
        case EM_F32: *(float *)d = (float)x; return;
        case EM_F64: *(double *)d = x; return;
        case EM_I32:
            *(int32_t *)d = isnan(x) ? 0 : x >= 2147483647.0 ? INT32_MAX : x <= -2147483648.0 ? INT32_MIN : (int32_t)x;
            return;
        case EM_I64:
            *(int64_t *)d = isnan(x) ? 0 : x >= 0x1p63 ? INT64_MAX : x <= -0x1p63 ? INT64_MIN : (int64_t)x;
            return;
        case EM_BOOL: *(uint8_t *)d = x != 0; return;
        }
    }
    int64_t v = src == EM_I32 ? *(const int32_t *)s : src == EM_I64 ? *(const int64_t *)s : *(const uint8_t *)s;
    switch (dst) {
    case EM_F32: *(float *)d = (float)v; return;
    case EM_F64: *(double *)d = (double)v; return;
    case EM_I32: *(int32_t *)d = (int32_t)(uint32_t)(uint64_t)v; return;
    case EM_I64: *(int64_t *)d = v; return;
    case EM_BOOL: *(uint8_t *)d = v != 0; return;
    }
}

static const float f32_vals[] = {0, -0.0f, 1, -1, 1.5f, -1.5f, 2.7f, -2.7f, 0.5f, -0.49f, 1e-30f,
                                 16777217.0f, 2147483520.0f, -2147483648.0f, 2147483648.0f, 3e9f,
                                 -3e9f, 1e10f, -1e10f, 9.3e18f, -9.3e18f, 1e20f, -1e20f, 3e38f,
                                 INFINITY, -INFINITY, NAN, -NAN, 0x1p-149f};
static const double f64_vals[] = {0, -0.0, 1, -1, 2.7, -2.7, 0.999999999, 16777217, 2147483647,
                                  2147483647.9, 2147483648.0, -2147483648.0, -2147483649.0,
                                  9007199254740993.0, 9.2233720368547748e18, 0x1p63, -0x1p63,
                                  1e19, -1e19, 1e300, -1e300, 1e-300, 3.4028235677973366e38,
                                  INFINITY, -INFINITY, NAN, 4.9e-324};
static const int32_t i32_vals[] = {0, 1, -1, 2, 255, 256, INT32_MAX, INT32_MIN, 16777217, -16777217,
                                   123456789};
static const int64_t i64_vals[] = {0, 1, -1, INT64_MAX, INT64_MIN, 4294967296LL + 5, 2147483648LL,
                                   -2147483649LL, 9007199254740993LL, 16777217, 4294967295LL,
                                   -4294967296LL, (1LL << 62) + 1};
static const uint8_t bool_vals[] = {0, 1, 1, 0};

static const void *cast_values(em_dtype dt, int64_t *n) {
    switch (dt) {
    case EM_F32: *n = sizeof f32_vals / sizeof *f32_vals; return f32_vals;
    case EM_F64: *n = sizeof f64_vals / sizeof *f64_vals; return f64_vals;
    case EM_I32: *n = sizeof i32_vals / sizeof *i32_vals; return i32_vals;
    case EM_I64: *n = sizeof i64_vals / sizeof *i64_vals; return i64_vals;
    case EM_BOOL: *n = sizeof bool_vals / sizeof *bool_vals; return bool_vals;
    }
    return NULL;
}

/* Checks em_cast(x, dst) element by element against cast_ref of src[] (the
 * logical values of x, row-major). */
static void check_cast(em_tensor *x, const void *src, em_dtype dst, const char *what) {
    em_scope_begin();
    em_dtype sdt = em_type(x);
    em_tensor *y = em_cast(x, dst);
    cr_assert(y, "cast %s -> %s (%s): %s", em_dtype_name(sdt), em_dtype_name(dst), what, em_last_error());
    cr_assert_eq(em_type(y), dst);
    tu_expect_shape(y, em_ndim(x), em_shape(x), what);
    size_t nb;
    unsigned char *got = tu_bytes_of(y, &nb);
    size_t ss = em_dtype_size(sdt), ds = em_dtype_size(dst);
    for (int64_t i = 0; i < em_numel(x); i++) {
        union { double d; int64_t l; unsigned char b[8]; } want; /* aligned for any dtype */
        cast_ref(sdt, (const char *)src + i * (int64_t)ss, dst, want.b);
        double w = tu_get(dst, want.b, 0), g = tu_get(dst, got + i * (int64_t)ds, 0);
        bool ok = (dst == EM_F32 || dst == EM_F64) && isnan(w) ? isnan(g)
                                                               : memcmp(want.b, got + i * (int64_t)ds, ds) == 0;
        if (!ok) {
            char sv[40];
            if (sdt == EM_I64) snprintf(sv, sizeof sv, "%lld", (long long)((const int64_t *)src)[i]);
            else snprintf(sv, sizeof sv, "%.17g", tu_get(sdt, src, i));
            cr_assert_fail("cast %s -> %s (%s) of %s: got %.17g, want %.17g", em_dtype_name(sdt),
                           em_dtype_name(dst), what, sv, g, w);
        }
    }
    free(got);
    em_scope_end();
}

Test(cast, converts_between_all_25_dtype_pairs) {
    for (int s = 0; s < 5; s++)
        for (int d = 0; d < 5; d++) {
            em_scope_begin();
            int64_t n;
            const void *src = cast_values(all_dtypes[s], &n);
            check_cast(em_from_data(all_dtypes[s], 1, &n, src), src, all_dtypes[d], "a vector");
            em_scope_end();
        }
}

Test(cast, saturates_floats_to_integers_and_sends_nan_to_0) {
    em_scope_begin();
    float x[] = {3e9f, -3e9f, 1e20f, -1e20f, INFINITY, -INFINITY, NAN, 2.9f, -2.9f};
    int64_t n = 9;
    int32_t i[9];
    int64_t l[9];
    em_tensor *t = em_from_data(EM_F32, 1, &n, x);
    cr_assert_eq(em_read(em_cast(t, EM_I32), i, sizeof i), 0, "%s", em_last_error());
    cr_assert_eq(em_read(em_cast(t, EM_I64), l, sizeof l), 0, "%s", em_last_error());
    const int32_t wi[] = {INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN, 0, 2, -2};
    const int64_t wl[] = {3000000000LL, -3000000000LL, INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN, 0, 2, -2};
    for (int k = 0; k < 9; k++) {
        cr_expect_eq(i[k], wi[k], "(i32) %g = %d, want %d", x[k], i[k], wi[k]);
        cr_expect_eq(l[k], wl[k], "(i64) %g = %lld, want %lld", x[k], (long long)l[k], (long long)wl[k]);
    }
    em_scope_end();
}

Test(cast, makes_every_nonzero_value_true) {
    em_scope_begin();
    double x[] = {0, -0.0, 1e-300, -5, NAN, INFINITY, 0.25};
    for (int d = 0; d < 4; d++) {
        em_dtype dt = all_dtypes[d];
        int64_t n = dt == EM_F32 || dt == EM_F64 ? 7 : 4;
        double v[7] = {0, 3, -5, 1, 0, 0, 0};
        em_tensor *t = tu_tensor_of(dt, 1, &n, n == 7 ? x : v);
        uint8_t b[7];
        cr_assert_eq(em_read(em_cast(t, EM_BOOL), b, (size_t)n), 0, "%s", em_last_error());
        for (int k = 0; k < n; k++) {
            double src = n == 7 ? (dt == EM_F32 ? (float)x[k] : x[k]) : v[k];
            cr_expect_eq(b[k], src != 0, "%s %g -> bool %d", em_dtype_name(dt), src, b[k]);
        }
    }
    em_scope_end();
}

Test(cast, wraps_i64_to_i32_keeping_the_low_bits) {
    em_scope_begin();
    int64_t x[] = {4294967296LL + 5, 2147483648LL, -2147483649LL, INT64_MIN, INT64_MAX, -1};
    int64_t n = 6;
    int32_t y[6];
    cr_assert_eq(em_read(em_cast(em_from_data(EM_I64, 1, &n, x), EM_I32), y, sizeof y), 0, "%s", em_last_error());
    const int32_t w[] = {5, INT32_MIN, INT32_MAX, 0, -1, -1};
    for (int k = 0; k < 6; k++) cr_expect_eq(y[k], w[k], "(i32) %lld = %d, want %d", (long long)x[k], y[k], w[k]);
    em_scope_end();
}

Test(cast, keeps_0d_and_size_1_shapes_and_reads_non_contiguous_inputs) {
    for (int s = 0; s < 5; s++)
        for (int d = 0; d < 5; d++) {
            em_scope_begin();
            em_dtype sdt = all_dtypes[s];
            double *v = random_values(sdt, 37 * 23);
            em_tensor *base = tu_tensor_of(sdt, 2, (int64_t[]){37, 23}, v);
            size_t nb;
            unsigned char *raw = tu_bytes_of(base, &nb), *tr = malloc(nb);
            size_t es = em_dtype_size(sdt);
            for (int i = 0; i < 23; i++) /* the transpose, by hand */
                for (int j = 0; j < 37; j++) memcpy(tr + (i * 37 + j) * es, raw + (j * 23 + i) * es, es);
            check_cast(em_transpose(base, 0, 1), tr, all_dtypes[d], "a transposed [37,23]");
            check_cast(em_reshape(base, 3, (int64_t[]){1, 851, 1}), raw, all_dtypes[d], "[1,851,1]");
            check_cast(em_contiguous(em_slice(em_reshape(base, 1, (int64_t[]){851}), 0, 120, 121, 1)),
                       raw + 120 * es, all_dtypes[d], "a [1] slice");
            check_cast(em_scalar(sdt, v[7]), raw + 7 * es, all_dtypes[d], "a 0-d tensor");
            free(raw);
            free(tr);
            free(v);
            em_scope_end();
        }
}

Test(cast, gives_zero_size_results_when_the_zero_dim_leads) {
    for (int s = 0; s < 5; s++)
        for (int d = 0; d < 5; d++) {
            em_scope_begin();
            check_cast(em_zeros(all_dtypes[s], 2, (int64_t[]){0, 4}), NULL, all_dtypes[d], "[0,4]");
            em_scope_end();
        }
}

/* Regression: see unary/gives_zero_size_results_when_a_later_dim_is_zero. */
Test(cast, gives_zero_size_results_when_a_later_dim_is_zero) {
    em_scope_begin();
    check_cast(em_zeros(EM_F32, 2, (int64_t[]){4, 0}), NULL, EM_I32, "[4,0]");
    em_scope_end();
}

Test(cast, converts_a_large_tensor_split_across_threads) {
    em_scope_begin();
    int64_t n = (1 << 20) + 3;
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)tu_uniform(&rng, -3e9, 3e9);
    x[5] = NAN;
    em_tensor *t = em_from_data(EM_F32, 1, &n, x);
    for (int d = 1; d < 5; d++) check_cast(t, x, all_dtypes[d], "[1<<20 + 3]");
    free(x);
    em_scope_end();
}

Test(cast, rejects_a_value_that_is_not_a_dtype) {
    em_scope_begin();
    em_clear_error();
    cr_expect_null(em_cast(em_zeros(EM_F32, 1, (int64_t[]){3}), (em_dtype)99));
    cr_expect_str_eq(em_last_error(), "em_cast: 99 is not a dtype");
    cr_expect_null(em_cast(em_zeros(EM_F32, 1, (int64_t[]){3}), (em_dtype)-1));
    cr_expect(strncmp(em_last_error(), "em_cast: ", 9) == 0, "message: %s", em_last_error());
    em_scope_end();
}

/* ---- threads ------------------------------------------------------------------------------------ */

/* The bytes of a chain of elementwise ops over x and xt (f32, same shape; xt a
 * transposed view), through f64, i32 and bool on the way. */
static unsigned char *chain_bytes(em_tensor *x, em_tensor *xt, size_t *nbytes) {
    em_scope_begin();
    em_tensor *a = em_scalar(EM_F32, 1.5), *b = em_scalar(EM_F32, -0.25);
    em_tensor *y = em_mul(em_gelu(em_add(em_mul(x, a), b)), em_sigmoid(x));
    em_tensor *z = em_where(em_gt(x, b), em_exp(em_tanh(x)), em_pow(em_abs(x), a));
    em_tensor *w = em_sub(em_maximum(y, z), em_minimum(em_silu(xt), em_erf(x)));
    em_tensor *v = em_cast(em_div(em_cast(x, EM_F64), em_add(em_cast(xt, EM_F64), em_scalar(EM_F64, 7))), EM_F32);
    em_tensor *u = em_add(em_gelu_tanh(w), em_add(v, em_cast(em_cast(em_mul(x, em_scalar(EM_F32, 1000)), EM_I32), EM_F32)));
    em_tensor *r = em_add(u, em_add(em_sqrt(em_abs(x)), em_sin(em_cos(em_log(em_add(em_abs(xt), a))))));
    cr_assert(r, "%s", em_last_error());
    unsigned char *bytes = tu_bytes_of(r, nbytes);
    em_scope_end();
    return bytes;
}

Test(elementwise, gives_bit_identical_results_with_one_thread_and_with_two) {
    int saved = em_get_threads();
    em_scope_begin();
    em_tensor *x = em_randn(2, (int64_t[]){1 << 11, 1 << 10}, 42); /* 1<<21 elements */
    em_tensor *xt = em_transpose(em_randn(2, (int64_t[]){1 << 10, 1 << 11}, 7), 0, 1);
    size_t n1, n2;
    cr_assert_eq(em_set_threads(1), 0, "%s", em_last_error());
    unsigned char *one = chain_bytes(x, xt, &n1);
    cr_assert_eq(em_set_threads(2), 0, "%s", em_last_error());
    cr_assert_eq(em_get_threads(), 2);
    unsigned char *two = chain_bytes(x, xt, &n2);
    em_set_threads(saved);
    cr_assert_eq(n1, n2);
    cr_expect(memcmp(one, two, n1) == 0, "results differ between one and two threads");
    free(one);
    free(two);
    em_scope_end();
}

/* ---- inputs are never modified ------------------------------------------------------------------ */

typedef em_tensor *(*unary_fn)(em_tensor *);
typedef em_tensor *(*binary_fn)(em_tensor *, em_tensor *);
static const struct { const char *name; unary_fn fn; } unary_ops[] = {
    {"neg", em_neg}, {"abs", em_abs}, {"exp", em_exp}, {"log", em_log}, {"sqrt", em_sqrt},
    {"rsqrt", em_rsqrt}, {"reciprocal", em_reciprocal}, {"sin", em_sin}, {"cos", em_cos},
    {"tanh", em_tanh}, {"erf", em_erf}, {"sigmoid", em_sigmoid}, {"relu", em_relu},
    {"gelu", em_gelu}, {"gelu_tanh", em_gelu_tanh}, {"silu", em_silu},
};
static const struct { const char *name; binary_fn fn; } binary_ops[] = {
    {"add", em_add}, {"sub", em_sub}, {"mul", em_mul}, {"div", em_div}, {"pow", em_pow},
    {"maximum", em_maximum}, {"minimum", em_minimum}, {"eq", em_eq}, {"ne", em_ne},
    {"lt", em_lt}, {"le", em_le}, {"gt", em_gt}, {"ge", em_ge},
};
#define NUNARY (int)(sizeof unary_ops / sizeof unary_ops[0])
#define NBINARY (int)(sizeof binary_ops / sizeof binary_ops[0])

Test(elementwise, never_modifies_its_inputs_or_their_views) {
    for (int d = 0; d < 5; d++) {
        em_dtype dt = all_dtypes[d];
        em_scope_begin();
        double *v = random_values(dt, 40 * 33 + 7); /* x from v, y from v + 7 */
        if (dt == EM_F32 || dt == EM_F64) v[3] = NAN, v[100] = -INFINITY, v[200] = -0.0;
        em_tensor *x = tu_tensor_of(dt, 2, (int64_t[]){40, 33}, v),
                  *y = tu_tensor_of(dt, 2, (int64_t[]){40, 33}, v + 7);
        em_tensor *views[] = {x, em_transpose(x, 0, 1), em_slice(x, 1, 1, 33, 2),
                              em_expand(em_slice(x, 0, 3, 4, 1), 2, (int64_t[]){40, 33})};
        size_t nx, ny;
        unsigned char *bx = tu_bytes_of(x, &nx), *by = tu_bytes_of(y, &ny);
        for (int k = 0; k < 4; k++) {
            em_tensor *a = views[k];
            for (int u = 0; u < NUNARY; u++) unary_ops[u].fn(a); /* bool may be rejected */
            for (int b = 0; b < NBINARY; b++) {
                binary_ops[b].fn(a, a);
                binary_ops[b].fn(em_scalar(dt, 2), a);
                if (k == 0 || k == 3) binary_ops[b].fn(y, a); /* same shape as y */
            }
            for (int c = 0; c < 5; c++) em_cast(a, all_dtypes[c]);
            em_where(a, a, em_scalar(dt, 1));
            em_where(a, em_scalar(EM_F32, 1), a);
        }
        size_t nx2, ny2;
        unsigned char *ax = tu_bytes_of(x, &nx2), *ay = tu_bytes_of(y, &ny2);
        cr_expect(memcmp(bx, ax, nx) == 0, "%s: an op modified its input", em_dtype_name(dt));
        cr_expect(memcmp(by, ay, ny) == 0, "%s: an op modified its second input", em_dtype_name(dt));
        free(bx);
        free(by);
        free(ax);
        free(ay);
        free(v);
        em_scope_end();
    }
}

Test(elementwise, computes_an_op_of_a_tensor_with_itself) {
    em_scope_begin();
    double v[] = {1.5, -2, 0, 3.25, 8, -0.5, 7, 11, 13};
    em_tensor *x = tu_tensor_of(EM_F32, 1, (int64_t[]){9}, v);
    double *s = tu_values_of(em_add(x, x)), *m = tu_values_of(em_mul(x, x)),
           *e = tu_values_of(em_eq(x, x)), *d = tu_values_of(em_sub(x, x));
    for (int i = 0; i < 9; i++) {
        cr_expect_eq(s[i], 2 * v[i]);
        cr_expect_eq(m[i], v[i] * v[i]);
        cr_expect_eq(e[i], 1);
        cr_expect_eq(d[i], 0);
    }
    free(s);
    free(m);
    free(e);
    free(d);
    em_scope_end();
}

/* ---- NULL inputs ---------------------------------------------------------------------------------- */

static void expect_null_message(em_tensor *r, const char *api) {
    char prefix[40];
    snprintf(prefix, sizeof prefix, "%s: ", api);
    cr_expect_null(r, "%s accepted NULL", api);
    cr_expect(strncmp(em_last_error(), prefix, strlen(prefix)) == 0 && strstr(em_last_error(), "NULL"),
              "%s: message \"%s\" does not name the op and the NULL", api, em_last_error());
}

Test(elementwise, rejects_null_inputs_with_a_message_naming_the_op) {
    em_scope_begin();
    em_tensor *x = em_zeros(EM_F32, 1, (int64_t[]){3});
    char api[40];
    for (int u = 0; u < NUNARY; u++) {
        snprintf(api, sizeof api, "em_%s", unary_ops[u].name);
        em_clear_error();
        expect_null_message(unary_ops[u].fn(NULL), api);
    }
    for (int b = 0; b < NBINARY; b++) {
        snprintf(api, sizeof api, "em_%s", binary_ops[b].name);
        em_clear_error();
        expect_null_message(binary_ops[b].fn(NULL, x), api);
        em_clear_error();
        expect_null_message(binary_ops[b].fn(x, NULL), api);
        em_clear_error();
        expect_null_message(binary_ops[b].fn(NULL, NULL), api);
    }
    em_clear_error();
    expect_null_message(em_where(NULL, x, x), "em_where");
    em_clear_error();
    expect_null_message(em_where(x, NULL, x), "em_where");
    em_clear_error();
    expect_null_message(em_where(x, x, NULL), "em_where");
    em_clear_error();
    expect_null_message(em_cast(NULL, EM_I32), "em_cast");
    em_scope_end();
}

Test(elementwise, keeps_the_first_failure_of_a_chain_in_the_message) {
    em_scope_begin();
    em_tensor *a = em_zeros(EM_F32, 2, (int64_t[]){2, 3}), *b = em_zeros(EM_F32, 1, (int64_t[]){4});
    em_tensor *r = em_exp(em_mul(em_add(a, b), a));
    cr_expect_null(r);
    cr_expect(strncmp(em_last_error(), "em_exp: ", 8) == 0, "message: %s", em_last_error());
    cr_expect(strstr(em_last_error(), "em_add: shapes [2,3] and [4] cannot be broadcast") != NULL,
              "message: %s", em_last_error());
    em_scope_end();
}
