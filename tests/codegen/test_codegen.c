/*
 * test_codegen.c — generated code (codegen/lower.c, emit.c, exec.c) as a user
 * meets it: em_compile'd model functions whose pointwise f32 kernels are
 * JIT-compiled into explicit vector loops (<16 x float> with AVX-512, Sleef for
 * the math, a masked tail, gathers for strided operands, splats for broadcast
 * ones, rows split over the thread pool), compared with the eager call of the
 * same model function.
 *
 * The eager path is the reference. The emitter mirrors runtime/ew_simd.c op for
 * op (the same Sleef functions, the same GELU and sigmoid tables and formulas, the same
 * maxps/minps operand order), so every compiled result here is expected to be
 * identical to eager, byte for byte, with the same dtype, shape and strides
 * (expect_same below reports the first differing element and its inputs).
 *
 * Covered:
 *  - every unary op (neg abs relu exp log sqrt rsqrt reciprocal sin cos tanh
 *    erf sigmoid gelu gelu_tanh silu) and binary op (add sub mul div pow
 *    maximum minimum) inside a small fused chain, at sizes 1, 15, 16, 17, 1023
 *    and [64,1024] (no tail, a masked tail only, a full vector, both), on random
 *    values in each op's domain and on special values (NaN, ±inf, ±0, a
 *    denormal, huge values; every pair of them for binary ops), placed at the
 *    start and in the masked tail; the kernels dump says each was generated;
 *  - sigmoid, silu and both GELUs on vectors with and without a far-tail lane
 *    (the two sides of their branch to the exp forms);
 *  - operands that are not dense: a transposed argument (gathered), a stepped
 *    slice made inside the model, [1,N] and [M,1] operands broadcast by an
 *    expand and by numpy rules (splats), a 0-d scalar operand;
 *  - threads: one big kernel split over 1 and over 2 threads gives the same bytes;
 *  - a kernel storing 4 L2s or more streams its stores (non-temporal), over
 *    aligned rows and misaligned ones, with eager's bytes;
 *  - kernels codegen does not generate (i32 elementwise) say "interpreted:
 *    <reason>" in the kernels dump and still match eager (row kernels:
 *    test_codegen_rows.c);
 *    EMBER_CODEGEN=0 (read at each compile) interprets every kernel;
 *  - the llvm dump of an exp chain: host-width vectors and Sleef's function
 *    for the host ISA;
 *  - a new shape and a new stride (transposed argument) recompile and generate
 *    new code; em_compiled_free frees the code and the kept arena.
 *
 * Models open their own scope and em_keep what they return, so they leak
 * nothing whether called eagerly or traced.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h" /* rt_tab_*: where the GELU and sigmoid tables end */
#include "../util.h"
#include "../frontend/compile_util.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

typedef em_tensor *(*unary_fn)(em_tensor *);
typedef em_tensor *(*binary_fn)(em_tensor *, em_tensor *);
typedef em_tensor *(*model1)(em_tensor *);
typedef em_tensor *(*model2)(em_tensor *, em_tensor *);

static uint32_t f_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* How expect_same compares f32 NaNs. */
typedef enum nans {
    NAN_BITS,  /* every byte, NaNs too (sign and payload) */
    NAN_ANY,   /* a NaN matches any NaN; every other element byte for byte */
} nans;

/* got and want equal in dtype, shape, strides and bytes (NaNs as `how` says),
 * as tu_expect_identical checks, but without stopping the test and naming the
 * first differing f32 element (with its inputs x, y when given, both indexed
 * like the result) and how many differ. */
static bool expect_same_as(const em_tensor *got, const em_tensor *want, const float *x, const float *y,
                           nans how, const char *what) {
    cr_assert(want, "%s: the eager call failed: %s", what, em_last_error());
    cr_assert(got, "%s: the compiled call failed: %s", what, em_last_error());
    cr_assert_eq(em_type(got), em_type(want), "%s: dtype %s, eager %s", what,
                 em_dtype_name(em_type(got)), em_dtype_name(em_type(want)));
    cr_assert_eq(em_ndim(got), em_ndim(want), "%s: ndim", what);
    bool ok = true;
    for (int i = 0; i < em_ndim(got); i++) {
        ok &= em_shape(got)[i] == em_shape(want)[i] && em_strides(got)[i] == em_strides(want)[i];
        cr_expect_eq(em_shape(got)[i], em_shape(want)[i], "%s: dim %d", what, i);
        cr_expect_eq(em_strides(got)[i], em_strides(want)[i], "%s: stride %d", what, i);
    }
    size_t n, m;
    unsigned char *a = tu_bytes_of(got, &n), *b = tu_bytes_of(want, &m);
    cr_assert_eq(n, m, "%s: bytes", what);
    if (em_type(got) == EM_F32) {
        const float *g = (const float *)a, *w = (const float *)b;
        size_t first = 0, bad = 0;
        for (size_t i = 0; i < n / 4; i++) {
            bool same = f_to_bits(g[i]) == f_to_bits(w[i]) || (how == NAN_ANY && isnan(g[i]) && isnan(w[i]));
            if (!same && !bad++) first = i;
        }
        if (bad) {
            ok = false;
            char in[96] = "";
            if (x && y) snprintf(in, sizeof in, " (x %a, y %a)", x[first], y[first]);
            else if (x) snprintf(in, sizeof in, " (x %a = %.9g)", x[first], x[first]);
            cr_expect(false, "%s: %zu of %zu elements differ from eager; first at %zu%s: got %a (%.9g, bits %08x), eager %a (%.9g, bits %08x)",
                      what, bad, n / 4, first, in, g[first], g[first], f_to_bits(g[first]), w[first], w[first],
                      f_to_bits(w[first]));
        }
    } else if (memcmp(a, b, n) != 0) {
        ok = false;
        cr_expect(false, "%s: values differ from eager", what);
    }
    free(a);
    free(b);
    return ok;
}

static bool expect_same(const em_tensor *got, const em_tensor *want, const float *x, const float *y,
                        const char *what) {
    return expect_same_as(got, want, x, y, NAN_BITS, what);
}

/* Lines of the section (its header line excepted) that end in "generated". */
static int generated_lines(const char *sec) {
    int n = 0;
    const char *p = strchr(sec, '\n');
    while (p && *++p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), p);
        size_t l = strlen(line); /* "k0 generated", "step 0: generated"; not "... is not generated yet" */
        n += l >= 9 && strcmp(line + l - 9, "generated") == 0;
        p = e;
    }
    return n;
}

