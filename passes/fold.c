/*
 * fold.c — constant folding and exact algebraic identities.
 *
 * One rebuild of the graph (pass_rewrite_run) in which each op node, seen with
 * its already-folded inputs, may become something simpler. Because inputs are
 * folded before their users, a chain folds in one walk: reshape(reshape(c))*2
 * on a constant c becomes one constant, neg(neg(neg(neg(x)))) becomes x.
 *
 * 1. Constant subgraphs. An op whose inputs are all constants is run now with
 *    the op's eager adapter (ir_ops[op].eager, what the interpreter would run)
 *    and replaced by a constant holding the result, so the value is bit for
 *    bit the one the graph would compute. Two limits:
 *     - only fixed constants (pass_consts) are read: a weight captured by
 *       reference may change before the next call. A view of such a constant
 *       (a transpose, a reshape that needs no copy, a cast to its own dtype)
 *       still folds, because the view reads the same storage at every call;
 *     - the result may be at most PASS_FOLD_MAX_BYTES (1 MiB) or
 *       PASS_FOLD_MAX_GROWTH (4) times its largest input, counted as elements
 *       times dtype size, so folding an expand of a scalar to a big shape (and
 *       whatever consumes it) cannot blow up the graph's memory.
 *    An op that fails when run (an index out of range) is left in the graph to
 *    fail at run time, as it would have.
 *
 * 2. Identities that are exact: the replacement has the same dtype and shape
 *    (checked before replacing) and the same bits. Constants are checked by
 *    value, converted to the result's dtype, and only fixed ones.
 *     - x*1, 1*x, x/1: ones broadcast without changing x's shape or dtype
 *       (x*1.0 == x for every float, -0.0 and infinities included);
 *     - x + (-0.0) and (-0.0) + x for floats, but not x + 0.0: -0.0 + 0.0 is
 *       +0.0, so adding +0.0 is not the identity while adding -0.0 is;
 *       x - 0.0 for floats but not x - (-0.0), by the same rule; x + 0 and
 *       x - 0 for integers;
 *     - neg(neg(x));
 *     - permute of permute composed into one (the identity permutation: x);
 *     - reshape to x's own shape, expand to x's own shape, cast to x's own
 *       dtype, a slice that covers its whole axis: x; reshape of reshape:
 *       one reshape, when x is known to be contiguous (below);
 *     - contiguous(x) when x is known to be contiguous: x.
 *    NaN operands give NaN either way (only a signalling NaN is no longer
 *    quieted by the removed multiply); no identity reassociates floats.
 *
 * Layouts. The eager kernels take different paths for different layouts (a
 * row sum and a column sum add in different orders), so a rewrite that
 * changes the strides a consumer sees can change its bits. x*1 writes a new
 * dense tensor while x may be a transposed view; so an elementwise identity
 * yields x only when x is known to be contiguous whatever the arguments look
 * like (pass_node_contiguous), and contiguous(x) otherwise, which copies
 * exactly when x*1 would have produced different strides. View identities keep
 * strides by construction (a composed permute picks the same strides; a
 * same-shape expand, reshape or full slice is x's own layout). A reshape of a
 * reshape is composed only over a contiguous x: otherwise the inner reshape
 * may copy and the outer see dense strides where one reshape would give a
 * strided view. Strides of size-1 dims and offsets are not layouts in this
 * sense: no kernel reads them.
 */
#include "passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct fold_state {
    pass_consts *k;
} fold_state;

bool pass_node_contiguous(const ir_node *x) {
    switch (x->kind) {
    case IR_NODE_INPUT: return false; /* its strides are the caller's */
    case IR_NODE_CONST: return rt_tensor_is_contiguous(x->value);
    case IR_NODE_OP: break;
    }
    if (x->op == IR_OP_CAST) /* to its own dtype, eager returns the input itself */
        return x->in[0]->type.dtype != x->type.dtype || pass_node_contiguous(x->in[0]);
    if (x->op == IR_OP_RESHAPE) return pass_node_contiguous(x->in[0]); /* a dense view or a copy */
    /* Every other adapter writes a new dense tensor (contiguous returns its
     * input only when that is contiguous already); views keep their input's
     * strides. */
    return ir_ops[x->op].kind != IR_KIND_VIEW;
}

/* ---- constant subgraphs ----------------------------------------------------------- */

static bool fixed(const fold_state *s, const ir_node *n) {
    return n && n->kind == IR_NODE_CONST && pass_consts_fixed(s->k, n->value);
}

