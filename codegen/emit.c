/*
 * emit.c — LLVM IR for loop nests: explicit vector code, Sleef for the math.
 *
 * Each compiled loop nest becomes one function, an rt_range_fn, so the thread
 * pool can split its rows:
 *
 *     void <name>_k<k>(void **ptrs, int64_t lo, int64_t hi)
 *       for row in [lo, hi):                      -- all loops but the last
 *         p[a] = ptrs[a] + offset[a] + sum(index_d(row) * stride[a][d])
 *         broadcast loads of the row, splatted once
 *         for i in 0 .. L - L % W step W:         -- the inner loop, W lanes
 *           the kernel's members on <W x float>, loads at p[a] + i
 *           stores of the kernel's outputs
 *         one masked iteration for the last L % W elements
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
 * The math mirrors runtime/ew_simd.c op for op (the same Sleef functions and
 * the same GELU and sigmoid formulas), so compiled results match eager ones
 * to within rounding of fused multiply-adds.
 */
#include "codegen.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct em_ctx {
    LLVMContextRef c;
    LLVMModuleRef m;
    LLVMBuilderRef b;
    int w;                  /* lanes: 16, 8 or 1 */
    LLVMTypeRef f32, vt, i64, i32, ptr, mask;
} em_ctx;

/* ---- small builders ------------------------------------------------------------- */

static LLVMValueRef splat(em_ctx *e, float v) {
    LLVMValueRef s = LLVMConstReal(e->f32, v);
    if (e->w == 1) return s;
    LLVMValueRef el[16];
    for (int i = 0; i < e->w; i++) el[i] = s;
    return LLVMConstVector(el, (unsigned)e->w);
}

static LLVMValueRef splat_value(em_ctx *e, LLVMValueRef s) {
    if (e->w == 1) return s;
    LLVMValueRef undef = LLVMGetUndef(e->vt);
    LLVMValueRef ins = LLVMBuildInsertElement(e->b, undef, s, LLVMConstInt(e->i32, 0, 0), "");
    LLVMValueRef zero[16];
    for (int i = 0; i < e->w; i++) zero[i] = LLVMConstInt(e->i32, 0, 0);
    return LLVMBuildShuffleVector(e->b, ins, undef, LLVMConstVector(zero, (unsigned)e->w), "");
}

static LLVMValueRef i64c(em_ctx *e, int64_t v) { return LLVMConstInt(e->i64, (unsigned long long)v, 1); }

static LLVMValueRef call_fn(em_ctx *e, const char *name, LLVMValueRef *args, int n) {
    LLVMTypeRef params[2] = {e->vt, e->vt};
    LLVMTypeRef fty = LLVMFunctionType(e->vt, params, (unsigned)n, 0);
    LLVMValueRef f = LLVMGetNamedFunction(e->m, name);
    if (!f) f = LLVMAddFunction(e->m, name, fty);
    return LLVMBuildCall2(e->b, fty, f, args, (unsigned)n, "");
}

static LLVMValueRef intrinsic(em_ctx *e, const char *name, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef over[1] = {e->vt};
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, over, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(e->c, id, over, 1);
    return LLVMBuildCall2(e->b, fty, f, args, (unsigned)n, "");
}

/* Sleef's function for this width: expf16_u10avx512f, expf8_u10avx2, expf_u10. */
static LLVMValueRef sleef(em_ctx *e, const char *f, LLVMValueRef a, LLVMValueRef b) {
    char name[64];
    if (e->w == 16) snprintf(name, sizeof name, "Sleef_%sf16_u10avx512f", f);
    else if (e->w == 8) snprintf(name, sizeof name, "Sleef_%sf8_u10avx2", f);
    else snprintf(name, sizeof name, "Sleef_%sf_u10", f);
    LLVMValueRef args[2] = {a, b};
    return call_fn(e, name, args, b ? 2 : 1);
}

static LLVMValueRef fma3(em_ctx *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMValueRef args[3] = {a, b, c};
    return intrinsic(e, "llvm.fma", args, 3);
}

static LLVMValueRef select_nan(em_ctx *e, LLVMValueRef a, LLVMValueRef r) {
    return LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealUNO, a, a, ""), a, r, "");
}

static LLVMValueRef sigmoid(em_ctx *e, LLVMValueRef x) {
    LLVMValueRef ex = sleef(e, "exp", LLVMBuildFNeg(e->b, x, ""), NULL);
    return LLVMBuildFDiv(e->b, splat(e, 1.0f), LLVMBuildFAdd(e->b, splat(e, 1.0f), ex, ""), "");
}

