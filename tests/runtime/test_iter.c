/*
 * test_iter.c — the elementwise iterator's blocks of rows for transposed
 * inputs (runtime/iter.c), suite `iter`.
 *
 * An input gathered along the inner dim but contiguous along the next is read
 * 16 rows at a time, 64 columns a step. Each result is checked byte for byte
 * against the same op on dense copies of its inputs (em_contiguous copies
 * through tensor.c, and dense inputs take the iterator's direct path), so the
 * reference shares no code with the blocks:
 *  - shapes whose rows fill whole blocks, end in a partial block, or have
 *    columns that end in a partial step, and a 3-D permute whose blocks stop
 *    at each batch's last row;
 *  - 1-, 4- and 8-byte elements (bool, i32 and f32, f64);
 *  - a transposed input beside a stepped one (gathered row by row) and a
 *    broadcast one, in one where;
 *  - a split over two threads whose pieces start inside rows.
 */
#include <criterion/criterion.h>

#include <stdio.h>

#include "../util.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

/* op(a, b) against op(contiguous(a), contiguous(b)), byte for byte. */
static void expect_as_dense(em_tensor *(*op)(em_tensor *, em_tensor *), em_tensor *a, em_tensor *b,
                            const char *what) {
    em_scope_begin();
    em_tensor *got = op(a, b), *want = op(em_contiguous(a), em_contiguous(b));
    cr_assert(got && want, "%s: %s", what, em_last_error());
    tu_expect_identical(got, want, what);
    em_scope_end();
}

/* The transpose of a [c, r] tensor of dtype dt: an [r, c] view. */
static em_tensor *transposed(em_dtype dt, int64_t r, int64_t c, uint64_t seed) {
    em_tensor *t = tu_uniform_tensor(2, SH(c, r), -3, 3, seed);
    return tu_transposed(dt == EM_F32 ? t : tu_cast(t, dt), 0, 1);
}

Test(iter, a_transposed_input_gives_the_bytes_of_its_dense_copy_for_every_block_shape) {
    const int64_t shapes[][2] = {{48, 128}, {37, 130}, {16, 64}, {17, 65}, {5, 200}, {200, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t r = shapes[s][0], c = shapes[s][1];
        char what[64];
        snprintf(what, sizeof what, "[%lld, %lld]", (long long)r, (long long)c);
        em_tensor *a = transposed(EM_F32, r, c, 1 + s), *d = tu_uniform_tensor(2, SH(r, c), -3, 3, 50 + s);
        expect_as_dense(em_add, a, d, what);
        expect_as_dense(em_mul, a, a, what); /* both inputs transposed */
        em_release(a), em_release(d);
    }
}

Test(iter, elements_of_one_four_and_eight_bytes_are_gathered_in_blocks) {
    const em_dtype dts[] = {EM_BOOL, EM_I32, EM_F32, EM_F64};
    for (size_t k = 0; k < sizeof dts / sizeof *dts; k++) {
        em_tensor *a = transposed(dts[k], 40, 100, 3 + k), *b = transposed(dts[k], 40, 100, 9 + k);
        expect_as_dense(dts[k] == EM_BOOL ? em_eq : em_add, a, b, em_dtype_name(dts[k]));
        em_release(a), em_release(b);
    }
}

static em_tensor *permuted_3d(uint64_t seed) { /* [3, 40, 33] from [3, 33, 40] */
    em_tensor *base = tu_uniform_tensor(3, SH(3, 33, 40), -3, 3, seed), *v = em_permute(base, (int[]){0, 2, 1});
    cr_assert(v, "%s", em_last_error());
    em_release(base); /* the view keeps the storage */
    return v;
}

Test(iter, blocks_of_a_permuted_3d_input_stop_at_each_batch_s_last_row) {
    em_tensor *a = permuted_3d(4), *d = tu_uniform_tensor(3, SH(3, 40, 33), -3, 3, 5);
    expect_as_dense(em_sub, a, d, "[3, 40, 33] permuted");
    em_release(a), em_release(d);
}

static em_tensor *where_op(em_tensor *c, em_tensor *ab) { /* where(c, ab, ab[0]) */
    em_scope_begin();
    em_tensor *y = em_keep(em_where(c, ab, em_slice(ab, 0, 0, 1, 1)));
    em_scope_end();
    return y;
}

Test(iter, a_transposed_input_beside_a_stepped_and_a_broadcast_one) {
    /* c transposed (a tile), ab a stepped slice (gathered row by row: its
     * columns are 2 apart and its rows not contiguous), ab[0] broadcast */
    em_tensor *c = transposed(EM_BOOL, 48, 90, 6);
    em_tensor *wide = tu_uniform_tensor(2, SH(48, 180), -3, 3, 7);
    em_tensor *ab = em_slice(wide, 1, 0, 180, 2);
    cr_assert(ab && !em_is_contiguous(ab), "%s", em_last_error());
    expect_as_dense(where_op, c, ab, "where(c^T, x[:, ::2], x[0])");
    em_release(c), em_release(ab), em_release(wide);
}

Test(iter, two_threads_whose_pieces_start_inside_rows_give_one_thread_s_bytes) {
    int saved = em_get_threads();
    em_tensor *a = transposed(EM_F32, 300, 999, 8), *d = tu_uniform_tensor(2, SH(300, 999), -3, 3, 9);
    em_tensor *got[2];
    for (int th = 1; th <= 2; th++) {
        cr_assert_eq(em_set_threads(th), 0, "%s", em_last_error());
        em_scope_begin();
        got[th - 1] = em_keep(em_exp(em_add(a, d)));
        em_scope_end();
        cr_assert(got[th - 1], "%s", em_last_error());
        expect_as_dense(em_add, a, d, th == 1 ? "one thread" : "two threads");
    }
    tu_expect_identical(got[1], got[0], "two threads against one");
    cr_assert_eq(em_set_threads(saved), 0);
    em_release(got[0]), em_release(got[1]), em_release(a), em_release(d);
}
