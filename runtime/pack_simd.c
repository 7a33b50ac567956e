/*
 * pack_simd.c — packing a GEMM operand panel: a transpose into k-major rows,
 * one copy per ISA.
 *
 * The generated GEMM (codegen/gemm_emit.c) multiplies broadcast scalars of one
 * operand by vectors of the other, whose lanes must be contiguous. When that
 * operand has its k dimension contiguous instead (the weights of every linear
 * layer, the activations read as x^T), a panel of it is packed first:
 *
 *     dst[k * vb + l] = src[l * ls + k]     for k < kn, l < lanes
 *     dst[k * vb + l] = 0                   for lanes <= l < vb (padding)
 *
 * With AVX-512 this is 16 x 16 blocks: 16 rows of 16 k loaded (masked past
 * kn), transposed in registers by four butterfly stages of vpermt2ps (each
 * swaps one bit of the row and column index), stored as 16 rows of the panel:
 * about 0.3 cycles an element, against ~1 for gathers. It is a runtime function
 * rather than generated code because the X86 backend spends ~30 ms selecting
 * instructions for those 64 shuffles in every module; compiled once here, it
 * costs nothing per compile. dst must have room for kn rounded up to 16 rows
 * (the last block stores whole rows); a panel narrower than a multiple of 16
 * lanes is stored masked. Other ISAs copy element by element (the generated
 * GEMM packs with gathers there: it calls this only for 16-lane code).
 */
#include "simd.h"

#if defined(RT_ISA_AVX512)
static inline void transpose16(__m512 *r) {
    for (int d = 1; d < 16; d *= 2) {
        int32_t mi[16], mj[16];
        for (int c = 0; c < 16; c++) {
            mi[c] = (c & d) ? 16 + c - d : c;
            mj[c] = (c & d) ? 16 + c : c + d;
        }
        __m512i ii = _mm512_loadu_si512(mi), ij = _mm512_loadu_si512(mj);
        for (int i = 0; i < 16; i++) {
            if (i & d) continue;
            __m512 a = _mm512_permutex2var_ps(r[i], ii, r[i + d]);
            __m512 b = _mm512_permutex2var_ps(r[i], ij, r[i + d]);
            r[i] = a, r[i + d] = b;
        }
    }
}

static void ISA(pack_panel)(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst) {
    for (int64_t g = 0; g < vb; g += 16) {
        for (int64_t k0 = 0; k0 < kn; k0 += 16) {
            int64_t left = kn - k0;
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __m512 r[16];
            for (int l = 0; l < 16; l++)
                r[l] = g + l < lanes ? _mm512_maskz_loadu_ps(m, src + (g + l) * ls + k0) : _mm512_setzero_ps();
            transpose16(r);
            __mmask16 w = vb - g >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (vb - g)) - 1);
            for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(dst + (k0 + i) * vb + g, w, r[i]);
        }
    }
}
#else
static void ISA(pack_panel)(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst) {
    for (int64_t k = 0; k < kn; k++)
        for (int64_t l = 0; l < vb; l++) dst[k * vb + l] = l < lanes ? src[l * ls + k] : 0.0f;
}
#endif

void ISA(rt_simd_fill_pack)(rt_simd *t) { t->pack_panel = ISA(pack_panel); }