/* runtime/ew_simd.c's v_gelu: erfc by the Numerical Recipes fit, through exp. */
static LLVMValueRef gelu(em_ctx *e, LLVMValueRef x) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef ax = intrinsic(e, "llvm.fabs", &x, 1);
    LLVMValueRef z = LLVMBuildFMul(b, ax, splat(e, 0.70710678118654752f), "");
    LLVMValueRef t = LLVMBuildFDiv(b, splat(e, 1.0f), fma3(e, splat(e, 0.5f), z, splat(e, 1.0f)), "");
    static const float c[] = {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f,
                              0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
    LLVMValueRef p = fma3(e, t, splat(e, 0.17087277f), splat(e, c[0]));
    for (int i = 1; i < 9; i++) p = fma3(e, p, t, splat(e, c[i]));
    LLVMValueRef ex = sleef(e, "exp", LLVMBuildFSub(b, p, LLVMBuildFMul(b, z, z, ""), ""), NULL);
    LLVMValueRef half_c = LLVMBuildFMul(b, LLVMBuildFMul(b, splat(e, 0.5f), t, ""), ex, "");
    LLVMValueRef pos = LLVMBuildFMul(b, x, LLVMBuildFSub(b, splat(e, 1.0f), half_c, ""), "");
    LLVMValueRef ge = LLVMBuildFCmp(b, LLVMRealOGE, x, splat(e, 0.0f), "");
    return LLVMBuildSelect(b, ge, pos, LLVMBuildFMul(b, x, half_c, ""), "");
}

static LLVMValueRef gelu_tanh(em_ctx *e, LLVMValueRef x) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef inner = fma3(e, LLVMBuildFMul(b, splat(e, 0.044715f), x, ""), LLVMBuildFMul(b, x, x, ""), x);
    LLVMValueRef th = sleef(e, "tanh", LLVMBuildFMul(b, splat(e, 0.79788456080286536f), inner, ""), NULL);
    return LLVMBuildFMul(b, LLVMBuildFMul(b, splat(e, 0.5f), x, ""), LLVMBuildFAdd(b, splat(e, 1.0f), th, ""), "");
}

/* One member node on its operands' values. */
static LLVMValueRef op_value(em_ctx *e, ir_op op, LLVMValueRef a, LLVMValueRef c) {
    LLVMBuilderRef b = e->b;
    switch (op) {
    case IR_OP_ADD: return LLVMBuildFAdd(b, a, c, "");
    case IR_OP_SUB: return LLVMBuildFSub(b, a, c, "");
    case IR_OP_MUL: return LLVMBuildFMul(b, a, c, "");
    case IR_OP_DIV: return LLVMBuildFDiv(b, a, c, "");
    case IR_OP_POW: return sleef(e, "pow", a, c);
    case IR_OP_MAXIMUM:
        return select_nan(e, a, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, a, c, ""), a, c, ""));
    case IR_OP_MINIMUM:
        return select_nan(e, a, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, a, c, ""), a, c, ""));
    case IR_OP_NEG: return LLVMBuildFNeg(b, a, "");
    case IR_OP_ABS: return intrinsic(e, "llvm.fabs", &a, 1);
    case IR_OP_RELU: /* maxps(0, x): x unless 0 > x, so NaN stays NaN */
        return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, splat(e, 0.0f), a, ""), splat(e, 0.0f), a, "");
    case IR_OP_EXP: return sleef(e, "exp", a, NULL);
    case IR_OP_LOG: return sleef(e, "log", a, NULL);
    case IR_OP_SIN: return sleef(e, "sin", a, NULL);
    case IR_OP_COS: return sleef(e, "cos", a, NULL);
    case IR_OP_TANH: return sleef(e, "tanh", a, NULL);
    case IR_OP_ERF: return sleef(e, "erf", a, NULL);
    case IR_OP_SQRT: return intrinsic(e, "llvm.sqrt", &a, 1);
    case IR_OP_RSQRT: return LLVMBuildFDiv(b, splat(e, 1.0f), intrinsic(e, "llvm.sqrt", &a, 1), "");
    case IR_OP_RECIPROCAL: return LLVMBuildFDiv(b, splat(e, 1.0f), a, "");
    case IR_OP_SIGMOID: return sigmoid(e, a);
    case IR_OP_SILU: return LLVMBuildFMul(b, a, sigmoid(e, a), "");
    case IR_OP_GELU: return gelu(e, a);
    case IR_OP_GELU_TANH: return gelu_tanh(e, a);
    case IR_OP_CONTIGUOUS: return a;
    default: EM_ASSERT(!"cg_lower let through an op emit.c cannot compute"); return NULL;
    }
}

