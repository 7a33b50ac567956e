/*
 * tensor.c — tensors, their storage, views and copies.
 *
 * A tensor is a header (dtype, shape, strides in elements, offset) over a
 * refcounted storage; views (reshape of dense data, transpose, permute, slice,
 * expand, squeeze) are new headers over the same storage, so they cost no copy.
 * Strides of size-1 dims carry no meaning and broadcast dims have stride 0.
 * Both the header and the storage are refcounted with atomics so tensors can be
 * shared across threads; the storage dies with its last view.
 *
 * The strided copy at the bottom is the one routine that turns any view into
 * dense data: it coalesces dims that are contiguous in both source and
 * destination and copies whole inner runs with memcpy.
 */
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtypes[EM_NDTYPES] = {
    [EM_F32] = {"f32", 4}, [EM_F64] = {"f64", 8}, [EM_I32] = {"i32", 4},
    [EM_I64] = {"i64", 8}, [EM_BOOL] = {"bool", 1},
};

bool rt_dtype_valid(int dt) { return dt >= 0 && dt < EM_NDTYPES; }
size_t rt_dtype_size(em_dtype dt) { return rt_dtype_valid((int)dt) ? dtypes[dt].size : 0; }
size_t em_dtype_size(em_dtype dt) { return rt_dtype_size(dt); }
const char *em_dtype_name(em_dtype dt) { return rt_dtype_valid((int)dt) ? dtypes[dt].name : NULL; }
bool rt_dtype_is_float(em_dtype dt) { return dt == EM_F32 || dt == EM_F64; }
const char *em_version(void) { return EM_VERSION_STRING; }

em_dtype rt_dtype_promote(em_dtype a, em_dtype b) {
    static const int rank[EM_NDTYPES] = {[EM_BOOL] = 0, [EM_I32] = 1, [EM_I64] = 2,
                                         [EM_F32] = 3, [EM_F64] = 4};
    return rank[a] >= rank[b] ? a : b;
}

void rt_value_store(em_dtype dt, void *dst, double v) {
    switch (dt) {
    case EM_F32: *(float *)dst = (float)v; break;
    case EM_F64: *(double *)dst = v; break;
    case EM_I32: *(int32_t *)dst = isnan(v) ? 0 : v >= 2147483647.0 ? INT32_MAX
                                  : v <= -2147483648.0 ? INT32_MIN : (int32_t)v; break;
    case EM_I64: *(int64_t *)dst = isnan(v) ? 0 : v >= 9.2233720368547758e18 ? INT64_MAX
                                  : v <= -9.2233720368547758e18 ? INT64_MIN : (int64_t)v; break;
    case EM_BOOL: *(uint8_t *)dst = v != 0; break;
    }
}

double rt_value_load(em_dtype dt, const void *src) {
    switch (dt) {
    case EM_F32: return *(const float *)src;
    case EM_F64: return *(const double *)src;
    case EM_I32: return *(const int32_t *)src;
    case EM_I64: return (double)*(const int64_t *)src;
    case EM_BOOL: return *(const uint8_t *)src;
    }
    return 0;
}

int64_t rt_shape_check(const char *op, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > EM_MAX_DIMS)
        return rt_error("%s: ndim %d is out of range [0, %d]", op, ndim, EM_MAX_DIMS);
    if (ndim > 0 && !shape) return rt_error("%s: shape is NULL", op);
    /* The product of the non-zero dims is bounded too: strides are computed
     * from it even when another dim is 0. */
    int64_t n = 1, nonzero = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return rt_error("%s: dim %d has negative size %lld", op, i, (long long)shape[i]);
        if (shape[i] && nonzero > INT64_MAX / 16 / shape[i])
            return rt_error("%s: shape is too large", op);
        nonzero *= shape[i] ? shape[i] : 1;
        n *= shape[i];
    }
    return n;
}

int rt_axis(const char *op, int axis, int ndim) {
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim)
        return rt_error("%s: axis %d is out of range for a %d-d tensor", op, axis, ndim);
    return a;
}

void rt_tensor_contig_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] ? shape[i] : 1;
    }
}

