/*
 * test_codegen_tiled.c — pointwise nests that read a transposed operand take
 * their rows in blocks (codegen/lower.c's tile_transposed), suite `tiled`.
 *
 * A load gathered along the inner loop but contiguous along the rows turns
 * [..., R, L] into [..., R / T, L / 16, T, 16], T the largest power of two up
 * to 256 dividing R. Covered, each result byte for byte against eager:
 *  - the three block sizes (16, 64, 256), a transposed operand beside a dense
 *    one and two transposed ones, on one thread and two (one split inside a
 *    block);
 *  - a permuted 3-D argument (the batch loop stays outside the blocks) with a
 *    per-row operand broadcast along the columns;
 *  - the shapes that keep their loops: rows not in 16s, columns not in 16s,
 *    columns no longer than one chunk;
 *  - 8-lane code (EMBER_CODEGEN=avx2): two vectors a chunk;
 *  - a transposed copy with nothing else in its kernel is left to the
 *    runtime's transpose, which is faster than any gather.
 * The kernels dump says which: "rows in blocks of T" and the new loops.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "../frontend/compile_util.h"

typedef em_tensor *(*model2)(em_tensor *, em_tensor *);

/* exp, gelu, sigmoid, mul and add: eager's math in the nest, bit for bit. */
static em_tensor *mix(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_add(em_mul(em_gelu(a), em_sigmoid(b)), em_exp(em_mul(a, em_scalar(EM_F32, 0.25)))));
    em_scope_end();
    return y;
}

/* a b + a: exact in any vector width. */
static em_tensor *mul_add(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_add(em_mul(a, b), a));
    em_scope_end();
    return y;
}

/* An [r, l] operand: dense, or the transpose of a dense [l, r]. */
static em_tensor *operand(int64_t r, int64_t l, bool transposed, uint64_t seed) {
    if (!transposed) return tu_uniform_tensor(2, SH(r, l), -4, 4, seed);
    return tu_transposed(tu_uniform_tensor(2, SH(l, r), -4, 4, seed), 0, 1);
}

/* The kernels dump of fast's newest graph (malloc'd). */
static char *kernels_of(void *fast) {
    int status;
    char *d = cu_dump(fast, "kernels", &status);
    cr_assert_eq(status, 0, "%s", em_last_error());
    return d;
}

/* Calls model compiled on a (r x l, transposed or not) and b, on `threads`
 * threads, and expects eager's bytes and the loops `loops` in the dump, in
 * blocks of `block` rows (0: not blocked). */
