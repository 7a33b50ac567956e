/*
 * fuzz_ops.c — libFuzzer target for the argument checks of every public op.
 *
 * The input bytes are a little program: make up to four tensors of any dtype
 * (valid or not), rank 0..9 and small (possibly negative) sizes, some of them
 * NULL or transposed views; then call public ops on them with axes, shapes,
 * permutations, slice bounds and dtypes taken from the bytes, adding each
 * result to the pool. Every call must return a valid tensor or NULL with a
 * message; nothing may crash, read out of bounds or leak (ASan, UBSan,
 * LeakSanitizer), and the allocator's live bytes must be back to where they
 * started when the pool is released.
 */
#include "ember.h"

#include <stdlib.h>
#include <string.h>

typedef struct bytes {
    const uint8_t *p;
    size_t n;
} bytes;

static int next(bytes *b) {
    if (!b->n) return 0;
    b->n--;
    return *b->p++;
}

static int small(bytes *b, int lo, int hi) { return lo + next(b) % (hi - lo + 1); }

enum { POOL = 16 };

static em_tensor *make(bytes *b) {
    int kind = next(b) % 8;
    em_dtype dt = (em_dtype)small(b, 0, 6); /* 5, 6: not dtypes */
    int nd = small(b, 0, 9);                /* 9: too many dims */
    int64_t shape[9];
    for (int i = 0; i < nd; i++) shape[i] = small(b, -1, 4);
    switch (kind) {
    case 0: return NULL;
    case 1: return em_full(dt, nd, shape, small(b, -3, 3));
    case 2: return em_arange(dt, small(b, -4, 4), small(b, -4, 12), small(b, -2, 3));
    case 3: return em_scalar(dt, small(b, -2, 2));
    case 4: return em_randn(nd, shape, (uint64_t)next(b));
    case 5: {
        em_tensor *t = em_randn(nd, shape, 1), *v = em_transpose(t, small(b, -2, 3), small(b, -2, 3));
        em_release(t);
        return v;
    }
    default: return em_zeros(dt, nd, shape);
    }
}

static em_tensor *pick(bytes *b, em_tensor **pool, int n) { return n ? pool[next(b) % n] : NULL; }

static em_tensor *call(bytes *b, em_tensor **pool, int n) {
    em_tensor *x = pick(b, pool, n), *y = pick(b, pool, n), *z = pick(b, pool, n);
    int a = small(b, -4, 4), k = small(b, -1, 2);
    int64_t shape[9];
    int nd = small(b, 0, 9);
    for (int i = 0; i < nd; i++) shape[i] = small(b, -2, 4);
    int perm[9];
    for (int i = 0; i < 9; i++) perm[i] = small(b, -1, 8);
    static em_tensor *(*const unary[])(em_tensor *) = {
        em_neg, em_abs, em_exp, em_log, em_sqrt, em_rsqrt, em_reciprocal, em_sin, em_cos, em_tanh,
        em_erf, em_sigmoid, em_relu, em_gelu, em_gelu_tanh, em_silu, em_contiguous};
    static em_tensor *(*const binary[])(em_tensor *, em_tensor *) = {
        em_add, em_sub, em_mul, em_div, em_pow, em_maximum, em_minimum, em_eq, em_ne, em_lt,
        em_le, em_gt, em_ge, em_matmul, em_embedding};
    static em_tensor *(*const reduce[])(em_tensor *, int, int) = {em_sum, em_mean, em_max, em_min,
                                                                  em_argmax};
    switch (next(b) % 16) {
    case 0: return unary[next(b) % (sizeof unary / sizeof *unary)](x);
    case 1: return binary[next(b) % (sizeof binary / sizeof *binary)](x, y);
    case 2: return reduce[next(b) % 5](x, a, k);
    case 3: return next(b) & 1 ? em_softmax(x, a) : em_log_softmax(x, a);
    case 4: return em_layer_norm(x, y, z, 1e-5);
    case 5: return em_rms_norm(x, y, 1e-5);
    case 6: return em_linear(x, y, z);
    case 7: return em_where(x, y, z);
    case 8: return em_cast(x, (em_dtype)small(b, -1, 6));
    case 9: return em_reshape(x, nd, shape);
    case 10: return em_permute(x, perm);
    case 11: return em_transpose(x, a, small(b, -4, 4));
    case 12: return em_slice(x, a, small(b, -6, 6), small(b, -6, 6), small(b, -2, 3));
    case 13: return em_expand(x, nd, shape);
    case 14: return next(b) & 1 ? em_unsqueeze(x, a) : em_squeeze(x, a);
    default: {
        em_tensor *ts[3] = {x, y, z};
        return em_concat(ts, small(b, -1, 3), a);
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bytes b = {data, size};
    em_memory_stats before, after;
    em_memory_stats_get(&before);
    em_tensor *pool[POOL];
    int n = 0;
    for (int i = small(&b, 1, 4); i > 0; i--) pool[n++] = make(&b);
    while (b.n && n < POOL) {
        em_tensor *r = call(&b, pool, n);
        if (!r && !em_last_error()[0]) abort(); /* a failure must say why */
        if (r && (em_ndim(r) < 0 || em_ndim(r) > 8 || em_numel(r) < 0)) abort();
        pool[n++] = r;
        em_clear_error();
    }
    for (int i = 0; i < n; i++) em_release(pool[i]);
    em_memory_stats_get(&after);
    if (after.live_bytes != before.live_bytes) abort(); /* everything released */
    return 0;
}
