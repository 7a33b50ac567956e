/*
 * test_jit.c — the JIT session: units built with the LLVM-C builder, compiled,
 * called and removed.
 *
 * Each test builds small modules by hand (a scalar add, a loop over float*
 * calling Sleef's AVX-512 exp, calls into the ember runtime including a
 * parallel loop whose body is generated code) and checks what the session
 * promises: results are right; process symbols (Sleef, libm) and ember's
 * runtime functions resolve by name; the `llvm` and `asm` texts exist exactly
 * when asked; a bad module, a bad pipeline, an unresolved or duplicate symbol
 * is an error with a message, never an abort, and the JIT works afterwards;
 * destroying a unit removes its symbols so the name can be defined again;
 * many units come and go without leaking (LeakSanitizer in `make SAN=1 test`,
 * and malloc's own count in the plain build); two threads compile and run
 * units at the same time; a fork or exit() right after the head start
 * (cg_jit_prepare) leaves the child a working JIT and exits cleanly.
 */
#include <criterion/criterion.h>

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"

/* ---- building modules --------------------------------------------------------------------- */

typedef struct mb {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef f32, i32, i64, ptr, v16;
} mb;

static mb mb_begin(const char *name) {
    mb m;
    cr_assert_eq(cg_module_begin(name, &m.ctx, &m.mod), 0, "%s", em_last_error());
    m.b = LLVMCreateBuilderInContext(m.ctx);
    m.f32 = LLVMFloatTypeInContext(m.ctx);
    m.i32 = LLVMInt32TypeInContext(m.ctx);
    m.i64 = LLVMInt64TypeInContext(m.ctx);
    m.ptr = LLVMPointerTypeInContext(m.ctx, 0);
    m.v16 = LLVMVectorType(m.f32, 16);
    return m;
}

/* The module, ready for cg_unit_create (the builder is gone). */
static LLVMModuleRef mb_end(mb *m) {
    LLVMDisposeBuilder(m->b);
    return m->mod;
}

static LLVMValueRef mb_func(mb *m, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int n) {
    LLVMValueRef f = LLVMAddFunction(m->mod, name, LLVMFunctionType(ret, params, (unsigned)n, 0));
    LLVMPositionBuilderAtEnd(m->b, LLVMAppendBasicBlockInContext(m->ctx, f, "entry"));
    return f;
}

static LLVMValueRef mb_call(mb *m, const char *callee, LLVMTypeRef ret, LLVMTypeRef *params,
                            LLVMValueRef *args, int n) {
    LLVMTypeRef ft = LLVMFunctionType(ret, params, (unsigned)n, 0);
    LLVMValueRef f = LLVMGetNamedFunction(m->mod, callee);
    if (!f) f = LLVMAddFunction(m->mod, callee, ft);
    return LLVMBuildCall2(m->b, ft, f, args, (unsigned)n, "");
}

static LLVMValueRef load_align(mb *m, LLVMTypeRef t, LLVMValueRef p) {
    LLVMValueRef v = LLVMBuildLoad2(m->b, t, p, "");
    LLVMSetAlignment(v, 4); /* user pointers are only float-aligned */
    return v;
}

static void store_align(mb *m, LLVMValueRef v, LLVMValueRef p) {
    LLVMSetAlignment(LLVMBuildStore(m->b, v, p), 4);
}

/* float NAME(float a, float b) { return a + b; } */
static LLVMModuleRef add_module(const char *name) {
    mb m = mb_begin(name);
    LLVMValueRef f = mb_func(&m, name, m.f32, (LLVMTypeRef[]){m.f32, m.f32}, 2);
    LLVMBuildRet(m.b, LLVMBuildFAdd(m.b, LLVMGetParam(f, 0), LLVMGetParam(f, 1), "s"));
    return mb_end(&m);
}

/* i32 NAME(void) { return k; } */
static LLVMModuleRef const_module(const char *name, int k) {
    mb m = mb_begin(name);
    mb_func(&m, name, m.i32, NULL, 0);
    LLVMBuildRet(m.b, LLVMConstInt(m.i32, (unsigned long long)k, 1));
    return mb_end(&m);
}

/* void NAME(float *x, float *y, i64 n, float k) {
 *     float one = Sleef_expf_u10(0);   // a process symbol, looked up while linking
 *     for (i < n) y[i] = x[i] * k + one;
 * } */
