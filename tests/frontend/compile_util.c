/*
 * compile_util.c — the models and helpers of compile_util.h, shared by the
 * em_compile tests. Models open their own scope and em_keep what they return,
 * so they leak nothing whether or not the caller has a scope open.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "../util.h"
#include "compile_util.h"

/* ---- models ------------------------------------------------------------------------------------ */

em_tensor *g_w, *g_b;

void globals_init(void) {
    g_w = tu_randn(2, SH(16, 8), 101);
    g_b = tu_randn(1, SH(8), 102);
}

void globals_fini(void) {
    em_release(g_w);
    em_release(g_b);
    g_w = g_b = NULL;
}

em_tensor *tiny(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_tanh(em_add(em_matmul(x, g_w), g_b)));
    em_scope_end();
    return y;
}

em_tensor *chain(em_tensor *x) {
    em_scope_begin();
    em_tensor *y = em_keep(em_mul(em_gelu(em_add(x, x)), em_sigmoid(x)));
    em_scope_end();
    return y;
}

em_tensor *by_max(em_tensor *x) {
    em_scope_begin();
    double m = em_item(em_max(em_reshape(x, 1, SH(-1)), 0, 0));
    em_tensor *s = em_scalar(EM_F32, m > 0 ? m : 1.0);
    em_tensor *y = em_keep(em_div(x, s));
    em_scope_end();
    return y;
}

void tiny_expect(void *fast, em_tensor *x, const char *what) {
    em_tensor *want = tiny(x), *got = ((em_tensor * (*)(em_tensor *)) fast)(x);
    tu_expect_compiled(got, want, what);
    em_release(got);
    em_release(want);
}

void chain_expect(void *fast, em_tensor *x, const char *what) {
    em_tensor *want = chain(x), *got = ((em_tensor * (*)(em_tensor *)) fast)(x);
    tu_expect_compiled(got, want, what);
    em_release(got);
    em_release(want);
}

/* ---- inspecting a compiled function ------------------------------------------------------------ */

long cu_refs(const em_tensor *t) { return atomic_load(&t->refs); }

size_t cu_arena(void *fn) { return (size_t)cu_stats_of(fn).arena_bytes; }

em_stats cu_stats_of(void *fn) {
    em_stats st;
    memset(&st, 0xff, sizeof st);
    cr_assert_eq(em_compiled_stats(fn, &st), 0, "%s", em_last_error());
    return st;
}

char *cu_dump(void *fn, const char *stage, int *status) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    *status = em_dump(fn, stage, f);
    fclose(f);
    return text;
}

int cu_count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

char *cu_codegen_section(void *fn, const char *what) {
    int status;
    char *d = cu_dump(fn, "kernels", &status);
    cr_expect_eq(status, 0, "%s: em_dump kernels", what);
    char *sec = strstr(d, "; code generation:");
    cr_assert(sec, "%s: no code generation section:\n%s", what, d);
    char *r = strdup(sec);
    free(d);
    return r;
}

bool cu_says_interpreted(const char *sec) {
    const char *p = strstr(sec, "interpreted: ");
    if (p && p[strlen("interpreted: ")] && p[strlen("interpreted: ")] != '\n') return true;
    return strstr(sec, "by its runtime kernel") != NULL;
}
