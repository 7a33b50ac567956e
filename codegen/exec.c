/*
 * exec.c — running a planned program: kernel by kernel, into the arena.
 *
 * This is the executor of compiled graphs until every kernel is generated
 * code, and the fallback for kernels codegen does not generate. It runs the
 * nodes of each kernel in the plan's order with the eager adapters (so a
 * result is the value eager mode computes), but writes each result where the
 * memory plan put it: an arena buffer at its offset (possibly over a dead
 * input, in place), or the storage of a graph output that the caller will
 * own. Views are headers over their base, made when first read.
 *
 * One arena per call, of the plan's arena_bytes. The last arena used is kept
 * for the next call (taken with an atomic exchange, so concurrent calls each
 * get their own and never share one); em_compiled_free releases it.
 *
 * Invariants: the plan must materialise every value a node reads (a plan made
 * with internal=true); on failure every value made so far is released and
 * outs is left empty; arguments are only read.
 */
#include "codegen.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct cg_exec {
    const pass_program *prog;
    _Atomic(em_tensor *) spare; /* an arena tensor kept between calls, or NULL */
    int maxin;
};

cg_exec *cg_exec_create(const pass_program *prog) {
    if (!prog || !prog->plan || !prog->plan->internal)
        return rt_error("cg_exec_create: the program has no node-level memory plan"), NULL;
    cg_exec *e = rt_malloc(sizeof *e, "em_compile");
    if (!e) return NULL;
    e->prog = prog;
    atomic_init(&e->spare, NULL);
    e->maxin = 1;
    for (int i = 0; i < ir_graph_num_nodes(prog->graph); i++)
        if (ir_graph_node(prog->graph, i)->nin > e->maxin) e->maxin = ir_graph_node(prog->graph, i)->nin;
    return e;
}

void cg_exec_destroy(cg_exec *e) {
    if (!e) return;
    em_release(atomic_exchange(&e->spare, NULL));
    free(e);
}

size_t cg_exec_arena_bytes(const cg_exec *e) { return e->prog->plan->arena_bytes; }

typedef struct run {
    const pass_program *prog;
    em_tensor *const *args;
    em_tensor **val;      /* per node; owned for op nodes */
    em_tensor *arena;
} run;

/* The value of node x: argument, constant, planned buffer, or a view made now. */
static em_tensor *value(run *r, const ir_node *x) {
    if (x->kind == IR_NODE_INPUT) return r->args[x->arg];
    if (x->kind == IR_NODE_CONST) return x->value;
    if (r->val[x->id]) return r->val[x->id];
    EM_ASSERT(ir_ops[x->op].kind == IR_KIND_VIEW);
    em_tensor *base = value(r, x->in[0]);
    if (!base) return NULL;
    return r->val[x->id] = ir_ops[x->op].eager(x->op, &base, 1, &x->attrs, &x->type, NULL);
}

/* Headers for every arena buffer and fresh storage for every output. */
static int place(run *r) {
    const pass_memplan *p = r->prog->plan;
    const ir_graph *g = r->prog->graph;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        const ir_node *x = ir_graph_node(g, id);
        if (p->home[id] == PASS_HOME_OUTPUT)
            r->val[id] = rt_tensor_new("compiled call", x->type.dtype, x->type.ndim, x->type.shape, false);
        else if (p->home[id] == PASS_HOME_ARENA)
            r->val[id] = rt_tensor_at(r->arena->storage, x->type.dtype, x->type.ndim, x->type.shape,
                                      p->buffers[p->buffer_of[id]].offset);
        else continue;
        if (!r->val[id]) return -1;
    }
    return 0;
}

static int step(run *r, const ir_node *x, em_tensor **in) {
    for (int j = 0; j < x->nin; j++) {
        in[j] = x->in[j] ? value(r, x->in[j]) : NULL;
        if (x->in[j] && !in[j]) return -1;
    }
    em_tensor *dst = r->val[x->id];
    em_tensor *res = ir_ops[x->op].eager(x->op, in, x->nin, &x->attrs, &x->type, dst);
    if (!res) return -1;
    EM_ASSERT(res == dst);
    em_release(res);
    return 0;
}

static em_tensor *take_arena(cg_exec *e) {
    em_tensor *a = atomic_exchange(&e->spare, NULL);
    if (a) return a;
    int64_t n = (int64_t)(e->prog->plan->arena_bytes / sizeof(float));
    return rt_tensor_new("compiled call", EM_F32, 1, &n, false);
}

static void give_arena(cg_exec *e, em_tensor *a) {
    em_tensor *none = NULL;
    if (a && !atomic_compare_exchange_strong(&e->spare, &none, a)) em_release(a);
}

int cg_exec_run(cg_exec *e, em_tensor *const *args, em_tensor **outs) {
    const pass_program *prog = e->prog;
    const ir_graph *g = prog->graph;
    int nn = ir_graph_num_nodes(g), nout = ir_graph_num_outputs(g);
    run r = {.prog = prog, .args = args};
    for (int i = 0; i < nout; i++) outs[i] = NULL;
    r.val = rt_malloc((size_t)(nn ? nn : 1) * sizeof *r.val, "compiled call");
    em_tensor **in = rt_malloc((size_t)e->maxin * sizeof *in, "compiled call");
    r.arena = in && r.val ? take_arena(e) : NULL;
    int st = r.arena ? 0 : -1;
    if (r.val) memset(r.val, 0, (size_t)(nn ? nn : 1) * sizeof *r.val);
    if (!st) st = place(&r);
    for (int i = 0; i < prog->plan->nsteps && !st; i++)
        st = step(&r, ir_graph_node(g, prog->plan->order[i]), in);
    for (int i = 0; i < nout && !st; i++) {
        em_tensor *v = value(&r, ir_graph_output(g, i));
        if (!v) st = -1;
        else outs[i] = em_retain(v);
    }
    if (st)
        for (int i = 0; i < nout; i++) em_release(outs[i]), outs[i] = NULL;
    if (r.val)
        for (int id = 0; id < nn; id++) em_release(r.val[id]);
    give_arena(e, r.arena);
    free(r.val);
    free(in);
    return st;
}
