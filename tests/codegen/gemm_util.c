/*
 * gemm_util.c — the product models the GEMM tests share (gemm_util.h).
 */
#include "gemm_util.h"

em_tensor *gu_mm(em_tensor *a, em_tensor *b) { return em_matmul(a, b); }

em_tensor *gu_mm_bt(em_tensor *a, em_tensor *bt) {
    em_scope_begin();
    em_tensor *y = em_keep(em_matmul(a, em_transpose(bt, -1, -2)));
    em_scope_end();
    return y;
}

em_tensor *gu_mm_at(em_tensor *at, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_matmul(em_transpose(at, -1, -2), b));
    em_scope_end();
    return y;
}
