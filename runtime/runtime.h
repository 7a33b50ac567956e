/*
 * runtime.h — the whole interface of ember's runtime layer.
 *
 * The runtime owns what exists at run time whether or not anything is compiled:
 * tensor storage and views, refcounts and scopes, the allocator and its
 * accounting, the error slot, the thread pool, and the eager kernels. Kernels are
 * plain functions over tensors whose output the caller has already allocated
 * with the right dtype and shape; they check nothing about shapes (the op layer
 * above did) and know nothing of ops, graphs or tracing.
 *
 * Conventions:
 *  - Strides and offsets count elements, not bytes.
 *  - rt_* kernels write `out` only; inputs are never modified. `out` is always a
 *    fresh contiguous tensor that aliases no input.
 *  - Functions that can fail return NULL or -1 after rt_error() set the message.
 */
#ifndef EMBER_RUNTIME_H
#define EMBER_RUNTIME_H

#include "ember.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EM_NDTYPES 5   /* EM_F32 .. EM_BOOL */
#define RT_ALIGN 64    /* every storage allocation is aligned to this */

/* EM_ASSERT: for bugs only (an invariant of ember itself); aborts with file:line. */
#define EM_ASSERT(c) ((c) ? (void)0 : rt_assert_fail(#c, __FILE__, __LINE__))
_Noreturn void rt_assert_fail(const char *what, const char *file, int line);

/* ---- errors (error.c) -------------------------------------------------------- */
/* Sets this thread's message (printf-style) and returns -1. The one place errors
 * are recorded; every other layer calls this. */
int rt_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* mkdir -p: creates dir and its missing parents (0777 before umask). 0, or -1
 * with errno set (no ember error: callers word their own message). */
int rt_mkdirs(const char *dir);
int rt_error_v(const char *fmt, va_list ap);
/* "[2,3]" into buf (always NUL-terminated); returns buf. */
char *rt_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* ---- allocation (alloc.c) ----------------------------------------------------- */
/* 64-byte aligned; counted in em_memory_stats. NULL (with an error) on failure
 * or on an injected failure. */
void *rt_alloc(size_t nbytes);
void rt_free(void *p, size_t nbytes);
/* Bytes of freed large blocks kept for reuse (em_memory_trim releases them). */
size_t rt_alloc_cached_bytes(void);
/* Test hook: the n-th storage allocation from now fails (n >= 1); 0 disables. */
void rt_alloc_fail_after(long n);
/* Plain malloc/calloc for bookkeeping (not tensor data) that honour the same
 * failure injection, with an error message naming `what` on failure. */
void *rt_malloc(size_t nbytes, const char *what);
/* nbytes of zeroed pages, mapped and faulted in by the kernel in one go
 * (MAP_POPULATE), for a large buffer written once and kept; rt_unmap(p,
 * nbytes) gives them back. NULL on failure (and under rt_alloc_fail_after's
 * injection), without an error: for a cache the caller can do without. */
void *rt_map(size_t nbytes);
void rt_unmap(void *p, size_t nbytes);

/* ---- dtypes (tensor.c) ---------------------------------------------------------- */
size_t rt_dtype_size(em_dtype dt);           /* 0 for a bad dtype */
bool rt_dtype_valid(int dt);
bool rt_dtype_is_float(em_dtype dt);
em_dtype rt_dtype_promote(em_dtype a, em_dtype b); /* bool < i32 < i64 < f32 < f64 */
/* Value stored as dtype (rounded/truncated toward zero, bool = v != 0), into dst. */
void rt_value_store(em_dtype dt, void *dst, double v);
double rt_value_load(em_dtype dt, const void *src);

/* ---- tensors (tensor.c) ---------------------------------------------------------- */
typedef struct rt_storage {
    atomic_long refs;    /* tensors sharing this storage */
    void *data;          /* RT_ALIGN-aligned, or NULL when nbytes == 0 */
    size_t nbytes;       /* allocated size */
} rt_storage;

