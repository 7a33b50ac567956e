/*
 * test_pipeline.c — all passes together (passes/pipeline.c), on hand-built
 * graphs, on random graphs, and end to end through em_compile.
 *
 *  - order and logging: dce, fold, scale, cse, dce, each reported to the log hook
 *    with its graph and a summary line (exact text); bad arguments; an
 *    injected allocation failure at every point fails cleanly, naming the pass;
 *  - random graphs: 200 seeds, each a DAG of 6-30 ops over 1-3 arguments
 *    (some passed as transposed views, holding -0.0, NaN and infinities) and a
 *    few constants (ones, signed zeros, a near-one value, random data, one the
 *    caller holds), with the patterns every identity looks for planted among
 *    random elementwise, view, reduction, matmul, where, concat and cast ops
 *    (often followed by a sum, whose bits depend on the layout it reads).
 *    After every pass the graph verifies and interprets to results
 *    bit-identical to the original's (a NaN may come out as another NaN:
 *    which NaN an add of two NaNs returns depends on operand order), and a
 *    second run of the pipeline changes nothing (one round reaches a fixpoint);
 *  - end to end: a compiled model with foldable parts gives eager's results
 *    bit for bit, em_dump shows the captured graph under `graph` and the
 *    smaller one under `opt`, stats count the kernels of the fused graph,
 *    and EMBER_LOG=opt prints each pass; a GPT-2 style block (weights in
 *    globals, scalars made in the model) gives eager's results too.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util.h"
#include "pass_util.h"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct log_rec {
    int n;
    char names[8][16];
    char lines[8][160];
} log_rec;

static void record(void *ctx, const char *pass, const ir_graph *g, const char *summary) {
    log_rec *r = ctx;
    cr_assert_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    cr_assert_lt(r->n, 8);
    snprintf(r->names[r->n], sizeof r->names[0], "%s", pass);
    snprintf(r->lines[r->n], sizeof r->lines[0], "%s", summary);
    r->n++;
}

/* x:[4] -> exp(x) * 1 + (dead) ; two equal scalars; an add of swapped operands. */
static ir_graph *small_graph(void) {
    ir_graph *g = ir_graph_create("small");
    ir_type t = {.dtype = EM_F32, .ndim = 1, .shape = {4}};
    ir_node *x = ir_graph_add_input(g, &t, 0);
    ir_node *one = pu_fixed(g, em_scalar(EM_F32, 1.0));
    ir_node *h1 = pu_fixed(g, em_scalar(EM_F32, 0.5)), *h2 = pu_fixed(g, em_scalar(EM_F32, 0.5));
    ir_node *e = pu_op(g, IR_OP_EXP, x, NULL, (ir_attrs){0});
    pu_op(g, IR_OP_TANH, x, NULL, (ir_attrs){0}); /* dead */
    ir_node *a = pu_op(g, IR_OP_MUL, pu_op(g, IR_OP_MUL, e, one, (ir_attrs){0}), h1, (ir_attrs){0});
    ir_node *b = pu_op(g, IR_OP_MUL, h2, e, (ir_attrs){0});
    ir_node *out = pu_op(g, IR_OP_SUB, a, b, (ir_attrs){0});
    cr_assert_eq(ir_graph_set_outputs(g, &out, 1), 0);
    return g;
}

/* ---- order, logging, failures ------------------------------------------------------------- */

