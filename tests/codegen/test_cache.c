/*
 * test_cache.c — the persistent object cache (codegen/cache.c, and its use by
 * cg_unit_create_keyed in codegen/jit.c): compiled code kept on disk under
 * EMBER_CACHE_DIR, in one file per unit named by a hash of its key.
 *
 * Through the public API, em_compile'd models (tanh(x*a+b) on an f32 [64,256]
 * input, and a second, different model) are called and compared with their
 * eager calls, byte for byte, while the cache's counters (cg_cache_stats_get)
 * and the files in the folder are watched:
 *  - the first compile misses and stores one *.o file; after em_compiled_free
 *    (which destroys the unit) the same model loads it (a hit, no new store);
 *  - a truncated file, a file with one byte flipped, and a valid file made for
 *    another key under the entry's name are rejected, the code recompiled and
 *    the file rewritten (a later compile hits); an entry whose checksum and key
 *    are right but whose object is not an object file is recompiled too (the
 *    rewritten file is checked as an entry, not byte for byte: LLVM does not
 *    promise the same bytes for one module in a process that compiled others);
 *  - an entry stored without assembly is recompiled (and rewritten with it)
 *    when a dump folder asks for the asm stage;
 *  - a folder where the entry's file should be is rejected, not read (BUG
 *    below: under ASan the load aborts);
 *  - a folder that cannot be written (under /proc, a regular file used as the
 *    folder, a folder below a regular file) costs only the store: results are
 *    right, store_failures counts each, and stderr gets exactly one "ember:
 *    cannot write the object cache" message per process;
 *  - EMBER_CACHE_DIR "off" and "" turn the cache off: cg_cache_dir() is NULL,
 *    nothing is counted and no file is written (not even a relative "off");
 *  - two models make two files; the same model compiled twice while both are
 *    alive shares one unit (one lookup, one store);
 *  - the GPT-2 block's program, made as two objects on two threads
 *    (split.c), is stored as one entry and loaded back from it; an entry
 *    whose pair of objects overruns its buffer is recompiled.
 * Directly, cg_cache_store / cg_cache_load round-trip an entry, and load
 * rejects a file made for another key, random bytes, an empty file, and a
 * well-formed file of another format version.
 *
 * Each test points EMBER_CACHE_DIR at a fresh folder from mkdtemp, removes it
 * at the end and restores the variable (helpers in cache_util.c). Criterion runs each test in its own
 * process, so the counters and the "warned once" flag start fresh; the tests
 * still compare counters before and after rather than trust absolute values.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_util.h"
#include "codegen.h"
#include "models.h"
#include "../util.h"
#include "../frontend/compile_util.h"

/* ---- a miss, then a hit ----------------------------------------------------------------------- */