static LLVMModuleRef scale_module(const char *name) {
    mb m = mb_begin(name);
    LLVMValueRef f = mb_func(&m, name, LLVMVoidTypeInContext(m.ctx),
                             (LLVMTypeRef[]){m.ptr, m.ptr, m.i64, m.f32}, 4);
    LLVMValueRef x = LLVMGetParam(f, 0), y = LLVMGetParam(f, 1), n = LLVMGetParam(f, 2);
    LLVMValueRef zero_f = LLVMConstReal(m.f32, 0.0);
    LLVMValueRef one = mb_call(&m, "Sleef_expf_u10", m.f32, &m.f32, &zero_f, 1);
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(m.b);
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(m.ctx, f, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(m.ctx, f, "done");
    LLVMValueRef zero = LLVMConstInt(m.i64, 0, 0);
    LLVMBuildCondBr(m.b, LLVMBuildICmp(m.b, LLVMIntSGT, n, zero, ""), loop, done);
    LLVMPositionBuilderAtEnd(m.b, loop);
    LLVMValueRef i = LLVMBuildPhi(m.b, m.i64, "i");
    LLVMValueRef xi = load_align(&m, m.f32, LLVMBuildGEP2(m.b, m.f32, x, &i, 1, ""));
    LLVMValueRef v = LLVMBuildFMul(m.b, xi, LLVMGetParam(f, 3), "");
    v = LLVMBuildFAdd(m.b, v, one, "");
    store_align(&m, v, LLVMBuildGEP2(m.b, m.f32, y, &i, 1, ""));
    LLVMValueRef next = LLVMBuildAdd(m.b, i, LLVMConstInt(m.i64, 1, 0), "");
    LLVMAddIncoming(i, (LLVMValueRef[]){zero, next}, (LLVMBasicBlockRef[]){entry, loop}, 2);
    LLVMBuildCondBr(m.b, LLVMBuildICmp(m.b, LLVMIntSLT, next, n, ""), loop, done);
    LLVMPositionBuilderAtEnd(m.b, done);
    LLVMBuildRetVoid(m.b);
    return mb_end(&m);
}

static cg_unit *create(LLVMModuleRef mod, const char *name, const cg_opt *opts) {
    cg_unit *u = cg_unit_create(mod, name, opts);
    cr_assert(u, "cg_unit_create(%s): %s", name, em_last_error());
    return u;
}

static bool has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/* ---- the session ---------------------------------------------------------------------------- */

Test(jit, init_is_idempotent_and_names_the_host_cpu) {
    cr_assert_eq(cg_jit_init(), 0, "%s", em_last_error());
    cr_assert_eq(cg_jit_init(), 0, "%s", em_last_error());
    cr_assert_neq(cg_host_cpu()[0], '\0');
    if (has_avx512())
        cr_assert(strstr(cg_host_features(), "+avx512f"), "features: %s", cg_host_features());
}

/* The head start (cg_jit_prepare, as em_compile calls it): the LLJIT is made
 * on a thread of its own. A fork while it is being made must leave the child
 * a whole session. (glibc's pthread_once restarts an initialisation a fork
 * cut short, so this passes without jit.c's pthread_atfork wait too; the wait
 * is for the LLVM locks the vanished thread could hold, which no test can
 * time reliably.) */
Test(jit, a_fork_right_after_the_head_start_leaves_the_child_a_working_jit, .timeout = 60) {
    for (int round = 0; round < 4; round++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0, "fork");
        if (pid == 0) { /* a fresh session in each child: fork again while it is being made */
            cg_jit_prepare();
            usleep(200 * (useconds_t)round); /* making it takes about a millisecond */
            pid_t inner = fork();
            if (inner < 0) _exit(3);
            if (inner == 0) {
                cg_unit *u = cg_unit_create(add_module("add"), "add", NULL);
                float (*add)(float, float) = u ? (float (*)(float, float))cg_unit_lookup(u, "add") : NULL;
                _exit(add && add(1.5f, 2.25f) == 3.75f ? 0 : 4);
            }
            int st;
            if (waitpid(inner, &st, 0) != inner) _exit(5);
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 6);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: status %d", round, st);
    }
}

/* exit() right after the head start waits for it (atexit) rather than tear
 * LLVM's statics down under the thread making the LLJIT. */
Test(jit, exit_right_after_the_head_start_is_clean) {
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0, "fork");
        if (pid == 0) {
            cg_jit_prepare();
            exit(0);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: status %d", round, st);
    }
    cg_jit_prepare();
    cr_assert_eq(cg_jit_init(), 0, "%s", em_last_error());
}

