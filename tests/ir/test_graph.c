/*
 * test_graph.c — building SSA graphs (ir/graph.c) and verifying them (ir/verify.c).
 *
 * Construction: hash-consing (an identical op is one node, different or
 * un-normalised attributes are not confused, constants are keyed by tensor
 * pointer and inputs by argument index), shape-rule errors while adding that
 * read exactly like the eager call's, use counts, the leaves-first node order,
 * and allocation failures that leave the graph as it was. Verification: a graph
 * built through the API passes; graphs corrupted by hand through the node
 * structs (a wrong type, a wrong use count, an input after its user, a
 * duplicate, un-normalised attributes, a missing operand) are each rejected
 * with a message naming the node.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "ir.h"

/* ---- helpers ------------------------------------------------------------------------ */

static ir_type ty(em_dtype dt, int nd, const int64_t *shape) {
    ir_type t = {.dtype = dt, .ndim = nd};
    if (nd) memcpy(t.shape, shape, (size_t)nd * sizeof *shape);
    return t;
}

static ir_node *input(ir_graph *g, int arg, em_dtype dt, int nd, const int64_t *shape) {
    ir_type t = ty(dt, nd, shape);
    ir_node *n = ir_graph_add_input(g, &t, arg);
    cr_assert(n, "%s", em_last_error());
    return n;
}

static ir_node *op2(ir_graph *g, ir_op op, ir_node *a, ir_node *b) {
    ir_node *in[2] = {a, b};
    ir_node *n = ir_graph_add_node(g, op, NULL, in, 2, &(ir_attrs){0}, 0);
    cr_assert(n, "%s", em_last_error());
    return n;
}

static ir_node *op1(ir_graph *g, ir_op op, ir_node *a, const ir_attrs *attrs) {
    ir_node *n = ir_graph_add_node(g, op, NULL, &a, 1, attrs, 0);
    cr_assert(n, "%s", em_last_error());
    return n;
}

static ir_graph *new_graph(const char *name) {
    ir_graph *g = ir_graph_create(name);
    cr_assert(g, "%s", em_last_error());
    return g;
}

/* x:[4,8] -> linear(w1,b1) -> gelu -> linear(w2,NULL) = y; outputs y, sum(y, 1), sum(y, 0). */
static ir_graph *mlp_graph(em_tensor **w1, em_tensor **b1, em_tensor **w2) {
    ir_graph *g = new_graph("mlp");
    *w1 = em_randn(2, (int64_t[]){16, 8}, 1);
    *b1 = em_randn(1, (int64_t[]){16}, 2);
    *w2 = em_randn(2, (int64_t[]){8, 16}, 3);
    cr_assert(*w1 && *b1 && *w2, "%s", em_last_error());
    ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){4, 8});
    ir_node *l1[3] = {x, ir_graph_add_const(g, *w1), ir_graph_add_const(g, *b1)};
    ir_node *h = ir_graph_add_node(g, IR_OP_LINEAR, "em_linear", l1, 3, &(ir_attrs){0}, 0);
    cr_assert(h, "%s", em_last_error());
    h = op1(g, IR_OP_GELU, h, &(ir_attrs){0});
    ir_node *l2[3] = {h, ir_graph_add_const(g, *w2), NULL};
    ir_node *y = ir_graph_add_node(g, IR_OP_LINEAR, "em_linear", l2, 3, &(ir_attrs){0}, 0);
    cr_assert(y, "%s", em_last_error());
    ir_node *s1 = op1(g, IR_OP_SUM, y, &(ir_attrs){.axis = 1});
    ir_node *s0 = op1(g, IR_OP_SUM, y, &(ir_attrs){.axis = 0});
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){y, s1, s0}, 3), 0, "%s", em_last_error());
    return g;
}

static void release3(em_tensor *a, em_tensor *b, em_tensor *c) {
    em_release(a), em_release(b), em_release(c);
}

/* ---- hash-consing -------------------------------------------------------------------- */

