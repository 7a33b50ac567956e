/*
 * test_fold_views.c — folding of views and of constant subgraphs
 * (passes/fold.c, suite `fold`; the identities are in test_fold.c, the
 * fold-then-dce harness in pass_util.h).
 *
 * Views: a permute of a permute composes (or vanishes when it restores the
 * order), a reshape of a reshape merges unless the argument's layout may need
 * a copy, and an expand, cast, contiguous or slice that changes nothing goes.
 * Constant folding: a chain folds to one constant holding the eager value; an
 * output computed from constants alone folds; the size limits stop a big
 * expand; an op that fails is left to fail at run time; an identity on a
 * folded constant folds and the input graph is unchanged.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "pass_util.h"

/* ---- views ---------------------------------------------------------------------------------- */

static ir_node *perm(ir_graph *g, ir_node *x, int a, int b, int c) {
    return OP1(g, PERMUTE, x, .dims = {a, b, c});
}
static ir_node *permute_twice(ir_graph *g, ir_node *x) {
    return perm(g, perm(g, x, 2, 0, 1), 0, 2, 1);
}
static ir_node *permute_back(ir_graph *g, ir_node *x) {
    return OP1(g, EXP, perm(g, perm(g, x, 2, 0, 1), 1, 2, 0));
}
static ir_node *permute_identity(ir_graph *g, ir_node *x) { return OP1(g, EXP, perm(g, x, 0, 1, 2)); }

Test(fold, composes_a_permute_of_a_permute) {
    ir_graph *o = pu_fold_unary(permute_twice, EM_F32, 3, SH(2, 3, 4));
    /* y[i] = x[p[i]] with p = (2,0,1), then z[i] = y[q[i]] with q = (0,2,1): x[(2,1,0)]. */
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3,4]\n"
                   "  %1 = permute %0 {perm=[2,1,0]} : f32[4,3,2]\n"
                   "  return %1\n");
    ir_graph_destroy(o);
}

Test(fold, removes_a_permute_of_a_permute_that_restores_the_order_and_an_identity_permute) {
    ir_graph *o = pu_fold_unary(permute_back, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_INPUT);
    cr_expect_eq(ir_graph_num_nodes(o), 2);
    ir_graph_destroy(o);
    o = pu_fold_unary(permute_identity, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_INPUT);
    ir_graph_destroy(o);
}

static ir_node *reshape(ir_graph *g, ir_node *x, int nd, const int64_t *dims) {
    ir_attrs a = {.ndim = nd};
    memcpy(a.dims, dims, (size_t)nd * sizeof *dims);
    return pu_op(g, IR_OP_RESHAPE, x, NULL, a);
}
static ir_node *reshape_twice_of_exp(ir_graph *g, ir_node *x) {
    return reshape(g, reshape(g, OP1(g, EXP, x), 1, SH(24)), 2, SH(6, 4));
}
static ir_node *reshape_twice_back(ir_graph *g, ir_node *x) {
    return reshape(g, reshape(g, OP1(g, EXP, x), 2, SH(4, 6)), 3, SH(2, 3, 4));
}
static ir_node *reshape_twice_of_arg(ir_graph *g, ir_node *x) {
    return reshape(g, reshape(g, x, 1, SH(24)), 2, SH(6, 4));
}
static ir_node *reshape_same(ir_graph *g, ir_node *x) { return OP1(g, EXP, reshape(g, x, 3, SH(2, -1, 4))); }

