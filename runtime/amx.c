/*
 * amx.c — f32 products on the AMX tile unit, exactly split into bf16 pieces.
 *
 * Sapphire Rapids' AMX multiplies 16 x 32 by 32 x 16 bf16 tiles into f32
 * accumulators (TDPBF16PS: 16 cycles for 8192 multiply-adds, against 32 f32
 * multiply-adds a cycle for AVX-512's two FMA ports). bf16 alone would round
 * every operand to 8 bits, so each f32 x is cut into three bf16 pieces
 * x = x1 + x2 + x3, exactly: x1 is the bf16 nearest x, x2 the bf16 nearest
 * x - x1 (which is exact in f32), x3 = x - x1 - x2 (at most 8 significant bits,
 * exact in bf16 unless it falls below bf16's normal range, 2^-126, which AMX
 * reads as zero); |x2| <= 2^-8 |x| and |x3| <= 2^-16 |x|. A product x y is then
 * six pieces' products x1 y1 + x1 y2 + x2 y1 + x1 y3 + x2 y2 + x3 y1, each exact
 * in f32, accumulated in f32 by the tile unit's FMAs; the three left out are
 * below 2^-23 |x y| together, about the rounding of one f32 product. So a dot
 * product's error is that of an f32 one (a few ulps, from the sums' order and
 * rounding): "bf16x6" of Henry, Tang and Heinecke, "Leveraging the bfloat16
 * artificial intelligence datatype for higher-precision computations" (2019).
 * (Truncated pieces, the first try, leave out up to 2^-20 |x y|: 8 ulps, which
 * tests/codegen/test_gemm_amx.c's bound caught on k = 1.)
 * Six tile products for one f32 product still leave 16 / 6 = 2.7 times AVX-512's
 * peak: this machine's tiles ran at 290-400 GFLOP/s against an FMA peak of
 * 150-180. Splitting B costs about as much again at 128 rows (each element of B
 * is split once a call and serves M rows); most of it now runs between the tile
 * products of the panel before (rt_amx_tile_next). This VM's tile unit is also
 * shared with whatever else runs on its core: in some minutes the tiles ran at
 * 105 GFLOP/s while the FMA peak stayed at 165, and the AMX code was then up to
 * 1.3x slower than the FMA code.
 *
 * What differs from f32 FMAs: an infinity times an element with a zero piece
 * (16 significant bits or fewer, 1.0 say) gives NaN (inf * 0), and values
 * below 2^-126 (pieces or results) are flushed to zero. NaN stays NaN.
 *
 * Layouts (bf16 elements; a tile is 16 rows of 64 bytes, 1 KiB):
 *   rows ("A"): [row group of 16][k block of 32][piece][16 rows][32 k]
 *   cols ("B"): [col group of 16][k block of 32][piece][16 k pairs][16 cols][2 k]
 * Rows, columns and k past the operand are zero. codegen/gemm_emit.c packs the
 * row operand once a call (program.c) and each panel of 32 columns on the
 * stack, then calls rt_amx_tile_next per 32 x 32 tile of C, which also packs
 * a share of the next panel between its tile products, and runs the tile's
 * epilogue on the result.
 *
 * The kernels are compiled for AVX-512 + AMX by target pragmas, so this file
 * builds and loads anywhere; rt_amx_usable() says whether they may run: the
 * CPU has AMX-TILE and AMX-BF16, the kernel grants the tile state
 * (arch_prctl(ARCH_REQ_XCOMP_PERM)), and EMBER_AMX is not 0.
 */
#include "runtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define RT_AMX_BUILD 1
#endif

/* ---- may the tile unit run here? ------------------------------------------------------ */

static bool usable;
static pthread_once_t usable_once = PTHREAD_ONCE_INIT;

#ifdef RT_AMX_BUILD
enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };

static void probe(void) {
    const char *env = getenv("EMBER_AMX");
    if (env && !strcmp(env, "0")) return;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    bool tile = d & (1u << 24), bf16 = d & (1u << 22), avx512bf16 = false;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) avx512bf16 = a & (1u << 5);
    if (!tile || !bf16 || !avx512bf16 || !__builtin_cpu_supports("avx512bw")) return;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return;
    usable = true;
}
#else
static void probe(void) {}
#endif

bool rt_amx_usable(void) {
    pthread_once(&usable_once, probe);
    return usable;
}

int64_t rt_amx_packed_bytes(int64_t rows, int64_t k) {
    return (rows + 31) / 32 * 32 * ((k + 31) / 32 * 32) * 3 * 2;
}

/* ---- the kernels ---------------------------------------------------------------------- */

#ifdef RT_AMX_BUILD
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")
#include <immintrin.h>

/* x to its nearest bf16 (ties to even) as f32; values that would round up
 * to infinity are truncated instead, so a finite x keeps a finite x1. */
static inline __m512 round_bf16(__m512 x) {
    __m512i u = _mm512_castps_si512(x), mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i up = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd);
    __mmask16 near_max = _mm512_cmpge_epu32_mask(mag, _mm512_set1_epi32(0x7f7f8000)) &
                         _mm512_cmplt_epu32_mask(mag, _mm512_set1_epi32(0x7f800000));
    up = _mm512_mask_mov_epi32(up, near_max, u);
    return _mm512_castsi512_ps(_mm512_and_si512(up, _mm512_set1_epi32((int)0xffff0000u)));
}

/* x = a + b + c exactly, each with at most 8 significant bits: a the nearest
 * bf16 to x, b the nearest to x - a, c the rest (|b| <= 2^-8 |x|, |c| <=
 * 2^-16 |x|: the products left out are below 2^-23 |x y| together). Where
 * x is a itself (an infinity among them) b and c are 0; NaN gives NaN pieces. */
static inline void split3(__m512 x, __m512 *a, __m512 *b, __m512 *c) {
    *a = round_bf16(x);
    __mmask16 same = _mm512_cmp_ps_mask(x, *a, _CMP_EQ_OQ);
    __m512 r = _mm512_maskz_sub_ps((__mmask16)~same, x, *a);
    *b = round_bf16(r);
    *c = _mm512_sub_ps(r, *b);
}

/* x to a nearest bf16 (ties away from zero) as f32, by integer rounding:
 * add half of bf16's last place to the magnitude bits, clear the low 16.
 * Two instructions; past bf16's largest finite it would give infinity. */
static inline __m512 near_bf16(__m512 x) {
    __m512i u = _mm512_add_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(0x8000));
    return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}

/* split3 of x0 (lanes 0-15) and x1 (16-31), as three vectors of 32 bf16
 * pieces. Each piece is a nearest bf16 (near_bf16: ties away from zero,
 * which bounds the pieces as ties to even does), so a piece's bf16 is its
 * high half and the pieces pack by one word permute each. near_bf16 would
 * round a finite x past bf16's largest to infinity, so blocks with an |x|
 * that large, an infinity or a NaN take split3. (This replaced rounding by
 * vcvtne2ps2bf16 and widening back: B's packing went from 0.47 to 0.41 ns
 * an element, the rows' from 0.35 to 0.29, in one process.) */