Test(cache, the_first_compile_misses_and_stores_one_file_and_the_next_process_like_compile_hits) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    cr_assert_str_eq(cg_cache_dir(), env.dir);
    cr_expect_eq(count_files(env.dir, "", NULL, 0), 0);

    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "first compile");
    EXPECT_DELTA(s0, 0, 1, 0, 1, 0, "first compile");
    char path[600];
    only_entry(env.dir, path, sizeof path, "after the first compile");
    size_t n1;
    unsigned char *first = read_all(path, &n1);
    char *key = key_in(path);
    char expected[600];
    entry_path(env.dir, key, expected, sizeof expected);
    cr_expect_str_eq(path, expected, "the file is named by the hash of its key %s", key);
    cr_expect(strstr(key, "ember ") == key && strstr(key, "| build ") && strstr(key, "| llvm ") &&
                  strstr(key, "| program "),
              "key names ember's version and build, LLVM's version and the program's hash: %s", key);

    /* the unit was destroyed with the function: this compile must come from disk */
    cg_cache_stats s1 = stats_now();
    compile_run_free(&in, "second compile (from the cache)");
    EXPECT_DELTA(s1, 1, 0, 0, 0, 0, "second compile");
    only_entry(env.dir, path, sizeof path, "after the hit");
    size_t n2;
    unsigned char *second = read_all(path, &n2);
    cr_expect(n1 == n2 && memcmp(first, second, n1) == 0, "a hit leaves the file as it was");

    /* and the loaded entry is what cg_cache_load gives for the key */
    cg_blob b;
    cg_cache_stats s2 = stats_now();
    cr_expect_eq(cg_cache_load(key, &b), 0);
    EXPECT_DELTA(s2, 1, 0, 0, 0, 0, "cg_cache_load of the entry's key");
    cr_expect_geq(b.nsym, 1);
    for (int i = 0; i < b.nsym; i++)
        cr_expect(strncmp(b.syms[i], "ember_", 6) == 0, "symbol %d is %s", i, b.syms[i]);
    cr_expect_gt(b.nobj, 4u);
    cr_expect(b.obj && memcmp(b.obj, "\177ELF", 4) == 0, "the object is an ELF file");
    cg_blob_free(&b);

    free(first), free(second), free(key);
    inputs_free(&in);
    env_end(&env);
}

/* ---- corrupt entries -------------------------------------------------------------------------- */

typedef enum damage { TRUNCATE_HALF, FLIP_MIDDLE_BYTE, TRUNCATE_ONE, FLIP_LAST_BYTE } damage;

static void damage_file(const char *path, damage how) {
    size_t n;
    unsigned char *p = read_all(path, &n);
    cr_assert_gt(n, 64u);
    switch (how) {
    case TRUNCATE_HALF: write_all(path, p, n / 2); break;
    case TRUNCATE_ONE: write_all(path, p, n - 1); break;
    case FLIP_MIDDLE_BYTE: p[n / 2] ^= 0x40, write_all(path, p, n); break;
    case FLIP_LAST_BYTE: p[n - 1] ^= 0x01, write_all(path, p, n); break; /* the checksum itself */
    }
    free(p);
}

/* Compiles once, damages the entry, and expects the next compile to reject
 * it, recompile, rewrite the same bytes, and a compile after that to hit. */
static void damaged_entry_is_rewritten(damage how, const char *what) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    first_entry f;
    first_entry_make(&env, &in, what, &f);
    char *path = f.path, *key = f.key;
    size_t n;

    damage_file(path, how);
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, what);
    EXPECT_DELTA(s0, 0, 0, 1, 1, 0, what);
    only_entry(env.dir, f.path, sizeof f.path, what);
    unsigned char *now = read_all(path, &n);
    cr_expect_gt(n, 64u, "%s: the rewritten file has %zu bytes", what, n);
    expect_entry_like(path, key, &f.good, what);

    cg_cache_stats s1 = stats_now();
    compile_run_free(&in, what);
    EXPECT_DELTA(s1, 1, 0, 0, 0, 0, what);

    free(now);
    first_entry_free(&f);
    inputs_free(&in);
    env_end(&env);
}

Test(cache, a_file_truncated_to_half_is_rejected_recompiled_and_rewritten) {
    damaged_entry_is_rewritten(TRUNCATE_HALF, "truncated to half");
}

Test(cache, a_file_missing_its_last_byte_is_rejected_recompiled_and_rewritten) {
    damaged_entry_is_rewritten(TRUNCATE_ONE, "one byte short");
}

Test(cache, a_file_with_one_byte_flipped_in_the_middle_is_rejected_recompiled_and_rewritten) {
    damaged_entry_is_rewritten(FLIP_MIDDLE_BYTE, "a byte flipped in the middle");
}

Test(cache, a_file_with_its_checksum_changed_is_rejected_recompiled_and_rewritten) {
    damaged_entry_is_rewritten(FLIP_LAST_BYTE, "the checksum's last byte flipped");
}

