/*
 * nn.c — softmax, log_softmax, layer_norm and rms_norm.
 *
 * Each op normalises lines of its input along one axis (the last one for the
 * norms). A line is addressed through the input's own strides, so views are
 * read in place: the non-axis dims are merged where dense and an output line
 * index maps to an input offset. The output is contiguous, so a line of the
 * last axis is one contiguous output row.
 *
 * f32 rows go to the SIMD row kernels (norm_simd.c). A row whose elements are
 * not adjacent in the input is first gathered into its output row, and the
 * kernel then runs in place there (the kernels allow x == y), so no temporary
 * is needed and the row is hot in L1 when the kernel starts; a transposed
 * input is copied dense into the output whole first (dense_first), since
 * gathering its rows one by one reads each of its lines once a row. softmax along any
 * other axis works on tiles of columns with the SIMD table's column and
 * elementwise kernels: max down the columns, then exp(x - max) and the column
 * sums, then the scale. f64 lines use plain strided C loops.
 *
 * Lines are independent, so work is split by lines across the pool and results
 * do not depend on the thread count. NaN anywhere in a softmax line makes the
 * whole line NaN, as does a line of -inf or with +inf (torch's behaviour);
 * layer_norm uses the biased variance, computed from the mean in a second
 * pass for stability.
 */
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CTILE 256   /* columns per tile of the column softmax */
#define GRAIN 16384 /* elements per parallel piece, roughly */

typedef enum nn_kind { NN_SOFTMAX, NN_LOG_SOFTMAX, NN_LAYER_NORM, NN_RMS_NORM } nn_kind;

typedef struct nn_plan {
    nn_kind kind;
    em_dtype dt;
    const char *base;             /* first input element */
    int k;                        /* merged non-axis dims */
    int64_t shape[EM_MAX_DIMS];   /* their sizes */
    int64_t stride[EM_MAX_DIMS];  /* their input strides */
    int64_t nlines;               /* lines along the axis */
    int64_t L, sL;                /* line length and input stride */
    int64_t inner;                /* output stride along the axis */
    char *out;
    const void *w, *b;            /* norms: contiguous weight and bias, or NULL */
    double eps;
    int64_t nt, tw;               /* column softmax: tiles per line block, width */
    const rt_simd *simd;
} nn_plan;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void plan_build(nn_plan *p, nn_kind kind, const em_tensor *x, int axis, em_tensor *out) {
    memset(p, 0, sizeof *p);
    p->kind = kind, p->dt = x->dtype;
    p->L = 1, p->sL = 1, p->inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d == axis) {
            p->L = x->shape[d], p->sL = x->shape[d] == 1 ? 1 : x->strides[d];
            continue;
        }
        if (d > axis) p->inner *= x->shape[d];
        if (x->shape[d] == 1) continue;
        if (p->k > 0 && p->stride[p->k - 1] == x->strides[d] * x->shape[d]) {
            p->shape[p->k - 1] *= x->shape[d];
            p->stride[p->k - 1] = x->strides[d];
            continue;
        }
        p->shape[p->k] = x->shape[d], p->stride[p->k] = x->strides[d];
        p->k++;
    }
    p->nlines = p->L ? x->numel / p->L : 0;
    p->base = x->numel ? rt_tensor_data(x) : NULL;
    p->out = x->numel ? rt_tensor_data(out) : NULL;
    p->simd = rt_simd_get();
}

/* Input offset (elements) of line q. */
static int64_t line_offset(const nn_plan *p, int64_t q) {
    int64_t off = 0;
    for (int d = p->k - 1; d >= 0; d--) {
        off += (q % p->shape[d]) * p->stride[d];
        q /= p->shape[d];
    }
    return off;
}

static int64_t grain_for(int64_t per_unit) {
    return per_unit >= GRAIN ? 1 : GRAIN / (per_unit ? per_unit : 1);
}

/* ---- f32 rows -------------------------------------------------------------------- */

/* Rows begin..end, walked with an index counter (no division per row). */
static void f32_rows(void *ctx, int64_t begin, int64_t end) {
    const nn_plan *p = ctx;
    const rt_simd *t = p->simd;
    int64_t n = p->L, idx[EM_MAX_DIMS], off = 0, rem = begin;
    for (int d = p->k - 1; d >= 0; d--) {
        idx[d] = rem % p->shape[d], rem /= p->shape[d];
        off += idx[d] * p->stride[d];
    }
    for (int64_t q = begin; q < end; q++) {
        const float *x = (const float *)p->base + off;
        float *y = (float *)p->out + q * n;
        if (p->sL != 1) {
            for (int64_t i = 0; i < n; i++) y[i] = x[i * p->sL];
            x = y;
        }
        switch (p->kind) {
        case NN_SOFTMAX: t->softmax_row(n, x, y); break;
        case NN_LOG_SOFTMAX: t->log_softmax_row(n, x, y); break;
        case NN_LAYER_NORM: t->layer_norm_row(n, x, p->w, p->b, (float)p->eps, y); break;
        case NN_RMS_NORM: t->rms_norm_row(n, x, p->w, (float)p->eps, y); break;
        }
        for (int d = p->k - 1; d >= 0; d--) {
            off += p->stride[d];
            if (++idx[d] < p->shape[d]) break;
            off -= idx[d] * p->stride[d], idx[d] = 0;
        }
    }
}

