/*
 * cache_util.h — what the object cache's tests (test_cache.c, test_key.c)
 * share: a fresh cache folder per test, the files in it, the counters, and
 * two small models compiled over one set of inputs and compared with eager.
 * Checks assert with Criterion.
 */
#ifndef EMBER_TESTS_CACHE_UTIL_H
#define EMBER_TESTS_CACHE_UTIL_H

#include <criterion/criterion.h>

#include <stddef.h>

#include "codegen.h"

#ifndef SH
#define SH(...) ((int64_t[]){__VA_ARGS__})
#endif

/* A fresh cache folder under EMBER_CACHE_DIR, and the value it replaced. */
typedef struct cache_env {
    char dir[256];
    char *saved; /* the previous EMBER_CACHE_DIR (malloc'd), or NULL when it was unset */
} cache_env;

typedef em_tensor *(*model3)(em_tensor *, em_tensor *, em_tensor *);

/* x [64,256], a and b [256] (broadcast over rows), the same values in every test. */
typedef struct inputs {
    em_tensor *x, *a, *b;
} inputs;

/* The one entry a first compile wrote: its path, its key, and what it holds. */
typedef struct first_entry {
    char path[600];
    char *key;
    cg_blob good;
} first_entry;

/* The counters moved from `before` by exactly these amounts. */
#define EXPECT_DELTA(before, hits_, misses_, rejected_, stores_, failures_, what)                   \
    do {                                                                                          \
        cg_cache_stats now_ = stats_now();                                                        \
        cr_expect_eq(now_.hits - (before).hits, (long)(hits_), "%s: hits +%ld, want +%d", (what),  \
                     now_.hits - (before).hits, (int)(hits_));                                     \
        cr_expect_eq(now_.misses - (before).misses, (long)(misses_), "%s: misses +%ld, want +%d",  \
                     (what), now_.misses - (before).misses, (int)(misses_));                       \
        cr_expect_eq(now_.rejected - (before).rejected, (long)(rejected_),                        \
                     "%s: rejected +%ld, want +%d", (what), now_.rejected - (before).rejected,     \
                     (int)(rejected_));                                                            \
        cr_expect_eq(now_.stores - (before).stores, (long)(stores_), "%s: stores +%ld, want +%d",  \
                     (what), now_.stores - (before).stores, (int)(stores_));                       \
        cr_expect_eq(now_.store_failures - (before).store_failures, (long)(failures_),            \
                     "%s: store failures +%ld, want +%d", (what),                                  \
                     now_.store_failures - (before).store_failures, (int)(failures_));             \
    } while (0)

/* Points EMBER_CACHE_DIR at a fresh folder from mkdtemp. */
void env_begin(cache_env *c);
/* Removes the folder and what is in it, and restores EMBER_CACHE_DIR. */
void env_end(cache_env *c);

/* Entries of dir whose names end in suffix ("" counts every entry); the last
 * one's path goes to last (when not NULL). */
int count_files(const char *dir, const char *suffix, char *last, size_t cap);

/* The one *.o file of dir, and nothing else there (no temporary left over). */
void only_entry(const char *dir, char *path, size_t cap, const char *what);

/* A whole file (malloc'd); *n its size. */
unsigned char *read_all(const char *path, size_t *n);

/* Writes a whole file. */
void write_all(const char *path, const void *p, size_t n);

/* The key stored in a cache file (malloc'd), from its documented layout:
 * "EMBEROBJ" | u32 format | u32 key length, key | u64 module hash | ... */
char *key_in(const char *path);

/* Where the cache keeps key's entry: <dir>/<FNV-1a of the key, 16 hex digits>.o */
void entry_path(const char *dir, const char *key, char *buf, size_t cap);

/* path holds a valid entry for key (cg_cache_load succeeds: one hit) with the
 * symbols of `like`, an object of its size, and its module hash. Not byte for
 * byte: LLVM does not promise the same bytes for one module in a process that
 * compiled others (EMBER_CACHE_VERIFY compares module hashes for that reason). */
void expect_entry_like(const char *path, const char *key, const cg_blob *like, const char *what);

/* The cache's counters now. */
cg_cache_stats stats_now(void);

/* tanh(x*a + b): one fused pointwise kernel, so one unit and one cache entry. */
em_tensor *affine_tanh(em_tensor *x, em_tensor *a, em_tensor *b);

/* sigmoid(x*a - b): another kernel, so another key and another file. */
em_tensor *affine_sigmoid(em_tensor *x, em_tensor *a, em_tensor *b);

inputs inputs_new(void);
void inputs_free(inputs *in);
/* em_compile of a model3 under that name; asserts it worked. */
model3 compile3(model3 m, const char *name);

/* Calls fast (compiling on its first call) and expects the eager result of m, byte for byte. */
void call_expect(model3 fast, model3 m, const inputs *in, const char *what);

/* Compiles affine_tanh anew (the previous one freed, so no live unit is shared),
 * calls it twice, expects eager's result, and frees it. */
void compile_run_free(const inputs *in, const char *what);

/* compile_run_free into env's empty folder, then its one entry (f->good loaded: one hit). */
void first_entry_make(const cache_env *env, inputs *in, const char *what, first_entry *f);
void first_entry_free(first_entry *f);

#endif