Test(cache, an_empty_file_under_the_entrys_name_is_rejected_and_rewritten) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    compile_run_free(&in, "first");
    char path[600];
    only_entry(env.dir, path, sizeof path, "first");
    write_all(path, "", 0);
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "over an empty file");
    EXPECT_DELTA(s0, 0, 0, 1, 1, 0, "over an empty file");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_gt(st.st_size, 64, "the entry was rewritten (%lld bytes)", (long long)st.st_size);
    inputs_free(&in);
    env_end(&env);
}

/* ---- entries of another key, and files that are not entries ---------------------------------- */

/* A small entry with made-up contents (load does not look inside the object). */
static cg_blob sample_blob(char **syms, int nsym, const char *obj) {
    return (cg_blob){.syms = syms, .nsym = nsym, .obj = (char *)obj, .nobj = strlen(obj),
                     .ir = (char *)"; some IR\n", .asm_text = NULL};
}

Test(cache, store_then_load_round_trips_an_entry) {
    cache_env env;
    env_begin(&env);
    char *syms[] = {(char *)"ember_a_n0", (char *)"ember_a_n1"};
    cg_blob in = sample_blob(syms, 2, "not really an object");
    cg_cache_stats s0 = stats_now();
    cg_cache_store("key Y", &in);
    EXPECT_DELTA(s0, 0, 0, 0, 1, 0, "store");
    char path[600];
    entry_path(env.dir, "key Y", path, sizeof path);
    char found[600];
    only_entry(env.dir, found, sizeof found, "store");
    cr_expect_str_eq(found, path);

    cg_blob out;
    cr_assert_eq(cg_cache_load("key Y", &out), 0);
    cr_expect_eq(out.nsym, 2);
    cr_expect_str_eq(out.syms[0], "ember_a_n0");
    cr_expect_str_eq(out.syms[1], "ember_a_n1");
    cr_expect_eq(out.nobj, strlen("not really an object"));
    cr_expect(out.nobj == in.nobj && memcmp(out.obj, in.obj, in.nobj) == 0);
    cr_expect_str_eq(out.ir, "; some IR\n");
    cr_expect_null(out.asm_text, "an entry stored without assembly loads without it");
    cg_blob_free(&out);

    cr_expect_eq(cg_cache_load("key Z", &out), -1, "an absent key");
    cr_expect_eq(out.nsym, 0);
    cr_expect_null(out.obj);
    EXPECT_DELTA(s0, 1, 1, 0, 1, 0, "a hit and a miss");
    env_end(&env);
}

Test(cache, a_valid_entry_of_another_key_under_the_entrys_name_is_rejected) {
    cache_env env;
    env_begin(&env);
    char *sy[] = {(char *)"ember_y_n0"}, *sx[] = {(char *)"ember_x_n0"};
    cg_blob y = sample_blob(sy, 1, "object of Y"), x = sample_blob(sx, 1, "object of X");
    cg_cache_store("key Y", &y);
    cg_cache_store("key X", &x);
    char py[600], px[600];
    entry_path(env.dir, "key Y", py, sizeof py);
    entry_path(env.dir, "key X", px, sizeof px);
    cr_assert_eq(count_files(env.dir, ".o", NULL, 0), 2);
    cr_assert_eq(rename(px, py), 0, "rename %s to %s", px, py);

    cg_blob out;
    cg_cache_stats s0 = stats_now();
    cr_expect_eq(cg_cache_load("key Y", &out), -1, "X's entry (a valid file) under Y's name");
    EXPECT_DELTA(s0, 0, 0, 1, 0, 0, "X's entry under Y's name");
    cr_expect_eq(out.nsym, 0);
    cr_expect_null(out.syms);
    cr_expect_null(out.obj);
    cr_expect_eq(cg_cache_load("key X", &out), -1, "X's own name is empty now");
    EXPECT_DELTA(s0, 0, 1, 1, 0, 0, "X's name");

    /* the next store of Y replaces it */
    cg_cache_store("key Y", &y);
    cr_assert_eq(cg_cache_load("key Y", &out), 0);
    cr_expect_str_eq(out.syms[0], "ember_y_n0");
    cg_blob_free(&out);
    cr_expect_eq(count_files(env.dir, "", NULL, 0), 1, "Y's entry only, no temporary left");
    env_end(&env);
}

