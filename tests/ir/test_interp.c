/*
 * test_interp.c — running graphs with the eager adapters (ir/interp.c).
 *
 * The interpreter must compute exactly what the eager calls compute: for every
 * op of ops.def a one-node graph is run and compared bit for bit (dtype, shape,
 * strides and bytes) with the public call (em_add, em_sum, em_layer_norm,
 * em_reshape of a non-contiguous input, em_concat of three tensors, ...), with
 * several input dtypes and layouts per op. Larger graphs (an MLP, softmax
 * attention) are compared with the same functions run eagerly. Ownership is
 * checked through refcounts and the allocator's live-byte counter: outputs
 * that are inputs or constants are retained, intermediates are freed after
 * their last use, and a failure at run time (an out-of-range embedding index,
 * an injected allocation failure) returns -1 and leaves nothing behind.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "../util.h"

/* ---- one-node graphs: every op against its public call ----------------------------------- */

typedef em_tensor *(*unary_fn)(em_tensor *);
typedef em_tensor *(*binary_fn)(em_tensor *, em_tensor *);
typedef em_tensor *(*reduce_fn)(em_tensor *, int, int);
#define API_UNARY(name, E) [IR_OP_##E] = em_##name,
#define API_BINARY(name, E)
#define API_CUSTOM(name, E)
#define OP(E, name, arity, optional, kind, api, rule, eager, kernel) API_##api(name, E)
static const unary_fn unary_api[IR_OP_COUNT] = {
#include "ops.def"
};
#undef API_UNARY
#undef API_BINARY
#define API_UNARY(name, E)
#define API_BINARY(name, E) [IR_OP_##E] = em_##name,
static const binary_fn binary_api[IR_OP_COUNT] = {
#include "ops.def"
};
#undef OP
static const reduce_fn reduce_api[IR_OP_COUNT] = {
    [IR_OP_SUM] = em_sum, [IR_OP_MEAN] = em_mean, [IR_OP_MAX] = em_max,
    [IR_OP_MIN] = em_min, [IR_OP_ARGMAX] = em_argmax,
};

/* The public call of op on in[] with attrs (un-normalised, as a user passes them). */
static em_tensor *eager_call(ir_op op, em_tensor **in, int nin, const ir_attrs *a) {
    if (unary_api[op]) return unary_api[op](in[0]);
    if (binary_api[op]) return binary_api[op](in[0], in[1]);
    if (reduce_api[op]) return reduce_api[op](in[0], a->axis, a->keepdim);
    int perm[EM_MAX_DIMS];
    switch (op) {
    case IR_OP_WHERE: return em_where(in[0], in[1], in[2]);
    case IR_OP_CAST: return em_cast(in[0], a->dtype);
    case IR_OP_SOFTMAX: return em_softmax(in[0], a->axis);
    case IR_OP_LOG_SOFTMAX: return em_log_softmax(in[0], a->axis);
    case IR_OP_LAYER_NORM: return em_layer_norm(in[0], in[1], in[2], a->eps);
    case IR_OP_RMS_NORM: return em_rms_norm(in[0], in[1], a->eps);
    case IR_OP_MATMUL: return em_matmul(in[0], in[1]);
    case IR_OP_LINEAR: return em_linear(in[0], in[1], in[2]);
    case IR_OP_EMBEDDING: return em_embedding(in[0], in[1]);
    case IR_OP_RESHAPE: return em_reshape(in[0], a->ndim, a->dims);
    case IR_OP_PERMUTE:
        for (int i = 0; i < in[0]->ndim; i++) perm[i] = (int)a->dims[i];
        return em_permute(in[0], perm);
    case IR_OP_SLICE: return em_slice(in[0], a->axis, a->start, a->end, a->step);
    case IR_OP_EXPAND: return em_expand(in[0], a->ndim, a->dims);
    case IR_OP_CONCAT: return em_concat(in, nin, a->axis);
    case IR_OP_CONTIGUOUS: return em_contiguous(in[0]);
    default: cr_assert_fail("no public call for op %s", ir_ops[op].name);
    }
    return NULL;
}

