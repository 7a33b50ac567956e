/*
 * pass_util.h — what the pass tests (test_dce.c, test_cse.c, test_fold*.c,
 * test_pipeline.c) share: building small IR graphs by hand with every step
 * asserted, printing a graph with its constant addresses masked, and the
 * fold-then-dce harness the fold tests run each identity through.
 *
 * Everything is prefixed pu_ (OP1 / OP2 build one op by name). Helpers assert
 * with Criterion; what they return malloc'd the caller frees.
 */
#ifndef EMBER_TESTS_PASS_UTIL_H
#define EMBER_TESTS_PASS_UTIL_H

#include "passes.h"

#ifndef SH
#define SH(...) ((int64_t[]){__VA_ARGS__})
#endif

/* ---- building graphs ----------------------------------------------------------------------- */

/* An empty graph named "g". */
ir_graph *pu_new_graph(void);
/* Input node for argument arg, of dtype dt and the given shape. */
ir_node *pu_input(ir_graph *g, int arg, em_dtype dt, int nd, const int64_t *shape);
/* A constant the graph holds alone: the caller's reference to t is dropped. */
ir_node *pu_fixed(ir_graph *g, em_tensor *t);
/* A fixed constant of dtype dt and shape, every element v. */
ir_node *pu_full(ir_graph *g, em_dtype dt, int nd, const int64_t *shape, double v);
/* Op o of a (and b unless NULL) with attrs. */
ir_node *pu_op(ir_graph *g, ir_op o, ir_node *a, ir_node *b, ir_attrs attrs);
#define OP2(g, o, a, b) pu_op(g, IR_OP_##o, a, b, (ir_attrs){0})
#define OP1(g, o, a, ...) pu_op(g, IR_OP_##o, a, NULL, (ir_attrs){__VA_ARGS__})
/* Sets g's n outputs; pu_set_out its one output. */
void pu_set_outs(ir_graph *g, ir_node **outs, int n);
void pu_set_out(ir_graph *g, ir_node *n);

/* ---- looking at graphs --------------------------------------------------------------------- */

/* The printed graph with constant addresses masked as @_ (malloc'd). */
char *pu_text(const ir_graph *g);
/* Expects g to print (masked) exactly as want. */
void pu_expect_text(const ir_graph *g, const char *want);
/* Output 0 of g. */
ir_node *pu_output(const ir_graph *g);

/* o (a pass's result, asserted non-NULL and verified) then dce; o is destroyed. */
ir_graph *pu_then_dce(ir_graph *o);

/* ---- fold then dce ------------------------------------------------------------------------- */

/* fold then dce, both verified; g is destroyed. k: the fixed constants, NULL
 * to let fold decide on g (which must then be the only graph holding them). */
ir_graph *pu_simplify_with(ir_graph *g, pass_consts *k);
ir_graph *pu_simplify(ir_graph *g);
/* g simplified; *copy receives an unchanged copy of g to compare with. */
ir_graph *pu_simplify_keeping_a_copy(ir_graph *g, ir_graph **copy);
/* f32 values with the cases identities must keep: signed zeros, NaN, infinities. */
em_tensor *pu_specials(int nd, const int64_t *shape);
/* Output 0 of a and b on args: same dtype, shape and bytes. */
void pu_expect_same_result(const ir_graph *a, const ir_graph *b, em_tensor *const *args);
/* Builds out = f(x) over an input x of the given type, simplifies it, checks the
 * values on pu_specials() are unchanged, and returns the simplified graph. */
typedef ir_node *(*pu_build_fn)(ir_graph *g, ir_node *x);
ir_graph *pu_fold_unary(pu_build_fn build, em_dtype dt, int nd, const int64_t *shape);

#endif
