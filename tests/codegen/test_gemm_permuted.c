/*
 * test_gemm_permuted.c — a product stored through a permutation: the
 * contiguous copy of a permuted product (attention merging its heads back,
 * o.permute(1, 0, 2).contiguous()) is a member of the product's kernel
 * (passes/fuse.c's pass_permuted_copy), and the generated GEMM stores the
 * copy straight from its tile, the product's index mapped through the
 * permutation (codegen/lower.c), so the product is never written.
 *
 * Each case is compiled and checked against eager (the contract's
 * tolerance) and eager against a double reference: the batched product with
 * its heads merged, with a bias before the copy, and a linear layer copied
 * transposed, with lanes along n (scattered stores) and on tiles of C^T
 * (64 rows: staged stores); on one and two threads, at 8 lanes, with
 * OpenBLAS running the product instead (the copy then reads the product from
 * memory, or, when the permutation keeps the shape, takes the bias's value in
 * the epilogue's nest), with a reader of the copy, which stays out of the
 * kernel, and with the product stored both permuted and as it is. The
 * dumps must say the GEMM stores the copy and writes nothing else.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/compile_util.h"
#include "../util.h"
#include "ember.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

typedef em_tensor *(*fn2)(em_tensor *, em_tensor *);

static em_tensor *BIAS, *OTHER; /* the models' constants, when they read one */
static bool ONE_STORE = true;   /* check: the GEMM stores the copy alone */

/* a [H, T, K] @ b [H, K, D], heads merged: [T, H * D] */
static em_tensor *merge(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *o = em_matmul(a, b);
    if (BIAS) o = em_add(o, BIAS);
    em_tensor *c = em_contiguous(em_permute(o, (const int[]){1, 0, 2}));
    if (OTHER) c = em_add(c, OTHER);
    em_tensor *y = em_keep(em_reshape(c, 2, SH(em_dim(a, 1), em_dim(a, 0) * em_dim(b, 2))));
    em_scope_end();
    return y;
}

/* x [M, K] w^T, copied transposed: [N, M] */
static em_tensor *linear_t(em_tensor *x, em_tensor *w) {
    em_scope_begin();
    em_tensor *y = em_keep(em_contiguous(em_transpose(em_linear(x, w, BIAS), 0, 1)));
    em_scope_end();
    return y;
}

/* The reference of merge (bias: D values or NULL): out[t][h * D + d]. */
static double *ref_merge(const em_tensor *a, const em_tensor *b, const double *bias) {
    int64_t H = em_dim(a, 0), T = em_dim(a, 1), K = em_dim(a, 2), D = em_dim(b, 2);
    double *av = tu_values_of(a), *bv = tu_values_of(b), *out = malloc((size_t)(T * H * D) * sizeof *out);
    cr_assert(av && bv && out);
    for (int64_t h = 0; h < H; h++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) {
                double s = bias ? bias[d] : 0;
                for (int64_t k = 0; k < K; k++) s += av[(h * T + t) * K + k] * bv[(h * K + k) * D + d];
                out[t * H * D + h * D + d] = s;
            }
    free(av), free(bv);
    return out;
}

/* The reference of linear_t: out[n][m]. */
static double *ref_linear_t(const em_tensor *x, const em_tensor *w, const double *bias) {
    int64_t M = em_dim(x, 0), K = em_dim(x, 1), N = em_dim(w, 0);
    double *xv = tu_values_of(x), *wv = tu_values_of(w), *out = malloc((size_t)(M * N) * sizeof *out);
    cr_assert(xv && wv && out);
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            double s = bias ? bias[n] : 0;
            for (int64_t k = 0; k < K; k++) s += xv[m * K + k] * wv[n * K + k];
            out[n * M + m] = s;
        }
    free(xv), free(wv);
    return out;
}

/* Eager's result within the GEMM tests' tolerance of the reference (K terms). */
static void expect_near(const em_tensor *e, const double *want, int64_t K, const char *what) {
    double *got = tu_values_of(e);
    int64_t n = em_numel(e), bad = 0;
    double tol = 1e-5 * sqrt((double)K) + 1e-6;
    for (int64_t i = 0; i < n; i++)
        if (!tu_close_to(got[i], want[i], tol, tol) && bad++ < 3)
            cr_expect(0, "%s: element %lld is %.8g, the reference %.8g", what, (long long)i, got[i], want[i]);
    free(got);
}

