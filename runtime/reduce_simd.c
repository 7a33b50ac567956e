/*
 * reduce_simd.c — f32 reductions of a row and across rows, one copy per ISA.
 *
 * reduce.c views every f32 reduction either as rows (the reduced axis is
 * contiguous: one result per row) or as columns (the reduced axis strides over
 * rows of a contiguous inner run: acc[j] op= x[j] row after row). These are the
 * inner loops of both.
 *
 * Sums are pairwise: leaf blocks of 16 vectors are summed with four
 * independent accumulators, and leaf results are merged like a binary counter
 * (a block sum meets its neighbour of equal size), so a row of n floats has an
 * error of O(log n) ulps rather than O(n) while running at load speed. max/min
 * propagate NaN: the vector max of simd.h returns its second operand when
 * either is NaN, so the running extreme is kept as V_MAX(x, acc) (ignores NaN
 * in x) and NaN is tracked on the side with an unordered compare. Tails are
 * padded with the identity of the reduction (0, -inf, +inf), never with 0 for
 * max/min.
 */
#include "simd.h"

#include <math.h>

/* The first n (< VW) floats of p; the remaining lanes hold pad. */
static inline vf v_load_pad(const float *p, int64_t n, float pad) {
    float t[VW];
    for (int k = 0; k < VW; k++) t[k] = pad;
    memcpy(t, p, (size_t)n * sizeof(float));
    return V_LOAD(t);
}

#define LEAF (16 * VW) /* floats per leaf block of the pairwise sum */

static float ISA(sum_row)(int64_t n, const float *x) {
    vf stack[64]; /* one partial per set bit of the leaf count */
    int depth = 0;
    int64_t count = 0, i = 0;
    for (; i + LEAF <= n; i += LEAF) {
        const float *p = x + i;
        vf a0 = V_LOAD(p), a1 = V_LOAD(p + VW), a2 = V_LOAD(p + 2 * VW), a3 = V_LOAD(p + 3 * VW);
        for (int k = 4 * VW; k < LEAF; k += 4 * VW) {
            a0 = V_ADD(a0, V_LOAD(p + k));
            a1 = V_ADD(a1, V_LOAD(p + k + VW));
            a2 = V_ADD(a2, V_LOAD(p + k + 2 * VW));
            a3 = V_ADD(a3, V_LOAD(p + k + 3 * VW));
        }
        vf s = V_ADD(V_ADD(a0, a1), V_ADD(a2, a3));
        for (int64_t c = ++count; !(c & 1); c >>= 1) s = V_ADD(stack[--depth], s);
        stack[depth++] = s;
    }
    vf t = V_ZERO();
    for (; i + VW <= n; i += VW) t = V_ADD(t, V_LOAD(x + i));
    if (i < n) t = V_ADD(t, V_LOAD_N(x + i, n - i));
    while (depth > 0) t = V_ADD(stack[--depth], t);
    return V_HSUM(t);
}

/* Running max/min that ignore NaN in x; NaN is collected in `nan` (1.0 lanes). */
#define DEF_EXTREME_ROW(NAME, VOP, HOP, PAD)                                        \
    static float ISA(NAME)(int64_t n, const float *x) {                             \
        vf m0 = V_SET1(PAD), m1 = m0, m2 = m0, m3 = m0, nan = V_ZERO();             \
        int64_t i = 0;                                                              \
        for (; i + 4 * VW <= n; i += 4 * VW) {                                      \
            vf x0 = V_LOAD(x + i), x1 = V_LOAD(x + i + VW);                         \
            vf x2 = V_LOAD(x + i + 2 * VW), x3 = V_LOAD(x + i + 3 * VW);            \
            m0 = VOP(x0, m0), m1 = VOP(x1, m1), m2 = VOP(x2, m2), m3 = VOP(x3, m3); \
            nan = V_MAX(nan, V_MAX(V_CMP(x0, x1, _CMP_UNORD_Q),                     \
                                   V_CMP(x2, x3, _CMP_UNORD_Q)));                   \
        }                                                                           \
        for (; i < n; i += VW) {                                                    \
            vf v = i + VW <= n ? V_LOAD(x + i) : v_load_pad(x + i, n - i, PAD);     \
            m0 = VOP(v, m0);                                                        \
            nan = V_MAX(nan, V_CMP(v, v, _CMP_UNORD_Q));                            \
        }                                                                           \
        if (V_HMAX(nan) != 0.0f) return NAN;                                        \
        return HOP(VOP(VOP(m0, m1), VOP(m2, m3)));                                  \
    }
DEF_EXTREME_ROW(max_row, V_MAX, V_HMAX, -INFINITY)
DEF_EXTREME_ROW(min_row, V_MIN, V_HMIN, INFINITY)

/* acc[j] = OP(x[j], acc[j]) for j < n, four vectors at a time. */
#define DEF_COL(NAME, OP)                                                           \
    static void ISA(NAME)(int64_t n, const float *x, float *acc) {                  \
        int64_t i = 0;                                                              \
        for (; i + 4 * VW <= n; i += 4 * VW) {                                      \
            V_STORE(acc + i, OP(V_LOAD(x + i), V_LOAD(acc + i)));                   \
            V_STORE(acc + i + VW, OP(V_LOAD(x + i + VW), V_LOAD(acc + i + VW)));    \
            V_STORE(acc + i + 2 * VW, OP(V_LOAD(x + i + 2 * VW), V_LOAD(acc + i + 2 * VW))); \
            V_STORE(acc + i + 3 * VW, OP(V_LOAD(x + i + 3 * VW), V_LOAD(acc + i + 3 * VW))); \
        }                                                                           \
        for (; i + VW <= n; i += VW) V_STORE(acc + i, OP(V_LOAD(x + i), V_LOAD(acc + i))); \
        if (i < n)                                                                  \
            V_STORE_N(acc + i, OP(V_LOAD_N(x + i, n - i), V_LOAD_N(acc + i, n - i)), n - i); \
    }
/* V_MAX(x, acc) keeps a NaN acc; a NaN x is selected explicitly. */
#define C_SUM(x, a) V_ADD(x, a)
#define C_MAX(x, a) V_WHERE(x, x, _CMP_UNORD_Q, x, V_MAX(x, a))
#define C_MIN(x, a) V_WHERE(x, x, _CMP_UNORD_Q, x, V_MIN(x, a))
DEF_COL(sum_col, C_SUM)
DEF_COL(max_col, C_MAX)
DEF_COL(min_col, C_MIN)

void ISA(rt_simd_fill_reduce)(rt_simd *t) {
    t->sum_row = ISA(sum_row);
    t->max_row = ISA(max_row);
    t->min_row = ISA(min_row);
    t->sum_col = ISA(sum_col);
    t->max_col = ISA(max_col);
    t->min_col = ISA(min_col);
}
