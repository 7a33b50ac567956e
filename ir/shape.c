/*
 * shape.c — the type rules of every op: result dtype and shape, or an error.
 *
 * Both eager execution and tracing call these before anything runs, so a bad
 * call fails the same way in both, with a message that names the public
 * function and the shapes involved ("em_add: shapes [2,3] and [4] cannot be
 * broadcast"). Rules also normalise attributes (negative axes, -1 dims, slice
 * bounds) so that later layers see one canonical form. Dtype promotion follows
 * bool < i32 < i64 < f32 < f64; arithmetic on two bools computes in i64, and
 * float math on integers computes in f32.
 */
#include "ir.h"

#include <math.h>
#include <string.h>

#define SHAPE(t) rt_shape_str((char[96]){0}, 96, (t)->ndim, (t)->shape)

void ir_type_of(const em_tensor *t, ir_type *out) {
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
}

int ir_broadcast(const char *api, const ir_type *a, const ir_type *b, ir_type *out) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[EM_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return rt_error("%s: shapes %s and %s cannot be broadcast", api, SHAPE(a), SHAPE(b));
        shape[i] = da == 1 ? db : da;
    }
    out->ndim = nd;
    memcpy(out->shape, shape, sizeof shape);
    return 0;
}

static em_dtype float_of(em_dtype dt) { return rt_dtype_is_float(dt) ? dt : EM_F32; }

int ir_shape_arith(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                   ir_type *out) {
    (void)op, (void)nin, (void)a;
    if (ir_broadcast(api, in[0], in[1], out)) return -1;
    out->dtype = rt_dtype_promote(in[0]->dtype, in[1]->dtype);
    if (out->dtype == EM_BOOL) out->dtype = EM_I64;
    return 0;
}

int ir_shape_divide(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                    ir_type *out) {
    if (ir_shape_arith(op, api, in, nin, a, out)) return -1;
    out->dtype = float_of(out->dtype);
    return 0;
}

int ir_shape_compare(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                     ir_type *out) {
    (void)op, (void)nin, (void)a;
    if (ir_broadcast(api, in[0], in[1], out)) return -1;
    out->dtype = EM_BOOL;
    return 0;
}

int ir_shape_where(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                   ir_type *out) {
    (void)op, (void)nin, (void)a;
    ir_type ab;
    if (ir_broadcast(api, in[1], in[2], &ab) || ir_broadcast(api, in[0], &ab, out)) return -1;
    out->dtype = rt_dtype_promote(in[1]->dtype, in[2]->dtype);
    return 0;
}

int ir_shape_signed_num(ir_op op, const char *api, const ir_type *const *in, int nin,
                        ir_attrs *a, ir_type *out) {
    (void)op, (void)nin, (void)a;
    if (in[0]->dtype == EM_BOOL) return rt_error("%s: bool tensors are not supported", api);
    *out = *in[0];
    return 0;
}

int ir_shape_float_math(ir_op op, const char *api, const ir_type *const *in, int nin,
                        ir_attrs *a, ir_type *out) {
    (void)op, (void)api, (void)nin, (void)a;
    *out = *in[0];
    out->dtype = float_of(out->dtype);
    return 0;
}

int ir_shape_same(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                  ir_type *out) {
    (void)op, (void)api, (void)nin, (void)a;
    *out = *in[0];
    return 0;
}

int ir_shape_cast(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                  ir_type *out) {
    (void)op, (void)nin;
    if (!rt_dtype_valid((int)a->dtype)) return rt_error("%s: %d is not a dtype", api, (int)a->dtype);
    *out = *in[0];
    out->dtype = a->dtype;
    return 0;
}

/* Reductions accept axis 0 or -1 on a 0-d tensor (as torch does): a virtual
 * axis of size 1. */
