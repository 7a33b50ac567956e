/*
 * test_reduce.c — rt_reduce_apply and the SIMD row/column kernels behind the
 * row-wise ops, against plain loops in double (rowref.c).
 *
 * Inputs are built as views of random dense tensors (transposes, permutations,
 * stepped slices, stride-0 expansions) so that each way the kernels read a
 * tensor (rows, columns, the generic strided loop, gathered rows) is checked
 * against one reference that reads elements through their strides. The row
 * and column kernels of every ISA the CPU runs are also called directly, and
 * results are compared between one and two threads bit for bit.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "../util.h"
#include "rowref.h"

/* ---- helpers ------------------------------------------------------------------------ */

static tu_rng rng = {7};

/* Random values of dtype dt: floats in [-scale, scale), ints in [-50, 50), bools. */
static em_tensor *rand_t(em_dtype dt, int nd, const int64_t *shape, double scale) {
    return tu_rt_random(&rng, dt, nd, shape, scale, 50, TU_BOOL_HALF);
}

static void check_all_ops(const em_tensor *a) {
    for (int axis = 0; axis < a->ndim; axis++)
        for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) {
            if (r == RT_REDUCE_MEAN && !rt_dtype_is_float(a->dtype)) continue;
            if (r >= RT_REDUCE_MAX && a->shape[axis] == 0) continue;
            rowref_check_reduce((rt_reduce)r, a, axis);
        }
}

/* ---- reductions ------------------------------------------------------------------------ */

Test(reduce, reduces_rows_of_lengths_that_are_not_a_multiple_of_the_vector_width) {
    const int64_t lens[] = {1, 2, 15, 16, 17, 63, 65, 255, 257, 1023, 1024, 1025};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){3, lens[i]}, 1);
        check_all_ops(a);
        em_release(a);
    }
}

Test(reduce, reduces_every_axis_of_every_permutation_of_a_3d_tensor_in_every_dtype) {
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (size_t t = 0; t < 5; t++) {
        em_tensor *base = rand_t(dts[t], 3, (int64_t[]){5, 17, 33}, 10);
        for (int p = 0; p < 6; p++) {
            em_tensor *a = tu_rt_permuted(base, perms[p]);
            check_all_ops(a);
            em_release(a);
        }
        em_release(base);
    }
}

Test(reduce, sums_each_row_of_a_transposed_view) {
    em_tensor *base = rand_t(EM_F32, 2, (int64_t[]){1000, 300}, 1);
    em_tensor *a = tu_rt_permuted(base, (int[]){1, 0});
    check_all_ops(a);
    em_release(a);
    em_release(base);
}

Test(reduce, reduces_a_sliced_view_with_a_step) {
    em_tensor *base = rand_t(EM_F32, 3, (int64_t[]){6, 40, 50}, 1);
    /* base[1::2, 3:37:3, 2:45] */
    em_tensor *a = tu_rt_view(base, 3, (int64_t[]){3, 12, 43}, (int64_t[]){2 * 2000, 3 * 50, 1},
                        2000 + 3 * 50 + 2);
    check_all_ops(a);
    em_tensor *b = tu_rt_view(base, 2, (int64_t[]){40, 25}, (int64_t[]){50, 2}, 0); /* base[0, :, ::2] */
    check_all_ops(b);
    em_release(a);
    em_release(b);
    em_release(base);
}

Test(reduce, reduces_an_expanded_view_with_stride_zero) {
    em_tensor *row = rand_t(EM_F32, 2, (int64_t[]){1, 37}, 1);
    em_tensor *col = rand_t(EM_F32, 2, (int64_t[]){37, 1}, 1);
    em_tensor *a = tu_rt_view(row, 2, (int64_t[]){9, 37}, (int64_t[]){0, 1}, 0);
    em_tensor *b = tu_rt_view(col, 2, (int64_t[]){37, 9}, (int64_t[]){1, 0}, 0);
    em_tensor *c = tu_rt_view(row, 3, (int64_t[]){4, 5, 37}, (int64_t[]){0, 0, 1}, 0);
    check_all_ops(a);
    check_all_ops(b);
    check_all_ops(c);
    em_tensor *d = rand_t(EM_I32, 1, (int64_t[]){1}, 1);
    em_tensor *e = tu_rt_view(d, 2, (int64_t[]){3, 70000}, (int64_t[]){0, 0}, 0);
    check_all_ops(e);
    em_release(a), em_release(b), em_release(c), em_release(d), em_release(e);
    em_release(row), em_release(col);
}

