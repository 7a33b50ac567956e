/*
 * test_scale.c — a power-of-two scale of a contraction's operand moves to its
 * result (passes/scale.c).
 *
 * matmul(x * s, w), s * x, x / s, either operand or both, and linear with its
 * bias (scaled the other way, since eager starts its sums from the bias)
 * become the product of the unscaled operands times (or over) s, and give the
 * same bytes. What must stay put: a scale that is an argument, a constant the
 * caller still holds (it may change between calls), a scale of more than one
 * element, s / x, a scale that is not a power of two (moving it would round
 * differently), one outside [2^-24, 2^24] in magnitude (where the product
 * could overflow or turn subnormal on one side only), 0, NaN, and other ops
 * over a scaled value. A scaled operand that is also returned is still
 * computed.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "pass_util.h"

/* g through scale then dce (verified), with g's own fixed constants. */
static ir_graph *scaled(const ir_graph *g) {
    pass_consts *k = pass_consts_create(g);
    cr_assert(k, "%s", em_last_error());
    ir_graph *o = pass_scale(g, k);
    pass_consts_destroy(k);
    return pu_then_dce(o);
}

/* g and its scaled graph o give the same bytes on uniform arguments of the
 * given shapes (2-d, or 3-d when the first is nonzero), seeded from seed. */
static void expect_same_bytes(const ir_graph *g, const ir_graph *o, int n, const int64_t (*shapes)[3], uint64_t seed) {
    em_tensor *args[3];
    for (int i = 0; i < n; i++) {
        int nd = shapes[i][0] ? 3 : shapes[i][1] ? 2 : 1;
        args[i] = tu_uniform_tensor(nd, shapes[i] + 3 - nd, -2, 2, seed + (uint64_t)i);
    }
    pu_expect_same_result(g, o, args);
    for (int i = 0; i < n; i++) em_release(args[i]);
}

/* The printed graph, constants masked, after scale and dce. */
static void expect_scaled_text(const ir_graph *g, const char *want) {
    ir_graph *o = scaled(g);
    pu_expect_text(o, want);
    ir_graph_destroy(o);
}

Test(scale, a_scalar_scale_of_matmul_s_first_operand_moves_to_its_result_with_the_same_values) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(5, 7)), *w = pu_input(g, 1, EM_F32, 2, SH(7, 3));
    ir_node *s = pu_fixed(g, em_scalar(EM_F32, 0.125));
    pu_set_out(g, OP2(g, MATMUL, OP2(g, MUL, x, s), w));
    expect_scaled_text(g, "graph g\n"
                          "  %0 = input 0 : f32[5,7]\n"
                          "  %1 = input 1 : f32[7,3]\n"
                          "  %2 = const f32[] @_\n"
                          "  %3 = matmul %0, %1 : f32[5,3]\n"
                          "  %4 = mul %3, %2 : f32[5,3]\n"
                          "  return %4\n");
    ir_graph *o = scaled(g);
    expect_same_bytes(g, o, 2, (const int64_t[][3]){{0, 5, 7}, {0, 7, 3}}, 1);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(scale, scales_on_the_left_on_either_operand_and_divisions_move_too) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 3, SH(2, 4, 6)), *w = pu_input(g, 1, EM_F32, 2, SH(6, 5));
    ir_node *s = pu_fixed(g, em_scalar(EM_F32, 4.0)), *t = pu_fixed(g, em_full(EM_F32, 2, SH(1, 1), 0.25));
    pu_set_out(g, OP2(g, MATMUL, OP2(g, MUL, s, x), OP2(g, DIV, w, t)));
    ir_graph *o = scaled(g);
    const ir_node *out = pu_output(o);
    cr_assert(out->op == IR_OP_DIV && out->in[1]->kind == IR_NODE_CONST, "the division is last");
    cr_assert(out->in[0]->op == IR_OP_MUL && out->in[0]->in[0]->op == IR_OP_MATMUL, "then the scale, on the product");
    const ir_node *mm = out->in[0]->in[0];
    cr_expect(mm->in[0]->kind == IR_NODE_INPUT && mm->in[1]->kind == IR_NODE_INPUT, "of the unscaled operands");
    expect_same_bytes(g, o, 2, (const int64_t[][3]){{2, 4, 6}, {0, 6, 5}}, 3);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(scale, a_linear_keeps_its_bias_out_of_the_scale) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 8)), *w = pu_input(g, 1, EM_F32, 2, SH(3, 8));
    ir_node *b = pu_input(g, 2, EM_F32, 1, SH(3)), *s = pu_fixed(g, em_scalar(EM_F32, 4.0));
    ir_node *in[3] = {OP2(g, DIV, x, s), w, b};
    pu_set_out(g, ir_graph_add_node(g, IR_OP_LINEAR, NULL, in, 3, &(ir_attrs){0}, 0));
    expect_scaled_text(g, "graph g\n"
                          "  %0 = input 0 : f32[4,8]\n"
                          "  %1 = input 1 : f32[3,8]\n"
                          "  %2 = input 2 : f32[3]\n"
                          "  %3 = const f32[] @_\n"
                          "  %4 = mul %2, %3 : f32[3]\n"
                          "  %5 = linear %0, %1, %4 : f32[4,3]\n"
                          "  %6 = div %5, %3 : f32[4,3]\n"
                          "  return %6\n");
    ir_graph *o = scaled(g);
    expect_same_bytes(g, o, 3, (const int64_t[][3]){{0, 4, 8}, {0, 3, 8}, {0, 0, 3}}, 5);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