/* ---- f32 softmax down columns (axis not last; input contiguous) -------------------- */

static void f32_cols(void *ctx, int64_t begin, int64_t end) {
    const nn_plan *p = ctx;
    const rt_simd *t = p->simd;
    int64_t L = p->L, in = p->inner;
    float m[CTILE], s[CTILE], e[CTILE];
    for (int64_t u = begin; u < end; u++) {
        int64_t o = u / p->nt, j0 = u % p->nt * p->tw, w = min64(p->tw, in - j0);
        const float *x = (const float *)p->base + o * L * in + j0;
        float *y = (float *)p->out + o * L * in + j0;
        memcpy(m, x, (size_t)w * sizeof(float));
        for (int64_t l = 1; l < L; l++) t->max_col(w, x + l * in, m);
        memset(s, 0, (size_t)w * sizeof(float));
        for (int64_t l = 0; l < L; l++) {
            float *yl = y + l * in;
            t->binary[RT_BINARY_SUB](w, x + l * in, 1, m, 1, yl);
            float *ex = p->kind == NN_SOFTMAX ? yl : e;
            t->unary[RT_UNARY_EXP](w, yl, ex);
            t->sum_col(w, ex, s);
        }
        bool sm = p->kind == NN_SOFTMAX;
        t->unary[sm ? RT_UNARY_RECIPROCAL : RT_UNARY_LOG](w, s, s);
        for (int64_t l = 0; l < L; l++)
            t->binary[sm ? RT_BINARY_MUL : RT_BINARY_SUB](w, y + l * in, 1, s, 1, y + l * in);
    }
}

/* ---- f64 lines --------------------------------------------------------------------- */

static void f64_softmax(int64_t n, const double *x, int64_t sx, double *y, int64_t sy, bool lg) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) m = x[i * sx] > m ? x[i * sx] : m; /* NaN: via s */
    for (int64_t i = 0; i < n; i++) {
        double ev = exp(x[i * sx] - m);
        s += ev;
        if (!lg) y[i * sy] = ev;
    }
    if (lg) {
        double c = log(s);
        for (int64_t i = 0; i < n; i++) y[i * sy] = (x[i * sx] - m) - c;
    } else {
        double r = 1.0 / s;
        for (int64_t i = 0; i < n; i++) y[i * sy] *= r;
    }
}

static void f64_norm(const nn_plan *p, int64_t n, const double *x, int64_t sx, double *y) {
    const double *w = p->w, *b = p->b;
    double mean = 0, v = 0;
    if (p->kind == NN_LAYER_NORM) {
        for (int64_t i = 0; i < n; i++) mean += x[i * sx];
        mean /= (double)n;
    }
    for (int64_t i = 0; i < n; i++) v += (x[i * sx] - mean) * (x[i * sx] - mean);
    double r = 1.0 / sqrt(v / (double)n + p->eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i * sx] - mean) * r * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
}

static void f64_lines(void *ctx, int64_t begin, int64_t end) {
    const nn_plan *p = ctx;
    for (int64_t q = begin; q < end; q++) {
        const double *x = (const double *)p->base + line_offset(p, q);
        double *y = (double *)p->out + q / p->inner * p->L * p->inner + q % p->inner;
        if (p->kind == NN_SOFTMAX || p->kind == NN_LOG_SOFTMAX)
            f64_softmax(p->L, x, p->sL, y, p->inner, p->kind == NN_LOG_SOFTMAX);
        else
            f64_norm(p, p->L, x, p->sL, y);
    }
}

/* ---- entry points -------------------------------------------------------------------- */

/* A transposed f32 input along the last axis (its rows strided, their
 * neighbours adjacent) is copied dense into out first, by the runtime's
 * blocked transpose, and its rows then run in place there. Gathered row by
 * row, each row read one element from each of L lines: a softmax of
 * [1024, 1024]^T took 4.7 ms on one thread of a Zen 5 EPYC, copied first 0.5.
 * -1 with an error when the copy fails. */
