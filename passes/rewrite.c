/*
 * rewrite.c — rebuilding a graph, the one way every pass changes the IR.
 *
 * Nodes are immutable and hash-consed, so a pass cannot edit a node: it builds
 * a new graph. pass_rewrite_run walks the old graph in its (topological) order
 * and keeps a map from old node ids to new nodes. Input nodes are copied with
 * their argument index, so the rewritten graph takes exactly the same
 * arguments; constants are copied as the same tensor (the new graph takes its
 * own reference); op nodes are rebuilt over their mapped inputs through
 * ir_graph_add_node. A pass hooks in with a callback that sees each old node
 * with its already-rewritten inputs and returns what the node becomes: a plain
 * copy, an existing node (x*1 → x), a new constant, or a few new nodes.
 *
 * Because every op node goes through ir_graph_add_node, the shape rule checks
 * it again and hash-consing merges nodes that have become identical: when a
 * pass maps two old nodes to one new node, every user of the two collapses as
 * well, with no extra work (this is most of what CSE means here).
 *
 * Also here: liveness from the outputs (shared by dce and the pipeline) and the
 * set of constants whose contents are fixed (pass_consts). Constants are
 * captured by reference — a global weight's data may change between calls and
 * the next call must see it (tests/frontend/test_compile.c) — so a pass may
 * read a constant's values only when nothing outside the compiler can reach
 * the tensor or its storage: the graph holds the only reference. The set is
 * decided once on the pipeline's input, since later graphs share the tensors
 * and the reference counts then count every graph.
 *
 * Invariants: the old graph is never changed; a replacement has the old
 * node's dtype and shape (checked here: a pass that breaks it fails, naming the
 * node); on failure the half-built graph is destroyed, so nothing leaks.
 */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

/* ---- fixed constants: a set of tensor pointers -------------------------------------- */

struct pass_consts {
    em_tensor **slot;       /* open addressing, linear probing; NULL is empty; each retained */
    size_t cap;             /* a power of two, at most half full */
    size_t count;
};

static size_t ptr_hash(const em_tensor *t) {
    uint64_t h = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> 17);
}

static void consts_put(em_tensor **slot, size_t cap, em_tensor *t) {
    size_t i = ptr_hash(t) & (cap - 1);
    while (slot[i] && slot[i] != t) i = (i + 1) & (cap - 1);
    slot[i] = t;
}

bool pass_consts_fixed(const pass_consts *k, const em_tensor *t) {
    if (!k || !t) return false;
    for (size_t i = ptr_hash(t) & (k->cap - 1); k->slot[i]; i = (i + 1) & (k->cap - 1))
        if (k->slot[i] == t) return true;
    return false;
}

int pass_consts_add(pass_consts *k, em_tensor *t) {
    if (pass_consts_fixed(k, t)) return 0;
    if ((k->count + 1) * 2 > k->cap) {
        size_t cap = k->cap * 2;
        em_tensor **slot = rt_malloc(cap * sizeof *slot, "pass_consts_add");
        if (!slot) return -1;
        memset(slot, 0, cap * sizeof *slot);
        for (size_t i = 0; i < k->cap; i++)
            if (k->slot[i]) consts_put(slot, cap, k->slot[i]);
        free(k->slot);
        k->slot = slot, k->cap = cap;
    }
    consts_put(k->slot, k->cap, em_retain(t));
    k->count++;
    return 0;
}

/* Nothing but g can reach t or its data. */
static bool held_alone(const em_tensor *t) {
    return atomic_load(&t->refs) == 1 && t->storage && atomic_load(&t->storage->refs) == 1;
}

pass_consts *pass_consts_create(const ir_graph *g) {
    pass_consts *k = rt_malloc(sizeof *k, "pass_consts_create");
    if (!k) return NULL;
    k->cap = 16, k->count = 0;
    k->slot = rt_malloc(k->cap * sizeof *k->slot, "pass_consts_create");
    if (!k->slot) {
        free(k);
        return NULL;
    }
    memset(k->slot, 0, k->cap * sizeof *k->slot);
    for (int i = 0; i < ir_graph_num_nodes(g); i++) {
        const ir_node *n = ir_graph_node(g, i);
        if (n->kind == IR_NODE_CONST && held_alone(n->value) && pass_consts_add(k, n->value)) {
            pass_consts_destroy(k);
            return NULL;
        }
    }
    return k;
}

void pass_consts_destroy(pass_consts *k) {
    if (!k) return;
    for (size_t i = 0; i < k->cap; i++) em_release(k->slot[i]);
    free(k->slot);
    free(k);
}

/* ---- liveness ------------------------------------------------------------------------ */