/* The kernels dump must say the newest graph is all generated code: a
 * generated line for each kernel at least and nothing interpreted. */
static void expect_all_generated(void *fn, const char *what) {
    char *sec = cu_codegen_section(fn, what);
    int nk = cu_stats_of(fn).kernels;
    cr_expect_geq(generated_lines(sec), nk, "%s: %d kernels, not all generated:\n%s", what, nk, sec);
    cr_expect(!cu_says_interpreted(sec), "%s: something is interpreted:\n%s", what, sec);
    free(sec);
}

static em_tensor *f32_tensor(int nd, const int64_t *shape, const float *v) {
    em_tensor *t = em_from_data(EM_F32, nd, shape, v);
    cr_assert(t, "%s", em_last_error());
    return t;
}

/* Special values: NaN, -NaN, ±inf, ±0, the smallest denormal, ±FLT_MAX,
 * values where exp over- and underflows, ±1, a small negative. */
static const float specials[] = {
    NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.4e-45f, 3.4028235e38f, -3.4028235e38f,
    88.8f, -104.0f, 1.0f, -1.0f, -0.5f, 2.0f, 3.0f,
};
enum { NSPEC = sizeof specials / sizeof specials[0] };

/* n values of an op's domain [lo, hi) from rng, with the special values (for a
 * binary op's operand `which` of 2: every pair) at the start and, reversed, at
 * the end (in the masked tail) when there is room. */
static float *values(tu_rng *rng, int64_t n, double lo, double hi, int which, int nops) {
    float *v = malloc((size_t)n * sizeof *v);
    cr_assert(v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)tu_uniform(rng, lo, hi);
    int64_t ns = nops == 1 ? NSPEC : NSPEC * NSPEC;
    for (int64_t k = 0; k < ns && k < n && n > 1; k++) {
        float s = nops == 1 ? specials[k] : which == 0 ? specials[k / NSPEC] : specials[k % NSPEC];
        v[k] = s;
        if (n >= 2 * ns) v[n - 1 - k] = s;
    }
    return v;
}

/* The shapes every op runs at: one element, less than a vector (a masked tail
 * only), exactly a vector, a vector and one, many vectors and a 15-lane tail,
 * and a big 2-D one (merged into one loop). */
static const struct {
    int nd;
    int64_t shape[2];
} sizes[] = {{1, {1}}, {1, {15}}, {1, {16}}, {1, {17}}, {1, {1023}}, {2, {64, 1024}}};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

/* ---- 1. every unary and binary op in a fused chain --------------------------------------------- */

/* The op under test, read by the models below when they are traced (each op
 * gets a compiled function of its own, made after setting it). */
static unary_fn g_unary;
static binary_fn g_binary;

/* -op(x * 1): three ops in one pointwise kernel. Multiplying by 1 and negating
 * are exact and keep -0.0, infinities and NaN, so the op sees the test's values. */
static em_tensor *unary_chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_neg(g_unary(em_mul(x, em_scalar(EM_F32, 1.0)))));
    em_scope_end();
    return y;
}

static em_tensor *binary_chain(em_tensor *x, em_tensor *y) {
    em_scope_begin();
    em_tensor *r = em_keep(em_neg(g_binary(em_mul(x, em_scalar(EM_F32, 1.0)), y)));
    em_scope_end();
    return r;
}

static const struct {
    const char *name;
    unary_fn fn;
    double lo, hi; /* the domain the random values are drawn from */
} unary_ops[] = {
    {"neg", em_neg, -100, 100},
    {"abs", em_abs, -100, 100},
    {"relu", em_relu, -10, 10},
    {"exp", em_exp, -110, 95},      /* underflow to denormals and 0, overflow to inf */
    {"log", em_log, 1e-6, 1e6},
    {"sqrt", em_sqrt, 0, 1e6},
    {"rsqrt", em_rsqrt, 1e-6, 1e6},
    {"reciprocal", em_reciprocal, -1e3, 1e3},
    {"sin", em_sin, -200, 200},
    {"cos", em_cos, -200, 200},
    {"tanh", em_tanh, -12, 12},
    {"erf", em_erf, -6, 6},
    {"sigmoid", em_sigmoid, -30, 30},
    {"gelu", em_gelu, -12, 12},
    {"gelu_tanh", em_gelu_tanh, -12, 12},
    {"silu", em_silu, -30, 30},
};

static const struct {
    const char *name;
    binary_fn fn;
    double lo, hi, ylo, yhi; /* domains of x and of y */
} binary_ops[] = {
    {"add", em_add, -1e3, 1e3, -1e3, 1e3},
    {"sub", em_sub, -1e3, 1e3, -1e3, 1e3},
    {"mul", em_mul, -1e3, 1e3, -1e3, 1e3},
    {"div", em_div, -1e3, 1e3, -1e3, 1e3},
    {"pow", em_pow, 1e-3, 20, -8, 8},
    {"maximum", em_maximum, -10, 10, -10, 10},
    {"minimum", em_minimum, -10, 10, -10, 10},
};

/* Sizes 15 and 1 are regression cases: see
 * an_inner_loop_shorter_than_a_vector_is_generated and
 * a_one_element_kernel_computes_tanh_with_eager_s_bits. */
Test(codegen, every_unary_op_in_a_chain_is_generated_and_identical_to_eager_at_every_size) {
    for (size_t o = 0; o < sizeof unary_ops / sizeof unary_ops[0]; o++) {
        g_unary = unary_ops[o].fn;
        __typeof__(&unary_chain) fast = EM_COMPILE(unary_chain, "tensor(tensor)");
        cr_assert(fast, "%s", em_last_error());
        tu_rng rng = {1000 + o};
        int compiles = 0;
        for (int s = 0; s < NSIZES; s++) {
            int64_t n = tu_count(sizes[s].nd, sizes[s].shape);
            /* Size 1: one call per special value and a few random ones (guard hits). */
            int calls = n == 1 ? NSPEC + 4 : 1;
            for (int c = 0; c < calls; c++) {
                float *x = values(&rng, n, unary_ops[o].lo, unary_ops[o].hi, 0, 1);
                if (n == 1 && c < NSPEC) x[0] = specials[c];
                em_tensor *xt = f32_tensor(sizes[s].nd, sizes[s].shape, x);
                char what[96];
                snprintf(what, sizeof what, "-%s(x) on %lld elements, call %d", unary_ops[o].name, (long long)n, c);
                em_tensor *want = unary_chain(xt), *got = fast(xt);
                expect_same_as(got, want, x, NULL, NAN_ANY, what);
                if (c == 0) {
                    compiles++;
                    cr_expect_eq(cu_stats_of(fast).compiles, (uint64_t)compiles, "%s: a new shape compiles", what);
                    expect_all_generated(fast, what);
                }
                em_release(got), em_release(want), em_release(xt);
                free(x);
            }
        }
        em_compiled_free(fast);
    }
}