/* Runs op(in...) as a one-node graph (each non-NULL operand an input) and as its
 * public call; expects identical results. Releases in[]. */
static void check_op(ir_op op, em_tensor **in, int nin, ir_attrs attrs, const char *what) {
    char name[128];
    snprintf(name, sizeof name, "%s (%s)", ir_ops[op].name, what);
    em_tensor *want = eager_call(op, in, nin, &attrs);
    cr_assert(want, "%s: eager: %s", name, em_last_error());

    ir_graph *g = ir_graph_create(name);
    ir_node *nodes[8];
    em_tensor *args[8];
    int nargs = 0;
    for (int i = 0; i < nin; i++) {
        nodes[i] = NULL;
        if (!in[i]) continue;
        ir_type t;
        ir_type_of(in[i], &t);
        args[nargs] = in[i];
        nodes[i] = ir_graph_add_input(g, &t, nargs++);
        cr_assert(nodes[i], "%s", em_last_error());
    }
    ir_node *n = ir_graph_add_node(g, op, NULL, nodes, nin, &attrs, 0);
    cr_assert(n, "%s: %s", name, em_last_error());
    cr_assert_eq(ir_graph_set_outputs(g, &n, 1), 0);
    cr_assert_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    em_tensor *got = NULL;
    cr_assert_eq(ir_graph_run(g, args, &got), 0, "%s: %s", name, em_last_error());
    tu_expect_identical(got, want, name);
    em_release(got);
    em_release(want);
    ir_graph_destroy(g);
    for (int i = 0; i < nin; i++) em_release(in[i]);
}

#define CHECK(op, attrs, what, ...)                                                      \
    do {                                                                                 \
        em_tensor *in_[] = {__VA_ARGS__};                                                \
        check_op(op, in_, (int)(sizeof in_ / sizeof *in_), attrs, what);                 \
    } while (0)
#define A(...) ((ir_attrs){__VA_ARGS__})
#define SH(...) (int64_t[]){__VA_ARGS__}

/* A transposed (non-contiguous) view of a fresh [r, c] tensor: shape [c, r]. */
static em_tensor *transposed(int64_t r, int64_t c, uint64_t seed) {
    return tu_transposed(tu_randn(2, SH(r, c), seed), 0, 1);
}

static bool covered[IR_OP_COUNT];

static void check_elementwise(ir_op op) {
    if (ir_ops[op].arity == 1 && op != IR_OP_CAST) {
        CHECK(op, A(0), "f32", tu_randn(2, SH(3, 5), op));
        CHECK(op, A(0), "transposed", transposed(4, 3, op));
        CHECK(op, A(0), "f64", tu_cast(tu_randn(2, SH(2, 3), op), EM_F64));
        CHECK(op, A(0), "i32", tu_ints(EM_I32, 2, SH(2, 7), 11, -5));
    } else if (op == IR_OP_CAST) {
        CHECK(op, A(.dtype = EM_I32), "f32 to i32", tu_randn(2, SH(3, 5), 1));
        CHECK(op, A(.dtype = EM_F64), "transposed f32 to f64", transposed(4, 3, 2));
        CHECK(op, A(.dtype = EM_F32), "same dtype", tu_randn(1, SH(6), 3));
        CHECK(op, A(.dtype = EM_BOOL), "i64 to bool", tu_ints(EM_I64, 1, SH(9), 5, -2));
    } else if (op == IR_OP_WHERE) {
        CHECK(op, A(0), "broadcast, mixed", tu_ints(EM_BOOL, 2, SH(3, 1), 2, 0),
              tu_randn(2, SH(3, 4), 4), tu_cast(tu_randn(1, SH(4), 5), EM_F64));
    } else {
        CHECK(op, A(0), "f32 broadcast", tu_randn(2, SH(3, 4), op), tu_randn(1, SH(4), op + 100));
        CHECK(op, A(0), "i32 and f64", tu_ints(EM_I32, 2, SH(2, 1), 7, -3),
              tu_cast(tu_randn(1, SH(5), op), EM_F64));
        CHECK(op, A(0), "i64 and transposed", tu_ints(EM_I64, 2, SH(4, 3), 9, -4),
              transposed(3, 4, op));
        CHECK(op, A(0), "bools", tu_ints(EM_BOOL, 1, SH(6), 2, 0), tu_ints(EM_BOOL, 1, SH(6), 3, 0));
    }
}

