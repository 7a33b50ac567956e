/*
 * gemm.c — a contraction kernel as one generated GEMM: geometry and choice.
 *
 * A contraction kernel is a matmul or linear with the elementwise members the
 * fusion attached after it (bias, activation, residual add, scale). Lowered
 * here, it becomes one GEMM nest that gemm_emit.c turns into a register-
 * blocked kernel whose epilogue is applied to the tile in registers, before
 * the one store: the product never goes to memory unless something else
 * reads it.
 *
 * Everything is static: the shapes and the strides of both operands (views
 * included: a transposed or sliced operand is only another stride) are known
 * at compile time, so the tile, the blocking and the tasks are chosen here.
 *
 * Orientation. The kernel multiplies a broadcast scalar of one operand (R,
 * any strides) by a vector of the other (V) whose lanes must be contiguous:
 * lanes along n (R = A, V = B: nothing to pack when B's rows are contiguous,
 * as in x @ w or attention's P @ V), or along m on C^T (R = B^T, V = A^T:
 * nothing to pack when A is transposed). Otherwise V is packed per panel into
 * a stack buffer, and so is a contiguous V whose panel is large (plan says
 * why); a V that is a constant B (a weight) is packed whole once and kept
 * (keep_packed).
 *
 * Tile: mr rows of R by nvec vectors of V, mr * nvec <= 24 accumulators of
 * the 32 AVX-512 registers (12 of 16 with AVX2). A packed panel holds up to
 * a quarter of the L2 (at most 256 KiB) of k; past that k is blocked and
 * partial sums go through a stack buffer of at most 512 rows. The function's
 * range is the row tiles of every (batch, panel); the program cuts it into
 * several pieces a thread, of whole panels where there are enough of them
 * (program.c's gemm_grain), and a piece packs each panel it touches once. A
 * product under 2^18 multiply-adds runs on the calling thread.
 *
 * Orientation is chosen by an estimate in cycles: the multiply-adds over the
 * lanes each orientation uses, the packing (0.2 cycles an element for a
 * k-contiguous operand, by rt_pack_panel's transposes; 1 by gathers), and the
 * scattered stores of C^T tiles (2 an element). x w^T on 64 rows packs x and
 * stores C^T; on 128 rows or more it packs w; q k^T packs k.
 *
 * Choice against OpenBLAS: the generated kernel unless, on a product big
 * enough for BLAS's own kernels to matter, fewer than half of its lanes would
 * be used (V narrower than half a vector) or R is strided along k (both
 * operands k-major, as x^T @ w: plan says why); EMBER_GEMM=jit or =blas
 * forces either (tests use both). What was chosen and why is in the
 * `kernels` dump; `ember-bench --gemm` times each layout against OpenBLAS.
 *
 * Causal masks (causal_diag, causal_scores): where a constant mask makes row
 * i of the scores -inf from column i + c on, the scores skip the vectors of
 * each tile that it masks whole and p @ v stops each tile's products at its
 * last row's i + c.
 *
 * Before all of this, the AMX tile unit where the CPU has it (choose_amx):
 * f32 products as bf16 pieces (runtime/amx.c), tiles of 32 x 32, for
 * products with enough rows to repay splitting B each call. Such a product
 * also gets the FMA plan (ln->alt), and each piece of a call runs the kernel
 * its core has been timing faster (pick.c): the unit's speed on a shared
 * machine is not the cost model's to know.
 */
#include "codegen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* The contraction member of kernel K, or NULL when it is not exactly one
 * matmul/linear followed by elementwise members of its shape. */
static const ir_node *the_contraction(const pass_program *prog, const pass_kernel *K, cg_loopnest *ln) {
    const ir_node *x = NULL;
    for (int i = 0; i < K->nnodes; i++) {
        const ir_node *y = ir_graph_node(prog->graph, K->nodes[i]);
        if (ir_ops[y->op].kind == IR_KIND_CONTRACTION) {
            if (x) return cg_loopnest_refuse(ln, "two contractions in one kernel"), NULL;
            x = y;
        }
    }
    if (!x) return cg_loopnest_refuse(ln, "no contraction"), NULL;
    for (int i = 0; i < K->nnodes; i++) {
        const ir_node *y = ir_graph_node(prog->graph, K->nodes[i]);
        if (y->type.dtype != EM_F32) return cg_loopnest_refuse(ln, "not f32 (the generated GEMM is f32)"), NULL;
        if (y == x) continue;
        const ir_node *b = pass_permuted_copy(y); /* stored through a permutation of b's indices */
        if (!cg_op_emittable(y->op) || !ir_type_same_shape(b ? &b->type : &y->type, &x->type))
            return cg_loopnest_refuse(ln, "an epilogue member the GEMM's store cannot compute"), NULL;
    }
    for (int j = 0; j < x->nin; j++)
        if (x->in[j] && x->in[j]->type.dtype != EM_F32) return cg_loopnest_refuse(ln, "an operand is not f32"), NULL;
    return x;
}

