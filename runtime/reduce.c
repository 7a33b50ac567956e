/*
 * reduce.c — sum, mean, max, min and argmax along one axis.
 *
 * A reduction is planned once: the output dims (the input's dims without the
 * axis, merged where they are dense in the input, size-1 dims dropped) give
 * each output element its position in the input, and the axis gives a length R
 * and a stride. Nothing is copied; three shapes of work cover every view:
 *
 *  - rows (f32, the axis has stride 1): each output reduces one contiguous
 *    run with the SIMD table's *_row kernels;
 *  - columns (f32, the innermost output dim has stride 1, as in sum(0) of a
 *    matrix or sum(-1) of a transposed one): a tile of up to TILE outputs is
 *    accumulated row after row with the *_col kernels, acc[j] op= x[j], so
 *    the loads stay contiguous;
 *  - generic (f64, integers, bool, and f32 views that fit neither): plain
 *    strided C loops, accumulating floats in double.
 *
 * Work is cut into units whose boundaries depend on the shape alone: a long
 * reduced line is split into blocks (RBLK elements for rows, a few hundred
 * rows for columns) whose partial results are combined afterwards, serially
 * and in block order. Threads only decide who computes a unit, never what it
 * computes, so results are bit-identical for any thread count. Splitting also
 * keeps f32 sums accurate: the row kernel sums pairwise inside a block, column
 * sums are two-level (CBLK rows at a time), and blocks are combined in double.
 *
 * Semantics (torch's): SUM of integers and bool wraps into i64; MAX and MIN
 * propagate NaN; ARGMAX is the first maximum, a NaN counting as the maximum.
 */
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RBLK 65536 /* elements of a row block */
#define TILE 1024  /* outputs of one column unit: acc tiles stay in L1 */
#define CBLK 128   /* rows per inner block of a two-level column sum */
#define GRAIN 65536 /* elements of work per parallel piece, roughly */

typedef struct part { /* the result of reducing one block */
    double f;         /* value, float dtypes (exact for f32) */
    int64_t i;        /* value, integer dtypes and bool */
    int64_t at;       /* argmax: index along the axis */
} part;

typedef struct plan {
    rt_reduce r;
    em_dtype dt;                  /* input dtype */
    bool isf;                     /* dt is a float dtype */
    const char *base;             /* first input element */
    int k;                        /* merged output dims */
    int64_t shape[EM_MAX_DIMS];   /* their sizes */
    int64_t stride[EM_MAX_DIMS];  /* their input strides, elements */
    int64_t nout;                 /* output elements */
    int64_t R, sR;                /* reduced length and stride */
    int64_t nb, blk;              /* blocks per reduced line, and their length */
    int64_t inner, nt, tw;        /* column mode: inner length, tiles, tile width */
    char *out;
    em_dtype odt;                 /* output dtype */
    part *parts;                  /* row/generic partials [nout * nb] when nb > 1 */
    float *cval;                  /* column partials [units * tw] when nb > 1 */
    int64_t *cat;                 /* their argmax indices */
    const rt_simd *simd;
} plan;

/* Errors name the public function a reduction serves. */
static const char *reduce_name(rt_reduce r) {
    static const char *names[] = {"em_sum", "em_mean", "em_max", "em_min", "em_argmax"};
    return names[r];
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Input offset of output o over the first kd merged output dims. */
static int64_t out_offset(const plan *p, int64_t o, int kd) {
    int64_t off = 0;
    for (int d = kd - 1; d >= 0; d--) {
        off += (o % p->shape[d]) * p->stride[d];
        o /= p->shape[d];
    }
    return off;
}

static void plan_build(plan *p, rt_reduce r, const em_tensor *a, int axis, em_tensor *out) {
    memset(p, 0, sizeof *p);
    p->r = r, p->dt = a->dtype, p->isf = rt_dtype_is_float(a->dtype);
    p->R = 1, p->sR = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (d == axis) {
            p->R = a->shape[d], p->sR = a->shape[d] == 1 ? 1 : a->strides[d];
            continue;
        }
        if (a->shape[d] == 1) continue;
        if (p->k > 0 && p->stride[p->k - 1] == a->strides[d] * a->shape[d]) {
            p->shape[p->k - 1] *= a->shape[d];
            p->stride[p->k - 1] = a->strides[d];
            continue;
        }
        p->shape[p->k] = a->shape[d], p->stride[p->k] = a->strides[d];
        p->k++;
    }
    p->nout = out->numel;
    p->out = out->numel ? rt_tensor_data(out) : NULL;
    p->odt = out->dtype;
    p->base = a->numel ? rt_tensor_data(a) : NULL;
    p->nb = 1, p->blk = p->R;
    p->simd = rt_simd_get();
}

