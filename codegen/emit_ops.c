/*
 * emit_ops.c — the arithmetic of generated kernels, as LLVM IR builders.
 *
 * Every op a loop nest computes, on <W x float> values (or scalars when W is
 * 1): exp and tanh written inline as runtime/simd.h's V_EXP and V_TANH
 * (cg_exp, cg_tanh), the same Sleef functions runtime/ew_simd.c calls for the
 * other transcendentals (logf16_u10avx512f, logf8_u10avx2, ...), and the same
 * formulas for sigmoid and both GELUs: at 16 lanes rt_tabfn's piecewise
 * polynomials (a vpermt2ps per coefficient) with a branch to the exp forms
 * (rt_tailfn's for the GELU) for vectors with a lane in the far negative tail;
 * at 8 lanes and on scalars the exp forms (the erfc fit by Estrin's scheme,
 * 1 / (1 + e^-x), x / (1 + e^-2y)) and the same branch for the GELU's tail,
 * operation for operation, so a generated kernel gives eager's bits. Also the
 * memory helpers the nests share: element pointers, masked loads and stores,
 * gathers.
 */
#include "codegen.h"

#include <string.h>

/* ---- small builders ------------------------------------------------------------- */

LLVMValueRef cg_splat(cg_emitter *e, float v) {
    LLVMValueRef s = LLVMConstReal(e->f32, v);
    if (e->w == 1) return s;
    LLVMValueRef el[16];
    for (int i = 0; i < e->w; i++) el[i] = s;
    return LLVMConstVector(el, (unsigned)e->w);
}

LLVMValueRef cg_splat_value(cg_emitter *e, LLVMValueRef s) {
    if (e->w == 1) return s;
    LLVMValueRef undef = LLVMGetUndef(e->vt);
    LLVMValueRef ins = LLVMBuildInsertElement(e->b, undef, s, LLVMConstInt(e->i32, 0, 0), "");
    LLVMValueRef zero[16];
    for (int i = 0; i < e->w; i++) zero[i] = LLVMConstInt(e->i32, 0, 0);
    return LLVMBuildShuffleVector(e->b, ins, undef, LLVMConstVector(zero, (unsigned)e->w), "");
}

LLVMValueRef cg_i64c(cg_emitter *e, int64_t v) { return LLVMConstInt(e->i64, (unsigned long long)v, 1); }

LLVMValueRef cg_declare(cg_emitter *e, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int n,
                        LLVMTypeRef *fty) {
    *fty = LLVMFunctionType(ret, params, (unsigned)n, 0);
    LLVMValueRef f = LLVMGetNamedFunction(e->m, name);
    return f ? f : LLVMAddFunction(e->m, name, *fty);
}

LLVMValueRef cg_call_fn(cg_emitter *e, LLVMTypeRef t, const char *name, LLVMValueRef *args, int n) {
    LLVMTypeRef params[2] = {t, t}, fty;
    LLVMValueRef f = cg_declare(e, name, t, params, n, &fty);
    return LLVMBuildCall2(e->b, fty, f, args, (unsigned)n, "");
}

LLVMValueRef cg_intrinsic(cg_emitter *e, const char *name, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef over[1] = {e->vt};
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, over, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(e->c, id, over, 1);
    return LLVMBuildCall2(e->b, fty, f, args, (unsigned)n, "");
}

static LLVMValueRef cg_exp(cg_emitter *e, LLVMValueRef x);

/* Sleef's function for this width: logf16_u10avx512f, logf8_u10avx2, logf_u10 (tanh:
 * u35); exp at 16 and 8 lanes is cg_exp instead. */
