/*
 * api.c — the public entry points that take more than tensors.
 *
 * Each packs its attributes (axis, shape, eps, ...) into ir_attrs and goes
 * through fe_dispatch like every other op; the plain unary and binary ops are
 * generated in dispatch.c instead. Several public names share one op: transpose
 * is a permute, squeeze and unsqueeze are reshapes. Reading data out (em_read,
 * em_item) lives here too, since while tracing those are where a graph breaks.
 */
#include "frontend.h"

#include <math.h>
#include <string.h>

/* call1 is a macro so that FE_SITE is the user's call site, not call1's. */
#define call1(op, api, t, ...) call1_at(op, api, t, __VA_ARGS__, FE_SITE)
static em_tensor *call1_at(ir_op op, const char *api, em_tensor *t, ir_attrs *a, uintptr_t site) {
    return fe_dispatch(op, api, &t, 1, a, site);
}

em_tensor *em_where(em_tensor *cond, em_tensor *a, em_tensor *b) {
    em_tensor *in[3] = {cond, a, b};
    return fe_dispatch(IR_OP_WHERE, "em_where", in, 3, &(ir_attrs){0}, FE_SITE);
}

em_tensor *em_cast(em_tensor *t, em_dtype dtype) {
    return call1(IR_OP_CAST, "em_cast", t, &(ir_attrs){.dtype = dtype});
}

#define REDUCE_API(name, E)                                                               \
    em_tensor *em_##name(em_tensor *t, int axis, int keepdim) {                           \
        return call1(IR_OP_##E, "em_" #name, t, &(ir_attrs){.axis = axis, .keepdim = keepdim}); \
    }
REDUCE_API(sum, SUM)
REDUCE_API(mean, MEAN)
REDUCE_API(max, MAX)
REDUCE_API(min, MIN)
REDUCE_API(argmax, ARGMAX)

em_tensor *em_softmax(em_tensor *t, int axis) {
    return call1(IR_OP_SOFTMAX, "em_softmax", t, &(ir_attrs){.axis = axis});
}

em_tensor *em_log_softmax(em_tensor *t, int axis) {
    return call1(IR_OP_LOG_SOFTMAX, "em_log_softmax", t, &(ir_attrs){.axis = axis});
}

em_tensor *em_layer_norm(em_tensor *x, em_tensor *w, em_tensor *b, double eps) {
    em_tensor *in[3] = {x, w, b};
    return fe_dispatch(IR_OP_LAYER_NORM, "em_layer_norm", in, 3, &(ir_attrs){.eps = eps}, FE_SITE);
}

em_tensor *em_rms_norm(em_tensor *x, em_tensor *w, double eps) {
    em_tensor *in[2] = {x, w};
    return fe_dispatch(IR_OP_RMS_NORM, "em_rms_norm", in, 2, &(ir_attrs){.eps = eps}, FE_SITE);
}

em_tensor *em_matmul(em_tensor *a, em_tensor *b) {
    em_tensor *in[2] = {a, b};
    return fe_dispatch(IR_OP_MATMUL, "em_matmul", in, 2, &(ir_attrs){0}, FE_SITE);
}

em_tensor *em_linear(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_tensor *in[3] = {x, w, b};
    return fe_dispatch(IR_OP_LINEAR, "em_linear", in, 3, &(ir_attrs){0}, FE_SITE);
}

em_tensor *em_embedding(em_tensor *table, em_tensor *idx) {
    em_tensor *in[2] = {table, idx};
    return fe_dispatch(IR_OP_EMBEDDING, "em_embedding", in, 2, &(ir_attrs){0}, FE_SITE);
}

/* ---- shape ---------------------------------------------------------------------------- */

