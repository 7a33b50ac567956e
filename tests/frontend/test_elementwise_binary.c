/*
 * test_elementwise_binary.c — the eager binary elementwise ops (em_add em_sub
 * em_mul em_div em_pow em_maximum em_minimum and the comparisons em_eq .. em_ge)
 * through the public API, on every shape and layout, against the references of
 * binop.c: libm in double for floats, exact wrapping arithmetic in uint64_t for
 * integers.
 *
 * Covered: lengths around the vector widths and one the pool splits; 0-d, size-1
 * and zero-size dims; numpy broadcasting corners ([3,1]+[1,4], [4]+[2,3,4], 0-d +
 * n-d, [2,1,3]+[4,1], zero-size) and the error for shapes that cannot broadcast;
 * transposed, stepped, expanded and permuted inputs. Dtypes, special values and
 * the per-ISA loops are in test_elementwise_binary_values.c.
 *
 * Tolerances: f32 rtol 1e-5 / atol 1e-6 (add/sub/mul/div are correctly rounded;
 * pow is Sleef's u10), f64 rtol 1e-12; integers and comparisons exact.
 */
#include <criterion/criterion.h>

#include <stdlib.h>

#include "../util.h"
#include "binop.h"

/* ---- shapes and broadcasting ------------------------------------------------------------------- */

Test(binary, matches_the_reference_at_lengths_around_the_vector_widths) {
    const int64_t lens[] = {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 1023, 4097};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char what[60];
        snprintf(what, sizeof what, "[%lld] and [%lld]", (long long)lens[i], (long long)lens[i]);
        check_all_ops(EM_F32, 1, &lens[i], EM_F32, 1, &lens[i], what);
        snprintf(what, sizeof what, "[%lld] and a 0-d tensor", (long long)lens[i]);
        check_all_ops(EM_F32, 1, &lens[i], EM_F32, SCALAR, what);
        snprintf(what, sizeof what, "a 0-d tensor and [%lld]", (long long)lens[i]);
        check_all_ops(EM_F32, SCALAR, EM_F32, 1, &lens[i], what);
    }
}

Test(binary, keeps_0d_tensors_0d_and_size_1_dims) {
    check_all_ops(EM_F32, SCALAR, EM_F32, SCALAR, "two 0-d tensors");
    check_all_ops(EM_F64, SCALAR, EM_F64, SCALAR, "two 0-d f64 tensors");
    check_all_ops(EM_I32, SCALAR, EM_I32, SCALAR, "two 0-d i32 tensors");
    check_all_ops(EM_F32, SH(1, 1, 1), EM_F32, SH(1), "[1,1,1] and [1]");
    check_all_ops(EM_F32, SH(1, 17, 1), EM_F32, SH(1, 17, 1), "[1,17,1] twice");
}

Test(binary, splits_a_million_elements_across_threads) {
    check_all_ops(EM_F32, SH(1 << 20), EM_F32, SH(1 << 20), "[1<<20] twice");
    binop_check_ops(SOME_OPS, EM_F32, SH(1024, 1024), EM_F32, SH(1024, 1), "[1024,1024] and [1024,1]");
    binop_check_ops(SOME_OPS, EM_F32, SH(1, 1024), EM_F32, SH(1024, 1), "[1,1024] and [1024,1]");
    binop_check_ops(SOME_OPS, EM_I64, SH(1 << 20), EM_I64, SH(1), "i64 [1<<20] and [1]");
}

Test(binary, gives_zero_size_results_when_the_zero_dim_leads) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 5; d++) {
        em_dtype t = dts[d];
        check_all_ops(t, SH(0, 3), t, SH(1, 3), "[0,3] and [1,3]");
        check_all_ops(t, SH(0), t, SCALAR, "[0] and a 0-d tensor");
        check_all_ops(t, SH(1), t, SH(0), "[1] and [0]");
        check_all_ops(t, SH(0, 1), t, SH(5), "[0,1] and [5]");
    }
}

/* Regression: see unary/gives_zero_size_results_when_a_later_dim_is_zero. */
Test(binary, gives_zero_size_results_when_a_later_dim_is_zero) {
    const em_dtype dts[] = {EM_F32, EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int d = 0; d < 5; d++) {
        em_dtype t = dts[d];
        check_all_ops(t, SH(2, 0), t, SH(2, 1), "[2,0] and [2,1]");
        check_all_ops(t, SH(3, 1), t, SH(1, 0), "[3,1] and [1,0]");
        check_all_ops(t, SH(2, 0, 3), t, SH(3), "[2,0,3] and [3]");
        check_all_ops(t, SH(4, 1, 0), t, SH(5, 1), "[4,1,0] and [5,1]");
    }
}

Test(binary, broadcasts_a_column_against_a_row) {
    check_all_ops(EM_F32, SH(3, 1), EM_F32, SH(1, 4), "[3,1] and [1,4]");
    check_all_ops(EM_F32, SH(1, 4), EM_F32, SH(3, 1), "[1,4] and [3,1]");
    check_all_ops(EM_F32, SH(100, 1), EM_F32, SH(1, 37), "[100,1] and [1,37]");
}

