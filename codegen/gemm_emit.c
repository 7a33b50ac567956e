/*
 * gemm_emit.c — LLVM IR for a GEMM nest: a register-blocked kernel whose
 * epilogue runs on the tile in registers.
 *
 * The function is an rt_range_fn over row tiles (gemm.c chose the tile):
 *
 *     void ember_<hash>_n<k>(void **ptrs, int64_t lo, int64_t hi)
 *       for each segment of [lo, hi) in one (batch, panel):   unit = (batch, panel, tile)
 *         pointers at the batch; v0 = panel * Vb
 *         for each sweep of at most subtiles tiles:         (all of them unless k is blocked)
 *           for each k block:                               (one unless V is packed and K is long)
 *             pack V's panel [kc][Vb]                       (only when packed: rt_pack_panel's
 *                                                            transposes, or gathers; a kept
 *                                                            constant B: its rows, not packed)
 *             for each tile of mr rows of R:                (rows past R repeat its last row)
 *               acc[mr][nvec] = 0, or the block's partial sums
 *               for k in block:
 *                 v[j] = V[k, v0 + j*W ..]                  (vector loads, masked at the edge)
 *                 acc[i][j] += splat(R[r + i, k]) * v[j]
 *               last block: the accumulators to a stack tile, then for each row that
 *                 exists the epilogue on each vector (emit.c's members, with the
 *                 product as the contraction's value) and the stores, masked at the
 *                 edge; when the lanes run along m (tiles of C^T), into a staged
 *                 tile, then lane by lane out to C's rows; else the partial sums
 *
 * A piece of the range (program.c's gemm_grain cuts them) packs each panel
 * it touches once. The accumulators are SSA values (phis of the k loop), so the register
 * allocator keeps the tile in registers; R's scalars are broadcast loads, V's
 * vectors plain loads. The epilogue is emitted once per vector of a row, in a
 * loop over the rows, and the last tile reuses the full tile's code: code size
 * (and compile time) does not grow with the tile. A panel that V does not fill
 * is emitted a second time with its vector count and mask. Stack buffers are
 * allocas (at most 256 KiB of panel and 128 KiB of partial sums; gemm.c bounds
 * them).
 *
 * Tiles of C^T. A vector of such a tile holds one column of C over 16 rows,
 * which C keeps a row (for mlp's fc1, 16 KiB) apart: stored as it is, each
 * vector scattered into 16 lines that all fall in one L1 set, and the tile's 6
 * columns wrote the same 64 lines 6 times, missing the L1 each time (a fifth of
 * mlp's fc1 by perf samples). So the epilogue stores into a staged tile on the
 * stack (one per stored value), and the tile goes out lane by lane: the tile's
 * rows at lane m, gathered from the stage, are one short store into C's row m.
 * mlp ran 1.10-1.12x faster on one thread, 1.10x on two (in one process,
 * alternating rounds); 64 x 1024 x 4096 alone 1.14-1.15x, 64 x 4096 x 1024
 * 1.04x. Only where a tile's rows fit in one vector (AVX2's 12-row tiles keep
 * the scatters).
 *
 * On the AMX tile unit (cg_gemm.amx, gemm.c chooses it): lanes along n, tiles
 * of 32 x 32. program.c has split and packed A (runtime/amx.c) once a call,
 * batch after batch, into a block whose address is in the slot after the
 * accesses. Panels of 32 columns of B are split and packed into two stack
 * buffers in turn: a piece's first panel before its tiles, each later one by
 * the tile calls of the panel before it (rt_amx_tile_next packs a share
 * between its tile products, on the vector units while the tile unit
 * multiplies). A B that is a constant of the graph (cg_gemm.bconst: a
 * weight) is split and packed whole by the program's second call and kept
 * (exec.c; bpack, NULL before, when B is packed per panel as above): its
 * panels are read from there and nothing is packed, and the
 * tile calls of a panel prefetch the next one into the L2 in shares (block
 * 0.94-0.95x the time at one thread, 0.97x at two, attention 0.96x at one,
 * in one process alternating with prefetching off). Each
 * tile is one call into one of two tilebufs, whose rows
 * go through the same epilogue and stores as above after the next tile's
 * call has been made, so that the vector units run the epilogue while the
 * tile unit finishes that call's products (block 0.98-0.99x the time, in one
 * process against the build before). The function gives the tile state
 * back before it returns.
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
    LLVMValueRef pk, cbuf;             /* packed panel, partial sums (allocas), or NULL; with a
                                          kept B (bconst), pk is this k block's rows of it or the
                                          alloca (pkbuf) */
    LLVMValueRef pkbuf;                /* the packed panel's alloca */
    LLVMValueRef tilebuf;              /* one tile's accumulators, for its epilogue loop */
    LLVMValueRef tilebufs[2];          /* AMX: two, for tiles of odd and even rows / 32 */
    LLVMValueRef stage;                /* tiles of C^T: each stored value's tile, written out
                                          row by row of C (stage_out), or NULL */
    int slot[CG_MAX_ACCESS];           /* per store access: its tile in stage */
    LLVMValueRef v0, r0;               /* this panel's first lane; the rows of the partial sums */
    LLVMValueRef kb, kn;               /* this k block: first k, length */
    LLVMValueRef first, last;          /* i1: the first and the last k block */
    LLVMValueRef rpack;                /* AMX: the row operand packed (program.c, once a call) */
    LLVMValueRef bpack;                /* with bconst: B packed, all its panels (exec.c, once), or
                                          NULL until it is */
    LLVMValueRef batch;                /* AMX: this segment's batch (its block of rpack) */
    LLVMValueRef pnl, more;            /* AMX: this segment's panel; i1, units follow it here */
    LLVMValueRef cur, nxt, ready;      /* AMX: slots of the two panel buffers (this panel's,
                                          the next's) and of the segment packed into nxt (-1) */
    int64_t trow;                      /* floats per row of tilebuf */
    int nv;                            /* vectors of the panel being emitted */
    int kv;                            /* of them, those the k loop being emitted computes (the
                                          first kv; fewer than nv only under a causal mask) */
    LLVMValueRef mask;                 /* its last vector's lanes, or NULL */
} gemm_emit;

