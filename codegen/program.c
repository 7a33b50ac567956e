/*
 * program.c — one generated function per graph: its steps, in order.
 *
 *     int ember_<hash>_prog(void **homes, void *run)
 *       homes[0]        the arena's data
 *       homes[1 + s]    the data of external home s (an argument, a constant,
 *                       an output of this call: cg_layout's slots)
 *
 * For each step of the schedule it fills the access pointers of the step's
 * loop nest (an arena buffer is the arena plus its planned offset, a constant
 * of the code; anything else is its slot) and calls the nest's function: on
 * the calling thread when the work is small, else over the thread pool with
 * rt_parallel_for_hot (a GEMM in several pieces a thread, rt_threads() read at
 * the call). A step the interpreter runs (an OpenBLAS contraction, a gather, a
 * value codegen does not emit) is a call back into exec.c's
 * cg_exec_interpret(run, step), whose failure ends the program with -1.
 * Compiled with CG_PROFILE (EMBER_PROFILE=1), it also calls cg_exec_mark
 * before each step and at the end, for the `profile` stage. An AMX GEMM with
 * the FMA kernel beside it (has_alt) runs through a function of its own
 * whose pieces, groups of 64 columns, each run the kernel their core picks
 * (pick.c; emit_mixed below).
 *
 * So a compiled call does no per-kernel work in C: exec.c fills homes once
 * and makes one call. The offsets make the code specific to the memory plan,
 * which is itself a function of the graph and the schedule, so the program
 * key (key.c hashes the layout and the schedule) still identifies it.
 */
#include "codegen.h"

#include <stdlib.h>

/* A loop nest of at most this many elements runs on the calling thread. It
 * was 32768: the GPT-2 block's layer norms and head merge (32768 floats each)
 * then ran on one thread at two threads, and read half their input from the
 * other core's cache (the GEMM before them wrote it from both). Split, they
 * took 12.5-13.6, 9 and 13 us against 16-20, 13-14 and 16.5-19.5 (EMBER_PROFILE,
 * two runs each). Below it, a pointwise nest takes about as long as waking the
 * other threads. */
enum { SERIAL_ELEMENTS = 16384 };

/* The data pointer of access a's home. */
static LLVMValueRef home_ptr(cg_emitter *e, const cg_layout *lay, LLVMValueRef homes, LLVMValueRef arena, int node) {
    if (lay->offset[node] >= 0)
        return LLVMBuildGEP2(e->b, LLVMInt8TypeInContext(e->c), arena, (LLVMValueRef[]){cg_i64c(e, lay->offset[node])},
                             1, "");
    EM_ASSERT(lay->slot[node] >= 1);
    LLVMValueRef at = LLVMBuildGEP2(e->b, e->ptr, homes, (LLVMValueRef[]){cg_i64c(e, lay->slot[node])}, 1, "");
    return LLVMBuildLoad2(e->b, e->ptr, at, "");
}

/* Calls fn over [0, n) in pieces of grain over the pool (or at once when nt says so). */
static void call_range(cg_emitter *e, LLVMValueRef fn, LLVMValueRef ptrs, LLVMValueRef n, LLVMValueRef grain,
                       LLVMValueRef parallel) {
    LLVMTypeRef range_p[3] = {e->ptr, e->i64, e->i64}, pf_p[4] = {e->i64, e->i64, e->ptr, e->ptr}, fty, pfty;
    LLVMTypeRef void_t = LLVMVoidTypeInContext(e->c);
    fty = LLVMFunctionType(void_t, range_p, 3, 0);
    if (LLVMIsConstant(parallel) && !LLVMConstIntGetZExtValue(parallel)) { /* on this thread */
        LLVMBuildCall2(e->b, fty, fn, (LLVMValueRef[]){ptrs, cg_i64c(e, 0), n}, 3, "");
        return;
    }
    LLVMValueRef pf = cg_declare(e, "rt_parallel_for_hot", void_t, pf_p, 4, &pfty);
    LLVMValueRef fnv = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef par = LLVMAppendBasicBlockInContext(e->c, fnv, "pool");
    LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(e->c, fnv, "inline");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(e->c, fnv, "step");
    LLVMBuildCondBr(e->b, parallel, par, one);
    LLVMPositionBuilderAtEnd(e->b, par);
    LLVMBuildCall2(e->b, pfty, pf, (LLVMValueRef[]){n, grain, fn, ptrs}, 4, "");
    LLVMBuildBr(e->b, next);
    LLVMPositionBuilderAtEnd(e->b, one);
    LLVMBuildCall2(e->b, fty, fn, (LLVMValueRef[]){ptrs, cg_i64c(e, 0), n}, 3, "");
    LLVMBuildBr(e->b, next);
    LLVMPositionBuilderAtEnd(e->b, next);
}