Test(cache, a_key_that_only_starts_like_the_entrys_is_rejected) {
    cache_env env;
    env_begin(&env);
    char *sy[] = {(char *)"ember_y_n0"};
    cg_blob y = sample_blob(sy, 1, "object of Y");
    cg_cache_store("key Y and more", &y);
    char plong[600], pshort[600];
    entry_path(env.dir, "key Y and more", plong, sizeof plong);
    entry_path(env.dir, "key Y", pshort, sizeof pshort);
    cr_assert_eq(rename(plong, pshort), 0);
    cg_blob out;
    cg_cache_stats s0 = stats_now();
    cr_expect_eq(cg_cache_load("key Y", &out), -1);
    EXPECT_DELTA(s0, 0, 0, 1, 0, 0, "a longer key");
    env_end(&env);
}

Test(cache, files_that_are_not_ember_cache_entries_are_rejected) {
    cache_env env;
    env_begin(&env);
    char path[600];
    entry_path(env.dir, "key R", path, sizeof path);
    cg_blob out;
    cg_cache_stats s0 = stats_now();

    tu_rng rng = {2024};
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)tu_uniform(&rng, 0, 256);
    write_all(path, junk, sizeof junk);
    cr_expect_eq(cg_cache_load("key R", &out), -1, "random bytes");
    cr_expect_null(out.obj);

    write_all(path, "", 0);
    cr_expect_eq(cg_cache_load("key R", &out), -1, "an empty file");

    write_all(path, "EMBEROBJ", 8);
    cr_expect_eq(cg_cache_load("key R", &out), -1, "the magic only");

    /* a well-formed file, checksum right, of another format version */
    char *sr[] = {(char *)"ember_r_n0"};
    cg_blob r = sample_blob(sr, 1, "object of R");
    cg_cache_store("key R", &r);
    cr_assert_eq(cg_cache_load("key R", &out), 0, "the store made a valid entry");
    cg_blob_free(&out);
    size_t n;
    unsigned char *p = read_all(path, &n);
    uint32_t format = 4;
    memcpy(p + 8, &format, 4);
    uint64_t sum = cg_hash_words(p, n - 8);
    memcpy(p + n - 8, &sum, 8);
    write_all(path, p, n);
    cr_expect_eq(cg_cache_load("key R", &out), -1, "format 4");
    /* format 2 (no module hash), checksum right */
    format = 2;
    memcpy(p + 8, &format, 4);
    sum = cg_hash_words(p, n - 8);
    memcpy(p + n - 8, &sum, 8);
    write_all(path, p, n);
    cr_expect_eq(cg_cache_load("key R", &out), -1, "format 2");
    /* and a format 1 file: the same bytes under format 1's checksum (FNV-1a) */
    format = 1;
    memcpy(p + 8, &format, 4);
    sum = cg_hash(p, n - 8, 0xcbf29ce484222325ull);
    memcpy(p + n - 8, &sum, 8);
    write_all(path, p, n);
    free(p);
    cr_expect_eq(cg_cache_load("key R", &out), -1, "format 1");

    EXPECT_DELTA(s0, 1, 0, 6, 1, 0, "six bad files and one good");
    env_end(&env);
}

