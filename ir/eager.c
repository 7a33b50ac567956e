/*
 * eager.c — running each op on real tensors.
 *
 * These adapters are the eager meaning of every op: the frontend calls them for
 * each public call made outside tracing, and the graph interpreter calls them
 * for each node, so the two cannot disagree.
 *
 * One adapter per family of ops (named in ops.def's eager column) turns a typed
 * op call into runtime kernel calls: it converts inputs to the dtype the kernel
 * computes in, allocates the contiguous result, and calls the kernel. Shape ops
 * build views over the input's storage instead (a reshape of data whose layout
 * cannot be viewed copies it first, as torch.reshape does). Inputs are never
 * written; every temporary is released before returning, on failure too.
 */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

/* t as dtype dt: t itself (retained) or a converted copy. */
static em_tensor *as_dtype(em_tensor *t, em_dtype dt) {
    if (!t || t->dtype == dt) return em_retain(t);
    em_tensor *c = rt_tensor_new("cast", dt, t->ndim, t->shape, false);
    if (c) rt_cast_apply(t, c);
    return c;
}

/* The result tensor: dst (a new reference) when the caller gave one, else a new
 * dense tensor of type out. */
static em_tensor *new_out(const ir_op op, const ir_type *out, em_tensor *dst) {
    if (dst) return em_retain(dst);
    char api[40];
    snprintf(api, sizeof api, "em_%s", ir_ops[op].name);
    return rt_tensor_new(api, out->dtype, out->ndim, out->shape, false);
}

/* Converts in[0..n) to dt into c[]; returns false (all released) if one failed. */
static bool convert_all(em_tensor *const *in, int n, em_dtype dt, em_tensor **c) {
    for (int i = 0; i < n; i++) {
        c[i] = as_dtype(in[i], dt);
        if (in[i] && !c[i]) {
            while (i-- > 0) em_release(c[i]);
            return false;
        }
    }
    return true;
}

static void release_all(em_tensor **c, int n) {
    for (int i = 0; i < n; i++) em_release(c[i]);
}

/* Allocates out, converts the inputs to dt, runs fn; the shared skeleton. */
typedef int (*run_fn)(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out);
static em_tensor *run_converted(ir_op op, em_tensor *const *in, int n, em_dtype dt,
                                const ir_attrs *a, const ir_type *type, em_tensor *dst, run_fn fn) {
    em_tensor *c[4];
    EM_ASSERT(n <= 4);
    if (!convert_all(in, n, dt, c)) return NULL;
    em_tensor *out = new_out(op, type, dst);
    if (out && fn(op, c, n, a, out) != 0) {
        em_release(out);
        out = NULL;
    }
    release_all(c, n);
    return out;
}

/* ---- elementwise ------------------------------------------------------------------ */

static int run_unary(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)n, (void)a;
    return rt_unary_apply((rt_unary)ir_ops[op].kernel, c[0], out);
}
em_tensor *ir_eager_unary(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                          const ir_type *out, em_tensor *dst) {
    return run_converted(op, in, nin, out->dtype, a, out, dst, run_unary);
}

static int run_binary(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)n, (void)a;
    return rt_binary_apply((rt_binary)ir_ops[op].kernel, c[0], c[1], out);
}
em_tensor *ir_eager_binary(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                           const ir_type *out, em_tensor *dst) {
    /* Comparisons compute in the promoted input dtype; arithmetic in the result's. */
    em_dtype dt = out->dtype == EM_BOOL && ir_ops[op].kernel >= RT_BINARY_EQ
                      ? rt_dtype_promote(in[0]->dtype, in[1]->dtype) : out->dtype;
    return run_converted(op, in, nin, dt, a, out, dst, run_binary);
}

static int run_where(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)op, (void)n, (void)a;
    return rt_where_apply(c[0], c[1], c[2], out);
}
em_tensor *ir_eager_where(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                          const ir_type *out, em_tensor *dst) {
    (void)nin;
    em_tensor *c[3] = {in[0], NULL, NULL};
    if (!convert_all(in + 1, 2, out->dtype, c + 1)) return NULL;
    em_retain(c[0]);
    em_tensor *r = NULL, *o = new_out(op, out, dst);
    if (o && run_where(op, c, 3, a, o) == 0) r = o;
    else em_release(o);
    release_all(c, 3);
    return r;
}