LLVMValueRef cg_sleef(cg_emitter *e, const char *f, LLVMValueRef a, LLVMValueRef b) {
    char name[64];
    if ((e->w == 16 || e->w == 8) && !strcmp(f, "exp")) return cg_exp(e, a);
    /* tanh at 3.5 ulp, as runtime/ew_simd.c (3x faster than u10); the rest at 1 ulp */
    const char *u = strcmp(f, "tanh") == 0 ? "u35" : "u10";
    if (e->w == 16) snprintf(name, sizeof name, "Sleef_%sf16_%savx512f", f, u);
    else if (e->w == 8) snprintf(name, sizeof name, "Sleef_%sf8_%savx2", f, u);
    else snprintf(name, sizeof name, "Sleef_%sf_%s", f, u);
    LLVMValueRef args[2] = {a, b};
    return cg_call_fn(e, e->vt, name, args, b ? 2 : 1);
}

void cg_loop(cg_emitter *e, LLVMValueRef from, LLVMValueRef to, int64_t step, LLVMValueRef *vals, int n,
             cg_loop_body body, void *ctx) {
    LLVMBuilderRef b = e->b;
    EM_ASSERT(n <= CG_LOOP_MAX_VALS);
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
    LLVMValueRef fn = LLVMGetBasicBlockParent(pre);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(e->c, fn, "loop");
    LLVMBasicBlockRef end = LLVMAppendBasicBlockInContext(e->c, fn, "loop.end");
    LLVMValueRef init[CG_LOOP_MAX_VALS];
    if (n) memcpy(init, vals, (size_t)n * sizeof *vals);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, from, to, ""), head, end);
    LLVMPositionBuilderAtEnd(b, head);
    LLVMValueRef iv = LLVMBuildPhi(b, e->i64, "iv"), phi[CG_LOOP_MAX_VALS];
    for (int k = 0; k < n; k++) phi[k] = vals[k] = LLVMBuildPhi(b, LLVMTypeOf(init[k]), "");
    body(e, iv, vals, ctx);
    LLVMValueRef next = LLVMBuildAdd(b, iv, cg_i64c(e, step), "");
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

LLVMValueRef cg_fma3(cg_emitter *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMValueRef args[3] = {a, b, c};
    return cg_intrinsic(e, "llvm.fma", args, 3);
}

LLVMValueRef cg_target_call(cg_emitter *e, const char *name, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    EM_ASSERT(id != 0);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, NULL, 0);
    return LLVMBuildCall2(e->b, LLVMIntrinsicGetType(e->c, id, NULL, 0), f, args, (unsigned)n, "");
}

static LLVMValueRef cg_splat_i32(cg_emitter *e, int32_t v) {
    LLVMValueRef lanes[16];
    for (int k = 0; k < e->w; k++) lanes[k] = LLVMConstInt(e->i32, (uint64_t)(uint32_t)v, 1);
    return LLVMConstVector(lanes, (unsigned)e->w);
}

/* u 2^q, as runtime/simd.h's V_LDEXP: one vscalefps at 16 lanes (zeroing the
 * lanes where keep, an i1 vector, is false; NULL: none), two exact powers of
 * two at 8. */
static LLVMValueRef cg_ldexp(cg_emitter *e, LLVMValueRef u, LLVMValueRef q, LLVMValueRef keep) {
    LLVMBuilderRef b = e->b;
    if (e->w == 16) {
        LLVMTypeRef i16 = LLVMInt16TypeInContext(e->c);
        LLVMValueRef k = keep ? LLVMBuildBitCast(b, keep, i16, "") : LLVMConstInt(i16, 0xffff, 0);
        LLVMValueRef args[5] = {u, q, cg_splat(e, 0.0f), k, LLVMConstInt(e->i32, 4, 0)};
        return cg_target_call(e, "llvm.x86.avx512.mask.scalef.ps.512", args, 5);
    }
    LLVMValueRef qi = cg_target_call(e, "llvm.x86.avx.cvtt.ps2dq.256", &q, 1);
    LLVMValueRef q1 = LLVMBuildAShr(b, qi, cg_splat_i32(e, 1), "");
    LLVMValueRef bias = cg_splat_i32(e, 127), sh = cg_splat_i32(e, 23);
    LLVMValueRef p1 = LLVMBuildBitCast(b, LLVMBuildShl(b, LLVMBuildAdd(b, q1, bias, ""), sh, ""), e->vt, "");
    LLVMValueRef p2 = LLVMBuildBitCast(b, LLVMBuildShl(b, LLVMBuildAdd(b, LLVMBuildSub(b, qi, q1, ""), bias, ""), sh, ""), e->vt, "");
    return LLVMBuildFMul(b, LLVMBuildFMul(b, u, p1, ""), p2, "");
}

