/*
 * ew_simd.c — f32 elementwise inner loops, one copy per ISA.
 *
 * The iterator (iter.c) reduces every elementwise op to runs where each input
 * is contiguous or a broadcast scalar; these are the loops over such runs. Each
 * function is one vector expression (simd.h names) applied VW floats at a time,
 * with the tail handled by the same expression on a zero-padded vector.
 * exp is V_EXP (simd.h: Sleef's algorithm, inline), and tanh V_TANH, built
 * from its steps; the other transcendentals are Sleef's 1-ulp functions for
 * this ISA. With AVX-512, sigmoid, silu and both GELUs are piecewise
 * polynomials (rt_tabfn, runtime.h) with the exp forms for the far negative
 * tail; AVX2 and SSE2 use the exp forms throughout. The GELU's far negative
 * tail is rt_tailfn's on every ISA. max/min propagate NaN as
 * torch.maximum does; comparisons write bytes of 0/1.
 */
#include "simd.h"

static inline vf v_abs(vf x) {
    union { uint32_t u; float f; } m = {0x7fffffffu};
    return V_AND(x, V_SET1(m.f));
}
static inline vf v_sigmoid_exp(vf x) {
    return V_DIV(V_SET1(1.0f), V_ADD(V_SET1(1.0f), V_EXP(V_XOR(x, V_SET1(-0.0f)))));
}
/* GELU through erfc: x/2 (1 + erf(x/sqrt2)) = x (1 - erfc(z)/2) for x >= 0 and
 * x erfc(z)/2 for x < 0, with z = |x|/sqrt2. erfc(z) = t exp(-z^2 + P(t)),
 * t = 1/(1 + z/2), is the Chebyshev fit of Numerical Recipes (erfcc), whose
 * error is below 1.2e-7 *relative* for all z >= 0, so GELU stays accurate in its
 * small negative tail, where an absolute-error erf (as PyTorch uses) loses all
 * relative precision. About 3x cheaper than Sleef's 1-ulp erf; em_erf itself
 * keeps Sleef's. */
static inline vf v_gelu_erfc(vf x) {
    /* |x| at most rt_tab_gelu.hi: beyond, the positive side rounds to x and the
     * negative side is v_gelu_tail's, and no lane makes a subnormal */
    vf z = V_MUL(V_MIN(V_SET1(rt_tab_gelu.hi), v_abs(x)), V_SET1(0.70710678118654752f)); /* |x|/sqrt2 */
    vf t = V_DIV(V_SET1(1.0f), V_FMA(V_SET1(0.5f), z, V_SET1(1.0f)));
    /* P(t) by Estrin's scheme (8% faster than Horner's in the chain workload,
     * which is bound by its dependent FMAs as much as by their count) */
    vf t2 = V_MUL(t, t), t4 = V_MUL(t2, t2), q[5];
    for (int j = 0; j < 5; j++) q[j] = V_FMA(V_SET1(RT_GELU_P[2 * j]), t, V_SET1(RT_GELU_P[2 * j + 1]));
    vf p = V_FMA(V_FMA(V_FMA(q[0], t2, q[1]), t4, V_FMA(q[2], t2, q[3])), t2, q[4]);
    vf half_c = V_MUL(V_MUL(V_SET1(0.5f), t), V_EXP(V_SUB(p, V_MUL(z, z))));
    vf pos = V_MUL(x, V_SUB(V_SET1(1.0f), half_c));
    return V_WHERE(x, V_ZERO(), _CMP_GE_OQ, pos, V_MUL(x, half_c));
}
/* The GELU below -rt_tab_gelu.hi: runtime.h's rt_tailfn says how and why. */
static inline vf v_gelu_tail(vf x) {
    const rt_tailfn *t = &rt_tail_gelu;
    vf v = V_MIN(V_SET1(t->end), V_MAX(V_SET1(rt_tab_gelu.hi), V_XOR(x, V_SET1(-0.0f))));
    vf h = V_MUL(v, v), l = V_FMA(v, v, V_XOR(h, V_SET1(-0.0f)));
    vf u = V_DIV(V_SET1(1.0f), h), r = V_SET1(t->r[0]);
    for (int p = 1; p <= RT_TAIL_DEG; p++) r = V_FMA(r, u, V_SET1(t->r[p]));
    r = V_FMA(V_MUL(V_SET1(-0.5f), l), r, r);
    vf y = V_MUL(V_MUL(V_SET1(-RT_INV_SQRT_2PI), r), V_EXP_NONPOSITIVE(V_MUL(V_SET1(-0.5f), h)));
    return V_WHERE(x, V_SET1(-t->end), _CMP_LT_OQ, V_MUL(x, V_ZERO()), y);
}
static inline vf v_isnan_select(vf a, vf r) { return V_WHERE(a, a, _CMP_UNORD_Q, a, r); }