em_tensor *ir_eager_cast(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                         const ir_type *out, em_tensor *dst) {
    (void)op, (void)nin, (void)out;
    if (dst) return rt_cast_apply(in[0], dst) == 0 ? em_retain(dst) : NULL;
    return as_dtype(in[0], a->dtype);
}

/* ---- reductions and row-wise ops --------------------------------------------------- */

/* A 0-d tensor reduces over a virtual axis of size 1: view it as [1]. */
static em_tensor *at_least_1d(em_tensor *t) {
    if (t->ndim > 0) return em_retain(t);
    int64_t one = 1, st = 1;
    return rt_tensor_view(t, 1, &one, &st, t->offset);
}

static int run_reduce(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)n;
    em_tensor *x = at_least_1d(c[0]);
    int r = x ? rt_reduce_apply((rt_reduce)ir_ops[op].kernel, x, a->axis, out) : -1;
    em_release(x);
    return r;
}
em_tensor *ir_eager_reduce(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                           const ir_type *out, em_tensor *dst) {
    em_dtype dt = op == IR_OP_MEAN ? out->dtype : in[0]->dtype;
    return run_converted(op, in, nin, dt, a, out, dst, run_reduce);
}

static int run_softmax(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)n;
    em_tensor *x = at_least_1d(c[0]);
    em_tensor *o = x && out->ndim == 0 ? at_least_1d(out) : em_retain(out);
    int r = x && o ? rt_softmax_apply(x, a->axis, ir_ops[op].kernel == 1, o) : -1;
    em_release(x);
    em_release(o);
    return r;
}
em_tensor *ir_eager_softmax(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                            const ir_type *out, em_tensor *dst) {
    return run_converted(op, in, nin, out->dtype, a, out, dst, run_softmax);
}

static int run_layer_norm(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)op, (void)n;
    return rt_layer_norm_apply(c[0], c[1], c[2], a->eps, out);
}
em_tensor *ir_eager_layer_norm(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                               const ir_type *out, em_tensor *dst) {
    return run_converted(op, in, nin, out->dtype, a, out, dst, run_layer_norm);
}

static int run_rms_norm(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)op, (void)n;
    return rt_rms_norm_apply(c[0], c[1], a->eps, out);
}
em_tensor *ir_eager_rms_norm(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                             const ir_type *out, em_tensor *dst) {
    return run_converted(op, in, nin, out->dtype, a, out, dst, run_rms_norm);
}

/* ---- contractions and gathers ------------------------------------------------------- */

static int run_matmul(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)op, (void)n, (void)a;
    return rt_matmul_apply(c[0], c[1], out);
}
em_tensor *ir_eager_matmul(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                           const ir_type *out, em_tensor *dst) {
    return run_converted(op, in, nin, out->dtype, a, out, dst, run_matmul);
}

static int run_linear(ir_op op, em_tensor **c, int n, const ir_attrs *a, em_tensor *out) {
    (void)op, (void)n, (void)a;
    return rt_linear_apply(c[0], c[1], c[2], out);
}
em_tensor *ir_eager_linear(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                           const ir_type *out, em_tensor *dst) {
    return run_converted(op, in, nin, out->dtype, a, out, dst, run_linear);
}

em_tensor *ir_eager_embedding(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                              const ir_type *out, em_tensor *dst) {
    (void)nin, (void)a;
    if (rt_embedding_check("em_embedding", in[1], in[0]->shape[0])) return NULL;
    em_tensor *o = new_out(op, out, dst);
    if (o && rt_embedding_apply(in[0], in[1], o) != 0) {
        em_release(o);
        return NULL;
    }
    return o;
}

em_tensor *ir_eager_concat(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                           const ir_type *out, em_tensor *dst) {
    em_tensor **c = rt_malloc((size_t)nin * sizeof *c, "em_concat");
    if (!c) return NULL;
    em_tensor *o = NULL;
    if (convert_all(in, nin, out->dtype, c)) {
        o = new_out(op, out, dst);
        if (o && rt_concat_apply(c, nin, a->axis, o) != 0) {
            em_release(o);
            o = NULL;
        }
        release_all(c, nin);
    }
    free(c);
    return o;
}