/* Sigmoid and both GELUs are piecewise polynomials with AVX-512 (runtime.h's
 * rt_tabfn), and a vector with a lane in the far negative tail branches to the
 * exp form (rt_tailfn for the GELU) for those lanes. Half the vectors here have no such lane, half have
 * one at a rotating position (just past the table's end, -9.5, the GELU
 * tail's last normal result, -30, -1e30 or -inf);
 * the rest run from the table's low end to one past its high end. Both sides
 * of the branch give eager's bits. */
Test(codegen, sigmoid_and_both_gelus_match_eager_on_both_sides_of_their_far_tail_branch) {
    unary_fn ops[] = {em_sigmoid, em_gelu, em_gelu_tanh, em_silu};
    const char *names[] = {"sigmoid", "gelu", "gelu_tanh", "silu"};
    int64_t n = 4096 + 7; /* and a masked tail */
    float *x = malloc((size_t)n * sizeof *x);
    cr_assert(x);
    tu_rng rng = {77};
    for (int o = 0; o < 4; o++) {
        /* the fast range: [lo, hi) of rt_tab_sigmoid, [-hi, hi] of the GELUs' tables */
        const rt_tabfn *t = o == 0 || o == 3 ? &rt_tab_sigmoid : o == 1 ? &rt_tab_gelu : &rt_tab_gelu_tanh;
        float lo = t->lo == 0 ? -t->hi : t->lo, hi = t->hi;
        float far[6] = {lo - 0.01f, -9.5f, -rt_tail_gelu.end, -30.0f, -1e30f, -INFINITY};
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)tu_uniform(&rng, lo, hi + 1);
            int64_t v = i / 16;
            if (i >= n / 2 && i % 16 == v % 16) x[i] = far[v % 6];
        }
        g_unary = ops[o];
        __typeof__(&unary_chain) fast = EM_COMPILE(unary_chain, "tensor(tensor)");
        cr_assert(fast, "%s", em_last_error());
        em_tensor *xt = f32_tensor(1, &n, x);
        em_tensor *want = unary_chain(xt), *got = fast(xt);
        expect_same_as(got, want, x, NULL, NAN_ANY, names[o]);
        expect_all_generated(fast, names[o]);
        em_release(got), em_release(want), em_release(xt);
        em_compiled_free(fast);
    }
    free(x);
}

/* At 8 lanes (EMBER_CODEGEN=avx2) the GELU is the erfc fit with a branch to
 * rt_tailfn for vectors with a lane below -hi, as eager's AVX2 loop: the
 * compiled neg(gelu(x)) gives the bits of that loop's, negated, for vectors
 * without such a lane and vectors with one at a rotating position (just past
 * -hi, in the middle of the tail, at its last normal result, past it, -inf,
 * and large positive lanes beside them). */
Test(codegen, the_8_lane_gelu_gives_the_bits_of_eager_s_avx2_loop_on_both_sides_of_its_far_tail_branch) {
    const rt_simd *avx2 = rt_simd_for("avx2");
    if (!avx2 || !__builtin_cpu_supports("fma")) cr_skip_test("no AVX2 and FMA on this CPU");
    int64_t n = 4096 + 5; /* and a masked tail */
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    cr_assert(x && y);
    tu_rng rng = {78};
    float hi = rt_tab_gelu.hi, end = rt_tail_gelu.end;
    float far[6] = {nextafterf(-hi, -INFINITY), -9.5f, -end, nextafterf(-end, -INFINITY), -30.0f, -INFINITY};
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)tu_uniform(&rng, -hi, 20);
        int64_t v = i / 8;
        if (i >= n / 2 && i % 8 == v % 8) x[i] = far[v % 6];
    }
    avx2->unary[RT_UNARY_GELU](n, x, y);
    for (int64_t i = 0; i < n; i++) y[i] = -y[i];
    cr_assert_eq(setenv("EMBER_CODEGEN", "avx2", 1), 0);
    g_unary = em_gelu;
    __typeof__(&unary_chain) fast = EM_COMPILE(unary_chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *xt = f32_tensor(1, &n, x), *want = f32_tensor(1, &n, y), *got = fast(xt);
    expect_same_as(got, want, x, NULL, NAN_ANY, "gelu at 8 lanes");
    expect_all_generated(fast, "gelu at 8 lanes");
    int status = 0;
    char *ir = cu_dump((void *)fast, "llvm", &status);
    cr_expect(status == 0 && ir && strstr(ir, "<8 x float>") && !strstr(ir, "<16 x float>"), "not 8-lane code:\n%s", ir ? ir : "");
    free(ir);
    cr_assert_eq(unsetenv("EMBER_CODEGEN"), 0);
    em_release(got), em_release(want), em_release(xt);
    em_compiled_free(fast);
    free(x), free(y);
}

