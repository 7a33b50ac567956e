/*
 * test_cache_trim.c — the object cache stays under EMBER_CACHE_MAX_MB
 * (codegen/cache.c's trim, after every store).
 *
 * Entries of the tanh and sigmoid models on an f32 [64,256] input, and of the
 * tanh model on a transposed input, are made in a fresh folder, their times
 * set apart by hand (utimensat) so that "least recently used" is certain:
 *  - over the limit, the oldest entries go until the rest fit in three
 *    quarters of it, the one just stored never, and `evicted` counts them;
 *  - a hit refreshes an entry's time, so the entry used last stays;
 *  - under the limit, or with EMBER_CACHE_MAX_MB=0, nothing goes; a value that
 *    is not a number means the default (1024 MB), so nothing goes either;
 *  - a temporary file two hours old (a writer that died) goes at the next
 *    store, one a minute old stays, and files that are not ours stay.
 * Every compiled result is compared with eager.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cache_util.h"
#include "../util.h"

/* Sets path's modification time `ago` seconds in the past. */
static void age(const char *path, long ago) {
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= ago, t[1] = t[0];
    cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0, "utimensat %s", path);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static double size_of(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return (double)st.st_size;
}

/* The *.o entry of dir that is neither a nor b. */
static void other_entry(const char *dir, const char *a, const char *b, char *out, size_t cap) {
    DIR *d = opendir(dir);
    cr_assert(d);
    out[0] = '\0';
    for (struct dirent *e; (e = readdir(d));) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        size_t n = strlen(e->d_name);
        if (n > 2 && !strcmp(e->d_name + n - 2, ".o") && strcmp(p, a) && strcmp(p, b)) snprintf(out, cap, "%s", p);
    }
    closedir(d);
    cr_assert(out[0], "a new entry in %s", dir);
}

/* Three entries: tanh (aged 300 s) and sigmoid (aged 200 s), then tanh on a
 * transposed x, stored with EMBER_CACHE_MAX_MB set to limit (NULL: unset). */
typedef struct three {
    char tanh[600], sigm[600], trans[600];
} three;

static void make_three(const cache_env *env, const inputs *in, const char *limit, three *t) {
    unsetenv("EMBER_CACHE_MAX_MB");
    model3 f = compile3(affine_tanh, "affine_tanh");
    call_expect(f, affine_tanh, in, "tanh");
    em_compiled_free((void *)f);
    only_entry(env->dir, t->tanh, sizeof t->tanh, "tanh");
    age(t->tanh, 300);
    f = compile3(affine_sigmoid, "affine_sigmoid");
    call_expect(f, affine_sigmoid, in, "sigmoid");
    em_compiled_free((void *)f);
    other_entry(env->dir, t->tanh, "", t->sigm, sizeof t->sigm);
    age(t->sigm, 200);

    if (limit) cr_assert_eq(setenv("EMBER_CACHE_MAX_MB", limit, 1), 0);
    em_tensor *base = tu_uniform_tensor(2, SH(256, 64), -2, 2, 21), *xt = em_transpose(base, 0, 1);
    inputs tin = {xt, in->a, in->b};
    f = compile3(affine_tanh, "affine_tanh");
    call_expect(f, affine_tanh, &tin, "tanh, transposed x");
    em_compiled_free((void *)f);
    em_release(xt), em_release(base);
    other_entry(env->dir, t->tanh, t->sigm, t->trans, sizeof t->trans);
}

Test(cache_trim, over_the_limit_the_least_recently_used_entries_go_and_the_new_one_stays) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    /* first learn the three entries' sizes (EMBER_CACHE_MAX_MB=0: nothing goes) */
    three t;
    make_three(&env, &in, "0", &t);
    double st = size_of(t.tanh), ss = size_of(t.sigm), sx = size_of(t.trans);
    env_end(&env);

    /* then a limit the three overflow: the oldest go until the rest fit 3/4 of it */
    env_begin(&env);
    double limit = st + ss; /* < st + ss + sx */
    char mb[64];
    snprintf(mb, sizeof mb, "%.9f", limit / (1024.0 * 1024.0));
    bool tanh_goes = true, sigm_goes = ss + sx > 0.75 * limit;
    cg_cache_stats s0 = stats_now();
    make_three(&env, &in, mb, &t);
    cr_expect_eq(exists(t.tanh), !tanh_goes, "the least recently used entry (tanh) went");
    cr_expect_eq(exists(t.sigm), !sigm_goes, "sigmoid's entry %s", sigm_goes ? "went too" : "stayed");
    cr_expect(exists(t.trans), "the entry just stored stayed");
    cr_expect_eq(stats_now().evicted - s0.evicted, 1 + sigm_goes, "evictions are counted");
    inputs_free(&in);
    env_end(&env);
}

Test(cache_trim, a_hit_refreshes_its_entry_so_the_entry_used_last_stays) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    model3 f = compile3(affine_tanh, "affine_tanh");
    call_expect(f, affine_tanh, &in, "tanh");
    em_compiled_free((void *)f);
    char path[600];
    only_entry(env.dir, path, sizeof path, "tanh");
    age(path, 100000);
    cg_cache_stats s0 = stats_now();
    compile_run_free(&in, "a hit");
    EXPECT_DELTA(s0, 1, 0, 0, 0, 0, "a hit");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_gt(st.st_mtime, time(NULL) - 60, "the hit refreshed the entry's time");
    inputs_free(&in);
    env_end(&env);
}

static void nothing_goes(const char *limit) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    cg_cache_stats s0 = stats_now();
    three t;
    make_three(&env, &in, limit, &t);
    cr_expect(exists(t.tanh) && exists(t.sigm), "EMBER_CACHE_MAX_MB=%s: both old entries stay", limit ? limit : "(unset)");
    cr_expect_eq(count_files(env.dir, ".o", NULL, 0), 3);
    cr_expect_eq(stats_now().evicted, s0.evicted);
    inputs_free(&in);
    env_end(&env);
}

Test(cache_trim, under_the_default_limit_nothing_goes) { nothing_goes(NULL); }

Test(cache_trim, EMBER_CACHE_MAX_MB_0_keeps_everything) { nothing_goes("0"); }

Test(cache_trim, an_EMBER_CACHE_MAX_MB_that_is_not_a_number_means_the_default) { nothing_goes("lots"); }

Test(cache_trim, a_stale_temporary_goes_at_the_next_store_and_a_fresh_one_and_other_files_stay) {
    cache_env env;
    env_begin(&env);
    inputs in = inputs_new();
    char stale[600], fresh[600], other[600];
    snprintf(stale, sizeof stale, "%s/0123456789abcdef.o.999.0.tmp", env.dir);
    snprintf(fresh, sizeof fresh, "%s/0123456789abcdef.o.999.1.tmp", env.dir);
    snprintf(other, sizeof other, "%s/notes.txt", env.dir);
    write_all(stale, "half", 4), write_all(fresh, "half", 4), write_all(other, "mine", 4);
    age(stale, 2 * 3600), age(fresh, 60), age(other, 10 * 86400);
    compile_run_free(&in, "a store");
    cr_expect(!exists(stale), "the temporary of a writer that died two hours ago went");
    cr_expect(exists(fresh), "a temporary a minute old may still be written: it stays");
    cr_expect(exists(other), "a file that is not ours stays");
    remove(fresh), remove(other);
    inputs_free(&in);
    env_end(&env);
}