Test(cache, a_compile_over_an_entry_of_another_key_rejects_it_and_recompiles) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    first_entry f;
    first_entry_make(&env, &in, "first", &f);
    char *path = f.path, *key = f.key;

    /* the same symbols, a valid file, but made for key "X", under the real entry's name */
    cg_blob real;
    cr_assert_eq(cg_cache_load(key, &real), 0);
    cg_cache_store("X", &real);
    cg_blob_free(&real);
    char px[600];
    entry_path(env.dir, "X", px, sizeof px);
    cr_assert_eq(rename(px, path), 0);

    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "over X's entry");
    EXPECT_DELTA(s0, 0, 0, 1, 1, 0, "over X's entry");
    expect_entry_like(path, key, &f.good, "the entry was rewritten for its own key");
    cg_cache_stats s1 = stats_now();
    compile_run_free(&in, "after the rewrite");
    EXPECT_DELTA(s1, 1, 0, 0, 0, 0, "after the rewrite");

    first_entry_free(&f);
    inputs_free(&in);
    env_end(&env);
}

/* An entry with the right key, symbols and checksum whose object is `obj`
 * (n bytes): the load succeeds, linking fails, and the code is recompiled and
 * the entry rewritten (a later compile hits). */
static void recompiled_over(const char *obj, size_t n, const char *what) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    first_entry f;
    first_entry_make(&env, &in, "first", &f);
    cg_blob real;
    cr_assert_eq(cg_cache_load(f.key, &real), 0);
    free(real.obj);
    real.obj = malloc(n);
    cr_assert(real.obj);
    memcpy(real.obj, obj, n);
    real.nobj = n;
    cg_cache_store(f.key, &real);
    cg_blob_free(&real);

    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, what);
    EXPECT_DELTA(s0, 1, 0, 0, 1, 0, what);
    expect_entry_like(f.path, f.key, &f.good, "the entry was rewritten with the real object");
    cg_cache_stats s1 = stats_now();
    compile_run_free(&in, "after the rewrite");
    EXPECT_DELTA(s1, 1, 0, 0, 0, 0, "after the rewrite");

    first_entry_free(&f);
    inputs_free(&in);
    env_end(&env);
}

Test(cache, an_entry_whose_object_is_not_an_object_file_is_recompiled) {
    static const char garbage[] = "this is not an ELF object file at all";
    recompiled_over(garbage, strlen(garbage), "over a garbage object");
}

Test(cache, an_entry_whose_two_objects_overrun_their_buffer_is_recompiled) {
    /* split.c's magic for two objects, then a length past the end */
    static const char bad[] = {'e', 'm', 'b', 'O', 'B', 'J', 'S', '2', 0x10, 0x27, 0, 0, 0, 0, 0, 0, 'E', 'L', 'F'};
    recompiled_over(bad, sizeof bad, "over a malformed pair of objects");
}

/* The GPT-2 block's program has the code to be made on two threads (split.c):
 * its two objects go to the cache as one entry and come back as two. */
Test(cache, a_program_made_as_two_objects_is_stored_and_loaded_back_as_two) {
    cache_env env;
    env_begin(&env);
    cr_assert_eq(bm_setup(), 0, "%s", em_last_error());
    const bm_model *m = bm_find("block");
    em_tensor *x = m->input(1), *want = m->fn(x);
    cr_assert(x && want, "%s", em_last_error());
    for (int round = 0; round < 2; round++) {
        em_tensor *(*fast)(em_tensor *) = (em_tensor * (*)(em_tensor *)) em_compile((void *)m->fn, "tensor(tensor)", NULL);
        cr_assert(fast, "%s", em_last_error());
        em_tensor *got = fast(x);
        tu_expect_compiled(got, want, round ? "block, from the cache" : "block, compiled");
        int st;
        char *text = cu_dump((void *)fast, "compile", &st);
        if (round == 0 && sysconf(_SC_NPROCESSORS_ONLN) >= 2)
            cr_expect(strstr(text, "two objects on two threads"), "%s", text);
        if (round == 1) cr_expect(strstr(text, "from the object cache"), "%s", text);
        free(text);
        em_release(got);
        em_compiled_free((void *)fast);
    }
    em_release(x), em_release(want);
    env_end(&env);
}