Test(pipeline, runs_dce_fold_scale_cse_dce_and_logs_each_pass_with_a_summary) {
    ir_graph *g = small_graph(), *o;
    log_rec r = {0};
    cr_assert_eq(pass_pipeline_run(g, &o, record, &r), 0, "%s", em_last_error());
    cr_assert_eq(r.n, 5);
    for (int i = 0; i < 5; i++) cr_expect_str_eq(r.names[i], pass_pipeline_names[i]);
    cr_expect_null(pass_pipeline_names[5]);
    cr_expect_str_eq(r.lines[0], "dce: 10 -> 9 nodes (ops 6 -> 5, consts 3 -> 3)");
    cr_expect_str_eq(r.lines[1], "fold: 9 -> 8 nodes (ops 5 -> 4, consts 3 -> 3)");
    cr_expect_str_eq(r.lines[2], "scale: 8 -> 8 nodes (ops 4 -> 4, consts 3 -> 3)");
    cr_expect_str_eq(r.lines[3], "cse: 8 -> 6 nodes (ops 4 -> 3, consts 3 -> 2)");
    cr_expect_str_eq(r.lines[4], "dce: 6 -> 5 nodes (ops 3 -> 3, consts 2 -> 1)");
    char *s = pu_text(o);
    cr_expect_str_eq(s, "graph small\n"
                        "  %0 = input 0 : f32[4]\n"
                        "  %1 = const f32[] @_\n"
                        "  %2 = exp %0 : f32[4]\n"
                        "  %3 = mul %1, %2 : f32[4]\n"
                        "  %4 = sub %3, %3 : f32[4]\n"
                        "  return %4\n");
    free(s);
    ir_graph_destroy(o);
    ir_graph_destroy(g);
}

Test(pipeline, rejects_null_arguments) {
    ir_graph *o = (ir_graph *)1;
    cr_expect_eq(pass_pipeline_run(NULL, &o, NULL, NULL), -1);
    cr_expect_null(o);
    cr_expect_str_eq(em_last_error(), "pass_pipeline_run: the graph is NULL");
    ir_graph *g = small_graph();
    cr_expect_eq(pass_pipeline_run(g, NULL, NULL, NULL), -1);
    cr_expect_str_eq(em_last_error(), "pass_pipeline_run: out is NULL");
    ir_graph_destroy(g);
}

Test(pipeline, fails_cleanly_naming_the_pass_when_memory_runs_out) {
    int failed = 0, succeeded = 0;
    for (long n = 1; n <= 200; n++) {
        ir_graph *g = small_graph(), *o = NULL;
        rt_alloc_fail_after(n);
        int st = pass_pipeline_run(g, &o, NULL, NULL);
        rt_alloc_fail_after(0);
        if (st != 0) {
            failed++;
            cr_expect_null(o);
            cr_expect(strncmp(em_last_error(), "pass ", 5) == 0 && strstr(em_last_error(), "out of memory"),
                      "n=%ld: %s", n, em_last_error());
        } else {
            succeeded++;
            cr_expect_eq(ir_graph_num_nodes(o), 5);
            ir_graph_destroy(o);
        }
        ir_graph_destroy(g);
    }
    cr_expect_gt(failed, 0);
    cr_expect_gt(succeeded, 0);
}

/* ---- random graphs -------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t next(rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int pick(rng *r, int n) { return (int)(next(r) % (uint64_t)n); }

enum { MAXN = 96, MAX_NUMEL = 2048 };

typedef struct gen {
    ir_graph *g;
    rng r;
    ir_node *vals[MAXN];     /* candidates for operands: inputs, constants, ops */
    bool dep[MAXN];          /* vals[i] depends on an argument */
    int n;
    ir_node *ones, *ones_row, *neg_zero, *pos_zero, *int_zero, *int_one;
    int64_t a, b;            /* the base shape [a, b] */
} gen;

static int64_t numel(const ir_node *x) {
    int64_t n = 1;
    for (int i = 0; i < x->type.ndim; i++) n *= x->type.shape[i];
    return n;
}

static bool depends(const gen *q, const ir_node *x) {
    for (int i = 0; i < q->n; i++)
        if (q->vals[i] == x) return q->dep[i];
    return false;
}

static void push(gen *q, ir_node *n, bool dep) {
    for (int i = 0; i < q->n; i++)
        if (q->vals[i] == n) return; /* hash-consed into an existing node */
    if (q->n == MAXN) return;
    q->dep[q->n] = dep;
    q->vals[q->n++] = n;
}

