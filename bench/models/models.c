/*
 * models.c — chain, softmax, layernorm, mlp, attention, block and tiny, as a
 * user writes them: plain functions of em_* calls, one scope per call so the
 * intermediates are released at the end, em_keep on the result.
 *
 * Shapes are DESIGN.md's. The attention and block models split heads with
 * reshape and permute views and mask causally with a constant added to the
 * scores; block is a GPT-2 pre-norm block (layer_norm, attention, residual,
 * layer_norm, gelu (tanh form) MLP, residual). Each computes what
 * ../shared/peers/torch_peers.py computes for PyTorch (q, k and v come from one
 * [3C, C] weight here rather than three [C, C] ones: the same arithmetic).
 */
#include "models.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define SH(...) ((int64_t[]){__VA_ARGS__})

static struct {
    bool ready;
    em_tensor *chain_a, *chain_b;
    em_tensor *ln_w, *ln_b;
    em_tensor *mlp_w1, *mlp_b1, *mlp_w2, *mlp_b2;
    em_tensor *att_wqkv, *att_wo;
    em_tensor *blk_ln1w, *blk_ln1b, *blk_wqkv, *blk_bqkv, *blk_wo, *blk_bo;
    em_tensor *blk_ln2w, *blk_ln2b, *blk_w1, *blk_b1, *blk_w2, *blk_b2, *blk_mask;
    em_tensor *tiny_w, *tiny_b;
} W;

/* ---- the models ------------------------------------------------------------------ */

static em_tensor *chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_mul(em_gelu(em_add(em_mul(x, W.chain_a), W.chain_b)), em_sigmoid(x));
    y = em_keep(y);
    em_scope_end();
    return y;
}

static em_tensor *softmax(em_tensor *x) { return em_softmax(x, -1); }

static em_tensor *layernorm(em_tensor *x) { return em_layer_norm(x, W.ln_w, W.ln_b, 1e-5); }

static em_tensor *mlp(em_tensor *x) {
    em_scope_begin();
    em_tensor *h = em_gelu(em_linear(x, W.mlp_w1, W.mlp_b1));
    em_tensor *y = em_keep(em_linear(h, W.mlp_w2, W.mlp_b2));
    em_scope_end();
    return y;
}

/* Multi-head self-attention of x [T, C] with H heads; mask [T, T] or NULL. */
static em_tensor *attend(em_tensor *x, int H, em_tensor *wqkv, em_tensor *bqkv, em_tensor *wo,
                         em_tensor *bo, em_tensor *mask) {
    int64_t T = em_dim(x, 0), C = em_dim(x, 1), D = C / H;
    em_tensor *qkv = em_linear(x, wqkv, bqkv); /* [T, 3C] */
    em_tensor *heads[3];
    for (int i = 0; i < 3; i++) { /* [T, C] -> [T, H, D] -> [H, T, D] */
        em_tensor *part = em_slice(qkv, 1, i * C, (i + 1) * C, 1);
        heads[i] = em_permute(em_reshape(part, 3, SH(T, H, D)), (const int[]){1, 0, 2});
    }
    em_tensor *kt = em_transpose(heads[1], 1, 2); /* [H, D, T] */
    em_tensor *s = em_mul(em_matmul(heads[0], kt), em_scalar(EM_F32, 1.0 / sqrt((double)D)));
    if (mask) s = em_add(s, mask);
    em_tensor *p = em_softmax(s, -1);
    em_tensor *o = em_matmul(p, heads[2]); /* [H, T, D] */
    o = em_reshape(em_contiguous(em_permute(o, (const int[]){1, 0, 2})), 2, SH(T, C));
    return em_linear(o, wo, bo);
}

static em_tensor *attention(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(attend(x, 8, W.att_wqkv, NULL, W.att_wo, NULL, NULL));
    em_scope_end();
    return y;
}

static em_tensor *block(em_tensor *x) {
    em_scope_begin();
    em_tensor *h = em_layer_norm(x, W.blk_ln1w, W.blk_ln1b, 1e-5);
    x = em_add(x, attend(h, 4, W.blk_wqkv, W.blk_bqkv, W.blk_wo, W.blk_bo, W.blk_mask));
    h = em_layer_norm(x, W.blk_ln2w, W.blk_ln2b, 1e-5);
    h = em_linear(em_gelu_tanh(em_linear(h, W.blk_w1, W.blk_b1)), W.blk_w2, W.blk_b2);
    em_tensor *y = em_keep(em_add(x, h));
    em_scope_end();
    return y;
}

static em_tensor *tiny(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_add(em_matmul(x, W.tiny_w), W.tiny_b)));
    em_scope_end();
    return y;
}

/* ---- inputs and weights ----------------------------------------------------------- */

static em_tensor *in_chain(uint64_t s) { return em_randn(2, SH(4096, 1024), s); }
static em_tensor *in_rows(uint64_t s) { return em_randn(2, SH(4096, 1024), s); }
static em_tensor *in_mlp(uint64_t s) { return em_randn(2, SH(64, 1024), s); }
static em_tensor *in_attention(uint64_t s) { return em_randn(2, SH(256, 512), s); }
static em_tensor *in_block(uint64_t s) { return em_randn(2, SH(128, 256), s); }
static em_tensor *in_tiny(uint64_t s) { return em_randn(2, SH(16, 16), s); }

/* randn scaled by s, as a fresh tensor */
static em_tensor *weight(int nd, const int64_t *shape, uint64_t seed, double s) {
    em_tensor *r = em_randn(nd, shape, seed), *k = em_scalar(EM_F32, s);
    em_tensor *w = r && k ? em_mul(r, k) : NULL;
    em_release(r), em_release(k);
    return w;
}