/* ---- an unwritable folder --------------------------------------------------------------------- */

/* Compiles (fresh each time, so each stores) `times` times with EMBER_CACHE_DIR
 * at dir and stderr captured; the results must match eager, every store fail,
 * and the tu_capture is returned (malloc'd). */
static char *compile_unwritable(const char *dir, int times, const inputs *in) {
    cr_assert_eq(setenv("EMBER_CACHE_DIR", dir, 1), 0);
    cg_cache_stats s0 = stats_now();
    tu_capture cap;
    tu_capture_begin(&cap);
    for (int i = 0; i < times; i++) compile_run_free(in, dir);
    char *err = tu_capture_end(&cap);
    EXPECT_DELTA(s0, 0, times, 0, 0, times, dir);
    return err;
}

Test(cache, a_cache_folder_under_proc_fails_each_store_and_says_so_once) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    char *err = compile_unwritable("/proc/ember-cache-test", 3, &in);
    cr_expect_eq(cu_count_of(err, "ember: cannot write the object cache"), 1, "stderr:\n%s", err);
    cr_expect(strstr(err, "/proc/ember-cache-test"), "the message names the folder:\n%s", err);
    free(err);
    struct stat st;
    cr_expect_neq(stat("/proc/ember-cache-test", &st), 0);
    inputs_free(&in);
    env_end(&env);
}

Test(cache, a_regular_file_as_the_cache_folder_fails_each_store_and_says_so_once) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    char file[600], below[700];
    snprintf(file, sizeof file, "%s/plain-file", env.dir);
    write_all(file, "x", 1);
    snprintf(below, sizeof below, "%s/sub", file);

    char *err = compile_unwritable(file, 3, &in); /* the file is the folder: open fails */
    cr_expect_eq(cu_count_of(err, "ember: cannot write the object cache"), 1, "stderr:\n%s", err);
    free(err);
    err = compile_unwritable(below, 2, &in); /* a folder below the file: mkdir fails */
    cr_expect_eq(cu_count_of(err, "ember: cannot write the object cache"), 0,
                 "already said once in this process:\n%s", err);
    free(err);

    size_t n;
    unsigned char *p = read_all(file, &n);
    cr_expect(n == 1 && p[0] == 'x', "the file is untouched");
    free(p);
    cr_expect_eq(count_files(env.dir, "", NULL, 0), 1, "nothing but the file in %s", env.dir);
    inputs_free(&in);
    env_end(&env);
}

/* ---- the cache turned off --------------------------------------------------------------------- */

/* With EMBER_CACHE_DIR at value, run from inside an empty folder: no folder, no
 * counting, no file (not even a relative one), and eager's results. */
static void cache_off(const char *value) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(env.dir), 0);
    cr_assert_eq(setenv("EMBER_CACHE_DIR", value, 1), 0);
    cr_expect_null(cg_cache_dir(), "EMBER_CACHE_DIR=\"%s\"", value);

    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, value);
    compile_run_free(&in, value);
    EXPECT_DELTA(s0, 0, 0, 0, 0, 0, value);

    char *sy[] = {(char *)"ember_k_n0"};
    cg_blob b = sample_blob(sy, 1, "object"), out;
    cg_cache_store("key K", &b);
    cr_expect_eq(cg_cache_load("key K", &out), -1);
    cr_expect_null(out.obj);
    EXPECT_DELTA(s0, 0, 0, 0, 0, 0, value);

    cr_expect_eq(count_files(env.dir, "", NULL, 0), 0, "EMBER_CACHE_DIR=\"%s\" wrote into the working folder",
                 value);
    cr_assert_eq(chdir(cwd), 0);
    inputs_free(&in);
    env_end(&env);
}

Test(cache, EMBER_CACHE_DIR_off_disables_the_cache) { cache_off("off"); }

