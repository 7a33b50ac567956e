/*
 * codegen.h — the whole interface of ember's codegen layer.
 *
 * From a fused, memory-planned program to running machine code:
 *
 *   schedule.c   each kernel as steps: a loop nest, a row nest, a GEMM, or
 *                nodes left to the runtime (with the reason)
 *   lower.c      pointwise and row kernels as loop nests (strides, views)
 *   gemm.c       contractions as GEMM nests (orientation, tile, blocking)
 *   emit.c       LLVM IR for loop nests; emit_ops.c its arithmetic (inline exp, Sleef);
 *                gemm_emit.c the GEMM kernels; program.c the per-graph program
 *   jit.c        one LLVM ORC LLJIT per process and the units that live in it;
 *                cache.c the object cache on disk
 *   exec.c       a compiled call: the arena, then one call of the program
 *
 * The JIT session is the base of it:
 *
 * How a caller compiles code:
 *
 *     LLVMContextRef ctx;
 *     LLVMModuleRef mod;
 *     if (cg_module_begin("graph_7", &ctx, &mod) != 0) return -1;
 *     ... build functions into mod with an LLVMBuilder created in ctx ...
 *     cg_unit *u = cg_unit_create(mod, "graph_7", &(cg_opt){.keep = CG_KEEP_IR});
 *     if (!u) return -1;                        // em_last_error() says why
 *     void (*fn)(float *, int64_t) = (void (*)(float *, int64_t))cg_unit_lookup(u, "g7_run");
 *     ...
 *     cg_unit_destroy(u);                       // its code is gone from the JIT
 *
 * Ownership and threads:
 *  - Every module lives in its own LLVMContext, made by cg_module_begin, and
 *    the context belongs to that module: cg_unit_create consumes both, on
 *    success and on failure alike, and cg_module_discard drops a module that
 *    will not be compiled. Nothing else is ever built in that context. So any
 *    number of threads may build and compile modules at once: contexts are
 *    never shared, and every pass and code-generation run borrows a target
 *    machine of its own from a small pool.
 *  - A unit compiles eagerly: when cg_unit_create returns, its code is linked
 *    and every function and global it defines (external linkage) has an
 *    address. Nothing is compiled later behind the caller's back.
 *  - All units share the JIT's main JITDylib, so the external names of live
 *    units must be unique (give each unit a prefix); defining a name another
 *    live unit defines is an error. After cg_unit_destroy the names are free.
 *  - Generated code may call, by name: the ember runtime functions listed in
 *    CG_RUNTIME_SYMBOLS (defined explicitly in the JIT, so this works when
 *    ember is linked statically into a program that exports nothing to dlsym),
 *    and any symbol of a library loaded in the process (Sleef such as
 *    Sleef_logf16_u10avx512f, libm, OpenBLAS), found through the process's
 *    dynamic library search generator.
 *
 * Errors: functions return NULL or -1 after rt_error() set the message; every
 * LLVM error (LLVMErrorRef, verifier output, target machine emission failure,
 * JIT session errors) is converted in one function of jit.c. An LLVM fatal
 * error (the backend unable to handle IR that passed the verifier: an ember
 * bug) aborts with a message, like EM_ASSERT; LLVM never exit()s the process.
 */
#ifndef EMBER_CODEGEN_H
#define EMBER_CODEGEN_H

#include "passes.h"

#include <llvm-c/Core.h>

/* ---- the JIT session (jit.c) ------------------------------------------------------------- */

/* Creates the process's LLJIT on first call (thread-safe, idempotent): native
 * target and asm printer, the host CPU, the runtime and process symbol
 * generators. 0, or -1 with an error (every later call fails with the same
 * message). Every other cg_ function calls it as needed. */
int cg_jit_init(void);
/* Starts cg_jit_init on a thread of its own, once per process (em_compile
 * calls it, so the LLJIT is being made while the first call traces). */
void cg_jit_prepare(void);

/* The host CPU name (e.g. "icelake-server") and its feature string
 * ("+avx512f,+fma,...") the target machines are built from (an object cache
 * keys on both); "" if LLVM has no target for the host. Neither waits for
 * the LLJIT. */
const char *cg_host_cpu(void);
const char *cg_host_features(void);

/* Address of a symbol as generated code would resolve it: a live unit's
 * definition, an ember runtime function, or a process symbol. NULL with an
 * error when nothing defines it. For tests and diagnostics; compiled code is
 * reached through cg_unit_lookup. */
void *cg_jit_lookup(const char *sym);

/* The ember runtime functions generated code may call by name. */
#define CG_RUNTIME_SYMBOLS(X) \
    X(rt_parallel_for) X(rt_parallel_for_hot) X(rt_threads) X(rt_alloc) X(rt_free) X(rt_dtype_size) X(rt_pack_panel) \
    X(rt_amx_pack_rows_parallel) X(rt_amx_pack_cols) X(rt_amx_tile_next) X(rt_amx_release) X(cg_exec_interpret) X(cg_exec_mark) \
    X(rt_amx_pack_rows_shared) X(cg_exec_pieces) X(cg_piece_pick) X(cg_piece_restart) X(cg_piece_done) \
    X(cg_exec_packed)

