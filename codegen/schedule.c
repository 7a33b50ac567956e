/*
 * schedule.c — what of each kernel is generated code and what is interpreted.
 *
 * A kernel becomes a sequence of steps:
 *
 *   pointwise     one generated loop nest of all its members;
 *   contraction   the matmul/linear (OpenBLAS through its eager adapter, until
 *                 the JIT GEMM exists), then its epilogue as one generated
 *                 loop nest over the product, in place where it can be;
 *   norm, reduce  one row nest (lower.c's cg_lower_row) when the anchors work
 *                 along the last axis: prologue, reductions or the norm, and
 *                 epilogue in one generated function; otherwise the prologue
 *                 (elementwise members the anchors depend on, and other
 *                 members of the input's shape) as one loop nest, each anchor
 *                 (softmax, layer_norm, a reduction) by its runtime row
 *                 kernel, then the epilogue as one loop nest;
 *   gather, copy  interpreted node by node.
 *
 * A value one step hands to another is materialised (memplan gives it a
 * buffer); values that live within one loop nest never touch memory. A part
 * that cannot be generated (a non-f32 value, an op without an emitter, a
 * reduce kernel that makes several passes over its rows) is interpreted node
 * by node instead, and the reason is kept for the `kernels` dump.
 *
 * Invariant: steps follow the fusion's kernel order and, within a kernel,
 * every node's inputs are computed by an earlier step or by itself.
 */
#include "codegen.h"

#include <stdlib.h>
#include <string.h>

typedef struct sched {
    const pass_program *prog;
    em_tensor *const *args;
    int width;
    cg_schedule *s;
    int cap_steps, cap_nests;
    char row_why[160];    /* why the last kernel did not lower as one row nest */
} sched;

/* Room for one more loop nest at s->nests[s->nnests]; false on OOM. */
static bool nest_room(sched *c) {
    cg_schedule *s = c->s;
    if (s->nnests < c->cap_nests) return true;
    int cap = c->cap_nests ? 2 * c->cap_nests : 8;
    cg_loopnest *p = realloc(s->nests, (size_t)cap * sizeof *p);
    if (!p) return false;
    s->nests = p, c->cap_nests = cap;
    return true;
}

static int add_step(sched *c, int kernel, int node, int nest) {
    cg_schedule *s = c->s;
    if (s->nsteps == c->cap_steps) {
        c->cap_steps = c->cap_steps ? 2 * c->cap_steps : 16;
        cg_step *p = realloc(s->steps, (size_t)c->cap_steps * sizeof *p);
        if (!p) return rt_error("em_compile: out of memory scheduling kernels");
        s->steps = p;
    }
    s->steps[s->nsteps++] = (cg_step){kernel, node, nest};
    return 0;
}

static int interpret(sched *c, int kernel, const int *nodes, int n) {
    for (int i = 0; i < n; i++) {
        c->s->step_of[nodes[i]] = c->s->nsteps;
        if (add_step(c, kernel, nodes[i], -1)) return -1;
    }
    return 0;
}

static void note(sched *c, int kernel, const char *fmt, const char *what) {
    char buf[256];
    snprintf(buf, sizeof buf, fmt, what);
    if (c->s->why[kernel]) return; /* the first reason is shown */
    c->s->why[kernel] = strdup(buf);
}

/* Members nodes[0..n) as one step: a generated nest when they lower, else
 * interpreted one by one. The nest's stores are filled in later (they depend
 * on what later steps read), so only the membership is decided here. */
static int part(sched *c, int kernel, const int *nodes, int n, const ir_type *space) {
    if (n == 0) return 0;
    cg_schedule *s = c->s;
    if (!nest_room(c)) return rt_error("em_compile: out of memory scheduling kernels");
    /* A trial lowering with every member stored: checks ops, dtypes, views. */
    cg_loopnest *ln = &s->nests[s->nnests];
    bool *all = calloc((size_t)ir_graph_num_nodes(c->prog->graph), sizeof *all);
    if (!all) return rt_error("em_compile: out of memory scheduling kernels");
    for (int i = 0; i < n; i++) all[nodes[i]] = true;
    bool ok = cg_lower_nest(c->prog, c->args, c->width, kernel, nodes, n, all, space, ln);
    free(all);
    if (!ok) {
        note(c, kernel, "interpreted: %s", ln->why);
        return interpret(c, kernel, nodes, n);
    }
    for (int i = 0; i < n; i++) s->step_of[nodes[i]] = s->nsteps;
    s->nnests++;
    return add_step(c, kernel, -1, s->nnests - 1);
}

typedef bool (*whole_lowering)(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                               const bool *stored, cg_loopnest *ln);

/* The whole kernel k as one nest, when `lower` (cg_lower_row, cg_lower_gemm)
 * takes it; then one step. Else false, with the lowering's reason in why. */