/* Whether op on these constant inputs may be run now, and if so whether the
 * result must share in[0]'s storage (an input that is not fixed). */
static bool may_fold(const fold_state *s, const ir_node *old, ir_node *const *in, bool *view_only) {
    size_t largest = 0;
    bool all_fixed = true;
    for (int k = 0; k < old->nin; k++) {
        if (!in[k]) continue;
        if (in[k]->kind != IR_NODE_CONST) return false;
        all_fixed &= fixed(s, in[k]);
        size_t b = ir_type_bytes(&in[k]->type);
        if (b > largest) largest = b;
    }
    size_t out = ir_type_bytes(&old->type);
    if (out > PASS_FOLD_MAX_BYTES && out / PASS_FOLD_MAX_GROWTH > largest) return false;
    *view_only = !all_fixed;
    if (all_fixed) return true;
    /* Ops that may return a view of their input (or the input itself). */
    ir_op o = old->op;
    return old->nin == 1 && (ir_ops[o].kind == IR_KIND_VIEW || o == IR_OP_CAST || o == IR_OP_CONTIGUOUS);
}

/* *out: a constant with old's value over the constants in, or NULL when old
 * cannot be folded. -1 on OOM. */
static int fold_consts(fold_state *s, pass_rewrite *rw, const ir_node *old, ir_node *const *in,
                       ir_node **out) {
    enum { SMALL = 8 };
    em_tensor *small[SMALL], **vals = small;
    bool view_only;
    *out = NULL;
    if (!may_fold(s, old, in, &view_only)) return 0;
    if (old->nin > SMALL && !(vals = rt_malloc((size_t)old->nin * sizeof *vals, "pass_fold"))) return -1;
    for (int k = 0; k < old->nin; k++) vals[k] = in[k] ? in[k]->value : NULL;
    em_tensor *r = ir_ops[old->op].eager(old->op, vals, old->nin, &old->attrs, &old->type, NULL);
    bool shares = r && vals[0] && r->storage == vals[0]->storage;
    if (vals != small) free(vals);
    if (!r || (view_only && !shares)) {
        em_release(r);
        em_clear_error(); /* it fails at run time instead, as it would have */
        return 0;
    }
    *out = ir_graph_add_const(rw->dst, r);
    int st = *out && !view_only ? pass_consts_add(s->k, r) : 0;
    em_release(r);
    return *out && st == 0 ? 0 : -1;
}

/* ---- identities --------------------------------------------------------------------- */

static bool is_one(double v) { return v == 1.0; }
static bool is_zero(double v) { return v == 0.0; }
static bool is_neg_zero(double v) { return v == 0.0 && signbit(v); }
static bool is_pos_zero(double v) { return v == 0.0 && !signbit(v); }

