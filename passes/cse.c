/*
 * cse.c — common subexpression elimination beyond hash-consing.
 *
 * Hash-consing already makes two nodes with the same op, inputs and
 * attributes one node, at creation. What it cannot see are values that are
 * equal without being the same node, and this pass makes them the same node;
 * the rebuild (pass_rewrite_run) then merges every user of the two as well:
 *
 *  - constants: nodes are keyed by tensor pointer, so two em_scalar(0.5) made
 *    by two calls of the traced function are two nodes. Fixed constants
 *    (pass_consts) of at most PASS_CSE_MAX_BYTES with the same dtype, shape,
 *    strides and bytes become the first of them. Strides count because the
 *    eager kernels take different (equally valid, not bit-identical) paths for
 *    different layouts; bytes, not values, because -0.0 and 0.0 differ. A
 *    constant that is not fixed (a global weight, read by reference at every
 *    call) is never merged: its data may change.
 *  - commutative ops: add, mul, eq and ne get their operands in ascending
 *    node-id order, so a+b and b+a become one node. Their results do not
 *    depend on the operand order — except which NaN comes out of an add or
 *    mul of two NaNs (IEEE 754 leaves that unspecified; LLVM's codegen will
 *    not keep it either). maximum and minimum are NOT reordered: the eager
 *    kernels return the second operand for a tie, and maximum(+0.0, -0.0) is
 *    -0.0 while maximum(-0.0, +0.0) is +0.0.
 *
 * Node ids give a total order that later insertions do not change (a leaf
 * added later shifts every op node by one, all alike), so the canonical order
 * is well defined while the graph is being built.
 *
 * Invariants: values, dtypes and shapes are unchanged; every node is visited
 * (dead ones too: dce runs after); the input graph is untouched.
 */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct cse_state {
    int *rep;        /* by old node id: the constant it merges into, or -1 */
} cse_state;

static size_t logical_bytes(const em_tensor *t) {
    return (size_t)t->numel * rt_dtype_size(t->dtype);
}

/* The stride of dim i as far as any kernel can tell: none for a size-1 dim. */
static int64_t stride_of(const em_tensor *t, int i) {
    return t->shape[i] == 1 ? 0 : t->strides[i];
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

/* Hash of dtype, shape, strides and contents; buf receives the contents. */
static uint64_t const_key(const em_tensor *t, unsigned char *buf) {
    uint64_t h = fnv(0xcbf29ce484222325ULL, &t->dtype, sizeof t->dtype);
    h = fnv(h, &t->ndim, sizeof t->ndim);
    for (int i = 0; i < t->ndim; i++) {
        int64_t st = stride_of(t, i);
        h = fnv(h, &t->shape[i], sizeof t->shape[i]);
        h = fnv(h, &st, sizeof st);
    }
    rt_tensor_copy_to(t, buf);
    return fnv(h, buf, logical_bytes(t));
}

static bool same_const(const em_tensor *a, const em_tensor *b) {
    unsigned char x[PASS_CSE_MAX_BYTES], y[PASS_CSE_MAX_BYTES];
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || stride_of(a, i) != stride_of(b, i)) return false;
    rt_tensor_copy_to(a, x);
    rt_tensor_copy_to(b, y);
    return memcmp(x, y, logical_bytes(a)) == 0;
}

static bool mergeable(const pass_consts *k, const ir_node *n) {
    return n->kind == IR_NODE_CONST && pass_consts_fixed(k, n->value) &&
           logical_bytes(n->value) <= PASS_CSE_MAX_BYTES;
}

/* rep[i] for every node of g: the first earlier equal constant, else -1. */
static int find_equal_consts(const ir_graph *g, const pass_consts *k, int *rep) {
    int nn = ir_graph_num_nodes(g), nc = 0;
    uint64_t *hash = rt_malloc((size_t)(nn ? nn : 1) * sizeof *hash, "pass_cse");
    int *ids = rt_malloc((size_t)(nn ? nn : 1) * sizeof *ids, "pass_cse");
    if (!hash || !ids) {
        free(hash), free(ids);
        return -1;
    }
    unsigned char buf[PASS_CSE_MAX_BYTES];
    for (int i = 0; i < nn; i++) {
        const ir_node *n = ir_graph_node(g, i);
        rep[i] = -1;
        if (!mergeable(k, n)) continue;
        uint64_t h = const_key(n->value, buf);
        for (int j = 0; j < nc && rep[i] < 0; j++)
            if (hash[j] == h && same_const(ir_graph_node(g, ids[j])->value, n->value)) rep[i] = ids[j];
        if (rep[i] < 0) hash[nc] = h, ids[nc++] = i;
    }
    free(hash);
    free(ids);
    return 0;
}

static bool commutative(ir_op op) {
    return op == IR_OP_ADD || op == IR_OP_MUL || op == IR_OP_EQ || op == IR_OP_NE;
}

static ir_node *cse_node(pass_rewrite *rw, const ir_node *old, ir_node **in, void *ctx) {
    cse_state *s = ctx;
    if (old->kind == IR_NODE_CONST && s->rep[old->id] >= 0) return rw->map[s->rep[old->id]];
    if (old->kind == IR_NODE_OP && commutative(old->op) && in[0]->id > in[1]->id) {
        ir_node *t = in[0];
        in[0] = in[1], in[1] = t;
    }
    return pass_rewrite_copy(rw, old, in);
}

ir_graph *pass_cse(const ir_graph *g, const pass_consts *k) {
    pass_consts *own = k ? NULL : pass_consts_create(g);
    if (!k && !own) return NULL;
    int nn = ir_graph_num_nodes(g);
    cse_state s = {.rep = rt_malloc((size_t)(nn ? nn : 1) * sizeof *s.rep, "pass_cse")};
    ir_graph *out = NULL;
    if (s.rep && find_equal_consts(g, k ? k : own, s.rep) == 0)
        out = pass_rewrite_run(g, NULL, cse_node, &s);
    free(s.rep);
    pass_consts_destroy(own);
    return out;
}