static bool whole_nest(sched *c, int k, whole_lowering lower, char *why, size_t cap) {
    cg_schedule *s = c->s;
    const pass_kernel *K = &c->prog->fusion->k[k];
    snprintf(why, cap, "out of memory");
    if (!nest_room(c)) return false;
    bool *all = calloc((size_t)ir_graph_num_nodes(c->prog->graph), sizeof *all);
    if (!all) return false;
    for (int i = 0; i < K->nnodes; i++) all[K->nodes[i]] = true;
    bool ok = lower(c->prog, c->args, c->width, k, all, &s->nests[s->nnests]);
    free(all);
    if (!ok) {
        snprintf(why, cap, "%s", s->nests[s->nnests].why);
        return false;
    }
    for (int i = 0; i < K->nnodes; i++) s->step_of[K->nodes[i]] = s->nsteps;
    s->nnests++;
    return add_step(c, k, -1, s->nnests - 1) == 0;
}

/* A contraction kernel as one generated GEMM, or the reason OpenBLAS runs it. */
static bool gemm_nest(sched *c, int k) {
    char why[160];
    if (whole_nest(c, k, cg_lower_gemm, why, sizeof why)) return true;
    note(c, k, "contraction by OpenBLAS: %s", why);
    return false;
}

/* Whether member x depends (within kernel k) on a node in `anchor`. */
static bool after_anchor(const pass_program *prog, const ir_node *x, int k, const bool *anchor, bool *memo,
                         bool *seen) {
    if (seen[x->id]) return memo[x->id];
    seen[x->id] = true;
    bool r = false;
    for (int j = 0; j < x->nin && !r; j++) {
        if (!x->in[j]) continue;
        const ir_node *b = ir_graph_node(prog->graph, prog->fusion->base_of[x->in[j]->id]);
        if (prog->fusion->kernel_of[b->id] != k) continue;
        r = anchor[b->id] || after_anchor(prog, b, k, anchor, memo, seen);
    }
    return memo[x->id] = r;
}

static int schedule_kernel(sched *c, int k, bool *anchor, bool *memo, bool *seen) {
    const pass_program *prog = c->prog;
    const pass_kernel *K = &prog->fusion->k[k];
    const ir_graph *g = prog->graph;
    if (c->width == 0) {
        note(c, k, "interpreted: %s", "no code generation on this host (or EMBER_CODEGEN=0)");
        return interpret(c, k, K->nodes, K->nnodes);
    }
    if (K->kind == PASS_KERNEL_POINTWISE) return part(c, k, K->nodes, K->nnodes, &K->space);
    if (K->kind == PASS_KERNEL_CONTRACTION && gemm_nest(c, k)) return 0;
    if (K->kind == PASS_KERNEL_GATHER || K->kind == PASS_KERNEL_COPY) {
        note(c, k, "interpreted: %s", "gathers and copies run their runtime kernels");
        return interpret(c, k, K->nodes, K->nnodes);
    }
    int *pre = malloc((size_t)K->nnodes * sizeof *pre), *post = malloc((size_t)K->nnodes * sizeof *post);
    int *anchors = malloc((size_t)K->nnodes * sizeof *anchors);
    if (!pre || !post || !anchors) return free(pre), free(post), free(anchors), rt_error("em_compile: out of memory");
    int npre = 0, npost = 0, nanch = 0;
    for (int i = 0; i < K->nnodes; i++) {
        const ir_node *x = ir_graph_node(g, K->nodes[i]);
        anchor[x->id] = ir_ops[x->op].kind != IR_KIND_ELEMENTWISE && x->op != IR_OP_CONTIGUOUS;
        memo[x->id] = seen[x->id] = false;
    }
    bool multipass = false;
    const ir_type *post_space = NULL;
    for (int i = 0; i < K->nnodes; i++) {
        const ir_node *x = ir_graph_node(g, K->nodes[i]);
        bool after = after_anchor(prog, x, k, anchor, memo, seen);
        if (anchor[x->id]) {
            anchors[nanch++] = x->id;
            multipass |= after; /* an anchor of an anchor: several passes over the rows */
        } else if (after) {
            post[npost++] = x->id;
            if (!post_space) post_space = &x->type;
            multipass |= !ir_type_same_shape(post_space, &x->type);
        } else {
            pre[npre++] = x->id;
        }
    }
    int st = 0;
    if (whole_nest(c, k, cg_lower_row, c->row_why, sizeof c->row_why)) { /* prologue, anchors, epilogue: one nest */
        free(pre), free(post), free(anchors);
        return 0;
    }
    if (multipass) {
        note(c, k, "interpreted: a row kernel of several passes (%s)", c->row_why);
        st = interpret(c, k, K->nodes, K->nnodes);
    } else {
        st = part(c, k, pre, npre, &K->space);
        if (!st) st = interpret(c, k, anchors, nanch);
        if (!st && npost) st = part(c, k, post, npost, post_space);
    }
    free(pre), free(post), free(anchors);
    return st;
}

