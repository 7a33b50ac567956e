/*
 * lower.c — kernels to loop nests: the kernel IR codegen emits from.
 *
 * A loop nest computes elementwise member nodes of a kernel at every point of
 * one iteration space (the shape of its values). Lowering decides, at compile
 * time, where each operand's element for a point lives:
 *
 *  - the home of a value is an argument (strides as traced: they are part of
 *    the guard, so they hold for every call that runs this code), a constant
 *    (its own strides), or an arena buffer / output (dense);
 *  - a view chain from the home to the value read (permute, slice, expand, a
 *    reshape that needs no copy) is applied to those strides with the same
 *    function eager views use (ir_view_layout), so a transpose or a slice is
 *    an index expression, never a copy;
 *  - numpy broadcasting of the value to the iteration space gives stride 0.
 *
 * Then loops are simplified: size-1 dims are dropped and adjacent dims merged
 * wherever every access steps through them as one (a contiguous [4096,1024]
 * elementwise op becomes one loop of 4M). The last loop is the inner loop,
 * vectorised at the host's width: contiguous operands are vector loads,
 * broadcast ones (stride 0) a splat per row, strided ones a gather.
 *
 * A pointwise nest whose stores add up to CG_STREAM_L2S (4) L2s or more
 * stores non-temporally (emit.c): its output cannot stay in this core's
 * caches anyway, and a normal store first reads each line it writes. Measured
 * on a 2 MiB-L2 Xeon, a kernel reading three arrays and writing a fourth,
 * followed by a pass that reads the output back: at 4 MiB out the two ways
 * break even (1.15 against 1.14 ms), at 8 MiB non-temporal takes 2.08 ms
 * against 2.5-2.6, at 32 MiB 11.1 against 13.2 (the reread costs more, the
 * store much less). Smaller outputs stay in the cache for whoever reads them.
 *
 * A vectorised nest (pointwise or row) whose rows move CG_STREAM_L2S L2s or
 * more also prefetches its contiguous loads CG_PREFETCH_BYTES (2048) ahead,
 * in each row's first pass (emit.c): one core's hardware prefetchers keep too
 * few lines in flight to hide the memory's latency behind arithmetic that
 * takes as long as the transfer. In one process, alternating rounds, on
 * [4096, 1024] floats: chain (three arrays read, one written) 4.90 -> 4.58 ms,
 * softmax 3.10 -> 2.72, layer_norm 1.66 -> 1.51 on one thread, 8-15% on
 * two; 2048, 3072 and 4096 bytes ahead were within noise of each other, 8192
 * slower, and into the L2 only (locality 2) gained half as much; prefetching
 * the stored lines for writing too made softmax and layer_norm 4-14% slower.
 * That was a Sapphire Rapids Xeon. On a Zen 4 EPYC (1 MiB L2) the same
 * prefetches cost time: in one process, alternating with a build that
 * prefetches nothing, softmax took 1.10x the time, layer_norm 1.30x, chain
 * 1.03x on one thread (0.99-1.14x on two), its own prefetchers keeping
 * enough lines in flight. So AMD's cores before Zen 5 do not prefetch in
 * software; a Zen 5 EPYC gains again (softmax 0.95x, layer_norm 0.91-0.95x:
 * cg_prefetching); EMBER_PREFETCH=1 or =0 says otherwise (the tests use it
 * to reach the prefetching code on any machine). Only loads that stream
 * count and are prefetched: a row read again for every row (a layer_norm's
 * weight and bias) stays in the L1, and had taken two of layer_norm's three
 * prefetches.
 *
 * Transposing nests: a pointwise nest that reads an operand gathered along
 * its inner loop but contiguous along its rows (a transposed argument, a
 * permute that moves the last axis) takes its rows in blocks of T, 16
 * columns at a time (tile_transposed), so that each line of that operand is
 * read for T / 16 rows while it is in a cache; in the order of rows, each
 * gather touched 16 lines that were gone by the next row's turn (rows 4 KiB
 * apart all fall in one L1 set). T grows up to 256 with R, which also keeps
 * the pages one block touches within the TLB's reach. The copy of a
 * transposed [n, n] took, on one thread of a Zen 5 EPYC, 3.7 ms in row
 * order and 0.60 blocked at n = 1024 (eager's tiled copy: 0.93), 0.12
 * against 0.18 for eager at n = 512, 3.0 against 6.3 at n = 2048; 16 columns
 * beat 32, 64 and 256 (0.73, 1.30, 2.2, 2.4 ms at n = 1024 and T = 16).
 * A transposed copy with nothing else in its nest is left to the runtime,
 * whose transpose works in registers (0.15 ms at n = 1024).
 *
 * Row nests do not stream their stores: storing a softmax's or a
 * layer_norm's output pass non-temporally (the softmax keeping its exps in a
 * row on the stack instead of in its output) made softmax 15% slower on
 * [4096, 1024] and layer_norm 5% slower on one thread, 3% faster on two.
 *
 * What is not lowered runs in the interpreter (codegen/exec.c), with the
 * reason kept for the `kernels` dump: non-f32 values, ops without an emitter,
 * a reshape that must copy, an empty space. Which members of a kernel form a
 * loop nest is schedule.c's decision.
 */