/* ---- partial results: store and combine ------------------------------------------ */

static void part_store(const plan *p, const part *q, int64_t o) {
    if (p->r == RT_REDUCE_ARGMAX) {
        ((int64_t *)p->out)[o] = q->at;
        return;
    }
    double f = p->r == RT_REDUCE_MEAN ? q->f / (double)p->R : q->f;
    switch (p->odt) {
    case EM_F32: ((float *)p->out)[o] = (float)f; break;
    case EM_F64: ((double *)p->out)[o] = f; break;
    case EM_I32: ((int32_t *)p->out)[o] = (int32_t)q->i; break;
    case EM_I64: ((int64_t *)p->out)[o] = q->i; break;
    case EM_BOOL: ((uint8_t *)p->out)[o] = q->i != 0; break;
    }
}

/* Is v a better maximum (sign 1) or minimum (sign -1) than m, the first kept? */
static bool better_f(double v, double m, int sign) {
    return m == m && (v != v || (sign > 0 ? v > m : v < m));
}

static void part_merge(const plan *p, part *acc, const part *q) {
    int sign = p->r == RT_REDUCE_MIN ? -1 : 1;
    switch (p->r) {
    case RT_REDUCE_SUM:
    case RT_REDUCE_MEAN:
        acc->f += q->f;
        acc->i = (int64_t)((uint64_t)acc->i + (uint64_t)q->i);
        break;
    default:
        if (p->isf ? better_f(q->f, acc->f, sign) : sign > 0 ? q->i > acc->i : q->i < acc->i)
            *acc = *q;
    }
}

static void parts_finish(const plan *p) {
    for (int64_t o = 0; o < p->nout; o++) {
        part acc = p->parts[o * p->nb];
        for (int64_t b = 1; b < p->nb; b++) part_merge(p, &acc, &p->parts[o * p->nb + b]);
        part_store(p, &acc, o);
    }
}

/* ---- rows: the generic strided loops, per dtype ------------------------------------ */

#define GEN_ROW(NAME, T, ISF)                                                             \
    static void NAME(rt_reduce r, const char *px, int64_t n, int64_t s, part *q) {        \
        const T *x = (const T *)px;                                                       \
        if (r == RT_REDUCE_SUM || r == RT_REDUCE_MEAN) {                                  \
            double f = 0;                                                                 \
            uint64_t u = 0;                                                               \
            for (int64_t j = 0; j < n; j++) {                                             \
                if (ISF) f += (double)x[j * s];                                           \
                else u += (uint64_t)(int64_t)x[j * s];                                    \
            }                                                                             \
            q->f = f, q->i = (int64_t)u;                                                  \
            return;                                                                       \
        }                                                                                 \
        T m = x[0];                                                                       \
        int64_t at = 0;                                                                   \
        if (r == RT_REDUCE_MIN) {                                                         \
            for (int64_t j = 1; j < n && m == m; j++)                                     \
                if (x[j * s] < m || x[j * s] != x[j * s]) m = x[j * s], at = j;           \
        } else {                                                                          \
            for (int64_t j = 1; j < n && m == m; j++)                                     \
                if (x[j * s] > m || x[j * s] != x[j * s]) m = x[j * s], at = j;           \
        }                                                                                 \
        if (ISF) q->f = (double)m;                                                        \
        else q->i = (int64_t)m;                                                           \
        q->at += at;                                                                      \
    }
