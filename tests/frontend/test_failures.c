/*
 * test_failures.c — resource failures end to end through em_compile: what a
 * user sees when memory, the code generator or the object cache's disk gives
 * out, and that the compiled function recovers once the resource is back.
 *
 * Covered:
 *  - out of memory: an injected allocation failure (rt_alloc_fail_after) at
 *    every allocation of a first compiled call of a model that runs as
 *    generated code, one allocation point after the other until the call
 *    makes fewer allocations than the injection waits for (tracing, the
 *    passes, fusion, the memory plan, code generation, running). A call hit
 *    by the failure returns NULL with an "out of memory" message (ember.h: a
 *    failing call returns NULL and sets em_last_error), or, where the library
 *    degrades instead (code generation failing falls back to interpreting the
 *    kernels), eager's result. Either way nothing is left behind (tensor
 *    storage back to its baseline after em_compiled_free; LeakSanitizer
 *    checks the rest under SAN=1), and with the injection off the same
 *    function then returns eager's result;
 *  - a code-generation failure (cg_emit_fail_next) before the first call:
 *    the kernels are interpreted with eager's results, the `kernels` dump says
 *    "code generation failed: ..." for them, the `llvm` and `asm` dumps that
 *    nothing was generated; a later compile generates code again;
 *  - a recompile storm: 50 shapes with max_recompiles = 4: every result right,
 *    4 compiles, the other 46 calls eager fallbacks, and the
 *    "max_recompiles (4) reached" fallback logged once (EMBER_LOG=fallbacks is
 *    read once per process; Criterion runs each test in a process of its own,
 *    so the test sets it before its first compile and captures stderr);
 *  - a cache folder that cannot grow (RLIMIT_FSIZE of a few bytes, SIGXFSZ
 *    ignored): the compile and its results are unaffected, the store fails
 *    (cg_cache_stats_get: one store failure, no store), says so in one
 *    message on stderr and leaves no temporary file behind; with room again
 *    the next compile stores its entry.
 *
 * Results are compared with the eager call of the same model, byte for byte
 * (tu_expect_identical).
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen.h"
#include "frontend.h"
#include "../util.h"
#include "compile_util.h"
#include "../codegen/cache_util.h"

typedef em_tensor *(*model1)(em_tensor *);

/* ---- helpers ------------------------------------------------------------------------------------- */

/* Ends an injection armed with rt_alloc_fail_after(n) before a call; returns
 * whether it was still pending, i.e. the call made fewer than n allocations
 * (the pending countdown makes one of the next n allocations fail). */
static bool injection_was_pending(long n) {
    bool pending = false;
    for (long k = 0; k < n && !pending; k++) {
        void *p = rt_malloc(1, "probe");
        if (p) free(p);
        else pending = true;
    }
    rt_alloc_fail_after(0);
    em_clear_error();
    return pending;
}

static model1 compile_chain(const char *name, int max_recompiles) {
    model1 f = (model1)em_compile((void *)chain, "tensor(tensor)",
                                  &(em_options){.name = name, .max_recompiles = max_recompiles});
    cr_assert(f, "em_compile: %s", em_last_error());
    return f;
}

/* ---- out of memory --------------------------------------------------------------------------------- */

Test(failures, an_allocation_failure_anywhere_in_a_first_compiled_call_fails_cleanly_and_the_function_then_works) {
    if (cg_host_width() == 0) cr_skip_test("no code generation on this host");
    setenv("EMBER_CACHE_DIR", "off", 1); /* every compile runs the whole code generator */
    em_tensor *x = tu_uniform_tensor(2, SH(16, 64), -2, 2, 1);
    em_tensor *want = chain(x);
    cr_assert(want, "%s", em_last_error());
    size_t base = tu_live_bytes();
    int failed = 0, degraded = 0;
    long n = 1;
    for (;; n++) {
        cr_assert_leq(n, 2000, "the first call never stopped allocating");
        model1 fast = compile_chain("chain", 0);
        rt_alloc_fail_after(n);
        em_clear_error();
        em_tensor *got = fast(x);
        char err[512];
        snprintf(err, sizeof err, "%s", em_last_error());
        bool pending = injection_was_pending(n);
        if (pending) { /* the call made fewer than n allocations: it ran untouched */
            cr_assert(got, "n=%ld: no failure injected, yet: %s", n, err);
            tu_expect_compiled(got, want, "the call past every allocation point");
        } else if (!got) {
            failed++;
            cr_expect(strstr(err, "out of memory"), "n=%ld: a NULL result says why: '%s'", n, err);
        } else {
            degraded++; /* the library worked around it */
            tu_expect_compiled(got, want, "a call that survived an injected failure");
        }
        em_release(got);
        /* The injection is off: the same function works. */
        got = fast(x);
        cr_assert(got, "n=%ld: the call after the injected failure: %s", n, em_last_error());
        tu_expect_compiled(got, want, "the call after an injected failure");
        em_release(got);
        em_stats st = cu_stats_of((void *)fast);
        cr_expect_leq(st.compiles, 2, "n=%ld: compiles %llu", n, (unsigned long long)st.compiles);
        em_compiled_free((void *)fast);
        cr_expect_eq(tu_live_bytes(), base, "n=%ld: %zu bytes of tensor storage left behind", n,
                     tu_live_bytes() - base);
        if (pending) break;
    }
    cr_expect_gt(failed, 0, "some injected failures made the call fail");
    cr_expect_gt(n, 20, "a first compiled call allocates at many points (%ld)", n);
    cr_log_info("%ld allocation points: %d failed the call, %d were worked around", n - 1, failed, degraded);
    em_release(want), em_release(x);
}