static void check_reduction(ir_op op) {
    CHECK(op, A(.axis = -2, .keepdim = 1), "f32 axis -2 keepdim", tu_randn(3, SH(3, 4, 5), op));
    CHECK(op, A(.axis = 0), "transposed axis 0", transposed(5, 6, op));
    CHECK(op, A(.axis = 1), "i32 axis 1", tu_ints(EM_I32, 2, SH(3, 4), 13, -6));
    CHECK(op, A(.axis = -1), "0-d", em_scalar(EM_F64, 2.5));
}

static void check_norm(ir_op op) {
    switch (op) {
    case IR_OP_SOFTMAX:
    case IR_OP_LOG_SOFTMAX:
        CHECK(op, A(.axis = -1), "rows", tu_randn(2, SH(4, 33), op));
        CHECK(op, A(.axis = 0), "columns of a view", transposed(6, 5, op));
        CHECK(op, A(.axis = 1), "i32", tu_ints(EM_I32, 2, SH(2, 5), 7, -3));
        break;
    case IR_OP_LAYER_NORM:
        CHECK(op, A(.eps = 1e-5), "weight and bias", tu_randn(2, SH(3, 40), 1), tu_randn(1, SH(40), 2),
              tu_randn(1, SH(40), 3));
        CHECK(op, A(.eps = 1e-3), "no weight or bias", transposed(8, 3, 4), NULL, NULL);
        CHECK(op, A(.eps = 0), "bias only, f64", tu_cast(tu_randn(2, SH(2, 9), 5), EM_F64), NULL,
              tu_randn(1, SH(9), 6));
        break;
    case IR_OP_RMS_NORM:
        CHECK(op, A(.eps = 1e-6), "weight", tu_randn(3, SH(2, 3, 24), 7), tu_randn(1, SH(24), 8));
        CHECK(op, A(.eps = 1e-6), "no weight", transposed(7, 5, 9), NULL);
        break;
    default: cr_assert_fail("no case for %s", ir_ops[op].name);
    }
}

static void check_contraction_and_gather(ir_op op) {
    switch (op) {
    case IR_OP_MATMUL:
        CHECK(op, A(0), "batch by matrix", tu_randn(3, SH(2, 3, 4), 1), tu_randn(2, SH(4, 5), 2));
        CHECK(op, A(0), "vector by transposed", tu_randn(1, SH(6), 3), transposed(4, 6, 4));
        CHECK(op, A(0), "broadcast batches, f64", tu_cast(tu_randn(4, SH(2, 1, 3, 4), 5), EM_F64),
              tu_randn(3, SH(3, 4, 2), 6));
        break;
    case IR_OP_LINEAR:
        CHECK(op, A(0), "with bias", tu_randn(3, SH(2, 3, 8), 1), tu_randn(2, SH(5, 8), 2),
              tu_randn(1, SH(5), 3));
        CHECK(op, A(0), "no bias, transposed weight", tu_randn(2, SH(4, 6), 4), transposed(6, 7, 5),
              NULL);
        break;
    case IR_OP_EMBEDDING:
        CHECK(op, A(0), "i64 indices", tu_randn(2, SH(10, 4), 1), tu_ints(EM_I64, 2, SH(2, 3), 10, 0));
        CHECK(op, A(0), "i32 indices, transposed table", transposed(3, 7, 2),
              tu_ints(EM_I32, 1, SH(5), 7, 0));
        break;
    default: cr_assert_fail("no case for %s", ir_ops[op].name);
    }
}

