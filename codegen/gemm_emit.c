/*
 * gemm_emit.c — LLVM IR for a GEMM nest: a register-blocked kernel whose
 * epilogue runs on the tile in registers.
 *
 * The function is an rt_range_fn over tasks (gemm.c chose them):
 *
 *     void ember_<hash>_n<k>(void **ptrs, int64_t lo, int64_t hi)
 *       for t in [lo, hi):  (batch, panel, chunk) = t
 *         pointers at the batch; v0 = panel * Vb; r0 = chunk * rchunk
 *         for each k block:                       (one unless V is packed)
 *           pack V's panel [kc][Vb] by gathers     (only when packed)
 *           for r in r0 .. end of chunk step mr:   (then one tile of the rest)
 *             acc[mr][nvec] = 0, or the block's partial sums
 *             for k in block:
 *               v[j] = V[k, v0 + j*W ..]           (vector loads, masked at the edge)
 *               acc[i][j] += splat(R[r + i, k]) * v[j]
 *             last block: the epilogue on each acc[i][j] (emit.c's members,
 *               with the product given as the contraction's value) and the
 *               stores, masked at the edge, scattered when the lanes run
 *               along m; else the partial sums to the stack buffer
 *
 * The accumulators are SSA values (phis of the k loop), so the register
 * allocator keeps the whole tile in registers; R's scalars are broadcast
 * loads, V's vectors plain loads. The panel that is not the last one is
 * emitted without masks; the last one, when V does not fill it, is emitted
 * again with its own vector count and mask. The stack buffers are allocas of
 * the function (at most 128 KiB each, gemm.c bounds them).
 */
#include "codegen.h"

#include <string.h>

typedef struct gemm_emit {
    cg_emitter *e;
    cg_nest_state *s;
    const cg_loopnest *ln;
    const cg_gemm *g;
    int R, V;                          /* access indices of the operands */
    int rdim, vdim;                    /* loops of R's rows and of V's lanes */
    int64_t rr, rk, vv, vk;            /* strides: R along r and k, V along v and k */
    int64_t NR, NV, Vb;                /* extents, panel width */
    LLVMValueRef base[CG_MAX_ACCESS];  /* per access: its data at this task's batch */
    LLVMValueRef pk, cbuf;             /* packed panel, partial sums (allocas), or NULL */
    LLVMValueRef task, v0, r0, chunk;  /* this task */
    LLVMValueRef kb, kn;               /* this k block: first k, length */
    LLVMValueRef first, last;          /* i1: the first and the last k block */
    int nv;                            /* vectors of the panel being emitted */
    LLVMValueRef mask;                 /* its last vector's lanes, or NULL */
} gemm_emit;

static LLVMValueRef i64c(gemm_emit *q, int64_t v) { return cg_i64c(q->e, v); }
static LLVMValueRef add(gemm_emit *q, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(q->e->b, a, b, ""); }
static LLVMValueRef mul(gemm_emit *q, LLVMValueRef a, int64_t c) { return LLVMBuildMul(q->e->b, a, i64c(q, c), ""); }

static LLVMBasicBlockRef block(gemm_emit *q, const char *name) {
    return LLVMAppendBasicBlockInContext(q->e->c, q->s->fn, name);
}

/* A counted loop: `body` runs with the induction variable from `from` while it
 * is below `to`, stepping by `step`; phis carry n values (vals in, vals out). */
typedef void (*loop_body)(gemm_emit *q, LLVMValueRef iv, LLVMValueRef *vals, void *ctx);

