/*
 * test_blas.c — rt_matmul_apply and rt_linear_apply against plain loops in
 * double.
 *
 * Operands are built as views of random dense tensors (transposes, stepped
 * slices, stride-0 broadcasts) so that every layout the kernels special-case
 * (BLAS on either transpose, a stack folded into one GEMM, a copy for operands
 * with no unit stride) is checked against the same reference, which reads
 * elements through their strides one at a time. "Without copying" is checked
 * through the allocation counter: only tensor storage counts, so a kernel that
 * made a dense copy shows up there.
 */
#include <criterion/criterion.h>

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "runtime.h"
#include "../util.h"

/* ---- helpers ------------------------------------------------------------------------ */

static tu_rng rng = {42};

/* Random floats in [-1, 1) (integers in [-100, 100)), from this file's sequence. */
static em_tensor *rand_t(em_dtype dt, int nd, const int64_t *shape) {
    return tu_rt_random(&rng, dt, nd, shape, 1, 100, TU_BOOL_LIKE_INT);
}

/* A dense-valued [r, c] operand laid out as its transpose: a view of [c, r]. */
static em_tensor *transposed(em_dtype dt, int64_t r, int64_t c) {
    em_tensor *base = rand_t(dt, 2, (int64_t[]){c, r});
    em_tensor *t = tu_rt_swapped(base, 0, 1);
    em_release(base);
    return t;
}

/* torch.matmul's result shape. */
static int matmul_shape(const em_tensor *a, const em_tensor *b, int64_t *shape) {
    int ab = a->ndim >= 2 ? a->ndim - 2 : 0, bb = b->ndim >= 2 ? b->ndim - 2 : 0;
    int nb = ab > bb ? ab : bb, k = 0;
    for (int j = 0; j < nb; j++) {
        int da = j - (nb - ab), db = j - (nb - bb);
        int64_t sa = da < 0 ? 1 : a->shape[da], sb = db < 0 ? 1 : b->shape[db];
        shape[k++] = sa == 1 ? sb : sa;
    }
    if (a->ndim >= 2) shape[k++] = a->shape[a->ndim - 2];
    if (b->ndim >= 2) shape[k++] = b->shape[b->ndim - 1];
    return k;
}

/* Reference torch.matmul in double, checked element by element. */
static void check_matmul(const em_tensor *a, const em_tensor *b, const em_tensor *out) {
    double tol = out->dtype == EM_F32 ? 1e-5 : 1e-12;
    int nb = out->ndim - (a->ndim >= 2) - (b->ndim >= 2);
    int ab = a->ndim >= 2 ? a->ndim - 2 : 0, bb = b->ndim >= 2 ? b->ndim - 2 : 0;
    int64_t K = a->shape[a->ndim - 1];
    for (int64_t o = 0; o < out->numel; o++) {
        int64_t ix[EM_MAX_DIMS], ia[EM_MAX_DIMS], ib[EM_MAX_DIMS];
        tu_unflatten(o, out->ndim, out->shape, ix);
        for (int d = 0; d < ab; d++) ia[d] = a->shape[d] == 1 ? 0 : ix[d + nb - ab];
        for (int d = 0; d < bb; d++) ib[d] = b->shape[d] == 1 ? 0 : ix[d + nb - bb];
        if (a->ndim >= 2) ia[ab] = ix[nb];
        if (b->ndim >= 2) ib[bb + 1] = ix[out->ndim - 1];
        double sum = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
            ia[a->ndim - 1] = k;
            ib[b->ndim >= 2 ? bb : 0] = k;
            double p = tu_rt_at(a, ia) * tu_rt_at(b, ib);
            sum += p, mag += fabs(p);
        }
        double got = tu_rt_flat(out, o);
        cr_assert(fabs(got - sum) <= tol * (1 + mag), "element %lld: got %.9g, want %.9g",
                  (long long)o, got, sum);
    }
}

/* Allocates out, runs rt_matmul_apply (asserting that it made no dense copy
 * when no_copy), checks it; releases out and the operands. */
static void matmul_run(em_tensor *a, em_tensor *b, bool no_copy) {
    int64_t shape[EM_MAX_DIMS];
    int nd = matmul_shape(a, b, shape);
    em_tensor *out = tu_rt_new(a->dtype, nd, shape);
    rt_fill(out, NAN); /* BLAS must not scale stale contents by beta = 0 */
    uint64_t before = tu_allocations();
    cr_assert_eq(rt_matmul_apply(a, b, out), 0, "%s", em_last_error());
    cr_assert(!no_copy || tu_allocations() == before, "an operand was copied");
    check_matmul(a, b, out);
    em_release(out);
    em_release(a);
    em_release(b);
}