#define U_NEG(x) V_XOR(x, V_SET1(-0.0f))
#define U_ABS(x) v_abs(x)
#define U_EXP(x) V_EXP(x)
#define U_LOG(x) SLEEF_SFX(log)(x)
#define U_SQRT(x) V_SQRT(x)
#define U_RSQRT(x) V_DIV(V_SET1(1.0f), V_SQRT(x))
#define U_RECIPROCAL(x) V_DIV(V_SET1(1.0f), x)
#define U_SIN(x) SLEEF_SFX(sin)(x)
#define U_COS(x) SLEEF_SFX(cos)(x)
/* tanh: ember's (simd.h), inline and about twice as fast as Sleef's 3.5-ulp
 * tanh, which was a fifth of the tiny workload's compiled call; SSE2 keeps
 * Sleef's u35 (u10 costs three times as much). */
#ifdef V_TANH
#define U_TANH(x) V_TANH(x)
#else
#define U_TANH(x) SLEEF_SFX35(tanh)(x)
#endif
#define U_ERF(x) SLEEF_SFX(erf)(x)
#define U_SIGMOID(x) v_sigmoid(x)
#define U_RELU(x) V_MAX(V_ZERO(), x) /* max(0, NaN) is NaN: maxps returns its second operand */
#define U_GELU(x) v_gelu(x)
/* The tanh GELU without tanh: x/2 (1 + tanh(y)) = x sigmoid(2y) exactly, so
 * x / (1 + e^(-2y)), y = sqrt(2/pi) (x + 0.044715 x^3): one inline exp and a
 * divide instead of a call of Sleef's tanh, and no cancellation in 1 + tanh
 * where tanh is near -1 (the negative tail keeps its relative accuracy). */
static inline vf v_gelu_tanh_exp(vf x) {
    return V_DIV(x, V_ADD(V_SET1(1.0f), V_EXP(V_MUL(V_SET1(-1.5957691216057308f),
                                                    V_FMA(V_MUL(V_SET1(0.044715f), x), V_MUL(x, x), x)))));
}
#if defined(RT_ISA_AVX512)
/* rt_tabfn's g(v) (runtime.h says how and why), operation for operation as
 * codegen/emit_ops.c's cg_tab_g. */
static inline vf v_tab_g(vf v, const rt_tabfn *t) {
    vf k = V_SET1(t->k), magic = V_SET1(RT_TAB_MAGIC);
    vf s = _mm512_fmadd_round_ps(v, k, magic, RT_TAB_ROUND_DOWN);
    vf r = _mm512_fmsub_ps(v, k, V_SUB(s, magic));
    __m512i i = _mm512_castps_si512(s);
    vf g = _mm512_permutex2var_ps(V_LOAD(t->c[RT_TAB_DEG]), i, V_LOAD(t->c[RT_TAB_DEG] + 16));
    for (int p = RT_TAB_DEG - 1; p >= 0; p--)
        g = V_FMA(g, r, _mm512_permutex2var_ps(V_LOAD(t->c[p]), i, V_LOAD(t->c[p] + 16)));
    return g;
}
/* A GELU: max(x, 0) - v h(v), v = min(|x|, hi). */
static inline vf v_tab_gelu(vf x, const rt_tabfn *t) {
    vf v = V_MIN(V_SET1(t->hi), v_abs(x)); /* NaN stays NaN: minps gives its second operand */
    return _mm512_fnmadd_ps(v, v_tab_g(v, t), V_MAX(V_ZERO(), x));
}
/* Lanes of x below `below` take slow(x) instead of fast: the far negative tail. */
#define V_TAB_TAIL(x, below, fast, slow)                                                          \
    __extension__({                                                                               \
        __mmask16 far_ = _mm512_cmp_ps_mask(x, V_SET1(below), _CMP_LT_OQ);                        \
        vf r_ = fast;                                                                             \
        if (__builtin_expect(far_ != 0, 0)) r_ = _mm512_mask_blend_ps(far_, r_, slow(x));           \
        r_;                                                                                       \
    })
