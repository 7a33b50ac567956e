/*
 * test_dce.c — dead code elimination and the rebuild it shares with every pass
 * (passes/dce.c, passes/rewrite.c).
 *
 * dce keeps exactly what the outputs depend on: dead branches and the
 * constants only they used go (and their tensors are released once the old
 * graph is), every input node stays so the graph takes the same arguments,
 * outputs listed twice or that are inputs or constants survive, the node
 * order stays topological with leaves first, and a graph with nothing dead
 * prints exactly as before. The rebuild itself: a callback that returns a
 * node of the wrong type fails with a message naming the node, and nothing
 * leaks on failure (this suite runs under LeakSanitizer).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pass_util.h"

static ir_graph *dce(const ir_graph *g) {
    ir_graph *o = pass_dce(g);
    cr_assert(o, "%s", em_last_error());
    cr_assert_eq(ir_graph_verify(o), 0, "%s", em_last_error());
    return o;
}

Test(dce, removes_a_dead_branch_and_the_constants_only_it_used) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(2, 3));
    em_tensor *w = em_full(EM_F32, 1, SH(3), 2.0), *b = em_full(EM_F32, 1, SH(3), 1.0);
    ir_node *cw = ir_graph_add_const(g, w), *cb = ir_graph_add_const(g, b);
    ir_node *live = OP2(g, ADD, OP1(g, EXP, x), cb);
    ir_node *dead = OP1(g, SUM, OP2(g, MUL, OP1(g, TANH, x), cw), .axis = 1);
    OP2(g, SUB, dead, dead);
    pu_set_outs(g, &live, 1);
    cr_assert_eq(ir_graph_num_nodes(g), 9);
    ir_graph *o = dce(g);
    char *s = pu_text(o);
    cr_expect_str_eq(s, "graph g\n"
                        "  %0 = input 0 : f32[2,3]\n"
                        "  %1 = const f32[3] @_\n"
                        "  %2 = exp %0 : f32[2,3]\n"
                        "  %3 = add %2, %1 : f32[2,3]\n"
                        "  return %3\n");
    free(s);
    cr_expect_eq(ir_graph_output(o, 0)->in[1]->value, b);
    cr_expect_eq(atomic_load(&w->refs), 2, "the caller's and the old graph's");
    ir_graph_destroy(g);
    cr_expect_eq(atomic_load(&w->refs), 1, "the dead constant is released with the old graph");
    cr_expect_eq(atomic_load(&b->refs), 2, "the live one is held by the new graph");
    ir_graph_destroy(o);
    em_release(w), em_release(b);
}

Test(dce, keeps_every_input_so_the_graph_takes_the_same_arguments) {
    ir_graph *g = pu_new_graph();
    pu_input(g, 2, EM_F32, 1, SH(4)); /* added out of argument order, and unused */
    ir_node *x1 = pu_input(g, 1, EM_F32, 1, SH(4));
    pu_input(g, 0, EM_F32, 0, NULL);
    ir_node *y = OP1(g, NEG, x1);
    pu_set_outs(g, &y, 1);
    ir_graph *o = dce(g);
    cr_expect_eq(ir_graph_num_inputs(o), 3);
    cr_expect_eq(ir_graph_num_nodes(o), 4);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(ir_graph_input(o, i)->arg, i);
        cr_expect_eq(ir_graph_node(o, i)->arg, ir_graph_node(g, i)->arg, "inputs keep their order");
    }
    char *a = pu_text(g), *b = pu_text(o);
    cr_expect_str_eq(b, a, "nothing was dead");
    free(a), free(b);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(dce, keeps_outputs_that_repeat_or_are_inputs_or_constants) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 1, SH(3));
    em_tensor *t = em_zeros(EM_F32, 1, SH(3));
    ir_node *c = ir_graph_add_const(g, t);
    em_release(t);
    ir_node *e = OP1(g, EXP, x);
    OP1(g, LOG, e); /* dead */
    pu_set_outs(g, (ir_node *[]){e, x, e, c}, 4);
    ir_graph *o = dce(g);
    cr_expect_eq(ir_graph_num_nodes(o), 3);
    cr_expect_eq(ir_graph_num_outputs(o), 4);
    cr_expect_eq(ir_graph_output(o, 0), ir_graph_output(o, 2));
    cr_expect_eq(ir_graph_output(o, 1)->kind, IR_NODE_INPUT);
    cr_expect_eq(ir_graph_output(o, 3)->kind, IR_NODE_CONST);
    cr_expect_eq(ir_graph_output(o, 0)->uses, 2, "two output slots");
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(dce, keeps_a_value_shared_by_a_live_and_a_dead_user) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 1, SH(5));
    ir_node *s = OP1(g, SIGMOID, x);
    ir_node *live = OP2(g, MUL, s, x);
    OP2(g, ADD, s, s); /* dead, but s is not */
    pu_set_outs(g, &live, 1);
    ir_graph *o = dce(g);
    cr_expect_eq(ir_graph_num_nodes(o), 3);
    cr_expect_eq(ir_graph_node(o, 1)->op, IR_OP_SIGMOID);
    cr_expect_eq(ir_graph_node(o, 1)->uses, 1, "the dead user no longer counts");
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(dce, gives_the_same_results_and_keeps_call_sites_and_optional_operands) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 8));
    em_tensor *w = em_randn(2, SH(3, 8), 1);
    ir_node *in[3] = {x, ir_graph_add_const(g, w), NULL};
    ir_node *l = ir_graph_add_node(g, IR_OP_LINEAR, NULL, in, 3, &(ir_attrs){0}, 0x1234);
    cr_assert(l, "%s", em_last_error());
    OP1(g, SOFTMAX, x, .axis = 1);
    pu_set_outs(g, &l, 1);
    ir_graph *o = dce(g);
    ir_node *ol = ir_graph_output(o, 0);
    cr_expect_eq(ol->site, 0x1234);
    cr_expect_null(ol->in[2]);
    em_tensor *arg = em_randn(2, SH(4, 8), 2), *a, *b;
    cr_assert_eq(ir_graph_run(g, &arg, &a), 0, "%s", em_last_error());
    cr_assert_eq(ir_graph_run(o, &arg, &b), 0, "%s", em_last_error());
    float va[12], vb[12];
    cr_assert_eq(em_read(a, va, sizeof va), 0);
    cr_assert_eq(em_read(b, vb, sizeof vb), 0);
    cr_expect_eq(memcmp(va, vb, sizeof va), 0);
    em_release(a), em_release(b), em_release(arg), em_release(w);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