Test(binary, broadcasts_a_vector_against_a_3d_tensor) {
    check_all_ops(EM_F32, SH(4), EM_F32, SH(2, 3, 4), "[4] and [2,3,4]");
    check_all_ops(EM_F32, SH(2, 3, 4), EM_F32, SH(4), "[2,3,4] and [4]");
    check_all_ops(EM_F32, SH(3, 1), EM_F32, SH(2, 3, 4), "[3,1] and [2,3,4]");
}

Test(binary, broadcasts_a_0d_tensor_against_an_nd_tensor) {
    check_all_ops(EM_F32, SCALAR, EM_F32, SH(2, 3, 4), "a 0-d tensor and [2,3,4]");
    check_all_ops(EM_F32, SH(2, 3, 4), EM_F32, SCALAR, "[2,3,4] and a 0-d tensor");
    check_all_ops(EM_F64, SCALAR, EM_F64, SH(5, 7), "a 0-d f64 tensor and [5,7]");
}

Test(binary, broadcasts_2_1_3_against_4_1_into_2_4_3) {
    check_all_ops(EM_F32, SH(2, 1, 3), EM_F32, SH(4, 1), "[2,1,3] and [4,1]");
    check_all_ops(EM_F32, SH(4, 1), EM_F32, SH(2, 1, 3), "[4,1] and [2,1,3]");
    check_all_ops(EM_I32, SH(2, 1, 3), EM_I32, SH(4, 1), "i32 [2,1,3] and [4,1]");
}

Test(binary, broadcasts_8d_tensors_with_alternating_size_1_dims) {
    check_all_ops(EM_F32, SH(2, 1, 3, 1, 2, 1, 2, 1), EM_F32, SH(1, 3, 1, 2, 1, 2, 1, 3),
                  "[2,1,3,1,2,1,2,1] and [1,3,1,2,1,2,1,3]");
    check_all_ops(EM_I32, SH(2, 1, 3, 1, 2, 1, 2, 1), EM_I64, SH(3, 1, 2, 1, 2, 1, 3),
                  "i32 [2,1,3,1,2,1,2,1] and i64 [3,1,2,1,2,1,3]");
}

Test(binary, rejects_shapes_that_cannot_broadcast_with_a_message) {
    em_scope_begin();
    em_tensor *a = em_zeros(EM_F32, 2, (int64_t[]){2, 3}), *b = em_zeros(EM_F32, 1, (int64_t[]){4});
    em_clear_error();
    cr_assert_null(em_add(a, b));
    cr_assert_str_eq(em_last_error(), "em_add: shapes [2,3] and [4] cannot be broadcast");
    for (int k = 0; k < BINOP_COUNT; k++) {
        char want[80];
        snprintf(want, sizeof want, "em_%s: shapes [2,3] and [4] cannot be broadcast", binop_cases[k].name);
        em_clear_error();
        cr_expect_null(binop_cases[k].fn(a, b), "em_%s broadcast [2,3] with [4]", binop_cases[k].name);
        cr_expect_str_eq(em_last_error(), want);
    }
    em_tensor *z = em_zeros(EM_F32, 1, (int64_t[]){0}), *two = em_zeros(EM_I32, 1, (int64_t[]){2});
    cr_expect_null(em_mul(z, two), "[0] and [2] do not broadcast");
    cr_expect_str_eq(em_last_error(), "em_mul: shapes [0] and [2] cannot be broadcast");
    em_tensor *c = em_zeros(EM_F32, 2, (int64_t[]){3, 2});
    cr_expect_null(em_lt(a, c));
    cr_expect_str_eq(em_last_error(), "em_lt: shapes [2,3] and [3,2] cannot be broadcast");
    em_scope_end();
}

/* ---- non-contiguous inputs ------------------------------------------------------------------- */

typedef em_tensor *(*view_fn)(em_tensor *base, int64_t *offset);

/* a = view_a(dense random base of shape sa) (or the dense tensor when NULL), likewise
 * b; every op checked against the views' logical values. */
static void check_ops_on_views(unsigned which, em_dtype dt, int na, const int64_t *sa, view_fn va,
                               int nb, const int64_t *sb, view_fn vb, const char *what) {
    for (int k = 0; k < BINOP_COUNT; k++) {
        if (!(which >> k & 1u)) continue;
        em_scope_begin();
        double *abase = binop_random_inputs(&binop_cases[k], 0, dt, tu_count(na, sa));
        double *bbase = binop_random_inputs(&binop_cases[k], 1, dt, tu_count(nb, sb));
        em_tensor *a = tu_tensor_of(dt, na, sa, abase), *b = tu_tensor_of(dt, nb, sb, bbase);
        int64_t aoff = 0, boff = 0;
        if (va) a = va(a, &aoff);
        if (vb) b = vb(b, &boff);
        cr_assert(a && b, "%s: %s", what, em_last_error());
        double *av = tu_view_values(abase, a, aoff), *bv = tu_view_values(bbase, b, boff);
        binop_check(&binop_cases[k], a, av, b, bv, what);
        free(av);
        free(bv);
        free(abase);
        free(bbase);
        em_scope_end();
    }
}

