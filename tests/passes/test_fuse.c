/*
 * test_fuse.c — grouping op nodes into kernels (passes/fuse.c), on graphs
 * built by hand.
 *
 * For each graph: the exact kernels (kind, anchor, members in graph order,
 * the values each loads and writes, in kernel order), the kernel of every
 * node (views and leaves in none), the reason recorded for every node that
 * was not fused into a producer's kernel (and that no other node has one),
 * and pass_fusion_verify. Covered: an elementwise chain with broadcast
 * operands; native norms with a prologue and an epilogue; softmax and
 * layer_norm written by hand as one multi-pass row kernel, and the same
 * softmax over axis 0 split where a reduced value is broadcast back; a
 * contraction with an epilogue and no prologue, and the contiguous copy of a
 * permuted product stored from its kernel; producers read through a view
 * or broadcast stay apart; horizontal merges of reductions and of pointwise
 * kernels that read one value; merges that would close a cycle between
 * kernels; embedding and concat alone; views in no kernel; the `kernels` dump.
 * Several graphs also run end to end (pass_program_build, cg_exec_run) to the
 * interpreter's results bit for bit.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "codegen.h"
#include "pass_util.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A list of node ids written inline: IDS(3, 4, 5), or NONE. */
typedef struct ids {
    int n;
    const int *v;
} ids;
#define IDS(...) ((ids){(int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__}})
#define NONE ((ids){0, NULL})

static pass_fusion *fuse(const ir_graph *g) {
    cr_assert_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    pass_fusion *f = pass_fuse(g);
    cr_assert(f, "%s", em_last_error());
    cr_assert_eq(pass_fusion_verify(f), 0, "%s", em_last_error());
    return f;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static char *ids_str(const int *v, int n, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(buf + len, cap - len, "%s%%%d", i ? "," : "", v[i]);
    return buf;
}

/* got[0..n) equals want exactly (in order), or as a set when `set`. */
static void expect_ids(const int *got, int n, ids want, bool set, int k, const char *what) {
    int *a = malloc((size_t)(n ? n : 1) * sizeof *a), *b = malloc((size_t)(want.n ? want.n : 1) * sizeof *b);
    cr_assert(a && b);
    if (n) memcpy(a, got, (size_t)n * sizeof *a);
    if (want.n) memcpy(b, want.v, (size_t)want.n * sizeof *b);
    if (set) qsort(a, (size_t)n, sizeof *a, cmp_int), qsort(b, (size_t)want.n, sizeof *b, cmp_int);
    char g[256], w[256];
    cr_expect(n == want.n && (n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0),
              "k%d %s: got {%s}, want {%s}", k, what, ids_str(got, n, g, sizeof g),
              ids_str(want.v, want.n, w, sizeof w));
    free(a), free(b);
}

/* Kernel k: kind, anchor, members (graph order), loads and writes (as sets),
 * and kernel_of of each member. */
static void expect_kernel(const pass_fusion *f, int k, pass_kernel_kind kind, int anchor, ids nodes,
                          ids loads, ids outs) {
    cr_expect_lt(k, f->nkernels, "no kernel k%d", k);
    if (k >= f->nkernels) return; /* not fatal: the test still frees what it made */
    const pass_kernel *K = &f->k[k];
    cr_expect_eq(K->kind, kind, "k%d is %s, want %s", k, pass_kernel_kind_name(K->kind),
                 pass_kernel_kind_name(kind));
    cr_expect_eq(K->anchor, anchor, "k%d anchor %%%d, want %%%d", k, K->anchor, anchor);
    expect_ids(K->nodes, K->nnodes, nodes, false, k, "nodes");
    expect_ids(K->loads, K->nloads, loads, true, k, "loads");
    expect_ids(K->outs, K->nouts, outs, true, k, "writes");
    for (int i = 0; i < nodes.n; i++)
        cr_expect_eq(f->kernel_of[nodes.v[i]], k, "%%%d is in k%d, want k%d", nodes.v[i],
                     f->kernel_of[nodes.v[i]], k);
}

/* Node id has a reason containing phrase; with phrase NULL, no reason. */
static void expect_why(const pass_fusion *f, int id, const char *phrase) {
    const char *w = f->why[id];
    if (!phrase) {
        cr_expect_null(w, "%%%d has a reason: %s", id, w);
        return;
    }
    cr_expect(w && strstr(w, phrase), "%%%d: reason \"%s\" should mention \"%s\"", id, w ? w : "(none)",
              phrase);
}

/* Exactly the nodes in `with` have a reason. */
static void expect_reasons_only_on(const pass_fusion *f, ids with) {
    for (int id = 0; id < ir_graph_num_nodes(f->g); id++) {
        bool want = false;
        for (int i = 0; i < with.n; i++) want |= with.v[i] == id;
        cr_expect_eq(f->why[id] != NULL, want, "%%%d: reason %s", id, f->why[id] ? f->why[id] : "(none)");
    }
}

static void expect_in_no_kernel(const pass_fusion *f, ids nodes) {
    for (int i = 0; i < nodes.n; i++)
        cr_expect_eq(f->kernel_of[nodes.v[i]], -1, "%%%d is in k%d, want none", nodes.v[i],
                     f->kernel_of[nodes.v[i]]);
}

static char *printed(const pass_fusion *f) {
    char *s = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&s, &len);
    cr_assert(out);
    cr_assert_eq(pass_fusion_print(f, out), 0, "%s", em_last_error());
    fclose(out);
    return s;
}