/* ---- modules ------------------------------------------------------------------------------ */

/* A fresh LLVMContext and an empty module named `name` in it, with the host's
 * target triple and data layout already set. 0, or -1 with an error. */
int cg_module_begin(const char *name, LLVMContextRef *ctx, LLVMModuleRef *mod);
/* Disposes of a module from cg_module_begin and its context. NULL is a no-op. */
void cg_module_discard(LLVMModuleRef mod);

/* ---- compiled units ----------------------------------------------------------------------- */

/* Optimisation pipelines for cg_opt.pipeline (LLVMRunPasses syntax). */
#define CG_PIPELINE_O2 "default<O2>"
#define CG_PIPELINE_O3 "default<O3>"
/* For code its emitter already vectorised: promote allocas, common
 * subexpressions, hoist loop invariants, combine, tidy the CFG; no vectorizer,
 * unroller or inliner. For a small explicit-vector elementwise kernel it costs
 * ~0.5 ms of passes instead of ~4.5 (and the backend then has far less code to
 * compile), and the kernel runs as fast as after default<O2>. Scalar loops are
 * not vectorised by it. */
#define CG_PIPELINE_LEAN \
    "function(sroa,early-cse<memssa>,loop-mssa(licm),instcombine<no-verify-fixpoint>,simplifycfg)"

enum {
    CG_KEEP_IR = 1,  /* keep the optimised LLVM IR text (the `llvm` dump stage) */
    CG_KEEP_ASM = 2, /* keep the host assembly (the `asm` stage); costs a second codegen run */
    CG_PROFILE = 4,  /* the program times each step (cg_exec_mark; the `profile` stage) */
};

typedef struct cg_opt {
    const char *pipeline; /* NULL: CG_PIPELINE_O2; "": no IR passes at all */
    unsigned keep;        /* CG_KEEP_* flags */
} cg_opt;

/* Where a unit's compile time went, in milliseconds. */
typedef struct cg_times {
    double verify_ms;     /* LLVMVerifyModule */
    double passes_ms;     /* LLVMRunPasses */
    double codegen_ms;    /* machine code for the object file */
    int codegen_threads;  /* 2 when split.c made it as two objects on two threads, else 1 */
    double asm_ms;        /* the assembly text (0 unless CG_KEEP_ASM) */
    double link_ms;       /* adding the object to the JIT and resolving its symbols */
} cg_times;

typedef struct cg_unit cg_unit;

/* Where a compiled graph's code came from. */
typedef enum cg_code_source {
    CG_CODE_NONE,         /* nothing generated: every kernel is interpreted */
    CG_CODE_LIVE,         /* shared with a live function's unit of the same key */
    CG_CODE_CACHED,       /* loaded from the object cache */
    CG_CODE_COMPILED,     /* built, optimised and compiled now */
} cg_code_source;

/* Where one compile's time went: em_dump's `compile` stage, EMBER_LOG=compile. */
typedef struct cg_compile_times {
    double total_ms;      /* the frontend's: the first call's start to a runnable program */
    double trace_ms;      /* the frontend's: tracing the function on proxies */
    double passes_ms;     /* the frontend's: the pass pipeline (simplify, fuse, plan memory) */
    double schedule_ms;   /* scheduling the kernels, planning memory for that, the layout */
    double key_ms;        /* the program key (key.c) */
    double module_ms;     /* building the LLVM module (0 when it was not needed) */
    double hash_ms;       /* hashing its bitcode (misses, keys without a build id, verification) */
    double load_ms;       /* reading the object cache's entry */
    cg_times unit;        /* the unit's, when this compile made or loaded it */
    cg_code_source source;
} cg_compile_times;

/* Verifies, optimises (opts->pipeline), compiles and links `mod`, which the
 * call consumes together with its context whatever the outcome. `name` names
 * the unit in messages; opts may be NULL (CG_PIPELINE_O2, nothing kept).
 * Returns the unit, or NULL with an error: a module that fails verification,
 * a bad pipeline, a duplicate or unresolved symbol. The JIT is unaffected by
 * a failed unit. */
cg_unit *cg_unit_create(LLVMModuleRef mod, const char *name, const cg_opt *opts);
/* Address of a function or global the unit defines; NULL with an error if it
 * defines no such name. */
void *cg_unit_lookup(const cg_unit *u, const char *sym);
/* The optimised IR and the host assembly, or NULL when not kept. Owned by the unit. */
const char *cg_unit_ir(const cg_unit *u);
const char *cg_unit_asm(const cg_unit *u);
const char *cg_unit_name(const cg_unit *u);
const cg_times *cg_unit_times(const cg_unit *u);
/* Removes the unit's code and symbols from the JIT and frees it; none of its
 * addresses may be used afterwards. NULL is a no-op. A failure to remove the
 * code (an LLVM error) is recorded with rt_error but the unit is freed anyway. */
void cg_unit_destroy(cg_unit *u);

/* ---- lowering kernels to loop nests (lower.c) ----------------------------------------- */

