/*
 * test_key.c — the keys compiled code is shared and cached under
 * (codegen/key.c), and EMBER_CACHE_VERIFY (codegen/jit.c).
 *
 * A program's key is made before any LLVM module is built, from what its code
 * is a function of; a key that left something out would load another
 * program's code. So:
 *  - the library (here, the test executable it is linked into) has a build
 *    id, in hex, and keys name it with ember's and LLVM's versions;
 *  - the same model called with an argument of other strides (a transposed
 *    view of the same shape), compiled with EMBER_GEMM=blas instead of the
 *    default, or with EMBER_PROFILE=1, gets a key and a file of its own, and
 *    every result matches eager;
 *  - every entry records the hash of the module its object was compiled from;
 *    under EMBER_CACHE_VERIFY=1 a hit (from the cache or a live unit) builds
 *    the module anyway and must hash the same: an honest entry does (still a
 *    hit, results right), an entry recording another module's hash aborts
 *    with a message; without it the entry is used as found;
 *  - without a build id (cg_key_use_module_hash) keys hash the module's
 *    bitcode ("| ir "), and a second compile still hits.
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cache_util.h"
#include "codegen.h"
#include "../util.h"

/* gelu(x w^T + b): one generated GEMM with its epilogue (or OpenBLAS and a
 * pointwise kernel under EMBER_GEMM=blas). */
static em_tensor *linear_gelu(em_tensor *x, em_tensor *w, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_gelu(em_linear(x, w, b)));
    em_scope_end();
    return y;
}

/* Compiles m under `name`, calls it on (x, a, b) against eager within the
 * compiled tolerance, and frees it. */
static void run_close(model3 m, const char *name, em_tensor *x, em_tensor *a, em_tensor *b) {
    model3 fast = compile3(m, name);
    em_tensor *want = m(x, a, b), *got = fast(x, a, b);
    cr_assert(want && got, "%s: %s", name, em_last_error());
    tu_expect_compiled(got, want, name);
    em_release(got), em_release(want);
    em_compiled_free((void *)fast);
}

Test(key, the_library_has_a_build_id_in_hex_and_keys_name_it) {
    const char *id = cg_build_id();
    cr_assert(id, "cg_build_id is never NULL");
    size_t n = strlen(id);
    cr_expect(n >= 16 && n % 2 == 0, "a build id of %zu hex digits: '%s'", n, id);
    for (size_t i = 0; i < n; i++) cr_expect(isxdigit((unsigned char)id[i]), "'%s' is hex", id);
    cr_expect_str_eq(cg_build_id(), id, "the same on every call");

    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    first_entry f;
    first_entry_make(&env, &in, "one compile", &f);
    char want[200];
    snprintf(want, sizeof want, "ember %s | build %s | llvm ", em_version(), id);
    cr_expect(strncmp(f.key, want, strlen(want)) == 0, "'%s' starts with '%s'", f.key, want);
    cr_expect(strstr(f.key, " | program "), "'%s' ends with the program's hash", f.key);
    first_entry_free(&f);
    inputs_free(&in);
    env_end(&env);
}

Test(key, an_argument_of_other_strides_gets_its_own_key_and_file) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    em_tensor *xt_base = tu_uniform_tensor(2, SH(256, 64), -2, 2, 21);
    em_tensor *xt = em_transpose(xt_base, 0, 1); /* [64,256], column-major */
    cr_assert(xt && !em_is_contiguous(xt));
    inputs tin = {xt, in.a, in.b};

    model3 fast = compile3(affine_tanh, "affine_tanh");
    call_expect(fast, affine_tanh, &in, "dense x");
    call_expect(fast, affine_tanh, &tin, "transposed x (a recompile)");
    cr_expect_eq(count_files(env.dir, ".o", NULL, 0), 2, "one entry per layout");
    em_compiled_free((void *)fast);

    cg_cache_stats s0 = stats_now();
    fast = compile3(affine_tanh, "affine_tanh");
    call_expect(fast, affine_tanh, &tin, "transposed x, from the cache");
    call_expect(fast, affine_tanh, &in, "dense x, from the cache");
    EXPECT_DELTA(s0, 2, 0, 0, 0, 0, "both layouts from the cache");
    em_compiled_free((void *)fast);
    em_release(xt), em_release(xt_base);
    inputs_free(&in);
    env_end(&env);
}

