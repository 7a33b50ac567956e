/*
 * gen.h — the differential fuzzer of the compiled path: random programs of
 * public ops, run once eagerly and once through em_compile, compared.
 *
 * A program (fz_prog) is a short list of nodes in SSA order: leaves (tensor
 * arguments of the compiled function, or weights it reaches through a global,
 * each with a layout: dense, transposed, a stepped slice of a bigger tensor, or
 * expanded, or the same tensor as an earlier argument), scalar constants, and ops whose inputs are earlier nodes. Because
 * it is plain data it can be replayed (fz_replay runs it through em_* calls),
 * shrunk (fz_shrink) and printed as a C function (fz_print).
 *
 * fz_check runs a program as a user would: the eager replay is the reference;
 * a fixed C "model" function of the right arity replays the current program
 * (a global) and is wrapped with em_compile, called three times (trace, cache
 * hit, new argument values), and every output is compared: same dtype and shape, values
 * within rtol 1e-4 / atol 1e-5 (NaN equals NaN, infinities equal
 * themselves; the atol grows with the output's largest magnitude, see
 * fz_compare). Ops whose eager meaning is ill conditioned are used only in a
 * guarded form that the program keeps as one node (so shrinking cannot remove
 * the guard): exp(tanh x), x / (|y| + 0.5), sqrt(|x| + 0.01), log(|x| + 1),
 * norms with eps >= 1e-3.
 *
 * Everything is prefixed fz_. Nothing here asserts: results are statuses, so
 * the same code serves the Criterion tests and the ember-fuzz driver.
 */
#ifndef EMBER_TESTS_FUZZ_GEN_H
#define EMBER_TESTS_FUZZ_GEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ember.h"

enum { FZ_MAX_NODES = 80, FZ_MAX_ARGS = 4, FZ_MAX_OUTS = 3, FZ_MAX_IN = 3 };

typedef enum fz_op {
    FZ_ARG,   /* tensor argument number `leaf` of the compiled function */
    FZ_PARAM, /* a weight the model reaches through a global (captured by reference) */
    FZ_CONST, /* em_scalar(EM_F32, v) */
    FZ_ADD, FZ_SUB, FZ_MUL, FZ_DIV, FZ_MAXIMUM, FZ_MINIMUM,
    FZ_EXP, FZ_TANH, FZ_NEG, FZ_ABS, FZ_RELU, FZ_SIGMOID, FZ_GELU, FZ_GELU_TANH, FZ_SILU,
    FZ_SQRT, FZ_LOG,
    FZ_LT, FZ_LE, FZ_GT, FZ_GE, FZ_WHERE,
    FZ_SUM, FZ_MEAN, FZ_MAX, FZ_MIN,
    FZ_SOFTMAX, FZ_LOG_SOFTMAX, FZ_LAYER_NORM, FZ_RMS_NORM,
    FZ_MATMUL, FZ_LINEAR,
    FZ_RESHAPE, FZ_PERMUTE, FZ_TRANSPOSE, FZ_SLICE, FZ_EXPAND, FZ_UNSQUEEZE, FZ_SQUEEZE,
    FZ_CONTIGUOUS, FZ_CONCAT, FZ_CAST,
    FZ_OP_COUNT
} fz_op;

/* How a leaf's storage is laid out (its logical shape is the node's dims). */
typedef enum fz_layout {
    FZ_DENSE,      /* row-major */
    FZ_TRANSPOSED, /* em_transpose of a dense tensor with dims la and lb swapped */
    FZ_SLICED,     /* em_slice of a bigger dense tensor along la, step lb, from offset lc */
    FZ_EXPANDED,   /* em_expand of a dense tensor holding 1 at dim la (stride 0) */
} fz_layout;

typedef struct fz_node {
    fz_op op;
    int nin;                 /* inputs used (optional ones count, as -1) */
    int in[FZ_MAX_IN];       /* earlier node indices; -1: NULL (a missing weight or bias) */
    int axis, axis2;         /* reductions, softmax, slice, concat, (un)squeeze; transpose's pair */
    int keepdim;             /* reductions */
    int ndim;                /* entries of dims: reshape/expand shape, permute order, leaf shape */
    int64_t dims[EM_MAX_DIMS];
    int64_t start, end, step; /* slice */
    double v;                /* const value; norms' eps */
    /* leaves only */
    int leaf;                /* argument number (FZ_ARG) or weight number (FZ_PARAM) */
    em_dtype dtype;          /* EM_F32 or EM_I32 */
    fz_layout layout;
    int la, lb, lc;          /* layout parameters */
    uint64_t seed;           /* values: uniform in [-1, 1) (i32: integers in [-4, 4]) */
    int same;                /* FZ_ARG: 1 + the node of an earlier argument passed again (aliasing) */
    /* the type the last eager run computed (fz_types) */
    em_dtype t_dtype;
    int t_ndim;
    int64_t t_shape[EM_MAX_DIMS];
} fz_node;