/* Adds op if its shape rule accepts it (and it stays small); NULL otherwise. */
static ir_node *try_op(gen *q, ir_op o, ir_node *const *in, int nin, ir_attrs a) {
    ir_node *n = ir_graph_add_node(q->g, o, NULL, in, nin, &a, 0);
    if (!n || numel(n) > MAX_NUMEL) return NULL;
    bool dep = false;
    for (int k = 0; k < nin; k++) dep |= depends(q, in[k]);
    push(q, n, dep);
    return n;
}
static ir_node *try1(gen *q, ir_op o, ir_node *x, ir_attrs a) { return try_op(q, o, &x, 1, a); }
static ir_node *try2(gen *q, ir_op o, ir_node *x, ir_node *y) {
    return try_op(q, o, (ir_node *[]){x, y}, 2, (ir_attrs){0});
}

static ir_node *any(gen *q) { return q->vals[pick(&q->r, q->n)]; }
static ir_node *derived(gen *q);

/* A value that depends on an argument, more likely a recent one. */
static ir_node *derived(gen *q) {
    int idx[MAXN], m = 0;
    for (int i = 0; i < q->n; i++)
        if (q->dep[i]) idx[m++] = i;
    int k = pick(&q->r, 2) ? m - 1 - pick(&q->r, m < 5 ? m : 5) : pick(&q->r, m);
    return q->vals[idx[k]];
}

/* op(x, y) - op(y, x) for a commutative op (and maximum, which is not). */
static ir_node *swapped_pair(gen *q, ir_node *x) {
    static const ir_op ops[] = {IR_OP_ADD, IR_OP_MUL, IR_OP_EQ, IR_OP_NE, IR_OP_MAXIMUM, IR_OP_MINIMUM};
    ir_op o = ops[pick(&q->r, 6)];
    ir_node *y = pick(&q->r, 2) ? derived(q) : any(q), *a = try2(q, o, x, y), *b = try2(q, o, y, x);
    return a && b ? try2(q, IR_OP_SUB, a, b) : NULL;
}

static ir_node *identity_pattern(gen *q, ir_node *x) {
    ir_attrs a = {0};
    switch (pick(&q->r, 13)) {
    case 12: return swapped_pair(q, x);
    case 0: return try2(q, IR_OP_MUL, x, pick(&q->r, 2) ? q->ones : q->ones_row);
    case 1: return try2(q, IR_OP_MUL, q->ones, x);
    case 2: return try2(q, IR_OP_ADD, x, q->neg_zero);
    case 3: return try2(q, IR_OP_ADD, pick(&q->r, 2) ? q->pos_zero : q->int_zero, x);
    case 4: return try2(q, IR_OP_SUB, x, pick(&q->r, 2) ? q->pos_zero : q->neg_zero);
    case 5: return try2(q, IR_OP_DIV, x, q->ones);
    case 6: return try1(q, IR_OP_NEG, try1(q, IR_OP_NEG, x, a), a);
    case 7: return try1(q, IR_OP_CAST, x, (ir_attrs){.dtype = x->type.dtype});
    case 8: return try1(q, IR_OP_CONTIGUOUS, try1(q, IR_OP_CONTIGUOUS, x, a), a);
    case 9: {
        ir_attrs s = {.ndim = x->type.ndim};
        memcpy(s.dims, x->type.shape, sizeof s.dims);
        return try1(q, pick(&q->r, 2) ? IR_OP_EXPAND : IR_OP_RESHAPE, x, s);
    }
    case 10: return try2(q, IR_OP_MUL, x, q->int_one);
    default: {
        if (x->type.ndim < 1) return NULL;
        ir_attrs s = {.axis = pick(&q->r, x->type.ndim), .start = 0, .end = INT64_MAX, .step = 1};
        return try1(q, IR_OP_SLICE, x, s);
    }
    }
}

/* A reversed-axes permute, twice or once. */
static ir_node *permute(gen *q, ir_node *x, int times) {
    for (int t = 0; t < times && x; t++) {
        ir_attrs p = {.ndim = x->type.ndim};
        for (int i = 0; i < p.ndim; i++) p.dims[i] = (i + 1 + t) % p.ndim;
        x = try1(q, IR_OP_PERMUTE, x, p);
    }
    return x;
}