static void check_shape_op(ir_op op) {
    em_tensor *three[3];
    switch (op) {
    case IR_OP_RESHAPE:
        CHECK(op, A(.ndim = 2, .dims = {2, -1}), "non-contiguous input", transposed(3, 4, 1));
        CHECK(op, A(.ndim = 3, .dims = {1, 4, 3}), "a view", tu_randn(2, SH(4, 3), 2));
        CHECK(op, A(.ndim = 0), "to 0-d", tu_randn(1, SH(1), 3));
        break;
    case IR_OP_PERMUTE:
        CHECK(op, A(.dims = {2, 0, -2}), "3-d", tu_randn(3, SH(2, 3, 4), 4));
        break;
    case IR_OP_SLICE:
        CHECK(op, A(.axis = 1, .start = -7, .end = 100, .step = 2), "stepped", tu_randn(2, SH(3, 8), 5));
        CHECK(op, A(.axis = 0, .start = 2, .end = 1, .step = 1), "empty", transposed(3, 4, 6));
        break;
    case IR_OP_EXPAND:
        CHECK(op, A(.ndim = 3, .dims = {2, -1, 4}), "new and size-1 dims", tu_randn(2, SH(3, 1), 7));
        break;
    case IR_OP_CONCAT:
        three[0] = tu_randn(2, SH(2, 3), 8), three[1] = tu_cast(tu_randn(2, SH(1, 3), 9), EM_F64);
        three[2] = transposed(3, 4, 10);
        check_op(op, three, 3, A(.axis = -2), "3 tensors, mixed dtypes and layouts");
        CHECK(op, A(.axis = 0), "one tensor", tu_randn(1, SH(5), 11));
        break;
    case IR_OP_CONTIGUOUS:
        CHECK(op, A(0), "non-contiguous", transposed(5, 3, 12));
        CHECK(op, A(0), "contiguous already", tu_randn(2, SH(5, 3), 13));
        break;
    default: cr_assert_fail("no case for %s", ir_ops[op].name);
    }
}

static void check_kind(ir_kind kind, void (*check)(ir_op)) {
    for (int op = 0; op < IR_OP_COUNT; op++)
        if (ir_ops[op].kind == kind) {
            check((ir_op)op);
            covered[op] = true;
        }
}

Test(interp, matches_eager_bit_for_bit_for_every_elementwise_op) {
    check_kind(IR_KIND_ELEMENTWISE, check_elementwise);
}

Test(interp, matches_eager_bit_for_bit_for_every_reduction) {
    check_kind(IR_KIND_REDUCTION, check_reduction);
}

Test(interp, matches_eager_bit_for_bit_for_every_row_wise_op) {
    check_kind(IR_KIND_NORM, check_norm);
}

Test(interp, matches_eager_bit_for_bit_for_contractions_and_gathers) {
    check_kind(IR_KIND_CONTRACTION, check_contraction_and_gather);
    check_kind(IR_KIND_GATHER, check_contraction_and_gather);
}

Test(interp, matches_eager_bit_for_bit_for_every_shape_op) {
    check_kind(IR_KIND_VIEW, check_shape_op);
    check_kind(IR_KIND_COPY, check_shape_op);
}