int ir_shape_reduce(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                    ir_type *out) {
    (void)nin;
    const ir_type *x = in[0];
    int nd = x->ndim ? x->ndim : 1;
    int ax = rt_axis(api, a->axis, nd);
    if (ax < 0) return -1;
    a->axis = ax;
    a->keepdim = a->keepdim != 0;
    int64_t len = x->ndim ? x->shape[ax] : 1;
    if (len == 0 && op != IR_OP_SUM && op != IR_OP_MEAN)
        return rt_error("%s: cannot reduce axis %d of size 0 in %s", api, ax, SHAPE(x));
    out->ndim = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i != ax) out->shape[out->ndim++] = x->shape[i];
        else if (a->keepdim) out->shape[out->ndim++] = 1;
    }
    bool isf = rt_dtype_is_float(x->dtype);
    out->dtype = op == IR_OP_ARGMAX ? EM_I64
               : op == IR_OP_SUM   ? (isf ? x->dtype : EM_I64)
               : op == IR_OP_MEAN  ? float_of(x->dtype) : x->dtype;
    return 0;
}

int ir_shape_softmax(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                     ir_type *out) {
    (void)op, (void)nin;
    int ax = rt_axis(api, a->axis, in[0]->ndim ? in[0]->ndim : 1);
    if (ax < 0) return -1;
    a->axis = ax;
    *out = *in[0];
    out->dtype = float_of(out->dtype);
    return 0;
}

/* w (and b) are NULL or 1-D of x's last dim. */
static int check_norm_param(const char *api, const char *what, const ir_type *x, const ir_type *p) {
    if (!p) return 0;
    if (p->ndim != 1 || p->shape[0] != x->shape[x->ndim - 1])
        return rt_error("%s: %s has shape %s; expected [%lld] for input %s", api, what, SHAPE(p),
                        (long long)x->shape[x->ndim - 1], SHAPE(x));
    return 0;
}

static int norm_common(const char *api, const ir_type *x, const ir_attrs *a, ir_type *out) {
    if (x->ndim < 1) return rt_error("%s: input must have at least 1 dim, got 0-d", api);
    if (!isfinite(a->eps) || a->eps < 0)
        return rt_error("%s: eps %g must be finite and >= 0", api, a->eps);
    *out = *x;
    out->dtype = float_of(x->dtype);
    return 0;
}

int ir_shape_layer_norm(ir_op op, const char *api, const ir_type *const *in, int nin,
                        ir_attrs *a, ir_type *out) {
    (void)op, (void)nin;
    if (norm_common(api, in[0], a, out)) return -1;
    return check_norm_param(api, "weight", in[0], in[1]) || check_norm_param(api, "bias", in[0], in[2])
               ? -1 : 0;
}

int ir_shape_rms_norm(ir_op op, const char *api, const ir_type *const *in, int nin,
                      ir_attrs *a, ir_type *out) {
    (void)op, (void)nin;
    if (norm_common(api, in[0], a, out)) return -1;
    return check_norm_param(api, "weight", in[0], in[1]);
}

static int float_operands(const char *api, const ir_type *a, const ir_type *b, em_dtype *dt) {
    if (!rt_dtype_is_float(a->dtype) || (b && !rt_dtype_is_float(b->dtype)))
        return rt_error("%s: operands are %s and %s; only f32 and f64 are supported", api,
                        em_dtype_name(a->dtype), b ? em_dtype_name(b->dtype) : "none");
    *dt = b ? rt_dtype_promote(a->dtype, b->dtype) : a->dtype;
    return 0;
}