struct em_tensor {
    atomic_long refs;               /* references held (scopes count as one each) */
    em_dtype dtype;                 /* element type */
    int ndim;                       /* 0 .. EM_MAX_DIMS */
    int64_t shape[EM_MAX_DIMS];     /* sizes, each >= 0 */
    int64_t strides[EM_MAX_DIMS];   /* elements; 0 for broadcast dims */
    int64_t offset;                 /* first element, in elements from storage->data */
    int64_t numel;                  /* product of shape */
    rt_storage *storage;            /* shared by views; NULL only for frontend proxies */
    void *aux;                      /* frontend: the graph node of a tracing proxy, else NULL */
    uint64_t aux_id;                /* frontend: which trace made the proxy */
};

/* New contiguous tensor, contents uninitialized (zero-filled if zero is true).
 * Validates dtype, ndim and shape (errors name `op`). Not registered in a scope. */
em_tensor *rt_tensor_new(const char *op, em_dtype dt, int ndim, const int64_t *shape, bool zero);
/* A view of base's storage (retains it). Not registered in a scope. */
em_tensor *rt_tensor_view(const em_tensor *base, int ndim, const int64_t *shape,
                          const int64_t *strides, int64_t offset);
/* A dense tensor of dtype dt placed byte_offset bytes into s (a planned arena):
 * retains s; byte_offset is a multiple of dt's size and the tensor fits in s. */
em_tensor *rt_tensor_at(rt_storage *s, em_dtype dt, int ndim, const int64_t *shape,
                        size_t byte_offset);
void rt_tensor_contig_strides(int ndim, const int64_t *shape, int64_t *strides);
bool rt_tensor_is_contiguous(const em_tensor *t);
static inline char *rt_tensor_data(const em_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)rt_dtype_size(t->dtype);
}
/* Copies t (any strides) into the contiguous buffer dst of t->numel elements. */
void rt_tensor_copy_to(const em_tensor *t, void *dst);
/* Copies src into dst (same shape; dst may be any strided view; dtypes may differ:
 * converts like rt_cast_apply). 0, or -1 if a temporary could not be allocated. */
int rt_tensor_copy_into(em_tensor *dst, const em_tensor *src);
/* Validate ndim/shape; on error the message names op. Returns numel or -1. */
int64_t rt_shape_check(const char *op, int ndim, const int64_t *shape);
/* Normalise a possibly negative axis against ndim; -1 (with an error naming op)
 * when out of range. */
int rt_axis(const char *op, int axis, int ndim);

/* ---- scopes (scope.c) ------------------------------------------------------------ */
/* Hands a new reference to the innermost open scope (if any) and returns t. Every
 * public function that returns a new tensor passes it through here. NULL-safe. */
em_tensor *rt_scope_adopt(em_tensor *t);
int rt_scope_depth(void);

/* ---- thread pool (pool.c) --------------------------------------------------------- */
/* Runs fn(ctx, begin, end) over [0, n) split into contiguous pieces across the
 * pool. Pieces are whole multiples of `grain` (except the last) and are cut from
 * n and grain alone, never from the thread count, so results that depend on the
 * split are identical for any number of threads. Runs inline when n <= grain or
 * one thread is set. Re-entrant calls from a worker run inline. */
typedef void (*rt_range_fn)(void *ctx, int64_t begin, int64_t end);
void rt_parallel_for(int64_t n, int64_t grain, rt_range_fn fn, void *ctx);
/* The same for a job that another follows at once (a compiled program's steps):
 * the workers and the caller spin (EMBER_SPIN_US, default 1 ms) instead of
 * sleeping between them, saving a wake-up per step. */
void rt_parallel_for_hot(int64_t n, int64_t grain, rt_range_fn fn, void *ctx);
/* Ends the workers' spinning now: OpenBLAS is about to want the cores. */
void rt_pool_quiet(void);
/* Test hook: while on, workers take no piece of any job (as if their cores
 * were slow to wake), so callers run every piece themselves. */
void rt_pool_hold_workers(bool on);
int rt_threads(void);

