/*
 * test_gemm.c — the generated GEMM (codegen/gemm.c, gemm_emit.c) as a user
 * meets it: em_compile'd matmul and linear models whose contraction kernels
 * run as JIT-compiled register-blocked code with their epilogues in the store.
 *
 * Every compiled result is compared with eager (OpenBLAS) within the
 * contract's tolerance, and eager with an independent reference: the same
 * product summed in double from the logical values (so a wrong stride, batch
 * broadcast or tail would show in one of the two).
 *
 * Covered:
 *  - sizes 1, 3, 17, 64, 255, 1000 for M, K and N, thin and wide, with
 *    EMBER_GEMM=jit so even shapes the cost model gives OpenBLAS are generated;
 *  - each orientation: B's rows contiguous (lanes along n: read in place,
 *    or copied into panels when K is long), A transposed (lanes along m), and
 *    x w^T / a @ b^T (a packed panel), with k blocked and partial sums on the
 *    stack when K is large;
 *  - batched products with a broadcast batch, and batch dims that fold into M;
 *  - linear with and without bias; epilogues: bias + gelu, a residual add, a
 *    scale, relu, a chain; a product also read by a later kernel;
 *  - the scale prologue: attention's (q / sqrt 64) k^T is one GEMM step with
 *    the scale in its store, and a linear over a scaled weight reads the
 *    weight itself (passes/scale.c), against the reference and eager;
 *  - the 8-lane AVX2 path (EMBER_CODEGEN=avx2) on the same sizes;
 *  - the choice: EMBER_GEMM=blas and the cost model give OpenBLAS and the
 *    kernels dump says why; 2 threads give the same result as 1;
 *  - a constant weight that the kernel packs is packed whole by the second
 *    call and kept (kept_util.c's checks: the bits of packing per call, the
 *    bytes kept, a weight passed as an argument is not kept, a kept block
 *    that cannot be allocated), with k blocks, x @ w's copied panels and 8 lanes;
 *  - V's rows prefetched ahead where a tile's panel outgrows half the L1
 *    (packed, in place, kept, 8 lanes), and not within it or with
 *    EMBER_PREFETCH=0.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "../frontend/compile_util.h"
#include "gemm_util.h"
#include "kept_util.h"

typedef em_tensor *(*fn2)(em_tensor *, em_tensor *);
typedef em_tensor *(*fn3)(em_tensor *, em_tensor *, em_tensor *);

/* ---- the reference ---------------------------------------------------------------------------- */

/* a [Ba, M, K] @ b [Bb, K, N] (Ba or Bb 1: broadcast) in double from row-major values. */
static double *ref_bmm(const double *a, const double *b, int64_t Ba, int64_t Bb, int64_t M, int64_t K,
                       int64_t N) {
    int64_t B = Ba > Bb ? Ba : Bb;
    double *c = calloc((size_t)(B * M * N), sizeof *c);
    cr_assert(c);
    for (int64_t z = 0; z < B; z++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += a[(Ba == 1 ? 0 : z) * M * K + i * K + k] * b[(Bb == 1 ? 0 : z) * K * N + k * N + j];
                c[(z * M + i) * N + j] = s;
            }
    return c;
}

/* got (f32) within the contract's tolerance (rtol 1e-4, atol 1e-5) of the
 * double reference. The products are of values in [0, 1), so every sum is
 * well conditioned: an f32 sum in any order is that close for these K. */
static void expect_near_ref(const em_tensor *got, const double *want, int64_t K, const char *what) {
    double *g = tu_values_of(got);
    int64_t n = em_numel(got), bad = 0, first = -1;
    (void)K;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(g[i] - want[i]) <= 1e-5 + 1e-4 * fabs(want[i])) && bad++ == 0) first = i;
    cr_expect_eq(bad, 0, "%s: %lld of %lld elements differ from the double reference; first [%lld] %g, want %g",
                 what, (long long)bad, (long long)n, (long long)first, first >= 0 ? g[first] : 0.0,
                 first >= 0 ? want[first] : 0.0);
    free(g);
}

static void expect_generated(void *fast, bool generated, const char *what) {
    char *sec = cu_codegen_section(fast, what);
    if (generated) {
        cr_expect(strstr(sec, "generated GEMM"), "%s: %s", what, sec);
        cr_expect(!strstr(sec, "OpenBLAS"), "%s: %s", what, sec);
    } else {
        cr_expect(strstr(sec, "contraction by OpenBLAS: "), "%s: %s", what, sec);
    }
    free(sec);
}

/* Values in [0, 1): sums of products that do not cancel (well conditioned, as
 * the contract's tolerance assumes for any two summation orders). */
static em_tensor *uniform(int nd, const int64_t *shape, uint64_t seed) {
    return tu_uniform_tensor(nd, shape, 0, 1, seed);
}
/* Values in [-1, 1), for epilogues whose activations need both signs (short K). */
static em_tensor *signed_uniform(int nd, const int64_t *shape, uint64_t seed) {
    return tu_uniform_tensor(nd, shape, -1, 1, seed);
}

/* A dense copy of t's transpose (t is kept). */
static em_tensor *transposed_copy(em_tensor *t) {
    em_tensor *v = em_transpose(t, -1, -2), *c = em_contiguous(v);
    em_release(v);
    return c;
}

/* ---- models ----------------------------------------------------------------------------------- */