static ir_node *view_op(gen *q, ir_node *x) {
    switch (pick(&q->r, 5)) {
    case 0: return permute(q, x, 1 + pick(&q->r, 2));
    case 1: {
        ir_node *flat = try1(q, IR_OP_RESHAPE, x, (ir_attrs){.ndim = 1, .dims = {-1}});
        ir_attrs s = {.ndim = x->type.ndim};
        memcpy(s.dims, x->type.shape, sizeof s.dims);
        return flat && pick(&q->r, 2) ? try1(q, IR_OP_RESHAPE, flat, s) : flat;
    }
    case 2: {
        ir_attrs e = {.ndim = x->type.ndim + 1, .dims = {2}};
        for (int i = 0; i < x->type.ndim; i++) e.dims[i + 1] = x->type.shape[i];
        return x->type.ndim < 4 ? try1(q, IR_OP_EXPAND, x, e) : NULL;
    }
    case 3:
        if (x->type.ndim < 1) return NULL;
        return try1(q, IR_OP_SLICE, x, (ir_attrs){.axis = -1, .start = 1, .end = 9, .step = 2});
    default: return try1(q, IR_OP_CONTIGUOUS, x, (ir_attrs){0});
    }
}

static ir_node *compute_op(gen *q, ir_node *x) {
    static const ir_op bin[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_DIV, IR_OP_MAXIMUM,
                                IR_OP_MINIMUM, IR_OP_POW, IR_OP_EQ, IR_OP_LT};
    static const ir_op un[] = {IR_OP_NEG, IR_OP_ABS, IR_OP_EXP, IR_OP_TANH, IR_OP_SQRT,
                               IR_OP_SIGMOID, IR_OP_RELU, IR_OP_LOG};
    static const ir_op red[] = {IR_OP_SUM, IR_OP_MEAN, IR_OP_MAX};
    static const em_dtype dts[] = {EM_F32, EM_F64, EM_I32};
    int nd = x->type.ndim;
    switch (pick(&q->r, 9)) {
    case 0: case 1: return try2(q, bin[pick(&q->r, 9)], x, pick(&q->r, 2) ? derived(q) : any(q));
    case 2: case 3: return try1(q, un[pick(&q->r, 8)], x, (ir_attrs){0});
    case 4: return nd ? try1(q, red[pick(&q->r, 3)], x, (ir_attrs){.axis = pick(&q->r, nd), .keepdim = pick(&q->r, 2)}) : NULL;
    case 5: return nd ? try1(q, IR_OP_SOFTMAX, x, (ir_attrs){.axis = -1}) : NULL;
    case 6: return nd == 2 ? try2(q, IR_OP_MATMUL, x, permute(q, x, 1)) : NULL;
    case 7: {
        ir_node *c = try2(q, IR_OP_LT, x, any(q));
        return c ? try_op(q, IR_OP_WHERE, (ir_node *[]){c, x, any(q)}, 3, (ir_attrs){0}) : NULL;
    }
    default:
        if (pick(&q->r, 2) && nd)
            return try_op(q, IR_OP_CONCAT, (ir_node *[]){x, x}, 2, (ir_attrs){.axis = 0});
        return try1(q, IR_OP_CAST, x, (ir_attrs){.dtype = dts[pick(&q->r, 3)]});
    }
}

static ir_node *constant(gen *q, em_tensor *t) {
    ir_node *n = pu_fixed(q->g, t);
    push(q, n, false);
    return n;
}

/* Values with signed zeros, NaN and infinities among normal ones. */
static em_tensor *random_values(rng *r, em_dtype dt, int64_t rows, int64_t cols) {
    static const float special[] = {-0.0f, 0.0f, NAN, INFINITY, -INFINITY, 1.0f, -1.0f};
    int64_t n = rows * cols;
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = pick(r, 5) == 0 ? special[pick(r, 7)] : (float)((int64_t)(next(r) % 2001) - 1000) / 250.0f;
    em_tensor *t = em_from_data(EM_F32, 2, SH(rows, cols), v), *c = em_cast(t, dt);
    free(v);
    em_release(t);
    return c;
}