/* runtime/simd.h's rt_exp_reduced: *q and e^s - 1 for x = q ln 2 + s. */
static LLVMValueRef cg_exp_reduced(cg_emitter *e, LLVMValueRef x, LLVMValueRef *q) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef y = LLVMBuildFMul(b, x, cg_splat(e, RT_EXP_LOG2E), "");
    *q = cg_intrinsic(e, "llvm.roundeven", &y, 1);
    LLVMValueRef s = cg_fma3(e, *q, cg_splat(e, RT_EXP_LN2_LO), cg_fma3(e, *q, cg_splat(e, RT_EXP_LN2_HI), x));
    LLVMValueRef u = cg_splat(e, RT_EXP_P[0]);
    for (int k = 1; k < 6; k++) u = cg_fma3(e, u, s, cg_splat(e, RT_EXP_P[k]));
    return cg_fma3(e, u, LLVMBuildFMul(b, s, s, ""), s);
}

/* e^x from x = q ln 2 + s, zero in the lanes where under (x below
 * RT_EXP_LO, -inf among them) whatever the steps made of them: the end both
 * exps share. */
static LLVMValueRef cg_exp_finish(cg_emitter *e, LLVMValueRef x, LLVMValueRef under) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef q, u = LLVMBuildFAdd(b, cg_exp_reduced(e, x, &q), cg_splat(e, 1.0f), "");
    if (e->w == 16) return cg_ldexp(e, u, q, LLVMBuildNot(b, under, ""));
    return LLVMBuildSelect(b, under, cg_splat(e, 0.0f), cg_ldexp(e, u, q, NULL), "");
}

/* runtime/simd.h's V_EXP, operation for operation (its comment says why). */
static LLVMValueRef cg_exp(cg_emitter *e, LLVMValueRef x) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef hi = cg_splat(e, RT_EXP_HI);
    LLVMValueRef under = LLVMBuildFCmp(b, LLVMRealOLT, x, cg_splat(e, RT_EXP_LO), "");
    x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, hi, x, ""), hi, x, ""); /* minps(hi, x) */
    x = LLVMBuildSelect(b, under, cg_splat(e, 0.0f), x, "");
    return cg_exp_finish(e, x, under);
}

/* cg_exp of an x that is at most 0, -inf or NaN (a softmax's x - max), with
 * the same result bit for bit and a shorter chain: without the clamp at
 * RT_EXP_HI (never reached) and without zeroing x below RT_EXP_LO before the
 * reduction (cg_exp_finish zeroes those lanes at the end). In a C harness of
 * softmax over [256, 256] rows on a Zen 5 EPYC, whose exp pass waits on that
 * chain, dropping the clamp took 0.86x the time. Other widths call Sleef's
 * exp. */
LLVMValueRef cg_exp_nonpositive(cg_emitter *e, LLVMValueRef x) {
    if (e->w != 16 && e->w != 8) return cg_sleef(e, "exp", x, NULL);
    return cg_exp_finish(e, x, LLVMBuildFCmp(e->b, LLVMRealOLT, x, cg_splat(e, RT_EXP_LO), ""));
}

/* runtime/simd.h's rt_tanh, operation for operation: sign(x) E / (E + 2) with
 * E = e^(2|x|) - 1 from cg_exp's steps. The sign goes through integer masks,
 * as eager's, so that even a NaN's bits agree. */