static LLVMValueRef i64c(gemm_emit *q, int64_t v) { return cg_i64c(q->e, v); }
static LLVMValueRef add(gemm_emit *q, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(q->e->b, a, b, ""); }
static LLVMValueRef mul(gemm_emit *q, LLVMValueRef a, int64_t c) { return LLVMBuildMul(q->e->b, a, i64c(q, c), ""); }
/* The smaller of two signed values. */
static LLVMValueRef smin(gemm_emit *q, LLVMValueRef a, LLVMValueRef c) {
    return LLVMBuildSelect(q->e->b, LLVMBuildICmp(q->e->b, LLVMIntSLT, a, c, ""), a, c, "");
}

/* The current panel's lanes that exist: all of it but at V's end. */
static LLVMValueRef panel_lanes(gemm_emit *q) {
    return smin(q, LLVMBuildSub(q->e->b, i64c(q, q->NV), q->v0, ""), i64c(q, q->Vb));
}

static LLVMBasicBlockRef block(gemm_emit *q, const char *name) {
    return LLVMAppendBasicBlockInContext(q->e->c, q->s->fn, name);
}

/* cg_loop with a body that takes the GEMM's state. */
typedef void (*loop_body)(gemm_emit *q, LLVMValueRef iv, LLVMValueRef *vals, void *ctx);
typedef struct loop_ctx {
    gemm_emit *q;
    loop_body body;
    void *ctx;
} loop_ctx;

static void loop_trampoline(cg_emitter *e, LLVMValueRef iv, LLVMValueRef *vals, void *ctx) {
    (void)e;
    loop_ctx *l = ctx;
    l->body(l->q, iv, vals, l->ctx);
}

