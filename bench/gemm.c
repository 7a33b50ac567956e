/*
 * gemm.c — ember-bench --gemm: the generated GEMM against OpenBLAS, product by
 * product.
 *
 * The workloads time whole models; a contraction that the generated kernel
 * does badly hides in them unless a model happens to have its layout. This
 * sweep times single products of each layout the kernel distinguishes (B's
 * rows contiguous, B transposed as in x w^T, A transposed, batched) at the
 * workloads' shapes and at square, thin and odd ones. For each it compiles
 * the product alone, checks it against eager (OpenBLAS's sgemm), times the two
 * in alternating rounds (timing.c), and says what the compiled code runs (the
 * `kernels` dump: the generated GEMM's orientation and packing, or OpenBLAS).
 * It is how x @ w with a long k was found running at 40% of OpenBLAS's speed.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

typedef enum { AB, ABT, ATB, BATCH_ABT, BATCH_AB } layout;

static const char *layout_name[] = {
    [AB] = "x @ w", [ABT] = "x @ w^T", [ATB] = "x^T @ w", [BATCH_ABT] = "q @ k^T, batched", [BATCH_AB] = "p @ v, batched",
};

typedef struct product {
    layout l;
    int64_t batch, m, k, n;
    const char *what; /* where the shape comes from, or "" */
} product;

static const product sweep[] = {
    {AB, 1, 16, 16, 16, "tiny"},
    {AB, 1, 1024, 1024, 1024, ""},
    {AB, 1, 64, 1024, 4096, ""},
    {AB, 1, 2048, 128, 2048, ""},
    {AB, 1, 33, 777, 1500, ""},
    {AB, 1, 4096, 64, 64, ""},
    {ABT, 1, 128, 256, 768, "block's qkv"},
    {ABT, 1, 128, 1024, 256, "block's fc2"},
    {ABT, 1, 256, 512, 1536, "attention's qkv"},
    {ABT, 1, 64, 1024, 4096, "mlp's fc1"},
    {ABT, 1, 64, 4096, 1024, "mlp's fc2"},
    {ABT, 1, 1024, 1024, 1024, ""},
    {ATB, 1, 512, 512, 512, ""},
    {ATB, 1, 1024, 1024, 1024, ""},
    {ATB, 1, 2048, 128, 2048, ""},
    {ATB, 1, 100, 3000, 100, ""},
    {BATCH_ABT, 8, 256, 64, 256, "attention's scores"},
    {BATCH_AB, 8, 256, 256, 64, "attention's p @ v"},
};

static em_tensor *g_w; /* the second operand, captured as a constant */

static em_tensor *f_ab(em_tensor *x) { return em_matmul(x, g_w); }
static em_tensor *f_abt(em_tensor *x) { return em_linear(x, g_w, NULL); }
static em_tensor *f_atb(em_tensor *x) { return em_matmul(em_transpose(x, 0, 1), g_w); }
static em_tensor *f_batch_abt(em_tensor *x) { return em_matmul(x, em_transpose(g_w, 1, 2)); }

static bench_fn model_of(layout l) {
    switch (l) {
    case AB: case BATCH_AB: return f_ab;
    case ABT: return f_abt;
    case ATB: return f_atb;
    case BATCH_ABT: return f_batch_abt;
    }
    return NULL;
}

/* x and w for the product (x as the model takes it: [k, m] for x^T @ w). */
static void operands(const product *p, em_tensor **x, em_tensor **w) {
    int64_t b = p->batch, m = p->m, k = p->k, n = p->n;
    *x = *w = NULL;
    switch (p->l) {
    case AB: *x = em_randn(2, (int64_t[]){m, k}, 1), *w = em_randn(2, (int64_t[]){k, n}, 2); break;
    case ABT: *x = em_randn(2, (int64_t[]){m, k}, 1), *w = em_randn(2, (int64_t[]){n, k}, 2); break;
    case ATB: *x = em_randn(2, (int64_t[]){k, m}, 1), *w = em_randn(2, (int64_t[]){k, n}, 2); break;
    case BATCH_ABT: *x = em_randn(3, (int64_t[]){b, m, k}, 1), *w = em_randn(3, (int64_t[]){b, n, k}, 2); break;
    case BATCH_AB: *x = em_randn(3, (int64_t[]){b, m, k}, 1), *w = em_randn(3, (int64_t[]){b, k, n}, 2); break;
    }
}

/* What the compiled product runs, from its `kernels` dump: "OpenBLAS", the
 * AMX tiles, or the generated FMA GEMM's orientation and packing (a constant
 * B kept packed, packed per call, or read in place). */
