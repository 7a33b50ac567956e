/*
 * passes.h — the whole interface of ember's passes layer.
 *
 * A pass takes a graph and returns a NEW graph: IR nodes are immutable and
 * hash-consed, so instead of editing nodes in place every pass rebuilds the
 * graph through one utility (pass_rewrite_run, rewrite.c) that walks the old
 * graph in order and lets the pass decide what each node becomes. The input
 * graph is never changed and stays owned by the caller; the caller owns the
 * result (ir_graph_destroy). A failed pass returns NULL with an error set.
 *
 * Passes read the contents of a constant only when the compiler may treat
 * them as fixed (pass_consts): a weight reached through a global is captured
 * by reference, so its data may change between calls and nothing may be
 * folded from it.
 *
 * pipeline.c lists the passes in the order they run.
 */
#ifndef EMBER_PASSES_H
#define EMBER_PASSES_H

#include "ir.h"

#include <stdio.h>

/* ---- constants whose contents are fixed (rewrite.c) -------------------------------- */

/* A set of constant tensors whose data the compiler may read and fold: no one
 * but the compiler can reach them, so their contents cannot change between
 * calls. Keyed by tensor pointer, which rewrites keep (a constant is copied
 * into the new graph as the same tensor); the set holds a reference to each. */
typedef struct pass_consts pass_consts;

/* The constants of g that g holds alone: the graph has the only reference to
 * the tensor and the tensor the only reference to its storage (a scalar or
 * mask the traced function created and released). Any other constant (a
 * global weight, a view of one) is captured by reference and stays opaque.
 * NULL with an error on OOM. */
pass_consts *pass_consts_create(const ir_graph *g);
void pass_consts_destroy(pass_consts *k);                     /* NULL-safe */
bool pass_consts_fixed(const pass_consts *k, const em_tensor *t);
/* Marks t fixed (a value the compiler computed from fixed constants). */
int pass_consts_add(pass_consts *k, em_tensor *t);

/* ---- rebuilding a graph (rewrite.c) ------------------------------------------------- */

typedef struct pass_rewrite pass_rewrite;

/* Decides what the old node `old` (a constant or an op node) becomes in the new
 * graph. `in` holds old's inputs already mapped to new nodes (NULL where an
 * optional operand is missing); the callback may reorder it. It returns a node
 * of rw->dst with exactly old's dtype and shape — pass_rewrite_copy(rw, old, in)
 * for the plain copy — or NULL with an error set. */
typedef ir_node *(*pass_node_fn)(pass_rewrite *rw, const ir_node *old, ir_node **in, void *ctx);

struct pass_rewrite {
    const ir_graph *src;  /* the graph being rewritten */
    ir_graph *dst;        /* the graph being built */
    ir_node **map;        /* by src node id: its node in dst (NULL: not visited yet, or dead) */
    const bool *live;     /* by src node id: visit it; NULL visits every node */
};

/* Builds a new graph from src: every input node is copied (same argument index,
 * so the graph keeps its signature, live or not), then each constant and op
 * node in order (only those marked in `live` when it is not NULL) becomes what
 * fn returns (fn NULL: a plain copy), and the outputs are mapped. Op nodes are
 * rebuilt through ir_graph_add_node, so the shape rule runs again and nodes
 * that become identical are merged. NULL with an error on failure. */
ir_graph *pass_rewrite_run(const ir_graph *src, const bool *live, pass_node_fn fn, void *ctx);
/* The plain copy of old with the inputs in: the same constant tensor, or the
 * same op, attributes and call site over the new inputs. */
ir_node *pass_rewrite_copy(pass_rewrite *rw, const ir_node *old, ir_node *const *in);
/* Per node id of g: whether an output depends on it (inputs count as live).
 * A new array (free() it), or NULL with an error on OOM. */
bool *pass_live_nodes(const ir_graph *g);

/* ---- the passes ------------------------------------------------------------------------ */

/* dce.c: drops every constant and op node no output depends on. */
ir_graph *pass_dce(const ir_graph *g);
/* cse.c: merges what hash-consing alone cannot: fixed constants with equal
 * dtype, shape, strides and bytes (at most PASS_CSE_MAX_BYTES), and operands
 * of commutative ops put in one order. k NULL: the fixed constants of g. */
enum { PASS_CSE_MAX_BYTES = 4096 };
ir_graph *pass_cse(const ir_graph *g, const pass_consts *k);
/* fold.c: evaluates ops on fixed constants at compile time and applies exact
 * algebraic identities. Adds the constants it computes to k (k NULL: the
 * fixed constants of g, for this call only). */