/* ---- one loop nest ------------------------------------------------------------------ */

typedef struct nest_state {
    const pass_program *prog;
    const cg_loopnest *ln;
    LLVMValueRef p[CG_MAX_ACCESS];     /* per access: the row's element pointer */
    LLVMValueRef row[CG_MAX_ACCESS];   /* per access: its broadcast value (inner stride 0) */
    LLVMValueRef *val;                 /* by node id, within one inner step */
} nest_state;

static LLVMValueRef elem_ptr(em_ctx *e, LLVMValueRef p, LLVMValueRef idx) {
    return LLVMBuildGEP2(e->b, e->f32, p, &idx, 1, "");
}


static LLVMValueRef masked(em_ctx *e, const char *name, LLVMTypeRef *over, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, over, 2);
    LLVMTypeRef fty = LLVMIntrinsicGetType(e->c, id, over, 2);
    return LLVMBuildCall2(e->b, fty, f, args, (unsigned)n, "");
}

/* Lanes i .. i+W-1 of a strided row: a gather (the same vector math then runs
 * on them, so a transposed operand gives the bits a contiguous one would). */
static LLVMValueRef gather(em_ctx *e, LLVMValueRef p, LLVMValueRef i, int64_t stride, LLVMValueRef mask) {
    LLVMTypeRef vi64 = LLVMVectorType(e->i64, (unsigned)e->w);
    LLVMValueRef lanes[16], ones[16];
    for (int k = 0; k < e->w; k++) {
        lanes[k] = i64c(e, k * stride);
        ones[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), 1, 0);
    }
    LLVMValueRef first = LLVMBuildMul(e->b, i, i64c(e, stride), "");
    LLVMValueRef idx = LLVMBuildAdd(e->b, LLVMBuildInsertElement(e->b, LLVMGetUndef(vi64), first,
                                                                LLVMConstInt(e->i32, 0, 0), ""),
                                    LLVMConstNull(vi64), "");
    LLVMValueRef zero[16];
    for (int k = 0; k < e->w; k++) zero[k] = LLVMConstInt(e->i32, 0, 0);
    idx = LLVMBuildShuffleVector(e->b, idx, LLVMGetUndef(vi64), LLVMConstVector(zero, (unsigned)e->w), "");
    idx = LLVMBuildAdd(e->b, idx, LLVMConstVector(lanes, (unsigned)e->w), "");
    LLVMValueRef ptrs = LLVMBuildGEP2(e->b, e->f32, p, &idx, 1, "");
    LLVMTypeRef over[2] = {e->vt, LLVMVectorType(e->ptr, (unsigned)e->w)};
    LLVMValueRef args[4] = {ptrs, LLVMConstInt(e->i32, 4, 0), mask ? mask : LLVMConstVector(ones, (unsigned)e->w),
                            splat(e, 0.0f)};
    return masked(e, "llvm.masked.gather", over, args, 4);
}

/* The body at inner index i: loads, members, stores; mask NULL for a full step. */
static void body(em_ctx *e, nest_state *s, LLVMValueRef i, LLVMValueRef mask) {
    const cg_loopnest *ln = s->ln;
    int last = ln->ndim - 1;
    LLVMTypeRef over[2] = {e->vt, e->ptr};
    for (int a = 0; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        if (c->store) continue;
        LLVMValueRef v;
        if (c->strides[last] == 0) v = s->row[a];
        else if (e->w == 1) v = LLVMBuildLoad2(e->b, e->f32, elem_ptr(e, s->p[a], LLVMBuildMul(e->b, i, i64c(e, c->strides[last]), "")), "");
        else if (c->strides[last] != 1) v = gather(e, s->p[a], i, c->strides[last], mask);
        else if (!mask) v = LLVMBuildLoad2(e->b, e->vt, elem_ptr(e, s->p[a], i), "");
        else {
            LLVMValueRef args[4] = {elem_ptr(e, s->p[a], i), LLVMConstInt(e->i32, 4, 0), mask, splat(e, 0.0f)};
            v = masked(e, "llvm.masked.load", over, args, 4);
        }
        if (LLVMIsALoadInst(v)) LLVMSetAlignment(v, 4);
        s->val[c->value] = v;
    }
    const ir_graph *g = s->prog->graph;
    for (int m = 0; m < ln->nnodes; m++) {
        const ir_node *x = ir_graph_node(g, ln->nodes[m]);
        LLVMValueRef a = s->val[x->in[0]->id], b = x->nin > 1 ? s->val[x->in[1]->id] : NULL;
        s->val[x->id] = op_value(e, x->op, a, b);
    }
    for (int a = 0; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        if (!c->store) continue;
        LLVMValueRef v = s->val[c->value];
        if (e->w == 1) {
            LLVMValueRef st = LLVMBuildStore(e->b, v, elem_ptr(e, s->p[a], LLVMBuildMul(e->b, i, i64c(e, c->strides[last]), "")));
            LLVMSetAlignment(st, 4);
        } else if (!mask) {
            LLVMSetAlignment(LLVMBuildStore(e->b, v, elem_ptr(e, s->p[a], i)), 4);
        } else {
            LLVMValueRef args[4] = {v, elem_ptr(e, s->p[a], i), LLVMConstInt(e->i32, 4, 0), mask};
            masked(e, "llvm.masked.store", over, args, 4);
        }
    }
}

