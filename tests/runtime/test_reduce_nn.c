/*
 * test_reduce_nn.c — rt_reduce_apply, rt_softmax_apply, rt_layer_norm_apply,
 * rt_rms_norm_apply and the SIMD row/column kernels behind them, against plain
 * loops in double.
 *
 * Inputs are built as views of random dense tensors (transposes, permutations,
 * stepped slices, stride-0 expansions) so that each way the kernels read a
 * tensor (rows, columns, the generic strided loop, gathered rows) is checked
 * against one reference that reads elements through their strides. The row
 * kernels of every ISA the CPU runs are also called directly, and results are
 * compared between one and two threads bit for bit.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t rng = 7;

static double rnd(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / (double)(1ULL << 53) * 2 - 1;
}

/* Random values of dtype dt: floats in [-scale, scale), ints in [-50, 50), bools. */
static em_tensor *rand_t(em_dtype dt, int nd, const int64_t *shape, double scale) {
    em_tensor *t = rt_tensor_new("test", dt, nd, shape, false);
    cr_assert(t, "%s", em_last_error());
    size_t esz = rt_dtype_size(dt);
    char *p = t->numel ? rt_tensor_data(t) : NULL;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = rt_dtype_is_float(dt) ? rnd() * scale : dt == EM_BOOL ? rnd() > 0 : floor(rnd() * 50);
        rt_value_store(dt, p + i * (int64_t)esz, v);
    }
    return t;
}

static em_tensor *new_t(em_dtype dt, int nd, const int64_t *shape) {
    em_tensor *t = rt_tensor_new("test", dt, nd, shape, false);
    cr_assert(t, "%s", em_last_error());
    return t;
}

static em_tensor *view(const em_tensor *base, int nd, const int64_t *shape,
                       const int64_t *strides, int64_t offset) {
    em_tensor *t = rt_tensor_view(base, nd, shape, strides, base->offset + offset);
    cr_assert(t, "%s", em_last_error());
    return t;
}

/* A view of t with its dims permuted: dim d of the view is dim perm[d] of t. */
static em_tensor *permuted(const em_tensor *t, const int *perm) {
    int64_t sh[EM_MAX_DIMS], st[EM_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) sh[d] = t->shape[perm[d]], st[d] = t->strides[perm[d]];
    return view(t, t->ndim, sh, st, 0);
}

static char *addr(const em_tensor *t, const int64_t *ix) { /* element ix, through strides */
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += ix[d] * t->strides[d];
    return (char *)t->storage->data + off * (int64_t)rt_dtype_size(t->dtype);
}
static double at(const em_tensor *t, const int64_t *ix) { return rt_value_load(t->dtype, addr(t, ix)); }
static void set(em_tensor *t, const int64_t *ix, double v) { rt_value_store(t->dtype, addr(t, ix), v); }

static double flat(const em_tensor *t, int64_t i) { /* t contiguous */
    return rt_value_load(t->dtype, rt_tensor_data(t) + i * (int64_t)rt_dtype_size(t->dtype));
}

/* Index of line o of t along axis: the other dims row-major, ix[axis] = 0. */
static void line_index(const em_tensor *t, int axis, int64_t o, int64_t *ix) {
    for (int d = t->ndim - 1; d >= 0; d--) {
        ix[d] = d == axis ? 0 : o % t->shape[d];
        o = d == axis ? o : o / t->shape[d];
    }
}

static int64_t lines_of(const em_tensor *t, int axis) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (d != axis) n *= t->shape[d];
    return n;
}

/* ---- reductions: reference and checker ------------------------------------------------ */

static const char *rname[] = {"sum", "mean", "max", "min", "argmax"};

static em_dtype out_dtype(rt_reduce r, em_dtype dt) {
    if (r == RT_REDUCE_ARGMAX) return EM_I64;
    if (r == RT_REDUCE_SUM && !rt_dtype_is_float(dt)) return EM_I64;
    return dt;
}