static em_tensor *lin(em_tensor *x, em_tensor *w, em_tensor *b) { return em_linear(x, w, b); }
static em_tensor *lin_nobias(em_tensor *x, em_tensor *w) { return em_linear(x, w, NULL); }

/* One product, compiled with EMBER_GEMM=jit, against eager and against the reference. */
static void check_product(fn2 model, em_tensor *a, em_tensor *b, const double *want, int64_t K, const char *what) {
    setenv("EMBER_GEMM", "jit", 1);
    fn2 fast = (fn2)em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = model(a, b), *g = fast(a, b);
    cr_assert(e && g, "%s: %s", what, em_last_error());
    expect_near_ref(e, want, K, what);
    tu_expect_compiled(g, e, what);
    expect_generated((void *)fast, true, what);
    em_release(g);
    g = fast(a, b); /* the second call runs the kept code and arena */
    tu_expect_compiled(g, e, what);
    em_release(g), em_release(e);
    em_compiled_free((void *)fast);
}

static const int64_t SIZES[][3] = {
    {1, 1, 1},     {3, 17, 64},   {17, 3, 255}, {64, 64, 64},   {255, 17, 3},  {1000, 3, 17},
    {3, 1000, 17}, {17, 255, 1000}, {1, 1000, 255}, {1000, 64, 1}, {64, 1000, 64}, {255, 255, 17},
};
enum { NSIZES = sizeof SIZES / sizeof SIZES[0] };

/* ---- sizes and orientations ------------------------------------------------------------------- */

/* How a size-class test passes its operands: as they are, B as a transposed
 * view of a [N, K] tensor, or A as a transposed view of a [K, M] tensor. */
typedef enum layout { PLAIN, B_TRANSPOSED, A_TRANSPOSED } layout;

static void check_sizes(layout how, uint64_t seed) {
    static const fn2 model[] = {gu_mm, gu_mm_bt, gu_mm_at};
    static const char *const form[] = {"[%lld x %lld] @ [%lld x %lld]", "[%lld x %lld] @ [%lld x %lld]^T",
                                       "[%lld x %lld]^T @ [%lld x %lld]"};
    for (int s = 0; s < NSIZES; s++) {
        int64_t M = SIZES[s][0], K = SIZES[s][1], N = SIZES[s][2];
        /* the tensors passed, and the dense A and B they stand for */
        em_tensor *x = how == A_TRANSPOSED ? uniform(2, SH(K, M), seed + s) : uniform(2, SH(M, K), seed + s);
        em_tensor *y = how == B_TRANSPOSED ? uniform(2, SH(N, K), seed + 50 + s) : uniform(2, SH(K, N), seed + 50 + s);
        em_tensor *a = how == A_TRANSPOSED ? transposed_copy(x) : em_retain(x);
        em_tensor *b = how == B_TRANSPOSED ? transposed_copy(y) : em_retain(y);
        double *av = tu_values_of(a), *bv = tu_values_of(b), *want = ref_bmm(av, bv, 1, 1, M, K, N);
        char what[96];
        snprintf(what, sizeof what, form[how], (long long)em_dim(x, 0), (long long)em_dim(x, 1),
                 (long long)em_dim(y, 0), (long long)em_dim(y, 1));
        check_product(model[how], x, y, want, K, what);
        free(av), free(bv), free(want);
        em_release(a), em_release(b), em_release(x), em_release(y);
    }
}

Test(gemm, products_of_every_size_class_match_the_reference_when_B_rows_are_contiguous) { check_sizes(PLAIN, 10); }

Test(gemm, products_read_through_a_transposed_B_match_the_reference) { check_sizes(B_TRANSPOSED, 70); }

Test(gemm, products_read_through_a_transposed_A_match_the_reference) { check_sizes(A_TRANSPOSED, 110); }

Test(gemm, a_strided_argument_that_is_neither_row_nor_column_contiguous_is_packed) {
    /* every other column of a [64, 2K] argument, times a transposed B: both operands strided */
    em_tensor *wide = uniform(2, SH(64, 2 * 300), 5), *bt = uniform(2, SH(40, 300), 6);
    em_tensor *view = em_slice(wide, 1, 0, 600, 2);
    em_tensor *a = em_contiguous(view), *b = transposed_copy(bt);
    double *av = tu_values_of(a), *bv = tu_values_of(b), *want = ref_bmm(av, bv, 1, 1, 64, 300, 40);
    check_product(gu_mm_bt, view, bt, want, 300, "a stepped slice @ a transposed B");
    free(av), free(bv), free(want);
    em_release(view), em_release(a), em_release(b), em_release(wide), em_release(bt);
}

/* ---- batches ---------------------------------------------------------------------------------- */

Test(gemm, a_batch_times_one_matrix_broadcasts_the_matrix) {
    em_tensor *a = uniform(3, SH(4, 17, 33), 1), *b = uniform(2, SH(33, 20), 2);
    double *av = tu_values_of(a), *bv = tu_values_of(b), *want = ref_bmm(av, bv, 4, 1, 17, 33, 20);
    check_product(gu_mm, a, b, want, 33, "[4,17,33] @ [33,20]");
    free(av), free(bv), free(want);
    em_release(a), em_release(b);
}