/* Row pointers: decompose the row number into the outer loop indices. */
static void row_pointers(em_ctx *e, nest_state *s, LLVMValueRef fn, LLVMValueRef r) {
    const cg_loopnest *ln = s->ln;
    LLVMValueRef ctx = LLVMGetParam(fn, 0);
    LLVMValueRef off[CG_MAX_ACCESS];
    for (int a = 0; a < ln->naccess; a++) off[a] = i64c(e, ln->acc[a].offset);
    LLVMValueRef rem = r;
    for (int d = ln->ndim - 2; d >= 0; d--) {
        LLVMValueRef idx = d > 0 ? LLVMBuildURem(e->b, rem, i64c(e, ln->shape[d]), "") : rem;
        if (d > 0) rem = LLVMBuildUDiv(e->b, rem, i64c(e, ln->shape[d]), "");
        for (int a = 0; a < ln->naccess; a++)
            if (ln->acc[a].strides[d])
                off[a] = LLVMBuildAdd(e->b, off[a], LLVMBuildMul(e->b, idx, i64c(e, ln->acc[a].strides[d]), ""), "");
    }
    for (int a = 0; a < ln->naccess; a++) {
        LLVMValueRef slot = LLVMBuildGEP2(e->b, e->ptr, ctx, (LLVMValueRef[]){i64c(e, a)}, 1, "");
        LLVMValueRef base = LLVMBuildLoad2(e->b, e->ptr, slot, "");
        s->p[a] = elem_ptr(e, base, off[a]);
        s->row[a] = NULL;
        if (!ln->acc[a].store && ln->acc[a].strides[ln->ndim - 1] == 0) {
            LLVMValueRef l = LLVMBuildLoad2(e->b, e->f32, s->p[a], "");
            LLVMSetAlignment(l, 4);
            s->row[a] = splat_value(e, l);
        }
    }
}

static void emit_nest(em_ctx *e, nest_state *s, LLVMValueRef fn) {
    const cg_loopnest *ln = s->ln;
    LLVMBuilderRef b = e->b;
    int64_t L = ln->shape[ln->ndim - 1], W = e->w, full = L / W * W;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->c, fn, "entry");
    LLVMBasicBlockRef rowhead = LLVMAppendBasicBlockInContext(e->c, fn, "row");
    LLVMBasicBlockRef inner = LLVMAppendBasicBlockInContext(e->c, fn, "inner");
    LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(e->c, fn, "tail");
    LLVMBasicBlockRef latch = LLVMAppendBasicBlockInContext(e->c, fn, "latch");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->c, fn, "done");
    LLVMValueRef lo = LLVMGetParam(fn, 1), hi = LLVMGetParam(fn, 2);
    LLVMPositionBuilderAtEnd(b, entry);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, lo, hi, ""), rowhead, done);

    LLVMPositionBuilderAtEnd(b, rowhead);
    LLVMValueRef r = LLVMBuildPhi(b, e->i64, "r");
    row_pointers(e, s, fn, r);
    LLVMBuildBr(b, full > 0 ? inner : tail);

    LLVMPositionBuilderAtEnd(b, inner);
    if (full > 0) {
        LLVMValueRef i = LLVMBuildPhi(b, e->i64, "i");
        body(e, s, i, NULL);
        LLVMValueRef inext = LLVMBuildAdd(b, i, i64c(e, W), "");
        LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, inext, i64c(e, full), ""), inner, tail);
        LLVMBasicBlockRef from[2] = {rowhead, inner};
        LLVMValueRef ivals[2] = {i64c(e, 0), inext};
        LLVMAddIncoming(i, ivals, from, 2);
    } else {
        LLVMBuildUnreachable(b); /* a row shorter than a vector: only the masked step */
    }

    LLVMPositionBuilderAtEnd(b, tail);
    if (full < L) {
        LLVMValueRef lanes[16];
        for (int k = 0; k < W; k++) lanes[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), full + k < L, 0);
        body(e, s, i64c(e, full), LLVMConstVector(lanes, (unsigned)W));
    }
    LLVMBuildBr(b, latch);

    LLVMPositionBuilderAtEnd(b, latch);
    LLVMValueRef rnext = LLVMBuildAdd(b, r, i64c(e, 1), "");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, rnext, hi, ""), rowhead, done);
    LLVMBasicBlockRef rfrom[2] = {entry, latch};
    LLVMValueRef rvals[2] = {lo, rnext};
    LLVMAddIncoming(r, rvals, rfrom, 2);

    LLVMPositionBuilderAtEnd(b, done);
    LLVMBuildRetVoid(b);
}

