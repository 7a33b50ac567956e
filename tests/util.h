/*
 * util.h — the small helpers that many test files need, written once: a
 * seeded random sequence, tensors of any dtype built from and read back as
 * doubles, deterministic random tensors through the public API, the checks
 * that compare tensors, the allocator's counters, and (tu_rt_*) tensors and
 * element access at the runtime layer, for the kernel tests.
 *
 * Everything here is prefixed tu_. Helpers that check something do it with
 * Criterion assertions, so a failure stops the calling test at once; what they
 * allocate with malloc the caller frees. Tensors they return are owned as an
 * op's result is (the innermost open scope, else the caller); tu_rt_* tensors
 * are never registered in a scope and the caller releases them.
 */
#ifndef EMBER_TESTS_UTIL_H
#define EMBER_TESTS_UTIL_H

#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember.h"

/* ---- a seeded random sequence -------------------------------------------------------- */

/* A 64-bit LCG; each file (or test) keeps its own state, so its sequence
 * depends on nothing else. Initialise with {seed}. */
typedef struct tu_rng {
    uint64_t state; /* advanced by every draw */
} tu_rng;

/* Advances rng; a double uniform in [lo, hi) from its top 53 bits. */
double tu_uniform(tu_rng *rng, double lo, double hi);

/* ---- tensors from and to doubles (public API) ------------------------------------------- */

/* Elements of a shape: the product of its nd dims (1 for 0-d). */
int64_t tu_count(int nd, const int64_t *shape);
/* Element i of a dense buffer of dtype dt, as a double. */
double tu_get(em_dtype dt, const void *p, int64_t i);
/* A tensor of dtype dt holding v (values exactly representable in dt). */
em_tensor *tu_tensor_of(em_dtype dt, int nd, const int64_t *shape, const double *v);
/* The bytes of t in row-major order (malloc'd); *nbytes gets their count. */
void *tu_bytes_of(const em_tensor *t, size_t *nbytes);
/* The elements of t in row-major order, as doubles (malloc'd). */
double *tu_values_of(const em_tensor *t);
/* Logical values of view (built over a dense base holding base[]): walks its
 * shape through em_strides from the element offset the test knows. */
double *tu_view_values(const double *base, const em_tensor *view, int64_t offset);

/* ---- deterministic tensors (public API) --------------------------------------------------- */

/* f32 values in [lo, hi), deterministic per seed. */
em_tensor *tu_uniform_tensor(int nd, const int64_t *shape, double lo, double hi, uint64_t seed);
/* em_randn, asserted to succeed. */
em_tensor *tu_randn(int nd, const int64_t *shape, uint64_t seed);
/* Integers lo + (i*37 + 11) % mod, of dtype dt. */
em_tensor *tu_ints(em_dtype dt, int nd, const int64_t *shape, int mod, int lo);
/* t converted to dt; t is released. */
em_tensor *tu_cast(em_tensor *t, em_dtype dt);
/* A transposed (non-contiguous) view of t, dims a and b swapped; t is released. */
em_tensor *tu_transposed(em_tensor *t, int a, int b);

/* ---- comparing ------------------------------------------------------------------------------ */

/* got within atol + rtol |want|; NaN matches only NaN and an infinity only itself. */
bool tu_close_to(double got, double want, double rtol, double atol);
/* The elementwise tolerances for results of dtype dt: f32 1e-5 / 1e-6, f64
 * 1e-12 / 1e-14, integers and bools exact. */
double tu_rtol_of(em_dtype dt);
double tu_atol_of(em_dtype dt);
/* The dtype two operands promote to: bool < i32 < i64 < f32 < f64. */
em_dtype tu_promote(em_dtype a, em_dtype b);
/* Row-major index, into an input of shape (nd, shape) broadcast to no dims, of
 * the output element at index idx. */
int64_t tu_source_index(int no, const int64_t *idx, int nd, const int64_t *shape);
/* Asserts t has nd dims of the given sizes; `what` names the case. */
void tu_expect_shape(const em_tensor *t, int nd, const int64_t *shape, const char *what);
/* got (what a compiled or interpreted call gave) must equal want (what the eager
 * call gave) in dtype, shape, strides and every byte. */
void tu_expect_identical(const em_tensor *got, const em_tensor *want, const char *what);
/* A compiled result against eager's, as the contract states: the same dtype and
 * shape; floats within rtol 1e-4, atol 1e-5 (NaN matches NaN), other dtypes
 * identical. Generated row kernels sum in another order than the runtime's. */
void tu_expect_compiled(const em_tensor *got, const em_tensor *want, const char *what);

/* tu_remove_tree: in tree.h, shared with the ThreadSanitizer program. */
#include "tree.h"

/* stderr redirected into a temporary file between tu_capture_begin and
 * tu_capture_end, which restores it and returns what was written (malloc'd). */
typedef struct tu_capture {
    FILE *tmp;
    int saved;
} tu_capture;
void tu_capture_begin(tu_capture *c);
char *tu_capture_end(tu_capture *c);

/* ---- the allocator's counters -------------------------------------------------------------- */

/* Bytes of tensor storage live now. */
size_t tu_live_bytes(void);
/* Tensor storage allocations made so far. */
uint64_t tu_allocations(void);

/* ---- runtime-layer tensors, for kernel tests (include runtime.h to look inside) ------------ */

/* How tu_rt_random draws a bool. */
typedef enum tu_bools {
    TU_BOOL_HALF,     /* u > 0: true about half the time */
    TU_BOOL_LIKE_INT, /* drawn as an integer; nonzero is true */
} tu_bools;

/* rt_tensor_new, contents uninitialised, asserted to succeed. */
em_tensor *tu_rt_new(em_dtype dt, int nd, const int64_t *shape);
/* A view of base's storage; offset counts elements from base's own offset. */
em_tensor *tu_rt_view(const em_tensor *base, int nd, const int64_t *shape,
                      const int64_t *strides, int64_t offset);
/* A view of t with its dims permuted: dim d of the view is dim perm[d] of t. */
em_tensor *tu_rt_permuted(const em_tensor *t, const int *perm);
/* A view of t with dims a and b swapped. */
em_tensor *tu_rt_swapped(const em_tensor *t, int a, int b);
/* A new tensor of random values, one draw u in [-1, 1) of rng per element:
 * floats u * scale, integers floor(u * int_span), bools as `bools` says. */
em_tensor *tu_rt_random(tu_rng *rng, em_dtype dt, int nd, const int64_t *shape, double scale,
                        double int_span, tu_bools bools);
/* Element ix of t, through its strides, as a double. */
double tu_rt_at(const em_tensor *t, const int64_t *ix);
/* Stores v at element ix of t, through its strides. */
void tu_rt_set(em_tensor *t, const int64_t *ix, double v);
/* Element i of t in memory order (t contiguous), as a double. */
double tu_rt_flat(const em_tensor *t, int64_t i);
/* Index ix of flat element i of a contiguous shape. */
void tu_unflatten(int64_t i, int nd, const int64_t *shape, int64_t *ix);
/* Fails the n-th allocation from 1 up until call(ctx) succeeds; each failure
 * must return -1 with an out-of-memory message naming the public op. */
void tu_fail_every_allocation(const char *op, int (*call)(void *), void *ctx);

#endif
