/*
 * dce.c — dead code elimination: drop what no output needs.
 *
 * Tracing records every op the user's function called, including values it
 * computed and never returned (a debug norm, a branch whose result was
 * overwritten), and the other passes leave nodes behind when they replace a
 * node (the ones constant of x*1, the operands of a folded op). Running such
 * nodes costs time and memory for nothing, so dce rebuilds the graph with only
 * the live nodes: those an output depends on, found in one backward sweep
 * (pass_live_nodes).
 *
 * Invariants: every input node survives, dead or not, so the rewritten graph
 * takes the same arguments as the original; a dead constant is simply not
 * copied, so once the old graph is destroyed its tensor is released (unless
 * someone else holds it); ops have no side effects, so dropping one never
 * changes a result.
 */
#include "passes.h"

#include <stdlib.h>

ir_graph *pass_dce(const ir_graph *g) {
    bool *live = pass_live_nodes(g);
    if (!live) return NULL;
    ir_graph *out = pass_rewrite_run(g, live, NULL, NULL);
    free(live);
    return out;
}