/* ---- code generation fails ------------------------------------------------------------------------- */

Test(failures, a_code_generation_failure_runs_the_kernels_interpreted_with_eager_results_and_says_why) {
    if (cg_host_width() == 0) cr_skip_test("no code generation on this host");
    em_tensor *x = tu_uniform_tensor(2, SH(8, 32), -2, 2, 1);
    em_tensor *want = chain(x);
    model1 fast = compile_chain("chain", 0);
    cg_emit_fail_next(1);
    for (int i = 0; i < 2; i++) { /* the second call runs the same interpreted program */
        em_tensor *got = fast(x);
        cr_assert(got, "call %d: %s", i, em_last_error());
        tu_expect_identical(got, want, "kernels interpreted after a code-generation failure");
        em_release(got);
    }
    cg_emit_fail_next(0);
    EXPECT_STATS(fast, 2, 1, 1, 0);
    int status;
    em_stats st = cu_stats_of((void *)fast);
    char *k = cu_dump((void *)fast, "kernels", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(k, "code generation failed: "), "the kernels say why:\n%s", k);
    cr_expect(strstr(k, "injected failure"), "and pass on the generator's reason:\n%s", k);
    cr_expect_eq(cu_count_of(k, "code generation failed: "), st.kernels, "once per kernel (%d):\n%s",
                 st.kernels, k);
    free(k);
    char *ll = cu_dump((void *)fast, "llvm", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(ll, "no kernel of this graph was generated"), "llvm:\n%s", ll);
    cr_expect(!strstr(ll, "define"), "llvm:\n%s", ll);
    free(ll);
    char *as = cu_dump((void *)fast, "asm", &status);
    cr_expect(strstr(as, "no kernel of this graph was generated"), "asm:\n%s", as);
    free(as);
    em_compiled_free((void *)fast);

    /* The failure was one-off: the next compile generates code. */
    fast = compile_chain("chain", 0);
    em_tensor *got = fast(x);
    tu_expect_identical(got, want, "generated code after the failure");
    em_release(got);
    k = cu_dump((void *)fast, "kernels", &status);
    cr_expect(!strstr(k, "code generation failed"), "kernels:\n%s", k);
    free(k);
    ll = cu_dump((void *)fast, "llvm", &status);
    cr_expect(strstr(ll, "define"), "the llvm stage has the generated code:\n%s", ll);
    free(ll);
    em_compiled_free((void *)fast);
    em_release(want), em_release(x);
}

/* ---- a recompile storm ------------------------------------------------------------------------------- */