Test(interp, leaves_no_op_of_the_table_unchecked) {
    check_kind(IR_KIND_ELEMENTWISE, check_elementwise);
    check_kind(IR_KIND_REDUCTION, check_reduction);
    check_kind(IR_KIND_NORM, check_norm);
    check_kind(IR_KIND_CONTRACTION, check_contraction_and_gather);
    check_kind(IR_KIND_GATHER, check_contraction_and_gather);
    check_kind(IR_KIND_VIEW, check_shape_op);
    check_kind(IR_KIND_COPY, check_shape_op);
    for (int op = 0; op < IR_OP_COUNT; op++) cr_expect(covered[op], "op %s has no case", ir_ops[op].name);
}

/* ---- multi-node graphs -------------------------------------------------------------------- */

static ir_node *add(ir_graph *g, ir_op op, ir_node *const *in, int nin, ir_attrs a) {
    ir_node *n = ir_graph_add_node(g, op, NULL, in, nin, &a, 0);
    cr_assert(n, "%s: %s", ir_ops[op].name, em_last_error());
    return n;
}

static ir_node *arg(ir_graph *g, int i, const em_tensor *t) {
    ir_type ty;
    ir_type_of(t, &ty);
    ir_node *n = ir_graph_add_input(g, &ty, i);
    cr_assert(n, "%s", em_last_error());
    return n;
}

static ir_node *cst(ir_graph *g, em_tensor *t) {
    ir_node *n = ir_graph_add_const(g, t);
    cr_assert(n, "%s", em_last_error());
    return n;
}

/* Runs g on args, expects nout outputs identical to want[], releases them. */
static void expect_run(ir_graph *g, em_tensor **args, em_tensor **want, int nout) {
    cr_assert_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    em_tensor *got[4] = {0};
    cr_assert_eq(ir_graph_run(g, args, got), 0, "%s", em_last_error());
    for (int k = 0; k < nout; k++) {
        char what[32];
        snprintf(what, sizeof what, "output %d", k);
        tu_expect_identical(got[k], want[k], what);
        em_release(got[k]);
    }
}

Test(interp, runs_an_mlp_as_eager_does) {
    em_tensor *x = tu_randn(2, SH(16, 32), 1), *w1 = tu_randn(2, SH(64, 32), 2);
    em_tensor *b1 = tu_randn(1, SH(64), 3);
    em_tensor *w2 = tu_randn(2, SH(8, 64), 4), *b2 = tu_randn(1, SH(8), 5);
    em_scope_begin();
    em_tensor *want = em_keep(em_linear(em_gelu(em_linear(x, w1, b1)), w2, b2));
    em_scope_end();

    ir_graph *g = ir_graph_create("mlp");
    ir_node *h = add(g, IR_OP_LINEAR, (ir_node *[]){arg(g, 0, x), cst(g, w1), cst(g, b1)}, 3, A(0));
    h = add(g, IR_OP_GELU, &h, 1, A(0));
    ir_node *y = add(g, IR_OP_LINEAR, (ir_node *[]){h, cst(g, w2), cst(g, b2)}, 3, A(0));
    cr_assert_eq(ir_graph_set_outputs(g, &y, 1), 0);
    expect_run(g, &x, &want, 1);
    ir_graph_destroy(g);
    em_release(want);
    em_release(x), em_release(w1), em_release(b1), em_release(w2), em_release(b2);
}

Test(interp, runs_softmax_attention_with_two_outputs_as_eager_does) {
    em_tensor *q = tu_randn(3, SH(2, 6, 8), 1), *k = tu_randn(3, SH(2, 6, 8), 2);
    em_tensor *v = tu_randn(3, SH(2, 6, 8), 3);
    em_tensor *scale = em_scalar(EM_F32, 1 / sqrt(8.0));
    em_scope_begin();
    em_tensor *p = em_keep(em_softmax(em_mul(em_matmul(q, em_transpose(k, -1, -2)), scale), -1));
    em_tensor *want[2] = {em_keep(em_matmul(p, v)), p};
    em_scope_end();

    ir_graph *g = ir_graph_create("attention");
    ir_node *kt = add(g, IR_OP_PERMUTE, (ir_node *[]){arg(g, 1, k)}, 1, A(.dims = {0, 2, 1}));
    ir_node *s = add(g, IR_OP_MATMUL, (ir_node *[]){arg(g, 0, q), kt}, 2, A(0));
    s = add(g, IR_OP_MUL, (ir_node *[]){s, cst(g, scale)}, 2, A(0));
    ir_node *pn = add(g, IR_OP_SOFTMAX, &s, 1, A(.axis = -1));
    ir_node *o = add(g, IR_OP_MATMUL, (ir_node *[]){pn, arg(g, 2, v)}, 2, A(0));
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){o, pn}, 2), 0);
    expect_run(g, (em_tensor *[]){q, k, v}, want, 2);
    ir_graph_destroy(g);
    em_release(want[0]), em_release(want[1]);
    em_release(q), em_release(k), em_release(v), em_release(scale);
}