static void matmul_case(em_tensor *a, em_tensor *b) { matmul_run(a, b, false); }
static void matmul_no_copy(em_tensor *a, em_tensor *b) { matmul_run(a, b, true); }

static const int64_t sizes[] = {1, 3, 17, 64, 255};
#define NSIZES 5

/* ---- matmul ----------------------------------------------------------------------------- */

Test(matmul, multiplies_square_matrices_of_every_test_size) {
    for (int i = 0; i < NSIZES; i++) {
        int64_t s = sizes[i];
        matmul_case(rand_t(EM_F32, 2, (int64_t[]){s, s}), rand_t(EM_F32, 2, (int64_t[]){s, s}));
    }
}

Test(matmul, multiplies_rectangular_matrices_of_every_size_combination) {
    for (int i = 0; i < NSIZES - 1; i++)
        for (int j = 0; j < NSIZES - 1; j++)
            for (int k = 0; k < NSIZES - 1; k++)
                matmul_case(rand_t(EM_F32, 2, (int64_t[]){sizes[i], sizes[k]}),
                            rand_t(EM_F32, 2, (int64_t[]){sizes[k], sizes[j]}));
    matmul_case(rand_t(EM_F32, 2, (int64_t[]){255, 3}), rand_t(EM_F32, 2, (int64_t[]){3, 64}));
    matmul_case(rand_t(EM_F32, 2, (int64_t[]){1, 255}), rand_t(EM_F32, 2, (int64_t[]){255, 17}));
}

Test(matmul, takes_the_dot_product_of_two_vectors) {
    for (int i = 0; i < NSIZES; i++) {
        int64_t k = sizes[i];
        matmul_case(rand_t(EM_F32, 1, &k), rand_t(EM_F32, 1, &k));
    }
    /* Stepped vectors: every third and every second element of longer ones. */
    em_tensor *x = rand_t(EM_F32, 1, (int64_t[]){51}), *y = rand_t(EM_F32, 1, (int64_t[]){34});
    matmul_case(tu_rt_view(x, 1, (int64_t[]){17}, (int64_t[]){3}, 0),
                tu_rt_view(y, 1, (int64_t[]){17}, (int64_t[]){2}, 1));
    em_release(x);
    em_release(y);
}

Test(matmul, multiplies_a_vector_by_a_matrix) {
    for (int i = 0; i < NSIZES; i++) {
        int64_t k = sizes[i], n = sizes[(i + 2) % NSIZES];
        matmul_case(rand_t(EM_F32, 1, &k), rand_t(EM_F32, 2, (int64_t[]){k, n}));
        matmul_case(rand_t(EM_F32, 1, &k), transposed(EM_F32, k, n));
    }
    em_tensor *x = rand_t(EM_F32, 1, (int64_t[]){34});
    matmul_case(tu_rt_view(x, 1, (int64_t[]){17}, (int64_t[]){2}, 0), transposed(EM_F32, 17, 5));
    em_release(x);
}

Test(matmul, multiplies_a_matrix_by_a_vector) {
    for (int i = 0; i < NSIZES; i++) {
        int64_t m = sizes[i], k = sizes[(i + 3) % NSIZES];
        matmul_case(rand_t(EM_F32, 2, (int64_t[]){m, k}), rand_t(EM_F32, 1, &k));
        matmul_case(transposed(EM_F32, m, k), rand_t(EM_F32, 1, &k));
    }
    em_tensor *y = rand_t(EM_F32, 1, (int64_t[]){51});
    matmul_case(rand_t(EM_F32, 2, (int64_t[]){4, 17}),
                tu_rt_view(y, 1, (int64_t[]){17}, (int64_t[]){3}, 2));
    em_release(y);
}

Test(matmul, multiplies_a_batch_by_a_vector_and_a_vector_by_a_batch) {
    matmul_case(rand_t(EM_F32, 4, (int64_t[]){2, 3, 5, 17}), rand_t(EM_F32, 1, (int64_t[]){17}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){4, 64, 3}), rand_t(EM_F32, 1, (int64_t[]){3}));
    matmul_case(rand_t(EM_F32, 1, (int64_t[]){17}), rand_t(EM_F32, 3, (int64_t[]){3, 17, 5}));
    matmul_case(rand_t(EM_F32, 1, (int64_t[]){3}), rand_t(EM_F32, 4, (int64_t[]){2, 2, 3, 1}));
}

