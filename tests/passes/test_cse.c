/*
 * test_cse.c — common subexpressions beyond hash-consing (passes/cse.c).
 *
 * Swapped operands of add, mul, eq and ne become one node (and so do their
 * users); maximum and minimum keep their order because the eager kernels give
 * maximum(+0.0, -0.0) = -0.0 but maximum(-0.0, +0.0) = +0.0, which is checked
 * here too; non-commutative ops are never reordered. Fixed constants with the
 * same dtype, shape, strides and bytes merge (with their users) up to 4096
 * bytes; -0.0 and 0.0, different dtypes, shapes or strides, constants larger
 * than the limit, and constants the caller still holds (captured by
 * reference) stay apart. Results are bit-identical before and after.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pass_util.h"

static ir_node *op2(ir_graph *g, ir_op o, ir_node *a, ir_node *b) { return pu_op(g, o, a, b, (ir_attrs){0}); }

static ir_graph *cse(const ir_graph *g) { return pu_then_dce(pass_cse(g, NULL)); }

static int count_ops(const ir_graph *g) {
    int n = 0;
    for (int i = 0; i < ir_graph_num_nodes(g); i++) n += ir_graph_node(g, i)->kind == IR_NODE_OP;
    return n;
}

static int count_consts(const ir_graph *g) {
    int n = 0;
    for (int i = 0; i < ir_graph_num_nodes(g); i++) n += ir_graph_node(g, i)->kind == IR_NODE_CONST;
    return n;
}

/* ---- commutative ops ------------------------------------------------------------------- */

Test(cse, merges_swapped_operands_of_add_mul_eq_and_ne_and_then_their_users) {
    static const ir_op ops[] = {IR_OP_ADD, IR_OP_MUL, IR_OP_EQ, IR_OP_NE};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ir_graph *g = pu_new_graph();
        ir_node *x = pu_input(g, 0, EM_F32, 2, SH(2, 3)), *y = pu_input(g, 1, EM_F32, 1, SH(3));
        ir_node *a = op2(g, ops[i], x, y), *b = op2(g, ops[i], y, x);
        cr_assert_neq(a, b, "hash-consing alone keeps them apart");
        ir_node *u = ir_graph_add_node(g, IR_OP_CAST, NULL, &a, 1, &(ir_attrs){.dtype = EM_F64}, 0);
        ir_node *v = ir_graph_add_node(g, IR_OP_CAST, NULL, &b, 1, &(ir_attrs){.dtype = EM_F64}, 0);
        pu_set_outs(g, (ir_node *[]){u, v}, 2);
        ir_graph *o = cse(g);
        cr_expect_eq(ir_graph_num_nodes(o), 4, "%s", ir_ops[ops[i]].name);
        cr_expect_eq(ir_graph_output(o, 0), ir_graph_output(o, 1), "%s", ir_ops[ops[i]].name);
        const ir_node *m = ir_graph_output(o, 0)->in[0];
        cr_expect(m->in[0]->arg == 0 && m->in[1]->arg == 1, "operands in node-id order");
        ir_graph_destroy(o);
        ir_graph_destroy(g);
    }
}

Test(cse, keeps_the_operand_order_of_maximum_and_minimum_because_signed_zeros_tell) {
    em_tensor *p = em_scalar(EM_F32, 0.0), *n = em_scalar(EM_F32, -0.0);
    em_tensor *pn = em_maximum(p, n), *np = em_maximum(n, p);
    cr_expect(signbit(em_item(pn)) && !signbit(em_item(np)), "maximum returns its second operand on a tie");
    em_release(pn), em_release(np);
    pn = em_minimum(p, n), np = em_minimum(n, p);
    cr_expect(signbit(em_item(pn)) && !signbit(em_item(np)), "so does minimum");
    em_release(pn), em_release(np), em_release(p), em_release(n);

    static const ir_op ops[] = {IR_OP_MAXIMUM, IR_OP_MINIMUM, IR_OP_SUB, IR_OP_DIV, IR_OP_LT, IR_OP_POW};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ir_graph *g = pu_new_graph();
        ir_node *x = pu_input(g, 0, EM_F32, 1, SH(3)), *y = pu_input(g, 1, EM_F32, 1, SH(3));
        pu_set_outs(g, (ir_node *[]){op2(g, ops[i], y, x), op2(g, ops[i], x, y)}, 2);
        ir_graph *o = cse(g);
        cr_expect_eq(count_ops(o), 2, "%s", ir_ops[ops[i]].name);
        cr_expect_eq(ir_graph_output(o, 0)->in[0]->arg, 1, "%s keeps its order", ir_ops[ops[i]].name);
        ir_graph_destroy(o);
        ir_graph_destroy(g);
    }
}

Test(cse, orders_operands_by_node_id_and_prints_the_result) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 1, SH(4));
    ir_node *c = pu_fixed(g, em_full(EM_F32, 0, NULL, 0.5));
    ir_node *e = ir_graph_add_node(g, IR_OP_EXP, NULL, &x, 1, &(ir_attrs){0}, 0);
    pu_set_outs(g, (ir_node *[]){op2(g, IR_OP_MUL, e, c), op2(g, IR_OP_MUL, c, e)}, 2);
    ir_graph *o = cse(g);
    char *s = pu_text(o);
    cr_expect_str_eq(s, "graph g\n"
                        "  %0 = input 0 : f32[4]\n"
                        "  %1 = const f32[] @_\n"
                        "  %2 = exp %0 : f32[4]\n"
                        "  %3 = mul %1, %2 : f32[4]\n"
                        "  return %3, %3\n");
    free(s);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