/* The cache key of a module: everything its machine code depends on. */
static void module_key(LLVMModuleRef m, char *key, size_t cap, uint64_t *ir_hash) {
    char *text = LLVMPrintModuleToString(m);
    /* the module's name is the caller's label, not part of what the code does */
    const char *body = text ? strstr(text, "target datalayout") : NULL;
    *ir_hash = body ? cg_hash(body, strlen(body), 0xcbf29ce484222325ull) : 0;
    if (text) LLVMDisposeMessage(text);
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(key, cap, "ember %s | llvm %u.%u.%u | %s %s | ir %016llx", em_version(), major, minor, patch,
             cg_host_cpu(), cg_host_features(), (unsigned long long)*ir_hash);
}

static atomic_int fail_next; /* cg_emit_fail_next: failures to inject */

void cg_emit_fail_next(int n) { atomic_store(&fail_next, n); }

cg_unit *cg_emit(const char *name, const pass_program *prog, const cg_loopnest *ln, int n,
                 unsigned keep, void **fns, bool *cached) {
    if (atomic_load(&fail_next) > 0 && atomic_fetch_sub(&fail_next, 1) > 0)
        return rt_error("codegen %s: injected failure (cg_emit_fail_next)", name), NULL;
    LLVMContextRef c;
    LLVMModuleRef m;
    if (cg_module_begin(name, &c, &m) != 0) return NULL;
    int nn = ir_graph_num_nodes(prog->graph);
    LLVMValueRef *val = calloc((size_t)(nn ? nn : 1), sizeof *val);
    LLVMValueRef *fn = calloc((size_t)(n ? n : 1), sizeof *fn);
    if (!val || !fn) {
        free(val), free(fn);
        cg_module_discard(m);
        return rt_error("em_compile: out of memory emitting code"), NULL;
    }
    em_ctx e = {.c = c, .m = m, .b = LLVMCreateBuilderInContext(c)};
    e.f32 = LLVMFloatTypeInContext(c), e.i64 = LLVMInt64TypeInContext(c), e.i32 = LLVMInt32TypeInContext(c);
    e.ptr = LLVMPointerTypeInContext(c, 0);
    LLVMTypeRef params[3] = {e.ptr, e.i64, e.i64};
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c), params, 3, 0);
    for (int k = 0; k < n; k++) {
        e.w = ln[k].width;
        e.vt = e.w == 1 ? e.f32 : LLVMVectorType(e.f32, (unsigned)e.w);
        char fname[64];
        snprintf(fname, sizeof fname, "ember_n%d", k); /* renamed below, by content */
        fn[k] = LLVMAddFunction(m, fname, fty);
        nest_state s = {.prog = prog, .ln = &ln[k], .val = val};
        emit_nest(&e, &s, fn[k]);
    }
    LLVMDisposeBuilder(e.b);
    free(val);
    /* Names from the code's hash: the same program compiled twice (or by another
     * process) has the same names, so the JIT shares it and the cache finds it. */
    char key[1024];
    uint64_t h;
    module_key(m, key, sizeof key, &h);
    for (int k = 0; k < n; k++) {
        char fname[64];
        snprintf(fname, sizeof fname, "ember_%016llx_n%d", (unsigned long long)h, k);
        LLVMSetValueName2(fn[k], fname, strlen(fname));
    }
    free(fn);
    cg_unit *u = cg_unit_create_keyed(m, key, &(cg_opt){.pipeline = CG_PIPELINE_LEAN, .keep = keep}, cached);
    for (int k = 0; k < n && u; k++) {
        char fname[64];
        snprintf(fname, sizeof fname, "ember_%016llx_n%d", (unsigned long long)h, k);
        if (!(fns[k] = cg_unit_lookup(u, fname))) {
            cg_unit_destroy(u);
            return NULL;
        }
    }
    return u;
}
