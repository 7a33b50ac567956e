/*
 * cache_util.c — the object cache tests' helpers (see cache_util.h).
 */
#include "cache_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util.h"


void env_begin(cache_env *c) {
    const char *old = getenv("EMBER_CACHE_DIR");
    c->saved = old ? strdup(old) : NULL;
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/ember-cache-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(c->dir), "mkdtemp %s", c->dir);
    cr_assert_eq(setenv("EMBER_CACHE_DIR", c->dir, 1), 0);
}

void env_end(cache_env *c) {
    tu_remove_tree(c->dir);
    struct stat st;
    cr_expect_neq(stat(c->dir, &st), 0, "%s was not removed", c->dir);
    if (c->saved) setenv("EMBER_CACHE_DIR", c->saved, 1);
    else unsetenv("EMBER_CACHE_DIR");
    free(c->saved);
}

/* Entries of dir whose names end in suffix ("" counts every entry); the last
 * one's path goes to last (when not NULL). */
int count_files(const char *dir, const char *suffix, char *last, size_t cap) {
    DIR *d = opendir(dir);
    cr_assert(d, "opendir %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l < s || strcmp(e->d_name + l - s, suffix)) continue;
        n++;
        if (last) snprintf(last, cap, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return n;
}

/* The one *.o file of dir, and nothing else there (no temporary left over). */
void only_entry(const char *dir, char *path, size_t cap, const char *what) {
    cr_assert_eq(count_files(dir, ".o", path, cap), 1, "%s: *.o files in %s", what, dir);
    cr_expect_eq(count_files(dir, "", NULL, 0), 1, "%s: entries in %s", what, dir);
}

/* A whole file (malloc'd); *n its size. */
unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    cr_assert_geq(len, 0);
    rewind(f);
    unsigned char *p = malloc((size_t)len + 1);
    cr_assert(p);
    cr_assert_eq(fread(p, 1, (size_t)len, f), (size_t)len, "read %s", path);
    fclose(f);
    *n = (size_t)len;
    return p;
}

void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "create %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n, "write %s", path);
    cr_assert_eq(fclose(f), 0);
}

/* The key stored in a cache file (malloc'd), from its documented layout:
 * "EMBEROBJ" | u32 format | u32 key length, key | u64 module hash | ... */
char *key_in(const char *path) {
    size_t n;
    unsigned char *p = read_all(path, &n);
    cr_assert_geq(n, 16u, "%s is too short", path);
    cr_assert_eq(memcmp(p, "EMBEROBJ", 8), 0, "%s: magic", path);
    uint32_t format, len;
    memcpy(&format, p + 8, 4);
    memcpy(&len, p + 12, 4);
    cr_expect_eq(format, 3u, "%s: format %u", path, format);
    cr_assert_leq(16 + (size_t)len, n, "%s: key length %u", path, len);
    char *k = malloc(len + 1);
    cr_assert(k);
    memcpy(k, p + 16, len);
    k[len] = '\0';
    free(p);
    return k;
}

/* Where the cache keeps key's entry: <dir>/<FNV-1a of the key, 16 hex digits>.o */
void entry_path(const char *dir, const char *key, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%016llx.o", dir,
             (unsigned long long)cg_hash(key, strlen(key), 0xcbf29ce484222325ull));
}

/* path holds a valid entry for key (cg_cache_load succeeds: one hit) with the
 * symbols of `like` and an object of its size. Not byte for byte: the object
 * names the module it was compiled from ("ember_<name>_<n>", n counting the
 * process's compiles), which the key leaves out. */
void expect_entry_like(const char *path, const char *key, const cg_blob *like, const char *what) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s: %s is missing", what, path);
    cg_blob b;
    cr_assert_eq(cg_cache_load(key, &b), 0, "%s: %s is not a valid entry for its key", what, path);
    cr_expect_eq(b.nsym, like->nsym, "%s: symbols", what);
    for (int i = 0; i < b.nsym && i < like->nsym; i++) cr_expect_str_eq(b.syms[i], like->syms[i], "%s", what);
    cr_expect_eq(b.nobj, like->nobj, "%s: object of %zu bytes, first %zu", what, b.nobj, like->nobj);
    cr_expect(b.nobj >= 4 && memcmp(b.obj, "\177ELF", 4) == 0, "%s: the object is an ELF file", what);
    cr_expect_eq(b.ir_hash, like->ir_hash, "%s: compiled from the same module", what);
    cg_blob_free(&b);
}

cg_cache_stats stats_now(void) {
    cg_cache_stats s;
    memset(&s, 0xff, sizeof s);
    cg_cache_stats_get(&s);
    return s;
}


/* ---- models ----------------------------------------------------------------------------------- */


/* tanh(x*a + b): one fused pointwise kernel, so one unit and one cache entry. */
em_tensor *affine_tanh(em_tensor *x, em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_add(em_mul(x, a), b)));
    em_scope_end();
    return y;
}

/* sigmoid(x*a - b): another kernel, so another key and another file. */
em_tensor *affine_sigmoid(em_tensor *x, em_tensor *a, em_tensor *b) {
    em_scope_begin();
    em_tensor *y = em_keep(em_sigmoid(em_sub(em_mul(x, a), b)));
    em_scope_end();
    return y;
}


inputs inputs_new(void) {
    return (inputs){tu_uniform_tensor(2, SH(64, 256), -2, 2, 11), tu_uniform_tensor(1, SH(256), -1.5, 1.5, 12),
                    tu_uniform_tensor(1, SH(256), -1, 1, 13)};
}

void inputs_free(inputs *in) {
    em_release(in->x), em_release(in->a), em_release(in->b);
}

model3 compile3(model3 m, const char *name) {
    em_options o = {.name = name};
    model3 fast = (model3)em_compile((void *)m, "tensor(tensor, tensor, tensor)", &o);
    cr_assert(fast, "em_compile %s: %s", name, em_last_error());
    return fast;
}

/* Calls fast (compiling on its first call) and expects the eager result of m, byte for byte. */
void call_expect(model3 fast, model3 m, const inputs *in, const char *what) {
    em_tensor *want = m(in->x, in->a, in->b);
    em_tensor *got = fast(in->x, in->a, in->b);
    cr_assert(want, "%s: eager: %s", what, em_last_error());
    cr_assert(got, "%s: compiled: %s", what, em_last_error());
    tu_expect_identical(got, want, what);
    em_release(got);
    em_release(want);
}

/* Compiles affine_tanh anew (the previous one freed, so no live unit is shared),
 * calls it twice, expects eager's result, and frees it. */
void compile_run_free(const inputs *in, const char *what) {
    model3 fast = compile3(affine_tanh, "affine_tanh");
    call_expect(fast, affine_tanh, in, what);
    call_expect(fast, affine_tanh, in, what); /* the second call runs the same code */
    em_compiled_free((void *)fast);
}

void first_entry_make(const cache_env *env, inputs *in, const char *what, first_entry *f) {
    compile_run_free(in, what);
    only_entry(env->dir, f->path, sizeof f->path, what);
    f->key = key_in(f->path);
    cr_assert_eq(cg_cache_load(f->key, &f->good), 0);
}

void first_entry_free(first_entry *f) {
    cg_blob_free(&f->good);
    free(f->key);
}
