/*
 * test_codegen_rows.c — generated row kernels (codegen/lower.c cg_lower_row,
 * emit.c's passes) as a user meets them: reductions, softmax, log_softmax and
 * layer_norm along the last axis, with their prologues and epilogues, each one
 * generated loop nest making the passes its anchors need.
 *
 * Row kernels sum in another order than the runtime's row kernels, so their
 * results are compared with eager by the contract's tolerance
 * (tu_expect_compiled); what must not be generated (an argmax: i64) is
 * compared byte for byte. Covered: a reduction with its epilogue; an argmax
 * interpreted; softmax and layer_norm written by hand at five widths; and the
 * regressions a review found (log_softmax's row log, five reductions in one
 * kernel, a prologue of many diamonds, an in-place store before a later pass,
 * one value read per row and along the row of a square space); rows with NaN
 * and inf through softmax, log_softmax, max and min, against eager and (for
 * max and min) a scalar reference; row kernels that read a transposed
 * argument left to the runtime (which copies it dense first), and a prologue
 * over one split off as a blocked pointwise nest.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util.h"
#include "../frontend/compile_util.h"

/* [33,47]: no row is a multiple of the vector width, so every row has a tail. */
static em_tensor *rows_mn(uint64_t seed) { return tu_uniform_tensor(2, SH(33, 47), -4, 4, seed); }

/* exp, a row sum, then a pointwise chain on the [M,1] sums. */
static em_tensor *reduce_then_pointwise(em_tensor *x) {
    em_scope_begin();
    em_tensor *s = em_sum(em_exp(x), -1, 1);
    em_tensor *y = em_keep(em_mul(em_tanh(em_log(s)), em_sigmoid(s)));
    em_scope_end();
    return y;
}

Test(codegen, a_reduction_and_its_epilogue_are_one_generated_row_kernel_close_to_eager) {
    __typeof__(&reduce_then_pointwise) fast = EM_COMPILE(reduce_then_pointwise, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = rows_mn(5);
    em_tensor *want = reduce_then_pointwise(x), *got = fast(x);
    tu_expect_compiled(got, want, "exp, sum, pointwise (the row sums add in another order)");
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    cr_expect_eq(status, 0);
    const char *sec = strstr(d, "; code generation:");
    cr_assert(sec, "%s", d);
    cr_expect(!cu_says_interpreted(sec), "%s", d);
    cr_expect(strstr(sec, "a row kernel (passes along the last loop)"), "%s", d);
    free(d);
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}

/* argmax gives i64: not generated, the kernel says so and runs the runtime's. */
static em_tensor *argmax_of_exp(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_argmax(em_exp(x), -1, 0));
    em_scope_end();
    return y;
}

