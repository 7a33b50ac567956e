/*
 * test_memplan.c — where every value lives at run time (passes/memplan.c).
 *
 * Small graphs built by hand are fused (pass_fuse) and planned, and the plan
 * is checked field by field: the home of every node, the arena buffers (bytes,
 * offset, live range, the value each one overwrites in place), and the arena,
 * peak and no-reuse totals. Steps are nodes with internal=true (what the
 * executor runs) and kernels with internal=false (what codegen runs). Covered:
 * a unary chain written in one slot, each result over the previous one; a
 * value read twice that is not overwritten while still live; offsets rounded
 * up to 64 bytes; a value read through a transpose that its reader never
 * overwrites; a dead buffer's bytes reused by a later unrelated one; a graph
 * output that is a view, whose base the caller owns; values that never leave
 * their kernel, which get no home with internal=false; an mlp whose arena is
 * smaller than the sum of its buffers; a softmax alone in its kernel written
 * over its input, and not when its kernel reads the input again after it;
 * and the `memplan` dump. Every plan
 * passes pass_memplan_verify.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pass_util.h"

/* ---- planning and looking at plans ---------------------------------------------------- */

typedef struct planned {
    pass_fusion *f;
    pass_memplan *p;
} planned;

/* g fused and planned, both verified; every buffer is aligned and in the arena. */
static planned plan(const ir_graph *g, bool internal) {
    cr_assert_eq(ir_graph_verify(g), 0, "%s", em_last_error());
    planned r = {pass_fuse(g), NULL};
    cr_assert(r.f, "%s", em_last_error());
    cr_assert_eq(pass_fusion_verify(r.f), 0, "%s", em_last_error());
    r.p = pass_memplan_run(r.f, internal);
    cr_assert(r.p, "%s", em_last_error());
    cr_expect_eq(pass_memplan_verify(r.p), 0, "%s", em_last_error());
    cr_expect_eq(r.p->internal, internal);
    for (int i = 0; i < r.p->nbuffers; i++) {
        const pass_buffer *b = &r.p->buffers[i];
        cr_expect_eq(b->offset % PASS_ARENA_ALIGN, 0, "%%%d at %zu", b->node, b->offset);
        cr_expect_leq(b->offset + b->bytes, r.p->arena_bytes, "%%%d", b->node);
        cr_expect_eq(r.p->buffer_of[b->node], i, "%%%d", b->node);
        if (i > 0) cr_expect_leq(r.p->buffers[i - 1].first, b->first, "buffers in order of first step");
    }
    cr_expect_leq(r.p->peak_bytes, r.p->arena_bytes);
    cr_expect_leq(r.p->arena_bytes, r.p->naive_bytes);
    return r;
}

static void unplan(planned *r) {
    pass_memplan_destroy(r->p);
    pass_fusion_destroy(r->f);
}

/* The home of each of the n nodes of the plan's graph, by id. */
static void expect_homes(const pass_memplan *p, int n, const int *want) {
    cr_assert_eq(ir_graph_num_nodes(p->f->g), n);
    for (int id = 0; id < n; id++) {
        cr_expect_eq((int)p->home[id], want[id], "home of %%%d: %d, want %d", id, p->home[id], want[id]);
        if (want[id] != PASS_HOME_ARENA) cr_expect_eq(p->buffer_of[id], -1, "%%%d has no buffer", id);
    }
}
#define HOMES(p, ...) expect_homes(p, sizeof((int[]){__VA_ARGS__}) / sizeof(int), (int[]){__VA_ARGS__})

enum { NONE = PASS_HOME_NONE, ARG = PASS_HOME_ARG, CONST = PASS_HOME_CONST, ARENA = PASS_HOME_ARENA,
       OUTPUT = PASS_HOME_OUTPUT, VIEW = PASS_HOME_VIEW };