typedef struct fz_prog {
    uint64_t seed;        /* what fz_generate made it from */
    int n;                /* nodes */
    fz_node nodes[FZ_MAX_NODES];
    int nargs, nparams;   /* leaves of each kind, numbered 0.. in node order */
    int nout;
    int outs[FZ_MAX_OUTS]; /* distinct node indices, none of them a leaf or constant */
} fz_prog;

typedef enum fz_status {
    FZ_OK,
    FZ_INVALID,       /* the eager run failed: not a program (shrinking made it wrong) */
    FZ_MISMATCH,      /* a compiled output differs from the eager one */
    FZ_COMPILED_FAIL, /* em_compile or the compiled call failed */
    FZ_FALLBACK,      /* the compiled function ran eagerly instead */
} fz_status;

const char *fz_status_name(fz_status s);

/* Values of a leaf: f32 uniform in [-1, 1) from em_rand(seed), or (ints) those
 * times 4.5 cast to i32. Made with em_* calls, as fz_print writes them. */
em_tensor *fz_leaf(int nd, const int64_t *shape, uint64_t seed, int ints);
/* The leaf node n describes, with its layout. */
em_tensor *fz_make_leaf(const fz_node *n);
/* All of p's leaves into args[leaf] and params[leaf] (params may be NULL: then
 * arguments only), their seeds offset by salt; call with no scope open: the
 * caller releases them. 0, or -1 when one could not be made. */
int fz_make_leaves(const fz_prog *p, em_tensor **args, em_tensor **params, uint64_t salt);

/* Output k (for messages) of a compiled call against the eager one: same dtype
 * and shape, values within rtol 1e-4 / atol 1e-5 for floats, the atol grown by
 * 1e-5 of the output's largest finite magnitude (sums that cancel round
 * differently in differently blocked loops), NaN equal to NaN, an infinity
 * only to itself; integers and bools exact. 0 when they agree, else
 * -1 with the first difference in why. */
int fz_compare(const em_tensor *got, const em_tensor *want, int k, char *why, size_t cap);
/* The same with each element's tolerance widened by 8 times how far eager's
 * own result moves when every matmul, linear, sum and mean result gets the
 * noise of another summation order (jittered: fz_replay under fz_gemm_noise;
 * fz_check passes the farthest of several sign patterns at each element). Where a
 * program amplifies that noise (softmax of large logits after two GEMMs), a
 * compiled GEMM that sums in another order than OpenBLAS cannot be held to
 * the plain tolerance; elsewhere the widening is the GEMM's rounding. */
int fz_compare_jittered(const em_tensor *got, const em_tensor *want, const em_tensor *jittered, int k, char *why,
                        size_t cap);

/* The random program of seed (deterministic). */
void fz_generate(fz_prog *p, uint64_t seed);

/* Eagerly computes every node's type into the nodes (t_*). 0, or -1 when an op
 * fails (the program is invalid). */
int fz_types(fz_prog *p);

/* Runs p with the given leaves (args[i] for argument i, params[i] for weight
 * i): opens a scope, makes every node with em_* calls and keeps the outputs,
 * which the caller owns (or the enclosing scope). 0, or -1 with outs NULL. */
/* When > 0, fz_replay adds to every matmul, linear, sum and mean result the
 * noise of another summation order, this many times its expected size (fz_check's
 * estimate of how sensitive a program is; 0 otherwise). */
extern double fz_gemm_noise;
/* Which signs that noise takes (fz_check tries several patterns). */
extern unsigned fz_noise_pattern;
int fz_replay(const fz_prog *p, em_tensor *const *args, em_tensor *const *params,
              em_tensor **outs);

/* Runs p eagerly and compiled (em_set_threads(threads) first when threads > 0)
 * and compares; on a failure `why` (cap bytes) says what differed. */
fz_status fz_check(const fz_prog *p, int threads, char *why, size_t cap);

/* Shrinks p, which fz_check fails with status s, to a smaller program failing
 * with the same status. Returns the number of successful reductions. */
int fz_shrink(fz_prog *p, fz_status s, int threads);

/* Prints p as a C model function with em_* calls and the code making its
 * leaves; `note` goes in the opening comment. */
void fz_print(const fz_prog *p, const char *note, FILE *out);

/* Nodes of p that are ops (not leaves or constants). */
int fz_ops(const fz_prog *p);

/* Runs programs seed .. seed+n-1: each failure is shrunk and printed to err
 * (NULL: silent). Returns the number of failing programs; *ops gets the ops
 * run in all (may be NULL). */
int fz_run_batch(uint64_t seed, int n, int threads, FILE *err, long *ops);

#endif