/* Arguments: [a,b] f32 (sometimes passed transposed), [b] f32, [a,b] i32. */
static void make_inputs(gen *q, int nargs, em_tensor **args) {
    for (int i = 0; i < nargs; i++) {
        int kind = i == 0 ? 0 : pick(&q->r, 3);
        em_dtype dt = kind == 2 ? EM_I32 : EM_F32;
        ir_type t = {.dtype = dt, .ndim = kind == 1 ? 1 : 2, .shape = {q->a, q->b}};
        if (kind == 1) t.shape[0] = q->b;
        push(q, ir_graph_add_input(q->g, &t, i), true);
        if (kind == 0 && pick(&q->r, 2)) { /* a transposed view */
            em_tensor *base = random_values(&q->r, dt, q->b, q->a);
            args[i] = em_transpose(base, 0, 1);
            em_release(base);
        } else {
            em_tensor *base = random_values(&q->r, dt, 1, t.shape[0] * (kind == 1 ? 1 : q->b));
            args[i] = em_reshape(base, t.ndim, t.shape);
            em_release(base);
        }
    }
}

static void make_constants(gen *q, em_tensor **held) {
    q->ones = constant(q, em_scalar(EM_F32, 1.0));
    q->ones_row = constant(q, em_full(EM_F32, 1, SH(q->b), 1.0));
    q->neg_zero = constant(q, em_scalar(EM_F32, -0.0));
    q->pos_zero = constant(q, em_scalar(EM_F32, 0.0));
    q->int_zero = constant(q, em_zeros(EM_I32, 1, SH(q->b)));
    q->int_one = constant(q, em_scalar(EM_I32, 1));
    constant(q, em_scalar(EM_F32, nextafterf(1.0f, 2.0f)));
    constant(q, em_scalar(EM_F32, 1.0)); /* a second one: cse merges it */
    constant(q, random_values(&q->r, EM_F32, q->a, q->b));
    *held = random_values(&q->r, EM_F32, 1, q->b); /* "a global": by reference */
    push(q, ir_graph_add_const(q->g, *held), false);
}

/* A random graph and its arguments; *held is a constant the caller keeps. */
static ir_graph *random_graph(uint64_t seed, em_tensor **args, int *nargs, em_tensor **held) {
    gen q = {.g = ir_graph_create("random"), .r = {seed * 7919 + 1}};
    cr_assert(q.g);
    q.a = 1 + pick(&q.r, 6), q.b = 1 + pick(&q.r, 9);
    *nargs = 1 + pick(&q.r, 3);
    make_inputs(&q, *nargs, args);
    make_constants(&q, held);
    int want = 6 + pick(&q.r, 25), made = 0;
    for (int tries = 0; made < want && tries < 400; tries++) {
        ir_node *x = pick(&q.r, 8) ? derived(&q) : any(&q), *y;
        int k = pick(&q.r, 10);
        y = k < 3 ? identity_pattern(&q, x) : k < 5 ? view_op(&q, x) : compute_op(&q, x);
        if (y && k < 3 && y->type.ndim && pick(&q.r, 2)) /* a consumer whose bits depend on layout */
            y = try1(&q, IR_OP_SUM, y, (ir_attrs){.axis = pick(&q.r, y->type.ndim)});
        made += y != NULL;
    }
    em_clear_error();
    ir_node *outs[4];
    int nout = 1 + pick(&q.r, 4);
    outs[0] = q.vals[q.n - 1];
    for (int i = q.n - 1; i >= 0; i--)
        if (q.dep[i]) { outs[0] = q.vals[i]; break; }
    for (int i = 1; i < nout; i++) outs[i] = pick(&q.r, 4) ? derived(&q) : any(&q);
    cr_assert_eq(ir_graph_set_outputs(q.g, outs, nout), 0, "%s", em_last_error());
    cr_assert_eq(ir_graph_verify(q.g), 0, "seed %llu: %s", (unsigned long long)seed, em_last_error());
    return q.g;
}

