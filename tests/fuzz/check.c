/*
 * check.c — running a random program (gen.h) eagerly and through em_compile,
 * comparing the two, and shrinking a program that fails.
 *
 * em_compile wraps a real C function, so the program to run is a global that
 * fixed "model" functions replay; there is one model per count of arguments
 * (1..4) and outputs (1..3), each with the C type its signature string spells,
 * e.g. void model_2_1(em_tensor *, em_tensor *, em_tensor **) for
 * "void(tensor, tensor, tensor *)". Each program is a new em_compile (with
 * room for many recompiles), called three times: twice with the same leaves
 * (the first call traces and runs the new graph, the second is a cache hit),
 * then with new values in the same layouts (nothing but layouts may be baked
 * into the code). Each call must agree with the eager replay, and the
 * compiled function must have compiled once and never fallen back to eager.
 *
 * Shrinking is greedy and only keeps a change under which fz_check still fails
 * with the same status: drop an output; replace an op by one of its inputs of
 * the same dtype and shape; make a leaf dense, a weight an argument, an i32
 * leaf f32, an argument passed twice two tensors; shrink a size everywhere it appears (leaves,
 * reshape and expand shapes, slice bounds) or one leaf's dim to 1. Dead nodes
 * are dropped after every change. A change that makes the eager run fail is
 * not a program and is discarded.
 */
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *fz_status_name(fz_status s) {
    static const char *const n[] = {"ok", "invalid", "mismatch", "compiled call failed", "eager fallback"};
    return s <= FZ_FALLBACK ? n[s] : "?";
}

/* ---- comparing -------------------------------------------------------------------------- */

static double *values(const em_tensor *t) {
    em_tensor *d = em_cast((em_tensor *)t, EM_F64);
    int64_t n = em_numel(t);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!d || !v || em_read(d, v, (size_t)n * sizeof *v) != 0) free(v), v = NULL;
    em_release(d);
    return v;
}

int fz_compare(const em_tensor *got, const em_tensor *want, int k, char *why, size_t cap) {
    return fz_compare_jittered(got, want, NULL, k, why, cap);
}

int fz_compare_jittered(const em_tensor *got, const em_tensor *want, const em_tensor *jittered, int k, char *why,
                        size_t cap) {
    if (em_type(got) != em_type(want) || em_ndim(got) != em_ndim(want)) {
        snprintf(why, cap, "output %d: %s with %d dims, eager %s with %d dims", k, em_dtype_name(em_type(got)),
                 em_ndim(got), em_dtype_name(em_type(want)), em_ndim(want));
        return -1;
    }
    for (int i = 0; i < em_ndim(got); i++)
        if (em_shape(got)[i] != em_shape(want)[i]) {
            snprintf(why, cap, "output %d: dim %d is %lld, eager %lld", k, i, (long long)em_shape(got)[i],
                     (long long)em_shape(want)[i]);
            return -1;
        }
    bool exact = em_type(want) != EM_F32 && em_type(want) != EM_F64;
    double *g = values(got), *w = values(want), *jv = jittered ? values(jittered) : NULL;
    int status = g && w && (!jittered || jv) ? 0 : -1;
    if (status) snprintf(why, cap, "output %d: cannot read: %s", k, em_last_error());
    /* A sum that cancels (a matmul of terms of size 10 giving 0.07) is rounded
     * differently by differently blocked loops: the absolute tolerance grows
     * by 1e-5 of the largest magnitude in the output. */
    double big = 0;
    for (int64_t i = 0; status == 0 && i < em_numel(want); i++)
        if (isfinite(w[i]) && fabs(w[i]) > big) big = fabs(w[i]);
    for (int64_t i = 0; status == 0 && i < em_numel(want); i++) {
        double a = g[i], b = w[i], moved = jv && isfinite(jv[i]) ? 8 * fabs(jv[i] - b) : 0;
        bool ok = exact ? a == b
                  : isnan(b) ? isnan(a)
                  : isinf(b) ? a == b
                  : fabs(a - b) <= 1e-5 + 1e-5 * big + 1e-4 * fabs(b) + moved;
        if (!ok) {
            int64_t idx[EM_MAX_DIMS], r = i;
            for (int d = em_ndim(want) - 1; d >= 0; d--) idx[d] = r % em_shape(want)[d], r /= em_shape(want)[d];
            int len = snprintf(why, cap, "output %d at [", k);
            for (int d = 0; d < em_ndim(want) && len < (int)cap; d++)
                len += snprintf(why + len, cap - (size_t)len, "%s%lld", d ? ", " : "", (long long)idx[d]);
            if (len < (int)cap) snprintf(why + len, cap - (size_t)len, "] (flat %lld): compiled %.9g, eager %.9g",
                                         (long long)i, a, b);
            status = -1;
        }
    }
    free(g), free(w), free(jv);
    return status;
}

