/*
 * test_fold.c — constant folding and exact identities (passes/fold.c).
 *
 * Each test builds a small graph by hand, runs fold (then dce, to see what is
 * left) and checks the exact result: the node an output became, node counts,
 * the printed graph, and — where values are involved — that the interpreter
 * gives bit-identical results before and after, on inputs holding -0.0, NaN
 * and infinities.
 *
 * Every identity is tested where it must fire and where it must not:
 * x*1 with ones that broadcast x to a larger shape or change its dtype, a
 * near-one value, x + 0.0 (not an identity: -0.0 + 0.0 is +0.0) against
 * x + (-0.0) (one), x - (-0.0) against x - 0.0, a constant the caller still
 * holds (captured by reference: its data may change), an argument whose
 * layout is unknown (x*1 becomes contiguous(x), not x). Constant folding:
 * a chain folds to one constant holding the eager value; the size limits stop
 * a big expand; a view of a by-reference constant folds and still sees its
 * data change; an op that fails is left to fail at run time.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* ---- helpers ------------------------------------------------------------------------ */

#define SH(...) ((int64_t[]){__VA_ARGS__})

static ir_graph *new_graph(void) {
    ir_graph *g = ir_graph_create("g");
    cr_assert(g, "%s", em_last_error());
    return g;
}

static ir_node *input(ir_graph *g, int arg, em_dtype dt, int nd, const int64_t *shape) {
    ir_type t = {.dtype = dt, .ndim = nd};
    if (nd) memcpy(t.shape, shape, (size_t)nd * sizeof *shape);
    ir_node *n = ir_graph_add_input(g, &t, arg);
    cr_assert(n, "%s", em_last_error());
    return n;
}

/* A constant the graph holds alone (the caller's reference is dropped): fixed. */
static ir_node *fixed(ir_graph *g, em_tensor *t) {
    cr_assert(t, "%s", em_last_error());
    ir_node *n = ir_graph_add_const(g, t);
    cr_assert(n, "%s", em_last_error());
    em_release(t);
    return n;
}

static ir_node *full(ir_graph *g, em_dtype dt, int nd, const int64_t *shape, double v) {
    return fixed(g, em_full(dt, nd, shape, v));
}

static ir_node *op(ir_graph *g, ir_op o, ir_node *a, ir_node *b, ir_attrs attrs) {
    ir_node *in[2] = {a, b};
    ir_node *n = ir_graph_add_node(g, o, NULL, in, b ? 2 : 1, &attrs, 0);
    cr_assert(n, "%s", em_last_error());
    return n;
}
#define OP2(g, o, a, b) op(g, IR_OP_##o, a, b, (ir_attrs){0})
#define OP1(g, o, a, ...) op(g, IR_OP_##o, a, NULL, (ir_attrs){__VA_ARGS__})

static void set_out(ir_graph *g, ir_node *n) {
    cr_assert_eq(ir_graph_set_outputs(g, &n, 1), 0, "%s", em_last_error());
}

/* The printed graph with constant addresses masked as @_. */
static char *text(const ir_graph *g) {
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    cr_assert(f);
    cr_assert_eq(ir_graph_print(g, f), 0);
    fclose(f);
    for (char *p = s; (p = strstr(p, "@0x"));) {
        char *e = p + 3;
        while (*e && *e != '\n') e++;
        memmove(p + 2, e, strlen(e) + 1);
        p[1] = '_';
    }
    return s;
}

static void expect_text(const ir_graph *g, const char *want) {
    char *s = text(g);
    cr_expect_str_eq(s, want);
    free(s);
}

/* fold then dce, both verified; g is destroyed. k: the fixed constants, NULL
 * to let fold decide on g (which must then be the only graph holding them). */
static ir_graph *simplify_with(ir_graph *g, pass_consts *k) {
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

static ir_graph *simplify(ir_graph *g) { return simplify_with(g, NULL); }

/* g simplified; *copy receives an unchanged copy of g to compare with. */
static ir_graph *simplify_keeping_a_copy(ir_graph *g, ir_graph **copy) {
    pass_consts *k = pass_consts_create(g); /* before the copy shares the constants */
    cr_assert(k, "%s", em_last_error());
    *copy = pass_dce(g);
    cr_assert(*copy, "%s", em_last_error());
    ir_graph *o = simplify_with(g, k);
    pass_consts_destroy(k);
    return o;
}

/* f32 values with the cases identities must keep: signed zeros, NaN, infinities. */
static em_tensor *specials(int nd, const int64_t *shape) {
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

static char *bytes(em_tensor *t, size_t *n) {
    *n = (size_t)em_numel(t) * em_dtype_size(em_type(t));
    char *b = malloc(*n + 1);
    cr_assert_eq(em_read(t, b, *n), 0, "%s", em_last_error());
    return b;
}

/* Output 0 of a and b on args: same dtype, shape and bytes. */
static void expect_same_result(const ir_graph *a, const ir_graph *b, em_tensor *const *args) {
    em_tensor *x, *y;
    cr_assert_eq(ir_graph_run(a, args, &x), 0, "%s", em_last_error());
    cr_assert_eq(ir_graph_run(b, args, &y), 0, "%s", em_last_error());
    cr_assert_eq(em_type(x), em_type(y));
    cr_assert_eq(em_ndim(x), em_ndim(y));
    for (int i = 0; i < em_ndim(x); i++) cr_expect_eq(em_shape(x)[i], em_shape(y)[i]);
    size_t n, m;
    char *p = bytes(x, &n), *q = bytes(y, &m);
    cr_expect(n == m && memcmp(p, q, n) == 0, "results differ");
    free(p), free(q);
    em_release(x), em_release(y);
}

/* Builds out = f(x) over an input x of the given type, simplifies it, checks the
 * values on specials() are unchanged, and returns the simplified graph. */
typedef ir_node *(*build_fn)(ir_graph *g, ir_node *x);
static ir_graph *fold_unary(build_fn build, em_dtype dt, int nd, const int64_t *shape) {
    ir_graph *g = new_graph();
    ir_node *x = input(g, 0, dt, nd, shape);
    set_out(g, build(g, x));
    em_tensor *arg = specials(nd, shape);
    if (dt != EM_F32) {
        em_tensor *c = em_cast(arg, dt);
        em_release(arg);
        arg = c;
    }
    ir_graph *copy, *out = simplify_keeping_a_copy(g, &copy);
    expect_same_result(copy, out, &arg);
    ir_graph_destroy(copy);
    em_release(arg);
    return out;
}

static ir_node *output(const ir_graph *g) { return ir_graph_output(g, 0); }

/* ---- x*1, 1*x, x/1 ----------------------------------------------------------------------- */

static ir_node *exp_times_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), full(g, EM_F32, 1, SH(3), 1.0));
}
Test(fold, turns_x_times_ones_into_x_when_x_is_computed) {
    ir_graph *o = fold_unary(exp_times_ones, EM_F32, 2, SH(2, 3));
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3]\n"
                   "  %1 = exp %0 : f32[2,3]\n"
                   "  return %1\n");
    ir_graph_destroy(o);
}

static ir_node *ones_times_exp(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, full(g, EM_F32, 0, NULL, 1.0), OP1(g, EXP, x));
}
Test(fold, turns_ones_times_x_into_x) {
    ir_graph *o = fold_unary(ones_times_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    cr_expect_eq(ir_graph_num_nodes(o), 2);
    ir_graph_destroy(o);
}

static ir_node *arg_times_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, x, full(g, EM_F32, 2, SH(1, 3), 1.0));
}
Test(fold, turns_an_argument_times_ones_into_a_contiguous_copy_because_its_layout_is_unknown) {
    ir_graph *o = fold_unary(arg_times_ones, EM_F32, 2, SH(2, 3));
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3]\n"
                   "  %1 = contiguous %0 : f32[2,3]\n"
                   "  return %1\n");
    ir_graph_destroy(o);
}

Test(fold, keeps_the_strides_of_x_times_ones_for_a_transposed_argument) {
    ir_graph *g = new_graph();
    ir_node *x = input(g, 0, EM_F32, 2, SH(3, 64));
    ir_node *m = OP2(g, MUL, x, full(g, EM_F32, 0, NULL, 1.0));
    set_out(g, OP1(g, SUM, m, .axis = 1)); /* summed in another order over a strided row */
    ir_graph *copy, *o = simplify_keeping_a_copy(g, &copy);
    em_tensor *base = em_randn(2, SH(64, 3), 7), *xt = em_transpose(base, 0, 1);
    expect_same_result(copy, o, &xt);
    cr_expect_eq(output(o)->in[0]->op, IR_OP_CONTIGUOUS);
    em_release(base), em_release(xt);
    ir_graph_destroy(copy), ir_graph_destroy(o);
}

static ir_node *exp_div_ones(ir_graph *g, ir_node *x) {
    return OP2(g, DIV, OP1(g, EXP, x), full(g, EM_F32, 1, SH(3), 1.0));
}
Test(fold, turns_x_divided_by_ones_into_x) {
    ir_graph *o = fold_unary(exp_div_ones, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

static ir_node *ones_div_exp(ir_graph *g, ir_node *x) {
    return OP2(g, DIV, full(g, EM_F32, 1, SH(3), 1.0), OP1(g, EXP, x));
}
Test(fold, leaves_ones_divided_by_x) {
    ir_graph *o = fold_unary(ones_div_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_DIV);
    ir_graph_destroy(o);
}

static ir_node *exp_times_wide_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), full(g, EM_F32, 2, SH(2, 3), 1.0));
}
Test(fold, leaves_x_times_ones_that_broadcast_x_to_a_larger_shape) {
    ir_graph *o = fold_unary(exp_times_wide_ones, EM_F32, 1, SH(3));
    cr_expect_eq(output(o)->op, IR_OP_MUL);
    cr_expect_eq(output(o)->type.ndim, 2);
    ir_graph_destroy(o);
}