static LLVMValueRef ceil_div(cg_emitter *e, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSDiv(e->b, LLVMBuildAdd(e->b, a, LLVMBuildSub(e->b, b, cg_i64c(e, 1), ""), ""), b, "");
}

/* The pool's threads at the call (rt_threads), as an i64. */
static LLVMValueRef threads_now(cg_emitter *e) {
    LLVMTypeRef ty;
    LLVMValueRef f = cg_declare(e, "rt_threads", e->i32, NULL, 0, &ty);
    return LLVMBuildSExt(e->b, LLVMBuildCall2(e->b, ty, f, NULL, 0, ""), e->i64, "");
}

/* A GEMM's tiles per piece for nt threads. Several pieces per thread, taken
 * as the threads come (pool.c): a worker that starts late, or loses its core
 * to the host for a while, takes fewer instead of the caller waiting for its
 * one share. Whole (batch, panel) segments when there are enough, so that
 * every panel is packed once: 4 pieces a thread from 4 segments a thread,
 * else one segment a piece from 2; else 2 pieces a thread cut inside the
 * segments (each piece packs its panel). 128 x 1024 x 256 at 2 threads, in 2
 * pieces, ran at 70-100 GFLOP/s median (the worker took no piece in a third of
 * the calls) against 145 at one thread. On one thread, one piece: a piece's
 * first panel is packed before its tiles can start, the others (AMX) while
 * the tiles before them run (gemm_emit.c), so pieces there cost 1 panel's
 * packing each and balance nothing. */
static LLVMValueRef gemm_grain(cg_emitter *e, const cg_gemm *g, LLVMValueRef nt) {
    LLVMBuilderRef b = e->b;
    int64_t segs = g->batches * g->panels, rt = g->rtiles;
    LLVMValueRef s = cg_i64c(e, segs);
    LLVMValueRef p4 = LLVMBuildMul(b, nt, cg_i64c(e, 4), ""), p2 = LLVMBuildMul(b, nt, cg_i64c(e, 2), "");
    LLVMValueRef whole = LLVMBuildMul(b, cg_i64c(e, rt), ceil_div(e, s, p4), "");
    LLVMValueRef inside = ceil_div(e, cg_i64c(e, segs * rt), p2);
    LLVMValueRef grain = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGE, s, p2, ""), cg_i64c(e, rt), inside, "");
    grain = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGE, s, p4, ""), whole, grain, "");
    return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, nt, cg_i64c(e, 1), ""), cg_i64c(e, segs * rt), grain, "");
}

/* An AMX GEMM's row operand, split and packed once a call (over the pool,
 * before the GEMM's pieces start) into a block of its own, batch after batch,
 * whose address goes in the slot after the nest's accesses. The block is
 * freed after the step (rt_alloc keeps it for the next call); no block ends
 * the program. */
typedef struct amx_pack {
    const cg_loopnest *ln;
    LLVMValueRef buf, a;               /* the block; A's data */
} amx_pack;

static int64_t amx_block_bytes(const cg_gemm *g) { return g->batches * rt_amx_packed_bytes(g->m, g->k); }

/* The arguments of A's packers for batch bi into block buf (A's data from
 * ptrs[0] in a): dst, src, rows, k and the strides. */
