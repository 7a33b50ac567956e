/*
 * test_elementwise_binary_values.c — the values the eager binary elementwise ops
 * compute, through the public API, against the references of binop.c: f64, i32,
 * i64 and bool inputs, and the result dtype of every pair of input dtypes for
 * every op (bool < i32 < i64 < f32 < f64, two bools compute in i64, integer
 * division gives f32, comparisons give bool); exact integer pow with the
 * negative-exponent rules of runtime/ew.c (ipow); integer overflow wraps; NaN
 * in maximum/minimum and comparisons, division by zero and pow at its edges;
 * and the f32 loops of every ISA in every stride mode, called directly.
 * Shapes, broadcasting and layouts are in test_elementwise_binary.c.
 *
 * Tolerances: f32 rtol 1e-5 / atol 1e-6 (add/sub/mul/div are correctly rounded;
 * pow is Sleef's u10), f64 rtol 1e-12; integers and comparisons exact.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "runtime.h" /* rt_simd_for, for the per-ISA loops */
#include "../util.h"
#include "binop.h"

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
        double *got = tu_values_of(em_pow(tu_tensor_of(dt, 1, (int64_t[]){n}, bv),
                                          tu_tensor_of(dt, 1, (int64_t[]){n}, ev)));
        for (int i = 0; i < n; i++) {
            int64_t want = binop_ipow(cases[i][0], cases[i][1], bits);
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
        cr_expect_eq(s[i], (int32_t)binop_int_ref(RT_BINARY_ADD, a32[i], b32[i], 32),
                     "i32 %d + %d = %d", a32[i], b32[i], s[i]);
        cr_expect_eq(d[i], (int32_t)binop_int_ref(RT_BINARY_SUB, a32[i], b32[i], 32),
                     "i32 %d - %d = %d", a32[i], b32[i], d[i]);
        cr_expect_eq(m[i], (int32_t)binop_int_ref(RT_BINARY_MUL, a32[i], b32[i], 32),
                     "i32 %d * %d = %d", a32[i], b32[i], m[i]);
        if (i >= 5) /* 3**21, 2**31, (-2)**33 */
            cr_expect_eq(p[i], (int32_t)binop_ipow(a32[i], b32[i], 32), "i32 %d ** %d = %d", a32[i], b32[i], p[i]);
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
        cr_expect_eq(S[i], binop_int_ref(RT_BINARY_ADD, a64[i], b64[i], 64),
                     "i64 %lld + %lld", (long long)a64[i], (long long)b64[i]);
        cr_expect_eq(D[i], binop_int_ref(RT_BINARY_SUB, a64[i], b64[i], 64),
                     "i64 %lld - %lld", (long long)a64[i], (long long)b64[i]);
        cr_expect_eq(M[i], binop_int_ref(RT_BINARY_MUL, a64[i], b64[i], 64),
                     "i64 %lld * %lld", (long long)a64[i], (long long)b64[i]);
        if (i >= 4 && i <= 6) /* 3**40, 2**63, (-3)**41 */
            cr_expect_eq(P[i], binop_ipow(a64[i], b64[i], 64), "i64 %lld ** %lld = %lld", (long long)a64[i],
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
        em_tensor *a = tu_tensor_of(dts[d], 1, (int64_t[]){35}, av),
                  *b = tu_tensor_of(dts[d], 1, (int64_t[]){35}, bv);
        double *mx = tu_values_of(em_maximum(a, b)), *mn = tu_values_of(em_minimum(a, b));
        for (int i = 0; i < 35; i++) {
            cr_expect(tu_close_to(mx[i], binop_max(av[i], bv[i]), 0, 0), "%s maximum(%g, %g) = %g",
                      em_dtype_name(dts[d]), av[i], bv[i], mx[i]);
            cr_expect(tu_close_to(mn[i], binop_min(av[i], bv[i]), 0, 0), "%s minimum(%g, %g) = %g",
                      em_dtype_name(dts[d]), av[i], bv[i], mn[i]);
        }
        free(mx);
        free(mn);
        /* A broadcast NaN scalar on either side makes every element NaN. */
        em_tensor *nan = em_scalar(dts[d], NAN), *x = em_arange(dts[d], 0, 35, 1);
        em_tensor *r[] = {em_maximum(nan, x), em_maximum(x, nan), em_minimum(nan, x), em_minimum(x, nan)};
        for (int k = 0; k < 4; k++) {
            double *v = tu_values_of(r[k]);
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
        for (int k = 7; k < BINOP_COUNT; k++) {
            em_scope_begin();
            /* Repeated to 41 so the values land in vector bodies and tails alike. */
            double a[41], b[41];
            for (int i = 0; i < 41; i++) a[i] = av[i % 8], b[i] = bv[i % 8];
            double *got = tu_values_of(binop_cases[k].fn(tu_tensor_of(dts[d], 1, (int64_t[]){41}, a),
                                              tu_tensor_of(dts[d], 1, (int64_t[]){41}, b)));
            for (int i = 0; i < 41; i++)
                cr_expect_eq(got[i], binop_cases[k].ref(a[i], b[i]), "%s em_%s(%g, %g) = %g",
                             em_dtype_name(dts[d]), binop_cases[k].name, a[i], b[i], got[i]);
            free(got);
            em_scope_end();
        }
}

Test(binary, divides_by_zero_into_infinities_and_nan) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64};
    for (int d = 0; d < 4; d++) {
        em_scope_begin();
        double a[] = {1, -1, 0, 5}, b[] = {0, 0, 0, 0};
        double *got = tu_values_of(em_div(tu_tensor_of(dts[d], 1, (int64_t[]){4}, a),
                                          tu_tensor_of(dts[d], 1, (int64_t[]){4}, b)));
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
        double *got = tu_values_of(em_pow(tu_tensor_of(dts[d], 1, (int64_t[]){12}, a),
                                          tu_tensor_of(dts[d], 1, (int64_t[]){12}, b)));
        for (int i = 0; i < 12; i++) {
            double want = dts[d] == EM_F32 ? (float)pow(a[i], b[i]) : pow(a[i], b[i]);
            cr_expect(tu_close_to(got[i], want, 1e-6, 0) || (want == 0 && fabs(got[i]) < 1e-38),
                      "%s pow(%g, %g) = %.9g, want %.9g", em_dtype_name(dts[d]), a[i], b[i], got[i], want);
        }
        free(got);
        em_scope_end();
    }
}

