/*
 * mlp.c — a first ember program: a two-layer MLP written as an ordinary C
 * function over em_tensor *, run eagerly, then compiled with EM_COMPILE.
 *
 *     make demo                       # builds the library and runs this file
 *     cc -Iinclude examples/mlp.c -Lbuild -lember -Wl,-rpath,$PWD/build -o mlp
 *
 * What it shows, in the order a new user needs it:
 *   1. creating tensors (em_randn, em_zeros, em_rand) and scaling them with ops;
 *   2. a model is just a C function: every em_* op runs the moment it is called;
 *   3. scopes: intermediates made inside em_scope_begin/em_scope_end are released
 *      at the end of the scope; em_keep moves the result out;
 *   4. errors: a failing op returns NULL and em_last_error() says why. NULL inputs
 *      are rejected the same way, so a chain of ops can be checked once at its end;
 *   5. reading results out (em_read), timing a call, and memory accounting;
 *   6. compiling: em_compile wraps the same mlp() into a function pointer of the
 *      same type; its first call traces the ops into a graph, later calls run the
 *      graph. The output is checked against eager, the graph is printed, and
 *      every stage is written to a dump folder (build/demo-dump under make demo).
 *
 * Today a compiled call runs the fused, memory-planned graph: the matmuls
 * through OpenBLAS as in eager mode, the bias and gelu epilogues as LLVM-
 * generated vector loops. Expect about eager speed (the GEMMs dominate) with
 * less memory.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <ember.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { BATCH = 64, IN = 1024, HIDDEN = 4096, OUT = 1024, RUNS = 21 };

/* Weights live in globals: a model function reads them like any C code would. */
static em_tensor *w1, *b1, *w2, *b2;

/* The model: linear -> gelu -> linear. em_linear(x, w, b) is x w^T + b with w
 * stored [out, in], as in PyTorch. No error checks inside: an op given NULL
 * returns NULL, so the caller checks the final result once. */
static em_tensor *mlp(em_tensor *x) {
    em_tensor *h = em_linear(x, w1, b1); /* [BATCH, HIDDEN] */
    h = em_gelu(h);                      /* erf form, like torch.nn.functional.gelu */
    return em_linear(h, w2, b2);         /* [BATCH, OUT] */
}

/* Prints what went wrong and exits: fine for an example, not for a library. */
static void check(const void *p, const char *what) {
    if (p) return;
    fprintf(stderr, "mlp: %s failed: %s\n", what, em_last_error());
    exit(1);
}

/* N(0, 1) weights scaled by 1/sqrt(fan_in), so activations stay near unit size.
 * em_randn is deterministic per seed. The scaling runs in a scope: the unscaled
 * tensor and the scalar are released at its end, the kept product moves out. */