static inline vf v_sigmoid(vf x) {
    const rt_tabfn *t = &rt_tab_sigmoid;
    vf fast = V_WHERE(x, V_SET1(t->hi), _CMP_GE_OQ, V_SET1(1.0f), v_tab_g(x, t));
    return V_TAB_TAIL(x, t->lo, fast, v_sigmoid_exp);
}
static inline vf v_gelu(vf x) { return V_TAB_TAIL(x, -rt_tab_gelu.hi, v_tab_gelu(x, &rt_tab_gelu), v_gelu_tail); }
static inline vf v_gelu_tanh(vf x) {
    return V_TAB_TAIL(x, -rt_tab_gelu_tanh.hi, v_tab_gelu(x, &rt_tab_gelu_tanh), v_gelu_tanh_exp);
}
#else
#define V_TAB_TAIL(x, below, fast, slow)                                                          \
    __extension__({                                                                               \
        vf below_ = V_SET1(below), r_ = fast;                                                     \
        if (__builtin_expect(V_ANY_LT(x, below_), 0)) r_ = V_WHERE(x, below_, _CMP_LT_OQ, slow(x), r_); \
        r_;                                                                                       \
    })
#define v_sigmoid v_sigmoid_exp
static inline vf v_gelu(vf x) { return V_TAB_TAIL(x, -rt_tab_gelu.hi, v_gelu_erfc(x), v_gelu_tail); }
#define v_gelu_tanh v_gelu_tanh_exp
#endif
#define U_GELU_TANH(x) v_gelu_tanh(x)
#define U_SILU(x) V_MUL(x, v_sigmoid(x))