Test(cache, an_empty_EMBER_CACHE_DIR_disables_the_cache) { cache_off(""); }

Test(cache, the_cache_folder_is_created_when_missing) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    char sub[600];
    snprintf(sub, sizeof sub, "%s/a/b", env.dir);
    cr_assert_eq(setenv("EMBER_CACHE_DIR", sub, 1), 0);
    cr_expect_str_eq(cg_cache_dir(), sub);
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "nested folder");
    EXPECT_DELTA(s0, 0, 1, 0, 1, 0, "nested folder");
    char path[700];
    only_entry(sub, path, sizeof path, "nested folder");
    inputs_free(&in);
    env_end(&env);
}

/* ---- several models, and live units shared ---------------------------------------------------- */

Test(cache, two_different_models_make_two_files) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    cg_cache_stats s0 = stats_now();
    model3 t = compile3(affine_tanh, "affine_tanh"), s = compile3(affine_sigmoid, "affine_sigmoid");
    call_expect(t, affine_tanh, &in, "tanh model");
    call_expect(s, affine_sigmoid, &in, "sigmoid model");
    EXPECT_DELTA(s0, 0, 2, 0, 2, 0, "two models");
    cr_expect_eq(count_files(env.dir, ".o", NULL, 0), 2);
    cr_expect_eq(count_files(env.dir, "", NULL, 0), 2, "no temporary left");
    em_compiled_free((void *)t);
    em_compiled_free((void *)s);

    /* both load back */
    cg_cache_stats s1 = stats_now();
    t = compile3(affine_tanh, "affine_tanh"), s = compile3(affine_sigmoid, "affine_sigmoid");
    call_expect(t, affine_tanh, &in, "tanh model from the cache");
    call_expect(s, affine_sigmoid, &in, "sigmoid model from the cache");
    EXPECT_DELTA(s1, 2, 0, 0, 0, 0, "two models from the cache");
    em_compiled_free((void *)t);
    em_compiled_free((void *)s);
    inputs_free(&in);
    env_end(&env);
}

Test(cache, the_same_model_compiled_twice_while_both_live_shares_one_unit) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    cg_cache_stats s0 = stats_now();
    model3 f = compile3(affine_tanh, "first"), g = compile3(affine_tanh, "second");
    call_expect(f, affine_tanh, &in, "first");
    call_expect(g, affine_tanh, &in, "second (shares the first's unit)");
    EXPECT_DELTA(s0, 0, 1, 0, 1, 0, "two live compiles of one model");
    char path[600];
    only_entry(env.dir, path, sizeof path, "two live compiles");

    /* freeing one keeps the shared code running for the other */
    em_compiled_free((void *)f);
    call_expect(g, affine_tanh, &in, "second, after the first was freed");
    /* and a third while g lives shares g's unit: no lookup at all */
    model3 h = compile3(affine_tanh, "third");
    call_expect(h, affine_tanh, &in, "third");
    EXPECT_DELTA(s0, 0, 1, 0, 1, 0, "a third live compile");
    em_compiled_free((void *)g);
    call_expect(h, affine_tanh, &in, "third, after the second was freed");
    em_compiled_free((void *)h);

    /* with none alive, the next compile loads the file */
    cg_cache_stats s1 = stats_now();
    compile_run_free(&in, "after all were freed");
    EXPECT_DELTA(s1, 1, 0, 0, 0, 0, "after all were freed");
    inputs_free(&in);
    env_end(&env);
}

/* ---- what an entry holds, and what is in its place -------------------------------------------- */

