/*
 * gpt2_block.c — a GPT-2 transformer block in plain C, eager and compiled.
 *
 *     make demo      # runs this file with EMBER_DUMP_DIR=build/demo-dump
 *     cc -Iinclude examples/gpt2_block.c -Lbuild -lember -Wl,-rpath,$PWD/build -lm -o block
 *
 * The block is GPT-2's pre-norm layout on a sequence of T = 128 tokens of
 * width C = 256 with H = 4 heads:
 *
 *     h = layer_norm(x);  q, k, v = split(h Wqkv^T + bqkv)  into heads
 *     x = x + (softmax(q k^T / sqrt(D) + causal mask) v) Wo^T + bo
 *     x = x + gelu(layer_norm(x) W1^T + b1) W2^T + b2
 *
 * What it shows:
 *   1. a real model is an ordinary C function: heads are split with reshape
 *      and permute (views, no copies), the causal mask is a tensor added to
 *      the attention scores, weights are globals;
 *   2. EM_COMPILE gives back a function of the same C type; its first call
 *      traces the block into a graph; the compiler fuses it into kernels
 *      (bias, mask, gelu and residual adds ride along with their matmuls) and
 *      plans every intermediate into one arena;
 *   3. the compiled output is checked against eager, both are timed, and peak
 *      memory is compared;
 *   4. every stage of the compiler is dumped to a folder: graph (as traced),
 *      opt (after simplification), kernels (the fusion, with a reason for each
 *      node left unfused), memplan (each buffer's offset and live range), dot.
 *
 * Code generation (LLVM) is still being built: compiled kernels run the same
 * eager kernels into the planned arena, so time is close to eager while memory
 * is already lower.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <ember.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { T = 128, C = 256, H = 4, D = C / H, RUNS = 31 };

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

static em_tensor *ln1_w, *ln1_b, *w_qkv, *b_qkv, *w_o, *b_o, *ln2_w, *ln2_b, *w_1, *b_1, *w_2, *b_2;
static em_tensor *causal_mask; /* [T, T]: 0 on and below the diagonal, -inf above */

/* Causal self-attention of h [T, C]. */
static em_tensor *attention(em_tensor *h) {
    em_tensor *qkv = em_linear(h, w_qkv, b_qkv); /* [T, 3C] */
    em_tensor *q = em_slice(qkv, 1, 0, C, 1), *k = em_slice(qkv, 1, C, 2 * C, 1),
              *v = em_slice(qkv, 1, 2 * C, 3 * C, 1);
    const int heads_first[] = {1, 0, 2}; /* [T, H, D] -> [H, T, D] */
    q = em_permute(em_reshape(q, 3, SHAPE(T, H, D)), heads_first);
    k = em_permute(em_reshape(k, 3, SHAPE(T, H, D)), heads_first);
    v = em_permute(em_reshape(v, 3, SHAPE(T, H, D)), heads_first);
    em_tensor *scores = em_matmul(q, em_transpose(k, 1, 2)); /* [H, T, T] */
    scores = em_add(em_mul(scores, em_scalar(EM_F32, 1.0 / sqrt(D))), causal_mask);
    em_tensor *out = em_matmul(em_softmax(scores, -1), v); /* [H, T, D] */
    out = em_reshape(em_contiguous(em_permute(out, heads_first)), 2, SHAPE(T, C));
    return em_linear(out, w_o, b_o);
}

/* The block. Intermediates belong to the scope; only the result is kept. */
static em_tensor *block(em_tensor *x) {
    em_scope_begin();
    x = em_add(x, attention(em_layer_norm(x, ln1_w, ln1_b, 1e-5)));
    em_tensor *h = em_layer_norm(x, ln2_w, ln2_b, 1e-5);
    h = em_linear(em_gelu_tanh(em_linear(h, w_1, b_1)), w_2, b_2);
    em_tensor *y = em_keep(em_add(x, h));
    em_scope_end();
    return y;
}

static void check(const void *p, const char *what) {
    if (p) return;
    fprintf(stderr, "gpt2_block: %s failed: %s\n", what, em_last_error());
    exit(1);
}

