/*
 * test_gemm_amx.c — products on the AMX tile unit (runtime/amx.c, and the
 * generated GEMM that calls it: codegen/gemm.c's choice, gemm_emit.c's tiles,
 * program.c's packed rows).
 *
 * f32 operands are split exactly into three bf16 pieces and six piece products
 * are summed in f32, so results must meet the same bounds as f32 FMAs: the
 * contract's tolerance against eager (OpenBLAS) and against a double
 * reference, for every size class (rows, columns and k past a tile's 32 are
 * zero padding), every operand layout (B's rows contiguous, B read transposed
 * as a linear's weight, A read transposed, a stepped slice), with bias and
 * epilogues in the store, on one and two threads.
 *
 * Also: the runtime's packers and tile against a scalar reference, including
 * a tile that packs the next panel in parts (bit for bit the packer's),
 * values whose pieces are all nonzero and an exact product of pieces; NaN
 * stays NaN, FLT_MAX and infinity keep their values; EMBER_AMX=0 turns the
 * unit off; batched products (a broadcast batch, attention's per-head views);
 * where the unit is not used (k past 1024, EMBER_GEMM=fma)
 * and which shapes the cost model gives it; a failed allocation of the packed
 * rows fails the call with a message and leaves nothing behind. A constant
 * weight is packed once, by the second call, kept (em_stats.packed_bytes) and
 * gives the bits of packing per call (EMBER_PACK_CONSTANTS=0); a weight passed
 * as an argument is not kept; a packed constant that cannot be allocated is
 * packed per call until it can.
 *
 * Machines without AMX skip these tests (rt_amx_usable()).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "runtime.h"
#include "../util.h"
#include "../frontend/compile_util.h"
#include "gemm_util.h"
#include "kept_util.h"

typedef em_tensor *(*fn1)(em_tensor *);
typedef em_tensor *(*fn2)(em_tensor *, em_tensor *);
typedef em_tensor *(*fn3)(em_tensor *, em_tensor *, em_tensor *);

static void need_amx(void) {
    if (!rt_amx_usable()) cr_skip_test("no AMX tile unit here (or EMBER_AMX=0)");
}

static void use(const char *gemm) {
    if (gemm) setenv("EMBER_GEMM", gemm, 1);
    else unsetenv("EMBER_GEMM");
}

/* ---- the runtime's kernels -------------------------------------------------------------------- */

/* C = A B through rt_amx_pack_rows / pack_cols / tile with the given strides:
 * A's (i, k) at a[i * ars + k * aks], B's (k, j) at b[k * bks + j * bcs]. */
static void amx_product(const float *a, int64_t ars, int64_t aks, const float *b, int64_t bks, int64_t bcs,
                        int64_t M, int64_t K, int64_t N, float *c) {
    uint16_t *ap = aligned_alloc(64, (size_t)rt_amx_packed_bytes(M, K));
    uint16_t *bp = aligned_alloc(64, (size_t)rt_amx_packed_bytes(N, K));
    cr_assert(ap && bp);
    rt_amx_pack_rows(ap, a, M, K, ars, aks);
    rt_amx_pack_cols(bp, b, N, K, bcs, bks);
    float out[32 * 32] __attribute__((aligned(64)));
    int64_t group = (K + 31) / 32 * 1536;
    for (int64_t i0 = 0; i0 < M; i0 += 32)
        for (int64_t j0 = 0; j0 < N; j0 += 32) {
            rt_amx_tile(out, ap + i0 / 16 * group, bp + j0 / 16 * group, K);
            for (int64_t i = 0; i < 32 && i0 + i < M; i++)
                for (int64_t j = 0; j < 32 && j0 + j < N; j++) c[(i0 + i) * N + j0 + j] = out[i * 32 + j];
        }
    rt_amx_release();
    free(ap), free(bp);
}

static float value(uint64_t *s) { /* in [-1, 1) with all 24 bits of the significand in use */
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return (float)((double)(*s >> 40) / (double)(1u << 23) - 1.0);
}