Test(gemm, batched_operands_and_a_broadcast_batch_dim_match_the_reference) {
    em_tensor *a = uniform(3, SH(3, 64, 32), 3), *b = uniform(3, SH(3, 32, 48), 4);
    double *av = tu_values_of(a), *bv = tu_values_of(b), *want = ref_bmm(av, bv, 3, 3, 64, 32, 48);
    check_product(gu_mm, a, b, want, 32, "[3,64,32] @ [3,32,48]");
    free(av), free(bv), free(want);
    em_release(a), em_release(b);
    /* [1, 5, 7] against [3, 7, 9]: a's batch of one is broadcast */
    a = uniform(3, SH(1, 5, 7), 5), b = uniform(3, SH(3, 7, 9), 6);
    av = tu_values_of(a), bv = tu_values_of(b), want = ref_bmm(av, bv, 1, 3, 5, 7, 9);
    check_product(gu_mm, a, b, want, 7, "[1,5,7] @ [3,7,9]");
    free(av), free(bv), free(want);
    em_release(a), em_release(b);
}

/* attention's per-head scores: q and k as [H, T, D] views of one [T, 3C] tensor */
static em_tensor *head_scores(em_tensor *qkv, em_tensor *unused) {
    (void)unused;
    em_scope_begin();
    em_tensor *q, *k;
    gu_head_views(qkv, 4, &q, &k);
    em_tensor *y = em_keep(em_mul(em_matmul(q, k), em_scalar(EM_F32, 0.125)));
    em_scope_end();
    return y;
}

Test(gemm, per_head_attention_scores_from_views_of_one_tensor_match_eager) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *qkv = signed_uniform(2, SH(40, 3 * 64), 9), *none = uniform(1, SH(1), 1);
    fn2 fast = (fn2)em_compile((void *)head_scores, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = head_scores(qkv, none), *g = fast(qkv, none);
    tu_expect_compiled(g, e, "q_h k_h^T * 0.125 over 4 heads");
    expect_generated((void *)fast, true, "head scores");
    em_release(g), em_release(e), em_release(qkv), em_release(none);
    em_compiled_free((void *)fast);
}

/* ---- linear and epilogues --------------------------------------------------------------------- */

Test(gemm, linear_with_and_without_bias_matches_the_reference) {
    setenv("EMBER_GEMM", "jit", 1);
    static const int64_t shapes[][3] = {{64, 1024, 512}, {17, 33, 255}, {1, 64, 3}, {255, 3, 1000}};
    for (int s = 0; s < 4; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        em_tensor *x = uniform(2, SH(M, K), 200 + s), *w = uniform(2, SH(N, K), 300 + s);
        em_tensor *b = uniform(1, SH(N), 400 + s), *wt = transposed_copy(w);
        double *xv = tu_values_of(x), *wv = tu_values_of(wt), *bv = tu_values_of(b);
        double *want = ref_bmm(xv, wv, 1, 1, M, K, N);
        char what[96];
        snprintf(what, sizeof what, "linear [%lld x %lld] w [%lld x %lld], no bias", (long long)M, (long long)K,
                 (long long)N, (long long)K);
        check_product(lin_nobias, x, w, want, K, what);
        for (int64_t i = 0; i < M * N; i++) want[i] += bv[i % N];
        fn3 fast = (fn3)em_compile((void *)lin, "tensor(tensor, tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *e = lin(x, w, b), *g = fast(x, w, b);
        snprintf(what, sizeof what, "linear [%lld x %lld] w [%lld x %lld] + bias", (long long)M, (long long)K,
                 (long long)N, (long long)K);
        expect_near_ref(e, want, K, what);
        tu_expect_compiled(g, e, what);
        expect_generated((void *)fast, true, what);
        em_release(g), em_release(e);
        em_compiled_free((void *)fast);
        free(xv), free(wv), free(bv), free(want);
        em_release(x), em_release(w), em_release(b), em_release(wt);
    }
}

Test(gemm, a_linear_over_batch_dims_folds_them_into_one_product) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *x = uniform(3, SH(2, 50, 96), 1), *w = uniform(2, SH(72, 96), 2), *b = uniform(1, SH(72), 3);
    fn3 fast = (fn3)em_compile((void *)lin, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = lin(x, w, b), *g = fast(x, w, b);
    tu_expect_compiled(g, e, "linear over [2,50,96]");
    char *sec = cu_codegen_section((void *)fast, "linear over batch dims");
    cr_expect(strstr(sec, "1 batch x [100 x 96] @ [96 x 72]"), "%s", sec);
    free(sec);
    em_release(g), em_release(e), em_release(x), em_release(w), em_release(b);
    em_compiled_free((void *)fast);
}

static em_tensor *g_r; /* a residual, captured as a constant */

static em_tensor *lin_gelu_residual(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_add(em_gelu(em_linear(x, w, b)), g_r));
    em_scope_end();
    return y;
}
static em_tensor *scaled_relu_chain(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *p = em_mul(em_matmul(a, b), em_scalar(EM_F32, 0.5));
    em_tensor *y = em_keep(em_sub(em_relu(p), em_tanh(p)));
    em_scope_end();
    return y;
}
/* the product is read by a row sum too, so the GEMM also stores it */
static em_tensor *product_read_twice(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *p = em_matmul(a, b);
    em_tensor *y = em_keep(em_add(em_sigmoid(p), em_sum(p, -1, 1)));
    em_scope_end();
    return y;
}