/* Reference of output o; *mag gets the sum of |x| (a scale for rounding error). */
static double ref_reduce(rt_reduce r, const em_tensor *a, int axis, int64_t o, double *mag) {
    int64_t ix[EM_MAX_DIMS] = {0}, R = a->ndim ? a->shape[axis] : 1;
    if (a->ndim) line_index(a, axis, o, ix);
    double acc = 0;
    int64_t best = 0;
    *mag = 0;
    for (int64_t j = 0; j < R; j++) {
        if (a->ndim) ix[axis] = j;
        double v = at(a, ix);
        *mag += fabs(v);
        if (r == RT_REDUCE_SUM || r == RT_REDUCE_MEAN) acc += v;
        else if (j == 0 || (!isnan(acc) && (isnan(v) || (r == RT_REDUCE_MIN ? v < acc : v > acc))))
            acc = v, best = j;
    }
    if (r == RT_REDUCE_MEAN) {
        *mag /= (double)R;
        return acc / (double)R;
    }
    return r == RT_REDUCE_ARGMAX ? (double)best : acc;
}

/* Runs r over axis into a fresh output (axis dropped) and checks every element. */
static void check_reduce(rt_reduce r, const em_tensor *a, int axis) {
    int64_t sh[EM_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < a->ndim; d++)
        if (d != axis) sh[k++] = a->shape[d];
    em_dtype odt = out_dtype(r, a->dtype);
    em_tensor *out = new_t(odt, k, sh);
    cr_assert_eq(rt_reduce_apply(r, a, axis, out), 0, "%s: %s", rname[r], em_last_error());
    double tol = a->dtype == EM_F32 ? 1e-5 : 1e-12;
    for (int64_t o = 0; o < out->numel; o++) {
        double mag, want = ref_reduce(r, a, axis, o, &mag), got = flat(out, o);
        if (isnan(want)) {
            cr_assert(isnan(got), "%s axis %d out %lld: got %g, want NaN", rname[r], axis, (long long)o, got);
            continue;
        }
        bool exact = r >= RT_REDUCE_MAX || !rt_dtype_is_float(a->dtype);
        cr_assert(exact ? got == want : fabs(got - want) <= tol * mag + 1e-30,
                  "%s of %s axis %d out %lld: got %.9g, want %.9g", rname[r],
                  em_dtype_name(a->dtype), axis, (long long)o, got, want);
    }
    em_release(out);
}

static void check_all_ops(const em_tensor *a) {
    for (int axis = 0; axis < a->ndim; axis++)
        for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) {
            if (r == RT_REDUCE_MEAN && !rt_dtype_is_float(a->dtype)) continue;
            if (r >= RT_REDUCE_MAX && a->shape[axis] == 0) continue;
            check_reduce((rt_reduce)r, a, axis);
        }
}

static void check_softmax(const em_tensor *x, int axis, bool lg);
static void check_norm(bool rms, const em_tensor *x, const em_tensor *w, const em_tensor *b, double eps);

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
            em_tensor *a = permuted(base, perms[p]);
            check_all_ops(a);
            em_release(a);
        }
        em_release(base);
    }
}

Test(reduce, sums_each_row_of_a_transposed_view) {
    em_tensor *base = rand_t(EM_F32, 2, (int64_t[]){1000, 300}, 1);
    em_tensor *a = permuted(base, (int[]){1, 0});
    check_all_ops(a);
    em_release(a);
    em_release(base);
}

Test(reduce, reduces_a_sliced_view_with_a_step) {
    em_tensor *base = rand_t(EM_F32, 3, (int64_t[]){6, 40, 50}, 1);
    /* base[1::2, 3:37:3, 2:45] */
    em_tensor *a = view(base, 3, (int64_t[]){3, 12, 43}, (int64_t[]){2 * 2000, 3 * 50, 1},
                        2000 + 3 * 50 + 2);
    check_all_ops(a);
    em_tensor *b = view(base, 2, (int64_t[]){40, 25}, (int64_t[]){50, 2}, 0); /* base[0, :, ::2] */
    check_all_ops(b);
    em_release(a);
    em_release(b);
    em_release(base);
}