static int dense_first(nn_plan *p, const em_tensor *x, int axis, em_tensor *out) {
    if (p->dt != EM_F32 || p->sL == 1 || p->inner != 1 || p->k == 0 || p->stride[p->k - 1] != 1) return 0;
    if (rt_tensor_copy_into(out, x) < 0) return -1;
    plan_build(p, p->kind, out, axis, out); /* the same axis: size-1 dims may follow it */
    return 0;
}

static int check_float(const char *op, const em_tensor *x, const em_tensor *out) {
    if (!rt_dtype_is_float(x->dtype))
        return rt_error("%s: dtype %s is not a float dtype", op, em_dtype_name(x->dtype));
    EM_ASSERT(out->dtype == x->dtype && out->numel == x->numel &&
              (out->numel == 0 || rt_tensor_is_contiguous(out)));
    return 0;
}

static void run_lines(nn_plan *p) {
    rt_parallel_for(p->nlines, grain_for(p->L * (p->dt == EM_F64 ? 4 : 1)),
                    p->dt == EM_F32 ? f32_rows : f64_lines, p);
}

int rt_softmax_apply(const em_tensor *x, int axis, bool log, em_tensor *out) {
    if (check_float(log ? "em_log_softmax" : "em_softmax", x, out) < 0) return -1;
    nn_plan p;
    plan_build(&p, log ? NN_LOG_SOFTMAX : NN_SOFTMAX, x, x->ndim ? axis : -1, out);
    if (p.nlines == 0 || p.L == 0) return 0;
    if (p.dt == EM_F64 || p.inner == 1) {
        if (dense_first(&p, x, x->ndim ? axis : -1, out) < 0) return -1;
        run_lines(&p);
        return 0;
    }
    /* f32 down columns: read a contiguous input, or a dense copy of it in out. */
    if (!rt_tensor_is_contiguous(x)) {
        if (rt_tensor_copy_into(out, x) < 0) return -1;
        p.base = p.out;
    }
    p.nt = (p.inner + CTILE - 1) / CTILE;
    p.tw = ((p.inner + p.nt - 1) / p.nt + 15) / 16 * 16;
    p.nt = (p.inner + p.tw - 1) / p.tw;
    int64_t units = p.nlines / p.inner * p.nt;
    rt_parallel_for(units, grain_for(p.L * p.tw * 4), f32_cols, &p);
    return 0;
}

/* Points *data at the 1-D parameter t (NULL if t is), through a contiguous copy
 * in *own when t is strided. 0, or -1 with an error. */
static int param(const char *op, const em_tensor *t, const em_tensor *x, const void **data,
                 void **own, size_t *own_bytes) {
    *data = NULL, *own = NULL, *own_bytes = 0;
    if (!t) return 0;
    if (t->dtype != x->dtype || t->ndim != 1 || t->shape[0] != x->shape[x->ndim - 1])
        return rt_error("%s: weight and bias must be 1-D of the last dim and of x's dtype", op);
    if (t->numel == 0) return 0;
    if (rt_tensor_is_contiguous(t)) {
        *data = rt_tensor_data(t);
        return 0;
    }
    *own_bytes = (size_t)t->numel * rt_dtype_size(t->dtype);
    *own = rt_alloc(*own_bytes);
    if (!*own) return rt_error("%s: out of memory allocating %zu bytes", op, *own_bytes);
    rt_tensor_copy_to(t, *own);
    *data = *own;
    return 0;
}

static int norm_apply(const char *op, nn_kind kind, const em_tensor *x, const em_tensor *w,
                      const em_tensor *b, double eps, em_tensor *out) {
    if (check_float(op, x, out) < 0) return -1;
    if (x->ndim == 0) return rt_error("%s: input must have at least one dim", op);
    nn_plan p;
    plan_build(&p, kind, x, x->ndim - 1, out);
    if (dense_first(&p, x, x->ndim - 1, out) < 0) return -1;
    p.eps = eps;
    void *wown = NULL, *bown = NULL;
    size_t wbytes = 0, bbytes = 0;
    int rc = param(op, w, x, &p.w, &wown, &wbytes);
    if (rc == 0) rc = param(op, b, x, &p.b, &bown, &bbytes);
    if (rc == 0 && p.nlines && p.L) run_lines(&p);
    rt_free(wown, wbytes);
    rt_free(bown, bbytes);
    return rc;
}

int rt_layer_norm_apply(const em_tensor *x, const em_tensor *w, const em_tensor *b,
                        double eps, em_tensor *out) {
    return norm_apply("em_layer_norm", NN_LAYER_NORM, x, w, b, eps, out);
}

int rt_rms_norm_apply(const em_tensor *x, const em_tensor *w, double eps, em_tensor *out) {
    return norm_apply("em_rms_norm", NN_RMS_NORM, x, w, NULL, eps, out);
}