Test(gemm, epilogues_run_in_the_store_and_match_eager) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *x = signed_uniform(2, SH(37, 200), 1), *w = signed_uniform(2, SH(150, 200), 2);
    em_tensor *b = signed_uniform(1, SH(150), 3);
    g_r = signed_uniform(2, SH(37, 150), 4);
    fn3 f3 = (fn3)em_compile((void *)lin_gelu_residual, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(f3, "%s", em_last_error());
    em_tensor *e = lin_gelu_residual(x, w, b), *g = f3(x, w, b);
    tu_expect_compiled(g, e, "gelu(linear) + residual");
    char *sec = cu_codegen_section((void *)f3, "gelu(linear) + residual");
    cr_expect(strstr(sec, "generated GEMM"), "%s", sec);
    cr_expect_eq(cu_count_of(sec, "step "), 1, "one step for the linear and its epilogue: %s", sec);
    free(sec);
    em_release(g), em_release(e);
    em_compiled_free((void *)f3);

    em_tensor *a = signed_uniform(2, SH(33, 65), 5), *c = signed_uniform(2, SH(65, 47), 6);
    fn2 f2 = (fn2)em_compile((void *)scaled_relu_chain, "tensor(tensor, tensor)", NULL);
    cr_assert(f2, "%s", em_last_error());
    e = scaled_relu_chain(a, c), g = f2(a, c);
    tu_expect_compiled(g, e, "relu(0.5 a@b) - tanh(0.5 a@b)");
    expect_generated((void *)f2, true, "scaled chain");
    em_release(g), em_release(e);
    em_compiled_free((void *)f2);

    f2 = (fn2)em_compile((void *)product_read_twice, "tensor(tensor, tensor)", NULL);
    cr_assert(f2, "%s", em_last_error());
    e = product_read_twice(a, c), g = f2(a, c);
    tu_expect_compiled(g, e, "sigmoid(p) + sum(p) with p = a@b stored by the GEMM");
    em_release(g), em_release(e);
    em_compiled_free((void *)f2);
    em_release(a), em_release(c), em_release(x), em_release(w), em_release(b), em_release(g_r);
}

/* ---- tiles of C^T, staged ------------------------------------------------------------------------ */

/* x w^T with under 64 rows, a long k and many outputs: lanes along m. The
 * product is also read by a row max (exact in any order), so the GEMM stores
 * two values, each through its own staged tile. */
static em_tensor *lin_gelu_and_row_max(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *p = em_linear(x, w, b);
    em_tensor *y = em_keep(em_add(em_gelu(p), em_max(p, -1, 1)));
    em_scope_end();
    return y;
}

Test(gemm, tiles_of_C_transposed_go_out_row_by_row_with_their_epilogue_and_match_eager) {
    /* 61 rows: a last panel of 13 lanes; 1003 outputs: a last tile of 1 row */
    em_tensor *x = signed_uniform(2, SH(61, 1500), 41), *w = signed_uniform(2, SH(1003, 1500), 42);
    em_tensor *b = signed_uniform(1, SH(1003), 43);
    for (int avx2 = 0; avx2 < 2; avx2++) {
        if (avx2) setenv("EMBER_CODEGEN", "avx2", 1);
        fn3 f3 = (fn3)em_compile((void *)lin_gelu_and_row_max, "tensor(tensor, tensor, tensor)", NULL);
        cr_assert(f3, "%s", em_last_error());
        em_tensor *g = f3(x, w, b), *e = lin_gelu_and_row_max(x, w, b);
        tu_expect_compiled(g, e, avx2 ? "gelu(x w^T + b) + row max, AVX2" : "gelu(x w^T + b) + row max");
        char *sec = cu_codegen_section((void *)f3, "C^T tiles");
        cr_expect(strstr(sec, avx2 ? "lanes along m (tiles of C^T" : "lanes along m (tiles of C^T, staged)"), "%s", sec);
        free(sec);
        em_release(g), em_release(e);
        em_compiled_free((void *)f3);
    }
    unsetenv("EMBER_CODEGEN");
    em_release(x), em_release(w), em_release(b);
}

/* ---- the scale prologue (passes/scale.c) ------------------------------------------------------ */

static em_tensor *scaled_scores(em_tensor *q, em_tensor *k) {
    em_scope_begin();
    em_tensor *y = em_keep(em_matmul(em_div(q, em_scalar(EM_F32, 8.0)), em_transpose(k, -2, -1)));
    em_scope_end();
    return y;
}
static em_tensor *linear_of_scaled_weight(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_linear(x, em_mul(em_scalar(EM_F32, 0.25), w), b)));
    em_scope_end();
    return y;
}