/* model compiled on (a, b): twice against eager, eager against want; the
 * kernels dump must contain every phrase of says (NULL-terminated). */
static void check(fn2 model, em_tensor *a, em_tensor *b, const double *want, int64_t K, const char *const *says,
                  const char *what) {
    fn2 fast = (fn2)em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = model(a, b);
    cr_assert(e, "%s: %s", what, em_last_error());
    expect_near(e, want, K, what);
    for (int call = 0; call < 2; call++) { /* the second call runs the kept code and arena */
        em_tensor *g = fast(a, b);
        cr_assert(g, "%s: %s", what, em_last_error());
        tu_expect_compiled(g, e, what);
        em_release(g);
    }
    int status;
    char *dump = cu_dump((void *)fast, "kernels", &status);
    cr_expect_eq(status, 0);
    for (int i = 0; says && says[i]; i++)
        cr_expect(strstr(dump, says[i]), "%s: want \"%s\" in\n%s", what, says[i], dump);
    if (strstr(dump, "generated GEMM") && ONE_STORE) /* the copy alone: the product is never written */
        cr_expect_eq(cu_count_of(strstr(dump, "; code generation:"), "store "), 1, "%s: one store in\n%s", what, dump);
    free(dump);
    em_release(e);
    em_compiled_free((void *)fast);
}

static const char *const STORED[] = {"1 kernel for", "contiguous\n  loads", "generated GEMM", NULL};

static void merge_case(int64_t H, int64_t T, int64_t K, int64_t D, bool bias, const char *const *says,
                       const char *what) {
    em_tensor *a = tu_uniform_tensor(3, SH(H, T, K), -1, 1, (uint64_t)(T * 7 + K));
    em_tensor *b = tu_uniform_tensor(3, SH(H, K, D), -1, 1, (uint64_t)(D * 3 + H));
    double *bv = NULL;
    BIAS = NULL;
    if (bias) {
        BIAS = tu_uniform_tensor(1, SH(D), -1, 1, 5);
        bv = tu_values_of(BIAS);
    }
    double *want = ref_merge(a, b, bv);
    char w[96];
    snprintf(w, sizeof w, "%s, [%lld x %lld x %lld] @ [%lld x %lld]", what, (long long)H, (long long)T,
             (long long)K, (long long)K, (long long)D);
    check(merge, a, b, want, K, says, w);
    free(want), free(bv);
    em_release(a), em_release(b), em_release(BIAS);
    BIAS = NULL;
}

Test(gemm_permuted, merged_heads_are_stored_from_the_tile_and_match_eager_and_the_reference) {
    setenv("EMBER_GEMM", "jit", 1);
    static const int64_t shapes[][4] = {{4, 128, 128, 64}, {3, 37, 20, 24}, {2, 5, 7, 33}, {8, 64, 64, 16}};
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(em_set_threads(threads), 0);
        for (int i = 0; i < 4; i++) {
            char what[32];
            snprintf(what, sizeof what, "%d thread(s)", threads);
            merge_case(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], false, STORED, what);
        }
    }
}

Test(gemm_permuted, a_bias_before_the_copy_is_stored_through_the_permutation_too) {
    setenv("EMBER_GEMM", "jit", 1);
    merge_case(4, 50, 32, 40, true, STORED, "bias");
}

Test(gemm_permuted, the_8_lane_kernels_store_merged_heads_too) {
    setenv("EMBER_GEMM", "jit", 1), setenv("EMBER_CODEGEN", "avx2", 1);
    merge_case(3, 37, 20, 24, true, STORED, "AVX2");
}

Test(gemm_permuted, with_openblas_running_the_product_the_copy_reads_it_from_memory) {
    setenv("EMBER_GEMM", "blas", 1);
    merge_case(3, 37, 20, 24, true, (const char *const[]){"contraction by OpenBLAS", NULL}, "OpenBLAS");
}