/* ---- the f32 loops of every ISA, called directly ---------------------------------------------- */

/* Runs table t's loop for c on n elements in stride mode (sa, sb) and checks it,
 * including that nothing is written past n and the inputs are untouched. */
static void check_simd_binary(const char *isa, const rt_simd *t, const binop_case *c, int64_t n,
                              int sa, int sb, const float *special, int nspecial) {
    int64_t na = sa ? n : 1, nb = sb ? n : 1;
    float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    for (int64_t i = 0; i < na; i++) a[i] = (float)binop_random_input(c, 0, EM_F32);
    for (int64_t i = 0; i < nb; i++) b[i] = (float)binop_random_input(c, 1, EM_F32);
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
        if (c->cmp ? got != want : !tu_close_to(got, want, 1e-5, 1e-6))
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
        for (int k = 0; k < BINOP_COUNT; k++) {
            cr_assert(t->binary[binop_cases[k].kernel], "%s has no %s loop", isas[s], binop_cases[k].name);
            for (int64_t n = 1; n <= 1023; n = n == 40 ? 1023 : n + 1)
                for (int mode = 0; mode < 4; mode++)
                    check_simd_binary(isas[s], t, &binop_cases[k], n, mode & 1, mode >> 1, NULL, 0);
        }
    }
}

Test(binary_simd, every_isa_propagates_nan_and_compares_it_unordered) {
    const char *isas[] = {"avx512", "avx2", "sse2"};
    const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, NAN};
    for (int s = 0; s < 3; s++) {
        const rt_simd *t = rt_simd_for(isas[s]);
        if (!t) continue;
        for (int k = 0; k < BINOP_COUNT; k++) {
            if (binop_cases[k].kernel == RT_BINARY_POW) continue; /* edges in raises_floats_to_powers_at_the_edges */
            for (int64_t n = 1; n <= 40; n++)
                for (int mode = 0; mode < 4; mode++)
                    check_simd_binary(isas[s], t, &binop_cases[k], n, mode & 1, mode >> 1, sp, 6);
        }
    }
}
