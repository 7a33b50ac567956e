/*
 * test_nn.c — rt_softmax_apply (and log_softmax), rt_layer_norm_apply and
 * rt_rms_norm_apply against plain loops in double (rowref.c).
 *
 * Inputs are built as views of random dense tensors (transposes, permutations,
 * stepped slices, stride-0 expansions) so that rows, columns and the generic
 * strided walk are each checked against one reference that reads elements
 * through their strides; weights and biases may be strided too. Special
 * values (infinite and NaN rows, inputs in the thousands, a constant row) and
 * failures (integer inputs, wrong weights, scratch memory running out) are
 * checked as well.
 */
#include <criterion/criterion.h>

#include <math.h>
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

/* ---- softmax -------------------------------------------------------------------------- */

Test(softmax, rows_sum_to_one_for_lengths_not_a_multiple_of_the_vector_width) {
    const int64_t lens[] = {1, 2, 15, 16, 17, 33, 1023, 1024, 1025};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (int lg = 0; lg < 2; lg++) {
            em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){3, lens[i]}, 5);
            rowref_check_softmax(a, 1, lg);
            em_release(a);
        }
}

Test(softmax, log_softmax_equals_the_log_of_softmax) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){7, 300}, 8);
    em_tensor *s = tu_rt_new(EM_F32, 2, x->shape), *l = tu_rt_new(EM_F32, 2, x->shape);
    cr_assert_eq(rt_softmax_apply(x, 1, false, s), 0);
    cr_assert_eq(rt_softmax_apply(x, 1, true, l), 0);
    for (int64_t k = 0; k < x->numel; k++)
        cr_assert(fabs(log(tu_rt_flat(s, k)) - tu_rt_flat(l, k)) <= 1e-5 * (1 + fabs(tu_rt_flat(l, k))),
                  "element %lld", (long long)k);
    em_release(x), em_release(s), em_release(l);
}

Test(softmax, normalises_every_axis_of_every_permutation_of_a_3d_tensor) {
    static const int perms[3][3] = {{0, 1, 2}, {2, 0, 1}, {1, 2, 0}};
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int t = 0; t < 2; t++) {
        em_tensor *base = rand_t(dts[t], 3, (int64_t[]){4, 19, 300}, 4);
        for (int p = 0; p < 3; p++) {
            em_tensor *a = tu_rt_permuted(base, perms[p]);
            for (int axis = 0; axis < 3; axis++) {
                rowref_check_softmax(a, axis, false);
                rowref_check_softmax(a, axis, true);
            }
            em_release(a);
        }
        em_release(base);
    }
}

Test(softmax, normalises_sliced_and_expanded_views) {
    em_tensor *base = rand_t(EM_F32, 2, (int64_t[]){20, 64}, 3);
    em_tensor *a = tu_rt_view(base, 2, (int64_t[]){10, 20}, (int64_t[]){128, 3}, 1); /* base[::2, 1:60:3] */
    em_tensor *e = tu_rt_view(base, 3, (int64_t[]){3, 20, 64}, (int64_t[]){0, 64, 1}, 0);
    for (int lg = 0; lg < 2; lg++) {
        rowref_check_softmax(a, 0, lg), rowref_check_softmax(a, 1, lg);
        rowref_check_softmax(e, 0, lg), rowref_check_softmax(e, 2, lg);
    }
    em_release(a), em_release(e), em_release(base);
}

Test(softmax, handles_inputs_in_the_thousands_without_overflow) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){4, 100}, 3000);
    em_tensor *d = rand_t(EM_F64, 2, (int64_t[]){4, 100}, 3000);
    for (int lg = 0; lg < 2; lg++) {
        rowref_check_softmax(x, 1, lg), rowref_check_softmax(x, 0, lg);
        rowref_check_softmax(d, 1, lg), rowref_check_softmax(d, 0, lg);
    }
    em_release(x), em_release(d);
}

/* Softmax of one row of n values along the last axis into res; also checks the
 * column path (the row as a column of an expanded [n, 2] view) agrees. */