/* The buffer of node: its bytes, offset, live range and what it overwrites in place. */
static void expect_buffer(const pass_memplan *p, int node, size_t bytes, size_t offset, int first,
                          int last, int inplace_of) {
    int bi = p->buffer_of[node];
    cr_assert_geq(bi, 0, "%%%d has a buffer", node);
    const pass_buffer *b = &p->buffers[bi];
    cr_expect_eq(b->node, node);
    cr_expect_eq(b->bytes, bytes, "%%%d: %zu bytes, want %zu", node, b->bytes, bytes);
    cr_expect_eq(b->offset, offset, "%%%d: offset %zu, want %zu", node, b->offset, offset);
    cr_expect_eq(b->first, first, "%%%d: first step %d, want %d", node, b->first, first);
    cr_expect_eq(b->last, last, "%%%d: last step %d, want %d", node, b->last, last);
    cr_expect_eq(b->inplace_of, inplace_of, "%%%d: in place of %d, want %d", node, b->inplace_of,
                 inplace_of);
}

static void expect_totals(const pass_memplan *p, int nsteps, int nbuffers, size_t arena, size_t peak,
                          size_t naive) {
    cr_expect_eq(p->nsteps, nsteps, "steps %d, want %d", p->nsteps, nsteps);
    cr_expect_eq(p->nbuffers, nbuffers, "buffers %d, want %d", p->nbuffers, nbuffers);
    cr_expect_eq(p->arena_bytes, arena, "arena %zu, want %zu", p->arena_bytes, arena);
    cr_expect_eq(p->peak_bytes, peak, "peak %zu, want %zu", p->peak_bytes, peak);
    cr_expect_eq(p->naive_bytes, naive, "no reuse %zu, want %zu", p->naive_bytes, naive);
}

static char *print_plan(const pass_memplan *p) {
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    cr_assert(f);
    cr_expect_eq(pass_memplan_print(p, f), 0, "%s", em_last_error());
    fclose(f);
    return s;
}

/* %0 = x : f32[16,16]; %1 = exp; %2 = neg; %3 = tanh; %4 = sigmoid; return %4. */
static ir_graph *unary_chain(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(16, 16));
    pu_set_out(g, OP1(g, SIGMOID, OP1(g, TANH, OP1(g, NEG, OP1(g, EXP, x)))));
    return g;
}

/* ---- in place ------------------------------------------------------------------------- */

Test(memplan, writes_each_result_of_a_unary_chain_over_the_previous_one_in_one_slot) {
    ir_graph *g = unary_chain();
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARENA, ARENA, ARENA, OUTPUT);
    cr_expect_eq(p->f->nkernels, 1, "one pointwise kernel");
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(p->order[i], i + 1, "step %d runs %%%d", i, i + 1);
        cr_expect_eq(p->step_of[i + 1], i);
    }
    cr_expect_eq(p->step_of[0], -1, "an input is no step");
    expect_buffer(p, 1, 1024, 0, 0, 1, -1);
    expect_buffer(p, 2, 1024, 0, 1, 2, 1);
    expect_buffer(p, 3, 1024, 0, 2, 3, 2);
    expect_totals(p, 4, 3, 1024, 1024, 3072);
    unplan(&r);
    ir_graph_destroy(g);
}

Test(memplan, does_not_overwrite_a_value_that_a_later_step_still_reads) {
    /* a = exp x; b = neg a; c = a * b; d = tanh c: b may not take a's bytes
     * (c reads a after b), but c may (it is a's last reader). */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(8, 8));
    ir_node *a = OP1(g, EXP, x), *b = OP1(g, NEG, a), *c = OP2(g, MUL, a, b);
    pu_set_out(g, OP1(g, TANH, c));
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARENA, ARENA, ARENA, OUTPUT);
    expect_buffer(p, 1, 256, 0, 0, 2, -1);
    expect_buffer(p, 2, 256, 256, 1, 2, -1);
    expect_buffer(p, 3, 256, 0, 2, 3, 1);
    expect_totals(p, 4, 3, 512, 512, 768);
    unplan(&r);
    ir_graph_destroy(g);
}

