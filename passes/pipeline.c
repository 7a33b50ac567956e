/*
 * pipeline.c — the passes, in the order they run.
 *
 *   dce   drop what the traced function computed but never returned, so that
 *         fold does not spend compile time evaluating dead constant subgraphs;
 *   fold  constant subgraphs and exact identities (x*1, neg(neg x), permute of
 *         permute, ...), in one walk, inputs before users;
 *   scale a fixed power-of-two scale of a matmul's or linear's operand moves
 *         to the result (exactly), where fusion makes it part of the GEMM's
 *         store; after fold, which makes constant scales (em_scalar(2) * 0.5);
 *   cse   after fold, because fold exposes equal values: x*1 + y and y + x
 *         are one add once x*1 is x and the operands are ordered, and equal
 *         constants merge after fold has produced them;
 *   dce   last, for what fold and cse left without users: the ones of x*1, the
 *         operands of a folded op, the nodes merged away.
 *
 * One round is enough: cse only merges values and reorders operands, which
 * creates no new fold opportunity (identities look at operands' values, not
 * their order), and every pass is linear in the graph, so the whole pipeline
 * costs a few rebuilds.
 *
 * The set of fixed constants (pass_consts) is decided once, on the input
 * graph: it is the only moment the reference counts say who else holds a
 * tensor, because every later graph shares the same tensors. fold adds the
 * constants it computes.
 *
 * pass_program_build then groups the optimised graph into kernels (fuse.c)
 * and plans its memory (memplan.c); both are verified like the graph passes.
 *
 * Invariants: the graph is verified (ir_graph_verify) after every pass; a
 * pass that produces an invalid graph is an internal error reported with the
 * pass's name, and nothing is returned. The input graph is never changed.
 */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef ir_graph *(*pass_fn)(const ir_graph *g, pass_consts *k);

static ir_graph *run_dce(const ir_graph *g, pass_consts *k) { (void)k; return pass_dce(g); }
static ir_graph *run_fold(const ir_graph *g, pass_consts *k) { return pass_fold(g, k); }
static ir_graph *run_cse(const ir_graph *g, pass_consts *k) { return pass_cse(g, k); }
static ir_graph *run_scale(const ir_graph *g, pass_consts *k) { return pass_scale(g, k); }

static const struct {
    const char *name;
    pass_fn run;
} passes[] = {
    {"dce", run_dce},
    {"fold", run_fold},
    {"scale", run_scale},
    {"cse", run_cse},
    {"dce", run_dce},
};
enum { NPASSES = sizeof passes / sizeof passes[0] };

const char *const pass_pipeline_names[] = {"dce", "fold", "scale", "cse", "dce", NULL};
_Static_assert(sizeof pass_pipeline_names / sizeof *pass_pipeline_names == NPASSES + 1,
               "pass_pipeline_names lists every pass");

typedef struct counts {
    int nodes, ops, consts;
} counts;

static counts count(const ir_graph *g) {
    counts c = {.nodes = ir_graph_num_nodes(g)};
    for (int i = 0; i < c.nodes; i++) {
        ir_node_kind k = ir_graph_node(g, i)->kind;
        c.ops += k == IR_NODE_OP;
        c.consts += k == IR_NODE_CONST;
    }
    return c;
}

static void log_pass(pass_log_fn log, void *ctx, const char *name, const ir_graph *before,
                     const ir_graph *after) {
    counts a = count(before), b = count(after);
    char line[160];
    snprintf(line, sizeof line, "%s: %d -> %d nodes (ops %d -> %d, consts %d -> %d)", name,
             a.nodes, b.nodes, a.ops, b.ops, a.consts, b.consts);
    log(ctx, name, after, line);
}

/* Re-raises the current error with the pass's name in front. */
static int pass_failed(const char *name, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", em_last_error());
    return rt_error("pass %s: %s%s", name, what, msg);
}

int pass_pipeline_run(const ir_graph *in, ir_graph **out, pass_log_fn log, void *ctx) {
    if (!out) return rt_error("pass_pipeline_run: out is NULL");
    *out = NULL;
    if (!in) return rt_error("pass_pipeline_run: the graph is NULL");
    pass_consts *k = pass_consts_create(in);
    if (!k) return pass_failed("pipeline", "");
    const ir_graph *cur = in;
    ir_graph *owned = NULL;
    for (int i = 0; i < NPASSES; i++) {
        ir_graph *next = passes[i].run(cur, k);
        int st = next ? 0 : pass_failed(passes[i].name, "");
        if (st == 0 && ir_graph_verify(next) != 0)
            st = pass_failed(passes[i].name, "internal error: the pass produced an invalid graph: ");
        if (st == 0 && log) log_pass(log, ctx, passes[i].name, cur, next);
        ir_graph_destroy(owned);
        owned = next, cur = next;
        if (st != 0) {
            ir_graph_destroy(owned);
            pass_consts_destroy(k);
            return -1;
        }
    }
    pass_consts_destroy(k);
    *out = owned;
    return 0;
}

/* Logs a fusion or plan summary under the pass's name. */
static void log_line(pass_log_fn log, void *ctx, const char *name, const ir_graph *g, const char *line) {
    if (log) log(ctx, name, g, line);
}

pass_program *pass_program_build(const ir_graph *captured, bool internal, pass_log_fn log,
                                 void *ctx) {
    pass_program *p = calloc(1, sizeof *p);
    if (!p) return rt_error("pass_program_build: out of memory"), NULL;
    char line[200];
    int st = pass_pipeline_run(captured, &p->graph, log, ctx);
    if (!st && !(p->fusion = pass_fuse(p->graph))) st = pass_failed("fuse", "");
    if (!st && pass_fusion_verify(p->fusion) != 0)
        st = pass_failed("fuse", "internal error: the pass produced an invalid fusion: ");
    if (!st) {
        snprintf(line, sizeof line, "fuse: %d kernels", p->fusion->nkernels);
        log_line(log, ctx, "fuse", p->graph, line);
    }
    if (!st && !(p->plan = pass_memplan_run(p->fusion, internal))) st = pass_failed("memplan", "");
    if (!st && pass_memplan_verify(p->plan) != 0)
        st = pass_failed("memplan", "internal error: the pass produced an invalid plan: ");
    if (!st) {
        snprintf(line, sizeof line, "memplan: %d buffers, arena %zu bytes (peak %zu, no reuse %zu)",
                 p->plan->nbuffers, p->plan->arena_bytes, p->plan->peak_bytes, p->plan->naive_bytes);
        log_line(log, ctx, "memplan", p->graph, line);
    }
    if (st) {
        pass_program_destroy(p);
        return NULL;
    }
    return p;
}

void pass_program_destroy(pass_program *p) {
    if (!p) return;
    pass_memplan_destroy(p->plan);
    pass_fusion_destroy(p->fusion);
    ir_graph_destroy(p->graph);
    free(p);
}