static void loop(gemm_emit *q, LLVMValueRef from, LLVMValueRef to, int64_t step, LLVMValueRef *vals, int n,
                 loop_body body, void *ctx) {
    LLVMBuilderRef b = q->e->b;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b), head = block(q, "loop"), end = block(q, "loop.end");
    LLVMValueRef init[24];
    if (n) memcpy(init, vals, (size_t)n * sizeof *vals);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, from, to, ""), head, end);
    LLVMPositionBuilderAtEnd(b, head);
    LLVMValueRef iv = LLVMBuildPhi(b, q->e->i64, "iv"), phi[24];
    for (int k = 0; k < n; k++) phi[k] = vals[k] = LLVMBuildPhi(b, LLVMTypeOf(init[k]), "");
    body(q, iv, vals, ctx);
    LLVMValueRef next = add(q, iv, i64c(q, step));
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, to, ""), head, end);
    LLVMBasicBlockRef from2[2] = {pre, latch};
    LLVMValueRef ivs[2] = {from, next};
    LLVMAddIncoming(iv, ivs, from2, 2);
    for (int k = 0; k < n; k++) {
        LLVMValueRef v[2] = {init[k], vals[k]};
        LLVMAddIncoming(phi[k], v, from2, 2);
    }
    LLVMPositionBuilderAtEnd(b, end);
    for (int k = 0; k < n; k++) { /* after the loop: the last values, or the initial ones if it never ran */
        LLVMValueRef p = LLVMBuildPhi(b, LLVMTypeOf(init[k]), "");
        LLVMValueRef v[2] = {init[k], vals[k]};
        LLVMAddIncoming(p, v, from2, 2);
        vals[k] = p;
    }
}

static LLVMValueRef vload(gemm_emit *q, LLVMValueRef p, LLVMValueRef mask, unsigned align) {
    cg_emitter *e = q->e;
    if (mask) {
        LLVMTypeRef over[2] = {e->vt, e->ptr};
        LLVMValueRef args[4] = {p, LLVMConstInt(e->i32, align, 0), mask, cg_splat(e, 0.0f)};
        return cg_masked(e, "llvm.masked.load", over, args, 4);
    }
    LLVMValueRef l = LLVMBuildLoad2(e->b, e->vt, p, "");
    LLVMSetAlignment(l, align);
    return l;
}

static void vstore(gemm_emit *q, LLVMValueRef v, LLVMValueRef p) {
    LLVMSetAlignment(LLVMBuildStore(q->e->b, v, p), 64);
}

/* ---- packing V's panel -------------------------------------------------------------------- */

static void pack_step(gemm_emit *q, LLVMValueRef k, LLVMValueRef *vals, void *ctx) {
    (void)vals, (void)ctx;
    cg_emitter *e = q->e;
    LLVMValueRef src = cg_elem_ptr(e, q->base[q->V], add(q, mul(q, add(q, q->kb, k), q->vk), mul(q, q->v0, q->vv)));
    for (int j = 0; j < q->nv; j++) {
        LLVMValueRef m = j == q->nv - 1 ? q->mask : NULL;
        LLVMValueRef v = cg_gather(e, src, i64c(q, (int64_t)j * e->w), q->vv, m);
        vstore(q, v, cg_elem_ptr(e, q->pk, add(q, mul(q, k, q->Vb), i64c(q, (int64_t)j * e->w))));
    }
}

/* ---- one tile ----------------------------------------------------------------------------- */

typedef struct tile {
    int mr;
    LLVMValueRef r;                    /* its first row of R */
    LLVMValueRef rp[12];               /* per row: R's row at this k block */
    LLVMValueRef vp;                   /* V at this k block (unpacked) */
} tile;

static void k_step(gemm_emit *q, LLVMValueRef k, LLVMValueRef *acc, void *ctx) {
    tile *t = ctx;
    cg_emitter *e = q->e;
    LLVMValueRef v[4];
    for (int j = 0; j < q->nv; j++) {
        LLVMValueRef off = i64c(q, (int64_t)j * e->w);
        if (q->pk) v[j] = vload(q, cg_elem_ptr(e, q->pk, add(q, mul(q, k, q->Vb), off)), NULL, 64);
        else v[j] = vload(q, cg_elem_ptr(e, t->vp, add(q, mul(q, k, q->vk), off)), j == q->nv - 1 ? q->mask : NULL, 4);
    }
    for (int i = 0; i < t->mr; i++) {
        LLVMValueRef sc = LLVMBuildLoad2(e->b, e->f32, cg_elem_ptr(e, t->rp[i], mul(q, k, q->rk)), "");
        LLVMSetAlignment(sc, 4);
        LLVMValueRef sp = cg_splat_value(e, sc);
        for (int j = 0; j < q->nv; j++) acc[i * q->nv + j] = cg_fma3(e, sp, v[j], acc[i * q->nv + j]);
    }
}

