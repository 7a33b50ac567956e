/*
 * kept_util.c — the checks of a constant weight kept packed (kept_util.h).
 */
#include "kept_util.h"

#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "../util.h"
#include "../frontend/compile_util.h"
#include "gemm_util.h"

typedef em_tensor *(*fn1)(em_tensor *);
typedef em_tensor *(*fn2)(em_tensor *, em_tensor *);

static em_tensor *c_w, *c_b; /* a linear's weight and bias in globals: constants of the graph */
static em_tensor *lin_const(em_tensor *x) { return em_linear(x, c_w, c_b); }
static em_tensor *mm_const(em_tensor *x) { return em_matmul(x, c_w); } /* B's rows along k: c_w is [K, N] */

static void use(const char *gemm) {
    if (gemm) setenv("EMBER_GEMM", gemm, 1);
    else unsetenv("EMBER_GEMM");
}

static size_t packed_bytes(void *fn) {
    em_stats st;
    cr_assert_eq(em_compiled_stats(fn, &st), 0, "%s", em_last_error());
    return st.packed_bytes;
}

static void expect_says(void *fast, const char *needle, const char *what) {
    char *sec = cu_codegen_section(fast, what);
    cr_expect(strstr(sec, needle), "%s: want \"%s\" in %s", what, needle, sec);
    free(sec);
}

void ku_expect_kept_once(const char *gemm, const ku_case *cases, int n, ku_bytes bytes, const char *per_call) {
    use(gemm);
    for (int threads = 1; threads <= 2; threads++)
        for (int s = 0; s < n; s++) {
            int64_t M = cases[s].M, K = cases[s].K, N = cases[s].N;
            fn1 model = cases[s].xw ? mm_const : lin_const;
            char what[96];
            snprintf(what, sizeof what, "%d threads, %s, M %lld K %lld N %lld", threads,
                     cases[s].xw ? "x @ w" : "linear", (long long)M, (long long)K, (long long)N);
            c_w = cases[s].xw ? tu_uniform_tensor(2, SH(K, N), -1, 1, 70 + s) : tu_uniform_tensor(2, SH(N, K), -1, 1, 70 + s);
            c_b = tu_uniform_tensor(1, SH(N), -1, 1, 80 + s);
            em_tensor *x = tu_uniform_tensor(2, SH(M, K), -1, 1, 90 + s), *want = model(x);
            em_options o = {.threads = threads};
            fn1 kept = (fn1)em_compile((void *)model, "tensor(tensor)", &o);
            setenv("EMBER_PACK_CONSTANTS", "0", 1);
            fn1 per = (fn1)em_compile((void *)model, "tensor(tensor)", &o);
            em_tensor *ref = per ? per(x) : NULL; /* traced and compiled now, so packing per call */
            unsetenv("EMBER_PACK_CONSTANTS");
            cr_assert(kept && per && ref, "%s: %s", what, em_last_error());
            cr_expect_eq(packed_bytes((void *)kept), 0, "%s: nothing packed before the first call", what);
            for (int call = 0; call < 4; call++) {
                em_tensor *got = kept(x);
                cr_assert(got, "%s: %s", what, em_last_error());
                tu_expect_identical(got, ref, what); /* the bits of B packed per call */
                tu_expect_compiled(got, want, what);
                /* the first call packs per panel; the second packs B whole and keeps it */
                cr_expect_eq(packed_bytes((void *)kept), call == 0 ? 0 : bytes(K, N), "%s, call %d", what, call);
                em_release(got);
            }
            expect_says((void *)kept, "B (a constant) packed once and kept", what);
            expect_says((void *)per, per_call, what);
            cr_expect_eq(packed_bytes((void *)per), 0, "%s: EMBER_PACK_CONSTANTS=0 keeps nothing", what);
            em_compiled_free((void *)kept), em_compiled_free((void *)per);
            em_release(ref), em_release(want), em_release(x), em_release(c_w), em_release(c_b);
        }
    use(NULL);
}

void ku_expect_argument_not_kept(const char *gemm, const char *per_call) {
    use(gemm);
    em_tensor *x = tu_uniform_tensor(2, SH(128, 300), -1, 1, 1), *w = tu_uniform_tensor(2, SH(96, 300), -1, 1, 2);
    fn2 fast = (fn2)em_compile((void *)gu_mm_bt, "tensor(tensor, tensor)", NULL);
    for (int call = 0; call < 3; call++) {
        em_tensor *got = fast(x, w), *want = gu_mm_bt(x, w);
        cr_assert(got, "%s", em_last_error());
        tu_expect_compiled(got, want, "x @ w^T, w an argument");
        em_release(got), em_release(want);
    }
    expect_says((void *)fast, per_call, "w an argument");
    cr_expect_eq(packed_bytes((void *)fast), 0);
    em_release(x), em_release(w);
    em_compiled_free((void *)fast);
    use(NULL);
}

void ku_expect_kept_after_failed_allocations(const char *gemm, ku_bytes bytes) {
    use(gemm);
    setenv("EMBER_CACHE_DIR", "off", 1); /* each round compiles: no object shared between rounds */
    c_w = tu_uniform_tensor(2, SH(64, 96), -1, 1, 3), c_b = tu_uniform_tensor(1, SH(64), -1, 1, 4);
    em_tensor *x = tu_uniform_tensor(2, SH(64, 96), -1, 1, 5), *want = lin_const(x);
    int hit = 0;
    for (long n = 1; n <= 400 && !hit; n++) {
        fn1 fast = (fn1)em_compile((void *)lin_const, "tensor(tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *got = fast(x); /* the first call: per panel */
        cr_assert(got, "%s", em_last_error());
        em_release(got);
        size_t base = tu_live_bytes();
        rt_alloc_fail_after(n);
        em_clear_error();
        got = fast(x);
        rt_alloc_fail_after(0);
        if (!got) {
            cr_expect_neq(em_last_error()[0], '\0', "n=%ld: NULL without a message", n);
        } else {
            tu_expect_compiled(got, want, "a call past an injected failure");
            if (packed_bytes((void *)fast) == 0) hit = 1; /* the constant's block was the one refused */
        }
        em_release(got);
        cr_expect_eq(tu_live_bytes(), base, "n=%ld: bytes left behind", n);
        got = fast(x);
        cr_assert(got, "n=%ld: the call after an injected failure: %s", n, em_last_error());
        tu_expect_compiled(got, want, "the call after an injected failure");
        cr_expect_eq(packed_bytes((void *)fast), bytes(96, 64), "n=%ld: then it is kept", n);
        em_release(got);
        em_compiled_free((void *)fast);
    }
    cr_expect(hit, "no injected failure hit the packing of the constant");
    unsetenv("EMBER_CACHE_DIR");
    em_release(want), em_release(x), em_release(c_w), em_release(c_b);
    use(NULL);
}