Test(reduce, walks_rows_of_a_permuted_view_split_into_many_pieces) {
    cr_assert_eq(em_set_threads(2), 0);
    em_tensor *base = rand_t(EM_F32, 3, (int64_t[]){64, 40, 50}, 1);
    em_tensor *a = tu_rt_permuted(base, (int[]){1, 0, 2}); /* rows of 50 at 2560 scattered offsets */
    for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) rowref_check_reduce((rt_reduce)r, a, 2);
    for (int lg = 0; lg < 2; lg++) rowref_check_softmax(a, 2, lg);
    rowref_check_norm(false, a, NULL, NULL, 1e-5);
    em_release(a), em_release(base);
}

Test(reduce, treats_a_0d_tensor_as_one_element) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (size_t t = 0; t < 5; t++) {
        em_tensor *a = rand_t(dts[t], 0, NULL, 3);
        for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) {
            if (r == RT_REDUCE_MEAN && !rt_dtype_is_float(dts[t])) continue;
            em_tensor *out = tu_rt_new(rowref_out_dtype((rt_reduce)r, dts[t]), 0, NULL);
            cr_assert_eq(rt_reduce_apply((rt_reduce)r, a, 0, out), 0, "%s", em_last_error());
            double want = r == RT_REDUCE_ARGMAX ? 0 : tu_rt_flat(a, 0);
            cr_assert_eq(tu_rt_flat(out, 0), want, "%s of a 0-d %s", rowref_names[r],
                         em_dtype_name(dts[t]));
            em_release(out);
        }
        em_release(a);
    }
}

Test(reduce, reduces_one_element_and_size_one_dims) {
    em_tensor *a = rand_t(EM_F32, 1, (int64_t[]){1}, 1);
    em_tensor *b = rand_t(EM_F32, 4, (int64_t[]){1, 7, 1, 1}, 1);
    em_tensor *c = rand_t(EM_F64, 3, (int64_t[]){1, 1, 1}, 1);
    check_all_ops(a);
    check_all_ops(b);
    check_all_ops(c);
    em_release(a), em_release(b), em_release(c);
}

Test(reduce, sums_a_zero_length_axis_to_zero_and_means_it_to_nan) {
    em_tensor *a = tu_rt_new(EM_F32, 2, (int64_t[]){3, 0});
    em_tensor *i = tu_rt_new(EM_I32, 2, (int64_t[]){3, 0});
    em_tensor *s = tu_rt_new(EM_F32, 1, (int64_t[]){3}), *m = tu_rt_new(EM_F32, 1, (int64_t[]){3});
    em_tensor *si = tu_rt_new(EM_I64, 1, (int64_t[]){3});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, a, 1, s), 0);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MEAN, a, 1, m), 0);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, i, 1, si), 0);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(tu_rt_flat(s, k), 0.0);
        cr_assert(isnan(tu_rt_flat(m, k)));
        cr_assert_eq(tu_rt_flat(si, k), 0.0);
    }
    /* Reducing the non-empty axis of an empty tensor writes nothing. */
    em_tensor *e = tu_rt_new(EM_F32, 1, (int64_t[]){0});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MAX, a, 0, e), 0);
    em_release(a), em_release(i), em_release(s), em_release(m), em_release(si), em_release(e);
}

Test(reduce, rejects_max_of_a_zero_length_axis_and_mean_of_integers) {
    em_tensor *a = tu_rt_new(EM_F32, 2, (int64_t[]){3, 0});
    em_tensor *out = tu_rt_new(EM_F32, 1, (int64_t[]){3});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MAX, a, 1, out), -1);
    cr_assert(strstr(em_last_error(), "length 0"), "%s", em_last_error());
    em_tensor *i = rand_t(EM_I32, 1, (int64_t[]){5}, 1);
    em_tensor *o = tu_rt_new(EM_I32, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MEAN, i, 0, o), -1);
    em_release(a), em_release(out), em_release(i), em_release(o);
}

Test(reduce, propagates_nan_through_max_and_min_at_every_position) {
    const int64_t n = 37;
    for (int64_t pos = 0; pos < n; pos++) {
        em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){2, n}, 1);
        tu_rt_set(a, (int64_t[]){1, pos}, NAN);
        check_all_ops(a); /* rows along axis 1, columns along axis 0 */
        em_tensor *t = tu_rt_permuted(a, (int[]){1, 0});
        check_all_ops(t);
        em_release(t);
        em_release(a);
    }
    em_tensor *d = rand_t(EM_F64, 2, (int64_t[]){4, 9}, 1);
    tu_rt_set(d, (int64_t[]){2, 0}, NAN);
    check_all_ops(d);
    em_release(d);
}