/* Operand access: x's layout, batch dims aligned right against nb, the two
 * matrix dims given as (stride along m or 0, stride along n or 0). */
static bool operand(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln, const ir_node *x, int nb,
                    int xbatch, int64_t sm, int64_t sn) {
    em_tensor t;
    if (!cg_value_layout(prog, args, x, &t)) return cg_loopnest_refuse(ln, "an operand is a reshape that needs a copy");
    cg_access *a = &ln->acc[ln->naccess++];
    memset(a, 0, sizeof *a);
    a->home = prog->fusion->base_of[x->id], a->value = x->id, a->offset = t.offset;
    for (int d = 0; d < nb; d++) {
        int xd = d - (nb - xbatch);
        a->strides[d] = xd < 0 || (t.shape[xd] == 1 && ln->shape[d] != 1) ? 0 : t.strides[xd];
    }
    a->strides[nb] = sm, a->strides[nb + 1] = sn;
    return true;
}

/* Size-1 batch loops are dropped; the innermost batch loops fold into M when
 * every access walks them as one with M (x[B, T, K] w^T is one GEMM). */
static void fold_batch(cg_loopnest *ln, cg_gemm *g) {
    int nb = g->nbatch;
    for (int d = 0; d < nb;) {
        if (ln->shape[d] != 1) { d++; continue; }
        for (int e = d; e < ln->ndim - 1; e++) {
            ln->shape[e] = ln->shape[e + 1];
            for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[e] = ln->acc[a].strides[e + 1];
        }
        ln->ndim--, nb--;
    }
    while (nb > 0) {
        int d = nb - 1;
        bool fold = true;
        for (int a = 0; a < ln->naccess && fold; a++)
            fold = ln->acc[a].strides[d] == ln->acc[a].strides[nb] * ln->shape[nb];
        if (!fold) break;
        ln->shape[nb] *= ln->shape[d];
        for (int e = d; e < ln->ndim - 1; e++) {
            ln->shape[e] = ln->shape[e + 1];
            for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[e] = ln->acc[a].strides[e + 1];
        }
        ln->ndim--, nb--;
    }
    g->nbatch = nb, g->m = ln->shape[nb];
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Bytes of packed panel per k block: a quarter of the L2 (the panel is read
 * once per tile, the rows of R stream past it), within [32 KiB, 256 KiB]
 * (it is on the stack); a 2 MiB L2 is assumed when the system does not say.
 * It was an eighth, which is the same 256 KiB on a 2 MiB L2, but on a core
 * with 1 MiB (a Zen 5 EPYC) it blocked mlp's fc1 (64 x 1024 x 4096, tiles of
 * C^T over 64-lane panels of x^T) at k = 512: every sweep of tiles packed its
 * block of x again and went through the partial sums, while the rows of the
 * weight, which no other tile reads, streamed from memory. Whole (and fc2,
 * k = 4096, in blocks of 1024 rather than 512), mlp took 0.90-1.01x the time
 * on one thread (medians 5.6 against 5.9 ms) and 0.82-0.99x on two (2.97
 * against 3.24), in four rounds alternating the two builds; block's fc2
 * (k = 1024) 0.95-1.0x; the bench's other products have k <= 512. */
static int64_t panel_budget(void) {
    int64_t b = cg_l2_bytes() / 4;
    return b < (32 << 10) ? 32 << 10 : b > (256 << 10) ? 256 << 10 : b;
}

/* The AMX tile unit (runtime/amx.c), where it may run and pays: a product
 * (per batch) whose k (rounded up to 32) fits two panels of 32 columns on the
 * stack (this one and the next, packed meanwhile: 2 x 192 KiB at k = 1024),
 * with a slot left for the packed rows. Cost in
 * cycles, calibrated on this machine: 64 multiply-adds a cycle on whole tiles
 * (32 x 32 x 32 each; they ran at 290-400 GFLOP/s), a cycle an element to split
 * and pack B (once, as its panels come: 0.35-0.45 ns an element through the
 * transposes a linear's weight needs) and 0.6 for A, against 27 a cycle for the
 * FMA kernel (about 85% of its peak); calibrated before B's packing ran
 * between the tile products, which now hides part of it. In one process, alternating: x w^T at
 * 128 x 256 x 768, 128 x 1024 x 256 and 128 x 256 x 1024 took 0.80, 0.79 and
 * 0.84 of the FMA kernel's time on one thread; 64 x 1024 x 4096 would gain
 * nothing (each element of w packed serves only 64 rows), so mlp keeps FMAs.
 * Packed A must also fit half the L2, and operands with no contiguous side
 * cost more to split. EMBER_GEMM=amx (or =both) takes the unit wherever it
 * may run, EMBER_GEMM=fma never. */