static void softmax_row_of(const float *v, int64_t n, bool lg, float *res) {
    em_tensor *x = em_from_data(EM_F32, 2, (int64_t[]){1, n}, v);
    em_tensor *out = tu_rt_new(EM_F32, 2, x->shape);
    cr_assert_eq(rt_softmax_apply(x, 1, lg, out), 0);
    memcpy(res, rt_tensor_data(out), (size_t)n * sizeof(float));
    em_tensor *xt = tu_rt_view(x, 2, (int64_t[]){n, 2}, (int64_t[]){1, 0}, 0);
    em_tensor *ot = tu_rt_new(EM_F32, 2, xt->shape);
    cr_assert_eq(rt_softmax_apply(xt, 0, lg, ot), 0);
    for (int64_t i = 0; i < 2 * n; i++) {
        double c = tu_rt_flat(ot, i), r = res[i / 2];
        cr_assert((isnan(c) && isnan(r)) || fabs(c - r) <= 1e-6, "column softmax differs at %lld", (long long)i);
    }
    em_release(x), em_release(out), em_release(xt), em_release(ot);
}

Test(softmax, gives_nan_for_rows_of_minus_inf_or_with_plus_inf_or_nan) {
    float ninf[20], pinf[20], nan[20], res[20];
    for (int i = 0; i < 20; i++) ninf[i] = -INFINITY, pinf[i] = nan[i] = (float)i;
    pinf[5] = INFINITY, nan[19] = NAN;
    const float *rows[] = {ninf, pinf, nan};
    for (int r = 0; r < 3; r++)
        for (int lg = 0; lg < 2; lg++) {
            softmax_row_of(rows[r], 20, lg, res);
            for (int i = 0; i < 20; i++) cr_assert(isnan(res[i]), "row %d, lg %d, [%d] = %g", r, lg, i, res[i]);
        }
    float some[3] = {-INFINITY, 0, -INFINITY};
    softmax_row_of(some, 3, false, res);
    cr_assert(res[0] == 0 && res[1] == 1 && res[2] == 0);
}

Test(softmax, does_nothing_for_a_zero_length_axis_and_gives_one_for_0d) {
    em_tensor *a = tu_rt_new(EM_F32, 2, (int64_t[]){3, 0}), *o = tu_rt_new(EM_F32, 2, (int64_t[]){3, 0});
    cr_assert_eq(rt_softmax_apply(a, 1, false, o), 0);
    cr_assert_eq(rt_softmax_apply(a, 0, true, o), 0);
    em_tensor *s = rand_t(EM_F64, 0, NULL, 3), *so = tu_rt_new(EM_F64, 0, NULL);
    cr_assert_eq(rt_softmax_apply(s, 0, false, so), 0);
    cr_assert_eq(tu_rt_flat(so, 0), 1.0);
    cr_assert_eq(rt_softmax_apply(s, 0, true, so), 0);
    cr_assert_eq(tu_rt_flat(so, 0), 0.0);
    em_tensor *i = rand_t(EM_I32, 1, (int64_t[]){3}, 1), *io = tu_rt_new(EM_I32, 1, (int64_t[]){3});
    cr_assert_eq(rt_softmax_apply(i, 0, false, io), -1);
    em_release(a), em_release(o), em_release(s), em_release(so), em_release(i), em_release(io);
}

/* ---- layer_norm and rms_norm ----------------------------------------------------------- */

Test(norm, layer_norm_and_rms_norm_match_the_reference_with_and_without_weights) {
    const int64_t lens[] = {1, 2, 15, 16, 17, 1023, 1024};
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            em_tensor *x = rand_t(dts[t], 3, (int64_t[]){2, 3, lens[i]}, 3);
            em_tensor *w = rand_t(dts[t], 1, &lens[i], 2), *b = rand_t(dts[t], 1, &lens[i], 2);
            for (int m = 0; m < 4; m++)
                rowref_check_norm(false, x, m & 1 ? w : NULL, m & 2 ? b : NULL, 1e-5);
            rowref_check_norm(true, x, w, NULL, 1e-6);
            rowref_check_norm(true, x, NULL, NULL, 1e-6);
            em_release(x), em_release(w), em_release(b);
        }
}