/* A callback that replaces every exp by its input: a type error for i32 -> f32. */
static ir_node *wrong_type(pass_rewrite *rw, const ir_node *old, ir_node **in, void *ctx) {
    (void)ctx;
    if (old->kind == IR_NODE_OP && old->op == IR_OP_EXP) return in[0];
    return pass_rewrite_copy(rw, old, in);
}

Test(dce, rebuild_rejects_a_replacement_of_another_type_and_names_the_node) {
    ir_graph *g = pu_new_graph();
    ir_type t = {.dtype = EM_I32, .ndim = 1, .shape = {4}};
    ir_node *x = ir_graph_add_input(g, &t, 0);
    em_tensor *c = em_zeros(EM_F32, 1, SH(4));
    ir_node *y = OP2(g, ADD, OP1(g, EXP, x), ir_graph_add_const(g, c));
    em_release(c);
    pu_set_outs(g, &y, 1);
    em_clear_error();
    cr_expect_null(pass_rewrite_run(g, NULL, wrong_type, NULL));
    cr_expect_str_eq(em_last_error(),
                     "pass_rewrite: %2 (exp) of graph g was replaced by a i32[4] value, not f32[4]");
    ir_graph_destroy(g);
}

Test(dce, fails_cleanly_when_memory_runs_out) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 1, SH(3));
    em_tensor *c = em_zeros(EM_F32, 1, SH(3));
    ir_node *y = OP2(g, ADD, OP1(g, EXP, x), ir_graph_add_const(g, c));
    em_release(c);
    pu_set_outs(g, &y, 1);
    int failed = 0;
    for (long n = 1; n <= 16; n++) {
        rt_alloc_fail_after(n);
        ir_graph *o = pass_dce(g);
        rt_alloc_fail_after(0);
        if (!o) {
            failed++;
            cr_expect(strstr(em_last_error(), "out of memory"), "n=%ld: %s", n, em_last_error());
            continue;
        }
        cr_expect_eq(ir_graph_verify(o), 0, "%s", em_last_error());
        ir_graph_destroy(o);
    }
    cr_expect_gt(failed, 0);
    ir_graph_destroy(g);
}
