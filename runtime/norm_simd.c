/*
 * norm_simd.c — f32 row kernels of the NN ops, one copy per ISA.
 *
 * softmax, log_softmax, layer_norm and rms_norm each normalise one contiguous
 * row. nn.c hands every row here, already contiguous (gathered into the output
 * row when the input is strided, so every kernel must also work in place,
 * x == y: each pass reads element i before writing element i and nothing
 * later reads it again).
 *
 * Passes are few and the row stays in L1 for the usual widths: softmax is max,
 * then exp(x - max) stored to y while summing, then a scale; log_softmax is
 * max, sum of exp, then (x - max) - log sum. The max ignores NaN (V_MAX keeps
 * its second operand), which is harmless: a NaN element makes the sum NaN and
 * with it the whole row, as in torch; a row of -inf or with +inf gets NaN from
 * inf - inf. Tails are padded with -inf so they add exp(-inf) = 0 to the sum.
 * x - max is at most 0 (or -inf, or NaN), so its exp skips the general exp's
 * clamps (V_EXP_NONPOSITIVE: the same results, a shorter chain; softmax of
 * [512, 256] on one thread of a Zen 5 EPYC went from 32 to 28 us, medians
 * of six processes of each build, alternating).
 * layer_norm is two-pass (mean, then the mean of squared deviations: biased
 * variance, no cancellation) over the row shifted by its first element, then
 * one fused output pass. log_softmax subtracts max and log-sum separately so
 * that results near 0 keep their precision when x is large.
 */
#include "simd.h"

#include <math.h>

static inline vf v_load_pad(const float *p, int64_t n, float pad) {
    float t[VW];
    for (int k = 0; k < VW; k++) t[k] = pad;
    memcpy(t, p, (size_t)n * sizeof(float));
    return V_LOAD(t);
}

/* Max of the row, ignoring NaN; -inf for an empty row. */
static inline float ISA(row_max)(int64_t n, const float *x) {
    vf m0 = V_SET1(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        m0 = V_MAX(V_LOAD(x + i), m0);
        m1 = V_MAX(V_LOAD(x + i + VW), m1);
        m2 = V_MAX(V_LOAD(x + i + 2 * VW), m2);
        m3 = V_MAX(V_LOAD(x + i + 3 * VW), m3);
    }
    for (; i < n; i += VW)
        m0 = V_MAX(i + VW <= n ? V_LOAD(x + i) : v_load_pad(x + i, n - i, -INFINITY), m0);
    return V_HMAX(V_MAX(V_MAX(m0, m1), V_MAX(m2, m3)));
}

static void ISA(softmax_row)(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    vf m = V_SET1(ISA(row_max)(n, x));
    vf s0 = V_ZERO(), s1 = V_ZERO();
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        vf e0 = V_EXP_NONPOSITIVE(V_SUB(V_LOAD(x + i), m));
        vf e1 = V_EXP_NONPOSITIVE(V_SUB(V_LOAD(x + i + VW), m));
        V_STORE(y + i, e0);
        V_STORE(y + i + VW, e1);
        s0 = V_ADD(s0, e0);
        s1 = V_ADD(s1, e1);
    }
    for (; i < n; i += VW) {
        int64_t r = n - i;
        vf e = V_EXP_NONPOSITIVE(V_SUB(r >= VW ? V_LOAD(x + i) : v_load_pad(x + i, r, -INFINITY), m));
        if (r >= VW) V_STORE(y + i, e);
        else V_STORE_N(y + i, e, r);
        s0 = V_ADD(s0, e);
    }
    vf inv = V_SET1(1.0f / V_HSUM(V_ADD(s0, s1)));
    for (i = 0; i + VW <= n; i += VW) V_STORE(y + i, V_MUL(V_LOAD(y + i), inv));
    if (i < n) V_STORE_N(y + i, V_MUL(V_LOAD_N(y + i, n - i), inv), n - i);
}

static void ISA(log_softmax_row)(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    vf m = V_SET1(ISA(row_max)(n, x));
    vf s0 = V_ZERO(), s1 = V_ZERO();
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        s0 = V_ADD(s0, V_EXP_NONPOSITIVE(V_SUB(V_LOAD(x + i), m)));
        s1 = V_ADD(s1, V_EXP_NONPOSITIVE(V_SUB(V_LOAD(x + i + VW), m)));
    }
    for (; i < n; i += VW) {
        vf v = i + VW <= n ? V_LOAD(x + i) : v_load_pad(x + i, n - i, -INFINITY);
        s0 = V_ADD(s0, V_EXP_NONPOSITIVE(V_SUB(v, m)));
    }
    float lse[VW];
    V_STORE(lse, SLEEF_SFX(log)(V_SET1(V_HSUM(V_ADD(s0, s1)))));
    vf l = V_SET1(lse[0]); /* (x - max) - log(sum): exact near 0 for large x */
    for (i = 0; i + VW <= n; i += VW) V_STORE(y + i, V_SUB(V_SUB(V_LOAD(x + i), m), l));
    if (i < n) V_STORE_N(y + i, V_SUB(V_SUB(V_LOAD_N(x + i, n - i), m), l), n - i);
}

