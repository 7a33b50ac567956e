/*
 * emit.c — LLVM IR for loop nests: explicit vector code, eager's math (emit_ops.c).
 *
 * Each compiled loop nest becomes one function, an rt_range_fn, so the thread
 * pool can split its rows:
 *
 *     void ember_<hash>_n<k>(void **ptrs, int64_t lo, int64_t hi)
 *       for row in [lo, hi):                      -- all loops but the last
 *         p[a] = ptrs[a] + offset[a] + sum(index_d(row) * stride[a][d])
 *         broadcast loads of the row, splatted once
 *         one or more passes along the row:
 *           for i in 0 .. L - L % W step W:       -- W lanes
 *             the members on <W x float>, loads at p[a] + i (each value
 *             computed once per step, on first use), accumulators, stores
 *           one masked step for the last L % W elements
 *
 * A pointwise nest is one pass that stores. A row nest (reductions or a norm
 * along the last loop) makes the passes its anchors need, with vector
 * accumulators combined across lanes at the end of a pass: reductions one pass
 * and then their epilogue once per row; softmax a max pass, a sum-of-exp pass
 * and the output pass; layer_norm a mean pass, a variance pass and the output
 * pass; rms_norm a mean-square pass and the output pass. The prologue is
 * recomputed in each pass from its loads (cheaper than a round trip through
 * memory for elementwise chains); the epilogue runs in the output pass.
 *
 * The width is explicit (<16 x float> with AVX-512) rather than left to LLVM's
 * loop vectoriser: it is what we want on this CPU (the vectoriser prefers 256
 * bits on Ice Lake), it compiles several times faster (the lean pipeline has
 * no vectoriser), and the tail is one masked iteration instead of a scalar
 * loop. Loads and stores say align 4: arguments may be any f32 view. An
 * operand strided in the inner loop (a transposed argument) is gathered.
 * Results are dense, so stores are contiguous; a loop nest whose inner loop
 * would store with a stride gets W = 1: the same code on scalars.
 *
 * The math mirrors runtime/ew_simd.c op for op (emit_ops.c), so a pointwise
 * nest gives eager's bits; row nests sum in another order than the runtime's
 * row kernels, so they agree with eager within rounding (the contract's
 * tolerance), not bit for bit.
 */
#include "codegen.h"

#include <llvm-c/BitWriter.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef cg_nest_state nest_state;

static LLVMValueRef norm_value(cg_emitter *e, nest_state *s);

static void begin_step(nest_state *s, LLVMValueRef i, LLVMValueRef mask) {
    s->cur++, s->i = i, s->mask = mask;
}

static LLVMValueRef load(cg_emitter *e, nest_state *s, int a) {
    int64_t st = s->lane[a];
    LLVMTypeRef over[2] = {e->vt, e->ptr};
    LLVMValueRef v;
    if (st == 0) return s->row[a];
    if (e->w == 1) v = LLVMBuildLoad2(e->b, e->f32, cg_elem_ptr(e, s->p[a], LLVMBuildMul(e->b, s->i, cg_i64c(e, st), "")), "");
    else if (st != 1) return cg_gather(e, s->p[a], s->i, st, s->mask);
    else if (!s->mask) v = LLVMBuildLoad2(e->b, e->vt, cg_elem_ptr(e, s->p[a], s->i), "");
    else {
        LLVMValueRef args[4] = {cg_elem_ptr(e, s->p[a], s->i), LLVMConstInt(e->i32, 4, 0), s->mask, cg_splat(e, 0.0f)};
        return cg_masked(e, "llvm.masked.load", over, args, 4);
    }
    LLVMSetAlignment(v, 4);
    return v;
}

/* The value of node id at the current step: a per-row value, a member computed
 * from its operands, or a load (each at most once per step). */
static LLVMValueRef eval(cg_emitter *e, nest_state *s, int id) {
    if (s->rowval[id]) return s->rowval[id];
    if (s->gen[id] == s->cur) return s->val[id];
    const ir_node *x = ir_graph_node(s->prog->graph, id), *copied = cg_permuted_copy(s->prog, s->ln, x);
    LLVMValueRef v;
    if (s->norm && id == s->norm->id) {
        v = norm_value(e, s);
    } else if (copied) { /* the copied member's value, stored through the permutation */
        v = eval(e, s, copied->id);
    } else if (cg_loopnest_computes(s->prog, s->ln, id)) {
        EM_ASSERT(ir_ops[x->op].kind == IR_KIND_ELEMENTWISE || x->op == IR_OP_CONTIGUOUS);
        LLVMValueRef a = eval(e, s, x->in[0]->id), b = x->nin > 1 ? eval(e, s, x->in[1]->id) : NULL;
        v = cg_op_value(e, x->op, a, b);
    } else {
        int a = cg_loopnest_load(s->ln, id);
        EM_ASSERT(a >= 0);
        v = load(e, s, a);
    }
    s->gen[id] = s->cur, s->val[id] = v;
    return v;
}

/* Stores v along the row at access a's pointer, at the step's lanes. */
static void store_at(cg_emitter *e, nest_state *s, int a, LLVMValueRef v) {
    LLVMTypeRef over[2] = {e->vt, e->ptr};
    int64_t st = s->lane[a];
    if (e->w == 1) {
        LLVMSetAlignment(LLVMBuildStore(e->b, v, cg_elem_ptr(e, s->p[a], LLVMBuildMul(e->b, s->i, cg_i64c(e, st), ""))), 4);
    } else if (st != 1) {
        cg_scatter(e, v, s->p[a], s->i, st, s->mask);
    } else if (!s->mask) {
        LLVMValueRef store = LLVMBuildStore(e->b, v, cg_elem_ptr(e, s->p[a], s->i));
        LLVMSetAlignment(store, s->nt ? (unsigned)e->w * 4 : 4);
        if (s->nt) {
            LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(e->i32, 1, 0));
            LLVMSetMetadata(store, LLVMGetMDKindIDInContext(e->c, "nontemporal", 11),
                            LLVMMetadataAsValue(e->c, LLVMMDNodeInContext2(e->c, &one, 1)));
        }
    } else {
        LLVMValueRef args[4] = {v, cg_elem_ptr(e, s->p[a], s->i), LLVMConstInt(e->i32, 4, 0), s->mask};
        cg_masked(e, "llvm.masked.store", over, args, 4);
    }
}

