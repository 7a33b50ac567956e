/*
 * simd.h — one vocabulary for the f32 kernels of every ISA.
 *
 * Files named *_simd.c are compiled three times, with RT_ISA_AVX512, RT_ISA_AVX2
 * or RT_ISA_SSE2 defined (and the matching -m flags); this header maps a small
 * set of vector operations and the Sleef functions of that ISA onto one set of
 * names, so each kernel is written once. ISA(name) gives each compiled copy its
 * own symbol (name_avx512, ...). Only *_simd.c files include this header.
 *
 * Tails: V_LOAD_N/V_STORE_N move the first n < VW floats through a zeroed stack
 * buffer, so every kernel handles any length with full vectors and no masks.
 */
#ifndef EMBER_SIMD_H
#define EMBER_SIMD_H

#include "runtime.h"

#include <immintrin.h>
#include <sleef.h>
#include <string.h>

#if defined(RT_ISA_AVX512)
#define ISA_NAME avx512
#define VW 16
typedef __m512 vf;
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_MAX _mm512_max_ps /* returns the second operand when either is NaN */
#define V_MIN _mm512_min_ps
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_SQRT _mm512_sqrt_ps
#define V_AND(a, b) _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define V_XOR(a, b) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define V_HSUM(v) _mm512_reduce_add_ps(v)
#define V_HMAX(v) _mm512_reduce_max_ps(v)
#define V_HMIN(v) _mm512_reduce_min_ps(v)
/* Comparisons give a vector of 1.0f / 0.0f. */
#define V_CMP(a, b, pred) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, b, pred), V_SET1(1.0f))
/* Lanes where m (1.0/0.0 vector) is nonzero take a, others b. */
#define V_SELECT(m, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m, V_ZERO(), _CMP_NEQ_UQ), b, a)
/* (a pred b) ? t : f, lane by lane, straight from the comparison (no 1.0/0.0 vector). */
#define V_WHERE(a, b, pred, t, f) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, pred), f, t)
/* Stores 16 lanes of a 1.0/0.0 vector as 16 bytes of 1/0. */
#define V_STORE_BOOL(p, v) _mm_storeu_si128((__m128i *)(p), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)))
/* V_EXP's pieces (below): a lane mask, lanes zeroed where it is set, rounding
 * to nearest, and u 2^q by one vscalefps. */