/* Size 15 is a regression case: see an_inner_loop_shorter_than_a_vector_is_generated. */
Test(codegen, every_binary_op_in_a_chain_is_generated_and_identical_to_eager_at_every_size) {
    for (size_t o = 0; o < sizeof binary_ops / sizeof binary_ops[0]; o++) {
        g_binary = binary_ops[o].fn;
        __typeof__(&binary_chain) fast = EM_COMPILE(binary_chain, "tensor(tensor, tensor)");
        cr_assert(fast, "%s", em_last_error());
        tu_rng rng = {2000 + o};
        int compiles = 0;
        for (int s = 0; s < NSIZES; s++) {
            int64_t n = tu_count(sizes[s].nd, sizes[s].shape);
            /* Size 1: one call per pair of special values and a few random ones. */
            int calls = n == 1 ? NSPEC * NSPEC + 4 : 1;
            for (int c = 0; c < calls; c++) {
                float *x = values(&rng, n, binary_ops[o].lo, binary_ops[o].hi, 0, 2);
                float *y = values(&rng, n, binary_ops[o].ylo, binary_ops[o].yhi, 1, 2);
                if (n == 1 && c < NSPEC * NSPEC) x[0] = specials[c / NSPEC], y[0] = specials[c % NSPEC];
                em_tensor *xt = f32_tensor(sizes[s].nd, sizes[s].shape, x);
                em_tensor *yt = f32_tensor(sizes[s].nd, sizes[s].shape, y);
                char what[96];
                snprintf(what, sizeof what, "-%s(x, y) on %lld elements, call %d", binary_ops[o].name,
                         (long long)n, c);
                em_tensor *want = binary_chain(xt, yt), *got = fast(xt, yt);
                expect_same_as(got, want, x, y, NAN_ANY, what);
                if (c == 0) {
                    compiles++;
                    cr_expect_eq(cu_stats_of(fast).compiles, (uint64_t)compiles, "%s: a new shape compiles", what);
                    expect_all_generated(fast, what);
                }
                em_release(got), em_release(want), em_release(xt), em_release(yt);
                free(x), free(y);
            }
        }
        em_compiled_free(fast);
    }
}

/* maximum, minimum and relu on signed zeros and NaN, spelled out: the result
 * eager gives (maxps/minps: the second operand unless the comparison holds,
 * NaN in the first operand propagated) is what generated code gives. */
static em_tensor *zeros_and_nans(em_tensor *x, em_tensor *y) {
    em_scope_begin();
    em_tensor *one = em_scalar(EM_F32, 1.0);
    em_tensor *a = em_mul(x, one), *b = em_mul(y, one);
    em_tensor *r = em_keep(em_concat((em_tensor *[]){em_maximum(a, b), em_minimum(a, b), em_relu(a)}, 3, 0));
    em_scope_end();
    return r;
}