typedef struct check {
    uint64_t seed;
    em_tensor **args;
    em_tensor *want[4];
    int nout, passes;
} check;

static bool same_bits(const em_tensor *x, const em_tensor *y, size_t i, size_t esz, const char *p,
                      const char *q) {
    if (memcmp(p + i * esz, q + i * esz, esz) == 0) return true;
    if (x->dtype == EM_F32) return isnan(((const float *)p)[i]) && isnan(((const float *)q)[i]);
    if (x->dtype == EM_F64) return isnan(((const double *)p)[i]) && isnan(((const double *)q)[i]);
    (void)y;
    return false;
}

static void expect_equal(const check *c, em_tensor *want, em_tensor *got, const char *pass, int k) {
    cr_assert_eq(got->dtype, want->dtype, "seed %llu after %s: output %d dtype",
                 (unsigned long long)c->seed, pass, k);
    cr_assert_eq(got->ndim, want->ndim);
    cr_assert_eq(memcmp(got->shape, want->shape, (size_t)got->ndim * sizeof *got->shape), 0);
    size_t esz = em_dtype_size(got->dtype), n = (size_t)got->numel;
    char *p = malloc(n * esz + 1), *q = malloc(n * esz + 1);
    cr_assert_eq(em_read(want, p, n * esz), 0);
    cr_assert_eq(em_read(got, q, n * esz), 0);
    for (size_t i = 0; i < n; i++)
        cr_expect(same_bits(want, got, i, esz, p, q), "seed %llu after %s: output %d element %zu differs",
                  (unsigned long long)c->seed, pass, k, i);
    free(p), free(q);
}

/* The log hook: every pass's graph verifies and computes what the original did. */
static void check_pass(void *ctx, const char *pass, const ir_graph *g, const char *summary) {
    check *c = ctx;
    (void)summary;
    cr_assert_eq(ir_graph_verify(g), 0, "seed %llu after %s: %s", (unsigned long long)c->seed, pass,
                 em_last_error());
    em_tensor *got[4];
    cr_assert_eq(ir_graph_run(g, c->args, got), 0, "seed %llu after %s: %s",
                 (unsigned long long)c->seed, pass, em_last_error());
    for (int k = 0; k < c->nout; k++) {
        expect_equal(c, c->want[k], got[k], pass, k);
        em_release(got[k]);
    }
    c->passes++;
}

Test(pipeline, keeps_the_results_of_200_random_graphs_bit_identical_after_every_pass) {
    int before = 0, after = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        em_tensor *args[3] = {0}, *held;
        int nargs;
        ir_graph *g = random_graph(seed, args, &nargs, &held);
        check c = {.seed = seed, .args = args, .nout = ir_graph_num_outputs(g)};
        cr_assert_eq(ir_graph_run(g, args, c.want), 0, "seed %llu: %s", (unsigned long long)seed,
                     em_last_error());
        ir_graph *o;
        cr_assert_eq(pass_pipeline_run(g, &o, check_pass, &c), 0, "seed %llu: %s",
                     (unsigned long long)seed, em_last_error());
        cr_expect_eq(c.passes, 5);
        ir_graph *again;
        cr_assert_eq(pass_pipeline_run(o, &again, NULL, NULL), 0, "%s", em_last_error());
        char *t1 = pu_text(o), *t2 = pu_text(again);
        cr_expect_str_eq(t2, t1, "seed %llu: a second run changes nothing", (unsigned long long)seed);
        free(t1), free(t2);
        ir_graph_destroy(again);
        before += ir_graph_num_nodes(g), after += ir_graph_num_nodes(o);
        for (int k = 0; k < c.nout; k++) em_release(c.want[k]);
        for (int i = 0; i < nargs; i++) em_release(args[i]);
        ir_graph_destroy(o);
        ir_graph_destroy(g);
        em_release(held);
    }
    cr_log_info("random graphs: %d nodes before the passes, %d after", before, after);
    cr_expect_lt(after * 10, before * 9, "the passes removed at least a tenth of the nodes");
}