Test(memplan, never_lets_a_reader_overwrite_a_value_it_reads_through_a_transpose) {
    /* a = exp x; b = a + transpose(a); c = neg(transpose(b)); return sigmoid(c):
     * b reads a[j,i] at index [i,j], so writing b over a would clobber what a
     * later element reads; the same for c over b. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 4));
    ir_node *a = OP1(g, EXP, x);
    ir_node *b = OP2(g, ADD, a, OP1(g, PERMUTE, a, .ndim = 2, .dims = {1, 0}));
    ir_node *c = OP1(g, NEG, OP1(g, PERMUTE, b, .ndim = 2, .dims = {1, 0}));
    pu_set_out(g, OP1(g, SIGMOID, c));
    cr_assert_eq(ir_graph_num_nodes(g), 7);
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARENA, VIEW, ARENA, VIEW, ARENA, OUTPUT);
    expect_buffer(p, 1, 64, 0, 0, 1, -1);
    expect_buffer(p, 3, 64, 64, 1, 2, -1);
    expect_buffer(p, 5, 64, 0, 2, 3, -1); /* a's bytes again: a is dead by then */
    expect_totals(p, 4, 3, 128, 128, 192);
    unplan(&r);

    r = plan(g, false);
    p = r.p;
    cr_expect_eq(p->f->nkernels, 3, "a transposed read ends a kernel");
    HOMES(p, ARG, ARENA, VIEW, ARENA, VIEW, NONE, OUTPUT);
    expect_buffer(p, 1, 64, 0, 0, 1, -1);
    expect_buffer(p, 3, 64, 64, 1, 2, -1);
    expect_totals(p, 3, 2, 128, 128, 128);
    unplan(&r);
    ir_graph_destroy(g);
}

Test(memplan, takes_an_input_in_place_only_when_it_has_the_result_s_shape_and_dtype) {
    /* x + column(a) broadcasts a; a < x gives a bool: neither may overwrite a. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 16)), *y = pu_input(g, 1, EM_F32, 2, SH(4, 1));
    ir_node *a = OP1(g, EXP, y);                 /* %2 f32[4,1] */
    ir_node *b = OP2(g, ADD, x, a);              /* %3 f32[4,16], reads a broadcast */
    ir_node *c = OP1(g, NEG, b);                 /* %4 in place of b */
    ir_node *d = OP2(g, LT, c, x);               /* %5 bool[4,16] */
    pu_set_out(g, OP1(g, CAST, d, .dtype = EM_F32)); /* %6 */
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARG, ARENA, ARENA, ARENA, ARENA, OUTPUT);
    expect_buffer(p, 2, 16, 256, 0, 1, -1);
    expect_buffer(p, 3, 256, 0, 1, 2, -1);
    expect_buffer(p, 4, 256, 0, 2, 3, 3);
    expect_buffer(p, 5, 64, 256, 3, 4, -1); /* a's slot again */
    expect_totals(p, 5, 4, 320, 320, 640);
    unplan(&r);
    ir_graph_destroy(g);
}

/* s = softmax(x @ y) (a norm alone in its kernel: a contraction ends a
 * kernel), then s @ y; or, with an epilogue e = s * (x @ y) in the softmax's
 * kernel, s @ y + e @ y (s and e both stored). */
static ir_graph *softmax_between_products(bool epilogue_reads_input) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(16, 16)), *y = pu_input(g, 1, EM_F32, 2, SH(16, 16));
    ir_node *a = OP2(g, MATMUL, x, y);             /* %2 */
    ir_node *sm = OP1(g, SOFTMAX, a, .axis = -1);  /* %3 */
    if (!epilogue_reads_input) {
        pu_set_out(g, OP2(g, MATMUL, sm, y));
        return g;
    }
    ir_node *e = OP2(g, MUL, sm, a);               /* %4 */
    pu_set_out(g, OP2(g, ADD, OP2(g, MATMUL, sm, y), OP2(g, MATMUL, e, y)));
    return g;
}

Test(memplan, a_softmax_alone_in_its_kernel_writes_over_the_scores_it_normalises) {
    ir_graph *g = softmax_between_products(false);
    for (int internal = 0; internal < 2; internal++) { /* codegen's kernels and the interpreter's nodes */
        planned r = plan(g, internal);
        const pass_memplan *p = r.p;
        HOMES(p, ARG, ARG, ARENA, ARENA, OUTPUT);
        expect_buffer(p, 2, 1024, 0, 0, 1, -1);
        expect_buffer(p, 3, 1024, 0, 1, 2, 2);
        expect_totals(p, 3, 2, 1024, 1024, 2048);
        unplan(&r);
    }
    ir_graph_destroy(g);
}