Test(reduce, reduces_an_expanded_view_with_stride_zero) {
    em_tensor *row = rand_t(EM_F32, 2, (int64_t[]){1, 37}, 1);
    em_tensor *col = rand_t(EM_F32, 2, (int64_t[]){37, 1}, 1);
    em_tensor *a = view(row, 2, (int64_t[]){9, 37}, (int64_t[]){0, 1}, 0);
    em_tensor *b = view(col, 2, (int64_t[]){37, 9}, (int64_t[]){1, 0}, 0);
    em_tensor *c = view(row, 3, (int64_t[]){4, 5, 37}, (int64_t[]){0, 0, 1}, 0);
    check_all_ops(a);
    check_all_ops(b);
    check_all_ops(c);
    em_tensor *d = rand_t(EM_I32, 1, (int64_t[]){1}, 1);
    em_tensor *e = view(d, 2, (int64_t[]){3, 70000}, (int64_t[]){0, 0}, 0);
    check_all_ops(e);
    em_release(a), em_release(b), em_release(c), em_release(d), em_release(e);
    em_release(row), em_release(col);
}

Test(reduce, walks_rows_of_a_permuted_view_split_into_many_pieces) {
    cr_assert_eq(em_set_threads(2), 0);
    em_tensor *base = rand_t(EM_F32, 3, (int64_t[]){64, 40, 50}, 1);
    em_tensor *a = permuted(base, (int[]){1, 0, 2}); /* rows of 50 at 2560 scattered offsets */
    for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) check_reduce((rt_reduce)r, a, 2);
    for (int lg = 0; lg < 2; lg++) check_softmax(a, 2, lg);
    check_norm(false, a, NULL, NULL, 1e-5);
    em_release(a), em_release(base);
}

Test(reduce, treats_a_0d_tensor_as_one_element) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (size_t t = 0; t < 5; t++) {
        em_tensor *a = rand_t(dts[t], 0, NULL, 3);
        for (int r = 0; r <= RT_REDUCE_ARGMAX; r++) {
            if (r == RT_REDUCE_MEAN && !rt_dtype_is_float(dts[t])) continue;
            em_tensor *out = new_t(out_dtype((rt_reduce)r, dts[t]), 0, NULL);
            cr_assert_eq(rt_reduce_apply((rt_reduce)r, a, 0, out), 0, "%s", em_last_error());
            double want = r == RT_REDUCE_ARGMAX ? 0 : flat(a, 0);
            cr_assert_eq(flat(out, 0), want, "%s of a 0-d %s", rname[r], em_dtype_name(dts[t]));
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
    em_tensor *a = new_t(EM_F32, 2, (int64_t[]){3, 0});
    em_tensor *i = new_t(EM_I32, 2, (int64_t[]){3, 0});
    em_tensor *s = new_t(EM_F32, 1, (int64_t[]){3}), *m = new_t(EM_F32, 1, (int64_t[]){3});
    em_tensor *si = new_t(EM_I64, 1, (int64_t[]){3});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, a, 1, s), 0);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MEAN, a, 1, m), 0);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, i, 1, si), 0);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(flat(s, k), 0.0);
        cr_assert(isnan(flat(m, k)));
        cr_assert_eq(flat(si, k), 0.0);
    }
    /* Reducing the non-empty axis of an empty tensor writes nothing. */
    em_tensor *e = new_t(EM_F32, 1, (int64_t[]){0});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MAX, a, 0, e), 0);
    em_release(a), em_release(i), em_release(s), em_release(m), em_release(si), em_release(e);
}

Test(reduce, rejects_max_of_a_zero_length_axis_and_mean_of_integers) {
    em_tensor *a = new_t(EM_F32, 2, (int64_t[]){3, 0});
    em_tensor *out = new_t(EM_F32, 1, (int64_t[]){3});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MAX, a, 1, out), -1);
    cr_assert(strstr(em_last_error(), "length 0"), "%s", em_last_error());
    em_tensor *i = rand_t(EM_I32, 1, (int64_t[]){5}, 1);
    em_tensor *o = new_t(EM_I32, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_MEAN, i, 0, o), -1);
    em_release(a), em_release(out), em_release(i), em_release(o);
}