/* Every element of the fixed constant c, converted to dtype `as`, satisfies p. */
static bool all_values(const fold_state *s, const ir_node *c, em_dtype as, bool (*p)(double)) {
    if (!fixed(s, c)) return false;
    const em_tensor *t = c->value;
    size_t esz = rt_dtype_size(t->dtype);
    int64_t idx[EM_MAX_DIMS] = {0};
    for (int64_t n = 0; n < t->numel; n++) {
        int64_t off = t->offset;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
        double v = rt_value_load(t->dtype, (const char *)t->storage->data + off * (int64_t)esz);
        if (as == EM_F32) v = (float)v;
        if (!p(v)) return false;
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    return true;
}

/* x standing for an elementwise op old that wrote a new dense tensor: x itself
 * when it is contiguous too, else a contiguous copy; NULL when x's type is
 * not old's. *err on OOM. */
static ir_node *dense(pass_rewrite *rw, const ir_node *old, ir_node *x, bool *err) {
    if (!ir_type_same(&x->type, &old->type)) return NULL;
    if (pass_node_contiguous(x)) return x;
    ir_node *c = ir_graph_add_node(rw->dst, IR_OP_CONTIGUOUS, NULL, &x, 1, &(ir_attrs){0}, old->site);
    *err = !c;
    return c;
}

static ir_node *arith_identity(const fold_state *s, pass_rewrite *rw, const ir_node *old,
                               ir_node *const *in, bool *err) {
    em_dtype dt = old->type.dtype;
    bool isf = rt_dtype_is_float(dt);
    switch (old->op) {
    case IR_OP_MUL:
        if (all_values(s, in[1], dt, is_one)) return dense(rw, old, in[0], err);
        if (all_values(s, in[0], dt, is_one)) return dense(rw, old, in[1], err);
        return NULL;
    case IR_OP_DIV:
        return all_values(s, in[1], dt, is_one) ? dense(rw, old, in[0], err) : NULL;
    case IR_OP_ADD: {
        bool (*zero)(double) = isf ? is_neg_zero : is_zero;
        if (all_values(s, in[1], dt, zero)) return dense(rw, old, in[0], err);
        if (all_values(s, in[0], dt, zero)) return dense(rw, old, in[1], err);
        return NULL;
    }
    case IR_OP_SUB:
        return all_values(s, in[1], dt, isf ? is_pos_zero : is_zero) ? dense(rw, old, in[0], err) : NULL;
    case IR_OP_NEG:
        return in[0]->kind == IR_NODE_OP && in[0]->op == IR_OP_NEG ? dense(rw, old, in[0]->in[0], err)
                                                                 : NULL;
    default: return NULL;
    }
}

/* permute(permute(x, p), q) is permute(x, r) with r[i] = p[q[i]]; x itself
 * when r is the identity (and so is a lone identity permute). */
static ir_node *permute_identity(pass_rewrite *rw, const ir_node *old, ir_node *x, bool *err) {
    ir_attrs a = {.ndim = old->attrs.ndim};
    bool identity = true, nested = x->kind == IR_NODE_OP && x->op == IR_OP_PERMUTE;
    for (int i = 0; i < a.ndim; i++) {
        a.dims[i] = nested ? x->attrs.dims[old->attrs.dims[i]] : old->attrs.dims[i];
        identity &= a.dims[i] == i;
    }
    ir_node *base = nested ? x->in[0] : x;
    if (identity) return base;
    if (!nested) return NULL;
    ir_node *n = ir_graph_add_node(rw->dst, IR_OP_PERMUTE, NULL, &base, 1, &a, old->site);
    *err = !n;
    return n;
}

static bool is_output(const ir_graph *g, const ir_node *n) {
    for (int i = 0; i < ir_graph_num_outputs(g); i++)
        if (ir_graph_output(g, i) == n) return true;
    return false;
}

static ir_node *view_identity(pass_rewrite *rw, const ir_node *old, ir_node *const *in, bool *err) {
    ir_node *x = in[0];
    switch (old->op) {
    case IR_OP_PERMUTE: return permute_identity(rw, old, x, err);
    case IR_OP_RESHAPE:
        if (ir_type_same(&x->type, &old->type)) return x;
        if (x->kind == IR_NODE_OP && x->op == IR_OP_RESHAPE && pass_node_contiguous(x->in[0])) {
            ir_node *base = x->in[0];
            if (ir_type_same(&base->type, &old->type)) return base;
            ir_node *n = ir_graph_add_node(rw->dst, IR_OP_RESHAPE, NULL, &base, 1, &old->attrs, old->site);
            *err = !n;
            return n;
        }
        return NULL;
    case IR_OP_SLICE: /* the same shape and start 0 (the only start of a full axis); a step
                       * over a size-1 axis gives that axis another stride, which a caller
                       * sees (em_strides) when the slice is returned: keep it then */
        if (old->attrs.step != 1 && is_output(rw->src, old)) return NULL;
        return ir_type_same(&x->type, &old->type) ? x : NULL;
    case IR_OP_EXPAND:
    case IR_OP_CAST:
        return ir_type_same(&x->type, &old->type) ? x : NULL;
    case IR_OP_CONTIGUOUS: return pass_node_contiguous(x) ? x : NULL;
    default: return NULL;
    }
}

/* ---- the pass ------------------------------------------------------------------------- */

static ir_node *fold_node(pass_rewrite *rw, const ir_node *old, ir_node **in, void *ctx) {
    fold_state *s = ctx;
    if (old->kind != IR_NODE_OP) return pass_rewrite_copy(rw, old, in);
    ir_node *n;
    if (fold_consts(s, rw, old, in, &n)) return NULL;
    bool err = false;
    if (!n) n = arith_identity(s, rw, old, in, &err);
    if (!n && !err) n = view_identity(rw, old, in, &err);
    if (err) return NULL;
    return n ? n : pass_rewrite_copy(rw, old, in);
}

ir_graph *pass_fold(const ir_graph *g, pass_consts *k) {
    fold_state s = {.k = k ? k : pass_consts_create(g)};
    if (!s.k) return NULL;
    ir_graph *out = pass_rewrite_run(g, NULL, fold_node, &s);
    if (!k) pass_consts_destroy(s.k);
    return out;
}