Test(memplan, a_softmax_whose_kernel_reads_its_input_again_after_it_keeps_a_buffer_of_its_own) {
    /* codegen's plan: softmax and s * a are one row kernel, whose last pass
     * reads a again after the softmax's pass wrote s */
    ir_graph *g = softmax_between_products(true);
    planned r = plan(g, false);
    const pass_memplan *p = r.p;
    cr_expect_eq(p->f->kernel_of[3], p->f->kernel_of[4], "the product with a is the softmax's epilogue");
    cr_expect_eq(p->home[3], ARENA, "the softmax is stored: the first product reads it");
    cr_expect_eq(p->buffers[p->buffer_of[3]].inplace_of, -1, "the softmax keeps a buffer of its own");
    cr_expect_eq(p->buffers[p->buffer_of[4]].inplace_of, -1, "and so does its epilogue");
    cr_expect_neq(p->buffers[p->buffer_of[3]].offset, p->buffers[p->buffer_of[2]].offset);
    unplan(&r);
    ir_graph_destroy(g);
}

/* ---- offsets and reuse ---------------------------------------------------------------- */

Test(memplan, rounds_every_buffer_up_to_a_64_byte_slot) {
    /* f32[3] is 12 bytes; a = exp x, b = neg x live together, c = a + b over a. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 1, SH(3));
    ir_node *a = OP1(g, EXP, x), *b = OP1(g, NEG, x), *c = OP2(g, ADD, a, b);
    pu_set_out(g, OP1(g, TANH, c));
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARENA, ARENA, ARENA, OUTPUT);
    expect_buffer(p, 1, 12, 0, 0, 2, -1);
    expect_buffer(p, 2, 12, 64, 1, 2, -1);
    expect_buffer(p, 3, 12, 0, 2, 3, 1);
    expect_totals(p, 4, 3, 128, 128, 192);
    unplan(&r);
    ir_graph_destroy(g);
}

Test(memplan, reuses_a_dead_buffer_for_a_later_unrelated_value_of_the_same_size) {
    /* a = exp x (read by s = sum(a) only) and b = matmul(x, w) are both
     * f32[8,8] and never live at once: b is not written in place (a matmul
     * result never is), yet it lands at a's offset. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(8, 8)), *w = pu_input(g, 1, EM_F32, 2, SH(8, 8));
    ir_node *a = OP1(g, EXP, x);                                /* %2 step 0 */
    ir_node *s = OP1(g, SUM, a, .axis = 1, .keepdim = 1);       /* %3 step 1: f32[8,1] */
    ir_node *b = OP2(g, MATMUL, x, w);                          /* %4 */
    ir_node *c = OP2(g, SUB, b, s);                             /* %5 */
    pu_set_out(g, OP1(g, TANH, c));                             /* %6 */
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARG, ARENA, ARENA, ARENA, ARENA, OUTPUT);
    int sa = p->step_of[2], ss = p->step_of[3], sb = p->step_of[4], sc = p->step_of[5];
    cr_expect(sa < ss && ss < sc && sb < sc, "steps %d %d %d %d", sa, ss, sb, sc);
    cr_expect(sb > ss, "the matmul kernel runs after the reduction: %d %d", sb, ss);
    expect_buffer(p, 2, 256, 0, sa, ss, -1);
    expect_buffer(p, 4, 256, 0, sb, sc, -1);  /* a's bytes, a being dead */
    expect_buffer(p, 5, 256, 0, sc, sc + 1, 4); /* c over b */
    expect_buffer(p, 3, 32, 256, ss, sc, -1);
    expect_totals(p, 5, 4, 320, 320, 832);
    unplan(&r);
    ir_graph_destroy(g);
}

/* ---- outputs and views ---------------------------------------------------------------- */