static void loop(gemm_emit *q, LLVMValueRef from, LLVMValueRef to, int64_t step, LLVMValueRef *vals, int n,
                 loop_body body, void *ctx) {
    cg_loop(q->e, from, to, step, vals, n, loop_trampoline, &(loop_ctx){q, body, ctx});
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

/* A whole vector of a stack buffer: buffers are 64-byte aligned and indexed in
 * whole vectors, so a vector's own size is its alignment (32 bytes at 8 lanes). */
static unsigned valign(gemm_emit *q) { return (unsigned)(4 * q->e->w); }

static void vstore(gemm_emit *q, LLVMValueRef v, LLVMValueRef p) {
    LLVMSetAlignment(LLVMBuildStore(q->e->b, v, p), valign(q));
}

/* ---- packing V's panel -------------------------------------------------------------------- */

static void pack_step(gemm_emit *q, LLVMValueRef k, LLVMValueRef *vals, void *ctx) {
    (void)vals, (void)ctx;
    cg_emitter *e = q->e;
    LLVMValueRef src = cg_elem_ptr(e, q->base[q->V], add(q, mul(q, add(q, q->kb, k), q->vk), mul(q, q->v0, q->vv)));
    for (int j = 0; j < q->nv; j++) {
        LLVMValueRef m = j == q->nv - 1 ? q->mask : NULL;
        LLVMValueRef v = q->vv == 1 ? vload(q, cg_elem_ptr(e, src, i64c(q, (int64_t)j * e->w)), m, 4)
                                    : cg_gather(e, src, i64c(q, (int64_t)j * e->w), q->vv, m);
        vstore(q, v, cg_elem_ptr(e, q->pk, add(q, mul(q, k, q->Vb), i64c(q, (int64_t)j * e->w))));
    }
}

/* With unit k-stride: the runtime's rt_pack_panel (a transpose by 16 x 16
 * blocks in registers; runtime/pack_simd.c says why it is not generated). */
static void pack_call(gemm_emit *q) {
    cg_emitter *e = q->e;
    LLVMTypeRef params[6] = {e->i64, e->i64, e->i64, e->ptr, e->i64, e->ptr}, fty;
    LLVMValueRef f = cg_declare(e, "rt_pack_panel", LLVMVoidTypeInContext(e->c), params, 6, &fty);
    int64_t lastv = q->NV - (q->g->panels - 1) * q->Vb;
    LLVMValueRef src = cg_elem_ptr(e, q->base[q->V], add(q, mul(q, q->v0, q->vv), q->kb));
    LLVMValueRef args[6] = {q->kn, i64c(q, q->nv < q->g->nvec || q->mask ? lastv : q->Vb), i64c(q, q->Vb), src,
                            i64c(q, q->vv), q->pk};
    LLVMBuildCall2(e->b, fty, f, args, 6, "");
}

/* ---- one tile ----------------------------------------------------------------------------- */

typedef struct tile {
    LLVMValueRef r;                    /* its first row of R */
    LLVMValueRef rp[12];               /* per row: R's row at this k block */
    LLVMValueRef vp;                   /* V at this k block (unpacked) */
} tile;

static void k_step(gemm_emit *q, LLVMValueRef k, LLVMValueRef *acc, void *ctx) {
    tile *t = ctx;
    cg_emitter *e = q->e;
    LLVMValueRef v[4];
    for (int j = 0; j < q->kv; j++) {
        LLVMValueRef off = i64c(q, (int64_t)j * e->w);
        if (q->pk) {
            v[j] = vload(q, cg_elem_ptr(e, q->pk, add(q, mul(q, k, q->Vb), off)), NULL, valign(q));
            if (q->g->pfd && (j * e->w * 4) % 64 == 0)
                cg_prefetch(e, cg_elem_ptr(e, q->pk, add(q, mul(q, k, q->Vb), i64c(q, q->g->pfd * q->Vb + (int64_t)j * e->w))));
        } else {
            v[j] = vload(q, cg_elem_ptr(e, t->vp, add(q, mul(q, k, q->vk), off)), j == q->nv - 1 ? q->mask : NULL, 4);
            if (q->g->pfd)
                cg_prefetch(e, cg_elem_ptr(e, t->vp, add(q, mul(q, k, q->vk), i64c(q, q->g->pfd * q->vk + (int64_t)j * e->w))));
        }
    }
    for (int i = 0; i < q->g->mr; i++) {
        LLVMValueRef sc = LLVMBuildLoad2(e->b, e->f32, cg_elem_ptr(e, t->rp[i], mul(q, k, q->rk)), "");
        LLVMSetAlignment(sc, 4);
        LLVMValueRef sp = cg_splat_value(e, sc);
        for (int j = 0; j < q->kv; j++) acc[i * q->kv + j] = cg_fma3(e, sp, v[j], acc[i * q->kv + j]);
    }
}

/* Vector k (row k / nv, vector k % nv) of the tile's partial sums in the stack buffer. */
static LLVMValueRef cbuf_at(gemm_emit *q, tile *t, int k) {
    LLVMValueRef row = add(q, LLVMBuildSub(q->e->b, t->r, q->r0, ""), i64c(q, k / q->nv));
    return cg_elem_ptr(q->e, q->cbuf, add(q, mul(q, row, q->Vb), i64c(q, (int64_t)(k % q->nv) * q->e->w)));
}

/* The epilogue of acc (row r = the tile's row i, vector j of the panel) and
 * every store: to C, or with stage to the value's staged tile. */
static void epilogue(gemm_emit *q, LLVMValueRef r, LLVMValueRef i, int j, LLVMValueRef acc) {
    cg_emitter *e = q->e;
    cg_nest_state *s = q->s;
    const cg_loopnest *ln = q->ln;
    LLVMValueRef v = add(q, q->v0, i64c(q, (int64_t)j * e->w));
    for (int a = ln->nops; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        s->p[a] = cg_elem_ptr(e, q->base[a], add(q, mul(q, r, c->strides[q->rdim]), mul(q, v, c->strides[q->vdim])));
        s->lane[a] = c->strides[q->vdim];
        if (c->store && q->stage) { /* [slot][row i][lane] */
            LLVMValueRef at = add(q, mul(q, add(q, i64c(q, (int64_t)q->slot[a] * q->g->mr), i), q->Vb),
                                  i64c(q, (int64_t)j * e->w));
            s->p[a] = cg_elem_ptr(e, q->stage, at), s->lane[a] = 1;
        }
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

/* The tile's rows that exist (the last tile of R may have fewer): the
 * accumulators go through the stack (tilebuf), so the epilogue is emitted once
 * per vector of a row, in a loop over the rows, not once per accumulator. */
static void epilogue_row(gemm_emit *q, LLVMValueRef i, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    tile *t = ctx;
    cg_emitter *e = q->e;
    for (int j = 0; j < q->nv; j++) {
        LLVMValueRef at = add(q, mul(q, i, q->trow), i64c(q, (int64_t)j * e->w));
        epilogue(q, add(q, t->r, i), i, j, vload(q, cg_elem_ptr(e, q->tilebuf, at), NULL, valign(q)));
    }
}

/* v (i32) in every lane of an i32 vector. */
static LLVMValueRef splat_i32(cg_emitter *e, LLVMValueRef v) {
    LLVMTypeRef vt = LLVMVectorType(e->i32, (unsigned)e->w);
    LLVMValueRef one = LLVMBuildInsertElement(e->b, LLVMGetUndef(vt), v, LLVMConstInt(e->i32, 0, 0), "");
    return LLVMBuildShuffleVector(e->b, one, LLVMGetUndef(vt), LLVMConstNull(vt), "");
}

/* Stage-out of lane m: for each stored value, its rows of the tile at lane m
 * (a gather down the staged tile) to C's row v0 + m, where they lie along C's
 * row: one short store where a C^T tile's column scattered into mr lines. */
typedef struct stage_ctx {
    tile *t;
    LLVMValueRef rows_mask;            /* the tile's rows that exist, as lanes */
} stage_ctx;

static void stage_lane(gemm_emit *q, LLVMValueRef m, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    stage_ctx *c = ctx;
    cg_emitter *e = q->e;
    const cg_loopnest *ln = q->ln;
    LLVMTypeRef over[2] = {e->vt, e->ptr};
    for (int a = ln->nops; a < ln->naccess; a++) {
        const cg_access *x = &ln->acc[a];
        if (!x->store) continue;
        LLVMValueRef from = cg_elem_ptr(e, q->stage, add(q, i64c(q, (int64_t)q->slot[a] * q->g->mr * q->Vb), m));
        LLVMValueRef v = cg_gather(e, from, i64c(q, 0), q->Vb, c->rows_mask);
        int64_t sr = x->strides[q->rdim], sv = x->strides[q->vdim];
        LLVMValueRef to = cg_elem_ptr(e, q->base[a], add(q, mul(q, c->t->r, sr), mul(q, add(q, q->v0, m), sv)));
        if (sr == 1) {
            LLVMValueRef args[4] = {v, to, LLVMConstInt(e->i32, 4, 0), c->rows_mask};
            cg_masked(e, "llvm.masked.store", over, args, 4);
        } else {
            cg_scatter(e, v, to, i64c(q, 0), sr, c->rows_mask);
        }
    }
}

static void finish_rows(gemm_emit *q, tile *t);

static void finish(gemm_emit *q, tile *t, LLVMValueRef *acc) {
    cg_emitter *e = q->e;
    for (int k = 0; k < q->g->mr * q->nv; k++) vstore(q, acc[k], cg_elem_ptr(e, q->tilebuf, i64c(q, (int64_t)k * e->w)));
    finish_rows(q, t);
}

/* The epilogue and the stores of the tile in tilebuf, for its rows that exist. */
static void finish_rows(gemm_emit *q, tile *t) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    LLVMValueRef left = LLVMBuildSub(b, i64c(q, q->NR), t->r, "");
    LLVMValueRef rows = smin(q, left, i64c(q, q->g->mr));
    loop(q, i64c(q, 0), rows, 1, NULL, 0, epilogue_row, t);
    if (!q->stage) return;
    LLVMValueRef lanes[16];
    for (int k = 0; k < e->w; k++) lanes[k] = LLVMConstInt(e->i32, (uint64_t)k, 0);
    LLVMValueRef r32 = LLVMBuildTrunc(b, rows, e->i32, "");
    stage_ctx c = {t, LLVMBuildICmp(b, LLVMIntULT, LLVMConstVector(lanes, (unsigned)e->w), splat_i32(e, r32), "")};
    /* the panel's lanes that exist: all of it but at V's end */
    loop(q, i64c(q, 0), panel_lanes(q), 1, NULL, 0, stage_lane, &c);
}

/* The tile's last row that exists. */
static LLVMValueRef tile_last(gemm_emit *q, tile *t) {
    return smin(q, add(q, t->r, i64c(q, q->g->mr - 1)), i64c(q, q->NR - 1));
}

/* The tile's k steps in this block: all kn of them; with a causal A (kdiag)
 * those before its last row's r + kdiag (none when the block starts past it:
 * partial sums stay as they are). */
static LLVMValueRef tile_k(gemm_emit *q, tile *t) {
    const cg_gemm *g = q->g;
    if (g->kdiag <= 0) return q->kn;
    LLVMBuilderRef b = q->e->b;
    LLVMValueRef end = LLVMBuildSub(b, add(q, tile_last(q, t), i64c(q, g->kdiag)), q->kb, "");
    end = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, end, i64c(q, 0), ""), i64c(q, 0), end, "");
    return smin(q, q->kn, end);
}

