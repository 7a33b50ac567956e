/*
 * verify.c — checking every invariant of a graph.
 *
 * Graph construction (graph.c) keeps these invariants by itself; the verifier
 * exists for what comes later: passes rewrite graphs, and tests run it after
 * every pass so that a pass that breaks the IR fails at the pass, not three
 * stages later in a miscompiled kernel. It trusts nothing it can recompute:
 *
 *  - ids are positions, and every input of a node is an earlier node of this
 *    graph (SSA order); leaves (inputs, constants) precede op nodes;
 *  - an input node is the graph's node for its argument index; a constant
 *    holds a tensor whose type is the node's type;
 *  - an op node has as many inputs as its arity says, NULL only where the op
 *    allows it, and its type and attributes are what the shape rule gives when
 *    run again (rules are idempotent on normalised attributes);
 *  - use counts equal the number of appearances as an input plus as an output;
 *  - hash-consing left no two nodes with the same key (found by sorting the
 *    nodes on their key, so a corrupted stored hash cannot hide a duplicate).
 *
 * The first violation found is reported through rt_error, naming the graph,
 * the node and its op, and the verifier returns -1.
 */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

#define TYPE_STR(t) type_str((char[112]){0}, 112, (t))

static char *type_str(char *buf, size_t cap, const ir_type *t) {
    const char *dt = rt_dtype_valid((int)t->dtype) ? em_dtype_name(t->dtype) : "?";
    size_t k = (size_t)snprintf(buf, cap, "%s", dt);
    if (k < cap && t->ndim >= 0 && t->ndim <= EM_MAX_DIMS)
        rt_shape_str(buf + k, cap - k, t->ndim, t->shape);
    return buf;
}

static const char *node_op(const ir_node *n) {
    switch (n->kind) {
    case IR_NODE_INPUT: return "input";
    case IR_NODE_CONST: return "const";
    case IR_NODE_OP: return (unsigned)n->op < IR_OP_COUNT ? ir_ops[n->op].name : "?";
    }
    return "?";
}

/* Reports a violation at node n. */
__attribute__((format(printf, 3, 4)))
static int fail(const ir_graph *g, const ir_node *n, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) return rt_error("ir_graph_verify: graph %s: %%%d (%s): %s", ir_graph_name(g), n->id, node_op(n), msg);
    return rt_error("ir_graph_verify: graph %s: %s", ir_graph_name(g), msg);
}

static bool type_valid(const ir_type *t) {
    if (!rt_dtype_valid((int)t->dtype) || t->ndim < 0 || t->ndim > EM_MAX_DIMS) return false;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return false;
    return true;
}

static int check_leaf(const ir_graph *g, const ir_node *n) {
    if (n->nin != 0) return fail(g, n, "a leaf has %d inputs", n->nin);
    if (n->kind == IR_NODE_INPUT) {
        if (ir_graph_input(g, n->arg) != n)
            return fail(g, n, "is not the graph's node for argument %d", n->arg);
        return type_valid(&n->type) ? 0 : fail(g, n, "type %s is not valid", TYPE_STR(&n->type));
    }
    if (!n->value) return fail(g, n, "constant has no tensor");
    ir_type t;
    ir_type_of(n->value, &t);
    if (!ir_type_same(&t, &n->type))
        return fail(g, n, "type is %s but its tensor is %s", TYPE_STR(&n->type), TYPE_STR(&t));
    return 0;
}

/* Arity, operands (present, earlier, of this graph); collects their types. */
static int check_operands(const ir_graph *g, const ir_node *n, const ir_type **tp) {
    int arity = ir_ops[n->op].arity;
    if ((arity >= 0 && n->nin != arity) || (arity < 0 && n->nin < 1))
        return fail(g, n, "has %d inputs; %s takes %d", n->nin, ir_ops[n->op].name, arity < 0 ? 1 : arity);
    if (!n->in) return fail(g, n, "input array is NULL");
    unsigned opt = ir_op_optional(n->op);
    for (int i = 0; i < n->nin; i++) {
        const ir_node *x = n->in[i];
        tp[i] = x ? &x->type : NULL;
        if (!x) {
            if (i < 32 && (opt >> i) & 1u) continue;
            return fail(g, n, "input %d is NULL, which %s does not allow", i, ir_ops[n->op].name);
        }
        if (x->id < 0 || x->id >= ir_graph_num_nodes(g) || ir_graph_node(g, x->id) != x)
            return fail(g, n, "input %d is not a node of the graph", i);
        if (x->id >= n->id)
            return fail(g, n, "input %d is %%%d, which does not precede it", i, x->id);
    }
    return 0;
}