static inline void split32(__m512 x0, __m512 x1, __m512i *pa, __m512i *pb, __m512i *pc) {
    const __m512 big = _mm512_castsi512_ps(_mm512_set1_epi32(0x7f7f8000));
    if (_mm512_cmp_ps_mask(_mm512_abs_ps(x0), big, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(_mm512_abs_ps(x1), big, _CMP_NLT_UQ)) {
        __m512 a[2], b[2], c[2];
        split3(x0, &a[0], &b[0], &c[0]);
        split3(x1, &a[1], &b[1], &c[1]);
        /* exact: every piece has at most 8 significant bits */
        *pa = (__m512i)_mm512_cvtne2ps_pbh(a[1], a[0]);
        *pb = (__m512i)_mm512_cvtne2ps_pbh(b[1], b[0]);
        *pc = (__m512i)_mm512_cvtne2ps_pbh(c[1], c[0]);
        return;
    }
    const __m512i high = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                          25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __m512 a0 = near_bf16(x0), a1 = near_bf16(x1);
    __m512 r0 = _mm512_sub_ps(x0, a0), r1 = _mm512_sub_ps(x1, a1); /* exact */
    __m512 b0 = near_bf16(r0), b1 = near_bf16(r1);
    __m512 c0 = _mm512_sub_ps(r0, b0), c1 = _mm512_sub_ps(r1, b1); /* exact, at most 8 bits */
    *pa = _mm512_permutex2var_epi16(_mm512_castps_si512(a0), high, _mm512_castps_si512(a1));
    *pb = _mm512_permutex2var_epi16(_mm512_castps_si512(b0), high, _mm512_castps_si512(b1));
    *pc = _mm512_permutex2var_epi16(_mm512_castps_si512(c0), high, _mm512_castps_si512(c1));
}

/* Rows [i0, i1) of 16 rows by 32 k of src (row i, k j at src[i * rs + j * ks];
 * zero past rows and kn) as their three pieces: p[piece][i] holds row i's 32
 * k as bf16. */
static inline void split16x32(const float *src, int64_t rows, int64_t kn, int64_t rs, int64_t ks, __m512i p[3][16],
                              int i0, int i1) {
    __mmask16 m0 = kn >= 16 ? 0xffff : (__mmask16)((1u << kn) - 1);
    __mmask16 m1 = kn >= 32 ? 0xffff : kn <= 16 ? 0 : (__mmask16)((1u << (kn - 16)) - 1);
#pragma GCC unroll 16
    for (int i = i0; i < i1; i++) {
        __m512 x[2];
        if (i >= rows) {
            x[0] = x[1] = _mm512_setzero_ps();
        } else if (ks == 1) {
            x[0] = _mm512_maskz_loadu_ps(m0, src + i * rs);
            x[1] = _mm512_maskz_loadu_ps(m1, src + i * rs + 16);
        } else {
            float t[32];
            for (int j = 0; j < 32; j++) t[j] = j < kn ? src[i * rs + j * ks] : 0.0f;
            x[0] = _mm512_loadu_ps(t), x[1] = _mm512_loadu_ps(t + 16);
        }
        split32(x[0], x[1], &p[0][i], &p[1][i], &p[2][i]);
    }
}

/* The 16 x 16 transpose of 32-bit lanes by four butterfly stages (as pack_simd.c). */
static void transpose16(__m512i *r) {
    static const int32_t idx[4][2][16] __attribute__((aligned(64))) = {
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}, {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}, {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}, {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}, {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
    };
#pragma GCC unroll 4
    for (int s = 0, d = 1; s < 4; s++, d *= 2) {
        __m512i i0 = _mm512_load_si512(idx[s][0]), i1 = _mm512_load_si512(idx[s][1]);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i & d) continue;
            __m512i a = _mm512_permutex2var_epi32(r[i], i0, r[i + d]);
            __m512i b = _mm512_permutex2var_epi32(r[i], i1, r[i + d]);
            r[i] = a, r[i + d] = b;
        }
    }
}

void rt_amx_pack_rows(uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs, int64_t ks) {
    int64_t groups = (rows + 31) / 32 * 2, kb = (k + 31) / 32;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < kb; b++) {
            __m512i p[3][16];
            int64_t left = rows - g * 16;
            split16x32(left > 0 ? src + g * 16 * rs + b * 32 * ks : src, left < 0 ? 0 : left, k - b * 32, rs, ks, p, 0, 16);
            uint16_t *t = dst + (g * kb + b) * 3 * 512;
            for (int s = 0; s < 3; s++)
                for (int i = 0; i < 16; i++) _mm512_store_si512(t + s * 512 + i * 32, p[s][i]);
        }
}