/* ---- constants ----------------------------------------------------------------------------- */

Test(cse, merges_equal_small_constants_made_separately_and_their_users) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(2, 3));
    ir_node *a = pu_fixed(g, em_scalar(EM_F32, 0.125)), *b = pu_fixed(g, em_scalar(EM_F32, 0.125));
    cr_assert_neq(a, b, "constants are keyed by tensor");
    ir_node *ya = op2(g, IR_OP_MUL, x, a), *yb = op2(g, IR_OP_MUL, x, b);
    pu_set_outs(g, (ir_node *[]){op2(g, IR_OP_SUB, ya, yb)}, 1);
    ir_graph *o = cse(g);
    char *s = pu_text(o);
    cr_expect_str_eq(s, "graph g\n"
                        "  %0 = input 0 : f32[2,3]\n"
                        "  %1 = const f32[] @_\n"
                        "  %2 = mul %0, %1 : f32[2,3]\n"
                        "  %3 = sub %2, %2 : f32[2,3]\n"
                        "  return %3\n");
    free(s);
    cr_expect_eq(ir_graph_node(o, 1)->value, a->value, "the first one is kept");
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(cse, keeps_constants_that_differ_in_bits_dtype_shape_or_strides_apart) {
    ir_graph *g = pu_new_graph();
    em_tensor *one = em_full(EM_F32, 1, SH(1), 1.0), *nan = em_scalar(EM_F32, NAN);
    ir_node *c[] = {
        pu_fixed(g, em_scalar(EM_F32, 0.0)),     pu_fixed(g, em_scalar(EM_F32, -0.0)),
        pu_fixed(g, em_scalar(EM_F64, 0.0)),     pu_fixed(g, em_full(EM_F32, 1, SH(1), 0.0)),
        pu_fixed(g, em_full(EM_F32, 1, SH(4), 1.0)), pu_fixed(g, em_expand(one, 1, SH(4))), /* stride 0 */
        pu_fixed(g, em_scalar(EM_F32, NAN)),     pu_fixed(g, em_neg(nan)), /* -NaN */
    };
    em_release(one), em_release(nan);
    enum { N = sizeof c / sizeof c[0] };
    pu_set_outs(g, c, N);
    ir_graph *o = cse(g);
    cr_expect_eq(count_consts(o), N);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

static ir_graph *two_equal_consts(int64_t n, bool held, em_tensor **keep) {
    ir_graph *g = pu_new_graph();
    em_tensor *a = em_full(EM_F32, 1, SH(n), 3.0), *b = em_full(EM_F32, 1, SH(n), 3.0);
    ir_node *ca = ir_graph_add_const(g, a), *cb = ir_graph_add_const(g, b);
    pu_set_outs(g, (ir_node *[]){ca, cb}, 2);
    if (held) keep[0] = a, keep[1] = b;
    else em_release(a), em_release(b);
    return g;
}

Test(cse, merges_constants_up_to_4096_bytes_only) {
    ir_graph *g = two_equal_consts(1024, false, NULL), *o = cse(g);
    cr_expect_eq(count_consts(o), 1, "4096 bytes");
    ir_graph_destroy(o), ir_graph_destroy(g);
    g = two_equal_consts(1025, false, NULL), o = cse(g);
    cr_expect_eq(count_consts(o), 2, "4100 bytes");
    ir_graph_destroy(o), ir_graph_destroy(g);
}

Test(cse, never_merges_constants_the_caller_still_holds) {
    em_tensor *keep[2];
    ir_graph *g = two_equal_consts(4, true, keep), *o = cse(g);
    cr_expect_eq(count_consts(o), 2, "their data may change independently");
    ir_graph_destroy(o), ir_graph_destroy(g);
    em_release(keep[0]), em_release(keep[1]);
}

Test(cse, gives_bit_identical_results) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(3, 5)), *y = pu_input(g, 1, EM_F32, 1, SH(5));
    ir_node *h = pu_fixed(g, em_scalar(EM_F32, 0.5)), *h2 = pu_fixed(g, em_scalar(EM_F32, 0.5));
    ir_node *a = op2(g, IR_OP_ADD, op2(g, IR_OP_MUL, x, h), y);
    ir_node *b = op2(g, IR_OP_ADD, y, op2(g, IR_OP_MUL, h2, x));
    pu_set_outs(g, (ir_node *[]){op2(g, IR_OP_MAXIMUM, a, b), op2(g, IR_OP_EQ, b, a)}, 2);
    pass_consts *k = pass_consts_create(g);
    ir_graph *o = pass_cse(g, k);
    pass_consts_destroy(k);
    cr_assert(o, "%s", em_last_error());
    cr_expect_eq(ir_graph_output(o, 0)->in[0], ir_graph_output(o, 0)->in[1]);
    em_tensor *args[2] = {em_randn(2, SH(3, 5), 1), em_randn(1, SH(5), 2)}, *r1[2], *r2[2];
    cr_assert_eq(ir_graph_run(g, args, r1), 0, "%s", em_last_error());
    cr_assert_eq(ir_graph_run(o, args, r2), 0, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        size_t n = (size_t)em_numel(r1[i]) * em_dtype_size(em_type(r1[i]));
        char *p = malloc(n), *q = malloc(n);
        cr_assert_eq(em_read(r1[i], p, n), 0);
        cr_assert_eq(em_read(r2[i], q, n), 0);
        cr_expect_eq(memcmp(p, q, n), 0, "output %d", i);
        free(p), free(q);
        em_release(r1[i]), em_release(r2[i]);
    }
    em_release(args[0]), em_release(args[1]);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}