Test(memplan, gives_the_base_of_an_output_view_storage_of_its_own) {
    /* return reshape(neg(exp x)): neg's result is what the caller gets back. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 6));
    ir_node *b = OP1(g, NEG, OP1(g, EXP, x));
    pu_set_out(g, OP1(g, RESHAPE, b, .ndim = 2, .dims = {6, 4}));
    for (int internal = 0; internal < 2; internal++) {
        planned r = plan(g, internal);
        const pass_memplan *p = r.p;
        if (internal) {
            HOMES(p, ARG, ARENA, OUTPUT, VIEW);
            expect_buffer(p, 1, 96, 0, 0, 1, -1);
            expect_totals(p, 2, 1, 128, 128, 128);
        } else {
            HOMES(p, ARG, NONE, OUTPUT, VIEW);
            expect_totals(p, 1, 0, 0, 0, 0);
        }
        unplan(&r);
    }
    ir_graph_destroy(g);
}

Test(memplan, keeps_outputs_arguments_and_constants_out_of_the_arena) {
    /* return x, c, exp(x) + c, transpose(exp(x) + c) */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(2, 3));
    ir_node *c = pu_full(g, EM_F32, 2, SH(2, 3), 0.5);
    ir_node *y = OP2(g, ADD, OP1(g, EXP, x), c);
    ir_node *t = OP1(g, PERMUTE, y, .ndim = 2, .dims = {1, 0});
    pu_set_outs(g, (ir_node *[]){x, c, y, t}, 4);
    planned r = plan(g, true);
    HOMES(r.p, ARG, CONST, ARENA, OUTPUT, VIEW);
    expect_buffer(r.p, 2, 24, 0, 0, 1, -1);
    expect_totals(r.p, 2, 1, 64, 64, 64);
    unplan(&r);
    ir_graph_destroy(g);
}

/* ---- steps are kernels ---------------------------------------------------------------- */

Test(memplan, gives_no_home_to_values_that_never_leave_their_kernel) {
    ir_graph *g = unary_chain();
    planned r = plan(g, false);
    HOMES(r.p, ARG, NONE, NONE, NONE, OUTPUT);
    expect_totals(r.p, 1, 0, 0, 0, 0);
    cr_expect_eq(r.p->step_of[1], 0, "every member runs at the kernel's step");
    cr_expect_eq(r.p->step_of[4], 0);
    unplan(&r);
    ir_graph_destroy(g);

    /* a = exp x, b = tanh a | m = matmul(b, w), relu m: only b crosses kernels. */
    g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(8, 8)), *w = pu_input(g, 1, EM_F32, 2, SH(8, 8));
    ir_node *b = OP1(g, TANH, OP1(g, EXP, x));
    pu_set_out(g, OP1(g, RELU, OP2(g, MATMUL, b, w)));
    r = plan(g, false);
    cr_expect_eq(r.p->f->nkernels, 2);
    HOMES(r.p, ARG, ARG, NONE, ARENA, NONE, OUTPUT);
    expect_buffer(r.p, 3, 256, 0, 0, 1, -1);
    expect_totals(r.p, 2, 1, 256, 256, 256);
    unplan(&r);
    r = plan(g, true);
    HOMES(r.p, ARG, ARG, ARENA, ARENA, ARENA, OUTPUT);
    expect_buffer(r.p, 2, 256, 0, 0, 1, -1);
    expect_buffer(r.p, 3, 256, 0, 1, 2, 2);
    expect_buffer(r.p, 4, 256, 256, 2, 3, -1);
    expect_totals(r.p, 4, 3, 512, 512, 768);
    unplan(&r);
    ir_graph_destroy(g);
}

/* x f32[4,8] @ w1 f32[8,16] + b1, gelu, @ w2 f32[16,8] + b2. */
static ir_graph *mlp(void) {
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 8)), *w1 = pu_input(g, 1, EM_F32, 2, SH(8, 16));
    ir_node *b1 = pu_input(g, 2, EM_F32, 1, SH(16)), *w2 = pu_input(g, 3, EM_F32, 2, SH(16, 8));
    ir_node *b2 = pu_input(g, 4, EM_F32, 1, SH(8));
    ir_node *h = OP1(g, GELU, OP2(g, ADD, OP2(g, MATMUL, x, w1), b1));
    pu_set_out(g, OP2(g, ADD, OP2(g, MATMUL, h, w2), b2));
    return g;
}