Test(gemm, a_scaled_operand_is_read_unscaled_and_scaled_in_the_store_and_matches_the_reference) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *q = uniform(3, SH(4, 33, 64), 31), *k = uniform(3, SH(4, 47, 64), 32);
    fn2 f2 = (fn2)em_compile((void *)scaled_scores, "tensor(tensor, tensor)", NULL);
    cr_assert(f2, "%s", em_last_error());
    em_tensor *g = f2(q, k), *e = scaled_scores(q, k), *kt = transposed_copy(k);
    double *qv = tu_values_of(q), *kv = tu_values_of(kt);
    for (int64_t i = 0; i < em_numel(q); i++) qv[i] /= 8.0;
    double *want = ref_bmm(qv, kv, 4, 4, 33, 64, 47);
    expect_near_ref(g, want, 64, "(q / 8) k^T");
    tu_expect_compiled(g, e, "(q / 8) k^T against eager");
    char *sec = cu_codegen_section((void *)f2, "(q / 8) k^T");
    cr_expect(strstr(sec, "generated GEMM") && cu_count_of(sec, "step ") == 1,
              "one GEMM step, the scale in its store: %s", sec);
    free(sec), free(qv), free(kv), free(want);
    em_release(g), em_release(e), em_release(kt);
    em_compiled_free((void *)f2);

    em_tensor *x = signed_uniform(2, SH(37, 200), 33), *w = signed_uniform(2, SH(150, 200), 34);
    em_tensor *b = signed_uniform(1, SH(150), 35);
    fn3 f3 = (fn3)em_compile((void *)linear_of_scaled_weight, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(f3, "%s", em_last_error());
    g = f3(x, w, b), e = linear_of_scaled_weight(x, w, b);
    tu_expect_compiled(g, e, "tanh(linear(x, 0.25 w, b))");
    sec = cu_codegen_section((void *)f3, "tanh(linear(x, 0.25 w, b))");
    /* the GEMM reads w itself; only the bias (150 floats) is scaled the other way */
    cr_expect(strstr(sec, "generated GEMM") && strstr(sec, "loops [150],") && !strstr(sec, "loops [150, 200]"),
              "no kernel over the weight, the scale and tanh in the GEMM's store: %s", sec);
    free(sec);
    em_release(g), em_release(e), em_release(x), em_release(w), em_release(b), em_release(q), em_release(k);
    em_compiled_free((void *)f3);
}

/* model(a, b) against the double reference want (check_product), then its
 * codegen dump: it must say each of says (NULL-ended) and not say not_says. */
static void expect_product_plan(fn2 model, em_tensor *a, em_tensor *b, const double *want, int64_t K,
                                const char *what, const char *const *says, const char *not_says) {
    check_product(model, a, b, want, K, what);
    fn2 fast = (fn2)em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    em_release(fast(a, b));
    char *sec = cu_codegen_section((void *)fast, what);
    for (int i = 0; says[i]; i++) cr_expect(strstr(sec, says[i]), "%s: want \"%s\" in\n%s", what, says[i], sec);
    if (not_says) cr_expect(!strstr(sec, not_says), "%s: \"%s\" in\n%s", what, not_says, sec);
    free(sec);
    em_compiled_free((void *)fast);
}

Test(gemm, a_product_with_k_blocks_and_partial_sums_matches_the_reference) {
    /* x w^T with K = 3000: packed panels in k blocks, partial sums on the stack */
    em_tensor *x = uniform(2, SH(70, 3000), 1), *w = uniform(2, SH(90, 3000), 2);
    em_tensor *wt = transposed_copy(w);
    double *xv = tu_values_of(x), *wv = tu_values_of(wt), *want = ref_bmm(xv, wv, 1, 1, 70, 3000, 90);
    expect_product_plan(lin_nobias, x, w, want, 3000, "[70 x 3000] w^T [3000 x 90]",
                        (const char *[]){"packed per panel", NULL}, "k blocks of 3000");
    free(xv), free(wv), free(want);
    em_release(x), em_release(w), em_release(wt);
}

Test(gemm, a_panel_up_to_a_quarter_of_the_l2_is_one_k_block_and_past_it_k_is_blocked) {
    /* x w^T on 64 rows: lanes along m, panels of 64 lanes of x^T. With a
     * 512 KiB L2 a panel takes up to 128 KiB: K = 512 whole, K = 600 in blocks
     * of 512 (with an eighth of the L2, as before, both were blocks of 256) */
    setenv("EMBER_L2_KB", "512", 1);
    const int64_t ks[2] = {512, 600};
    const char *says[] = {"lanes along m", "k blocks of 512", NULL};
    for (int i = 0; i < 2; i++) {
        int64_t K = ks[i];
        em_tensor *x = uniform(2, SH(64, K), 1), *w = uniform(2, SH(40, K), 2), *wt = transposed_copy(w);
        double *xv = tu_values_of(x), *wv = tu_values_of(wt), *want = ref_bmm(xv, wv, 1, 1, 64, K, 40);
        char what[64];
        snprintf(what, sizeof what, "[64 x %lld] w^T [%lld x 40]", (long long)K, (long long)K);
        expect_product_plan(lin_nobias, x, w, want, K, what, says, "k blocks of 256");
        free(xv), free(wv), free(want);
        em_release(x), em_release(w), em_release(wt);
    }
}

Test(gemm, x_at_w_with_a_long_k_copies_its_contiguous_panels_and_matches_the_reference) {
    /* B's rows are contiguous, but a panel of 1500 of them, 400 bytes apart, is
     * copied (in k blocks) rather than read in place; the last panel is masked */
    em_tensor *x = uniform(2, SH(40, 1500), 1), *w = uniform(2, SH(1500, 100), 2);
    double *xv = tu_values_of(x), *wv = tu_values_of(w), *want = ref_bmm(xv, wv, 1, 1, 40, 1500, 100);
    expect_product_plan(gu_mm, x, w, want, 1500, "[40 x 1500] @ [1500 x 100]",
                        (const char *[]){"lanes along n", "packed per panel", NULL}, "k blocks of 1500");
    free(xv), free(wv), free(want);
    em_release(x), em_release(w);
}

