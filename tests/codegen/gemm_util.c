/*
 * gemm_util.c — the product models the GEMM tests share (gemm_util.h).
 */
#include "gemm_util.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

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

void gu_head_views(em_tensor *qkv, int64_t H, em_tensor **q, em_tensor **kt) {
    int64_t T = em_dim(qkv, 0), C = em_dim(qkv, 1) / 3, D = C / H;
    *q = em_permute(em_reshape(em_slice(qkv, 1, 0, C, 1), 3, SH(T, H, D)), (int[]){1, 0, 2});
    *kt = em_permute(em_reshape(em_slice(qkv, 1, C, 2 * C, 1), 3, SH(T, H, D)), (int[]){1, 2, 0});
}