Test(reduce, argmax_returns_the_first_of_tied_maxima) {
    em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){40, 40}, 1);
    for (int64_t r = 0; r < 40; r++) {
        tu_rt_set(a, (int64_t[]){r, (r * 7) % 40}, 5.0);
        tu_rt_set(a, (int64_t[]){r, (r * 7 + 13) % 40}, 5.0);
    }
    rowref_check_reduce(RT_REDUCE_ARGMAX, a, 0);
    rowref_check_reduce(RT_REDUCE_ARGMAX, a, 1);
    em_tensor *i = rand_t(EM_I64, 2, (int64_t[]){8, 1000}, 1);
    rowref_check_reduce(RT_REDUCE_ARGMAX, i, 1);
    em_tensor *big = tu_rt_new(EM_F32, 1, (int64_t[]){300000});
    memset(rt_tensor_data(big), 0, 300000 * sizeof(float));
    tu_rt_set(big, (int64_t[]){70000}, 1.0), tu_rt_set(big, (int64_t[]){200000}, 1.0);
    rowref_check_reduce(RT_REDUCE_ARGMAX, big, 0);
    em_release(a), em_release(i), em_release(big);
}

Test(reduce, argmax_counts_nan_as_the_maximum) {
    em_tensor *a = tu_rt_new(EM_F32, 1, (int64_t[]){200000});
    for (int64_t k = 0; k < 200000; k++) ((float *)rt_tensor_data(a))[k] = (float)k;
    tu_rt_set(a, (int64_t[]){150000}, NAN), tu_rt_set(a, (int64_t[]){160000}, NAN);
    em_tensor *out = tu_rt_new(EM_I64, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_ARGMAX, a, 0, out), 0);
    cr_assert_eq(tu_rt_flat(out, 0), 150000.0);
    em_release(a), em_release(out);
}

Test(reduce, sums_integers_and_bools_into_i64_without_overflow) {
    em_tensor *a = tu_rt_new(EM_I32, 1, (int64_t[]){100000});
    for (int64_t k = 0; k < 100000; k++) ((int32_t *)rt_tensor_data(a))[k] = INT32_MAX;
    em_tensor *out = tu_rt_new(EM_I64, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, a, 0, out), 0);
    cr_assert_eq(*(int64_t *)rt_tensor_data(out), (int64_t)INT32_MAX * 100000);
    em_tensor *b = tu_rt_new(EM_BOOL, 1, (int64_t[]){1000});
    for (int64_t k = 0; k < 1000; k++) ((uint8_t *)rt_tensor_data(b))[k] = k % 3 == 0;
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, b, 0, out), 0);
    cr_assert_eq(*(int64_t *)rt_tensor_data(out), 334);
    em_release(a), em_release(b), em_release(out);
}

Test(reduce, sums_4m_uniform_values_accurately) {
    const int64_t n = 4 << 20;
    em_tensor *a = em_rand(1, &n, 11);
    em_tensor *out = tu_rt_new(EM_F32, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, a, 0, out), 0);
    double ref = 0;
    for (int64_t k = 0; k < n; k++) ref += ((float *)rt_tensor_data(a))[k];
    double got = tu_rt_flat(out, 0);
    cr_assert(fabs(got - ref) <= 1e-6 * ref, "got %.10g, want %.10g", got, ref);
    /* The same values as a long column: sum(0) of a [n/4, 4] matrix. */
    em_tensor *m = tu_rt_view(a, 2, (int64_t[]){n / 4, 4}, (int64_t[]){4, 1}, 0);
    em_tensor *col = tu_rt_new(EM_F32, 1, (int64_t[]){4});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, m, 0, col), 0);
    for (int j = 0; j < 4; j++) {
        double r = 0;
        for (int64_t k = 0; k < n / 4; k++) r += ((float *)rt_tensor_data(a))[4 * k + j];
        cr_assert(fabs(tu_rt_flat(col, j) - r) <= 1e-6 * r, "col %d: got %.10g, want %.10g", j,
                  tu_rt_flat(col, j), r);
    }
    em_release(a), em_release(out), em_release(m), em_release(col);
}

/* Runs r over axis of a with n threads into a fresh buffer (caller frees). */
static void *reduce_with_threads(int n, rt_reduce r, const em_tensor *a, int axis, size_t *bytes) {
    cr_assert_eq(em_set_threads(n), 0);
    int64_t sh[EM_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < a->ndim; d++)
        if (d != axis) sh[k++] = a->shape[d];
    em_tensor *out = tu_rt_new(rowref_out_dtype(r, a->dtype), k, sh);
    cr_assert_eq(rt_reduce_apply(r, a, axis, out), 0);
    *bytes = (size_t)out->numel * rt_dtype_size(out->dtype);
    void *copy = malloc(*bytes);
    memcpy(copy, rt_tensor_data(out), *bytes);
    em_release(out);
    return copy;
}