static ir_node *op3(ir_graph *g, ir_op o, ir_node *a, ir_node *b, ir_node *c, ir_attrs attrs) {
    ir_node *n = ir_graph_add_node(g, o, NULL, (ir_node *[]){a, b, c}, 3, &attrs, 0);
    cr_assert(n, "%s", em_last_error());
    return n;
}

/* g compiled (pass_program_build, internal plan) and run by cg_exec gives the
 * interpreter's outputs byte for byte; args are released. */
static void expect_program_matches_interpreter(const ir_graph *g, em_tensor **args, int nargs) {
    pass_program *p = pass_program_build(g, true, NULL, NULL);
    cr_assert(p, "%s", em_last_error());
    cg_exec *e = cg_exec_create(p);
    cr_assert(e, "%s", em_last_error());
    int nout = ir_graph_num_outputs(g);
    em_tensor *got[8] = {0}, *want[8] = {0};
    cr_assert_leq(nout, 8);
    for (int round = 0; round < 2; round++) { /* the kept arena is reused on the second call */
        cr_assert_eq(cg_exec_run(e, args, got), 0, "%s", em_last_error());
        cr_assert_eq(ir_graph_run(g, args, want), 0, "%s", em_last_error());
        for (int i = 0; i < nout; i++) {
            char what[32];
            snprintf(what, sizeof what, "output %d, call %d", i, round);
            tu_expect_identical(got[i], want[i], what);
            em_release(got[i]), em_release(want[i]);
        }
    }
    cg_exec_destroy(e);
    pass_program_destroy(p);
    for (int i = 0; i < nargs; i++) em_release(args[i]);
}

enum { M = 4, N = 8 };

/* ---- elementwise chains --------------------------------------------------------------- */

/* gelu(x*a + b) * sigmoid(x), a and b [N] broadcast against x [M,N]. */
static ir_graph *gelu_chain(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *a = pu_input(g, 1, EM_F32, 1, SH(N));                      /* %1 */
    ir_node *b = pu_input(g, 2, EM_F32, 1, SH(N));                      /* %2 */
    ir_node *t = OP1(g, GELU, OP2(g, ADD, OP2(g, MUL, x, a), b));       /* %3 %4 %5 */
    pu_set_out(g, OP2(g, MUL, t, OP1(g, SIGMOID, x)));                  /* %6 %7 */
    return g;
}

Test(fuse, puts_an_elementwise_chain_with_broadcast_operands_in_one_kernel_that_writes_only_its_output) {
    ir_graph *g = gelu_chain();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(3, 4, 5, 6, 7), IDS(0, 1, 2), IDS(7));
    cr_expect_eq(f->k[0].space.ndim, 2);
    cr_expect(f->k[0].space.shape[0] == M && f->k[0].space.shape[1] == N, "iterates over [M,N]");
    cr_expect_str_eq(f->k[0].why, "");
    expect_in_no_kernel(f, IDS(0, 1, 2));
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_elementwise_chain_like_the_interpreter) {
    ir_graph *g = gelu_chain();
    expect_program_matches_interpreter(
        g, (em_tensor *[]){tu_randn(2, SH(M, N), 1), tu_randn(1, SH(N), 2), tu_randn(1, SH(N), 3)}, 3);
    ir_graph_destroy(g);
}

/* ---- norms ---------------------------------------------------------------------------- */

/* softmax(x * 0.5, -1) * mask */
static ir_graph *scaled_masked_softmax(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *mask = pu_input(g, 1, EM_F32, 2, SH(M, N));                /* %1 */
    ir_node *scale = pu_full(g, EM_F32, 0, NULL, 0.5);                  /* %2 */
    ir_node *s = OP1(g, SOFTMAX, OP2(g, MUL, x, scale), .axis = -1);    /* %3 %4 */
    pu_set_out(g, OP2(g, MUL, s, mask));                                /* %5 */
    return g;
}