static LLVMValueRef cg_tanh(cg_emitter *e, LLVMValueRef x) {
    if (e->w != 16 && e->w != 8) return cg_sleef(e, "tanh", x, NULL);
    LLVMBuilderRef b = e->b;
    LLVMTypeRef vi = LLVMVectorType(e->i32, (unsigned)e->w);
    LLVMValueRef sign = LLVMBuildAnd(b, LLVMBuildBitCast(b, x, vi, ""), cg_splat_i32(e, INT32_MIN), "");
    LLVMValueRef a = LLVMBuildBitCast(b, LLVMBuildXor(b, LLVMBuildBitCast(b, x, vi, ""), sign, ""), e->vt, "");
    LLVMValueRef hi = cg_splat(e, RT_TANH_HI);
    LLVMValueRef y = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, hi, a, ""), hi, a, ""); /* minps(hi, a) */
    LLVMValueRef q, w = cg_exp_reduced(e, LLVMBuildFAdd(b, y, y, ""), &q);
    LLVMValueRef one = cg_splat(e, 1.0f), p = cg_ldexp(e, one, q, NULL);
    LLVMValueRef ev = cg_fma3(e, p, w, LLVMBuildFSub(b, p, one, ""));
    LLVMValueRef t = LLVMBuildFDiv(b, ev, LLVMBuildFAdd(b, ev, cg_splat(e, 2.0f), ""), "");
    return LLVMBuildBitCast(b, LLVMBuildXor(b, LLVMBuildBitCast(b, t, vi, ""), sign, ""), e->vt, "");
}

LLVMValueRef cg_select_nan(cg_emitter *e, LLVMValueRef a, LLVMValueRef r) {
    return LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealUNO, a, a, ""), a, r, "");
}

static LLVMValueRef cg_sigmoid_exp(cg_emitter *e, LLVMValueRef x) {
    LLVMValueRef ex = cg_sleef(e, "exp", LLVMBuildFNeg(e->b, x, ""), NULL);
    return LLVMBuildFDiv(e->b, cg_splat(e, 1.0f), LLVMBuildFAdd(e->b, cg_splat(e, 1.0f), ex, ""), "");
}

/* runtime/ew_simd.c's v_gelu_erfc: erfc by the Numerical Recipes fit, through
 * exp, with |x| clamped to rt_tab_gelu.hi (beyond, cg_gelu_tail's lanes). */
static LLVMValueRef cg_gelu_erfc(cg_emitter *e, LLVMValueRef x) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef ax = cg_intrinsic(e, "llvm.fabs", &x, 1), top = cg_splat(e, rt_tab_gelu.hi);
    ax = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, top, ax, ""), top, ax, ""); /* minps(hi, |x|) */
    LLVMValueRef z = LLVMBuildFMul(b, ax, cg_splat(e, 0.70710678118654752f), "");
    LLVMValueRef t = LLVMBuildFDiv(b, cg_splat(e, 1.0f), cg_fma3(e, cg_splat(e, 0.5f), z, cg_splat(e, 1.0f)), "");
    /* P(t) by Estrin's scheme, as ew_simd.c: five pairs, then t^2 and t^4 */
    LLVMValueRef t2 = LLVMBuildFMul(b, t, t, ""), t4 = LLVMBuildFMul(b, t2, t2, ""), q[5];
    for (int j = 0; j < 5; j++) q[j] = cg_fma3(e, cg_splat(e, RT_GELU_P[2 * j]), t, cg_splat(e, RT_GELU_P[2 * j + 1]));
    LLVMValueRef hi = cg_fma3(e, cg_fma3(e, q[0], t2, q[1]), t4, cg_fma3(e, q[2], t2, q[3]));
    LLVMValueRef p = cg_fma3(e, hi, t2, q[4]);
    LLVMValueRef ex = cg_sleef(e, "exp", LLVMBuildFSub(b, p, LLVMBuildFMul(b, z, z, ""), ""), NULL);
    LLVMValueRef half_c = LLVMBuildFMul(b, LLVMBuildFMul(b, cg_splat(e, 0.5f), t, ""), ex, "");
    LLVMValueRef pos = LLVMBuildFMul(b, x, LLVMBuildFSub(b, cg_splat(e, 1.0f), half_c, ""), "");
    LLVMValueRef ge = LLVMBuildFCmp(b, LLVMRealOGE, x, cg_splat(e, 0.0f), "");
    return LLVMBuildSelect(b, ge, pos, LLVMBuildFMul(b, x, half_c, ""), "");
}