bool rt_tensor_is_contiguous(const em_tensor *t) {
    if (t->numel == 0) return true; /* no element to be out of place */
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

static em_tensor *header_new(const char *op, em_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = rt_shape_check(op, ndim, shape);
    if (n < 0) return NULL;
    if (!rt_dtype_valid((int)dt)) {
        rt_error("%s: %d is not a dtype", op, (int)dt);
        return NULL;
    }
    em_tensor *t = rt_malloc(sizeof *t, op);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    atomic_init(&t->refs, 1);
    t->dtype = dt;
    t->ndim = ndim;
    t->numel = n;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    rt_tensor_contig_strides(ndim, t->shape, t->strides);
    return t;
}

em_tensor *rt_tensor_new(const char *op, em_dtype dt, int ndim, const int64_t *shape, bool zero) {
    em_tensor *t = header_new(op, dt, ndim, shape);
    if (!t) return NULL;
    size_t nbytes = (size_t)t->numel * rt_dtype_size(dt);
    rt_storage *s = rt_malloc(sizeof *s, op);
    void *data = s ? rt_alloc(nbytes) : NULL;
    if (!data) {
        if (s) rt_error("%s: out of memory allocating %zu bytes", op, nbytes);
        free(s);
        free(t);
        return NULL;
    }
    if (zero) memset(data, 0, nbytes);
    atomic_init(&s->refs, 1);
    s->data = data;
    s->nbytes = nbytes;
    t->storage = s;
    return t;
}

em_tensor *rt_tensor_view(const em_tensor *base, int ndim, const int64_t *shape,
                          const int64_t *strides, int64_t offset) {
    em_tensor *t = header_new("view", base->dtype, ndim, shape);
    if (!t) return NULL;
    if (ndim) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    t->offset = offset;
    t->storage = base->storage;
    if (t->storage) atomic_fetch_add(&t->storage->refs, 1);
    return t;
}

em_tensor *rt_tensor_at(rt_storage *s, em_dtype dt, int ndim, const int64_t *shape,
                       size_t byte_offset) {
    EM_ASSERT(byte_offset % rt_dtype_size(dt) == 0);
    em_tensor *t = header_new("arena", dt, ndim, shape);
    if (!t) return NULL;
    EM_ASSERT(byte_offset + (size_t)t->numel * rt_dtype_size(dt) <= s->nbytes);
    t->offset = (int64_t)(byte_offset / rt_dtype_size(dt));
    t->storage = s;
    atomic_fetch_add(&s->refs, 1);
    return t;
}

em_tensor *em_retain(em_tensor *t) {
    if (t) atomic_fetch_add(&t->refs, 1);
    return t;
}

void em_release(em_tensor *t) {
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    rt_storage *s = t->storage;
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        rt_free(s->data, s->nbytes);
        free(s);
    }
    free(t);
}

/* ---- strided copy ---------------------------------------------------------------- */

/* Merges adjacent dims that are contiguous in both operands; drops size-1 dims. */
static int coalesce2(int ndim, const int64_t *shape, const int64_t *sa, const int64_t *sb,
                     int64_t *oshape, int64_t *osa, int64_t *osb) {
    int k = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        if (k > 0 && osa[k - 1] == sa[i] * shape[i] && osb[k - 1] == sb[i] * shape[i]) {
            oshape[k - 1] *= shape[i];
            osa[k - 1] = sa[i];
            osb[k - 1] = sb[i];
            continue;
        }
        oshape[k] = shape[i], osa[k] = sa[i], osb[k] = sb[i];
        k++;
    }
    return k;
}

static void copy_run(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, size_t esz) {
    if (ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)n * esz);
        return;
    }
    switch (esz) {
    case 1: for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss]; break;
    case 4: for (int64_t i = 0; i < n; i++) ((int32_t *)d)[i * ds] = ((const int32_t *)s)[i * ss]; break;
    case 8: for (int64_t i = 0; i < n; i++) ((int64_t *)d)[i * ds] = ((const int64_t *)s)[i * ss]; break;
    default: EM_ASSERT(0);
    }
}

/* A 2-D block where dst is dense along j and src is dense along i (a transpose):
 * 4-byte elements by rt_simd's transpose where the CPU has one (16 x 16 blocks
 * in registers with AVX-512), all others in TILE x TILE tiles so both sides
 * stay in cache. */