typedef __mmask16 vmask;
#define V_MASK_LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define V_ANY_LT(a, b) (_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ) != 0) /* some lane of a below b's */
#define V_ZERO_WHERE(m, v) _mm512_maskz_mov_ps((__mmask16)~(m), v)
#define V_ROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_LDEXP(u, q) _mm512_scalef_ps(u, q)
#define SLEEF_SFX(f) Sleef_##f##f16_u10avx512f
#define SLEEF_SFX35(f) Sleef_##f##f16_u35avx512f
#define SLEEF_SQRT Sleef_sqrtf16_u05avx512f
#elif defined(RT_ISA_AVX2)
#define ISA_NAME avx2
#define VW 8
typedef __m256 vf;
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_MAX _mm256_max_ps
#define V_MIN _mm256_min_ps
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_SQRT _mm256_sqrt_ps
#define V_AND _mm256_and_ps
#define V_XOR _mm256_xor_ps
static inline float rt_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#define V_HSUM(v) rt_hsum8(v)
#define V_CMP(a, b, pred) _mm256_and_ps(_mm256_cmp_ps(a, b, pred), V_SET1(1.0f))
#define V_SELECT(m, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(m, V_ZERO(), _CMP_NEQ_UQ))
#define V_WHERE(a, b, pred, t, f) _mm256_blendv_ps(f, t, _mm256_cmp_ps(a, b, pred))
static inline void rt_store_bool8(void *p, __m256 v) {
    __m256i i = _mm256_cvttps_epi32(v);
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packus_epi16(w, w));
}
#define V_STORE_BOOL(p, v) rt_store_bool8(p, v)
/* V_EXP's pieces: u 2^q as two exact powers of two (no vscalefps), as Sleef does */
typedef __m256 vmask;
#define V_MASK_LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define V_ANY_LT(a, b) (_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_LT_OQ)) != 0)
#define V_ZERO_WHERE(m, v) _mm256_andnot_ps(m, v)
#define V_ROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
static inline __m256 rt_ldexp8(__m256 u, __m256 q) {
    __m256i qi = _mm256_cvttps_epi32(q), q1 = _mm256_srai_epi32(qi, 1), bias = _mm256_set1_epi32(127);
    __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(q1, bias), 23));
    __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(qi, q1), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(u, p1), p2);
}
#define V_LDEXP(u, q) rt_ldexp8(u, q)
#define SLEEF_SFX(f) Sleef_##f##f8_u10avx2
#define SLEEF_SFX35(f) Sleef_##f##f8_u35avx2
#define SLEEF_SQRT Sleef_sqrtf8_u05avx2
#elif defined(RT_ISA_SSE2)
#define ISA_NAME sse2
#define VW 4
typedef __m128 vf;
#define V_LOAD(p) _mm_loadu_ps(p)
#define V_STORE(p, v) _mm_storeu_ps(p, v)
#define V_SET1(x) _mm_set1_ps(x)
#define V_ZERO() _mm_setzero_ps()
#define V_ADD _mm_add_ps
#define V_SUB _mm_sub_ps
#define V_MUL _mm_mul_ps
#define V_DIV _mm_div_ps
#define V_MAX _mm_max_ps
#define V_MIN _mm_min_ps
#define V_FMA(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
#define V_SQRT _mm_sqrt_ps
#define V_AND _mm_and_ps
#define V_XOR _mm_xor_ps
static inline float rt_hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#define V_HSUM(v) rt_hsum4(v)
/* SSE2 has only the classic predicates; map the AVX ones kernels use. */
#define RT_SSE_CMP_EQ_OQ(a, b) _mm_cmpeq_ps(a, b)
#define RT_SSE_CMP_NEQ_UQ(a, b) _mm_cmpneq_ps(a, b)
#define RT_SSE_CMP_LT_OQ(a, b) _mm_cmplt_ps(a, b)
#define V_ANY_LT(a, b) (_mm_movemask_ps(_mm_cmplt_ps(a, b)) != 0)
#define RT_SSE_CMP_LE_OQ(a, b) _mm_cmple_ps(a, b)
#define RT_SSE_CMP_GT_OQ(a, b) _mm_cmpgt_ps(a, b)
#define RT_SSE_CMP_GE_OQ(a, b) _mm_cmpge_ps(a, b)
#define V_CMP(a, b, pred) _mm_and_ps(RT_SSE##pred(a, b), V_SET1(1.0f))
/* t where the all-ones lanes of k are, f elsewhere */
static inline __m128 rt_where4(__m128 k, __m128 t, __m128 f) { return _mm_or_ps(_mm_and_ps(k, t), _mm_andnot_ps(k, f)); }
#define V_SELECT(m, a, b) rt_where4(_mm_cmpneq_ps(m, _mm_setzero_ps()), a, b)
#define V_WHERE(a, b, pred, t, f) rt_where4(RT_SSE##pred(a, b), t, f)
#define RT_SSE_CMP_UNORD_Q(a, b) _mm_cmpunord_ps(a, b)
static inline void rt_store_bool4(void *p, __m128 v) {
    __m128i i = _mm_cvttps_epi32(v);
    __m128i w = _mm_packs_epi32(i, i);
    int32_t bytes = _mm_cvtsi128_si32(_mm_packus_epi16(w, w));
    memcpy(p, &bytes, 4);
}
#define V_STORE_BOOL(p, v) rt_store_bool4(p, v)
#define V_EXP(x) Sleef_expf4_u10sse2(x) /* no FMA here: Sleef's */
#define V_EXP_NONPOSITIVE(x) V_EXP(x)
#define SLEEF_SFX(f) Sleef_##f##f4_u10sse2
#define SLEEF_SFX35(f) Sleef_##f##f4_u35sse2
#define SLEEF_SQRT Sleef_sqrtf4_u05sse2
#else
#error "compile *_simd.c with one of RT_ISA_AVX512, RT_ISA_AVX2, RT_ISA_SSE2"
#endif

/* e^x (runtime.h's comment on V_EXP says what and why). SSE2 has no FMA, and
 * calls Sleef's. */