static bool choose_amx(const cg_loopnest *ln, const cg_gemm *g, int width, const char *force) {
    if (force && !strcmp(force, "fma")) return false;
    if (width != 16 || g->k < 1 || ceil_div(g->k, 32) * 32 > 1024) return false;
    if (ln->naccess >= CG_MAX_ACCESS || !rt_amx_usable()) return false;
    if (force && (!strcmp(force, "amx") || !strcmp(force, "both"))) return true;
    /* batched products run on the unit (EMBER_GEMM=amx), but attention's
     * per-head ones (8 x 256 x 64 x 256 and 8 x 256 x 256 x 64) took 1.17x the
     * FMA kernel's time there, and 1.07-1.09x with only p @ v on the unit (in
     * one process, alternating): splitting p, 256 x 256 a head, and short
     * tiles cost more than the unit gains */
    if (g->nbatch) return false;
    /* every panel sweeps all of packed A: past half the L2 it comes from
     * further out each time (1024 x 1024 x 1024: 0.67x OpenBLAS against 1.09x
     * on FMAs; 2048 x 128 x 2048: 0.66x) */
    if (rt_amx_packed_bytes(g->m, g->k) > cg_l2_bytes() / 2) return false;
    double M = (double)(ceil_div(g->m, 32) * 32), N = (double)(ceil_div(g->n, 32) * 32);
    double K = (double)(ceil_div(g->k, 32) * 32);
    /* strided operands are split element by element (about 4 cycles each) */
    int64_t sbn = ln->acc[1].strides[g->nbatch + 1];
    double pack_a = g->ak == 1 ? 0.6 : 4.0, pack_b = g->bk == 1 || sbn == 1 ? 1.0 : 4.0;
    double fma = (double)g->m * (double)g->n * (double)g->k / 27.0;
    double amx = M * N * K / 64.0 + pack_b * N * K + pack_a * M * K;
    return amx < 0.8 * fma;
}

static bool plan_fma(cg_loopnest *ln, cg_gemm *g, int width, double macs, const char *force, bool keep_b);

/* Orientation, tile, blocking and tasks (the file's opening comment). False
 * when OpenBLAS is the better choice. */
static bool plan(cg_loopnest *ln, cg_gemm *g, int width, bool keep_b) {
    int nb = g->nbatch;
    int64_t sam = ln->acc[0].strides[nb], sbn = ln->acc[1].strides[nb + 1];
    g->batches = 1;
    for (int d = 0; d < nb; d++) g->batches *= ln->shape[d];
    double M = (double)g->m, N = (double)g->n, Kd = (double)g->k, macs = (double)g->batches * M * N * Kd;
    /* Orientation by cost in cycles per batch: the multiply-adds over the lanes
     * used, packing (~1 cycle an element by gathers, ~0.2 by rt_pack_panel's
     * transposes when k is contiguous) and, for C^T tiles, the scattered
     * stores (~2 cycles an element). Calibrated on this machine: x w^T at
     * 128 x 1024 x 256 runs 11% faster with lanes along n, at 64 x 1024 x 4096
     * 6% faster along m. */
    double lanes_m = M / (double)(ceil_div(g->m, width) * width), lanes_n = N / (double)(ceil_div(g->n, width) * width);
    double pack_a = g->ak == 1 && width == 16 ? 0.2 : 1.0, pack_b = g->bk == 1 && width == 16 ? 0.2 : 1.0;
    double cost_m = M * N * Kd / (2.0 * width) / lanes_m + (sam == 1 ? 0 : pack_a * M * Kd) + 2 * M * N;
    double cost_n = M * N * Kd / (2.0 * width) / lanes_n + (sbn == 1 ? 0 : pack_b * Kd * N);
    g->vec_m = cost_m < cost_n;
    g->pack = g->vec_m ? sam != 1 : sbn != 1;
    const char *force = getenv("EMBER_GEMM");
    if (force && !strcmp(force, "blas")) return cg_loopnest_refuse(ln, "EMBER_GEMM=blas");
    if (!choose_amx(ln, g, width, force)) return plan_fma(ln, g, width, macs, force, keep_b);
    /* on the unit, with the FMA kernel beside it unless EMBER_GEMM=amx: each
     * piece of a call runs one, picked by its core's times (pick.c says why).
     * The pieces are groups of 64 columns, so the FMA kernel must have lanes
     * along n in panels of 64 (it does where the unit pays: M of 128 or more,
     * N of 64 or more); else the unit's kernel runs alone. EMBER_GEMM=both
     * (tests) takes the unit and FMAs wherever the unit may run, and the
     * pieces alternate between them (exec.c). */
    bool only = force && !strcmp(force, "amx");
    if (!only) {
        ln->alt = *g;
        ln->has_alt = plan_fma(ln, &ln->alt, width, macs, force, false) && !ln->alt.vec_m &&
                      ln->alt.nvec * width == 64 && ln->alt.batches == 1;
        ln->why[0] = 0;
    }
    g->amx = true, g->vec_m = false, g->pack = false, g->stage = false, g->bconst = keep_b;
    g->mr = 32, g->nvec = 32 / width, g->kc = g->k;
    g->panels = ceil_div(g->n, 32), g->rtiles = ceil_div(g->m, 32), g->subtiles = g->rtiles;
    g->units = g->batches * g->panels * g->rtiles;
    g->serial = macs < (double)(1 << 18);
    const char *forced = only ? " (EMBER_GEMM=amx)" : force && !strcmp(force, "both") ? " (EMBER_GEMM=both)" : "";
    snprintf(g->how, sizeof g->how,
             "generated GEMM on AMX tiles%s: f32 as three bf16 pieces, six tile products; tiles 32 x 32, "
             "A packed once a call, %s, %lld tiles %s",
             forced, keep_b ? "B (a constant) packed once and kept" : "B per panel of 32 columns", (long long)g->units,
             g->serial ? "on the calling thread" : "split over the threads");
    return true;
}

