/*
 * test_compile_observe.c — what em_compile lets a user see and switch
 * (suite `compile`; test_compile.c has the overview, compile_util.h the
 * shared models).
 *
 * Covered:
 *  - em_dump of every stage (unknown stage, before any call, one-line stages,
 *    dot); dump files from opts.dump_dir and EMBER_DUMP_DIR named by
 *    opts.name; the compile stage of a miss, a live share, a cache hit and an
 *    interpreted graph, and EMBER_LOG=compile;
 *  - the environment: EMBER_DISABLE, EMBER_LOG=recompiles / fallbacks / graph
 *    (stderr is redirected to a temporary file around the calls; the log
 *    categories are read once per process and Criterion runs each test in a
 *    process of its own, so each test sets EMBER_LOG before its first
 *    compile), opts.threads;
 *  - out of memory: an injected allocation failure at every point of
 *    em_compile and of a first call.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend.h"
#include "../util.h"
#include "compile_util.h"
#include "../codegen/cache_util.h"

/* ---- helpers ------------------------------------------------------------------------------------- */

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}



static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static int files_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- em_dump ------------------------------------------------------------------------------------------ */

Test(compile, dump_says_no_graph_yet_before_the_first_call) {
    __typeof__(&chain) fast = em_compile((void *)chain, "tensor(tensor)", &(em_options){.name = "chain"});
    static const char *stages[] = {"graph", "opt", "kernels", "memplan", "llvm", "asm", "dot", "compile"};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        int status;
        char *text = cu_dump((void *)fast, stages[i], &status);
        cr_expect_eq(status, 0, "%s: %s", stages[i], em_last_error());
        cr_expect_eq(count_lines(text), 1, "%s: %s", stages[i], text);
        cr_expect(strstr(text, "no graph") && strstr(text, "chain"), "%s: %s", stages[i], text);
        free(text);
    }
    em_compiled_free((void *)fast);
}

Test(compile, dump_rejects_an_unknown_stage) {
    __typeof__(&chain) fast = EM_COMPILE(chain, "tensor(tensor)");
    em_tensor *x = tu_uniform_tensor(1, SH(5), -1, 1, 1);
    for (int called = 0; called <= 1; called++) {
        int status;
        em_clear_error();
        char *text = cu_dump((void *)fast, "bogus", &status);
        cr_expect_eq(status, -1);
        cr_expect(strstr(em_last_error(), "bogus"), "%s", em_last_error());
        cr_expect_eq(text[0], '\0', "nothing written for an unknown stage: %s", text);
        free(text);
        chain_expect(fast, x, "call");
    }
    em_release(x);
    em_compiled_free((void *)fast);
}

