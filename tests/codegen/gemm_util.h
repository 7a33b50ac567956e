/*
 * gemm_util.h — the product models the GEMM tests (test_gemm.c,
 * test_gemm_amx.c) compile: a @ b with b read as it is, through a transposed
 * view, or a read through a transposed view; and attention's per-head views.
 */
#ifndef EMBER_TESTS_GEMM_UTIL_H
#define EMBER_TESTS_GEMM_UTIL_H

#include "ember.h"

/* a @ b */
em_tensor *gu_mm(em_tensor *a, em_tensor *b);
/* b given as [.., N, K]: the product reads it transposed (k contiguous). */
em_tensor *gu_mm_bt(em_tensor *a, em_tensor *bt);
/* a given as [K, M]: the product reads it transposed (m contiguous). */
em_tensor *gu_mm_at(em_tensor *at, em_tensor *b);

/* Attention's per-head views of one [T, 3C] tensor qkv with H heads: *q as
 * [H, T, D] and *kt (k transposed) as [H, D, T], D = C / H. Views, owned by
 * the open scope. */
void gu_head_views(em_tensor *qkv, int64_t H, em_tensor **q, em_tensor **kt);

#endif