/* runtime/ew_simd.c's v_gelu_tail: the GELU below -rt_tab_gelu.hi by
 * rt_tailfn (runtime.h says how, and why no lane makes a subnormal). */
static LLVMValueRef cg_gelu_tail(cg_emitter *e, LLVMValueRef x) {
    LLVMBuilderRef b = e->b;
    const rt_tailfn *t = &rt_tail_gelu;
    LLVMValueRef lo = cg_splat(e, rt_tab_gelu.hi), end = cg_splat(e, t->end), v = LLVMBuildFNeg(b, x, "");
    v = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, lo, v, ""), lo, v, "");    /* maxps(hi, -x) */
    v = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, end, v, ""), end, v, ""); /* minps(end, v) */
    LLVMValueRef h = LLVMBuildFMul(b, v, v, ""), l = cg_fma3(e, v, v, LLVMBuildFNeg(b, h, ""));
    LLVMValueRef u = LLVMBuildFDiv(b, cg_splat(e, 1.0f), h, ""), r = cg_splat(e, t->r[0]);
    for (int p = 1; p <= RT_TAIL_DEG; p++) r = cg_fma3(e, r, u, cg_splat(e, t->r[p]));
    r = cg_fma3(e, LLVMBuildFMul(b, cg_splat(e, -0.5f), l, ""), r, r);
    LLVMValueRef ex = cg_exp_nonpositive(e, LLVMBuildFMul(b, cg_splat(e, -0.5f), h, ""));
    LLVMValueRef y = LLVMBuildFMul(b, LLVMBuildFMul(b, cg_splat(e, -RT_INV_SQRT_2PI), r, ""), ex, "");
    LLVMValueRef past = LLVMBuildFCmp(b, LLVMRealOLT, x, cg_splat(e, -t->end), "");
    return LLVMBuildSelect(b, past, LLVMBuildFMul(b, x, cg_splat(e, 0.0f), ""), y, "");
}

/* runtime/ew_simd.c's v_gelu_tanh_exp: x / (1 + e^(-2y)), y = sqrt(2/pi) (x + 0.044715 x^3). */
static LLVMValueRef cg_gelu_tanh_exp(cg_emitter *e, LLVMValueRef x) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef inner = cg_fma3(e, LLVMBuildFMul(b, cg_splat(e, 0.044715f), x, ""), LLVMBuildFMul(b, x, x, ""), x);
    LLVMValueRef ex = cg_sleef(e, "exp", LLVMBuildFMul(b, cg_splat(e, -1.5957691216057308f), inner, ""), NULL);
    return LLVMBuildFDiv(b, x, LLVMBuildFAdd(b, cg_splat(e, 1.0f), ex, ""), "");
}

/* A <16 x float> of lanes from..from+15 of a coefficient row. */
static LLVMValueRef const_row(cg_emitter *e, const float *c) {
    LLVMValueRef el[16];
    for (int i = 0; i < 16; i++) el[i] = LLVMConstReal(e->f32, c[i]);
    return LLVMConstVector(el, 16);
}

/* runtime/ew_simd.c's v_tab_g at 16 lanes, operation for operation: rt_tabfn's
 * g(v) (runtime.h says how and why). */
