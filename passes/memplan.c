/*
 * memplan.c — where every value lives at run time: one arena per call.
 *
 * A compiled call allocates one arena (plus the outputs it returns) instead of
 * one tensor per op, and reuses arena bytes as soon as a value is dead. The
 * plan is made once, at compile time, from the fused graph:
 *
 *  1. Execution order: kernels in the fusion's order, members in graph order.
 *     A step is a kernel (codegen runs a kernel as one loop nest, so its loads
 *     and stores are live together) or, for the interpreter, a node.
 *  2. Homes: arguments and constants stay where they are; a view lives in its
 *     base; a graph output (or the base a returned view reads) gets storage of
 *     its own that the caller owns; every other value a later step reads gets
 *     an arena buffer. With internal=false, values used only inside their
 *     kernel get nothing: they never leave registers.
 *  3. Liveness: a buffer is live from the step that writes it to the last step
 *     that reads it, directly or through a view.
 *  4. In place: an elementwise result may take the buffer of an input of the
 *     same shape and dtype whose last read is this very step, when every read
 *     of that input at this step is at the written index (no view, no
 *     broadcast). Element i is read before it is written, so this is exact.
 *     So may a norm alone in its step (a softmax over attention's scores):
 *     its passes read row element i before the one that writes it.
 *  5. Offsets: buffers chained in place form one slot; slots are placed
 *     largest first at the lowest offset, aligned to PASS_ARENA_ALIGN, that no
 *     slot with an overlapping live range uses (greedy by size, as TFLite's
 *     planner does). Peak (the most bytes live at one step) is what any plan
 *     needs; the arena is usually equal to it or close.
 *
 * Invariants (pass_memplan_verify): slots whose live ranges overlap never
 * share a byte; every buffer is aligned and inside the arena; every value a
 * step reads has a home.
 */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct plan_state {
    pass_memplan *p;
    const pass_fusion *f;
    const ir_graph *g;
    int n;
    int *slot;            /* by buffer: its slot (the first buffer of its chain) */
    bool *taken;          /* by buffer: already overwritten in place */
} plan_state;

static size_t round_up(size_t b) { return (b + PASS_ARENA_ALIGN - 1) / PASS_ARENA_ALIGN * PASS_ARENA_ALIGN; }

/* ---- order and homes ---------------------------------------------------------------- */

/* The execution order: members by step, then by id (graph order). */
static void plan_order(plan_state *s, const int *step_of) {
    pass_memplan *p = s->p;
    int at = 0;
    p->nsteps = 0;
    for (int id = 0; id < s->n; id++) {
        p->step_of[id] = s->f->kernel_of[id] >= 0 ? step_of[id] : -1;
        if (p->step_of[id] >= p->nsteps) p->nsteps = p->step_of[id] + 1;
    }
    for (int st = 0; st < p->nsteps; st++)
        for (int id = 0; id < s->n; id++)
            if (p->step_of[id] == st) p->order[at++] = id;
}

static bool is_output_base(const plan_state *s, int id) {
    for (int i = 0; i < ir_graph_num_outputs(s->g); i++)
        if (s->f->base_of[ir_graph_output(s->g, i)->id] == id) return true;
    return false;
}

static bool leaves_kernel(const plan_state *s, int id) {
    const pass_kernel *K = &s->f->k[s->f->kernel_of[id]];
    for (int i = 0; i < K->nouts; i++) if (K->outs[i] == id) return true;
    return false;
}

static void plan_homes(plan_state *s, const bool *materialize) {
    pass_memplan *p = s->p;
    for (int id = 0; id < s->n; id++) {
        const ir_node *x = ir_graph_node(s->g, id);
        p->buffer_of[id] = -1;
        if (x->kind == IR_NODE_INPUT) p->home[id] = PASS_HOME_ARG;
        else if (x->kind == IR_NODE_CONST) p->home[id] = PASS_HOME_CONST;
        else if (ir_ops[x->op].kind == IR_KIND_VIEW) p->home[id] = PASS_HOME_VIEW;
        else if (is_output_base(s, id)) p->home[id] = PASS_HOME_OUTPUT;
        else if (materialize[id] || leaves_kernel(s, id)) p->home[id] = PASS_HOME_ARENA;
        else p->home[id] = PASS_HOME_NONE;
    }
}