bool *pass_live_nodes(const ir_graph *g) {
    int nn = ir_graph_num_nodes(g);
    bool *live = rt_malloc((size_t)(nn ? nn : 1) * sizeof *live, "pass_live_nodes");
    if (!live) return NULL;
    memset(live, 0, (size_t)(nn ? nn : 1) * sizeof *live);
    for (int k = 0; k < ir_graph_num_outputs(g); k++) live[ir_graph_output(g, k)->id] = true;
    for (int i = nn - 1; i >= 0; i--) { /* users follow their inputs: one backward sweep */
        const ir_node *n = ir_graph_node(g, i);
        if (n->kind == IR_NODE_INPUT) live[i] = true;
        if (!live[i]) continue;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j]) live[n->in[j]->id] = true;
    }
    return live;
}

/* ---- the rebuild ----------------------------------------------------------------------- */

ir_node *pass_rewrite_copy(pass_rewrite *rw, const ir_node *old, ir_node *const *in) {
    switch (old->kind) {
    case IR_NODE_INPUT: return ir_graph_add_input(rw->dst, &old->type, old->arg);
    case IR_NODE_CONST: return ir_graph_add_const(rw->dst, old->value);
    case IR_NODE_OP: break;
    }
    return ir_graph_add_node(rw->dst, old->op, NULL, in, old->nin, &old->attrs, old->site);
}

/* What old becomes: its inputs are mapped into in, then the pass decides. */
static ir_node *rewrite_node(pass_rewrite *rw, const ir_node *old, ir_node **in, pass_node_fn fn,
                             void *ctx) {
    if (old->kind == IR_NODE_INPUT) return pass_rewrite_copy(rw, old, in);
    for (int k = 0; k < old->nin; k++) {
        in[k] = old->in[k] ? rw->map[old->in[k]->id] : NULL;
        EM_ASSERT(!old->in[k] || in[k]); /* inputs precede users, and live inputs are live */
    }
    ir_node *n = fn ? fn(rw, old, in, ctx) : pass_rewrite_copy(rw, old, in);
    if (n && !ir_type_same(&n->type, &old->type)) {
        char a[96], b[96];
        rt_error("pass_rewrite: %%%d (%s) of graph %s was replaced by a %s%s value, not %s%s", old->id,
                 old->kind == IR_NODE_OP ? ir_ops[old->op].name : "const", ir_graph_name(rw->src),
                 em_dtype_name(n->type.dtype), rt_shape_str(a, sizeof a, n->type.ndim, n->type.shape),
                 em_dtype_name(old->type.dtype),
                 rt_shape_str(b, sizeof b, old->type.ndim, old->type.shape));
        return NULL;
    }
    return n;
}

static int map_outputs(pass_rewrite *rw) {
    int n = ir_graph_num_outputs(rw->src);
    ir_node **outs = rt_malloc((size_t)(n ? n : 1) * sizeof *outs, "pass_rewrite");
    if (!outs) return -1;
    for (int k = 0; k < n; k++) {
        outs[k] = rw->map[ir_graph_output(rw->src, k)->id];
        EM_ASSERT(outs[k]); /* outputs are live */
    }
    int st = ir_graph_set_outputs(rw->dst, outs, n);
    free(outs);
    return st;
}

ir_graph *pass_rewrite_run(const ir_graph *src, const bool *live, pass_node_fn fn, void *ctx) {
    int nn = ir_graph_num_nodes(src), maxin = 1;
    for (int i = 0; i < nn; i++)
        if (ir_graph_node(src, i)->nin > maxin) maxin = ir_graph_node(src, i)->nin;
    pass_rewrite rw = {.src = src, .live = live};
    ir_node **in = rt_malloc((size_t)maxin * sizeof *in, "pass_rewrite");
    rw.map = in ? rt_malloc((size_t)(nn ? nn : 1) * sizeof *rw.map, "pass_rewrite") : NULL;
    rw.dst = rw.map ? ir_graph_create(ir_graph_name(src)) : NULL;
    int st = rw.dst ? 0 : -1;
    if (rw.map) memset(rw.map, 0, (size_t)(nn ? nn : 1) * sizeof *rw.map);
    for (int i = 0; i < nn && st == 0; i++) {
        const ir_node *old = ir_graph_node(src, i);
        if (old->kind != IR_NODE_INPUT && live && !live[i]) continue;
        if (!(rw.map[i] = rewrite_node(&rw, old, in, fn, ctx))) st = -1;
    }
    if (st == 0) st = map_outputs(&rw);
    free(in);
    free(rw.map);
    if (st != 0) {
        ir_graph_destroy(rw.dst);
        return NULL;
    }
    return rw.dst;
}