/* Under a causal mask added in the epilogue (cdiag), the tile's vectors whose
 * columns all lie at or past its last row's r + cdiag are -inf whatever the
 * product: only the vectors before them take products, the first
 * ceil((last + cdiag - v0) / w) of the panel's nv (0 for a tile the mask
 * covers whole). The k loop is emitted once for each count, and a switch
 * takes the tile's: the accumulators of the vectors left out keep their 0
 * (or the partial sums, 0 as well), to which the epilogue adds the mask. On
 * block's scores (T = 128, tiles of 6 x 64) a tile that crosses the diagonal
 * needs 2.5 of its 4 vectors on average; whole tiles past it were all that
 * was skipped before. */
static void causal_k_loops(gemm_emit *q, tile *t, LLVMValueRef kn, LLVMValueRef *acc) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    int mr = q->g->mr, nv = q->nv;
    LLVMValueRef ahead = LLVMBuildSub(b, add(q, tile_last(q, t), i64c(q, q->g->cdiag)), q->v0, "");
    LLVMValueRef need = smin(q, LLVMBuildSDiv(b, add(q, ahead, i64c(q, e->w - 1)), i64c(q, e->w), ""), i64c(q, nv));
    LLVMBasicBlockRef join = block(q, "causal.end"), from[5];
    LLVMValueRef sw = LLVMBuildSwitch(b, need, join, (unsigned)nv), out[5][24];
    from[0] = LLVMGetInsertBlock(b); /* need <= 0: no products */
    memcpy(out[0], acc, (size_t)(mr * nv) * sizeof *acc);
    for (int c = 1; c <= nv; c++) {
        LLVMBasicBlockRef bb = block(q, "causal.vectors");
        LLVMAddCase(sw, i64c(q, c), bb);
        LLVMPositionBuilderAtEnd(b, bb);
        LLVMValueRef sub[24];
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < c; j++) sub[i * c + j] = acc[i * nv + j];
        q->kv = c;
        loop(q, i64c(q, 0), kn, 1, sub, mr * c, k_step, t);
        memcpy(out[c], acc, (size_t)(mr * nv) * sizeof *acc);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < c; j++) out[c][i * nv + j] = sub[i * c + j];
        from[c] = LLVMGetInsertBlock(b);
        LLVMBuildBr(b, join);
    }
    q->kv = nv;
    LLVMPositionBuilderAtEnd(b, join);
    for (int k = 0; k < mr * nv; k++) {
        acc[k] = LLVMBuildPhi(b, e->vt, "");
        for (int c = 0; c <= nv; c++) LLVMAddIncoming(acc[k], &out[c][k], &from[c], 1);
    }
}

/* One tile at row t->r (rows past R are computed from R's last row and not
 * stored): its k loop, then its epilogue or its partial sums. */
