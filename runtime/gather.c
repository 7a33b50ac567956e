/*
 * gather.c — embedding lookups and concatenation: ops that only move bytes.
 *
 * An embedding copies whole rows of a [rows, D] table, chosen by an index
 * tensor, into a contiguous [idx..., D] output; a concat writes each input into
 * its slab of the output. Both are memory-bound, so the fast path is one memcpy
 * per contiguous run (a table row; an input's outer slice of len_i * inner
 * elements), split across the thread pool in pieces sized by bytes. Inputs
 * that are views with other strides still work: an index tensor is made dense
 * once (it is small), a table with strided rows is gathered element by
 * element, and a strided concat input goes through rt_tensor_copy_into into a
 * view of its slab.
 *
 * Invariants: indices are validated by rt_embedding_check before
 * rt_embedding_apply runs (apply asserts it as a bug check, it never reads out
 * of bounds); out is contiguous and aliases no input; results do not depend on
 * the thread count, since every output byte is written exactly once.
 */
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#define PIECE_BYTES (64 * 1024) /* bytes per parallel piece of a copy */

static inline int64_t idx_load(em_dtype dt, const char *p) {
    return dt == EM_I32 ? *(const int32_t *)p : *(const int64_t *)p;
}

/* Copies n elements of esz bytes with source stride s (elements) to dense dst. */
static void gather_run(char *dst, const char *src, int64_t s, int64_t n, size_t esz) {
    if (s == 1 || n == 1) {
        memcpy(dst, src, (size_t)n * esz);
        return;
    }
    switch (esz) {
    case 1: for (int64_t i = 0; i < n; i++) dst[i] = src[i * s]; break;
    case 4: for (int64_t i = 0; i < n; i++) ((int32_t *)dst)[i] = ((const int32_t *)src)[i * s]; break;
    case 8: for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] = ((const int64_t *)src)[i * s]; break;
    default: EM_ASSERT(0);
    }
}

/* ---- embedding ------------------------------------------------------------------- */

int rt_embedding_check(const char *op, const em_tensor *idx, int64_t rows) {
    EM_ASSERT(idx->dtype == EM_I32 || idx->dtype == EM_I64);
    if (idx->numel == 0) return 0;
    int nd = idx->ndim;
    size_t esz = rt_dtype_size(idx->dtype);
    int64_t inner = nd ? idx->shape[nd - 1] : 1, is = nd ? idx->strides[nd - 1] : 0;
    int64_t pos[EM_MAX_DIMS] = {0};
    for (int64_t done = 0; done < idx->numel; done += inner) {
        int64_t off = 0;
        for (int d = 0; d < nd - 1; d++) off += pos[d] * idx->strides[d];
        const char *p = rt_tensor_data(idx) + off * (int64_t)esz;
        for (int64_t j = 0; j < inner; j++) {
            int64_t v = idx_load(idx->dtype, p + j * is * (int64_t)esz);
            if (v < 0 || v >= rows)
                return rt_error("%s: index %lld is out of range for %lld rows", op,
                                (long long)v, (long long)rows);
        }
        for (int d = nd - 2; d >= 0 && ++pos[d] == idx->shape[d]; d--) pos[d] = 0;
    }
    return 0;
}

typedef struct embed_ctx {
    const char *table;   /* element (0, 0) */
    int64_t rstride;     /* table strides, elements */
    int64_t cstride;
    int64_t rows, d;     /* table shape */
    size_t esz;
    const char *idx;     /* dense indices */
    em_dtype idt;
    char *out;           /* dense [n, d] */
} embed_ctx;

static void embed_range(void *vctx, int64_t begin, int64_t end) {
    const embed_ctx *c = vctx;
    size_t row = (size_t)c->d * c->esz, isz = rt_dtype_size(c->idt);
    for (int64_t i = begin; i < end; i++) {
        int64_t r = idx_load(c->idt, c->idx + i * (int64_t)isz);
        EM_ASSERT(r >= 0 && r < c->rows); /* rt_embedding_check ran first */
        gather_run(c->out + (size_t)i * row, c->table + r * c->rstride * (int64_t)c->esz,
                   c->cstride, c->d, c->esz);
    }
}