/* ---- buffers, liveness, in place -------------------------------------------------- */

static int plan_buffers(plan_state *s) {
    pass_memplan *p = s->p;
    int nb = 0;
    for (int i = 0; i < s->n; i++) nb += p->home[i] == PASS_HOME_ARENA;
    p->buffers = calloc((size_t)(nb ? nb : 1), sizeof *p->buffers);
    s->slot = malloc((size_t)(nb ? nb : 1) * sizeof *s->slot);
    s->taken = calloc((size_t)(nb ? nb : 1), sizeof *s->taken);
    if (!p->buffers || !s->slot || !s->taken) return rt_error("pass memplan: out of memory");
    /* In order of first step: walk the execution order. */
    int total = 0;
    for (int k = 0; k < s->f->nkernels; k++) total += s->f->k[k].nnodes;
    for (int i = 0; i < total; i++) {
        int id = p->order[i];
        if (p->home[id] != PASS_HOME_ARENA) continue;
        pass_buffer *b = &p->buffers[p->nbuffers];
        b->node = id;
        b->bytes = ir_type_bytes(&ir_graph_node(s->g, id)->type);
        b->first = b->last = p->step_of[id];
        b->inplace_of = -1;
        s->slot[p->nbuffers] = p->nbuffers;
        p->buffer_of[id] = p->nbuffers++;
        p->naive_bytes += round_up(b->bytes);
    }
    /* Last reads, through views too. */
    for (int id = 0; id < s->n; id++) {
        const ir_node *u = ir_graph_node(s->g, id);
        if (u->kind != IR_NODE_OP || p->step_of[id] < 0) continue;
        for (int j = 0; j < u->nin; j++) {
            if (!u->in[j]) continue;
            int bi = p->buffer_of[s->f->base_of[u->in[j]->id]];
            if (bi >= 0 && p->buffers[bi].last < p->step_of[id]) p->buffers[bi].last = p->step_of[id];
        }
    }
    return 0;
}

/* Whether a node at step st reads the value of node u (directly or through a view). */
static bool read_at(const plan_state *s, int u, int st) {
    for (int id = 0; id < s->n; id++) {
        const ir_node *x = ir_graph_node(s->g, id);
        if (x->kind != IR_NODE_OP || s->p->step_of[id] != st) continue;
        for (int j = 0; j < x->nin; j++)
            if (x->in[j] && s->f->base_of[x->in[j]->id] == u) return true;
    }
    return false;
}

/* Whether every read of buffer node `u` at step `st` is at the index written by
 * node `n` (same type, no view), so n's result may overwrite u. */
static bool reads_in_place(const plan_state *s, int u, int n, int st) {
    const pass_memplan *p = s->p;
    const ir_node *w = ir_graph_node(s->g, n), *src = ir_graph_node(s->g, u);
    if (!ir_type_same(&w->type, &src->type)) return false;
    for (int id = 0; id < s->n; id++) {
        const ir_node *x = ir_graph_node(s->g, id);
        if (x->kind != IR_NODE_OP || p->step_of[id] != st) continue;
        /* A step with a reduction or a norm makes several passes, each reading
         * its inputs again: nothing it reads may be overwritten during it. */
        if (ir_ops[x->op].kind == IR_KIND_REDUCTION || ir_ops[x->op].kind == IR_KIND_NORM) {
            bool alone = true; /* an interpreted node alone in its step reads all before writing */
            for (int o = 0; o < s->n && alone; o++)
                alone = o == id || p->step_of[o] != st || ir_graph_node(s->g, o)->kind != IR_NODE_OP;
            if (!alone) return false;
        }
        for (int j = 0; j < x->nin; j++) {
            if (!x->in[j] || s->f->base_of[x->in[j]->id] != u) continue;
            /* the writer itself, a norm alone in its step, reads row element i
             * at the index it writes (plan_inplace) */
            bool elementwise = ir_ops[x->op].kind == IR_KIND_ELEMENTWISE || x->id == n;
            if (x->in[j]->id != u || !elementwise || !ir_type_same(&x->type, &w->type)) return false;
        }
    }
    return true;
}