Test(amx, the_packers_and_the_tile_give_f32_accurate_products_for_every_layout_and_size) {
    need_amx();
    static const int64_t sizes[] = {1, 3, 16, 17, 31, 32, 33, 64, 100};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    uint64_t seed = 1;
    for (int x = 0; x < NS; x++)
        for (int y = 0; y < NS; y++)
            for (int z = 0; z < NS; z += 2)
                for (int how = 0; how < 4; how++) {
                    int64_t M = sizes[x], K = sizes[y], N = sizes[z];
                    bool at = how & 1, bt = how & 2;
                    float *a = malloc(sizeof(float) * (size_t)(M * K)), *b = malloc(sizeof(float) * (size_t)(K * N));
                    float *c = malloc(sizeof(float) * (size_t)(M * N));
                    cr_assert(a && b && c);
                    for (int64_t i = 0; i < M * K; i++) a[i] = value(&seed);
                    for (int64_t i = 0; i < K * N; i++) b[i] = value(&seed);
                    int64_t ars = at ? 1 : K, aks = at ? M : 1, bks = bt ? 1 : N, bcs = bt ? K : 1;
                    amx_product(a, ars, aks, b, bks, bcs, M, K, N, c);
                    int64_t bad = 0;
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) {
                            double s = 0, mag = 0;
                            for (int64_t k = 0; k < K; k++) {
                                double p = (double)a[i * ars + k * aks] * (double)b[k * bks + j * bcs];
                                s += p, mag += fabs(p);
                            }
                            /* an f32 dot product's bound, K ulps of the magnitude, with room */
                            if (!(fabs(c[i * N + j] - s) <= (double)(K + 2) * 0x1p-23 * mag)) bad++;
                        }
                    cr_expect_eq(bad, 0, "[%lld x %lld] @ [%lld x %lld] (A %s, B %s): %lld elements off",
                                 (long long)M, (long long)K, (long long)K, (long long)N, at ? "transposed" : "rows",
                                 bt ? "transposed" : "rows", (long long)bad);
                    free(a), free(b), free(c);
                }
}

/* rt_amx_tile_next packs another panel in shares between its tile products
 * (gemm_emit.c's next panel while this one's tiles run): after all the parts
 * the panel must be, bit for bit, what rt_amx_pack_cols makes, for every
 * layout and width, and each tile what rt_amx_tile gives; given that panel
 * with nothing to pack, it prefetches it and leaves it as it is. */
