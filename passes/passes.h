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

#endif /* EMBER_PASSES_H */