Test(gemm, x_at_w_with_a_short_k_reads_its_panels_in_place) {
    em_tensor *x = uniform(2, SH(40, 32), 1), *w = uniform(2, SH(32, 100), 2);
    double *xv = tu_values_of(x), *wv = tu_values_of(w), *want = ref_bmm(xv, wv, 1, 1, 40, 32, 100);
    expect_product_plan(gu_mm, x, w, want, 32, "[40 x 32] @ [32 x 100]",
                        (const char *[]){"lanes along n", "read in place", NULL}, NULL);
    free(xv), free(wv), free(want);
    em_release(x), em_release(w);
}

/* ---- prefetching V's rows (gemm.c's prefetch_rows) -------------------------------------------- */

/* x w^T over a packed panel of 700 rows (175 KiB with 16 lanes) and x @ w
 * read in place over 200 rows (50 KiB; a masked last panel), against the reference; the
 * dump says whether their rows are prefetched. L1 and L2 are pinned (48 KiB,
 * 2 MiB) unless l1_kb says otherwise, so the thresholds are this test's. */
static void check_prefetch(const char *l1_kb, bool prefetched) {
    setenv("EMBER_L1_KB", l1_kb, 1), setenv("EMBER_L2_KB", "2048", 1);
    em_tensor *x = uniform(2, SH(70, 700), 1), *w = uniform(2, SH(90, 700), 2), *wt = transposed_copy(w);
    double *xv = tu_values_of(x), *wv = tu_values_of(wt), *want = ref_bmm(xv, wv, 1, 1, 70, 700, 90);
    const char *says[] = {"packed per panel", prefetched ? "k blocks of 700 (rows prefetched)" : "k blocks of 700,", NULL};
    expect_product_plan(lin_nobias, x, w, want, 700, "[70 x 700] w^T [700 x 90]", says,
                        prefetched ? NULL : "prefetched");
    free(xv), free(wv), free(want);
    em_release(x), em_release(w), em_release(wt);
    x = uniform(2, SH(40, 200), 3), w = uniform(2, SH(200, 100), 4);
    xv = tu_values_of(x), wv = tu_values_of(w), want = ref_bmm(xv, wv, 1, 1, 40, 200, 100);
    const char *says2[] = {"read in place", prefetched ? "k blocks of 200 (rows prefetched)" : "k blocks of 200,", NULL};
    expect_product_plan(gu_mm, x, w, want, 200, "[40 x 200] @ [200 x 100]", says2, prefetched ? NULL : "prefetched");
    fn2 fast = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
    em_release(fast(x, w));
    int status;
    char *ir = cu_dump((void *)fast, "llvm", &status);
    cr_expect(ir && (strstr(ir, "@llvm.prefetch") != NULL) == prefetched, "the IR %s prefetches",
              prefetched ? "has" : "has no");
    free(ir), free(xv), free(wv), free(want);
    em_release(x), em_release(w);
    em_compiled_free((void *)fast);
}

Test(gemm, panels_past_half_the_L1_prefetch_their_rows_packed_or_in_place_and_match_the_reference) {
    setenv("EMBER_PREFETCH", "1", 1);
    check_prefetch("48", true);
}

Test(gemm, panels_within_half_the_L1_and_EMBER_PREFETCH_0_prefetch_nothing) {
    setenv("EMBER_PREFETCH", "1", 1);
    check_prefetch("1024", false);
    setenv("EMBER_PREFETCH", "0", 1);
    check_prefetch("48", false);
}

/* 8 lanes: panels of 16 columns (x @ w's is 12.5 KiB), a 16 KiB L1 */
Test(gemm, the_8_lane_avx2_kernels_prefetch_their_panels_too) {
    setenv("EMBER_CODEGEN", "avx2", 1), setenv("EMBER_PREFETCH", "1", 1);
    check_prefetch("16", true);
}

/* ---- the choice and threads ------------------------------------------------------------------- */

/* model(a, b) compiled, against eager; the codegen dump must say `says` (NULL:
 * that the product is generated). Releases a and b. */
static void expect_model(fn2 model, em_tensor *a, em_tensor *b, const char *what, const char *says) {
    fn2 fast = (fn2)em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = model(a, b), *g = fast(a, b);
    tu_expect_compiled(g, e, what);
    if (says) {
        char *sec = cu_codegen_section((void *)fast, what);
        cr_expect(strstr(sec, says), "%s: want \"%s\" in\n%s", what, says, sec);
        free(sec);
    } else {
        expect_generated((void *)fast, true, what);
    }
    em_release(g), em_release(e), em_release(a), em_release(b);
    em_compiled_free((void *)fast);
}

/* a @ b, as expect_model */
static void expect_product(em_tensor *a, em_tensor *b, const char *what, const char *says) {
    expect_model(gu_mm, a, b, what, says);
}

Test(gemm, EMBER_GEMM_blas_gives_the_product_to_OpenBLAS_and_says_so) {
    setenv("EMBER_GEMM", "blas", 1);
    expect_product(uniform(2, SH(64, 64), 1), uniform(2, SH(64, 64), 2), "OpenBLAS under EMBER_GEMM=blas",
                   "contraction by OpenBLAS: EMBER_GEMM=blas");
}