/* Each builder gives a matmul over a scaled operand that must not change. */
static ir_node *by_argument(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_input(g, 2, EM_F32, 0, SH(1))), w);
}
static em_tensor *held; /* a constant the caller still holds: captured by reference */
static ir_node *by_held_constant(ir_graph *g, ir_node *x, ir_node *w) {
    held = em_scalar(EM_F32, 0.5);
    return OP2(g, MATMUL, OP2(g, MUL, x, ir_graph_add_const(g, held)), w);
}
static ir_node *by_vector(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_full(g, EM_F32, 1, SH(7), 0.5)), w);
}
static ir_node *by_reciprocal(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, DIV, pu_fixed(g, em_scalar(EM_F32, 2.0)), x), w);
}
static ir_node *by_huge(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0x1p25))), w);
}
static ir_node *by_tiny(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0x1p-25))), w);
}
static ir_node *by_non_power_of_two(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0.125 * 1.5))), w);
}
static ir_node *by_zero(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0.0))), w);
}
static ir_node *by_nan(ir_graph *g, ir_node *x, ir_node *w) {
    return OP2(g, MATMUL, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, NAN))), w);
}
static ir_node *not_a_contraction(ir_graph *g, ir_node *x, ir_node *w) {
    (void)w;
    return OP1(g, EXP, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0.5))));
}

Test(scale, leaves_arguments_held_constants_vectors_reciprocals_extreme_scales_and_other_ops_alone) {
    ir_node *(*builds[])(ir_graph *, ir_node *, ir_node *) = {by_argument, by_held_constant, by_vector, by_reciprocal,
                                                             by_huge, by_tiny, by_zero, by_nan, by_non_power_of_two,
                                                             not_a_contraction};
    const char *names[] = {"an argument", "a held constant", "a vector", "s / x", "2^25", "2^-25", "0", "NaN",
                           "0.1875", "an exp"};
    for (size_t i = 0; i < sizeof builds / sizeof builds[0]; i++) {
        ir_graph *g = pu_new_graph();
        ir_node *x = pu_input(g, 0, EM_F32, 2, SH(5, 7)), *w = pu_input(g, 1, EM_F32, 2, SH(7, 3));
        held = NULL;
        pu_set_out(g, builds[i](g, x, w));
        ir_graph *o = scaled(g);
        char *before = pu_text(g), *after = pu_text(o);
        cr_expect_str_eq(after, before, "a scale by %s stays put", names[i]);
        free(before), free(after);
        ir_graph_destroy(o);
        ir_graph_destroy(g);
        em_release(held);
    }
}

Test(scale, a_scaled_operand_that_is_also_returned_is_still_computed) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(5, 7)), *w = pu_input(g, 1, EM_F32, 2, SH(7, 3));
    ir_node *xs = OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0.5)));
    pu_set_outs(g, (ir_node *[]){OP2(g, MATMUL, xs, w), xs}, 2);
    ir_graph *o = scaled(g);
    const ir_node *y = ir_graph_output(o, 0), *z = ir_graph_output(o, 1);
    cr_assert(y->op == IR_OP_MUL && y->in[0]->op == IR_OP_MATMUL, "the product is scaled");
    cr_expect(y->in[0]->in[0]->kind == IR_NODE_INPUT, "the product is of x");
    cr_expect(z->op == IR_OP_MUL && z->in[0]->kind == IR_NODE_INPUT, "x * 0.5 is still returned");
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(scale, without_fixed_constants_nothing_moves) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(5, 7)), *w = pu_input(g, 1, EM_F32, 2, SH(7, 3));
    pu_set_out(g, OP2(g, MATMUL, OP2(g, MUL, x, pu_fixed(g, em_scalar(EM_F32, 0.5))), w));
    ir_graph *o = pass_scale(g, NULL);
    cr_assert(o, "%s", em_last_error());
    char *before = pu_text(g), *after = pu_text(o);
    cr_expect_str_eq(after, before);
    free(before), free(after);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}
