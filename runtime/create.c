/*
 * create.c — the public constructors and inspectors of tensors.
 *
 * Constructors make real (never traced) tensors: while a function is being
 * traced, a tensor created here becomes a graph constant. Each validates its
 * arguments, reports failures through rt_error, and hands its result to the
 * innermost scope. Random tensors use a counter-based generator (SplitMix64
 * over (seed, index)), so element i depends only on the seed and i: the same
 * seed gives the same tensor whatever the thread count.
 */
#include "runtime.h"

#include <math.h>
#include <string.h>

static em_tensor *filled(const char *op, em_dtype dt, int ndim, const int64_t *shape, double v) {
    bool zero = v == 0 && !signbit(v); /* -0.0 must keep its sign */
    em_tensor *t = rt_tensor_new(op, dt, ndim, shape, zero);
    if (t && !zero) rt_fill(t, v);
    return rt_scope_adopt(t);
}

em_tensor *em_zeros(em_dtype dt, int ndim, const int64_t *shape) {
    return filled("em_zeros", dt, ndim, shape, 0);
}

em_tensor *em_full(em_dtype dt, int ndim, const int64_t *shape, double v) {
    return filled("em_full", dt, ndim, shape, v);
}

em_tensor *em_scalar(em_dtype dt, double v) { return filled("em_scalar", dt, 0, NULL, v); }

em_tensor *em_from_data(em_dtype dt, int ndim, const int64_t *shape, const void *data) {
    em_tensor *t = rt_tensor_new("em_from_data", dt, ndim, shape, false);
    if (!t) return NULL;
    if (!data && t->numel > 0) {
        em_release(t);
        rt_error("em_from_data: data is NULL");
        return NULL;
    }
    if (t->numel) memcpy(t->storage->data, data, (size_t)t->numel * rt_dtype_size(dt));
    return rt_scope_adopt(t);
}

em_tensor *em_arange(em_dtype dt, double start, double end, double step) {
    if (!isfinite(start) || !isfinite(end) || !isfinite(step) || step == 0) {
        rt_error("em_arange: start %g, end %g and step %g must be finite with step != 0",
                 start, end, step);
        return NULL;
    }
    double len = ceil((end - start) / step);
    if (len > (double)(INT64_MAX / 16)) {
        rt_error("em_arange: %g elements is too many", len);
        return NULL;
    }
    int64_t n = len > 0 ? (int64_t)len : 0;
    em_tensor *t = rt_tensor_new("em_arange", dt, 1, &n, false);
    if (!t) return NULL;
    size_t esz = rt_dtype_size(dt);
    char *p = t->storage->data;
    for (int64_t i = 0; i < n; i++) rt_value_store(dt, p + i * (int64_t)esz, start + (double)i * step);
    return rt_scope_adopt(t);
}

static em_tensor *random_tensor(const char *op, int ndim, const int64_t *shape, uint64_t seed,
                                bool normal) {
    em_tensor *t = rt_tensor_new(op, EM_F32, ndim, shape, false);
    if (t) rt_fill_rand(t, seed, normal);
    return rt_scope_adopt(t);
}

em_tensor *em_rand(int ndim, const int64_t *shape, uint64_t seed) {
    return random_tensor("em_rand", ndim, shape, seed, false);
}

em_tensor *em_randn(int ndim, const int64_t *shape, uint64_t seed) {
    return random_tensor("em_randn", ndim, shape, seed, true);
}

/* ---- random --------------------------------------------------------------------- */

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A uniform double in (0, 1) from 53 random bits; never exactly 0. */
static inline double unit(uint64_t seed, uint64_t i) {
    uint64_t r = splitmix64(splitmix64(seed) ^ (i * 0xd1342543de82ef95ull));
    return ((double)(r >> 11) + 0.5) * 0x1.0p-53;
}

typedef struct { float *y; uint64_t seed; bool normal; } rand_ctx;

static void rand_range(void *vctx, int64_t begin, int64_t end) {
    rand_ctx *c = vctx;
    for (int64_t i = begin; i < end; i++) {
        if (!c->normal) {
            float u = (float)unit(c->seed, (uint64_t)i);
            c->y[i] = u < 1.0f ? u : 0x1.fffffep-1f; /* rounding must not reach 1 */
            continue;
        }
        /* Box-Muller over the pair (i & ~1, i | 1): cos for even, sin for odd. */
        uint64_t pair = (uint64_t)i >> 1;
        double r = sqrt(-2.0 * log(unit(c->seed, 2 * pair)));
        double th = 6.283185307179586 * unit(c->seed, 2 * pair + 1);
        c->y[i] = (float)(r * ((i & 1) ? sin(th) : cos(th)));
    }
}

void rt_fill_rand(em_tensor *out, uint64_t seed, bool normal) {
    rand_ctx c = {(float *)rt_tensor_data(out), seed, normal};
    rt_parallel_for(out->numel, 1 << 14, rand_range, &c);
}

/* ---- inspection ------------------------------------------------------------------ */

static bool null_arg(const em_tensor *t, const char *op) {
    if (t) return false;
    rt_error("%s: tensor is NULL", op);
    return true;
}

int em_ndim(const em_tensor *t) { return null_arg(t, "em_ndim") ? -1 : t->ndim; }
const int64_t *em_shape(const em_tensor *t) { return null_arg(t, "em_shape") ? NULL : t->shape; }
const int64_t *em_strides(const em_tensor *t) {
    return null_arg(t, "em_strides") ? NULL : t->strides;
}
int64_t em_numel(const em_tensor *t) { return null_arg(t, "em_numel") ? -1 : t->numel; }
em_dtype em_type(const em_tensor *t) { return null_arg(t, "em_type") ? EM_F32 : t->dtype; }
int em_is_contiguous(const em_tensor *t) {
    return null_arg(t, "em_is_contiguous") ? 0 : rt_tensor_is_contiguous(t);
}

int64_t em_dim(const em_tensor *t, int axis) {
    if (null_arg(t, "em_dim")) return -1;
    int a = rt_axis("em_dim", axis, t->ndim);
    return a < 0 ? -1 : t->shape[a];
}