static void emit_tile(gemm_emit *q, tile *t) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    int n = q->g->mr * q->nv;
    LLVMValueRef acc[24];
    for (int i = 0; i < q->g->mr; i++) {
        LLVMValueRef row = add(q, t->r, i64c(q, i));
        row = smin(q, row, i64c(q, q->NR - 1));
        t->rp[i] = cg_elem_ptr(e, q->base[q->R], add(q, mul(q, row, q->rr), mul(q, q->kb, q->rk)));
    }
    if (!q->pk) t->vp = cg_elem_ptr(e, q->base[q->V], add(q, mul(q, q->kb, q->vk), mul(q, q->v0, q->vv)));
    if (!q->cbuf) {
        for (int k = 0; k < n; k++) acc[k] = cg_splat(e, 0.0f);
    } else { /* zero in the first block, else the partial sums */
        LLVMBasicBlockRef from = LLVMGetInsertBlock(b), ld = block(q, "sums"), go = block(q, "tile");
        LLVMBuildCondBr(b, q->first, go, ld);
        LLVMPositionBuilderAtEnd(b, ld);
        LLVMValueRef got[24];
        for (int k = 0; k < n; k++) got[k] = vload(q, cbuf_at(q, t, k), NULL, valign(q));
        LLVMBuildBr(b, go);
        LLVMPositionBuilderAtEnd(b, go);
        for (int k = 0; k < n; k++) {
            acc[k] = LLVMBuildPhi(b, e->vt, "");
            LLVMValueRef in[2] = {cg_splat(e, 0.0f), got[k]};
            LLVMBasicBlockRef bb[2] = {from, ld};
            LLVMAddIncoming(acc[k], in, bb, 2);
        }
    }
    if (q->g->k > 0 && q->g->cdiag > 0) causal_k_loops(q, t, tile_k(q, t), acc);
    else if (q->g->k > 0) loop(q, i64c(q, 0), tile_k(q, t), 1, acc, n, k_step, t);
    if (!q->cbuf) {
        finish(q, t, acc);
        return;
    }
    LLVMBasicBlockRef fin = block(q, "epilogue"), keep = block(q, "partial"), done = block(q, "tile.end");
    LLVMBuildCondBr(b, q->last, fin, keep);
    LLVMPositionBuilderAtEnd(b, keep);
    for (int k = 0; k < n; k++) vstore(q, acc[k], cbuf_at(q, t, k));
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, fin);
    finish(q, t, acc);
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
}

static void tile_step(gemm_emit *q, LLVMValueRef r, LLVMValueRef *vals, void *ctx) {
    (void)vals, (void)ctx;
    tile t = {.r = r};
    emit_tile(q, &t);
}

/* ---- a k block, a panel, a piece of the row tiles ------------------------------------------ */

/* V's panel at this k block packed into the alloca. */
static void pack(gemm_emit *q) {
    if (q->vk == 1 && q->e->w == 16) pack_call(q); /* the AVX-512 transposes (gemm.c's cost) */
    else loop(q, i64c(q, 0), q->kn, 1, NULL, 0, pack_step, NULL);
}

/* A kept B (bconst): this k block of the panel from it, else packed as any B. */
static void kept_or_pack(gemm_emit *q) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    LLVMBasicBlockRef packing = block(q, "pack"), kept = block(q, "kept"), join = block(q, "packed");
    LLVMBuildCondBr(b, LLVMBuildIsNull(b, q->bpack, ""), packing, kept);
    LLVMPositionBuilderAtEnd(b, packing);
    q->pk = q->pkbuf;
    pack(q);
    LLVMBasicBlockRef from_pack = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, kept);
    LLVMValueRef at = add(q, mul(q, q->pnl, cg_gemm_kept_offset(q->ln, 1)), mul(q, q->kb, q->Vb));
    LLVMValueRef rows = cg_elem_ptr(e, q->bpack, at);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, join);
    q->pk = LLVMBuildPhi(b, e->ptr, "panel");
    LLVMAddIncoming(q->pk, (LLVMValueRef[]){q->pkbuf, rows}, (LLVMBasicBlockRef[]){from_pack, kept}, 2);
}

/* Tiles [s0, s1) of the current panel at this k block (rows from q->r0 = s0 * mr). */
static void block_body(gemm_emit *q, LLVMValueRef s0, LLVMValueRef s1) {
    const cg_gemm *g = q->g;
    if (q->pkbuf && q->bpack) kept_or_pack(q);
    else if (q->pk) pack(q);
    LLVMValueRef end = smin(q, mul(q, s1, g->mr), i64c(q, q->NR));
    loop(q, mul(q, s0, g->mr), end, g->mr, NULL, 0, tile_step, NULL);
}

/* ---- on the AMX tile unit ---------------------------------------------------------------- */

typedef struct amx_next {
    LLVMValueRef cur, nxt, src, cols, t0, parts; /* this panel; the next one's buffer, source, width */
    LLVMValueRef first, end;                     /* the rows of the tiles */
} amx_next;

/* The tilebuf of the tile at row r: tilebufs[(r / 32) % 2]. */
static LLVMValueRef amx_tilebuf(gemm_emit *q, LLVMValueRef r) {
    LLVMBuilderRef b = q->e->b;
    LLVMValueRef odd = LLVMBuildTrunc(b, LLVMBuildLShr(b, r, i64c(q, 5), ""), LLVMInt1TypeInContext(q->e->c), "");
    return LLVMBuildSelect(b, odd, q->tilebufs[1], q->tilebufs[0], "");
}

static void amx_tile_step(gemm_emit *q, LLVMValueRef r, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    const amx_next *n = ctx;
    cg_emitter *e = q->e;
    LLVMTypeRef i64 = e->i64, params[11] = {e->ptr, e->ptr, e->ptr, i64, e->ptr, e->ptr, i64, i64, i64, i64, i64}, fty;
    LLVMValueRef f = cg_declare(e, "rt_amx_tile_next", LLVMVoidTypeInContext(e->c), params, 11, &fty);
    /* the batch's block, then rows r.. as row groups r / 16, each (k / 32)
     * blocks of 3 x 512 bf16 */
    int64_t group = rt_amx_packed_bytes(32, q->g->k) / 2;
    LLVMValueRef at = add(q, mul(q, q->batch, rt_amx_packed_bytes(q->g->m, q->g->k)),
                          mul(q, LLVMBuildSDiv(e->b, r, i64c(q, 16), ""), group));
    LLVMValueRef a = LLVMBuildGEP2(e->b, LLVMInt8TypeInContext(e->c), q->rpack, &at, 1, "");
    LLVMValueRef part = LLVMBuildSub(e->b, LLVMBuildSDiv(e->b, r, i64c(q, 32), ""), n->t0, "");
    LLVMValueRef args[11] = {amx_tilebuf(q, r),
                             a,
                             n->cur,
                             i64c(q, q->g->k),
                             n->nxt,
                             n->src,
                             n->cols,
                             i64c(q, q->vv),
                             i64c(q, q->vk),
                             part,
                             n->parts};
    LLVMBuildCall2(e->b, fty, f, args, 11, "");
}