Test(reduce, gives_bit_identical_results_for_one_and_two_threads) {
    const int64_t n = 4 << 20;
    em_tensor *row = em_randn(1, &n, 3);
    em_tensor *mat = em_randn(2, (int64_t[]){4096, 1024}, 4);
    em_tensor *tall = em_randn(2, (int64_t[]){1 << 20, 3}, 5);
    struct { const em_tensor *a; int axis; } cases[] = {{row, 0}, {mat, 1}, {mat, 0}, {tall, 0}};
    for (size_t c = 0; c < 4; c++)
        for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) {
            size_t b1, b2;
            void *one = reduce_with_threads(1, (rt_reduce)r, cases[c].a, cases[c].axis, &b1);
            void *two = reduce_with_threads(2, (rt_reduce)r, cases[c].a, cases[c].axis, &b2);
            cr_assert(b1 == b2 && memcmp(one, two, b1) == 0, "case %zu, %s", c, rowref_names[r]);
            free(one), free(two);
        }
    em_release(row), em_release(mat), em_release(tall);
}

/* ---- the row and column kernels of every ISA ------------------------------------------- */

static const char *isas[] = {"avx512", "avx2", "sse2"};

static void fill_row(float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(tu_uniform(&rng, -1, 1) * scale);
}

/* Asserts cond for every i < n of the row, naming the ISA and the kernel. */
#define EACH(cond, what)                                                                  \
    for (int64_t i = 0; i < n; i++)                                                       \
    cr_assert(cond, "%s %s n=%lld [%lld]", t->isa, what, (long long)n, (long long)i)

static void check_isa_reductions(const rt_simd *t, int64_t n, float *x, float *acc) {
    double s = 0, mag = 0, mx = -INFINITY, mn = INFINITY;
    for (int64_t i = 0; i < n; i++) s += x[i], mag += fabs(x[i]), mx = fmax(mx, x[i]), mn = fmin(mn, x[i]);
    cr_assert(fabs(t->sum_row(n, x) - s) <= 1e-6 * mag, "%s sum_row n=%lld", t->isa, (long long)n);
    cr_assert_eq(t->max_row(n, x), (float)mx, "%s max_row n=%lld", t->isa, (long long)n);
    cr_assert_eq(t->min_row(n, x), (float)mn, "%s min_row n=%lld", t->isa, (long long)n);
    for (int64_t i = 0; i < n; i++) acc[i] = 1.0f;
    t->sum_col(n, x, acc);
    EACH(acc[i] == 1.0f + x[i], "sum_col");
    t->max_col(n, x, acc);
    EACH(acc[i] == fmaxf(1.0f + x[i], x[i]), "max_col");
    t->min_col(n, x, acc);
    EACH(acc[i] == x[i], "min_col");
    if (n == 0) return;
    float keep = x[n / 2];
    x[n / 2] = NAN;
    cr_assert(isnan(t->max_row(n, x)) && isnan(t->min_row(n, x)), "%s NaN n=%lld", t->isa, (long long)n);
    t->max_col(n, x, acc);
    cr_assert(isnan(acc[n / 2]));
    x[n / 2] = keep;
}

static void check_isa_norms(const rt_simd *t, int64_t n, const float *x, const float *w,
                            const float *b, float *y) {
    double m = -INFINITY, s = 0, mean = 0, var = 0, ms = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, x[i]), mean += x[i], ms += (double)x[i] * x[i];
    mean /= (double)n, ms /= (double)n;
    for (int64_t i = 0; i < n; i++) s += exp(x[i] - m), var += (x[i] - mean) * (x[i] - mean) / (double)n;
    t->softmax_row(n, x, y);
    EACH(fabs(y[i] - exp(x[i] - m) / s) <= 2e-6, "softmax");
    t->log_softmax_row(n, x, y);
    EACH(fabs(y[i] - (x[i] - m - log(s))) <= 2e-6 * (1 + fabs(y[i])), "log_softmax");
    t->layer_norm_row(n, x, w, b, 1e-5f, y);
    EACH(fabs(y[i] - ((x[i] - mean) / sqrt(var + 1e-5) * w[i] + b[i])) <= 3e-5 * (1 + fabs(y[i])), "layer_norm");
    t->rms_norm_row(n, x, w, 1e-5f, y);
    EACH(fabs(y[i] - x[i] / sqrt(ms + 1e-5) * w[i]) <= 3e-5 * (1 + fabs(y[i])), "rms_norm");
    memcpy(y, x, (size_t)n * sizeof(float)); /* in place, as nn.c runs gathered rows */
    t->softmax_row(n, y, y);
    EACH(fabs(y[i] - exp(x[i] - m) / s) <= 2e-6, "softmax in place");
    memcpy(y, x, (size_t)n * sizeof(float));
    t->layer_norm_row(n, y, NULL, NULL, 1e-5f, y);
    EACH(fabs(y[i] - (x[i] - mean) / sqrt(var + 1e-5)) <= 3e-5 * (1 + fabs(y[i])), "layer_norm in place");
}