/* Loads back what store_at wrote at the step's lanes. */
static LLVMValueRef load_back(cg_emitter *e, nest_state *s, int a) {
    LLVMTypeRef over[2] = {e->vt, e->ptr};
    if (e->w > 1 && s->mask) {
        LLVMValueRef args[4] = {cg_elem_ptr(e, s->p[a], s->i), LLVMConstInt(e->i32, 4, 0), s->mask, cg_splat(e, 0.0f)};
        return cg_masked(e, "llvm.masked.load", over, args, 4);
    }
    LLVMValueRef l = LLVMBuildLoad2(e->b, e->vt, cg_elem_ptr(e, s->p[a], s->i), "");
    LLVMSetAlignment(l, 4);
    return l;
}

/* Stores the stored values computed along the row (row_shaped: at the step's
 * lanes) or once per row after reductions (lane 0, at the row's pointer). In a
 * norm nest everything is along the row. */
static void store_all(cg_emitter *e, nest_state *s, bool row_shaped) {
    const cg_loopnest *ln = s->ln;
    bool norm = s->norm != NULL;
    LLVMValueRef vals[CG_MAX_ACCESS] = {0};
    /* Every value first, then every store: a result may be stored over an input
     * (memplan's in place), which must be read before it is written. */
    for (int a = 0; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        bool along = !ln->row || norm || c->strides[ln->ndim - 1] != 0;
        if (c->store && along == row_shaped) vals[a] = eval(e, s, c->value);
    }
    for (int a = 0; a < ln->naccess; a++) {
        if (!vals[a]) continue;
        LLVMValueRef v = vals[a];
        if (!row_shaped) {
            if (e->w > 1) v = LLVMBuildExtractElement(e->b, v, LLVMConstInt(e->i32, 0, 0), "");
            LLVMSetAlignment(LLVMBuildStore(e->b, v, s->p[a]), 4);
        } else {
            store_at(e, s, a, v);
        }
    }
}

void cg_nest_begin_step(cg_nest_state *s, LLVMValueRef i, LLVMValueRef mask) { begin_step(s, i, mask); }
LLVMValueRef cg_nest_eval(cg_emitter *e, cg_nest_state *s, int id) { return eval(e, s, id); }
void cg_nest_set(cg_nest_state *s, int id, LLVMValueRef v) { s->gen[id] = s->cur, s->val[id] = v; }
void cg_nest_store_all(cg_emitter *e, cg_nest_state *s, bool row_shaped) { store_all(e, s, row_shaped); }

/* Row pointers: decompose the row number into the outer loop indices. */
static void row_pointers(cg_emitter *e, nest_state *s, LLVMValueRef r) {
    const cg_loopnest *ln = s->ln;
    LLVMValueRef ctx = LLVMGetParam(s->fn, 0);
    LLVMValueRef off[CG_MAX_ACCESS];
    for (int a = 0; a < ln->naccess; a++) off[a] = cg_i64c(e, ln->acc[a].offset);
    LLVMValueRef rem = r;
    s->pf = ln->prefetch > 0;
    for (int d = ln->ndim - 2; d >= 0; d--) {
        LLVMValueRef idx = d > 0 ? LLVMBuildURem(e->b, rem, cg_i64c(e, ln->shape[d]), "") : rem;
        if (d > 0) rem = LLVMBuildUDiv(e->b, rem, cg_i64c(e, ln->shape[d]), "");
        for (int a = 0; a < ln->naccess; a++)
            if (ln->acc[a].strides[d])
                off[a] = LLVMBuildAdd(e->b, off[a], LLVMBuildMul(e->b, idx, cg_i64c(e, ln->acc[a].strides[d]), ""), "");
    }
    for (int a = 0; a < ln->naccess; a++) {
        LLVMValueRef slot = LLVMBuildGEP2(e->b, e->ptr, ctx, (LLVMValueRef[]){cg_i64c(e, a)}, 1, "");
        LLVMValueRef base = LLVMBuildLoad2(e->b, e->ptr, slot, "");
        s->p[a] = cg_elem_ptr(e, base, off[a]);
        s->lane[a] = ln->acc[a].strides[ln->ndim - 1];
        s->row[a] = NULL;
        if (!ln->acc[a].store && ln->acc[a].strides[ln->ndim - 1] == 0) {
            LLVMValueRef l = LLVMBuildLoad2(e->b, e->f32, s->p[a], "");
            LLVMSetAlignment(l, 4);
            s->row[a] = cg_splat_value(e, l);
        }
    }
}

/* ---- one pass along the row ----------------------------------------------------------- */

/* RED_SQ: sum of v*v, by FMA. RED_SHIFT: the max that shifts a softmax's
 * row, which may drop a NaN (one vmaxps a step, as runtime/norm_simd.c's
 * row_max): a NaN in the row still makes every output NaN, through the sum of
 * the exps. The NaN-keeping max (compare, compare unordered, or the masks,
 * blend) made the whole softmax of a [256, 256] row block take 24 us against
 * 15 (one thread, a Zen 5 EPYC): its chain of four dependent instructions a
 * step was most of the max pass. */
enum { RED_NONE, RED_SUM, RED_MAX, RED_MIN, RED_SQ, RED_SHIFT };

typedef struct pass {
    int n;                          /* accumulators */
    int kind[4];                    /* RED_* per accumulator */
    LLVMValueRef (*value)(cg_emitter *e, nest_state *s, void *ctx, int k); /* what accumulator k takes */
    void *ctx;
    bool store;                     /* store the row-shaped accesses at each step */
    LLVMValueRef acc[4];            /* out: the vector accumulators after the pass */
} pass;