Test(fuse, gives_a_native_softmax_its_elementwise_prologue_and_epilogue_in_one_norm_kernel) {
    ir_graph *g = scaled_masked_softmax();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_NORM, 4, IDS(3, 4, 5), IDS(0, 1, 2), IDS(5));
    cr_expect(f->k[0].space.ndim == 2 && f->k[0].space.shape[0] == M && f->k[0].space.shape[1] == N,
              "a norm kernel walks the rows of its input");
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_masked_softmax_like_the_interpreter) {
    ir_graph *g = scaled_masked_softmax();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 4), tu_randn(2, SH(M, N), 5)}, 2);
    ir_graph_destroy(g);
}

static ir_graph *layer_norm_gelu(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 1, SH(N));                      /* %1 */
    ir_node *b = pu_input(g, 2, EM_F32, 1, SH(N));                      /* %2 */
    ir_node *ln = op3(g, IR_OP_LAYER_NORM, x, w, b, (ir_attrs){.eps = 1e-5}); /* %3 */
    pu_set_out(g, OP1(g, GELU, ln));                                    /* %4 */
    return g;
}

Test(fuse, puts_a_gelu_after_layer_norm_in_the_norm_kernel) {
    ir_graph *g = layer_norm_gelu();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_NORM, 3, IDS(3, 4), IDS(0, 1, 2), IDS(4));
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_layer_norm_and_gelu_like_the_interpreter) {
    ir_graph *g = layer_norm_gelu();
    expect_program_matches_interpreter(
        g, (em_tensor *[]){tu_randn(2, SH(M, N), 6), tu_randn(1, SH(N), 7), tu_randn(1, SH(N), 8)}, 3);
    ir_graph_destroy(g);
}

Test(fuse, takes_only_the_row_input_of_a_layer_norm_from_a_producer_kernel) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 1, SH(N));                      /* %1 */
    ir_node *two = pu_full(g, EM_F32, 0, NULL, 2.0);                    /* %2 */
    ir_node *xs = OP2(g, MUL, x, two), *we = OP1(g, EXP, w);            /* %3 %4 */
    pu_set_out(g, op3(g, IR_OP_LAYER_NORM, xs, we, NULL, (ir_attrs){.eps = 1e-5})); /* %5 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    /* producers first: exp(w) runs before the norm that reads it */
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(4), IDS(1), IDS(4));
    expect_kernel(f, 1, PASS_KERNEL_NORM, 5, IDS(3, 5), IDS(0, 2, 4), IDS(5));
    expect_why(f, 5, "only the row input of layer_norm");
    expect_reasons_only_on(f, IDS(5));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, does_not_put_a_reduction_of_a_softmax_in_the_softmax_kernel) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    pu_set_out(g, OP1(g, SUM, OP1(g, SOFTMAX, x, .axis = -1), .axis = -1)); /* %1 %2 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_NORM, 1, IDS(1), IDS(0), IDS(1));
    expect_kernel(f, 1, PASS_KERNEL_REDUCE, 2, IDS(2), IDS(1), IDS(2));
    expect_why(f, 2, "already has its reduction or norm (%1)");
    expect_reasons_only_on(f, IDS(2));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- norms written by hand ---------------------------------------------------------------- */

/* max, sub, exp, sum, div over `axis` of x [M,N]. */
static ir_graph *hand_softmax(int axis) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *m = OP1(g, MAX, x, .axis = axis, .keepdim = 1);            /* %1 */
    ir_node *e = OP1(g, EXP, OP2(g, SUB, x, m));                        /* %2 %3 */
    ir_node *s = OP1(g, SUM, e, .axis = axis, .keepdim = 1);            /* %4 */
    pu_set_out(g, OP2(g, DIV, e, s));                                   /* %5 */
    return g;
}

Test(fuse, makes_a_softmax_written_by_hand_over_the_last_axis_one_reduce_kernel) {
    ir_graph *g = hand_softmax(-1);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_REDUCE, 1, IDS(1, 2, 3, 4, 5), IDS(0), IDS(5));
    cr_expect(f->k[0].space.ndim == 2 && f->k[0].space.shape[0] == M && f->k[0].space.shape[1] == N,
              "the kernel walks the rows of x");
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_softmax_written_by_hand_like_the_interpreter) {
    for (int axis = -1; axis <= 0; axis++) {
        ir_graph *g = hand_softmax(axis);
        expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 9)}, 1);
        ir_graph_destroy(g);
    }
}