/* The causal mask: 0 on and below the diagonal, -inf above. */
static em_tensor *causal(int64_t T) {
    em_tensor *i = em_arange(EM_F32, 0, (double)T, 1), *z = em_zeros(EM_F32, 2, SH(T, T));
    em_tensor *inf = em_scalar(EM_F32, -INFINITY);
    em_tensor *row = i ? em_reshape(i, 2, SH(T, 1)) : NULL, *col = i ? em_reshape(i, 2, SH(1, T)) : NULL;
    em_tensor *above = row && col ? em_gt(col, row) : NULL;
    em_tensor *m = above && z && inf ? em_where(above, inf, z) : NULL;
    em_release(i), em_release(z), em_release(inf), em_release(row), em_release(col), em_release(above);
    return m;
}

int bm_setup(void) {
    if (W.ready) return 0;
    uint64_t s = 100;
    W.chain_a = weight(2, SH(4096, 1024), s++, 1.0), W.chain_b = weight(2, SH(4096, 1024), s++, 1.0);
    W.ln_w = weight(1, SH(1024), s++, 1.0), W.ln_b = weight(1, SH(1024), s++, 1.0);
    W.mlp_w1 = weight(2, SH(4096, 1024), s++, 1 / 32.0), W.mlp_b1 = weight(1, SH(4096), s++, 0.1);
    W.mlp_w2 = weight(2, SH(1024, 4096), s++, 1 / 64.0), W.mlp_b2 = weight(1, SH(1024), s++, 0.1);
    W.att_wqkv = weight(2, SH(1536, 512), s++, 1 / 22.6);
    W.att_wo = weight(2, SH(512, 512), s++, 1 / 22.6);
    W.blk_ln1w = weight(1, SH(256), s++, 1.0), W.blk_ln1b = weight(1, SH(256), s++, 0.1);
    W.blk_wqkv = weight(2, SH(768, 256), s++, 1 / 16.0), W.blk_bqkv = weight(1, SH(768), s++, 0.1);
    W.blk_wo = weight(2, SH(256, 256), s++, 1 / 16.0), W.blk_bo = weight(1, SH(256), s++, 0.1);
    W.blk_ln2w = weight(1, SH(256), s++, 1.0), W.blk_ln2b = weight(1, SH(256), s++, 0.1);
    W.blk_w1 = weight(2, SH(1024, 256), s++, 1 / 16.0), W.blk_b1 = weight(1, SH(1024), s++, 0.1);
    W.blk_w2 = weight(2, SH(256, 1024), s++, 1 / 32.0), W.blk_b2 = weight(1, SH(256), s++, 0.1);
    W.blk_mask = causal(128);
    W.tiny_w = weight(2, SH(16, 16), s++, 0.25), W.tiny_b = weight(1, SH(16), s++, 0.1);
    em_tensor **all = (em_tensor **)((char *)&W + offsetof(__typeof__(W), chain_a));
    int n = (int)((sizeof W - offsetof(__typeof__(W), chain_a)) / sizeof(em_tensor *));
    for (int i = 0; i < n; i++)
        if (!all[i]) return bm_teardown(), -1;
    W.ready = true;
    return 0;
}

void bm_teardown(void) {
    em_tensor **all = (em_tensor **)((char *)&W + offsetof(__typeof__(W), chain_a));
    int n = (int)((sizeof W - offsetof(__typeof__(W), chain_a)) / sizeof(em_tensor *));
    for (int i = 0; i < n; i++) em_release(all[i]), all[i] = NULL;
    W.ready = false;
}

/* flops and bytes per call, f32 */
#define MM(m, k, n) (2.0 * (m) * (k) * (n))
const bm_model bm_models[] = {
    {"chain", "gelu(x*a+b)*sigmoid(x), x a b [4096,1024]", chain, in_chain, 0, 4.0 * 4 * 4096 * 1024},
    {"softmax", "rows of [4096,1024]", softmax, in_rows, 0, 2.0 * 4 * 4096 * 1024},
    {"layernorm", "rows of [4096,1024]", layernorm, in_rows, 0, 2.0 * 4 * 4096 * 1024},
    {"mlp", "1024->4096->1024, gelu, batch 64", mlp, in_mlp,
     MM(64, 1024, 4096) + MM(64, 4096, 1024), 4.0 * (2 * 4096 * 1024 + 2 * 64 * 1024)},
    {"attention", "8 heads, [256,512]", attention, in_attention,
     MM(256, 512, 1536) + 2 * MM(256, 64, 256) * 8 + MM(256, 512, 512),
     4.0 * (1536 * 512 + 512 * 512 + 2 * 256 * 512)},
    {"block", "GPT-2 block, causal, [128,256], 4 heads", block, in_block,
     MM(128, 256, 768) + 2 * MM(128, 64, 128) * 4 + MM(128, 256, 256) + 2 * MM(128, 256, 1024),
     4.0 * (768 * 256 + 256 * 256 + 2 * 1024 * 256 + 2 * 128 * 256)},
    {"tiny", "tanh(x@w+b), [16,16]", tiny, in_tiny, MM(16, 16, 16), 4.0 * 3 * 16 * 16},
};
const int bm_nmodels = sizeof bm_models / sizeof bm_models[0];

const bm_model *bm_find(const char *name) {
    for (int i = 0; i < bm_nmodels; i++)
        if (strcmp(bm_models[i].name, name) == 0) return &bm_models[i];
    return NULL;
}