static float identity(int kind) { return kind == RED_MAX || kind == RED_SHIFT ? -INFINITY : kind == RED_MIN ? INFINITY : 0.0f; }

/* x86's max or min of v and acc (maxps: acc, the second operand, when either
 * is NaN), or NULL where the vector is not of the target's width (hreduce's
 * halves). As an intrinsic LLVM cannot merge it with the NaN select after it
 * (combine): written as two selects, it became compare, compare unordered,
 * or the masks, blend, a chain of four a step, and a max row reduction of
 * [256, 256] took 6.8 us against 3.7 this way and 3.8 for eager's (a Zen 5
 * EPYC, one thread). AVX-512's vrangeps, one instruction, drops a NaN. */
static LLVMValueRef x86_extreme(cg_emitter *e, int kind, LLVMValueRef acc, LLVMValueRef v) {
    unsigned n = LLVMGetVectorSize(LLVMTypeOf(v));
    if ((int)n != e->w || (n != 16 && n != 8)) return NULL;
    const char *op = kind == RED_MAX ? "max" : "min";
    char name[40];
    if (n == 16) {
        snprintf(name, sizeof name, "llvm.x86.avx512.%s.ps.512", op);
        LLVMValueRef args[3] = {v, acc, LLVMConstInt(e->i32, 4, 0)}; /* the current rounding: no sae */
        return cg_target_call(e, name, args, 3);
    }
    snprintf(name, sizeof name, "llvm.x86.avx.%s.ps.256", op);
    LLVMValueRef args[2] = {v, acc};
    return cg_target_call(e, name, args, 2);
}

/* acc op v, as eager's reductions: NaN propagates (a NaN v is taken; a NaN acc
 * stays), but for RED_SHIFT. */
static LLVMValueRef combine(cg_emitter *e, int kind, LLVMValueRef acc, LLVMValueRef v) {
    LLVMBuilderRef b = e->b;
    if (kind == RED_SUM) return LLVMBuildFAdd(b, acc, v, "");
    if (kind == RED_SQ) return cg_fma3(e, v, v, acc);
    if (kind == RED_SHIFT) return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v, acc, ""), v, acc, "");
    LLVMValueRef m = x86_extreme(e, kind, acc, v);
    if (!m) m = LLVMBuildSelect(b, LLVMBuildFCmp(b, kind == RED_MAX ? LLVMRealOGT : LLVMRealOLT, v, acc, ""), v, acc, "");
    return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealUNO, v, v, ""), v, m, "");
}

/* The lanes of v combined into one scalar, by halving. */
static LLVMValueRef hreduce(cg_emitter *e, int kind, LLVMValueRef v) {
    for (int w = e->w; w > 1; w /= 2) {
        LLVMValueRef lo[16], hi[16];
        for (int k = 0; k < w / 2; k++) lo[k] = LLVMConstInt(e->i32, k, 0), hi[k] = LLVMConstInt(e->i32, k + w / 2, 0);
        LLVMValueRef a = LLVMBuildShuffleVector(e->b, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(lo, w / 2), "");
        LLVMValueRef c = LLVMBuildShuffleVector(e->b, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(hi, w / 2), "");
        v = combine(e, kind == RED_SQ ? RED_SUM : kind, a, c);
    }
    return e->w > 1 ? LLVMBuildExtractElement(e->b, v, LLVMConstInt(e->i32, 0, 0), "") : v;
}

static void step_accumulate(cg_emitter *e, nest_state *s, pass *ps, LLVMValueRef *acc) {
    for (int k = 0; k < ps->n; k++) {
        LLVMValueRef v = ps->value(e, s, ps->ctx, k);
        if (s->mask) v = LLVMBuildSelect(e->b, s->mask, v, cg_splat(e, identity(ps->kind[k])), "");
        acc[k] = combine(e, ps->kind[k], acc[k], v);
    }
    if (ps->store) store_all(e, s, true);
}

/* One iteration of a pass's loop at i: U steps, step u into the accumulator
 * set acc + u n (n accumulators a set). */
typedef struct pass_loop {
    nest_state *s;
    pass *ps;
    int64_t U;
    bool prefetch;                  /* this pass prefetches its contiguous loads */
} pass_loop;

/* Each contiguous load's line ln->prefetch bytes ahead of step i's (past the
 * row's end: the next row's, when rows follow each other; a prefetch never
 * faults), for the loads that stream: a row read again for every row stays
 * in the L1 (layer_norm's weight and bias took two of its three prefetches). */
/* Prefetch the line at ptr into the L1 (read, locality 3, data). */
void cg_prefetch(cg_emitter *e, LLVMValueRef ptr) {
    LLVMTypeRef pt = e->ptr;
    unsigned id = LLVMLookupIntrinsicID("llvm.prefetch", 13);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, &pt, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(e->c, id, &pt, 1);
    LLVMValueRef args[4] = {ptr, LLVMConstInt(e->i32, 0, 0), LLVMConstInt(e->i32, 3, 0), LLVMConstInt(e->i32, 1, 0)};
    LLVMBuildCall2(e->b, fty, f, args, 4, "");
}

static void prefetch_step(cg_emitter *e, nest_state *s, LLVMValueRef i) {
    for (int a = 0; a < s->ln->naccess; a++) {
        if (s->ln->acc[a].store || s->lane[a] != 1 || !cg_access_streams(s->ln, a)) continue;
        LLVMValueRef at = LLVMBuildAdd(e->b, i, cg_i64c(e, s->ln->prefetch / (int)sizeof(float)), "");
        cg_prefetch(e, cg_elem_ptr(e, s->p[a], at));
    }
}