Test(interp, retains_outputs_that_are_inputs_or_constants) {
    em_tensor *x = tu_randn(1, SH(5), 1), *c = tu_randn(1, SH(5), 2);
    long xr = atomic_load(&x->refs), cr = atomic_load(&c->refs);
    ir_graph *g = ir_graph_create("passthrough");
    ir_node *xn = arg(g, 0, x), *cn = cst(g, c);
    ir_node *s = add(g, IR_OP_ADD, (ir_node *[]){xn, cn}, 2, A(0));
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){xn, cn, s, xn, s}, 5), 0);
    em_tensor *out[5];
    cr_assert_eq(ir_graph_run(g, &x, out), 0, "%s", em_last_error());
    cr_expect_eq(out[0], x);
    cr_expect_eq(out[3], x);
    cr_expect_eq(out[1], c);
    cr_expect_eq(out[2], out[4], "one value, two references");
    cr_expect_eq(atomic_load(&x->refs), xr + 2);
    cr_expect_eq(atomic_load(&c->refs), cr + 2, "the graph's reference and the output's");
    cr_expect_eq(atomic_load(&out[2]->refs), 2);
    for (int i = 0; i < 5; i++) em_release(out[i]);
    cr_expect_eq(atomic_load(&x->refs), xr);
    ir_graph_destroy(g);
    cr_expect_eq(atomic_load(&c->refs), cr);
    em_release(x), em_release(c);
}

Test(interp, frees_each_intermediate_after_its_last_use) {
    enum { N = 1 << 16, DEPTH = 12 };
    em_tensor *x = tu_randn(1, SH(N), 1);
    ir_graph *g = ir_graph_create("chain");
    ir_node *n = arg(g, 0, x);
    ir_node *dead = add(g, IR_OP_EXP, &n, 1, A(0)); /* used by nothing */
    for (int i = 0; i < DEPTH; i++) n = add(g, i % 2 ? IR_OP_SIN : IR_OP_COS, &n, 1, A(0));
    cr_assert_eq(ir_graph_set_outputs(g, &n, 1), 0);
    cr_expect_eq(dead->uses, 0);
    size_t before = tu_live_bytes();
    em_memory_reset_peak();
    em_tensor *out;
    cr_assert_eq(ir_graph_run(g, &x, &out), 0, "%s", em_last_error());
    em_memory_stats st;
    em_memory_stats_get(&st);
    size_t one = N * sizeof(float);
    cr_expect_leq(st.peak_bytes - before, 2 * one, "peak %zu bytes above the start: more than two live values",
                  st.peak_bytes - before);
    cr_expect_eq(tu_live_bytes() - before, one, "only the output is left");
    em_release(out);
    cr_expect_eq(tu_live_bytes(), before);
    ir_graph_destroy(g);
    em_release(x);
}

/* ---- failures --------------------------------------------------------------------------------- */

