/*
 * guard.c — how much a compiled call costs before any kernel runs.
 *
 * Measures, in one process: (1) the guard check of a cache hit for five tensor
 * arguments (fe_guard_match, the code the hit path runs), (2) a whole compiled
 * call of a function whose graph does nothing (returns its first argument), and
 * (3) the same function called directly. Prints the best of several rounds of
 * a million calls each, in nanoseconds per call. Run with `make bench-guard`.
 */
#define _POSIX_C_SOURCE 199309L
#include "frontend.h"

#include <stdio.h>
#include <time.h>

static em_tensor *first_of_five(em_tensor *a, em_tensor *b, em_tensor *c, em_tensor *d,
                                em_tensor *e) {
    (void)b, (void)c, (void)d, (void)e;
    return em_retain(a);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* What one timed iteration does. */
typedef struct bench {
    fe_sig sig;
    void *args[5];
    em_tensor *t[5];
    int64_t key[FE_KEY_MAX];
    int klen;
    __typeof__(&first_of_five) f;
    int hits;
} bench;

static void guard_once(bench *b) { b->hits += fe_guard_match(&b->sig, b->args, b->key, b->klen); }
static void compiled_once(bench *b) { em_release(b->f(b->t[0], b->t[1], b->t[2], b->t[3], b->t[4])); }
static void direct_once(bench *b) { em_release(first_of_five(b->t[0], b->t[1], b->t[2], b->t[3], b->t[4])); }

/* Best of 7 rounds of n calls, in ns per call. */
static double best_ns(int n, void (*once)(bench *), bench *b) {
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        double t0 = now_ns();
        for (int i = 0; i < n; i++) once(b);
        double dt = (now_ns() - t0) / n;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(void) {
    static bench b;
    for (int i = 0; i < 5; i++) {
        b.t[i] = em_randn(2, (int64_t[]){64, 1024}, (uint64_t)i);
        b.args[i] = &b.t[i];
    }
    fe_sig_parse("tensor(tensor, tensor, tensor, tensor, tensor)", &b.sig);
    b.klen = fe_guard_key(&b.sig, b.args, b.key);
    double guard = best_ns(1000000, guard_once, &b);

    b.f = (__typeof__(&first_of_five))em_compile(
        (void *)first_of_five, "tensor(tensor, tensor, tensor, tensor, tensor)", NULL);
    if (!b.f) {
        fprintf(stderr, "guard: %s\n", em_last_error());
        return 1;
    }
    compiled_once(&b);
    double call = best_ns(200000, compiled_once, &b);
    double direct = best_ns(200000, direct_once, &b);
    printf("guard check, cache hit, 5 tensor args: %6.1f ns\n", guard);
    printf("compiled call, trivial graph:          %6.1f ns\n", call);
    printf("direct call of the same function:      %6.1f ns\n", direct);
    em_compiled_free((void *)b.f);
    for (int i = 0; i < 5; i++) em_release(b.t[i]);
    return b.hits > 0 ? 0 : 1;
}