Test(graph, returns_the_same_node_for_an_identical_op) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){2, 3});
    ir_node *y = input(g, 1, EM_F32, 1, (int64_t[]){3});
    ir_node *a = op2(g, IR_OP_ADD, x, y);
    ir_node *b = op2(g, IR_OP_ADD, x, y);
    cr_expect_eq(a, b);
    cr_expect_eq(ir_graph_num_nodes(g), 3);
    cr_expect_eq(x->uses, 1, "a repeated op must not count its inputs twice");
    cr_expect_neq(op2(g, IR_OP_ADD, y, x), a, "operand order is part of the key");
    cr_expect_neq(op2(g, IR_OP_SUB, x, y), a, "the op is part of the key");
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
}

Test(graph, makes_different_nodes_for_different_attributes) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){2, 3});
    ir_node *s0 = op1(g, IR_OP_SUM, x, &(ir_attrs){.axis = 0});
    ir_node *s1 = op1(g, IR_OP_SUM, x, &(ir_attrs){.axis = 1});
    ir_node *s1k = op1(g, IR_OP_SUM, x, &(ir_attrs){.axis = 1, .keepdim = 1});
    cr_expect(s0 != s1 && s1 != s1k && s0 != s1k);
    cr_expect_eq(s0->type.ndim, 1);
    cr_expect_eq(s0->type.shape[0], 3);
    cr_expect_eq(s1k->type.ndim, 2);
    cr_expect_eq(ir_graph_num_nodes(g), 4);
    ir_graph_destroy(g);
}

Test(graph, normalises_attributes_before_looking_for_an_equal_node) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){2, 3});
    ir_node *a = op1(g, IR_OP_SUM, x, &(ir_attrs){.axis = -1, .keepdim = 7});
    ir_node *b = op1(g, IR_OP_SUM, x, &(ir_attrs){.axis = 1, .keepdim = 1});
    cr_expect_eq(a, b, "axis -1 of a 2-d tensor is axis 1; keepdim 7 is keepdim 1");
    cr_expect_eq(a->attrs.axis, 1);
    ir_node *r1 = op1(g, IR_OP_RESHAPE, x, &(ir_attrs){.ndim = 2, .dims = {3, -1}});
    ir_node *r2 = op1(g, IR_OP_RESHAPE, x, &(ir_attrs){.ndim = 2, .dims = {3, 2}});
    cr_expect_eq(r1, r2, "the -1 of a reshape is resolved first");
    ir_node *c1 = op1(g, IR_OP_SLICE, x, &(ir_attrs){.axis = 1, .start = -2, .end = 99, .step = 1});
    ir_node *c2 = op1(g, IR_OP_SLICE, x, &(ir_attrs){.axis = -1, .start = 1, .end = 3, .step = 1});
    cr_expect_eq(c1, c2, "slice bounds are clamped first");
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
}

Test(graph, keys_constants_by_tensor_pointer) {
    em_tensor *t = em_full(EM_F32, 1, (int64_t[]){4}, 2.0);
    em_tensor *u = em_full(EM_F32, 1, (int64_t[]){4}, 2.0); /* equal data, other tensor */
    cr_assert(t && u);
    long refs = atomic_load(&t->refs);
    ir_graph *g = new_graph("g");
    ir_node *a = ir_graph_add_const(g, t), *b = ir_graph_add_const(g, t), *c = ir_graph_add_const(g, u);
    cr_assert(a && c);
    cr_expect_eq(a, b);
    cr_expect_neq(a, c);
    cr_expect_eq(a->value, t);
    cr_expect_eq(atomic_load(&t->refs), refs + 1, "the graph holds one reference per constant");
    cr_expect_eq(a->type.dtype, EM_F32);
    cr_expect_eq(a->type.shape[0], 4);
    ir_graph_destroy(g);
    cr_expect_eq(atomic_load(&t->refs), refs, "destroy releases the constants");
    em_release(t);
    em_release(u);
}