#include "codegen.h"

#include <cpuid.h>
#include <stdatomic.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CG_ROW_BLOCK = 16384 }; /* elements per row when one long loop is cut for threads */

/* Ops the emitter computes on f32 vectors. */
static bool emittable(ir_op op) {
    switch (op) {
    case IR_OP_ADD: case IR_OP_SUB: case IR_OP_MUL: case IR_OP_DIV: case IR_OP_POW:
    case IR_OP_MAXIMUM: case IR_OP_MINIMUM: case IR_OP_NEG: case IR_OP_ABS: case IR_OP_RELU:
    case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_RECIPROCAL:
    case IR_OP_SIN: case IR_OP_COS: case IR_OP_TANH: case IR_OP_ERF: case IR_OP_SIGMOID:
    case IR_OP_GELU: case IR_OP_GELU_TANH: case IR_OP_SILU: case IR_OP_CONTIGUOUS:
        return true;
    default:
        return false;
    }
}

int cg_host_width(void) {
    const char *f = cg_host_features();
    if (strstr(f, "+avx512f")) return 16;
    if (strstr(f, "+avx2") && strstr(f, "+fma")) return 8;
    return 0;
}

/* The layout of value x (a view chain over its home) as an em_tensor header
 * with strides and offset relative to the home's first element; false when a
 * view in the chain needs a copy. */
static bool layout_of(const pass_program *prog, em_tensor *const *args, const ir_node *x, em_tensor *t) {
    const ir_node *chain[64];
    int n = 0;
    while (x->kind == IR_NODE_OP && ir_ops[x->op].kind == IR_KIND_VIEW && n < 64) chain[n++] = x, x = x->in[0];
    if (n == 64) return false;
    memset(t, 0, sizeof *t);
    t->dtype = x->type.dtype, t->ndim = x->type.ndim;
    memcpy(t->shape, x->type.shape, sizeof t->shape);
    t->numel = 1;
    for (int d = 0; d < t->ndim; d++) t->numel *= t->shape[d];
    if (x->kind == IR_NODE_INPUT) memcpy(t->strides, args[x->arg]->strides, sizeof t->strides);
    else if (x->kind == IR_NODE_CONST) memcpy(t->strides, x->value->strides, sizeof t->strides);
    else rt_tensor_contig_strides(t->ndim, t->shape, t->strides);
    (void)prog;
    while (n-- > 0) {
        const ir_node *v = chain[n];
        int64_t st[EM_MAX_DIMS] = {0}, off;
        if (!ir_view_layout(v->op, t, &v->attrs, &v->type, st, &off)) return false;
        t->ndim = v->type.ndim;
        memcpy(t->shape, v->type.shape, sizeof t->shape);
        memcpy(t->strides, st, sizeof t->strides);
        t->offset = off;
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) t->numel *= t->shape[d];
    }
    return true;
}

static int add_access(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln,
                      const ir_type *space, const ir_node *x, bool store);