int rt_embedding_apply(const em_tensor *table, const em_tensor *idx, em_tensor *out) {
    EM_ASSERT(table->ndim == 2 && table->dtype == out->dtype);
    EM_ASSERT(idx->dtype == EM_I32 || idx->dtype == EM_I64);
    if (out->numel == 0) return 0;
    em_tensor *dense = NULL;
    if (!rt_tensor_is_contiguous(idx)) {
        dense = rt_tensor_new("em_embedding", idx->dtype, idx->ndim, idx->shape, false);
        if (!dense) return -1;
        rt_tensor_copy_to(idx, rt_tensor_data(dense));
    }
    embed_ctx c = {
        .table = rt_tensor_data(table), .rstride = table->strides[0],
        .cstride = table->strides[1], .rows = table->shape[0], .d = table->shape[1],
        .esz = rt_dtype_size(table->dtype), .idx = rt_tensor_data(dense ? dense : idx),
        .idt = idx->dtype, .out = rt_tensor_data(out),
    };
    int64_t row = c.d * (int64_t)c.esz;
    int64_t grain = row >= PIECE_BYTES ? 1 : PIECE_BYTES / row;
    rt_parallel_for(idx->numel, grain, embed_range, &c);
    em_release(dense);
    return 0;
}

/* ---- concat -------------------------------------------------------------------------- */

/* out viewed as [outer, row] bytes; input i covers bytes [start[i], start[i] +
 * len[i]) of every row and is dense (src[i]) or handled elsewhere (NULL). */
typedef struct concat_ctx {
    int n;
    const char **src;
    const int64_t *start, *len; /* bytes */
    int64_t row;                /* bytes per out row */
    char *out;
} concat_ctx;

/* Writes out bytes [begin, end) of the flat [outer, row] output. */
static void concat_range(void *vctx, int64_t begin, int64_t end) {
    const concat_ctx *c = vctx;
    int64_t o = begin / c->row, at = begin % c->row;
    while (begin < end) {
        for (int i = 0; i < c->n && begin < end; i++) {
            int64_t s = c->start[i], e = s + c->len[i];
            if (at >= e || c->len[i] == 0) continue;
            int64_t from = at > s ? at : s, k = e - from;
            if (k > end - begin) k = end - begin;
            if (c->src[i])
                memcpy(c->out + o * c->row + from, c->src[i] + o * c->len[i] + (from - s),
                       (size_t)k);
            at = from + k, begin += k;
        }
        o++, at = 0;
    }
}

/* Copies a strided input into its slab of out, seen through a borrowed header
 * on the stack (same storage, no reference taken): a same-dtype copy, which
 * allocates nothing. */
static void concat_strided(const em_tensor *t, const em_tensor *out, int axis, int64_t at) {
    em_tensor v;
    memcpy(&v, out, sizeof v);
    memcpy(v.shape, t->shape, sizeof v.shape);
    v.numel = t->numel;
    v.offset += at * out->strides[axis];
    int rc = rt_tensor_copy_into(&v, t);
    EM_ASSERT(rc == 0);
}

int rt_concat_apply(em_tensor *const *ts, int n, int axis, em_tensor *out) {
    if (axis < 0) axis += out->ndim;
    EM_ASSERT(axis >= 0 && axis < out->ndim && n >= 0);
    if (out->numel == 0) return 0;
    size_t esz = rt_dtype_size(out->dtype);
    int64_t outer = 1, inner = (int64_t)esz;
    for (int d = 0; d < axis; d++) outer *= out->shape[d];
    for (int d = axis + 1; d < out->ndim; d++) inner *= out->shape[d];
    const char **src = rt_malloc((size_t)n * (sizeof *src + 2 * sizeof(int64_t)), "em_concat");
    if (!src) return -1;
    int64_t *start = (int64_t *)(src + n), *len = start + n;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        EM_ASSERT(ts[i]->dtype == out->dtype && ts[i]->ndim == out->ndim);
        start[i] = at * inner, len[i] = ts[i]->shape[axis] * inner;
        bool dense = rt_tensor_is_contiguous(ts[i]);
        src[i] = dense && len[i] ? rt_tensor_data(ts[i]) : NULL;
        if (!dense && ts[i]->numel) concat_strided(ts[i], out, axis, at);
        at += ts[i]->shape[axis];
    }
    EM_ASSERT(at == out->shape[axis]);
    concat_ctx c = {n, src, start, len, at * inner, rt_tensor_data(out)};
    rt_parallel_for(outer * c.row, PIECE_BYTES, concat_range, &c);
    free(src);
    return 0;
}