/* The FMA kernel's tile, blocking and tasks for the orientation plan chose
 * (keep_b: B may be kept packed, keep_packed). False when OpenBLAS is the
 * better choice. */
/* Rows of V a tile's k loop prefetches ahead (gemm_emit.c's k_step), or 0.
 * Each tile reads its panel of V (kc rows of Vb floats, packed or in place)
 * once, and the rows of R's tiles stream past it. A panel past half the L1
 * lives in the L2, and the L1's own prefetchers left the k loop waiting on it:
 * a 6 x 64 tile over a 64 KiB panel ran at 0.79-0.88 of the FMA peak against
 * 0.90-0.96 for a panel in the L1 (a C harness with the same loop, on an
 * Emerald Rapids Xeon). Prefetching each row CG_PREFETCH_BYTES ahead into the
 * L1, one prefetch a line, made x w^T at block's shapes take 0.95-0.96x the
 * time, mlp's 0.97x and attention's projections 0.95x (in one process,
 * alternating rounds with a build without); 4096 bytes ahead was within noise
 * of 2048. Blocking k to fit the panel in the L1 instead gained about as much
 * (0.96-0.98x) and nothing on top of the prefetches. A panel within half the
 * L1 (attention's scores, k = 64) stays there, and a row broadcast along k
 * (stride 0) is one row: neither prefetches. EMBER_PREFETCH decides as for
 * the nests (lower.c): not on AMD's cores, where software prefetches cost the
 * streaming nests time (for GEMMs there it is unmeasured). */
static int64_t prefetch_rows(const cg_gemm *g, int64_t Vb, int64_t vk) {
    if (!cg_prefetching() || (!g->pack && vk == 0) || g->kc * Vb * 4 <= cg_l1_bytes() / 2) return 0;
    return ceil_div(CG_PREFETCH_BYTES, Vb * 4);
}