Test(reduce, propagates_nan_through_max_and_min_at_every_position) {
    const int64_t n = 37;
    for (int64_t pos = 0; pos < n; pos++) {
        em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){2, n}, 1);
        set(a, (int64_t[]){1, pos}, NAN);
        check_all_ops(a); /* rows along axis 1, columns along axis 0 */
        em_tensor *t = permuted(a, (int[]){1, 0});
        check_all_ops(t);
        em_release(t);
        em_release(a);
    }
    em_tensor *d = rand_t(EM_F64, 2, (int64_t[]){4, 9}, 1);
    set(d, (int64_t[]){2, 0}, NAN);
    check_all_ops(d);
    em_release(d);
}

Test(reduce, argmax_returns_the_first_of_tied_maxima) {
    em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){40, 40}, 1);
    for (int64_t r = 0; r < 40; r++) {
        set(a, (int64_t[]){r, (r * 7) % 40}, 5.0);
        set(a, (int64_t[]){r, (r * 7 + 13) % 40}, 5.0);
    }
    check_reduce(RT_REDUCE_ARGMAX, a, 0);
    check_reduce(RT_REDUCE_ARGMAX, a, 1);
    em_tensor *i = rand_t(EM_I64, 2, (int64_t[]){8, 1000}, 1);
    check_reduce(RT_REDUCE_ARGMAX, i, 1);
    em_tensor *big = new_t(EM_F32, 1, (int64_t[]){300000});
    memset(rt_tensor_data(big), 0, 300000 * sizeof(float));
    set(big, (int64_t[]){70000}, 1.0), set(big, (int64_t[]){200000}, 1.0);
    check_reduce(RT_REDUCE_ARGMAX, big, 0);
    em_release(a), em_release(i), em_release(big);
}

Test(reduce, argmax_counts_nan_as_the_maximum) {
    em_tensor *a = new_t(EM_F32, 1, (int64_t[]){200000});
    for (int64_t k = 0; k < 200000; k++) ((float *)rt_tensor_data(a))[k] = (float)k;
    set(a, (int64_t[]){150000}, NAN), set(a, (int64_t[]){160000}, NAN);
    em_tensor *out = new_t(EM_I64, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_ARGMAX, a, 0, out), 0);
    cr_assert_eq(flat(out, 0), 150000.0);
    em_release(a), em_release(out);
}

Test(reduce, sums_integers_and_bools_into_i64_without_overflow) {
    em_tensor *a = new_t(EM_I32, 1, (int64_t[]){100000});
    for (int64_t k = 0; k < 100000; k++) ((int32_t *)rt_tensor_data(a))[k] = INT32_MAX;
    em_tensor *out = new_t(EM_I64, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, a, 0, out), 0);
    cr_assert_eq(*(int64_t *)rt_tensor_data(out), (int64_t)INT32_MAX * 100000);
    em_tensor *b = new_t(EM_BOOL, 1, (int64_t[]){1000});
    for (int64_t k = 0; k < 1000; k++) ((uint8_t *)rt_tensor_data(b))[k] = k % 3 == 0;
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, b, 0, out), 0);
    cr_assert_eq(*(int64_t *)rt_tensor_data(out), 334);
    em_release(a), em_release(b), em_release(out);
}