bool cg_loopnest_refuse(cg_loopnest *ln, const char *why) {
    ln->compiled = false;
    snprintf(ln->why, sizeof ln->why, "%s", why);
    return false;
}

/* Adds an access for value x (read) or node x (stored) broadcast to space;
 * with `reduced` (a reduction's result without its kept axis), x is first
 * broadcast to reduced, which then maps onto space with the last axis dropped. */
static int add_access_via(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln,
                          const ir_type *space, const ir_type *reduced, const ir_node *x, bool store) {
    if (!reduced) return add_access(prog, args, ln, space, x, store);
    if (add_access(prog, args, ln, reduced, x, store) != 0) return -1;
    ln->acc[ln->naccess - 1].strides[space->ndim - 1] = 0; /* reduced's dims are space's but the last */
    return 0;
}

static int add_access(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln,
                      const ir_type *space, const ir_node *x, bool store) {
    if (ln->naccess == CG_MAX_ACCESS) return cg_loopnest_refuse(ln, "more operands than a loop nest holds"), -1;
    em_tensor t;
    if (!layout_of(prog, args, x, &t)) return cg_loopnest_refuse(ln, "reads a reshape that needs a copy"), -1;
    cg_access *a = &ln->acc[ln->naccess++];
    memset(a, 0, sizeof *a);
    a->home = prog->fusion->base_of[x->id], a->value = x->id, a->store = store, a->offset = t.offset;
    int lead = space->ndim - t.ndim;
    if (store && cg_permuted_copy(prog, ln, x)) { /* x's dim i is the space's dim perm[i] */
        const ir_attrs *perm = &x->in[0]->attrs;
        for (int i = 0; i < t.ndim; i++) a->strides[lead + perm->dims[i]] = t.strides[i];
        return 0;
    }
    for (int d = 0; d < space->ndim; d++) {
        int xd = d - lead;
        a->strides[d] = xd < 0 || (t.shape[xd] == 1 && space->shape[d] != 1) ? 0 : t.strides[xd];
    }
    return 0;
}

/* Drops size-1 loops and merges loops every access walks as one. */
static void simplify(cg_loopnest *ln) {
    int nd = 0;
    for (int d = 0; d < ln->ndim; d++) {
        if (ln->shape[d] == 1) continue;
        ln->shape[nd] = ln->shape[d];
        for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[nd] = ln->acc[a].strides[d];
        nd++;
    }
    if (nd == 0) { /* a scalar space: one loop of one (stores dense, so it is vectorised) */
        ln->shape[0] = 1;
        for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[0] = ln->acc[a].store ? 1 : 0;
        nd = 1;
    }
    int out = 0;
    for (int d = 1; d < nd; d++) {
        bool merge = true;
        for (int a = 0; a < ln->naccess && merge; a++)
            merge = ln->acc[a].strides[out] == ln->acc[a].strides[d] * ln->shape[d];
        if (merge) {
            ln->shape[out] *= ln->shape[d];
            for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[out] = ln->acc[a].strides[d];
        } else {
            out++;
            ln->shape[out] = ln->shape[d];
            for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[out] = ln->acc[a].strides[d];
        }
    }
    ln->ndim = out + 1;
    /* One long loop (a contiguous elementwise op) gives the thread pool one row
     * to split: cut it into rows of a block that divides it (a multiple of the
     * vector width, so no row has a tail). */
    int64_t L = ln->shape[ln->ndim - 1], rows = 1;
    for (int d = 0; d < ln->ndim - 1; d++) rows *= ln->shape[d];
    if (rows < 64 && ln->ndim < EM_MAX_DIMS && L >= 2 * CG_ROW_BLOCK) {
        int64_t B = CG_ROW_BLOCK;
        while (B >= 1024 && L % B) B /= 2;
        if (L % B == 0) {
            int last = ln->ndim - 1;
            ln->shape[last] = L / B, ln->shape[last + 1] = B;
            for (int a = 0; a < ln->naccess; a++)
                ln->acc[a].strides[last + 1] = ln->acc[a].strides[last], ln->acc[a].strides[last] *= B;
            ln->ndim++;
        }
    }
}