static bool plan_fma(cg_loopnest *ln, cg_gemm *g, int width, double macs, const char *force, bool keep_b) {
    bool jit = force && (!strcmp(force, "jit") || !strcmp(force, "fma") || !strcmp(force, "amx") || !strcmp(force, "both"));
    int64_t V = g->vec_m ? g->m : g->n, R = g->vec_m ? g->n : g->m;
    if (!jit && 2 * V < width && macs >= (double)(1 << 20)) {
        snprintf(ln->why, sizeof ln->why, "cost model: %lld of %d lanes would be used, on %.0f multiply-adds",
                 (long long)V, width, macs);
        return false;
    }
    /* R's scalars are read in place, a row's k at a time: when R is strided
     * along k (both operands k-major, as x^T @ w), every k step of every tile
     * loads a new cache line, which the kernel's panel of V does not make up
     * for; OpenBLAS packs both operands and ran such products 1.1-2.4x faster
     * (ember-bench --gemm: x^T @ w at 1024^3 0.41x, 512^3 0.64x, 2048 x 128
     * x 2048 0.77x, 100 x 3000 x 100 0.89x). */
    int64_t rk = g->vec_m ? g->bk : g->ak;
    if (!jit && (rk >= 16 || rk <= -16) && macs >= (double)(1 << 20)) {
        snprintf(ln->why, sizeof ln->why,
                 "cost model: %s's rows are strided along k (%lld floats), on %.0f multiply-adds",
                 g->vec_m ? "B^T" : "A", (long long)rk, macs);
        return false;
    }
    int regs = width >= 16 ? 24 : 12, maxv = width >= 16 ? 4 : 2;
    g->nvec = (int)(ceil_div(V, width) < maxv ? ceil_div(V, width) : maxv);
    int mr = regs / g->nvec;
    if (mr > 12) mr = 12;
    g->mr = (int)(R < mr ? R : mr);
    int64_t Vb = (int64_t)g->nvec * width;
    g->panels = ceil_div(V, Vb);
    g->kc = g->k ? g->k : 1;
    int64_t budget = panel_budget();
    /* V with contiguous lanes is read in place while its panel is small; from
     * half the budget up it is copied into the panel too. Every tile sweeps
     * the whole panel, and in place its k rows lie a row stride apart (4 KiB
     * for a 1024-wide x @ w), which costs cache sets, TLB entries and the
     * prefetcher's streams: 1024^3 ran at 29% of the FMA peak read in place
     * against 73% packed, 256 x 2048 x 256 at 35% against 75%, while at
     * K = 128 in place is faster (89% against 76%). */
    if (!g->pack && (double)g->kc * (double)Vb * 4 >= (double)budget / 2) g->pack = true;
    /* and so is one whose rows are a multiple of 4 KiB apart: they all fall in
     * the same L1 sets (x @ w, 2048 x 128 x 2048: 0.85x OpenBLAS in place); a
     * row broadcast along k (stride 0) stays in place */
    int64_t vk = g->vec_m ? g->ak : g->bk;
    if (!g->pack && vk != 0 && vk % 1024 == 0 && g->kc > 8) g->pack = true;
    if (g->pack && g->kc * Vb * 4 > budget) g->kc = budget / (Vb * 4);
    g->rtiles = ceil_div(R, g->mr);
    g->pfd = prefetch_rows(g, Vb, vk);
    g->units = g->batches * g->panels * g->rtiles;
    /* k blocks sweep at most 512 rows (their partial sums stay on the stack) */
    g->subtiles = g->kc < g->k ? ceil_div(512, g->mr) : g->rtiles;
    g->serial = macs < (double)(1 << 18);
    g->stage = g->vec_m && g->mr <= width; /* gemm_emit.c: the tile's rows as lanes of one vector */
    g->bconst = keep_b && g->pack && !g->vec_m; /* V is B, and a constant */
    snprintf(g->how, sizeof g->how,
             "generated GEMM%s%s%s: lanes along %s, tile %d x %d vectors, %s, k blocks of %lld%s, %lld tiles %s",
             jit ? " (EMBER_GEMM=" : "", jit ? force : "", jit ? ")" : "", g->vec_m ? g->stage ? "m (tiles of C^T, staged)" : "m (tiles of C^T)" : "n",
             g->mr, g->nvec,
             g->bconst ? "B (a constant) packed once and kept" : g->pack ? "packed per panel" : "read in place",
             (long long)g->kc, g->pfd ? " (rows prefetched)" : "", (long long)g->units,
             g->serial ? "on the calling thread" : "split over the threads");
    return true;
}