GEN_ROW(gen_f32, float, 1)
GEN_ROW(gen_f64, double, 1)
GEN_ROW(gen_i32, int32_t, 0)
GEN_ROW(gen_i64, int64_t, 0)
GEN_ROW(gen_bool, uint8_t, 0)

/* First index of m in x[0, n) (of a NaN when m is NaN); n when absent. Runs of
 * 16 are compared four lanes at a time (GNU vector extensions: SSE2 on any
 * x86-64) before the exact position is looked up one by one. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static int64_t find_first(int64_t n, const float *x, float m) {
    int64_t i = 0;
    if (m != m) {
        for (; i < n; i++)
            if (x[i] != x[i]) return i;
        return n;
    }
    v4f mv = {m, m, m, m};
    for (; i + 16 <= n; i += 16) {
        v4f a, b, c, d;
        memcpy(&a, x + i, 16), memcpy(&b, x + i + 4, 16);
        memcpy(&c, x + i + 8, 16), memcpy(&d, x + i + 12, 16);
        v4i h = (a == mv) | (b == mv) | (c == mv) | (d == mv);
        if (h[0] | h[1] | h[2] | h[3]) break;
    }
    for (; i < n; i++)
        if (x[i] == m) return i;
    return n;
}

/* One unit of row work: block b of output o, whose line starts at input offset
 * off. f32 with stride 1 uses the SIMD kernels; everything else the generic loops. */
static void row_unit(const plan *p, int64_t o, int64_t b, int64_t off) {
    int64_t u = o * p->nb + b, r0 = b * p->blk, n = min64(p->blk, p->R - r0);
    size_t esz = rt_dtype_size(p->dt);
    const char *x = p->base + (off + r0 * p->sR) * (int64_t)esz;
    part q = {0, 0, r0};
    if (p->dt == EM_F32 && p->sR == 1) {
        const rt_simd *t = p->simd;
        const float *xf = (const float *)x;
        switch (p->r) {
        case RT_REDUCE_SUM:
        case RT_REDUCE_MEAN: q.f = t->sum_row(n, xf); break;
        case RT_REDUCE_MAX: q.f = t->max_row(n, xf); break;
        case RT_REDUCE_MIN: q.f = t->min_row(n, xf); break;
        case RT_REDUCE_ARGMAX:
            q.f = t->max_row(n, xf);
            q.at += find_first(n, xf, (float)q.f);
            break;
        }
    } else {
        switch (p->dt) {
        case EM_F32: gen_f32(p->r, x, n, p->sR, &q); break;
        case EM_F64: gen_f64(p->r, x, n, p->sR, &q); break;
        case EM_I32: gen_i32(p->r, x, n, p->sR, &q); break;
        case EM_I64: gen_i64(p->r, x, n, p->sR, &q); break;
        case EM_BOOL: gen_bool(p->r, x, n, p->sR, &q); break;
        }
    }
    if (p->nb == 1) part_store(p, &q, o);
    else p->parts[u] = q;
}

/* Units of one block per output are walked with an index counter, so that short
 * rows cost no divisions; block units are long enough not to care. */
static void rows_range(void *ctx, int64_t begin, int64_t end) {
    const plan *p = ctx;
    if (p->nb > 1) {
        for (int64_t u = begin; u < end; u++)
            row_unit(p, u / p->nb, u % p->nb, out_offset(p, u / p->nb, p->k));
        return;
    }
    int64_t idx[EM_MAX_DIMS], off = 0, rem = begin;
    for (int d = p->k - 1; d >= 0; d--) {
        idx[d] = rem % p->shape[d], rem /= p->shape[d];
        off += idx[d] * p->stride[d];
    }
    for (int64_t o = begin; o < end; o++) {
        row_unit(p, o, 0, off);
        for (int d = p->k - 1; d >= 0; d--) {
            off += p->stride[d];
            if (++idx[d] < p->shape[d]) break;
            off -= idx[d] * p->stride[d], idx[d] = 0;
        }
    }
}