Test(matmul, broadcasts_batch_dims_like_numpy) {
    matmul_case(rand_t(EM_F32, 4, (int64_t[]){2, 1, 3, 4}), rand_t(EM_F32, 3, (int64_t[]){5, 4, 6}));
    matmul_case(rand_t(EM_F32, 2, (int64_t[]){3, 4}), rand_t(EM_F32, 3, (int64_t[]){5, 4, 6}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){5, 3, 4}), rand_t(EM_F32, 4, (int64_t[]){2, 1, 4, 6}));
    /* An expanded operand: batch stride 0 over 3 copies of one matrix. */
    em_tensor *m = rand_t(EM_F32, 2, (int64_t[]){17, 5});
    matmul_case(tu_rt_view(m, 3, (int64_t[]){3, 17, 5}, (int64_t[]){0, 5, 1}, 0),
                rand_t(EM_F32, 3, (int64_t[]){3, 5, 4}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){3, 4, 17}),
                tu_rt_view(m, 3, (int64_t[]){3, 17, 5}, (int64_t[]){0, 5, 1}, 0));
    em_release(m);
}

Test(matmul, multiplies_a_transposed_view_without_copying) {
    matmul_no_copy(transposed(EM_F32, 64, 17), transposed(EM_F32, 17, 255));
    matmul_no_copy(rand_t(EM_F32, 2, (int64_t[]){3, 17}), transposed(EM_F32, 17, 64));
}

Test(matmul, multiplies_attention_scores_by_a_transposed_batch_without_copying) {
    em_tensor *k = rand_t(EM_F32, 3, (int64_t[]){8, 64, 17});
    matmul_no_copy(rand_t(EM_F32, 3, (int64_t[]){8, 255, 17}), tu_rt_swapped(k, 1, 2));
    em_release(k);
}

Test(matmul, multiplies_sliced_blocks_of_larger_matrices_without_copying) {
    em_tensor *big = rand_t(EM_F32, 2, (int64_t[]){40, 30});
    matmul_no_copy(tu_rt_view(big, 2, (int64_t[]){17, 3}, (int64_t[]){30, 1}, 31),
                   tu_rt_view(big, 2, (int64_t[]){3, 17}, (int64_t[]){1, 30}, 5 * 30 + 7));
    /* Heads of a [seq, heads*hd] projection: batch stride hd, row stride heads*hd. */
    matmul_no_copy(tu_rt_view(big, 3, (int64_t[]){3, 40, 10}, (int64_t[]){10, 30, 1}, 0),
                   tu_rt_view(big, 3, (int64_t[]){3, 10, 40}, (int64_t[]){10, 1, 30}, 0));
    em_release(big);
}

Test(matmul, copies_operands_with_no_unit_stride) {
    em_tensor *big = rand_t(EM_F32, 3, (int64_t[]){4, 40, 30});
    /* Every second row and every third column. */
    em_tensor *a = tu_rt_view(big, 3, (int64_t[]){4, 17, 9}, (int64_t[]){1200, 60, 3}, 1);
    em_tensor *b = tu_rt_view(big, 2, (int64_t[]){9, 5}, (int64_t[]){60, 2}, 0);
    matmul_case(a, b);
    a = tu_rt_view(big, 2, (int64_t[]){17, 9}, (int64_t[]){60, 3}, 0);
    b = tu_rt_view(big, 3, (int64_t[]){4, 9, 5}, (int64_t[]){1200, 2, 90}, 4);
    matmul_case(a, b);
    /* Stride-0 rows (an expanded row vector) are not a BLAS layout either. */
    a = tu_rt_view(big, 2, (int64_t[]){5, 30}, (int64_t[]){0, 1}, 0);
    matmul_case(a, rand_t(EM_F32, 2, (int64_t[]){30, 3}));
    em_release(big);
}