Test(fuse, splits_the_softmax_written_by_hand_over_axis_0_where_a_reduced_value_is_broadcast_back) {
    ir_graph *g = hand_softmax(0);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 3);
    expect_kernel(f, 0, PASS_KERNEL_REDUCE, 1, IDS(1), IDS(0), IDS(1));
    expect_kernel(f, 1, PASS_KERNEL_REDUCE, 4, IDS(2, 3, 4), IDS(0, 1), IDS(3, 4));
    expect_kernel(f, 2, PASS_KERNEL_POINTWISE, -1, IDS(5), IDS(3, 4), IDS(5));
    expect_why(f, 2, "broadcast back over the reduced axis");
    expect_why(f, 5, "broadcast back over the reduced axis");
    expect_reasons_only_on(f, IDS(2, 5));
    cr_expect_str_eq(f->k[0].why, "", "max and exp(x - max) both read x, but one feeds the other");
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* mean, sub, mul, mean, add eps, rsqrt, mul over the last axis of x [M,N]. */
static ir_graph *hand_layer_norm(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *eps = pu_full(g, EM_F32, 0, NULL, 1e-5);                   /* %1 */
    ir_node *mu = OP1(g, MEAN, x, .axis = -1, .keepdim = 1);            /* %2 */
    ir_node *xc = OP2(g, SUB, x, mu);                                   /* %3 */
    ir_node *var = OP1(g, MEAN, OP2(g, MUL, xc, xc), .axis = -1, .keepdim = 1); /* %4 %5 */
    ir_node *r = OP1(g, RSQRT, OP2(g, ADD, var, eps));                  /* %6 %7 */
    pu_set_out(g, OP2(g, MUL, xc, r));                                  /* %8 */
    return g;
}

Test(fuse, makes_a_layer_norm_written_by_hand_one_reduce_kernel_of_three_passes) {
    ir_graph *g = hand_layer_norm();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_REDUCE, 2, IDS(2, 3, 4, 5, 6, 7, 8), IDS(0, 1), IDS(8));
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_layer_norm_written_by_hand_like_the_interpreter) {
    ir_graph *g = hand_layer_norm();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 10)}, 1);
    ir_graph_destroy(g);
}

/* A row kernel makes at most FUSE_MAX_PASSES (3) passes: mean (pass 1), the
 * centred square mean (pass 2), a max of the normalised value (pass 3); the
 * op that reads that max broadcast back would be pass 4, so it is not fused. */
Test(fuse, stops_a_row_kernel_at_three_passes) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *mu = OP1(g, MEAN, x, .axis = -1, .keepdim = 1);            /* %1 */
    ir_node *xc = OP2(g, SUB, x, mu);                                   /* %2 */
    ir_node *v = OP1(g, MEAN, OP2(g, MUL, xc, xc), .axis = -1, .keepdim = 1); /* %3 %4 */
    ir_node *y = OP2(g, MUL, xc, v);                                    /* %5 */
    ir_node *mx = OP1(g, MAX, y, .axis = -1, .keepdim = 1);             /* %6 */
    pu_set_out(g, OP2(g, SUB, y, mx));                                  /* %7 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_REDUCE, 1, IDS(1, 2, 3, 4, 5, 6), IDS(0), IDS(5, 6));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(7), IDS(5, 6), IDS(7));
    expect_why(f, 7, "reads %6 broadcast back over the rows of k0, which already makes 3 passes");
    expect_reasons_only_on(f, IDS(7));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- contractions --------------------------------------------------------------------- */

/* gelu(linear(x, w, b)) + x */
static ir_graph *linear_gelu_residual(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 2, SH(N, N));                   /* %1 */
    ir_node *b = pu_input(g, 2, EM_F32, 1, SH(N));                      /* %2 */
    ir_node *l = op3(g, IR_OP_LINEAR, x, w, b, (ir_attrs){0});          /* %3 */
    pu_set_out(g, OP2(g, ADD, OP1(g, GELU, l), x));                     /* %4 %5 */
    return g;
}

Test(fuse, gives_linear_its_activation_and_residual_add_as_an_epilogue) {
    ir_graph *g = linear_gelu_residual();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_CONTRACTION, 3, IDS(3, 4, 5), IDS(0, 1, 2), IDS(5));
    cr_expect(f->k[0].space.ndim == 2 && f->k[0].space.shape[0] == M && f->k[0].space.shape[1] == N,
              "a contraction iterates over its output");
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_linear_gelu_and_the_residual_like_the_interpreter) {
    ir_graph *g = linear_gelu_residual();
    expect_program_matches_interpreter(
        g, (em_tensor *[]){tu_randn(2, SH(M, N), 11), tu_randn(2, SH(N, N), 12), tu_randn(1, SH(N), 13)}, 3);
    ir_graph_destroy(g);
}