static void pass_iteration(cg_emitter *e, LLVMValueRef i, LLVMValueRef *acc, void *ctx) {
    pass_loop *l = ctx;
    for (int u = 0; u < l->U; u++) {
        begin_step(l->s, u ? LLVMBuildAdd(e->b, i, cg_i64c(e, u * e->w), "") : i, NULL);
        if (l->prefetch && (u * e->w * (int)sizeof(float)) % 64 == 0) prefetch_step(e, l->s, l->s->i);
        step_accumulate(e, l->s, l->ps, acc + u * l->ps->n);
    }
}

/* Sums along a row longer than 2 * SUM_BLOCK go in blocks: each block sums
 * into fresh accumulators, which are then added to the running totals. Each
 * lane then adds up about SUM_BLOCK / (4 W) + L / SUM_BLOCK values instead of
 * L / (4 W), so a 16384-float sum that cancels comes out as accurate as the
 * runtime's pairwise sum (reduce_simd.c) within a few ulps of the total. */
enum { SUM_BLOCK = 1024 };

/* One block at j: its sums into fresh accumulators, then into the totals. */
static void block_iteration(cg_emitter *e, LLVMValueRef j, LLVMValueRef *total, void *ctx) {
    pass_loop *l = ctx;
    int n = l->ps->n, m = (int)l->U * n;
    LLVMValueRef part[16];
    for (int x = 0; x < m; x++) part[x] = cg_splat(e, identity(l->ps->kind[x % n]));
    cg_loop(e, j, LLVMBuildAdd(e->b, j, cg_i64c(e, SUM_BLOCK), ""), l->U * e->w, part, m, pass_iteration, l);
    for (int x = 0; x < m; x++) {
        int kind = l->ps->kind[x % n];
        total[x] = combine(e, kind == RED_SQ ? RED_SUM : kind, total[x], part[x]);
    }
}

/* A stream nest's full vectors of a row (pointwise: no accumulators): stored
 * non-temporally when every stored row starts on a vector boundary, as
 * vmovntps needs (rows of a dense output at offset 0 do; a row of odd length
 * does not), with an sfence at the end of the call (emit_rows) so the stores
 * are seen before the job is over;
 * else stored as usual. */
static void stream_loop(cg_emitter *e, nest_state *s, int64_t looped, pass_loop *pl) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef aligned = LLVMConstInt(LLVMInt1TypeInContext(e->c), 1, 0);
    for (int a = 0; a < s->ln->naccess; a++) {
        if (!s->ln->acc[a].store) continue;
        LLVMValueRef low = LLVMBuildAnd(b, LLVMBuildPtrToInt(b, s->p[a], e->i64, ""), cg_i64c(e, e->w * 4 - 1), "");
        aligned = LLVMBuildAnd(b, aligned, LLVMBuildICmp(b, LLVMIntEQ, low, cg_i64c(e, 0), ""), "");
    }
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(b));
    LLVMBasicBlockRef nt = LLVMAppendBasicBlockInContext(e->c, fn, "stream");
    LLVMBasicBlockRef plain = LLVMAppendBasicBlockInContext(e->c, fn, "cached");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->c, fn, "stored");
    LLVMBuildCondBr(b, aligned, nt, plain);
    for (int k = 0; k < 2; k++) {
        LLVMPositionBuilderAtEnd(b, k == 0 ? nt : plain);
        s->nt = k == 0;
        cg_loop(e, cg_i64c(e, 0), cg_i64c(e, looped), e->w, NULL, 0, pass_iteration, pl);
        LLVMBuildBr(b, join);
    }
    s->nt = false;
    LLVMPositionBuilderAtEnd(b, join);
}

/* for i in 0 .. L step W (then one masked step): the accumulators and stores of ps.
 * Builds from the current block and leaves the builder at the pass's end. */
static void run_pass(cg_emitter *e, nest_state *s, pass *ps) {
    const cg_loopnest *ln = s->ln;
    /* A pass that accumulates takes U steps per iteration into U sets of
     * accumulators (the adds of one set wait on each other; U sets overlap),
     * as the runtime's row kernels do; the leftover full steps follow
     * unrolled, then the masked step, then the sets are combined. */
    int64_t L = ln->shape[ln->ndim - 1], W = e->w, U = ps->n ? 4 : 1;
    int64_t full = L / W * W, looped = L / (U * W) * (U * W);
    int n = ps->n;
    LLVMValueRef acc[16]; /* U sets of n, set u at acc + u n */
    for (int u = 0; u < U; u++)
        for (int k = 0; k < n; k++) acc[u * n + k] = cg_splat(e, identity(ps->kind[k]));
    pass_loop pl = {s, ps, U, s->pf};
    s->pf = false;
    bool sums = false;
    for (int k = 0; k < n; k++) sums |= ps->kind[k] == RED_SUM || ps->kind[k] == RED_SQ;
    int64_t blocked = sums && looped >= 2 * SUM_BLOCK && SUM_BLOCK % (U * W) == 0 ? looped / SUM_BLOCK * SUM_BLOCK : 0;
    if (blocked > 0) cg_loop(e, cg_i64c(e, 0), cg_i64c(e, blocked), SUM_BLOCK, acc, (int)U * n, block_iteration, &pl);
    if (looped > blocked && ln->stream && ps->store && n == 0) stream_loop(e, s, looped, &pl);
    else if (looped > blocked) cg_loop(e, cg_i64c(e, blocked), cg_i64c(e, looped), U * W, acc, (int)U * n, pass_iteration, &pl);
    for (int64_t at = looped, u = 0; at < full; at += W, u++) { /* at most U - 1 steps */
        begin_step(s, cg_i64c(e, at), NULL);
        step_accumulate(e, s, ps, acc + (u % U) * n);
    }
    if (full < L) {
        LLVMValueRef lanes[16];
        for (int k = 0; k < W; k++) lanes[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), full + k < L, 0);
        begin_step(s, cg_i64c(e, full), W > 1 ? LLVMConstVector(lanes, (unsigned)W) : NULL);
        step_accumulate(e, s, ps, acc);
    }
    for (int k = 0; k < n; k++) {
        int kind = ps->kind[k] == RED_SQ ? RED_SUM : ps->kind[k];
        ps->acc[k] = combine(e, kind, combine(e, kind, acc[k], acc[n + k]), combine(e, kind, acc[2 * n + k], acc[3 * n + k]));
    }
}