Test(matmul, folds_a_stack_times_one_matrix_into_one_gemm_and_loops_otherwise) {
    matmul_case(rand_t(EM_F32, 4, (int64_t[]){2, 3, 17, 64}), rand_t(EM_F32, 2, (int64_t[]){64, 3}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){5, 1, 17}), rand_t(EM_F32, 2, (int64_t[]){17, 4}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){5, 17, 3}), transposed(EM_F32, 3, 64));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){4, 3, 17}),
                rand_t(EM_F32, 3, (int64_t[]){1, 17, 5}));
    /* Rows 0..16 of each [20, 8] matrix: the stack does not collapse. */
    em_tensor *big = rand_t(EM_F32, 3, (int64_t[]){4, 20, 8});
    matmul_case(tu_rt_view(big, 3, (int64_t[]){4, 17, 8}, (int64_t[]){160, 8, 1}, 8),
                rand_t(EM_F32, 2, (int64_t[]){8, 3}));
    /* Batch dims permuted: [3, 4] of [4, 3] matrices, collapsing in the wrong order. */
    em_tensor *p = rand_t(EM_F32, 4, (int64_t[]){4, 3, 5, 6});
    matmul_case(tu_rt_view(p, 4, (int64_t[]){3, 4, 5, 6}, (int64_t[]){30, 90, 6, 1}, 0),
                rand_t(EM_F32, 2, (int64_t[]){6, 2}));
    em_release(p);
    em_release(big);
}

Test(matmul, computes_in_f64) {
    for (int i = 0; i < NSIZES; i++) {
        int64_t s = sizes[i];
        matmul_case(rand_t(EM_F64, 2, (int64_t[]){s, 17}), rand_t(EM_F64, 2, (int64_t[]){17, s}));
    }
    matmul_case(transposed(EM_F64, 17, 64), transposed(EM_F64, 64, 3));
    matmul_case(rand_t(EM_F64, 4, (int64_t[]){2, 1, 3, 4}), rand_t(EM_F64, 3, (int64_t[]){5, 4, 6}));
    matmul_case(rand_t(EM_F64, 1, (int64_t[]){64}), rand_t(EM_F64, 1, (int64_t[]){64}));
    matmul_case(rand_t(EM_F64, 1, (int64_t[]){17}), rand_t(EM_F64, 2, (int64_t[]){17, 3}));
}

Test(matmul, writes_zeros_when_k_is_zero) { /* matmul_case fills out with NaN first */
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){2, 3, 0}), rand_t(EM_F32, 2, (int64_t[]){0, 4}));
    matmul_case(rand_t(EM_F32, 1, (int64_t[]){0}), rand_t(EM_F32, 1, (int64_t[]){0}));
    matmul_case(rand_t(EM_F64, 2, (int64_t[]){3, 0}), rand_t(EM_F64, 1, (int64_t[]){0}));
}

Test(matmul, does_nothing_when_m_n_or_the_batch_is_zero) {
    matmul_case(rand_t(EM_F32, 2, (int64_t[]){0, 5}), rand_t(EM_F32, 2, (int64_t[]){5, 4}));
    matmul_case(rand_t(EM_F32, 2, (int64_t[]){3, 5}), rand_t(EM_F32, 2, (int64_t[]){5, 0}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){0, 3, 5}), rand_t(EM_F32, 2, (int64_t[]){5, 4}));
    matmul_case(rand_t(EM_F32, 3, (int64_t[]){2, 0, 5}), rand_t(EM_F32, 3, (int64_t[]){1, 5, 4}));
}

typedef struct { em_tensor *a, *b, *bias, *out; } call3;
static int call_matmul(void *p) { call3 *c = p; return rt_matmul_apply(c->a, c->b, c->out); }
static int call_linear(void *p) { call3 *c = p; return rt_linear_apply(c->a, c->b, c->bias, c->out); }

Test(matmul, reports_a_failed_copy_naming_the_op_and_leaves_nothing_behind) {
    em_tensor *big = rand_t(EM_F32, 2, (int64_t[]){40, 30});
    call3 c = {tu_rt_view(big, 2, (int64_t[]){17, 9}, (int64_t[]){60, 3}, 0),
               tu_rt_view(big, 2, (int64_t[]){9, 5}, (int64_t[]){2, 60}, 1), NULL,
               tu_rt_new(EM_F32, 2, (int64_t[]){17, 5})};
    tu_fail_every_allocation("em_matmul", call_matmul, &c);
    check_matmul(c.a, c.b, c.out);
    em_release(c.out), em_release(c.a), em_release(c.b), em_release(big);
}