Test(amx, a_tile_packs_the_next_panel_in_parts_exactly_as_the_packer_does) {
    need_amx();
    static const int64_t widths[] = {1, 15, 16, 17, 32}, ks[] = {1, 31, 32, 33, 100}, parts[] = {1, 2, 3, 4, 7};
    uint64_t seed = 7;
    for (int w = 0; w < 5; w++)
        for (int kk = 0; kk < 5; kk++)
            for (int how = 0; how < 3; how++) {
                int64_t cols = widths[w], K = ks[kk];
                /* columns along k (a weight's rows), k rows contiguous, both strided */
                int64_t cs = how == 0 ? K : how == 1 ? 1 : 3, kst = how == 0 ? 1 : how == 1 ? 32 : 3 * 32 + 1;
                float *src = malloc(sizeof(float) * (size_t)(K * kst + cols * cs + 1));
                float *a = malloc(sizeof(float) * (size_t)(32 * K)), *b = malloc(sizeof(float) * (size_t)(32 * K));
                size_t bytes = (size_t)rt_amx_packed_bytes(32, K);
                uint16_t *want = aligned_alloc(64, bytes), *got = aligned_alloc(64, bytes);
                uint16_t *ap = aligned_alloc(64, bytes), *bp = aligned_alloc(64, bytes);
                cr_assert(src && a && b && want && got && ap && bp);
                for (int64_t i = 0; i < K * kst + cols * cs + 1; i++) src[i] = value(&seed) * 1e3f;
                for (int64_t i = 0; i < 32 * K; i++) a[i] = value(&seed), b[i] = value(&seed);
                rt_amx_pack_rows(ap, a, 32, K, K, 1);
                rt_amx_pack_cols(bp, b, 32, K, K, 1);
                float one[32 * 32] __attribute__((aligned(64))), two[32 * 32] __attribute__((aligned(64)));
                rt_amx_tile(one, ap, bp, K);
                memset(want, 0xab, bytes);
                rt_amx_pack_cols(want, src, cols, K, cs, kst);
                for (int p = 0; p < 5; p++) {
                    memset(got, 0xcd, bytes);
                    for (int64_t part = 0; part < parts[p]; part++) {
                        rt_amx_tile_next(two, ap, bp, K, got, src, cols, cs, kst, part, parts[p]);
                        cr_expect_eq(memcmp(one, two, sizeof one), 0, "a tile that packs changed its product");
                    }
                    cr_expect_eq(memcmp(want, got, bytes), 0, "%lld columns, k %lld, layout %d, %lld parts",
                                 (long long)cols, (long long)K, how, (long long)parts[p]);
                    /* a panel packed already (a kept constant) is only prefetched: read, never written */
                    for (int64_t part = 0; part < parts[p]; part++) {
                        rt_amx_tile_next(two, ap, bp, K, got, NULL, 0, 0, 0, part, parts[p]);
                        cr_expect_eq(memcmp(one, two, sizeof one), 0, "a tile that prefetches changed its product");
                    }
                    cr_expect_eq(memcmp(want, got, bytes), 0, "a prefetched panel changed");
                }
                rt_amx_release();
                free(src), free(a), free(b), free(want), free(got), free(ap), free(bp);
            }
}

Test(amx, a_product_of_exactly_representable_pieces_is_exact) {
    need_amx();
    /* x = 1 + 2^-9 + 2^-18 has three nonzero pieces, y = 1 + 2^-9 two:
     * x y = 1 + 2^-8 + 2^-17 + 2^-27. The six products give every term but
     * 2^-27 (x3 y2), which f32 rounds away; leaving out any of x1 y2, x2 y1,
     * x2 y2 or x3 y1 would change the f32 result. */
    float x = 1.0f + 0x1p-9f + 0x1p-18f, a[4], b[4], c;
    for (int k = 0; k < 4; k++) a[k] = x, b[k] = 1.0f + 0x1p-9f;
    amx_product(a, 4, 1, b, 1, 1, 1, 4, 1, &c);
    double want = 4.0 * (double)x * (double)(1.0f + 0x1p-9f);
    cr_expect_eq((double)c, (double)(float)want, "got %a, want %a", (double)c, want);
}

Test(amx, nan_stays_nan_and_the_other_rows_are_untouched) {
    need_amx();
    float a[2 * 8], b[8 * 2], c[4];
    for (int i = 0; i < 16; i++) a[i] = 0.5f, b[i] = 0.25f;
    a[3] = NAN;
    amx_product(a, 8, 1, b, 2, 1, 2, 8, 2, c);
    cr_expect(isnan(c[0]) && isnan(c[1]), "row 0 read a NaN: %g %g", (double)c[0], (double)c[1]);
    cr_expect(c[2] == 1.0f && c[3] == 1.0f, "row 1: %g %g", (double)c[2], (double)c[3]);
}

Test(amx, values_that_would_round_past_bf16s_largest_keep_their_pieces_finite) {
    need_amx();
    /* FLT_MAX rounds to bf16 infinity; the split keeps it finite (the slow
     * path of a block), so FLT_MAX * 0.5 + (the others) stays exact */
    float a[32], b[32], c;
    for (int k = 0; k < 32; k++) a[k] = k == 5 ? 3.40282347e38f : 0.0f, b[k] = 0.5f;
    amx_product(a, 32, 1, b, 1, 1, 1, 32, 1, &c);
    cr_expect_eq(c, 3.40282347e38f * 0.5f, "got %a", (double)c);
    /* an infinity times a value whose pieces are all nonzero stays infinite */
    a[5] = INFINITY, b[5] = 1.0f + 0x1p-9f + 0x1p-18f;
    amx_product(a, 32, 1, b, 1, 1, 1, 32, 1, &c);
    cr_expect(isinf(c) && c > 0, "got %g", (double)c);
}