bool cg_op_emittable(ir_op op) { return emittable(op); }
bool cg_value_layout(const pass_program *prog, em_tensor *const *args, const ir_node *x, em_tensor *t) {
    return layout_of(prog, args, x, t);
}
int cg_loopnest_add_access(const pass_program *prog, em_tensor *const *args, cg_loopnest *ln,
                           const ir_type *space, const ir_node *x, bool store) {
    return add_access(prog, args, ln, space, x, store);
}

int cg_loopnest_load(const cg_loopnest *ln, int value) {
    for (int a = ln->nops; a < ln->naccess; a++)
        if (!ln->acc[a].store && ln->acc[a].value == value) return a;
    return -1;
}

bool cg_loopnest_computes(const pass_program *prog, const cg_loopnest *ln, int id) {
    if (prog->fusion->base_of[id] != id) return false; /* a view is read from memory */
    for (int i = 0; i < ln->nnodes; i++)
        if (ln->nodes[i] == id) return true;
    return false;
}

const ir_node *cg_permuted_copy(const pass_program *prog, const cg_loopnest *ln, const ir_node *x) {
    const ir_node *b = pass_permuted_copy(x);
    return b && cg_loopnest_computes(prog, ln, x->id) && cg_loopnest_computes(prog, ln, b->id) ? b : NULL;
}

/* The CPU's family as cpuid leaf 1 reports it (base plus extended), 0 if
 * unknown; read once (cpuid traps to the hypervisor in a VM, and every nest
 * and GEMM of every compile asks). */
static unsigned cpu_family(void) {
    static atomic_uint family; /* 0: not read yet (no x86 family is 0) */
    unsigned f = atomic_load_explicit(&family, memory_order_relaxed), a, b, c, d;
    if (f || !__get_cpuid(1, &a, &b, &c, &d)) return f;
    unsigned base = (a >> 8) & 0xf;
    f = base == 0xf ? base + ((a >> 20) & 0xff) : base;
    atomic_store_explicit(&family, f, memory_order_relaxed);
    return f;
}

/* Whether streaming nests and GEMM panels prefetch in software (the opening
 * comment; gemm.c): EMBER_PREFETCH=0 or =1, else on all but AMD's cores
 * before Zen 5 (family 26). A Zen 5 EPYC (48 KiB L1d, 1 MiB L2) gains where
 * the Zen 4 lost: in one process, alternating with a build that prefetches
 * nothing, softmax took 0.94-0.95x the time on one thread and 0.97x on two,
 * layer_norm 0.95x and 0.91x, chain 1.01x and 0.94x; block, attention and mlp
 * 0.99-1.01x on either (the GEMMs' prefetch changes nothing there). Older
 * AMD families are taken to behave as the Zen 4. */
bool cg_prefetching(void) {
    const char *env = getenv("EMBER_PREFETCH");
    if (env && *env) return strcmp(env, "0") != 0;
    __builtin_cpu_init();
    return !__builtin_cpu_is("amd") || cpu_family() >= 26;
}

bool cg_access_streams(const cg_loopnest *ln, int a) {
    const cg_access *x = &ln->acc[a];
    if (x->strides[ln->ndim - 1] == 0) return false;
    if (ln->ndim == 1) return true;
    for (int d = 0; d < ln->ndim - 1; d++)
        if (x->strides[d] != 0) return true;
    return false; /* one row, read again for every row (a layer_norm's weight) */
}

/* Prefetching (see the opening comment): a vectorised nest whose rows move
 * CG_STREAM_L2S L2s or more reads them from beyond this core's caches. */
static void choose_prefetch(cg_loopnest *ln) {
    int64_t numel = 1, bytes = 0;
    for (int d = 0; d < ln->ndim; d++) numel *= ln->shape[d];
    for (int a = 0; a < ln->naccess; a++)
        if (cg_access_streams(ln, a)) bytes += numel * (int64_t)sizeof(float);
    ln->prefetch = ln->width > 1 && bytes >= CG_STREAM_L2S * cg_l2_bytes() && cg_prefetching() ? CG_PREFETCH_BYTES : 0;
}