Test(graph, keys_inputs_by_argument_index) {
    ir_graph *g = new_graph("g");
    ir_node *a = input(g, 1, EM_F32, 1, (int64_t[]){3});
    ir_node *b = input(g, 0, EM_I64, 0, NULL);
    cr_expect_eq(input(g, 1, EM_F32, 1, (int64_t[]){3}), a);
    cr_expect_eq(ir_graph_input(g, 1), a);
    cr_expect_eq(ir_graph_input(g, 0), b);
    cr_expect_eq(ir_graph_num_inputs(g), 2);
    ir_type other = ty(EM_F32, 1, (int64_t[]){4});
    cr_expect_null(ir_graph_add_input(g, &other, 1));
    cr_expect_str_eq(em_last_error(), "ir_graph_add_input: argument 1 of graph g is f32[3], not f32[4]");
    cr_expect_null(ir_graph_add_input(g, &other, -1));
    cr_expect_eq(ir_graph_num_nodes(g), 2);
    ir_graph_destroy(g);
}

/* ---- errors while adding ------------------------------------------------------------- */

Test(graph, fails_a_broadcasting_mismatch_with_the_message_of_eager_em_add) {
    em_tensor *x = em_zeros(EM_F32, 2, (int64_t[]){2, 3});
    em_tensor *y = em_zeros(EM_F32, 1, (int64_t[]){4});
    cr_assert_null(em_add(x, y));
    char eager[512];
    snprintf(eager, sizeof eager, "%s", em_last_error());
    cr_assert_str_eq(eager, "em_add: shapes [2,3] and [4] cannot be broadcast");

    ir_graph *g = new_graph("g");
    ir_node *in[2] = {input(g, 0, EM_F32, 2, x->shape), input(g, 1, EM_F32, 1, y->shape)};
    em_clear_error();
    cr_expect_null(ir_graph_add_node(g, IR_OP_ADD, "em_add", in, 2, &(ir_attrs){0}, 0));
    cr_expect_str_eq(em_last_error(), eager);
    cr_expect_eq(ir_graph_num_nodes(g), 2, "a failed add leaves the graph as it was");
    cr_expect_eq(in[0]->uses, 0);
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
    em_release(x);
    em_release(y);
}

Test(graph, fails_a_bad_axis_and_a_bad_matmul_as_eager_does) {
    em_tensor *x = em_zeros(EM_F32, 2, (int64_t[]){2, 3});
    char eager[2][512];
    cr_assert_null(em_sum(x, 5, 0));
    snprintf(eager[0], sizeof eager[0], "%s", em_last_error());
    cr_assert_null(em_matmul(x, x));
    snprintf(eager[1], sizeof eager[1], "%s", em_last_error());

    ir_graph *g = new_graph("g");
    ir_node *n = input(g, 0, EM_F32, 2, x->shape);
    cr_expect_null(ir_graph_add_node(g, IR_OP_SUM, "em_sum", &n, 1, &(ir_attrs){.axis = 5}, 0));
    cr_expect_str_eq(em_last_error(), eager[0]);
    cr_expect_null(ir_graph_add_node(g, IR_OP_MATMUL, "em_matmul", (ir_node *[]){n, n}, 2, &(ir_attrs){0}, 0));
    cr_expect_str_eq(em_last_error(), eager[1]);
    ir_graph_destroy(g);
    em_release(x);
}

Test(graph, accepts_null_only_for_optional_operands) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){2, 8});
    ir_node *ln[3] = {x, NULL, NULL};
    ir_node *n = ir_graph_add_node(g, IR_OP_LAYER_NORM, "em_layer_norm", ln, 3, &(ir_attrs){.eps = 1e-5}, 0);
    cr_expect(n, "%s", em_last_error());
    ir_node *bad[2] = {x, NULL};
    cr_expect_null(ir_graph_add_node(g, IR_OP_ADD, "em_add", bad, 2, &(ir_attrs){0}, 0));
    cr_expect_str_eq(em_last_error(), "em_add: tensor input 2 of add is NULL");
    cr_expect_null(ir_graph_add_node(g, IR_OP_ADD, "em_add", bad, 1, &(ir_attrs){0}, 0));
    cr_expect_str_eq(em_last_error(), "em_add: add takes 2 tensor inputs, got 1");
    cr_expect_eq(ir_op_optional(IR_OP_LINEAR), 4u);
    cr_expect_eq(ir_op_optional(IR_OP_ADD), 0u);
    ir_graph_destroy(g);
}