Test(jit, a_scalar_function_adds_two_floats) {
    cg_unit *u = create(add_module("add"), "add", NULL);
    float (*add)(float, float) = (float (*)(float, float))cg_unit_lookup(u, "add");
    cr_assert(add, "%s", em_last_error());
    cr_assert_eq(add(1.5f, 2.25f), 3.75f);
    cr_assert_eq(add(-1e30f, 1e30f), 0.0f);
    cr_assert_eq(cg_unit_lookup(u, "sub"), NULL);
    cr_assert(strstr(em_last_error(), "'sub'"), "%s", em_last_error());
    cr_assert_str_eq(cg_unit_name(u), "add");
    cr_assert_gt(cg_unit_times(u)->codegen_ms, 0.0);
    cg_unit_destroy(u);
}

/* void vexp(float *x, float *y, i64 n): 16 at a time through
 * Sleef_expf16_u10avx512f, the tail through libm's expf. */
static LLVMModuleRef vexp_module(void) {
    mb m = mb_begin("vexp");
    LLVMValueRef f = mb_func(&m, "vexp", LLVMVoidTypeInContext(m.ctx),
                             (LLVMTypeRef[]){m.ptr, m.ptr, m.i64}, 3);
    LLVMValueRef x = LLVMGetParam(f, 0), y = LLVMGetParam(f, 1), n = LLVMGetParam(f, 2);
    LLVMValueRef ctr = LLVMBuildAlloca(m.b, m.i64, "i");
    LLVMBuildStore(m.b, LLVMConstInt(m.i64, 0, 0), ctr);
    LLVMBasicBlockRef vhead = LLVMAppendBasicBlockInContext(m.ctx, f, "vhead");
    LLVMBasicBlockRef vbody = LLVMAppendBasicBlockInContext(m.ctx, f, "vbody");
    LLVMBasicBlockRef shead = LLVMAppendBasicBlockInContext(m.ctx, f, "shead");
    LLVMBasicBlockRef sbody = LLVMAppendBasicBlockInContext(m.ctx, f, "sbody");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(m.ctx, f, "done");
    LLVMBuildBr(m.b, vhead);
    LLVMPositionBuilderAtEnd(m.b, vhead); /* while (i + 16 <= n) */
    LLVMValueRef i = LLVMBuildLoad2(m.b, m.i64, ctr, "");
    LLVMValueRef end = LLVMBuildAdd(m.b, i, LLVMConstInt(m.i64, 16, 0), "");
    LLVMBuildCondBr(m.b, LLVMBuildICmp(m.b, LLVMIntSLE, end, n, ""), vbody, shead);
    LLVMPositionBuilderAtEnd(m.b, vbody);
    LLVMValueRef v = load_align(&m, m.v16, LLVMBuildGEP2(m.b, m.f32, x, &i, 1, ""));
    v = mb_call(&m, "Sleef_expf16_u10avx512f", m.v16, &m.v16, &v, 1);
    store_align(&m, v, LLVMBuildGEP2(m.b, m.f32, y, &i, 1, ""));
    LLVMBuildStore(m.b, end, ctr);
    LLVMBuildBr(m.b, vhead);
    LLVMPositionBuilderAtEnd(m.b, shead); /* while (i < n) */
    i = LLVMBuildLoad2(m.b, m.i64, ctr, "");
    LLVMBuildCondBr(m.b, LLVMBuildICmp(m.b, LLVMIntSLT, i, n, ""), sbody, done);
    LLVMPositionBuilderAtEnd(m.b, sbody);
    LLVMValueRef s = load_align(&m, m.f32, LLVMBuildGEP2(m.b, m.f32, x, &i, 1, ""));
    s = mb_call(&m, "expf", m.f32, &m.f32, &s, 1);
    store_align(&m, s, LLVMBuildGEP2(m.b, m.f32, y, &i, 1, ""));
    LLVMBuildStore(m.b, LLVMBuildAdd(m.b, i, LLVMConstInt(m.i64, 1, 0), ""), ctr);
    LLVMBuildBr(m.b, shead);
    LLVMPositionBuilderAtEnd(m.b, done);
    LLVMBuildRetVoid(m.b);
    return mb_end(&m);
}

static int64_t ulps(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4), memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return llabs((long long)ia - ib);
}