static void rows_args(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef buf, LLVMValueRef a, LLVMValueRef bi,
                      LLVMValueRef *args) {
    const cg_gemm *g = &ln->gemm;
    LLVMValueRef off[CG_MAX_ACCESS], at = LLVMBuildMul(e->b, bi, cg_i64c(e, rt_amx_packed_bytes(g->m, g->k)), "");
    cg_gemm_batch_offsets(e, ln, bi, off);
    args[0] = LLVMBuildGEP2(e->b, LLVMInt8TypeInContext(e->c), buf, &at, 1, ""), args[1] = cg_elem_ptr(e, a, off[0]);
    args[2] = cg_i64c(e, g->m), args[3] = cg_i64c(e, g->k);
    args[4] = cg_i64c(e, ln->acc[0].strides[g->nbatch]), args[5] = cg_i64c(e, g->ak);
}

static void amx_pack_batch(cg_emitter *e, LLVMValueRef bi, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    const amx_pack *p = ctx;
    LLVMTypeRef pp[6] = {e->ptr, e->ptr, e->i64, e->i64, e->i64, e->i64}, pt;
    LLVMValueRef pf = cg_declare(e, "rt_amx_pack_rows_parallel", LLVMVoidTypeInContext(e->c), pp, 6, &pt), args[6];
    rows_args(e, p->ln, p->buf, p->a, bi, args);
    LLVMBuildCall2(e->b, pt, pf, args, 6, "");
}

/* A one-batch GEMM's rows packed into buf by the pieces that run on the unit
 * (rt_amx_pack_rows_shared, sharing `share`). */
static void amx_pack_shared(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef share, LLVMValueRef buf, LLVMValueRef a) {
    LLVMTypeRef pp[7] = {e->ptr, e->ptr, e->ptr, e->i64, e->i64, e->i64, e->i64}, pt;
    LLVMValueRef pf = cg_declare(e, "rt_amx_pack_rows_shared", LLVMVoidTypeInContext(e->c), pp, 7, &pt), args[7];
    args[0] = share;
    rows_args(e, ln, buf, a, cg_i64c(e, 0), args + 1);
    LLVMBuildCall2(e->b, pt, pf, args, 7, "");
}

/* The packed-rows block (rt_alloc keeps it between calls); NULL goes to fail. */
static LLVMValueRef amx_block(cg_emitter *e, const cg_loopnest *ln, LLVMBasicBlockRef fail) {
    LLVMBuilderRef b = e->b;
    LLVMTypeRef sp[1] = {e->i64}, st;
    LLVMValueRef sf = cg_declare(e, "rt_alloc", e->ptr, sp, 1, &st);
    LLVMValueRef buf = LLVMBuildCall2(b, st, sf, (LLVMValueRef[]){cg_i64c(e, amx_block_bytes(&ln->gemm))}, 1, "");
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(b));
    LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(e->c, fn, "packed");
    LLVMBuildCondBr(b, LLVMBuildIsNull(b, buf, ""), fail, ok);
    LLVMPositionBuilderAtEnd(b, ok);
    return buf;
}

static LLVMValueRef amx_prepare(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef ptrs, LLVMBasicBlockRef fail) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef buf = amx_block(e, ln, fail);
    amx_pack p = {ln, buf, LLVMBuildLoad2(b, e->ptr, ptrs, "")};
    cg_loop(e, cg_i64c(e, 0), cg_i64c(e, ln->gemm.batches), 1, NULL, 0, amx_pack_batch, &p);
    LLVMBuildStore(b, buf, LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){cg_i64c(e, ln->naccess)}, 1, ""));
    return buf;
}

static void amx_finish(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef buf) {
    LLVMTypeRef fp[2] = {e->ptr, e->i64}, ft;
    LLVMValueRef ff = cg_declare(e, "rt_free", LLVMVoidTypeInContext(e->c), fp, 2, &ft);
    LLVMValueRef args[2] = {buf, cg_i64c(e, amx_block_bytes(&ln->gemm))};
    LLVMBuildCall2(e->b, ft, ff, args, 2, "");
}

/* A GEMM whose B is a constant (bconst) finds B packed, all its panels,
 * in ptrs[naccess + 3], or NULL: then it packs B per panel as for any B.
 * exec.c packs and keeps it from the second call on (cg_exec_packed). */