Test(graph, rejects_a_node_of_another_graph_as_an_input) {
    ir_graph *g = new_graph("g"), *h = new_graph("h");
    ir_node *x = input(g, 0, EM_F32, 1, (int64_t[]){3});
    input(h, 0, EM_F32, 1, (int64_t[]){3});
    ir_node *y = input(h, 1, EM_F32, 1, (int64_t[]){3});
    cr_expect_null(ir_graph_add_node(g, IR_OP_ADD, "em_add", (ir_node *[]){x, y}, 2, &(ir_attrs){0}, 0));
    cr_expect_str_eq(em_last_error(), "em_add: input 2 is not a node of graph g");
    ir_graph_destroy(g);
    ir_graph_destroy(h);
}

/* Adds a chain of n unary nodes; returns how many were added before one failed. */
static int add_chain(ir_graph *g, ir_node *x, int n) {
    for (int i = 0; i < n; i++) {
        int before = ir_graph_num_nodes(g);
        ir_node *y = ir_graph_add_node(g, i % 2 ? IR_OP_EXP : IR_OP_NEG, "em_exp", &x, 1, &(ir_attrs){0}, 0);
        if (!y) {
            cr_expect_eq(ir_graph_num_nodes(g), before, "a failed add leaves the graph as it was");
            return i;
        }
        x = y;
    }
    return n;
}

Test(graph, reports_out_of_memory_and_stays_intact_when_an_allocation_fails) {
    int failures = 0;
    for (long k = 1;; k++) { /* each allocation of create fails in turn */
        rt_alloc_fail_after(k);
        ir_graph *g = ir_graph_create("g");
        rt_alloc_fail_after(0);
        if (g) {
            ir_graph_destroy(g);
            break;
        }
        cr_expect_str_eq(em_last_error(), "ir_graph_create: out of memory");
        cr_assert_lt(k, 10);
    }
    for (long k = 1;; k++) { /* 400 nodes grow the node array, the table and the arena */
        ir_graph *g = new_graph("g");
        ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){4, 8});
        rt_alloc_fail_after(k);
        int added = add_chain(g, x, 400);
        rt_alloc_fail_after(0);
        if (added < 400) {
            failures++;
            cr_expect_str_eq(em_last_error(), "em_exp: out of memory");
            cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
            cr_expect_eq(add_chain(g, ir_graph_node(g, ir_graph_num_nodes(g) - 1), 400 - added),
                         400 - added, "the graph works on after a failure");
        }
        ir_graph_destroy(g);
        if (added == 400) break;
        cr_assert_lt(k, 20);
    }
    cr_expect_geq(failures, 3, "only %d allocations while adding 400 nodes", failures);
}

/* ---- order and use counts ------------------------------------------------------------- */

Test(graph, keeps_leaves_first_and_ids_equal_to_positions) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 1, (int64_t[]){3});
    ir_node *e = op1(g, IR_OP_EXP, x, &(ir_attrs){0});
    em_tensor *t = em_full(EM_F32, 1, (int64_t[]){3}, 1.0);
    ir_node *c = ir_graph_add_const(g, t); /* a global met mid-trace */
    ir_node *y = input(g, 1, EM_F32, 1, (int64_t[]){3});
    ir_node *s = op2(g, IR_OP_ADD, e, c);
    cr_expect_eq(x->id, 0);
    cr_expect_eq(y->id, 1, "inputs come first");
    cr_expect_eq(c->id, 2, "then constants");
    cr_expect_eq(e->id, 3, "op nodes shift behind late leaves");
    cr_expect_eq(s->id, 4);
    for (int i = 0; i < ir_graph_num_nodes(g); i++) cr_expect_eq(ir_graph_node(g, i)->id, i);
    cr_expect_null(ir_graph_node(g, 5));
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
    em_release(t);
}