typedef struct rows_job {
    uint16_t *dst;
    const float *src;
    int64_t rows, k, rs, ks;
} rows_job;

/* Row pairs [lo, hi) (32 rows each) of a rows_job. */
static void rows_range(void *ctx, int64_t lo, int64_t hi) {
    const rows_job *j = ctx;
    int64_t left = j->rows - lo * 32, n = (hi - lo) * 32;
    rt_amx_pack_rows(j->dst + lo * 2 * ((j->k + 31) / 32) * 1536, j->src + lo * 32 * j->rs, left < n ? left : n, j->k,
                     j->rs, j->ks);
}

void rt_amx_pack_rows_parallel(uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs, int64_t ks) {
    rows_job j = {dst, src, rows, k, rs, ks};
    int64_t pairs = (rows + 31) / 32;
    if (rows * k < 16384) rows_range(&j, 0, pairs);
    else rt_parallel_for_hot(pairs, 1, rows_range, &j);
}

void rt_amx_pack_rows_shared(rt_amx_rows_share *sh, uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs,
                             int64_t ks) {
    rows_job j = {dst, src, rows, k, rs, ks};
    int64_t pairs = (rows + 31) / 32, p;
    while ((p = atomic_fetch_add_explicit(&sh->next, 1, memory_order_relaxed)) < pairs) {
        rows_range(&j, p, p + 1);
        atomic_fetch_add_explicit(&sh->done, 1, memory_order_release);
    }
    while (atomic_load_explicit(&sh->done, memory_order_acquire) < pairs) _mm_pause();
}

/* Packing the column operand, cut into steps small enough to run between
 * tile products (rt_amx_tile_next): a block is 16 columns by 32 k (one
 * piece's tile is its 16 k pairs by 16 columns), packed in BLOCK_STEPS
 * steps. Columns along k (a linear's weight rows) split four columns a step
 * into p, then transpose one piece a step into its tile; rows along k
 * (cs == 1) interleave four k pairs a step and leave the last three empty. */
enum { BLOCK_STEPS = 7 };

typedef struct col_pack {
    uint16_t *dst;
    const float *src;
    int64_t cols, k, cs, ks, kb;
    __m512i p[3][16];
} col_pack;

static inline __attribute__((always_inline)) void col_pack_step(col_pack *j, int64_t blk, int step) {
    int64_t g = blk / j->kb, b = blk % j->kb, left = j->cols - g * 16, kn = j->k - b * 32;
    uint16_t *t = j->dst + (g * j->kb + b) * 3 * 512;
    const float *at = left > 0 ? j->src + g * 16 * j->cs + b * 32 * j->ks : j->src;
    if (j->cs == 1 && left >= 16) { /* rows along k: two k rows interleave into a tile row */
        const __m512i lo = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                            21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        if (step >= 4) return;
#pragma GCC unroll 4
        for (int q = 4 * step; q < 4 * step + 4; q++) {
            __m512 x[2];
            for (int h = 0; h < 2; h++)
                x[h] = 2 * q + h < kn ? _mm512_loadu_ps(at + (2 * q + h) * j->ks) : _mm512_setzero_ps();
            /* (k even, k odd) of column c side by side: the pieces hold x[0]'s 16, then x[1]'s */
            __m512i pa, pb, pc;
            split32(x[0], x[1], &pa, &pb, &pc);
            _mm512_store_si512(t + 0 * 512 + q * 32, _mm512_permutexvar_epi16(lo, pa));
            _mm512_store_si512(t + 1 * 512 + q * 32, _mm512_permutexvar_epi16(lo, pb));
            _mm512_store_si512(t + 2 * 512 + q * 32, _mm512_permutexvar_epi16(lo, pc));
        }
        return;
    }
    /* columns along k: split 16 columns' 32 k, then transpose the k pairs
     * (32-bit lanes) into tile rows */
    if (step < 4) {
        split16x32(at, left < 0 ? 0 : left, kn, j->cs, j->ks, j->p, 4 * step, 4 * step + 4);
        return;
    }
    int s = step - 4;
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = j->p[s][i];
    transpose16(r);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) _mm512_store_si512(t + s * 512 + i * 32, r[i]);
}