Test(failures, a_storm_of_fifty_shapes_compiles_four_runs_the_rest_eagerly_and_logs_the_limit_once) {
    enum { SHAPES = 50, LIMIT = 4 };
    setenv("EMBER_LOG", "fallbacks", 1); /* before the first compile of this process */
    model1 fast = compile_chain("storm", LIMIT);
    em_tensor *x[SHAPES], *want[SHAPES];
    for (int i = 0; i < SHAPES; i++) {
        x[i] = tu_uniform_tensor(2, SH(i + 1, 8), -2, 2, (uint64_t)i);
        want[i] = chain(x[i]);
    }
    tu_capture cap;
    tu_capture_begin(&cap);
    em_tensor *got[SHAPES];
    for (int i = 0; i < SHAPES; i++) got[i] = fast(x[i]);
    char *log = tu_capture_end(&cap);
    for (int i = 0; i < SHAPES; i++) {
        char what[32];
        snprintf(what, sizeof what, "shape %d", i);
        cr_expect(got[i], "%s: %s", what, em_last_error());
        if (got[i]) tu_expect_identical(got[i], want[i], what);
        em_release(got[i]);
    }
    EXPECT_STATS(fast, SHAPES, LIMIT, SHAPES, SHAPES - LIMIT);
    cr_expect_eq(cu_count_of(log, "max_recompiles (4) reached"), 1, "logged once:\n%s", log);
    cr_expect_eq(cu_count_of(log, "fallback storm"), 1, "no other fallback logged:\n%s", log);
    free(log);

    /* The compiled shapes still hit; the others still run eagerly. */
    for (int i = 0; i < LIMIT + 1; i++) {
        em_tensor *g = fast(x[i]);
        tu_expect_identical(g, want[i], "again");
        em_release(g);
    }
    EXPECT_STATS(fast, SHAPES + LIMIT + 1, LIMIT, SHAPES + 1, SHAPES - LIMIT + 1);
    for (int i = 0; i < SHAPES; i++) em_release(x[i]), em_release(want[i]);
    em_compiled_free((void *)fast);
    unsetenv("EMBER_LOG");
}

/* ---- the cache folder cannot grow -------------------------------------------------------------------- */

Test(failures, a_cache_folder_that_cannot_grow_costs_only_the_store) {
    if (cg_host_width() == 0) cr_skip_test("no code generation on this host");
    cache_env env;
    env_begin(&env);
    em_tensor *x = tu_uniform_tensor(2, SH(64, 256), -2, 2, 1);
    em_tensor *want = chain(x);
    model1 fast = compile_chain("chain", 0);
    cg_cache_stats s0;
    cg_cache_stats_get(&s0);

    /* stderr into a pipe meanwhile (a file could not grow either) */
    int fds[2], saved = dup(2);
    cr_assert(saved >= 0 && pipe(fds) == 0);
    fflush(stderr);
    cr_assert_geq(dup2(fds[1], 2), 0);
    struct rlimit old, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = (struct rlimit){.rlim_cur = 16, .rlim_max = old.rlim_max};
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    em_tensor *got = fast(x); /* compiles: the store runs into the limit */
    int rc = setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, was);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    char msg[2048];
    ssize_t len = 0, r;
    while (len < (ssize_t)sizeof msg - 1 && (r = read(fds[0], msg + len, sizeof msg - 1 - (size_t)len)) > 0) len += r;
    msg[len > 0 ? len : 0] = '\0';
    close(fds[0]);
    cr_assert_eq(rc, 0, "the limit is restored");
    cr_expect(strstr(msg, "ember: cannot write the object cache") && strstr(msg, "File too large"),
              "one message says the cache could not be written:\n%s", msg);
    cr_expect_eq(cu_count_of(msg, "ember:"), 1, "and only one:\n%s", msg);

    cr_assert(got, "%s", em_last_error());
    tu_expect_identical(got, want, "a compile whose store failed");
    em_release(got);
    cg_cache_stats s1;
    cg_cache_stats_get(&s1);
    cr_expect_eq(s1.store_failures - s0.store_failures, 1, "store failures +%ld",
                 s1.store_failures - s0.store_failures);
    cr_expect_eq(s1.stores - s0.stores, 0, "stores +%ld", s1.stores - s0.stores);
    cr_expect_eq(s1.misses - s0.misses, 1, "misses +%ld", s1.misses - s0.misses);
    cr_expect_eq(count_files(env.dir, "", NULL, 0), 0, "no entry and no temporary left in %s", env.dir);
    EXPECT_STATS(fast, 1, 1, 1, 0);
    int status;
    char *ll = cu_dump((void *)fast, "llvm", &status);
    cr_expect(strstr(ll, "define"), "the code was generated all the same:\n%s", ll);
    free(ll);

    got = fast(x);
    tu_expect_identical(got, want, "the next call");
    em_release(got);
    em_compiled_free((void *)fast);

    /* With room again, the next compile stores the entry. */
    fast = compile_chain("chain", 0);
    got = fast(x);
    tu_expect_identical(got, want, "with room again");
    em_release(got);
    em_compiled_free((void *)fast);
    cg_cache_stats s2;
    cg_cache_stats_get(&s2);
    cr_expect_eq(s2.stores - s1.stores, 1, "stores +%ld", s2.stores - s1.stores);
    cr_expect_eq(count_files(env.dir, "", NULL, 0), 1, "one entry in %s", env.dir);
    em_release(want), em_release(x);
    env_end(&env);
}