static em_tensor *init_weight(int64_t out, int64_t in, uint64_t seed) {
    em_scope_begin();
    em_tensor *w = em_randn(2, (int64_t[]){out, in}, seed);
    em_tensor *s = em_scalar(EM_F32, 1.0 / sqrt((double)in));
    em_tensor *scaled = em_keep(em_mul(w, s)); /* NULL if anything above failed */
    em_scope_end();
    check(scaled, "init_weight");
    return scaled;
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

/* One eager call of the model, with all intermediates freed before returning.
 * Returns the output (owned by the caller, or by the caller's scope) or NULL. */
static em_tensor *run_once(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(mlp(x)); /* em_keep(NULL) is NULL: checked by the caller */
    em_scope_end();
    return y;
}

/* 6. The same model, compiled. The result has mlp's own C type. */
static void compile_and_compare(em_tensor *x) {
    const char *dir = getenv("EMBER_DUMP_DIR");
    em_options opts = {.name = "mlp", .dump_dir = dir ? dir : "build/demo-dump"};
    __typeof__(&mlp) fast = (__typeof__(&mlp))em_compile((void *)mlp, "tensor(tensor)", &opts);
    check((void *)fast, "em_compile");

    em_scope_begin();
    em_tensor *ye = mlp(x), *yc = fast(x); /* the first compiled call traces */
    check(ye, "mlp"), check(yc, "compiled mlp");
    double diff = em_item(em_max(em_reshape(em_abs(em_sub(ye, yc)), 1, (int64_t[]){-1}), 0, 0));
    em_scope_end();
    printf("\ncompiled: max |eager - compiled| = %g\n", diff);

    double ms[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ms();
        em_tensor *yr = fast(x);
        ms[r] = now_ms() - t0;
        check(yr, "compiled mlp");
        em_release(yr);
    }
    qsort(ms, RUNS, sizeof ms[0], cmp_double);
    em_stats st;
    em_compiled_stats((void *)fast, &st);
    printf("compiled: %.3f ms per call (median of %d); %llu calls, %llu compile, %d kernels, "
           "%.2f ms to trace\n", ms[RUNS / 2], RUNS, (unsigned long long)st.calls,
           (unsigned long long)st.compiles, st.kernels, st.compile_ms);
    printf("the captured graph (all stages are in %s/):\n", opts.dump_dir);
    em_dump((void *)fast, "graph", stdout);
    em_compiled_free((void *)fast);
}

int main(void) {
    printf("ember %s, %d thread(s) (set EMBER_THREADS=n to change)\n", em_version(),
           em_get_threads());

    /* 1. Tensors. With no scope open, the caller owns what ops return. */
    w1 = init_weight(HIDDEN, IN, 1);
    w2 = init_weight(OUT, HIDDEN, 2);
    check(b1 = em_zeros(EM_F32, 1, (int64_t[]){HIDDEN}), "em_zeros");
    check(b2 = em_full(EM_F32, 1, (int64_t[]){OUT}, 0.01), "em_full");
    em_tensor *x = em_rand(2, (int64_t[]){BATCH, IN}, 3); /* U[0, 1) */
    check(x, "em_rand");

    /* 2. One eager call; measure the memory it needs beyond the inputs. */
    em_memory_stats before, after;
    em_memory_stats_get(&before);
    em_memory_reset_peak();
    em_tensor *y = run_once(x);
    check(y, "mlp");
    em_memory_stats_get(&after);

    /* 3. Inspect the result: shape, dtype, and a checksum of its values. */
    const int64_t *shape = em_shape(y);
    printf("output: %s [%lld, %lld]\n", em_dtype_name(em_type(y)), (long long)shape[0],
           (long long)shape[1]);
    static float out[BATCH * OUT];
    if (em_read(y, out, sizeof out) != 0) check(NULL, "em_read");
    double sum = 0, abs_sum = 0;
    for (int i = 0; i < BATCH * OUT; i++) {
        sum += out[i];
        abs_sum += out[i] < 0 ? -out[i] : out[i];
    }
    printf("checksum: sum %.6f, mean |y| %.6f, y[0,0..3] = %.5f %.5f %.5f %.5f\n", sum,
           abs_sum / (BATCH * OUT), out[0], out[1], out[2], out[3]);

    /* The ops agree with a reduction done by the library itself. */
    em_scope_begin();
    double lib_sum = em_item(em_sum(em_reshape(y, 1, (int64_t[]){-1}), 0, 0));
    em_scope_end();
    printf("em_sum over the output: %.6f\n", lib_sum);
    em_release(y); /* no scope open: y is ours */

    /* 4. Time per call: the median of RUNS calls, after one warm-up above. */
    double ms[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ms();
        em_tensor *yr = run_once(x);
        ms[r] = now_ms() - t0;
        check(yr, "mlp");
        em_release(yr);
    }
    qsort(ms, RUNS, sizeof ms[0], cmp_double);
    double flops = 2.0 * BATCH * ((double)IN * HIDDEN + (double)HIDDEN * OUT);
    printf("eager: %.3f ms per call (median of %d; best %.3f ms), %.1f GFLOP/s\n",
           ms[RUNS / 2], RUNS, ms[0], flops / (ms[RUNS / 2] * 1e6));

    /* 5. Memory: weights and input were live before the call; the peak adds the
     * hidden activations and the output. */
    printf("memory: %.2f MiB live before the call, peak %.2f MiB during it "
           "(+%.2f MiB), %llu allocations so far\n",
           before.live_bytes / 1048576.0, after.peak_bytes / 1048576.0,
           (after.peak_bytes - before.live_bytes) / 1048576.0,
           (unsigned long long)after.allocations);

    compile_and_compare(x);

    em_release(x);
    em_release(w1);
    em_release(b1);
    em_release(w2);
    em_release(b2);
    em_memory_stats end;
    em_memory_stats_get(&end);
    printf("memory after releasing everything: %zu bytes live\n", end.live_bytes);
    return end.live_bytes == 0 ? 0 : 1;
}
