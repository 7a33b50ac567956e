/*
 * test_pack.c — the GEMM panel packer of every ISA the CPU runs
 * (runtime/pack_simd.c, rt_pack_panel): dst[k * vb + l] = src[l * ls + k]
 * for l < lanes, zeros for the padding lanes, exactly (a copy), for k counts
 * around the 16 x 16 blocks of the AVX-512 transpose and partial panels; and
 * the whole-matrix transpose of em_contiguous (rt_simd's transpose, AVX-512
 * only: the other tables leave it NULL) around its blocks and bands, bit for
 * bit, storing nothing outside the matrix.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static const char *const ISAS[] = {"avx512", "avx2", "sse2"};

/* Packs a [lanes x ls] source (k runs along rows) with every ISA and checks each element. */
static void check_pack(int64_t kn, int64_t lanes, int64_t vb, int64_t ls) {
    float *src = malloc((size_t)(lanes * ls + 1) * sizeof *src);
    int64_t rows = (kn + 15) / 16 * 16; /* the packer may store whole 16-row blocks */
    float *dst = malloc((size_t)(rows * vb + 16) * sizeof *dst); /* 16 canaries past the panel */
    cr_assert(src && dst);
    for (int64_t i = 0; i < lanes * ls; i++) src[i] = (float)(i % 1009) - 500.0f;
    for (int n = 0; n < 3; n++) {
        const rt_simd *t = rt_simd_for(ISAS[n]);
        if (!t) continue; /* this CPU does not run it */
        for (int64_t i = 0; i < rows * vb + 16; i++) dst[i] = 12345.0f;
        t->pack_panel(kn, lanes, vb, src, ls, dst);
        int64_t bad = 0;
        for (int64_t i = rows * vb; i < rows * vb + 16; i++) bad += dst[i] != 12345.0f;
        cr_expect_eq(bad, 0, "%s: vb %lld: stored past the panel", ISAS[n], (long long)vb);
        bad = 0;
        for (int64_t k = 0; k < kn; k++)
            for (int64_t l = 0; l < vb; l++) {
                float want = l < lanes ? src[l * ls + k] : 0.0f;
                bad += dst[k * vb + l] != want;
            }
        cr_expect_eq(bad, 0, "%s: kn %lld, lanes %lld of %lld, ls %lld: %lld elements wrong", ISAS[n],
                     (long long)kn, (long long)lanes, (long long)vb, (long long)ls, (long long)bad);
    }
    free(src), free(dst);
}

Test(pack, panels_of_every_isa_are_the_transpose_with_zero_padding) {
    static const int64_t ks[] = {1, 3, 15, 16, 17, 31, 32, 33, 100};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        check_pack(ks[i], 64, 64, ks[i]);      /* full panel, rows exactly k long */
        check_pack(ks[i], 37, 64, ks[i] + 5);  /* a partial panel, padded rows */
        check_pack(ks[i], 16, 16, 1000);       /* one vector, a long stride */
        check_pack(ks[i], 1, 32, ks[i]);       /* one lane */
        check_pack(ks[i], 8, 8, ks[i] + 3);    /* an 8-lane panel: nothing stored past it */
        check_pack(ks[i], 20, 24, ks[i]);      /* 24 lanes: a masked last group */
    }
}

Test(pack, rt_pack_panel_uses_the_cpus_table) {
    float src[16 * 20], dst[32 * 16];
    for (int i = 0; i < 16 * 20; i++) src[i] = (float)i;
    rt_pack_panel(20, 16, 16, src, 20, dst);
    for (int k = 0; k < 20; k++)
        for (int l = 0; l < 16; l++) cr_expect_eq(dst[k * 16 + l], src[l * 20 + k], "k %d lane %d", k, l);
}

/* rows x cols of a source with row stride ss (ss >= rows: src[i + j * ss])
 * transposed into dst with row stride ds (ds >= cols) by every ISA: each
 * element's bits, and the canaries between and after dst's rows untouched. */
static void check_transpose(int64_t rows, int64_t cols, int64_t ss, int64_t ds) {
    uint32_t *src = malloc((size_t)(cols * ss + 1) * sizeof *src);
    uint32_t *dst = malloc((size_t)(rows * ds + 16) * sizeof *dst);
    cr_assert(src && dst);
    for (int64_t i = 0; i < cols * ss; i++) src[i] = 0x7f800001u + (uint32_t)(i * 2654435761u % 4194304u); /* NaN payloads */
    for (int n = 0; n < 3; n++) {
        const rt_simd *t = rt_simd_for(ISAS[n]);
        if (!t || !t->transpose) continue; /* not this CPU's, or not an ISA with one */
        for (int64_t i = 0; i < rows * ds + 16; i++) dst[i] = 0xdeadbeefu;
        t->transpose(rows, cols, (const float *)src, ss, (float *)dst, ds);
        int64_t bad = 0, stray = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < ds; j++) {
                if (j < cols) bad += dst[i * ds + j] != src[i + j * ss];
                else stray += dst[i * ds + j] != 0xdeadbeefu;
            }
        for (int64_t i = rows * ds; i < rows * ds + 16; i++) stray += dst[i] != 0xdeadbeefu;
        cr_expect_eq(bad, 0, "%s: [%lld x %lld], ss %lld, ds %lld: %lld elements wrong", ISAS[n], (long long)rows,
                     (long long)cols, (long long)ss, (long long)ds, (long long)bad);
        cr_expect_eq(stray, 0, "%s: [%lld x %lld]: %lld words written outside the matrix", ISAS[n], (long long)rows,
                     (long long)cols, (long long)stray);
    }
    free(src), free(dst);
}

Test(pack, whole_matrices_of_every_isa_are_transposed_bit_for_bit_around_blocks_and_bands) {
    static const int64_t sizes[] = {1, 5, 15, 16, 17, 33, 64};
    for (size_t a = 0; a < sizeof sizes / sizeof sizes[0]; a++)
        for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b++) {
            check_transpose(sizes[a], sizes[b], sizes[a], sizes[b]);         /* dense both sides */
            check_transpose(sizes[a], sizes[b], sizes[a] + 3, sizes[b] + 7); /* inside larger rows */
        }
    check_transpose(40, 255, 40, 255); /* around the 256-column band */
    check_transpose(40, 256, 40, 256);
    check_transpose(33, 257, 50, 300);
    check_transpose(300, 700, 300, 700); /* several bands and blocks */
}