/* The partial sums of the tile's rows in the stack buffer. */
static LLVMValueRef cbuf_at(gemm_emit *q, tile *t, int i, int j) {
    LLVMValueRef row = add(q, LLVMBuildSub(q->e->b, t->r, q->r0, ""), i64c(q, i));
    return cg_elem_ptr(q->e, q->cbuf, add(q, mul(q, row, q->Vb), i64c(q, (int64_t)j * q->e->w)));
}

/* The epilogue of acc (row i, vector j of the tile) and every store. */
static void epilogue(gemm_emit *q, tile *t, int i, int j, LLVMValueRef acc) {
    cg_emitter *e = q->e;
    cg_nest_state *s = q->s;
    const cg_loopnest *ln = q->ln;
    LLVMValueRef r = add(q, t->r, i64c(q, i)), v = add(q, q->v0, i64c(q, (int64_t)j * e->w));
    for (int a = ln->nops; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        s->p[a] = cg_elem_ptr(e, q->base[a], add(q, mul(q, r, c->strides[q->rdim]), mul(q, v, c->strides[q->vdim])));
        s->lane[a] = c->strides[q->vdim];
        s->row[a] = NULL;
        if (!c->store && s->lane[a] == 0) {
            LLVMValueRef l = LLVMBuildLoad2(e->b, e->f32, s->p[a], "");
            LLVMSetAlignment(l, 4);
            s->row[a] = cg_splat_value(e, l);
        }
    }
    cg_nest_begin_step(s, i64c(q, 0), j == q->nv - 1 ? q->mask : NULL);
    if (q->g->bias >= 0) acc = LLVMBuildFAdd(e->b, acc, cg_nest_eval(e, s, ln->acc[q->g->bias].value), "");
    cg_nest_set(s, q->g->node, acc);
    cg_nest_store_all(e, s, true);
}

/* One tile of t->mr rows at row t->r: its k loop, then its epilogue or its partial sums. */
static void emit_tile(gemm_emit *q, tile *t) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    int n = t->mr * q->nv;
    LLVMValueRef acc[24];
    for (int i = 0; i < t->mr; i++)
        t->rp[i] = cg_elem_ptr(e, q->base[q->R], add(q, mul(q, add(q, t->r, i64c(q, i)), q->rr), mul(q, q->kb, q->rk)));
    if (!q->pk) t->vp = cg_elem_ptr(e, q->base[q->V], add(q, mul(q, q->kb, q->vk), mul(q, q->v0, q->vv)));
    if (!q->cbuf) {
        for (int k = 0; k < n; k++) acc[k] = cg_splat(e, 0.0f);
    } else { /* zero in the first block, else the partial sums */
        LLVMBasicBlockRef from = LLVMGetInsertBlock(b), ld = block(q, "sums"), go = block(q, "tile");
        LLVMBuildCondBr(b, q->first, go, ld);
        LLVMPositionBuilderAtEnd(b, ld);
        LLVMValueRef got[24];
        for (int k = 0; k < n; k++) got[k] = vload(q, cbuf_at(q, t, k / q->nv, k % q->nv), NULL, 64);
        LLVMBuildBr(b, go);
        LLVMPositionBuilderAtEnd(b, go);
        for (int k = 0; k < n; k++) {
            acc[k] = LLVMBuildPhi(b, e->vt, "");
            LLVMValueRef in[2] = {cg_splat(e, 0.0f), got[k]};
            LLVMBasicBlockRef bb[2] = {from, ld};
            LLVMAddIncoming(acc[k], in, bb, 2);
        }
    }
    if (q->g->k > 0) loop(q, i64c(q, 0), q->kn, 1, acc, n, k_step, t);
    if (!q->cbuf) {
        for (int k = 0; k < n; k++) epilogue(q, t, k / q->nv, k % q->nv, acc[k]);
        return;
    }
    LLVMBasicBlockRef fin = block(q, "epilogue"), keep = block(q, "partial"), done = block(q, "tile.end");
    LLVMBuildCondBr(b, q->last, fin, keep);
    LLVMPositionBuilderAtEnd(b, keep);
    for (int k = 0; k < n; k++) vstore(q, acc[k], cbuf_at(q, t, k / q->nv, k % q->nv));
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, fin);
    for (int k = 0; k < n; k++) epilogue(q, t, k / q->nv, k % q->nv, acc[k]);
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
}