static void kernel_of(void *fast, char *out, size_t cap) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    snprintf(out, cap, "?");
    if (!f) return;
    em_dump(fast, "kernels", f);
    fclose(f);
    const char *g = text ? strstr(text, "generated GEMM") : NULL;
    const char *eol = g ? strchr(g, '\n') : NULL;
    bool kept = g && strstr(g, "packed once and kept") && (!eol || strstr(g, "packed once and kept") < eol);
    if (g && !strncmp(g, "generated GEMM on AMX tiles", 27)) {
        snprintf(out, cap, "generated: AMX tiles (bf16x6)%s", kept ? ", B kept packed" : "");
    } else if (g) {
        snprintf(out, cap, "generated: lanes along %s, %s", strstr(g, "lanes along m") ? "m" : "n",
                 kept ? "B kept packed" : strstr(g, "read in place") ? "read in place" : "packed");
    } else if (text && strstr(text, "OpenBLAS")) {
        snprintf(out, cap, "OpenBLAS");
    }
    free(text);
}

/* The compiled product agrees with eager's, normwise: ||got - want|| <= 2e-5
 * ||want||. Elementwise tolerances fail on entries that cancel; an f32 sum of
 * K products in another order is off by about sqrt(K) ulp normwise (3e-6 at
 * K = 3000), a wrong kernel by order 1. */
static bool same_product(em_tensor *got, em_tensor *want) {
    int64_t n = em_numel(want);
    if (em_numel(got) != n) return false;
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    bool ok = a && b && !em_read(want, a, (size_t)n * 4) && !em_read(got, b, (size_t)n * 4);
    double diff = 0, norm = 0;
    for (int64_t i = 0; ok && i < n; i++) diff += ((double)b[i] - a[i]) * ((double)b[i] - a[i]), norm += (double)a[i] * a[i];
    free(a), free(b);
    return ok && diff <= 4e-10 * norm;
}

int bench_gemm_sweep(FILE *out, double seconds, int threads, const bench_limits *lim) {
    int failed = 0;
    fprintf(out, "ember-bench --gemm, %d thread(s); %s FMA peak %.1f GFLOP/s\n\n", threads, lim->fma_isa,
            lim->fma_gflops);
    fprintf(out, "| product | batch x m x k x n | shape of | OpenBLAS GFLOP/s | compiled GFLOP/s | compiled / OpenBLAS "
                 "| compiled, of peak | compiled code |\n");
    fprintf(out, "|---|---|---|---:|---:|---:|---:|---|\n");
    for (size_t i = 0; i < sizeof sweep / sizeof sweep[0]; i++) {
        const product *p = &sweep[i];
        em_tensor *x, *want = NULL, *got = NULL;
        operands(p, &x, &g_w);
        bench_fn eager = model_of(p->l);
        bench_fn fast = x && g_w ? em_compile((void *)eager, "tensor(tensor)", NULL) : NULL;
        fprintf(stderr, "  %s %lld x %lld x %lld x %lld...\n", layout_name[p->l], (long long)p->batch,
                (long long)p->m, (long long)p->k, (long long)p->n);
        if (fast) want = eager(x), got = fast(x);
        if (!want || !got || !same_product(got, want)) {
            fprintf(stderr, "  FAILED: %s\n", want && got ? "compiled result differs from eager" : em_last_error());
            fprintf(out, "| %s | %lld x %lld x %lld x %lld | %s | FAILED |\n", layout_name[p->l], (long long)p->batch,
                    (long long)p->m, (long long)p->k, (long long)p->n, p->what);
            failed++;
        } else {
            char code[96];
            kernel_of((void *)fast, code, sizeof code);
            bench_timing te, tc;
            double ratio, gflop = 2.0 * (double)(p->batch * p->m * p->k * p->n) / 1e9, of_peak, peak_ms;
            bench_bound *bound = bench_bound_new(gflop * 1e9, 0, threads);
            bench_time_pair(eager, fast, x, seconds, threads, &te, &tc, &ratio, bound, &of_peak, &peak_ms);
            if (!bound) of_peak = gflop / tc.med * 1e3 / lim->fma_gflops;
            bench_bound_free(bound);
            fprintf(out, "| %s | %lld x %lld x %lld x %lld | %s | %8.1f | %8.1f | %6.2fx | %5.1f%% | %s |\n",
                    layout_name[p->l], (long long)p->batch, (long long)p->m, (long long)p->k, (long long)p->n,
                    p->what, gflop / te.med * 1e3, gflop / tc.med * 1e3, ratio, 100.0 * of_peak, code);
            fflush(out);
        }
        em_release(want), em_release(got), em_release(x), em_release(g_w);
        em_compiled_free((void *)fast);
    }
    fprintf(out, "\nGFLOP/s from the median ms per call over 9 rounds, eager (OpenBLAS) and compiled rounds "
                 "alternating; compiled / OpenBLAS = the median of the rounds' ratios; of peak = the median of "
                 "the rounds' compiled GFLOP/s over the FMA peak measured right after each compiled round\n");
    return failed;
}