#define check_all_ops_on_views(...) check_ops_on_views(ALL_OPS, __VA_ARGS__)

static em_tensor *transposed(em_tensor *b, int64_t *off) { (void)off; return em_transpose(b, 0, 1); }
static em_tensor *transposed_last(em_tensor *b, int64_t *off) { (void)off; return em_transpose(b, -1, -2); }
static em_tensor *step2_cols(em_tensor *b, int64_t *off) { /* [n, 2m+1] -> [:, 1::2] */
    *off = 1;
    return em_slice(b, 1, 1, em_shape(b)[1], 2);
}
static em_tensor *step3(em_tensor *b, int64_t *off) { /* [3n+2] -> [2::3] */
    *off = 2;
    return em_slice(b, 0, 2, em_shape(b)[0], 3);
}
static em_tensor *expand_40_50(em_tensor *b, int64_t *off) {
    (void)off;
    return em_expand(b, 2, (int64_t[]){40, 50});
}
static em_tensor *expand_3_40_50(em_tensor *b, int64_t *off) {
    (void)off;
    return em_expand(b, 3, (int64_t[]){3, 40, 50});
}
static em_tensor *permute_201(em_tensor *b, int64_t *off) {
    (void)off;
    return em_permute(b, (int[]){2, 0, 1});
}
static em_tensor *permute_120(em_tensor *b, int64_t *off) {
    (void)off;
    return em_permute(b, (int[]){1, 2, 0});
}

Test(binary, reads_transposed_inputs) {
    check_all_ops_on_views(EM_F32, SH(19, 37), transposed, SH(37, 19), NULL, "[19,37]^T and [37,19]");
    check_all_ops_on_views(EM_F32, SH(19, 37), transposed, SH(19, 37), transposed, "two transposes");
    check_all_ops_on_views(EM_F32, SH(37, 19), NULL, SH(19, 37), transposed, "[37,19] and [19,37]^T");
    check_all_ops_on_views(EM_F64, SH(5, 9), transposed, SH(9, 5), NULL, "f64 [5,9]^T and [9,5]");
    check_all_ops_on_views(EM_I64, SH(5, 9), transposed, SH(9, 5), NULL, "i64 [5,9]^T and [9,5]");
}

Test(binary, reads_a_transposed_input_broadcast_against_a_row) {
    check_all_ops_on_views(EM_F32, SH(19, 37), transposed, SH(1, 19), NULL, "[19,37]^T and [1,19]");
    check_all_ops_on_views(EM_F32, SH(2, 19, 37), transposed_last, SH(37, 1), NULL,
                           "[2,19,37] with its last two dims swapped and [37,1]");
}

Test(binary, reads_a_large_transposed_input_split_across_threads) {
    check_ops_on_views(SOME_OPS, EM_F32, SH(1100, 1000), transposed, SH(1000, 1100), NULL,
                       "[1100,1000]^T and [1000,1100]");
}

Test(binary, reads_slices_with_steps_2_and_3) {
    check_all_ops_on_views(EM_F32, SH(3, 2001), step2_cols, SH(3, 1000), NULL, "[3,2001][:,1::2] and [3,1000]");
    check_all_ops_on_views(EM_F32, SH(9002), step3, SH(9002), step3, "two [9002][2::3]");
    check_all_ops_on_views(EM_F32, SH(9002), step3, SCALAR, NULL, "[9002][2::3] and a 0-d tensor");
    check_all_ops_on_views(EM_I32, SH(302), step3, SH(100), NULL, "i32 [302][2::3] and [100]");
    check_all_ops_on_views(EM_BOOL, SH(302), step3, SH(100), NULL, "bool [302][2::3] and [100]");
}

Test(binary, reads_expanded_inputs_with_stride_0) {
    check_all_ops_on_views(EM_F32, SH(40, 1), expand_40_50, SH(40, 50), NULL, "[40,1]->[40,50] and [40,50]");
    check_all_ops_on_views(EM_F32, SH(40, 50), NULL, SH(1, 50), expand_40_50, "[40,50] and [1,50]->[40,50]");
    check_all_ops_on_views(EM_F32, SH(1, 50), expand_3_40_50, SH(40, 1), expand_40_50,
                           "[1,50]->[3,40,50] and [40,1]->[40,50]");
    check_all_ops_on_views(EM_F64, SH(40, 1), expand_40_50, SH(50), NULL, "f64 [40,1]->[40,50] and [50]");
}

Test(binary, reads_permuted_3d_inputs) {
    check_all_ops_on_views(EM_F32, SH(4, 5, 6), permute_201, SH(6, 4, 5), NULL, "[4,5,6] perm (2,0,1)");
    check_all_ops_on_views(EM_F32, SH(4, 5, 6), permute_201, SH(5, 6, 4), permute_120,
                           "perm (2,0,1) and perm (1,2,0)");
    check_all_ops_on_views(EM_F32, SH(40, 33, 17), permute_201, SH(40, 1), NULL,
                           "[40,33,17] perm (2,0,1) and [40,1]");
}