static ir_node *int_times_float_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, ABS, x), full(g, EM_F32, 0, NULL, 1.0));
}
static ir_node *f64_times_f32_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), full(g, EM_F32, 0, NULL, 1.0));
}
static ir_node *int_times_bool_ones(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, ABS, x), full(g, EM_BOOL, 0, NULL, 1.0));
}
Test(fold, folds_x_times_ones_only_when_x_keeps_its_dtype) {
    ir_graph *o = fold_unary(int_times_float_ones, EM_I32, 1, SH(4)); /* i32 * f32 is f32 */
    cr_expect_eq(output(o)->op, IR_OP_MUL);
    ir_graph_destroy(o);
    o = fold_unary(f64_times_f32_ones, EM_F64, 1, SH(4)); /* f64 * f32 is f64: exact */
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = fold_unary(int_times_bool_ones, EM_I32, 1, SH(4)); /* true is 1 */
    cr_expect_eq(output(o)->op, IR_OP_ABS);
    ir_graph_destroy(o);
}

static ir_node *exp_times_near_one(ir_graph *g, ir_node *x) {
    return OP2(g, MUL, OP1(g, EXP, x), full(g, EM_F32, 0, NULL, nextafterf(1.0f, 2.0f)));
}
static ir_node *exp_times_mostly_ones(ir_graph *g, ir_node *x) {
    float v[3] = {1, 1, 0.5f};
    return OP2(g, MUL, OP1(g, EXP, x), fixed(g, em_from_data(EM_F32, 1, SH(3), v)));
}
static ir_node *exp_times_nan(ir_graph *g, ir_node *x) {
    float v[3] = {1, NAN, 1};
    return OP2(g, MUL, OP1(g, EXP, x), fixed(g, em_from_data(EM_F32, 1, SH(3), v)));
}
Test(fold, leaves_x_times_a_near_one_a_partly_one_or_a_nan_constant) {
    build_fn fns[] = {exp_times_near_one, exp_times_mostly_ones, exp_times_nan};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        ir_graph *o = fold_unary(fns[i], EM_F32, 2, SH(2, 3));
        cr_expect_eq(output(o)->op, IR_OP_MUL, "case %zu", i);
        ir_graph_destroy(o);
    }
}

Test(fold, checks_ones_through_the_strides_of_a_broadcast_constant) {
    ir_graph *g = new_graph();
    ir_node *x = OP1(g, EXP, input(g, 0, EM_F32, 2, SH(2, 3)));
    em_tensor *one = em_scalar(EM_F32, 1.0), *wide = em_expand(one, 1, SH(3)); /* stride 0 */
    em_release(one);
    set_out(g, OP2(g, MUL, x, fixed(g, wide)));
    ir_graph *o = simplify(g);
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

/* ---- x + 0, x - 0 -------------------------------------------------------------------------- */

Test(fold, shows_why_x_plus_positive_zero_is_not_an_identity) {
    em_tensor *x = em_scalar(EM_F32, -0.0), *z = em_scalar(EM_F32, 0.0);
    em_tensor *s = em_add(x, z), *nz = em_scalar(EM_F32, -0.0), *t = em_add(x, nz);
    cr_expect(!signbit(em_item(s)), "-0.0 + 0.0 is +0.0");
    cr_expect(signbit(em_item(t)), "-0.0 + -0.0 is -0.0");
    em_release(x), em_release(z), em_release(s), em_release(nz), em_release(t);
}

static ir_node *exp_plus(ir_graph *g, ir_node *x, em_dtype dt, double zero, bool left) {
    ir_node *e = OP1(g, EXP, x), *z = full(g, dt, 0, NULL, zero);
    return left ? OP2(g, ADD, z, e) : OP2(g, ADD, e, z);
}
static ir_node *exp_plus_neg_zero(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_F32, -0.0, false); }
static ir_node *neg_zero_plus_exp(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_F32, -0.0, true); }
static ir_node *exp_plus_pos_zero(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_F32, 0.0, false); }
static ir_node *exp_plus_int_zero(ir_graph *g, ir_node *x) { return exp_plus(g, x, EM_I32, 0.0, false); }
static ir_node *neg_plus_pos_zero(ir_graph *g, ir_node *x) {
    return OP2(g, ADD, OP1(g, NEG, x), full(g, EM_F32, 0, NULL, 0.0));
}