/* Transposing nests (see the opening comment): [..., R, L] becomes
 * [..., R / T, L / 16, T, 16] where a load is gathered along the inner loop
 * but contiguous along the rows, so that the T rows of a block take their
 * vectors of a 16-column chunk one after the other and read each of that
 * load's lines T / 16 times in a row, while it is in the L1 or L2. T is the
 * largest power of two up to 256 that divides R, at least 16; a nest whose R
 * or L has no such factor keeps its order. */
/* Whether access a is a load gathered along the inner loop but contiguous
 * along the loop outside it: a transposed operand. */
static bool reads_transposed(const cg_loopnest *ln, int a) {
    const cg_access *x = &ln->acc[a];
    int64_t inner = ln->ndim >= 2 ? x->strides[ln->ndim - 1] : 0;
    return !x->store && inner != 0 && inner != 1 && x->strides[ln->ndim - 2] == 1;
}

static void tile_transposed(cg_loopnest *ln) {
    if (ln->width == 1 || ln->ndim < 2 || ln->ndim + 2 > EM_MAX_DIMS) return;
    int last = ln->ndim - 1, r = last - 1;
    int64_t R = ln->shape[r], L = ln->shape[last], C = 16, T = 256;
    bool gathered = false;
    for (int a = 0; a < ln->naccess; a++) gathered |= reads_transposed(ln, a);
    while (T > 16 && R % T) T /= 2;
    if (!gathered || L % C || L <= C || R % T) return;
    for (int a = 0; a < ln->naccess; a++) {
        int64_t *st = ln->acc[a].strides, sr = st[r], sl = st[last];
        st[r] = sr * T, st[r + 1] = sl * C, st[r + 2] = sr, st[r + 3] = sl;
    }
    ln->shape[r] = R / T, ln->shape[r + 1] = L / C, ln->shape[r + 2] = T, ln->shape[r + 3] = C;
    ln->ndim += 2;
    ln->tiled = (int)T;
}

bool cg_lower_nest(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                   const int *nodes, int n, const bool *stored, const ir_type *space, cg_loopnest *ln) {
    const ir_graph *g = prog->graph;
    memset(ln, 0, sizeof *ln);
    ln->kernel = kernel;
    if (width == 0) return cg_loopnest_refuse(ln, "the host has no vector ISA codegen targets (AVX2+FMA or AVX-512)");
    if (n > CG_MAX_NEST_NODES) return cg_loopnest_refuse(ln, "more nodes than a loop nest holds");
    int64_t numel = 1;
    for (int d = 0; d < space->ndim; d++) numel *= space->shape[d];
    if (numel == 0) return cg_loopnest_refuse(ln, "empty");
    ln->nnodes = n;
    memcpy(ln->nodes, nodes, (size_t)n * sizeof *nodes);
    for (int i = 0; i < n; i++) {
        const ir_node *x = ir_graph_node(g, nodes[i]);
        if (x->type.dtype != EM_F32 || !emittable(x->op) || !ir_type_same_shape(&x->type, space)) {
            snprintf(ln->why, sizeof ln->why, "%%%d %s %s is not generated yet", x->id,
                     em_dtype_name(x->type.dtype), ir_ops[x->op].name);
            return false;
        }
        /* a permuted copy of a member takes its value here (emit.c): it reads
         * nothing, and the member is not written (schedule.c) */
        if (cg_permuted_copy(prog, ln, x)) continue;
        for (int j = 0; j < x->nin; j++) {
            const ir_node *in = x->in[j];
            if (cg_loopnest_computes(prog, ln, in->id)) continue;
            if (in->type.dtype != EM_F32) {
                snprintf(ln->why, sizeof ln->why, "%%%d reads %s %%%d (no conversions generated yet)",
                         x->id, em_dtype_name(in->type.dtype), in->id);
                return false;
            }
            if (cg_loopnest_load(ln, in->id) < 0 && add_access(prog, args, ln, space, in, false) != 0) return false;
        }
    }
    for (int i = 0; i < n; i++)
        if (stored[nodes[i]] && add_access(prog, args, ln, space, ir_graph_node(g, nodes[i]), true) != 0)
            return false;
    ln->ndim = space->ndim;
    memcpy(ln->shape, space->shape, sizeof ln->shape);
    simplify(ln);
    ln->width = width;
    int64_t stored_bytes = 0;
    for (int a = 0; a < ln->naccess; a++) {
        if (!ln->acc[a].store) continue;
        if (ln->acc[a].strides[ln->ndim - 1] != 1) ln->width = 1; /* loads gather */
        stored_bytes += numel * (int64_t)sizeof(float);
    }
    tile_transposed(ln);
    /* A transposed copy alone: the runtime's transpose (16 x 16 blocks in
     * registers, pack_simd.c) beats gathering it, blocked or not: [1024,
     * 1024]^T took 0.15 ms there, 0.54 generated (one thread, Zen 5). */
    if (ln->tiled && n == 1 && ir_graph_node(g, nodes[0])->op == IR_OP_CONTIGUOUS && ln->naccess == 2)
        return cg_loopnest_refuse(ln, "a transposed copy: the runtime's blocked transpose is faster than gathers");
    ln->stream = ln->width > 1 && stored_bytes >= CG_STREAM_L2S * cg_l2_bytes();
    if (!ln->tiled) choose_prefetch(ln);
    return ln->compiled = true;
}

