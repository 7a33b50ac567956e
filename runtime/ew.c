/*
 * ew.c — elementwise kernels: unary and binary math, where, casts and fills.
 *
 * Each apply function picks an inner loop for the dtype and hands it to the
 * iterator (iter.c), which deals with broadcasting, views and threads. f32
 * loops come from the SIMD table of this CPU (ew_simd.c); the other dtypes use
 * the plain C loops below, written once per dtype with macros. Integer
 * arithmetic wraps (computed in unsigned types, so it is defined behaviour) and
 * float-to-integer casts saturate, with NaN going to 0, so no input can make a
 * kernel undefined.
 */
#include "runtime.h"

#include <math.h>
#include <string.h>

/* ---- f32 through the SIMD table --------------------------------------------------- */

static void unary_f32(void *ctx, int64_t n, void *out, const void *const *in, const int64_t *s) {
    void (*f)(int64_t, const float *, float *) = *(void (**)(int64_t, const float *, float *))ctx;
    if (s[0]) {
        f(n, in[0], out);
        return;
    }
    float y;
    f(1, in[0], &y);
    for (int64_t i = 0; i < n; i++) ((float *)out)[i] = y;
}

typedef void (*bin_f32_fn)(int64_t, const float *, int64_t, const float *, int64_t, void *);
static void binary_f32(void *ctx, int64_t n, void *out, const void *const *in, const int64_t *s) {
    (*(bin_f32_fn *)ctx)(n, in[0], s[0], in[1], s[1], out);
}

/* ---- f64 and integers: plain loops ------------------------------------------------ */

static double d_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double d_neg(double x) { return -x; }
static double d_rsqrt(double x) { return 1.0 / sqrt(x); }
static double d_recip(double x) { return 1.0 / x; }
static double d_relu(double x) { return x > 0 || isnan(x) ? x : 0.0; }
static double d_gelu(double x) { return 0.5 * x * (1.0 + erf(x * 0.70710678118654752)); }
static double d_gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
}
static double d_silu(double x) { return x * d_sigmoid(x); }
static double (*const f64_unary[RT_UNARY_COUNT])(double) = {
    [RT_UNARY_NEG] = d_neg, [RT_UNARY_ABS] = fabs, [RT_UNARY_EXP] = exp, [RT_UNARY_LOG] = log,
    [RT_UNARY_SQRT] = sqrt, [RT_UNARY_RSQRT] = d_rsqrt, [RT_UNARY_RECIPROCAL] = d_recip,
    [RT_UNARY_SIN] = sin, [RT_UNARY_COS] = cos, [RT_UNARY_TANH] = tanh, [RT_UNARY_ERF] = erf,
    [RT_UNARY_SIGMOID] = d_sigmoid, [RT_UNARY_RELU] = d_relu, [RT_UNARY_GELU] = d_gelu,
    [RT_UNARY_GELU_TANH] = d_gelu_tanh, [RT_UNARY_SILU] = d_silu,
};

static void unary_f64(void *ctx, int64_t n, void *out, const void *const *in, const int64_t *s) {
    double (*f)(double) = f64_unary[*(rt_unary *)ctx];
    const double *x = in[0];
    double *y = out;
    for (int64_t i = 0; i < n; i++) y[i] = f(x[i * s[0]]);
}

/* Integer unary ops: NEG, ABS, RELU (wrapping like two's complement). */
#define INT_UNARY(T, UT)                                                                  \
    static void unary_##T(void *ctx, int64_t n, void *out, const void *const *in,          \
                          const int64_t *s) {                                             \
        rt_unary f = *(rt_unary *)ctx;                                                    \
        const T *x = in[0];                                                               \
        T *y = out;                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                 \
            T v = x[i * s[0]];                                                            \
            T neg = (T)(UT)(0u - (UT)v);                                                  \
            y[i] = f == RT_UNARY_NEG ? neg : f == RT_UNARY_ABS ? (v < 0 ? neg : v)        \
                                                               : (v > 0 ? v : 0);         \
        }                                                                                 \
    }
INT_UNARY(int32_t, uint32_t)
INT_UNARY(int64_t, uint64_t)

int rt_unary_apply(rt_unary f, const em_tensor *a, em_tensor *out) {
    const em_tensor *in[1] = {a};
    switch (a->dtype) {
    case EM_F32: {
        void (*fn)(int64_t, const float *, float *) = rt_simd_get()->unary[f];
        rt_iter_run(out, 1, in, unary_f32, &fn, f <= RT_UNARY_ABS || f == RT_UNARY_RELU ? 1 : 8);
        return 0;
    }
    case EM_F64: rt_iter_run(out, 1, in, unary_f64, &f, 8); return 0;
    case EM_I32: rt_iter_run(out, 1, in, unary_int32_t, &f, 1); return 0;
    case EM_I64: rt_iter_run(out, 1, in, unary_int64_t, &f, 1); return 0;
    default: EM_ASSERT(!"unary op on bool");
    }
    return -1;
}