/* torch.matmul: 1-D operands are promoted to matrices and the added dim removed. */
int ir_shape_matmul(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                    ir_type *out) {
    (void)op, (void)nin, (void)a;
    const ir_type *x = in[0], *y = in[1];
    if (x->ndim < 1 || y->ndim < 1)
        return rt_error("%s: operands must have at least 1 dim, got %s and %s", api, SHAPE(x), SHAPE(y));
    if (float_operands(api, x, y, &out->dtype)) return -1;
    int64_t kx = x->shape[x->ndim - 1];
    int64_t ky = y->ndim == 1 ? y->shape[0] : y->shape[y->ndim - 2];
    if (kx != ky)
        return rt_error("%s: shapes %s and %s: inner dims %lld and %lld differ", api, SHAPE(x),
                        SHAPE(y), (long long)kx, (long long)ky);
    ir_type bx = {.ndim = x->ndim > 2 ? x->ndim - 2 : 0}, by = {.ndim = y->ndim > 2 ? y->ndim - 2 : 0};
    memcpy(bx.shape, x->shape, (size_t)bx.ndim * sizeof(int64_t));
    memcpy(by.shape, y->shape, (size_t)by.ndim * sizeof(int64_t));
    if (ir_broadcast(api, &bx, &by, out)) return -1;
    if (x->ndim >= 2) out->shape[out->ndim++] = x->shape[x->ndim - 2];
    if (y->ndim >= 2) out->shape[out->ndim++] = y->shape[y->ndim - 1];
    if (out->ndim > EM_MAX_DIMS) return rt_error("%s: result has too many dims", api);
    return 0;
}

int ir_shape_linear(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                    ir_type *out) {
    (void)op, (void)nin, (void)a;
    const ir_type *x = in[0], *w = in[1], *b = in[2];
    if (float_operands(api, x, w, &out->dtype) || (b && float_operands(api, x, b, &out->dtype)))
        return -1;
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return rt_error("%s: input %s and weight %s do not match (weight must be [out, %lld])", api,
                        SHAPE(x), SHAPE(w), x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return rt_error("%s: bias %s does not match weight %s (expected [%lld])", api, SHAPE(b),
                        SHAPE(w), (long long)w->shape[0]);
    out->dtype = rt_dtype_promote(x->dtype, w->dtype);
    if (b) out->dtype = rt_dtype_promote(out->dtype, b->dtype);
    out->ndim = x->ndim;
    memcpy(out->shape, x->shape, sizeof out->shape);
    out->shape[x->ndim - 1] = w->shape[0];
    return 0;
}

int ir_shape_embedding(ir_op op, const char *api, const ir_type *const *in, int nin,
                       ir_attrs *a, ir_type *out) {
    (void)op, (void)nin, (void)a;
    const ir_type *t = in[0], *idx = in[1];
    if (t->ndim != 2) return rt_error("%s: table must be 2-D, got %s", api, SHAPE(t));
    if (idx->dtype != EM_I32 && idx->dtype != EM_I64)
        return rt_error("%s: indices must be i32 or i64, got %s", api, em_dtype_name(idx->dtype));
    if (idx->ndim + 1 > EM_MAX_DIMS) return rt_error("%s: result has too many dims", api);
    *out = *idx;
    out->dtype = t->dtype;
    out->shape[out->ndim++] = t->shape[1];
    return 0;
}

int ir_shape_reshape(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                     ir_type *out) {
    (void)op, (void)nin;
    const ir_type *x = in[0];
    if (a->ndim < 0 || a->ndim > EM_MAX_DIMS)
        return rt_error("%s: ndim %d is out of range [0, %d]", api, a->ndim, EM_MAX_DIMS);
    int64_t n = 1, known = 1;
    for (int i = 0; i < x->ndim; i++) n *= x->shape[i];
    int infer = -1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->dims[i] == -1 && infer < 0) { infer = i; continue; }
        if (a->dims[i] < 0)
            return rt_error("%s: bad size %lld at dim %d (one -1 is allowed)", api,
                            (long long)a->dims[i], i);
        if (a->dims[i] && known > INT64_MAX / 16 / a->dims[i])
            return rt_error("%s: shape is too large (dim %d is %lld)", api, i, (long long)a->dims[i]);
        known *= a->dims[i];
    }
    char want[96];
    rt_shape_str(want, sizeof want, a->ndim, a->dims);
    if (infer >= 0) {
        if (known == 0 || n % known)
            return rt_error("%s: cannot reshape %s into %s", api, SHAPE(x), want);
        a->dims[infer] = n / known;
    } else if (known != n) {
        return rt_error("%s: cannot reshape %s (%lld elements) into %s", api, SHAPE(x),
                        (long long)n, want);
    }
    out->dtype = x->dtype;
    out->ndim = a->ndim;
    memcpy(out->shape, a->dims, sizeof out->shape);
    return 0;
}

