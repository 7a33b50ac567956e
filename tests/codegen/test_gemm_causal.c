/*
 * test_gemm_causal.c — causal masks in the generated GEMM (gemm.c's
 * causal_diag and causal_scores): attention whose scores add a constant mask
 * that is finite before column i + c of row i and -inf from there on.
 *
 * The p @ v product stops each tile's k loop at its last row's i + c, and the
 * scores product skips the vectors of each tile that the mask makes -inf
 * (whole tiles, and the last vectors of tiles that cross the diagonal, a
 * switch over one k loop per vector count). Both must give
 * eager's results (within the contract's tolerance) and a double reference's,
 * on one and two threads, with k blocked (partial sums), on 8 lanes, for an
 * offset diagonal, and in 40 random attentions on per-head views (random
 * shapes, diagonals, threads, lanes and blocking); the kernels dump must say
 * where each applies.
 *
 * Masks that are not causal (a hole, another slope, a window, one mask per
 * head, a row all -inf, +inf), a scores kernel that also stores its product,
 * a p @ v whose rows fold the heads in (k and v shared by the heads), a
 * softmax of an argument or of a constant, and EMBER_CAUSAL=0 must change
 * nothing but leave every product in. Two masks
 * with different diagonals must not share cached code (c is in the key).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util.h"
#include "../frontend/compile_util.h"
#include "gemm_util.h"

typedef em_tensor *(*fn3)(em_tensor *, em_tensor *, em_tensor *);

static const char *const P_AT_V = "products of row i to k < i + ";
static const char *const SCORES = "no products in vectors at or past column i + ";

static em_tensor *MASK; /* the constant the models add to their scores */
static double SCALE;

/* softmax(q kt * scale + MASK) @ v, in the caller's scope */
static em_tensor *masked_attention(em_tensor *q, em_tensor *kt, em_tensor *v) {
    em_tensor *s = em_add(em_mul(em_matmul(q, kt), em_scalar(EM_F32, SCALE)), MASK);
    return em_matmul(em_softmax(s, -1), v);
}

/* softmax(q k^T * scale + MASK) @ v, q k v [H, T, D] */
static em_tensor *attend(em_tensor *q, em_tensor *k, em_tensor *v) {
    em_scope_begin();
    em_tensor *o = em_keep(masked_attention(q, em_transpose(k, 1, 2), v));
    em_scope_end();
    return o;
}

/* the same, plus the unmasked scores times v: the scores kernel stores its product too */
static em_tensor *attend_and_scores(em_tensor *q, em_tensor *k, em_tensor *v) {
    em_scope_begin();
    em_tensor *raw = em_mul(em_matmul(q, em_transpose(k, 1, 2)), em_scalar(EM_F32, SCALE));
    em_tensor *o = em_matmul(em_softmax(em_add(raw, MASK), -1), v);
    em_tensor *y = em_keep(em_add(o, em_matmul(raw, v)));
    em_scope_end();
    return y;
}

/* attend with k and v [T, D], shared by q's heads: p @ v folds the heads
 * into its rows, which are then no longer the mask's (the scores, which add
 * the mask, keep theirs) */
static em_tensor *attend_shared_kv(em_tensor *q, em_tensor *k, em_tensor *v) {
    em_scope_begin();
    em_tensor *o = em_keep(masked_attention(q, em_transpose(k, 0, 1), v));
    em_scope_end();
    return o;
}

static int64_t HEADS; /* attend_qkv's heads */

/* attend on the per-head views of one [T, 3C] tensor, as the models split
 * heads: q and k^T strided views of qkv, v another (gemm_util.c) */
static em_tensor *attend_qkv(em_tensor *qkv) {
    em_scope_begin();
    em_tensor *q, *kt;
    gu_head_views(qkv, HEADS, &q, &kt);
    int64_t T = em_dim(qkv, 0), C = em_dim(qkv, 1) / 3;
    em_tensor *v = em_permute(em_reshape(em_slice(qkv, 1, 2 * C, 3 * C, 1), 3, (int64_t[]){T, HEADS, C / HEADS}),
                              (int[]){1, 0, 2});
    em_tensor *o = em_keep(masked_attention(q, kt, v));
    em_scope_end();
    return o;
}