/* A cache's bytes per core: env's KiB when set (tests), else sysconf's, else dflt. */
static int64_t cache_bytes(const char *env_name, int sc_name, int64_t dflt) {
    const char *env = getenv(env_name);
    if (env && *env) {
        char *end;
        long kb = strtol(env, &end, 10);
        if (*end == '\0' && kb >= 1 && kb <= (1L << 20)) return (int64_t)kb << 10;
    }
    long bytes = sysconf(sc_name);
    return bytes > 0 ? (int64_t)bytes : dflt;
}

int64_t cg_l1_bytes(void) { return cache_bytes("EMBER_L1_KB", _SC_LEVEL1_DCACHE_SIZE, (int64_t)32 << 10); }
int64_t cg_l2_bytes(void) { return cache_bytes("EMBER_L2_KB", _SC_LEVEL2_CACHE_SIZE, (int64_t)2 << 20); }

/* Row nests keep the last loop (the reduced axis) apart: only outer loops
 * are dropped (size 1) or merged. */
static void simplify_rows(cg_loopnest *ln) {
    int last = ln->ndim - 1, nd = 0;
    for (int d = 0; d < last; d++) {
        if (ln->shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int a = 0; a < ln->naccess && merge; a++)
            merge = ln->acc[a].strides[nd - 1] == ln->acc[a].strides[d] * ln->shape[d];
        if (merge) {
            ln->shape[nd - 1] *= ln->shape[d];
            for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[nd - 1] = ln->acc[a].strides[d];
            continue;
        }
        ln->shape[nd] = ln->shape[d];
        for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[nd] = ln->acc[a].strides[d];
        nd++;
    }
    ln->shape[nd] = ln->shape[last];
    for (int a = 0; a < ln->naccess; a++) ln->acc[a].strides[nd] = ln->acc[a].strides[last];
    ln->ndim = nd + 1;
}

static bool row_anchor(const ir_node *x, int last) {
    switch (x->op) {
    case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_MAX: case IR_OP_MIN: return x->attrs.axis == last;
    case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: return x->attrs.axis == last;
    case IR_OP_LAYER_NORM: case IR_OP_RMS_NORM: return true;
    default: return false;
    }
}

/* Whether member id of the nest depends (inside it) on an anchor. */
/* Whether member id of the nest depends (inside it) on an anchor. Members are
 * in graph order, so the roles of its inputs are already known: it is after an
 * anchor when an input is an anchor or is itself after one (linear time; a
 * recursion through every path was exponential in diamond-shaped prologues). */
static bool after(const pass_program *prog, const cg_loopnest *ln, int upto, int id) {
    const ir_node *x = ir_graph_node(prog->graph, id);
    for (int j = 0; j < x->nin; j++) {
        if (!x->in[j] || prog->fusion->base_of[x->in[j]->id] != x->in[j]->id) continue;
        for (int i = 0; i < upto; i++)
            if (ln->nodes[i] == x->in[j]->id && ln->role[i] != CG_ROLE_PRE) return true;
    }
    return false;
}