Test(gemm_permuted, what_reads_the_copy_runs_after_the_kernel_that_stores_it) {
    setenv("EMBER_GEMM", "jit", 1);
    ONE_STORE = false; /* its add is a kernel of its own */
    OTHER = tu_uniform_tensor(3, SH(37, 3, 24), -1, 1, 9);
    em_tensor *a = tu_uniform_tensor(3, SH(3, 37, 20), -1, 1, 1), *b = tu_uniform_tensor(3, SH(3, 20, 24), -1, 1, 2);
    double *want = ref_merge(a, b, NULL), *ov = tu_values_of(OTHER);
    for (int64_t i = 0; i < 37 * 3 * 24; i++) want[i] += ov[i]; /* OTHER [T, H, D] is laid out as the copy */
    check(merge, a, b, want, 20, (const char *const[]){"2 kernels for", "stored permuted", NULL}, "a reader");
    free(want), free(ov);
    em_release(a), em_release(b), em_release(OTHER);
    OTHER = NULL;
}

/* x [M, K] w^T + bias, copied transposed: 64 x 900 x 256 on tiles of C^T
 * (gemm.c's estimate takes them where k is long against m: the copy's rows
 * are then the tile's lanes) and 130 x 48 x 72 with lanes along n (the copy
 * is scattered a column at a time). */
Test(gemm_permuted, a_linear_layer_copied_transposed_is_stored_from_either_orientation) {
    setenv("EMBER_GEMM", "jit", 1);
    static const int64_t shapes[2][3] = {{64, 900, 256}, {130, 48, 72}};
    static const char *const orient[2] = {"lanes along m", "lanes along n"};
    for (int i = 0; i < 2; i++) {
        int64_t M = shapes[i][0], K = shapes[i][1], N = shapes[i][2];
        em_tensor *x = tu_uniform_tensor(2, SH(M, K), -1, 1, 3), *w = tu_uniform_tensor(2, SH(N, K), -1, 1, 4);
        BIAS = tu_uniform_tensor(1, SH(N), -1, 1, 6);
        double *bv = tu_values_of(BIAS), *want = ref_linear_t(x, w, bv);
        char what[32];
        snprintf(what, sizeof what, "linear, M = %lld", (long long)M);
        check(linear_t, x, w, want, K, (const char *const[]){"1 kernel for", orient[i], NULL}, what);
        free(bv), free(want);
        em_release(x), em_release(w), em_release(BIAS);
        BIAS = NULL;
    }
}

/* With OpenBLAS running a [4, 16, 16] product whose permutation keeps its
 * shape ({1, 0, 2} of 16 x 16 x 16), the bias and the copy form one loop
 * nest after the product: the copy takes the bias's value there, as in the
 * GEMM, and reads nothing from memory. */
Test(gemm_permuted, with_openblas_a_bias_and_a_copy_of_the_same_shape_run_as_one_nest) {
    setenv("EMBER_GEMM", "blas", 1);
    /* %3 the product, %4 the bias added, %6 the copy: one nest, one store */
    merge_case(16, 16, 16, 16, true,
               (const char *const[]){"contraction by OpenBLAS", "nodes %4 %6\n      load  %2 at 0 + [0, 0, 1]\n"
                                     "      load  %3 at 0 + [256, 16, 1]\n      store %6 at 0 + [16, 256, 1]\n", NULL},
               "same shape");
}

/* The product read twice in the store: its permuted copy and, as an epilogue
 * member, twice the product, which a later add reads through the same
 * permutation: the GEMM stores both, each through its own strides. */
static em_tensor *copy_and_double(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *o = em_matmul(a, b);
    const int perm[3] = {1, 0, 2};
    em_tensor *c = em_contiguous(em_permute(o, perm));
    em_tensor *y = em_keep(em_add(c, em_permute(em_mul(o, em_scalar(EM_F32, 2.0)), perm)));
    em_scope_end();
    return y;
}

Test(gemm_permuted, a_product_stored_both_permuted_and_as_it_is_gives_eagers_results) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *a = tu_uniform_tensor(3, SH(3, 37, 20), -1, 1, 1), *b = tu_uniform_tensor(3, SH(3, 20, 24), -1, 1, 2);
    double *want = ref_merge(a, b, NULL); /* [T, H * D], laid out as [T, H, D] */
    for (int64_t i = 0; i < 37 * 3 * 24; i++) want[i] *= 3;
    ONE_STORE = false;
    check(copy_and_double, a, b, want, 20,
          (const char *const[]){"nodes %3 matmul, %5 contiguous, %6 mul", "writes %5, %6",
                                "store %5 at 0 + [24, 72, 1]", "store %6 at 0 + [888, 24, 1]", NULL},
          "copy and double");
    free(want);
    em_release(a), em_release(b);
}
