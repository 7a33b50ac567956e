/*
 * trace.c — recording a user's function as a graph by running it on proxies.
 *
 * A compiled function's first call with new guards runs the user's C function
 * once with proxy tensors in place of its tensor arguments. A proxy has the
 * argument's dtype, shape and strides but no data; its aux field points at the
 * graph node it stands for. Each public op that sees a proxy (fe_dispatch)
 * checks the call with the op's shape rule exactly as eager mode would, adds a
 * node, and returns a new proxy for it. Real tensors that meet proxies (weights
 * in globals, em_scalar constants) become constant nodes captured by
 * reference; ops on real tensors alone still run eagerly, so their results are
 * constants folded at trace time.
 *
 * Reading a proxy's data (em_read, em_item) cannot be recorded: it is a graph
 * break, noted here so the caller can fall back to eager (or fail, with
 * fullgraph). An op that fails while tracing marks the trace failed and
 * returns NULL, just as the eager op would have.
 *
 * The trace is thread-local: other threads keep running eagerly (or their own
 * traces) meanwhile, and a proxy used outside its trace is an error, not a
 * crash. Each trace has an id, so a proxy leaked from an earlier trace (kept in
 * a global) is recognised as stale.
 */
#include "frontend.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local fe_trace *current;
static atomic_uint_fast64_t next_id = 1;

void fe_trace_begin(fe_trace *t, ir_graph *g) {
    memset(t, 0, sizeof *t);
    t->graph = g;
    t->id = atomic_fetch_add(&next_id, 1);
    current = t;
}

void fe_trace_end(fe_trace *t) {
    if (current == t) current = NULL;
}

fe_trace *fe_trace_current(void) { return current; }

bool fe_is_proxy(const em_tensor *x) { return x && x->aux != NULL; }

em_tensor *fe_proxy_new(fe_trace *t, ir_node *n, const int64_t *strides) {
    em_tensor *p = rt_malloc(sizeof *p, "trace");
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    atomic_init(&p->refs, 1);
    p->dtype = n->type.dtype;
    p->ndim = n->type.ndim;
    p->numel = 1;
    for (int i = 0; i < p->ndim; i++) p->shape[i] = n->type.shape[i], p->numel *= p->shape[i];
    if (strides) memcpy(p->strides, strides, sizeof p->strides);
    else rt_tensor_contig_strides(p->ndim, p->shape, p->strides);
    p->aux = n;
    p->aux_id = t->id;
    return p;
}

ir_node *fe_trace_node_of(fe_trace *t, em_tensor *x) {
    if (!fe_is_proxy(x)) return ir_graph_add_const(t->graph, x);
    if (x->aux_id != t->id) {
        rt_error("a tensor from an earlier trace was used (kept in a global?)");
        return NULL;
    }
    return x->aux;
}

em_tensor *fe_trace_record(fe_trace *t, ir_op op, const char *api, em_tensor *const *in, int nin,
                           ir_attrs *attrs, uintptr_t site) {
    enum { SMALL = 8 };
    ir_node *small[SMALL] = {0}, **nodes = small;
    if (nin > SMALL && !(nodes = rt_malloc((size_t)nin * sizeof *nodes, api))) goto fail;
    for (int i = 0; i < nin; i++) {
        nodes[i] = in[i] ? fe_trace_node_of(t, in[i]) : NULL;
        if (in[i] && !nodes[i]) goto fail;
    }
    ir_node *n = ir_graph_add_node(t->graph, op, api, nodes, nin, attrs, site);
    if (nodes != small) free(nodes);
    nodes = small;
    /* A view's proxy has the strides eager would give it, so code that looks
     * at layouts (em_strides, em_is_contiguous) takes the same path. */
    int64_t st[EM_MAX_DIMS], off;
    bool view = n && ir_ops[op].kind == IR_KIND_VIEW && ir_view_layout(op, in[0], &n->attrs, &n->type, st, &off);
    em_tensor *p = n ? fe_proxy_new(t, n, view ? st : NULL) : NULL;
    if (!p) goto fail;
    return rt_scope_adopt(p);
fail:
    if (nodes != small) free(nodes);
    t->failed = true;
    return NULL;
}

int fe_trace_break(const char *api, const em_tensor *x, uintptr_t site) {
    fe_trace *t = current;
    char where[128];
    ir_site_str(site, where, sizeof where);
    if (!t || x->aux_id != t->id)
        return rt_error("%s: a tensor from a trace was read outside it (kept in a global?)", api);
    if (!t->brk[0])
        snprintf(t->brk, sizeof t->brk, "%s reads a traced tensor's data%s%s", api,
                 where[0] ? " at " : "", where);
    return rt_error("%s: graph break: the data of a traced tensor is not known while tracing", api);
}