/* Copies a caller's dims into attrs, rejecting a bad count or a NULL array. */
static bool dims_attr(const char *api, int ndim, const int64_t *dims, ir_attrs *a) {
    if (ndim < 0 || ndim > EM_MAX_DIMS) {
        rt_error("%s: ndim %d is out of range [0, %d]", api, ndim, EM_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !dims) {
        rt_error("%s: shape is NULL", api);
        return false;
    }
    a->ndim = ndim;
    if (ndim) memcpy(a->dims, dims, (size_t)ndim * sizeof *dims);
    return true;
}

em_tensor *em_reshape(em_tensor *t, int ndim, const int64_t *shape) {
    ir_attrs a = {0};
    if (!dims_attr("em_reshape", ndim, shape, &a)) return NULL;
    return call1(IR_OP_RESHAPE, "em_reshape", t, &a);
}

em_tensor *em_expand(em_tensor *t, int ndim, const int64_t *shape) {
    ir_attrs a = {0};
    if (!dims_attr("em_expand", ndim, shape, &a)) return NULL;
    return call1(IR_OP_EXPAND, "em_expand", t, &a);
}

em_tensor *em_permute(em_tensor *t, const int *perm) {
    ir_attrs a = {0};
    if (!t) return call1(IR_OP_PERMUTE, "em_permute", t, &a);
    if (!perm && t->ndim > 0) {
        rt_error("em_permute: perm is NULL");
        return NULL;
    }
    for (int i = 0; i < t->ndim; i++) a.dims[i] = perm[i];
    return call1(IR_OP_PERMUTE, "em_permute", t, &a);
}

em_tensor *em_transpose(em_tensor *t, int d0, int d1) {
    ir_attrs a = {0};
    if (!t) return call1(IR_OP_PERMUTE, "em_transpose", t, &a);
    int x = rt_axis("em_transpose", d0, t->ndim), y = x < 0 ? -1 : rt_axis("em_transpose", d1, t->ndim);
    if (y < 0) return NULL;
    for (int i = 0; i < t->ndim; i++) a.dims[i] = i == x ? y : i == y ? x : i;
    return call1(IR_OP_PERMUTE, "em_transpose", t, &a);
}

em_tensor *em_slice(em_tensor *t, int axis, int64_t start, int64_t end, int64_t step) {
    return call1(IR_OP_SLICE, "em_slice", t,
                 &(ir_attrs){.axis = axis, .start = start, .end = end, .step = step});
}

em_tensor *em_concat(em_tensor *const *ts, int n, int axis) {
    if (!ts && n > 0) {
        rt_error("em_concat: the tensor array is NULL");
        return NULL;
    }
    if (n < 1) {
        rt_error("em_concat: needs at least one tensor, got %d", n);
        return NULL;
    }
    return fe_dispatch(IR_OP_CONCAT, "em_concat", ts, n, &(ir_attrs){.axis = axis}, FE_SITE);
}

em_tensor *em_unsqueeze(em_tensor *t, int axis) {
    ir_attrs a = {0};
    if (!t) return call1(IR_OP_RESHAPE, "em_unsqueeze", t, &a);
    int ax = rt_axis("em_unsqueeze", axis, t->ndim + 1);
    if (ax < 0) return NULL;
    if (t->ndim + 1 > EM_MAX_DIMS) {
        rt_error("em_unsqueeze: a %d-d tensor cannot gain a dim (at most %d)", t->ndim, EM_MAX_DIMS);
        return NULL;
    }
    a.ndim = t->ndim + 1;
    for (int i = 0, j = 0; i < a.ndim; i++) a.dims[i] = i == ax ? 1 : t->shape[j++];
    return call1(IR_OP_RESHAPE, "em_unsqueeze", t, &a);
}

em_tensor *em_squeeze(em_tensor *t, int axis) {
    ir_attrs a = {0};
    if (!t) return call1(IR_OP_RESHAPE, "em_squeeze", t, &a);
    int ax = rt_axis("em_squeeze", axis, t->ndim);
    if (ax < 0) return NULL;
    if (t->shape[ax] != 1) {
        rt_error("em_squeeze: axis %d has size %lld, not 1", axis, (long long)t->shape[ax]);
        return NULL;
    }
    a.ndim = t->ndim - 1;
    for (int i = 0, j = 0; i < t->ndim; i++)
        if (i != ax) a.dims[j++] = t->shape[i];
    return call1(IR_OP_RESHAPE, "em_squeeze", t, &a);
}

em_tensor *em_contiguous(em_tensor *t) {
    return call1(IR_OP_CONTIGUOUS, "em_contiguous", t, &(ir_attrs){0});
}

/* ---- reading data out ------------------------------------------------------------------ */

int em_read(const em_tensor *t, void *dst, size_t nbytes) {
    if (!t) {
        fe_null_arg("em_read", "the tensor");
        return -1;
    }
    if (fe_is_proxy(t)) return fe_trace_break("em_read", t, FE_SITE);
    size_t need = (size_t)t->numel * rt_dtype_size(t->dtype);
    if (!dst && need) return rt_error("em_read: dst is NULL");
    if (nbytes < need)
        return rt_error("em_read: buffer of %zu bytes is too small for %lld %s elements (%zu bytes)",
                        nbytes, (long long)t->numel, em_dtype_name(t->dtype), need);
    if (need) rt_tensor_copy_to(t, dst);
    return 0;
}

double em_item(const em_tensor *t) {
    if (!t) {
        fe_null_arg("em_item", "the tensor");
        return NAN;
    }
    if (fe_is_proxy(t)) {
        fe_trace_break("em_item", t, FE_SITE);
        return NAN;
    }
    if (t->numel != 1) {
        char s[96];
        rt_error("em_item: tensor of shape %s has %lld elements, not 1",
                 rt_shape_str(s, sizeof s, t->ndim, t->shape), (long long)t->numel);
        return NAN;
    }
    return rt_value_load(t->dtype, rt_tensor_data(t));
}