Test(reduce, sums_4m_uniform_values_accurately) {
    const int64_t n = 4 << 20;
    em_tensor *a = em_rand(1, &n, 11);
    em_tensor *out = new_t(EM_F32, 0, NULL);
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, a, 0, out), 0);
    double ref = 0;
    for (int64_t k = 0; k < n; k++) ref += ((float *)rt_tensor_data(a))[k];
    double got = flat(out, 0);
    cr_assert(fabs(got - ref) <= 1e-6 * ref, "got %.10g, want %.10g", got, ref);
    /* The same values as a long column: sum(0) of a [n/4, 4] matrix. */
    em_tensor *m = view(a, 2, (int64_t[]){n / 4, 4}, (int64_t[]){4, 1}, 0);
    em_tensor *col = new_t(EM_F32, 1, (int64_t[]){4});
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, m, 0, col), 0);
    for (int j = 0; j < 4; j++) {
        double r = 0;
        for (int64_t k = 0; k < n / 4; k++) r += ((float *)rt_tensor_data(a))[4 * k + j];
        cr_assert(fabs(flat(col, j) - r) <= 1e-6 * r, "col %d: got %.10g, want %.10g", j, flat(col, j), r);
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
    em_tensor *out = new_t(out_dtype(r, a->dtype), k, sh);
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
            cr_assert(b1 == b2 && memcmp(one, two, b1) == 0, "case %zu, %s", c, rname[r]);
            free(one), free(two);
        }
    em_release(row), em_release(mat), em_release(tall);
}

/* ---- softmax -------------------------------------------------------------------------- */

/* Checks out = (log_)softmax(x) along axis against double loops; rows sum to 1. */
static void check_softmax(const em_tensor *x, int axis, bool lg) {
    em_tensor *out = new_t(x->dtype, x->ndim, x->shape);
    cr_assert_eq(rt_softmax_apply(x, axis, lg, out), 0, "%s", em_last_error());
    double tol = x->dtype == EM_F32 ? 2e-6 : 1e-13;
    int64_t L = x->ndim ? x->shape[axis] : 1, ix[EM_MAX_DIMS] = {0};
    for (int64_t o = 0; o < lines_of(x, axis) && L > 0; o++) {
        if (x->ndim) line_index(x, axis, o, ix);
        double m = -INFINITY, s = 0, total = 0;
        for (int64_t j = 0; j < L; j++) {
            if (x->ndim) ix[axis] = j;
            m = fmax(m, at(x, ix));
        }
        for (int64_t j = 0; j < L; j++) {
            if (x->ndim) ix[axis] = j;
            s += exp(at(x, ix) - m);
        }
        for (int64_t j = 0; j < L; j++) {
            if (x->ndim) ix[axis] = j;
            double want = lg ? at(x, ix) - m - log(s) : exp(at(x, ix) - m) / s;
            double got = at(out, ix); /* out is contiguous with x's shape */
            total += lg ? exp(got) : got;
            cr_assert(fabs(got - want) <= tol * (lg ? 1 + fabs(want) : 1),
                      "%s axis %d line %lld [%lld]: got %.9g, want %.9g", lg ? "log_softmax" : "softmax",
                      axis, (long long)o, (long long)j, got, want);
        }
        cr_assert(fabs(total - 1) <= 1e-5 * (double)L, "line %lld sums to %.9g", (long long)o, total);
    }
    em_release(out);
}

Test(softmax, rows_sum_to_one_for_lengths_not_a_multiple_of_the_vector_width) {
    const int64_t lens[] = {1, 2, 15, 16, 17, 33, 1023, 1024, 1025};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (int lg = 0; lg < 2; lg++) {
            em_tensor *a = rand_t(EM_F32, 2, (int64_t[]){3, lens[i]}, 5);
            check_softmax(a, 1, lg);
            em_release(a);
        }
}

Test(softmax, log_softmax_equals_the_log_of_softmax) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){7, 300}, 8);
    em_tensor *s = new_t(EM_F32, 2, x->shape), *l = new_t(EM_F32, 2, x->shape);
    cr_assert_eq(rt_softmax_apply(x, 1, false, s), 0);
    cr_assert_eq(rt_softmax_apply(x, 1, true, l), 0);
    for (int64_t k = 0; k < x->numel; k++)
        cr_assert(fabs(log(flat(s, k)) - flat(l, k)) <= 1e-5 * (1 + fabs(flat(l, k))), "element %lld", (long long)k);
    em_release(x), em_release(s), em_release(l);
}