Test(codegen, maximum_minimum_and_relu_keep_eager_s_signed_zeros_and_nans) {
    float x[] = {-0.0f, 0.0f, NAN, 1.0f, -0.0f, NAN, -INFINITY, -2.0f};
    float y[] = {0.0f, -0.0f, 1.0f, NAN, -0.0f, NAN, INFINITY, -0.0f};
    enum { NZ = 8 };
    em_tensor *xt = f32_tensor(1, SH(NZ), x), *yt = f32_tensor(1, SH(NZ), y);
    __typeof__(&zeros_and_nans) fast = EM_COMPILE(zeros_and_nans, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *want = zeros_and_nans(xt, yt), *got = fast(xt, yt);
    expect_same(got, want, NULL, NULL, "max/min/relu of zeros and NaN");
    float g[3 * NZ];
    cr_assert_eq(em_read(got, g, sizeof g), 0);
    /* maximum(-0, 0) = 0, maximum(0, -0) = -0 (the second operand), NaN either side is NaN. */
    cr_expect_eq(f_to_bits(g[0]), f_to_bits(0.0f));
    cr_expect_eq(f_to_bits(g[1]), f_to_bits(-0.0f));
    cr_expect(isnan(g[2]) && isnan(g[3]) && isnan(g[5]));
    cr_expect_eq(g[6], INFINITY);
    /* minimum(-0, 0) = 0, minimum(0, -0) = -0: the second operand too. */
    cr_expect_eq(f_to_bits(g[NZ + 0]), f_to_bits(0.0f));
    cr_expect_eq(f_to_bits(g[NZ + 1]), f_to_bits(-0.0f));
    cr_expect(isnan(g[NZ + 2]) && isnan(g[NZ + 3]));
    /* relu(-0) = -0 (maxps(0, x) returns x), relu(NaN) = NaN, relu(-inf) = 0. */
    cr_expect_eq(f_to_bits(g[2 * NZ + 0]), f_to_bits(-0.0f));
    cr_expect(isnan(g[2 * NZ + 2]));
    cr_expect_eq(f_to_bits(g[2 * NZ + 6]), f_to_bits(0.0f));
    em_release(got), em_release(want), em_release(xt), em_release(yt);
    em_compiled_free(fast);
}

/* ---- 2. operands that are not dense ----------------------------------------------------------- */

/* A chain over two operands of one shape: exp, gelu, mul, add, sigmoid. */
static em_tensor *mix(em_tensor *a, em_tensor *b) {
    return em_add(em_mul(em_gelu(a), em_sigmoid(b)), em_exp(em_mul(a, em_scalar(EM_F32, 0.25))));
}

static em_tensor *mix_model(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(mix(a, b));
    em_scope_end();
    return y;
}

/* Compiles model, calls it once, expects every kernel generated and the result
 * identical to eager; then calls it again on new data (a guard hit). */
static void expect_model2(model2 model, em_tensor *(*make_a)(uint64_t), em_tensor *(*make_b)(uint64_t),
                          const char *sig_what) {
    model2 fast = (model2)em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    for (uint64_t call = 0; call < 2; call++) {
        em_tensor *a = make_a(10 + call), *b = make_b(20 + call);
        char what[96];
        snprintf(what, sizeof what, "%s, call %d", sig_what, (int)call);
        em_tensor *want = model(a, b), *got = fast(a, b);
        expect_same(got, want, NULL, NULL, what);
        if (call == 0) expect_all_generated((void *)fast, what);
        em_release(got), em_release(want), em_release(a), em_release(b);
    }
    EXPECT_STATS((void *)fast, 2, 1, 1, 0);
    em_compiled_free((void *)fast);
}

enum { M = 33, N = 47 }; /* neither a multiple of 16: every row has a masked tail */

static em_tensor *dense_mn(uint64_t seed) { return tu_uniform_tensor(2, SH(M, N), -4, 4, seed); }
static em_tensor *transposed_mn(uint64_t seed) {
    return tu_transposed(tu_uniform_tensor(2, SH(N, M), -4, 4, seed), 0, 1);
}

Test(codegen, a_transposed_argument_is_gathered_and_identical_to_eager) {
    em_tensor *t = transposed_mn(1);
    cr_assert(!em_is_contiguous(t));
    em_release(t);
    expect_model2(mix_model, transposed_mn, dense_mn, "a transposed");
    expect_model2(mix_model, dense_mn, transposed_mn, "b transposed");
    expect_model2(mix_model, transposed_mn, transposed_mn, "both transposed");
}

Test(codegen, the_kernels_dump_of_a_transposed_argument_shows_a_strided_inner_load) {
    __typeof__(&mix_model) fast = EM_COMPILE(mix_model, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = transposed_mn(1), *b = dense_mn(2);
    em_tensor *got = fast(a, b);
    cr_assert(got, "%s", em_last_error());
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    char want[64];
    snprintf(want, sizeof want, "at 0 + [1, %d]", M); /* a transposed [M,N]: rows step 1, columns M */
    cr_expect(strstr(d, "loops [33, 47], inner loop vectorised"), "%s", d);
    cr_expect(strstr(d, want), "want a load %s:\n%s", want, d);
    free(d);
    char *ir = cu_dump(fast, "llvm", &status);
    cr_expect(strstr(ir, "llvm.masked.gather"), "a strided operand is gathered:\n%s", ir);
    free(ir);
    em_release(got), em_release(a), em_release(b);
    em_compiled_free(fast);
}

/* Every other column of x, from 1: a stepped slice made inside the model. */
static em_tensor *stepped_slice(em_tensor *x, em_tensor *y) {
    em_scope_begin();
    em_tensor *r = em_keep(mix(em_slice(x, 1, 1, 2 * N + 1, 2), y));
    em_scope_end();
    return r;
}

static em_tensor *wide_mn(uint64_t seed) { return tu_uniform_tensor(2, SH(M, 2 * N + 3), -4, 4, seed); }

Test(codegen, a_stepped_slice_inside_the_model_is_read_with_its_step_and_identical_to_eager) {
    expect_model2(stepped_slice, wide_mn, dense_mn, "x[:, 1::2]");
    /* The slice's step is in the generated loads. */
    __typeof__(&stepped_slice) fast = EM_COMPILE(stepped_slice, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = wide_mn(3), *b = dense_mn(4), *got = fast(a, b);
    cr_assert(got, "%s", em_last_error());
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    char want[64];
    snprintf(want, sizeof want, "at 1 + [%d, 2]", 2 * N + 3);
    cr_expect(strstr(d, want), "want a load %s:\n%s", want, d);
    free(d);
    em_release(got), em_release(a), em_release(b);
    em_compiled_free(fast);
}

/* A row [1,N] expanded to [M,N] with em_expand and a column [M,1] broadcast by
 * numpy rules: splats of one value per row and stride-0 rows. */
static em_tensor *broadcasts(em_tensor *x, em_tensor *row, em_tensor *col) {
    em_scope_begin();
    em_tensor *r = em_expand(row, 2, SH(M, N));
    em_tensor *y = em_keep(em_add(mix(x, r), em_mul(em_tanh(col), x)));
    em_scope_end();
    return y;
}

Test(codegen, expanded_and_broadcast_rows_and_columns_are_identical_to_eager) {
    __typeof__(&broadcasts) fast = EM_COMPILE(broadcasts, "tensor(tensor, tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    for (uint64_t call = 0; call < 2; call++) {
        em_tensor *x = dense_mn(30 + call);
        em_tensor *row = tu_uniform_tensor(2, SH(1, N), -3, 3, 40 + call);
        em_tensor *col = tu_uniform_tensor(2, SH(M, 1), -3, 3, 50 + call);
        em_tensor *want = broadcasts(x, row, col), *got = fast(x, row, col);
        expect_same(got, want, NULL, NULL, "x + [1,N] expanded, [M,1] broadcast");
        em_release(got), em_release(want), em_release(x), em_release(row), em_release(col);
    }
    expect_all_generated(fast, "broadcasts");
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    cr_expect(strstr(d, "+ [0, 1]"), "the row is read with stride 0 across rows:\n%s", d);
    cr_expect(strstr(d, "+ [1, 0]"), "the column is read with stride 0 along a row (a splat):\n%s", d);
    free(d);
    EXPECT_STATS(fast, 2, 1, 1, 0);
    em_compiled_free(fast);
}

/* A pointwise kernel whose output is CG_STREAM_L2S (4) L2s or more stores
 * non-temporally and prefetches its loads, and says so in the kernels dump
 * (the prefetches are in its IR); rows that start on a vector boundary take
 * the non-temporal loop, the others the cached one. Rows of 2048 (dense: all
 * aligned) and of 2049 (a row broadcast keeps the rows apart; every other row
 * starts misaligned), each with as many rows as make the output just over 4
 * L2s, give eager's bits; a small output neither streams nor prefetches. */
Test(codegen, a_pointwise_kernel_storing_4_l2s_streams_its_stores_and_prefetches_and_stays_identical_to_eager) {
    setenv("EMBER_PREFETCH", "1", 1); /* AMD's cores before Zen 5 do not prefetch by default */
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    int64_t l2b = l2 > 0 ? l2 : 2 << 20;
    for (int k = 0; k < 2; k++) {
        int64_t L = k == 0 ? 2048 : 2049, R = 4 * l2b / (4 * L) + 1;
        em_tensor *a = tu_uniform_tensor(2, SH(R, L), -4, 4, 60 + k);
        em_tensor *b = tu_uniform_tensor(2, k == 0 ? SH(R, L) : SH(1, L), -4, 4, 70 + k);
        model2 fast = (model2)em_compile((void *)mix_model, "tensor(tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *want = mix_model(a, b), *got = fast(a, b);
        expect_same(got, want, NULL, NULL, k == 0 ? "rows of 2048" : "rows of 2049");
        expect_all_generated((void *)fast, "a big pointwise kernel");
        int status;
        char *d = cu_dump((void *)fast, "kernels", &status);
        cr_expect(strstr(d, "non-temporal stores"), "a %lld x %lld output streams:\n%s", (long long)R, (long long)L, d);
        cr_expect(strstr(d, "loads prefetched 2048 bytes ahead"), "a %lld x %lld kernel prefetches:\n%s", (long long)R,
                  (long long)L, d);
        free(d);
        char *ir = cu_dump((void *)fast, "llvm", &status);
        cr_expect(ir && strstr(ir, "@llvm.prefetch"), "the prefetches are in the IR");
        free(ir);
        em_release(got), em_release(want), em_release(a), em_release(b);
        em_compiled_free((void *)fast);
    }
    model2 small = (model2)em_compile((void *)mix_model, "tensor(tensor, tensor)", NULL);
    em_tensor *a = dense_mn(1), *b = dense_mn(2);
    em_release(small(a, b));
    int status;
    char *d = cu_dump((void *)small, "kernels", &status);
    cr_expect(d && !strstr(d, "non-temporal") && !strstr(d, "prefetched"), "a %d x %d output stays cached:\n%s", M, N, d);
    free(d);
    em_release(a), em_release(b);
    em_compiled_free((void *)small);
    unsetenv("EMBER_PREFETCH");
}

/* A 0-d scalar argument and a 0-d constant. */
static em_tensor *with_scalar(em_tensor *x, em_tensor *s) {
    em_scope_begin();
    em_tensor *y = em_keep(em_sub(em_mul(em_exp(em_mul(x, s)), s), em_scalar(EM_F32, 0.5)));
    em_scope_end();
    return y;
}

static em_tensor *scalar_of(uint64_t seed) { return em_scalar(EM_F32, 0.375 + 0.25 * (double)seed); }

Test(codegen, a_0_d_scalar_operand_is_splatted_and_identical_to_eager) {
    expect_model2(with_scalar, dense_mn, scalar_of, "x * 0-d scalar");
    em_tensor *s = scalar_of(0);
    cr_assert_eq(em_ndim(s), 0);
    em_release(s);
}

/* Only 0-d values: the iteration space is one point. */
static em_tensor *scalars_only(em_tensor *s, em_tensor *t) {
    em_scope_begin();
    em_tensor *y = em_keep(mix(s, t));
    em_scope_end();
    return y;
}

Test(codegen, a_kernel_over_0_d_values_only_is_identical_to_eager) {
    expect_model2(scalars_only, scalar_of, scalar_of, "0-d only");
}

/* ---- 3. threads ---------------------------------------------------------------------------------- */

enum { BIG_M = 512, BIG_N = 1024 };

/* Over [512,1024] with a [512,1] column: 512 rows of a 2-D loop nest, split
 * over the pool. */
static em_tensor *big(em_tensor *x, em_tensor *col) {
    em_scope_begin();
    em_tensor *y = em_keep(em_add(mix(x, col), em_silu(em_mul(x, col))));
    em_scope_end();
    return y;
}

Test(codegen, one_big_kernel_gives_the_same_bytes_on_one_thread_and_on_two, .timeout = 120) {
    int saved = em_get_threads();
    em_tensor *x = tu_uniform_tensor(2, SH(BIG_M, BIG_N), -5, 5, 7);
    em_tensor *col = tu_uniform_tensor(2, SH(BIG_M, 1), -2, 2, 8);
    em_tensor *xt = tu_transposed(tu_uniform_tensor(2, SH(BIG_N, BIG_M), -5, 5, 9), 0, 1);
    em_tensor *want = big(x, col), *want_t = big(xt, col);
    __typeof__(&big) fast = EM_COMPILE(big, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *got[2][2];
    for (int th = 1; th <= 2; th++) {
        cr_assert_eq(em_set_threads(th), 0, "%s", em_last_error());
        cr_assert_eq(em_get_threads(), th);
        got[th - 1][0] = fast(x, col);
        got[th - 1][1] = fast(xt, col);
        char what[64];
        snprintf(what, sizeof what, "%d thread(s)", th);
        expect_same(got[th - 1][0], want, NULL, NULL, what);
        snprintf(what, sizeof what, "%d thread(s), x transposed", th);
        expect_same(got[th - 1][1], want_t, NULL, NULL, what);
    }
    expect_same(got[1][0], got[0][0], NULL, NULL, "two threads vs one");
    expect_same(got[1][1], got[0][1], NULL, NULL, "two threads vs one, x transposed");
    expect_all_generated(fast, "big");
    EXPECT_STATS(fast, 4, 2, 2, 0); /* contiguous and transposed x: two graphs */
    cr_assert_eq(em_set_threads(saved), 0);
    cr_expect_eq(em_get_threads(), saved);
    for (int i = 0; i < 2; i++) em_release(got[i][0]), em_release(got[i][1]);
    em_release(want), em_release(want_t), em_release(x), em_release(xt), em_release(col);
    em_compiled_free(fast);
}

/* ---- 4, 5. what is interpreted ------------------------------------------------------------------ */

/* i32 elementwise: x * x + x - 3. */
static em_tensor *int_chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_sub(em_add(em_mul(x, x), x), em_scalar(EM_I32, 3)));
    em_scope_end();
    return y;
}

Test(codegen, an_i32_elementwise_kernel_is_interpreted_with_a_reason_and_matches_eager) {
    __typeof__(&int_chain) fast = EM_COMPILE(int_chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_ints(EM_I32, 2, SH(M, N), 101, -50);
    em_tensor *want = int_chain(x), *got = fast(x);
    expect_same(got, want, NULL, NULL, "i32 chain");
    cr_expect_eq(em_type(got), EM_I32);
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    cr_expect_eq(status, 0);
    const char *sec = strstr(d, "; code generation:");
    cr_assert(sec, "%s", d);
    cr_expect_eq(generated_lines(sec), 0, "%s", d);
    cr_expect(cu_says_interpreted(sec), "%s", d);
    cr_expect(strstr(sec, "interpreted: %"), "the reason names the node:\n%s", d);
    cr_expect(strstr(sec, "i32 mul is not generated yet"), "the reason names the op and dtype:\n%s", d);
    free(d);
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}

Test(codegen, ember_codegen_0_interprets_every_kernel_and_results_still_match) {
    cr_assert_eq(setenv("EMBER_CODEGEN", "0", 1), 0);
    __typeof__(&mix_model) fast = EM_COMPILE(mix_model, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = transposed_mn(1), *b = dense_mn(2);
    em_tensor *want = mix_model(a, b), *got = fast(a, b); /* compiles now, with the variable set */
    cr_assert_eq(unsetenv("EMBER_CODEGEN"), 0);
    expect_same(got, want, NULL, NULL, "EMBER_CODEGEN=0");
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    int nk = cu_stats_of(fast).kernels;
    cr_expect_geq(nk, 1);
    const char *sec = strstr(d, "; code generation:");
    cr_assert(sec, "%s", d);
    cr_expect_eq(generated_lines(sec), 0, "%s", d);
    cr_expect(cu_says_interpreted(sec), "%s", d);
    free(d);
    char *ir = cu_dump(fast, "llvm", &status);
    cr_expect(!strstr(ir, "define "), "no code was generated:\n%s", ir);
    free(ir);
    em_release(got), em_release(want);
    /* The variable is read at each compile: a new shape, compiled without it, is generated. */
    em_tensor *a2 = dense_mn(3), *b2 = dense_mn(4);
    want = mix_model(a2, b2), got = fast(a2, b2);
    expect_same(got, want, NULL, NULL, "after unsetenv");
    EXPECT_STATS(fast, 2, 2, 2, 0);
    expect_all_generated(fast, "after unsetenv");
    em_release(got), em_release(want), em_release(a2), em_release(b2), em_release(a), em_release(b);
    em_compiled_free(fast);
}

/* ---- 6. the llvm dump --------------------------------------------------------------------------- */

static em_tensor *exp_chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_exp(em_add(x, x)), x));
    em_scope_end();
    return y;
}

/* exp is runtime/simd.h's V_EXP written inline: no call, and on AVX-512 one vscalefps. */
Test(codegen, the_llvm_dump_of_an_exp_chain_has_host_width_vectors_and_an_inline_exp) {
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f");
    const char *vec = avx512 ? "<16 x float>" : "<8 x float>";
    const char *fn = avx512 ? "@llvm.x86.avx512.mask.scalef.ps.512" : "@llvm.x86.avx.cvtt.ps2dq.256";
    __typeof__(&exp_chain) fast = EM_COMPILE(exp_chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(1, SH(1023), -10, 10, 3);
    em_tensor *want = exp_chain(x), *got = fast(x);
    expect_same(got, want, NULL, NULL, "exp chain");
    int status;
    char *ir = cu_dump(fast, "llvm", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(ir, vec), "want %s:\n%s", vec, ir);
    cr_expect(strstr(ir, fn), "want %s:\n%s", fn, ir);
    cr_expect(!strstr(ir, "Sleef_"), "exp is inline, not Sleef's:\n%s", ir);
    cr_expect(strstr(ir, "call void @llvm.masked.store"), "1023 has a masked tail:\n%s", ir);
    free(ir);
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}

/* ---- 7. recompiles and freeing ------------------------------------------------------------------- */

/* The name of the newest graph's generated unit ("ModuleID = '...'") */
static char *module_id(void *fn) {
    int status;
    char *ir = cu_dump(fn, "llvm", &status);
    const char *p = strstr(ir, "ModuleID = '");
    cr_assert(p, "%s", ir);
    p += strlen("ModuleID = '");
    char *id = strndup(p, strcspn(p, "'"));
    free(ir);
    return id;
}

Test(codegen, a_new_shape_and_a_new_stride_generate_new_code_and_stay_identical_to_eager) {
    size_t live0 = tu_live_bytes();
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x1 = dense_mn(1);
    em_tensor *x2 = tu_uniform_tensor(2, SH(20, 16), -4, 4, 2);
    em_tensor *x3 = transposed_mn(3);
    em_tensor *xs[] = {x1, x2, x3, x1, x3};
    const char *names[] = {"[33,47]", "[20,16]", "[33,47] transposed", "[33,47] again", "transposed again"};
    const int compiles[] = {1, 2, 3, 3, 3};
    char *ids[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 5; i++) {
        em_tensor *want = chain(xs[i]), *got = fast(xs[i]);
        expect_same(got, want, NULL, NULL, names[i]);
        em_release(got), em_release(want);
        cr_expect_eq(cu_stats_of(fast).compiles, (uint64_t)compiles[i], "%s", names[i]);
        if (i < 3) {
            expect_all_generated(fast, names[i]);
            ids[i] = module_id(fast);
        }
    }
    cr_expect_str_neq(ids[0], ids[1], "a new shape: a new unit");
    cr_expect_str_neq(ids[1], ids[2], "a new stride: a new unit");
    cr_expect_str_neq(ids[0], ids[2]);
    int status;
    char *ir = cu_dump(fast, "llvm", &status);
    cr_expect(strstr(ir, "llvm.masked.gather"), "the transposed argument's code gathers:\n%s", ir);
    free(ir);
    char *d = cu_dump(fast, "kernels", &status);
    cr_expect(strstr(d, "loops [33, 47]"), "%s", d);
    free(d);
    EXPECT_STATS(fast, 5, 3, 3, 0);
    for (int i = 0; i < 3; i++) free(ids[i]);
    em_release(x1), em_release(x2), em_release(x3);
    em_compiled_free(fast);
    cr_expect_eq(tu_live_bytes(), live0, "em_compiled_free frees the kept arenas");
}

Test(codegen, the_shape_dump_after_a_new_shape_shows_the_new_loops) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x1 = tu_uniform_tensor(1, SH(17), -4, 4, 1), *x2 = tu_uniform_tensor(2, SH(20, 16), -4, 4, 2);
    em_tensor *g1 = fast(x1);
    int status;
    char *d1 = cu_dump(fast, "kernels", &status);
    em_tensor *g2 = fast(x2);
    char *d2 = cu_dump(fast, "kernels", &status);
    cr_expect(strstr(d1, "loops [17], inner loop vectorised"), "%s", d1);
    cr_expect(strstr(d2, "loops [320], inner loop vectorised"), "[20,16] dense: one merged loop:\n%s", d2);
    free(d1), free(d2);
    em_release(g1), em_release(g2), em_release(x1), em_release(x2);
    em_compiled_free(fast);
}

Test(codegen, many_compiled_functions_come_and_go_without_leaking) {
    size_t live0 = tu_live_bytes();
    for (int i = 0; i < 40; i++) {
        __typeof__(&mix_model) fast = EM_COMPILE(mix_model, "tensor(tensor, tensor)");
        cr_assert(fast, "%s", em_last_error());
        em_tensor *a = i % 2 ? transposed_mn((uint64_t)i) : dense_mn((uint64_t)i), *b = dense_mn(100);
        em_tensor *want = mix_model(a, b), *got = fast(a, b);
        expect_same(got, want, NULL, NULL, "come and go");
        em_release(got), em_release(want), em_release(a), em_release(b);
        em_compiled_free(fast);
    }
    cr_expect_eq(tu_live_bytes(), live0);
}

/* ---- bugs found ------------------------------------------------------------------------------------ */

/* Regression: a loop nest whose inner loop is shorter than the vector width
 * (15 f32 with AVX-512: a [15], [7] or [3,1] space) used to fail LLVM
 * verification (an unreachable inner-loop block kept a phi entry for a
 * predecessor that no longer branched to it), and every loop nest of the
 * graph then fell back to the interpreter. */
static em_tensor *narrow(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_exp(x), em_sigmoid(x)));
    em_scope_end();
    return y;
}