enum { CG_MAX_ACCESS = 32, CG_MAX_NEST_NODES = 64, CG_MAX_ROW_ANCHORS = 4 };

/* One tensor a loop nest reads or writes: where its elements are relative to
 * the data of a value's home (an argument, a constant, an arena buffer or an
 * output), for each loop. Strides are known at compile time: arguments' are
 * the ones traced (and guarded), everything else is dense or a constant. */
typedef struct cg_access {
    int home;                         /* node whose storage holds the data (a view's base) */
    int value;                        /* node read (may be a view of home) or written */
    bool store;
    int64_t offset;                   /* elements from the home's first element */
    int64_t strides[EM_MAX_DIMS];     /* elements per step of each loop; 0: broadcast */
} cg_access;

/* A contraction generated as a register-blocked GEMM (gemm.c, gemm_emit.c).
 * The nest's loops are [batch..., M, N] (batch dims that fold into M are
 * folded); access 0 is A and access 1 is B, with strides over those loops
 * (0 where an operand does not vary) and their k strides here. The output is
 * computed in tiles of mr rows of R by nvec vectors of V: with vec_m false
 * R = A (rows m) and V = B (lanes along n); with vec_m true the tiles are of
 * C^T, R = B^T (rows n) and V = A^T (lanes along m). */
typedef struct cg_gemm {
    int node;                         /* the matmul or linear */
    int bias;                         /* linear's bias: its load access, or -1 */
    int nbatch;                       /* batch loops before M and N */
    int64_t m, n, k;
    int64_t ak, bk;                   /* A's and B's strides along k */
    bool vec_m;                       /* lanes along m (tiles of C^T) */
    bool pack;                        /* V's lanes are not contiguous: it is packed per panel */
    int mr, nvec;                     /* tile: mr rows of R, nvec vectors of V */
    int64_t kc;                       /* k per block (packed panels and partial sums) */
    int64_t panels, batches;          /* panels of nvec vectors per batch */
    int64_t rtiles;                   /* tiles of R's rows (the last may have fewer rows) */
    int64_t units;                    /* batches * panels * rtiles: the function's range */
    int64_t subtiles;                 /* tiles per k-block sweep (the partial sums' rows) */
    bool serial;                      /* too small to split over threads */
    bool stage;                       /* tiles of C^T go out through a staged tile, row by row
                                         of C (gemm_emit.c) */
    bool bconst;                      /* B is a constant of the graph (a weight), the same for
                                         every batch, and packed (amx: split into bf16 pieces; FMA:
                                         lanes along n, packed): by the program's second call, and
                                         kept (exec.c's cg_exec_packed), not per call */
    bool amx;                         /* on the AMX tile unit (runtime/amx.c): tiles of 32 x 32,
                                         A packed once a call, B per panel of 32 columns */
    int64_t kdiag;                    /* > 0: row i of A is 0 from column i + kdiag on (a softmax
                                         of a causal mask, gemm.c's causal_diag), so a tile's
                                         products stop there; 0: every k */
    int64_t cdiag;                    /* > 0: C's tiles whose columns all lie at or past their
                                         last row's i + cdiag are -inf whatever the product (a
                                         causal mask added in the epilogue): no products; 0: none */
    int64_t pfd;                      /* > 0: the k loop prefetches the packed panel's row
                                         this many k ahead into the L1 */
    char how[240];                    /* the choice and its reason, for the dump */
} cg_gemm;

/* Elementwise members of one kernel as codegen emits them: loops over their
 * iteration space, loads and stores with index expressions, and the members
 * evaluated at every point. f32 only for now. */
typedef struct cg_loopnest {
    int kernel;                       /* index in the fusion */
    int nnodes;
    int nodes[CG_MAX_NEST_NODES];     /* members computed, in graph order */
    bool compiled;
    char why[160];                    /* compiled = false: the reason */
    int ndim;                         /* loops after merging dims; the last is the inner loop */
    int64_t shape[EM_MAX_DIMS];
    int width;                        /* inner loop lanes: the host vector width, or 1 when a
                                         store is strided in the inner loop */
    int naccess;
    cg_access acc[CG_MAX_ACCESS];     /* loads first, then stores */
    bool row;                         /* a row nest: reductions or a norm along the last loop */
    unsigned char role[CG_MAX_NEST_NODES]; /* row nests, per node: CG_ROLE_* */
    int nops;                         /* accesses [0, nops) are GEMM operands, not read by members */
    bool is_gemm;                     /* a GEMM nest (gemm.c): the contraction, then its epilogue */
    cg_gemm gemm;
    bool stream;                      /* pointwise, storing CG_STREAM_L2S L2s or more: the
                                         full vectors of rows that start aligned are stored
                                         non-temporally (lower.c says why) */
    int tiled;                        /* pointwise, rows taken in blocks of this many for a load
                                         gathered along the inner loop (lower.c), or 0 */
    int prefetch;                     /* bytes ahead that contiguous loads are prefetched in
                                         a row's first pass, or 0 (lower.c says when) */
    bool has_alt;                     /* an AMX GEMM with an FMA kernel beside it (gemm.c): each
                                         piece of a call runs one, picked by its core's times
                                         (pick.c, program.c) */
    cg_gemm alt;                      /* has_alt: the FMA kernel's plan (lanes along n, panels
                                         of 64 columns: two of the unit's) */
} cg_loopnest;

