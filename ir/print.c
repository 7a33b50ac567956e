/*
 * print.c — a graph as text and as Graphviz dot.
 *
 * The text form is what `em_dump(.., "graph")` and EMBER_LOG=graph show, so it
 * is written for a person reading a captured model: one line per SSA value in
 * node order (inputs, then constants, then ops), a header naming the graph and
 * a closing `return` line:
 *
 *     graph mlp
 *       %0 = input 0 : f32[64,1024]
 *       %1 = const f32[4096,1024] @0x55d0c8a0
 *       %4 = linear %0, %1, %2 : f32[64,4096]  ; mlp+0x2f
 *       %9 = sum %8 {axis=1, keepdim=0} : f32[64]
 *       return %12, %13
 *
 * Attributes are printed by what the op's shape rule reads (so a new op that
 * reuses a rule prints correctly with no change here); a missing optional
 * operand prints as `_`; the call site is a trailing comment resolved with
 * dladdr. The dot form draws one box per value (op, attributes and type) with
 * edges from its inputs, labelled with the operand position when there are
 * several; inputs, constants and outputs each get their own shape and colour.
 *
 * Printing never changes the graph; the functions return 0, or -1 with an
 * error when the stream reports a write error.
 */
#include "ir.h"

#include <dlfcn.h>
#include <string.h>

static char *type_str(char *buf, size_t cap, const ir_type *t) {
    size_t k = (size_t)snprintf(buf, cap, "%s", em_dtype_name(t->dtype) ? em_dtype_name(t->dtype) : "?");
    if (k < cap) rt_shape_str(buf + k, cap - k, t->ndim, t->shape);
    return buf;
}

const char *ir_site_str(uintptr_t site, char *buf, size_t cap) {
    if (!cap) return buf;
    buf[0] = '\0';
    Dl_info info;
    if (!site || !dladdr((void *)site, &info)) return buf;
    if (info.dli_sname && info.dli_saddr) {
        snprintf(buf, cap, "%s+0x%lx", info.dli_sname,
                 (unsigned long)(site - (uintptr_t)info.dli_saddr));
    } else if (info.dli_fname && info.dli_fbase) {
        /* No symbol (a static function in an executable): module+offset, which
         * addr2line turns into a line. */
        const char *base = strrchr(info.dli_fname, '/');
        snprintf(buf, cap, "%s+0x%lx", base ? base + 1 : info.dli_fname,
                 (unsigned long)(site - (uintptr_t)info.dli_fbase));
    }
    return buf;
}

/* Writes the attributes the op's rule reads, as " {axis=1, keepdim=0}". */
static void print_attrs(const ir_node *n, FILE *out) {
    const ir_attrs *a = &n->attrs;
    ir_shape_fn s = ir_ops[n->op].shape;
    char dims[96];
    rt_shape_str(dims, sizeof dims, a->ndim, a->dims);
    if (s == ir_shape_reduce)
        fprintf(out, " {axis=%d, keepdim=%d}", a->axis, a->keepdim);
    else if (s == ir_shape_softmax || s == ir_shape_concat)
        fprintf(out, " {axis=%d}", a->axis);
    else if (s == ir_shape_layer_norm || s == ir_shape_rms_norm)
        fprintf(out, " {eps=%g}", a->eps);
    else if (s == ir_shape_cast)
        fprintf(out, " {dtype=%s}", em_dtype_name(a->dtype) ? em_dtype_name(a->dtype) : "?");
    else if (s == ir_shape_reshape || s == ir_shape_expand)
        fprintf(out, " {shape=%s}", dims);
    else if (s == ir_shape_permute)
        fprintf(out, " {perm=%s}", dims);
    else if (s == ir_shape_slice)
        fprintf(out, " {axis=%d, start=%lld, end=%lld, step=%lld}", a->axis, (long long)a->start,
                (long long)a->end, (long long)a->step);
}

