/*
 * graph.c — the SSA graph that tracing records: construction and lookup.
 *
 * A graph is a list of nodes, each one SSA value with a dtype and shape.
 * Everything a node points at (the node itself, its input array, the graph's
 * name and output list) lives in the graph's arena: a bump allocator over large
 * blocks that ir_graph_destroy frees at once, so nodes are never freed one by
 * one and pointers to them stay valid for the graph's life. Only the growable
 * arrays (node order, argument slots, hash table) are separate allocations.
 *
 * Nodes are immutable and hash-consed on creation. The key of a node is
 * (kind, op, input node pointers, attribute bytes) for an op, the tensor
 * pointer for a constant, and the argument index for an input; an open-
 * addressing table with linear probing maps keys to nodes, so asking twice for
 * add(%1, %2) returns one node. Attributes can be compared byte for byte
 * because callers zero-initialise ir_attrs (it has no padding) and every shape
 * rule normalises what it reads (negative axes, -1 dims, slice bounds) before
 * the lookup.
 *
 * ir_graph_add_node runs the op's shape rule on the inputs' types, so a traced
 * op fails exactly as the eager call would, with the same message.
 *
 * Invariants:
 *  - node ids are positions in the node order, which is topological: every
 *    input of an op node precedes it;
 *  - leaves come first: inputs, then constants, then op nodes. A leaf added
 *    after op nodes is inserted at the end of its block and the ids of the op
 *    nodes after it shift by one (their keys hold pointers, never ids);
 *  - `uses` counts appearances as a (non-NULL) input of a node plus appearances
 *    in the output list;
 *  - the graph holds one reference to each constant's tensor;
 *  - a failed call leaves the graph as it was (all allocations happen before
 *    anything is linked in).
 */
#include "ir.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* ---- the arena ------------------------------------------------------------------- */

enum { ARENA_BLOCK = 64 * 1024 };

typedef struct arena_block {
    struct arena_block *next; /* the block filled before this one */
    size_t cap, used;         /* bytes in data, bytes handed out */
    max_align_t data[];       /* the memory */
} arena_block;

struct ir_graph {
    arena_block *arena;       /* newest block first */
    const char *name;         /* in the arena */
    ir_node **nodes;          /* topological order; nodes[i]->id == i */
    int nnodes, cap_nodes;
    int ninput_nodes;         /* leaves of kind INPUT: nodes[0 .. ninput_nodes) */
    int nleaves;              /* inputs and constants: nodes[0 .. nleaves) */
    ir_node **args;           /* by argument index; NULL where none was added */
    int nargs, cap_args;
    ir_node **outputs;        /* in the arena */
    int noutputs;
    ir_node **table;          /* hash-consing: open addressing, linear probing */
    size_t table_cap;         /* a power of two; at most half full */
    size_t table_count;
};