static LLVMValueRef cg_tab_g(cg_emitter *e, LLVMValueRef v, const rt_tabfn *t) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef k = cg_splat(e, t->k), magic = cg_splat(e, RT_TAB_MAGIC);
    LLVMValueRef fa[4] = {v, k, magic, LLVMConstInt(e->i32, RT_TAB_ROUND_DOWN, 0)};
    LLVMValueRef s = cg_target_call(e, "llvm.x86.avx512.vfmadd.ps.512", fa, 4);
    LLVMValueRef r = cg_fma3(e, v, k, LLVMBuildFNeg(b, LLVMBuildFSub(b, s, magic, ""), ""));
    LLVMValueRef i = LLVMBuildBitCast(b, s, LLVMVectorType(e->i32, 16), "");
    LLVMValueRef g = NULL;
    for (int p = RT_TAB_DEG; p >= 0; p--) {
        LLVMValueRef args[3] = {const_row(e, t->c[p]), i, const_row(e, t->c[p] + 16)};
        LLVMValueRef c = cg_target_call(e, "llvm.x86.avx512.vpermi2var.ps.512", args, 3);
        g = g ? cg_fma3(e, g, r, c) : c;
    }
    return g;
}

/* ew_simd.c's v_tab_gelu: max(x, 0) - v h(v), v = min(|x|, hi). */
static LLVMValueRef cg_tab_gelu(cg_emitter *e, LLVMValueRef x, const rt_tabfn *t) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef hi = cg_splat(e, t->hi), zero = cg_splat(e, 0.0f);
    LLVMValueRef ax = cg_intrinsic(e, "llvm.fabs", &x, 1);
    LLVMValueRef v = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, hi, ax, ""), hi, ax, ""); /* minps(hi, |x|) */
    LLVMValueRef relu = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, zero, x, ""), zero, x, ""); /* maxps(0, x) */
    return cg_fma3(e, LLVMBuildFNeg(b, v, ""), cg_tab_g(e, v, t), relu);
}

/* ew_simd.c's V_TAB_TAIL: lanes of x below `below` take slow(x) instead of fast,
 * in a block that a vector without such lanes branches around. */
static LLVMValueRef cg_tab_tail(cg_emitter *e, LLVMValueRef x, float below, LLVMValueRef fast,
                                LLVMValueRef (*slow)(cg_emitter *, LLVMValueRef)) {
    LLVMBuilderRef b = e->b;
    LLVMValueRef far = LLVMBuildFCmp(b, LLVMRealOLT, x, cg_splat(e, below), ""), any = far;
    if (e->w > 1) { /* the lanes' bits as one integer (kortestw, vmovmskps) */
        LLVMTypeRef iw = LLVMIntTypeInContext(e->c, (unsigned)e->w);
        any = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildBitCast(b, far, iw, ""), LLVMConstInt(iw, 0, 0), "");
    }
    LLVMBasicBlockRef from = LLVMGetInsertBlock(b);
    LLVMValueRef fn = LLVMGetBasicBlockParent(from);
    LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(e->c, fn, "tail");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->c, fn, "tail.end");
    LLVMValueRef br = LLVMBuildCondBr(b, any, tail, join);
    LLVMMetadataRef w[3] = {LLVMMDStringInContext2(e->c, "branch_weights", 14),
                            LLVMValueAsMetadata(LLVMConstInt(e->i32, 1, 0)),
                            LLVMValueAsMetadata(LLVMConstInt(e->i32, 1000, 0))};
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(e->c, "prof", 4), LLVMMetadataAsValue(e->c, LLVMMDNodeInContext2(e->c, w, 3)));
    LLVMPositionBuilderAtEnd(b, tail);
    LLVMValueRef mixed = LLVMBuildSelect(b, far, slow(e, x), fast, "");
    LLVMBasicBlockRef tail_end = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, join);
    LLVMValueRef phi = LLVMBuildPhi(b, e->vt, "");
    LLVMValueRef in[2] = {fast, mixed};
    LLVMBasicBlockRef bb[2] = {from, tail_end};
    LLVMAddIncoming(phi, in, bb, 2);
    return phi;
}