Test(codegen, an_inner_loop_shorter_than_a_vector_is_generated) {
    static const struct {
        int nd;
        int64_t shape[2];
    } shapes[] = {{1, {15}}, {2, {40, 15}}, {1, {7}}, {2, {3, 1}}};
    for (int s = 0; s < 4; s++) {
        __typeof__(&narrow) fast = EM_COMPILE(narrow, "tensor(tensor)");
        cr_assert(fast, "%s", em_last_error());
        em_tensor *x = tu_uniform_tensor(shapes[s].nd, shapes[s].shape, -3, 3, (uint64_t)s);
        em_tensor *want = narrow(x), *got = fast(x);
        char what[64];
        snprintf(what, sizeof what, "exp(x) * sigmoid(x) on %lld elements", (long long)em_numel(x));
        expect_same(got, want, NULL, NULL, what);
        expect_all_generated(fast, what);
        em_release(got), em_release(want), em_release(x);
        em_compiled_free(fast);
    }
}

/* Two kernels in one graph: a [64,1024] one and a [15] one (the sum between
 * them keeps them apart). One emitted unit per graph: a failure in one loop
 * nest would cost the big kernel its generated code too (it used to). */
static em_tensor *big_and_narrow(em_tensor *x, em_tensor *v) {
    em_scope_begin();
    em_tensor *a = em_sum(em_tanh(x), -1, 0); /* [64] */
    em_tensor *b = em_mul(em_exp(v), em_sigmoid(v)); /* [15] */
    em_tensor *y = em_keep(em_add(em_sum(a, 0, 0), em_sum(b, 0, 0)));
    em_scope_end();
    return y;
}

Test(codegen, a_short_kernel_does_not_stop_another_kernel_of_the_graph_from_being_generated) {
    __typeof__(&big_and_narrow) fast = EM_COMPILE(big_and_narrow, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(64, 1024), -3, 3, 1), *v = tu_uniform_tensor(1, SH(15), -3, 3, 2);
    em_tensor *want = big_and_narrow(x, v), *got = fast(x, v);
    tu_expect_compiled(got, want, "big and narrow (generated row sums add in another order)");
    char *sec = cu_codegen_section(fast, "big and narrow");
    cr_expect(!strstr(sec, "code generation failed"), "%s", sec);
    cr_expect(strstr(sec, "loops [65536]") || strstr(sec, "loops [64, 1024]") || strstr(sec, "loops [4, 16384]"), "the tanh over [64,1024] is generated:\n%s", sec);
    free(sec);
    em_release(got), em_release(want), em_release(x), em_release(v);
    em_compiled_free(fast);
}

/* Regression: a loop nest of one element (a [1] or 0-d space) used to get
 * width 1 and call Sleef's scalar functions, which are not bit-identical to
 * the vector code eager uses: tanh(-8.99917412f) (0x1.1ff93cp+3) was -0x1p+0
 * eagerly (Sleef's AVX-512 tanh) and -0x1.fffffep-1 compiled. It is now one
 * masked vector step; eager is now ember's inline tanh, which gives the
 * correctly rounded -0x1.fffffep-1, and compiled the same bits. */