#define DEF_UNARY(NAME)                                                             \
    static void ISA(u_##NAME)(int64_t n, const float *x, float *y) {                \
        int64_t i = 0;                                                              \
        for (; i + VW <= n; i += VW) {                                              \
            vf v = V_LOAD(x + i);                                                   \
            V_STORE(y + i, U_##NAME(v));                                            \
        }                                                                           \
        if (i < n) {                                                                \
            vf v = V_LOAD_N(x + i, n - i);                                          \
            V_STORE_N(y + i, U_##NAME(v), n - i);                                   \
        }                                                                           \
    }
RT_UNARY_LIST(DEF_UNARY)

#define B_ADD(a, b) V_ADD(a, b)
#define B_SUB(a, b) V_SUB(a, b)
#define B_MUL(a, b) V_MUL(a, b)
#define B_DIV(a, b) V_DIV(a, b)
#define B_POW(a, b) SLEEF_SFX(pow)(a, b)
#define B_MAX(a, b) v_isnan_select(a, V_MAX(a, b))
#define B_MIN(a, b) v_isnan_select(a, V_MIN(a, b))
#define B_EQ(a, b) V_CMP(a, b, _CMP_EQ_OQ)
#define B_NE(a, b) V_CMP(a, b, _CMP_NEQ_UQ)
#define B_LT(a, b) V_CMP(a, b, _CMP_LT_OQ)
#define B_LE(a, b) V_CMP(a, b, _CMP_LE_OQ)
#define B_GT(a, b) V_CMP(a, b, _CMP_GT_OQ)
#define B_GE(a, b) V_CMP(a, b, _CMP_GE_OQ)

/* Stores for arithmetic (float out) and comparisons (byte out). */
#define ST_F(y, i, v) V_STORE((float *)(y) + (i), v)
#define STN_F(y, i, v, m) V_STORE_N((float *)(y) + (i), v, m)
#define ST_B(y, i, v) V_STORE_BOOL((uint8_t *)(y) + (i), v)
#define STN_B(y, i, v, m)                                                           \
    do {                                                                            \
        uint8_t t_[VW];                                                             \
        V_STORE_BOOL(t_, v);                                                        \
        memcpy((uint8_t *)(y) + (i), t_, (size_t)(m));                              \
    } while (0)

/* One loop per stride pattern, so the broadcast operand is hoisted. */
#define BIN_LOOP(OP, ST, STN, LA, LB, LAN, LBN)                                     \
    {                                                                               \
        int64_t i = 0;                                                              \
        for (; i + VW <= n; i += VW) ST(y, i, OP(LA, LB));                          \
        if (i < n) STN(y, i, OP(LAN, LBN), n - i);                                  \
    }
#define DEF_BINARY(NAME, ST, STN)                                                   \
    static void ISA(b_##NAME)(int64_t n, const float *a, int64_t sa, const float *b, \
                              int64_t sb, void *y) {                                \
        if (sa && sb)                                                               \
            BIN_LOOP(B_##NAME, ST, STN, V_LOAD(a + i), V_LOAD(b + i),               \
                     V_LOAD_N(a + i, n - i), V_LOAD_N(b + i, n - i))                \
        else if (sa) {                                                              \
            vf vb = V_SET1(*b);                                                     \
            BIN_LOOP(B_##NAME, ST, STN, V_LOAD(a + i), vb, V_LOAD_N(a + i, n - i), vb) \
        } else if (sb) {                                                            \
            vf va = V_SET1(*a);                                                     \
            BIN_LOOP(B_##NAME, ST, STN, va, V_LOAD(b + i), va, V_LOAD_N(b + i, n - i)) \
        } else {                                                                    \
            vf va = V_SET1(*a), vb = V_SET1(*b);                                    \
            BIN_LOOP(B_##NAME, ST, STN, va, vb, va, vb)                             \
        }                                                                           \
    }
#define DEF_ARITH(NAME) DEF_BINARY(NAME, ST_F, STN_F)
#define DEF_CMP(NAME) DEF_BINARY(NAME, ST_B, STN_B)
DEF_ARITH(ADD) DEF_ARITH(SUB) DEF_ARITH(MUL) DEF_ARITH(DIV) DEF_ARITH(POW)
DEF_ARITH(MAX) DEF_ARITH(MIN)
DEF_CMP(EQ) DEF_CMP(NE) DEF_CMP(LT) DEF_CMP(LE) DEF_CMP(GT) DEF_CMP(GE)

/* f32 -> i32, saturating, NaN -> 0: clamped in the float domain with selects
 * only, which the vectoriser turns into max/min/blend around one truncating
 * convert (plain C: this file is compiled per ISA at -O3). */
static void ISA(cast_f32_i32)(int64_t n, const float *x, int32_t *y) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float c = v < -2147483648.0f ? -2147483648.0f : v;
        c = c > 2147483520.0f ? 2147483520.0f : c; /* the largest float below 2^31 */
        int32_t r = (int32_t)(c == c ? c : 0.0f);
        y[i] = v >= 2147483648.0f ? INT32_MAX : r;
    }
}

void ISA(rt_simd_fill_ew)(rt_simd *t) {
    t->cast_f32_i32 = ISA(cast_f32_i32);
#define X(NAME) t->unary[RT_UNARY_##NAME] = ISA(u_##NAME);
    RT_UNARY_LIST(X)
#undef X
#define X(NAME) t->binary[RT_BINARY_##NAME] = ISA(b_##NAME);
    RT_BINARY_LIST(X)
#undef X
}