Test(fold, turns_x_plus_negative_zero_into_x_on_both_sides) {
    ir_graph *o = fold_unary(exp_plus_neg_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = fold_unary(neg_zero_plus_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

Test(fold, leaves_float_x_plus_positive_zero_even_from_an_integer_zero) {
    build_fn fns[] = {exp_plus_pos_zero, exp_plus_int_zero, neg_plus_pos_zero};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        ir_graph *o = fold_unary(fns[i], EM_F32, 2, SH(2, 3)); /* values checked on -0.0 inputs */
        cr_expect_eq(output(o)->op, IR_OP_ADD, "case %zu", i);
        ir_graph_destroy(o);
    }
}

static ir_node *int_plus_zero(ir_graph *g, ir_node *x) {
    return OP2(g, ADD, OP1(g, NEG, x), full(g, EM_I32, 1, SH(4), 0.0));
}
static ir_node *int_minus_zero(ir_graph *g, ir_node *x) {
    return OP2(g, SUB, OP1(g, NEG, x), full(g, EM_I32, 1, SH(4), 0.0));
}
Test(fold, turns_integer_x_plus_or_minus_zero_into_x) {
    ir_graph *o = fold_unary(int_plus_zero, EM_I32, 1, SH(4));
    cr_expect_eq(output(o)->op, IR_OP_NEG);
    ir_graph_destroy(o);
    o = fold_unary(int_minus_zero, EM_I32, 1, SH(4));
    cr_expect_eq(output(o)->op, IR_OP_NEG);
    ir_graph_destroy(o);
}

static ir_node *exp_minus(ir_graph *g, ir_node *x, double zero, bool left) {
    ir_node *e = OP1(g, EXP, x), *z = full(g, EM_F32, 0, NULL, zero);
    return left ? OP2(g, SUB, z, e) : OP2(g, SUB, e, z);
}
static ir_node *exp_minus_pos_zero(ir_graph *g, ir_node *x) { return exp_minus(g, x, 0.0, false); }
static ir_node *exp_minus_neg_zero(ir_graph *g, ir_node *x) { return exp_minus(g, x, -0.0, false); }
static ir_node *zero_minus_exp(ir_graph *g, ir_node *x) { return exp_minus(g, x, 0.0, true); }
static ir_node *neg_minus_pos_zero(ir_graph *g, ir_node *x) {
    return OP2(g, SUB, OP1(g, NEG, x), full(g, EM_F32, 0, NULL, 0.0)); /* -0.0 - 0.0 is -0.0 */
}
Test(fold, turns_x_minus_positive_zero_into_x_but_not_x_minus_negative_zero_or_zero_minus_x) {
    ir_graph *o = fold_unary(exp_minus_pos_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = fold_unary(neg_minus_pos_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_NEG);
    ir_graph_destroy(o);
    o = fold_unary(exp_minus_neg_zero, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_SUB);
    ir_graph_destroy(o);
    o = fold_unary(zero_minus_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_SUB);
    ir_graph_destroy(o);
}

/* ---- constants the caller holds ------------------------------------------------------------- */

Test(fold, never_reads_a_constant_the_caller_still_holds) {
    ir_graph *g = new_graph();
    ir_node *x = OP1(g, EXP, input(g, 0, EM_F32, 1, SH(3)));
    em_tensor *ones = em_full(EM_F32, 1, SH(3), 1.0); /* a "global": captured by reference */
    ir_node *c = ir_graph_add_const(g, ones);
    ir_node *sq = OP2(g, MUL, c, c);
    set_out(g, OP2(g, ADD, OP2(g, MUL, x, c), sq));
    ir_graph *o = simplify(g);
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[3]\n"
                   "  %1 = const f32[3] @_\n"
                   "  %2 = exp %0 : f32[3]\n"
                   "  %3 = mul %1, %1 : f32[3]\n"
                   "  %4 = mul %2, %1 : f32[3]\n"
                   "  %5 = add %4, %3 : f32[3]\n"
                   "  return %5\n");
    /* Its data may change before the next call, and the graph must see it. */
    ((float *)rt_tensor_data(ones))[1] = 2.0f;
    em_tensor *arg = em_zeros(EM_F32, 1, SH(3)), *y;
    cr_assert_eq(ir_graph_run(o, &arg, &y), 0, "%s", em_last_error());
    float v[3];
    cr_assert_eq(em_read(y, v, sizeof v), 0);
    cr_expect(v[0] == 2.0f && v[1] == 6.0f && v[2] == 2.0f, "%g %g %g", v[0], v[1], v[2]);
    em_release(y), em_release(arg);
    ir_graph_destroy(o);
    em_release(ones);
}

Test(fold, folds_a_view_of_a_held_constant_which_still_sees_its_data_change) {
    ir_graph *g = new_graph();
    em_tensor *w = em_randn(2, SH(2, 3), 3); /* held by the caller */
    ir_node *wt = OP1(g, PERMUTE, ir_graph_add_const(g, w), .dims = {1, 0});
    set_out(g, OP2(g, MUL, wt, input(g, 0, EM_F32, 2, SH(3, 2))));
    ir_graph *o = simplify(g);
    ir_node *c = output(o)->in[0];
    cr_assert_eq(c->kind, IR_NODE_CONST, "the transpose became a constant");
    cr_expect_eq(c->value->storage, w->storage, "a view of the weight's storage");
    cr_expect_eq(c->value->strides[0], 1);
    ((float *)rt_tensor_data(w))[1] = 100.0f; /* w[0][1], i.e. wt[1][0] */
    em_tensor *arg = em_full(EM_F32, 2, SH(3, 2), 1.0), *y;
    cr_assert_eq(ir_graph_run(o, &arg, &y), 0, "%s", em_last_error());
    float v[6];
    cr_assert_eq(em_read(y, v, sizeof v), 0);
    cr_expect_eq(v[2], 100.0f);
    em_release(y), em_release(arg);
    ir_graph_destroy(o);
    em_release(w);
}

Test(fold, does_not_fold_a_copy_of_a_held_constant) {
    ir_graph *g = new_graph();
    em_tensor *w = em_randn(2, SH(2, 3), 3);
    ir_node *wt = OP1(g, PERMUTE, ir_graph_add_const(g, w), .dims = {1, 0});
    set_out(g, OP1(g, CONTIGUOUS, wt)); /* a copy would freeze the data */
    ir_graph *o = simplify(g);
    cr_expect_eq(output(o)->op, IR_OP_CONTIGUOUS);
    cr_expect_eq(output(o)->in[0]->kind, IR_NODE_CONST);
    ir_graph_destroy(o);
    em_release(w);
}

/* ---- neg(neg x) -------------------------------------------------------------------------------- */

static ir_node *neg_neg_exp(ir_graph *g, ir_node *x) {
    return OP1(g, NEG, OP1(g, NEG, OP1(g, EXP, x)));
}
static ir_node *neg3(ir_graph *g, ir_node *x) {
    return OP1(g, NEG, OP1(g, NEG, OP1(g, NEG, OP1(g, TANH, x))));
}
static ir_node *neg_neg_arg(ir_graph *g, ir_node *x) { return OP1(g, NEG, OP1(g, NEG, x)); }
Test(fold, turns_neg_of_neg_into_x) {
    ir_graph *o = fold_unary(neg_neg_exp, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    cr_expect_eq(ir_graph_num_nodes(o), 2);
    ir_graph_destroy(o);
    o = fold_unary(neg3, EM_F32, 1, SH(9));
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[9]\n"
                   "  %1 = tanh %0 : f32[9]\n"
                   "  %2 = neg %1 : f32[9]\n"
                   "  return %2\n");
    ir_graph_destroy(o);
    o = fold_unary(neg_neg_arg, EM_I64, 1, SH(9));
    cr_expect_eq(output(o)->op, IR_OP_CONTIGUOUS);
    ir_graph_destroy(o);
}

/* ---- views ---------------------------------------------------------------------------------- */

static ir_node *perm(ir_graph *g, ir_node *x, int a, int b, int c) {
    return OP1(g, PERMUTE, x, .dims = {a, b, c});
}
static ir_node *permute_twice(ir_graph *g, ir_node *x) {
    return perm(g, perm(g, x, 2, 0, 1), 0, 2, 1);
}
static ir_node *permute_back(ir_graph *g, ir_node *x) {
    return OP1(g, EXP, perm(g, perm(g, x, 2, 0, 1), 1, 2, 0));
}
static ir_node *permute_identity(ir_graph *g, ir_node *x) { return OP1(g, EXP, perm(g, x, 0, 1, 2)); }

Test(fold, composes_a_permute_of_a_permute) {
    ir_graph *o = fold_unary(permute_twice, EM_F32, 3, SH(2, 3, 4));
    /* y[i] = x[p[i]] with p = (2,0,1), then z[i] = y[q[i]] with q = (0,2,1): x[(2,1,0)]. */
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3,4]\n"
                   "  %1 = permute %0 {perm=[2,1,0]} : f32[4,3,2]\n"
                   "  return %1\n");
    ir_graph_destroy(o);
}