/* Row r's tile into its tilebuf (r < end), then the epilogue of the tile
 * before (r > first) from the other: that tile's products have landed, so
 * the epilogue runs on the vector units while the tile unit still works
 * through this one's last products. (Each epilogue right after its own
 * tile waited for all of them.) */
static void amx_tile_pair(gemm_emit *q, LLVMValueRef r, LLVMValueRef *vals, void *ctx) {
    const amx_next *n = ctx;
    LLVMBuilderRef b = q->e->b;
    LLVMBasicBlockRef tile_bb = block(q, "amx.tile"), epi = block(q, "amx.epi"), epi_bb = block(q, "amx.epi.do"),
                      done = block(q, "amx.pair.end");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, r, n->end, ""), tile_bb, epi);
    LLVMPositionBuilderAtEnd(b, tile_bb);
    amx_tile_step(q, r, vals, ctx);
    LLVMBuildBr(b, epi);
    LLVMPositionBuilderAtEnd(b, epi);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSGT, r, n->first, ""), epi_bb, done);
    LLVMPositionBuilderAtEnd(b, epi_bb);
    tile t = {.r = LLVMBuildSub(b, r, i64c(q, 32), "")};
    q->tilebuf = amx_tilebuf(q, t.r);
    finish_rows(q, &t);
    q->tilebuf = q->tilebufs[0]; /* the select lives in this block only */
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
}

/* i1: this thread's next units are the next panel's (same batch). */
static LLVMValueRef amx_next_here(gemm_emit *q) {
    LLVMBuilderRef b = q->e->b;
    return LLVMBuildAnd(b, q->more, LLVMBuildICmp(b, LLVMIntSLT, q->pnl, i64c(q, q->g->panels - 1), ""), "");
}

/* The current panel's 32 columns split and packed into one of two stack
 * buffers (np->cur): by the segment before when it was this thread's, else
 * here. When this thread's next units are the next panel's (same batch),
 * np->src is its source, which the tile calls pack into the other buffer
 * (np->nxt) between their tile products, a share each (rt_amx_tile_next);
 * the buffers swap. */
static void amx_pack_panel(gemm_emit *q, amx_next *np) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    const cg_gemm *g = q->g;
    LLVMValueRef seg = add(q, mul(q, q->batch, g->panels), q->pnl);
    LLVMValueRef buf0 = LLVMBuildLoad2(b, e->ptr, q->cur, ""), buf1 = LLVMBuildLoad2(b, e->ptr, q->nxt, "");
    LLVMValueRef ready = LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildLoad2(b, e->i64, q->ready, ""), seg, "");
    np->cur = LLVMBuildSelect(b, ready, buf1, buf0, ""), np->nxt = LLVMBuildSelect(b, ready, buf0, buf1, "");
    LLVMBuildStore(b, np->cur, q->cur);
    LLVMBuildStore(b, np->nxt, q->nxt);
    LLVMValueRef src = cg_elem_ptr(e, q->base[q->V], mul(q, q->v0, q->vv));
    LLVMBasicBlockRef pack = block(q, "amx.pack"), packed = block(q, "amx.packed");
    LLVMBuildCondBr(b, ready, packed, pack);
    LLVMPositionBuilderAtEnd(b, pack);
    LLVMTypeRef params[6] = {e->ptr, e->ptr, e->i64, e->i64, e->i64, e->i64}, fty;
    LLVMValueRef f = cg_declare(e, "rt_amx_pack_cols", LLVMVoidTypeInContext(e->c), params, 6, &fty);
    LLVMValueRef args[6] = {np->cur, src, panel_lanes(q), i64c(q, g->k), i64c(q, q->vv), i64c(q, q->vk)};
    LLVMBuildCall2(b, fty, f, args, 6, "");
    LLVMBuildBr(b, packed);
    LLVMPositionBuilderAtEnd(b, packed);
    LLVMValueRef has = amx_next_here(q);
    np->src = LLVMBuildSelect(b, has, cg_elem_ptr(e, src, i64c(q, q->Vb * q->vv)), LLVMConstNull(e->ptr), "");
    np->cols = smin(q, LLVMBuildSub(b, i64c(q, q->NV - q->Vb), q->v0, ""), i64c(q, q->Vb));
    LLVMBuildStore(b, LLVMBuildSelect(b, has, add(q, seg, i64c(q, 1)), i64c(q, -1), ""), q->ready);
}

/* Tiles [t0, t1) of the current panel on AMX: its panel from B packed once
 * (a constant), else packed as amx_pack_panel says. */
static void amx_block(gemm_emit *q, LLVMValueRef t0, LLVMValueRef t1) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    const cg_gemm *g = q->g;
    amx_next n = {.t0 = t0, .parts = LLVMBuildSub(b, t1, t0, "")};
    if (!g->bconst) {
        amx_pack_panel(q, &n);
    } else { /* B packed once (bpack) or, until it is, packed here as for any B */
        LLVMBasicBlockRef kept = block(q, "amx.kept"), per_call = block(q, "amx.percall"), join = block(q, "amx.panel");
        LLVMBuildCondBr(b, LLVMBuildIsNull(b, q->bpack, ""), per_call, kept);
        /* the panel is in the block: nothing to pack; the tile calls prefetch
         * the next one into the L2 when this thread goes on to it */
        LLVMPositionBuilderAtEnd(b, kept);
        LLVMTypeRef i8 = LLVMInt8TypeInContext(e->c);
        LLVMValueRef at = mul(q, q->pnl, rt_amx_packed_bytes(32, g->k)), step = i64c(q, rt_amx_packed_bytes(32, g->k));
        amx_next k = n;
        k.cur = LLVMBuildGEP2(b, i8, q->bpack, &at, 1, "");
        k.nxt = LLVMBuildSelect(b, amx_next_here(q), LLVMBuildGEP2(b, i8, k.cur, &step, 1, ""), LLVMConstNull(e->ptr), "");
        k.src = LLVMConstNull(e->ptr), k.cols = i64c(q, 0);
        LLVMBasicBlockRef kept_end = LLVMGetInsertBlock(b);
        LLVMBuildBr(b, join);
        LLVMPositionBuilderAtEnd(b, per_call);
        amx_pack_panel(q, &n);
        LLVMBasicBlockRef per_call_end = LLVMGetInsertBlock(b);
        LLVMBuildBr(b, join);
        LLVMPositionBuilderAtEnd(b, join);
        LLVMValueRef *fields[4] = {&n.cur, &n.nxt, &n.src, &n.cols}, from[4] = {k.cur, k.nxt, k.src, k.cols};
        for (int i = 0; i < 4; i++) {
            LLVMValueRef phi = LLVMBuildPhi(b, LLVMTypeOf(from[i]), "");
            LLVMValueRef vals[2] = {from[i], *fields[i]};
            LLVMBasicBlockRef bbs[2] = {kept_end, per_call_end};
            LLVMAddIncoming(phi, vals, bbs, 2);
            *fields[i] = phi;
        }
    }
    n.first = mul(q, t0, 32), n.end = smin(q, mul(q, t1, 32), i64c(q, q->NR));
    loop(q, n.first, add(q, n.end, i64c(q, 32)), 32, NULL, 0, amx_tile_pair, &n);
}

typedef struct span {
    LLVMValueRef s0, s1;               /* tiles */
} span;

static void kblock_step(gemm_emit *q, LLVMValueRef kb, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    span *sp = ctx;
    LLVMBuilderRef b = q->e->b;
    q->kb = kb;
    LLVMValueRef left = LLVMBuildSub(b, i64c(q, q->g->k), kb, "");
    q->kn = smin(q, left, i64c(q, q->g->kc));
    q->first = LLVMBuildICmp(b, LLVMIntEQ, kb, i64c(q, 0), "");
    q->last = LLVMBuildICmp(b, LLVMIntSLE, left, i64c(q, q->g->kc), "");
    block_body(q, sp->s0, sp->s1);
}

/* Tiles [s0, s1) (at most g->subtiles) over every k block. */
static void sub_step(gemm_emit *q, LLVMValueRef s0, LLVMValueRef *vals, void *ctx) {
    (void)vals;
    LLVMValueRef t1 = *(LLVMValueRef *)ctx, e = add(q, s0, i64c(q, q->g->subtiles));
    span sp = {s0, smin(q, e, t1)};
    q->r0 = mul(q, s0, q->g->mr);
    loop(q, i64c(q, 0), i64c(q, q->g->k), q->g->kc, NULL, 0, kblock_step, &sp);
}

/* Tiles [t0, t1) of one panel of nv vectors (mask: the last vector's lanes, or NULL). */
static void panel(gemm_emit *q, int nv, LLVMValueRef mask, LLVMValueRef t0, LLVMValueRef t1) {
    q->nv = q->kv = nv, q->mask = mask;
    q->trow = q->g->amx ? 32 : (int64_t)nv * q->e->w;
    if (q->g->amx) {
        amx_block(q, t0, t1);
        return;
    }
    if (q->g->kc >= q->g->k) { /* one k block: no partial sums, the whole span at once */
        q->kb = i64c(q, 0), q->kn = i64c(q, q->g->k), q->r0 = mul(q, t0, q->g->mr);
        q->first = q->last = LLVMConstInt(LLVMInt1TypeInContext(q->e->c), 1, 0);
        block_body(q, t0, t1);
    } else {
        loop(q, t0, t1, q->g->subtiles, NULL, 0, sub_step, &t1);
    }
}

void cg_gemm_batch_offsets(cg_emitter *e, const cg_loopnest *ln, LLVMValueRef bi, LLVMValueRef *off) {
    LLVMBuilderRef b = e->b;
    for (int a = 0; a < ln->naccess; a++) off[a] = cg_i64c(e, ln->acc[a].offset);
    for (int d = ln->gemm.nbatch - 1; d >= 0; d--) {
        LLVMValueRef idx = d > 0 ? LLVMBuildURem(b, bi, cg_i64c(e, ln->shape[d]), "") : bi;
        if (d > 0) bi = LLVMBuildUDiv(b, bi, cg_i64c(e, ln->shape[d]), "");
        for (int a = 0; a < ln->naccess; a++)
            if (ln->acc[a].strides[d])
                off[a] = LLVMBuildAdd(b, off[a], LLVMBuildMul(b, idx, cg_i64c(e, ln->acc[a].strides[d]), ""), "");
    }
}