#define TILE 32
#define TILE_LOOP(T)                                                                    \
    for (int64_t i0 = 0; i0 < ni; i0 += TILE)                                           \
        for (int64_t j0 = 0; j0 < nj; j0 += TILE) {                                     \
            int64_t i1 = i0 + TILE < ni ? i0 + TILE : ni, j1 = j0 + TILE < nj ? j0 + TILE : nj; \
            for (int64_t i = i0; i < i1; i++)                                           \
                for (int64_t j = j0; j < j1; j++)                                       \
                    ((T *)d)[i * dsi + j] = ((const T *)s)[i + j * ssj];                \
        }
static void copy_transposed(char *d, int64_t dsi, const char *s, int64_t ssj, int64_t ni,
                            int64_t nj, size_t esz) {
    switch (esz) {
    case 1: TILE_LOOP(uint8_t) break;
    case 4: {
        const rt_simd *t = rt_simd_get();
        if (t->transpose) t->transpose(ni, nj, (const float *)s, ssj, (float *)d, dsi); /* bits, not values */
        else TILE_LOOP(uint32_t)
        break;
    }
    case 8: TILE_LOOP(uint64_t) break;
    default: EM_ASSERT(0);
    }
}

/* dst and src have the same dtype; shape and element strides given. */
static void strided_copy(int ndim, const int64_t *shape, char *dst, const int64_t *dstr,
                         const char *src, const int64_t *sstr, size_t esz) {
    int64_t sh[EM_MAX_DIMS], ds[EM_MAX_DIMS], ss[EM_MAX_DIMS];
    int k = coalesce2(ndim, shape, dstr, sstr, sh, ds, ss);
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return;
    if (k == 0) {
        memcpy(dst, src, esz);
        return;
    }
    int64_t idx[EM_MAX_DIMS] = {0};
    int64_t inner = sh[k - 1];
    /* Transposed innermost pair: tile it, and iterate over the dims outside it. */
    bool tiled = k >= 2 && ds[k - 1] == 1 && ss[k - 1] != 1 && ss[k - 2] == 1 && sh[k - 2] >= 8;
    int outer = tiled ? k - 2 : k - 1;
    for (;;) {
        int64_t doff = 0, soff = 0;
        for (int i = 0; i < outer; i++) doff += idx[i] * ds[i], soff += idx[i] * ss[i];
        if (tiled)
            copy_transposed(dst + doff * (int64_t)esz, ds[k - 2], src + soff * (int64_t)esz,
                            ss[k - 1], sh[k - 2], inner, esz);
        else
            copy_run(dst + doff * (int64_t)esz, ds[k - 1], src + soff * (int64_t)esz, ss[k - 1],
                     inner, esz);
        int i = outer - 1;
        while (i >= 0 && ++idx[i] == sh[i]) idx[i--] = 0;
        if (i < 0) break;
    }
}

void rt_tensor_copy_to(const em_tensor *t, void *dst) {
    int64_t cs[EM_MAX_DIMS];
    rt_tensor_contig_strides(t->ndim, t->shape, cs);
    strided_copy(t->ndim, t->shape, dst, cs, rt_tensor_data(t), t->strides,
                 rt_dtype_size(t->dtype));
}

int rt_tensor_copy_into(em_tensor *dst, const em_tensor *src) {
    EM_ASSERT(dst->numel == src->numel);
    if (dst->dtype == src->dtype) {
        strided_copy(dst->ndim, dst->shape, rt_tensor_data(dst), dst->strides,
                     rt_tensor_data(src), src->strides, rt_dtype_size(dst->dtype));
        return 0;
    }
    /* Convert through a contiguous temporary of dst's dtype. */
    em_tensor *tmp = rt_tensor_new("copy", dst->dtype, src->ndim, src->shape, false);
    if (!tmp) return -1;
    rt_cast_apply(src, tmp);
    strided_copy(dst->ndim, dst->shape, rt_tensor_data(dst), dst->strides,
                 rt_tensor_data(tmp), tmp->strides, rt_dtype_size(dst->dtype));
    em_release(tmp);
    return 0;
}