/* ---- pointwise and row nests ----------------------------------------------------------- */

static LLVMValueRef no_value(cg_emitter *e, nest_state *s, void *ctx, int k) {
    (void)e, (void)s, (void)ctx, (void)k;
    return NULL;
}

typedef struct row_ctx {
    const ir_node *anchor[4];       /* reductions, or the one norm */
    LLVMValueRef shift;             /* softmax: the row max; layer_norm: the mean of x - k (splat) */
    LLVMValueRef k;                 /* layer_norm: the row's first element (0 if not finite) */
} row_ctx;

/* reductions: their inputs */
static LLVMValueRef reduce_input(cg_emitter *e, nest_state *s, void *ctx, int k) {
    return eval(e, s, ((row_ctx *)ctx)->anchor[k]->in[0]->id);
}
/* softmax: x (for the max), then exp(x - max) (for the sum) */
static LLVMValueRef norm_x(cg_emitter *e, nest_state *s, void *ctx, int k) {
    (void)k;
    return eval(e, s, ((row_ctx *)ctx)->anchor[0]->in[0]->id);
}
static LLVMValueRef exp_shifted(cg_emitter *e, nest_state *s, void *ctx, int k) {
    row_ctx *c = ctx;
    (void)k;
    /* x - max is at most 0, -inf or NaN */
    LLVMValueRef v = cg_exp_nonpositive(e, LLVMBuildFSub(e->b, eval(e, s, c->anchor[0]->in[0]->id), c->shift, ""));
    if (s->exp_at >= 0) store_at(e, s, s->exp_at, v); /* kept for the output pass, as eager does */
    return v;
}
/* layer_norm: x - k (the row shifted by its first element, as eager sums it) */
static LLVMValueRef shifted_x(cg_emitter *e, nest_state *s, void *ctx, int k) {
    row_ctx *c = ctx;
    (void)k;
    return LLVMBuildFSub(e->b, eval(e, s, c->anchor[0]->in[0]->id), c->k, "");
}
/* layer_norm: (x - k) - mean, squared by the RED_SQ accumulator; rms_norm: x */
static LLVMValueRef deviation(cg_emitter *e, nest_state *s, void *ctx, int k) {
    row_ctx *c = ctx;
    (void)k;
    LLVMValueRef d = eval(e, s, c->anchor[0]->in[0]->id);
    if (c->k) d = LLVMBuildFSub(e->b, LLVMBuildFSub(e->b, d, c->k, ""), c->shift, "");
    return d;
}

/* The reductions of a row, their epilogue per row, and the stores of both. */
/* Bit k set: member id depends (through members) on anchor k. Filled in graph
 * order, so each member looks at its inputs once (linear time). */
static void anchor_masks(const nest_state *s, const row_ctx *c, int n, unsigned char *mask) {
    const cg_loopnest *ln = s->ln;
    for (int i = 0; i < ln->nnodes; i++) {
        int id = ln->nodes[i];
        const ir_node *x = ir_graph_node(s->prog->graph, id);
        mask[id] = 0;
        for (int j = 0; j < x->nin; j++) {
            if (!x->in[j] || !cg_loopnest_computes(s->prog, ln, x->in[j]->id))
                continue;
            mask[id] |= mask[x->in[j]->id];
            for (int k = 0; k < n; k++)
                if (c->anchor[k]->id == x->in[j]->id) mask[id] |= (unsigned char)(1u << k);
        }
    }
}

/* The reductions of a row: each pass takes the reductions whose inputs need
 * only reductions already done (a softmax written by hand: the max, then the
 * sum of exp(x - max)); values along the row that are stored are stored in the
 * first pass when they need no reduction, else in a last pass; values per row
 * (the reductions, their epilogue) are stored once per row at the end. */
static void emit_reduce_row(cg_emitter *e, nest_state *s, row_ctx *c, int n) {
    bool done[CG_MAX_ROW_ANCHORS] = {0}, early = true;
    const cg_loopnest *ln = s->ln;
    int nn = ir_graph_num_nodes(s->prog->graph);
    unsigned char *mask = calloc((size_t)(nn ? nn : 1), 1);
    EM_ASSERT(mask); /* a few bytes per node, at compile time */
    anchor_masks(s, c, n, mask);
    for (int a = 0; a < ln->naccess; a++) /* can every value along the row be stored in pass 1? */
        if (ln->acc[a].store && ln->acc[a].strides[ln->ndim - 1] != 0) early &= mask[ln->acc[a].value] == 0;
    float L = (float)ln->shape[ln->ndim - 1];
    bool first = true, stored = false;
    for (int left = n; left > 0;) {
        row_ctx ready = {0};
        int m = 0, idx[4];
        for (int k = 0; k < n; k++) {
            bool ok = !done[k];
            int in = c->anchor[k]->in[0]->id;
            for (int o = 0; o < n && ok; o++)
                if (o != k && !done[o] && (in == c->anchor[o]->id || (mask[in] & (1u << o)))) ok = false;
            if (ok) ready.anchor[m] = c->anchor[k], idx[m++] = k;
        }
        EM_ASSERT(m > 0); /* lowering admits no cycle */
        pass ps = {.n = m, .value = reduce_input, .ctx = &ready, .store = first && early};
        for (int k = 0; k < m; k++)
            ps.kind[k] = ready.anchor[k]->op == IR_OP_MAX ? RED_MAX : ready.anchor[k]->op == IR_OP_MIN ? RED_MIN : RED_SUM;
        run_pass(e, s, &ps);
        stored |= ps.store, first = false;
        for (int k = 0; k < m; k++) {
            LLVMValueRef r = hreduce(e, ps.kind[k], ps.acc[k]);
            if (ready.anchor[k]->op == IR_OP_MEAN) r = LLVMBuildFDiv(e->b, r, LLVMConstReal(e->f32, L), "");
            s->rowval[ready.anchor[k]->id] = cg_splat_value(e, r);
            done[idx[k]] = true, left--;
        }
    }
    if (!stored) { /* values along the row that needed the reductions */
        pass out = {.n = 0, .value = no_value, .store = true};
        bool any = false;
        for (int a = 0; a < ln->naccess; a++) any |= ln->acc[a].store && ln->acc[a].strides[ln->ndim - 1] != 0;
        if (any) run_pass(e, s, &out);
    }
    begin_step(s, NULL, NULL);
    store_all(e, s, false);
    free(mask);
}