static void packed_constant(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef ptrs, LLVMValueRef run, int step) {
    if (!ln->gemm.bconst) return;
    LLVMBuilderRef b = e->b;
    LLVMTypeRef pp[3] = {e->ptr, e->i32, e->ptr}, pt;
    LLVMValueRef home = LLVMBuildLoad2(b, e->ptr, LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){cg_i64c(e, 1)}, 1, ""), "");
    LLVMValueRef packed = LLVMBuildCall2(b, pt, cg_declare(e, "cg_exec_packed", e->ptr, pp, 3, &pt),
                                         (LLVMValueRef[]){run, LLVMConstInt(e->i32, (unsigned)step, 0), home}, 3, "bpack");
    LLVMBuildStore(b, packed, LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){cg_i64c(e, ln->naccess + 3)}, 1, ""));
}

/* A GEMM with two kernels (has_alt) runs in pieces of whole groups of 64
 * columns, and each piece on the kernel its core's times pick (pick.c): for
 * a group range [glo, ghi), the unit's kernel runs its panels [2 glo, 2 ghi)
 * and the FMA kernel its panel range [glo, ghi), each with all of their row
 * tiles. The program passes the packed-rows block in ptrs[naccess] (not yet
 * packed: the pieces on the unit pack it together), their rt_amx_rows_share
 * in ptrs[naccess + 1] and the cores' cg_picks in ptrs[naccess + 2]. */
static LLVMValueRef emit_mixed(cg_emitter *e, const cg_loopnest *ln, int k, LLVMValueRef amx, LLVMValueRef fma) {
    LLVMBuilderRef b = e->b;
    const cg_gemm *g = &ln->gemm, *f = &ln->alt;
    LLVMTypeRef vt = LLVMVoidTypeInContext(e->c), params[3] = {e->ptr, e->i64, e->i64};
    LLVMTypeRef fty = LLVMFunctionType(vt, params, 3, 0);
    char name[64];
    snprintf(name, sizeof name, "ember_n%d_pieces", k);
    LLVMValueRef fn = LLVMAddFunction(e->m, name, fty);
    LLVMValueRef ptrs = LLVMGetParam(fn, 0), glo = LLVMGetParam(fn, 1), ghi = LLVMGetParam(fn, 2);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(e->c, fn, "entry"));
    LLVMValueRef pc = LLVMBuildAlloca(b, LLVMArrayType2(e->i64, 2), "piece"), slot[3];
    for (int i = 0; i < 3; i++) {
        LLVMValueRef at = LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){cg_i64c(e, ln->naccess + i)}, 1, "");
        slot[i] = LLVMBuildLoad2(b, e->ptr, at, "");
    }
    LLVMTypeRef pp[2] = {e->ptr, e->ptr}, pt, dt, kt;
    LLVMValueRef pick = cg_declare(e, "cg_piece_pick", e->i32, pp, 2, &pt);
    LLVMValueRef which = LLVMBuildCall2(b, pt, pick, (LLVMValueRef[]){slot[2], pc}, 2, "kernel");
    LLVMBasicBlockRef tiles = LLVMAppendBasicBlockInContext(e->c, fn, "amx"), fmas = LLVMAppendBasicBlockInContext(e->c, fn, "fma");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->c, fn, "done");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, which, LLVMConstInt(e->i32, 0, 0), ""), tiles, fmas);
    LLVMPositionBuilderAtEnd(b, tiles);
    amx_pack_shared(e, ln, slot[1], slot[0], LLVMBuildLoad2(b, e->ptr, ptrs, ""));
    LLVMTypeRef kp[1] = {e->ptr};
    LLVMBuildCall2(b, kt, cg_declare(e, "cg_piece_restart", vt, kp, 1, &kt), (LLVMValueRef[]){pc}, 1, "");
    LLVMValueRef pa = cg_i64c(e, g->panels);
    LLVMValueRef lo = LLVMBuildShl(b, glo, cg_i64c(e, 1), ""), hi = LLVMBuildShl(b, ghi, cg_i64c(e, 1), "");
    lo = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, lo, pa, ""), lo, pa, "");
    hi = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, hi, pa, ""), hi, pa, "");
    LLVMValueRef rta = cg_i64c(e, g->rtiles), rtf = cg_i64c(e, f->rtiles);
    LLVMBuildCall2(b, fty, amx, (LLVMValueRef[]){ptrs, LLVMBuildMul(b, lo, rta, ""), LLVMBuildMul(b, hi, rta, "")}, 3, "");
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, fmas);
    LLVMBuildCall2(b, fty, fma, (LLVMValueRef[]){ptrs, LLVMBuildMul(b, glo, rtf, ""), LLVMBuildMul(b, ghi, rtf, "")}, 3, "");
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
    LLVMTypeRef dp[3] = {e->ptr, e->ptr, e->i64};
    LLVMValueRef fin = cg_declare(e, "cg_piece_done", vt, dp, 3, &dt);
    LLVMBuildCall2(b, dt, fin, (LLVMValueRef[]){slot[2], pc, LLVMBuildSub(b, ghi, glo, "")}, 3, "");
    LLVMBuildRetVoid(b);
    return fn;
}

