/*
 * ir.h — the whole interface of ember's IR layer.
 *
 * The op table (generated from ops.def), the type rules every op is checked
 * with before it runs or is recorded, the eager meaning of every op, and the
 * SSA graph that tracing records: immutable, hash-consed nodes in one arena per
 * graph, with a verifier, text and Graphviz printers, and an interpreter that
 * runs a graph with the eager adapters.
 */
#ifndef EMBER_IR_H
#define EMBER_IR_H

#include "runtime.h"

#include <string.h>

typedef enum ir_op {
#define OP(E, name, arity, optional, kind, api, rule, eager, kernel) IR_OP_##E,
#include "ops.def"
#undef OP
    IR_OP_COUNT
} ir_op;

typedef enum ir_kind {
    IR_KIND_ELEMENTWISE, /* out[i] = f(in[i]...), with broadcasting */
    IR_KIND_REDUCTION,   /* over one axis */
    IR_KIND_NORM,        /* row-wise composites: softmax, layer_norm, ... */
    IR_KIND_CONTRACTION, /* matmul, linear */
    IR_KIND_GATHER,      /* embedding */
    IR_KIND_VIEW,        /* shape ops that are views when the layout allows */
    IR_KIND_COPY,        /* concat, contiguous */
} ir_kind;

/* The type of a value: dtype and shape. */
typedef struct ir_type {
    em_dtype dtype;
    int ndim;
    int64_t shape[EM_MAX_DIMS];
} ir_type;

/* Non-tensor operands of an op. Zero-initialise, set what the op uses; shape
 * rules normalise them in place (negative axes, -1 in shapes, slice bounds), so
 * two nodes with equal attributes compare equal byte for byte. */
typedef struct ir_attrs {
    int axis;                   /* reductions, softmax, slice, concat */
    int keepdim;                /* reductions: 0 or 1 */
    em_dtype dtype;             /* cast */
    int ndim;                   /* entries used in dims */
    int64_t dims[EM_MAX_DIMS];  /* reshape/expand: the shape; permute: the order */
    int64_t start, end, step;   /* slice */
    double eps;                 /* layer_norm, rms_norm */
} ir_attrs;

/* A shape rule: checks the inputs (any may be NULL where the op allows it),
 * normalises attrs, and writes the result type. On failure returns -1 with an
 * error naming `api` (the public function called, e.g. "em_transpose"). */
typedef int (*ir_shape_fn)(ir_op op, const char *api, const ir_type *const *in, int nin,
                           ir_attrs *attrs, ir_type *out);

/* Runs op on real tensors (ir/eager.c): in has nin entries (optional ones may
 * be NULL), attrs are normalised, out is the type the shape rule computed.
 * Writes into dst when it is not NULL (a dense tensor of type out, which may
 * share storage with an elementwise op's input of the same type and layout),
 * else into a new tensor (a view op returns a view then). Returns a new
 * reference (not adopted by any scope) or NULL with an error. */
typedef em_tensor *(*ir_eager_fn)(ir_op op, em_tensor *const *in, int nin,
                                  const ir_attrs *attrs, const ir_type *out, em_tensor *dst);

typedef struct ir_op_info {
    const char *name;   /* "add" */
    int arity;          /* tensor inputs; -1 for a list */
    unsigned optional;  /* bit i: input i may be NULL */
    ir_kind kind;
    ir_shape_fn shape;
    ir_eager_fn eager;
    int kernel;         /* runtime function id (rt_unary, rt_binary, rt_reduce, ...) */
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];

#define OP(E, name, arity, optional, kind, api, rule, eager, kernel)                               \
    int ir_shape_##rule(ir_op op, const char *api_name, const ir_type *const *in, int nin, \
                        ir_attrs *attrs, ir_type *out);
#include "ops.def"
#undef OP
#define OP(E, name, arity, optional, kind, api, rule, eager, kernel)                               \
    em_tensor *ir_eager_##eager(ir_op op, em_tensor *const *in, int nin,                   \
                                const ir_attrs *attrs, const ir_type *out, em_tensor *dst);
#include "ops.def"
#undef OP

void ir_type_of(const em_tensor *t, ir_type *out);
/* Same shape (dims and sizes); same type (dtype too); bytes of a dense value. */
static inline bool ir_type_same_shape(const ir_type *a, const ir_type *b) {
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape) == 0;
}
static inline bool ir_type_same(const ir_type *a, const ir_type *b) {
    return a->dtype == b->dtype && ir_type_same_shape(a, b);
}
static inline size_t ir_type_bytes(const ir_type *t) {
    size_t n = rt_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}
/* The strides and offset eager execution gives the result of a view op (reshape,
 * permute, slice, expand) of x; false for a reshape whose layout needs a copy
 * (and for other ops). Tracing uses it so proxies see what eager code sees. */