Test(graph, counts_uses_as_inputs_and_as_outputs) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 1, (int64_t[]){3});
    ir_node *sq = op2(g, IR_OP_MUL, x, x);
    cr_expect_eq(x->uses, 2);
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){sq, sq, x}, 3), 0);
    cr_expect_eq(sq->uses, 2);
    cr_expect_eq(x->uses, 3);
    cr_expect_eq(ir_graph_num_outputs(g), 3);
    cr_expect_eq(ir_graph_output(g, 2), x);
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){sq}, 1), 0);
    cr_expect_eq(sq->uses, 1, "setting outputs again replaces the old ones");
    cr_expect_eq(x->uses, 2);
    cr_expect_neq(ir_graph_set_outputs(g, (ir_node *[]){NULL}, 1), 0);
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
}

Test(graph, holds_many_nodes_and_finds_each_again) {
    ir_graph *g = new_graph("g");
    ir_node *x = input(g, 0, EM_F32, 2, (int64_t[]){4, 4});
    ir_node *n[600];
    for (int i = 0; i < 600; i++)
        n[i] = op1(g, IR_OP_SLICE, x, &(ir_attrs){.axis = i % 2, .start = 0, .end = i / 2, .step = 1 + i % 3});
    int distinct = ir_graph_num_nodes(g) - 1;
    for (int i = 0; i < 600; i++)
        cr_assert_eq(op1(g, IR_OP_SLICE, x, &(ir_attrs){.axis = i % 2, .end = i / 2, .step = 1 + i % 3}), n[i]);
    cr_expect_eq(ir_graph_num_nodes(g) - 1, distinct);
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
}

Test(graph, concatenates_more_inputs_than_the_checks_keep_on_the_stack) {
    ir_graph *g = new_graph("g");
    ir_node *in[12];
    for (int i = 0; i < 12; i++) in[i] = input(g, i, i % 2 ? EM_F64 : EM_F32, 2, (int64_t[]){i + 1, 3});
    ir_node *c = ir_graph_add_node(g, IR_OP_CONCAT, "em_concat", in, 12, &(ir_attrs){.axis = -2}, 0);
    cr_assert(c, "%s", em_last_error());
    cr_expect_eq(c->type.shape[0], 78);
    cr_expect_eq(c->type.dtype, EM_F64);
    cr_expect_eq(c->attrs.axis, 0);
    cr_expect_eq(ir_graph_add_node(g, IR_OP_CONCAT, "em_concat", in, 12, &(ir_attrs){.axis = 0}, 0), c);
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    in[5]->type.shape[1] = 4; /* corrupt an operand: the rerun rule now fails */
    cr_expect_neq(ir_graph_verify(g), 0);
    cr_expect_str_eq(em_last_error(), "ir_graph_verify: graph g: %12 (concat): shape rule fails: em_concat: "
                                      "tensor 5 has shape [6,4], which does not match [1,3] outside axis 0");
    ir_graph_destroy(g);
}

Test(graph, destroy_accepts_null) { ir_graph_destroy(NULL); }

/* ---- the verifier ---------------------------------------------------------------------- */

Test(verify, accepts_a_graph_built_through_the_api) {
    em_tensor *w1, *b1, *w2;
    ir_graph *g = mlp_graph(&w1, &b1, &w2);
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
    release3(w1, b1, w2);
}

/* Builds the MLP graph, lets corrupt() damage it, checks the message, undoes it. */
typedef void (*corrupt_fn)(ir_graph *g, int undo);
static void expect_rejected(corrupt_fn corrupt, const char *message) {
    em_tensor *w1, *b1, *w2;
    ir_graph *g = mlp_graph(&w1, &b1, &w2);
    corrupt(g, 0);
    cr_expect_neq(ir_graph_verify(g), 0, "expected: %s", message);
    cr_expect_str_eq(em_last_error(), message);
    corrupt(g, 1);
    cr_expect_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph_destroy(g);
    release3(w1, b1, w2);
}

