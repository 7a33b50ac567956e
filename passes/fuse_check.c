/*
 * fuse_check.c — checking and printing a fusion (the `kernels` stage).
 *
 * pass_fusion_verify re-derives from the graph what fuse.c claims: every op
 * node but a view is in exactly one kernel, kernels run after the kernels they
 * read, and each kernel lists exactly the values crossing its boundary as
 * loads and writes. pass_fusion_print is what `em_dump(f, "kernels")` and
 * EMBER_LOG=kernels show: each kernel with its members, then each node that
 * was not fused into a producer's kernel and why.
 */
#include "passes.h"

#include <string.h>

static bool contains(const int *a, int n, int v) {
    for (int i = 0; i < n; i++) if (a[i] == v) return true;
    return false;
}

int pass_fusion_verify(const pass_fusion *f) {
    const ir_graph *g = f->g;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        const ir_node *x = ir_graph_node(g, id);
        bool member = x->kind == IR_NODE_OP && ir_ops[x->op].kind != IR_KIND_VIEW;
        int k = f->kernel_of[id];
        if (member != (k >= 0))
            return rt_error("fuse: %%%d %s", id, member ? "is in no kernel" : "is in a kernel");
        if (!member) continue;
        if (k >= f->nkernels || !contains(f->k[k].nodes, f->k[k].nnodes, id))
            return rt_error("fuse: %%%d is not listed by its kernel k%d", id, k);
        for (int j = 0; j < x->nin; j++) {
            if (!x->in[j]) continue;
            int b = f->base_of[x->in[j]->id], kb = f->kernel_of[b];
            if (kb == k && b != x->in[j]->id && pass_permuted_copy(x) != ir_graph_node(g, b))
                return rt_error("fuse: %%%d reads %%%d of its own kernel k%d through a view", id, b, k);
            if (kb == k) continue;
            if (kb > k) return rt_error("fuse: k%d reads %%%d of k%d, which runs later", k, b, kb);
            if (!contains(f->k[k].loads, f->k[k].nloads, b))
                return rt_error("fuse: k%d reads %%%d but does not list it as a load", k, b);
            if (kb >= 0 && !contains(f->k[kb].outs, f->k[kb].nouts, b))
                return rt_error("fuse: k%d reads %%%d of k%d, which does not write it", k, b, kb);
        }
    }
    for (int k = 0; k < f->nkernels; k++) {
        const pass_kernel *K = &f->k[k];
        if (K->nnodes == 0) return rt_error("fuse: k%d is empty", k);
        if ((K->kind == PASS_KERNEL_POINTWISE) != (K->anchor < 0))
            return rt_error("fuse: k%d (%s) has the wrong anchor", k, pass_kernel_kind_name(K->kind));
        for (int i = 0; i < K->nouts; i++)
            if (f->kernel_of[K->outs[i]] != k) return rt_error("fuse: k%d writes a value it does not compute", k);
    }
    for (int i = 0; i < ir_graph_num_outputs(g); i++) {
        int b = f->base_of[ir_graph_output(g, i)->id], kb = f->kernel_of[b];
        if (kb >= 0 && !contains(f->k[kb].outs, f->k[kb].nouts, b))
            return rt_error("fuse: graph output %%%d is not written by k%d", b, kb);
    }
    return 0;
}

static void print_ids(FILE *out, const char *label, const int *ids, int n) {
    fprintf(out, "  %s", label);
    for (int i = 0; i < n; i++) fprintf(out, "%s%%%d", i ? ", " : " ", ids[i]);
    if (!n) fprintf(out, " -");
    fprintf(out, "\n");
}

int pass_fusion_print(const pass_fusion *f, FILE *out) {
    const ir_graph *g = f->g;
    int ops = 0, views = 0;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        const ir_node *x = ir_graph_node(g, id);
        if (x->kind != IR_NODE_OP) continue;
        if (ir_ops[x->op].kind == IR_KIND_VIEW) views++;
        else ops++;
    }
    fprintf(out, "; kernels of %s: %d kernel%s for %d op%s (%d view%s read with strides)\n",
            ir_graph_name(g), f->nkernels, f->nkernels == 1 ? "" : "s", ops, ops == 1 ? "" : "s",
            views, views == 1 ? "" : "s");
    char sh[96];
    for (int k = 0; k < f->nkernels; k++) {
        const pass_kernel *K = &f->k[k];
        fprintf(out, "k%d %s over %s%s", k, pass_kernel_kind_name(K->kind),
                em_dtype_name(K->space.dtype), rt_shape_str(sh, sizeof sh, K->space.ndim, K->space.shape));
        if (K->anchor >= 0) fprintf(out, ", anchor %%%d %s", K->anchor, ir_ops[ir_graph_node(g, K->anchor)->op].name);
        fprintf(out, "\n  nodes");
        for (int i = 0; i < K->nnodes; i++)
            fprintf(out, "%s%%%d %s", i ? ", " : " ", K->nodes[i], ir_ops[ir_graph_node(g, K->nodes[i])->op].name);
        fprintf(out, "\n");
        print_ids(out, "loads", K->loads, K->nloads);
        print_ids(out, "writes", K->outs, K->nouts);
        if (K->why[0]) fprintf(out, "  %s\n", K->why);
    }
    bool header = false;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        if (!f->why[id]) continue;
        if (!header) fprintf(out, "; not fused into a producer's kernel:\n"), header = true;
        fprintf(out, "%%%d %s (k%d): %s\n", id, ir_ops[ir_graph_node(g, id)->op].name, f->kernel_of[id],
                f->why[id]);
    }
    return ferror(out) ? rt_error("em_dump: write failed") : 0;
}