/* softmax of a leaf (the argument x, the constant MASK) times v: the mask's
 * pattern check meets nodes without inputs (the fuzzer's seed 15400319
 * crashed it: a leaf's op field read as an add) */
static em_tensor *softmax_of_leaves(em_tensor *x, em_tensor *v, em_tensor *unused) {
    (void)unused;
    em_scope_begin();
    em_tensor *y = em_keep(em_add(em_matmul(em_softmax(x, -1), v), em_matmul(em_softmax(MASK, -1), v)));
    em_scope_end();
    return y;
}

/* A [lead..., T, T] mask from row i's finite prefix: finite (small values
 * that vary) where keep(i, j), else fill. */
typedef bool (*keep_fn)(int64_t i, int64_t j, int64_t c);
static bool causal(int64_t i, int64_t j, int64_t c) { return j < i + c; }
static bool hole(int64_t i, int64_t j, int64_t c) { return j < i + c || j == i + c + 1; }
static bool slope2(int64_t i, int64_t j, int64_t c) { return j < 2 * i + c; }
static bool window(int64_t i, int64_t j, int64_t c) { return j < i + c && j > i - 4; }

static em_tensor *mask_of(int64_t heads, int64_t T, keep_fn keep, int64_t c, double fill) {
    double *m = malloc((size_t)(heads * T * T) * sizeof *m);
    cr_assert(m);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++)
                m[(h * T + i) * T + j] = keep(i, j, c) ? 0.25 * sin((double)(3 * i + j + h)) : fill;
    em_tensor *t = heads == 1 ? tu_tensor_of(EM_F32, 2, (int64_t[]){T, T}, m)
                              : tu_tensor_of(EM_F32, 3, (int64_t[]){heads, T, T}, m);
    free(m);
    return t;
}

/* attend in double from the tensors' values, every mask row with a finite entry */
static double *reference(const em_tensor *q, const em_tensor *k, const em_tensor *v, int64_t H, int64_t T, int64_t D) {
    double *Q = tu_values_of(q), *K = tu_values_of(k), *V = tu_values_of(v), *M = tu_values_of(MASK);
    int64_t mh = em_ndim(MASK) == 3 ? T * T : 0;
    double *o = calloc((size_t)(H * T * D), sizeof *o), *s = malloc((size_t)T * sizeof *s);
    cr_assert(o && s);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < T; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < T; j++) {
                double d = 0;
                for (int64_t e = 0; e < D; e++) d += Q[(h * T + i) * D + e] * K[(h * T + j) * D + e];
                s[j] = d * SCALE + M[h * mh + i * T + j];
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int64_t j = 0; j < T; j++) sum += s[j] = exp(s[j] - mx);
            for (int64_t j = 0; j < T; j++)
                for (int64_t e = 0; e < D; e++) o[(h * T + i) * D + e] += s[j] / sum * V[(h * T + j) * D + e];
        }
    free(Q), free(K), free(V), free(M), free(s);
    return o;
}

typedef struct want {
    int64_t kdiag, cdiag;      /* the dump's c for each product, 0: not there */
    bool reference;            /* compare with the double reference too */
} want;

/* fn compiled on q, k, v [H, T, D] with MASK, on `threads` threads: eager's
 * results on two calls, the reference's, and the dump's causal notes. */