int ir_shape_permute(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                     ir_type *out) {
    (void)op, (void)nin;
    const ir_type *x = in[0];
    bool seen[EM_MAX_DIMS] = {false};
    a->ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) {
        int64_t p = a->dims[i] < 0 ? a->dims[i] + x->ndim : a->dims[i];
        if (p < 0 || p >= x->ndim || seen[p])
            return rt_error("%s: entry %d (%lld) of the permutation of a %d-d tensor is %s", api, i,
                            (long long)a->dims[i], x->ndim, p >= 0 && p < x->ndim ? "repeated" : "out of range");
        seen[p] = true;
        a->dims[i] = p;
        out->shape[i] = x->shape[p];
    }
    out->dtype = x->dtype;
    out->ndim = x->ndim;
    return 0;
}

int ir_shape_slice(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                   ir_type *out) {
    (void)op, (void)nin;
    const ir_type *x = in[0];
    int ax = rt_axis(api, a->axis, x->ndim);
    if (ax < 0) return -1;
    if (a->step < 1) return rt_error("%s: step %lld must be >= 1", api, (long long)a->step);
    int64_t len = x->shape[ax];
    int64_t s = a->start < 0 ? a->start + len : a->start, e = a->end < 0 ? a->end + len : a->end;
    s = s < 0 ? 0 : s > len ? len : s;
    e = e < s ? s : e > len ? len : e;
    a->axis = ax, a->start = s, a->end = e;
    *out = *x;
    out->shape[ax] = e > s ? (e - s - 1) / a->step + 1 : 0; /* no overflow for huge steps */
    return 0;
}

int ir_shape_expand(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                    ir_type *out) {
    (void)op, (void)nin;
    const ir_type *x = in[0];
    if (a->ndim < x->ndim || a->ndim > EM_MAX_DIMS)
        return rt_error("%s: cannot expand %s to %d dims", api, SHAPE(x), a->ndim);
    int off = a->ndim - x->ndim;
    for (int i = 0; i < a->ndim; i++) {
        int64_t have = i >= off ? x->shape[i - off] : 1, want = a->dims[i];
        if (want == -1 && i >= off) want = a->dims[i] = have;
        if (want < 0 || (have != want && have != 1)) {
            char w[96];
            return rt_error("%s: cannot expand %s to %s", api, SHAPE(x),
                            rt_shape_str(w, sizeof w, a->ndim, a->dims));
        }
    }
    out->dtype = x->dtype;
    out->ndim = a->ndim;
    memcpy(out->shape, a->dims, sizeof out->shape);
    return 0;
}

int ir_shape_concat(ir_op op, const char *api, const ir_type *const *in, int nin, ir_attrs *a,
                    ir_type *out) {
    (void)op;
    if (nin < 1) return rt_error("%s: needs at least one tensor, got %d", api, nin);
    const ir_type *x = in[0];
    int ax = rt_axis(api, a->axis, x->ndim);
    if (ax < 0) return -1;
    a->axis = ax;
    *out = *x;
    for (int k = 1; k < nin; k++) {
        const ir_type *y = in[k];
        bool ok = y->ndim == x->ndim;
        for (int i = 0; ok && i < x->ndim; i++) ok = i == ax || y->shape[i] == x->shape[i];
        if (!ok)
            return rt_error("%s: tensor %d has shape %s, which does not match %s outside axis %d",
                            api, k, SHAPE(y), SHAPE(x), ax);
        out->shape[ax] += y->shape[ax];
        out->dtype = rt_dtype_promote(out->dtype, y->dtype);
    }
    return 0;
}