enum { PASS_FOLD_MAX_BYTES = 1 << 20, PASS_FOLD_MAX_GROWTH = 4 };
ir_graph *pass_fold(const ir_graph *g, pass_consts *k);
/* scale.c: matmul(x * s, w), linear(x, w / s, b) and the like, with s a fixed
 * f32 constant of one element, a power of two in [2^-24, 2^24] in magnitude,
 * become matmul(x, w) * s, linear(x, w, b * s) / s, with the same bits: the
 * scale joins the GEMM's epilogue. k NULL: nothing is fixed, nothing moves. */
ir_graph *pass_scale(const ir_graph *g, const pass_consts *k);
/* True when x is contiguous at run time whatever the arguments' layouts are:
 * the result of an op that writes a new dense tensor, or a dense constant. */
bool pass_node_contiguous(const ir_node *x);

/* ---- the pipeline (pipeline.c) ----------------------------------------------------------- */

/* Called after each pass with its name, its result and a one-line summary
 * ("fold: 14 -> 9 nodes (ops 9 -> 6, consts 3 -> 1)"). */
typedef void (*pass_log_fn)(void *ctx, const char *pass, const ir_graph *g, const char *summary);

/* Runs every pass in order on in, verifying the graph after each; *out receives
 * the optimised graph (the caller destroys it). log may be NULL. 0, or -1 with
 * an error naming the pass that failed (nothing in *out then). */
int pass_pipeline_run(const ir_graph *in, ir_graph **out, pass_log_fn log, void *ctx);
/* The passes pass_pipeline_run runs, in order, NULL-terminated. */
extern const char *const pass_pipeline_names[];

/* ---- fusion (fuse.c) ------------------------------------------------------------------- */

/* What a kernel computes, by its heaviest op (its anchor). */
typedef enum pass_kernel_kind {
    PASS_KERNEL_POINTWISE,   /* elementwise ops only: one pass over one iteration space */
    PASS_KERNEL_REDUCE,      /* reductions over one axis, elementwise prologue and epilogue */
    PASS_KERNEL_NORM,        /* softmax, log_softmax, layer_norm, rms_norm, prologue, epilogue */
    PASS_KERNEL_CONTRACTION, /* matmul or linear with its elementwise epilogue */
    PASS_KERNEL_GATHER,      /* embedding */
    PASS_KERNEL_COPY,        /* concat */
} pass_kernel_kind;

typedef struct pass_kernel {
    pass_kernel_kind kind;
    ir_type space;        /* iteration space: the anchor's input (reductions, norms) or the
                             pointwise/contraction output shape */
    int nnodes;           /* member op nodes, by id, in graph order */
    int *nodes;
    int nouts;            /* members whose value leaves the kernel (read by a later kernel
                             or a graph output), by id */
    int *outs;
    int nloads;           /* values read from outside the kernel (base nodes, views resolved) */
    int *loads;
    int anchor;           /* node id of the first reduction/norm/contraction/gather/copy; -1 */
    char why[160];        /* how it was formed (horizontal merges), or "" */
} pass_kernel;

/* The fusion of a graph: every op node other than a view belongs to exactly one
 * kernel; a view belongs to none (its consumers read its base with strides). */
typedef struct pass_fusion {
    const ir_graph *g;    /* the graph it describes (not owned) */
    int nkernels;
    pass_kernel *k;       /* in an order that runs producers before consumers */
    int *kernel_of;       /* by node id: its kernel, or -1 (inputs, constants, views) */
    int *base_of;         /* by node id: the node a view chain starts from (itself otherwise) */
    char **why;           /* by node id: why it was not fused with a producer, or NULL */
} pass_fusion;

/* Groups the op nodes of g into kernels (see fuse.c for the rules). NULL with
 * an error on OOM. g must outlive the result. */
pass_fusion *pass_fuse(const ir_graph *g);
void pass_fusion_destroy(pass_fusion *f);                     /* NULL-safe */
/* Checks that every non-view op node is in exactly one kernel, kernels run
 * after the kernels they read, and outs and loads are what the members say.
 * 0, or -1 with an error naming the kernel. */
int pass_fusion_verify(const pass_fusion *f);
/* The `kernels` dump: each kernel with its members, loads and outputs, then
 * every node that was not fused into a producer's kernel and why. */
