/*
 * compile_util.h — what the em_compile tests (test_compile.c,
 * test_compile_guards.c, test_compile_observe.c) share: the models several of
 * them compile (tiny over global weights, chain, by_max) with their eager
 * comparisons, the statistics check, and em_dump into a string.
 *
 * Generic helpers (deterministic tensors, tu_expect_identical, the allocator's
 * counters) are in tests/util.h. Checks assert with Criterion; what is
 * returned malloc'd the caller frees.
 */
#ifndef EMBER_TESTS_COMPILE_UTIL_H
#define EMBER_TESTS_COMPILE_UTIL_H

#include <criterion/criterion.h>

#include <stdint.h>

#include "ember.h"

#ifndef SH
#define SH(...) ((int64_t[]){__VA_ARGS__})
#endif

/* ---- models ------------------------------------------------------------------------------------ */

/* Weights in globals, captured as constants: w [16,8] and b [8] after globals_init. */
extern em_tensor *g_w, *g_b;
void globals_init(void);
/* Releases g_w and g_b and sets them to NULL. */
void globals_fini(void);

/* tanh(x @ w + b) on globals. */
em_tensor *tiny(em_tensor *x);
/* An elementwise chain that takes any shape and dtype. */
em_tensor *chain(em_tensor *x);
/* Divides by the largest element: em_item reads data, so the graph breaks. */
em_tensor *by_max(em_tensor *x);

/* fast(x) (a compiled tiny / chain) must match the eager call (tu_expect_compiled). */
void tiny_expect(void *fast, em_tensor *x, const char *what);
void chain_expect(void *fast, em_tensor *x, const char *what);

/* ---- inspecting a compiled function ------------------------------------------------------------ */

/* t's reference count. */
long cu_refs(const em_tensor *t);
/* The arena fn keeps between calls (em_compiled_stats' arena_bytes, in bytes the
 * allocator counts: none for an empty arena). */
size_t cu_arena(void *fn);
/* em_compiled_stats of fn, asserted to succeed. */
em_stats cu_stats_of(void *fn);
/* What em_dump(fn, stage) writes (malloc'd); *status receives its return value. */
char *cu_dump(void *fn, const char *stage, int *status);
/* The codegen part of fn's kernels dump (malloc'd): from "; code generation:". */
char *cu_codegen_section(void *fn, const char *what);
/* Whether such a section says something runs in the interpreter: "interpreted:"
 * with a reason, or a node run "by its runtime kernel". */
bool cu_says_interpreted(const char *sec);
/* Occurrences of needle in s. */
int cu_count_of(const char *s, const char *needle);

/* Expects fn's calls, compiles, guard misses and eager fallbacks. */
#define EXPECT_STATS(fn, calls_, compiles_, misses_, fallbacks_)                                 \
    do {                                                                                         \
        em_stats st_ = cu_stats_of(fn);                                                          \
        cr_expect_eq(st_.calls, (uint64_t)(calls_), "calls %llu, want %d",                       \
                     (unsigned long long)st_.calls, (int)(calls_));                              \
        cr_expect_eq(st_.compiles, (uint64_t)(compiles_), "compiles %llu, want %d",              \
                     (unsigned long long)st_.compiles, (int)(compiles_));                        \
        cr_expect_eq(st_.guard_misses, (uint64_t)(misses_), "guard misses %llu, want %d",        \
                     (unsigned long long)st_.guard_misses, (int)(misses_));                      \
        cr_expect_eq(st_.eager_fallbacks, (uint64_t)(fallbacks_), "eager fallbacks %llu, want %d", \
                     (unsigned long long)st_.eager_fallbacks, (int)(fallbacks_));                \
    } while (0)

#endif