Test(memplan, plans_an_mlp_in_less_than_the_sum_of_its_buffers) {
    ir_graph *g = mlp();
    /* %5 matmul, %6 add b1, %7 gelu, %8 matmul, %9 add b2 */
    planned r = plan(g, true);
    const pass_memplan *p = r.p;
    HOMES(p, ARG, ARG, ARG, ARG, ARG, ARENA, ARENA, ARENA, ARENA, OUTPUT);
    expect_buffer(p, 5, 256, 0, 0, 1, -1);
    expect_buffer(p, 6, 256, 0, 1, 2, 5);
    expect_buffer(p, 7, 256, 0, 2, 3, 6);
    expect_buffer(p, 8, 128, 256, 3, 4, -1);
    expect_totals(p, 5, 4, 384, 384, 896);
    cr_expect_lt(p->arena_bytes, p->naive_bytes);
    unplan(&r);

    r = plan(g, false);
    p = r.p;
    cr_expect_eq(p->f->nkernels, 2, "two contractions with their epilogues");
    HOMES(p, ARG, ARG, ARG, ARG, ARG, NONE, NONE, ARENA, NONE, OUTPUT);
    expect_buffer(p, 7, 256, 0, 0, 1, -1);
    expect_totals(p, 2, 1, 256, 256, 256);
    unplan(&r);
    ir_graph_destroy(g);
}

/* ---- the dump ---------------------------------------------------------------------------- */

Test(memplan, prints_each_buffer_the_in_place_links_the_caller_owned_output_and_the_arena) {
    ir_graph *g = unary_chain();
    planned r = plan(g, true);
    char *s = print_plan(r.p);
    cr_expect(strstr(s, "; memplan of g: 3 buffers in an arena of 1024 bytes; peak live 1024, "
                        "no reuse 3072; 4 steps (nodes: the interpreter)\n"), "%s", s);
    cr_expect(strstr(s, "%1    exp          f32[16,16]                1024 B  @ 0          steps 0..1\n"),
              "%s", s);
    cr_expect(strstr(s, "%2    neg          f32[16,16]                1024 B  @ 0          steps 1..2"
                        "  in place of %1\n"), "%s", s);
    cr_expect(strstr(s, "%3    tanh         f32[16,16]                1024 B  @ 0          steps 2..3"
                        "  in place of %2\n"), "%s", s);
    cr_expect(strstr(s, "%4    sigmoid      f32[16,16]                1024 B  caller-owned output\n"),
              "%s", s);
    cr_expect(strstr(s, "; arena 1024 B + outputs 1024 B per call\n"), "%s", s);
    free(s);
    unplan(&r);
    ir_graph_destroy(g);
}

/* ---- a value read through a view inside its own kernel ------------------------------------ */

Test(memplan, materialises_a_value_that_a_member_of_its_kernel_reads_through_a_view) {
    /* a = exp x; b = a - a[1:2] (reads a through a slice, so not fused with a);
     * c = relu a (fused with a); d = b + c merges b's kernel into a's. Now a
     * member of a's kernel reads a at other indices through the slice, so a
     * must be in memory even though no later kernel loads it. */
    ir_graph *g = pu_new_graph();
    ir_node *x = pu_input(g, 0, EM_F32, 2, SH(4, 4));
    ir_node *a = OP1(g, EXP, x);                                                     /* %1 */
    ir_node *v = OP1(g, SLICE, a, .axis = 0, .start = 1, .end = 2, .step = 1);       /* %2 */
    ir_node *b = OP2(g, SUB, a, v);                                                  /* %3 */
    ir_node *c = OP1(g, RELU, a);                                                    /* %4 */
    pu_set_out(g, OP2(g, ADD, b, c));                                                /* %5 */
    planned r = plan(g, false);
    const pass_fusion *f = r.f;
    bool same_kernel = f->kernel_of[3] == f->kernel_of[1];
    /* Regression: the merge made for %5 (producers in several elementwise
     * kernels merge) used to pull %3 into %1's kernel although %3 reads %1
     * through a slice view; with internal=false %1 then had no home and the
     * slice read a value never written. Now the kernels stay apart. */
    cr_expect(!same_kernel || r.p->home[1] != PASS_HOME_NONE,
              "%%3 reads %%1 through a slice in kernel k%d, and %%1 has no home", f->kernel_of[1]);
    unplan(&r);
    ir_graph_destroy(g);
}