/* ---- elementwise (ew.c, ew_simd.c, ew_generic.c) ---------------------------------- */
/* Unary math functions. Float dtypes compute in their own precision; callers
 * convert integer inputs to f32 first, except NEG, ABS and RELU, which also run on
 * i32 and i64. */
#define RT_UNARY_LIST(X) \
    X(NEG) X(ABS) X(EXP) X(LOG) X(SQRT) X(RSQRT) X(RECIPROCAL) X(SIN) X(COS) \
    X(TANH) X(ERF) X(SIGMOID) X(RELU) X(GELU) X(GELU_TANH) X(SILU)
typedef enum rt_unary {
#define X(n) RT_UNARY_##n,
    RT_UNARY_LIST(X)
#undef X
    RT_UNARY_COUNT
} rt_unary;

/* Binary math: arithmetic (out dtype = input dtype) and comparisons (out EM_BOOL).
 * Both inputs have the same dtype (callers cast first). DIV and POW on integer
 * dtypes: callers convert to f32 first for DIV; POW runs on ints exactly. */
#define RT_BINARY_LIST(X) \
    X(ADD) X(SUB) X(MUL) X(DIV) X(POW) X(MAX) X(MIN) \
    X(EQ) X(NE) X(LT) X(LE) X(GT) X(GE)
typedef enum rt_binary {
#define X(n) RT_BINARY_##n,
    RT_BINARY_LIST(X)
#undef X
    RT_BINARY_COUNT
} rt_binary;

/* out = f(a): a and out share dtype and shape (a any strides). */
int rt_unary_apply(rt_unary f, const em_tensor *a, em_tensor *out);
/* out = f(a, b) with numpy broadcasting of a and b to out's shape. */
int rt_binary_apply(rt_binary f, const em_tensor *a, const em_tensor *b, em_tensor *out);
/* out = cond ? a : b, broadcasting; a, b and out share a dtype; cond any dtype. */
int rt_where_apply(const em_tensor *cond, const em_tensor *a, const em_tensor *b, em_tensor *out);
/* out = (out dtype) a, same shape; any pair of dtypes. */
int rt_cast_apply(const em_tensor *a, em_tensor *out);
/* out[...] = v. */
void rt_fill(em_tensor *out, double v);

/* ---- the elementwise iterator (iter.c) ---------------------------------------------- */
/* Walks out (contiguous) and up to 3 inputs broadcast to out's shape, calling
 * `loop` on runs where each input advances by 0 or 1 element per step (runs of
 * other strides are gathered into a scratch buffer first), in parallel across
 * the pool for large tensors. `cost` is a rough cycles-per-element hint used to
 * choose the grain. */
#define RT_ITER_MAX_IN 3
typedef void (*rt_loop_fn)(void *ctx, int64_t n, void *out, const void *const *in,
                           const int64_t *in_stride /* 0 or 1 each */);
void rt_iter_run(em_tensor *out, int nin, const em_tensor *const *in, rt_loop_fn loop,
                 void *ctx, int cost);

/* ---- SIMD dispatch (cpu.c, simd.h, *_simd.c) --------------------------------------- */
/* The f32 inner loops, compiled once per ISA (avx512, avx2, sse2: the last runs on
 * any x86-64) and chosen once from the CPU's features. Each *_simd.c file fills its
 * part of the table through its rt_simd_fill_<part>_<isa> function. */
typedef struct rt_simd {
    const char *isa;  /* "avx512", "avx2", "sse2" */
    int width;        /* floats per vector */
    void (*unary[RT_UNARY_COUNT])(int64_t n, const float *x, float *y);
    /* sa, sb: 0 (broadcast scalar) or 1 (contiguous); out contiguous: float for
     * arithmetic, uint8_t (EM_BOOL, 0 or 1) for comparisons. */
    void (*binary[RT_BINARY_COUNT])(int64_t n, const float *a, int64_t sa,
                                    const float *b, int64_t sb, void *out);
    /* Saturating f32 -> i32 conversion (NaN -> 0) of a contiguous run (ew_simd.c). */
    void (*cast_f32_i32)(int64_t n, const float *x, int32_t *y);
    /* Row kernels of the NN ops (norm_simd.c): one contiguous row of length n. */
    void (*softmax_row)(int64_t n, const float *x, float *y);
    void (*log_softmax_row)(int64_t n, const float *x, float *y);
    void (*layer_norm_row)(int64_t n, const float *x, const float *w, const float *b,
                           float eps, float *y); /* w, b may be NULL */
    void (*rms_norm_row)(int64_t n, const float *x, const float *w, float eps, float *y);
    /* Reductions of one contiguous row (reduce_simd.c). */
    float (*sum_row)(int64_t n, const float *x);
    float (*max_row)(int64_t n, const float *x); /* NaN if any element is NaN */
    float (*min_row)(int64_t n, const float *x);
    /* Column reductions: acc[j] (op)= x[j] for j < n (reduce_simd.c). */
    void (*sum_col)(int64_t n, const float *x, float *acc);
    void (*max_col)(int64_t n, const float *x, float *acc);
    void (*min_col)(int64_t n, const float *x, float *acc);
    /* A GEMM panel transposed into k-major rows (pack_simd.c):
     * dst[k * vb + l] = src[l * ls + k] for l < lanes, 0 for lanes <= l < vb. */
    void (*pack_panel)(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst);
    /* dst[i * ds + j] = src[i + j * ss] for i < rows, j < cols (pack_simd.c);
     * AVX-512 only, NULL in the other tables. */
    void (*transpose)(int64_t rows, int64_t cols, const float *src, int64_t ss, float *dst, int64_t ds);
} rt_simd;
const rt_simd *rt_simd_get(void);            /* the table for this CPU */
/* CLOCK_MONOTONIC in nanoseconds, and in milliseconds. */
uint64_t rt_now_ns(void);
static inline double rt_now_ms(void) { return (double)rt_now_ns() / 1e6; }
/* rt_simd_get()->pack_panel, for generated code (dst: kn rounded up to 16 rows). */
void rt_pack_panel(int64_t kn, int64_t lanes, int64_t vb, const float *src, int64_t ls, float *dst);
const rt_simd *rt_simd_for(const char *isa); /* a named table the CPU runs, or NULL */

/* ---- f32 products on the AMX tile unit (amx.c) ------------------------------------------ */
/* Whether the AMX kernels may run: AMX-TILE, AMX-BF16 and AVX512-BF16, the
 * tile state granted by the kernel, and EMBER_AMX not 0. Asked once. */
bool rt_amx_usable(void);
/* Bytes of an operand of `rows` rows (or columns) by k, packed (rows and k
 * rounded up to 32, three bf16 pieces). */
int64_t rt_amx_packed_bytes(int64_t rows, int64_t k);
/* The row operand (element (i, j) at src[i * rs + j * ks]), split and packed
 * into tiles of 16 rows by 32 k; dst is 64-byte aligned, rt_amx_packed_bytes. */
void rt_amx_pack_rows(uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs, int64_t ks);
/* The same over the thread pool, by pairs of 16-row groups (a compiled
 * program's step: the workers spin while the caller packs). */
void rt_amx_pack_rows_parallel(uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs, int64_t ks);
/* Rows packed by every thread that needs them (the pieces of a GEMM that run
 * on the unit, codegen/pick.c): each caller claims pairs of 16-row groups
 * until none is left, then waits for those others claimed. Zeroed before the
 * first caller. */
typedef struct rt_amx_rows_share {
    _Atomic int64_t next;             /* the next pair to claim */
    _Atomic int64_t done;             /* pairs packed */
} rt_amx_rows_share;
void rt_amx_pack_rows_shared(rt_amx_rows_share *sh, uint16_t *dst, const float *src, int64_t rows, int64_t k, int64_t rs,
                             int64_t ks);
/* The column operand (column i, k j at src[i * cs + j * ks]) into tiles of 16
 * k pairs by 16 columns. */