Test(compile, dumps_every_stage_of_the_newest_graph) {
    /* An empty cache folder: a copy cached by an earlier run that dumped (and
     * so kept its asm) would otherwise answer the asm stage below. */
    cache_env ce;
    env_begin(&ce);
    globals_init();
    __typeof__(&tiny) fast = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    tiny_expect(fast, x, "call");
    int status;
    char *g = cu_dump((void *)fast, "graph", &status);
    cr_expect_eq(status, 0);
    cr_expect(strncmp(g, "graph tiny\n", 11) == 0, "%s", g);
    cr_expect(strstr(g, " = input 0 : f32[4,16]"), "%s", g);
    cr_expect(strstr(g, " = const f32[16,8]"), "%s", g);
    cr_expect(strstr(g, " = matmul ") && strstr(g, " = add ") && strstr(g, " = tanh "), "%s", g);
    cr_expect(strstr(g, "  return %"), "%s", g);
    free(g);
    char *o = cu_dump((void *)fast, "opt", &status); /* after the passes: nothing to simplify here */
    cr_expect_eq(status, 0);
    cr_expect(strncmp(o, "graph tiny\n", 11) == 0, "%s", o);
    cr_expect(strstr(o, " = matmul ") && strstr(o, " = add ") && strstr(o, " = tanh "), "%s", o);
    free(o);
    char *k = cu_dump((void *)fast, "kernels", &status); /* x@w+b then tanh: one kernel */
    cr_expect_eq(status, 0);
    cr_expect(strstr(k, "; kernels of tiny: 1 kernel for 3 ops"), "%s", k);
    cr_expect(strstr(k, "k0 contraction over f32[4,8], anchor %") && strstr(k, " matmul, %") &&
                  strstr(k, " add, %") && strstr(k, " tanh\n"), "%s", k);
    cr_expect(strstr(k, "step 0: generated") && strstr(k, "generated GEMM") && !strstr(k, "step 1:"), "%s", k);
    free(k);
    char *m = cu_dump((void *)fast, "memplan", &status);
    cr_expect_eq(status, 0);
    /* the product stays in registers: the GEMM's epilogue (+ b, tanh) writes the output */
    cr_expect(strstr(m, "; memplan of tiny: 0 buffers in an arena of 0 bytes"), "%s", m);
    cr_expect(!strstr(m, " matmul ") && strstr(m, "caller-owned output"), "%s", m);
    free(m);
    char *l = cu_dump((void *)fast, "llvm", &status); /* x@w + b, tanh: one generated GEMM */
    cr_expect_eq(status, 0);
    /* tanh is inline (runtime/simd.h's, ending in a divide), not a call */
    cr_expect(strstr(l, "define void @ember_") && strstr(l, " x float>") && strstr(l, "fdiv <") &&
                  !strstr(l, "Sleef_tanhf"), "%s", l);
    free(l);
    char *a = cu_dump((void *)fast, "asm", &status); /* kept only when dumping to a folder */
    cr_expect_eq(status, 0);
    cr_expect(strstr(a, "; asm: not kept") && count_lines(a) == 1, "%s", a);
    free(a);
    char *d = cu_dump((void *)fast, "dot", &status);
    cr_expect_eq(status, 0);
    cr_expect(strncmp(d, "digraph", 7) == 0, "%s", d);
    cr_expect(strstr(d, "tanh") && strstr(d, "->"), "%s", d);
    cr_expect(strstr(d, "}\n"), "%s", d);
    free(d);
    /* A second shape: the dump is of the newest graph. */
    em_tensor *x2 = tu_randn(2, SH(7, 16), 2);
    tiny_expect(fast, x2, "second shape");
    g = cu_dump((void *)fast, "graph", &status);
    cr_expect(strstr(g, " = input 0 : f32[7,16]"), "%s", g);
    free(g);
    em_release(x), em_release(x2);
    em_compiled_free((void *)fast);
    globals_fini();
    env_end(&ce);
}

/* The compile stage of tiny's newest graph (malloc'd), after checking the
 * lines every compile has: the total, then trace, passes, schedule, code. */
static char *compile_stage(void *fast, const char *what) {
    int status;
    char *t = cu_dump(fast, "compile", &status);
    cr_assert_eq(status, 0, "%s: %s", what, em_last_error());
    double total = -1;
    cr_expect_eq(sscanf(t, "; compile of tiny: %lf ms from the first call's start to a runnable program", &total), 1,
                 "%s: %s", what, t);
    cr_expect_gt(total, 0, "%s: a total time: %s", what, t);
    cr_expect(strstr(t, "\n  trace ") && strstr(t, "\n  passes ") && strstr(t, "\n  schedule ") &&
                  strstr(t, "\n  code "), "%s: %s", what, t);
    return t;
}

Test(compile, the_compile_stage_says_where_the_time_went_and_where_the_code_came_from) {
    globals_init();
    cache_env env;
    env_begin(&env); /* a fresh object cache: the first compile is a miss */
    cr_assert_eq(setenv("EMBER_CACHE_VERIFY", "0", 1), 0); /* a hit builds no module */
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    __typeof__(&tiny) f = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    tiny_expect(f, x, "first compile");
    char *t = compile_stage((void *)f, "a miss");
    cr_expect(strstr(t, "\n  key ") && strstr(t, "LLVM IR built") && strstr(t, "compiled: verify") &&
                  strstr(t, "LLVM passes") && strstr(t, "machine code"), "a miss builds and compiles: %s", t);
    free(t);
    /* a second function of the same code while the first lives: shared */
    __typeof__(&tiny) g = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    tiny_expect(g, x, "second, live");
    t = compile_stage((void *)g, "shared");
    cr_expect(strstr(t, "shared with a live function") && !strstr(t, "LLVM IR built"), "%s", t);
    free(t);
    em_compiled_free((void *)f), em_compiled_free((void *)g);
    /* with none alive: the object cache, and no module built */
    f = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    tiny_expect(f, x, "from the cache");
    t = compile_stage((void *)f, "a hit");
    cr_expect(strstr(t, "from the object cache") && strstr(t, "to link it") && !strstr(t, "LLVM IR built"), "%s", t);
    free(t);
    em_compiled_free((void *)f);
    /* nothing generated */
    cr_assert_eq(setenv("EMBER_CODEGEN", "0", 1), 0);
    f = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    tiny_expect(f, x, "interpreted");
    t = compile_stage((void *)f, "interpreted");
    cr_expect(strstr(t, "nothing generated") && !strstr(t, "\n  key "), "%s", t);
    free(t);
    em_compiled_free((void *)f);
    unsetenv("EMBER_CODEGEN");
    em_release(x);
    env_end(&env);
    globals_fini();
}