/* The step of a GEMM with two kernels: its pieces over the pool (a quarter of
 * a thread's share of the groups each; one piece on one thread), after the
 * packed-rows block, the share of its packing and the cores' picks are in place. */
static void mixed_step(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef fn, LLVMValueRef ptrs, LLVMValueRef share,
                       LLVMBasicBlockRef fail, LLVMValueRef run, int step) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef buf = amx_block(e, ln, fail);
    LLVMTypeRef ip[2] = {e->ptr, e->i32}, it;
    LLVMValueRef cpus = LLVMBuildCall2(b, it, cg_declare(e, "cg_exec_pieces", e->ptr, ip, 2, &it),
                                       (LLVMValueRef[]){run, LLVMConstInt(e->i32, (unsigned)step, 0)}, 2, "");
    LLVMBuildStore(b, LLVMConstNull(LLVMArrayType2(e->i64, 2)), share);
    LLVMValueRef vals[3] = {buf, share, cpus};
    for (int i = 0; i < 3; i++)
        LLVMBuildStore(b, vals[i], LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){cg_i64c(e, ln->naccess + i)}, 1, ""));
    int64_t groups = ln->alt.panels;
    LLVMValueRef nt = threads_now(e);
    LLVMValueRef grain = ceil_div(e, cg_i64c(e, groups), LLVMBuildMul(b, nt, cg_i64c(e, 4), ""));
    grain = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, nt, cg_i64c(e, 1), ""), cg_i64c(e, groups), grain, "");
    LLVMValueRef parallel = ln->gemm.serial || groups == 1 ? LLVMConstInt(LLVMInt1TypeInContext(e->c), 0, 0)
                                                           : LLVMBuildICmp(b, LLVMIntSGT, nt, cg_i64c(e, 1), "");
    call_range(e, fn, ptrs, cg_i64c(e, groups), grain, parallel);
    amx_finish(e, ln, buf);
}

/* A loop nest's step: its rows (or a GEMM's row tiles) split as exec.c's run_generated did. */
static void nest_step(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef fn, LLVMValueRef ptrs, LLVMBasicBlockRef fail) {
    LLVMBuilderRef b = e->b;
    if (ln->is_gemm) {
        LLVMValueRef packed = ln->gemm.amx ? amx_prepare(e, ln, ptrs, fail) : NULL;
        int64_t units = ln->gemm.units;
        if (ln->gemm.serial || units == 1) {
            call_range(e, fn, ptrs, cg_i64c(e, units), cg_i64c(e, units), LLVMConstInt(LLVMInt1TypeInContext(e->c), 0, 0));
        } else {
            LLVMValueRef nt = threads_now(e);
            call_range(e, fn, ptrs, cg_i64c(e, units), gemm_grain(e, &ln->gemm, nt),
                       LLVMBuildICmp(b, LLVMIntSGT, nt, cg_i64c(e, 1), ""));
        }
        if (packed) amx_finish(e, ln, packed);
        return;
    }
    int64_t rows = 1, inner = ln->shape[ln->ndim - 1];
    for (int d = 0; d < ln->ndim - 1; d++) rows *= ln->shape[d];
    int64_t grain = inner >= SERIAL_ELEMENTS ? 1 : SERIAL_ELEMENTS / inner;
    bool serial = rows * inner <= SERIAL_ELEMENTS;
    call_range(e, fn, ptrs, cg_i64c(e, rows), cg_i64c(e, grain), LLVMConstInt(LLVMInt1TypeInContext(e->c), !serial, 0));
}