/* Geometry of x (matmul or linear): nest loops [batch..., M, N] and the operand accesses. */
static bool geometry(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln, cg_gemm *g,
                     const ir_node *x, ir_type *space) {
    const ir_node *A = x->in[0], *B = x->in[1];
    const ir_type *at = &A->type, *bt = &B->type, *out = &x->type;
    bool a1 = at->ndim == 1;
    if (x->op == IR_OP_MATMUL && (bt->ndim == 1 || (a1 && bt->ndim > 2)))
        return cg_loopnest_refuse(ln, "a matrix-vector product (OpenBLAS's GEMV)");
    int nb = out->ndim - (a1 ? 1 : 2);
    if (nb + 2 > EM_MAX_DIMS) return cg_loopnest_refuse(ln, "too many dims");
    g->node = x->id, g->nbatch = nb;
    g->m = a1 ? 1 : at->shape[at->ndim - 2];
    g->k = at->shape[at->ndim - 1];
    g->n = x->op == IR_OP_LINEAR ? bt->shape[0] : bt->shape[bt->ndim - 1];
    memset(space, 0, sizeof *space);
    space->dtype = EM_F32, space->ndim = nb + 2;
    memcpy(space->shape, out->shape, (size_t)nb * sizeof(int64_t));
    space->shape[nb] = g->m, space->shape[nb + 1] = g->n;
    ln->ndim = space->ndim;
    memcpy(ln->shape, space->shape, sizeof ln->shape);
    for (int d = 0; d < space->ndim; d++) /* a batch of 0 too (it would fold into M = 0) */
        if (space->shape[d] == 0) return cg_loopnest_refuse(ln, "empty");
    em_tensor ta, tb;
    if (!cg_value_layout(prog, args, A, &ta) || !cg_value_layout(prog, args, B, &tb))
        return cg_loopnest_refuse(ln, "an operand is a reshape that needs a copy");
    g->ak = ta.strides[at->ndim - 1];
    if (!operand(prog, args, ln, A, nb, a1 ? 0 : at->ndim - 2, a1 ? 0 : ta.strides[at->ndim - 2], 0)) return false;
    if (x->op == IR_OP_LINEAR) {
        g->bk = tb.strides[1];
        if (!operand(prog, args, ln, B, nb, 0, 0, tb.strides[0])) return false;
    } else {
        g->bk = tb.strides[bt->ndim - 2];
        if (!operand(prog, args, ln, B, nb, bt->ndim - 2, 0, tb.strides[bt->ndim - 1])) return false;
    }
    ln->nops = 2;
    g->bias = -1;
    if (x->op == IR_OP_LINEAR && x->nin > 2 && x->in[2]) {
        if (cg_loopnest_add_access(prog, args, ln, space, x->in[2], false) != 0) return false;
        g->bias = ln->naccess - 1;
    }
    return true;
}

/* Whether the environment sets the switch `name` to 0. */
static bool switched_off(const char *name) {
    const char *env = getenv(name);
    return env && !strcmp(env, "0");
}

/* A GEMM whose B is a constant of the graph (a weight in a global) and the
 * same for every batch has it packed once, by the program's second call (the
 * first packs per panel), and kept with the program (exec.c's
 * cg_exec_packed), instead of panel by panel in every call. A constant
 * cannot change: ember's API has no way to write into a tensor that exists,
 * and the graph holds a reference. It applies on the AMX unit (B split into
 * bf16 pieces) and to the FMA kernel where it packs B (lanes along n, B's
 * lanes strided: every linear layer's weight).
 *  - AMX: splitting B was most of the unit's time besides its products: the
 *    GPT-2 block's 786,432 weights at ~0.4 ns each, about 0.3 ms of a 1.5 ms
 *    call, half of it left after overlapping the tile products. The pieces
 *    take 6 bytes a weight, 1.5x the f32 weights.
 *  - FMA: on a Zen 4 core (1 MiB L2), attention's qkv (256 x 512 x 1536)
 *    spent 0.3-0.4 ms of 4.1 packing its panels, although rt_pack_panel
 *    alone packs the 3 MiB weight in 0.12: between a panel's tiles, which
 *    keep the L2 busy with A and the panel, the next panel's rows come from
 *    the L3. A kept copy takes 4 bytes a weight (1x the f32 weights).
 * The cost is memory for as long as the compiled function lives
 * (em_stats.packed_bytes). EMBER_PACK_CONSTANTS=0 packs them per call as
 * before. Whether B may be kept; plan keeps it where it packs B. */
static bool keep_packed(const pass_program *prog, const cg_loopnest *ln, const cg_gemm *g) {
    if (switched_off("EMBER_PACK_CONSTANTS")) return false;
    const ir_node *home = ir_graph_node(prog->graph, ln->acc[1].home);
    if (!home || home->kind != IR_NODE_CONST) return false;
    for (int d = 0; d < g->nbatch; d++)
        if (ln->acc[1].strides[d] != 0) return false;
    return true;
}

/* The FMA kernel's kept B: panel p, row k at (p * rows + k) * Vb floats, rows =
 * k rounded up to 16 (rt_pack_panel stores whole blocks of 16 rows). */
static int64_t kept_rows(const cg_gemm *g) { return (g->k + 15) / 16 * 16; }

int64_t cg_gemm_kept_offset(const cg_loopnest *ln, int64_t panel) {
    const cg_gemm *g = &ln->gemm;
    return panel * kept_rows(g) * g->nvec * ln->width;
}