Test(fold, merges_a_reshape_of_a_reshape_of_a_contiguous_value) {
    ir_graph *o = pu_fold_unary(reshape_twice_of_exp, EM_F32, 3, SH(2, 3, 4));
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3,4]\n"
                   "  %1 = exp %0 : f32[2,3,4]\n"
                   "  %2 = reshape %1 {shape=[6,4]} : f32[6,4]\n"
                   "  return %2\n");
    ir_graph_destroy(o);
    o = pu_fold_unary(reshape_twice_back, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

Test(fold, keeps_a_reshape_of_a_reshape_of_an_argument_whose_layout_may_need_a_copy) {
    ir_graph *o = pu_fold_unary(reshape_twice_of_arg, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(pu_output(o)->op, IR_OP_RESHAPE);
    cr_expect_eq(pu_output(o)->in[0]->op, IR_OP_RESHAPE);
    ir_graph_destroy(o);
    /* Flattening a transposed x copies it, so the second reshape sees dense
     * rows; reshaping x directly would leave them strided, and a row sum
     * adds strided rows in another order. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 64));
    pu_set_out(g, OP1(g, SUM, reshape(g, reshape(g, x, 1, SH(256)), 2, SH(4, 64)), .axis = 1));
    ir_graph *copy;
    o = pu_simplify_keeping_a_copy(g, &copy);
    em_tensor *base = em_randn(2, SH(64, 4), 5), *xt = em_transpose(base, 0, 1);
    pu_expect_same_result(copy, o, &xt);
    em_release(base), em_release(xt);
    ir_graph_destroy(copy), ir_graph_destroy(o);
}

Test(fold, removes_a_reshape_to_the_same_shape_even_of_a_transposed_argument) {
    ir_graph *o = pu_fold_unary(reshape_same, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_INPUT);
    ir_graph_destroy(o);
    /* A transposed argument: reshape to its own shape is a view with its strides. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(3, 64));
    pu_set_out(g, OP1(g, SUM, reshape(g, x, 2, SH(3, 64)), .axis = 1));
    ir_graph *copy;
    o = pu_simplify_keeping_a_copy(g, &copy);
    cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_INPUT);
    em_tensor *base = em_randn(2, SH(64, 3), 4), *xt = em_transpose(base, 0, 1);
    pu_expect_same_result(copy, o, &xt);
    em_release(base), em_release(xt);
    ir_graph_destroy(copy), ir_graph_destroy(o);
}

static ir_node *expand_same(ir_graph *g, ir_node *x) {
    return OP1(g, EXP, OP1(g, EXPAND, x, .ndim = 2, .dims = {2, -1}));
}
static ir_node *expand_wider(ir_graph *g, ir_node *x) {
    return OP1(g, EXP, OP1(g, EXPAND, x, .ndim = 3, .dims = {5, 2, 3}));
}
Test(fold, removes_an_expand_to_the_same_shape_only) {
    ir_graph *o = pu_fold_unary(expand_same, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_INPUT);
    ir_graph_destroy(o);
    o = pu_fold_unary(expand_wider, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->in[0]->op, IR_OP_EXPAND);
    ir_graph_destroy(o);
}

static ir_node *cast_same(ir_graph *g, ir_node *x) { return OP1(g, CAST, OP1(g, EXP, x), .dtype = EM_F32); }
static ir_node *cast_other(ir_graph *g, ir_node *x) { return OP1(g, CAST, OP1(g, EXP, x), .dtype = EM_F64); }
Test(fold, removes_a_cast_to_the_same_dtype_only) {
    ir_graph *o = pu_fold_unary(cast_same, EM_F32, 1, SH(9));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = pu_fold_unary(cast_other, EM_F32, 1, SH(9));
    cr_expect_eq(pu_output(o)->op, IR_OP_CAST);
    ir_graph_destroy(o);
}

static ir_node *contiguous_twice(ir_graph *g, ir_node *x) {
    return OP1(g, CONTIGUOUS, OP1(g, CONTIGUOUS, perm(g, x, 2, 1, 0)));
}
static ir_node *contiguous_of_exp(ir_graph *g, ir_node *x) { return OP1(g, CONTIGUOUS, OP1(g, EXP, x)); }
Test(fold, removes_contiguous_of_a_value_that_is_contiguous_already) {
    ir_graph *o = pu_fold_unary(contiguous_twice, EM_F32, 3, SH(2, 3, 4));
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3,4]\n"
                   "  %1 = permute %0 {perm=[2,1,0]} : f32[4,3,2]\n"
                   "  %2 = contiguous %1 : f32[4,3,2]\n"
                   "  return %2\n");
    ir_graph_destroy(o);
    o = pu_fold_unary(contiguous_of_exp, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

static ir_node *slice(ir_graph *g, ir_node *x, int axis, int64_t s, int64_t e, int64_t step) {
    return OP1(g, SLICE, x, .axis = axis, .start = s, .end = e, .step = step);
}
static ir_node *slice_full(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 1, 0, 99, 1)); }
static ir_node *slice_full_neg(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, -1, -3, 3, 1)); }
static ir_node *slice_unit_axis(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 0, 0, 1, 5)); }
static ir_node *slice_part(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 1, 1, 3, 1)); }
static ir_node *slice_step(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 1, 0, 3, 2)); }
Test(fold, removes_a_slice_that_covers_its_whole_axis_only) {
    pu_build_fn whole[] = {slice_full, slice_full_neg, slice_unit_axis};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        ir_graph *o = pu_fold_unary(whole[i], EM_F32, 2, i == 2 ? SH(1, 3) : SH(2, 3));
        cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_INPUT, "case %zu", i);
        ir_graph_destroy(o);
    }
    pu_build_fn part[] = {slice_part, slice_step};
    for (size_t i = 0; i < sizeof part / sizeof part[0]; i++) {
        ir_graph *o = pu_fold_unary(part[i], EM_F32, 2, SH(2, 3));
        cr_expect_eq(pu_output(o)->in[0]->op, IR_OP_SLICE, "case %zu", i);
        ir_graph_destroy(o);
    }
}

/* ---- constant subgraphs ------------------------------------------------------------------------ */

Test(fold, folds_a_chain_of_ops_on_constants_into_one_constant_with_the_eager_value) {
    float a[6] = {1, -2, 3.5f, -0.0f, 5, 0.25f};
    em_tensor *ta = em_from_data(EM_F32, 2, SH(2, 3), a), *tb = em_scalar(EM_F32, 0.75);
    /* Eagerly: sum(exp(transpose(a) * b), 1). */
    em_tensor *t1 = em_transpose(ta, 0, 1), *t2 = em_mul(t1, tb), *t3 = em_exp(t2), *want = em_sum(t3, 1, 0);
    em_release(t1), em_release(t2), em_release(t3); /* t1 shared a's storage */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 1, SH(3));
    ir_node *c = OP1(g, PERMUTE, pu_fixed(g, em_retain(ta)), .dims = {1, 0});
    c = OP1(g, SUM, OP1(g, EXP, OP2(g, MUL, c, pu_fixed(g, em_retain(tb)))), .axis = 1);
    pu_set_out(g, OP2(g, ADD, x, c));
    em_release(ta), em_release(tb); /* now the graph holds them alone */
    ir_graph *o = pu_simplify(g);
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[3]\n"
                   "  %1 = const f32[3] @_\n"
                   "  %2 = add %0, %1 : f32[3]\n"
                   "  return %2\n");
    em_tensor *got = pu_output(o)->in[1]->value;
    size_t n, m;
    char *p = tu_bytes_of(got, &n), *q = tu_bytes_of(want, &m);
    cr_expect(n == m && memcmp(p, q, n) == 0, "the folded value is the eager value");
    free(p), free(q);
    em_release(want);
    ir_graph_destroy(o);
}

Test(fold, folds_an_output_that_is_computed_from_constants_alone) {
    ir_graph *g = pu_new_graph();
    pu_input(g, 0, EM_F32, 1, SH(3));
    ir_node *c = OP2(g, ADD, pu_full(g, EM_I32, 1, SH(3), 2), pu_full(g, EM_I32, 0, NULL, 5));
    pu_set_out(g, c);
    ir_graph *o = pu_simplify(g);
    cr_assert_eq(pu_output(o)->kind, IR_NODE_CONST);
    int32_t v[3];
    cr_assert_eq(em_read(pu_output(o)->value, v, sizeof v), 0);
    cr_expect(v[0] == 7 && v[1] == 7 && v[2] == 7);
    cr_expect_eq(ir_graph_num_nodes(o), 2, "the input stays, the operands go");
    ir_graph_destroy(o);
}

/* expand of a fixed [n] f32 constant to [k, n]. */
static ir_graph *expand_graph(int64_t n, int64_t k) {
    ir_graph *g = pu_new_graph();
    ir_node *c = pu_fixed(g, em_zeros(EM_F32, 1, SH(n)));
    pu_set_out(g, OP1(g, EXPAND, c, .ndim = 2, .dims = {k, n}));
    return g;
}

Test(fold, stops_at_the_size_limit_so_a_big_expand_is_not_folded) {
    /* A scalar to 1 MiB folds; to 1 MiB + 4 bytes it does not. */
    ir_graph *o = pu_simplify(expand_graph(1, (1 << 20) / 4));
    cr_expect_eq(pu_output(o)->kind, IR_NODE_CONST);
    ir_graph_destroy(o);
    o = pu_simplify(expand_graph(1, (1 << 20) / 4 + 1));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXPAND);
    ir_graph_destroy(o);
    /* Past 1 MiB, up to four times the largest input folds. */
    o = pu_simplify(expand_graph(1 << 17, 4)); /* 512 KiB -> 2 MiB */
    cr_expect_eq(pu_output(o)->kind, IR_NODE_CONST);
    ir_graph_destroy(o);
    o = pu_simplify(expand_graph(1 << 17, 5)); /* 512 KiB -> 2.5 MiB */
    cr_expect_eq(pu_output(o)->op, IR_OP_EXPAND);
    ir_graph_destroy(o);
}