static void tile_step(gemm_emit *q, LLVMValueRef r, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    tile t = {.mr = *(int *)ctx, .r = r};
    emit_tile(q, &t);
}

/* ---- a k block, a panel, a task ----------------------------------------------------------- */

/* The rows of this chunk in tiles of mr; the last chunk's rows that do not fill a tile, one tile. */
static void block_body(gemm_emit *q) {
    LLVMBuilderRef b = q->e->b;
    const cg_gemm *g = q->g;
    if (q->pk) loop(q, i64c(q, 0), q->kn, 1, NULL, 0, pack_step, NULL);
    int64_t lastrows = q->NR - (g->chunks - 1) * g->rchunk, full = lastrows / g->mr * g->mr, rest = lastrows - full;
    LLVMValueRef islast = LLVMBuildICmp(b, LLVMIntEQ, q->chunk, i64c(q, g->chunks - 1), "");
    LLVMValueRef end = add(q, q->r0, LLVMBuildSelect(b, islast, i64c(q, full), i64c(q, g->rchunk), ""));
    int mr = g->mr;
    loop(q, q->r0, end, mr, NULL, 0, tile_step, &mr);
    if (rest) {
        LLVMBasicBlockRef yes = block(q, "rest"), no = block(q, "rest.end");
        LLVMBuildCondBr(b, islast, yes, no);
        LLVMPositionBuilderAtEnd(b, yes);
        tile t = {.mr = (int)rest, .r = add(q, q->r0, i64c(q, full))};
        emit_tile(q, &t);
        LLVMBuildBr(b, no);
        LLVMPositionBuilderAtEnd(b, no);
    }
}

static void kblock_step(gemm_emit *q, LLVMValueRef kb, LLVMValueRef *vals, void *ctx) {
    (void)vals, (void)ctx;
    LLVMBuilderRef b = q->e->b;
    q->kb = kb;
    LLVMValueRef left = LLVMBuildSub(b, i64c(q, q->g->k), kb, "");
    LLVMValueRef small = LLVMBuildICmp(b, LLVMIntSLT, left, i64c(q, q->g->kc), "");
    q->kn = LLVMBuildSelect(b, small, left, i64c(q, q->g->kc), "");
    q->first = LLVMBuildICmp(b, LLVMIntEQ, kb, i64c(q, 0), "");
    q->last = LLVMBuildICmp(b, LLVMIntSLE, left, i64c(q, q->g->kc), "");
    block_body(q);
}

/* One panel of nv vectors (mask: the last vector's lanes, or NULL). */
static void panel(gemm_emit *q, int nv, LLVMValueRef mask) {
    q->nv = nv, q->mask = mask;
    if (q->g->kc >= q->g->k) {
        q->kb = i64c(q, 0), q->kn = i64c(q, q->g->k);
        q->first = q->last = LLVMConstInt(LLVMInt1TypeInContext(q->e->c), 1, 0);
        block_body(q);
    } else {
        loop(q, i64c(q, 0), i64c(q, q->g->k), q->g->kc, NULL, 0, kblock_step, NULL);
    }
}