size_t cg_gemm_kept_bytes(const cg_loopnest *ln) {
    const cg_gemm *g = &ln->gemm;
    if (g->amx) return (size_t)rt_amx_packed_bytes(g->n, g->k);
    return (size_t)cg_gemm_kept_offset(ln, g->panels) * sizeof(float);
}

void cg_gemm_pack_kept(const cg_loopnest *ln, const float *home, void *dst) {
    const cg_gemm *g = &ln->gemm;
    const cg_access *b = &ln->acc[1];
    int64_t vv = b->strides[g->nbatch + 1], Vb = (int64_t)g->nvec * ln->width;
    if (g->amx) {
        rt_amx_pack_cols(dst, home + b->offset, g->n, g->k, vv, g->bk);
        return;
    }
    for (int64_t p = 0; p < g->panels; p++) {
        float *to = (float *)dst + cg_gemm_kept_offset(ln, p);
        const float *from = home + b->offset + p * Vb * vv;
        int64_t lanes = g->n - p * Vb < Vb ? g->n - p * Vb : Vb;
        if (g->bk == 1 && ln->width == 16) { /* as the kernel's pack_call: the transposes */
            rt_pack_panel(g->k, lanes, Vb, from, vv, to);
            continue;
        }
        for (int64_t k = 0; k < g->k; k++) /* the padding lanes stay 0 (rt_map's pages) */
            for (int64_t l = 0; l < lanes; l++) to[k * Vb + l] = from[l * vv + k * g->bk];
    }
}

/* c when the constant mask's rows (the last two dims [rows, cols], every
 * batch alike) are finite before column i + c and -inf from there on, for
 * one c >= 1 that masks something (c < cols); else 0. */
static int64_t mask_diag(const ir_node *mask, int64_t rows, int64_t cols) {
    const em_tensor *t = mask && mask->kind == IR_NODE_CONST && mask->type.dtype == EM_F32 ? mask->value : NULL;
    if (!t || t->ndim < 2 || t->shape[t->ndim - 2] != rows || t->shape[t->ndim - 1] != cols) return 0;
    for (int d = 0; d < t->ndim - 2; d++)
        if (t->shape[d] != 1) return 0;
    const float *v = (const float *)rt_tensor_data(t);
    int64_t si = t->strides[t->ndim - 2], sj = t->strides[t->ndim - 1], c = 0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t L = 0;
        while (L < cols && isfinite(v[i * si + L * sj])) L++;
        for (int64_t j = L; j < cols; j++)
            if (!(isinf(v[i * si + j * sj]) && v[i * si + j * sj] < 0)) return 0;
        if (i == 0) c = L;
        if (c < 1 || L != (i + c < cols ? i + c : cols)) return 0;
    }
    return c < cols ? c : 0;
}

/* y is the op `op` (an op node: leaves have no op and no inputs) */
static bool is_op(const ir_node *y, ir_op op) { return y && y->kind == IR_NODE_OP && y->op == op; }

/* Causal masks, found in the graph. A constant M (every batch alike) whose
 * row i is finite before column i + c and -inf from there on (mask_diag) is
 * what a causal attention adds to its scores. Two products can use it:
 *  - p @ v (kdiag): when A is softmax(X + M) over its last axis, row i of A
 *    is exactly 0 from column i + c on (exp(-inf - max), the row's max
 *    finite, which its first c columns make it for finite X), so each
 *    tile's products stop at its last row's i + c: about half of them;
 *  - the scores (cdiag): when the kernel is q @ k^T, times a constant scalar
 *    or not, plus M, and stores only that sum, a tile of C whose columns all
 *    lie at or past its last row's i + c is -inf whatever the product, so its
 *    products are skipped (the epilogue still adds M to 0).
 * Both hold for finite operands (DESIGN's well-conditioned inputs; a NaN or
 * inf in q, k or X would have spread where the mask now stops it). A constant
 * cannot change (keep_packed says why), so its values may shape the code;
 * kdiag and cdiag are in the program's key (key.c). Only with lanes along n
 * on FMAs, and where no batch folded into M's rows. EMBER_CAUSAL=0 turns both
 * off (cg_lower_gemm asks). */
static int64_t causal_diag(const ir_node *x, const cg_gemm *g) {
    const ir_node *a = x->in[0];
    if (!is_op(x, IR_OP_MATMUL) || !is_op(a, IR_OP_SOFTMAX) || a->type.ndim < 2 ||
        a->attrs.axis != a->type.ndim - 1)
        return 0;
    const ir_node *s = a->in[0];
    if (!is_op(s, IR_OP_ADD)) return 0;
    int64_t c = mask_diag(s->in[0], g->m, g->k);
    return c ? c : mask_diag(s->in[1], g->m, g->k);
}