/* ---- generated GEMMs on the unit -------------------------------------------------------------- */

static em_tensor *g_res; /* a residual, captured */
static em_tensor *lin_gelu_res(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_add(em_gelu_tanh(em_linear(x, w, b)), g_res));
    em_scope_end();
    return y;
}

/* double reference of the product of model(x, y) for the three gu_mm forms */
static double *reference(int form, em_tensor *x, em_tensor *y, int64_t M, int64_t K, int64_t N) {
    double *xv = tu_values_of(x), *yv = tu_values_of(y), *c = calloc((size_t)(M * N), sizeof *c);
    cr_assert(c);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double av = form == 2 ? xv[k * M + i] : xv[i * K + k];
                double bv = form == 1 ? yv[j * K + k] : yv[k * N + j];
                s += av * bv;
            }
            c[i * N + j] = s;
        }
    free(xv), free(yv);
    return c;
}

static void expect_section(void *fast, const char *needle, bool present, const char *what) {
    char *sec = cu_codegen_section(fast, what);
    if (present) cr_expect(strstr(sec, needle), "%s: want \"%s\" in %s", what, needle, sec);
    else cr_expect(!strstr(sec, needle), "%s: did not want \"%s\" in %s", what, needle, sec);
    free(sec);
}

/* Pieces run on the unit and on FMAs so far, by fn's profile stage. */
static void pieces_ran(void *fn, unsigned long long *amx, unsigned long long *fma) {
    int st;
    char *prof = cu_dump(fn, "profile", &st);
    *amx = *fma = 0;
    for (const char *p = prof; (p = strstr(p, "core ")); p++) {
        int core;
        unsigned long long a, f;
        if (sscanf(p, "core %d: AMX in %llu pieces, FMA in %llu", &core, &a, &f) == 3) *amx += a, *fma += f;
    }
    free(prof);
}

/* Every size class and layout, on the unit alone (amx) and with the pieces of
 * each call alternating between the unit and FMAs (both), on 1 and 2
 * threads; two calls each (on one thread, a call is one piece: the unit's,
 * then the FMAs'). */
static void products_match(const char *mode, int threads) {
    use(mode);
    static const int64_t sizes[][3] = {{1, 1, 1},     {3, 17, 64},    {17, 3, 255},  {64, 64, 64},
                                       {255, 17, 3},  {100, 33, 47},  {3, 1000, 17}, {17, 255, 1000},
                                       {64, 1000, 64}, {255, 255, 17}, {128, 256, 96}};
    static const fn2 models[] = {gu_mm, gu_mm_bt, gu_mm_at};
    int beside = 0;
    for (int form = 0; form < 3; form++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int64_t M = sizes[s][0], K = sizes[s][1], N = sizes[s][2];
            em_tensor *x = form == 2 ? tu_uniform_tensor(2, SH(K, M), 0, 1, 10 + s) : tu_uniform_tensor(2, SH(M, K), 0, 1, 10 + s);
            em_tensor *y = form == 1 ? tu_uniform_tensor(2, SH(N, K), 0, 1, 50 + s) : tu_uniform_tensor(2, SH(K, N), 0, 1, 50 + s);
            char what[128];
            snprintf(what, sizeof what, "EMBER_GEMM=%s, %d threads, form %d, M %lld K %lld N %lld", mode, threads, form,
                     (long long)M, (long long)K, (long long)N);
            fn2 fast = (fn2)em_compile((void *)models[form], "tensor(tensor, tensor)", &(em_options){.threads = threads});
            cr_assert(fast, "%s", em_last_error());
            em_tensor *e = models[form](x, y);
            double *want = reference(form, x, y, M, K, N);
            for (int call = 0; call < 2; call++) {
                em_tensor *g = fast(x, y);
                cr_assert(e && g, "%s: %s", what, em_last_error());
                tu_expect_compiled(g, e, what);
                double *got = tu_values_of(g);
                int64_t bad = 0;
                for (int64_t i = 0; i < M * N; i++)
                    if (!(fabs(got[i] - want[i]) <= 1e-5 + 1e-4 * fabs(want[i]))) bad++;
                cr_expect_eq(bad, 0, "%s, call %d: %lld elements off the double reference", what, call, (long long)bad);
                free(got);
                em_release(g);
            }
            expect_section((void *)fast, "AMX tiles", true, what);
            char *sec = cu_codegen_section((void *)fast, what);
            if (strstr(sec, "beside it")) {
                unsigned long long a, f;
                pieces_ran((void *)fast, &a, &f);
                cr_expect(a > 0 && f > 0, "%s: %llu pieces on the unit, %llu on FMAs", what, a, f);
                beside++;
            }
            free(sec);
            free(want);
            em_release(e), em_release(x), em_release(y);
            em_compiled_free((void *)fast);
        }
    if (!strcmp(mode, "both")) /* the FMA kernel's panels of 64 need N > 48 and lanes along n */
        cr_expect_geq(beside, 12, "%d of the products had the FMA kernel beside the unit's", beside);
    else
        cr_expect_eq(beside, 0, "EMBER_GEMM=amx: the unit's kernel alone");
    use(NULL);
}