/* ---- end to end --------------------------------------------------------------------------------- */

static em_tensor *g_w; /* a weight in a global: captured by reference */

/* x:[4,8] -> ((-(-exp(x*1)))^T^T reshaped to its own shape) @ w + (-0.0), times 0.5. */
static em_tensor *foldable(em_tensor *x) {
    em_scope_begin();
    em_tensor *h = em_mul(x, em_scalar(EM_F32, 1.0));
    h = em_neg(em_neg(em_exp(h)));
    h = em_transpose(em_transpose(h, 0, 1), 0, 1);
    h = em_reshape(h, 2, SH(4, 8));
    h = em_add(em_matmul(h, g_w), em_scalar(EM_F32, -0.0));
    em_tensor *y = em_keep(em_mul(h, em_scalar(EM_F32, 0.5)));
    em_scope_end();
    return y;
}

static char *dump(void *fn, const char *stage) {
    char *s = NULL;
    size_t len;
    FILE *f = open_memstream(&s, &len);
    cr_assert_eq(em_dump(fn, stage, f), 0, "%s", em_last_error());
    fclose(f);
    return s;
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

Test(pipeline, compiles_a_model_with_foldable_parts_to_eager_results_and_a_smaller_graph) {
    g_w = em_randn(2, SH(8, 8), 1);
    __typeof__(&foldable) fast = em_compile((void *)foldable, "tensor(tensor)", &(em_options){.name = "foldable"});
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        em_tensor *x = em_randn(2, SH(4, 8), 10 + (uint64_t)i), *want = foldable(x), *got = fast(x);
        tu_expect_compiled(got, want, "compiled");
        em_release(x), em_release(want), em_release(got);
    }
    char *g = dump((void *)fast, "graph"), *o = dump((void *)fast, "opt");
    cr_expect(strstr(g, " = neg ") && strstr(g, " = permute ") && strstr(g, " = reshape "), "%s", g);
    cr_expect(!strstr(o, " = neg ") && !strstr(o, " = permute ") && !strstr(o, " = reshape ") &&
                  !strstr(o, " = add "), "%s", o);
    cr_expect(strstr(o, " = contiguous %0") && strstr(o, " = exp ") && strstr(o, " = matmul "), "%s", o);
    cr_expect_lt(lines(o), lines(g), "graph:\n%s\nopt:\n%s", g, o);
    free(g), free(o);
    em_stats st;
    cr_assert_eq(em_compiled_stats((void *)fast, &st), 0);
    cr_expect_eq(st.kernels, 2, "contiguous and exp in one pointwise kernel; matmul with its scale");
    cr_expect_eq(st.compiles, 1);
    em_compiled_free((void *)fast);
    em_release(g_w);
}

Test(pipeline, logs_each_pass_under_ember_log_opt) {
    setenv("EMBER_LOG", "opt", 1);
    g_w = em_randn(2, SH(8, 8), 1);
    __typeof__(&foldable) fast = em_compile((void *)foldable, "tensor(tensor)", &(em_options){.name = "foldable"});
    em_tensor *x = em_randn(2, SH(4, 8), 3);
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    em_tensor *y = fast(x);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char log[8192] = "";
    rewind(tmp);
    size_t got = fread(log, 1, sizeof log - 1, tmp);
    log[got] = '\0';
    fclose(tmp);
    cr_expect(strstr(log, "ember[opt] dce: ") && strstr(log, "ember[opt] fold: ") &&
                  strstr(log, "ember[opt] cse: "), "%s", log);
    cr_expect(strstr(log, "graph foldable\n"), "each pass's graph is printed:\n%s", log);
    em_release(x), em_release(y);
    em_compiled_free((void *)fast);
    em_release(g_w);
    unsetenv("EMBER_LOG");
}

/* A GPT-2 style block over globals: pre-norm causal self-attention and a gelu MLP. */
enum { T = 16, C = 32, H = 4, D = C / H };
static em_tensor *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b,
    *out_w, *out_b, *mask;

