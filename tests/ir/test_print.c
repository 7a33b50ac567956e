/*
 * test_print.c — the text and Graphviz forms of a graph (ir/print.c).
 *
 * The text form is what users read in dumps, so its exact bytes are checked for
 * a small graph: the header, one line per node with operands, readable
 * attributes and the result type, `_` for a missing optional operand, and the
 * closing `return`. Call sites resolve through dladdr to symbol+offset (or
 * module+offset for a function without a dynamic symbol). The dot form is
 * checked for the nodes, edges and output markers it must contain. (Call sites
 * are taken in OpenBLAS, a shared library the sanitizers do not intercept.)
 */
#include <criterion/criterion.h>

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static char *capture_buf;
static size_t capture_len;

static FILE *capture(void) {
    FILE *f = open_memstream(&capture_buf, &capture_len);
    cr_assert(f);
    return f;
}

/* Closes f and returns what was written (free it). */
static char *captured(FILE *f) {
    cr_assert_eq(fclose(f), 0);
    return capture_buf;
}

static ir_node *input(ir_graph *g, int arg, int nd, const int64_t *shape) {
    ir_type t = {.dtype = EM_F32, .ndim = nd};
    memcpy(t.shape, shape, (size_t)nd * sizeof *shape);
    ir_node *n = ir_graph_add_input(g, &t, arg);
    cr_assert(n, "%s", em_last_error());
    return n;
}

static ir_node *node(ir_graph *g, ir_op op, ir_node *const *in, int nin, ir_attrs a, uintptr_t site) {
    ir_node *n = ir_graph_add_node(g, op, NULL, in, nin, &a, site);
    cr_assert(n, "%s", em_last_error());
    return n;
}

/* x + c, its row sums and its layer norm without weight or bias. */
static ir_graph *small_graph(em_tensor **c) {
    ir_graph *g = ir_graph_create("small");
    cr_assert(g);
    *c = em_full(EM_F32, 1, (int64_t[]){3}, 0.5);
    ir_node *x = input(g, 0, 2, (int64_t[]){2, 3});
    ir_node *k = ir_graph_add_const(g, *c);
    ir_node *a = node(g, IR_OP_ADD, (ir_node *[]){x, k}, 2, (ir_attrs){0}, 0);
    ir_node *s = node(g, IR_OP_SUM, &a, 1, (ir_attrs){.axis = -1}, 0);
    ir_node *ln = node(g, IR_OP_LAYER_NORM, (ir_node *[]){a, NULL, NULL}, 3, (ir_attrs){.eps = 1e-5}, 0);
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){s, ln}, 2), 0);
    return g;
}

Test(print, writes_one_line_per_node_between_a_header_and_a_return) {
    em_tensor *c;
    ir_graph *g = small_graph(&c);
    FILE *f = capture();
    cr_assert_eq(ir_graph_print(g, f), 0);
    char *text = captured(f);
    char want[1024];
    snprintf(want, sizeof want,
             "graph small\n"
             "  %%0 = input 0 : f32[2,3]\n"
             "  %%1 = const f32[3] @%p\n"
             "  %%2 = add %%0, %%1 : f32[2,3]\n"
             "  %%3 = sum %%2 {axis=1, keepdim=0} : f32[2]\n"
             "  %%4 = layer_norm %%2, _, _ {eps=1e-05} : f32[2,3]\n"
             "  return %%3, %%4\n",
             (void *)c);
    cr_expect_str_eq(text, want);
    free(text);
    ir_graph_destroy(g);
    em_release(c);
}

Test(print, writes_the_attributes_of_shape_ops_readably) {
    ir_graph *g = ir_graph_create("shapes");
    cr_assert(g);
    ir_node *x = input(g, 0, 2, (int64_t[]){2, 3});
    ir_node *r = node(g, IR_OP_RESHAPE, &x, 1, (ir_attrs){.ndim = 2, .dims = {3, -1}}, 0);
    ir_node *p = node(g, IR_OP_PERMUTE, &x, 1, (ir_attrs){.dims = {1, 0}}, 0);
    ir_node *s = node(g, IR_OP_SLICE, &x, 1, (ir_attrs){.axis = -1, .start = 1, .end = 9, .step = 2}, 0);
    ir_node *e = node(g, IR_OP_EXPAND, &x, 1, (ir_attrs){.ndim = 3, .dims = {4, 2, -1}}, 0);
    ir_node *k = node(g, IR_OP_CAST, &x, 1, (ir_attrs){.dtype = EM_I64}, 0);
    ir_node *c = node(g, IR_OP_CONCAT, (ir_node *[]){x, x, x}, 3, (ir_attrs){.axis = -2}, 0);
    ir_node *m = node(g, IR_OP_SOFTMAX, &c, 1, (ir_attrs){.axis = 0}, 0);
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){r, p, s, e, k, m}, 6), 0);
    FILE *f = capture();
    cr_assert_eq(ir_graph_print(g, f), 0);
    char *text = captured(f);
    cr_expect_str_eq(text, "graph shapes\n"
                           "  %0 = input 0 : f32[2,3]\n"
                           "  %1 = reshape %0 {shape=[3,2]} : f32[3,2]\n"
                           "  %2 = permute %0 {perm=[1,0]} : f32[3,2]\n"
                           "  %3 = slice %0 {axis=1, start=1, end=3, step=2} : f32[2,1]\n"
                           "  %4 = expand %0 {shape=[4,2,3]} : f32[4,2,3]\n"
                           "  %5 = cast %0 {dtype=i64} : i64[2,3]\n"
                           "  %6 = concat %0, %0, %0 {axis=0} : f32[6,3]\n"
                           "  %7 = softmax %6 {axis=0} : f32[6,3]\n"
                           "  return %1, %2, %3, %4, %5, %7\n");
    free(text);
    ir_graph_destroy(g);
}