/* A constant of one finite element (a scale). */
static bool finite_scalar(const ir_node *y) {
    const em_tensor *t = y->kind == IR_NODE_CONST && y->type.dtype == EM_F32 ? y->value : NULL;
    return t && t->numel == 1 && isfinite(*(const float *)rt_tensor_data(t));
}

static int64_t causal_scores(const pass_program *prog, const pass_kernel *K, const cg_loopnest *ln,
                             const ir_node *x, const cg_gemm *g) {
    if (!is_op(x, IR_OP_MATMUL) || K->nnodes < 2 || K->nnodes > 3) return 0;
    const ir_node *v = x, *sum = ir_graph_node(prog->graph, K->nodes[K->nnodes - 1]);
    if (K->nnodes == 3) { /* v = x * s or s * x */
        const ir_node *m = ir_graph_node(prog->graph, K->nodes[1]);
        if (!is_op(m, IR_OP_MUL) ||
            !((m->in[0] == x && finite_scalar(m->in[1])) || (m->in[1] == x && finite_scalar(m->in[0]))))
            return 0;
        v = m;
    }
    if (!is_op(sum, IR_OP_ADD) || (sum->in[0] != v && sum->in[1] != v)) return 0;
    for (int a = ln->nops; a < ln->naccess; a++)
        if (ln->acc[a].store && ln->acc[a].value != sum->id) return 0;
    return mask_diag(sum->in[0] == v ? sum->in[1] : sum->in[0], g->m, g->n);
}

/* Appends to g->how, for the dump (cut at its size). */
static void how_add(cg_gemm *g, const char *fmt, long long v) {
    size_t n = strlen(g->how);
    snprintf(g->how + n, sizeof g->how - n, fmt, v);
}

bool cg_lower_gemm(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                   const bool *stored, cg_loopnest *ln) {
    const pass_kernel *K = &prog->fusion->k[kernel];
    memset(ln, 0, sizeof *ln);
    ln->kernel = kernel;
    if (width == 0) return cg_loopnest_refuse(ln, "no vector ISA to generate for");
    if (K->nnodes > CG_MAX_NEST_NODES) return cg_loopnest_refuse(ln, "more nodes than a loop nest holds");
    const ir_node *x = the_contraction(prog, K, ln);
    if (!x) return false;
    cg_gemm *g = &ln->gemm;
    ir_type space;
    if (!geometry(prog, args, ln, g, x, &space)) return false;
    ln->nnodes = K->nnodes;
    memcpy(ln->nodes, K->nodes, (size_t)K->nnodes * sizeof *K->nodes);
    for (int i = 0; i < K->nnodes; i++) { /* the epilogue's operands */
        const ir_node *y = ir_graph_node(prog->graph, K->nodes[i]);
        if (y == x || cg_permuted_copy(prog, ln, y)) continue; /* a permuted copy reads nothing */
        for (int j = 0; j < y->nin; j++) {
            const ir_node *in = y->in[j];
            if (cg_loopnest_computes(prog, ln, in->id)) continue;
            if (prog->fusion->kernel_of[prog->fusion->base_of[in->id]] == kernel)
                return cg_loopnest_refuse(ln, "the epilogue reads a view of a value of its own kernel");
            if (in->type.dtype != EM_F32) return cg_loopnest_refuse(ln, "the epilogue reads a value that is not f32");
            if (cg_loopnest_load(ln, in->id) < 0 && cg_loopnest_add_access(prog, args, ln, &space, in, false) != 0)
                return false;
        }
    }
    for (int i = 0; i < K->nnodes; i++)
        if (stored[K->nodes[i]] &&
            cg_loopnest_add_access(prog, args, ln, &space, ir_graph_node(prog->graph, K->nodes[i]), true) != 0)
            return false;
    fold_batch(ln, g);
    if (!plan(ln, g, width, keep_packed(prog, ln, g))) return false;
    if (!g->amx && !g->vec_m && !switched_off("EMBER_CAUSAL")) { /* causal masks: causal_diag says which */
        g->kdiag = causal_diag(x, g), g->cdiag = causal_scores(prog, K, ln, x, g);
        if (g->kdiag) how_add(g, ", products of row i to k < i + %lld (A: a softmax of a causal mask)", g->kdiag);
        if (g->cdiag) how_add(g, ", no products in vectors at or past column i + %lld (a causal mask)", g->cdiag);
    }
    ln->width = width;
    ln->is_gemm = true;
    return ln->compiled = true;
}
