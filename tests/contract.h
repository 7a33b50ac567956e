/*
 * contract.h — the compiled-vs-eager tolerance of ../shared/DESIGN.md as a
 * predicate that asserts nothing, for tests that compare from many threads:
 * the Criterion thread tests (frontend/test_compile_threads.c) and the
 * ThreadSanitizer program (tsan/), which links no test helpers. The same
 * tolerance with reports is tu_expect_compiled (util.c).
 */
#ifndef EMBER_TESTS_CONTRACT_H
#define EMBER_TESTS_CONTRACT_H

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

/* Same dtype and shape; f32 values within rtol 1e-4, atol 1e-5 (NaN matches
 * NaN: a generated GEMM or row kernel sums in another order than eager),
 * other dtypes byte for byte. */
static inline bool tc_matches_eager(em_tensor *got, em_tensor *want) {
    if (!got || !want || em_type(got) != em_type(want) || em_ndim(got) != em_ndim(want)) return false;
    for (int i = 0; i < em_ndim(got); i++)
        if (em_shape(got)[i] != em_shape(want)[i]) return false;
    size_t n = (size_t)em_numel(got) * em_dtype_size(em_type(got));
    char *x = malloc(n + 1), *y = malloc(n + 1);
    bool same = x && y && em_read(got, x, n) == 0 && em_read(want, y, n) == 0;
    if (same && em_type(got) == EM_F32) {
        const float *a = (const float *)x, *b = (const float *)y;
        for (size_t i = 0; same && i < n / sizeof(float); i++)
            same = (isnan(a[i]) && isnan(b[i])) || fabsf(a[i] - b[i]) <= 1e-5f + 1e-4f * fabsf(b[i]);
    } else if (same) {
        same = memcmp(x, y, n) == 0;
    }
    free(x);
    free(y);
    return same;
}

#endif