Test(jit, a_vector_loop_calls_sleef_exp_and_agrees_with_expf) {
    if (!has_avx512()) cr_skip_test("no AVX-512 on this CPU");
    cg_unit *u = create(vexp_module(), "vexp", &(cg_opt){.keep = CG_KEEP_ASM});
    void (*vexp)(const float *, float *, int64_t) =
        (void (*)(const float *, float *, int64_t))cg_unit_lookup(u, "vexp");
    cr_assert(vexp, "%s", em_last_error());
    enum { N = 1000 }; /* 62 vectors and a tail of 8 */
    static float xbuf[N + 1], ybuf[N + 1];
    float *x = xbuf + 1, *y = ybuf + 1; /* not 64-byte aligned */
    for (int i = 0; i < N; i++) x[i] = -87.0f + 175.0f * (float)i / N;
    vexp(x, y, N);
    for (int i = 0; i < N; i++)
        cr_assert_leq(ulps(y[i], expf(x[i])), 1, "exp(%g): %.9g vs expf %.9g", x[i], y[i], expf(x[i]));
    cr_assert(strstr(cg_unit_asm(u), "Sleef_expf16_u10avx512f"), "the call is in the asm");
    cg_unit_destroy(u);
}

/* ---- symbols the generated code calls --------------------------------------------------------- */

Test(jit, generated_code_calls_ember_runtime_functions_by_name) {
    mb m = mb_begin("dsize");
    LLVMValueRef f = mb_func(&m, "dsize", m.i64, &m.i32, 1);
    LLVMValueRef dt = LLVMGetParam(f, 0);
    LLVMBuildRet(m.b, mb_call(&m, "rt_dtype_size", m.i64, &m.i32, &dt, 1));
    cg_unit *u = create(mb_end(&m), "dsize", &(cg_opt){.pipeline = ""});
    size_t (*dsize)(int) = (size_t (*)(int))cg_unit_lookup(u, "dsize");
    cr_assert_eq(dsize(EM_F32), 4);
    cr_assert_eq(dsize(EM_I64), 8);
    cr_assert_eq(dsize(99), 0);
    cr_assert_eq(cg_jit_lookup("rt_dtype_size"), (void *)rt_dtype_size);
    cr_assert(cg_jit_lookup("Sleef_expf16_u10"), "%s", em_last_error()); /* the process generator */
    cr_assert_eq(cg_jit_lookup("ember_no_such_symbol"), NULL);
    cr_assert(strstr(em_last_error(), "ember_no_such_symbol"), "%s", em_last_error());
    cg_unit_destroy(u);
}

/* void body(float *ctx, i64 b, i64 e) { for (i in [b, e)) ctx[i] *= 2; } and
 * void run(float *x, i64 n) { rt_parallel_for(n, 64, body, x); } */