/* ---- the models ------------------------------------------------------------------------- */

static const fz_prog *g_prog;  /* what the models replay */
static em_tensor **g_params;   /* its weights, reached through this global */

static void model_body(em_tensor **in, em_tensor ***out) {
    em_tensor *res[FZ_MAX_OUTS] = {0};
    fz_replay(g_prog, in, g_params, res);
    for (int k = 0; k < g_prog->nout; k++) *out[k] = res[k];
}

#define T em_tensor *
#define O em_tensor **
#define PA1 T a0
#define PA2 PA1, T a1
#define PA3 PA2, T a2
#define PA4 PA3, T a3
#define PO1 O o0
#define PO2 PO1, O o1
#define PO3 PO2, O o2
#define VA1 a0
#define VA2 VA1, a1
#define VA3 VA2, a2
#define VA4 VA3, a3
#define VO1 o0
#define VO2 VO1, o1
#define VO3 VO2, o2
#define CA1 in[0]
#define CA2 CA1, in[1]
#define CA3 CA2, in[2]
#define CA4 CA3, in[3]
#define CO1 &out[0]
#define CO2 CO1, &out[1]
#define CO3 CO2, &out[2]
#define VARIANT(a, o)                                                                 \
    static void model_##a##_##o(PA##a, PO##o) {                                       \
        T in[FZ_MAX_ARGS] = {VA##a};                                                  \
        O out[FZ_MAX_OUTS] = {VO##o};                                                 \
        model_body(in, out);                                                          \
    }                                                                                 \
    static void call_##a##_##o(void *f, T *in, T *out) { ((void (*)(PA##a, PO##o))f)(CA##a, CO##o); }
#define VARIANTS(a) VARIANT(a, 1) VARIANT(a, 2) VARIANT(a, 3)
VARIANTS(1)
VARIANTS(2)
VARIANTS(3)
VARIANTS(4)

typedef void (*caller)(void *f, T *in, T *out);
#define ROW(a) {{(void *)model_##a##_1, call_##a##_1}, {(void *)model_##a##_2, call_##a##_2}, \
                {(void *)model_##a##_3, call_##a##_3}}
static const struct {
    void *model;
    caller call;
} variants[FZ_MAX_ARGS][FZ_MAX_OUTS] = {ROW(1), ROW(2), ROW(3), ROW(4)};

/* ---- checking ---------------------------------------------------------------------------- */

/* Eager's results with the noise of another summation order added to every
 * GEMM and sum (fz_gemm_noise), under NOISE_PATTERNS sign patterns: out[k] is
 * want[k] moved, at each element, by the largest movement any pattern made
 * (NULL entries when a replay fails). One pattern can leave an element of a
 * softmax nearly still by chance (its logit's noise close to the weighted mean
 * of the others'): seed 4693, a softmax of logits near 80 after two GEMMs,
 * failed so with eager on OpenBLAS's SSE3 kernels while compiled was as close
 * to a double-precision reference as eager. */
enum { NOISE_PATTERNS = 4 };

static void eager_jittered(const fz_prog *p, em_tensor **args, em_tensor **params, em_tensor *const *want,
                           em_tensor **out) {
    em_tensor *far[FZ_MAX_OUTS] = {0};
    bool ok = true;
    fz_gemm_noise = 1.0;
    for (unsigned s = 0; s < NOISE_PATTERNS && ok; s++) {
        em_tensor *r[FZ_MAX_OUTS] = {0};
        fz_noise_pattern = s;
        ok = fz_replay(p, args, params, r) == 0;
        for (int k = 0; k < p->nout && ok; k++) {
            if (em_type(r[k]) != EM_F32 && em_type(r[k]) != EM_F64) continue; /* compared exactly */
            em_tensor *d = em_sub(r[k], want[k]), *moved = em_abs(d);
            em_release(d);
            em_tensor *m = far[k] ? em_maximum(far[k], moved) : em_retain(moved);
            em_release(moved), em_release(far[k]);
            ok = (far[k] = m) != NULL;
        }
        for (int k = 0; k < FZ_MAX_OUTS; k++) em_release(r[k]);
    }
    fz_gemm_noise = 0.0, fz_noise_pattern = 0;
    for (int k = 0; k < p->nout; k++) {
        out[k] = ok ? (far[k] ? em_add(want[k], far[k]) : em_retain(want[k])) : NULL;
        ok &= out[k] != NULL;
        em_release(far[k]);
    }
    if (!ok)
        for (int k = 0; k < FZ_MAX_OUTS; k++) em_release(out[k]), out[k] = NULL;
    em_clear_error();
}

/* The compiled function of p called three times: twice with args (a trace,
 * then a cache hit), then with args2, new values in the same layouts; each
 * compared with the eager results want and want2. */
static fz_status run_compiled(const fz_prog *p, em_tensor **args, em_tensor **want, em_tensor **args2,
                              em_tensor **want2, em_tensor **jit, em_tensor **jit2, char *why, size_t cap) {
    char sig[128];
    int len = snprintf(sig, sizeof sig, "void(");
    for (int i = 0; i < p->nargs + p->nout; i++)
        len += snprintf(sig + len, sizeof sig - (size_t)len, "%stensor%s", i ? ", " : "", i < p->nargs ? "" : " *");
    snprintf(sig + len, sizeof sig - (size_t)len, ")");
    em_options opts = {.max_recompiles = 64, .name = "fuzz"};
    void *fast = em_compile(variants[p->nargs - 1][p->nout - 1].model, sig, &opts);
    if (!fast) {
        snprintf(why, cap, "em_compile(%s): %s", sig, em_last_error());
        return FZ_COMPILED_FAIL;
    }
    fz_status st = FZ_OK;
    for (int call = 0; call < 3 && st == FZ_OK; call++) {
        em_tensor *got[FZ_MAX_OUTS] = {0};
        em_clear_error();
        variants[p->nargs - 1][p->nout - 1].call(fast, call < 2 ? args : args2, got);
        for (int k = 0; k < p->nout && st == FZ_OK; k++) {
            char diff[400];
            if (!got[k]) {
                snprintf(why, cap, "call %d: output %d is NULL: %s", call + 1, k, em_last_error());
                st = FZ_COMPILED_FAIL;
            } else if (fz_compare_jittered(got[k], (call < 2 ? want : want2)[k], jit ? (call < 2 ? jit : jit2)[k] : NULL,
                                           k, diff, sizeof diff) != 0) {
                snprintf(why, cap, "call %d%s: %s", call + 1, call < 2 ? "" : " (new values)", diff);
                st = FZ_MISMATCH;
            }
        }
        for (int k = 0; k < p->nout; k++) em_release(got[k]);
    }
    em_stats s;
    if (st == FZ_OK && em_compiled_stats(fast, &s) == 0 && (s.eager_fallbacks || s.compiles != 1)) {
        snprintf(why, cap, "%llu of %llu calls ran eagerly, %llu compiles", (unsigned long long)s.eager_fallbacks,
                 (unsigned long long)s.calls, (unsigned long long)s.compiles);
        st = FZ_FALLBACK;
    }
    em_compiled_free(fast);
    return st;
}

fz_status fz_check(const fz_prog *p, int threads, char *why, size_t cap) {
    why[0] = 0;
    if (p->nargs < 1 || p->nargs > FZ_MAX_ARGS || p->nout < 1 || p->nout > FZ_MAX_OUTS) {
        snprintf(why, cap, "%d arguments, %d outputs", p->nargs, p->nout);
        return FZ_INVALID;
    }
    int prev = em_get_threads();
    if (threads > 0) em_set_threads(threads);
    em_tensor *args[FZ_MAX_NODES] = {0}, *params[FZ_MAX_NODES] = {0}, *want[FZ_MAX_OUTS] = {0};
    em_tensor *args2[FZ_MAX_NODES] = {0}, *want2[FZ_MAX_OUTS] = {0};
    fz_status st = FZ_INVALID;
    if (fz_make_leaves(p, args, params, 0) == 0 && fz_make_leaves(p, args2, NULL, 1000003) == 0 &&
        fz_replay(p, args, params, want) == 0 && fz_replay(p, args2, params, want2) == 0) {
        g_prog = p, g_params = params;
        st = run_compiled(p, args, want, args2, want2, NULL, NULL, why, cap);
        if (st == FZ_MISMATCH) { /* again, with tolerances widened where eager itself is that sensitive */
            em_tensor *jit[FZ_MAX_OUTS] = {0}, *jit2[FZ_MAX_OUTS] = {0};
            eager_jittered(p, args, params, want, jit);
            eager_jittered(p, args2, params, want2, jit2);
            bool have = true;
            for (int k = 0; k < p->nout; k++) have &= jit[k] && jit2[k];
            if (have) st = run_compiled(p, args, want, args2, want2, jit, jit2, why, cap);
            for (int k = 0; k < FZ_MAX_OUTS; k++) em_release(jit[k]), em_release(jit2[k]);
        }
        g_prog = NULL, g_params = NULL;
    } else {
        snprintf(why, cap, "eager: %s", em_last_error());
    }
    for (int k = 0; k < FZ_MAX_OUTS; k++) em_release(want[k]), em_release(want2[k]);
    for (int i = 0; i < FZ_MAX_NODES; i++) em_release(args[i]), em_release(args2[i]), em_release(params[i]);
    if (threads > 0) em_set_threads(prev);
    em_clear_error();
    return st;
}

/* ---- shrinking ------------------------------------------------------------------------------ */

/* Drops nodes no output reaches (keeping one argument), renumbers the leaves. */
static void compact(fz_prog *p) {
    bool live[FZ_MAX_NODES] = {0};
    for (int k = 0; k < p->nout; k++) live[p->outs[k]] = true;
    for (int i = p->n - 1; i >= 0; i--)
        if (live[i])
            for (int j = 0; j < p->nodes[i].nin; j++)
                if (p->nodes[i].in[j] >= 0) live[p->nodes[i].in[j]] = true;
    bool any_arg = false;
    for (int i = 0; i < p->n; i++) any_arg |= live[i] && p->nodes[i].op == FZ_ARG;
    for (int i = 0; i < p->n && !any_arg; i++)
        if (p->nodes[i].op == FZ_ARG) live[i] = any_arg = true;
    int map[FZ_MAX_NODES], rank[FZ_MAX_NODES] = {0}, n = 0, nargs = 0, nparams = 0;
    for (int i = 0; i < p->n; i++) /* leaves keep their relative order */
        for (int j = 0; j < p->n; j++)
            rank[i] += live[j] && p->nodes[j].op == p->nodes[i].op && p->nodes[j].leaf < p->nodes[i].leaf;
    for (int i = 0; i < p->n; i++) {
        map[i] = -1;
        if (!live[i]) continue;
        fz_node *m = &p->nodes[i];
        if (m->op == FZ_ARG || m->op == FZ_PARAM) {
            m->leaf = rank[i];
            m->op == FZ_ARG ? nargs++ : nparams++;
        }
        for (int j = 0; j < m->nin; j++)
            if (m->in[j] >= 0) m->in[j] = map[m->in[j]];
        map[i] = n;
        p->nodes[n++] = *m;
    }
    for (int k = 0; k < p->nout; k++) p->outs[k] = map[p->outs[k]];
    p->n = n, p->nargs = nargs, p->nparams = nparams;
}

typedef struct shrinker {
    fz_prog *p;
    fz_status want;
    int threads;
    int wins, tries;
} shrinker;

enum { MAX_TRIES = 600 };

/* Keeps c (compacted) when it is valid and still fails the same way. */
static bool attempt(shrinker *S, fz_prog *c) {
    if (S->tries >= MAX_TRIES) return false;
    compact(c);
    for (int k = 0; k < c->nout; k++) {
        if (c->nodes[c->outs[k]].op <= FZ_CONST) return false;
        for (int j = 0; j < k; j++)
            if (c->outs[j] == c->outs[k]) return false;
    }
    if (fz_types(c) != 0) return false;
    S->tries++;
    char why[512];
    fz_status got = fz_check(c, S->threads, why, sizeof why);
    if (got != S->want) return false;
    *S->p = *c;
    S->wins++;
    return true;
}

static bool drop_outputs(shrinker *S, fz_prog *c) {
    for (int k = 0; k < S->p->nout && S->p->nout > 1; k++) {
        *c = *S->p;
        memmove(c->outs + k, c->outs + k + 1, (size_t)(c->nout - k - 1) * sizeof *c->outs);
        c->nout--;
        if (attempt(S, c)) return true;
    }
    return false;
}

static bool same_type(const fz_node *a, const fz_node *b) {
    return a->t_dtype == b->t_dtype && a->t_ndim == b->t_ndim &&
           !memcmp(a->t_shape, b->t_shape, (size_t)a->t_ndim * sizeof(int64_t));
}

/* Replaces uses of node i by r (an earlier node). */
static void replace(fz_prog *c, int i, int r) {
    for (int j = i + 1; j < c->n; j++)
        for (int k = 0; k < c->nodes[j].nin; k++)
            if (c->nodes[j].in[k] == i) c->nodes[j].in[k] = r;
    for (int k = 0; k < c->nout; k++)
        if (c->outs[k] == i) c->outs[k] = r;
}

static bool bypass_ops(shrinker *S, fz_prog *c) {
    for (int i = S->p->n - 1; i >= 0; i--) {
        const fz_node *m = &S->p->nodes[i];
        if (m->op <= FZ_CONST) continue;
        for (int k = 0; k < m->nin; k++) {
            int r = m->in[k];
            if (r < 0 || !same_type(&S->p->nodes[r], m)) continue;
            *c = *S->p;
            replace(c, i, r);
            if (attempt(S, c)) return true;
        }
        if (m->op == FZ_LAYER_NORM || m->op == FZ_RMS_NORM || m->op == FZ_LINEAR) /* drop a weight */
            for (int k = 1; k < m->nin; k++) {
                if (m->in[k] < 0) continue;
                *c = *S->p;
                c->nodes[i].in[k] = -1;
                if (attempt(S, c)) return true;
            }
    }
    return false;
}

static bool simplify_leaves(shrinker *S, fz_prog *c) {
    for (int i = 0; i < S->p->n; i++) {
        const fz_node *m = &S->p->nodes[i];
        if (m->op != FZ_ARG && m->op != FZ_PARAM) continue;
        if (m->same) {
            *c = *S->p;
            c->nodes[i].same = 0;
            if (attempt(S, c)) return true;
        }
        if (m->layout != FZ_DENSE) {
            *c = *S->p;
            c->nodes[i].layout = FZ_DENSE;
            if (attempt(S, c)) return true;
        }
        if (m->dtype == EM_I32) {
            *c = *S->p;
            c->nodes[i].dtype = EM_F32;
            if (attempt(S, c)) return true;
        }
        if (m->op == FZ_PARAM && S->p->nargs < FZ_MAX_ARGS) {
            *c = *S->p;
            c->nodes[i].op = FZ_ARG, c->nodes[i].leaf = FZ_MAX_NODES; /* compact renumbers */
            if (attempt(S, c)) return true;
        }
    }
    return false;
}

/* Size v becomes to everywhere: leaves, reshape/expand shapes, slice bounds. */
static void resize(fz_prog *c, int64_t v, int64_t to) {
    for (int i = 0; i < c->n; i++) {
        fz_node *m = &c->nodes[i];
        bool shape = m->op == FZ_ARG || m->op == FZ_PARAM || m->op == FZ_RESHAPE || m->op == FZ_EXPAND;
        for (int d = 0; shape && d < m->ndim; d++)
            if (m->dims[d] == v) m->dims[d] = to;
        if (m->op == FZ_SLICE && m->end == v) m->end = to;
        if (m->op == FZ_SLICE && m->start >= to) m->start = 0;
    }
}

static bool shrink_sizes(shrinker *S, fz_prog *c) {
    for (int i = 0; i < S->p->n; i++) {
        const fz_node *m = &S->p->nodes[i];
        if (m->op != FZ_ARG && m->op != FZ_PARAM) continue;
        for (int d = 0; d < m->ndim; d++) {
            int64_t v = m->dims[d];
            const int64_t to[] = {1, 2, 3, 4, v / 2, v - 1};
            for (int t = 0; t < 6; t++) {
                if (to[t] < 1 || to[t] >= v) continue;
                *c = *S->p;
                resize(c, v, to[t]);
                if (attempt(S, c)) return true;
            }
            if (v > 1) {
                *c = *S->p;
                c->nodes[i].dims[d] = 1;
                if (attempt(S, c)) return true;
            }
        }
    }
    return false;
}

int fz_shrink(fz_prog *p, fz_status s, int threads) {
    shrinker S = {.p = p, .want = s, .threads = threads};
    fz_prog *c = malloc(sizeof *c);
    if (!c) return 0;
    *c = *p;
    compact(c);
    if (fz_types(c) == 0) {
        char why[512];
        if (fz_check(c, threads, why, sizeof why) == s) *p = *c;
    }
    while (drop_outputs(&S, c) || bypass_ops(&S, c) || simplify_leaves(&S, c) || shrink_sizes(&S, c)) {
    }
    free(c);
    fz_types(p);
    return S.wins;
}

/* ---- batches ------------------------------------------------------------------------------ */

int fz_run_batch(uint64_t seed, int n, int threads, FILE *err, long *ops) {
    fz_prog *p = malloc(sizeof *p);
    int failures = 0;
    long total = 0;
    for (int i = 0; p && i < n; i++) {
        fz_generate(p, seed + (uint64_t)i);
        total += fz_ops(p);
        char why[512], note[1024];
        fz_status st = fz_check(p, threads, why, sizeof why);
        if (st == FZ_OK) continue;
        if (st == FZ_INVALID) { /* the generator only keeps ops that ran eagerly */
            if (err) fprintf(err, "fuzz: seed %llu: generated an invalid program: %s\n",
                             (unsigned long long)p->seed, why);
            failures++;
            continue;
        }
        failures++;
        if (!err) continue;
        fprintf(err, "fuzz: seed %llu (threads %d): %s: %s; shrinking %d ops...\n", (unsigned long long)p->seed,
                threads, fz_status_name(st), why, fz_ops(p));
        fz_shrink(p, st, threads);
        fz_check(p, threads, why, sizeof why);
        snprintf(note, sizeof note, "%s (threads %d): %s", fz_status_name(st), threads, why);
        fz_print(p, note, err);
        fflush(err);
    }
    free(p);
    if (ops) *ops = total;
    return failures;
}