Test(softmax, normalises_every_axis_of_every_permutation_of_a_3d_tensor) {
    static const int perms[3][3] = {{0, 1, 2}, {2, 0, 1}, {1, 2, 0}};
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int t = 0; t < 2; t++) {
        em_tensor *base = rand_t(dts[t], 3, (int64_t[]){4, 19, 300}, 4);
        for (int p = 0; p < 3; p++) {
            em_tensor *a = permuted(base, perms[p]);
            for (int axis = 0; axis < 3; axis++) {
                check_softmax(a, axis, false);
                check_softmax(a, axis, true);
            }
            em_release(a);
        }
        em_release(base);
    }
}

Test(softmax, normalises_sliced_and_expanded_views) {
    em_tensor *base = rand_t(EM_F32, 2, (int64_t[]){20, 64}, 3);
    em_tensor *a = view(base, 2, (int64_t[]){10, 20}, (int64_t[]){128, 3}, 1); /* base[::2, 1:60:3] */
    em_tensor *e = view(base, 3, (int64_t[]){3, 20, 64}, (int64_t[]){0, 64, 1}, 0);
    for (int lg = 0; lg < 2; lg++) {
        check_softmax(a, 0, lg), check_softmax(a, 1, lg);
        check_softmax(e, 0, lg), check_softmax(e, 2, lg);
    }
    em_release(a), em_release(e), em_release(base);
}

Test(softmax, handles_inputs_in_the_thousands_without_overflow) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){4, 100}, 3000);
    em_tensor *d = rand_t(EM_F64, 2, (int64_t[]){4, 100}, 3000);
    for (int lg = 0; lg < 2; lg++) {
        check_softmax(x, 1, lg), check_softmax(x, 0, lg);
        check_softmax(d, 1, lg), check_softmax(d, 0, lg);
    }
    em_release(x), em_release(d);
}

/* Softmax of one row of n values along the last axis into res; also checks the
 * column path (the row as a column of an expanded [n, 2] view) agrees. */