Test(gemm, the_cost_model_gives_a_big_product_with_few_lanes_to_OpenBLAS_and_small_ones_to_the_JIT) {
    unsetenv("EMBER_GEMM");
    /* M = N = 3: three lanes of sixteen either way, on 1.35M multiply-adds */
    expect_product(uniform(2, SH(3, 150000), 1), uniform(2, SH(150000, 3), 2), "a thin product by OpenBLAS",
                   "contraction by OpenBLAS: cost model: 3 of 16 lanes");
    /* N = 3 but M = 3000: the lanes go along m */
    expect_product(uniform(2, SH(3000, 512), 1), uniform(2, SH(512, 3), 2), "a thin product with lanes along m",
                   "generated GEMM: lanes along m");
    /* tiny's 16 x 16 x 16 is generated */
    expect_product(uniform(2, SH(16, 16), 3), uniform(2, SH(16, 16), 4), "tiny's 16 x 16 x 16", NULL);
}

Test(gemm, the_cost_model_gives_a_product_of_two_k_major_operands_to_OpenBLAS_unless_it_is_small) {
    unsetenv("EMBER_GEMM");
    /* x^T @ w, 100 x 200 x 100: A's rows are 100 floats apart along k */
    expect_model(gu_mm_at, uniform(2, SH(200, 100), 1), uniform(2, SH(200, 100), 2), "x^T @ w by OpenBLAS",
                 "contraction by OpenBLAS: cost model: A's rows are strided along k (100 floats)");
    /* 20 x 30 x 40: 24,000 multiply-adds stay generated */
    expect_model(gu_mm_at, uniform(2, SH(30, 20), 3), uniform(2, SH(30, 40), 4), "a small x^T @ w", NULL);
}

Test(gemm, x_at_w_copies_panels_whose_rows_are_a_multiple_of_4_KiB_apart) {
    /* K = 32 is a small panel, but its rows, 1024 floats apart, share L1 sets */
    expect_product(uniform(2, SH(64, 32), 1), uniform(2, SH(32, 1024), 2), "x @ w with rows 4 KiB apart",
                   "packed per panel");
    expect_product(uniform(2, SH(64, 32), 3), uniform(2, SH(32, 1000), 4), "x @ w with rows 4000 bytes apart",
                   "read in place");
}

Test(gemm, two_threads_split_the_tasks_and_give_the_same_bytes_as_one) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *x = uniform(2, SH(64, 512), 1), *w = uniform(2, SH(1000, 512), 2), *b = uniform(1, SH(1000), 3);
    cr_assert_eq(em_set_threads(1), 0);
    fn3 fast = (fn3)em_compile((void *)lin, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *one = fast(x, w, b);
    cr_assert_eq(em_set_threads(2), 0);
    em_tensor *two = fast(x, w, b);
    tu_expect_identical(two, one, "the same tasks on 2 threads");
    em_tensor *e = lin(x, w, b);
    tu_expect_compiled(two, e, "2 threads against eager");
    char *sec = cu_codegen_section((void *)fast, "tasks");
    cr_expect(!strstr(sec, " 1 task"), "several tasks: %s", sec);
    free(sec);
    em_release(one), em_release(two), em_release(e), em_release(x), em_release(w), em_release(b);
    em_compiled_free((void *)fast);
}

/* The program cuts a GEMM into several pieces a thread, taken as the threads
 * come: whole (batch, panel) segments when there are 4 a thread or 2 a
 * thread, else pieces inside a segment, each packing its panel. Each way, any
 * number of threads gives the bytes of one. */
/* On FMAs, and on the AMX tile unit where the CPU has one (each tile is
 * computed whole by one thread there too). */