Test(norm, normalises_strided_inputs_and_strided_weights) {
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int t = 0; t < 2; t++) {
        em_tensor *base = rand_t(dts[t], 2, (int64_t[]){70, 40}, 2);
        em_tensor *xt = tu_rt_permuted(base, (int[]){1, 0});                             /* [40, 70] */
        em_tensor *xs = tu_rt_view(base, 2, (int64_t[]){35, 20}, (int64_t[]){80, 2}, 1); /* [::2, 1::2] */
        em_tensor *xe = tu_rt_view(base, 3, (int64_t[]){3, 70, 40}, (int64_t[]){0, 40, 1}, 0);
        em_tensor *wb = rand_t(dts[t], 1, (int64_t[]){140}, 2);
        em_tensor *w70 = tu_rt_view(wb, 1, (int64_t[]){70}, (int64_t[]){2}, 0);
        em_tensor *b70 = tu_rt_view(wb, 1, (int64_t[]){70}, (int64_t[]){2}, 1);
        em_tensor *w20 = tu_rt_view(wb, 1, (int64_t[]){20}, (int64_t[]){7}, 3);
        em_tensor *w40 = tu_rt_view(wb, 1, (int64_t[]){40}, (int64_t[]){3}, 0);
        rowref_check_norm(false, xt, w70, b70, 1e-5), rowref_check_norm(true, xt, w70, NULL, 1e-5);
        rowref_check_norm(false, xs, w20, w20, 1e-5), rowref_check_norm(true, xs, w20, NULL, 1e-5);
        rowref_check_norm(false, xe, w40, NULL, 1e-5), rowref_check_norm(true, xe, NULL, NULL, 1e-5);
        em_release(base), em_release(xt), em_release(xs), em_release(xe);
        em_release(wb), em_release(w70), em_release(b70), em_release(w20), em_release(w40);
    }
}

Test(norm, layer_norm_is_stable_for_a_large_mean_and_exact_for_a_constant_row) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){4, 500}, 1);
    for (int64_t k = 0; k < x->numel; k++) ((float *)rt_tensor_data(x))[k] += 1000.0f;
    rowref_check_norm(false, x, NULL, NULL, 1e-5);
    em_tensor *c = tu_rt_new(EM_F32, 2, (int64_t[]){2, 33});
    for (int64_t k = 0; k < c->numel; k++) ((float *)rt_tensor_data(c))[k] = 3.5f;
    em_tensor *b = rand_t(EM_F32, 1, (int64_t[]){33}, 1), *out = tu_rt_new(EM_F32, 2, c->shape);
    cr_assert_eq(rt_layer_norm_apply(c, NULL, b, 1e-5, out), 0);
    for (int64_t k = 0; k < c->numel; k++) cr_assert_eq(tu_rt_flat(out, k), tu_rt_flat(b, k % 33));
    em_release(x), em_release(c), em_release(b), em_release(out);
}

Test(norm, rejects_integer_inputs_and_weights_of_the_wrong_shape) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){2, 8}, 1), *out = tu_rt_new(EM_F32, 2, x->shape);
    em_tensor *w = rand_t(EM_F32, 1, (int64_t[]){7}, 1), *wd = rand_t(EM_F64, 1, (int64_t[]){8}, 1);
    cr_assert_eq(rt_layer_norm_apply(x, w, NULL, 1e-5, out), -1);
    cr_assert_eq(rt_rms_norm_apply(x, wd, 1e-5, out), -1);
    em_tensor *i = rand_t(EM_I32, 2, (int64_t[]){2, 8}, 1), *io = tu_rt_new(EM_I32, 2, i->shape);
    cr_assert_eq(rt_layer_norm_apply(i, NULL, NULL, 1e-5, io), -1);
    em_tensor *e = tu_rt_new(EM_F32, 2, (int64_t[]){0, 8}), *eo = tu_rt_new(EM_F32, 2, e->shape);
    cr_assert_eq(rt_layer_norm_apply(e, NULL, NULL, 1e-5, eo), 0);
    em_release(x), em_release(out), em_release(w), em_release(wd), em_release(i), em_release(io);
    em_release(e), em_release(eo);
}