static void task_step(gemm_emit *q, LLVMValueRef t, LLVMValueRef *vals, void *ctx) {
    (void)vals, (void)ctx;
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    const cg_gemm *g = q->g;
    const cg_loopnest *ln = q->ln;
    q->task = t;
    q->chunk = LLVMBuildURem(b, t, i64c(q, g->chunks), "");
    LLVMValueRef rest = LLVMBuildUDiv(b, t, i64c(q, g->chunks), "");
    LLVMValueRef pnl = LLVMBuildURem(b, rest, i64c(q, g->panels), "");
    LLVMValueRef bi = LLVMBuildUDiv(b, rest, i64c(q, g->panels), "");
    LLVMValueRef off[CG_MAX_ACCESS];
    for (int a = 0; a < ln->naccess; a++) off[a] = i64c(q, ln->acc[a].offset);
    for (int d = g->nbatch - 1; d >= 0; d--) {
        LLVMValueRef idx = d > 0 ? LLVMBuildURem(b, bi, i64c(q, ln->shape[d]), "") : bi;
        if (d > 0) bi = LLVMBuildUDiv(b, bi, i64c(q, ln->shape[d]), "");
        for (int a = 0; a < ln->naccess; a++)
            if (ln->acc[a].strides[d]) off[a] = add(q, off[a], mul(q, idx, ln->acc[a].strides[d]));
    }
    LLVMValueRef ptrs = LLVMGetParam(q->s->fn, 0);
    for (int a = 0; a < ln->naccess; a++) {
        LLVMValueRef slot = LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){i64c(q, a)}, 1, "");
        q->base[a] = cg_elem_ptr(e, LLVMBuildLoad2(b, e->ptr, slot, ""), off[a]);
    }
    q->v0 = mul(q, pnl, q->Vb);
    q->r0 = mul(q, q->chunk, g->rchunk);
    int64_t lastv = q->NV - (g->panels - 1) * q->Vb; /* lanes of the last panel */
    if (lastv == q->Vb) {
        panel(q, g->nvec, NULL);
        return;
    }
    int nv = (int)((lastv + e->w - 1) / e->w);
    LLVMValueRef lanes[16];
    for (int k = 0; k < e->w; k++)
        lanes[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), (int64_t)(nv - 1) * e->w + k < lastv, 0);
    LLVMValueRef mask = lastv % e->w ? LLVMConstVector(lanes, (unsigned)e->w) : NULL;
    if (g->panels == 1) {
        panel(q, nv, mask);
        return;
    }
    LLVMBasicBlockRef full = block(q, "panel"), part = block(q, "panel.last"), join = block(q, "panel.end");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, pnl, i64c(q, g->panels - 1), ""), part, full);
    LLVMPositionBuilderAtEnd(b, full);
    panel(q, g->nvec, NULL);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, part);
    panel(q, nv, mask);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, join);
}

static LLVMValueRef stack_buffer(gemm_emit *q, int64_t floats) {
    LLVMValueRef a = LLVMBuildAlloca(q->e->b, LLVMArrayType2(q->e->f32, (uint64_t)floats), "");
    LLVMSetAlignment(a, 64);
    return a;
}

void cg_emit_gemm(cg_emitter *e, cg_nest_state *s) {
    const cg_loopnest *ln = s->ln;
    const cg_gemm *g = &ln->gemm;
    int nb = g->nbatch;
    gemm_emit q = {.e = e, .s = s, .ln = ln, .g = g};
    q.R = g->vec_m ? 1 : 0, q.V = g->vec_m ? 0 : 1;
    q.rdim = g->vec_m ? nb + 1 : nb, q.vdim = g->vec_m ? nb : nb + 1;
    q.rr = ln->acc[q.R].strides[q.rdim], q.vv = ln->acc[q.V].strides[q.vdim];
    q.rk = g->vec_m ? g->bk : g->ak, q.vk = g->vec_m ? g->ak : g->bk;
    q.NR = g->vec_m ? g->n : g->m, q.NV = g->vec_m ? g->m : g->n;
    q.Vb = (int64_t)g->nvec * e->w;
    LLVMBuilderRef b = e->b;
    LLVMValueRef fn = s->fn, lo = LLVMGetParam(fn, 1), hi = LLVMGetParam(fn, 2);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(e->c, fn, "entry"));
    if (g->pack) q.pk = stack_buffer(&q, g->kc * q.Vb);
    if (g->kc < g->k) q.cbuf = stack_buffer(&q, g->rchunk * q.Vb);
    loop(&q, lo, hi, 1, NULL, 0, task_step, NULL);
    LLVMBuildRetVoid(b);
}