bool cg_lower_row(const pass_program *prog, em_tensor *const *args, int width, int kernel,
                  const bool *stored, cg_loopnest *ln) {
    const pass_kernel *K = &prog->fusion->k[kernel];
    const ir_graph *g = prog->graph;
    const ir_type *space = &K->space;
    memset(ln, 0, sizeof *ln);
    ln->kernel = kernel, ln->row = true;
    int last = space->ndim - 1;
    if (width == 0 || last < 0 || K->nnodes > CG_MAX_NEST_NODES || space->shape[last] == 0)
        return cg_loopnest_refuse(ln, "not a row kernel codegen handles");
    ln->nnodes = K->nnodes;
    memcpy(ln->nodes, K->nodes, (size_t)K->nnodes * sizeof *K->nodes);
    int anchors = 0, norms = 0, keep0 = 0, keep1 = 0;
    const ir_type *reduced = NULL; /* the result of reductions that drop the axis */
    for (int i = 0; i < ln->nnodes; i++) {
        const ir_node *x = ir_graph_node(g, ln->nodes[i]);
        bool anchor = ir_ops[x->op].kind == IR_KIND_REDUCTION || ir_ops[x->op].kind == IR_KIND_NORM;
        if (x->type.dtype != EM_F32 || (anchor ? !row_anchor(x, last) : !emittable(x->op))) {
            snprintf(ln->why, sizeof ln->why, "%%%d %s %s is not generated as a row kernel yet", x->id,
                     em_dtype_name(x->type.dtype), ir_ops[x->op].name);
            return false;
        }
        ln->role[i] = anchor ? CG_ROLE_ANCHOR : after(prog, ln, i, x->id) ? CG_ROLE_POST : CG_ROLE_PRE;
        anchors += anchor, norms += anchor && ir_ops[x->op].kind == IR_KIND_NORM;
        if (anchor && ir_ops[x->op].kind == IR_KIND_REDUCTION) {
            if (x->attrs.keepdim) keep1++;
            else keep0++, reduced = &x->type;
        }
        for (int j = 0; j < x->nin; j++)
            if (x->in[j] && x->in[j]->type.dtype != EM_F32)
                return cg_loopnest_refuse(ln, "reads a value that is not f32");
    }
    if (!anchors || (norms && anchors > 1)) return cg_loopnest_refuse(ln, "not one norm or a set of reductions");
    if (anchors > CG_MAX_ROW_ANCHORS) return cg_loopnest_refuse(ln, "more reductions than a row nest holds");
    if (norms && (keep0 || keep1)) return cg_loopnest_refuse(ln, "a norm and reductions in one kernel");
    if (keep0 && keep1) return cg_loopnest_refuse(ln, "reductions that keep the axis and reductions that drop it");
    if (!norms && space->shape[last] == 1) return cg_loopnest_refuse(ln, "reductions over an axis of size 1");
    /* Values of a reduce nest are along the row (the space's shape) or one per
     * row (a reduction's shape): those read and write at the reduced shape. */
    bool load_per_row[CG_MAX_ACCESS] = {0}; /* how each load was laid out */
    for (int i = 0; i < ln->nnodes; i++) {
        const ir_node *x = ir_graph_node(g, ln->nodes[i]);
        bool per_row = !norms && ln->role[i] != CG_ROLE_ANCHOR && !ir_type_same_shape(&x->type, space);
        for (int j = 0; j < x->nin; j++) {
            const ir_node *in = x->in[j];
            if (!in || cg_loopnest_computes(prog, ln, in->id)) continue;
            bool found = false;
            for (int a = 0; a < ln->naccess; a++) {
                if (ln->acc[a].store || ln->acc[a].value != in->id) continue;
                found = true;
                if (load_per_row[a] != per_row) /* one load serves one layout */
                    return cg_loopnest_refuse(ln, "a value read both once per row and along the row");
            }
            if (found) continue;
            if (add_access_via(prog, args, ln, space, per_row ? reduced : NULL, in, false) != 0) return false;
            load_per_row[ln->naccess - 1] = per_row;
        }
    }
    for (int i = 0; i < ln->nnodes; i++) {
        if (!stored[ln->nodes[i]]) continue;
        const ir_node *x = ir_graph_node(g, ln->nodes[i]);
        bool per_row = !norms && !ir_type_same_shape(&x->type, space);
        if (add_access_via(prog, args, ln, space, per_row ? reduced : NULL, x, true) != 0) return false;
    }
    ln->ndim = space->ndim;
    memcpy(ln->shape, space->shape, sizeof ln->shape);
    simplify_rows(ln);
    ln->width = width;
    for (int a = 0; a < ln->naccess; a++) {
        int64_t st = ln->acc[a].strides[ln->ndim - 1];
        if (ln->acc[a].store && st != 0 && st != 1) return cg_loopnest_refuse(ln, "a strided store along the row");
        /* A transposed operand would be gathered along every row, once per
         * pass, each row reading one element of each of its lines: softmax of
         * [1024, 1024]^T took 10 ms generated, layer_norm 16. The runtime's
         * kernels copy it dense first (nn.c; reduce.c sums its columns):
         * 0.4 and 0.3 ms (one thread, Zen 5). */
        if (reads_transposed(ln, a))
            return cg_loopnest_refuse(ln, "reads a transposed operand along the row: the runtime's kernels copy it dense first");
        /* a value read by a member that is one per row must be one per row */
        for (int i = 0; i < ln->nnodes && !norms && !ln->acc[a].store && st != 0; i++) {
            const ir_node *x = ir_graph_node(g, ln->nodes[i]);
            for (int j = 0; j < x->nin && !ir_type_same_shape(&x->type, space) && ln->role[i] != CG_ROLE_ANCHOR; j++)
                if (x->in[j] && x->in[j]->id == ln->acc[a].value)
                    return cg_loopnest_refuse(ln, "a value per row reads one along the row");
        }
    }
    choose_prefetch(ln);
    return ln->compiled = true;
}