static void expect_nest(model2 model, int64_t r, int64_t l, bool at, bool bt, int threads, const char *loops,
                        int block) {
    char what[160];
    snprintf(what, sizeof what, "[%lld, %lld], a%s transposed, b%s transposed, %d thread(s)", (long long)r,
             (long long)l, at ? "" : " not", bt ? "" : " not", threads);
    int saved = em_get_threads();
    cr_assert_eq(em_set_threads(threads), 0, "%s", em_last_error());
    model2 fast = (model2)em_compile((void *)model, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    for (uint64_t call = 0; call < 2; call++) { /* a compile, then a guard hit on new values */
        em_tensor *a = operand(r, l, at, 10 + call), *b = operand(r, l, bt, 20 + call);
        em_tensor *want = model(a, b), *got = fast(a, b);
        cr_assert(got, "%s: %s", what, em_last_error());
        tu_expect_identical(got, want, what);
        em_release(got), em_release(want), em_release(a), em_release(b);
    }
    char *d = kernels_of((void *)fast);
    cr_expect(strstr(d, loops), "%s: want loops %s:\n%s", what, loops, d);
    char blocks[64];
    snprintf(blocks, sizeof blocks, "rows in blocks of %d ", block);
    if (block) cr_expect(strstr(d, blocks), "%s: want %s:\n%s", what, blocks, d);
    else cr_expect(!strstr(d, "rows in blocks"), "%s: not blocked:\n%s", what, d);
    cr_expect(!cu_says_interpreted(d), "%s: all generated:\n%s", what, d);
    free(d);
    EXPECT_STATS((void *)fast, 2, 1, 1, 0);
    em_compiled_free((void *)fast);
    cr_assert_eq(em_set_threads(saved), 0);
}

Test(tiled, a_transposed_operand_with_rows_and_columns_in_16s_is_read_in_blocks_of_16_64_and_256_rows) {
    for (int th = 1; th <= 2; th++) {
        expect_nest(mix, 48, 64, true, false, th, "loops [3, 4, 16, 16]", 16);
        expect_nest(mix, 192, 80, true, false, th, "loops [3, 5, 64, 16]", 64);
        expect_nest(mix, 512, 1024, true, false, th, "loops [2, 64, 256, 16]", 256);
    }
    /* 3 x 65 x 256 rows: two threads' halves meet inside a block */
    expect_nest(mix, 768, 1040, true, false, 2, "loops [3, 65, 256, 16]", 256);
}

Test(tiled, two_transposed_operands_and_one_beside_a_dense_one_give_eager_s_bytes) {
    expect_nest(mix, 192, 80, true, true, 1, "loops [3, 5, 64, 16]", 64);
    expect_nest(mix, 192, 80, false, true, 2, "loops [3, 5, 64, 16]", 64);
    expect_nest(mul_add, 256, 48, true, true, 2, "loops [1, 3, 256, 16]", 256);
}

Test(tiled, operands_that_are_not_transposed_keep_one_long_loop) {
    expect_nest(mix, 192, 80, false, false, 1, "loops [15360]", 0);
}

Test(tiled, rows_or_columns_not_in_16s_and_columns_within_one_chunk_keep_their_loops) {
    expect_nest(mix, 40, 64, true, false, 1, "loops [40, 64]", 0); /* 40 rows: no power of two from 16 divides */
    expect_nest(mix, 48, 47, true, false, 1, "loops [48, 47]", 0); /* 47 columns: a masked tail every row */
    expect_nest(mix, 64, 16, true, false, 1, "loops [64, 16]", 0); /* one chunk a row: nothing to reorder */
}

Test(tiled, eight_lane_code_takes_a_chunk_in_two_vectors) {
    setenv("EMBER_CODEGEN", "avx2", 1); /* read at each compile */
    expect_nest(mul_add, 192, 80, true, false, 1, "loops [3, 5, 64, 16]", 64);
    expect_nest(mul_add, 192, 80, true, true, 2, "loops [3, 5, 64, 16]", 64);
    model2 fast = (model2)em_compile((void *)mul_add, "tensor(tensor, tensor)", NULL);
    em_tensor *a = operand(192, 80, true, 1), *b = operand(192, 80, false, 2), *got = fast(a, b);
    cr_assert(got, "%s", em_last_error());
    int status;
    char *ir = cu_dump((void *)fast, "llvm", &status);
    cr_expect(strstr(ir, "<8 x float>") && !strstr(ir, "<16 x float>"), "8 lanes:\n%s", ir);
    free(ir);
    em_release(got), em_release(a), em_release(b);
    em_compiled_free((void *)fast);
}

/* x [b, l, r] seen as [b, r, l], times a per-row scale [b, r, 1]. */
static em_tensor *permuted_scaled(em_tensor *x, em_tensor *s) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_mul(em_permute(x, (int[]){0, 2, 1}), s)));
    em_scope_end();
    return y;
}

Test(tiled, a_permuted_3d_argument_is_blocked_under_its_batch_loop_with_a_row_operand_broadcast) {
    for (int th = 1; th <= 2; th++) {
        cr_assert_eq(em_set_threads(th), 0, "%s", em_last_error());
        model2 fast = (model2)em_compile((void *)permuted_scaled, "tensor(tensor, tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *x = tu_uniform_tensor(3, SH(3, 96, 128), -3, 3, 5), *s = tu_uniform_tensor(3, SH(3, 128, 1), -2, 2, 6);
        em_tensor *want = permuted_scaled(x, s), *got = fast(x, s);
        cr_assert(got, "%s", em_last_error());
        tu_expect_identical(got, want, th == 1 ? "one thread" : "two threads");
        char *d = kernels_of((void *)fast);
        cr_expect(strstr(d, "loops [3, 1, 6, 128, 16]") && strstr(d, "rows in blocks of 128 "), "%s", d);
        free(d);
        em_release(got), em_release(want), em_release(x), em_release(s);
        em_compiled_free((void *)fast);
    }
}

/* contiguous(a^T), nothing else. */
static em_tensor *copy_t(em_tensor *a) {
    em_scope_begin();
    em_tensor *y = em_keep(em_contiguous(em_transpose(a, 0, 1)));
    em_scope_end();
    return y;
}

Test(tiled, a_transposed_copy_alone_runs_the_runtime_s_transpose_with_eager_s_bytes) {
    __typeof__(&copy_t) fast = (__typeof__(&copy_t))em_compile((void *)copy_t, "tensor(tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *a = tu_uniform_tensor(2, SH(192, 80), -4, 4, 3);
    em_tensor *want = copy_t(a), *got = fast(a);
    cr_assert(got, "%s", em_last_error());
    tu_expect_identical(got, want, "contiguous(a^T)");
    char *d = kernels_of((void *)fast);
    cr_expect(strstr(d, "interpreted: a transposed copy: the runtime's blocked transpose") &&
                  strstr(d, "contiguous by its runtime kernel"), "%s", d);
    free(d);
    em_release(got), em_release(want), em_release(a);
    em_compiled_free((void *)fast);
}