#ifndef V_EXP
/* The steps exp and tanh share: x = q ln 2 + s (*q, s by two FMAs), and
 * e^s - 1 = s + s^2 P(s). */
static inline vf rt_exp_reduced(vf x, vf *q) {
    *q = V_ROUND(V_MUL(x, V_SET1(RT_EXP_LOG2E)));
    vf s = V_FMA(*q, V_SET1(RT_EXP_LN2_LO), V_FMA(*q, V_SET1(RT_EXP_LN2_HI), x));
    vf u = V_SET1(RT_EXP_P[0]);
    for (int k = 1; k < 6; k++) u = V_FMA(u, s, V_SET1(RT_EXP_P[k]));
    return V_FMA(u, V_MUL(s, s), s);
}
/* e^x from x = q ln 2 + s, zero in the lanes of under (x below RT_EXP_LO,
 * -inf among them) whatever the steps made of them: the end both exps share. */
static inline vf rt_exp_finish(vf x, vmask under) {
    vf q, w = rt_exp_reduced(x, &q);
    return V_ZERO_WHERE(under, V_LDEXP(V_ADD(w, V_SET1(1.0f)), q));
}
static inline vf rt_exp(vf x) {
    vmask under = V_MASK_LT(x, V_SET1(RT_EXP_LO));
    return rt_exp_finish(V_ZERO_WHERE(under, V_MIN(V_SET1(RT_EXP_HI), x)), under);
}
#define V_EXP(x) rt_exp(x)
/* rt_exp of an x at most 0, -inf or NaN (a softmax's x - max), the same
 * result with a shorter chain: without the clamp at RT_EXP_HI and without
 * zeroing x below RT_EXP_LO first (rt_exp_finish zeroes those lanes at the
 * end); codegen's cg_exp_nonpositive. */
static inline vf rt_exp_nonpositive(vf x) { return rt_exp_finish(x, V_MASK_LT(x, V_SET1(RT_EXP_LO))); }
#define V_EXP_NONPOSITIVE(x) rt_exp_nonpositive(x)

/* tanh (runtime.h's comment on RT_TANH_HI says how), within 3 ulp; SSE2 keeps
 * Sleef's. */
static inline vf rt_tanh(vf x) {
    vf sign = V_AND(x, V_SET1(-0.0f));
    vf y = V_MIN(V_SET1(RT_TANH_HI), V_XOR(x, sign)); /* a NaN stays */
    vf q, w = rt_exp_reduced(V_ADD(y, y), &q);
    vf p = V_LDEXP(V_SET1(1.0f), q);
    vf e = V_FMA(p, w, V_SUB(p, V_SET1(1.0f)));
    return V_XOR(V_DIV(e, V_ADD(e, V_SET1(2.0f))), sign);
}
#define V_TANH(x) rt_tanh(x)
#endif

#define RT_CAT_(a, b) a##_##b
#define RT_CAT(a, b) RT_CAT_(a, b)
#define ISA(name) RT_CAT(name, ISA_NAME) /* name_avx512, ... */

/* Horizontal max/min for the narrower ISAs, through a stack array. */
#ifndef V_HMAX
static inline float rt_hmax(vf v) {
    float t[VW];
    V_STORE(t, v);
    float m = t[0];
    for (int i = 1; i < VW; i++) m = t[i] > m ? t[i] : m;
    return m;
}
static inline float rt_hmin(vf v) {
    float t[VW];
    V_STORE(t, v);
    float m = t[0];
    for (int i = 1; i < VW; i++) m = t[i] < m ? t[i] : m;
    return m;
}
#define V_HMAX(v) rt_hmax(v)
#define V_HMIN(v) rt_hmin(v)
#endif

/* Loads the first n (< VW) floats of p, zero-filling the rest. */
static inline vf V_LOAD_N(const float *p, int64_t n) {
    float t[VW] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    return V_LOAD(t);
}
/* Stores the first n (< VW) lanes of v to p. */
static inline void V_STORE_N(float *p, vf v, int64_t n) {
    float t[VW];
    V_STORE(t, v);
    memcpy(p, t, (size_t)n * sizeof(float));
}

#endif /* EMBER_SIMD_H */