Test(compile, EMBER_LOG_compile_prints_the_compile_stage_at_each_compile) {
    globals_init();
    setenv("EMBER_LOG", "compile", 1);
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    tu_capture cap;
    tu_capture_begin(&cap);
    __typeof__(&tiny) f = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
    tiny_expect(f, x, "logged compile");
    tiny_expect(f, x, "a call that compiles nothing");
    char *err = tu_capture_end(&cap);
    cr_expect_eq(cu_count_of(err, "ember[compile]\n; compile of tiny: "), 1, "one compile, logged once: %s", err);
    cr_expect(strstr(err, "\n  trace ") && strstr(err, "\n  code "), "%s", err);
    free(err);
    em_compiled_free((void *)f);
    em_release(x);
    unsetenv("EMBER_LOG");
    globals_fini();
}

static void expect_dump_files(const char *dir, const char *name, int n) {
    static const char *stages[] = {"graph", "opt", "kernels", "memplan", "llvm", "asm", "compile"};
    char path[1024];
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.%d.%s.txt", dir, name, n, stages[i]);
        char *text = read_file(path);
        cr_expect(text, "missing %s", path);
        if (text) cr_expect_gt(strlen(text), 0, "%s is empty", path);
        free(text);
    }
    snprintf(path, sizeof path, "%s/%s.%d.graph.txt", dir, name, n);
    char *g = read_file(path);
    if (g) {
        cr_expect(strstr(g, " = matmul ") && strstr(g, " = add ") && strstr(g, " = tanh "),
                  "%s:\n%s", path, g);
        free(g);
    }
    snprintf(path, sizeof path, "%s/%s.%d.dot", dir, name, n);
    char *d = read_file(path);
    cr_expect(d && strncmp(d, "digraph", 7) == 0, "%s: %s", path, d ? d : "missing");
    free(d);
}

Test(compile, writes_each_stage_of_each_graph_to_the_dump_dir) {
    globals_init();
    char dir[] = "/tmp/ember-dump-XXXXXX";
    cr_assert(mkdtemp(dir));
    __typeof__(&tiny) fast =
        em_compile((void *)tiny, "tensor(tensor)", &(em_options){.dump_dir = dir, .name = "tiny"});
    cr_assert(fast, "%s", em_last_error());
    cr_expect_eq(files_in(dir), 0, "nothing is written before a graph exists");
    em_tensor *x = tu_randn(2, SH(4, 16), 1), *x2 = tu_randn(2, SH(2, 16), 2);
    tiny_expect(fast, x, "first");
    expect_dump_files(dir, "tiny", 1);
    cr_expect_eq(files_in(dir), 8);
    tiny_expect(fast, x, "hit");
    cr_expect_eq(files_in(dir), 8, "a hit writes nothing");
    tiny_expect(fast, x2, "second shape");
    expect_dump_files(dir, "tiny", 2);
    cr_expect_eq(files_in(dir), 16);
    em_release(x), em_release(x2);
    em_compiled_free((void *)fast);
    tu_remove_tree(dir);
    globals_fini();
}

Test(compile, writes_dumps_to_ember_dump_dir_and_creates_it) {
    globals_init();
    char dir[] = "/tmp/ember-dump-XXXXXX";
    cr_assert(mkdtemp(dir));
    char sub[64];
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* not there yet */
    setenv("EMBER_DUMP_DIR", sub, 1);
    __typeof__(&tiny) fast = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "mlp"});
    unsetenv("EMBER_DUMP_DIR");
    cr_assert(fast, "%s", em_last_error());
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    tiny_expect(fast, x, "call");
    expect_dump_files(sub, "mlp", 1);
    em_release(x);
    em_compiled_free((void *)fast);
    tu_remove_tree(dir);
    globals_fini();
}

/* ---- environment ---------------------------------------------------------------------------------------- */