static int run_rows(plan *p) {
    if (p->R > RBLK) {
        p->blk = RBLK, p->nb = cdiv(p->R, RBLK);
        p->parts = rt_malloc((size_t)(p->nout * p->nb) * sizeof *p->parts, reduce_name(p->r));
        if (!p->parts) return -1;
    }
    int64_t grain = p->nb > 1 ? 1 : (GRAIN + p->R - 1) / (p->R ? p->R : 1);
    rt_parallel_for(p->nout * p->nb, grain, rows_range, p);
    if (p->nb > 1) parts_finish(p);
    free(p->parts);
    return 0;
}

/* ---- columns: f32 with a stride-1 innermost output dim -------------------------- */

/* Rows [r0, r1) of a tile of w columns starting at x: sum into tot (two-level). */
static void col_sum(const plan *p, const float *x, int64_t r0, int64_t r1, int64_t w, float *tot) {
    float acc[TILE];
    for (int64_t c0 = r0; c0 < r1; c0 += CBLK) {
        int64_t c1 = min64(r1, c0 + CBLK);
        float *dst = c0 == r0 ? tot : acc;
        memcpy(dst, x + c0 * p->sR, (size_t)w * sizeof(float));
        for (int64_t r = c0 + 1; r < c1; r++) p->simd->sum_col(w, x + r * p->sR, dst);
        if (dst == acc) p->simd->sum_col(w, acc, tot);
    }
}

static void col_extreme(const plan *p, const float *x, int64_t r0, int64_t r1, int64_t w,
                        float *m) {
    void (*f)(int64_t, const float *, float *) =
        p->r == RT_REDUCE_MIN ? p->simd->min_col : p->simd->max_col;
    memcpy(m, x + r0 * p->sR, (size_t)w * sizeof(float));
    for (int64_t r = r0 + 1; r < r1; r++) f(w, x + r * p->sR, m);
}

static void col_argmax(const plan *p, const float *x, int64_t r0, int64_t r1, int64_t w,
                       float *best, int64_t *at) {
    memcpy(best, x + r0 * p->sR, (size_t)w * sizeof(float));
    for (int64_t j = 0; j < w; j++) at[j] = r0;
    for (int64_t r = r0 + 1; r < r1; r++) {
        const float *row = x + r * p->sR;
        for (int64_t j = 0; j < w; j++) {
            float v = row[j], m = best[j];
            if (v > m || (v != v && m == m)) best[j] = v, at[j] = r;
        }
    }
}

/* Unit u: block b of rows, tile t of columns, outer index o. */
static void col_unit(const plan *p, int64_t u) {
    int64_t b = u % p->nb, t = (u / p->nb) % p->nt, o = u / (p->nb * p->nt);
    int64_t j0 = t * p->tw, w = min64(p->tw, p->inner - j0);
    int64_t r0 = b * p->blk, r1 = min64(p->R, r0 + p->blk);
    const float *x = (const float *)p->base + out_offset(p, o, p->k - 1) + j0;
    int64_t dst = o * p->inner + j0; /* first output of the tile */
    float val[TILE];
    int64_t at[TILE];
    float *v = p->nb > 1 ? p->cval + u * p->tw : val;
    int64_t *a = p->nb > 1 ? p->cat + u * p->tw : at;
    switch (p->r) {
    case RT_REDUCE_SUM:
    case RT_REDUCE_MEAN: col_sum(p, x, r0, r1, w, v); break;
    case RT_REDUCE_MAX:
    case RT_REDUCE_MIN: col_extreme(p, x, r0, r1, w, v); break;
    case RT_REDUCE_ARGMAX: col_argmax(p, x, r0, r1, w, v, a); break;
    }
    if (p->nb > 1) return;
    for (int64_t j = 0; j < w; j++) {
        part q = {v[j], 0, p->r == RT_REDUCE_ARGMAX ? a[j] : 0};
        part_store(p, &q, dst + j);
    }
}

static void cols_range(void *ctx, int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; u++) col_unit(ctx, u);
}

/* Combines the nb row blocks of every column, in block order: sums in double,
 * max/min with the NaN-propagating column kernels, argmax through part_merge. */