/* A pointwise nest whose stores add up to this many times the L2 streams them
 * past the caches (lower.c). */
#define CG_STREAM_L2S 4
/* How far ahead a nest whose rows move CG_STREAM_L2S L2s or more prefetches its
 * contiguous loads (lower.c). */
#define CG_PREFETCH_BYTES 2048
/* The L2's bytes per core (sysconf), or 2 MiB when the system does not say;
 * EMBER_L2_KB=n says n KiB instead (tests: it moves the streaming, prefetching
 * and GEMM panel thresholds within reach of small programs). */
int64_t cg_l2_bytes(void);
/* The L1 data cache's bytes per core, or 32 KiB; EMBER_L1_KB=n says n KiB
 * (tests: either side of gemm.c's prefetch threshold). */
int64_t cg_l1_bytes(void);
/* Whether nests and GEMMs prefetch in software: EMBER_PREFETCH=0 or =1, else
 * on all but AMD's cores (lower.c). */
bool cg_prefetching(void);
/* Whether access a of ln streams through memory as the nest runs: it moves
 * along the vector loop and along some outer loop (not one row read again for
 * every row). Only those count toward, and get, prefetching. */
bool cg_access_streams(const cg_loopnest *ln, int a);

/* What a member of a row nest is: computed along the row before the anchors
 * (prologue), an anchor (a reduction or a norm over the last loop), or after
 * them (epilogue: one value per row after reductions, along the row after a norm). */
enum { CG_ROLE_PRE, CG_ROLE_ANCHOR, CG_ROLE_POST };

/* Lowers nodes[0..n) (elementwise members of kernel `kernel`, all of type
 * space) into ln, storing those marked in stored (by node id). args are the
 * traced call's tensor arguments (their strides are part of the guard).
 * width: the vector lanes (16, 8). Returns ln->compiled; on false ln->why says
 * why the nodes must be interpreted. */
bool cg_lower_nest(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                   const int *nodes, int n, const bool *stored, const ir_type *space, cg_loopnest *ln);
/* Lowers a whole reduce or norm kernel as one row nest (its anchors along the
 * last axis of its space, f32, no anchor reading another): prologue, anchors
 * and epilogue in one pass structure per row. false with ln->why otherwise. */
bool cg_lower_row(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                  const bool *stored, cg_loopnest *ln);
/* Whether the nest computes node id (a member, read directly, not as a view). */
bool cg_loopnest_computes(const pass_program *prog, const cg_loopnest *ln, int id);
/* b when member x is a permuted copy of member b of the same nest
 * (pass_permuted_copy): x is b's value at b's indices, stored through the
 * permutation (add_access maps its strides); else NULL. */
const ir_node *cg_permuted_copy(const pass_program *prog, const cg_loopnest *ln, const ir_node *x);
/* The load access of value in the nest, or -1. */
int cg_loopnest_load(const cg_loopnest *ln, int value);
/* Lowers a contraction kernel (one matmul or linear, f32, then elementwise
 * members of its shape) as one GEMM nest, storing those marked in stored, when
 * the generated kernel is chosen over OpenBLAS (gemm.c: the cost model, or
 * EMBER_GEMM=jit|blas). On false, ln->why says why OpenBLAS runs it. */
bool cg_lower_gemm(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                   const bool *stored, cg_loopnest *ln);
/* For gemm.c: whether the emitter computes op; value x's layout (a view chain
 * over its home) relative to the home's first element (false: a view needs a
 * copy); an access for x read or stored over space (-1 and ln->why on failure). */
bool cg_op_emittable(ir_op op);
/* ln is not compiled, for `why` (kept for the kernels dump); returns false. */
bool cg_loopnest_refuse(cg_loopnest *ln, const char *why);
bool cg_value_layout(const pass_program *prog, em_tensor *const *args, const ir_node *x, em_tensor *t);
int cg_loopnest_add_access(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln,
                           const ir_type *space, const ir_node *x, bool store);
/* The loop nest's loops, width and accesses, indented. */
int cg_loopnest_print(const cg_loopnest *ln, FILE *out);
/* The vector width of the host for f32 (16 with AVX-512F, 8 with AVX2 and FMA,
 * 0 otherwise: nothing is compiled). */
int cg_host_width(void);

/* ---- what runs how (schedule.c) ------------------------------------------------------ */

/* One step of a compiled call: a generated loop nest, or one node the
 * interpreter runs with its eager adapter (reductions, norms and matmuls,
 * whose prologues and epilogues are generated around them; what codegen
 * cannot emit yet). */
typedef struct cg_step {
    int kernel;
    int node;                         /* >= 0: the interpreted node */
    int nest;                         /* >= 0: the loop nest */
} cg_step;