static em_tensor *neg_tanh(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_neg(em_tanh(em_mul(x, em_scalar(EM_F32, 1.0)))));
    em_scope_end();
    return y;
}

Test(codegen, a_one_element_kernel_computes_tanh_with_eager_s_bits) {
    float v = -0x1.1ff93cp+3f;
    __typeof__(&neg_tanh) fast = EM_COMPILE(neg_tanh, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    for (int nd = 0; nd <= 1; nd++) { /* [1] and 0-d: separate graphs */
        em_tensor *x = f32_tensor(nd, SH(1), &v);
        em_tensor *want = neg_tanh(x), *got = fast(x);
        expect_same(got, want, &v, NULL, nd ? "-tanh(x) on [1]" : "-tanh(x) on 0-d");
        cr_expect_eq(em_item(want), 0x1.fffffep-1, "eager: tanh is correctly rounded here");
        em_release(got), em_release(want), em_release(x);
    }
    em_compiled_free(fast);
}

/* NaN bits: where an op's result is NaN, compiled and eager may differ in the
 * NaN's sign bit (LLVM may rewrite fneg(fmul(a, b)) as fmul(a, fneg b) or
 * commute operands, which picks the other NaN; the sanitizer build compiles
 * the eager kernels differently too). IEEE 754 leaves a NaN's sign unspecified
 * and the contract compares values, so the sweeps above compare NaNs as equal
 * (NAN_ANY), and this test checks that a NaN stays a NaN. */
Test(codegen, nan_results_stay_nan) {
    g_binary = em_mul;
    __typeof__(&binary_chain) fast = EM_COMPILE(binary_chain, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    float x[] = {NAN, NAN, -NAN, NAN}, y[] = {INFINITY, 2.0f, 2.0f, -NAN};
    for (int i = 0; i < 4; i++) {
        em_tensor *xt = f32_tensor(1, SH(1), &x[i]), *yt = f32_tensor(1, SH(1), &y[i]);
        em_tensor *want = binary_chain(xt, yt), *got = fast(xt, yt);
        float a = 0, b = 0;
        cr_assert(got && want, "%s", em_last_error());
        em_read(want, &a, 4), em_read(got, &b, 4);
        cr_expect(isnan(a) && isnan(b), "-(x * y), x %08x, y %08x: eager %g, compiled %g", f_to_bits(x[i]),
                  f_to_bits(y[i]), a, b);
        em_release(got), em_release(want), em_release(xt), em_release(yt);
    }
    em_compiled_free(fast);
}