static void plan_inplace(plan_state *s) {
    pass_memplan *p = s->p;
    for (int bi = 0; bi < p->nbuffers; bi++) {
        pass_buffer *b = &p->buffers[bi];
        const ir_node *n = ir_graph_node(s->g, b->node);
        /* The writer must be elementwise (an interpreted node or a member of a
         * generated loop nest: either reads element i before writing it), or
         * a norm alone in its step (reads_in_place): a row kernel of its own,
         * or an interpreted node, whose passes read row element i before the
         * pass that writes it, and no pass after that reads its input again
         * (softmax's last pass rescales what it wrote; layer_norm's writes
         * once, from the input). So attention's softmax takes its scores'
         * buffer. */
        ir_kind kind = ir_ops[n->op].kind;
        if (kind != IR_KIND_ELEMENTWISE && kind != IR_KIND_NORM) continue;
        /* Candidates: buffers some node of this step reads, directly. */
        for (int i = 0; i < p->nbuffers; i++) {
            int u = p->buffers[i].node;
            if (!read_at(s, u, b->first)) continue;
            int ui = u >= 0 ? p->buffer_of[u] : -1;
            if (ui < 0 || ui == bi || s->taken[ui] || p->buffers[ui].last != b->first ||
                p->buffers[ui].first >= b->first)
                continue; /* a dead input written by an earlier step */
            if (!reads_in_place(s, u, b->node, b->first)) continue;
            s->taken[ui] = true;
            b->inplace_of = u;
            s->slot[bi] = s->slot[ui];
            break;
        }
    }
}

/* ---- offsets ------------------------------------------------------------------------ */

typedef struct slot_info {
    int id;               /* buffer index of the slot's first buffer */
    size_t bytes;         /* aligned */
    int first, last;
    size_t offset;
} slot_info;

static int by_size(const void *a, const void *b) {
    const slot_info *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->first - y->first;
}

static int plan_offsets(plan_state *s) {
    pass_memplan *p = s->p;
    int ns = 0;
    slot_info *sl = calloc((size_t)(p->nbuffers ? p->nbuffers : 1), sizeof *sl);
    int *at = malloc((size_t)(p->nbuffers ? p->nbuffers : 1) * sizeof *at);
    if (!sl || !at) return free(sl), free(at), rt_error("pass memplan: out of memory");
    for (int bi = 0; bi < p->nbuffers; bi++) {
        const pass_buffer *b = &p->buffers[bi];
        if (s->slot[bi] == bi) at[bi] = ns, sl[ns++] = (slot_info){bi, 0, b->first, b->last, 0};
        slot_info *x = &sl[at[s->slot[bi]]];
        if (round_up(b->bytes) > x->bytes) x->bytes = round_up(b->bytes);
        if (b->first < x->first) x->first = b->first;
        if (b->last > x->last) x->last = b->last;
    }
    qsort(sl, (size_t)ns, sizeof *sl, by_size);
    for (int i = 0; i < ns; i++) {
        /* Lowest offset clear of every placed slot live at the same time. */
        size_t off = 0;
        bool moved = true;
        while (moved) {
            moved = false;
            for (int j = 0; j < i; j++) {
                if (sl[j].last < sl[i].first || sl[i].last < sl[j].first) continue;
                if (off < sl[j].offset + sl[j].bytes && sl[j].offset < off + sl[i].bytes) {
                    off = sl[j].offset + sl[j].bytes;
                    moved = true;
                }
            }
        }
        sl[i].offset = off;
        if (off + sl[i].bytes > p->arena_bytes) p->arena_bytes = off + sl[i].bytes;
    }
    for (int i = 0; i < ns; i++) at[sl[i].id] = i;
    for (int bi = 0; bi < p->nbuffers; bi++) p->buffers[bi].offset = sl[at[s->slot[bi]]].offset;
    /* Peak: the most slot bytes live at one step. */
    for (int st = 0; st < p->nsteps; st++) {
        size_t live = 0;
        for (int i = 0; i < ns; i++) if (sl[i].first <= st && st <= sl[i].last) live += sl[i].bytes;
        if (live > p->peak_bytes) p->peak_bytes = live;
    }
    free(sl), free(at);
    return 0;
}