/* A norm: its statistics in one or two passes, then the output pass with the
 * epilogue and every store. */
static void emit_norm_row(cg_emitter *e, nest_state *s, row_ctx *c) {
    const ir_node *a = c->anchor[0];
    LLVMBuilderRef b = e->b;
    float L = (float)s->ln->shape[s->ln->ndim - 1];
    LLVMValueRef scale = NULL, lsum = NULL;
    s->exp_at = -1;
    if (a->op == IR_OP_SOFTMAX) { /* a stored softmax without an epilogue keeps exp(x - max) */
        bool post = false;
        for (int k = 0; k < s->ln->nnodes; k++) post |= s->ln->role[k] == CG_ROLE_POST;
        for (int k = 0; k < s->ln->naccess && !post; k++)
            if (s->ln->acc[k].store && s->ln->acc[k].value == a->id) s->exp_at = k;
    }
    if (a->op == IR_OP_SOFTMAX || a->op == IR_OP_LOG_SOFTMAX) {
        pass mx = {.n = 1, .kind = {RED_SHIFT}, .value = norm_x, .ctx = c};
        run_pass(e, s, &mx);
        c->shift = cg_splat_value(e, hreduce(e, RED_SHIFT, mx.acc[0]));
        pass sum = {.n = 1, .kind = {RED_SUM}, .value = exp_shifted, .ctx = c};
        run_pass(e, s, &sum);
        s->nexp = s->exp_at, s->exp_at = -1;
        LLVMValueRef total = hreduce(e, RED_SUM, sum.acc[0]);
        if (a->op == IR_OP_SOFTMAX) scale = cg_splat_value(e, LLVMBuildFDiv(b, LLVMConstReal(e->f32, 1.0), total, ""));
        else lsum = cg_splat_value(e, cg_call_fn(e, e->f32, "logf", &total, 1));
    } else { /* runtime/norm_simd.c's layer_norm_row and rms_norm_row, step for step */
        if (a->op == IR_OP_LAYER_NORM) {
            LLVMValueRef first[16];
            for (int k = 0; k < e->w; k++) first[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), k == 0, 0);
            begin_step(s, cg_i64c(e, 0), e->w > 1 ? LLVMConstVector(first, (unsigned)e->w) : NULL);
            LLVMValueRef x0 = eval(e, s, a->in[0]->id);
            if (e->w > 1) x0 = LLVMBuildExtractElement(b, x0, LLVMConstInt(e->i32, 0, 0), "");
            LLVMValueRef ax = cg_call_fn(e, e->f32, "fabsf", &x0, 1);
            LLVMValueRef finite = LLVMBuildFCmp(b, LLVMRealONE, ax, LLVMConstReal(e->f32, INFINITY), "");
            c->k = cg_splat_value(e, LLVMBuildSelect(b, finite, x0, LLVMConstReal(e->f32, 0.0), ""));
            pass mean = {.n = 1, .kind = {RED_SUM}, .value = shifted_x, .ctx = c};
            run_pass(e, s, &mean);
            c->shift = cg_splat_value(e, LLVMBuildFDiv(b, hreduce(e, RED_SUM, mean.acc[0]), LLVMConstReal(e->f32, L), ""));
        }
        pass var = {.n = 1, .kind = {RED_SQ}, .value = deviation, .ctx = c};
        run_pass(e, s, &var);
        LLVMValueRef v = LLVMBuildFDiv(b, hreduce(e, RED_SQ, var.acc[0]), LLVMConstReal(e->f32, L), "");
        /* rstd = (float)(1.0 / sqrt((double)var + (double)eps)) */
        LLVMTypeRef f64 = LLVMDoubleTypeInContext(e->c);
        LLVMValueRef vd = LLVMBuildFAdd(b, LLVMBuildFPExt(b, v, f64, ""), LLVMConstReal(f64, a->attrs.eps), "");
        unsigned id = LLVMLookupIntrinsicID("llvm.sqrt", 9);
        LLVMValueRef sq = LLVMBuildCall2(b, LLVMIntrinsicGetType(e->c, id, &f64, 1),
                                         LLVMGetIntrinsicDeclaration(e->m, id, &f64, 1), &vd, 1, "");
        LLVMValueRef r = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, LLVMConstReal(f64, 1.0), sq, ""), e->f32, "");
        scale = cg_splat_value(e, r);
        if (!c->k) c->k = cg_splat(e, 0.0f), c->shift = cg_splat(e, 0.0f);
    }
    /* The output pass: eval computes the norm's value at each step (below). */
    s->norm = a, s->nshift = c->shift, s->nscale = scale, s->nlsum = lsum, s->nk = c->k;
    pass out = {.n = 0, .value = no_value, .store = true};
    run_pass(e, s, &out);
    s->norm = NULL;
}