Test(cache, an_entry_without_assembly_is_recompiled_when_a_dump_needs_assembly) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    char dumps[600];
    snprintf(dumps, sizeof dumps, "%s/dumps", env.dir);
    compile_run_free(&in, "no dump: no assembly kept");
    char path[600];
    cr_assert_eq(count_files(env.dir, ".o", path, sizeof path), 1);
    char *key = key_in(path);
    cg_blob b;
    cr_assert_eq(cg_cache_load(key, &b), 0);
    cr_expect_null(b.asm_text, "a compile without a dump folder keeps no assembly");
    cr_expect(b.ir && strstr(b.ir, "define"), "the optimised IR is always kept");
    cg_blob_free(&b);

    /* a dump folder asks for the assembly: the entry cannot give it */
    for (int round = 0; round < 2; round++) {
        cg_cache_stats s0 = stats_now();
        em_options o = {.name = "affine_tanh", .dump_dir = dumps};
        model3 fast = (model3)em_compile((void *)affine_tanh, "tensor(tensor, tensor, tensor)", &o);
        cr_assert(fast, "%s", em_last_error());
        call_expect(fast, affine_tanh, &in, round ? "with a dump, from the cache" : "with a dump, recompiled");
        int status;
        char *asm_text = cu_dump(fast, "asm", &status);
        cr_expect_eq(status, 0);
        cr_expect(strstr(asm_text, "ember_") && !strstr(asm_text, "not kept"), "round %d: asm dump:\n%.400s",
                  round, asm_text);
        free(asm_text);
        em_compiled_free((void *)fast);
        cg_cache_stats s1 = stats_now();
        cr_expect_eq(s1.stores - s0.stores, round ? 0 : 1, "round %d: stores +%ld", round, s1.stores - s0.stores);
        cr_expect_eq(s1.misses - s0.misses, 0, "round %d", round);
        cr_expect_eq(s1.rejected - s0.rejected, 0, "round %d", round);
        cr_expect_eq(s1.hits - s0.hits, 1, "round %d: hits +%ld (round 0 counts the load it could not use)",
                     round, s1.hits - s0.hits);
    }
    cr_assert_eq(cg_cache_load(key, &b), 0);
    cr_expect(b.asm_text && strstr(b.asm_text, "ember_"), "the rewritten entry holds the assembly");
    cg_blob_free(&b);
    cr_expect_eq(count_files(env.dir, ".o", NULL, 0), 1);
    free(key);
    inputs_free(&in);
    env_end(&env);
}

/* Regression: a folder at the entry's name used to be read with the size
 * ftell reports for it (LONG_MAX on ext4), which ASan aborts on. The load now
 * reads regular files only (and opens without blocking, for a FIFO). */
Test(cache, a_folder_at_the_entrys_name_is_rejected_and_the_compile_goes_on) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    first_entry f;
    first_entry_make(&env, &in, "first", &f);
    const char *path = f.path, *key = f.key;
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkdir(path, 0777), 0);
    char inside[700];
    snprintf(inside, sizeof inside, "%s/x", path); /* not empty: the store cannot rename over it */
    write_all(inside, "x", 1);

    /* the load alone first, stderr not captured, so a sanitizer's report shows */
    cg_blob b;
    cg_cache_stats s0 = stats_now();
    cr_expect_eq(cg_cache_load(key, &b), -1, "a folder is not an entry");
    cr_expect_null(b.obj);
    EXPECT_DELTA(s0, 0, 0, 1, 0, 0, "loading a folder");

    s0 = stats_now();
    tu_capture cap;
    tu_capture_begin(&cap);
    compile_run_free(&in, "a folder in the entry's place");
    char *err = tu_capture_end(&cap);
    EXPECT_DELTA(s0, 0, 0, 1, 0, 1, "a folder in the entry's place");
    cr_expect_eq(cu_count_of(err, "ember: cannot write the object cache"), 1, "stderr:\n%s", err);
    free(err);
    struct stat st;
    cr_expect(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "the folder is left alone");
    cr_expect_eq(count_files(env.dir, ".tmp", NULL, 0), 0, "no temporary left");
    first_entry_free(&f);
    inputs_free(&in);
    env_end(&env);
}