static void *arena_alloc(ir_graph *g, size_t n, const char *what) {
    n = (n + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
    arena_block *b = g->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = rt_malloc(sizeof *b + cap, what);
        if (!b) return NULL;
        b->cap = cap, b->used = 0;
        /* A big one-off request goes behind the current block so its free
         * space stays usable. */
        if (g->arena && n > ARENA_BLOCK) {
            b->next = g->arena->next;
            g->arena->next = b;
        } else {
            b->next = g->arena;
            g->arena = b;
        }
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(arena_block *b) {
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
}

/* ---- keys and hashing -------------------------------------------------------------- */

/* Attributes are hashed and compared as bytes: there must be no padding. */
_Static_assert(sizeof(ir_attrs) == 4 * sizeof(int) + (EM_MAX_DIMS + 3) * sizeof(int64_t) + sizeof(double),
               "ir_attrs has padding bytes");

/* What identifies a node; built on the stack for lookups before anything is
 * allocated. */
typedef struct node_key {
    ir_node_kind kind;
    ir_op op;
    int nin;
    ir_node *const *in;
    const ir_attrs *attrs;
    int arg;
    const em_tensor *value;
} node_key;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t key_hash(const node_key *k) {
    uint64_t h = fnv(0xcbf29ce484222325ULL, &k->kind, sizeof k->kind);
    switch (k->kind) {
    case IR_NODE_INPUT: return fnv(h, &k->arg, sizeof k->arg);
    case IR_NODE_CONST: return fnv(h, &k->value, sizeof k->value);
    case IR_NODE_OP: break;
    }
    h = fnv(h, &k->op, sizeof k->op);
    h = fnv(h, &k->nin, sizeof k->nin);
    if (k->nin) h = fnv(h, k->in, (size_t)k->nin * sizeof *k->in);
    return fnv(h, k->attrs, sizeof *k->attrs);
}

static bool key_equal(const node_key *k, const ir_node *n) {
    if (n->kind != k->kind) return false;
    switch (k->kind) {
    case IR_NODE_INPUT: return n->arg == k->arg;
    case IR_NODE_CONST: return n->value == k->value;
    case IR_NODE_OP: break;
    }
    return n->op == k->op && n->nin == k->nin &&
           (!k->nin || memcmp(n->in, k->in, (size_t)k->nin * sizeof *k->in) == 0) &&
           memcmp(&n->attrs, k->attrs, sizeof n->attrs) == 0;
}

static ir_node *table_find(const ir_graph *g, const node_key *k, uint64_t h) {
    size_t mask = g->table_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        ir_node *n = g->table[i];
        if (!n) return NULL;
        if (n->hash == h && key_equal(k, n)) return n;
    }
}

static void table_put(ir_node **table, size_t cap, ir_node *n) {
    size_t i = (size_t)n->hash & (cap - 1);
    while (table[i]) i = (i + 1) & (cap - 1);
    table[i] = n;
}

/* Makes room for one more node in the order and the table. */
static int reserve(ir_graph *g, const char *what) {
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        ir_node **nodes = rt_malloc((size_t)cap * sizeof *nodes, what);
        if (!nodes) return -1;
        if (g->nnodes) memcpy(nodes, g->nodes, (size_t)g->nnodes * sizeof *nodes);
        free(g->nodes);
        g->nodes = nodes, g->cap_nodes = cap;
    }
    if ((g->table_count + 1) * 2 > g->table_cap) {
        size_t cap = g->table_cap * 2;
        ir_node **table = rt_malloc(cap * sizeof *table, what);
        if (!table) return -1;
        memset(table, 0, cap * sizeof *table);
        for (size_t i = 0; i < g->table_cap; i++)
            if (g->table[i]) table_put(table, cap, g->table[i]);
        free(g->table);
        g->table = table, g->table_cap = cap;
    }
    return 0;
}

/* Links a fully built node in at position pos, shifting the nodes after it. */
static void link_node(ir_graph *g, ir_node *n, int pos) {
    memmove(g->nodes + pos + 1, g->nodes + pos, (size_t)(g->nnodes - pos) * sizeof *g->nodes);
    g->nodes[pos] = n;
    g->nnodes++;
    for (int i = pos; i < g->nnodes; i++) g->nodes[i]->id = i;
    table_put(g->table, g->table_cap, n);
    g->table_count++;
}

/* A zeroed node from the arena, with room for its inputs. */
static ir_node *node_new(ir_graph *g, const node_key *k, uint64_t h, const char *what) {
    if (reserve(g, what)) return NULL;
    ir_node *n = arena_alloc(g, sizeof *n + (size_t)k->nin * sizeof *n->in, what);
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    n->kind = k->kind, n->op = k->op, n->nin = k->nin, n->arg = k->arg, n->hash = h;
    n->in = (ir_node **)(n + 1);
    if (k->nin) memcpy(n->in, k->in, (size_t)k->nin * sizeof *k->in);
    if (k->attrs) n->attrs = *k->attrs;
    return n;
}

/* ---- the graph ---------------------------------------------------------------------- */

ir_graph *ir_graph_create(const char *name) {
    ir_graph *g = rt_malloc(sizeof *g, "ir_graph_create");
    if (!g) return NULL;
    memset(g, 0, sizeof *g);
    g->table_cap = 64;
    g->table = rt_malloc(g->table_cap * sizeof *g->table, "ir_graph_create");
    size_t len = strlen(name ? name : "graph");
    char *copy = g->table ? arena_alloc(g, len + 1, "ir_graph_create") : NULL;
    if (!copy) {
        ir_graph_destroy(g);
        return NULL;
    }
    memset(g->table, 0, g->table_cap * sizeof *g->table);
    memcpy(copy, name ? name : "graph", len + 1);
    g->name = copy;
    return g;
}