/* The norm's output at the current step, from x and the row's statistics. */
static LLVMValueRef norm_value(cg_emitter *e, nest_state *s) {
    const ir_node *a = s->norm;
    LLVMBuilderRef b = e->b;
    LLVMValueRef x = a->op == IR_OP_SOFTMAX && s->nexp >= 0 ? NULL : eval(e, s, a->in[0]->id), y;
    switch (a->op) {
    case IR_OP_SOFTMAX:
        if (s->nexp >= 0) return LLVMBuildFMul(b, load_back(e, s, s->nexp), s->nscale, "");
        return LLVMBuildFMul(b, cg_sleef(e, "exp", LLVMBuildFSub(b, x, s->nshift, ""), NULL), s->nscale, "");
    case IR_OP_LOG_SOFTMAX: return LLVMBuildFSub(b, LLVMBuildFSub(b, x, s->nshift, ""), s->nlsum, "");
    default: break;
    }
    /* layer_norm, rms_norm (k = mean = 0): fma((x - k) - mean, scale * w, b) */
    LLVMValueRef d = LLVMBuildFSub(b, LLVMBuildFSub(b, x, s->nk, ""), s->nshift, "");
    LLVMValueRef sw = a->nin > 1 && a->in[1] ? LLVMBuildFMul(b, s->nscale, eval(e, s, a->in[1]->id), "") : s->nscale;
    y = cg_fma3(e, d, sw, a->nin > 2 && a->in[2] ? eval(e, s, a->in[2]->id) : cg_splat(e, 0.0f));
    return y;
}

/* Builds fn: for each row in [lo, hi), `body` after the row's pointers. */
typedef struct row_loop {
    nest_state *s;
    void (*body)(cg_emitter *, nest_state *, void *);
    void *ctx;
} row_loop;

static void row_iteration(cg_emitter *e, LLVMValueRef r, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    row_loop *l = ctx;
    row_pointers(e, l->s, r);
    l->body(e, l->s, l->ctx);
}

static void emit_rows(cg_emitter *e, nest_state *s, void (*body)(cg_emitter *, nest_state *, void *), void *ctx) {
    LLVMValueRef fn = s->fn;
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->c, fn, "entry"));
    cg_loop(e, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), 1, NULL, 0, row_iteration, &(row_loop){s, body, ctx});
    /* non-temporal stores reach other threads once fenced: one sfence a call,
     * not one a row (chain ran 4-5% faster on one thread) */
    if (s->ln->stream) cg_target_call(e, "llvm.x86.sse.sfence", NULL, 0);
    LLVMBuildRetVoid(e->b);
}

static void pointwise_body(cg_emitter *e, nest_state *s, void *ctx) {
    (void)ctx;
    pass ps = {.n = 0, .value = no_value, .store = true};
    run_pass(e, s, &ps);
}

static void row_body(cg_emitter *e, nest_state *s, void *ctx) {
    (void)ctx;
    const cg_loopnest *ln = s->ln;
    row_ctx c = {0};
    int n = 0;
    for (int k = 0; k < ln->nnodes; k++) {
        for (int m = 0; m < ir_graph_num_nodes(s->prog->graph); m++) s->rowval[m] = NULL;
        if (ln->role[k] == CG_ROLE_ANCHOR) {
            EM_ASSERT(n < CG_MAX_ROW_ANCHORS); /* cg_lower_row refuses more */
            c.anchor[n++] = ir_graph_node(s->prog->graph, ln->nodes[k]);
        }
    }
    if (ir_ops[c.anchor[0]->op].kind == IR_KIND_NORM) emit_norm_row(e, s, &c);
    else emit_reduce_row(e, s, &c, n);
}

static atomic_int fail_next; /* cg_emit_fail_next: failures to inject */

void cg_emit_fail_next(int n) { atomic_store(&fail_next, n); }

/* What building a program's module needs; h names its functions. */
typedef struct emit_job {
    const char *name;
    const pass_program *prog;
    const cg_schedule *sched;
    const cg_layout *lay;
    unsigned keep;
    uint64_t h;
    LLVMModuleRef built;  /* made before its key (the module key), not yet handed over */
    cg_compile_times *times; /* module_ms goes here (may be NULL) */
} emit_job;

/* Nest k's function (the program's for k = -1), by the hash that makes them unique. */
static void fn_name(char *buf, size_t cap, uint64_t h, int k) {
    if (k < 0) snprintf(buf, cap, "ember_%016llx_prog", (unsigned long long)h);
    else snprintf(buf, cap, "ember_%016llx_n%d", (unsigned long long)h, k);
}

/* Names the module's functions by j->h: the program, each nest's, and for a
 * nest with two kernels its FMA kernel and its pieces (external like the
 * others, so that jit.c may compile the module in two objects). */
static void name_functions(LLVMModuleRef m, const emit_job *j) {
    for (int k = -1; k < j->sched->nnests; k++) {
        char from[64], to[64];
        if (k < 0) snprintf(from, sizeof from, "ember_prog");
        else snprintf(from, sizeof from, "ember_n%d", k);
        fn_name(to, sizeof to, j->h, k);
        LLVMSetValueName2(LLVMGetNamedFunction(m, from), to, strlen(to));
        static const char *const parts[2] = {"fma", "pieces"};
        for (int p = 0; p < 2 && k >= 0 && j->sched->nests[k].has_alt; p++) {
            snprintf(from, sizeof from, "ember_n%d_%s", k, parts[p]);
            snprintf(to, sizeof to, "ember_%016llx_n%d_%s", (unsigned long long)j->h, k, parts[p]);
            LLVMSetValueName2(LLVMGetNamedFunction(m, from), to, strlen(to));
        }
    }
}

/* Nest k's FMA kernel beside its AMX one (has_alt): the same nest with the
 * alternative plan, in a function of its own (its pieces call it). Returns
 * the next generation. */
static unsigned emit_alt(cg_emitter *e, const nest_state *s, LLVMTypeRef fty, int k, LLVMValueRef *alt) {
    cg_loopnest ln = *s->ln;
    ln.gemm = s->ln->alt, ln.has_alt = false;
    char fname[64];
    snprintf(fname, sizeof fname, "ember_n%d_fma", k);
    *alt = LLVMAddFunction(e->m, fname, fty);
    nest_state a = {.prog = s->prog, .ln = &ln, .fn = *alt, .val = s->val, .gen = s->gen, .rowval = s->rowval,
                    .cur = s->cur + 1, .exp_at = -1, .nexp = -1};
    memset(a.rowval, 0, (size_t)ir_graph_num_nodes(s->prog->graph) * sizeof *a.rowval);
    cg_emit_gemm(e, &a);
    return a.cur + 1;
}