/* Reruns the shape rule: the node's type and attributes must come out unchanged. */
static int check_op(const ir_graph *g, const ir_node *n) {
    if ((unsigned)n->op >= IR_OP_COUNT) return fail(g, n, "op %d is not an op", (int)n->op);
    enum { SMALL = 8 };
    const ir_type *small[SMALL], **tp = small;
    if (n->nin > SMALL && !(tp = rt_malloc((size_t)n->nin * sizeof *tp, "ir_graph_verify")))
        return -1;
    int r = check_operands(g, n, tp);
    if (r == 0) {
        ir_attrs a = n->attrs;
        ir_type t = {0};
        char api[48];
        snprintf(api, sizeof api, "em_%s", ir_ops[n->op].name);
        if (ir_ops[n->op].shape(n->op, api, tp, n->nin, &a, &t) != 0) {
            char why[400];
            snprintf(why, sizeof why, "%s", em_last_error());
            r = fail(g, n, "shape rule fails: %s", why);
        } else if (!ir_type_same(&t, &n->type)) {
            r = fail(g, n, "type is %s but the shape rule gives %s", TYPE_STR(&n->type), TYPE_STR(&t));
        } else if (memcmp(&a, &n->attrs, sizeof a) != 0) {
            r = fail(g, n, "attributes are not normalised");
        }
    }
    if (tp != small) free((void *)tp);
    return r;
}

static int check_nodes(const ir_graph *g) {
    int nn = ir_graph_num_nodes(g);
    bool ops_started = false;
    for (int i = 0; i < nn; i++) {
        const ir_node *n = ir_graph_node(g, i);
        if (!n) return fail(g, NULL, "node %d is NULL", i);
        if (n->id != i) return fail(g, n, "is at position %d", i);
        if (n->kind != IR_NODE_INPUT && n->kind != IR_NODE_CONST && n->kind != IR_NODE_OP)
            return fail(g, n, "kind %d is not a node kind", (int)n->kind);
        if (n->kind != IR_NODE_OP && ops_started)
            return fail(g, n, "leaf comes after op nodes");
        ops_started |= n->kind == IR_NODE_OP;
        if (n->kind == IR_NODE_OP ? check_op(g, n) : check_leaf(g, n)) return -1;
    }
    for (int i = 0; i < ir_graph_num_inputs(g); i++)
        if (!ir_graph_input(g, i)) return fail(g, NULL, "argument %d has no input node", i);
    return 0;
}

/* Counts uses from scratch and compares; also checks the outputs. */
static int check_uses(const ir_graph *g) {
    int nn = ir_graph_num_nodes(g);
    int *count = rt_malloc((size_t)(nn ? nn : 1) * sizeof *count, "ir_graph_verify");
    if (!count) return -1;
    memset(count, 0, (size_t)(nn ? nn : 1) * sizeof *count);
    for (int i = 0; i < nn; i++) {
        const ir_node *n = ir_graph_node(g, i);
        for (int k = 0; k < n->nin; k++)
            if (n->in[k]) count[n->in[k]->id]++;
    }
    int r = 0;
    for (int k = 0; k < ir_graph_num_outputs(g) && !r; k++) {
        const ir_node *o = ir_graph_output(g, k);
        if (!o || o->id < 0 || o->id >= nn || ir_graph_node(g, o->id) != o)
            r = fail(g, NULL, "output %d is not a node of the graph", k);
        else
            count[o->id]++;
    }
    for (int i = 0; i < nn && !r; i++) {
        const ir_node *n = ir_graph_node(g, i);
        if (n->uses != count[i]) r = fail(g, n, "uses is %d but it is used %d times", n->uses, count[i]);
    }
    free(count);
    return r;
}

/* Orders nodes by key: kind, then (arg | tensor | op, inputs, attributes). */
static int key_cmp(const void *pa, const void *pb) {
    const ir_node *a = *(const ir_node *const *)pa, *b = *(const ir_node *const *)pb;
    if (a->kind != b->kind) return a->kind < b->kind ? -1 : 1;
    if (a->kind == IR_NODE_INPUT) return (a->arg > b->arg) - (a->arg < b->arg);
    if (a->kind == IR_NODE_CONST) return (a->value > b->value) - (a->value < b->value);
    if (a->op != b->op) return a->op < b->op ? -1 : 1;
    if (a->nin != b->nin) return a->nin < b->nin ? -1 : 1;
    for (int i = 0; i < a->nin; i++) {
        int ia = a->in[i] ? a->in[i]->id : -1, ib = b->in[i] ? b->in[i]->id : -1;
        if (ia != ib) return ia < ib ? -1 : 1;
    }
    return memcmp(&a->attrs, &b->attrs, sizeof a->attrs);
}

static int check_unique(const ir_graph *g) {
    int nn = ir_graph_num_nodes(g);
    if (nn < 2) return 0;
    const ir_node **sorted = rt_malloc((size_t)nn * sizeof *sorted, "ir_graph_verify");
    if (!sorted) return -1;
    for (int i = 0; i < nn; i++) sorted[i] = ir_graph_node(g, i);
    qsort(sorted, (size_t)nn, sizeof *sorted, key_cmp);
    int r = 0;
    for (int i = 1; i < nn && !r; i++)
        if (key_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            const ir_node *a = sorted[i - 1], *b = sorted[i];
            r = fail(g, a->id > b->id ? a : b, "duplicates %%%d", a->id < b->id ? a->id : b->id);
        }
    free(sorted);
    return r;
}

int ir_graph_verify(const ir_graph *g) {
    if (!g) return rt_error("ir_graph_verify: the graph is NULL");
    if (check_nodes(g) || check_uses(g) || check_unique(g)) return -1;
    return 0;
}