void ir_graph_destroy(ir_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->kind == IR_NODE_CONST) em_release(g->nodes[i]->value);
    free(g->nodes);
    free(g->args);
    free(g->table);
    arena_free(g->arena);
    free(g);
}

const char *ir_graph_name(const ir_graph *g) { return g->name; }

static int grow_args(ir_graph *g, int arg) {
    if (arg < g->cap_args) return 0;
    int cap = g->cap_args ? g->cap_args : 8;
    while (cap <= arg) cap *= 2;
    ir_node **args = rt_malloc((size_t)cap * sizeof *args, "ir_graph_add_input");
    if (!args) return -1;
    memset(args, 0, (size_t)cap * sizeof *args);
    if (g->nargs) memcpy(args, g->args, (size_t)g->nargs * sizeof *args);
    free(g->args);
    g->args = args, g->cap_args = cap;
    return 0;
}

ir_node *ir_graph_add_input(ir_graph *g, const ir_type *t, int arg) {
    if (!t) return rt_error("ir_graph_add_input: the type is NULL"), NULL;
    if (arg < 0 || arg >= 1 << 24)
        return rt_error("ir_graph_add_input: argument index %d is out of range", arg), NULL;
    if (!rt_dtype_valid((int)t->dtype))
        return rt_error("ir_graph_add_input: %d is not a dtype", (int)t->dtype), NULL;
    if (rt_shape_check("ir_graph_add_input", t->ndim, t->shape) < 0) return NULL;
    if (arg < g->nargs && g->args[arg]) {
        ir_node *n = g->args[arg];
        if (ir_type_same(&n->type, t)) return n;
        char a[96], b[96];
        rt_error("ir_graph_add_input: argument %d of graph %s is %s%s, not %s%s", arg, g->name,
                 em_dtype_name(n->type.dtype), rt_shape_str(a, sizeof a, n->type.ndim, n->type.shape),
                 em_dtype_name(t->dtype), rt_shape_str(b, sizeof b, t->ndim, t->shape));
        return NULL;
    }
    node_key k = {.kind = IR_NODE_INPUT, .arg = arg};
    uint64_t h = key_hash(&k);
    if (grow_args(g, arg)) return NULL;
    ir_node *n = node_new(g, &k, h, "ir_graph_add_input");
    if (!n) return NULL;
    n->type = *t;
    memset(n->type.shape + t->ndim, 0, (size_t)(EM_MAX_DIMS - t->ndim) * sizeof *t->shape);
    g->args[arg] = n;
    if (arg >= g->nargs) g->nargs = arg + 1;
    link_node(g, n, g->ninput_nodes++);
    g->nleaves++;
    return n;
}

ir_node *ir_graph_add_const(ir_graph *g, em_tensor *t) {
    if (!t) return rt_error("ir_graph_add_const: the tensor is NULL"), NULL;
    node_key k = {.kind = IR_NODE_CONST, .value = t};
    uint64_t h = key_hash(&k);
    ir_node *n = table_find(g, &k, h);
    if (n) return n;
    if (!(n = node_new(g, &k, h, "ir_graph_add_const"))) return NULL;
    ir_type_of(t, &n->type);
    n->value = em_retain(t);
    link_node(g, n, g->nleaves++);
    return n;
}

/* Inputs of op that may be NULL: those the shape rules taking optional
 * operands accept as missing (layer_norm's weight and bias, rms_norm's weight,
 * linear's bias). Derived from the rule so ops.def stays the one table. */

