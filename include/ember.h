/*
 * ember.h — the one public header of ember, a C11 tensor library whose eager
 * programs a JIT compiler makes fast.
 *
 * A worked example: a two-layer MLP written as an ordinary C function.
 *
 *     #include <ember.h>
 *
 *     static em_tensor *w1, *b1, *w2, *b2;            // weights: globals are fine
 *
 *     em_tensor *mlp(em_tensor *x) {                  // x: [batch, 1024]
 *         em_tensor *h = em_gelu(em_linear(x, w1, b1));
 *         return em_linear(h, w2, b2);
 *     }
 *
 *     int main(void) {
 *         w1 = em_randn(2, (int64_t[]){4096, 1024}, 1);
 *         b1 = em_zeros(EM_F32, 1, (int64_t[]){4096});
 *         w2 = em_randn(2, (int64_t[]){1024, 4096}, 2);
 *         b2 = em_zeros(EM_F32, 1, (int64_t[]){1024});
 *         em_tensor *x = em_rand(2, (int64_t[]){64, 1024}, 3);
 *
 *         em_scope_begin();                   // intermediates die at scope end
 *         em_tensor *y = em_keep(mlp(x));     // ...except y, which moves out
 *         em_scope_end();
 *
 *         if (!y) { fprintf(stderr, "%s\n", em_last_error()); return 1; }
 *         static float out[64 * 1024];
 *         em_read(y, out, sizeof out);        // contiguous copy out
 *         em_release(y);                      // no scope open: y is ours
 *         em_release(x); em_release(w1); em_release(b1); em_release(w2); em_release(b2);
 *     }
 *
 * Conventions (the contract; see DESIGN.md):
 *  - Every function that returns a tensor returns a new reference. With a scope
 *    open (em_scope_begin) the innermost scope owns it and releases it at
 *    em_scope_end, unless it was passed to em_keep; with no scope open the caller
 *    owns it and calls em_release.
 *  - A failing call returns NULL (or a non-zero status, or NAN for em_item) and
 *    sets a thread-local message readable with em_last_error(). Nothing aborts,
 *    no input is modified, and NULL inputs are rejected the same way, so a chain
 *    of calls can be checked once at its end.
 *  - Elementwise ops broadcast like numpy. Mixed dtypes promote in the order
 *    bool < i32 < i64 < f32 < f64; float math on integers computes in f32.
 *  - Axes may be negative (counted from the end).
 *  - Shape ops return views sharing storage where they can.
 */
#ifndef EMBER_H
#define EMBER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EM_VERSION_MAJOR 0
#define EM_VERSION_MINOR 1
#define EM_VERSION_PATCH 0
#define EM_VERSION_STRING "0.1.0"

#define EM_MAX_DIMS 8 /* the largest ndim a tensor may have */

typedef struct em_tensor em_tensor; /* opaque, refcounted */

typedef enum em_dtype {
    EM_F32,  /* float */
    EM_F64,  /* double */
    EM_I32,  /* int32_t */
    EM_I64,  /* int64_t */
    EM_BOOL, /* uint8_t holding 0 or 1 */
} em_dtype;

/* ---- errors and control --------------------------------------------------- */
const char *em_last_error(void);     /* last failure on this thread; "" if none (an op
                                        that succeeds clears it) */
void em_clear_error(void);           /* forget it */
int em_set_threads(int n);           /* n >= 1; 0 on success */
int em_get_threads(void);            /* threads kernels may use */
const char *em_dtype_name(em_dtype dtype); /* "f32", ...; NULL if not a dtype */
size_t em_dtype_size(em_dtype dtype);      /* bytes per element; 0 if not a dtype */
const char *em_version(void);              /* EM_VERSION_STRING of the library */

/* ---- creation --------------------------------------------------------------- */
em_tensor *em_from_data(em_dtype dtype, int ndim, const int64_t *shape, const void *data);
em_tensor *em_zeros(em_dtype dtype, int ndim, const int64_t *shape);
em_tensor *em_full(em_dtype dtype, int ndim, const int64_t *shape, double v);
em_tensor *em_scalar(em_dtype dtype, double v);
em_tensor *em_arange(em_dtype dtype, double start, double end, double step);
em_tensor *em_rand(int ndim, const int64_t *shape, uint64_t seed);  /* U[0,1) f32 */
em_tensor *em_randn(int ndim, const int64_t *shape, uint64_t seed); /* N(0,1) f32 */