static void print_node(const ir_node *n, FILE *out) {
    char ty[112];
    type_str(ty, sizeof ty, &n->type);
    fprintf(out, "  %%%d = ", n->id);
    switch (n->kind) {
    case IR_NODE_INPUT:
        fprintf(out, "input %d : %s", n->arg, ty);
        break;
    case IR_NODE_CONST:
        fprintf(out, "const %s @%p", ty, (void *)n->value);
        break;
    case IR_NODE_OP:
        fprintf(out, "%s", ir_ops[n->op].name);
        for (int i = 0; i < n->nin; i++) {
            fputs(i ? ", " : " ", out);
            if (n->in[i]) fprintf(out, "%%%d", n->in[i]->id);
            else fputc('_', out);
        }
        print_attrs(n, out);
        fprintf(out, " : %s", ty);
        break;
    }
    if (n->site) {
        char site[160];
        ir_site_str(n->site, site, sizeof site);
        if (site[0]) fprintf(out, "  ; %s", site);
        else fprintf(out, "  ; 0x%lx", (unsigned long)n->site);
    }
    fputc('\n', out);
}

static int finish(FILE *out, const char *what) {
    if (fflush(out) != 0 || ferror(out)) return rt_error("%s: write error", what);
    return 0;
}

int ir_graph_print(const ir_graph *g, FILE *out) {
    fprintf(out, "graph %s\n", ir_graph_name(g));
    for (int i = 0; i < ir_graph_num_nodes(g); i++) print_node(ir_graph_node(g, i), out);
    fputs("  return", out);
    for (int k = 0; k < ir_graph_num_outputs(g); k++)
        fprintf(out, "%s%%%d", k ? ", " : " ", ir_graph_output(g, k)->id);
    fputc('\n', out);
    return finish(out, "ir_graph_print");
}

/* ---- Graphviz ---------------------------------------------------------------------- */

/* s as the inside of a dot string: quotes and backslashes escaped. */
static void dot_escaped(const char *s, FILE *out) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        if (*s == '\n') fputs("\\n", out);
        else fputc(*s, out);
    }
}

static void dot_node(const ir_node *n, FILE *out) {
    char ty[112];
    type_str(ty, sizeof ty, &n->type);
    fprintf(out, "  n%d [label=\"%%%d ", n->id, n->id);
    switch (n->kind) {
    case IR_NODE_INPUT:
        fprintf(out, "input %d\\n%s\", shape=invhouse, style=filled, fillcolor=\"#cfe2ff\"];\n",
                n->arg, ty);
        break;
    case IR_NODE_CONST:
        fprintf(out, "const\\n%s\", shape=box, style=\"filled,rounded\", fillcolor=\"#e9ecef\"];\n", ty);
        break;
    case IR_NODE_OP:
        fputs(ir_ops[n->op].name, out);
        print_attrs(n, out); /* never holds a quote or a backslash */
        fprintf(out, "\\n%s\"];\n", ty);
        for (int i = 0; i < n->nin; i++)
            if (n->in[i]) {
                fprintf(out, "  n%d -> n%d", n->in[i]->id, n->id);
                if (n->nin > 1) fprintf(out, " [headlabel=\"%d\"]", i);
                fputs(";\n", out);
            }
        break;
    }
}

int ir_graph_print_dot(const ir_graph *g, FILE *out) {
    fputs("digraph \"", out);
    dot_escaped(ir_graph_name(g), out);
    fputs("\" {\n  node [shape=box, fontname=\"monospace\"];\n", out);
    for (int i = 0; i < ir_graph_num_nodes(g); i++) dot_node(ir_graph_node(g, i), out);
    for (int k = 0; k < ir_graph_num_outputs(g); k++) {
        fprintf(out, "  out%d [label=\"output %d\", shape=house, style=filled, fillcolor=\"#d1e7dd\"];\n",
                k, k);
        fprintf(out, "  n%d -> out%d [style=bold];\n", ir_graph_output(g, k)->id, k);
    }
    fputs("}\n", out);
    return finish(out, "ir_graph_print_dot");
}