/* Sigmoid and both GELUs: rt_tabfn's tables at 16 lanes (AVX-512, as eager
 * there), the exp-based forms at 8 lanes and on scalars (as eager's AVX2);
 * the GELU's far tail is rt_tailfn's at every width. */
LLVMValueRef cg_sigmoid(cg_emitter *e, LLVMValueRef x) {
    if (e->w != 16) return cg_sigmoid_exp(e, x);
    const rt_tabfn *t = &rt_tab_sigmoid;
    LLVMValueRef top = LLVMBuildFCmp(e->b, LLVMRealOGE, x, cg_splat(e, t->hi), "");
    LLVMValueRef fast = LLVMBuildSelect(e->b, top, cg_splat(e, 1.0f), cg_tab_g(e, x, t), "");
    return cg_tab_tail(e, x, t->lo, fast, cg_sigmoid_exp);
}

LLVMValueRef cg_gelu(cg_emitter *e, LLVMValueRef x) {
    LLVMValueRef fast = e->w == 16 ? cg_tab_gelu(e, x, &rt_tab_gelu) : cg_gelu_erfc(e, x);
    return cg_tab_tail(e, x, -rt_tab_gelu.hi, fast, cg_gelu_tail);
}

LLVMValueRef cg_gelu_tanh(cg_emitter *e, LLVMValueRef x) {
    if (e->w != 16) return cg_gelu_tanh_exp(e, x);
    return cg_tab_tail(e, x, -rt_tab_gelu_tanh.hi, cg_tab_gelu(e, x, &rt_tab_gelu_tanh), cg_gelu_tanh_exp);
}

/* One member node on its operands' values. */
LLVMValueRef cg_op_value(cg_emitter *e, ir_op op, LLVMValueRef a, LLVMValueRef c) {
    LLVMBuilderRef b = e->b;
    switch (op) {
    case IR_OP_ADD: return LLVMBuildFAdd(b, a, c, "");
    case IR_OP_SUB: return LLVMBuildFSub(b, a, c, "");
    case IR_OP_MUL: return LLVMBuildFMul(b, a, c, "");
    case IR_OP_DIV: return LLVMBuildFDiv(b, a, c, "");
    case IR_OP_POW: return cg_sleef(e, "pow", a, c);
    case IR_OP_MAXIMUM:
        return cg_select_nan(e, a, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, a, c, ""), a, c, ""));
    case IR_OP_MINIMUM:
        return cg_select_nan(e, a, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, a, c, ""), a, c, ""));
    case IR_OP_NEG: return LLVMBuildFNeg(b, a, "");
    case IR_OP_ABS: return cg_intrinsic(e, "llvm.fabs", &a, 1);
    case IR_OP_RELU: /* maxps(0, x): x unless 0 > x, so NaN stays NaN */
        return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, cg_splat(e, 0.0f), a, ""), cg_splat(e, 0.0f), a, "");
    case IR_OP_EXP: return cg_sleef(e, "exp", a, NULL);
    case IR_OP_LOG: return cg_sleef(e, "log", a, NULL);
    case IR_OP_SIN: return cg_sleef(e, "sin", a, NULL);
    case IR_OP_COS: return cg_sleef(e, "cos", a, NULL);
    case IR_OP_TANH: return cg_tanh(e, a);
    case IR_OP_ERF: return cg_sleef(e, "erf", a, NULL);
    case IR_OP_SQRT: return cg_intrinsic(e, "llvm.sqrt", &a, 1);
    case IR_OP_RSQRT: return LLVMBuildFDiv(b, cg_splat(e, 1.0f), cg_intrinsic(e, "llvm.sqrt", &a, 1), "");
    case IR_OP_RECIPROCAL: return LLVMBuildFDiv(b, cg_splat(e, 1.0f), a, "");
    case IR_OP_SIGMOID: return cg_sigmoid(e, a);
    case IR_OP_SILU: return LLVMBuildFMul(b, a, cg_sigmoid(e, a), "");
    case IR_OP_GELU: return cg_gelu(e, a);
    case IR_OP_GELU_TANH: return cg_gelu_tanh(e, a);
    case IR_OP_CONTIGUOUS: return a;
    default: EM_ASSERT(!"cg_lower let through an op emit.c cannot compute"); return NULL;
    }
}

