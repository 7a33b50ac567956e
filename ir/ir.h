/*
 * ir.h — the whole interface of ember's IR layer.
 *
 * For now: the op table (generated from ops.def) and the type rules that every
 * op is checked with before it runs or is recorded. The SSA graph, verifier,
 * printers and interpreter of the capture work build on these.
 */
#ifndef EMBER_IR_H
#define EMBER_IR_H

#include "runtime.h"

typedef enum ir_op {
#define OP(E, name, arity, kind, api, rule, eager, kernel) IR_OP_##E,
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
 * Returns a new reference (not adopted by any scope) or NULL with an error. */
typedef em_tensor *(*ir_eager_fn)(ir_op op, em_tensor *const *in, int nin,
                                  const ir_attrs *attrs, const ir_type *out);

typedef struct ir_op_info {
    const char *name;   /* "add" */
    int arity;          /* tensor inputs; -1 for a list */
    ir_kind kind;
    ir_shape_fn shape;
    ir_eager_fn eager;
    int kernel;         /* runtime function id (rt_unary, rt_binary, rt_reduce, ...) */
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];

#define OP(E, name, arity, kind, api, rule, eager, kernel)                               \
    int ir_shape_##rule(ir_op op, const char *api_name, const ir_type *const *in, int nin, \
                        ir_attrs *attrs, ir_type *out);
#include "ops.def"
#undef OP
#define OP(E, name, arity, kind, api, rule, eager, kernel)                               \
    em_tensor *ir_eager_##eager(ir_op op, em_tensor *const *in, int nin,                   \
                                const ir_attrs *attrs, const ir_type *out);
#include "ops.def"
#undef OP

void ir_type_of(const em_tensor *t, ir_type *out);
/* Broadcasts two shapes into out (numpy rules); -1 with an error naming api. */
int ir_broadcast(const char *api, const ir_type *a, const ir_type *b, ir_type *out);

#endif /* EMBER_IR_H */