static void check(fn3 fn, int64_t H, int64_t T, int64_t D, int threads, want w, const char *what) {
    cr_assert_eq(em_set_threads(threads), 0);
    SCALE = 1.0 / sqrt((double)D);
    int64_t shape[3] = {H, T, D};
    em_tensor *q = tu_uniform_tensor(3, shape, -1, 1, 11), *k = tu_uniform_tensor(3, shape, -1, 1, 12),
              *v = tu_uniform_tensor(3, shape, -1, 1, 13);
    em_tensor *eager = fn(q, k, v);
    fn3 fast = (fn3)em_compile((void *)fn, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(fast, "%s: %s", what, em_last_error());
    for (int call = 0; call < 2; call++) {
        em_tensor *got = fast(q, k, v);
        tu_expect_compiled(got, eager, what);
        em_release(got);
    }
    if (w.reference) {
        double *ref = reference(q, k, v, H, T, D), *g = tu_values_of(eager);
        int64_t bad = 0;
        for (int64_t i = 0; i < H * T * D; i++) bad += !tu_close_to(g[i], ref[i], 1e-4, 1e-5);
        cr_expect_eq(bad, 0, "%s: eager differs from the double reference in %lld values", what, (long long)bad);
        free(ref), free(g);
    }
    int st;
    char *dump = cu_dump((void *)fast, "kernels", &st), note[96];
    cr_assert_eq(st, 0);
    snprintf(note, sizeof note, "%s%lld ", P_AT_V, (long long)w.kdiag);
    cr_expect(w.kdiag ? strstr(dump, note) != NULL : strstr(dump, P_AT_V) == NULL,
              "%s: p @ v should %s (%s%lld); the dump:\n%s", what, w.kdiag ? "stop at the diagonal" : "keep every k",
              P_AT_V, (long long)w.kdiag, dump);
    snprintf(note, sizeof note, "%s%lld ", SCORES, (long long)w.cdiag);
    cr_expect(w.cdiag ? strstr(dump, note) != NULL : strstr(dump, SCORES) == NULL,
              "%s: the scores should %s (%s%lld); the dump:\n%s", what, w.cdiag ? "skip masked tiles" : "keep every tile",
              SCORES, (long long)w.cdiag, dump);
    free(dump);
    em_compiled_free((void *)fast);
    em_release(eager), em_release(q), em_release(k), em_release(v);
}

static void use_mask(em_tensor *m) {
    em_release(MASK);
    MASK = m;
}

static void init(void) { setenv("EMBER_GEMM", "fma", 1); /* the FMA kernel on any CPU, AMX or not */ }
static void fini(void) { use_mask(NULL); }

TestSuite(gemm_causal, .init = init, .fini = fini);

Test(gemm_causal, a_causal_attention_stops_p_at_v_at_the_diagonal_and_skips_masked_score_tiles_with_eagers_results) {
    const int64_t Ts[] = {7, 64, 130}, Ds[] = {16, 64};
    for (int t = 0; t < 3; t++)
        for (int d = 0; d < 2; d++)
            for (int threads = 1; threads <= 2; threads++) {
                use_mask(mask_of(1, Ts[t], causal, 1, -INFINITY));
                char what[96];
                snprintf(what, sizeof what, "T %lld, D %lld, %d thread(s)", (long long)Ts[t], (long long)Ds[d], threads);
                check(attend, 2, Ts[t], Ds[d], threads, (want){1, 1, true}, what);
            }
}

Test(gemm_causal, a_mask_whose_diagonal_is_c_columns_on_is_found_with_its_c) {
    /* T 130: with tiles of 6 rows and panels of 64 columns, some c puts a
     * tile's last row right before a panel's first column (c = 4 at column 128) */
    for (int64_t c = 1; c <= 6; c++) {
        use_mask(mask_of(1, 130, causal, c, -INFINITY));
        char what[32];
        snprintf(what, sizeof what, "c = %lld", (long long)c);
        check(attend, 2, 130, 16, 1, (want){c, c, true}, what);
    }
}

Test(gemm_causal, with_k_blocked_the_partial_sums_of_blocks_past_the_diagonal_stay_as_they_are) {
    setenv("EMBER_L2_KB", "16", 1); /* panels of 32 KiB: k blocks of 128 over T = 300 */
    use_mask(mask_of(1, 300, causal, 1, -INFINITY));
    check(attend, 2, 300, 64, 2, (want){1, 1, true}, "T 300, k blocks");
}

Test(gemm_causal, the_8_lane_kernels_stop_at_the_diagonal_too) {
    setenv("EMBER_CODEGEN", "avx2", 1);
    use_mask(mask_of(1, 37, causal, 2, -INFINITY));
    check(attend, 2, 37, 16, 1, (want){2, 2, true}, "AVX2, T 37, c = 2");
}

Test(gemm_causal, masks_that_are_not_causal_leave_every_product_in_and_give_eagers_results) {
    struct {
        int64_t heads;
        keep_fn keep;
        double fill;
        const char *what;
    } cases[] = {
        {1, hole, -INFINITY, "a finite entry after the first -inf of a row"},
        {1, slope2, -INFINITY, "row i finite before column 2i + 1"},
        {1, window, -INFINITY, "a window of 4 columns up to the diagonal"},
        {2, causal, -INFINITY, "causal, but one mask per head"},
        {1, causal, INFINITY, "+inf above the diagonal"},
        {1, causal, -1e30, "a large finite value above the diagonal"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        use_mask(mask_of(cases[i].heads, 40, cases[i].keep, 1, cases[i].fill));
        check(attend, 2, 40, 16, 1, (want){0, 0, cases[i].fill != INFINITY}, cases[i].what);
    }
}

Test(gemm_causal, a_mask_with_a_row_all_minus_inf_is_not_taken_and_that_row_is_nan_as_eager) {
    use_mask(mask_of(1, 24, causal, 0, -INFINITY)); /* row 0 has no finite column: softmax gives NaN */
    check(attend, 2, 24, 16, 1, (want){0, 0, false}, "row 0 all -inf");
}

Test(gemm_causal, a_scores_kernel_that_also_stores_its_product_computes_every_tile) {
    use_mask(mask_of(1, 70, causal, 1, -INFINITY));
    check(attend_and_scores, 2, 70, 16, 1, (want){1, 0, false}, "the product read again");
}

Test(gemm_causal, a_p_at_v_whose_rows_fold_the_heads_in_is_not_taken_for_the_masks_rows) {
    use_mask(mask_of(1, 40, causal, 1, -INFINITY));
    SCALE = 0.25;
    em_tensor *q = tu_uniform_tensor(3, (int64_t[]){3, 40, 16}, -1, 1, 21);
    em_tensor *k = tu_uniform_tensor(2, (int64_t[]){40, 16}, -1, 1, 22), *v = tu_uniform_tensor(2, (int64_t[]){40, 16}, -1, 1, 23);
    em_tensor *eager = attend_shared_kv(q, k, v);
    fn3 fast = (fn3)em_compile((void *)attend_shared_kv, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *got = fast(q, k, v);
    tu_expect_compiled(got, eager, "k and v shared by the heads");
    int st;
    char *dump = cu_dump((void *)fast, "kernels", &st);
    cr_assert_eq(st, 0);
    cr_expect(strstr(dump, "1 batch x [120 x 40] @ [40 x 16]") != NULL, "p @ v should fold the heads into its rows; the dump:\n%s", dump);
    cr_expect(!strstr(dump, P_AT_V), "folded rows are not the mask's; the dump:\n%s", dump);
    cr_expect(strstr(dump, "3 batch x [40 x 16] @ [16 x 40]") && strstr(dump, SCORES),
              "the scores keep their heads and skip masked tiles; the dump:\n%s", dump);
    free(dump);
    em_compiled_free((void *)fast);
    em_release(got), em_release(eager), em_release(q), em_release(k), em_release(v);
}

Test(gemm_causal, a_softmax_of_an_argument_or_a_constant_is_no_causal_pattern_and_gives_eagers_results) {
    use_mask(mask_of(1, 33, causal, 1, -1e3));
    em_tensor *x = tu_uniform_tensor(2, (int64_t[]){33, 33}, -1, 1, 31), *v = tu_uniform_tensor(2, (int64_t[]){33, 20}, -1, 1, 32);
    em_tensor *eager = softmax_of_leaves(x, v, x);
    fn3 fast = (fn3)em_compile((void *)softmax_of_leaves, "tensor(tensor, tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *got = fast(x, v, x);
    tu_expect_compiled(got, eager, "softmax of leaves");
    int st;
    char *dump = cu_dump((void *)fast, "kernels", &st);
    cr_expect(!strstr(dump, P_AT_V) && !strstr(dump, SCORES), "no causal mask here; the dump:\n%s", dump);
    free(dump);
    em_compiled_free((void *)fast);
    em_release(got), em_release(eager), em_release(x), em_release(v);
}

Test(gemm_causal, random_causal_attentions_on_per_head_views_give_eagers_results) {
    /* shapes, diagonals, threads and lane widths drawn at random (a fixed
     * seed): the tile, panel and k-block edges fall everywhere */
    tu_rng rng = {20261202};
    int stopped = 0, skipped = 0;
    for (int n = 0; n < 40; n++) {
        int64_t T = 1 + (int64_t)tu_uniform(&rng, 0, 200), c = 1 + (int64_t)tu_uniform(&rng, 0, 6);
        int64_t D = 1 + (int64_t)tu_uniform(&rng, 0, 80);
        int threads = 1 + (tu_uniform(&rng, 0, 1) < 0.5);
        bool narrow = tu_uniform(&rng, 0, 1) < 0.3, blocked = tu_uniform(&rng, 0, 1) < 0.3;
        HEADS = 1 + (int64_t)tu_uniform(&rng, 0, 4);
        SCALE = 1.0 / sqrt((double)D);
        if (narrow) setenv("EMBER_CODEGEN", "avx2", 1);
        else unsetenv("EMBER_CODEGEN");
        if (blocked) setenv("EMBER_L2_KB", "16", 1);
        else unsetenv("EMBER_L2_KB");
        cr_assert_eq(em_set_threads(threads), 0);
        use_mask(mask_of(1, T, causal, c, -INFINITY));
        em_tensor *qkv = tu_uniform_tensor(2, (int64_t[]){T, 3 * HEADS * D}, -1, 1, (uint64_t)n + 100);
        em_tensor *eager = attend_qkv(qkv);
        em_tensor *(*fast)(em_tensor *) = (em_tensor * (*)(em_tensor *)) em_compile((void *)attend_qkv, "tensor(tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        char what[160];
        snprintf(what, sizeof what, "case %d: T %lld, H %lld, D %lld, c %lld, %d thread(s)%s%s", n, (long long)T,
                 (long long)HEADS, (long long)D, (long long)c, threads, narrow ? ", AVX2" : "", blocked ? ", 16 KiB L2" : "");
        for (int call = 0; call < 2; call++) {
            em_tensor *got = fast(qkv);
            tu_expect_compiled(got, eager, what);
            em_release(got);
        }
        int st;
        char *dump = cu_dump((void *)fast, "kernels", &st);
        stopped += strstr(dump, P_AT_V) != NULL, skipped += strstr(dump, SCORES) != NULL;
        free(dump);
        em_compiled_free((void *)fast);
        em_release(eager), em_release(qkv);
    }
    /* most draws take both (not where c covers all of T, or the lanes run along m) */
    cr_expect_geq(stopped, 25, "p @ v stopped at the diagonal in only %d of 40 draws", stopped);
    cr_expect_geq(skipped, 25, "the scores skipped masked tiles in only %d of 40 draws", skipped);
}

Test(gemm_causal, EMBER_CAUSAL_0_leaves_every_product_in) {
    setenv("EMBER_CAUSAL", "0", 1);
    use_mask(mask_of(1, 64, causal, 1, -INFINITY));
    check(attend, 2, 64, 16, 2, (want){0, 0, true}, "EMBER_CAUSAL=0");
}

Test(gemm_causal, two_masks_with_different_diagonals_do_not_share_cached_code) {
    char dir[] = "/tmp/ember-causal-XXXXXX";
    cr_assert(mkdtemp(dir));
    setenv("EMBER_CACHE_DIR", dir, 1);
    use_mask(mask_of(1, 48, causal, 1, -INFINITY));
    check(attend, 2, 48, 16, 1, (want){1, 1, true}, "c = 1, stored");
    use_mask(mask_of(1, 48, causal, 4, -INFINITY)); /* the same graph and layouts, other values */
    check(attend, 2, 48, 16, 1, (want){4, 4, true}, "c = 4 after c = 1 was cached");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}
