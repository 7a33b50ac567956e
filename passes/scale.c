/*
 * scale.c — a power-of-two scale of a contraction's operand moves to its result.
 *
 * A matmul or linear whose operand is x * s, s * x or x / s, with s a fixed
 * f32 constant of one element that is a power of two, is rebuilt over x, and
 * s scales the product instead; linear's bias, which the scale must not
 * touch, is scaled the other way (eager adds it inside the GEMM, as the sum's
 * starting value, so it cannot simply be added after):
 *
 *     matmul(x * 0.125, w)    ->  matmul(x, w) * 0.125
 *     matmul(x, w / 4)        ->  matmul(x, w) / 4
 *     linear(x * 2, w, b)     ->  linear(x, w, b / 2) * 2
 *
 * Why: a contraction takes an epilogue but no prologue (fuse.c), so a scaled
 * operand was a kernel of its own, written to memory and read back by the
 * GEMM (attention written as (q / sqrt(64)) k^T, a weight scaled in the
 * model); as a scale of the result it is one more operation in the GEMM's
 * store. It is the cheap prologue of the JIT GEMM's issue, a transpose being
 * the other: a transposed operand is only strides to the GEMM already.
 *
 * Exact, like fold's identities: multiplying by a power of two only moves the
 * exponent, so every product and every partial sum of (x s) w is that of x w
 * times s, rounded the same way, and the result has the same bits. That holds
 * while nothing overflows or becomes subnormal, so s must be within
 * [2^-24, 2^24]: a value would have to be within that factor of the float
 * range's ends to tell. Any other scale (1/sqrt(128)) stays where it is:
 * moving it would change the rounding, and the passes keep every bit. So
 * does a scale that is an argument, or a captured tensor that may change
 * between calls: its value must be known here.
 *
 * The scaled operand keeps its other users: when x * s is also returned or
 * read elsewhere it is still computed for them (dce drops it when it is not).
 */
#include "passes.h"

#include <math.h>

typedef struct scale_state {
    const pass_consts *k;
} scale_state;

/* Whether c is a fixed f32 constant of one element that is a power of two
 * within [2^-24, 2^24] in magnitude. */
static bool is_scale(const scale_state *s, const ir_node *c) {
    if (!c || c->kind != IR_NODE_CONST || c->type.dtype != EM_F32 || !pass_consts_fixed(s->k, c->value)) return false;
    const em_tensor *t = c->value;
    if (t->numel != 1) return false;
    double v = rt_value_load(EM_F32, (const char *)t->storage->data + t->offset * (int64_t)sizeof(float));
    int e;
    double m = frexp(fabs(v), &e); /* |v| = m 2^e, m in [0.5, 1) */
    return m == 0.5 && e - 1 >= -24 && e - 1 <= 24;
}

/* When operand x (a new node) is y * s, s * y or y / s with s a scale and y of
 * x's type: y, with the scale's node and op (IR_OP_MUL or IR_OP_DIV) in *by
 * and *op; else x itself. */
static ir_node *unscaled(const scale_state *s, ir_node *x, ir_node **by, ir_op *op) {
    *by = NULL;
    if (!x || x->kind != IR_NODE_OP || x->type.dtype != EM_F32 || (x->op != IR_OP_MUL && x->op != IR_OP_DIV))
        return x;
    for (int j = 0; j < 2; j++) {
        if (j == 0 && x->op == IR_OP_DIV) continue; /* s / y is not a scale of y */
        ir_node *c = x->in[j], *y = x->in[1 - j];
        if (is_scale(s, c) && ir_type_same_shape(&y->type, &x->type) && y->type.dtype == EM_F32) {
            *by = c, *op = x->op;
            return y;
        }
    }
    return x;
}

static ir_node *scale_node(pass_rewrite *rw, const ir_node *old, ir_node **in, void *ctx) {
    const scale_state *s = ctx;
    if (old->kind != IR_NODE_OP || (old->op != IR_OP_MATMUL && old->op != IR_OP_LINEAR) || old->type.dtype != EM_F32)
        return pass_rewrite_copy(rw, old, in);
    ir_node *by[2];
    ir_op how[2] = {IR_OP_MUL, IR_OP_MUL};
    ir_node *op[3] = {unscaled(s, in[0], &by[0], &how[0]), unscaled(s, in[1], &by[1], &how[1]), NULL};
    if (!by[0] && !by[1]) return pass_rewrite_copy(rw, old, in);
    bool bias = old->op == IR_OP_LINEAR && old->nin > 2 && in[2];
    for (int j = 0; j < 2; j++) /* the scale must widen neither the result nor the bias */
        if (by[j] && by[j]->type.ndim > (bias ? 1 : old->type.ndim)) return pass_rewrite_copy(rw, old, in);
    if (bias) { /* b scaled the other way: b / s for x * s, b * s for x / s */
        op[2] = in[2];
        for (int j = 0; j < 2 && op[2]; j++) {
            if (!by[j]) continue;
            ir_node *pair[2] = {op[2], by[j]};
            op[2] = ir_graph_add_node(rw->dst, how[j] == IR_OP_MUL ? IR_OP_DIV : IR_OP_MUL, NULL, pair, 2,
                                      &(ir_attrs){0}, old->site);
        }
        if (!op[2]) return NULL;
    }
    ir_node *y = ir_graph_add_node(rw->dst, old->op, NULL, op, old->nin, &old->attrs, old->site);
    for (int j = 0; j < 2 && y; j++) {
        if (!by[j]) continue;
        ir_node *pair[2] = {y, by[j]};
        y = ir_graph_add_node(rw->dst, how[j], NULL, pair, 2, &(ir_attrs){0}, old->site);
    }
    return y;
}

ir_graph *pass_scale(const ir_graph *g, const pass_consts *k) {
    scale_state s = {k};
    return pass_rewrite_run(g, NULL, scale_node, &s);
}