Test(fuse, leaves_the_elementwise_producer_of_a_matmul_operand_in_a_kernel_of_its_own) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 2, SH(N, 6));                   /* %1 */
    pu_set_out(g, OP2(g, MATMUL, OP1(g, EXP, x), w));                   /* %2 %3 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(0), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_CONTRACTION, 3, IDS(3), IDS(1, 2), IDS(3));
    expect_why(f, 3, "reads its operands from memory");
    expect_reasons_only_on(f, IDS(3));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- a permuted copy of a product ------------------------------------------------------ */

/* contiguous(permute(a @ w, {1, 0, 2})): attention's heads merged back. With
 * reader, y + that copy; with keep, the product is an output too. */
static ir_graph *merged_heads(bool reader, bool keep) {
    ir_graph *g = pu_new_graph();
    ir_node *a = pu_input(g, 0, EM_F32, 3, SH(2, M, N));                /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 3, SH(2, N, 6));                /* %1 */
    ir_node *y = pu_input(g, 2, EM_F32, 3, SH(M, 2, 6));                /* %2 */
    ir_node *p = OP2(g, MATMUL, a, w);                                  /* %3 */
    ir_node *t = OP1(g, PERMUTE, p, .ndim = 3, .dims = {1, 0, 2});      /* %4 */
    ir_node *c = OP1(g, CONTIGUOUS, t);                                 /* %5 */
    ir_node *out = reader ? OP2(g, ADD, c, y) : c;                      /* %6 */
    if (keep) pu_set_outs(g, (ir_node *[]){out, p}, 2);
    else pu_set_out(g, out);
    return g;
}

static em_tensor **merged_args(void) {
    static em_tensor *args[3];
    args[0] = tu_randn(3, SH(2, M, N), 31), args[1] = tu_randn(3, SH(2, N, 6), 32);
    args[2] = tu_randn(3, SH(M, 2, 6), 33);
    return args;
}

Test(fuse, puts_a_contiguous_copy_of_a_permuted_product_in_the_products_kernel_which_writes_only_the_copy) {
    ir_graph *g = merged_heads(false, false);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_CONTRACTION, 3, IDS(3, 5), IDS(0, 1), IDS(5));
    expect_in_no_kernel(f, IDS(4));
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* merged_heads(reader, keep) compiled and run gives the interpreter's bytes. */
static void expect_merged_heads_like_the_interpreter(bool reader, bool keep) {
    ir_graph *g = merged_heads(reader, keep);
    expect_program_matches_interpreter(g, merged_args(), 3);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_permuted_copy_of_a_product_like_the_interpreter) {
    expect_merged_heads_like_the_interpreter(false, false);
}

Test(fuse, keeps_what_reads_a_permuted_copy_out_of_the_kernel_that_stores_it) {
    ir_graph *g = merged_heads(true, false);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_CONTRACTION, 3, IDS(3, 5), IDS(0, 1), IDS(5));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(6), IDS(2, 5), IDS(6));
    expect_why(f, 6, "stored permuted");
    expect_reasons_only_on(f, IDS(6));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
    expect_merged_heads_like_the_interpreter(true, false);
}

Test(fuse, writes_both_the_product_and_its_permuted_copy_when_the_product_is_an_output_too) {
    ir_graph *g = merged_heads(false, true);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_CONTRACTION, 3, IDS(3, 5), IDS(0, 1), IDS(3, 5));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
    expect_merged_heads_like_the_interpreter(false, true);
}

Test(fuse, leaves_a_permuted_copy_of_an_elementwise_value_in_a_kernel_of_its_own) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *t = OP1(g, PERMUTE, OP1(g, EXP, x), .ndim = 2, .dims = {1, 0}); /* %1 %2 */
    pu_set_out(g, OP1(g, CONTIGUOUS, t));                               /* %3 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(1), IDS(0), IDS(1));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(3), IDS(1), IDS(3));
    expect_why(f, 3, "through a permute view");
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- what stays apart ----------------------------------------------------------------- */

Test(fuse, does_not_fuse_an_elementwise_op_reading_its_producer_through_a_permute_view) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *y = pu_input(g, 1, EM_F32, 2, SH(N, M));                   /* %1 */
    ir_node *t = OP1(g, PERMUTE, OP1(g, EXP, x), .ndim = 2, .dims = {1, 0}); /* %2 %3 */
    pu_set_out(g, OP2(g, ADD, t, y));                                   /* %4 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(0), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(4), IDS(1, 2), IDS(4));
    expect_in_no_kernel(f, IDS(3));
    cr_expect_eq(f->base_of[3], 2);
    expect_why(f, 4, "through a permute view");
    expect_reasons_only_on(f, IDS(4));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, does_not_fuse_an_elementwise_op_that_broadcasts_a_smaller_producer) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *a = pu_input(g, 1, EM_F32, 2, SH(M, 1));                   /* %1 */
    pu_set_out(g, OP2(g, ADD, x, OP1(g, EXP, a)));                      /* %2 %3 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(1), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(3), IDS(0, 2), IDS(3));
    expect_why(f, 3, "broadcasts %2");
    expect_reasons_only_on(f, IDS(3));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- horizontal fusion ---------------------------------------------------------------- */

