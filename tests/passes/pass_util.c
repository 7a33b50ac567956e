/*
 * pass_util.c — the helpers of pass_util.h, shared by the pass tests.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "pass_util.h"

/* ---- building graphs ----------------------------------------------------------------------- */

ir_graph *pu_new_graph(void) {
    ir_graph *g = ir_graph_create("g");
    cr_assert(g, "%s", em_last_error());
    return g;
}

ir_node *pu_input(ir_graph *g, int arg, em_dtype dt, int nd, const int64_t *shape) {
    ir_type t = {.dtype = dt, .ndim = nd};
    if (nd) memcpy(t.shape, shape, (size_t)nd * sizeof *shape);
    ir_node *n = ir_graph_add_input(g, &t, arg);
    cr_assert(n, "%s", em_last_error());
    return n;
}

ir_node *pu_fixed(ir_graph *g, em_tensor *t) {
    cr_assert(t, "%s", em_last_error());
    ir_node *n = ir_graph_add_const(g, t);
    cr_assert(n, "%s", em_last_error());
    em_release(t);
    return n;
}

ir_node *pu_op(ir_graph *g, ir_op o, ir_node *a, ir_node *b, ir_attrs attrs) {
    ir_node *in[2] = {a, b};
    ir_node *n = ir_graph_add_node(g, o, NULL, in, b ? 2 : 1, &attrs, 0);
    cr_assert(n, "%s", em_last_error());
    return n;
}

void pu_set_outs(ir_graph *g, ir_node **outs, int n) {
    cr_assert_eq(ir_graph_set_outputs(g, outs, n), 0, "%s", em_last_error());
}

void pu_set_out(ir_graph *g, ir_node *n) {
    cr_assert_eq(ir_graph_set_outputs(g, &n, 1), 0, "%s", em_last_error());
}

/* ---- looking at graphs --------------------------------------------------------------------- */

char *pu_text(const ir_graph *g) {
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    cr_assert(f);
    cr_assert_eq(ir_graph_print(g, f), 0);
    fclose(f);
    for (char *p = s; (p = strstr(p, "@0x"));) { /* constant addresses vary */
        char *e = p + 3;
        while (*e && *e != '\n') e++;
        memmove(p + 2, e, strlen(e) + 1);
        p[1] = '_';
    }
    return s;
}

void pu_expect_text(const ir_graph *g, const char *want) {
    char *s = pu_text(g);
    cr_expect_str_eq(s, want);
    free(s);
}

ir_node *pu_output(const ir_graph *g) { return ir_graph_output(g, 0); }

/* ---- fold then dce ------------------------------------------------------------------------- */

ir_graph *pu_then_dce(ir_graph *o) {
    cr_assert(o, "%s", em_last_error());
    cr_assert_eq(ir_graph_verify(o), 0, "%s", em_last_error());
    ir_graph *d = pass_dce(o);
    cr_assert(d, "%s", em_last_error());
    ir_graph_destroy(o);
    return d;
}

/* fold then dce, both verified; g is destroyed. k: the fixed constants, NULL
 * to let fold decide on g (which must then be the only graph holding them). */
ir_graph *pu_simplify_with(ir_graph *g, pass_consts *k) {
    cr_assert_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    ir_graph *f = pass_fold(g, k);
    cr_assert(f, "fold: %s", em_last_error());
    cr_assert_eq(ir_graph_verify(f), 0, "after fold: %s", em_last_error());
    ir_graph *d = pass_dce(f);
    cr_assert(d, "dce: %s", em_last_error());
    cr_assert_eq(ir_graph_verify(d), 0, "after dce: %s", em_last_error());
    ir_graph_destroy(f);
    ir_graph_destroy(g);
    return d;
}

ir_graph *pu_simplify(ir_graph *g) { return pu_simplify_with(g, NULL); }

/* g simplified; *copy receives an unchanged copy of g to compare with. */
ir_graph *pu_simplify_keeping_a_copy(ir_graph *g, ir_graph **copy) {
    pass_consts *k = pass_consts_create(g); /* before the copy shares the constants */
    cr_assert(k, "%s", em_last_error());
    *copy = pass_dce(g);
    cr_assert(*copy, "%s", em_last_error());
    ir_graph *o = pu_simplify_with(g, k);
    pass_consts_destroy(k);
    return o;
}

/* f32 values with the cases identities must keep: signed zeros, NaN, infinities. */
em_tensor *pu_specials(int nd, const int64_t *shape) {
    static const float v[] = {-0.0f, 0.0f, NAN, -INFINITY, INFINITY, 1.5f, -2.25f, 1e-40f, 3.0f};
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = v[i % (int64_t)(sizeof v / sizeof v[0])];
    em_tensor *t = em_from_data(EM_F32, nd, shape, d);
    free(d);
    cr_assert(t, "%s", em_last_error());
    return t;
}

/* Output 0 of a and b on args: same dtype, shape and bytes. */
void pu_expect_same_result(const ir_graph *a, const ir_graph *b, em_tensor *const *args) {
    em_tensor *x, *y;
    cr_assert_eq(ir_graph_run(a, args, &x), 0, "%s", em_last_error());
    cr_assert_eq(ir_graph_run(b, args, &y), 0, "%s", em_last_error());
    cr_assert_eq(em_type(x), em_type(y));
    cr_assert_eq(em_ndim(x), em_ndim(y));
    for (int i = 0; i < em_ndim(x); i++) cr_expect_eq(em_shape(x)[i], em_shape(y)[i]);
    size_t n, m;
    char *p = tu_bytes_of(x, &n), *q = tu_bytes_of(y, &m);
    cr_expect(n == m && memcmp(p, q, n) == 0, "results differ");
    free(p), free(q);
    em_release(x), em_release(y);
}

/* Builds out = f(x) over an input x of the given type, simplifies it, checks the
 * values on pu_specials() are unchanged, and returns the simplified graph. */
ir_graph *pu_fold_unary(pu_build_fn build, em_dtype dt, int nd, const int64_t *shape) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, dt, nd, shape);
    pu_set_out(g, build(g, x));
    em_tensor *arg = pu_specials(nd, shape);
    if (dt != EM_F32) {
        em_tensor *c = em_cast(arg, dt);
        em_release(arg);
        arg = c;
    }
    ir_graph *copy, *out = pu_simplify_keeping_a_copy(g, &copy);
    pu_expect_same_result(copy, out, &arg);
    ir_graph_destroy(copy);
    em_release(arg);
    return out;
}

ir_node *pu_full(ir_graph *g, em_dtype dt, int nd, const int64_t *shape, double v) {
    return pu_fixed(g, em_full(dt, nd, shape, v));
}