/* Values read by a step other than their own, or leaving their kernel. */
static void mark_materialized(const pass_program *prog, cg_schedule *s) {
    const ir_graph *g = prog->graph;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        const ir_node *u = ir_graph_node(g, id);
        if (u->kind != IR_NODE_OP || s->step_of[id] < 0) continue;
        for (int j = 0; j < u->nin; j++) {
            if (!u->in[j]) continue;
            int b = prog->fusion->base_of[u->in[j]->id];
            /* a permuted copy in b's own generated nest takes b's value there */
            const ir_node *of = pass_permuted_copy(u);
            bool copied = of && of->id == b && s->steps[s->step_of[id]].nest >= 0;
            if (s->step_of[b] >= 0 && (s->step_of[b] != s->step_of[id] || (b != u->in[j]->id && !copied)))
                s->materialize[b] = true;
        }
    }
    for (int k = 0; k < prog->fusion->nkernels; k++)
        for (int i = 0; i < prog->fusion->k[k].nouts; i++) s->materialize[prog->fusion->k[k].outs[i]] = true;
    for (int i = 0; i < ir_graph_num_outputs(g); i++) {
        int b = prog->fusion->base_of[ir_graph_output(g, i)->id];
        if (s->step_of[b] >= 0) s->materialize[b] = true;
    }
}

int cg_schedule_build(const pass_program *prog, em_tensor *const *args, int width, cg_schedule *s) {
    memset(s, 0, sizeof *s);
    int n = ir_graph_num_nodes(prog->graph), nk = prog->fusion->nkernels;
    size_t nn = (size_t)(n ? n : 1);
    sched c = {.prog = prog, .args = args, .width = width, .s = s};
    s->step_of = malloc(nn * sizeof *s->step_of);
    s->materialize = calloc(nn, sizeof *s->materialize);
    s->why = calloc((size_t)(nk ? nk : 1), sizeof *s->why);
    s->nwhy = nk;
    bool *anchor = calloc(nn, sizeof *anchor), *memo = calloc(nn, sizeof *memo), *seen = calloc(nn, sizeof *seen);
    int st = s->step_of && s->materialize && s->why && anchor && memo && seen ? 0
             : rt_error("em_compile: out of memory scheduling kernels");
    for (int i = 0; i < n && !st; i++) s->step_of[i] = -1;
    for (int k = 0; k < nk && !st; k++) st = schedule_kernel(&c, k, anchor, memo, seen);
    free(anchor), free(memo), free(seen);
    if (!st) {
        mark_materialized(prog, s);
        /* Lower every nest again with its real stores. */
        for (int i = 0; i < s->nnests; i++) {
            cg_loopnest *ln = &s->nests[i];
            const ir_type *space = &ir_graph_node(prog->graph, ln->nodes[0])->type;
            int nodes[CG_MAX_NEST_NODES], nn2 = ln->nnodes, kernel = ln->kernel;
            memcpy(nodes, ln->nodes, (size_t)nn2 * sizeof *nodes);
            bool ok = ln->is_gemm ? cg_lower_gemm(prog, args, width, kernel, s->materialize, ln)
                      : ln->row   ? cg_lower_row(prog, args, width, kernel, s->materialize, ln)
                                  : cg_lower_nest(prog, args, width, kernel, nodes, nn2, s->materialize, space, ln);
            EM_ASSERT(ok);
        }
    }
    if (st) cg_schedule_free(s);
    return st;
}

void cg_schedule_free(cg_schedule *s) {
    if (!s) return;
    for (int k = 0; s->why && k < s->nwhy; k++) free(s->why[k]);
    free(s->why), free(s->steps), free(s->nests), free(s->step_of), free(s->materialize);
    memset(s, 0, sizeof *s);
}

int cg_schedule_print(const pass_program *prog, const cg_schedule *s, FILE *out) {
    fprintf(out, "; code generation: %d steps, %d generated loop nests\n", s->nsteps, s->nnests);
    int k = -1;
    for (int i = 0; i < s->nsteps; i++) {
        const cg_step *st = &s->steps[i];
        if (st->kernel != k) {
            k = st->kernel;
            fprintf(out, "k%d%s%s\n", k, s->why[k] ? ": " : "", s->why[k] ? s->why[k] : "");
        }
        if (st->nest >= 0) {
            fprintf(out, "  step %d: generated\n", i);
            cg_loopnest_print(&s->nests[st->nest], out);
        } else {
            const ir_node *x = ir_graph_node(prog->graph, st->node);
            fprintf(out, "  step %d: %%%d %s by its runtime kernel\n", i, x->id, ir_ops[x->op].name);
        }
    }
    return ferror(out) ? rt_error("em_dump: write failed") : 0;
}