/* Node order of mlp_graph: %0 x, %1 w1, %2 b1, %3 w2, %4 linear, %5 gelu, %6 linear,
 * %7 sum axis 1, %8 sum axis 0. */
static void wrong_type(ir_graph *g, int undo) { ir_graph_node(g, 5)->type.shape[1] += undo ? -1 : 1; }
static void wrong_dtype(ir_graph *g, int undo) { ir_graph_node(g, 7)->type.dtype = undo ? EM_F32 : EM_F64; }
static void wrong_uses(ir_graph *g, int undo) { ir_graph_node(g, 4)->uses += undo ? -1 : 1; }
static void input_after_user(ir_graph *g, int undo) {
    ir_graph_node(g, 5)->in[0] = ir_graph_node(g, undo ? 4 : 6);
    /* keep the use counts right so only the order is wrong */
    ir_graph_node(g, 4)->uses += undo ? 1 : -1;
    ir_graph_node(g, 6)->uses += undo ? -1 : 1;
}
static void wrong_id(ir_graph *g, int undo) { ir_graph_node(g, 2)->id = undo ? 2 : 3; }
static void duplicate(ir_graph *g, int undo) {
    /* sum(y, axis=0) made into sum(y, axis=1): equal to %7 */
    ir_node *s0 = ir_graph_node(g, 8);
    s0->attrs.axis = undo ? 0 : 1;
    s0->type.shape[0] = undo ? 8 : 4;
}
static void unnormalised(ir_graph *g, int undo) { ir_graph_node(g, 7)->attrs.axis = undo ? 1 : -1; }
static void null_operand(ir_graph *g, int undo) {
    static ir_node *saved;
    ir_node *gelu = ir_graph_node(g, 5);
    if (!undo) saved = gelu->in[0], saved->uses--, gelu->in[0] = NULL;
    else gelu->in[0] = saved, saved->uses++;
}
static void wrong_arity(ir_graph *g, int undo) { ir_graph_node(g, 5)->nin = undo ? 1 : 2; }

Test(verify, rejects_a_type_that_differs_from_the_shape_rule) {
    expect_rejected(wrong_type, "ir_graph_verify: graph mlp: %5 (gelu): type is f32[4,17] but the "
                                "shape rule gives f32[4,16]");
}

Test(verify, rejects_a_node_whose_own_type_was_changed) {
    expect_rejected(wrong_dtype, "ir_graph_verify: graph mlp: %7 (sum): type is f64[4] but the "
                                 "shape rule gives f32[4]");
}

Test(verify, rejects_a_wrong_use_count) {
    expect_rejected(wrong_uses, "ir_graph_verify: graph mlp: %4 (linear): uses is 2 but it is used 1 times");
}

Test(verify, rejects_an_input_that_comes_after_its_user) {
    expect_rejected(input_after_user,
                    "ir_graph_verify: graph mlp: %5 (gelu): input 0 is %6, which does not precede it");
}

Test(verify, rejects_an_id_that_is_not_the_position) {
    expect_rejected(wrong_id, "ir_graph_verify: graph mlp: %3 (const): is at position 2");
}

Test(verify, rejects_a_node_equal_to_another) {
    expect_rejected(duplicate, "ir_graph_verify: graph mlp: %8 (sum): duplicates %7");
}

Test(verify, rejects_attributes_that_are_not_normalised) {
    expect_rejected(unnormalised, "ir_graph_verify: graph mlp: %7 (sum): attributes are not normalised");
}

Test(verify, rejects_a_missing_operand_the_op_requires) {
    expect_rejected(null_operand,
                    "ir_graph_verify: graph mlp: %5 (gelu): input 0 is NULL, which gelu does not allow");
}

Test(verify, rejects_an_input_count_that_differs_from_the_arity) {
    expect_rejected(wrong_arity, "ir_graph_verify: graph mlp: %5 (gelu): has 2 inputs; gelu takes 1");
}