Test(matmul, runs_with_one_thread_and_with_two) {
    for (int t = 1; t <= 2; t++) {
        cr_assert_eq(em_set_threads(t), 0);
        cr_assert_eq(openblas_get_num_threads(), t);
        matmul_case(rand_t(EM_F32, 3, (int64_t[]){4, 64, 255}), transposed(EM_F32, 255, 64));
    }
    rt_blas_set_threads(1);
    cr_assert_eq(openblas_get_num_threads(), 1);
}

/* ---- linear ----------------------------------------------------------------------------- */

/* out[..., n] = sum_k x[..., k] w[n, k] + bias[n], checked element by element. */
static void check_linear(const em_tensor *x, const em_tensor *w, const em_tensor *bias,
                         const em_tensor *out) {
    double tol = out->dtype == EM_F32 ? 1e-5 : 1e-12;
    int64_t K = w->shape[1];
    for (int64_t o = 0; o < out->numel; o++) {
        int64_t ix[EM_MAX_DIMS], iw[2];
        tu_unflatten(o, out->ndim, out->shape, ix);
        int64_t n = ix[out->ndim - 1];
        double sum = bias ? tu_rt_at(bias, &n) : 0, mag = fabs(sum);
        iw[0] = n;
        for (int64_t k = 0; k < K; k++) {
            ix[x->ndim - 1] = k, iw[1] = k;
            double p = tu_rt_at(x, ix) * tu_rt_at(w, iw);
            sum += p, mag += fabs(p);
        }
        double got = tu_rt_flat(out, o);
        cr_assert(fabs(got - sum) <= tol * (1 + mag), "element %lld: got %.9g, want %.9g",
                  (long long)o, got, sum);
    }
}

/* Runs and checks rt_linear_apply (asserting no dense copy when no_copy);
 * releases everything passed in. */