LLVMValueRef cg_emit_program(cg_emitter *e, const pass_program *prog, const cg_schedule *s, const cg_layout *lay,
                             LLVMValueRef *nest_fn, LLVMValueRef *alt_fn, bool profile) {
    (void)prog;
    LLVMBuilderRef b = e->b;
    LLVMTypeRef params[2] = {e->ptr, e->ptr}, ity, ip[2] = {e->ptr, e->i32};
    LLVMValueRef *mixed = calloc((size_t)(s->nnests ? s->nnests : 1), sizeof *mixed);
    if (!mixed) return NULL;
    for (int k = 0; k < s->nnests; k++)
        if (s->nests[k].has_alt) mixed[k] = emit_mixed(e, &s->nests[k], k, nest_fn[k], alt_fn[k]);
    LLVMValueRef fn = LLVMAddFunction(e->m, "ember_prog", LLVMFunctionType(e->i32, params, 2, 0));
    LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(e->c, fn, "fail");
    LLVMPositionBuilderAtEnd(b, fail);
    LLVMBuildRet(b, LLVMConstInt(e->i32, (unsigned long long)-1, 1));
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(e->c, fn, "entry"));
    LLVMMoveBasicBlockAfter(fail, LLVMGetInsertBlock(b));
    LLVMValueRef homes = LLVMGetParam(fn, 0), run = LLVMGetParam(fn, 1);
    /* the accesses, then a GEMM's packed rows, for two kernels the share of their packing and the picks,
     * and a constant B packed once */
    LLVMValueRef ptrs = LLVMBuildArrayAlloca(b, e->ptr, cg_i64c(e, CG_MAX_ACCESS + 4), "ptrs");
    LLVMValueRef share = LLVMBuildAlloca(b, LLVMArrayType2(e->i64, 2), "share"); /* rt_amx_rows_share */
    LLVMValueRef arena = LLVMBuildLoad2(b, e->ptr, homes, "arena");
    for (int i = 0; i <= s->nsteps; i++) {
        if (profile) { /* EMBER_PROFILE: a timestamp before each step and at the end */
            LLVMValueRef mark = cg_declare(e, "cg_exec_mark", e->i32, ip, 2, &ity);
            LLVMBuildCall2(b, ity, mark, (LLVMValueRef[]){run, LLVMConstInt(e->i32, (unsigned)i, 0)}, 2, "");
        }
        if (i == s->nsteps) break;
        const cg_step *st = &s->steps[i];
        if (st->nest < 0) {
            LLVMValueRef interp = cg_declare(e, "cg_exec_interpret", e->i32, ip, 2, &ity);
            LLVMValueRef rc = LLVMBuildCall2(b, ity, interp, (LLVMValueRef[]){run, LLVMConstInt(e->i32, (unsigned)i, 0)}, 2, "");
            LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(e->c, fn, "ok");
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntNE, rc, LLVMConstInt(e->i32, 0, 0), ""), fail, ok);
            LLVMPositionBuilderAtEnd(b, ok);
            continue;
        }
        const cg_loopnest *ln = &s->nests[st->nest];
        for (int a = 0; a < ln->naccess; a++) {
            LLVMValueRef slot = LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){cg_i64c(e, a)}, 1, "");
            LLVMBuildStore(b, home_ptr(e, lay, homes, arena, ln->acc[a].home), slot);
        }
        packed_constant(e, ln, ptrs, run, i);
        if (ln->has_alt) mixed_step(e, ln, mixed[st->nest], ptrs, share, fail, run, i);
        else nest_step(e, ln, nest_fn[st->nest], ptrs, fail);
    }
    LLVMBuildRet(b, LLVMConstInt(e->i32, 0, 0));
    LLVMMoveBasicBlockAfter(fail, LLVMGetLastBasicBlock(fn));
    free(mixed);
    return fn;
}