/* sum(x, -1) and sum(x*x, -1) */
static ir_graph *two_moments(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *s1 = OP1(g, SUM, x, .axis = -1);                           /* %1 */
    ir_node *s2 = OP1(g, SUM, OP2(g, MUL, x, x), .axis = -1);           /* %2 %3 */
    pu_set_outs(g, (ir_node *[]){s1, s2}, 2);
    return g;
}

Test(fuse, merges_two_reductions_of_one_input_horizontally_so_it_is_read_once) {
    ir_graph *g = two_moments();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_REDUCE, 1, IDS(1, 2, 3), IDS(0), IDS(1, 3));
    cr_expect(strncmp(f->k[0].why, "horizontal", 10) == 0, "why: %s", f->k[0].why);
    cr_expect(strstr(f->k[0].why, "both read %0"), "why: %s", f->k[0].why);
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_two_moments_like_the_interpreter) {
    ir_graph *g = two_moments();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 14)}, 1);
    ir_graph_destroy(g);
}

Test(fuse, merges_two_independent_pointwise_ops_over_one_input_horizontally) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *e = OP1(g, EXP, x), *s = OP1(g, SIN, x);                   /* %1 %2 */
    pu_set_outs(g, (ir_node *[]){e, s}, 2);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 1);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(1, 2), IDS(0), IDS(1, 2));
    cr_expect(strncmp(f->k[0].why, "horizontal", 10) == 0, "why: %s", f->k[0].why);
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, keeps_reductions_over_different_axes_apart_even_when_they_read_one_input) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *a = OP1(g, SUM, x, .axis = 0), *b = OP1(g, SUM, x, .axis = 1); /* %1 %2 */
    pu_set_outs(g, (ir_node *[]){a, b}, 2);
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_REDUCE, 1, IDS(1), IDS(0), IDS(1));
    expect_kernel(f, 1, PASS_KERNEL_REDUCE, 2, IDS(2), IDS(0), IDS(2));
    cr_expect_str_eq(f->k[0].why, "");
    cr_expect_str_eq(f->k[1].why, "");
    expect_reasons_only_on(f, NONE);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- cycles between kernels --------------------------------------------------------------- */

/* a = exp(x); m = matmul(a, w); c = a + m */
static ir_graph *exp_matmul_add(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 2, SH(N, N));                   /* %1 */
    ir_node *a = OP1(g, EXP, x);                                        /* %2 */
    ir_node *m = OP2(g, MATMUL, a, w);                                  /* %3 */
    pu_set_out(g, OP2(g, ADD, a, m));                                   /* %4 */
    return g;
}

Test(fuse, lets_an_add_join_the_matmul_epilogue_without_pulling_the_matmul_operand_into_its_kernel) {
    ir_graph *g = exp_matmul_add();
    pass_fusion *f = fuse(g);
    /* c = a + m joins m's kernel as its epilogue, but not a's: a computes the
     * matmul's operand, which the GEMM reads from memory (a regression test:
     * both producer kernels used to be merged into one). */
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(0), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_CONTRACTION, 3, IDS(3, 4), IDS(1, 2), IDS(4));
    cr_expect_lt(f->kernel_of[2], f->kernel_of[3], "a's kernel runs before m's");
    expect_why(f, 3, "reads its operands from memory");
    expect_why(f, 4, "computes an input of k");
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_exp_matmul_add_like_the_interpreter) {
    ir_graph *g = exp_matmul_add();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 15), tu_randn(2, SH(N, N), 16)}, 2);
    ir_graph_destroy(g);
}

/* a = exp(x); m = matmul(a, w) [M,1]; d = x + m (broadcasts m: its own kernel);
 * c = a * d. Merging a's and d's kernels would close a -> m -> d -> a. */
static ir_graph *cycle_through_a_matmul(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 2, SH(N, 1));                   /* %1 */
    ir_node *a = OP1(g, EXP, x);                                        /* %2 */
    ir_node *m = OP2(g, MATMUL, a, w);                                  /* %3 */
    ir_node *d = OP2(g, ADD, x, m);                                     /* %4 */
    pu_set_out(g, OP2(g, MUL, a, d));                                   /* %5 */
    return g;
}