Test(compile, ember_disable_returns_the_function_itself) {
    setenv("EMBER_DISABLE", "1", 1);
    void *p = em_compile((void *)chain, "tensor(tensor)", NULL);
    void *q = em_compile((void *)chain, "not even a signature", NULL);
    unsetenv("EMBER_DISABLE");
    cr_expect_eq(p, (void *)chain);
    cr_expect(q == NULL || q == (void *)chain);
    em_tensor *x = tu_uniform_tensor(1, SH(5), -1, 1, 1);
    chain_expect(p, x, "disabled");
    em_compiled_free(p); /* not a compiled function: a no-op */
    setenv("EMBER_DISABLE", "0", 1);
    void *r = em_compile((void *)chain, "tensor(tensor)", NULL);
    unsetenv("EMBER_DISABLE");
    cr_expect(r && r != (void *)chain, "EMBER_DISABLE=0 compiles");
    chain_expect(r, x, "enabled");
    EXPECT_STATS(r, 1, 1, 1, 0);
    em_compiled_free(r);
    em_release(x);
}

static em_tensor *mlp(em_tensor *x, float scale) {
    em_scope_begin();
    em_tensor *h = em_gelu(em_linear(x, g_w, g_b));
    em_tensor *y = em_keep(em_mul(h, em_scalar(EM_F32, scale)));
    em_scope_end();
    return y;
}

Test(compile, logs_why_it_recompiles) {
    setenv("EMBER_LOG", "recompiles", 1);
    g_w = tu_randn(2, SH(8, 16), 1);
    g_b = tu_randn(1, SH(8), 2);
    __typeof__(&mlp) fast = em_compile((void *)mlp, "tensor(tensor, float)", &(em_options){.name = "mlp"});
    em_tensor *a = tu_randn(2, SH(4, 16), 3), *b = tu_randn(2, SH(6, 16), 4);
    em_tensor *c = tu_cast(tu_randn(2, SH(6, 16), 5), EM_F64), *d = tu_transposed(tu_randn(2, SH(16, 6), 6), 0, 1);
    tu_capture cap;
    tu_capture_begin(&cap);
    /* Each line compares with the newest graph: a, then b, b at 2.5, d, c. */
    em_tensor *r[6] = {fast(a, 1.0f), fast(a, 1.0f), fast(b, 1.0f), fast(b, 2.5f), fast(d, 2.5f),
                       fast(c, 2.5f)};
    char *log = tu_capture_end(&cap);
    for (int i = 0; i < 6; i++) {
        cr_expect(r[i], "call %d: %s", i, em_last_error());
        em_release(r[i]);
    }
    cr_expect(strstr(log, "recompile mlp: arg 0 shape [6,16] != [4,16]"), "log:\n%s", log);
    cr_expect(strstr(log, "recompile mlp: arg 1 value 2.5 != 1"), "log:\n%s", log);
    cr_expect(strstr(log, "recompile mlp: arg 0 dtype f64 != f32"), "log:\n%s", log);
    cr_expect(strstr(log, "recompile mlp: arg 0 strides [1,6] != [16,1]"), "log:\n%s", log);
    cr_expect_eq(cu_count_of(log, "recompile mlp:"), 4, "one line per retrace, none for the first "
                 "trace or a hit:\n%s", log);
    cr_expect(!strstr(log, "ember[graph]"), "only the categories asked for:\n%s", log);
    free(log);
    EXPECT_STATS(fast, 6, 5, 5, 0);
    em_release(a), em_release(b), em_release(c), em_release(d);
    em_compiled_free((void *)fast);
    globals_fini();
    unsetenv("EMBER_LOG");
}

Test(compile, logs_a_fallback_once_per_graph_break_and_once_at_the_recompile_limit) {
    setenv("EMBER_LOG", "fallbacks", 1);
    __typeof__(&by_max) brk = em_compile((void *)by_max, "tensor(tensor)", &(em_options){.name = "by_max"});
    __typeof__(&chain) lim = em_compile((void *)chain, "tensor(tensor)",
                                        &(em_options){.name = "chain", .max_recompiles = 1});
    em_tensor *x = tu_uniform_tensor(2, SH(2, 3), 0, 1, 1), *y = tu_uniform_tensor(2, SH(3, 3), 0, 1, 2),
              *z = tu_uniform_tensor(2, SH(4, 3), 0, 1, 3);
    tu_capture cap;
    tu_capture_begin(&cap);
    em_tensor *r[7] = {brk(x), brk(x), brk(x), lim(x), lim(y), lim(z), lim(y)};
    char *log = tu_capture_end(&cap);
    for (int i = 0; i < 7; i++) {
        cr_expect(r[i], "call %d: %s", i, em_last_error());
        em_release(r[i]);
    }
    cr_expect_eq(cu_count_of(log, "fallback by_max"), 1, "log:\n%s", log);
    cr_expect(strstr(log, "em_item"), "the reason names the read:\n%s", log);
    cr_expect_eq(cu_count_of(log, "fallback chain"), 1, "log:\n%s", log);
    cr_expect(strstr(log, "max_recompiles"), "log:\n%s", log);
    free(log);
    EXPECT_STATS(brk, 3, 0, 1, 3);
    EXPECT_STATS(lim, 4, 1, 4, 3); /* every new guard past the limit is a miss run eagerly */
    em_release(x), em_release(y), em_release(z);
    em_compiled_free((void *)brk);
    em_compiled_free((void *)lim);
    unsetenv("EMBER_LOG");
}