/* linear_gelu compiled twice, the second time with env var `var` set to
 * `value`: two entries, both right. */
static void a_switch_makes_another_key(const char *var, const char *value) {
    cache_env env;
    env_begin(&env);
    em_tensor *x = tu_uniform_tensor(2, SH(64, 256), -1, 1, 31), *w = tu_uniform_tensor(2, SH(128, 256), -0.1, 0.1, 32),
              *b = tu_uniform_tensor(1, SH(128), -1, 1, 33);
    unsetenv(var);
    run_close(linear_gelu, "linear_gelu", x, w, b);
    cr_expect_eq(count_files(env.dir, ".o", NULL, 0), 1);
    cr_assert_eq(setenv(var, value, 1), 0);
    run_close(linear_gelu, "linear_gelu", x, w, b);
    cr_expect_eq(count_files(env.dir, ".o", NULL, 0), 2, "%s=%s makes code of its own", var, value);
    unsetenv(var);
    em_release(x), em_release(w), em_release(b);
    env_end(&env);
}

Test(key, EMBER_GEMM_blas_gets_its_own_key) { a_switch_makes_another_key("EMBER_GEMM", "blas"); }

Test(key, EMBER_PROFILE_gets_its_own_key) { a_switch_makes_another_key("EMBER_PROFILE", "1"); }

Test(key, under_EMBER_CACHE_VERIFY_an_honest_hit_hashes_as_its_module) {
    cache_env env;
    env_begin(&env);
    cr_assert_eq(setenv("EMBER_CACHE_VERIFY", "1", 1), 0);
    inputs in = inputs_new();
    compile_run_free(&in, "first");
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "verified hit");
    EXPECT_DELTA(s0, 1, 0, 0, 0, 0, "a verified hit");
    /* and a live unit shared by a second compile is verified too */
    model3 f = compile3(affine_tanh, "f"), g = compile3(affine_tanh, "g");
    call_expect(f, affine_tanh, &in, "f");
    call_expect(g, affine_tanh, &in, "g, sharing f's verified unit");
    em_compiled_free((void *)f), em_compiled_free((void *)g);
    inputs_free(&in);
    env_end(&env);
}

/* With EMBER_CACHE_VERIFY set to `verify`: compiles affine_tanh once, then
 * rewrites its entry with its own key, symbols and object but another
 * module's hash, as if the key had left out something that changed the module. */
static void entry_from_another_module(cache_env *env, inputs *in, const char *verify) {
    cr_assert_eq(setenv("EMBER_CACHE_VERIFY", verify, 1), 0);
    first_entry f;
    first_entry_make(env, in, "first", &f);
    cr_assert_neq(f.good.ir_hash, 0u, "the entry records its module's hash");
    f.good.ir_hash ^= 1;
    cg_cache_store(f.key, &f.good);
    first_entry_free(&f);
}

Test(key, under_EMBER_CACHE_VERIFY_an_entry_made_from_another_module_aborts, .signal = SIGABRT) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    entry_from_another_module(&env, &in, "1");
    compile_run_free(&in, "over the lying entry"); /* aborts */
    cr_assert_fail("the lying entry was not caught");
}

Test(key, without_EMBER_CACHE_VERIFY_the_same_entry_is_used_as_found) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    entry_from_another_module(&env, &in, "0");
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "the recorded hash is not read"); /* the object itself is right */
    EXPECT_DELTA(s0, 1, 0, 0, 0, 0, "a hit, unchecked");
    inputs_free(&in);
    env_end(&env);
}

Test(key, without_a_build_id_the_modules_bitcode_keys_the_code_and_still_hits) {
    cache_env env;
    env_begin(&env);
    cg_key_use_module_hash(true);
    inputs in = inputs_new();
    first_entry f;
    first_entry_make(&env, &in, "first", &f);
    cr_expect(strstr(f.key, " | ir ") && !strstr(f.key, " | program "), "a module key: '%s'", f.key);
    first_entry_free(&f);
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "second");
    EXPECT_DELTA(s0, 1, 0, 0, 0, 0, "a hit by the module's key");
    cg_key_use_module_hash(false);
    inputs_free(&in);
    env_end(&env);
}