/* One segment: row tiles [t0, t1) of panel pnl of batch bi. */
static void segment(gemm_emit *q, LLVMValueRef bi, LLVMValueRef pnl, LLVMValueRef t0, LLVMValueRef t1) {
    cg_emitter *e = q->e;
    LLVMBuilderRef b = e->b;
    const cg_gemm *g = q->g;
    const cg_loopnest *ln = q->ln;
    LLVMValueRef off[CG_MAX_ACCESS];
    q->batch = bi, q->pnl = pnl;
    cg_gemm_batch_offsets(e, ln, bi, off);
    LLVMValueRef ptrs = LLVMGetParam(q->s->fn, 0);
    for (int a = 0; a < ln->naccess; a++) {
        LLVMValueRef slot = LLVMBuildGEP2(b, e->ptr, ptrs, (LLVMValueRef[]){i64c(q, a)}, 1, "");
        q->base[a] = cg_elem_ptr(e, LLVMBuildLoad2(b, e->ptr, slot, ""), off[a]);
    }
    q->v0 = mul(q, pnl, q->Vb);
    int64_t lastv = q->NV - (g->panels - 1) * q->Vb; /* lanes of the last panel */
    if (lastv == q->Vb) {
        panel(q, g->nvec, NULL, t0, t1);
        return;
    }
    int nv = (int)((lastv + e->w - 1) / e->w);
    LLVMValueRef lanes[16];
    for (int k = 0; k < e->w; k++)
        lanes[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), (int64_t)(nv - 1) * e->w + k < lastv, 0);
    LLVMValueRef mask = lastv % e->w ? LLVMConstVector(lanes, (unsigned)e->w) : NULL;
    if (g->panels == 1) {
        panel(q, nv, mask, t0, t1);
        return;
    }
    LLVMBasicBlockRef full = block(q, "panel"), part = block(q, "panel.last"), join = block(q, "panel.end");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, pnl, i64c(q, g->panels - 1), ""), part, full);
    LLVMPositionBuilderAtEnd(b, full);
    panel(q, g->nvec, NULL, t0, t1);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, part);
    panel(q, nv, mask, t0, t1);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, join);
}

/* Units [lo, hi) (unit = (batch * panels + panel) * rtiles + tile), segment by
 * segment: a piece of the range packs each panel it touches once. */
static void emit_units(gemm_emit *q, LLVMValueRef lo, LLVMValueRef hi) {
    LLVMBuilderRef b = q->e->b;
    int64_t rt = q->g->rtiles;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b), head = block(q, "seg"), done = block(q, "done");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, lo, hi, ""), head, done);
    LLVMPositionBuilderAtEnd(b, head);
    LLVMValueRef u = LLVMBuildPhi(b, q->e->i64, "u");
    LLVMValueRef seg = LLVMBuildUDiv(b, u, i64c(q, rt), ""), t0 = LLVMBuildURem(b, u, i64c(q, rt), "");
    LLVMValueRef send = mul(q, add(q, seg, i64c(q, 1)), rt);
    LLVMValueRef uend = smin(q, hi, send);
    LLVMValueRef t1 = LLVMBuildSub(b, uend, mul(q, seg, rt), "");
    LLVMValueRef more = q->more = LLVMBuildICmp(b, LLVMIntSLT, uend, hi, "");
    segment(q, LLVMBuildUDiv(b, seg, i64c(q, q->g->panels), ""), LLVMBuildURem(b, seg, i64c(q, q->g->panels), ""),
            t0, t1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    LLVMBuildCondBr(b, more, head, done);
    LLVMValueRef in[2] = {lo, uend};
    LLVMBasicBlockRef from[2] = {pre, latch};
    LLVMAddIncoming(u, in, from, 2);
    LLVMPositionBuilderAtEnd(b, done);
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
    /* Its frame is up to ~400 KiB: probe it page by page, so a thread whose
     * stack is too small faults on the guard page instead of jumping past it. */
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                               LLVMCreateStringAttribute(e->c, "probe-stack", 11, "inline-asm", 10));
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(e->c, fn, "entry"));
    if (g->pack) q.pk = q.pkbuf = stack_buffer(&q, (g->kc + 15) / 16 * 16 * q.Vb);
    if (g->bconst) { /* B packed once (program.c), or NULL until it is */
        LLVMValueRef at = LLVMBuildGEP2(b, e->ptr, LLVMGetParam(fn, 0), (LLVMValueRef[]){i64c(&q, ln->naccess + 3)}, 1, "");
        q.bpack = LLVMBuildLoad2(b, e->ptr, at, "bpack");
    }
    if (g->amx) { /* two panels of 32 columns as bf16 pieces; the rows packed by program.c */
        q.cur = LLVMBuildAlloca(b, e->ptr, "amx.cur"), q.nxt = LLVMBuildAlloca(b, e->ptr, "amx.nxt");
        q.ready = LLVMBuildAlloca(b, e->i64, "amx.ready");
        LLVMBuildStore(b, stack_buffer(&q, rt_amx_packed_bytes(32, g->k) / 4), q.cur);
        LLVMBuildStore(b, stack_buffer(&q, rt_amx_packed_bytes(32, g->k) / 4), q.nxt);
        LLVMBuildStore(b, i64c(&q, -1), q.ready);
        LLVMValueRef slot = LLVMBuildGEP2(b, e->ptr, LLVMGetParam(fn, 0), (LLVMValueRef[]){i64c(&q, ln->naccess)}, 1, "");
        q.rpack = LLVMBuildLoad2(b, e->ptr, slot, "rpack");
    }
    if (g->kc < g->k) q.cbuf = stack_buffer(&q, g->subtiles * g->mr * q.Vb);
    q.tilebuf = stack_buffer(&q, (int64_t)g->mr * q.Vb);
    if (g->amx) q.tilebufs[0] = q.tilebuf, q.tilebufs[1] = stack_buffer(&q, (int64_t)g->mr * q.Vb);
    if (g->stage) { /* a C^T tile's column would scatter over as many lines as it has lanes */
        int n = 0;
        for (int a = ln->nops; a < ln->naccess; a++)
            if (ln->acc[a].store) q.slot[a] = n++;
        q.stage = stack_buffer(&q, (int64_t)n * g->mr * q.Vb);
    }
    emit_units(&q, lo, hi);
    if (g->amx) { /* the tile state back to the kernel */
        LLVMTypeRef fty;
        LLVMValueRef f = cg_declare(e, "rt_amx_release", LLVMVoidTypeInContext(e->c), NULL, 0, &fty);
        LLVMBuildCall2(b, fty, f, NULL, 0, "");
    }
    LLVMBuildRetVoid(b);
}