static void col_pack_init(col_pack *j, uint16_t *dst, const float *src, int64_t cols, int64_t k, int64_t cs, int64_t ks) {
    j->dst = dst, j->src = src, j->cols = cols, j->k = k, j->cs = cs, j->ks = ks, j->kb = (k + 31) / 32;
}

void rt_amx_pack_cols(uint16_t *dst, const float *src, int64_t cols, int64_t k, int64_t cs, int64_t ks) {
    col_pack j;
    col_pack_init(&j, dst, src, cols, k, cs, ks);
    int64_t blocks = (cols + 31) / 32 * 2 * j.kb;
    for (int64_t blk = 0; blk < blocks; blk++)
#pragma GCC unroll 7
        for (int step = 0; step < BLOCK_STEPS; step++) col_pack_step(&j, blk, step);
}

/* Whether this thread's tiles are configured (until rt_amx_release): the
 * configuration is loaded by a thread's first tile call, not by each, since
 * LDTILECFG waits for the unit to finish everything before it (and zeroes
 * the tiles): a GEMM's tile calls then ran one after another with the unit
 * idle in between. Loading it once took block 0.94-0.96x the time and
 * attention 0.98x, in one process against the build before. */
static _Thread_local bool configured;

typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Tiles 0-3 accumulate C's four 16 x 16 quarters; 4, 5 hold two row groups'
 * pieces, 6, 7 two column groups'. The six piece products go A1 B3, A1 B2,
 * A2 B2, A2 B1, A3 B1, A1 B1: one operand pair reloaded per product, 14 tile
 * loads a k block (the order A1 B1, A1 B2, A1 B3, A2 B1, A2 B2, A3 B1 took
 * 18). Tiles are not renamed, so a load waits for the products reading the
 * tile it replaces; each product's four go in the order that frees that
 * tile first (tile2 in a harness: 0.96-0.99x the time of the old order).
 * After each product comes a share of the next panel's packing: the tile
 * unit works through the four while the vector units pack (in steps of
 * about 100 instructions: a whole block between products filled the
 * reorder buffer and stalled the unit). A panel packed already (a weight
 * kept by exec.c) has its share of cache lines prefetched into the L2
 * instead: the kept weights are read from the L3 each call (block's are
 * 4.5 MiB), and a harness streaming 3072 columns of them ran 0.82-0.96x the
 * time with the prefetches. */
#define LOAD_A(p) _tile_loadd(4, x0 + (p) * 512, 64); _tile_loadd(5, x1 + (p) * 512, 64)
#define LOAD_B(p) _tile_loadd(6, y0 + (p) * 512, 64); _tile_loadd(7, y1 + (p) * 512, 64)
#define FREE_A_FIRST _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7)
#define FREE_B_FIRST _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(3, 5, 7)