/* ---- inspection --------------------------------------------------------------- */
int em_ndim(const em_tensor *t);                /* -1 on NULL */
const int64_t *em_shape(const em_tensor *t);    /* ndim entries; NULL on NULL */
const int64_t *em_strides(const em_tensor *t);  /* in elements; NULL on NULL */
int64_t em_dim(const em_tensor *t, int axis);   /* -1 on error */
int64_t em_numel(const em_tensor *t);           /* -1 on NULL */
em_dtype em_type(const em_tensor *t);           /* EM_F32 on NULL, with an error */
int em_is_contiguous(const em_tensor *t);       /* 1 if row-major dense */
int em_read(const em_tensor *t, void *dst, size_t nbytes); /* 0 on success */
double em_item(const em_tensor *t);             /* one-element tensor; NAN on error */

/* ---- lifetime ------------------------------------------------------------------ */
em_tensor *em_retain(em_tensor *t); /* returns t */
void em_release(em_tensor *t);      /* NULL is a no-op */
void em_scope_begin(void);
void em_scope_end(void);            /* releases what the scope owns */
em_tensor *em_keep(em_tensor *t);   /* move t to the enclosing scope; returns t */

/* ---- elementwise (numpy broadcasting) ----------------------------------------- */
em_tensor *em_add(em_tensor *a, em_tensor *b);
em_tensor *em_sub(em_tensor *a, em_tensor *b);
em_tensor *em_mul(em_tensor *a, em_tensor *b);
em_tensor *em_div(em_tensor *a, em_tensor *b); /* true division: ints give f32 */
em_tensor *em_pow(em_tensor *a, em_tensor *b);
em_tensor *em_maximum(em_tensor *a, em_tensor *b);
em_tensor *em_minimum(em_tensor *a, em_tensor *b);
em_tensor *em_eq(em_tensor *a, em_tensor *b); /* comparisons give EM_BOOL */
em_tensor *em_ne(em_tensor *a, em_tensor *b);
em_tensor *em_lt(em_tensor *a, em_tensor *b);
em_tensor *em_le(em_tensor *a, em_tensor *b);
em_tensor *em_gt(em_tensor *a, em_tensor *b);
em_tensor *em_ge(em_tensor *a, em_tensor *b);
em_tensor *em_where(em_tensor *cond, em_tensor *a, em_tensor *b); /* cond != 0 ? a : b */

em_tensor *em_neg(em_tensor *t);
em_tensor *em_abs(em_tensor *t);
em_tensor *em_exp(em_tensor *t);
em_tensor *em_log(em_tensor *t);
em_tensor *em_sqrt(em_tensor *t);
em_tensor *em_rsqrt(em_tensor *t);
em_tensor *em_reciprocal(em_tensor *t);
em_tensor *em_sin(em_tensor *t);
em_tensor *em_cos(em_tensor *t);
em_tensor *em_tanh(em_tensor *t);
em_tensor *em_erf(em_tensor *t);
em_tensor *em_sigmoid(em_tensor *t);
em_tensor *em_relu(em_tensor *t);
em_tensor *em_gelu(em_tensor *t);      /* x/2 (1 + erf(x/sqrt 2)) */
em_tensor *em_gelu_tanh(em_tensor *t); /* the tanh approximation */
em_tensor *em_silu(em_tensor *t);      /* x sigmoid(x) */
em_tensor *em_cast(em_tensor *t, em_dtype dtype);

/* ---- reductions over one axis ---------------------------------------------------- */
em_tensor *em_sum(em_tensor *t, int axis, int keepdim);  /* ints and bool sum to i64 */
em_tensor *em_mean(em_tensor *t, int axis, int keepdim); /* ints give f32 */
em_tensor *em_max(em_tensor *t, int axis, int keepdim);
em_tensor *em_min(em_tensor *t, int axis, int keepdim);
em_tensor *em_argmax(em_tensor *t, int axis, int keepdim); /* EM_I64, first max */

/* ---- neural-network ops (f32 and f64) --------------------------------------------- */
em_tensor *em_softmax(em_tensor *t, int axis);
em_tensor *em_log_softmax(em_tensor *t, int axis);
em_tensor *em_layer_norm(em_tensor *x, em_tensor *w, em_tensor *b, double eps); /* last axis */
em_tensor *em_rms_norm(em_tensor *x, em_tensor *w, double eps);                  /* last axis */
em_tensor *em_matmul(em_tensor *a, em_tensor *b); /* torch.matmul semantics */
em_tensor *em_linear(em_tensor *x, em_tensor *w, em_tensor *b); /* x w^T + b; w [out,in] */
em_tensor *em_embedding(em_tensor *table, em_tensor *idx);      /* rows of table */