/* Binary ops on f64 and integers. Arithmetic writes T; comparisons write bytes. */
static int64_t ipow(int64_t b, int64_t e) {
    if (e < 0) return b == 1 ? 1 : b == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, x = (uint64_t)b;
    for (; e; e >>= 1, x *= x)
        if (e & 1) r *= x;
    return (int64_t)r;
}

#define BIN_CASES(T, UT, ISF)                                                             \
    case RT_BINARY_ADD: y[i] = ISF ? (T)(u + v) : (T)((UT)u + (UT)v); break;               \
    case RT_BINARY_SUB: y[i] = ISF ? (T)(u - v) : (T)((UT)u - (UT)v); break;               \
    case RT_BINARY_MUL: y[i] = ISF ? (T)(u * v) : (T)((UT)u * (UT)v); break;               \
    case RT_BINARY_DIV: y[i] = (T)(u / v); break; /* floats only: callers cast ints */    \
    case RT_BINARY_POW: y[i] = ISF ? (T)pow((double)u, (double)v) : (T)ipow((int64_t)u, (int64_t)v); break; \
    case RT_BINARY_MAX: y[i] = (u != u || u > v) ? u : v; break;                          \
    case RT_BINARY_MIN: y[i] = (u != u || u < v) ? u : v; break;                          \
    case RT_BINARY_EQ: yb[i] = u == v; break;                                             \
    case RT_BINARY_NE: yb[i] = u != v; break;                                             \
    case RT_BINARY_LT: yb[i] = u < v; break;                                              \
    case RT_BINARY_LE: yb[i] = u <= v; break;                                             \
    case RT_BINARY_GT: yb[i] = u > v; break;                                              \
    case RT_BINARY_GE: yb[i] = u >= v; break;                                             \
    default: break;

#define GENERIC_BINARY(NAME, T, UT, ISF)                                                  \
    static void NAME(void *ctx, int64_t n, void *out, const void *const *in,               \
                     const int64_t *s) {                                                  \
        rt_binary f = *(rt_binary *)ctx;                                                  \
        const T *a = in[0], *b = in[1];                                                   \
        T *y = out;                                                                       \
        uint8_t *yb = out;                                                                \
        for (int64_t i = 0; i < n; i++) {                                                 \
            T u = a[i * s[0]], v = b[i * s[1]];                                           \
            switch (f) { BIN_CASES(T, UT, ISF) }                                          \
        }                                                                                 \
    }
GENERIC_BINARY(binary_f64, double, double, 1)
GENERIC_BINARY(binary_i32, int32_t, uint32_t, 0)
GENERIC_BINARY(binary_i64, int64_t, uint64_t, 0)
GENERIC_BINARY(binary_bool, uint8_t, uint8_t, 0)

int rt_binary_apply(rt_binary f, const em_tensor *a, const em_tensor *b, em_tensor *out) {
    const em_tensor *in[2] = {a, b};
    EM_ASSERT(a->dtype == b->dtype);
    int cost = f == RT_BINARY_POW ? 16 : 1;
    switch (a->dtype) {
    case EM_F32: {
        bin_f32_fn fn = rt_simd_get()->binary[f];
        rt_iter_run(out, 2, in, binary_f32, &fn, cost);
        return 0;
    }
    case EM_F64: rt_iter_run(out, 2, in, binary_f64, &f, cost); return 0;
    case EM_I32: rt_iter_run(out, 2, in, binary_i32, &f, cost); return 0;
    case EM_I64: rt_iter_run(out, 2, in, binary_i64, &f, cost); return 0;
    case EM_BOOL: rt_iter_run(out, 2, in, binary_bool, &f, cost); return 0;
    }
    return -1;
}

/* ---- where ---------------------------------------------------------------------------- */

#define WHERE_LOOP(T)                                                                     \
    {                                                                                     \
        const T *a = in[1], *b = in[2];                                                   \
        T *y = out;                                                                       \
        for (int64_t i = 0; i < n; i++) y[i] = c[i * s[0]] ? a[i * s[1]] : b[i * s[2]];   \
    }
static void where_loop(void *ctx, int64_t n, void *out, const void *const *in, const int64_t *s) {
    size_t esz = *(size_t *)ctx;
    const uint8_t *c = in[0];
    switch (esz) {
    case 1: WHERE_LOOP(uint8_t) break;
    case 4: WHERE_LOOP(uint32_t) break;
    case 8: WHERE_LOOP(uint64_t) break;
    default: EM_ASSERT(0);
    }
}