Test(fold, leaves_an_op_that_fails_to_fail_at_run_time) {
    ir_graph *g = pu_new_graph();
    pu_input(g, 0, EM_F32, 1, SH(1));
    int64_t idx[2] = {0, 7};
    ir_node *in[2] = {pu_fixed(g, em_zeros(EM_F32, 2, SH(4, 2))), pu_fixed(g, em_from_data(EM_I64, 1, SH(2), idx))};
    ir_node *e = ir_graph_add_node(g, IR_OP_EMBEDDING, NULL, in, 2, &(ir_attrs){0}, 0);
    cr_assert(e);
    pu_set_out(g, e);
    ir_graph *o = pu_simplify(g);
    cr_expect_eq(pu_output(o)->op, IR_OP_EMBEDDING);
    cr_expect_str_eq(em_last_error(), "", "the failed attempt leaves no message behind");
    em_tensor *arg = em_zeros(EM_F32, 1, SH(1)), *y = NULL;
    cr_expect_eq(ir_graph_run(o, &arg, &y), -1);
    cr_expect(strstr(em_last_error(), "out of range"), "%s", em_last_error());
    em_release(arg);
    ir_graph_destroy(o);
}

Test(fold, folds_an_identity_on_a_folded_constant_and_keeps_the_input_graph_unchanged) {
    ir_graph *g = pu_new_graph();
    ir_node *x = OP1(g, EXP, pu_input(g, 0, EM_F32, 1, SH(4)));
    ir_node *one = OP2(g, SUB, pu_full(g, EM_F32, 1, SH(4), 3.0), pu_full(g, EM_F32, 0, NULL, 2.0));
    pu_set_out(g, OP2(g, MUL, x, one)); /* 3 - 2 is computed, then recognised as ones */
    char *before = pu_text(g);
    ir_graph *f = pass_fold(g, NULL);
    cr_assert(f, "%s", em_last_error());
    char *after = pu_text(g);
    cr_expect_str_eq(after, before, "the input graph is not changed");
    cr_expect_eq(ir_graph_output(f, 0)->op, IR_OP_EXP);
    free(before), free(after);
    ir_graph_destroy(f);
    ir_graph_destroy(g);
}
