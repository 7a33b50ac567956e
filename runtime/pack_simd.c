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
 *
 * The same blocks transpose a whole f32 matrix for em_contiguous (tensor.c):
 * [4096, 1024]^T took 5.7 ms through 32 x 32 tiles of scalar copies and 3.3
 * in PyTorch (one thread, Zen 5); in blocks, 2.2 (ember-bench-ops). Only
 * loads, stores and permutes touch the data, so any 32-bit words (i32) pass
 * through unchanged.
 */
#include "simd.h"

#if defined(RT_ISA_AVX512)
/* The butterfly's vpermt2ps indices, stage d = 1, 2, 4, 8: the first result
 * takes lane c of row i where bit d of c is clear, else lane c - d of row i + d
 * (16 + c - d); the second takes lane c + d of row i, else lane c of row i + d.
 * Constants, so they are loaded once, not built (a table built on the stack
 * and reloaded stalls on store forwarding: that packer spent 17% of block). */
static const int32_t BFLY[4][2][16] __attribute__((aligned(64))) = {
    {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}, {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
    {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}, {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
    {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}, {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
    {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}, {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
};

static inline void load_bfly(__m512i *idx) {
    for (int s = 0; s < 4; s++)
        idx[2 * s] = _mm512_load_si512(BFLY[s][0]), idx[2 * s + 1] = _mm512_load_si512(BFLY[s][1]);
}

static inline void transpose16(__m512 *r, const __m512i *idx) {
#pragma GCC unroll 4
    for (int s = 0, d = 1; s < 4; s++, d *= 2)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i & d) continue;
            __m512 a = _mm512_permutex2var_ps(r[i], idx[2 * s], r[i + d]);
            __m512 b = _mm512_permutex2var_ps(r[i], idx[2 * s + 1], r[i + d]);
            r[i] = a, r[i + d] = b;
        }
}

static void ISA(pack_panel)(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst) {
    __m512i idx[8];
    load_bfly(idx);
    for (int64_t g = 0; g < vb; g += 16) {
        __mmask16 w = vb - g >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (vb - g)) - 1);
        for (int64_t k0 = 0; k0 < kn; k0 += 16) {
            int64_t left = kn - k0;
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __m512 r[16];
            const float *p = src + g * ls + k0;
            if (g + 16 <= lanes) {
#pragma GCC unroll 16
                for (int l = 0; l < 16; l++) r[l] = _mm512_maskz_loadu_ps(m, p + l * ls);
            } else {
#pragma GCC unroll 16
                for (int l = 0; l < 16; l++) r[l] = g + l < lanes ? _mm512_maskz_loadu_ps(m, p + l * ls) : _mm512_setzero_ps();
            }
            transpose16(r, idx);
            float *q = dst + k0 * vb + g;
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(q + i * vb, w, r[i]);
        }
    }
}

/* The transpose of em_contiguous (rt_simd's transpose): 16 x 16 blocks as in
 * pack_panel, masked at the edges, in bands of TRANSPOSE_BAND source rows so
 * that a sweep over the output rows touches that many source pages, not all
 * of them. */
#define TRANSPOSE_BAND 256
static void ISA(transpose)(int64_t rows, int64_t cols, const float *src, int64_t ss, float *dst, int64_t ds) {
    __m512i idx[8];
    load_bfly(idx);
    for (int64_t jb = 0; jb < cols; jb += TRANSPOSE_BAND) {
        int64_t je = cols - jb < TRANSPOSE_BAND ? cols : jb + TRANSPOSE_BAND;
        for (int64_t i0 = 0; i0 < rows; i0 += 16) {
            int64_t ni = rows - i0 < 16 ? rows - i0 : 16;
            __mmask16 mi = (__mmask16)((1u << ni) - 1);
            for (int64_t j0 = jb; j0 < je; j0 += 16) {
                int64_t nj = je - j0 < 16 ? je - j0 : 16;
                __mmask16 mj = (__mmask16)((1u << nj) - 1);
                __m512 r[16];
#pragma GCC unroll 16
                for (int l = 0; l < 16; l++) /* source row j0 + l: output column j0 + l */
                    r[l] = l < nj ? _mm512_maskz_loadu_ps(mi, src + (j0 + l) * ss + i0) : _mm512_setzero_ps();
                transpose16(r, idx);
                for (int i = 0; i < ni; i++) _mm512_mask_storeu_ps(dst + (i0 + i) * ds + j0, mj, r[i]);
            }
        }
    }
}
#else
static void ISA(pack_panel)(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst) {
    for (int64_t k = 0; k < kn; k++)
        for (int64_t l = 0; l < vb; l++) dst[k * vb + l] = l < lanes ? src[l * ls + k] : 0.0f;
}
#endif

void ISA(rt_simd_fill_pack)(rt_simd *t) {
    t->pack_panel = ISA(pack_panel);
#if defined(RT_ISA_AVX512)
    t->transpose = ISA(transpose); /* elsewhere NULL: tensor.c's scalar tiles */
#endif
}