void rt_amx_pack_cols(uint16_t *dst, const float *src, int64_t cols, int64_t k, int64_t cs, int64_t ks);
/* out[32][32] = 32 packed rows (a: the first of two row groups) times 32
 * packed columns (b), over k. A thread's first tile call loads the tile
 * configuration and keeps it until rt_amx_release (loading it waits for the
 * unit to drain), so a thread's tile calls end with rt_amx_release. */
void rt_amx_tile(float *out, const uint16_t *a, const uint16_t *b, int64_t k);
/* rt_amx_tile, packing meanwhile part `part` of `parts` (equal shares of its
 * 16 x 32 blocks) of another panel of columns, as rt_amx_pack_cols(ndst, nsrc,
 * ncols, k, cs, ks) would, on the vector units while the tile unit
 * multiplies. nsrc NULL: nothing to pack; then a non-NULL ndst is a panel
 * packed already (a kept constant), whose share of cache lines is prefetched
 * into the L2 instead. */
void rt_amx_tile_next(float *out, const uint16_t *a, const uint16_t *b, int64_t k, uint16_t *ndst, const float *nsrc,
                      int64_t ncols, int64_t cs, int64_t ks, int64_t part, int64_t parts);
/* Gives back this thread's tile state (the end of a generated GEMM's piece). */
void rt_amx_release(void);

#define RT_SIMD_PARTS(X, isa) X(ew, isa) X(norm, isa) X(reduce, isa) X(pack, isa)
#define RT_SIMD_DECL(part, isa) void rt_simd_fill_##part##_##isa(rt_simd *t);
RT_SIMD_PARTS(RT_SIMD_DECL, avx512)
RT_SIMD_PARTS(RT_SIMD_DECL, avx2)
RT_SIMD_PARTS(RT_SIMD_DECL, sse2)
#undef RT_SIMD_DECL

/* ---- reductions (reduce.c) ------------------------------------------------------------ */
typedef enum rt_reduce { RT_REDUCE_SUM, RT_REDUCE_MEAN, RT_REDUCE_MAX, RT_REDUCE_MIN,
                         RT_REDUCE_ARGMAX } rt_reduce;
/* Reduces a along (normalised) axis into out, whose shape is a's without that
 * axis or with it set to 1 (numel matches either way). Dtypes: SUM of ints/bool
 * into i64 out; MEAN in a's float dtype (callers cast ints to f32 first);
 * MAX/MIN keep a's dtype; ARGMAX writes i64 (the first maximum; NaN counts as
 * the maximum). Reducing an axis of length 0: SUM 0, MEAN NaN; MAX, MIN and
 * ARGMAX are rejected by the caller. */
int rt_reduce_apply(rt_reduce r, const em_tensor *a, int axis, em_tensor *out);

/* ---- NN ops over one axis (nn.c, norm_simd.c) ---------------------------------------- */
/* f32 or f64; out same dtype and shape as x. axis normalised. */
int rt_softmax_apply(const em_tensor *x, int axis, bool log, em_tensor *out);
/* Normalise over the last axis; w, b are NULL or 1-D of the last dim. */
int rt_layer_norm_apply(const em_tensor *x, const em_tensor *w, const em_tensor *b,
                        double eps, em_tensor *out);
int rt_rms_norm_apply(const em_tensor *x, const em_tensor *w, double eps, em_tensor *out);

/* ---- contractions and gathers (blas.c, gather.c) --------------------------------------- */
/* torch.matmul of a and b (f32 or f64, same dtype) into out, whose shape the
 * caller computed (1-D operands promoted and squeezed as torch does). */
int rt_matmul_apply(const em_tensor *a, const em_tensor *b, em_tensor *out);
/* out = x w^T (+ bias), x [..., in], w [out, in], bias NULL or [out]. */
int rt_linear_apply(const em_tensor *x, const em_tensor *w, const em_tensor *bias,
                    em_tensor *out);
/* out[i..., :] = table[idx[i...], :]. idx is i32 or i64, values already checked
 * to lie in [0, rows) by rt_embedding_check. */
