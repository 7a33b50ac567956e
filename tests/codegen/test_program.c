/*
 * test_program.c — the generated program (codegen/program.c): a compiled
 * graph is one generated function that runs its steps in order, calling its
 * loop nests (over the thread pool when they are big) and calling back into
 * the interpreter for the steps codegen leaves to the runtime (an OpenBLAS
 * contraction, a gather), seen through the `llvm` dump and checked against
 * eager; and EMBER_PROFILE=1, which makes it time every step for the
 * `profile` stage.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "../frontend/compile_util.h"

typedef em_tensor *(*fn2)(em_tensor *, em_tensor *);

/* relu(a @ b) * sigmoid(c), c = a row sum: a GEMM, a row nest and a pointwise nest. */
static em_tensor *three_kernels(em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *p = em_relu(em_matmul(a, b));
    em_tensor *y = em_keep(em_mul(em_exp(em_softmax(p, -1)), em_sigmoid(em_sum(a, -1, 1))));
    em_scope_end();
    return y;
}

static char *llvm_of(void *fn) {
    int status;
    char *l = cu_dump(fn, "llvm", &status);
    cr_assert_eq(status, 0, "%s", l);
    return l;
}

/* three_kernels compiled, on a [40,24] and b [24,33] (made here), called
 * `calls` times, each against eager. */
static fn2 three_kernels_checked(em_tensor **a, em_tensor **b, int calls, const char *what) {
    *a = tu_uniform_tensor(2, SH(40, 24), -1, 1, 1), *b = tu_uniform_tensor(2, SH(24, 33), -1, 1, 2);
    fn2 fast = (fn2)em_compile((void *)three_kernels, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < calls; i++) {
        em_tensor *e = three_kernels(*a, *b), *g = fast(*a, *b);
        tu_expect_compiled(g, e, what);
        em_release(g), em_release(e);
    }
    return fast;
}

Test(program, a_compiled_graph_is_one_generated_program_calling_its_kernels_in_order) {
    em_tensor *a, *b;
    fn2 fast = three_kernels_checked(&a, &b, 1, "three kernels through the program");
    char *l = llvm_of((void *)fast);
    const char *prog = strstr(l, "define i32 @ember_");
    cr_assert(prog && strstr(prog, "_prog(ptr"), "one program function: %s", l);
    /* the program calls nests n0, n1, ... in that order and nothing else */
    const char *at = prog;
    int calls = 0;
    for (int k = 0; k < 8; k++) {
        char want[32];
        snprintf(want, sizeof want, "_n%d(ptr", k);
        const char *c = strstr(prog, want);
        if (!c) break;
        cr_expect(c > at, "nest %d is called after nest %d", k, k - 1);
        at = c, calls++;
    }
    cr_expect_geq(calls, 2, "the program calls the kernels: %s", prog);
    cr_expect(!strstr(prog, "cg_exec_interpret"), "nothing is interpreted: %s", prog);
    free(l);
    em_release(a), em_release(b);
    em_compiled_free((void *)fast);
}

Test(program, interpreted_steps_are_called_back_from_the_program_and_keep_eagers_values) {
    setenv("EMBER_GEMM", "blas", 1); /* the contraction is an OpenBLAS step */
    em_tensor *a, *b;
    fn2 fast = three_kernels_checked(&a, &b, 3, "an OpenBLAS step inside the program");
    char *l = llvm_of((void *)fast);
    cr_expect(strstr(l, "call i32 @cg_exec_interpret(ptr"), "the program calls the interpreter back: %s", l);
    free(l);
    em_release(a), em_release(b);
    em_compiled_free((void *)fast);
}

/* A big elementwise chain: its nest runs over the pool from the program. */
static em_tensor *big_chain(em_tensor *x, em_tensor *y) {
    em_scope_begin();
    em_tensor *r = em_keep(em_add(em_tanh(em_mul(x, y)), em_sigmoid(y)));
    em_scope_end();
    return r;
}

Test(program, a_big_kernel_is_split_over_the_pool_by_the_program_with_one_or_two_threads) {
    em_tensor *x = tu_uniform_tensor(2, SH(512, 1000), -2, 2, 3), *y = tu_uniform_tensor(2, SH(512, 1000), -2, 2, 4);
    fn2 fast = (fn2)em_compile((void *)big_chain, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_tensor *e = big_chain(x, y);
    for (int t = 1; t <= 2; t++) {
        cr_assert_eq(em_set_threads(t), 0);
        em_tensor *g = fast(x, y);
        tu_expect_identical(g, e, t == 1 ? "one thread" : "two threads");
        em_release(g);
    }
    char *l = llvm_of((void *)fast);
    cr_expect(strstr(l, "call void @rt_parallel_for_hot("), "%s", l);
    free(l);
    em_release(e), em_release(x), em_release(y);
    em_compiled_free((void *)fast);
}

Test(program, EMBER_PROFILE_times_every_step_and_the_profile_stage_shows_them) {
    setenv("EMBER_PROFILE", "1", 1);
    em_tensor *a, *b;
    fn2 fast = three_kernels_checked(&a, &b, 3, "a profiled call");
    int status;
    char *p = cu_dump((void *)fast, "profile", &status);
    cr_expect_eq(status, 0);
    cr_expect(strstr(p, "; profile: 3 calls, "), "%s", p);
    cr_expect(strstr(p, "step 0 ") && strstr(p, "generated GEMM") && strstr(p, " us "), "%s", p);
    free(p);
    char *l = llvm_of((void *)fast);
    cr_expect(strstr(l, "call i32 @cg_exec_mark(ptr"), "%s", l);
    free(l);
    em_compiled_free((void *)fast);
    /* without it: no marks, and the stage says how to ask for it */
    unsetenv("EMBER_PROFILE");
    fast = (fn2)em_compile((void *)three_kernels, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_release(fast(a, b));
    p = cu_dump((void *)fast, "profile", &status);
    cr_expect(strstr(p, "compile with EMBER_PROFILE=1"), "%s", p);
    free(p);
    l = llvm_of((void *)fast);
    cr_expect(!strstr(l, "cg_exec_mark"), "%s", l);
    free(l);
    em_release(a), em_release(b);
    em_compiled_free((void *)fast);
}

Test(program, an_interpreted_graph_is_profiled_too) {
    setenv("EMBER_PROFILE", "1", 1);
    setenv("EMBER_CODEGEN", "0", 1);
    em_tensor *a = tu_uniform_tensor(2, SH(40, 24), -1, 1, 1), *b = tu_uniform_tensor(2, SH(24, 33), -1, 1, 2);
    fn2 fast = (fn2)em_compile((void *)three_kernels, "tensor(tensor, tensor)", NULL);
    cr_assert(fast, "%s", em_last_error());
    em_release(fast(a, b)), em_release(fast(a, b));
    int status;
    char *p = cu_dump((void *)fast, "profile", &status);
    cr_expect(strstr(p, "; profile: 2 calls, ") && strstr(p, "(runtime)"), "%s", p);
    free(p);
    em_release(a), em_release(b);
    em_compiled_free((void *)fast);
}