Test(fold, removes_a_permute_of_a_permute_that_restores_the_order_and_an_identity_permute) {
    ir_graph *o = fold_unary(permute_back, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(output(o)->in[0]->kind, IR_NODE_INPUT);
    cr_expect_eq(ir_graph_num_nodes(o), 2);
    ir_graph_destroy(o);
    o = fold_unary(permute_identity, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(output(o)->in[0]->kind, IR_NODE_INPUT);
    ir_graph_destroy(o);
}

static ir_node *reshape(ir_graph *g, ir_node *x, int nd, const int64_t *dims) {
    ir_attrs a = {.ndim = nd};
    memcpy(a.dims, dims, (size_t)nd * sizeof *dims);
    return op(g, IR_OP_RESHAPE, x, NULL, a);
}
static ir_node *reshape_twice_of_exp(ir_graph *g, ir_node *x) {
    return reshape(g, reshape(g, OP1(g, EXP, x), 1, SH(24)), 2, SH(6, 4));
}
static ir_node *reshape_twice_back(ir_graph *g, ir_node *x) {
    return reshape(g, reshape(g, OP1(g, EXP, x), 2, SH(4, 6)), 3, SH(2, 3, 4));
}
static ir_node *reshape_twice_of_arg(ir_graph *g, ir_node *x) {
    return reshape(g, reshape(g, x, 1, SH(24)), 2, SH(6, 4));
}
static ir_node *reshape_same(ir_graph *g, ir_node *x) { return OP1(g, EXP, reshape(g, x, 3, SH(2, -1, 4))); }

Test(fold, merges_a_reshape_of_a_reshape_of_a_contiguous_value) {
    ir_graph *o = fold_unary(reshape_twice_of_exp, EM_F32, 3, SH(2, 3, 4));
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3,4]\n"
                   "  %1 = exp %0 : f32[2,3,4]\n"
                   "  %2 = reshape %1 {shape=[6,4]} : f32[6,4]\n"
                   "  return %2\n");
    ir_graph_destroy(o);
    o = fold_unary(reshape_twice_back, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

Test(fold, keeps_a_reshape_of_a_reshape_of_an_argument_whose_layout_may_need_a_copy) {
    ir_graph *o = fold_unary(reshape_twice_of_arg, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(output(o)->op, IR_OP_RESHAPE);
    cr_expect_eq(output(o)->in[0]->op, IR_OP_RESHAPE);
    ir_graph_destroy(o);
    /* Flattening a transposed x copies it, so the second reshape sees dense
     * rows; reshaping x directly would leave them strided, and a row sum
     * adds strided rows in another order. */
    ir_graph *g = new_graph();
    ir_node *x = input(g, 0, EM_F32, 2, SH(4, 64));
    set_out(g, OP1(g, SUM, reshape(g, reshape(g, x, 1, SH(256)), 2, SH(4, 64)), .axis = 1));
    ir_graph *copy;
    o = simplify_keeping_a_copy(g, &copy);
    em_tensor *base = em_randn(2, SH(64, 4), 5), *xt = em_transpose(base, 0, 1);
    expect_same_result(copy, o, &xt);
    em_release(base), em_release(xt);
    ir_graph_destroy(copy), ir_graph_destroy(o);
}

Test(fold, removes_a_reshape_to_the_same_shape_even_of_a_transposed_argument) {
    ir_graph *o = fold_unary(reshape_same, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(output(o)->in[0]->kind, IR_NODE_INPUT);
    ir_graph_destroy(o);
    /* A transposed argument: reshape to its own shape is a view with its strides. */
    ir_graph *g = new_graph();
    ir_node *x = input(g, 0, EM_F32, 2, SH(3, 64));
    set_out(g, OP1(g, SUM, reshape(g, x, 2, SH(3, 64)), .axis = 1));
    ir_graph *copy;
    o = simplify_keeping_a_copy(g, &copy);
    cr_expect_eq(output(o)->in[0]->kind, IR_NODE_INPUT);
    em_tensor *base = em_randn(2, SH(64, 3), 4), *xt = em_transpose(base, 0, 1);
    expect_same_result(copy, o, &xt);
    em_release(base), em_release(xt);
    ir_graph_destroy(copy), ir_graph_destroy(o);
}

static ir_node *expand_same(ir_graph *g, ir_node *x) {
    return OP1(g, EXP, OP1(g, EXPAND, x, .ndim = 2, .dims = {2, -1}));
}
static ir_node *expand_wider(ir_graph *g, ir_node *x) {
    return OP1(g, EXP, OP1(g, EXPAND, x, .ndim = 3, .dims = {5, 2, 3}));
}
Test(fold, removes_an_expand_to_the_same_shape_only) {
    ir_graph *o = fold_unary(expand_same, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->in[0]->kind, IR_NODE_INPUT);
    ir_graph_destroy(o);
    o = fold_unary(expand_wider, EM_F32, 2, SH(2, 3));
    cr_expect_eq(output(o)->in[0]->op, IR_OP_EXPAND);
    ir_graph_destroy(o);
}

static ir_node *cast_same(ir_graph *g, ir_node *x) { return OP1(g, CAST, OP1(g, EXP, x), .dtype = EM_F32); }
static ir_node *cast_other(ir_graph *g, ir_node *x) { return OP1(g, CAST, OP1(g, EXP, x), .dtype = EM_F64); }
Test(fold, removes_a_cast_to_the_same_dtype_only) {
    ir_graph *o = fold_unary(cast_same, EM_F32, 1, SH(9));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
    o = fold_unary(cast_other, EM_F32, 1, SH(9));
    cr_expect_eq(output(o)->op, IR_OP_CAST);
    ir_graph_destroy(o);
}

static ir_node *contiguous_twice(ir_graph *g, ir_node *x) {
    return OP1(g, CONTIGUOUS, OP1(g, CONTIGUOUS, perm(g, x, 2, 1, 0)));
}
static ir_node *contiguous_of_exp(ir_graph *g, ir_node *x) { return OP1(g, CONTIGUOUS, OP1(g, EXP, x)); }
Test(fold, removes_contiguous_of_a_value_that_is_contiguous_already) {
    ir_graph *o = fold_unary(contiguous_twice, EM_F32, 3, SH(2, 3, 4));
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[2,3,4]\n"
                   "  %1 = permute %0 {perm=[2,1,0]} : f32[4,3,2]\n"
                   "  %2 = contiguous %1 : f32[4,3,2]\n"
                   "  return %2\n");
    ir_graph_destroy(o);
    o = fold_unary(contiguous_of_exp, EM_F32, 3, SH(2, 3, 4));
    cr_expect_eq(output(o)->op, IR_OP_EXP);
    ir_graph_destroy(o);
}

static ir_node *slice(ir_graph *g, ir_node *x, int axis, int64_t s, int64_t e, int64_t step) {
    return OP1(g, SLICE, x, .axis = axis, .start = s, .end = e, .step = step);
}
static ir_node *slice_full(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 1, 0, 99, 1)); }
static ir_node *slice_full_neg(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, -1, -3, 3, 1)); }
static ir_node *slice_unit_axis(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 0, 0, 1, 5)); }
static ir_node *slice_part(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 1, 1, 3, 1)); }
static ir_node *slice_step(ir_graph *g, ir_node *x) { return OP1(g, EXP, slice(g, x, 1, 0, 3, 2)); }
Test(fold, removes_a_slice_that_covers_its_whole_axis_only) {
    build_fn whole[] = {slice_full, slice_full_neg, slice_unit_axis};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        ir_graph *o = fold_unary(whole[i], EM_F32, 2, i == 2 ? SH(1, 3) : SH(2, 3));
        cr_expect_eq(output(o)->in[0]->kind, IR_NODE_INPUT, "case %zu", i);
        ir_graph_destroy(o);
    }
    build_fn part[] = {slice_part, slice_step};
    for (size_t i = 0; i < sizeof part / sizeof part[0]; i++) {
        ir_graph *o = fold_unary(part[i], EM_F32, 2, SH(2, 3));
        cr_expect_eq(output(o)->in[0]->op, IR_OP_SLICE, "case %zu", i);
        ir_graph_destroy(o);
    }
}