Test(reduce_simd, row_and_column_kernels_of_every_isa_match_the_reference) {
    enum { N = 1100 };
    static float x[N], acc[N], w[N], b[N], y[N];
    int ran = 0;
    for (int k = 0; k < 3; k++) {
        const rt_simd *t = rt_simd_for(isas[k]);
        if (!t) continue;
        ran++;
        for (int64_t n = 0; n < 70; n++) {
            fill_row(x, n, 4), fill_row(w, n, 1), fill_row(b, n, 1);
            check_isa_reductions(t, n, x, acc);
            if (n) check_isa_norms(t, n, x, w, b, y);
        }
        const int64_t big[] = {255, 256, 257, 1023, 1024, 1025, 1100};
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
            fill_row(x, big[i], 4), fill_row(w, big[i], 1), fill_row(b, big[i], 1);
            check_isa_reductions(t, big[i], x, acc);
            check_isa_norms(t, big[i], x, w, b, y);
        }
    }
    cr_assert(ran >= 1 && rt_simd_for("sse2"), "sse2 always runs");
}

/* softmax_row and log_softmax_row take exp of x - max without the general
 * exp's clamps (simd.h's rt_exp_nonpositive): rows whose x - max reaches far
 * below exp's range (-1e30, -200, -105), its edge (-104, -103.9) and -inf,
 * at lengths with and without a tail, on every ISA, against double. */
Test(reduce_simd, softmax_rows_of_every_isa_spanning_exp_s_range_match_double) {
    static const float pattern[] = {1e30f, -1e30f, 0, 50, -50, 88, -103.9f, -104, -105, -200,
                                    3.5f, -INFINITY, -17.25f, 104, 7, -90, 2};
    enum { NP = sizeof pattern / sizeof pattern[0], N = 67 };
    float x[N], y[N];
    for (int k = 0; k < 3; k++) {
        const rt_simd *t = rt_simd_for(isas[k]);
        if (!t) continue;
        for (int64_t n = 5; n <= N; n += 31)
            for (int turn = 0; turn < NP; turn += 4) {
                for (int64_t i = 0; i < n; i++) x[i] = pattern[(i + turn) % NP];
                double m = -INFINITY, s = 0;
                for (int64_t i = 0; i < n; i++) m = fmax(m, x[i]);
                for (int64_t i = 0; i < n; i++) s += exp(x[i] - m);
                t->softmax_row(n, x, y);
                for (int64_t i = 0; i < n; i++)
                    cr_assert(fabs(y[i] - exp(x[i] - m) / s) <= 2e-6 * exp(x[i] - m) / s + 1e-30,
                              "%s softmax n=%lld turn=%d [%lld] (x - max %g): %g", isas[k], (long long)n, turn,
                              (long long)i, x[i] - m, y[i]);
                t->log_softmax_row(n, x, y);
                for (int64_t i = 0; i < n; i++) {
                    double want = x[i] - m - log(s);
                    cr_assert(isinf(want) ? y[i] == want : fabs(y[i] - want) <= 2e-6 * (1 + fabs(want)),
                              "%s log_softmax n=%lld turn=%d [%lld]: %g, want %g", isas[k], (long long)n, turn,
                              (long long)i, y[i], want);
                }
            }
    }
}

Test(reduce_simd, max_row_of_every_isa_propagates_nan_at_every_position) {
    float x[77];
    for (int k = 0; k < 3; k++) {
        const rt_simd *t = rt_simd_for(isas[k]);
        if (!t) continue;
        for (int64_t n = 1; n <= 77; n += 19)
            for (int64_t p = 0; p < n; p++) {
                fill_row(x, n, 1);
                x[p] = NAN;
                cr_assert(isnan(t->max_row(n, x)) && isnan(t->min_row(n, x)), "%s n=%lld p=%lld",
                          t->isa, (long long)n, (long long)p);
            }
    }
}