int rt_where_apply(const em_tensor *cond, const em_tensor *a, const em_tensor *b, em_tensor *out) {
    EM_ASSERT(a->dtype == out->dtype && b->dtype == out->dtype);
    em_tensor *c = (em_tensor *)cond;
    if (cond->dtype != EM_BOOL) {
        c = rt_tensor_new("em_where", EM_BOOL, cond->ndim, cond->shape, false);
        if (!c) return -1;
        rt_cast_apply(cond, c);
    }
    const em_tensor *in[3] = {c, a, b};
    size_t esz = rt_dtype_size(out->dtype);
    rt_iter_run(out, 3, in, where_loop, &esz, 1);
    if (c != cond) em_release(c);
    return 0;
}

/* ---- casts ------------------------------------------------------------------------------ */

/* Saturating float -> integer conversion; NaN -> 0. The i32 form is branch-free
 * (min/max in double, where every i32 is exact) so the loop vectorises. */
#define SAT(T, MIN, MAX, x) ((x) != (x) ? (T)0 : (x) <= (double)(MIN) ? (T)(MIN) \
                             : (x) >= (double)(MAX) ? (T)(MAX) : (T)(x))
static inline int32_t sat_i32(double x) {
    x = x == x ? x : 0.0;
    x = x < -2147483648.0 ? -2147483648.0 : x;
    x = x > 2147483647.0 ? 2147483647.0 : x;
    return (int32_t)x;
}
#define TO_F32(x) ((float)(x))
#define TO_F64(x) ((double)(x))
#define TO_I32(x) sat_i32((double)(x))
#define TO_I64(x) SAT(int64_t, INT64_MIN, INT64_MAX, (double)(x))
#define TO_BOOL(x) ((uint8_t)((x) != 0))
/* Integer -> integer conversions are exact or wrap (i64 -> i32 keeps low bits). */
#define TO_I32_INT(x) ((int32_t)(uint32_t)(uint64_t)(x))
#define TO_I64_INT(x) ((int64_t)(x))

#define CAST_LOOP(TS, TD, CONV)                                                           \
    {                                                                                     \
        const TS *x = in[0];                                                              \
        TD *y = out;                                                                      \
        if (s[0] == 1) /* the common case, as its own loop so it vectorises */            \
            for (int64_t i = 0; i < n; i++) y[i] = CONV(x[i]);                            \
        else                                                                              \
            for (int64_t i = 0; i < n; i++) y[i] = CONV(x[0]);                            \
    }
#define CAST_FROM(TS, ISF)                                                                \
    switch (dst) {                                                                        \
    case EM_F32: CAST_LOOP(TS, float, TO_F32) break;                                      \
    case EM_F64: CAST_LOOP(TS, double, TO_F64) break;                                     \
    case EM_I32: if (ISF) CAST_LOOP(TS, int32_t, TO_I32) else CAST_LOOP(TS, int32_t, TO_I32_INT) break; \
    case EM_I64: if (ISF) CAST_LOOP(TS, int64_t, TO_I64) else CAST_LOOP(TS, int64_t, TO_I64_INT) break; \
    case EM_BOOL: CAST_LOOP(TS, uint8_t, TO_BOOL) break;                                  \
    }

typedef struct { em_dtype src, dst; } cast_ctx;
static void cast_loop(void *vctx, int64_t n, void *out, const void *const *in, const int64_t *s) {
    cast_ctx *c = vctx;
    em_dtype dst = c->dst;
    if (c->src == EM_F32 && dst == EM_I32 && s[0] == 1) {
        rt_simd_get()->cast_f32_i32(n, in[0], out);
        return;
    }
    switch (c->src) {
    case EM_F32: CAST_FROM(float, 1) break;
    case EM_F64: CAST_FROM(double, 1) break;
    case EM_I32: CAST_FROM(int32_t, 0) break;
    case EM_I64: CAST_FROM(int64_t, 0) break;
    case EM_BOOL: CAST_FROM(uint8_t, 0) break;
    }
}

int rt_cast_apply(const em_tensor *a, em_tensor *out) {
    const em_tensor *in[1] = {a};
    cast_ctx c = {a->dtype, out->dtype};
    rt_iter_run(out, 1, in, cast_loop, &c, 1);
    return 0;
}

/* ---- fill ------------------------------------------------------------------------------- */

void rt_fill(em_tensor *out, double v) {
    size_t esz = rt_dtype_size(out->dtype);
    char one[8];
    rt_value_store(out->dtype, one, v);
    char *p = rt_tensor_data(out);
    for (int64_t i = 0; i < out->numel; i++) memcpy(p + i * (int64_t)esz, one, esz);
}