static LLVMModuleRef parallel_module(void) {
    mb m = mb_begin("par");
    LLVMTypeRef vt = LLVMVoidTypeInContext(m.ctx);
    LLVMValueRef body = mb_func(&m, "par_body", vt, (LLVMTypeRef[]){m.ptr, m.i64, m.i64}, 3);
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(m.b);
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(m.ctx, body, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(m.ctx, body, "done");
    LLVMValueRef b = LLVMGetParam(body, 1), e = LLVMGetParam(body, 2);
    LLVMBuildCondBr(m.b, LLVMBuildICmp(m.b, LLVMIntSLT, b, e, ""), loop, done);
    LLVMPositionBuilderAtEnd(m.b, loop);
    LLVMValueRef i = LLVMBuildPhi(m.b, m.i64, "i");
    LLVMValueRef p = LLVMBuildGEP2(m.b, m.f32, LLVMGetParam(body, 0), &i, 1, "");
    LLVMValueRef v = load_align(&m, m.f32, p);
    store_align(&m, LLVMBuildFMul(m.b, v, LLVMConstReal(m.f32, 2.0), ""), p);
    LLVMValueRef next = LLVMBuildAdd(m.b, i, LLVMConstInt(m.i64, 1, 0), "");
    LLVMAddIncoming(i, (LLVMValueRef[]){b, next}, (LLVMBasicBlockRef[]){entry, loop}, 2);
    LLVMBuildCondBr(m.b, LLVMBuildICmp(m.b, LLVMIntSLT, next, e, ""), loop, done);
    LLVMPositionBuilderAtEnd(m.b, done);
    LLVMBuildRetVoid(m.b);
    LLVMValueRef run = mb_func(&m, "par_run", vt, (LLVMTypeRef[]){m.ptr, m.i64}, 2);
    LLVMValueRef args[] = {LLVMGetParam(run, 1), LLVMConstInt(m.i64, 64, 0), body, LLVMGetParam(run, 0)};
    mb_call(&m, "rt_parallel_for", vt, (LLVMTypeRef[]){m.i64, m.i64, m.ptr, m.ptr}, args, 4);
    LLVMBuildRetVoid(m.b);
    return mb_end(&m);
}

Test(jit, generated_code_runs_a_generated_body_on_the_thread_pool) {
    em_set_threads(2);
    cg_unit *u = create(parallel_module(), "par", NULL);
    void (*run)(float *, int64_t) = (void (*)(float *, int64_t))cg_unit_lookup(u, "par_run");
    cr_assert(run && cg_unit_lookup(u, "par_body"), "%s", em_last_error());
    enum { N = 10001 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)i;
    run(x, N);
    for (int i = 0; i < N; i++) cr_assert_eq(x[i], 2.0f * (float)i, "x[%d] = %g", i, x[i]);
    cg_unit_destroy(u);
}

/* ---- dump texts --------------------------------------------------------------------------------- */

/* void NAME(float *x, float *y) { y[0:16] = x[0:16] * x[0:16]; } */
static LLVMModuleRef square16_module(const char *name) {
    mb m = mb_begin(name);
    LLVMValueRef f = mb_func(&m, name, LLVMVoidTypeInContext(m.ctx), (LLVMTypeRef[]){m.ptr, m.ptr}, 2);
    LLVMValueRef v = load_align(&m, m.v16, LLVMGetParam(f, 0));
    store_align(&m, LLVMBuildFMul(m.b, v, v, ""), LLVMGetParam(f, 1));
    LLVMBuildRetVoid(m.b);
    return mb_end(&m);
}

Test(jit, ir_and_asm_texts_are_kept_only_when_asked) {
    cg_unit *both = create(square16_module("sq_both"), "sq_both",
                           &(cg_opt){.keep = CG_KEEP_IR | CG_KEEP_ASM});
    cr_assert(cg_unit_ir(both) && strstr(cg_unit_ir(both), "define void @sq_both"), "%s",
              cg_unit_ir(both) ? cg_unit_ir(both) : "(null)");
    cr_assert(strstr(cg_unit_ir(both), "<16 x float>"));
    cr_assert(cg_unit_asm(both) && strstr(cg_unit_asm(both), "sq_both:"));
    if (has_avx512()) cr_assert(strstr(cg_unit_asm(both), "zmm"), "%s", cg_unit_asm(both));
    cr_assert_gt(cg_unit_times(both)->asm_ms, 0.0);

    cg_unit *none = create(square16_module("sq_none"), "sq_none", NULL);
    cr_assert_null(cg_unit_ir(none));
    cr_assert_null(cg_unit_asm(none));
    cg_unit *ir = create(square16_module("sq_ir"), "sq_ir", &(cg_opt){.keep = CG_KEEP_IR});
    cr_assert_not_null(cg_unit_ir(ir));
    cr_assert_null(cg_unit_asm(ir));

    float x[16], y[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i - 7.5f;
    ((void (*)(const float *, float *))cg_unit_lookup(both, "sq_both"))(x, y);
    for (int i = 0; i < 16; i++) cr_assert_eq(y[i], x[i] * x[i]);
    cg_unit_destroy(both);
    cg_unit_destroy(none);
    cg_unit_destroy(ir);
}

/* ---- failures ------------------------------------------------------------------------------------ */

static void still_works(void) {
    cg_unit *u = create(add_module("after"), "after", NULL);
    cr_assert_eq(((float (*)(float, float))cg_unit_lookup(u, "after"))(2, 3), 5.0f);
    cg_unit_destroy(u);
}

Test(jit, a_module_that_fails_verification_is_an_error_and_the_jit_keeps_working) {
    mb m = mb_begin("broken");
    LLVMValueRef f = mb_func(&m, "broken", m.i32, &m.i32, 1);
    LLVMBuildRet(m.b, LLVMConstReal(m.f32, 1.0)); /* a float returned as i32 */
    LLVMAppendBasicBlockInContext(m.ctx, f, "no_terminator");
    cr_assert_null(cg_unit_create(mb_end(&m), "broken", NULL));
    cr_assert(strstr(em_last_error(), "codegen broken: invalid module"), "%s", em_last_error());
    cr_assert_eq(cg_jit_lookup("broken"), NULL);
    still_works();
}

Test(jit, a_bad_pipeline_is_an_error) {
    cr_assert_null(cg_unit_create(add_module("p"), "p", &(cg_opt){.pipeline = "no-such-pass"}));
    cr_assert(strstr(em_last_error(), "no-such-pass"), "%s", em_last_error());
    still_works();
}

Test(jit, an_unresolved_symbol_is_an_error_naming_it) {
    mb m = mb_begin("needs");
    mb_func(&m, "needs", m.i32, NULL, 0);
    LLVMBuildRet(m.b, mb_call(&m, "ember_missing_function", m.i32, NULL, NULL, 0));
    cr_assert_null(cg_unit_create(mb_end(&m), "needs", NULL));
    cr_assert(strstr(em_last_error(), "codegen needs: linking"), "%s", em_last_error());
    cr_assert(strstr(em_last_error(), "ember_missing_function"), "%s", em_last_error());
    /* The failed unit left nothing behind: its name is free. */
    cg_unit *u = create(const_module("needs", 7), "needs", NULL);
    cr_assert_eq(((int (*)(void))cg_unit_lookup(u, "needs"))(), 7);
    cg_unit_destroy(u);
    still_works();
}

Test(jit, cg_unit_create_consumes_a_module_on_every_path) {
    cr_assert_null(cg_unit_create(NULL, "none", NULL));
    cr_assert(strstr(em_last_error(), "NULL"), "%s", em_last_error());
    cg_module_discard(NULL);
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    cr_assert_eq(cg_module_begin("dropped", &ctx, &mod), 0);
    cg_module_discard(mod); /* LeakSanitizer checks these */
    cr_assert_eq(cg_module_begin(NULL, &ctx, &mod), -1);
}

/* ---- removal ----------------------------------------------------------------------------------- */

Test(jit, destroying_a_unit_removes_its_symbols_so_the_name_can_be_defined_again) {
    cg_unit *one = create(const_module("answer", 1), "one", NULL);
    cr_assert_eq(cg_jit_lookup("answer"), cg_unit_lookup(one, "answer"));
    /* Two live units may not define one name. */
    cr_assert_null(cg_unit_create(const_module("answer", 2), "two", NULL));
    cr_assert(strstr(em_last_error(), "answer"), "%s", em_last_error());
    cr_assert_eq(((int (*)(void))cg_unit_lookup(one, "answer"))(), 1);
    cg_unit_destroy(one);
    cr_assert_null(cg_jit_lookup("answer"));
    cg_unit *two = create(const_module("answer", 2), "two", NULL);
    cr_assert_eq(((int (*)(void))cg_unit_lookup(two, "answer"))(), 2);
    cr_assert_eq(cg_jit_lookup("answer"), cg_unit_lookup(two, "answer"));
    cg_unit_destroy(two);
    cg_unit_destroy(NULL);
}

/* float chain<k>(float x): 300 dependent multiply-adds by constants of its
 * own, then chain<k+1>'s value of the result (the last returns it): NFUNCS
 * functions of about 600 instructions, which call each other whichever
 * object split.c puts them in. */
enum { NFUNCS = 6, CHAIN = 300 };

static float chain_c(int k, int i) { return 1.0f + (float)((k * 37 + i * 11) % 97) * 1e-4f; }

static LLVMModuleRef chain_module(void) {
    mb m = mb_begin("chains");
    LLVMTypeRef ft = LLVMFunctionType(m.f32, &m.f32, 1, 0);
    LLVMValueRef fn[NFUNCS];
    for (int k = 0; k < NFUNCS; k++) {
        char name[32];
        snprintf(name, sizeof name, "chain%d", k);
        fn[k] = LLVMAddFunction(m.mod, name, ft);
    }
    for (int k = 0; k < NFUNCS; k++) {
        LLVMPositionBuilderAtEnd(m.b, LLVMAppendBasicBlockInContext(m.ctx, fn[k], "entry"));
        LLVMValueRef v = LLVMGetParam(fn[k], 0);
        for (int i = 0; i < CHAIN; i++)
            v = LLVMBuildFAdd(m.b, LLVMBuildFMul(m.b, v, LLVMConstReal(m.f32, chain_c(k, i)), ""),
                              LLVMConstReal(m.f32, -chain_c(k + 1, i) * 1e-3f), "");
        if (k + 1 < NFUNCS) v = LLVMBuildCall2(m.b, ft, fn[k + 1], &v, 1, "");
        LLVMBuildRet(m.b, v);
    }
    return mb_end(&m);
}

static float chain_ref(float v) {
    for (int k = 0; k < NFUNCS; k++)
        for (int i = 0; i < CHAIN; i++) v = v * chain_c(k, i) + -chain_c(k + 1, i) * 1e-3f;
    return v;
}

Test(jit, a_module_with_enough_code_is_made_as_two_objects_on_two_threads_whose_calls_cross) {
    cg_unit *u = create(chain_module(), "chains", NULL);
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
        cr_expect_eq(cg_unit_times(u)->codegen_threads, 2, "3600 instructions in 6 functions, on two threads");
    for (int k = 0; k < NFUNCS; k++) { /* every function is linked, whichever object it is in */
        char name[32];
        snprintf(name, sizeof name, "chain%d", k);
        cr_expect(cg_unit_lookup(u, name), "%s", name);
    }
    float (*f)(float) = (float (*)(float))cg_unit_lookup(u, "chain0");
    for (float x = -2; x <= 2; x += 0.5f) cr_expect_eq(f(x), chain_ref(x), "chain0(%g)", (double)x);
    cg_unit_destroy(u);
    cr_assert_null(cg_jit_lookup("chain3"), "both objects left with the unit");
    cg_unit *small = create(add_module("small_add"), "small", NULL);
    cr_expect_eq(cg_unit_times(small)->codegen_threads, 1, "a small module stays one object");
    cg_unit_destroy(small);
}

static void make_and_drop(int k) {
    char name[32];
    snprintf(name, sizeof name, "churn_%d", k);
    cg_unit *u = create(const_module(name, k), name, &(cg_opt){.pipeline = "", .keep = CG_KEEP_IR});
    cr_assert_eq(((int (*)(void))cg_unit_lookup(u, name))(), k);
    cg_unit_destroy(u);
}

Test(jit, two_hundred_units_come_and_go_without_leaking) {
    for (int k = 0; k < 20; k++) make_and_drop(k); /* warm: pools, caches, first-use state */
    size_t before = mallinfo2().uordblks;
    for (int k = 20; k < 220; k++) make_and_drop(k);
    size_t after = mallinfo2().uordblks;
    /* Under ASan mallinfo2 counts nothing and LeakSanitizer does the checking. */
    cr_assert_lt(after, before + 64 * 1024, "heap grew by %zu bytes over 200 units", after - before);
}

/* ---- threads ------------------------------------------------------------------------------------ */

enum { THREAD_ITERS = 20, SCALE_N = 1003 };

typedef struct worker {
    int id;
    atomic_int *failures;
    char error[256];
} worker;

static void *worker_run(void *arg) {
    worker *w = arg;
    float x[SCALE_N], y[SCALE_N];
    for (int it = 0; it < THREAD_ITERS; it++) {
        char name[32];
        snprintf(name, sizeof name, "scale_t%d_%d", w->id, it);
        cg_unit *u = cg_unit_create(scale_module(name), name,
                                    &(cg_opt){.pipeline = it % 2 ? CG_PIPELINE_LEAN : NULL});
        void (*fn)(const float *, float *, int64_t, float) =
            u ? (void (*)(const float *, float *, int64_t, float))cg_unit_lookup(u, name) : NULL;
        if (!fn) {
            snprintf(w->error, sizeof w->error, "%s", em_last_error());
            atomic_fetch_add(w->failures, 1);
            cg_unit_destroy(u);
            continue;
        }
        float k = (float)(w->id * 100 + it);
        for (int i = 0; i < SCALE_N; i++) x[i] = (float)i;
        fn(x, y, SCALE_N, k);
        for (int i = 0; i < SCALE_N; i++)
            if (y[i] != (float)i * k + 1.0f) {
                atomic_fetch_add(w->failures, 1);
                break;
            }
        cg_unit_destroy(u);
    }
    return NULL;
}

Test(jit, two_threads_build_compile_and_run_units_at_once, .timeout = 120) {
    atomic_int failures = 0;
    worker w[2] = {{.id = 0, .failures = &failures}, {.id = 1, .failures = &failures}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&failures), 0, "%s | %s", w[0].error, w[1].error);
}