static int a_static_function(int x) { return x + 1; }

Test(print, names_a_call_site_by_symbol_and_offset) {
    char buf[128];
    uintptr_t in_blas = (uintptr_t)(void *)&cblas_sgemm + 4;
    cr_expect_str_eq(ir_site_str(in_blas, buf, sizeof buf), "cblas_sgemm+0x4");
    uintptr_t in_exe = (uintptr_t)(void *)&a_static_function;
    /* A static function has no dynamic symbol: the module's name and the offset
     * (Criterion runs tests in a re-executed worker, so the name varies). */
    ir_site_str(in_exe, buf, sizeof buf);
    cr_expect(strstr(buf, "+0x") && !strchr(buf, '/') && buf[0] != '+', "got \"%s\"", buf);
    cr_expect_str_eq(ir_site_str(0, buf, sizeof buf), "");
    cr_expect_str_eq(ir_site_str(16, buf, sizeof buf), "", "an address in no module is unknown");
    cr_expect_eq(a_static_function(1), 2);
}

Test(print, ends_a_line_with_its_call_site) {
    ir_graph *g = ir_graph_create("sites");
    cr_assert(g);
    ir_node *x = input(g, 0, 1, (int64_t[]){4});
    ir_node *e = node(g, IR_OP_EXP, &x, 1, (ir_attrs){0}, (uintptr_t)(void *)&cblas_sgemm + 4);
    ir_node *n = node(g, IR_OP_NEG, &e, 1, (ir_attrs){0}, 16);
    cr_assert_eq(ir_graph_set_outputs(g, &n, 1), 0);
    FILE *f = capture();
    cr_assert_eq(ir_graph_print(g, f), 0);
    char *text = captured(f);
    cr_expect(strstr(text, "  %1 = exp %0 : f32[4]  ; cblas_sgemm+0x4\n"), "%s", text);
    cr_expect(strstr(text, "  %2 = neg %1 : f32[4]  ; 0x10\n"), "unknown sites print as addresses: %s", text);
    free(text);
    ir_graph_destroy(g);
}

Test(print, writes_dot_with_a_node_per_value_and_an_edge_per_operand) {
    em_tensor *c;
    ir_graph *g = small_graph(&c);
    FILE *f = capture();
    cr_assert_eq(ir_graph_print_dot(g, f), 0);
    char *dot = captured(f);
    const char *want[] = {
        "digraph \"small\" {\n",
        "  n0 [label=\"%0 input 0\\nf32[2,3]\", shape=invhouse",
        "  n1 [label=\"%1 const\\nf32[3]\", shape=box, style=\"filled,rounded\"",
        "  n2 [label=\"%2 add\\nf32[2,3]\"];\n",
        "  n0 -> n2 [headlabel=\"0\"];\n",
        "  n1 -> n2 [headlabel=\"1\"];\n",
        "  n3 [label=\"%3 sum {axis=1, keepdim=0}\\nf32[2]\"];\n",
        "  n2 -> n3;\n",
        "  n2 -> n4 [headlabel=\"0\"];\n",
        "  out0 [label=\"output 0\", shape=house",
        "  n3 -> out0 [style=bold];\n",
        "  n4 -> out1 [style=bold];\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_expect(strstr(dot, want[i]), "missing %s in:\n%s", want[i], dot);
    int open = 0, close = 0, edges = 0;
    for (const char *p = dot; *p; p++) open += *p == '{', close += *p == '}';
    for (const char *p = dot; (p = strstr(p, " -> ")); p++) edges++;
    cr_expect_eq(open, close);
    cr_expect_eq(edges, 6, "4 operand edges and 2 output edges:\n%s", dot);
    cr_expect(strcmp(dot + strlen(dot) - 2, "}\n") == 0);
    free(dot);
    ir_graph_destroy(g);
    em_release(c);
}

Test(print, escapes_quotes_in_the_dot_graph_name) {
    ir_graph *g = ir_graph_create("a\"b\\c");
    cr_assert(g);
    FILE *f = capture();
    cr_assert_eq(ir_graph_print_dot(g, f), 0);
    char *dot = captured(f);
    cr_expect(strncmp(dot, "digraph \"a\\\"b\\\\c\" {\n", 20) == 0, "%s", dot);
    free(dot);
    ir_graph_destroy(g);
}