Test(norm, fails_cleanly_naming_the_op_when_scratch_memory_runs_out) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){4, 8}, 1), *out = tu_rt_new(EM_F32, 2, x->shape);
    em_tensor *wb = rand_t(EM_F32, 1, (int64_t[]){16}, 1);
    em_tensor *w = tu_rt_view(wb, 1, (int64_t[]){8}, (int64_t[]){2}, 0); /* strided: copied */
    rt_alloc_fail_after(1);
    cr_assert_eq(rt_layer_norm_apply(x, w, w, 1e-5, out), -1);
    cr_assert(strstr(em_last_error(), "em_layer_norm: out of memory"), "%s", em_last_error());
    rt_alloc_fail_after(2);
    cr_assert_eq(rt_layer_norm_apply(x, w, w, 1e-5, out), -1);
    rt_alloc_fail_after(0);
    const int64_t n = 200000;
    em_tensor *big = rand_t(EM_F32, 1, &n, 1), *s = tu_rt_new(EM_F32, 0, NULL);
    rt_alloc_fail_after(1); /* the block partials of a long row */
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, big, 0, s), -1);
    rt_alloc_fail_after(0);
    cr_assert(strstr(em_last_error(), "em_sum: out of memory"), "%s", em_last_error());
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, big, 0, s), 0);
    em_release(x), em_release(out), em_release(wb), em_release(w), em_release(big), em_release(s);
}

/* ---- transposed inputs: copied dense first ---------------------------------------------- */

/* op of a transposed f32 view against op of its dense copy: the same row
 * kernel on the same values, so the same bytes (nn.c's dense_first). */
Test(norm, a_transposed_f32_input_gives_the_bytes_of_its_dense_copy_for_every_row_op) {
    em_tensor *base = rand_t(EM_F32, 3, (int64_t[]){3, 70, 40}, 3);
    em_tensor *views[2] = {tu_rt_permuted(base, (int[]){0, 2, 1}),  /* [3, 40, 70], rows 40 apart */
                           tu_rt_permuted(base, (int[]){2, 0, 1})}; /* [40, 3, 70] */
    em_tensor *w = rand_t(EM_F32, 1, (int64_t[]){70}, 2), *b = rand_t(EM_F32, 1, (int64_t[]){70}, 2);
    for (int v = 0; v < 2; v++) {
        em_tensor *x = views[v], *d = em_contiguous(x);
        cr_assert(d && !em_is_contiguous(x), "%s", em_last_error());
        em_tensor *got[4] = {em_softmax(x, -1), em_log_softmax(x, -1), em_layer_norm(x, w, b, 1e-5),
                             em_rms_norm(x, w, 1e-5)};
        em_tensor *want[4] = {em_softmax(d, -1), em_log_softmax(d, -1), em_layer_norm(d, w, b, 1e-5),
                              em_rms_norm(d, w, 1e-5)};
        static const char *const names[4] = {"softmax", "log_softmax", "layer_norm", "rms_norm"};
        for (int k = 0; k < 4; k++) {
            cr_assert(got[k] && want[k], "%s: %s", names[k], em_last_error());
            tu_expect_identical(got[k], want[k], names[k]);
            em_release(got[k]), em_release(want[k]);
        }
        em_release(d);
    }
    em_release(views[0]), em_release(views[1]), em_release(base), em_release(w), em_release(b);
}

Test(softmax, a_transposed_input_with_size_1_dims_after_the_axis_is_normalised_along_its_own_axis) {
    em_tensor *base = rand_t(EM_F32, 2, (int64_t[]){30, 20}, 3);
    em_tensor *t = tu_rt_permuted(base, (int[]){1, 0}); /* [20, 30], rows 20 apart */
    em_tensor *x = em_unsqueeze(t, -1);                  /* [20, 30, 1]: softmax over axis 1 */
    cr_assert(x, "%s", em_last_error());
    rowref_check_softmax(x, 1, false);
    rowref_check_softmax(x, 1, true);
    em_release(x), em_release(t), em_release(base);
}