typedef struct cg_schedule {
    int nsteps;
    cg_step *steps;                   /* in order */
    int nnests;
    cg_loopnest *nests;
    int *step_of;                     /* by node id: its step, -1 */
    bool *materialize;                /* by node id: read by another step (needs memory) */
    char **why;                       /* by kernel: what is interpreted and why, or NULL */
    int nwhy;                         /* kernels */
} cg_schedule;

/* Splits every kernel of prog into steps (width 0: everything interpreted).
 * 0, or -1 with an error (OOM). */
int cg_schedule_build(const pass_program *prog, em_tensor *const *args, int width, cg_schedule *s);
void cg_schedule_free(cg_schedule *s);
/* The codegen part of the `kernels` dump. */
int cg_schedule_print(const pass_program *prog, const cg_schedule *s, FILE *out);

/* ---- the arithmetic of generated code (emit_ops.c) ------------------------------------ */

/* What the builders need: the module being built, its builder, the lane count
 * and the types. */
typedef struct cg_emitter {
    LLVMContextRef c;
    LLVMModuleRef m;
    LLVMBuilderRef b;
    int w;                            /* lanes: 16, 8 or 1 */
    LLVMTypeRef f32, vt, i64, i32, ptr, mask;
} cg_emitter;

LLVMValueRef cg_splat(cg_emitter *e, float v);              /* a constant in every lane */
LLVMValueRef cg_splat_value(cg_emitter *e, LLVMValueRef s); /* a scalar in every lane */
LLVMValueRef cg_i64c(cg_emitter *e, int64_t v);
/* Function `name` of type ret(params[0..n)) in e's module, declared on first
 * use; *fty receives its type (for LLVMBuildCall2). */
LLVMValueRef cg_declare(cg_emitter *e, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int n,
                        LLVMTypeRef *fty);
/* name, a function of n (1 or 2) arguments of type t returning t, declared on first use. */
LLVMValueRef cg_call_fn(cg_emitter *e, LLVMTypeRef t, const char *name, LLVMValueRef *args, int n);
LLVMValueRef cg_intrinsic(cg_emitter *e, const char *name, LLVMValueRef *args, int n);
/* A call of a target intrinsic that is not overloaded (llvm.x86.*). */
LLVMValueRef cg_target_call(cg_emitter *e, const char *name, LLVMValueRef *args, int n);
/* Sleef's f for the lanes: Sleef_<f>f16_u10avx512f, _f8_u10avx2, _f_u10 (tanh: u35);
 * exp at 16 and 8 lanes is written inline instead (runtime/simd.h's V_EXP). b may be NULL. */
LLVMValueRef cg_sleef(cg_emitter *e, const char *f, LLVMValueRef a, LLVMValueRef b);
/* exp of x <= 0 (or -inf, NaN): cg_exp's result with a shorter chain (emit_ops.c). */
LLVMValueRef cg_exp_nonpositive(cg_emitter *e, LLVMValueRef x);
/* A counted loop at the builder: body runs with the induction variable iv from
 * `from` while it is below `to` (not at all if from >= to), stepping by step;
 * phis carry n values (vals in; out: the values after the loop). The builder
 * ends after the loop. Used by the row passes (emit.c) and the GEMMs. */
enum { CG_LOOP_MAX_VALS = 24 };
typedef void (*cg_loop_body)(cg_emitter *e, LLVMValueRef iv, LLVMValueRef *vals, void *ctx);
void cg_loop(cg_emitter *e, LLVMValueRef from, LLVMValueRef to, int64_t step, LLVMValueRef *vals, int n,
             cg_loop_body body, void *ctx);