/* ---- shape (views where possible) --------------------------------------------------- */
em_tensor *em_reshape(em_tensor *t, int ndim, const int64_t *shape); /* one -1 allowed */
em_tensor *em_permute(em_tensor *t, const int *perm);
em_tensor *em_transpose(em_tensor *t, int a, int b);
em_tensor *em_slice(em_tensor *t, int axis, int64_t start, int64_t end, int64_t step);
em_tensor *em_concat(em_tensor *const *ts, int n, int axis);
em_tensor *em_expand(em_tensor *t, int ndim, const int64_t *shape); /* -1 keeps a dim */
em_tensor *em_unsqueeze(em_tensor *t, int axis);
em_tensor *em_squeeze(em_tensor *t, int axis); /* the axis must have size 1 */
em_tensor *em_contiguous(em_tensor *t);        /* t itself (retained) when already dense */

/* ---- compilation ---------------------------------------------------------------------- */
/* em_compile wraps a C function over tensors: the result has the same C type
 * (a libffi closure) and computes the same results. Its first call with given
 * input shapes, dtypes, strides and scalar values traces the function into a
 * graph (by running it once on proxy tensors); later calls whose guards match
 * run the graph without calling the function again. `signature` spells the C
 * type: "tensor(tensor, tensor, int, float)", "void(tensor, tensor *, tensor *)"
 * (out-parameters for several results); scalar types int, int64_t, float, double.
 *
 *     em_tensor *model(em_tensor *x, em_tensor *w);
 *     __typeof__(&model) fast = EM_COMPILE(model, "tensor(tensor, tensor)");
 *     em_tensor *y = fast(x, w);              // same contract as model(x, w)
 *     em_compiled_free((void *)fast);
 *
 * Reading a traced tensor's data inside the function (em_item, em_read) is a
 * graph break: that call runs eagerly (logged under EMBER_LOG=fallbacks), or
 * fails with fullgraph. Tensors the function reaches without receiving them
 * (weights in globals) are captured by reference when traced. */
typedef struct em_options {
    int fullgraph;          /* a graph break is an error, not an eager fallback */
    int max_recompiles;     /* graphs kept per function before it runs eagerly; 0: 8 */
    int threads;            /* > 0: em_set_threads(threads) when compiling */
    const char *dump_dir;   /* write each stage of each graph here; NULL: $EMBER_DUMP_DIR */
    const char *name;       /* for logs and dump files; NULL: the function's symbol */
} em_options;

typedef struct em_stats {
    uint64_t calls;           /* calls of the compiled function */
    uint64_t compiles;        /* traces that produced a graph */
    uint64_t guard_misses;    /* calls whose inputs matched no cached graph */
    uint64_t eager_fallbacks; /* calls that ran the original function */
    int kernels;              /* kernels in the newest graph */
    double compile_ms;        /* total time spent tracing and compiling */
    size_t arena_bytes;       /* intermediate memory of the newest graph */
    size_t packed_bytes;      /* constants (weights) kept in a kernel's layout by all its
                                 graphs, packed by their second calls: AMX GEMMs keep each
                                 f32 weight as three bf16 pieces, 6 bytes; the FMA kernel
                                 keeps the panels it packs, 4 bytes (0 with
                                 EMBER_PACK_CONSTANTS=0, which packs them every call) */
} em_stats;

void *em_compile(void *fn, const char *signature, const em_options *opts);
#define EM_COMPILE(fn, sig) ((__typeof__(&(fn)))em_compile((void *)&(fn), (sig), NULL))
void em_compiled_free(void *compiled); /* NULL is a no-op */
int em_compiled_stats(void *compiled, em_stats *out);
/* Writes one stage of the newest graph: "graph" (as captured), "opt", "kernels",
 * "memplan", "llvm", "asm", "dot", "profile" (time per step over the calls so
 * far, when compiled with EMBER_PROFILE=1), "compile" (where the compile's time
 * went: trace, passes, schedule, key, module, and whether the code was
 * compiled, loaded from the object cache or shared). A stage not produced yet
 * says so in one line. */
int em_dump(void *compiled, const char *stage, FILE *out);

/* ---- memory accounting ------------------------------------------------------------- */
typedef struct em_memory_stats {
    size_t live_bytes;  /* tensor storage allocated now */
    size_t peak_bytes;  /* high-water mark since start or the last reset */
    uint64_t allocations; /* storage allocations so far */
} em_memory_stats;
void em_memory_stats_get(em_memory_stats *out);
void em_memory_reset_peak(void); /* peak := live */
/* Freed storage blocks of 128 KiB and more are kept for reuse (up to
 * EMBER_ALLOC_CACHE_MB, default 256; 0 turns that off), so an eager program
 * that frees and reallocates its large intermediates does not fault their
 * pages in on every call; so are up to eight blocks of 64 KiB or less per
 * thread, for the thread that freed them (a thread's go when it exits). This
 * gives back the large blocks and the calling thread's small ones; it returns
 * the bytes released. live_bytes and peak_bytes never count kept blocks. */
size_t em_memory_trim(void);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */
