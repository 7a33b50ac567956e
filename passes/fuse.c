/*
 * fuse.c — grouping op nodes into kernels.
 *
 * A kernel is what codegen turns into one loop nest: values computed inside it
 * stay in registers, and only the values a later kernel (or the caller) reads
 * are written to memory. Fusion therefore decides the memory traffic of a
 * compiled call. The rules, applied in one walk in graph order (inputs before
 * users), each node joining the kernels of its producers when it may:
 *
 *  - elementwise ops (and contiguous, an elementwise copy) join a producer's
 *    kernel when they read the producer's value directly, at the same shape:
 *    reading it through a view would compute it at other indices, and reading
 *    it broadcast would recompute it for each broadcast element, so in those
 *    cases the producer's value is written to memory and read with strides.
 *    Operands from outside a kernel (arguments, weights, other kernels' values)
 *    may be views and broadcasts of any kind: they are loads with strides.
 *  - a reduction or a norm (softmax, log_softmax, layer_norm, rms_norm) joins
 *    the elementwise kernel that computes its input: the prologue runs in the
 *    reduction's pass. Elementwise consumers of the result at the result's
 *    shape join as an epilogue. When the reduction is over the last axis, the
 *    kernel is a row kernel that may make several passes over each row (at
 *    most FUSE_MAX_PASSES): an elementwise op that reads a reduced value
 *    broadcast back over the row, and a further reduction of such values,
 *    join as later passes. So a softmax or a layer_norm written by hand with
 *    max, sum, mean, exp and divide is one kernel, like the native ops. Over
 *    another axis, such a consumer is not fused: the reduced value is written
 *    to memory and read with a broadcast.
 *  - a contraction (matmul, linear) takes an elementwise epilogue (bias,
 *    activation, residual add, scale) but no prologue: its operands are read
 *    by the GEMM from memory. A contiguous copy of a permutation of its value
 *    (attention's heads merged back, o.permute(1, 0, 2).contiguous()) joins
 *    it too, stored from the tile through the permutation
 *    (pass_permuted_copy); what reads that copy does not join. The cheap
 *    prologues come before fusion: a transposed operand is only strides, and
 *    a power-of-two scale of an operand has become a scale of the result
 *    (scale.c).
 *  - embedding and concat are kernels of their own.
 *  - an op whose producers sit in several elementwise kernels of its shape
 *    merges them all (x*a+b and sigmoid(x) feeding one multiply: one kernel);
 *    a kernel holds at most one anchor (reduction level, norm or contraction).
 *  - after the walk, independent kernels over the same iteration space that
 *    read a common value are merged (horizontal fusion), so that value is read
 *    once: mean(x) and mean(x*x) become one pass.
 *  No merge may create a cycle between kernels (checked on every merge), and no
 *  value is ever computed twice.
 *
 * Composite ops are understood natively rather than decomposed: softmax,
 * log_softmax, layer_norm and rms_norm are row kernels with a known, stable
 * algorithm (max-shifted exponentials, two-moment statistics), which fusion
 * extends with a prologue and an epilogue; gelu and silu are elementwise ops;
 * linear is a contraction whose bias is part of its epilogue. Decomposing them
 * would make fusion rediscover the same patterns and codegen the same loops,
 * with more nodes to plan and compile.
 *
 * Views belong to no kernel: each consumer reads the view's base (base_of)
 * with the view's strides.
 */
#include "passes.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Passes over the rows a reduce kernel may make: mean, then variance, then the
 * normalised output is a hand-written layer_norm; more is unusual and long. */
enum { FUSE_MAX_PASSES = 3 };

typedef struct group {
    pass_kernel_kind kind;
    ir_type space;        /* level-0 shape */
    int anchor;           /* first anchor node, -1 */
    int parent;           /* union-find: itself when a representative */
    int first;            /* smallest member id */
    char why[160];
} group;

typedef struct fuse_state {
    const ir_graph *g;
    pass_fusion *f;
    int n;
    group *gr;
    int ngroups;
    int *level;           /* by node: the pass over the kernel's space that computes it:
                             0 before any anchor, 1 + the pass of an anchor's input */
    int *mark;            /* scratch, by group */
} fuse_state;