int rt_embedding_apply(const em_tensor *table, const em_tensor *idx, em_tensor *out);
int rt_embedding_check(const char *op, const em_tensor *idx, int64_t rows);
/* Concatenates n tensors (same dtype as out) along axis into out. */
int rt_concat_apply(em_tensor *const *ts, int n, int axis, em_tensor *out);
/* Sets OpenBLAS's thread count (pool.c calls it when the pool is resized). */
void rt_blas_set_threads(int n);

/* ---- random (random.c) --------------------------------------------------------------- */
/* Fills a contiguous f32 tensor from a counter-based generator: element i depends
 * only on (seed, i), so results do not depend on the thread count. */
void rt_fill_rand(em_tensor *out, uint64_t seed, bool normal);

/* V_EXP(x) (runtime/simd.h): e^x, ember's own, in every kernel that exponentiates (exp,
 * sigmoid, silu, gelu, softmax, log_softmax), eager and generated alike
 * (codegen/emit_ops.c's cg_exp emits the same operations, so the two agree bit
 * for bit). It is Sleef's expf u10 algorithm, within 1 ulp: q = round(x log2 e),
 * s = x - q ln2 in two parts, e^s = 1 + s + s^2 P(s) with Sleef's degree-5 P,
 * times 2^q. Two changes make it about half the operations of a call to
 * Sleef_expf16_u10avx512f, whose body is 28 instructions behind a call that
 * spills every live vector register: x above 100 is clamped to 100 (it
 * overflows to inf; NaN stays NaN) and x below -104 gives 0 by a mask, whose
 * lanes compute e^0 meanwhile (the result would round to 0), replacing Sleef's
 * two compare-and-select fixups; AVX-512 scales by 2^q with one vscalefps
 * (AVX2 multiplies by two exact powers of two, as Sleef does; the same single
 * rounding). The mask matters: clamping -inf (a causal mask's entries) to -104
 * instead made every such lane underflow into a denormal, and each vector of
 * them cost a microcode assist (block's softmax ran 10x slower). The chain
 * workload is bound by vector operations, not latency: this exp made it about
 * 25% faster. */
#define RT_EXP_LO (-104.0f)
#define RT_EXP_HI 100.0f
#define RT_EXP_LOG2E 1.44269502f
#define RT_EXP_LN2_HI (-0.693145752f)
#define RT_EXP_LN2_LO (-1.42860677e-06f)
#define RT_EXP_P ((const float[6]){0.000198527618f, 0.00139304355f, 0.00833336078f, 0.0416664854f, 0.166666672f, 0.5f})

/* tanh (runtime/simd.h's rt_tanh, codegen/emit_ops.c's cg_tanh) is
 * sign(x) E / (E + 2) with E = e^(2|x|) - 1 from V_EXP's own steps: 2|x| is
 * reduced by ln 2 to s, e^s - 1 = s + s^2 P(s) comes before V_EXP adds its 1,
 * and E = 2^q (e^s - 1) + (2^q - 1) by one FMA. There is no cancellation near
 * 0 (E ~ 2x, tanh ~ x) and no branch. |x| is clamped to RT_TANH_HI, past which
 * tanh rounds to 1 and before which E + 2 stays finite. */
#define RT_TANH_HI 10.0f

/* The GELU's erfc fit (runtime/ew_simd.c's v_gelu, codegen/emit_ops.c's cg_gelu):
 * P(t) = sum RT_GELU_P[i] t^(9 - i), the Numerical Recipes erfcc coefficients. */
#define RT_GELU_P                                                                                   \
    ((const float[10]){0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, \
                       0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f})