bool ir_view_layout(ir_op op, const em_tensor *x, const ir_attrs *a, const ir_type *out,
                    int64_t *strides, int64_t *offset);
/* Broadcasts two shapes into out (numpy rules); -1 with an error naming api. */
int ir_broadcast(const char *api, const ir_type *a, const ir_type *b, ir_type *out);

/* ---- the SSA graph (graph.c, verify.c, print.c, interp.c) ------------------------ */

typedef enum ir_node_kind {
    IR_NODE_INPUT, /* a tensor argument of the traced function */
    IR_NODE_CONST, /* a real tensor the function reached (a global, a created scalar) */
    IR_NODE_OP,    /* an op applied to earlier nodes */
} ir_node_kind;

/* A node is one SSA value. Nodes are immutable once created and hash-consed:
 * asking for an op node equal to an existing one (same op, inputs and
 * attributes) returns the existing node. */
typedef struct ir_node {
    int id;                  /* %id in printouts: position in the graph's node order */
    ir_node_kind kind;
    ir_op op;                /* IR_NODE_OP only */
    ir_type type;            /* dtype and shape of the value */
    ir_attrs attrs;          /* normalised by the op's shape rule */
    int nin;                 /* inputs; entries may be NULL for optional operands */
    struct ir_node **in;     /* nin entries, in the graph's arena */
    int arg;                 /* IR_NODE_INPUT: index among the tensor arguments */
    em_tensor *value;        /* IR_NODE_CONST: the tensor (the graph holds a reference) */
    int uses;                /* times this node is an input of another node or an output */
    uintptr_t site;          /* return address of the user's call (0 if unknown) */
    uint64_t hash;           /* of (kind, op, inputs, attrs) */
} ir_node;

typedef struct ir_graph ir_graph; /* owns its nodes (one arena) and its constants */

ir_graph *ir_graph_create(const char *name);          /* NULL with an error on OOM */
void ir_graph_destroy(ir_graph *g);                   /* NULL-safe; releases constants */
const char *ir_graph_name(const ir_graph *g);

/* Adds the tensor argument number `arg` of type t (one node per argument). */
ir_node *ir_graph_add_input(ir_graph *g, const ir_type *t, int arg);
/* Adds a constant holding a reference to t; the same tensor twice is one node. */
ir_node *ir_graph_add_const(ir_graph *g, em_tensor *t);
/* Adds op(in...) after checking it with the op's shape rule (errors name api);
 * returns the existing node when an equal one exists. attrs are copied and
 * normalised. NULL with an error on a type error or OOM. */
ir_node *ir_graph_add_node(ir_graph *g, ir_op op, const char *api, ir_node *const *in, int nin,
                           const ir_attrs *attrs, uintptr_t site);
/* Sets the outputs (nodes of g; one node may appear more than once). */
int ir_graph_set_outputs(ir_graph *g, ir_node *const *outs, int n);

int ir_graph_num_nodes(const ir_graph *g);
ir_node *ir_graph_node(const ir_graph *g, int i);     /* in topological order */
int ir_graph_num_inputs(const ir_graph *g);
ir_node *ir_graph_input(const ir_graph *g, int i);    /* by argument index */
int ir_graph_num_outputs(const ir_graph *g);
ir_node *ir_graph_output(const ir_graph *g, int i);

/* Checks every invariant: inputs precede users (SSA order), input counts match
 * arity, types equal what the shape rules give, use counts are right, node ids
 * are positions, hash-consing left no duplicates. 0, or -1 with an error
 * naming the node. */
int ir_graph_verify(const ir_graph *g);

/* One line per node: `%7 = add %3, %5 : f32[64,4096]  ; mlp+0x2f`, inputs and
 * constants first, outputs last. */
int ir_graph_print(const ir_graph *g, FILE *out);
int ir_graph_print_dot(const ir_graph *g, FILE *out);  /* Graphviz */
/* "mlp+0x2f" for a call-site address (dladdr), or "" when unknown. */
const char *ir_site_str(uintptr_t site, char *buf, size_t cap);

/* Runs g with the eager adapters: args are the tensor arguments in order;
 * outs receives ir_graph_num_outputs new references (not adopted by a scope).
 * Intermediates are released as soon as their last use has run. 0, or -1 with
 * an error (nothing is left in outs then). */
int ir_graph_run(const ir_graph *g, em_tensor *const *args, em_tensor **outs);

/* Bit i set: tensor input i of op may be NULL (ops.def's optional column). */
static inline unsigned ir_op_optional(ir_op op) { return ir_ops[op].optional; }

#endif /* EMBER_IR_H */