const char *pass_kernel_kind_name(pass_kernel_kind k) {
    static const char *names[] = {"pointwise", "reduce", "norm", "contraction", "gather", "copy"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static int find(fuse_state *s, int k) {
    while (s->gr[k].parent != k) k = s->gr[k].parent = s->gr[s->gr[k].parent].parent;
    return k;
}

/* The kernel of node id (a representative), or -1. */
static int group_of(fuse_state *s, int id) {
    int k = s->f->kernel_of[id];
    return k < 0 ? -1 : find(s, k);
}

static void set_why(fuse_state *s, const ir_node *n, const char *fmt, ...) {
    if (s->f->why[n->id]) return; /* the first reason is the one shown */
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->f->why[n->id] = strdup(buf);
}

static bool is_elementwise(const ir_node *n) {
    return ir_ops[n->op].kind == IR_KIND_ELEMENTWISE || n->op == IR_OP_CONTIGUOUS;
}

static pass_kernel_kind kind_of(const ir_node *n) {
    switch (ir_ops[n->op].kind) {
    case IR_KIND_REDUCTION: return PASS_KERNEL_REDUCE;
    case IR_KIND_NORM: return PASS_KERNEL_NORM;
    case IR_KIND_CONTRACTION: return PASS_KERNEL_CONTRACTION;
    case IR_KIND_GATHER: return PASS_KERNEL_GATHER;
    case IR_KIND_COPY: return n->op == IR_OP_CONTIGUOUS ? PASS_KERNEL_POINTWISE : PASS_KERNEL_COPY;
    default: return PASS_KERNEL_POINTWISE;
    }
}

const ir_node *pass_permuted_copy(const ir_node *n) {
    if (!n || n->kind != IR_NODE_OP || n->op != IR_OP_CONTIGUOUS || n->nin < 1 || !n->in[0]) return NULL;
    const ir_node *p = n->in[0], *b = p->kind == IR_NODE_OP && p->op == IR_OP_PERMUTE ? p->in[0] : NULL;
    return b && b->kind == IR_NODE_OP && ir_ops[b->op].kind != IR_KIND_VIEW ? b : NULL;
}

/* ---- kernel graph reachability ------------------------------------------------------ */

/* Whether kernel `to` can be reached from any kernel marked 1 in s->mark through
 * producer->consumer edges that pass only through kernels not in the merge set
 * (mark 1 = in the set). Used to refuse merges that would make a cycle: a path
 * from the set back into the set through an outsider. */
static bool path_through_outside(fuse_state *s, const int *set, int nset, const int *targets,
                                 int ntargets) {
    memset(s->mark, 0, (size_t)s->ngroups * sizeof *s->mark);
    for (int i = 0; i < nset; i++) s->mark[set[i]] = 1;
    /* Outsiders consuming the set, then what they feed, until nothing changes. */
    bool changed = true;
    while (changed) { /* fixed point over node edges: graphs are small */
        changed = false;
        for (int id = 0; id < s->n; id++) {
            int gu = group_of(s, id);
            if (gu < 0 || s->mark[gu] == 2) continue;
            const ir_node *u = ir_graph_node(s->g, id);
            for (int j = 0; j < u->nin; j++) {
                if (!u->in[j]) continue;
                int gp = group_of(s, s->f->base_of[u->in[j]->id]);
                if (gp < 0 || gp == gu || !s->mark[gp]) continue;
                if (s->mark[gu] == 1) continue; /* inside the set */
                s->mark[gu] = 2, changed = true;
                break;
            }
        }
    }
    for (int i = 0; i < ntargets; i++)
        if (targets[i] >= 0 && s->mark[targets[i]] == 2) return true;
    /* An outsider reached from the set that feeds the set closes a cycle. */
    for (int id = 0; id < s->n; id++) {
        int gu = group_of(s, id);
        if (gu < 0 || s->mark[gu] != 1) continue;
        const ir_node *u = ir_graph_node(s->g, id);
        for (int j = 0; j < u->nin; j++) {
            if (!u->in[j]) continue;
            int gp = group_of(s, s->f->base_of[u->in[j]->id]);
            if (gp >= 0 && s->mark[gp] == 2) return true;
        }
    }
    return false;
}

/* ---- vertical fusion ------------------------------------------------------------------ */

/* Whether b, a reduced value of reduce kernel G, is read by the elementwise n
 * as one scalar per row of G's space: the rows are G's last axis, b keeps it
 * as 1, and n iterates over the whole rows. Then n runs in a later pass over
 * each row (softmax written by hand: max, then exp and sum, then divide). */
static bool row_scalar(fuse_state *s, int G, const ir_node *b, const ir_node *n) {
    const group *gr = &s->gr[G];
    if (gr->kind != PASS_KERNEL_REDUCE || s->level[b->id] < 1 || s->level[b->id] >= FUSE_MAX_PASSES)
        return false;
    const ir_node *a = ir_graph_node(s->g, gr->anchor);
    int last = gr->space.ndim - 1;
    if (last < 0 || a->attrs.axis != last || !ir_type_same_shape(&n->type, &gr->space)) return false;
    if (b->type.ndim != gr->space.ndim || b->type.shape[last] != 1) return false;
    return memcmp(b->type.shape, gr->space.shape, (size_t)last * sizeof *b->type.shape) == 0;
}

/* Whether n may join kernel G through its input number j (whose base b is in G).
 * On no, writes the reason. *lvl receives n's level in G. */
static bool edge_ok(fuse_state *s, const ir_node *n, int j, int G, int *lvl, char *why, size_t cap) {
    const ir_node *x = n->in[j];
    const ir_node *b = ir_graph_node(s->g, s->f->base_of[x->id]);
    const group *gr = &s->gr[G];
    *lvl = 0;
    pass_kernel_kind nk = is_elementwise(n) ? PASS_KERNEL_POINTWISE : kind_of(n);
    if (nk == PASS_KERNEL_CONTRACTION) {
        snprintf(why, cap, "a contraction reads its operands from memory (no prologue fusion)");
        return false;
    }
    if (nk == PASS_KERNEL_GATHER || nk == PASS_KERNEL_COPY) {
        snprintf(why, cap, "%s runs as a kernel of its own", ir_ops[n->op].name);
        return false;
    }
    const ir_node *copied = pass_permuted_copy(b); /* b a permuted copy of it */
    if (copied && group_of(s, copied->id) == G) {
        snprintf(why, cap, "%%%d is stored permuted by k%d, which computes it at %%%d's indices: it is "
                 "written to memory", b->id, G, copied->id);
        return false;
    }
    if (b != x && pass_permuted_copy(n) == b && gr->kind == PASS_KERNEL_CONTRACTION &&
        ir_type_same_shape(&b->type, &gr->space))
        return *lvl = s->level[b->id], true; /* stored permuted from the GEMM's tile */
    if (b != x) {
        snprintf(why, cap, "reads %%%d through a %s view: %%%d is written to memory and read with strides",
                 b->id, ir_ops[x->op].name, b->id);
        return false;
    }
    if (is_elementwise(n)) {
        if (!ir_type_same_shape(&b->type, &n->type)) {
            if (row_scalar(s, G, b, n)) return *lvl = s->level[b->id], true;
            if (gr->kind == PASS_KERNEL_REDUCE && s->level[b->id] >= FUSE_MAX_PASSES)
                snprintf(why, cap, "reads %%%d broadcast back over the rows of k%d, which already makes "
                         "%d passes over them: %%%d is written to memory", b->id, G, FUSE_MAX_PASSES, b->id);
            else if (gr->kind == PASS_KERNEL_REDUCE && s->level[b->id] >= 1)
                snprintf(why, cap, "reads %%%d broadcast back over the reduced axis, which is not "
                         "the last axis of k%d's rows: %%%d is written to memory", b->id, G, b->id);
            else
                snprintf(why, cap, "broadcasts %%%d: fusing would recompute it for each broadcast "
                         "element, so it is written to memory once", b->id);
            return false;
        }
        if (gr->kind == PASS_KERNEL_GATHER || gr->kind == PASS_KERNEL_COPY) {
            snprintf(why, cap, "%%%d comes from a %s kernel, which takes no epilogue", b->id,
                     pass_kernel_kind_name(gr->kind));
            return false;
        }
        *lvl = s->level[b->id];
        return true;
    }
    if (j != 0) {
        snprintf(why, cap, "only the row input of %s can come from its kernel", ir_ops[n->op].name);
        return false;
    }
    if (gr->kind == PASS_KERNEL_POINTWISE) return *lvl = 1, true;
    if (gr->kind == PASS_KERNEL_REDUCE && kind_of(n) == PASS_KERNEL_REDUCE &&
        ir_type_same_shape(&b->type, &gr->space) && s->level[b->id] + 1 <= FUSE_MAX_PASSES) {
        const ir_node *a = ir_graph_node(s->g, gr->anchor);
        bool rows = s->level[b->id] == 0 || a->attrs.axis == gr->space.ndim - 1;
        if (rows && a->attrs.axis == n->attrs.axis && ir_type_same_shape(&a->type, &n->type))
            return *lvl = s->level[b->id] + 1, true;
    }
    snprintf(why, cap, "%%%d is in a %s kernel, which already has its %s (%%%d); a kernel holds one",
             b->id, pass_kernel_kind_name(gr->kind),
             gr->kind == PASS_KERNEL_CONTRACTION ? "contraction" : "reduction or norm", gr->anchor);
    return false;
}

/* Merges groups from[0..n) into into; returns into. */
static void merge_into(fuse_state *s, int into, const int *from, int n) {
    for (int i = 0; i < n; i++) {
        if (from[i] == into) continue;
        group *a = &s->gr[into], *b = &s->gr[from[i]];
        b->parent = into;
        if (b->first < a->first) a->first = b->first;
        if (a->kind == PASS_KERNEL_POINTWISE && b->kind != PASS_KERNEL_POINTWISE) {
            a->kind = b->kind, a->anchor = b->anchor, a->space = b->space;
        }
    }
}

static int new_group(fuse_state *s, const ir_node *n) {
    int k = s->ngroups++;
    group *gr = &s->gr[k];
    memset(gr, 0, sizeof *gr);
    gr->kind = kind_of(n);
    gr->parent = k;
    gr->first = n->id;
    gr->anchor = gr->kind == PASS_KERNEL_POINTWISE ? -1 : n->id;
    gr->space = n->type;
    if (gr->kind == PASS_KERNEL_REDUCE || gr->kind == PASS_KERNEL_NORM)
        gr->space = n->in[0]->type; /* the input's shape: the rows it walks */
    s->f->kernel_of[n->id] = k;
    s->level[n->id] = gr->kind == PASS_KERNEL_POINTWISE ? 0 : 1;
    return k;
}

/* The kernels n may join, each with n's level there; returns how many. Every
 * edge from a kernel must be acceptable for that kernel to be a candidate. */
static int join_candidates(fuse_state *s, const ir_node *n, int *cand, int *clvl) {
    int nc = 0;
    char why[224];
    for (int j = 0; j < n->nin; j++) {
        if (!n->in[j]) continue;
        int G = group_of(s, s->f->base_of[n->in[j]->id]);
        if (G < 0) continue;
        int l, at = -1;
        bool ok = edge_ok(s, n, j, G, &l, why, sizeof why);
        for (int i = 0; i < nc; i++) if (cand[i] == G || cand[i] == ~G) at = i;
        if (at < 0) at = nc++, cand[at] = G, clvl[at] = 0;
        if (!ok) {
            set_why(s, n, "not fused with k%d: %s", G, why);
            cand[at] = ~G; /* refused through this edge */
        } else if (l > clvl[at]) {
            clvl[at] = l;
        }
    }
    int kept = 0;
    for (int i = 0; i < nc; i++) {
        int G = cand[i];
        if (G < 0) continue;
        if (s->gr[G].kind == PASS_KERNEL_POINTWISE && kind_of(n) == PASS_KERNEL_POINTWISE &&
            !ir_type_same_shape(&s->gr[G].space, &n->type)) {
            set_why(s, n, "not fused with k%d: it iterates over another shape", G);
            continue;
        }
        cand[kept] = G, clvl[kept++] = clvl[i];
    }
    return kept;
}

/* Whether merging the kernels in set with n closes no cycle through another kernel. */
static bool acyclic(fuse_state *s, const ir_node *n, const int *set, int nset) {
    int inputs[16], ni = 0;
    for (int j = 0; j < n->nin && ni < 16; j++)
        if (n->in[j]) inputs[ni++] = group_of(s, s->f->base_of[n->in[j]->id]);
    return !path_through_outside(s, set, nset, inputs, ni);
}

/* Whether a member of kernel `to` reads a value of kernel `from`. */
static bool feeds(fuse_state *s, int from, int to) {
    for (int id = 0; id < s->n; id++) {
        if (group_of(s, id) != to) continue;
        const ir_node *u = ir_graph_node(s->g, id);
        for (int j = 0; j < u->nin; j++)
            if (u->in[j] && group_of(s, s->f->base_of[u->in[j]->id]) == from) return true;
    }
    return false;
}

/* Whether every edge between two different kernels of set is one a kernel may
 * hold inside: an elementwise op reading the value directly at its own shape,
 * or an anchor's row input. Merging kernels that read each other through a
 * view would compute a value at other indices than its own. */
static bool edges_direct(fuse_state *s, const int *set, int nset) {
    for (int id = 0; id < s->n; id++) {
        int gu = group_of(s, id), in_set = 0;
        for (int i = 0; i < nset; i++) in_set |= set[i] == gu;
        if (gu < 0 || !in_set) continue;
        const ir_node *u = ir_graph_node(s->g, id);
        for (int j = 0; j < u->nin; j++) {
            if (!u->in[j]) continue;
            const ir_node *b = ir_graph_node(s->g, s->f->base_of[u->in[j]->id]);
            int gb = group_of(s, b->id), other = 0;
            for (int i = 0; i < nset; i++) other |= set[i] == gb;
            if (!other || gb == gu) continue;
            bool direct = b == u->in[j] && (!is_elementwise(u) || ir_type_same_shape(&b->type, &u->type));
            if (!direct || b->type.ndim != u->type.ndim) return false;
        }
    }
    return true;
}

/* Chooses what n joins: at most one kernel with an anchor (the most recent
 * producer first: a residual add joins the GEMM that just ran, not an older
 * one), then every pointwise kernel that closes no cycle. An anchor (a
 * reduction or norm) joins one kernel only. Returns how many; *lvl: n's level. */
static int choose(fuse_state *s, const ir_node *n, int *cand, const int *clvl, int nc, int *lvl) {
    int chosen[16], nch = 0, anchored = -1;
    *lvl = 0;
    for (;;) { /* anchored candidates, latest first */
        int best = -1;
        for (int i = 0; i < nc; i++)
            if (cand[i] >= 0 && s->gr[cand[i]].kind != PASS_KERNEL_POINTWISE &&
                (best < 0 || s->gr[cand[i]].first > s->gr[cand[best]].first))
                best = i;
        if (best < 0) break;
        int G = cand[best];
        cand[best] = -1;
        if (anchored >= 0)
            set_why(s, n, "not fused with k%d: it joins k%d, and a kernel holds one reduction, norm "
                    "or contraction", G, anchored);
        else if (!acyclic(s, n, &G, 1))
            set_why(s, n, "not fused with k%d: a kernel between them reads one and feeds the other", G);
        else
            anchored = chosen[nch++] = G, *lvl = clvl[best];
    }
    for (int i = 0; i < nc; i++) {
        if (cand[i] < 0) continue;
        if (kind_of(n) != PASS_KERNEL_POINTWISE && nch > 0) {
            set_why(s, n, "not fused with k%d: %s joins one kernel", cand[i], ir_ops[n->op].name);
            continue;
        }
        if (anchored >= 0 && feeds(s, cand[i], anchored)) {
            set_why(s, n, "not fused with k%d: it computes an input of k%d, which would then run it "
                    "after its %s", cand[i], anchored, pass_kernel_kind_name(s->gr[anchored].kind));
            continue;
        }
        chosen[nch] = cand[i];
        if (!edges_direct(s, chosen, nch + 1)) {
            set_why(s, n, "not fused with k%d: one of the kernels it would merge reads the other "
                    "through a view or a broadcast", cand[i]);
            continue;
        }
        if (!acyclic(s, n, chosen, nch + 1)) {
            set_why(s, n, "not fused with k%d: a kernel between them reads one and feeds the other",
                    cand[i]);
            continue;
        }
        nch++;
        if (clvl[i] > *lvl) *lvl = clvl[i];
    }
    memcpy(cand, chosen, (size_t)nch * sizeof *cand);
    return nch;
}

static void fuse_node(fuse_state *s, const ir_node *n) {
    int cand[16], clvl[16], lvl = 0;
    int nc = n->nin <= 16 ? join_candidates(s, n, cand, clvl) : 0;
    nc = choose(s, n, cand, clvl, nc, &lvl);
    if (nc == 0) {
        new_group(s, n);
        return;
    }
    /* The anchored kernel (if any) is the one that survives. */
    int into = cand[0];
    for (int i = 0; i < nc; i++) if (s->gr[cand[i]].kind != PASS_KERNEL_POINTWISE) into = cand[i];
    bool anchored = s->gr[into].kind != PASS_KERNEL_POINTWISE;
    /* Pointwise members merged at a later pass of an anchored kernel move there. */
    for (int i = 0; i < nc && anchored; i++) {
        if (cand[i] == into) continue;
        for (int id = 0; id < s->n; id++)
            if (group_of(s, id) == cand[i]) s->level[id] = lvl;
    }
    merge_into(s, into, cand, nc);
    s->f->kernel_of[n->id] = into;
    s->level[n->id] = lvl;
    if (kind_of(n) != PASS_KERNEL_POINTWISE) { /* n is the anchor; its producers the prologue */
        group *gr = &s->gr[into];
        if (gr->kind == PASS_KERNEL_POINTWISE)
            gr->kind = kind_of(n), gr->anchor = n->id, gr->space = n->in[0]->type;
    }
}

/* ---- horizontal fusion ---------------------------------------------------------------- */

/* Whether kernels a and b read a common value that neither computes. */
static int shared_load(fuse_state *s, int a, int b) {
    for (int id = 0; id < s->n; id++) {
        if (group_of(s, id) != a) continue;
        const ir_node *u = ir_graph_node(s->g, id);
        for (int j = 0; j < u->nin; j++) {
            if (!u->in[j]) continue;
            int x = s->f->base_of[u->in[j]->id];
            if (group_of(s, x) == a) continue;
            for (int id2 = 0; id2 < s->n; id2++) {
                if (group_of(s, id2) != b) continue;
                const ir_node *v = ir_graph_node(s->g, id2);
                for (int k = 0; k < v->nin; k++)
                    if (v->in[k] && s->f->base_of[v->in[k]->id] == x) return x;
            }
        }
    }
    return -1;
}

static bool horizontal_ok(fuse_state *s, int a, int b) {
    const group *A = &s->gr[a], *B = &s->gr[b];
    if (!ir_type_same_shape(&A->space, &B->space)) return false;
    bool pa = A->kind == PASS_KERNEL_POINTWISE, pb = B->kind == PASS_KERNEL_POINTWISE;
    if (!(pa || A->kind == PASS_KERNEL_REDUCE) || !(pb || B->kind == PASS_KERNEL_REDUCE)) return false;
    if (!pa && !pb) {
        const ir_node *x = ir_graph_node(s->g, A->anchor), *y = ir_graph_node(s->g, B->anchor);
        if (x->attrs.axis != y->attrs.axis || !ir_type_same_shape(&x->type, &y->type)) return false;
    }
    int set[2] = {a, b};
    return !path_through_outside(s, set, 1, &b, 1) && !path_through_outside(s, set + 1, 1, &a, 1);
}

static void fuse_horizontal(fuse_state *s) {
    bool changed = true;
    while (changed) {
        changed = false;
        for (int a = 0; a < s->ngroups && !changed; a++) {
            if (find(s, a) != a) continue;
            for (int b = a + 1; b < s->ngroups && !changed; b++) {
                if (find(s, b) != b) continue;
                int x = shared_load(s, a, b);
                if (x < 0 || !horizontal_ok(s, a, b)) continue;
                int into = s->gr[a].kind == PASS_KERNEL_POINTWISE ? b : a, from = into == a ? b : a;
                snprintf(s->gr[into].why, sizeof s->gr[into].why,
                         "horizontal: k%d and k%d both read %%%d over the same space", a, b, x);
                merge_into(s, into, &from, 1);
                changed = true;
            }
        }
    }
}

/* ---- building the result -------------------------------------------------------------- */

static int push(int **arr, int *n, int v) {
    for (int i = 0; i < *n; i++) if ((*arr)[i] == v) return 0;
    int *p = realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
    if (!p) return rt_error("pass fuse: out of memory");
    p[(*n)++] = v;
    *arr = p;
    return 0;
}

/* Kernel order: producers first, ties by smallest member (Kahn). */
static int order_kernels(fuse_state *s, int *rep, int nk, int *order) {
    int *indeg = calloc((size_t)nk, sizeof *indeg);
    bool *done = calloc((size_t)nk, sizeof *done);
    if (!indeg || !done) return free(indeg), free(done), rt_error("pass fuse: out of memory");
    for (int it = 0; it < nk; it++) {
        memset(indeg, 0, (size_t)nk * sizeof *indeg);
        for (int id = 0; id < s->n; id++) {
            int gu = group_of(s, id);
            if (gu < 0) continue;
            const ir_node *u = ir_graph_node(s->g, id);
            for (int j = 0; j < u->nin; j++) {
                int gp = u->in[j] ? group_of(s, s->f->base_of[u->in[j]->id]) : -1;
                if (gp >= 0 && gp != gu && !done[rep[gp]]) indeg[rep[gu]]++;
            }
        }
        int best = -1;
        for (int k = 0; k < nk; k++) {
            if (done[k] || indeg[k]) continue;
            if (best < 0) best = k;
        }
        EM_ASSERT(best >= 0); /* merges never close cycles */
        done[best] = true;
        order[it] = best;
    }
    free(indeg);
    free(done);
    return 0;
}

static int build_kernels(fuse_state *s) {
    pass_fusion *f = s->f;
    int *rep = malloc((size_t)(s->ngroups ? s->ngroups : 1) * sizeof *rep);
    int *order = malloc((size_t)(s->ngroups ? s->ngroups : 1) * sizeof *order);
    if (!rep || !order) return free(rep), free(order), rt_error("pass fuse: out of memory");
    /* Representatives numbered by smallest member, so numbering follows the graph. */
    int nk = 0;
    for (int id = 0; id < s->n; id++) {
        int g = group_of(s, id);
        if (g >= 0 && s->gr[g].first == id) rep[g] = nk++;
    }
    int st = order_kernels(s, rep, nk, order);
    int *pos = malloc((size_t)(nk ? nk : 1) * sizeof *pos);
    f->k = calloc((size_t)(nk ? nk : 1), sizeof *f->k);
    if (st || !pos || !f->k) {
        free(rep), free(order), free(pos);
        return st ? st : rt_error("pass fuse: out of memory");
    }
    for (int i = 0; i < nk; i++) pos[order[i]] = i;
    f->nkernels = nk;
    for (int g = 0; g < s->ngroups; g++) {
        if (find(s, g) != g) continue;
        pass_kernel *k = &f->k[pos[rep[g]]];
        k->kind = s->gr[g].kind, k->space = s->gr[g].space, k->anchor = s->gr[g].anchor;
        memcpy(k->why, s->gr[g].why, sizeof k->why);
    }
    int *final = malloc((size_t)(s->n ? s->n : 1) * sizeof *final);
    if (!final) st = rt_error("pass fuse: out of memory");
    for (int id = 0; id < s->n && !st; id++) {
        int g = group_of(s, id);
        final[id] = g < 0 ? -1 : pos[rep[g]];
    }
    for (int id = 0; id < s->n && !st; id++) {
        f->kernel_of[id] = final[id];
        if (final[id] >= 0) st = push(&f->k[final[id]].nodes, &f->k[final[id]].nnodes, id);
    }
    /* loads and outs: edges that cross a kernel boundary, and graph outputs */
    for (int id = 0; id < s->n && !st; id++) {
        const ir_node *u = ir_graph_node(s->g, id);
        int ku = final[id];
        for (int j = 0; j < u->nin && !st && ku >= 0; j++) {
            if (!u->in[j]) continue;
            int b = f->base_of[u->in[j]->id];
            if (final[b] == ku) continue;
            st = push(&f->k[ku].loads, &f->k[ku].nloads, b);
            if (!st && final[b] >= 0) st = push(&f->k[final[b]].outs, &f->k[final[b]].nouts, b);
        }
    }
    for (int i = 0; i < ir_graph_num_outputs(s->g) && !st; i++) {
        int b = f->base_of[ir_graph_output(s->g, i)->id];
        if (final[b] >= 0) st = push(&f->k[final[b]].outs, &f->k[final[b]].nouts, b);
    }
    free(final), free(rep), free(order), free(pos);
    return st;
}

pass_fusion *pass_fuse(const ir_graph *g) {
    if (!g) return rt_error("pass_fuse: the graph is NULL"), NULL;
    int n = ir_graph_num_nodes(g);
    size_t nn = (size_t)(n ? n : 1);
    fuse_state s = {.g = g, .n = n};
    pass_fusion *f = s.f = calloc(1, sizeof *f);
    if (f) {
        f->g = g;
        f->kernel_of = malloc(nn * sizeof *f->kernel_of);
        f->base_of = malloc(nn * sizeof *f->base_of);
        f->why = calloc(nn, sizeof *f->why);
    }
    s.gr = malloc(nn * sizeof *s.gr);
    s.level = calloc(nn, sizeof *s.level);
    s.mark = malloc(nn * sizeof *s.mark);
    int st = f && f->kernel_of && f->base_of && f->why && s.gr && s.level && s.mark
                 ? 0 : rt_error("pass_fuse: out of memory");
    for (int id = 0; id < n && !st; id++) f->kernel_of[id] = -1;
    for (int id = 0; id < n && !st; id++) {
        const ir_node *x = ir_graph_node(g, id);
        f->base_of[id] = x->kind == IR_NODE_OP && ir_ops[x->op].kind == IR_KIND_VIEW
                             ? f->base_of[x->in[0]->id] : id;
        if (x->kind != IR_NODE_OP || ir_ops[x->op].kind == IR_KIND_VIEW) continue;
        fuse_node(&s, x);
    }
    if (!st) fuse_horizontal(&s);
    if (!st) st = build_kernels(&s);
    free(s.gr), free(s.level), free(s.mark);
    if (st) {
        pass_fusion_destroy(f);
        return NULL;
    }
    return f;
}

void pass_fusion_destroy(pass_fusion *f) {
    if (!f) return;
    for (int i = 0; i < f->nkernels; i++) {
        free(f->k[i].nodes), free(f->k[i].outs), free(f->k[i].loads);
    }
    if (f->why)
        for (int i = 0; i < ir_graph_num_nodes(f->g); i++) free(f->why[i]);
    free(f->k), free(f->kernel_of), free(f->base_of), free(f->why);
    free(f);
}