/* rt_tabfn: GELU, sigmoid and the tanh GELU on AVX-512 without exp or a divide
 * (runtime/ew_simd.c's v_tab_*, codegen/emit_ops.c's cg_tab_*, the same
 * operations). tabfn.c holds each as a function g of a variable v in 32
 * degree-6 polynomial pieces of width 1/k:
 *
 *     s = v k + 1.5 2^23            by one FMA rounded down: 1.5 2^23 + floor(v k)
 *                                   (ulp 1 there), the piece in its low 5 bits
 *     f = s - 1.5 2^23              exact: floor(v k)
 *     r = v k - f                   by one FMA: in [0, 1], one rounding
 *     g = c6[f] r^6 + ... + c0[f]   Horner; each c[f] one vpermt2ps of two registers
 *
 * The GELUs take v = min(|x|, hi) and g = h(v), the lower tail (Phi(-v) for
 * GELU), so that gelu(x) = max(x, 0) - v h(v): for x < 0 that is x h(|x|)
 * with its relative accuracy, for x > hi it rounds to x. The sigmoid takes v =
 * x in [lo, hi) and g = sigmoid itself; x >= hi gives 1. Relative error below
 * 6e-7 over every f32 in range (tests/runtime/test_tabfn.c), as good as the
 * exp forms or better, for a third to a half of their vector operations (the
 * chain workload was bound by its exp, erfc fit and two divides). Lanes below
 * -hi (GELUs) or lo (sigmoid), the far negative tail, take rt_tailfn (GELU)
 * or the exp forms instead, lane by lane, so a result never depends on its
 * neighbours; a vector with no such lane, nearly all of them, branches around
 * them. AVX2 and SSE2 keep the exp forms (the GELU's erfc fit with |x|
 * clamped to hi, and rt_tailfn below -hi as here): a 32-entry lookup costs
 * them more than it saves. */
#define RT_TAB_N 32
#define RT_TAB_DEG 6
#define RT_TAB_MAGIC 0x1.8p23f /* f + 1.5 2^23 has f mod 2^22 in its low mantissa bits */
#define RT_TAB_ROUND_DOWN 9     /* _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC: the FMA of s */
typedef struct rt_tabfn {
    float k;                             /* pieces per unit of v */
    float lo, hi;                        /* v's range: [0, hi] for |x| (GELUs), [lo, hi) for x (sigmoid) */
    float c[RT_TAB_DEG + 1][RT_TAB_N];   /* c[p][floor(v k) mod 32]: the coefficient of r^p */
} rt_tabfn;
extern const rt_tabfn rt_tab_gelu, rt_tab_sigmoid, rt_tab_gelu_tanh;

/* rt_tailfn: the GELU below -rt_tab_gelu.hi (-6.4), on every ISA
 * (runtime/ew_simd.c's v_gelu_tail, codegen/emit_ops.c's cg_gelu_tail, the
 * same operations). With v = -x, gelu(x) = -v Q(v) = -phi(v) R(v): Q the
 * normal upper tail, phi the normal density, R(v) = v Q(v) / phi(v) a
 * degree-4 polynomial of u = 1 / v^2 (tabfn.c; within 7e-8 relative):
 *
 *     v = min(max(-x, hi), end)     every lane clamped, so none makes a subnormal
 *     h = v v,  l = fma(v, v, -h)   v^2 = h + l exactly
 *     R' = R(1 / h) (1 - l/2)       e^(-v^2/2) = e^(-h/2) (1 - l/2)
 *     gelu = (-R' / sqrt(2 pi)) e^(-h/2),  or x 0 where x < -end
 *
 * Past end (13.146) gelu's magnitude is below FLT_MIN: those lanes give -0
 * (x 0, so -inf gives NaN, as in PyTorch). No lane ever computes a subnormal,
 * whose every operation costs a microcode assist on the cores here: the
 * erfc form this replaces made them in its own steps from x = -12 on (and
 * for x above 13 in the lanes it computed beside), and a GELU of N(0, 8^2)
 * inputs took 7x the time of N(0, 1) ones. Splitting v^2 also keeps the
 * relative error near 1e-7 where the erfc form's rounded z^2 gave 3e-5. */
#define RT_TAIL_DEG 4
typedef struct rt_tailfn {
    float end;                 /* the last v whose result is at least FLT_MIN */
    float r[RT_TAIL_DEG + 1];  /* R(u) by Horner, r[0] the coefficient of u^4 */
} rt_tailfn;
extern const rt_tailfn rt_tail_gelu;
#define RT_INV_SQRT_2PI 0.398942280f

#endif /* EMBER_RUNTIME_H */