/* ---- one loop nest ------------------------------------------------------------------ */


LLVMValueRef cg_elem_ptr(cg_emitter *e, LLVMValueRef p, LLVMValueRef idx) {
    return LLVMBuildGEP2(e->b, e->f32, p, &idx, 1, "");
}


LLVMValueRef cg_masked(cg_emitter *e, const char *name, LLVMTypeRef *over, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(e->m, id, over, 2);
    LLVMTypeRef fty = LLVMIntrinsicGetType(e->c, id, over, 2);
    return LLVMBuildCall2(e->b, fty, f, args, (unsigned)n, "");
}

/* The pointers of lanes i .. i+W-1 of a strided row. */
static LLVMValueRef lane_ptrs(cg_emitter *e, LLVMValueRef p, LLVMValueRef i, int64_t stride) {
    LLVMTypeRef vi64 = LLVMVectorType(e->i64, (unsigned)e->w);
    LLVMValueRef lanes[16], zero[16];
    for (int k = 0; k < e->w; k++) lanes[k] = cg_i64c(e, k * stride), zero[k] = LLVMConstInt(e->i32, 0, 0);
    LLVMValueRef first = LLVMBuildMul(e->b, i, cg_i64c(e, stride), "");
    LLVMValueRef idx = LLVMBuildInsertElement(e->b, LLVMGetUndef(vi64), first, LLVMConstInt(e->i32, 0, 0), "");
    idx = LLVMBuildShuffleVector(e->b, idx, LLVMGetUndef(vi64), LLVMConstVector(zero, (unsigned)e->w), "");
    idx = LLVMBuildAdd(e->b, idx, LLVMConstVector(lanes, (unsigned)e->w), "");
    return LLVMBuildGEP2(e->b, e->f32, p, &idx, 1, "");
}

static LLVMValueRef all_lanes(cg_emitter *e) {
    LLVMValueRef ones[16];
    for (int k = 0; k < e->w; k++) ones[k] = LLVMConstInt(LLVMInt1TypeInContext(e->c), 1, 0);
    return LLVMConstVector(ones, (unsigned)e->w);
}

/* Lanes i .. i+W-1 of a strided row: a gather (the same vector math then runs
 * on them, so a transposed operand gives the bits a contiguous one would). */
LLVMValueRef cg_gather(cg_emitter *e, LLVMValueRef p, LLVMValueRef i, int64_t stride, LLVMValueRef mask) {
    LLVMTypeRef over[2] = {e->vt, LLVMVectorType(e->ptr, (unsigned)e->w)};
    LLVMValueRef args[4] = {lane_ptrs(e, p, i, stride), LLVMConstInt(e->i32, 4, 0), mask ? mask : all_lanes(e),
                            cg_splat(e, 0.0f)};
    return cg_masked(e, "llvm.masked.gather", over, args, 4);
}

void cg_scatter(cg_emitter *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, int64_t stride, LLVMValueRef mask) {
    LLVMTypeRef over[2] = {e->vt, LLVMVectorType(e->ptr, (unsigned)e->w)};
    LLVMValueRef args[4] = {v, lane_ptrs(e, p, i, stride), LLVMConstInt(e->i32, 4, 0), mask ? mask : all_lanes(e)};
    cg_masked(e, "llvm.masked.scatter", over, args, 4);
}