/* Checks the operands of an op call and collects their types into tp. */
static int check_operands(const ir_graph *g, ir_op op, const char *api, ir_node *const *in,
                          int nin, const ir_type **tp) {
    int arity = ir_ops[op].arity;
    if ((arity >= 0 && nin != arity) || (arity < 0 && nin < 1))
        return rt_error("%s: %s takes %d tensor inputs, got %d", api, ir_ops[op].name,
                        arity < 0 ? 1 : arity, nin);
    unsigned opt = ir_op_optional(op);
    for (int i = 0; i < nin; i++) {
        ir_node *x = in[i];
        if (!x && !(i < 32 && (opt >> i) & 1u))
            return rt_error("%s: tensor input %d of %s is NULL", api, i + 1, ir_ops[op].name);
        if (x && (x->id < 0 || x->id >= g->nnodes || g->nodes[x->id] != x))
            return rt_error("%s: input %d is not a node of graph %s", api, i + 1, g->name);
        tp[i] = x ? &x->type : NULL;
    }
    return 0;
}

/* The shape rule on the inputs' types; attrs normalised in place. */
static int type_op(const ir_graph *g, ir_op op, const char *api, ir_node *const *in, int nin,
                   ir_attrs *attrs, ir_type *out) {
    enum { SMALL = 8 };
    const ir_type *small[SMALL] = {0}, **tp = small;
    if (nin > SMALL && !(tp = rt_malloc((size_t)nin * sizeof *tp, api))) return -1;
    int r = check_operands(g, op, api, in, nin, tp);
    if (r == 0) {
        memset(out, 0, sizeof *out);
        r = ir_ops[op].shape(op, api, tp, nin, attrs, out);
    }
    if (tp != small) free((void *)tp);
    return r;
}

ir_node *ir_graph_add_node(ir_graph *g, ir_op op, const char *api, ir_node *const *in, int nin,
                           const ir_attrs *attrs, uintptr_t site) {
    EM_ASSERT((unsigned)op < IR_OP_COUNT);
    if (!api) api = ir_ops[op].name;
    if (nin < 0 || (nin > 0 && !in)) return rt_error("%s: bad input list (%d inputs)", api, nin), NULL;
    ir_attrs a = attrs ? *attrs : (ir_attrs){0};
    ir_type out;
    if (type_op(g, op, api, in, nin, &a, &out)) return NULL;
    node_key k = {.kind = IR_NODE_OP, .op = op, .nin = nin, .in = in, .attrs = &a};
    uint64_t h = key_hash(&k);
    ir_node *n = table_find(g, &k, h);
    if (n) return n;
    if (!(n = node_new(g, &k, h, api))) return NULL;
    n->type = out;
    memset(n->type.shape + out.ndim, 0, (size_t)(EM_MAX_DIMS - out.ndim) * sizeof *out.shape);
    n->site = site;
    for (int i = 0; i < nin; i++)
        if (in[i]) in[i]->uses++;
    link_node(g, n, g->nnodes);
    return n;
}

int ir_graph_set_outputs(ir_graph *g, ir_node *const *outs, int n) {
    if (n < 0 || (n > 0 && !outs))
        return rt_error("ir_graph_set_outputs: bad output list (%d outputs)", n);
    for (int i = 0; i < n; i++) {
        ir_node *x = outs[i];
        if (!x || x->id < 0 || x->id >= g->nnodes || g->nodes[x->id] != x)
            return rt_error("ir_graph_set_outputs: output %d is not a node of graph %s", i, g->name);
    }
    ir_node **copy = n ? arena_alloc(g, (size_t)n * sizeof *copy, "ir_graph_set_outputs") : NULL;
    if (n && !copy) return -1;
    for (int i = 0; i < g->noutputs; i++) g->outputs[i]->uses--;
    for (int i = 0; i < n; i++) (copy[i] = outs[i])->uses++;
    g->outputs = copy, g->noutputs = n;
    return 0;
}

int ir_graph_num_nodes(const ir_graph *g) { return g->nnodes; }

ir_node *ir_graph_node(const ir_graph *g, int i) {
    return i >= 0 && i < g->nnodes ? g->nodes[i] : NULL;
}

int ir_graph_num_inputs(const ir_graph *g) { return g->nargs; }

ir_node *ir_graph_input(const ir_graph *g, int i) {
    return i >= 0 && i < g->nargs ? g->args[i] : NULL;
}

int ir_graph_num_outputs(const ir_graph *g) { return g->noutputs; }

ir_node *ir_graph_output(const ir_graph *g, int i) {
    return i >= 0 && i < g->noutputs ? g->outputs[i] : NULL;
}