/* N(0, scale^2) weights, deterministic per seed. */
static em_tensor *param(int nd, const int64_t *shape, uint64_t seed, double scale) {
    em_scope_begin();
    em_tensor *w = em_keep(em_mul(em_randn(nd, shape, seed), em_scalar(EM_F32, scale)));
    em_scope_end();
    check(w, "param");
    return w;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms per call of fn(x). */
static double time_ms(em_tensor *(*fn)(em_tensor *), em_tensor *x) {
    double ms[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ms();
        em_tensor *y = fn(x);
        ms[r] = now_ms() - t0;
        check(y, "block");
        em_release(y);
    }
    qsort(ms, RUNS, sizeof ms[0], cmp_double);
    return ms[RUNS / 2];
}

/* Bytes one call allocates beyond what was live before it. */
static size_t peak_of(em_tensor *(*fn)(em_tensor *), em_tensor *x) {
    em_memory_stats m;
    em_memory_stats_get(&m);
    size_t base = m.live_bytes;
    em_memory_reset_peak();
    em_tensor *y = fn(x);
    check(y, "block");
    em_memory_stats_get(&m);
    em_release(y);
    return m.peak_bytes - base;
}

static void make_weights(void) {
    uint64_t s = 1;
    ln1_w = param(1, SHAPE(C), s++, 0.1), ln1_b = param(1, SHAPE(C), s++, 0.1);
    w_qkv = param(2, SHAPE(3 * C, C), s++, 1 / sqrt(C)), b_qkv = param(1, SHAPE(3 * C), s++, 0.02);
    w_o = param(2, SHAPE(C, C), s++, 1 / sqrt(C)), b_o = param(1, SHAPE(C), s++, 0.02);
    ln2_w = param(1, SHAPE(C), s++, 0.1), ln2_b = param(1, SHAPE(C), s++, 0.1);
    w_1 = param(2, SHAPE(4 * C, C), s++, 1 / sqrt(C)), b_1 = param(1, SHAPE(4 * C), s++, 0.02);
    w_2 = param(2, SHAPE(C, 4 * C), s++, 1 / sqrt(4 * C)), b_2 = param(1, SHAPE(C), s++, 0.02);
    /* mask[i, j] = -inf where j > i: built with ops, like any tensor */
    em_scope_begin();
    em_tensor *pos = em_arange(EM_F32, 0, T, 1);
    em_tensor *above = em_gt(em_reshape(pos, 2, SHAPE(1, T)), em_reshape(pos, 2, SHAPE(T, 1)));
    causal_mask = em_keep(em_where(above, em_scalar(EM_F32, -INFINITY), em_zeros(EM_F32, 2, SHAPE(T, T))));
    em_scope_end();
    check(causal_mask, "causal mask");
}

int main(void) {
    printf("ember %s, %d thread(s); GPT-2 block, T=%d C=%d H=%d\n", em_version(), em_get_threads(), T, C, H);
    make_weights();
    em_tensor *x = em_randn(2, SHAPE(T, C), 42);
    check(x, "input");

    /* Eager: every op runs as it is called. */
    em_tensor *want = block(x);
    check(want, "eager block");
    double eager_ms = time_ms(block, x);
    size_t eager_peak = peak_of(block, x);

    /* Compiled: same C type; the first call traces, passes fuse and plan. */
    const char *dir = getenv("EMBER_DUMP_DIR");
    em_options opts = {.name = "gpt2_block", .dump_dir = dir ? dir : "build/demo-dump"};
    __typeof__(&block) fast = (__typeof__(&block))em_compile((void *)block, "tensor(tensor)", &opts);
    check((void *)fast, "em_compile");
    em_tensor *got = fast(x);
    check(got, "compiled block");

    static float a[T * C], b[T * C];
    em_read(want, a, sizeof a), em_read(got, b, sizeof b);
    double maxdiff = 0;
    for (int i = 0; i < T * C; i++) maxdiff = fmax(maxdiff, fabs((double)a[i] - b[i]));
    double comp_ms = time_ms(fast, x);
    em_stats st;
    em_compiled_stats((void *)fast, &st);
    size_t comp_peak = peak_of(fast, x) + (size_t)st.arena_bytes; /* the arena is kept between calls */

    printf("max |eager - compiled| = %g\n", maxdiff);
    printf("eager:    %8.3f ms per call (median of %d), peak %7.1f KiB\n", eager_ms, RUNS, eager_peak / 1024.0);
    printf("compiled: %8.3f ms per call (median of %d), peak %7.1f KiB (arena %.1f KiB)\n", comp_ms, RUNS,
           comp_peak / 1024.0, st.arena_bytes / 1024.0);
    printf("          %.2fx eager speed, %.2fx eager memory; %d kernels; %.1f ms to trace and compile\n",
           eager_ms / comp_ms, (double)comp_peak / eager_peak, st.kernels, st.compile_ms);
    printf("\nhow the compiler grouped the block (em_dump(fast, \"kernels\", stdout)):\n");
    em_dump((void *)fast, "kernels", stdout);
    printf("\nevery stage (graph, opt, kernels, memplan, llvm, asm, dot) is in %s/\n", opts.dump_dir);

    em_release(got), em_release(want), em_release(x);
    em_compiled_free((void *)fast);
    em_tensor *all[] = {ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_1, b_1, w_2, b_2, causal_mask};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) em_release(all[i]);
    em_memory_stats end;
    em_memory_stats_get(&end);
    return maxdiff <= 1e-3 && end.live_bytes == 0 ? 0 : 1;
}