Test(interp, returns_the_adapter_error_and_leaks_nothing_when_an_op_fails) {
    em_tensor *table = tu_randn(2, SH(4, 3), 1);
    em_tensor *idx = em_from_data(EM_I64, 1, SH(2), (int64_t[]){1, 7});
    em_tensor *e = em_exp(table);
    cr_assert_null(em_embedding(e, idx));
    char eager[512];
    snprintf(eager, sizeof eager, "%s", em_last_error());
    em_release(e);

    ir_graph *g = ir_graph_create("gather");
    ir_node *t = arg(g, 0, table);
    ir_node *en = add(g, IR_OP_EXP, &t, 1, A(0));
    ir_node *emb = add(g, IR_OP_EMBEDDING, (ir_node *[]){en, cst(g, idx)}, 2, A(0));
    ir_node *y = add(g, IR_OP_MUL, (ir_node *[]){emb, emb}, 2, A(0)); /* never runs */
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){y, en}, 2), 0);
    size_t before = tu_live_bytes();
    em_tensor *out[2] = {table, table};
    cr_expect_eq(ir_graph_run(g, &table, out), -1);
    cr_expect_str_eq(em_last_error(), eager);
    cr_expect(out[0] == NULL && out[1] == NULL, "nothing is left in outs");
    cr_expect_eq(tu_live_bytes(), before, "the exp intermediate was released");
    ir_graph_destroy(g);
    em_release(table), em_release(idx);
}

Test(interp, rejects_arguments_that_do_not_match_the_inputs) {
    em_tensor *x = tu_randn(2, SH(2, 3), 1), *y = tu_randn(2, SH(3, 2), 2);
    ir_graph *g = ir_graph_create("g");
    ir_node *n = arg(g, 0, x);
    n = add(g, IR_OP_EXP, &n, 1, A(0));
    cr_assert_eq(ir_graph_set_outputs(g, &n, 1), 0);
    em_tensor *out;
    cr_expect_eq(ir_graph_run(g, &y, &out), -1);
    cr_expect_str_eq(em_last_error(), "ir_graph_run: graph g: argument 0 is f32[3,2]; the graph takes f32[2,3]");
    cr_expect_eq(ir_graph_run(g, (em_tensor *[]){NULL}, &out), -1);
    cr_expect_str_eq(em_last_error(), "ir_graph_run: graph g: argument 0 is NULL");
    ir_graph_destroy(g);
    em_release(x), em_release(y);
}

Test(interp, releases_everything_when_any_allocation_fails) {
    em_tensor *x = tu_randn(2, SH(4, 8), 1), *w = tu_randn(2, SH(6, 8), 2);
    ir_graph *g = ir_graph_create("g");
    ir_node *h = add(g, IR_OP_LINEAR, (ir_node *[]){arg(g, 0, x), cst(g, w), NULL}, 3, A(0));
    ir_node *s = add(g, IR_OP_SOFTMAX, &h, 1, A(.axis = 1));
    ir_node *c = add(g, IR_OP_CAST, &s, 1, A(.dtype = EM_F64));
    ir_node *r = add(g, IR_OP_SUM, &c, 1, A(.axis = 0));
    cr_assert_eq(ir_graph_set_outputs(g, (ir_node *[]){r, s}, 2), 0);
    size_t before = tu_live_bytes();
    int failures = 0;
    for (long k = 1;; k++) {
        em_tensor *out[2];
        rt_alloc_fail_after(k);
        int rc = ir_graph_run(g, &x, out);
        rt_alloc_fail_after(0);
        if (rc == 0) {
            em_release(out[0]), em_release(out[1]);
            break;
        }
        failures++;
        cr_expect(strstr(em_last_error(), "out of memory"), "%s", em_last_error());
        cr_expect_eq(tu_live_bytes(), before, "allocation %ld failing leaked", k);
        cr_assert_lt(k, 100);
    }
    cr_expect_geq(failures, 4);
    cr_expect_eq(tu_live_bytes(), before);
    ir_graph_destroy(g);
    em_release(x), em_release(w);
}