Test(amx, generated_products_on_the_unit_match_the_reference_and_eager_for_every_size_and_layout) {
    need_amx();
    products_match("amx", 1);
    products_match("amx", 2);
}

Test(amx, products_whose_pieces_alternate_between_the_unit_and_fmas_match_the_reference_and_eager) {
    need_amx();
    products_match("both", 1);
    products_match("both", 2);
}

Test(amx, a_linear_with_bias_gelu_and_a_residual_in_the_store_matches_eager_on_one_and_two_threads) {
    need_amx();
    use("amx");
    em_tensor *x = tu_uniform_tensor(2, SH(100, 256), -1, 1, 1), *w = tu_uniform_tensor(2, SH(200, 256), -0.1, 0.1, 2);
    em_tensor *b = tu_uniform_tensor(1, SH(200), -1, 1, 3);
    g_res = tu_uniform_tensor(2, SH(100, 200), -1, 1, 4);
    em_tensor *e = lin_gelu_res(x, w, b);
    for (int threads = 1; threads <= 2; threads++) {
        fn3 fast = (fn3)em_compile((void *)lin_gelu_res, "tensor(tensor, tensor, tensor)", &(em_options){.threads = threads});
        cr_assert(fast, "%s", em_last_error());
        for (int call = 0; call < 2; call++) { /* the second call reuses the packed-rows block */
            em_tensor *g = fast(x, w, b);
            tu_expect_compiled(g, e, threads == 1 ? "gelu(linear) + residual, 1 thread" : "2 threads");
            em_release(g);
        }
        char *sec = cu_codegen_section((void *)fast, "gelu(linear) + residual");
        cr_expect(strstr(sec, "AMX tiles"), "%s", sec);
        cr_expect_eq(cu_count_of(sec, "step "), 1, "the epilogue is in the GEMM's store: %s", sec);
        free(sec);
        em_compiled_free((void *)fast);
    }
    em_set_threads(1);
    em_release(e), em_release(x), em_release(w), em_release(b), em_release(g_res);
    use(NULL);
}

Test(amx, a_stepped_slice_as_an_operand_is_split_through_its_strides) {
    need_amx();
    use("amx");
    em_tensor *wide = tu_uniform_tensor(2, SH(70, 2 * 90), 0, 1, 5), *b = tu_uniform_tensor(2, SH(90, 40), 0, 1, 6);
    em_tensor *view = em_slice(wide, 1, 0, 180, 2);
    fn2 fast = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = gu_mm(view, b), *g = fast(view, b);
    tu_expect_compiled(g, e, "a stepped slice @ b");
    expect_section((void *)fast, "AMX tiles", true, "a stepped slice @ b");
    em_release(g), em_release(e), em_release(view), em_release(wide), em_release(b);
    em_compiled_free((void *)fast);
    use(NULL);
}