/* ---- constant subgraphs ------------------------------------------------------------------------ */

Test(fold, folds_a_chain_of_ops_on_constants_into_one_constant_with_the_eager_value) {
    float a[6] = {1, -2, 3.5f, -0.0f, 5, 0.25f};
    em_tensor *ta = em_from_data(EM_F32, 2, SH(2, 3), a), *tb = em_scalar(EM_F32, 0.75);
    /* Eagerly: sum(exp(transpose(a) * b), 1). */
    em_tensor *t1 = em_transpose(ta, 0, 1), *t2 = em_mul(t1, tb), *t3 = em_exp(t2), *want = em_sum(t3, 1, 0);
    em_release(t1), em_release(t2), em_release(t3); /* t1 shared a's storage */
    ir_graph *g = new_graph();
    ir_node *x = input(g, 0, EM_F32, 1, SH(3));
    ir_node *c = OP1(g, PERMUTE, fixed(g, em_retain(ta)), .dims = {1, 0});
    c = OP1(g, SUM, OP1(g, EXP, OP2(g, MUL, c, fixed(g, em_retain(tb)))), .axis = 1);
    set_out(g, OP2(g, ADD, x, c));
    em_release(ta), em_release(tb); /* now the graph holds them alone */
    ir_graph *o = simplify(g);
    expect_text(o, "graph g\n"
                   "  %0 = input 0 : f32[3]\n"
                   "  %1 = const f32[3] @_\n"
                   "  %2 = add %0, %1 : f32[3]\n"
                   "  return %2\n");
    em_tensor *got = output(o)->in[1]->value;
    size_t n, m;
    char *p = bytes(got, &n), *q = bytes(want, &m);
    cr_expect(n == m && memcmp(p, q, n) == 0, "the folded value is the eager value");
    free(p), free(q);
    em_release(want);
    ir_graph_destroy(o);
}