Test(compile, logs_the_captured_graph) {
    setenv("EMBER_LOG", "graph", 1);
    __typeof__(&chain) fast = em_compile((void *)chain, "tensor(tensor)", &(em_options){.name = "chain"});
    em_tensor *x = tu_uniform_tensor(2, SH(2, 3), 0, 1, 1);
    tu_capture cap;
    tu_capture_begin(&cap);
    em_tensor *r[2] = {fast(x), fast(x)};
    char *log = tu_capture_end(&cap);
    cr_expect(strstr(log, "graph chain\n") && strstr(log, " = gelu ") && strstr(log, " = sigmoid "),
              "log:\n%s", log);
    cr_expect_eq(cu_count_of(log, "graph chain\n"), 1, "printed once, at the trace:\n%s", log);
    free(log);
    em_release(r[0]), em_release(r[1]), em_release(x);
    em_compiled_free((void *)fast);
    unsetenv("EMBER_LOG");
}

Test(compile, opts_threads_sets_the_thread_count) {
    int before = em_get_threads();
    void *f = em_compile((void *)chain, "tensor(tensor)", &(em_options){.threads = 1});
    cr_assert(f, "%s", em_last_error());
    cr_expect_eq(em_get_threads(), 1);
    em_compiled_free(f);
    em_set_threads(before);
}

/* ---- out of memory ------------------------------------------------------------------------------------------ */

Test(compile, survives_an_allocation_failure_at_every_point_of_em_compile) {
    for (long n = 1; n <= 12; n++) {
        rt_alloc_fail_after(n);
        em_clear_error();
        void *f = em_compile((void *)chain, "tensor(tensor)", &(em_options){.name = "chain"});
        rt_alloc_fail_after(0);
        if (!f) {
            cr_expect(strstr(em_last_error(), "out of memory"), "n=%ld: %s", n, em_last_error());
            continue;
        }
        em_tensor *x = tu_uniform_tensor(1, SH(9), -1, 1, (uint64_t)n);
        chain_expect(f, x, "after an injected failure");
        em_release(x);
        em_compiled_free(f);
    }
}

Test(compile, survives_an_allocation_failure_at_every_point_of_the_first_call) {
    globals_init();
    em_tensor *x = tu_randn(2, SH(4, 16), 1);
    em_tensor *want = tiny(x);
    size_t base = tu_live_bytes();
    int failed = 0, succeeded = 0;
    for (long n = 1; n <= 80; n++) {
        __typeof__(&tiny) fast = em_compile((void *)tiny, "tensor(tensor)", &(em_options){.name = "tiny"});
        cr_assert(fast, "%s", em_last_error());
        for (int scoped = 0; scoped <= 1; scoped++) {
            if (scoped) em_scope_begin();
            rt_alloc_fail_after(n);
            em_clear_error();
            em_tensor *got = fast(x);
            rt_alloc_fail_after(0);
            if (got) {
                tu_expect_compiled(got, want, "a call that survived an injected failure");
                succeeded++;
            } else {
                cr_expect_neq(em_last_error()[0], '\0', "n=%ld: NULL without a message", n);
                failed++;
            }
            if (!scoped) em_release(got);
            if (scoped) em_scope_end();
            /* Afterwards the function works. */
            got = fast(x);
            tu_expect_compiled(got, want, "the call after an injected failure");
            em_release(got);
        }
        em_compiled_free((void *)fast);
        cr_expect_eq(tu_live_bytes(), base, "n=%ld: tensors left behind", n);
    }
    cr_expect_gt(failed, 0, "the injected failures were hit");
    cr_expect_gt(succeeded, 0, "late injections leave the call intact");
    em_release(want), em_release(x);
    globals_fini();
}