/* ---- shape ops: views --------------------------------------------------------------- */

em_tensor *ir_eager_contiguous(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                               const ir_type *out, em_tensor *dst) {
    (void)nin, (void)a;
    if (dst) return rt_tensor_copy_into(dst, in[0]) == 0 ? em_retain(dst) : NULL;
    if (rt_tensor_is_contiguous(in[0])) return em_retain(in[0]);
    em_tensor *o = new_out(op, out, NULL);
    if (o) rt_tensor_copy_to(in[0], rt_tensor_data(o));
    return o;
}

/* Strides for viewing x as `shape` without a copy, as torch's view does; false
 * when the layout does not allow it. */
static bool reshape_strides(const em_tensor *x, int nd, const int64_t *shape, int64_t *st) {
    if (x->numel == 0 || x->ndim == 0) {
        rt_tensor_contig_strides(nd, shape, st);
        return true;
    }
    int vd = nd - 1;
    int64_t base = x->strides[x->ndim - 1], tn = 1, vn = 1;
    for (int td = x->ndim - 1; td >= 0; td--) {
        tn *= x->shape[td];
        if (td == 0 || (x->shape[td - 1] != 1 && x->strides[td - 1] != tn * base)) {
            while (vd >= 0 && (vn < tn || shape[vd] == 1)) {
                st[vd] = vn * base;
                vn *= shape[vd--];
            }
            if (vn != tn) return false;
            if (td > 0) base = x->strides[td - 1], tn = 1, vn = 1;
        }
    }
    return vd == -1;
}

bool ir_view_layout(ir_op op, const em_tensor *x, const ir_attrs *a, const ir_type *out,
                    int64_t *st, int64_t *offset) {
    *offset = x->offset;
    switch (op) {
    case IR_OP_RESHAPE: return reshape_strides(x, out->ndim, out->shape, st);
    case IR_OP_PERMUTE:
        for (int i = 0; i < out->ndim; i++) st[i] = x->strides[a->dims[i]];
        return true;
    case IR_OP_SLICE:
        memcpy(st, x->strides, sizeof x->strides);
        st[a->axis] *= a->step;
        if (out->shape[a->axis]) *offset += a->start * x->strides[a->axis];
        return true;
    case IR_OP_EXPAND: {
        int off = out->ndim - x->ndim;
        for (int i = 0; i < out->ndim; i++)
            st[i] = i < off || (x->shape[i - off] == 1 && out->shape[i] != 1) ? 0 : x->strides[i - off];
        return true;
    }
    default: return false;
    }
}

/* Every view op: a new header over x's storage; a reshape whose layout cannot
 * be viewed copies to dense data first, as torch.reshape does. */
em_tensor *ir_eager_view(ir_op op, em_tensor *const *in, int nin, const ir_attrs *a,
                         const ir_type *out, em_tensor *dst) {
    int64_t st[EM_MAX_DIMS], off;
    em_tensor *x = in[0];
    if (dst) { /* a view materialised into a planned buffer: a strided copy */
        if (!ir_view_layout(op, x, a, out, st, &off)) return ir_eager_contiguous(op, in, nin, a, out, dst);
        em_tensor *v = rt_tensor_view(x, out->ndim, out->shape, st, off);
        int r = v ? rt_tensor_copy_into(dst, v) : -1;
        em_release(v);
        return r == 0 ? em_retain(dst) : NULL;
    }
    if (ir_view_layout(op, x, a, out, st, &off))
        return rt_tensor_view(x, out->ndim, out->shape, st, off);
    ir_type dense;
    ir_type_of(x, &dense);
    em_tensor *c = ir_eager_contiguous(op, in, nin, a, &dense, NULL);
    if (!c) return NULL;
    rt_tensor_contig_strides(out->ndim, out->shape, st);
    em_tensor *v = rt_tensor_view(c, out->ndim, out->shape, st, 0);
    em_release(c);
    return v;
}