Test(fuse, refuses_a_merge_of_two_kernels_when_a_third_reads_one_and_feeds_the_other) {
    ir_graph *g = cycle_through_a_matmul();
    pass_fusion *f = fuse(g);
    int ka = f->kernel_of[2], km = f->kernel_of[3], kd = f->kernel_of[4], kc = f->kernel_of[5];
    cr_expect(ka != kd, "a and d in one kernel would make a cycle through m's kernel");
    cr_expect(ka < km && km < kd && kd <= kc, "kernel order a %d, m %d, d %d, c %d", ka, km, kd, kc);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(0), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_CONTRACTION, 3, IDS(3), IDS(1, 2), IDS(3));
    expect_why(f, 3, "reads its operands from memory");
    expect_why(f, 4, "broadcasts %3");
    expect_why(f, 5, "not fused with k0: a kernel between them reads one and feeds the other");
    expect_reasons_only_on(f, IDS(3, 4, 5));
    cr_expect_eq(f->nkernels, 3);
    expect_kernel(f, 2, PASS_KERNEL_POINTWISE, -1, IDS(4, 5), IDS(0, 2, 3), IDS(5));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_graph_with_a_refused_cycle_like_the_interpreter) {
    ir_graph *g = cycle_through_a_matmul();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 17), tu_randn(2, SH(N, 1), 18)}, 2);
    ir_graph_destroy(g);
}

/* a = exp(x); b = neg(a^T) (through a view: its own kernel); c = a + b^T.
 * c joining a's kernel would close a -> b -> a. */
Test(fuse, refuses_a_merge_that_would_close_a_cycle_through_a_kernel_reached_by_a_view) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(N, N));                   /* %0 */
    ir_node *a = OP1(g, EXP, x);                                        /* %1 */
    ir_node *b = OP1(g, NEG, OP1(g, PERMUTE, a, .ndim = 2, .dims = {1, 0})); /* %2 %3 */
    pu_set_out(g, OP2(g, ADD, a, OP1(g, PERMUTE, b, .ndim = 2, .dims = {1, 0}))); /* %4 %5 */
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 3);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(1), IDS(0), IDS(1));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(3), IDS(1), IDS(3));
    expect_kernel(f, 2, PASS_KERNEL_POINTWISE, -1, IDS(5), IDS(1, 3), IDS(5));
    expect_in_no_kernel(f, IDS(2, 4));
    expect_why(f, 3, "through a permute view");
    expect_why(f, 5, "through a permute view");
    expect_reasons_only_on(f, IDS(3, 5));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- gathers, copies and views ------------------------------------------------------------ */

static ir_graph *embedding_exp(void) {
    ir_graph *g = pu_new_graph();
    ir_node *table = pu_input(g, 0, EM_F32, 2, SH(10, N));              /* %0 */
    ir_node *idx = pu_input(g, 1, EM_I64, 1, SH(M));                    /* %1 */
    pu_set_out(g, OP1(g, EXP, OP2(g, EMBEDDING, table, idx)));          /* %2 %3 */
    return g;
}

Test(fuse, runs_an_embedding_as_a_kernel_of_its_own_without_an_epilogue) {
    ir_graph *g = embedding_exp();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 2);
    expect_kernel(f, 0, PASS_KERNEL_GATHER, 2, IDS(2), IDS(0, 1), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(3), IDS(2), IDS(3));
    expect_why(f, 3, "gather kernel, which takes no epilogue");
    expect_reasons_only_on(f, IDS(3));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_embedding_like_the_interpreter) {
    ir_graph *g = embedding_exp();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(10, N), 19), tu_ints(EM_I64, 1, SH(M), 10, 0)}, 2);
    ir_graph_destroy(g);
}

/* relu(concat(exp(x), y)) */
static ir_graph *concat_between(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(2, N));                   /* %0 */
    ir_node *y = pu_input(g, 1, EM_F32, 2, SH(3, N));                   /* %1 */
    ir_node *c = pu_op(g, IR_OP_CONCAT, OP1(g, EXP, x), y, (ir_attrs){.axis = 0}); /* %2 %3 */
    pu_set_out(g, OP1(g, RELU, c));                                     /* %4 */
    return g;
}

Test(fuse, runs_a_concat_as_a_kernel_of_its_own_with_neither_prologue_nor_epilogue) {
    ir_graph *g = concat_between();
    pass_fusion *f = fuse(g);
    cr_expect_eq(f->nkernels, 3);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(0), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_COPY, 3, IDS(3), IDS(1, 2), IDS(3));
    expect_kernel(f, 2, PASS_KERNEL_POINTWISE, -1, IDS(4), IDS(3), IDS(4));
    expect_why(f, 3, "concat runs as a kernel of its own");
    expect_why(f, 4, "copy kernel, which takes no epilogue");
    expect_reasons_only_on(f, IDS(3, 4));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_concat_like_the_interpreter) {
    ir_graph *g = concat_between();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(2, N), 20), tu_randn(2, SH(3, N), 21)}, 2);
    ir_graph_destroy(g);
}