void rt_amx_tile_next(float *out, const uint16_t *a, const uint16_t *b, int64_t k, uint16_t *ndst, const float *nsrc,
                      int64_t ncols, int64_t cs, int64_t ks, int64_t part, int64_t parts) {
    if (!configured) {
        tile_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.palette = 1;
        for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
        _tile_loadconfig(&cfg);
        configured = true;
    }
    int64_t kb = (k + 31) / 32;
    const uint16_t *a1 = a + kb * 1536, *b1 = b + kb * 1536;
    /* this part's blocks of the next panel, spread evenly over the 6 kb products */
    col_pack j;
    col_pack_init(&j, ndst, nsrc, ncols, k, cs, ks);
    int64_t blk0 = 0, steps = 0, done = 0, prod = 0, prods = 6 * kb;
    if (nsrc) {
        blk0 = 2 * kb * part / parts;
        steps = (2 * kb * (part + 1) / parts - blk0) * BLOCK_STEPS;
    }
    /* ndst without nsrc: a panel packed already (a kept constant), whose share
     * of cache lines is prefetched into the L2 instead */
    const char *pf = NULL;
    int64_t lines = 0, fetched = 0;
    if (!nsrc && ndst) {
        int64_t bytes = rt_amx_packed_bytes(32, k), lo = bytes * part / parts / 64;
        pf = (const char *)ndst + lo * 64, lines = bytes * (part + 1) / parts / 64 - lo;
    }
#define PACK_SHARE                                                                                                     \
    prod++;                                                                                                            \
    for (int64_t upto = steps * prod / prods; done < upto; done++)                                                    \
        col_pack_step(&j, blk0 + done / BLOCK_STEPS, (int)(done % BLOCK_STEPS));                                     \
    for (int64_t upto = lines * prod / prods; fetched < upto; fetched++) _mm_prefetch(pf + fetched * 64, _MM_HINT_T1);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t s = 0; s < kb; s++) {
        const uint16_t *x0 = a + s * 1536, *x1 = a1 + s * 1536, *y0 = b + s * 1536, *y1 = b1 + s * 1536;
        LOAD_A(0); LOAD_B(2); FREE_B_FIRST; /* A1 B3 */
        PACK_SHARE
        LOAD_B(1); FREE_A_FIRST; /* A1 B2 */
        PACK_SHARE
        LOAD_A(1); FREE_B_FIRST; /* A2 B2 */
        PACK_SHARE
        LOAD_B(0); FREE_A_FIRST; /* A2 B1 */
        PACK_SHARE
        LOAD_A(2); FREE_A_FIRST; /* A3 B1 */
        PACK_SHARE
        LOAD_A(0); FREE_A_FIRST; /* A1 B1; the next k block loads A first */
        PACK_SHARE
    }
#undef PACK_SHARE
    _tile_stored(0, out, 128);
    _tile_stored(1, out + 16, 128);
    _tile_stored(2, out + 16 * 32, 128);
    _tile_stored(3, out + 16 * 32 + 16, 128);
}

void rt_amx_release(void) {
    _tile_release();
    configured = false;
}
#pragma GCC pop_options

#else
void rt_amx_pack_rows(uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs, int64_t ks) {
    (void)dst, (void)src, (void)rows, (void)k, (void)rs, (void)ks;
    EM_ASSERT(!"AMX kernels called where rt_amx_usable() is false");
}
void rt_amx_pack_rows_parallel(uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs, int64_t ks) {
    rt_amx_pack_rows(dst, src, rows, k, rs, ks);
}
void rt_amx_pack_rows_shared(rt_amx_rows_share *sh, uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs,
                             int64_t ks) {
    (void)sh;
    rt_amx_pack_rows(dst, src, rows, k, rs, ks);
}
void rt_amx_pack_cols(uint16_t *dst, const float *src, int64_t cols, int64_t k, int64_t cs, int64_t ks) {
    (void)dst, (void)src, (void)cols, (void)k, (void)cs, (void)ks;
    EM_ASSERT(!"AMX kernels called where rt_amx_usable() is false");
}
void rt_amx_tile_next(float *out, const uint16_t *a, const uint16_t *b, int64_t k, uint16_t *ndst, const float *nsrc,
                      int64_t ncols, int64_t cs, int64_t ks, int64_t part, int64_t parts) {
    (void)out, (void)a, (void)b, (void)k, (void)ndst, (void)nsrc, (void)ncols, (void)cs, (void)ks, (void)part, (void)parts;
    EM_ASSERT(!"AMX kernels called where rt_amx_usable() is false");
}
void rt_amx_release(void) {}
#endif

/* The plain tile: no other panel packed meanwhile. */
void rt_amx_tile(float *out, const uint16_t *a, const uint16_t *b, int64_t k) {
    rt_amx_tile_next(out, a, b, k, NULL, NULL, 0, 0, 0, 0, 1);
}