/* The module of every loop nest and the program, with functions named
 * ember_n<k> and ember_prog; NULL with an error. */
static LLVMModuleRef build_module(const emit_job *j) {
    const cg_loopnest *ln = j->sched->nests;
    int n = j->sched->nnests;
    const pass_program *prog = j->prog;
    LLVMContextRef c;
    LLVMModuleRef m;
    if (cg_module_begin(j->name, &c, &m) != 0) return NULL;
    LLVMSetSourceFileName(m, "ember", 5); /* the object names it: the same code, the same bytes */
    int nn = ir_graph_num_nodes(prog->graph);
    size_t nz = (size_t)(nn ? nn : 1);
    LLVMValueRef *val = calloc(nz, sizeof *val), *rowval = calloc(nz, sizeof *rowval);
    unsigned *gen = calloc(nz, sizeof *gen);
    LLVMValueRef *fn = calloc(2 * (size_t)(n ? n : 1), sizeof *fn), *alt = fn ? fn + (n ? n : 1) : NULL;
    if (!val || !fn || !rowval || !gen) {
        free(val), free(fn), free(rowval), free(gen);
        cg_module_discard(m);
        return rt_error("em_compile: out of memory emitting code"), NULL;
    }
    cg_emitter e = {.c = c, .m = m, .b = LLVMCreateBuilderInContext(c)};
    e.f32 = LLVMFloatTypeInContext(c), e.i64 = LLVMInt64TypeInContext(c), e.i32 = LLVMInt32TypeInContext(c);
    e.ptr = LLVMPointerTypeInContext(c, 0);
    LLVMTypeRef params[3] = {e.ptr, e.i64, e.i64};
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c), params, 3, 0);
    unsigned step = 0;
    for (int k = 0; k < n; k++) {
        e.w = ln[k].width;
        e.vt = e.w == 1 ? e.f32 : LLVMVectorType(e.f32, (unsigned)e.w);
        char fname[64];
        snprintf(fname, sizeof fname, "ember_n%d", k);
        fn[k] = LLVMAddFunction(m, fname, fty);
        memset(rowval, 0, nz * sizeof *rowval);
        nest_state s = {.prog = prog, .ln = &ln[k], .fn = fn[k], .val = val, .gen = gen, .rowval = rowval,
                        .cur = step, .exp_at = -1, .nexp = -1};
        if (ln[k].is_gemm) cg_emit_gemm(&e, &s);
        else emit_rows(&e, &s, ln[k].row ? row_body : pointwise_body, NULL);
        step = s.cur + 1; /* generations stay distinct across nests */
        if (ln[k].has_alt) step = emit_alt(&e, &s, fty, k, &alt[k]);
    }
    LLVMValueRef pfn = cg_emit_program(&e, prog, j->sched, j->lay, fn, alt, (j->keep & CG_PROFILE) != 0);
    if (pfn) LLVMSetValueName2(pfn, "ember_prog", strlen("ember_prog"));
    LLVMDisposeBuilder(e.b);
    free(val), free(rowval), free(gen), free(fn);
    if (!pfn) {
        cg_module_discard(m);
        return rt_error("em_compile: out of memory emitting code"), NULL;
    }
    return m;
}

/* The module, timed. */
static LLVMModuleRef timed_module(emit_job *j) {
    double t0 = rt_now_ms();
    LLVMModuleRef m = build_module(j);
    if (j->times) j->times->module_ms += rt_now_ms() - t0;
    return m;
}

/* cg_unit_get_keyed's module maker: the module built already, or a new one. */
static LLVMModuleRef make_module(void *ctx) {
    emit_job *j = ctx;
    LLVMModuleRef m = j->built;
    j->built = NULL;
    if (!m && (m = timed_module(j))) name_functions(m, j);
    return m;
}

cg_unit *cg_emit(const char *name, const pass_program *prog, const cg_schedule *sched, const cg_layout *lay,
                 em_tensor *const *args, unsigned keep, cg_compile_times *times, void **fns, cg_program_fn *program,
                 bool *cached) {
    if (atomic_load(&fail_next) > 0 && atomic_fetch_sub(&fail_next, 1) > 0)
        return rt_error("codegen %s: injected failure (cg_emit_fail_next)", name), NULL;
    emit_job j = {.name = name, .prog = prog, .sched = sched, .lay = lay, .keep = keep, .times = times};
    /* Names from the key's hash: the same program compiled twice (or by another
     * process) has the same names, so the JIT shares it and the cache finds it. */
    char key[1024];
    double t0 = rt_now_ms();
    int st = cg_program_key(prog, args, sched, lay, keep, key, sizeof key, &j.h);
    if (times) times->key_ms = rt_now_ms() - t0;
    if (st < 0) return NULL;
    if (st == 1) { /* no build id: key the module by its own bitcode */
        if (!(j.built = timed_module(&j))) return NULL;
        t0 = rt_now_ms();
        int kst = cg_module_key(j.built, key, sizeof key, &j.h);
        if (times) times->hash_ms += rt_now_ms() - t0;
        if (kst != 0) {
            cg_module_discard(j.built);
            return NULL;
        }
        name_functions(j.built, &j);
    }
    cg_unit *u = cg_unit_get_keyed(name, key, make_module, &j,
                                   &(cg_opt){.pipeline = CG_PIPELINE_LEAN, .keep = keep}, cached, times);
    cg_module_discard(j.built); /* not needed: the code was live or cached */
    for (int k = -1; k < sched->nnests && u; k++) {
        char fname[64];
        fn_name(fname, sizeof fname, j.h, k);
        void *f = cg_unit_lookup(u, fname);
        if (!f) {
            cg_unit_destroy(u);
            return NULL;
        }
        if (k < 0) *program = (cg_program_fn)f;
        else fns[k] = f;
    }
    return u;
}