/* exp(x) reshaped to [M*N] plus y; neg(permute(x)) as a second output. */
static ir_graph *views_between(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *y = pu_input(g, 1, EM_F32, 1, SH(M * N));                  /* %1 */
    ir_node *r = OP1(g, RESHAPE, OP1(g, EXP, x), .ndim = 1, .dims = {M * N}); /* %2 %3 */
    ir_node *o = OP2(g, ADD, r, y);                                     /* %4 */
    ir_node *p = OP1(g, PERMUTE, x, .ndim = 2, .dims = {1, 0});         /* %5 */
    pu_set_outs(g, (ir_node *[]){o, OP1(g, NEG, p)}, 2);                /* %6 */
    return g;
}

Test(fuse, puts_views_in_no_kernel_and_has_their_consumers_load_the_base) {
    ir_graph *g = views_between();
    pass_fusion *f = fuse(g);
    expect_in_no_kernel(f, IDS(0, 1, 3, 5));
    cr_expect_eq(f->base_of[3], 2);
    cr_expect_eq(f->base_of[5], 0);
    cr_expect_eq(f->base_of[4], 4, "an op is its own base");
    cr_expect_eq(f->nkernels, 3);
    expect_kernel(f, 0, PASS_KERNEL_POINTWISE, -1, IDS(2), IDS(0), IDS(2));
    expect_kernel(f, 1, PASS_KERNEL_POINTWISE, -1, IDS(4), IDS(1, 2), IDS(4));
    expect_kernel(f, 2, PASS_KERNEL_POINTWISE, -1, IDS(6), IDS(0), IDS(6));
    expect_why(f, 4, "through a reshape view");
    expect_reasons_only_on(f, IDS(4));
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, runs_the_views_like_the_interpreter) {
    ir_graph *g = views_between();
    expect_program_matches_interpreter(g, (em_tensor *[]){tu_randn(2, SH(M, N), 22), tu_randn(1, SH(M * N), 23)}, 2);
    ir_graph_destroy(g);
}

/* ---- the dump ------------------------------------------------------------------------------ */

Test(fuse, prints_each_kernel_and_then_the_reasons) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(M, N));                   /* %0 */
    ir_node *w = pu_input(g, 1, EM_F32, 2, SH(N, 6));                   /* %1 */
    pu_set_out(g, OP2(g, MATMUL, OP1(g, EXP, x), w));                   /* %2 %3 */
    pass_fusion *f = fuse(g);
    char *s = printed(f);
    cr_expect_str_eq(s,
                     "; kernels of g: 2 kernels for 2 ops (0 views read with strides)\n"
                     "k0 pointwise over f32[4,8]\n"
                     "  nodes %2 exp\n"
                     "  loads %0\n"
                     "  writes %2\n"
                     "k1 contraction over f32[4,6], anchor %3 matmul\n"
                     "  nodes %3 matmul\n"
                     "  loads %2, %1\n"
                     "  writes %3\n"
                     "; not fused into a producer's kernel:\n"
                     "%3 matmul (k1): not fused with k0: a contraction reads its operands from memory "
                     "(no prologue fusion)\n");
    free(s);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, prints_no_reasons_section_when_everything_fused) {
    ir_graph *g = gelu_chain();
    pass_fusion *f = fuse(g);
    char *s = printed(f);
    cr_expect(strstr(s, "k0 pointwise over f32[4,8]\n"), "%s", s);
    cr_expect(strstr(s, "  nodes %3 mul, %4 add, %5 gelu, %6 sigmoid, %7 mul\n"), "%s", s);
    cr_expect(strstr(s, "  writes %7\n"), "%s", s);
    cr_expect_null(strstr(s, "; not fused"), "%s", s);
    free(s);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

Test(fuse, prints_a_horizontal_merge_under_its_kernel) {
    ir_graph *g = two_moments();
    pass_fusion *f = fuse(g);
    char *s = printed(f);
    cr_expect(strstr(s, "k0 reduce over f32[4,8], anchor %1 sum\n"), "%s", s);
    cr_expect(strstr(s, "  writes %1, %3\n  horizontal: "), "%s", s);
    free(s);
    pass_fusion_destroy(f);
    ir_graph_destroy(g);
}

/* ---- arguments ------------------------------------------------------------------------------ */

Test(fuse, rejects_a_null_graph_and_destroys_null) {
    cr_expect_null(pass_fuse(NULL));
    cr_expect(strstr(em_last_error(), "NULL"), "%s", em_last_error());
    pass_fusion_destroy(NULL);
}