int cg_loopnest_print(const cg_loopnest *ln, FILE *out) {
    if (ln->is_gemm) {
        const cg_gemm *g = &ln->gemm;
        fprintf(out, "    %s\n    %lld batch x [%lld x %lld] @ [%lld x %lld], A k-stride %lld, B k-stride %lld\n",
                g->how, (long long)g->batches, (long long)g->m, (long long)g->k, (long long)g->k, (long long)g->n,
                (long long)g->ak, (long long)g->bk);
        if (ln->has_alt)
            fprintf(out, "    beside it %s; each piece of a call runs one, picked by its core's times (the profile "
                         "stage counts them)\n",
                    ln->alt.how);
    }
    fprintf(out, "    loops [");
    for (int d = 0; d < ln->ndim; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)ln->shape[d]);
    fprintf(out, "], inner loop %s%s", ln->width > 1 ? "vectorised" : "scalar (a strided store)",
            ln->row ? ", a row kernel (passes along the last loop)" : "");
    if (ln->tiled)
        fprintf(out, ", rows in blocks of %d (a load gathered along the inner loop reads along the rows)", ln->tiled);
    if (ln->stream) fprintf(out, ", non-temporal stores (they add up to %d L2s or more)", CG_STREAM_L2S);
    if (ln->prefetch) fprintf(out, ", loads prefetched %d bytes ahead", ln->prefetch);
    fprintf(out, ", nodes");
    for (int i = 0; i < ln->nnodes; i++)
        fprintf(out, " %%%d%s", ln->nodes[i], !ln->row ? "" : ln->role[i] == CG_ROLE_ANCHOR ? "*" : "");
    fprintf(out, "\n");
    for (int a = 0; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        fprintf(out, "      %s %%%d", c->store ? "store" : a < ln->nops ? (a ? "B    " : "A    ") : "load ", c->value);
        if (c->home != c->value) fprintf(out, " (view of %%%d)", c->home);
        fprintf(out, " at %lld + [", (long long)c->offset);
        for (int d = 0; d < ln->ndim; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)c->strides[d]);
        fprintf(out, "]\n");
    }
    return ferror(out) ? -1 : 0;
}