LLVMValueRef cg_fma3(cg_emitter *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
LLVMValueRef cg_select_nan(cg_emitter *e, LLVMValueRef a, LLVMValueRef r); /* isnan(a) ? a : r */
/* The value of elementwise op on its operands (c NULL for unary ops). */
LLVMValueRef cg_op_value(cg_emitter *e, ir_op op, LLVMValueRef a, LLVMValueRef c);
LLVMValueRef cg_elem_ptr(cg_emitter *e, LLVMValueRef p, LLVMValueRef idx); /* &((float *)p)[idx] */
void cg_prefetch(cg_emitter *e, LLVMValueRef ptr);                   /* its line into the L1 */
/* llvm.masked.load/store/gather with overloads `over` (value type, pointer type). */
LLVMValueRef cg_masked(cg_emitter *e, const char *name, LLVMTypeRef *over, LLVMValueRef *args, int n);
/* Lanes p[i*stride .. (i+W-1)*stride] (mask NULL: all lanes). */
LLVMValueRef cg_gather(cg_emitter *e, LLVMValueRef p, LLVMValueRef i, int64_t stride, LLVMValueRef mask);

/* ---- emitting LLVM IR for loop nests (emit.c, gemm_emit.c) ----------------------------- */

/* A loop nest being emitted: where each access points, and the value of every
 * node at the current step (vector lanes at p[a] + i * lane[a]). */
typedef struct cg_nest_state {
    const pass_program *prog;
    const cg_loopnest *ln;
    LLVMValueRef fn;
    LLVMValueRef p[CG_MAX_ACCESS];     /* per access: the row's element pointer */
    int64_t lane[CG_MAX_ACCESS];       /* per access: elements between lanes */
    LLVMValueRef row[CG_MAX_ACCESS];   /* per access: its value splatted (lane stride 0) */
    LLVMValueRef *val;                 /* by node id: its value at the current step */
    unsigned *gen;                     /* by node id: the step val belongs to */
    unsigned cur;                      /* the current step */
    LLVMValueRef *rowval;              /* by node id: one value per row (reduced), or NULL */
    LLVMValueRef i, mask;              /* the current step's first element and lanes */
    const ir_node *norm;               /* the norm whose output pass is being built, or NULL */
    LLVMValueRef nshift, nscale, nlsum, nk; /* its row statistics, splatted */
    int exp_at;                        /* softmax: the store access its exps go to in this pass, or -1 */
    int nexp;                          /* softmax: where the output pass finds them, or -1 */
    bool nt;                           /* full-vector stores are non-temporal (aligned rows of a stream nest) */
    bool pf;                           /* the row's next pass prefetches its loads (ln->prefetch) */
} cg_nest_state;

/* A new step at lanes i.. (mask NULL: all lanes): values are computed afresh. */
void cg_nest_begin_step(cg_nest_state *s, LLVMValueRef i, LLVMValueRef mask);
/* The value of node id at the current step (a member, a load, a given value). */
LLVMValueRef cg_nest_eval(cg_emitter *e, cg_nest_state *s, int id);
/* Gives node id the value v at the current step (a GEMM's tile). */
void cg_nest_set(cg_nest_state *s, int id, LLVMValueRef v);
/* Every store access at the current step: all values first, then the stores. */
void cg_nest_store_all(cg_emitter *e, cg_nest_state *s, bool row_shaped);
/* Each access's element offset (its own offset included) at batch bi of a
 * GEMM nest's batch loops (gemm_emit.c's segments, program.c's AMX packing). */
void cg_gemm_batch_offsets(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef bi, LLVMValueRef *off);
/* A GEMM's kept B (cg_gemm.bconst): its bytes; for the FMA kernel, where
 * panel p starts (floats); and packing it whole into dst from home, the data
 * of B's home (zeroed memory: the padding lanes are not written). */
size_t cg_gemm_kept_bytes(const cg_loopnest *ln);
int64_t cg_gemm_kept_offset(const cg_loopnest *ln, int64_t panel);
void cg_gemm_pack_kept(const cg_loopnest *ln, const float *home, void *dst);
/* The body of a GEMM nest's function (gemm_emit.c), in s->fn. */
void cg_emit_gemm(cg_emitter *e, cg_nest_state *s);
/* Lanes p[i*stride ...] written from v (a scatter; mask NULL: all lanes). */
void cg_scatter(cg_emitter *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, int64_t stride, LLVMValueRef mask);

/* Where the data of every value a loop nest reads or writes is at run time,
 * from the memory plan: an arena buffer at a fixed offset, or an external home
 * (argument, constant, output) whose data pointer the caller passes in a slot. */
typedef struct cg_layout {
    int64_t *offset;                  /* by node: byte offset in the arena, or -1 */
    int *slot;                        /* by node: its index in homes[] (>= 1), or -1 */
    int nslots;                       /* external homes: homes[1 .. nslots] */
    int *slot_node;                   /* by slot - 1: its node */
} cg_layout;

/* A compiled graph's program (program.c): homes[0] is the arena's data and
 * homes[s] the data of layout slot s; run is handed to cg_exec_interpret. 0, or
 * -1 when an interpreted step failed (its error is set). */
typedef int (*cg_program_fn)(void **homes, void *run);

/* Compiles the schedule's loop nests and the graph's program into one unit
 * (`name` labels it in messages): for nest i, a function
 * `ember_<hash>_n<i>(void **ptrs, int64_t lo, int64_t hi)` (an rt_range_fn;
 * <hash> is the IR's) running rows [lo, hi) of its loops, with ptrs[a] the data
 * pointer of access a's home; and `ember_<hash>_prog`, a cg_program_fn running
 * every step in order (lay places the homes). fns receives one pointer per
 * loop nest, *program the program; *cached whether the code came from the
 * object cache (the unit is shared with any live unit of the same code). NULL
 * with an error. */
cg_unit *cg_emit(const char *name, const pass_program *prog, const cg_schedule *s, const cg_layout *lay,
                 em_tensor *const *args, unsigned keep, cg_compile_times *times, void **fns, cg_program_fn *program,
                 bool *cached);
/* The program's body (program.c): each step's pointers, then its nest function
 * (nest_fn[i] for nest i; for a nest with has_alt, a function of the module's
 * own whose pieces each run nest_fn[i] or alt_fn[i], as cg_piece_pick says) or
 * cg_exec_interpret. NULL when out of memory. */
LLVMValueRef cg_emit_program(cg_emitter *e, const pass_program *prog, const cg_schedule *s, const cg_layout *lay,
                             LLVMValueRef *nest_fn, LLVMValueRef *alt_fn, bool profile);
/* Makes the next n calls of cg_emit fail as an LLVM failure would (for tests of
 * the fallback: the kernels are interpreted and say why). */
void cg_emit_fail_next(int n);

/* ---- two kernels for one GEMM, picked per piece by the core's times (pick.c) ------------- */

/* What one core has learnt of a GEMM's two kernels. Zeroed before the first
 * call; updated by concurrent calls without a lock (a lost update only delays
 * what the averages say). */
typedef struct cg_pick {
    _Atomic uint64_t calls;           /* picks made */
    bool alternate;                   /* EMBER_GEMM=both (tests): kernels in turn, whatever the times */
    _Atomic uint64_t runs[2];         /* pieces each kernel ran */
    _Atomic uint64_t ns[2];           /* each kernel's time per unit of work, a moving average;
                                         0 before it is known (a kernel's first run is a warm-up) */
} cg_pick;

/* One pick in every P runs the kernel that is not the faster one, so its
 * average follows the machine. P is CG_PICK_EXPLORE, or more where the other
 * kernel is so much slower that exploring it once in CG_PICK_EXPLORE picks
 * would cost more than 1/CG_PICK_REGRET of the faster one's time: P =
 * CG_PICK_REGRET * (slower - faster) / faster, up to CG_PICK_EXPLORE_MAX. */
#define CG_PICK_EXPLORE 16
#define CG_PICK_REGRET 32
#define CG_PICK_EXPLORE_MAX 256
/* Picks between two explorations of the slower kernel, by averages a and b. */
uint64_t cg_pick_period(uint64_t a, uint64_t b);
/* The kernel (0 or 1) to run now: one not yet timed, else the faster by the
 * averages but on every cg_pick_period-th pick the other (with alternate:
 * 0, 1, 0, ...). */
int cg_pick_choose(cg_pick *p);
/* Kernel k ran for ns nanoseconds (per unit of work). */
void cg_pick_record(cg_pick *p, int k, uint64_t ns);

/* Cores whose times are kept apart (a core past them shares a slot). */
#define CG_PICK_CPUS 64
/* One piece of a GEMM with two kernels, as the generated code sees it. */
typedef struct cg_piece {
    uint64_t t0;                      /* when its kernel started (ns) */
    int32_t cpu;                      /* the slot of the core it runs on */
    int32_t kernel;                   /* 0 the unit's, 1 the FMAs' */
} cg_piece;
/* The kernel for a piece about to run on this core, by cpus[core]: 0 (the
 * unit's) or 1 (FMAs'); its clock starts. */
int cg_piece_pick(cg_pick *cpus, cg_piece *pc);
/* The piece's clock starts again (after it helped pack A for the unit). */
void cg_piece_restart(cg_piece *pc);
/* The piece has run: its time per unit of work goes to its core's cg_pick. */
void cg_piece_done(cg_pick *cpus, const cg_piece *pc, int64_t work);

/* ---- the object cache (cache.c) -------------------------------------------------------- */

/* A compiled unit as the cache stores it. */
typedef struct cg_blob {
    char **syms;          /* exported names */
    int nsym;
    char *obj;            /* the object file */
    size_t nobj;
    char *ir, *asm_text;  /* optimised IR and assembly, or NULL */
    uint64_t ir_hash;     /* cg_module_hash of the module it was compiled from */
} cg_blob;

/* A growing byte buffer: bad (and unchanged) once an allocation failed. */
typedef struct cg_buf {
    unsigned char *buf;
    size_t len, cap;
    bool bad;
} cg_buf;
void cg_buf_put(cg_buf *b, const void *p, size_t n);

/* FNV-1a, continuing from h (start with 0xcbf29ce484222325). */
uint64_t cg_hash(const void *data, size_t n, uint64_t h);
uint64_t cg_hash_words(const void *data, size_t n); /* faster, for large inputs */
/* EMBER_CACHE_DIR, or ~/.cache/ember; NULL when the cache is off ("" or "off"). */
const char *cg_cache_dir(void);
/* 0 and *out filled when a valid entry for key exists; -1 when it is absent,
 * truncated, corrupt or made for another key (never an error). */
int cg_cache_load(const char *key, cg_blob *out);
/* Writes the entry (atomically: a temporary file renamed). A failure only
 * prints one message per process. */
void cg_cache_store(const char *key, const cg_blob *b);
void cg_blob_free(cg_blob *b);

typedef struct cg_cache_stats {
    long hits, misses, rejected, stores, store_failures;
    long evicted;         /* entries removed to keep the folder under EMBER_CACHE_MAX_MB */
} cg_cache_stats;
void cg_cache_stats_get(cg_cache_stats *out);

/* Builds a keyed unit's module on demand: NULL with an error. */
typedef LLVMModuleRef (*cg_module_maker)(void *ctx);
/* Like cg_unit_create, for code whose exported names are unique to its key
 * (emit.c names them by the key's hash): a live unit of the same key is
 * shared (reference counted; cg_unit_destroy drops one), else the object
 * cache is consulted, and only on a miss is make(ctx) called and its module
 * compiled (the cache written after). Also called when the dumps ask for
 * texts the code found lacks, and on every hit under EMBER_CACHE_VERIFY=1,
 * where the module must hash as the one the code was compiled from (else
 * ember aborts: the key missed something). *cached says whether the
 * code came from the cache; `name` labels messages. */
cg_unit *cg_unit_get_keyed(const char *name, const char *key, cg_module_maker make, void *ctx, const cg_opt *opts,
                           bool *cached, cg_compile_times *times);

/* ---- keys (key.c) ------------------------------------------------------------------------------ */

/* The build id (hex) of the library or executable ember's code is in; "" if it has none. */
const char *cg_build_id(void);
/* The key of the code cg_emit makes of prog for these arguments, from the
 * program itself (no module is built), and the hash its names come from. 0;
 * 1 when there is no build id (use cg_module_key); -1 with an error. */
int cg_program_key(const pass_program *prog, em_tensor *const *args, const cg_schedule *sched, const cg_layout *lay,
                   unsigned keep, char *key, size_t cap, uint64_t *h);
/* The hash of a module's bitcode (under a fixed name). 0, or -1 with an error. */
int cg_module_hash(LLVMModuleRef m, uint64_t *h);
/* The key of a module's code, from that hash. 0, or -1 with an error. */
int cg_module_key(LLVMModuleRef m, char *key, size_t cap, uint64_t *h);
/* For tests: with on, cg_program_key answers 1 as if there were no build id. */
void cg_key_use_module_hash(bool on);

/* ---- running a planned program (exec.c) ------------------------------------------- */

/* Runs a pass_program kernel by kernel with the eager adapters, each result
 * written at its place in the memory plan (an arena per call, kept between
 * calls). The program must outlive the executor. cg_exec_create only
 * interprets, and needs a plan made with internal=true. */
typedef struct cg_exec cg_exec;
cg_exec *cg_exec_create(const pass_program *prog);  /* NULL with an error */
/* Generates code for the kernels codegen handles (the rest is interpreted),
 * specialised to the strides of args (the traced call's tensor arguments), and
 * re-plans prog's memory for that choice (prog->plan is replaced). keep:
 * CG_KEEP_* for the dumps. EMBER_CODEGEN=0 interprets everything. */
cg_exec *cg_exec_compile(pass_program *prog, em_tensor *const *args, unsigned keep);
/* The `kernels` dump: the fusion, then each kernel's loop nest or why it is interpreted. */
int cg_exec_print_kernels(const cg_exec *e, FILE *out);
int cg_exec_generated_nests(const cg_exec *e);  /* loop nests running as generated code */
const cg_unit *cg_exec_unit(const cg_exec *e);     /* NULL when nothing was generated */
bool cg_exec_cached(const cg_exec *e);             /* its code came from the object cache */
void cg_exec_destroy(cg_exec *e);                   /* NULL-safe; frees the kept arena */
/* args: the tensor arguments in order (types as the graph's inputs: the caller
 * checked them); outs receives one new reference per graph output. 0, or -1
 * with an error and nothing in outs. */
int cg_exec_run(cg_exec *e, em_tensor *const *args, em_tensor **outs);
/* For the generated program: runs interpreted step `step` of the call `run`
 * (exec.c's state). 0, or -1 with an error. */
int cg_exec_interpret(void *run, int step);
/* For a program compiled with CG_PROFILE: step `step` of the call `run` starts
 * (step == the step count: the call ends); the time since the last mark goes
 * to the previous step. Returns 0. */
int cg_exec_mark(void *run, int step);
/* For a step with two kernels (a loop nest with has_alt): what each core has
 * learnt of them, CG_PICK_CPUS cg_picks (pick.c), for cg_piece_pick. */
cg_pick *cg_exec_pieces(void *run, int step);
/* For a GEMM step whose B is a constant (cg_gemm.bconst): B packed whole
 * (cg_gemm_pack_kept: the unit's column operand, or the FMA kernel's panels), made by the
 * step's second call (home: the data of B's home) and kept until the program
 * is freed. NULL (no error) on the step's first call, so that a new
 * process's first result does not wait for it, and while it cannot be
 * allocated: the step then packs B per panel, as for any B. */
void *cg_exec_packed(void *run, int step, const float *home);
/* Bytes of the constants kept packed so far (cg_exec_packed). */
size_t cg_exec_packed_bytes(const cg_exec *e);
/* The `profile` stage: time per step, averaged over the calls made so far
 * (with CG_PROFILE; else how to ask for it). */
int cg_exec_print_profile(const cg_exec *e, FILE *out);
size_t cg_exec_arena_bytes(const cg_exec *e);
/* The compile's times: codegen's part filled by cg_exec_compile, the frontend
 * adds its own (trace, passes, total). */
cg_compile_times *cg_exec_times(cg_exec *e);
/* The `compile` stage: where the compile's time went, and where the code came from. */
int cg_exec_print_compile(const cg_exec *e, FILE *out);

#endif /* EMBER_CODEGEN_H */
