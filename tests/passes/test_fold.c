/*
 * test_fold.c — exact identities of constant folding (passes/fold.c); views
 * and constant subgraphs are in test_fold_views.c, the fold-then-dce harness
 * in pass_util.h.
 *
 * Each test builds a small graph by hand, runs fold (then dce, to see what is
 * left) and checks the exact result: the node an output became, node counts,
 * the printed graph, and — where values are involved — that the interpreter
 * gives bit-identical results before and after, on inputs holding -0.0, NaN
 * and infinities.
 *
 * Every identity is tested where it must fire and where it must not:
 * x*1 with ones that broadcast x to a larger shape or change its dtype, a
 * near-one value, x + 0.0 (not an identity: -0.0 + 0.0 is +0.0) against
 * x + (-0.0) (one), x - (-0.0) against x - 0.0, neg(neg x), a constant the
 * caller still holds (captured by reference: its data may change), an
 * argument whose layout is unknown (x*1 becomes contiguous(x), not x).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "pass_util.h"

/* ---- x*1, 1*x, x/1 ----------------------------------------------------------------------- */

static ir_node *exp_times_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), pu_full(g, EM_F32, 1, SH(3), 1.0));
}
Test(fold, turns_x_times_ones_into_x_when_x_is_computed) {
    ir_graph *o = pu_fold_unary(exp_times_ones, EM_F32, 2, SH(2, 3));
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3]\n"
                   "  %1 = exp %0 : f32[2,3]\n"
                   "  return %1\n");
    ir_graph_destroy(o);
}

static ir_node *ones_times_exp(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, pu_full(g, EM_F32, 0, NULL, 1.0), OP1(g, EXP, x));
}
Test(fold, turns_ones_times_x_into_x) {
    ir_graph *o = pu_fold_unary(ones_times_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    cr_expect_eq(ir_graph_num_nodes(o), 2);
    ir_graph_destroy(o);
}

static ir_node *arg_times_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, x, pu_full(g, EM_F32, 2, SH(1, 3), 1.0));
}
Test(fold, turns_an_argument_times_ones_into_a_contiguous_copy_because_its_layout_is_unknown) {
    ir_graph *o = pu_fold_unary(arg_times_ones, EM_F32, 2, SH(2, 3));
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3]\n"
                   "  %1 = contiguous %0 : f32[2,3]\n"
                   "  return %1\n");
    ir_graph_destroy(o);
}

Test(fold, keeps_the_strides_of_x_times_ones_for_a_transposed_argument) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(3, 64));
    ir_node *m = OP2(g, MUL, x, pu_full(g, EM_F32, 0, NULL, 1.0));
    pu_set_out(g, OP1(g, SUM, m, .axis = 1)); /* summed in another order over a strided row */
    ir_graph *copy, *o = pu_simplify_keeping_a_copy(g, &copy);
    em_tensor *base = em_randn(2, SH(64, 3), 7), *xt = em_transpose(base, 0, 1);
    pu_expect_same_result(copy, o, &xt);
    cr_expect_eq(pu_output(o)->in[0]->op, IR_OP_CONTIGUOUS);
    em_release(base), em_release(xt);
    ir_graph_destroy(copy), ir_graph_destroy(o);
}

static ir_node *exp_div_ones(ir_graph *g, ir_node *x) {
    return OP2(g, DIV, OP1(g, EXP, x), pu_full(g, EM_F32, 1, SH(3), 1.0));
}
Test(fold, turns_x_divided_by_ones_into_x) {
    ir_graph *o = pu_fold_unary(exp_div_ones, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

static ir_node *ones_div_exp(ir_graph *g, ir_node *x) {
    return OP2(g, DIV, pu_full(g, EM_F32, 1, SH(3), 1.0), OP1(g, EXP, x));
}
Test(fold, leaves_ones_divided_by_x) {
    ir_graph *o = pu_fold_unary(ones_div_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_DIV);
    ir_graph_destroy(o);
}

static ir_node *exp_times_wide_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), pu_full(g, EM_F32, 2, SH(2, 3), 1.0));
}
Test(fold, leaves_x_times_ones_that_broadcast_x_to_a_larger_shape) {
    ir_graph *o = pu_fold_unary(exp_times_wide_ones, EM_F32, 1, SH(3));
    cr_expect_eq(pu_output(o)->op, IR_OP_MUL);
    cr_expect_eq(pu_output(o)->type.ndim, 2);
    ir_graph_destroy(o);
}

static ir_node *int_times_float_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, ABS, x), pu_full(g, EM_F32, 0, NULL, 1.0));
}
static ir_node *f64_times_f32_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), pu_full(g, EM_F32, 0, NULL, 1.0));
}
static ir_node *int_times_bool_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, ABS, x), pu_full(g, EM_BOOL, 0, NULL, 1.0));
}
Test(fold, folds_x_times_ones_only_when_x_keeps_its_dtype) {
    ir_graph *o = pu_fold_unary(int_times_float_ones, EM_I32, 1, SH(4)); /* i32 * f32 is f32 */
    cr_expect_eq(pu_output(o)->op, IR_OP_MUL);
    ir_graph_destroy(o);
    o = pu_fold_unary(f64_times_f32_ones, EM_F64, 1, SH(4)); /* f64 * f32 is f64: exact */
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = pu_fold_unary(int_times_bool_ones, EM_I32, 1, SH(4)); /* true is 1 */
    cr_expect_eq(pu_output(o)->op, IR_OP_ABS);
    ir_graph_destroy(o);
}

static ir_node *exp_times_near_one(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), pu_full(g, EM_F32, 0, NULL, nextafterf(1.0f, 2.0f)));
}
static ir_node *exp_times_mostly_ones(ir_graph *g, ir_node *x) {
    float v[3] = {1, 1, 0.5f};
    return OP2(g, MUL, OP1(g, EXP, x), pu_fixed(g, em_from_data(EM_F32, 1, SH(3), v)));
}
static ir_node *exp_times_nan(ir_graph *g, ir_node *x) {
    float v[3] = {1, NAN, 1};
    return OP2(g, MUL, OP1(g, EXP, x), pu_fixed(g, em_from_data(EM_F32, 1, SH(3), v)));
}
Test(fold, leaves_x_times_a_near_one_a_partly_one_or_a_nan_constant) {
    pu_build_fn fns[] = {exp_times_near_one, exp_times_mostly_ones, exp_times_nan};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        ir_graph *o = pu_fold_unary(fns[i], EM_F32, 2, SH(2, 3));
        cr_expect_eq(pu_output(o)->op, IR_OP_MUL, "case %zu", i);
        ir_graph_destroy(o);
    }
}

Test(fold, checks_ones_through_the_strides_of_a_broadcast_constant) {
    ir_graph *g = pu_new_graph();
    ir_node *x = OP1(g, EXP, pu_input(g, 0, EM_F32, 2, SH(2, 3)));
    em_tensor *one = em_scalar(EM_F32, 1.0), *wide = em_expand(one, 1, SH(3)); /* stride 0 */
    em_release(one);
    pu_set_out(g, OP2(g, MUL, x, pu_fixed(g, wide)));
    ir_graph *o = pu_simplify(g);
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

/* ---- x + 0, x - 0 -------------------------------------------------------------------------- */

Test(fold, shows_why_x_plus_positive_zero_is_not_an_identity) {
    em_tensor *x = em_scalar(EM_F32, -0.0), *z = em_scalar(EM_F32, 0.0);
    em_tensor *s = em_add(x, z), *nz = em_scalar(EM_F32, -0.0), *t = em_add(x, nz);
    cr_expect(!signbit(em_item(s)), "-0.0 + 0.0 is +0.0");
    cr_expect(signbit(em_item(t)), "-0.0 + -0.0 is -0.0");
    em_release(x), em_release(z), em_release(s), em_release(nz), em_release(t);
}

static ir_node *exp_plus(ir_graph *g, ir_node *x, em_dtype dt, double zero, bool left) {
    ir_node *e = OP1(g, EXP, x), *z = pu_full(g, dt, 0, NULL, zero);
    return left ? OP2(g, ADD, z, e) : OP2(g, ADD, e, z);
}
static ir_node *exp_plus_neg_zero(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_F32, -0.0, false); }
static ir_node *neg_zero_plus_exp(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_F32, -0.0, true); }
static ir_node *exp_plus_pos_zero(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_F32, 0.0, false); }
static ir_node *exp_plus_int_zero(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_I32, 0.0, false); }
static ir_node *neg_plus_pos_zero(ir_graph *g, ir_node *x) {
    return OP2(g, ADD, OP1(g, NEG, x), pu_full(g, EM_F32, 0, NULL, 0.0));
}

Test(fold, turns_x_plus_negative_zero_into_x_on_both_sides) {
    ir_graph *o = pu_fold_unary(exp_plus_neg_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = pu_fold_unary(neg_zero_plus_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

Test(fold, leaves_float_x_plus_positive_zero_even_from_an_integer_zero) {
    pu_build_fn fns[] = {exp_plus_pos_zero, exp_plus_int_zero, neg_plus_pos_zero};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        ir_graph *o = pu_fold_unary(fns[i], EM_F32, 2, SH(2, 3)); /* values checked on -0.0 inputs */
        cr_expect_eq(pu_output(o)->op, IR_OP_ADD, "case %zu", i);
        ir_graph_destroy(o);
    }
}

static ir_node *int_plus_zero(ir_graph *g, ir_node *x) {
    return OP2(g, ADD, OP1(g, NEG, x), pu_full(g, EM_I32, 1, SH(4), 0.0));
}
static ir_node *int_minus_zero(ir_graph *g, ir_node *x) {
    return OP2(g, SUB, OP1(g, NEG, x), pu_full(g, EM_I32, 1, SH(4), 0.0));
}
Test(fold, turns_integer_x_plus_or_minus_zero_into_x) {
    ir_graph *o = pu_fold_unary(int_plus_zero, EM_I32, 1, SH(4));
    cr_expect_eq(pu_output(o)->op, IR_OP_NEG);
    ir_graph_destroy(o);
    o = pu_fold_unary(int_minus_zero, EM_I32, 1, SH(4));
    cr_expect_eq(pu_output(o)->op, IR_OP_NEG);
    ir_graph_destroy(o);
}

static ir_node *exp_minus(ir_graph *g, ir_node *x, double zero, bool left) {
    ir_node *e = OP1(g, EXP, x), *z = pu_full(g, EM_F32, 0, NULL, zero);
    return left ? OP2(g, SUB, z, e) : OP2(g, SUB, e, z);
}
static ir_node *exp_minus_pos_zero(ir_graph *g, ir_node *x) { return exp_minus(g, x, 0.0, false); }
static ir_node *exp_minus_neg_zero(ir_graph *g, ir_node *x) { return exp_minus(g, x, -0.0, false); }
static ir_node *zero_minus_exp(ir_graph *g, ir_node *x) { return exp_minus(g, x, 0.0, true); }
static ir_node *neg_minus_pos_zero(ir_graph *g, ir_node *x) {
    return OP2(g, SUB, OP1(g, NEG, x), pu_full(g, EM_F32, 0, NULL, 0.0)); /* -0.0 - 0.0 is -0.0 */
}
Test(fold, turns_x_minus_positive_zero_into_x_but_not_x_minus_negative_zero_or_zero_minus_x) {
    ir_graph *o = pu_fold_unary(exp_minus_pos_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = pu_fold_unary(neg_minus_pos_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_NEG);
    ir_graph_destroy(o);
    o = pu_fold_unary(exp_minus_neg_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_SUB);
    ir_graph_destroy(o);
    o = pu_fold_unary(zero_minus_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_SUB);
    ir_graph_destroy(o);
}

/* ---- constants the caller holds ------------------------------------------------------------- */

Test(fold, never_reads_a_constant_the_caller_still_holds) {
    ir_graph *g = pu_new_graph();
    ir_node *x = OP1(g, EXP, pu_input(g, 0, EM_F32, 1, SH(3)));
    em_tensor *ones = em_full(EM_F32, 1, SH(3), 1.0); /* a "global": captured by reference */
    ir_node *c = ir_graph_add_const(g, ones);
    ir_node *sq = OP2(g, MUL, c, c);
    pu_set_out(g, OP2(g, ADD, OP2(g, MUL, x, c), sq));
    ir_graph *o = pu_simplify(g);
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[3]\n"
                   "  %1 = const f32[3] @_\n"
                   "  %2 = exp %0 : f32[3]\n"
                   "  %3 = mul %1, %1 : f32[3]\n"
                   "  %4 = mul %2, %1 : f32[3]\n"
                   "  %5 = add %4, %3 : f32[3]\n"
                   "  return %5\n");
    /* Its data may change before the next call, and the graph must see it. */
    ((float *)rt_tensor_data(ones))[1] = 2.0f;
    em_tensor *arg = em_zeros(EM_F32, 1, SH(3)), *y;
    cr_assert_eq(ir_graph_run(o, &arg, &y), 0, "%s", em_last_error());
    float v[3];
    cr_assert_eq(em_read(y, v, sizeof v), 0);
    cr_expect(v[0] == 2.0f && v[1] == 6.0f && v[2] == 2.0f, "%g %g %g", v[0], v[1], v[2]);
    em_release(y), em_release(arg);
    ir_graph_destroy(o);
    em_release(ones);
}

Test(fold, folds_a_view_of_a_held_constant_which_still_sees_its_data_change) {
    ir_graph *g = pu_new_graph();
    em_tensor *w = em_randn(2, SH(2, 3), 3); /* held by the caller */
    ir_node *wt = OP1(g, PERMUTE, ir_graph_add_const(g, w), .dims = {1, 0});
    pu_set_out(g, OP2(g, MUL, wt, pu_input(g, 0, EM_F32, 2, SH(3, 2))));
    ir_graph *o = pu_simplify(g);
    ir_node *c = pu_output(o)->in[0];
    cr_assert_eq(c->kind, IR_NODE_CONST, "the transpose became a constant");
    cr_expect_eq(c->value->storage, w->storage, "a view of the weight's storage");
    cr_expect_eq(c->value->strides[0], 1);
    ((float *)rt_tensor_data(w))[1] = 100.0f; /* w[0][1], i.e. wt[1][0] */
    em_tensor *arg = em_full(EM_F32, 2, SH(3, 2), 1.0), *y;
    cr_assert_eq(ir_graph_run(o, &arg, &y), 0, "%s", em_last_error());
    float v[6];
    cr_assert_eq(em_read(y, v, sizeof v), 0);
    cr_expect_eq(v[2], 100.0f);
    em_release(y), em_release(arg);
    ir_graph_destroy(o);
    em_release(w);
}

Test(fold, does_not_fold_a_copy_of_a_held_constant) {
    ir_graph *g = pu_new_graph();
    em_tensor *w = em_randn(2, SH(2, 3), 3);
    ir_node *wt = OP1(g, PERMUTE, ir_graph_add_const(g, w), .dims = {1, 0});
    pu_set_out(g, OP1(g, CONTIGUOUS, wt)); /* a copy would freeze the data */
    ir_graph *o = pu_simplify(g);
    cr_expect_eq(pu_output(o)->op, IR_OP_CONTIGUOUS);
    cr_expect_eq(pu_output(o)->in[0]->kind, IR_NODE_CONST);
    ir_graph_destroy(o);
    em_release(w);
}

/* ---- neg(neg x) -------------------------------------------------------------------------------- */

static ir_node *neg_neg_exp(ir_graph *g, ir_node *x) {
    return OP1(g, NEG, OP1(g, NEG, OP1(g, EXP, x)));
}
static ir_node *neg3(ir_graph *g, ir_node *x) {
    return OP1(g, NEG, OP1(g, NEG, OP1(g, NEG, OP1(g, TANH, x))));
}
static ir_node *neg_neg_arg(ir_graph *g, ir_node *x) { return OP1(g, NEG, OP1(g, NEG, x)); }
Test(fold, turns_neg_of_neg_into_x) {
    ir_graph *o = pu_fold_unary(neg_neg_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(pu_output(o)->op, IR_OP_EXP);
    cr_expect_eq(ir_graph_num_nodes(o), 2);
    ir_graph_destroy(o);
    o = pu_fold_unary(neg3, EM_F32, 1, SH(9));
    pu_expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[9]\n"
                   "  %1 = tanh %0 : f32[9]\n"
                   "  %2 = neg %1 : f32[9]\n"
                   "  return %2\n");
    ir_graph_destroy(o);
    o = pu_fold_unary(neg_neg_arg, EM_I64, 1, SH(9));
    cr_expect_eq(pu_output(o)->op, IR_OP_CONTIGUOUS);
    ir_graph_destroy(o);
}