/* Sum of x - k over the row, and (second pass) of (x - k - mean)^2. */
static inline float ISA(row_sum)(int64_t n, const float *x, float k) {
    vf vk = V_SET1(k), s0 = V_ZERO(), s1 = V_ZERO(), s2 = V_ZERO(), s3 = V_ZERO();
    int64_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        s0 = V_ADD(s0, V_SUB(V_LOAD(x + i), vk));
        s1 = V_ADD(s1, V_SUB(V_LOAD(x + i + VW), vk));
        s2 = V_ADD(s2, V_SUB(V_LOAD(x + i + 2 * VW), vk));
        s3 = V_ADD(s3, V_SUB(V_LOAD(x + i + 3 * VW), vk));
    }
    for (; i + VW <= n; i += VW) s0 = V_ADD(s0, V_SUB(V_LOAD(x + i), vk));
    float s = V_HSUM(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)));
    for (; i < n; i++) s += x[i] - k;
    return s;
}

static inline float ISA(row_sqdev)(int64_t n, const float *x, float k, float mean) {
    vf vk = V_SET1(k), m = V_SET1(mean), s0 = V_ZERO(), s1 = V_ZERO(), s2 = V_ZERO(), s3 = V_ZERO();
    int64_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        vf d0 = V_SUB(V_SUB(V_LOAD(x + i), vk), m), d1 = V_SUB(V_SUB(V_LOAD(x + i + VW), vk), m);
        vf d2 = V_SUB(V_SUB(V_LOAD(x + i + 2 * VW), vk), m);
        vf d3 = V_SUB(V_SUB(V_LOAD(x + i + 3 * VW), vk), m);
        s0 = V_FMA(d0, d0, s0), s1 = V_FMA(d1, d1, s1);
        s2 = V_FMA(d2, d2, s2), s3 = V_FMA(d3, d3, s3);
    }
    for (; i + VW <= n; i += VW) {
        vf d = V_SUB(V_SUB(V_LOAD(x + i), vk), m);
        s0 = V_FMA(d, d, s0);
    }
    float s = V_HSUM(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)));
    for (; i < n; i++) s += (x[i] - k - mean) * (x[i] - k - mean); /* no padded lanes */
    return s;
}

/* y = (x - k - mean) * scale * W + B over the row; W, B expressions of i. */
#define NORM_OUT(WV, BV, WN, BN)                                                    \
    {                                                                               \
        for (i = 0; i + VW <= n; i += VW)                                           \
            V_STORE(y + i, V_FMA(V_SUB(V_SUB(V_LOAD(x + i), vk), vm), V_MUL(vs, WV), BV)); \
        if (i < n)                                                                  \
            V_STORE_N(y + i, V_FMA(V_SUB(V_SUB(V_LOAD_N(x + i, n - i), vk), vm), V_MUL(vs, WN), BN), \
                      n - i);                                                       \
    }

static void ISA(norm_out)(int64_t n, const float *x, const float *w, const float *b, float k,
                          float mean, float scale, float *y) {
    vf vk = V_SET1(k), vm = V_SET1(mean), vs = V_SET1(scale), one = V_SET1(1.0f), zero = V_ZERO();
    int64_t i;
    if (w && b)
        NORM_OUT(V_LOAD(w + i), V_LOAD(b + i), V_LOAD_N(w + i, n - i), V_LOAD_N(b + i, n - i))
    else if (w)
        NORM_OUT(V_LOAD(w + i), zero, V_LOAD_N(w + i, n - i), zero)
    else if (b)
        NORM_OUT(one, V_LOAD(b + i), one, V_LOAD_N(b + i, n - i))
    else
        NORM_OUT(one, zero, one, zero)
}

/* The row is shifted by its first element k before summing (x - k is exact for
 * x near k), so a large common offset costs no precision in mean or variance. */
static void ISA(layer_norm_row)(int64_t n, const float *x, const float *w, const float *b,
                                float eps, float *y) {
    if (n <= 0) return;
    float k = isfinite(x[0]) ? x[0] : 0.0f;
    float mean = ISA(row_sum)(n, x, k) / (float)n;
    float var = ISA(row_sqdev)(n, x, k, mean) / (float)n;
    float rstd = (float)(1.0 / sqrt((double)var + (double)eps));
    ISA(norm_out)(n, x, w, b, k, mean, rstd, y);
}

static void ISA(rms_norm_row)(int64_t n, const float *x, const float *w, float eps, float *y) {
    if (n <= 0) return;
    float ms = ISA(row_sqdev)(n, x, 0.0f, 0.0f) / (float)n;
    float r = (float)(1.0 / sqrt((double)ms + (double)eps));
    ISA(norm_out)(n, x, w, NULL, 0.0f, 0.0f, r, y);
}

void ISA(rt_simd_fill_norm)(rt_simd *t) {
    t->softmax_row = ISA(softmax_row);
    t->log_softmax_row = ISA(log_softmax_row);
    t->layer_norm_row = ISA(layer_norm_row);
    t->rms_norm_row = ISA(rms_norm_row);
}