static void cols_finish(const plan *p) {
    for (int64_t ot = 0; ot < p->nout / p->inner * p->nt; ot++) {
        int64_t o = ot / p->nt, j0 = ot % p->nt * p->tw, w = min64(p->tw, p->inner - j0);
        const float *v = p->cval + ot * p->nb * p->tw;
        int64_t dst = o * p->inner + j0;
        if (p->r == RT_REDUCE_SUM || p->r == RT_REDUCE_MEAN) {
            double acc[TILE] = {0};
            for (int64_t b = 0; b < p->nb; b++)
                for (int64_t j = 0; j < w; j++) acc[j] += v[b * p->tw + j];
            double div = p->r == RT_REDUCE_MEAN ? (double)p->R : 1.0; /* as part_store */
            for (int64_t j = 0; j < w; j++) ((float *)p->out)[dst + j] = (float)(acc[j] / div);
        } else if (p->r != RT_REDUCE_ARGMAX) {
            float *m = (float *)p->out + dst;
            memcpy(m, v, (size_t)w * sizeof(float));
            for (int64_t b = 1; b < p->nb; b++)
                (p->r == RT_REDUCE_MAX ? p->simd->max_col : p->simd->min_col)(w, v + b * p->tw, m);
        } else {
            const int64_t *a = p->cat + ot * p->nb * p->tw;
            for (int64_t j = 0; j < w; j++) {
                part acc = {v[j], 0, a[j]};
                for (int64_t b = 1; b < p->nb; b++) {
                    part q = {v[b * p->tw + j], 0, a[b * p->tw + j]};
                    part_merge(p, &acc, &q);
                }
                part_store(p, &acc, dst + j);
            }
        }
    }
}

/* Splits rows into blocks only when there are too few tiles to share out; the
 * choice depends on the shape alone. */
static int run_cols(plan *p) {
    p->inner = p->shape[p->k - 1];
    p->nt = cdiv(p->inner, TILE);
    p->tw = (cdiv(p->inner, p->nt) + 15) / 16 * 16;
    p->nt = cdiv(p->inner, p->tw);
    int64_t tiles = p->nout / p->inner * p->nt;
    if (tiles < 8) {
        int64_t nb = min64(cdiv(32, tiles), cdiv(p->R * p->tw, 1 << 15));
        p->blk = cdiv(p->R, nb > 1 ? nb : 1);
        p->nb = cdiv(p->R, p->blk);
    }
    if (p->nb > 1) {
        size_t n = (size_t)(tiles * p->nb * p->tw);
        p->cval = rt_malloc(n * sizeof *p->cval, reduce_name(p->r));
        if (p->cval && p->r == RT_REDUCE_ARGMAX)
            p->cat = rt_malloc(n * sizeof *p->cat, reduce_name(p->r));
        if (!p->cval || (p->r == RT_REDUCE_ARGMAX && !p->cat)) {
            free(p->cval);
            return -1;
        }
    }
    int64_t work = p->blk * min64(p->tw, p->inner);
    rt_parallel_for(tiles * p->nb, work >= GRAIN ? 1 : GRAIN / work, cols_range, p);
    if (p->nb > 1) cols_finish(p);
    free(p->cval);
    free(p->cat);
    return 0;
}

/* ---- entry ----------------------------------------------------------------------- */

int rt_reduce_apply(rt_reduce r, const em_tensor *a, int axis, em_tensor *out) {
    EM_ASSERT(out->numel == 0 || rt_tensor_is_contiguous(out));
    if (r == RT_REDUCE_MEAN && !rt_dtype_is_float(a->dtype))
        return rt_error("em_mean: dtype %s is not a float dtype", em_dtype_name(a->dtype));
    plan p;
    plan_build(&p, r, a, axis, out);
    if (p.nout == 0) return 0;
    if (p.R == 0) {
        if (r == RT_REDUCE_SUM || r == RT_REDUCE_MEAN) {
            rt_fill(out, r == RT_REDUCE_SUM ? 0.0 : NAN);
            return 0;
        }
        return rt_error("%s: cannot reduce an axis of length 0", reduce_name(r));
    }
    if (p.dt == EM_F32 && p.sR != 1 && p.k > 0 && p.stride[p.k - 1] == 1)
        return run_cols(&p);
    return run_rows(&p);
}