Test(fold, folds_an_output_that_is_computed_from_constants_alone) {
    ir_graph *g = new_graph();
    input(g, 0, EM_F32, 1, SH(3));
    ir_node *c = OP2(g, ADD, full(g, EM_I32, 1, SH(3), 2), full(g, EM_I32, 0, NULL, 5));
    set_out(g, c);
    ir_graph *o = simplify(g);
    cr_assert_eq(output(o)->kind, IR_NODE_CONST);
    int32_t v[3];
    cr_assert_eq(em_read(output(o)->value, v, sizeof v), 0);
    cr_expect(v[0] == 7 && v[1] == 7 && v[2] == 7);
    cr_expect_eq(ir_graph_num_nodes(o), 2, "the input stays, the operands go");
    ir_graph_destroy(o);
}

/* expand of a fixed [n] f32 constant to [k, n]. */
static ir_graph *expand_graph(int64_t n, int64_t k) {
    ir_graph *g = new_graph();
    ir_node *c = fixed(g, em_zeros(EM_F32, 1, SH(n)));
    set_out(g, OP1(g, EXPAND, c, .ndim = 2, .dims = {k, n}));
    return g;
}

Test(fold, stops_at_the_size_limit_so_a_big_expand_is_not_folded) {
    /* A scalar to 1 MiB folds; to 1 MiB + 4 bytes it does not. */
    ir_graph *o = simplify(expand_graph(1, (1 << 20) / 4));
    cr_expect_eq(output(o)->kind, IR_NODE_CONST);
    ir_graph_destroy(o);
    o = simplify(expand_graph(1, (1 << 20) / 4 + 1));
    cr_expect_eq(output(o)->op, IR_OP_EXPAND);
    ir_graph_destroy(o);
    /* Past 1 MiB, up to four times the largest input folds. */
    o = simplify(expand_graph(1 << 17, 4)); /* 512 KiB -> 2 MiB */
    cr_expect_eq(output(o)->kind, IR_NODE_CONST);
    ir_graph_destroy(o);
    o = simplify(expand_graph(1 << 17, 5)); /* 512 KiB -> 2.5 MiB */
    cr_expect_eq(output(o)->op, IR_OP_EXPAND);
    ir_graph_destroy(o);
}

