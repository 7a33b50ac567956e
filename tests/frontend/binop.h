/*
 * binop.h — the eager binary elementwise ops as test cases, shared by
 * test_elementwise_binary.c (shapes and layouts) and
 * test_elementwise_binary_values.c (dtypes, special values, the ISA loops):
 * one row per op with its reference in double and the ranges its random inputs
 * come from, the exact integer references, and the checker that runs an op on
 * two tensors and compares every element of the result with the reference.
 */
#ifndef EMBER_TESTS_BINOP_H
#define EMBER_TESTS_BINOP_H

#include <stdbool.h>

#include "ember.h"
#include "runtime.h" /* the rt_binary ids, for the per-ISA loops */

typedef struct binop_case {
    const char *name;
    em_tensor *(*fn)(em_tensor *, em_tensor *);
    rt_binary kernel;
    double (*ref)(double, double);
    bool cmp;                  /* result is bool */
    double alo, ahi, blo, bhi; /* float inputs: a in [alo, ahi), b in [blo, bhi) */
    bool b_nonzero;            /* b gets a random sign and stays away from 0 */
    bool ties;                 /* floats on a grid of 0.25, so equal pairs occur */
} binop_case;

#define BINOP_COUNT 13
/* add sub mul div pow maximum minimum, then the comparisons eq ne lt le gt ge. */
extern const binop_case binop_cases[BINOP_COUNT];

/* The references of maximum and minimum: NaN from either side wins. */
double binop_max(double a, double b);
double binop_min(double a, double b);
/* Integer pow as runtime/ew.c defines it: exact (wrapping) for e >= 0; for e < 0,
 * 1 for base 1, +-1 for base -1 by parity, else 0 (the truncated 1/b^-e). */
int64_t binop_ipow(int64_t b, int64_t e, int bits);
/* The integer result of op k on (a, b), wrapped to `bits` (32 or 64). */
int64_t binop_int_ref(rt_binary k, int64_t a, int64_t b, int bits);

/* One random input for side (0: a, 1: b) of c in dtype dt, from the binary
 * tests' own random sequence; and n of them (malloc'd). */
double binop_random_input(const binop_case *c, int side, em_dtype dt);
double *binop_random_inputs(const binop_case *c, int side, em_dtype dt, int64_t n);

/* Runs c on (a, b) with logical values av, bv; checks dtype, shape and values. */
void binop_check(const binop_case *c, em_tensor *a, const double *av, em_tensor *b,
                 const double *bv, const char *what);
/* Random dense a (da, shape sa) and b (db, shape sb); checks the ops whose bit is
 * set in `which` on them. */
void binop_check_ops(unsigned which, em_dtype da, int na, const int64_t *sa, em_dtype db, int nb,
                     const int64_t *sb, const char *what);

#define ALL_OPS ((1u << BINOP_COUNT) - 1)
#define check_all_ops(...) binop_check_ops(ALL_OPS, __VA_ARGS__)
/* add, div, pow, maximum, ge: one of each kind of loop, for the large iterator tests. */
#define SOME_OPS (1u << 0 | 1u << 3 | 1u << 4 | 1u << 5 | 1u << 12)

/* A shape as the checkers take it: its ndim, then its dims. */
#define SH(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define SCALAR 0, NULL

#endif