static em_tensor *heads(em_tensor *t) { /* [T, C] -> [H, T, D] */
    return em_permute(em_reshape(t, 3, SH(T, H, D)), (int[]){1, 0, 2});
}

static em_tensor *block(em_tensor *x) {
    em_scope_begin();
    em_tensor *h = em_layer_norm(x, ln1_w, ln1_b, 1e-5);
    em_tensor *qkv = em_linear(h, attn_w, attn_b);
    em_tensor *q = heads(em_slice(qkv, 1, 0, C, 1)), *k = heads(em_slice(qkv, 1, C, 2 * C, 1));
    em_tensor *v = heads(em_slice(qkv, 1, 2 * C, 3 * C, 1));
    em_tensor *s = em_mul(em_matmul(q, em_transpose(k, 1, 2)), em_scalar(EM_F32, 1.0 / sqrt(D)));
    em_tensor *a = em_matmul(em_softmax(em_add(s, mask), -1), v);
    a = em_reshape(em_contiguous(em_permute(a, (int[]){1, 0, 2})), 2, SH(T, C));
    x = em_add(x, em_linear(a, proj_w, proj_b));
    h = em_gelu(em_linear(em_layer_norm(x, ln2_w, ln2_b, 1e-5), fc_w, fc_b));
    em_tensor *y = em_keep(em_add(x, em_mul(em_linear(h, out_w, out_b), em_scalar(EM_F32, 1.0))));
    em_scope_end();
    return y;
}

/* [out, in] weights scaled by 1/sqrt(in), as models initialise them: the block
 * stays well conditioned (unscaled, its sums grow by sqrt(in) per layer and the
 * two GEMMs' summation orders drift apart beyond the contract's tolerance). */
static em_tensor *weight(int64_t out, int64_t in, uint64_t seed) {
    em_tensor *w = em_randn(2, SH(out, in), seed), *s = em_scalar(EM_F32, 1.0 / sqrt((double)in));
    em_tensor *y = em_mul(w, s);
    em_release(w), em_release(s);
    return y;
}

static void block_init(void) {
    ln1_w = em_full(EM_F32, 1, SH(C), 1.0), ln1_b = em_zeros(EM_F32, 1, SH(C));
    ln2_w = em_full(EM_F32, 1, SH(C), 1.0), ln2_b = em_zeros(EM_F32, 1, SH(C));
    attn_w = weight(3 * C, C, 1), attn_b = em_randn(1, SH(3 * C), 2);
    proj_w = weight(C, C, 3), proj_b = em_randn(1, SH(C), 4);
    fc_w = weight(4 * C, C, 5), fc_b = em_randn(1, SH(4 * C), 6);
    out_w = weight(C, 4 * C, 7), out_b = em_randn(1, SH(C), 8);
    float m[T * T];
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) m[i * T + j] = j > i ? -INFINITY : 0.0f;
    mask = em_from_data(EM_F32, 2, SH(T, T), m);
}

static void block_fini(void) {
    em_tensor *all[] = {ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b, mask};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) em_release(all[i]);
}

Test(pipeline, compiles_a_gpt2_style_block_to_eager_results) {
    block_init();
    __typeof__(&block) fast = em_compile((void *)block, "tensor(tensor)", &(em_options){.name = "block"});
    cr_assert(fast, "%s", em_last_error());
    for (int i = 0; i < 2; i++) {
        em_tensor *x = em_randn(2, SH(T, C), 20 + (uint64_t)i), *want = block(x), *got = fast(x);
        tu_expect_compiled(got, want, "compiled");
        em_release(x), em_release(want), em_release(got);
    }
    char *g = dump((void *)fast, "graph"), *o = dump((void *)fast, "opt");
    cr_expect_lt(lines(o), lines(g), "the ones multiply goes:\ngraph:\n%s\nopt:\n%s", g, o);
    free(g), free(o);
    em_compiled_free((void *)fast);
    block_fini();
}