Test(fold, leaves_an_op_that_fails_to_fail_at_run_time) {
    ir_graph *g = new_graph();
    input(g, 0, EM_F32, 1, SH(1));
    int64_t idx[2] = {0, 7};
    ir_node *in[2] = {fixed(g, em_zeros(EM_F32, 2, SH(4, 2))), fixed(g, em_from_data(EM_I64, 1, SH(2), idx))};
    ir_node *e = ir_graph_add_node(g, IR_OP_EMBEDDING, NULL, in, 2, &(ir_attrs){0}, 0);
    cr_assert(e);
    set_out(g, e);
    ir_graph *o = simplify(g);
    cr_expect_eq(output(o)->op, IR_OP_EMBEDDING);
    cr_expect_str_eq(em_last_error(), "", "the failed attempt leaves no message behind");
    em_tensor *arg = em_zeros(EM_F32, 1, SH(1)), *y = NULL;
    cr_expect_eq(ir_graph_run(o, &arg, &y), -1);
    cr_expect(strstr(em_last_error(), "out of range"), "%s", em_last_error());
    em_release(arg);
    ir_graph_destroy(o);
}

Test(fold, folds_an_identity_on_a_folded_constant_and_keeps_the_input_graph_unchanged) {
    ir_graph *g = new_graph();
    ir_node *x = OP1(g, EXP, input(g, 0, EM_F32, 1, SH(4)));
    ir_node *one = OP2(g, SUB, full(g, EM_F32, 1, SH(4), 3.0), full(g, EM_F32, 0, NULL, 2.0));
    set_out(g, OP2(g, MUL, x, one)); /* 3 - 2 is computed, then recognised as ones */
    char *before = text(g);
    ir_graph *f = pass_fold(g, NULL);
    cr_assert(f, "%s", em_last_error());
    char *after = text(g);
    cr_expect_str_eq(after, before, "the input graph is not changed");
    cr_expect_eq(ir_graph_output(f, 0)->op, IR_OP_EXP);
    free(before), free(after);
    ir_graph_destroy(f);
    ir_graph_destroy(g);
}