pass_memplan *pass_memplan_run(const pass_fusion *f, bool internal) {
    if (!f) return rt_error("pass_memplan_run: the fusion is NULL"), NULL;
    bool *all = malloc((size_t)(f->nkernels ? f->nkernels : 1) * sizeof *all);
    if (!all) return rt_error("pass_memplan_run: out of memory"), NULL;
    for (int k = 0; k < f->nkernels; k++) all[k] = internal;
    pass_memplan *p = pass_memplan_run_kernels(f, all);
    free(all);
    return p;
}

pass_memplan *pass_memplan_run_kernels(const pass_fusion *f, const bool *interpreted) {
    if (!f || !interpreted) return rt_error("pass_memplan_run_kernels: NULL argument"), NULL;
    int n = ir_graph_num_nodes(f->g);
    int *step_of = malloc((size_t)(n ? n : 1) * sizeof *step_of);
    bool *mat = calloc((size_t)(n ? n : 1), sizeof *mat);
    pass_memplan *p = NULL;
    if (step_of && mat) {
        int step = 0;
        for (int k = 0; k < f->nkernels; k++) {
            for (int i = 0; i < f->k[k].nnodes; i++) {
                step_of[f->k[k].nodes[i]] = interpreted[k] ? step++ : step;
                mat[f->k[k].nodes[i]] = interpreted[k];
            }
            if (!interpreted[k]) step++;
        }
        p = pass_memplan_run_steps(f, step_of, mat);
        if (p)
            for (int k = 0; k < f->nkernels; k++) p->internal &= interpreted[k];
    } else {
        rt_error("pass_memplan_run_kernels: out of memory");
    }
    free(step_of), free(mat);
    return p;
}

pass_memplan *pass_memplan_run_steps(const pass_fusion *f, const int *step_of, const bool *materialize) {
    if (!f || !step_of || !materialize) return rt_error("pass_memplan_run_steps: NULL argument"), NULL;
    int n = ir_graph_num_nodes(f->g);
    size_t nn = (size_t)(n ? n : 1);
    pass_memplan *p = calloc(1, sizeof *p);
    plan_state s = {.p = p, .f = f, .g = f->g, .n = n};
    if (p) {
        p->f = f, p->internal = true;
        p->order = malloc(nn * sizeof *p->order);
        p->step_of = malloc(nn * sizeof *p->step_of);
        p->home = malloc(nn * sizeof *p->home);
        p->buffer_of = malloc(nn * sizeof *p->buffer_of);
    }
    int st = p && p->order && p->step_of && p->home && p->buffer_of ? 0
             : rt_error("pass_memplan_run: out of memory");
    if (!st) {
        for (int i = 0; i < n; i++) p->step_of[i] = -1;
        plan_order(&s, step_of);
        int members = 0;
        for (int k = 0; k < f->nkernels; k++) members += f->k[k].nnodes;
        for (int i = 1; i < members; i++) /* node-level: no step holds two nodes */
            if (p->step_of[p->order[i]] == p->step_of[p->order[i - 1]]) p->internal = false;
        plan_homes(&s, materialize);
        st = plan_buffers(&s);
    }
    if (!st) plan_inplace(&s);
    if (!st) st = plan_offsets(&s);
    free(s.slot), free(s.taken);
    if (st) {
        pass_memplan_destroy(p);
        return NULL;
    }
    return p;
}

void pass_memplan_destroy(pass_memplan *p) {
    if (!p) return;
    free(p->order), free(p->step_of), free(p->home), free(p->buffer_of), free(p->buffers);

    free(p);
}

/* ---- checking and printing ------------------------------------------------------------ */

/* The slot a buffer belongs to: follow in-place links to the chain's start. */
static int chain_start(const pass_memplan *p, int bi) {
    while (p->buffers[bi].inplace_of >= 0) bi = p->buffer_of[p->buffers[bi].inplace_of];
    return bi;
}

