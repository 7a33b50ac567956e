/*
 * test_models.c — the benchmark's workloads (bench/models), compiled vs eager.
 *
 * Each model of DESIGN.md runs eagerly and compiled on the same input: the
 * results agree within the contract's tolerance (rtol 1e-4, atol 1e-5), the
 * compiled function made one graph and reports its kernels and arena, and for
 * the mlp and the GPT-2 block the compiled call's peak memory is at most 0.6x
 * the eager call's. Peak memory is deterministic (the allocator's high-water
 * mark), so unlike time it is a fair thing for a test to check: compiled peak
 * is what the call allocates plus the arena the function keeps between calls.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>

#include "../util.h"
#include "models.h"

static void setup(void) { cr_assert_eq(bm_setup(), 0, "%s", em_last_error()); }
static void teardown(void) { bm_teardown(); }

/* The most bytes one call of fn(x) allocates beyond what was live before it. */
static size_t call_peak(em_tensor *(*fn)(em_tensor *), em_tensor *x, em_tensor **out) {
    em_memory_stats ms;
    em_memory_stats_get(&ms);
    size_t base = ms.live_bytes;
    em_memory_reset_peak();
    *out = fn(x);
    em_memory_stats_get(&ms);
    return ms.peak_bytes - base;
}

static void expect_close(const em_tensor *got, const em_tensor *want, const char *what) {
    cr_assert(got && want, "%s: %s", what, em_last_error());
    cr_assert_eq(em_numel(got), em_numel(want));
    int64_t n = em_numel(want);
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    cr_assert(a && b);
    cr_assert_eq(em_read(want, a, (size_t)n * 4), 0);
    cr_assert_eq(em_read(got, b, (size_t)n * 4), 0);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !(fabsf(a[i] - b[i]) <= 1e-5f + 1e-4f * fabsf(a[i]));
    cr_expect_eq(bad, 0, "%s: %lld of %lld elements differ", what, (long long)bad, (long long)n);
    free(a), free(b);
}

typedef struct measured {
    size_t eager_peak, compiled_peak;
    em_stats st;
} measured;

static measured run_model(const char *name) {
    const bm_model *m = bm_find(name);
    cr_assert(m, "%s", name);
    em_tensor *x = m->input(7), *want, *got;
    measured r = {.eager_peak = call_peak(m->fn, x, &want)};
    em_tensor *(*fast)(em_tensor *) = em_compile((void *)m->fn, "tensor(tensor)", &(em_options){.name = name});
    cr_assert(fast, "%s", em_last_error());
    em_tensor *first = fast(x); /* traces and compiles */
    expect_close(first, want, name);
    r.compiled_peak = call_peak(fast, x, &got); /* a compiled call, arena already kept */
    expect_close(got, want, name);
    cr_assert_eq(em_compiled_stats((void *)fast, &r.st), 0);
    r.compiled_peak += (size_t)r.st.arena_bytes;
    cr_expect_eq(r.st.compiles, 1, "%s compiled once", name);
    cr_expect_eq(r.st.eager_fallbacks, 0, "%s ran compiled", name);
    cr_expect_gt(r.st.kernels, 0);
    em_release(first), em_release(got), em_release(want), em_release(x);
    em_compiled_free((void *)fast);
    return r;
}

TestSuite(models, .init = setup, .fini = teardown);

Test(models, every_workload_compiled_agrees_with_eager) {
    for (int i = 0; i < bm_nmodels; i++) run_model(bm_models[i].name);
}

Test(models, mlp_compiled_peaks_at_most_six_tenths_of_eager) {
    measured r = run_model("mlp");
    cr_expect_leq(r.compiled_peak * 10, r.eager_peak * 6, "compiled %zu vs eager %zu bytes",
                  r.compiled_peak, r.eager_peak);
    cr_expect_eq(r.st.kernels, 2, "linear+gelu, linear+bias");
}

Test(models, gpt2_block_compiled_peaks_at_most_six_tenths_of_eager) {
    measured r = run_model("block");
    cr_expect_leq(r.compiled_peak * 10, r.eager_peak * 6, "compiled %zu vs eager %zu bytes",
                  r.compiled_peak, r.eager_peak);
}

Test(models, the_chain_is_one_kernel_and_rows_ops_one_each) {
    cr_expect_eq(run_model("chain").st.kernels, 1);
    cr_expect_eq(run_model("softmax").st.kernels, 1);
    cr_expect_eq(run_model("layernorm").st.kernels, 1);
    cr_expect_eq(run_model("tiny").st.kernels, 1, "matmul with its bias and tanh");
}