Test(gemm, the_pieces_of_every_split_give_the_same_bytes_for_one_two_and_three_threads) {
    const int64_t shapes[][3] = {
        {128, 256, 1024}, /* 16 panels of 64 lanes: whole segments, 4 a thread */
        {128, 256, 256},  /* 4 panels: one segment a piece */
        {64, 512, 1000},  /* lanes along m, one panel: pieces inside it */
        {200, 96, 50},    /* one partial panel */
    };
    for (size_t i = 0; i < 2 * sizeof shapes / sizeof *shapes; i++) {
        setenv("EMBER_GEMM", i % 2 ? "amx" : "fma", 1);
        int64_t m = shapes[i / 2][0], k = shapes[i / 2][1], n = shapes[i / 2][2];
        em_tensor *x = uniform(2, SH(m, k), 1), *w = uniform(2, SH(n, k), 2), *b = uniform(1, SH(n), 3);
        fn3 fast = (fn3)em_compile((void *)lin, "tensor(tensor, tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        cr_assert_eq(em_set_threads(1), 0);
        em_tensor *one = fast(x, w, b), *e = lin(x, w, b);
        tu_expect_compiled(one, e, "1 thread against eager");
        for (int t = 2; t <= 3; t++) {
            cr_assert_eq(em_set_threads(t), 0);
            for (int rep = 0; rep < 3; rep++) {
                em_tensor *got = fast(x, w, b);
                tu_expect_identical(got, one, "more threads, the same bytes");
                em_release(got);
            }
        }
        em_release(one), em_release(e), em_release(x), em_release(w), em_release(b);
        em_compiled_free((void *)fast);
    }
}

Test(gemm, the_8_lane_avx2_kernels_match_the_reference_too) {
    /* EMBER_CODEGEN=avx2 generates 8-lane code on an AVX-512 host: the tiles,
     * masks and packing of the AVX2 path, checked here on this CPU */
    setenv("EMBER_CODEGEN", "avx2", 1);
    check_sizes(PLAIN, 300);
    check_sizes(B_TRANSPOSED, 400);
    check_sizes(A_TRANSPOSED, 500);
}

Test(gemm, a_product_over_an_empty_batch_is_not_generated_and_gives_an_empty_result) {
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *x = uniform(3, SH(0, 4, 32), 1), *w = uniform(2, SH(16, 32), 2);
    fn2 fast = (fn2)em_compile((void *)lin_nobias, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = lin_nobias(x, w), *g = fast(x, w);
    cr_assert(e && g, "%s", em_last_error());
    tu_expect_shape(g, 3, SH(0, 4, 16), "linear over [0, 4, 32]");
    em_release(g), em_release(e);
    em_tensor *a = uniform(3, SH(0, 5, 7), 3), *b = uniform(2, SH(7, 9), 4);
    fn2 f2 = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
    cr_assert(f2, "%s", em_last_error());
    g = f2(a, b);
    cr_assert(g, "%s", em_last_error());
    tu_expect_shape(g, 3, SH(0, 5, 9), "matmul over [0, 5, 7]");
    em_release(g), em_release(a), em_release(b), em_release(x), em_release(w);
    em_compiled_free((void *)fast), em_compiled_free((void *)f2);
}

Test(gemm, an_8_lane_panel_of_a_k_contiguous_operand_is_packed_within_its_buffer) {
    /* EMBER_CODEGEN=avx2, x w^T with N = 8: B packed into a panel of 8 lanes */
    setenv("EMBER_CODEGEN", "avx2", 1);
    setenv("EMBER_GEMM", "jit", 1);
    em_tensor *x = uniform(2, SH(64, 64), 1), *w = uniform(2, SH(8, 64), 2), *wt = transposed_copy(w);
    double *xv = tu_values_of(x), *wv = tu_values_of(wt), *want = ref_bmm(xv, wv, 1, 1, 64, 64, 8);
    check_product(lin_nobias, x, w, want, 64, "[64 x 64] w^T [64 x 8] at 8 lanes");
    free(xv), free(wv), free(want);
    em_release(x), em_release(w), em_release(wt);
}

/* ---- a constant B packed once (kept_util.c) ------------------------------------------------------ */

/* The FMA kernel's kept B: panels of nvec vectors (up to 4 of 16 lanes, 2 of
 * 8 with AVX2), each of K rounded up to 16 rows. */
static size_t fma_kept(int64_t K, int64_t N, int64_t w, int64_t maxv) {
    int64_t nvec = (N + w - 1) / w < maxv ? (N + w - 1) / w : maxv, vb = nvec * w;
    return (size_t)((N + vb - 1) / vb * ((K + 15) / 16 * 16) * vb * 4);
}
static size_t fma_kept16(int64_t K, int64_t N) { return fma_kept(K, N, 16, 4); }
static size_t fma_kept8(int64_t K, int64_t N) { return fma_kept(K, N, 8, 2); }

/* linears whose weight the kernel packs (lanes along n): a whole panel, a
 * narrow one, and 40 columns (a masked vector) over a long k */
static const ku_case KEPT_LINEARS[] = {{128, 100, 80, false}, {64, 256, 64, false}, {33, 1000, 40, false},
                                       {255, 17, 300, false}};

Test(gemm, a_constant_weight_is_packed_once_by_the_second_call_kept_and_gives_the_bits_of_packing_per_call) {
    ku_expect_kept_once("fma", KEPT_LINEARS, 4, fma_kept16, "packed per panel");
}

/* With a 16 KiB L2 the panels hold 32 KiB: k is blocked (each block reads its
 * rows of the kept panel), and x @ w copies its contiguous panels too. */
Test(gemm, a_kept_weight_serves_every_k_block_and_x_at_w_keeps_its_copied_panels_too) {
    setenv("EMBER_L2_KB", "16", 1);
    static const ku_case cases[] = {{128, 100, 80, false}, {33, 1000, 40, false}, {96, 300, 100, true},
                                    {20, 700, 64, true}};
    ku_expect_kept_once("fma", cases, 4, fma_kept16, "packed per panel");
    unsetenv("EMBER_L2_KB");
}

Test(gemm, the_8_lane_avx2_kernels_keep_a_constant_weight_too) {
    setenv("EMBER_CODEGEN", "avx2", 1);
    ku_expect_kept_once("fma", KEPT_LINEARS, 4, fma_kept8, "packed per panel");
    unsetenv("EMBER_CODEGEN");
}

/* Each tile prefetching rows of the kept panel (an 8 KiB threshold: all of
 * these cases), past its end on the last rows. */
Test(gemm, a_kept_weight_whose_rows_are_prefetched_gives_the_bits_of_packing_per_call) {
    setenv("EMBER_PREFETCH", "1", 1), setenv("EMBER_L1_KB", "16", 1);
    ku_expect_kept_once("fma", KEPT_LINEARS, 4, fma_kept16, "packed per panel");
}

Test(gemm, a_weight_passed_as_an_argument_is_packed_per_call_not_kept) {
    ku_expect_argument_not_kept("fma", "packed per panel");
}

Test(gemm, a_kept_weight_that_cannot_be_allocated_is_packed_per_call_until_it_can) {
    ku_expect_kept_after_failed_allocations("fma", fma_kept16);
}
