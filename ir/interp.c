/*
 * interp.c — running a graph with the eager adapters.
 *
 * The interpreter is the reference executor: it runs every op node through
 * ir_ops[op].eager, the very adapters a public eager call goes through, with
 * the node's normalised attributes and type. So an interpreted graph computes
 * what the traced function computed eagerly, bit for bit, and it is the
 * executor of compiled functions until codegen lands.
 *
 * Values: an input node's value is the caller's argument and a constant's is
 * its tensor, both borrowed; an op node's value is the new reference its
 * adapter returned, owned here. Each owned value keeps a count of the uses it
 * still has to serve and is released right after its last user has run (at
 * once if it has none), so peak memory is what the node order needs, not the
 * whole graph. Values that are outputs are kept to the end.
 *
 * Invariants: arguments are checked against the input nodes' types before
 * anything runs (the adapters assume checked types); outs receives one new
 * reference per output (an output that is an input or a constant is retained);
 * on failure every owned value is released, outs is cleared and the adapter's
 * error message is left in place.
 */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

typedef struct run_state {
    const ir_graph *g;
    em_tensor **val;     /* per node: its value (owned for op nodes) */
    int *left;           /* per node: uses by op nodes not yet run */
    bool *keep;          /* per node: an output */
    em_tensor **scratch; /* operand values of one node */
} run_state;

static int check_args(const ir_graph *g, em_tensor *const *args) {
    for (int i = 0; i < ir_graph_num_inputs(g); i++) {
        const ir_node *n = ir_graph_input(g, i);
        if (!n) continue;
        em_tensor *a = args ? args[i] : NULL;
        if (!a) return rt_error("ir_graph_run: graph %s: argument %d is NULL", ir_graph_name(g), i);
        ir_type t;
        ir_type_of(a, &t);
        bool same = ir_type_same(&t, &n->type);
        if (!same) {
            char want[96], got[96];
            return rt_error("ir_graph_run: graph %s: argument %d is %s%s; the graph takes %s%s",
                            ir_graph_name(g), i, em_dtype_name(t.dtype),
                            rt_shape_str(got, sizeof got, t.ndim, t.shape), em_dtype_name(n->type.dtype),
                            rt_shape_str(want, sizeof want, n->type.ndim, n->type.shape));
        }
    }
    return 0;
}

static void state_free(run_state *s) {
    free(s->val);
    free(s->left);
    free(s->keep);
    free(s->scratch);
}

static int state_init(run_state *s, const ir_graph *g) {
    int nn = ir_graph_num_nodes(g), maxin = 1;
    memset(s, 0, sizeof *s);
    s->g = g;
    for (int i = 0; i < nn; i++)
        if (ir_graph_node(g, i)->nin > maxin) maxin = ir_graph_node(g, i)->nin;
    size_t n = (size_t)(nn ? nn : 1);
    s->val = rt_malloc(n * sizeof *s->val, "ir_graph_run");
    s->left = s->val ? rt_malloc(n * sizeof *s->left, "ir_graph_run") : NULL;
    s->keep = s->left ? rt_malloc(n * sizeof *s->keep, "ir_graph_run") : NULL;
    s->scratch = s->keep ? rt_malloc((size_t)maxin * sizeof *s->scratch, "ir_graph_run") : NULL;
    if (!s->scratch) {
        state_free(s);
        return -1;
    }
    memset(s->val, 0, n * sizeof *s->val);
    memset(s->left, 0, n * sizeof *s->left);
    memset(s->keep, 0, n * sizeof *s->keep);
    for (int i = 0; i < nn; i++) {
        const ir_node *x = ir_graph_node(g, i);
        for (int k = 0; k < x->nin; k++)
            if (x->in[k]) s->left[x->in[k]->id]++;
    }
    for (int k = 0; k < ir_graph_num_outputs(g); k++) s->keep[ir_graph_output(g, k)->id] = true;
    return 0;
}

/* Releases every value still owned (op nodes only). */
static void release_owned(run_state *s) {
    for (int i = 0; i < ir_graph_num_nodes(s->g); i++)
        if (ir_graph_node(s->g, i)->kind == IR_NODE_OP) {
            em_release(s->val[i]);
            s->val[i] = NULL;
        }
}

/* Drops an op node's value once nothing still needs it. */
static void maybe_release(run_state *s, const ir_node *x) {
    if (x->kind == IR_NODE_OP && s->left[x->id] == 0 && !s->keep[x->id]) {
        em_release(s->val[x->id]);
        s->val[x->id] = NULL;
    }
}

static int run_node(run_state *s, const ir_node *n, em_tensor *const *args) {
    switch (n->kind) {
    case IR_NODE_INPUT: s->val[n->id] = args[n->arg]; return 0;
    case IR_NODE_CONST: s->val[n->id] = n->value; return 0;
    case IR_NODE_OP: break;
    }
    for (int k = 0; k < n->nin; k++) s->scratch[k] = n->in[k] ? s->val[n->in[k]->id] : NULL;
    em_tensor *r = ir_ops[n->op].eager(n->op, s->scratch, n->nin, &n->attrs, &n->type, NULL);
    if (!r) return -1;
    s->val[n->id] = r;
    for (int k = 0; k < n->nin; k++)
        if (n->in[k]) {
            s->left[n->in[k]->id]--;
            maybe_release(s, n->in[k]);
        }
    maybe_release(s, n); /* a dead node */
    return 0;
}

int ir_graph_run(const ir_graph *g, em_tensor *const *args, em_tensor **outs) {
    int nout = ir_graph_num_outputs(g);
    if (nout > 0 && !outs) return rt_error("ir_graph_run: graph %s: outs is NULL", ir_graph_name(g));
    for (int k = 0; k < nout; k++) outs[k] = NULL;
    if (check_args(g, args)) return -1;
    run_state s;
    if (state_init(&s, g)) return -1;
    for (int i = 0; i < ir_graph_num_nodes(g); i++)
        if (run_node(&s, ir_graph_node(g, i), args)) {
            release_owned(&s);
            state_free(&s);
            return -1;
        }
    for (int k = 0; k < nout; k++) outs[k] = em_retain(s.val[ir_graph_output(g, k)->id]);
    release_owned(&s);
    state_free(&s);
    return 0;
}