int pass_memplan_verify(const pass_memplan *p) {
    for (int i = 0; i < p->nbuffers; i++) {
        const pass_buffer *a = &p->buffers[i];
        if (a->offset % PASS_ARENA_ALIGN || a->offset + a->bytes > p->arena_bytes)
            return rt_error("memplan: %%%d at %zu (+%zu) is misaligned or outside the arena of %zu",
                            a->node, a->offset, a->bytes, p->arena_bytes);
        if (a->first > a->last) return rt_error("memplan: %%%d has an empty live range", a->node);
        for (int j = 0; j < i; j++) {
            const pass_buffer *b = &p->buffers[j];
            if (chain_start(p, i) == chain_start(p, j)) continue;
            bool time = !(a->last < b->first || b->last < a->first);
            bool space = a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
            if (time && space)
                return rt_error("memplan: %%%d and %%%d are live together and overlap in the arena",
                                a->node, b->node);
        }
    }
    const ir_graph *g = p->f->g;
    int total = 0;
    for (int k = 0; k < p->f->nkernels; k++) total += p->f->k[k].nnodes;
    for (int i = 0; i < total; i++) {
        const ir_node *x = ir_graph_node(g, p->order[i]);
        bool own_step = true; /* alone in its step: interpreted, reads need homes */
        for (int j = 0; j < total; j++)
            if (j != i && p->step_of[p->order[j]] == p->step_of[x->id]) own_step = false;
        if (!own_step) continue;
        for (int j = 0; j < x->nin; j++)
            if (x->in[j] && p->home[p->f->base_of[x->in[j]->id]] == PASS_HOME_NONE)
                return rt_error("memplan: %%%d reads %%%d, which has no home", x->id, x->in[j]->id);
    }
    for (int k = 0; k < p->f->nkernels; k++)
        for (int i = 0; i < p->f->k[k].nloads; i++)
            if (p->home[p->f->k[k].loads[i]] == PASS_HOME_NONE)
                return rt_error("memplan: k%d loads %%%d, which has no home", k, p->f->k[k].loads[i]);
    return 0;
}

int pass_memplan_print(const pass_memplan *p, FILE *out) {
    const ir_graph *g = p->f->g;
    char sh[96];
    fprintf(out, "; memplan of %s: %d buffer%s in an arena of %zu bytes; peak live %zu, no reuse %zu; "
                 "%d steps (%s)\n",
            ir_graph_name(g), p->nbuffers, p->nbuffers == 1 ? "" : "s", p->arena_bytes, p->peak_bytes,
            p->naive_bytes, p->nsteps, p->internal ? "nodes: the interpreter" : "kernels and parts of kernels");
    for (int i = 0; i < p->nbuffers; i++) {
        const pass_buffer *b = &p->buffers[i];
        const ir_node *x = ir_graph_node(g, b->node);
        fprintf(out, "%%%-4d %-12s %s%-16s %10zu B  @ %-10zu steps %d..%d", b->node, ir_ops[x->op].name,
                em_dtype_name(x->type.dtype), rt_shape_str(sh, sizeof sh, x->type.ndim, x->type.shape),
                b->bytes, b->offset, b->first, b->last);
        if (b->inplace_of >= 0) fprintf(out, "  in place of %%%d", b->inplace_of);
        fprintf(out, "\n");
    }
    size_t obytes = 0;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        if (p->home[id] != PASS_HOME_OUTPUT) continue;
        const ir_node *x = ir_graph_node(g, id);
        fprintf(out, "%%%-4d %-12s %s%-16s %10zu B  caller-owned output\n", id, ir_ops[x->op].name,
                em_dtype_name(x->type.dtype), rt_shape_str(sh, sizeof sh, x->type.ndim, x->type.shape),
                ir_type_bytes(&x->type));
        obytes += ir_type_bytes(&x->type);
    }
    fprintf(out, "; arena %zu B + outputs %zu B per call\n", p->arena_bytes, obytes);
    return ferror(out) ? rt_error("em_dump: write failed") : 0;
}