Test(codegen, an_argmax_is_interpreted_with_a_reason_and_matches_eager) {
    __typeof__(&argmax_of_exp) fast = EM_COMPILE(argmax_of_exp, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = rows_mn(6);
    em_tensor *want = argmax_of_exp(x), *got = fast(x);
    tu_expect_identical(got, want, "argmax");
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    const char *sec = strstr(d, "; code generation:");
    cr_assert(sec, "%s", d);
    cr_expect(strstr(sec, "argmax by its runtime kernel"), "%s", d);
    free(d);
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}


/* softmax and layer_norm written by hand: fusion makes each one row kernel of
 * several passes (max, then sum of exp, then divide; mean, then variance, then
 * normalise), and codegen generates it as one row nest. */
static em_tensor *softmax_by_hand(em_tensor *x) {
    em_scope_begin();
    em_tensor *e = em_exp(em_sub(x, em_max(x, -1, 1)));
    em_tensor *y = em_keep(em_div(e, em_sum(e, -1, 1)));
    em_scope_end();
    return y;
}

static em_tensor *layer_norm_by_hand(em_tensor *x) {
    em_scope_begin();
    em_tensor *d = em_sub(x, em_mean(x, -1, 1));
    em_tensor *var = em_mean(em_mul(d, d), -1, 1);
    em_tensor *y = em_keep(em_mul(d, em_rsqrt(em_add(var, em_scalar(EM_F32, 1e-5)))));
    em_scope_end();
    return y;
}

/* model compiled, on rows x width uniform in [-4, 4], against eager (the
 * contract's tolerance); the compiled function, for the caller to look at and
 * free. what receives "name, rows of width". */
static void *expect_rows_close(em_tensor *(*model)(em_tensor *), const char *name, int64_t rows, int64_t width,
                               uint64_t seed, char *what, size_t cap) {
    em_tensor *(*fast)(em_tensor *) = em_compile((void *)model, "tensor(tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(rows, width), -4, 4, seed);
    em_tensor *want = model(x), *got = fast(x);
    snprintf(what, cap, "%s, rows of %lld", name, (long long)width);
    tu_expect_compiled(got, want, what);
    em_release(got), em_release(want), em_release(x);
    return (void *)fast;
}

Test(codegen, softmax_and_layer_norm_written_by_hand_are_each_one_generated_row_kernel) {
    em_tensor *(*models[])(em_tensor *) = {softmax_by_hand, layer_norm_by_hand};
    const char *names[] = {"softmax by hand", "layer_norm by hand"};
    int64_t widths[] = {1, 15, 16, 129, 1024};
    for (int m = 0; m < 2; m++) {
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
            char what[96];
            void *fast = expect_rows_close(models[m], names[m], 37, widths[w], 10 + (uint64_t)w, what, sizeof what);
            char *sec = cu_codegen_section(fast, what);
            if (widths[w] > 1) /* over an axis of size 1 a reduction is interpreted */
                cr_expect(strstr(sec, "1 steps, 1 generated loop nests") && strstr(sec, "a row kernel"), "%s:\n%s",
                          what, sec);
            free(sec);
            em_compiled_free(fast);
        }
    }
}

/* A row kernel over CG_STREAM_L2S (4) L2s or more of rows prefetches its
 * loads in each row's first pass and says so (the prefetches are in its IR);
 * softmax and layer_norm by hand over 2049 rows of 1024 (8 MiB in, 8 out on a
 * 2 MiB L2) stay close to eager; over 37 rows they do not prefetch. */
Test(codegen, a_row_kernel_over_4_l2s_prefetches_its_loads_and_stays_close_to_eager) {
    setenv("EMBER_PREFETCH", "1", 1); /* AMD's cores before Zen 5 do not prefetch by default */
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    int64_t l2b = l2 > 0 ? l2 : 2 << 20, rows = 4 * l2b / (2 * 4 * 1024) + 1;
    em_tensor *(*models[])(em_tensor *) = {softmax_by_hand, layer_norm_by_hand};
    const char *names[] = {"softmax by hand", "layer_norm by hand"};
    for (int m = 0; m < 2; m++)
        for (int big = 0; big < 2; big++) {
            char what[96];
            void *fast = expect_rows_close(models[m], names[m], big ? rows : 37, 1024, 90 + (uint64_t)m, what, sizeof what);
            char *sec = cu_codegen_section(fast, what);
            cr_expect(!strstr(sec, "prefetched") == !big, "%s, %lld rows:\n%s", what, (long long)(big ? rows : 37), sec);
            free(sec);
            int status;
            char *ir = cu_dump(fast, "llvm", &status);
            cr_expect(ir && !strstr(ir, "@llvm.prefetch") == !big, "%s: prefetches in the IR iff prefetched", what);
            free(ir);
            em_compiled_free(fast);
        }
    unsetenv("EMBER_PREFETCH");
}

static em_tensor *ln_w, *ln_b; /* constants */
static em_tensor *layer_norm_wb(em_tensor *x) { return em_layer_norm(x, ln_w, ln_b, 1e-5); }
static em_tensor *layer_norm_plain(em_tensor *x) { return em_layer_norm(x, NULL, NULL, 1e-5); }

/* Calls of llvm.prefetch in fn's optimised IR. */
static int prefetches(void *fn) {
    int status, n = 0;
    char *ir = cu_dump(fn, "llvm", &status);
    cr_assert(ir);
    for (const char *p = ir; (p = strstr(p, "call void @llvm.prefetch")); p++) n++;
    free(ir);
    return n;
}

/* Only loads that stream are prefetched: a layer_norm's weight and bias, one
 * row read again for every row, add no prefetches to those of its input; with
 * EMBER_PREFETCH=0 nothing is prefetched. (A 16 KiB L2 as far as codegen
 * knows: 64 rows of 1024 are past 4 L2s.) */
Test(codegen, a_row_read_again_for_every_row_is_not_prefetched_and_EMBER_PREFETCH_0_prefetches_nothing) {
    setenv("EMBER_L2_KB", "16", 1);
    ln_w = tu_uniform_tensor(1, SH(1024), -1, 1, 1), ln_b = tu_uniform_tensor(1, SH(1024), -1, 1, 2);
    em_tensor *x = tu_uniform_tensor(2, SH(64, 1024), -4, 4, 3);
    int got[3];
    for (int m = 0; m < 3; m++) {
        setenv("EMBER_PREFETCH", m == 2 ? "0" : "1", 1);
        em_tensor *(*model)(em_tensor *) = m == 1 ? layer_norm_plain : layer_norm_wb;
        em_tensor *(*fast)(em_tensor *) = (em_tensor * (*)(em_tensor *)) em_compile((void *)model, "tensor(tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *y = fast(x), *want = model(x);
        tu_expect_compiled(y, want, m == 1 ? "layer_norm" : "layer_norm with weight and bias");
        got[m] = prefetches((void *)fast);
        em_release(y), em_release(want);
        em_compiled_free((void *)fast);
    }
    cr_expect_gt(got[1], 0, "the input is prefetched");
    cr_expect_eq(got[0], got[1], "with weight and bias %d prefetches, without %d", got[0], got[1]);
    cr_expect_eq(got[2], 0, "EMBER_PREFETCH=0: %d prefetches", got[2]);
    unsetenv("EMBER_PREFETCH"), unsetenv("EMBER_L2_KB");
    em_release(x), em_release(ln_w), em_release(ln_b);
}

/* ---- long rows: sums in blocks ---------------------------------------------------------------- */

static em_tensor *row_sums(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_sum(x, -1, 0));
    em_scope_end();
    return y;
}

/* Rows past 2048 floats sum in blocks of 1024 (emit.c's SUM_BLOCK): exactly two
 * blocks, blocks and a remainder and a tail, many blocks; softmax and
 * layer_norm over such rows too (their sum and variance passes block). */
Test(codegen, rows_of_2048_3001_and_16384_floats_sum_in_blocks_close_to_eager) {
    int64_t widths[] = {2048, 3001, 16384};
    em_tensor *(*models[])(em_tensor *) = {row_sums, softmax_by_hand, layer_norm_by_hand};
    const char *names[] = {"row sums", "softmax by hand", "layer_norm by hand"};
    for (int m = 0; m < 3; m++)
        for (int w = 0; w < 3; w++) {
            char what[96];
            em_compiled_free(expect_rows_close(models[m], names[m], 5, widths[w], 40 + (uint64_t)w, what, sizeof what));
        }
}

/* Sums that cancel (64 rows of 16384 values in [-1, 1]): the generated sums'
 * rms error against double sums stays within 2.5x the runtime's pairwise
 * sums' (1.5x here). With one running set of accumulators along the whole
 * row it was 3.0x on these rows, and 50x on the fuzzer's worst (seed 60003). */
Test(codegen, a_long_row_sum_that_cancels_is_about_as_accurate_as_eager_s_pairwise_sum) {
    em_tensor *(*fast)(em_tensor *) = em_compile((void *)row_sums, "tensor(tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    enum { R = 64, N = 16384 };
    em_tensor *x = tu_uniform_tensor(2, SH(R, N), -1, 1, 7);
    em_tensor *want = row_sums(x), *got = fast(x);
    double *xv = tu_values_of(x), *e = tu_values_of(want), *g = tu_values_of(got);
    double err_e = 0, err_g = 0;
    for (int r = 0; r < R; r++) {
        double ref = 0;
        for (int i = 0; i < N; i++) ref += xv[(size_t)r * N + i];
        err_e += (e[r] - ref) * (e[r] - ref), err_g += (g[r] - ref) * (g[r] - ref);
    }
    err_e = sqrt(err_e / R), err_g = sqrt(err_g / R);
    cr_expect_leq(err_g, 2.5 * err_e, "rms error %.3g generated against %.3g eager", err_g, err_e);
    free(xv), free(e), free(g);
    em_release(got), em_release(want), em_release(x);
    em_compiled_free((void *)fast);
}

/* ---- regressions found in review ---------------------------------------------------------- */

static em_tensor *g_w48;

static em_tensor *log_softmax_of_square(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_log_softmax(em_mul(x, x), -1));
    em_scope_end();
    return y;
}

/* log_softmax's log of the row sum was declared as a vector function: the
 * module failed verification and the whole graph ran interpreted. */
Test(codegen, a_log_softmax_row_kernel_is_generated_and_close_to_eager) {
    __typeof__(&log_softmax_of_square) fast = EM_COMPILE(log_softmax_of_square, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(64, 100), -2, 2, 3);
    em_tensor *want = log_softmax_of_square(x), *got = fast(x);
    tu_expect_compiled(got, want, "log_softmax");
    char *sec = cu_codegen_section(fast, "log_softmax");
    cr_expect(!strstr(sec, "code generation failed") && strstr(sec, "a row kernel"), "%s", sec);
    free(sec);
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}

static em_tensor *five_reductions(em_tensor *x) {
    em_scope_begin();
    em_tensor *e = em_exp(x);
    em_tensor *r = em_add(em_add(em_sum(e, -1, 0), em_max(e, -1, 0)), em_add(em_min(e, -1, 0), em_mean(e, -1, 0)));
    em_tensor *y = em_keep(em_add(r, em_sum(em_mul(e, e), -1, 0)));
    em_scope_end();
    return y;
}

/* Five reductions of one input in one kernel: a row nest holds four, so the
 * fifth used to be left uncomputed (an assertion in the emitter). */
Test(codegen, five_reductions_of_one_input_compile_and_match_eager) {
    __typeof__(&five_reductions) fast = EM_COMPILE(five_reductions, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(64, 100), -1, 1, 4);
    em_tensor *want = five_reductions(x), *got = fast(x);
    tu_expect_compiled(got, want, "five reductions");
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}

static em_tensor *diamonds(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = x;
    for (int i = 0; i < 28; i++) y = em_add(y, em_sin(y));
    em_tensor *r = em_keep(em_sum(y, -1, 0));
    em_scope_end();
    return r;
}

/* A prologue of 28 diamonds (y = y + sin(y)): finding which members come after
 * the reduction used to walk every path, 2^28 of them. */
Test(codegen, a_prologue_of_many_diamonds_compiles_in_linear_time, .timeout = 20) {
    __typeof__(&diamonds) fast = EM_COMPILE(diamonds, "tensor(tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(8, 32), -1, 1, 5);
    em_tensor *want = diamonds(x), *got = fast(x);
    tu_expect_compiled(got, want, "diamonds");
    em_release(got), em_release(want), em_release(x);
    em_compiled_free(fast);
}

static em_tensor *two_pass_in_place(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *u = em_concat((em_tensor *[]){a, b}, 2, 1); /* an arena buffer */
    em_tensor *y = em_mul(u, u);
    em_tensor *m = em_max(y, -1, 1);
    em_tensor *s = em_sum(em_exp(em_sub(y, m)), -1, 1);
    em_tensor *r = em_keep(em_add(em_log(s), em_sum(em_matmul(y, g_w48), -1, 1)));
    em_scope_end();
    return r;
}

/* A row kernel of two passes stored y in pass 1 over its dead input u (in
 * place), and pass 2 recomputed y from the overwritten u. */
Test(codegen, a_value_stored_in_pass_one_does_not_overwrite_what_pass_two_reads) {
    g_w48 = tu_uniform_tensor(2, SH(128, 4), -1, 1, 6);
    __typeof__(&two_pass_in_place) fast = EM_COMPILE(two_pass_in_place, "tensor(tensor, tensor)");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = tu_uniform_tensor(2, SH(64, 64), -2, 2, 7), *b = tu_uniform_tensor(2, SH(64, 64), -2, 2, 8);
    em_tensor *want = two_pass_in_place(a, b), *got = fast(a, b);
    tu_expect_compiled(got, want, "two passes after an in-place store");
    em_release(got), em_release(want), em_release(a), em_release(b), em_release(g_w48);
    em_compiled_free(fast);
}

static void per_row_and_along(em_tensor *x, em_tensor *c, em_tensor **o1, em_tensor **o2) {
    em_scope_begin();
    *o1 = em_keep(em_add(em_sum(x, -1, 0), c)); /* c once per row */
    *o2 = em_keep(em_mul(x, c));                /* c along the row */
    em_scope_end();
}

/* On a square space one value can be read once per row and along the row; one
 * load served both layouts and o2 was wrong. */
Test(codegen, a_value_read_per_row_and_along_the_row_of_a_square_space_matches_eager) {
    void (*fast)(em_tensor *, em_tensor *, em_tensor **, em_tensor **) =
        em_compile((void *)per_row_and_along, "void(tensor, tensor, tensor *, tensor *)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(48, 48), -2, 2, 9), *c = tu_uniform_tensor(1, SH(48), -2, 2, 10);
    em_tensor *w1, *w2, *g1, *g2;
    per_row_and_along(x, c, &w1, &w2);
    fast(x, c, &g1, &g2);
    tu_expect_compiled(g1, w1, "per row");
    tu_expect_compiled(g2, w2, "along the row");
    em_release(w1), em_release(w2), em_release(g1), em_release(g2), em_release(x), em_release(c);
    em_compiled_free((void *)fast);
}

static em_tensor *softmax_rows(em_tensor *x) { return em_softmax(x, -1); }
static em_tensor *log_softmax_rows(em_tensor *x) { return em_log_softmax(x, -1); }

/* [8, L] (L = 47: a tail in every row): row 0 finite; 1 a NaN in the first
 * vector; 2 a NaN in the tail; 3 all NaN; 4 one +inf; 5 all -inf; 6 -inf
 * beside finite values; 7 a NaN and a +inf. */
static em_tensor *rows_with_nonfinite_of(int L) {
    enum { R = 8 };
    double *v = malloc(sizeof *v * R * (size_t)L);
    cr_assert(v);
    for (int i = 0; i < R * L; i++) v[i] = sin(0.37 * i) * 3;
    v[1 * L + 3] = NAN;
    v[2 * L + L - 2] = NAN;
    for (int j = 0; j < L; j++) v[3 * L + j] = NAN, v[5 * L + j] = -INFINITY;
    v[4 * L + 20] = INFINITY;
    v[6 * L + 0] = v[6 * L + 17] = v[6 * L + L - 1] = -INFINITY;
    v[7 * L + 30] = NAN, v[7 * L + 31] = INFINITY;
    em_tensor *t = tu_tensor_of(EM_F32, 2, SH(R, L), v);
    free(v);
    return t;
}
static em_tensor *rows_with_nonfinite(void) { return rows_with_nonfinite_of(47); }

/* fn compiled and called on x beside eager fn: *want and *got, compared by the
 * contract's tolerance; returns the compiled function (the caller frees it). */
typedef em_tensor *(*row_fn)(em_tensor *);
static row_fn compiled_beside_eager(row_fn fn, em_tensor *x, const char *what, em_tensor **want, em_tensor **got) {
    row_fn fast = (row_fn)em_compile((void *)fn, "tensor(tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    *want = fn(x), *got = fast(x);
    cr_assert(*want && *got, "%s", em_last_error());
    tu_expect_compiled(*got, *want, what);
    return fast;
}

/* The generated softmax shifts each row by a max that may drop a NaN (emit.c's
 * RED_SHIFT); the NaN must still reach every output of its row through the
 * sum, as eager (and PyTorch) give. */
Test(codegen, softmax_and_log_softmax_of_rows_with_nan_and_inf_match_eager_nan_for_nan) {
    em_tensor *x = rows_with_nonfinite();
    float in[8 * 47], w[8 * 47];
    cr_assert(em_read(x, in, sizeof in) == 0, "%s", em_last_error());
    for (int which = 0; which < 2; which++) {
        em_tensor *want, *got;
        row_fn fast = compiled_beside_eager(which ? log_softmax_rows : softmax_rows, x, which ? "log_softmax" : "softmax",
                                            &want, &got);
        cr_assert(em_read(want, w, sizeof w) == 0, "%s", em_last_error());
        for (int r = 0; r < 8; r++) {
            bool nan_in = false;
            for (int j = 0; j < 47; j++) nan_in |= isnan(in[r * 47 + j]);
            for (int j = 0; j < 47 && nan_in; j++)
                cr_expect(isnan(w[r * 47 + j]), "row %d has a NaN: eager output %d is %g", r, j, w[r * 47 + j]);
        }
        for (int j = 0; j < 47; j++) cr_expect(isnan(w[5 * 47 + j]), "an all -inf row gives NaN");
        char *sec = cu_codegen_section(fast, which ? "log_softmax" : "softmax");
        cr_expect(strstr(sec, "a row kernel"), "%s", sec);
        free(sec);
        em_release(got), em_release(want);
        em_compiled_free(fast);
    }
    em_release(x);
}

static em_tensor *max_rows(em_tensor *x) { return em_max(x, -1, 0); }
static em_tensor *min_rows(em_tensor *x) { return em_min(x, -1, 0); }

/* Max and min along rows keep a NaN of the row wherever it is (first vector,
 * unrolled steps, tail): x86's maxps or minps, which drops a NaN of v, then
 * a select that takes it (emit.c's x86_extreme), at 16 lanes and at 8
 * (EMBER_CODEGEN=avx2): compiled against eager and against a scalar
 * reference (NaN for a row with one, else the extreme), at widths 47 (a
 * tail) and 300 (the four-accumulator loop, then a tail). */
Test(codegen, max_and_min_along_rows_with_nan_and_inf_match_eager_and_a_scalar_reference) {
    const char *modes[2] = {NULL, "avx2"};
    for (int m = 0; m < 2; m++) {
        if (modes[m]) setenv("EMBER_CODEGEN", modes[m], 1);
        for (int w = 0; w < 2; w++) {
            int L = w ? 300 : 47;
            em_tensor *x = rows_with_nonfinite_of(L);
            float *in = malloc(sizeof *in * 8 * (size_t)L), got_v[8];
            cr_assert(in && em_read(x, in, sizeof *in * 8 * (size_t)L) == 0, "%s", em_last_error());
            for (int which = 0; which < 2; which++) {
                em_tensor *want, *got;
                row_fn fast = compiled_beside_eager(which ? min_rows : max_rows, x, which ? "min" : "max", &want, &got);
                cr_assert(em_read(got, got_v, sizeof got_v) == 0, "%s", em_last_error());
                for (int r = 0; r < 8; r++) {
                    float ref = which ? INFINITY : -INFINITY;
                    bool nan = false;
                    for (int j = 0; j < L; j++) {
                        float v = in[r * L + j];
                        nan |= isnan(v);
                        if (which ? v < ref : v > ref) ref = v;
                    }
                    if (nan) cr_expect(isnan(got_v[r]), "%s row %d (L %d, %s) has a NaN: got %g", which ? "min" : "max", r, L, modes[m] ? modes[m] : "host", got_v[r]);
                    else cr_expect(got_v[r] == ref, "%s row %d (L %d, %s): got %g, want %g", which ? "min" : "max", r, L, modes[m] ? modes[m] : "host", got_v[r], ref);
                }
                if (__builtin_cpu_supports("avx2")) {
                    int status = 0;
                    char *ir = cu_dump((void *)fast, "llvm", &status);
                    bool wide = !modes[m] && __builtin_cpu_supports("avx512f");
                    char want[48];
                    snprintf(want, sizeof want, "llvm.x86.%s.%s.ps.%s", wide ? "avx512" : "avx", which ? "min" : "max", wide ? "512" : "256");
                    cr_expect(ir && strstr(ir, want), "want %s:\n%s", want, ir ? ir : "");
                    free(ir);
                }
                em_release(got), em_release(want);
                em_compiled_free(fast);
            }
            free(in);
            em_release(x);
        }
        unsetenv("EMBER_CODEGEN");
    }
}

/* The generated softmax's exp takes x - max, at most 0, without the clamps of
 * a general exp (emit_ops.c's cg_exp_nonpositive; eager's, runtime/simd.h's
 * rt_exp_nonpositive, likewise), so both are held to it: shifted values far below
 * exp's range (-1e30, -200, -105), at its edge (-104, -103.9) and -inf must
 * come out 0 or their tiny value, as a double-precision softmax gives. Rows of
 * 19 (a tail) and 70 (the unrolled steps and a tail), at 16 lanes and at 8. */
Test(codegen, softmax_and_log_softmax_of_rows_spanning_exp_s_range_match_a_double_reference) {
    static const double pattern[] = {1e30, -1e30, 0, 50, -50, 88, -103.9, -104, -105, -200,
                                     3.5, -INFINITY, -17.25, 104, 1e-30, -1e-30, 7, -90, 2};
    enum { NP = sizeof pattern / sizeof pattern[0] };
    for (int w = 0; w < 4; w++) { /* 16 lanes, then 8 (EMBER_CODEGEN=avx2) */
        if (w == 2) setenv("EMBER_CODEGEN", "avx2", 1);
        int L = w % 2 ? 70 : 19, R = 6;
        double *v = malloc(sizeof *v * (size_t)(R * L));
        cr_assert(v);
        for (int r = 0; r < R; r++) /* row r: the pattern turned by r, scaled down on the later rows */
            for (int j = 0; j < L; j++) v[r * L + j] = pattern[(j + r) % NP] * (r < 3 ? 1.0 : 1.0 / (1 << r));
        em_tensor *x = tu_tensor_of(EM_F32, 2, SH(R, L), v);
        float *in = malloc(sizeof *in * (size_t)(R * L)), *got_v = malloc(sizeof *got_v * (size_t)(R * L));
        cr_assert(in && got_v && em_read(x, in, sizeof *in * (size_t)(R * L)) == 0, "%s", em_last_error());
        for (int which = 0; which < 2; which++) {
            em_tensor *want, *got;
            row_fn fast = compiled_beside_eager(which ? log_softmax_rows : softmax_rows, x, which ? "log_softmax" : "softmax",
                                                &want, &got);
            for (int side = 0; side < 2; side++) /* compiled, then eager (runtime/norm_simd.c) */
            for (int r = 0; r < R; r++) {
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) m = fmax(m, in[r * L + j]);
                for (int j = 0; j < L; j++) sum += exp((double)in[r * L + j] - m);
                if (r == 0) cr_assert(em_read(side ? want : got, got_v, sizeof *got_v * (size_t)(R * L)) == 0, "%s", em_last_error());
                for (int j = 0; j < L; j++) {
                    double d = (double)in[r * L + j] - m;
                    double ref = which ? d - log(sum) : exp(d) / sum;
                    double g = got_v[r * L + j];
                    bool ok = which ? (isinf(ref) ? g == ref : fabs(g - ref) <= 1e-5 * fabs(ref) + 1e-4)
                                    : fabs(g - ref) <= 2e-6 * ref + 1e-30;
                    cr_expect(ok, "%s %s row %d col %d (L %d, x - max %g): got %.9g, want %.9g", side ? "eager" : "compiled",
                              which ? "log_softmax" : "softmax", r, j, L, d, g, ref);
                }
            }
            em_release(got), em_release(want);
            em_compiled_free(fast);
        }
        free(in), free(got_v), free(v);
        em_release(x);
    }
    unsetenv("EMBER_CODEGEN");
}

/* ---- a transposed operand: left to the runtime ------------------------------------------ */

/* softmax and layer_norm (with a weight) of x^T, added. */
static em_tensor *norms_of_transposed(em_tensor *x, em_tensor *w) {
    em_scope_begin();
    em_tensor *t = em_transpose(x, 0, 1);
    em_tensor *y = em_keep(em_add(em_softmax(t, -1), em_layer_norm(t, w, NULL, 1e-5)));
    em_scope_end();
    return y;
}

/* The same of x^T * 2, and its row sums. */
static em_tensor *rows_of_scaled_transposed(em_tensor *x, em_tensor *w) {
    em_scope_begin();
    em_tensor *t = em_mul(em_transpose(x, 0, 1), em_scalar(EM_F32, 2));
    em_tensor *y = em_add(em_add(em_softmax(t, -1), em_layer_norm(t, w, NULL, 1e-5)), em_sum(t, -1, 1));
    em_keep(y);
    em_scope_end();
    return y;
}

/* Compiles model, calls it on x [64, 96] (read as [96, 64]^T) and w [64]; the
 * kernels dump in *dump (malloc'd); the result against eager's. */
static void call_transposed(em_tensor *(*model)(em_tensor *, em_tensor *), bool identical, char **dump) {
    __typeof__(model) fast = (__typeof__(model))em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_uniform_tensor(2, SH(96, 64), -3, 3, 1), *w = tu_uniform_tensor(1, SH(96), -1, 1, 2);
    em_tensor *want = model(x, w), *got = fast(x, w);
    cr_assert(got, "%s", em_last_error());
    if (identical) tu_expect_identical(got, want, "runtime kernels both ways");
    else tu_expect_compiled(got, want, "generated row kernels on the scaled copy");
    int status;
    *dump = cu_dump((void *)fast, "kernels", &status);
    em_release(got), em_release(want), em_release(x), em_release(w);
    em_compiled_free((void *)fast);
}

Test(codegen, row_kernels_reading_a_transposed_argument_are_left_to_the_runtime_with_eager_s_bytes) {
    char *d;
    call_transposed(norms_of_transposed, true, &d);
    /* each norm's row kernel is refused; the add after them is generated */
    cr_expect(strstr(d, "softmax by its runtime kernel") && strstr(d, "layer_norm by its runtime kernel") &&
                  strstr(d, "loops [6144], inner loop vectorised, nodes %5"), "%s", d);
    free(d);
}

Test(codegen, a_prologue_over_a_transposed_argument_is_split_off_as_a_blocked_nest_and_the_rows_generated) {
    char *d;
    call_transposed(rows_of_scaled_transposed, false, &d);
    /* the reduce kernel is refused; its mul becomes a pointwise nest of its own,
     * blocked, and the norms read its dense result in generated row kernels */
    cr_expect(strstr(d, "rows in blocks of 64") && strstr(d, "a row kernel (passes along the last loop), nodes %6*"),
              "%s", d);
    cr_expect(strstr(d, "sum by its runtime kernel"), "%s", d);
    free(d);
}