Test(amx, k_past_1024_and_EMBER_GEMM_fma_keep_the_fma_kernel) {
    need_amx();
    struct {
        const char *gemm;
        int nd;
        int64_t a[3], b[3];
        const char *what;
    } cases[] = {
        {"amx", 2, {64, 1056}, {1056, 64}, "k = 1056 (its panel would not fit the stack)"},
        {"fma", 2, {128, 256}, {256, 768}, "EMBER_GEMM=fma"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        use(cases[i].gemm);
        em_tensor *a = tu_uniform_tensor(cases[i].nd, cases[i].a, 0, 1, 7), *b = tu_uniform_tensor(cases[i].nd, cases[i].b, 0, 1, 8);
        fn2 fast = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *e = gu_mm(a, b), *g = fast(a, b);
        tu_expect_compiled(g, e, cases[i].what);
        expect_section((void *)fast, "generated GEMM", true, cases[i].what);
        expect_section((void *)fast, "AMX", false, cases[i].what);
        em_release(g), em_release(e), em_release(a), em_release(b);
        em_compiled_free((void *)fast);
    }
    use(NULL);
}

/* attention's per-head scores, q_h k_h^T / 8 plus a mask, from views of one [T, 3C] tensor */
static em_tensor *g_mask;
static em_tensor *head_scores(em_tensor *qkv, em_tensor *unused) {
    (void)unused;
    em_scope_begin();
    em_tensor *q, *k;
    gu_head_views(qkv, 4, &q, &k);
    em_tensor *y = em_keep(em_add(em_mul(em_matmul(q, k), em_scalar(EM_F32, 0.125)), g_mask));
    em_scope_end();
    return y;
}

Test(amx, batched_products_a_broadcast_batch_and_per_head_views_run_on_the_unit_and_match_eager) {
    need_amx();
    use("amx");
    struct {
        int nda, ndb;
        int64_t a[3], b[3];
    } cases[] = {{3, 3, {3, 70, 40}, {3, 40, 50}}, {3, 2, {2, 64, 96}, {96, 33}}, {3, 3, {1, 33, 17}, {4, 17, 64}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_tensor *a = tu_uniform_tensor(cases[i].nda, cases[i].a, -1, 1, 20 + i);
        em_tensor *b = tu_uniform_tensor(cases[i].ndb, cases[i].b, -1, 1, 30 + i);
        char what[64];
        snprintf(what, sizeof what, "batched case %zu", i);
        fn2 fast = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *e = gu_mm(a, b), *g = fast(a, b);
        tu_expect_compiled(g, e, what);
        expect_section((void *)fast, "AMX tiles", true, what);
        em_release(g), em_release(e), em_release(a), em_release(b);
        em_compiled_free((void *)fast);
    }
    em_tensor *qkv = tu_uniform_tensor(2, SH(100, 3 * 128), -1, 1, 40), *none = tu_uniform_tensor(1, SH(1), 0, 1, 41);
    g_mask = tu_uniform_tensor(2, SH(100, 100), -1, 1, 42);
    for (int threads = 1; threads <= 2; threads++) {
        fn2 fast = (fn2)em_compile((void *)head_scores, "tensor(tensor, tensor)", &(em_options){.threads = threads});
        cr_assert(fast, "%s", em_last_error());
        em_tensor *e = head_scores(qkv, none), *g = fast(qkv, none);
        tu_expect_compiled(g, e, "q_h k_h^T / 8 + mask over 4 heads");
        expect_section((void *)fast, "AMX tiles", true, "per-head scores");
        em_release(g), em_release(e);
        em_compiled_free((void *)fast);
    }
    em_set_threads(1);
    em_release(qkv), em_release(none), em_release(g_mask);
    use(NULL);
}

Test(amx, the_cost_model_takes_the_unit_for_block_sized_linears_not_for_64_rows_of_a_wide_one_nor_a_big_A) {
    need_amx();
    use(NULL);
    struct {
        int64_t m, k, n;
        bool amx;
    } cases[] = {{128, 256, 768, true}, {128, 1024, 256, true}, {256, 512, 512, true}, {64, 1024, 4096, false},
                 {16, 16, 16, false}, {512, 512, 512, false}}; /* the last: packed A past half the L2 */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_tensor *x = tu_uniform_tensor(2, SH(cases[i].m, cases[i].k), -1, 1, 9);
        em_tensor *w = tu_uniform_tensor(2, SH(cases[i].n, cases[i].k), -0.1, 0.1, 10);
        fn2 fast = (fn2)em_compile((void *)gu_mm_bt, "tensor(tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *g = fast(x, w), *e = gu_mm_bt(x, w);
        char what[64];
        snprintf(what, sizeof what, "x [%lld x %lld] w^T [%lld]", (long long)cases[i].m, (long long)cases[i].k,
                 (long long)cases[i].n);
        tu_expect_compiled(g, e, what);
        expect_section((void *)fast, "AMX tiles", cases[i].amx, what);
        em_release(g), em_release(e), em_release(x), em_release(w);
        em_compiled_free((void *)fast);
    }
}

Test(amx, by_default_the_fma_kernel_is_generated_beside_the_units_and_both_match_eager_and_the_reference) {
    need_amx();
    use(NULL);
    em_tensor *x = tu_uniform_tensor(2, SH(128, 256), 0, 1, 13), *w = tu_uniform_tensor(2, SH(200, 256), 0, 1, 14);
    em_tensor *e = gu_mm_bt(x, w);
    double *want = reference(1, x, w, 128, 256, 200);
    fn2 fast = (fn2)em_compile((void *)gu_mm_bt, "tensor(tensor, tensor)", &(em_options){.threads = 2});
    cr_assert(fast, "%s", em_last_error());
    for (int call = 0; call < 12; call++) { /* pieces on either kernel, mixed within calls */
        em_tensor *g = fast(x, w);
        tu_expect_compiled(g, e, "two threads");
        em_release(g);
    }
    em_compiled_free((void *)fast);
    fast = (fn2)em_compile((void *)gu_mm_bt, "tensor(tensor, tensor)", &(em_options){.threads = 1});
    cr_assert(fast, "%s", em_last_error());
    cpu_set_t was, one; /* on one core, whose picks the profile shows */
    cr_assert_eq(sched_getaffinity(0, sizeof was, &was), 0);
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    for (int call = 0; call < 4; call++) { /* one piece a call on one thread: the unit's kernel twice, then the
                                               FMAs' twice (pick.c) */
        em_tensor *g = fast(x, w);
        char what[32];
        snprintf(what, sizeof what, "call %d", call);
        tu_expect_compiled(g, e, what);
        double *got = tu_values_of(g);
        int64_t bad = 0;
        for (int64_t i = 0; i < 128 * 200; i++)
            if (!(fabs(got[i] - want[i]) <= 1e-5 + 1e-4 * fabs(want[i]))) bad++;
        cr_expect_eq(bad, 0, "%s: %lld elements off the double reference", what, (long long)bad);
        free(got);
        em_release(g);
    }
    expect_section((void *)fast, "beside it generated GEMM: lanes along n", true, "x w^T, 128 x 256 x 200");
    int st;
    char *prof = cu_dump((void *)fast, "profile", &st);
    char line[64];
    snprintf(line, sizeof line, "core %d: AMX in 2 pieces, FMA in 2;", sched_getcpu() % CG_PICK_CPUS);
    cr_expect(strstr(prof, line), "the first four calls ran each kernel twice: %s", prof);
    cr_assert_eq(sched_setaffinity(0, sizeof was, &was), 0);
    free(prof);
    em_compiled_free((void *)fast);
    use("amx"); /* the unit's kernel alone */
    fast = (fn2)em_compile((void *)gu_mm_bt, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *g = fast(x, w);
    tu_expect_compiled(g, e, "EMBER_GEMM=amx");
    expect_section((void *)fast, "beside it", false, "EMBER_GEMM=amx");
    prof = cu_dump((void *)fast, "profile", &st);
    cr_expect(!strstr(prof, "AMX in"), "one kernel, nothing picked: %s", prof);
    free(prof);
    em_release(g), em_release(e), em_release(x), em_release(w);
    free(want);
    em_compiled_free((void *)fast);
    use(NULL);
}

Test(amx, EMBER_AMX_0_turns_the_unit_off) {
    /* each test is a process of its own: the unit is not probed yet */
    setenv("EMBER_AMX", "0", 1);
    cr_expect(!rt_amx_usable(), "EMBER_AMX=0 leaves the unit off");
    use("amx");
    em_tensor *a = tu_uniform_tensor(2, SH(128, 256), 0, 1, 13), *b = tu_uniform_tensor(2, SH(256, 768), 0, 1, 14);
    fn2 fast = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = gu_mm(a, b), *g = fast(a, b);
    tu_expect_compiled(g, e, "EMBER_AMX=0");
    expect_section((void *)fast, "AMX", false, "EMBER_AMX=0");
    em_release(g), em_release(e), em_release(a), em_release(b);
    em_compiled_free((void *)fast);
    use(NULL);
    unsetenv("EMBER_AMX");
}

Test(amx, a_failed_allocation_of_the_packed_rows_fails_the_call_with_a_message_and_leaves_nothing_behind) {
    need_amx();
    use("amx");
    em_tensor *a = tu_uniform_tensor(2, SH(96, 128), 0, 1, 11), *b = tu_uniform_tensor(2, SH(128, 80), 0, 1, 12);
    em_tensor *want = gu_mm(a, b);
    fn2 fast = (fn2)em_compile((void *)gu_mm, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_release(fast(a, b)); /* compiled; the arena is kept */
    size_t base = tu_live_bytes();
    int failed = 0;
    for (long n = 1; n <= 4; n++) {
        rt_alloc_fail_after(n);
        em_clear_error();
        em_tensor *got = fast(a, b);
        rt_alloc_fail_after(0);
        if (!got) {
            cr_expect_neq(em_last_error()[0], '\0', "n=%ld: NULL without a message", n);
            failed++;
        } else {
            tu_expect_compiled(got, want, "a call past the injected failure");
        }
        em_release(got);
        cr_expect_eq(tu_live_bytes(), base, "n=%ld: bytes left behind", n);
        got = fast(a, b);
        tu_expect_compiled(got, want, "the call after an injected failure");
        em_release(got);
    }
    cr_expect_gt(failed, 0, "an injected failure was hit");
    em_release(want), em_release(a), em_release(b);
    em_compiled_free((void *)fast);
    use(NULL);
}

/* ---- a constant B packed once (kept_util.c) ------------------------------------------------------ */

static size_t amx_kept_bytes(int64_t K, int64_t N) { return (size_t)rt_amx_packed_bytes(N, K); }

Test(amx, a_constant_weight_is_packed_once_by_the_second_call_kept_and_gives_the_bits_of_packing_per_call) {
    need_amx();
    static const ku_case cases[] = {{128, 100, 80, false}, {64, 256, 64, false}, {33, 1000, 17, false}, {96, 70, 100, true}};
    ku_expect_kept_once("amx", cases, 4, amx_kept_bytes, "B per panel of 32 columns");
}

Test(amx, a_weight_passed_as_an_argument_is_packed_per_call_not_kept) {
    need_amx();
    ku_expect_argument_not_kept("amx", "B per panel of 32 columns");
}

Test(amx, a_packed_constant_that_cannot_be_allocated_is_packed_per_call_until_it_can) {
    need_amx();
    ku_expect_kept_after_failed_allocations("amx", amx_kept_bytes);
}