int pass_fusion_print(const pass_fusion *f, FILE *out);
const char *pass_kernel_kind_name(pass_kernel_kind k);
/* b when n is a permuted copy of it: contiguous(permute(b)), b an op node
 * (not a view); else NULL. Fusion puts such a copy in b's contraction kernel
 * (attention's head merge after p @ v), whose GEMM stores it straight from the
 * tile with b's indices mapped through the permutation (codegen's lower.c):
 * b is then not written to memory only to be copied. */
const ir_node *pass_permuted_copy(const ir_node *n);

/* ---- memory planning (memplan.c) ------------------------------------------------------ */

enum { PASS_ARENA_ALIGN = 64 };

/* Where a value lives at run time. */
typedef enum pass_home {
    PASS_HOME_NONE,     /* not materialised: computed inside its kernel only */
    PASS_HOME_ARG,      /* a tensor argument (the caller's) */
    PASS_HOME_CONST,    /* a graph constant */
    PASS_HOME_ARENA,    /* a buffer at an offset in the arena */
    PASS_HOME_OUTPUT,   /* storage of its own, returned to the caller */
    PASS_HOME_VIEW,     /* a view of another value (base_of) */
} pass_home;

typedef struct pass_buffer {
    int node;             /* the value */
    size_t bytes;         /* numel * dtype size */
    size_t offset;        /* in the arena, a multiple of PASS_ARENA_ALIGN */
    int first, last;      /* live range, in steps (inclusive) */
    int inplace_of;       /* node whose dead buffer this one overwrites, or -1 */
} pass_buffer;

typedef struct pass_memplan {
    const pass_fusion *f; /* not owned */
    bool internal;        /* every kernel is interpreted (all values materialised) */
    int nsteps;
    int *order;           /* nsteps op node ids: the execution order */
    int *step_of;         /* by node id: its step, or -1 */
    pass_home *home;      /* by node id */
    int *buffer_of;       /* by node id: index into buffers, or -1 */
    int nbuffers;
    pass_buffer *buffers; /* arena buffers, in the order of their first step */
    size_t arena_bytes;   /* the arena's size */
    size_t peak_bytes;    /* most bytes live at one step: what any plan needs */
    size_t naive_bytes;   /* sum of all buffers: no reuse at all */
} pass_memplan;

/* Plans the arena for f. Steps are kernels, or nodes when internal is true
 * (then every materialised member of a kernel gets a buffer: the interpreter
 * runs nodes one by one). Graph outputs (and what they view) get homes of their
 * own; an elementwise result overwrites a same-sized input whose last use it is.
 * NULL with an error on OOM. */
pass_memplan *pass_memplan_run(const pass_fusion *f, bool internal);
/* The same with the choice per kernel: interpreted[k] true for a kernel the
 * interpreter runs node by node, false for generated code (one step). */
pass_memplan *pass_memplan_run_kernels(const pass_fusion *f, const bool *interpreted);
/* The general form: step_of[id] is the step that computes op node id (nodes of
 * one step run together: a generated loop nest, or one interpreted node;
 * steps follow the kernel order), materialize[id] asks for a buffer even when
 * the value does not leave its kernel (a value one step of a kernel hands to
 * another). Kernel outputs and graph outputs always get one. */
pass_memplan *pass_memplan_run_steps(const pass_fusion *f, const int *step_of, const bool *materialize);
void pass_memplan_destroy(pass_memplan *p);                   /* NULL-safe */
/* Checks that buffers whose live ranges overlap do not overlap in the arena
 * (except an in-place pair), that every offset is aligned and inside the arena,
 * and that every value a step reads has a home. 0, or -1 with an error. */
int pass_memplan_verify(const pass_memplan *p);
/* The `memplan` dump: one line per buffer (value, bytes, offset, live range,
 * in place of), then arena, peak and no-reuse totals. */
int pass_memplan_print(const pass_memplan *p, FILE *out);

/* ---- a compiled program: the optimised graph, its kernels and its plan ---------------- */

typedef struct pass_program {
    ir_graph *graph;      /* optimised */
    pass_fusion *fusion;
    pass_memplan *plan;
} pass_program;

/* Runs the pipeline, then fuse and memplan (each verified and logged as a
 * pass), on the captured graph. NULL with an error naming the pass that failed. */
pass_program *pass_program_build(const ir_graph *captured, bool internal, pass_log_fn log,
                                 void *ctx);
void pass_program_destroy(pass_program *p);                   /* NULL-safe */

#endif /* EMBER_PASSES_H */