static void linear_run(em_tensor *x, em_tensor *w, em_tensor *bias, bool no_copy) {
    int64_t shape[EM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    em_tensor *out = tu_rt_new(x->dtype, x->ndim, shape);
    rt_fill(out, NAN);
    uint64_t before = tu_allocations();
    cr_assert_eq(rt_linear_apply(x, w, bias, out), 0, "%s", em_last_error());
    cr_assert(!no_copy || tu_allocations() == before, "an operand was copied");
    check_linear(x, w, bias, out);
    em_release(out), em_release(x), em_release(w), em_release(bias);
}

static void linear_case(em_tensor *x, em_tensor *w, em_tensor *b) { linear_run(x, w, b, false); }

Test(linear, applies_a_weight_without_bias_at_every_test_size) {
    for (int i = 0; i < NSIZES; i++)
        for (int j = 0; j < NSIZES; j += 2) {
            int64_t m = sizes[i], k = sizes[j], n = sizes[(i + j) % NSIZES];
            linear_case(rand_t(EM_F32, 2, (int64_t[]){m, k}), rand_t(EM_F32, 2, (int64_t[]){n, k}), NULL);
        }
}

Test(linear, adds_a_bias_of_any_stride) {
    for (int i = 0; i < NSIZES; i++) {
        int64_t m = sizes[i], k = 17, n = sizes[(i + 1) % NSIZES];
        linear_case(rand_t(EM_F32, 2, (int64_t[]){m, k}), rand_t(EM_F32, 2, (int64_t[]){n, k}),
                    rand_t(EM_F32, 1, &n));
    }
    em_tensor *b = rand_t(EM_F32, 1, (int64_t[]){51});
    linear_case(rand_t(EM_F32, 2, (int64_t[]){5, 3}), rand_t(EM_F32, 2, (int64_t[]){17, 3}),
                tu_rt_view(b, 1, (int64_t[]){17}, (int64_t[]){3}, 0));
    linear_case(rand_t(EM_F32, 2, (int64_t[]){5, 3}), rand_t(EM_F32, 2, (int64_t[]){17, 3}),
                tu_rt_view(b, 1, (int64_t[]){17}, (int64_t[]){0}, 4));
    em_release(b);
}

Test(linear, folds_the_leading_dims_of_a_3d_input_without_copying) {
    linear_run(rand_t(EM_F32, 3, (int64_t[]){4, 17, 64}), rand_t(EM_F32, 2, (int64_t[]){255, 64}),
               rand_t(EM_F32, 1, (int64_t[]){255}), true);
    linear_run(rand_t(EM_F32, 4, (int64_t[]){2, 3, 5, 17}), rand_t(EM_F32, 2, (int64_t[]){3, 17}),
               NULL, true);
}

Test(linear, copies_an_input_whose_rows_do_not_collapse) {
    em_tensor *p = rand_t(EM_F32, 3, (int64_t[]){17, 4, 64});
    linear_case(tu_rt_swapped(p, 0, 1), rand_t(EM_F32, 2, (int64_t[]){3, 64}),
                rand_t(EM_F32, 1, (int64_t[]){3}));
    linear_case(tu_rt_view(p, 3, (int64_t[]){17, 4, 32}, (int64_t[]){256, 64, 2}, 1),
                rand_t(EM_F32, 2, (int64_t[]){5, 32}), NULL);
    /* An input expanded along its batch dim (stride 0). */
    em_tensor *r = rand_t(EM_F32, 2, (int64_t[]){3, 17});
    linear_case(tu_rt_view(r, 3, (int64_t[]){4, 3, 17}, (int64_t[]){0, 17, 1}, 0),
                rand_t(EM_F32, 2, (int64_t[]){5, 17}), rand_t(EM_F32, 1, (int64_t[]){5}));
    em_release(r);
    em_release(p);
}

Test(linear, accepts_transposed_and_strided_weights_and_a_1d_input) {
    linear_case(rand_t(EM_F32, 2, (int64_t[]){17, 64}), transposed(EM_F32, 3, 64),
                rand_t(EM_F32, 1, (int64_t[]){3}));
    linear_case(transposed(EM_F32, 17, 64), rand_t(EM_F32, 2, (int64_t[]){3, 64}), NULL);
    linear_case(rand_t(EM_F32, 1, (int64_t[]){64}), rand_t(EM_F32, 2, (int64_t[]){255, 64}),
                rand_t(EM_F32, 1, (int64_t[]){255}));
    em_tensor *big = rand_t(EM_F32, 2, (int64_t[]){20, 30});
    linear_case(rand_t(EM_F32, 2, (int64_t[]){5, 10}),
                tu_rt_view(big, 2, (int64_t[]){10, 10}, (int64_t[]){60, 3}, 0), NULL);
    em_release(big);
}

Test(linear, gives_the_bias_when_k_is_zero) {
    linear_case(rand_t(EM_F32, 2, (int64_t[]){3, 0}), rand_t(EM_F32, 2, (int64_t[]){4, 0}),
                rand_t(EM_F32, 1, (int64_t[]){4}));
    linear_case(rand_t(EM_F32, 3, (int64_t[]){2, 3, 0}), rand_t(EM_F32, 2, (int64_t[]){4, 0}), NULL);
    linear_case(rand_t(EM_F32, 2, (int64_t[]){0, 5}), rand_t(EM_F32, 2, (int64_t[]){4, 5}), NULL);
}

Test(linear, computes_in_f64) {
    linear_case(rand_t(EM_F64, 3, (int64_t[]){2, 17, 64}), rand_t(EM_F64, 2, (int64_t[]){3, 64}),
                rand_t(EM_F64, 1, (int64_t[]){3}));
    em_tensor *b = rand_t(EM_F64, 1, (int64_t[]){6});
    linear_case(rand_t(EM_F64, 2, (int64_t[]){1, 17}), transposed(EM_F64, 3, 17),
                tu_rt_view(b, 1, (int64_t[]){3}, (int64_t[]){2}, 0));
    em_release(b);
}

Test(linear, reports_a_failed_copy_naming_the_op_and_leaves_nothing_behind) {
    em_tensor *big = rand_t(EM_F32, 3, (int64_t[]){4, 6, 30});
    em_tensor *wb = rand_t(EM_F32, 2, (int64_t[]){10, 20});
    call3 c = {tu_rt_view(big, 3, (int64_t[]){4, 5, 9}, (int64_t[]){180, 30, 3}, 0),
               tu_rt_view(wb, 2, (int64_t[]){5, 9}, (int64_t[]){40, 2}, 0),
               rand_t(EM_F32, 1, (int64_t[]){5}), tu_rt_new(EM_F32, 3, (int64_t[]){4, 5, 5})};
    tu_fail_every_allocation("em_linear", call_linear, &c);
    check_linear(c.a, c.b, c.bias, c.out);
    em_release(c.out), em_release(c.a), em_release(c.b), em_release(c.bias);
    em_release(big), em_release(wb);
}