static void softmax_row_of(const float *v, int64_t n, bool lg, float *res) {
    em_tensor *x = em_from_data(EM_F32, 2, (int64_t[]){1, n}, v);
    em_tensor *out = new_t(EM_F32, 2, x->shape);
    cr_assert_eq(rt_softmax_apply(x, 1, lg, out), 0);
    memcpy(res, rt_tensor_data(out), (size_t)n * sizeof(float));
    em_tensor *xt = view(x, 2, (int64_t[]){n, 2}, (int64_t[]){1, 0}, 0), *ot = new_t(EM_F32, 2, xt->shape);
    cr_assert_eq(rt_softmax_apply(xt, 0, lg, ot), 0);
    for (int64_t i = 0; i < 2 * n; i++) {
        double c = flat(ot, i), r = res[i / 2];
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
    em_tensor *a = new_t(EM_F32, 2, (int64_t[]){3, 0}), *o = new_t(EM_F32, 2, (int64_t[]){3, 0});
    cr_assert_eq(rt_softmax_apply(a, 1, false, o), 0);
    cr_assert_eq(rt_softmax_apply(a, 0, true, o), 0);
    em_tensor *s = rand_t(EM_F64, 0, NULL, 3), *so = new_t(EM_F64, 0, NULL);
    cr_assert_eq(rt_softmax_apply(s, 0, false, so), 0);
    cr_assert_eq(flat(so, 0), 1.0);
    cr_assert_eq(rt_softmax_apply(s, 0, true, so), 0);
    cr_assert_eq(flat(so, 0), 0.0);
    em_tensor *i = rand_t(EM_I32, 1, (int64_t[]){3}, 1), *io = new_t(EM_I32, 1, (int64_t[]){3});
    cr_assert_eq(rt_softmax_apply(i, 0, false, io), -1);
    em_release(a), em_release(o), em_release(s), em_release(so), em_release(i), em_release(io);
}

/* ---- layer_norm and rms_norm ----------------------------------------------------------- */

/* Checks a norm of x (w, b may be NULL) against double loops over the last axis. */
static void check_norm(bool rms, const em_tensor *x, const em_tensor *w, const em_tensor *b, double eps) {
    em_tensor *out = new_t(x->dtype, x->ndim, x->shape);
    int rc = rms ? rt_rms_norm_apply(x, w, eps, out) : rt_layer_norm_apply(x, w, b, eps, out);
    cr_assert_eq(rc, 0, "%s", em_last_error());
    int axis = x->ndim - 1;
    int64_t D = x->shape[axis], ix[EM_MAX_DIMS];
    double tol = x->dtype == EM_F32 ? 3e-5 : 1e-12;
    for (int64_t o = 0; o < lines_of(x, axis) && D > 0; o++) {
        line_index(x, axis, o, ix);
        double mean = 0, var = 0;
        for (ix[axis] = 0; ix[axis] < D; ix[axis]++) mean += rms ? 0 : at(x, ix) / (double)D;
        for (ix[axis] = 0; ix[axis] < D; ix[axis]++) var += (at(x, ix) - mean) * (at(x, ix) - mean) / (double)D;
        for (int64_t j = 0; j < D; j++) {
            ix[axis] = j;
            double wj = w ? at(w, &j) : 1, bj = b ? at(b, &j) : 0;
            double want = (at(x, ix) - mean) / sqrt(var + eps) * wj + bj, got = at(out, ix);
            cr_assert(fabs(got - want) <= tol * (1 + fabs(want)), "%s line %lld [%lld]: got %.9g, want %.9g",
                      rms ? "rms_norm" : "layer_norm", (long long)o, (long long)j, got, want);
        }
    }
    em_release(out);
}

Test(norm, layer_norm_and_rms_norm_match_the_reference_with_and_without_weights) {
    const int64_t lens[] = {1, 2, 15, 16, 17, 1023, 1024};
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            em_tensor *x = rand_t(dts[t], 3, (int64_t[]){2, 3, lens[i]}, 3);
            em_tensor *w = rand_t(dts[t], 1, &lens[i], 2), *b = rand_t(dts[t], 1, &lens[i], 2);
            for (int m = 0; m < 4; m++) check_norm(false, x, m & 1 ? w : NULL, m & 2 ? b : NULL, 1e-5);
            check_norm(true, x, w, NULL, 1e-6);
            check_norm(true, x, NULL, NULL, 1e-6);
            em_release(x), em_release(w), em_release(b);
        }
}

Test(norm, normalises_strided_inputs_and_strided_weights) {
    const em_dtype dts[] = {EM_F32, EM_F64};
    for (int t = 0; t < 2; t++) {
        em_tensor *base = rand_t(dts[t], 2, (int64_t[]){70, 40}, 2);
        em_tensor *xt = permuted(base, (int[]){1, 0});                                     /* [40, 70] */
        em_tensor *xs = view(base, 2, (int64_t[]){35, 20}, (int64_t[]){80, 2}, 1);          /* [::2, 1::2] */
        em_tensor *xe = view(base, 3, (int64_t[]){3, 70, 40}, (int64_t[]){0, 40, 1}, 0);
        em_tensor *wb = rand_t(dts[t], 1, (int64_t[]){140}, 2);
        em_tensor *w70 = view(wb, 1, (int64_t[]){70}, (int64_t[]){2}, 0);
        em_tensor *b70 = view(wb, 1, (int64_t[]){70}, (int64_t[]){2}, 1);
        em_tensor *w20 = view(wb, 1, (int64_t[]){20}, (int64_t[]){7}, 3);
        em_tensor *w40 = view(wb, 1, (int64_t[]){40}, (int64_t[]){3}, 0);
        check_norm(false, xt, w70, b70, 1e-5), check_norm(true, xt, w70, NULL, 1e-5);
        check_norm(false, xs, w20, w20, 1e-5), check_norm(true, xs, w20, NULL, 1e-5);
        check_norm(false, xe, w40, NULL, 1e-5), check_norm(true, xe, NULL, NULL, 1e-5);
        em_release(base), em_release(xt), em_release(xs), em_release(xe);
        em_release(wb), em_release(w70), em_release(b70), em_release(w20), em_release(w40);
    }
}

Test(norm, layer_norm_is_stable_for_a_large_mean_and_exact_for_a_constant_row) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){4, 500}, 1);
    for (int64_t k = 0; k < x->numel; k++) ((float *)rt_tensor_data(x))[k] += 1000.0f;
    check_norm(false, x, NULL, NULL, 1e-5);
    em_tensor *c = new_t(EM_F32, 2, (int64_t[]){2, 33});
    for (int64_t k = 0; k < c->numel; k++) ((float *)rt_tensor_data(c))[k] = 3.5f;
    em_tensor *b = rand_t(EM_F32, 1, (int64_t[]){33}, 1), *out = new_t(EM_F32, 2, c->shape);
    cr_assert_eq(rt_layer_norm_apply(c, NULL, b, 1e-5, out), 0);
    for (int64_t k = 0; k < c->numel; k++) cr_assert_eq(flat(out, k), flat(b, k % 33));
    em_release(x), em_release(c), em_release(b), em_release(out);
}

Test(norm, rejects_integer_inputs_and_weights_of_the_wrong_shape) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){2, 8}, 1), *out = new_t(EM_F32, 2, x->shape);
    em_tensor *w = rand_t(EM_F32, 1, (int64_t[]){7}, 1), *wd = rand_t(EM_F64, 1, (int64_t[]){8}, 1);
    cr_assert_eq(rt_layer_norm_apply(x, w, NULL, 1e-5, out), -1);
    cr_assert_eq(rt_rms_norm_apply(x, wd, 1e-5, out), -1);
    em_tensor *i = rand_t(EM_I32, 2, (int64_t[]){2, 8}, 1), *io = new_t(EM_I32, 2, i->shape);
    cr_assert_eq(rt_layer_norm_apply(i, NULL, NULL, 1e-5, io), -1);
    em_tensor *e = new_t(EM_F32, 2, (int64_t[]){0, 8}), *eo = new_t(EM_F32, 2, e->shape);
    cr_assert_eq(rt_layer_norm_apply(e, NULL, NULL, 1e-5, eo), 0);
    em_release(x), em_release(out), em_release(w), em_release(wd), em_release(i), em_release(io);
    em_release(e), em_release(eo);
}

Test(norm, fails_cleanly_naming_the_op_when_scratch_memory_runs_out) {
    em_tensor *x = rand_t(EM_F32, 2, (int64_t[]){4, 8}, 1), *out = new_t(EM_F32, 2, x->shape);
    em_tensor *wb = rand_t(EM_F32, 1, (int64_t[]){16}, 1);
    em_tensor *w = view(wb, 1, (int64_t[]){8}, (int64_t[]){2}, 0); /* strided: copied */
    rt_alloc_fail_after(1);
    cr_assert_eq(rt_layer_norm_apply(x, w, w, 1e-5, out), -1);
    cr_assert(strstr(em_last_error(), "em_layer_norm: out of memory"), "%s", em_last_error());
    rt_alloc_fail_after(2);
    cr_assert_eq(rt_layer_norm_apply(x, w, w, 1e-5, out), -1);
    rt_alloc_fail_after(0);
    const int64_t n = 200000;
    em_tensor *big = rand_t(EM_F32, 1, &n, 1), *s = new_t(EM_F32, 0, NULL);
    rt_alloc_fail_after(1); /* the block partials of a long row */
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, big, 0, s), -1);
    rt_alloc_fail_after(0);
    cr_assert(strstr(em_last_error(), "em_sum: out of memory"), "%s", em_last_error());
    cr_assert_eq(rt_reduce_apply(RT_REDUCE_SUM, big, 0, s), 0);
    em_release(x), em_release(out), em_release(wb), em_release(w), em_release(big), em_release(s);
}

/* ---- the row and column kernels of every ISA ------------------------------------------- */

static const char *isas[] = {"avx512", "avx2", "sse2"};

static void fill_row(float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(rnd() * scale);
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
