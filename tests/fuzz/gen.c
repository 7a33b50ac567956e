/*
 * gen.c — random programs of public ops (gen.h): making their leaves,
 * replaying them with em_* calls, generating them, and printing them as C.
 * Running them eagerly against em_compile, and shrinking a failing one, is in
 * check.c.
 *
 * The generator builds a program one node at a time and runs every new node
 * eagerly on the real leaves as it goes: an op the library rejects (shapes
 * that do not broadcast, a softmax over bools) or one whose result is empty
 * or too big is simply dropped, so the generator needs no shape rules of its
 * own and every program it returns is valid eagerly. Sizes are drawn from
 * {1, 2, 3, 4, 15, 16, 17, 33}: around the vector widths and the masked tails
 * of the generated code. Leaves are tensor arguments (at most four, the
 * strides of which are baked into the compiled code) or weights in a global,
 * laid out dense, transposed, as a stepped slice of a bigger tensor, or
 * expanded from a dim of 1.
 *
 * Invariants of a program: inputs of node i are nodes < i; outputs are
 * distinct op nodes (never a leaf or a constant: a model returns new
 * references); arguments are numbered 0.. in node order, weights likewise.
 */
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SH(...) ((int64_t[]){__VA_ARGS__})

enum { MAX_NUMEL = 2048, BIG_NUMEL = 1 << 17, MAX_NDIM = 5, MAX_PARAMS = 16 };

/* ---- leaves --------------------------------------------------------------------------- */

em_tensor *fz_leaf(int nd, const int64_t *shape, uint64_t seed, int ints) {
    em_scope_begin();
    em_tensor *u = em_sub(em_mul(em_rand(nd, shape, seed), em_scalar(EM_F32, 2)), em_scalar(EM_F32, 1));
    if (ints) u = em_cast(em_mul(u, em_scalar(EM_F32, 4.5)), EM_I32);
    em_tensor *r = em_keep(u);
    em_scope_end();
    return r;
}

/* The same, as fz_print writes it. */
static const char leaf_src[] =
    "static em_tensor *fz_leaf(int nd, const int64_t *shape, uint64_t seed, int ints) {\n"
    "    em_scope_begin();\n"
    "    em_tensor *u = em_sub(em_mul(em_rand(nd, shape, seed), em_scalar(EM_F32, 2)), em_scalar(EM_F32, 1));\n"
    "    if (ints) u = em_cast(em_mul(u, em_scalar(EM_F32, 4.5)), EM_I32);\n"
    "    em_tensor *r = em_keep(u);\n"
    "    em_scope_end();\n"
    "    return r;\n"
    "}\n";

/* The dense tensor a leaf is a view of. */
static void base_shape(const fz_node *n, int64_t *b) {
    memcpy(b, n->dims, sizeof n->dims);
    switch (n->layout) {
    case FZ_TRANSPOSED: b[n->la] = n->dims[n->lb], b[n->lb] = n->dims[n->la]; break;
    case FZ_SLICED: b[n->la] = (n->dims[n->la] - 1) * n->lb + 1 + n->lc + 1; break;
    case FZ_EXPANDED: b[n->la] = 1; break;
    default: break;
    }
}

em_tensor *fz_make_leaf(const fz_node *n) {
    int64_t b[EM_MAX_DIMS];
    base_shape(n, b);
    em_scope_begin();
    em_tensor *t = fz_leaf(n->ndim, b, n->seed, n->dtype == EM_I32);
    switch (n->layout) {
    case FZ_TRANSPOSED: t = em_transpose(t, n->la, n->lb); break;
    case FZ_SLICED: t = em_slice(t, n->la, n->lc, n->lc + (n->dims[n->la] - 1) * n->lb + 1, n->lb); break;
    case FZ_EXPANDED: t = em_expand(t, n->ndim, n->dims); break;
    default: break;
    }
    em_tensor *r = em_keep(t);
    em_scope_end();
    return r;
}

/* ---- replaying ---------------------------------------------------------------------- */

static em_tensor *sc(double v) { return em_scalar(EM_F32, v); }

double fz_gemm_noise;
unsigned fz_noise_pattern;

/* The sign of element i's noise (+1 or -1): a hash of i, salt and the pattern. */
static float noise_sign(int64_t i, uint64_t salt) {
    uint64_t h = ((uint64_t)i + salt + 0x632BE59BD9B4E019ull * fz_noise_pattern) * 0x9E3779B97F4A7C15ull;
    return (h ^ (h >> 29)) >> 63 ? 1.0f : -1.0f;
}

/* r (= x @ w, or x w^T when linear) plus, at each element, +-fz_gemm_noise *
 * sqrt(K) * 2^-24 * (|x| @ |w|) with a sign from a hash of its index and
 * fz_noise_pattern: the
 * size of the difference another summation order makes (a random walk of
 * rounding errors no larger than the sum of magnitudes), for fz_check's
 * estimate of how much a program amplifies it. */
static em_tensor *gemm_noise(em_tensor *r, em_tensor *x, em_tensor *w, bool linear) {
    if (!r || fz_gemm_noise <= 0 || em_type(r) != EM_F32) return r;
    int64_t n = em_numel(r), K = em_dim(x, -1);
    float *sg = malloc((size_t)(n > 0 ? n : 1) * sizeof *sg);
    if (!sg) return NULL;
    for (int64_t i = 0; i < n; i++) sg[i] = noise_sign(i, 1);
    em_tensor *sign = em_from_data(EM_F32, em_ndim(r), em_shape(r), sg);
    free(sg);
    em_tensor *ax = em_abs(x), *aw = em_abs(w);
    em_tensor *mag = linear ? em_linear(ax, aw, NULL) : em_matmul(ax, aw);
    double scale = fz_gemm_noise * sqrt((double)K) * ldexp(1.0, -24);
    return em_add(r, em_mul(em_mul(sign, mag), sc(scale)));
}

/* r (= sum or mean of x over axis) plus, at each element, +-fz_gemm_noise *
 * sqrt(n) * 2^-24 * (the same reduction of |x|), signed as gemm_noise: the
 * difference another summation order makes in a sum that cancels (generated
 * row sums add in other blocks than the runtime's pairwise sums). */
static em_tensor *sum_noise(em_tensor *r, em_tensor *x, const fz_node *n, bool mean) {
    if (!r || fz_gemm_noise <= 0 || em_type(r) != EM_F32) return r;
    int64_t m = em_numel(r), len = em_ndim(x) ? em_dim(x, n->axis) : 1;
    float *sg = malloc((size_t)(m > 0 ? m : 1) * sizeof *sg);
    if (!sg) return NULL;
    for (int64_t i = 0; i < m; i++) sg[i] = noise_sign(i, 7);
    em_tensor *sign = em_from_data(EM_F32, em_ndim(r), em_shape(r), sg);
    free(sg);
    em_tensor *mag = mean ? em_mean(em_abs(x), n->axis, n->keepdim) : em_sum(em_abs(x), n->axis, n->keepdim);
    double scale = fz_gemm_noise * sqrt((double)(len > 0 ? len : 1)) * ldexp(1.0, -24);
    return em_add(r, em_mul(em_mul(sign, mag), sc(scale)));
}

/* Node n of p on the values so far; a new reference owned by the open scope,
 * or a leaf (borrowed). */
static em_tensor *eval(const fz_node *n, em_tensor *const *v, em_tensor *const *args,
                       em_tensor *const *params) {
    em_tensor *x = n->nin > 0 && n->in[0] >= 0 ? v[n->in[0]] : NULL;
    em_tensor *y = n->nin > 1 && n->in[1] >= 0 ? v[n->in[1]] : NULL;
    em_tensor *z = n->nin > 2 && n->in[2] >= 0 ? v[n->in[2]] : NULL;
    int perm[EM_MAX_DIMS];
    switch (n->op) {
    case FZ_ARG: return args[n->leaf];
    case FZ_PARAM: return params[n->leaf];
    case FZ_CONST: return sc(n->v);
    case FZ_ADD: return em_add(x, y);
    case FZ_SUB: return em_sub(x, y);
    case FZ_MUL: return em_mul(x, y);
    case FZ_DIV: return em_div(x, em_add(em_abs(y), sc(0.5)));
    case FZ_MAXIMUM: return em_maximum(x, y);
    case FZ_MINIMUM: return em_minimum(x, y);
    case FZ_EXP: return em_exp(em_tanh(x));
    case FZ_TANH: return em_tanh(x);
    case FZ_NEG: return em_neg(x);
    case FZ_ABS: return em_abs(x);
    case FZ_RELU: return em_relu(x);
    case FZ_SIGMOID: return em_sigmoid(x);
    case FZ_GELU: return em_gelu(x);
    case FZ_GELU_TANH: return em_gelu_tanh(x);
    case FZ_SILU: return em_silu(x);
    case FZ_SQRT: return em_sqrt(em_add(em_abs(x), sc(0.01)));
    case FZ_LOG: return em_log(em_add(em_abs(x), sc(1)));
    case FZ_LT: return em_lt(x, y);
    case FZ_LE: return em_le(x, y);
    case FZ_GT: return em_gt(x, y);
    case FZ_GE: return em_ge(x, y);
    case FZ_WHERE: return em_where(x, y, z);
    case FZ_SUM: return sum_noise(em_sum(x, n->axis, n->keepdim), x, n, false);
    case FZ_MEAN: return sum_noise(em_mean(x, n->axis, n->keepdim), x, n, true);
    case FZ_MAX: return em_max(x, n->axis, n->keepdim);
    case FZ_MIN: return em_min(x, n->axis, n->keepdim);
    case FZ_SOFTMAX: return em_softmax(x, n->axis);
    case FZ_LOG_SOFTMAX: return em_log_softmax(x, n->axis);
    case FZ_LAYER_NORM: return em_layer_norm(x, y, z, n->v);
    case FZ_RMS_NORM: return em_rms_norm(x, y, n->v);
    case FZ_MATMUL: return gemm_noise(em_matmul(x, y), x, y, false);
    case FZ_LINEAR: return gemm_noise(em_linear(x, y, z), x, y, true);
    case FZ_RESHAPE: return em_reshape(x, n->ndim, n->dims);
    case FZ_PERMUTE:
        for (int i = 0; i < n->ndim; i++) perm[i] = (int)n->dims[i];
        return em_permute(x, perm);
    case FZ_TRANSPOSE: return em_transpose(x, n->axis, n->axis2);
    case FZ_SLICE: return em_slice(x, n->axis, n->start, n->end, n->step);
    case FZ_EXPAND: return em_expand(x, n->ndim, n->dims);
    case FZ_UNSQUEEZE: return em_unsqueeze(x, n->axis);
    case FZ_SQUEEZE: return em_squeeze(x, n->axis);
    case FZ_CONTIGUOUS: return em_contiguous(x);
    case FZ_CONCAT: return em_concat((em_tensor *[]){x, y, z}, n->nin, n->axis);
    case FZ_CAST: return em_cast(x, EM_F32);
    case FZ_OP_COUNT: break;
    }
    return NULL;
}

int fz_replay(const fz_prog *p, em_tensor *const *args, em_tensor *const *params, em_tensor **outs) {
    em_tensor *v[FZ_MAX_NODES];
    int status = 0;
    em_scope_begin();
    for (int i = 0; i < p->n && status == 0; i++)
        if (!(v[i] = eval(&p->nodes[i], v, args, params))) status = -1;
    for (int k = 0; k < p->nout; k++) outs[k] = status == 0 ? em_keep(v[p->outs[k]]) : NULL;
    em_scope_end();
    return status;
}

int fz_make_leaves(const fz_prog *p, em_tensor **args, em_tensor **params, uint64_t salt) {
    int status = 0;
    for (int i = 0; i < p->n; i++) {
        const fz_node *n = &p->nodes[i];
        if ((n->op != FZ_ARG && n->op != FZ_PARAM) || (n->op == FZ_PARAM && !params)) continue;
        fz_node m = *n;
        m.seed += salt;
        em_tensor *t = n->same ? em_retain(args[p->nodes[n->same - 1].leaf]) : fz_make_leaf(&m);
        if (!t) status = -1;
        (n->op == FZ_ARG ? args : params)[n->leaf] = t;
    }
    return status;
}

static void record_type(fz_node *n, const em_tensor *t) {
    n->t_dtype = em_type(t);
    n->t_ndim = em_ndim(t);
    memcpy(n->t_shape, em_shape(t), (size_t)n->t_ndim * sizeof(int64_t));
}

int fz_types(fz_prog *p) {
    em_tensor *args[FZ_MAX_NODES] = {0}, *params[FZ_MAX_NODES] = {0}, *v[FZ_MAX_NODES];
    int status = fz_make_leaves(p, args, params, 0);
    em_scope_begin();
    for (int i = 0; i < p->n && status == 0; i++) {
        if (!(v[i] = eval(&p->nodes[i], v, args, params))) status = -1;
        else record_type(&p->nodes[i], v[i]);
    }
    em_scope_end();
    for (int i = 0; i < FZ_MAX_NODES; i++) em_release(args[i]), em_release(params[i]);
    em_clear_error();
    return status;
}

int fz_ops(const fz_prog *p) {
    int k = 0;
    for (int i = 0; i < p->n; i++) k += p->nodes[i].op > FZ_CONST;
    return k;
}

/* ---- generating ---------------------------------------------------------------------- */

typedef struct gen {
    uint64_t rng;
    fz_prog *p;
    em_tensor *v[FZ_MAX_NODES]; /* eager values (owned by the generator's scope, leaves too) */
    em_tensor *args[FZ_MAX_ARGS], *params[MAX_PARAMS];
    bool dyn[FZ_MAX_NODES]; /* depends on an argument (else the compiler folds it) */
    bool big;               /* sizes up to 1024 and results up to BIG_NUMEL elements */
} gen;

static uint64_t next(gen *G) { /* splitmix64 */
    uint64_t z = (G->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static int rnd(gen *G, int n) { return n <= 1 ? 0 : (int)(next(G) % (uint64_t)n); }
static bool chance(gen *G, double p) { return (double)(next(G) >> 11) * 0x1.0p-53 < p; }

static int64_t rnd_dim(gen *G) {
    static const int64_t dims[] = {1, 3, 15, 16, 17, 33, 2, 4, 3, 17};
    static const int64_t big[] = {1, 3, 17, 64, 129, 256, 257, 511, 1024, 33};
    return G->big ? big[rnd(G, 10)] : dims[rnd(G, 10)];
}

static int64_t numel(int nd, const int64_t *s) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

/* Appends n and runs it eagerly: its index, or -1 (dropped) when it fails or
 * its result is empty, too big or has too many dims. */
static int add(gen *G, fz_node n) {
    fz_prog *p = G->p;
    if (p->n >= FZ_MAX_NODES) return -1;
    for (int i = n.nin; i < FZ_MAX_IN; i++) n.in[i] = -1;
    fz_node *at = &p->nodes[p->n];
    *at = n;
    em_tensor *t = eval(at, G->v, G->args, G->params);
    if (!t || em_numel(t) == 0 || em_numel(t) > (G->big ? BIG_NUMEL : MAX_NUMEL) || em_ndim(t) > MAX_NDIM) {
        em_clear_error();
        return -1;
    }
    G->v[p->n] = t;
    record_type(at, t);
    G->dyn[p->n] = at->op == FZ_ARG;
    for (int i = 0; i < at->nin; i++) G->dyn[p->n] |= at->in[i] >= 0 && G->dyn[at->in[i]];
    return p->n++;
}

static const fz_node *node(gen *G, int i) { return &G->p->nodes[i]; }

/* A new leaf of shape (nd, s) and dtype dt: an argument while there is room
 * and the dice say so (always for the first), else a weight. */
static int new_leaf(gen *G, int nd, const int64_t *s, em_dtype dt) {
    fz_prog *p = G->p;
    fz_node n = {.nin = 0, .ndim = nd, .dtype = dt, .seed = next(G) % 100000};
    memcpy(n.dims, s, (size_t)nd * sizeof *s);
    bool arg = p->nargs == 0 || (p->nargs < FZ_MAX_ARGS && chance(G, 0.6));
    if (!arg && p->nparams >= MAX_PARAMS) return -1;
    n.op = arg ? FZ_ARG : FZ_PARAM;
    n.leaf = arg ? p->nargs : p->nparams;
    for (int i = 0; arg && i < p->n && chance(G, 0.3); i++) { /* the same tensor passed twice */
        const fz_node *o = &p->nodes[i];
        if (o->op == FZ_ARG && !o->same && o->dtype == dt && o->ndim == nd &&
            !memcmp(o->dims, s, (size_t)nd * sizeof *s)) {
            fz_node m = *o;
            m.leaf = n.leaf, m.same = i + 1;
            G->args[m.leaf] = G->args[o->leaf]; /* borrowed: the first one's scope owns it */
            int j = add(G, m);
            if (j < 0) return -1;
            p->nargs++;
            return j;
        }
    }
    int k = rnd(G, 10);
    if (k < 3 && nd >= 2) {
        n.layout = FZ_TRANSPOSED, n.la = rnd(G, nd), n.lb = rnd(G, nd - 1);
        if (n.lb >= n.la) n.lb++;
    } else if (k < 6 && nd >= 1) {
        n.layout = FZ_SLICED, n.la = rnd(G, nd), n.lb = 1 + rnd(G, 3), n.lc = rnd(G, 3);
    } else if (k < 7 && nd >= 1) {
        n.layout = FZ_EXPANDED, n.la = rnd(G, nd);
    }
    em_tensor *t = fz_make_leaf(&n);
    if (!t) return -1;
    em_tensor **slot = arg ? &G->args[n.leaf] : &G->params[n.leaf];
    *slot = t; /* owned by the generator's scope */
    int i = add(G, n);
    if (i < 0) return -1;
    arg ? p->nargs++ : p->nparams++;
    return i;
}

/* A float leaf, or an integer one cast to f32. */
static int new_float_leaf(gen *G, int nd, const int64_t *s) {
    if (!chance(G, 0.06)) return new_leaf(G, nd, s, EM_F32);
    int i = new_leaf(G, nd, s, EM_I32);
    return i < 0 ? -1 : add(G, (fz_node){.op = FZ_CAST, .nin = 1, .in = {i}});
}

/* A random earlier value that is not bool, not a constant; recent ones more
 * often, and mostly one that depends on an argument. */
static int pick(gen *G) {
    bool need_dyn = chance(G, 0.9);
    for (int tries = 0; tries < 48; tries++) {
        int i = chance(G, 0.5) ? G->p->n - 1 - rnd(G, 4) : rnd(G, G->p->n);
        if (i < 0) continue;
        const fz_node *n = node(G, i);
        if (n->op != FZ_CONST && n->t_dtype != EM_BOOL && n->t_dtype != EM_I32 && (G->dyn[i] || !need_dyn))
            return i;
    }
    return -1;
}

static int pick_bool(gen *G) {
    for (int tries = 0; tries < 32; tries++) {
        int i = rnd(G, G->p->n);
        if (node(G, i)->t_dtype == EM_BOOL) return i;
    }
    return -1;
}

/* Scalars: mostly small; 12 and -9 carry values in [-1, 1] into the far
 * tails of exp, sigmoid and the GELUs (below -6.4, -15) and past them. */
static int new_const(gen *G) {
    static const double v[] = {0.75, -1.5, 2.5, 0.125, 0, 1, -0.25, 12, -9};
    return add(G, (fz_node){.op = FZ_CONST, .v = v[rnd(G, 9)]});
}

/* x's shape with some dims set to 1 and maybe some leading dims dropped. */
static int broadcast_leaf(gen *G, int x) {
    const fz_node *n = node(G, x);
    int64_t s[EM_MAX_DIMS];
    int drop = rnd(G, n->t_ndim + 1), nd = n->t_ndim - drop;
    for (int i = 0; i < nd; i++) s[i] = chance(G, 0.35) ? 1 : n->t_shape[drop + i];
    return new_float_leaf(G, nd, s);
}

/* A second operand for x: another value, a broadcastable leaf, a constant, x. */
static int partner(gen *G, int x) {
    int k = rnd(G, 10);
    if (k < 4) {
        int y = pick(G);
        if (y >= 0) return y;
    }
    if (k < 8) return broadcast_leaf(G, x);
    if (k < 9) return new_const(G);
    return x;
}

static int binary(gen *G, fz_op op, int x, int y) {
    if (x < 0 || y < 0) return -1;
    if (chance(G, 0.5)) { int t = x; x = y; y = t; }
    return add(G, (fz_node){.op = op, .nin = 2, .in = {x, y}});
}

static int gen_binary(gen *G) {
    static const fz_op ops[] = {FZ_ADD, FZ_SUB, FZ_MUL, FZ_DIV, FZ_MAXIMUM, FZ_MINIMUM, FZ_ADD, FZ_MUL};
    int x = pick(G);
    return x < 0 ? -1 : binary(G, ops[rnd(G, 8)], x, partner(G, x));
}

static int gen_unary(gen *G) {
    static const fz_op ops[] = {FZ_EXP, FZ_TANH, FZ_NEG, FZ_ABS, FZ_RELU, FZ_SIGMOID,
                                FZ_GELU, FZ_GELU_TANH, FZ_SILU, FZ_SQRT, FZ_LOG};
    int x = pick(G);
    return x < 0 ? -1 : add(G, (fz_node){.op = ops[rnd(G, 11)], .nin = 1, .in = {x}});
}

static int gen_where(gen *G) {
    static const fz_op cmp[] = {FZ_LT, FZ_LE, FZ_GT, FZ_GE};
    int x = pick(G);
    if (x < 0) return -1;
    int y = partner(G, x), c = chance(G, 0.3) ? pick_bool(G) : -1;
    if (c < 0 && (c = binary(G, cmp[rnd(G, 4)], x, y)) < 0) return -1;
    if (chance(G, 0.2)) return add(G, (fz_node){.op = FZ_CAST, .nin = 1, .in = {c}}); /* a mask */
    int a = chance(G, 0.5) ? x : pick(G), b = chance(G, 0.4) ? new_const(G) : chance(G, 0.5) ? y : pick(G);
    if (a < 0 || b < 0) return -1;
    return add(G, (fz_node){.op = FZ_WHERE, .nin = 3, .in = {c, a, b}});
}

static int gen_reduce(gen *G) {
    static const fz_op ops[] = {FZ_SUM, FZ_MEAN, FZ_MAX, FZ_MIN};
    int x = pick(G);
    if (x < 0) return -1;
    int nd = node(G, x)->t_ndim ? node(G, x)->t_ndim : 1;
    return add(G, (fz_node){.op = ops[rnd(G, 4)], .nin = 1, .in = {x},
                            .axis = rnd(G, 2 * nd) - nd, .keepdim = rnd(G, 2)});
}

static int gen_norm(gen *G) {
    int x = pick(G);
    if (x < 0) return -1;
    int nd = node(G, x)->t_ndim;
    int k = rnd(G, 4);
    if (k < 2)
        return add(G, (fz_node){.op = k ? FZ_LOG_SOFTMAX : FZ_SOFTMAX, .nin = 1, .in = {x},
                                .axis = nd ? rnd(G, 2 * nd) - nd : 0});
    if (nd < 1) return -1;
    int64_t d = node(G, x)->t_shape[nd - 1];
    int w = chance(G, 0.7) ? new_leaf(G, 1, &d, EM_F32) : -1;
    double eps = chance(G, 0.5) ? 1e-3 : 1e-2;
    if (k == 2) {
        int b = chance(G, 0.7) ? new_leaf(G, 1, &d, EM_F32) : -1;
        return add(G, (fz_node){.op = FZ_LAYER_NORM, .nin = 3, .in = {x, w, b}, .v = eps});
    }
    return add(G, (fz_node){.op = FZ_RMS_NORM, .nin = 2, .in = {x, w}, .v = eps});
}

/* Sometimes product r's contiguous copy through a random permutation, as
 * attention merges its heads back (fusion has the GEMM store it from its
 * tile: passes/fuse.c's pass_permuted_copy); else r. */
static int maybe_permuted_copy(gen *G, int r) {
    if (r < 0 || node(G, r)->t_ndim < 2 || !chance(G, 0.3)) return r;
    int nd = node(G, r)->t_ndim;
    fz_node p = {.op = FZ_PERMUTE, .nin = 1, .in = {r}, .ndim = nd};
    for (int i = 0; i < nd; i++) p.dims[i] = i;
    for (int i = nd - 1; i > 0; i--) {
        int j = rnd(G, i + 1);
        int64_t t = p.dims[i];
        p.dims[i] = p.dims[j], p.dims[j] = t;
    }
    int q = add(G, p);
    int c = q < 0 ? -1 : add(G, (fz_node){.op = FZ_CONTIGUOUS, .nin = 1, .in = {q}});
    return c < 0 ? r : c;
}

static int gen_product(gen *G);

static int gen_contraction(gen *G) { return maybe_permuted_copy(G, gen_product(G)); }

static int gen_product(gen *G) {
    int x = pick(G);
    if (x < 0 || node(G, x)->t_ndim < 1) return -1;
    int64_t k = node(G, x)->t_shape[node(G, x)->t_ndim - 1], n = rnd_dim(G);
    if (chance(G, 0.4)) {
        int w = new_leaf(G, 2, SH(n, k), EM_F32);
        int b = chance(G, 0.6) ? new_leaf(G, 1, &n, EM_F32) : -1;
        return w < 0 ? -1 : add(G, (fz_node){.op = FZ_LINEAR, .nin = 3, .in = {x, w, b}});
    }
    for (int tries = 0; tries < 6; tries++) { /* another value that fits */
        int y = pick(G);
        if (y < 0) continue;
        const fz_node *m = node(G, y);
        if (m->t_ndim >= 2 && m->t_shape[m->t_ndim - 2] == k) {
            int r = add(G, (fz_node){.op = FZ_MATMUL, .nin = 2, .in = {x, y}});
            if (r >= 0) return r;
        }
    }
    int w = chance(G, 0.2) ? new_leaf(G, 1, &k, EM_F32) : new_leaf(G, 2, SH(k, n), EM_F32);
    return w < 0 ? -1 : add(G, (fz_node){.op = FZ_MATMUL, .nin = 2, .in = {x, w}});
}

static int gen_reshape(gen *G, int x) {
    const fz_node *m = node(G, x);
    int nd = m->t_ndim;
    fz_node n = {.op = FZ_RESHAPE, .nin = 1, .in = {x}};
    int k = rnd(G, 4);
    if (k == 0) {
        n.ndim = 1, n.dims[0] = -1;
    } else if (k == 1 && nd >= 1) { /* merge the leading dims */
        n.ndim = 2, n.dims[0] = -1, n.dims[1] = m->t_shape[nd - 1];
    } else if (k == 2 && nd >= 2) { /* merge two neighbours */
        int at = rnd(G, nd - 1);
        n.ndim = nd - 1;
        for (int i = 0, j = 0; i < nd; i++) {
            if (i == at + 1) continue;
            n.dims[j++] = i == at ? -1 : m->t_shape[i];
        }
    } else { /* insert a 1 */
        int at = rnd(G, nd + 1);
        n.ndim = nd + 1;
        for (int i = 0, j = 0; i < nd + 1; i++) n.dims[i] = i == at ? 1 : m->t_shape[j++];
    }
    return add(G, n);
}

static int gen_view(gen *G) {
    int x = pick(G);
    if (x < 0) return -1;
    const fz_node *m = node(G, x);
    int nd = m->t_ndim;
    fz_node n = {.nin = 1, .in = {x}};
    switch (rnd(G, 8)) {
    case 0:
        if (nd < 2) return -1;
        n.op = FZ_PERMUTE, n.ndim = nd;
        for (int i = 0; i < nd; i++) n.dims[i] = i;
        for (int i = nd - 1; i > 0; i--) {
            int j = rnd(G, i + 1);
            int64_t t = n.dims[i];
            n.dims[i] = n.dims[j], n.dims[j] = t;
        }
        return add(G, n);
    case 1:
        if (nd < 2) return -1;
        n.op = FZ_TRANSPOSE, n.axis = rnd(G, nd) - (chance(G, 0.3) ? nd : 0), n.axis2 = rnd(G, nd);
        return add(G, n);
    case 2: return gen_reshape(G, x);
    case 3: {
        if (nd < 1) return -1;
        n.op = FZ_SLICE, n.axis = rnd(G, nd);
        int64_t len = m->t_shape[n.axis];
        n.start = rnd(G, (int)len);
        n.end = n.start + 1 + rnd(G, (int)(len - n.start));
        n.step = 1 + rnd(G, 3);
        if (chance(G, 0.2)) n.end = n.end - len - (n.end == len); /* negative end */
        return add(G, n);
    }
    case 4: {
        n.op = FZ_EXPAND, n.ndim = nd;
        for (int i = 0; i < nd; i++) n.dims[i] = chance(G, 0.3) ? -1 : m->t_shape[i];
        int ones = 0;
        for (int i = 0; i < nd; i++) ones += m->t_shape[i] == 1;
        if (ones && chance(G, 0.7)) {
            for (int i = 0; i < nd; i++)
                if (m->t_shape[i] == 1 && chance(G, 0.7)) n.dims[i] = rnd_dim(G);
        } else {
            memmove(n.dims + 1, n.dims, (size_t)nd * sizeof *n.dims);
            n.dims[0] = 1 + rnd(G, 3), n.ndim = nd + 1;
        }
        return add(G, n);
    }
    case 5:
        n.op = FZ_UNSQUEEZE, n.axis = rnd(G, nd + 1) - (chance(G, 0.3) ? nd + 1 : 0);
        return add(G, n);
    case 6:
        for (int i = 0; i < nd; i++)
            if (m->t_shape[i] == 1) {
                n.op = FZ_SQUEEZE, n.axis = i;
                return add(G, n);
            }
        return -1;
    default:
        n.op = FZ_CONTIGUOUS;
        return add(G, n);
    }
}

static int gen_concat(gen *G) {
    int x = pick(G);
    if (x < 0 || node(G, x)->t_ndim < 1) return -1;
    const fz_node *m = node(G, x);
    int nd = m->t_ndim, axis = rnd(G, nd);
    fz_node n = {.op = FZ_CONCAT, .nin = 2 + rnd(G, 2), .in = {x}, .axis = axis - (chance(G, 0.3) ? nd : 0)};
    for (int k = 1; k < n.nin; k++) {
        int y = -1;
        for (int tries = 0; tries < 8 && y < 0; tries++) { /* a value that fits */
            int c = pick(G);
            if (c < 0) continue;
            const fz_node *o = node(G, c);
            bool fits = o->t_ndim == nd;
            for (int i = 0; i < nd && fits; i++) fits = i == axis || o->t_shape[i] == m->t_shape[i];
            if (fits) y = c;
        }
        if (y < 0 && chance(G, 0.5)) {
            int64_t s[EM_MAX_DIMS];
            memcpy(s, m->t_shape, sizeof s);
            s[axis] = rnd_dim(G);
            y = new_float_leaf(G, nd, s);
        }
        n.in[k] = y < 0 ? x : y;
    }
    return add(G, n);
}

void fz_generate(fz_prog *p, uint64_t seed) {
    memset(p, 0, sizeof *p);
    gen G = {.rng = seed * 0x2545F4914F6CDD1DULL + 77, .p = p};
    p->seed = seed;
    G.big = chance(&G, 0.3);
    em_scope_begin();
    for (int i = 0, n = 1 + rnd(&G, 3); i < n; i++) {
        int64_t s[EM_MAX_DIMS];
        int nd = 1 + rnd(&G, 3);
        for (int d = 0; d < nd; d++) s[d] = rnd_dim(&G);
        if (G.big) { /* rows of a size the thread pool splits (> 32768 elements) */
            static const int64_t rows[] = {33, 64, 129, 256}, cols[] = {64, 129, 256, 257, 511, 1024};
            nd = nd < 2 ? 2 : nd;
            for (int d = 0; d < nd - 2; d++) s[d] = 1 + rnd(&G, 3);
            s[nd - 2] = rows[rnd(&G, 4)], s[nd - 1] = cols[rnd(&G, 6)];
        }
        while (numel(nd, s) > (G.big ? BIG_NUMEL : MAX_NUMEL) / 2) s[rnd(&G, nd)] = 1 + rnd(&G, 4);
        new_float_leaf(&G, nd, s);
    }
    int target = 4 + rnd(&G, 22);
    for (int tries = 0; fz_ops(p) < target && tries < 400 && p->n < FZ_MAX_NODES - 8; tries++) {
        switch (rnd(&G, 20)) {
        case 0: case 1: case 2: case 3: case 4: gen_binary(&G); break;
        case 5: case 6: case 7: gen_unary(&G); break;
        case 8: gen_where(&G); break;
        case 9: case 10: case 11: gen_reduce(&G); break;
        case 12: case 13: gen_norm(&G); break;
        case 14: case 15: gen_contraction(&G); break;
        case 16: gen_concat(&G); break;
        default: gen_view(&G); break;
        }
    }
    /* outputs: ops nothing uses (sinks), the last one first, preferably ones
     * that depend on an argument; then any op */
    bool used[FZ_MAX_NODES] = {0};
    for (int i = 0; i < p->n; i++)
        for (int k = 0; k < p->nodes[i].nin; k++)
            if (p->nodes[i].in[k] >= 0) used[p->nodes[i].in[k]] = true;
    int want = 1 + rnd(&G, 3);
    for (int pass = 0; pass < 3; pass++)
        for (int i = p->n - 1; i >= 0 && p->nout < want; i--) {
            bool ok = p->nodes[i].op > FZ_CONST && (pass == 2 || (!used[i] && (pass == 1 || G.dyn[i])));
            for (int k = 0; k < p->nout; k++) ok &= p->outs[k] != i;
            if (ok && (p->nout == 0 || chance(&G, 0.6))) p->outs[p->nout++] = i;
        }
    em_scope_end(); /* the eager values and the leaves */
    em_clear_error();
}

/* ---- printing ------------------------------------------------------------------------- */

static const char *const names[FZ_OP_COUNT] = {
    [FZ_ADD] = "add", [FZ_SUB] = "sub", [FZ_MUL] = "mul", [FZ_MAXIMUM] = "maximum",
    [FZ_MINIMUM] = "minimum", [FZ_TANH] = "tanh", [FZ_NEG] = "neg", [FZ_ABS] = "abs",
    [FZ_RELU] = "relu", [FZ_SIGMOID] = "sigmoid", [FZ_GELU] = "gelu", [FZ_GELU_TANH] = "gelu_tanh",
    [FZ_SILU] = "silu", [FZ_LT] = "lt", [FZ_LE] = "le", [FZ_GT] = "gt", [FZ_GE] = "ge",
    [FZ_SUM] = "sum", [FZ_MEAN] = "mean", [FZ_MAX] = "max", [FZ_MIN] = "min",
    [FZ_SOFTMAX] = "softmax", [FZ_LOG_SOFTMAX] = "log_softmax", [FZ_MATMUL] = "matmul",
};

static void name_of(const fz_prog *p, int i, char *buf, size_t cap) {
    if (i < 0) snprintf(buf, cap, "NULL");
    else if (p->nodes[i].op == FZ_ARG) snprintf(buf, cap, "a%d", p->nodes[i].leaf);
    else if (p->nodes[i].op == FZ_PARAM) snprintf(buf, cap, "w%d", p->nodes[i].leaf);
    else snprintf(buf, cap, "t%d", i);
}

static void dims_str(int nd, const int64_t *d, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "SH(");
    for (int i = 0; i < nd; i++) k += snprintf(buf + k, cap - (size_t)k, "%s%lld", i ? ", " : "", (long long)d[i]);
    snprintf(buf + k, cap - (size_t)k, ")");
    if (nd == 0) snprintf(buf, cap, "NULL");
}

static void print_leaf(const fz_prog *p, int i, FILE *out) {
    const fz_node *n = &p->nodes[i];
    char nm[16], b[160], s[160];
    int64_t bs[EM_MAX_DIMS];
    base_shape(n, bs);
    name_of(p, i, nm, sizeof nm);
    if (n->same) {
        char o[16];
        name_of(p, n->same - 1, o, sizeof o);
        fprintf(out, "    %s = em_retain(%s); /* the same tensor twice */\n", nm, o);
        return;
    }
    dims_str(n->ndim, bs, b, sizeof b);
    dims_str(n->ndim, n->dims, s, sizeof s);
    fprintf(out, "    em_scope_begin();\n    %s = em_keep(", nm);
    char leaf[240];
    snprintf(leaf, sizeof leaf, "fz_leaf(%d, %s, %llu, %d)", n->ndim, b, (unsigned long long)n->seed,
             n->dtype == EM_I32);
    switch (n->layout) {
    case FZ_TRANSPOSED: fprintf(out, "em_transpose(%s, %d, %d)", leaf, n->la, n->lb); break;
    case FZ_SLICED:
        fprintf(out, "em_slice(%s, %d, %d, %lld, %d)", leaf, n->la, n->lc,
                (long long)(n->lc + (n->dims[n->la] - 1) * n->lb + 1), n->lb);
        break;
    case FZ_EXPANDED: fprintf(out, "em_expand(%s, %d, %s)", leaf, n->ndim, s); break;
    default: fprintf(out, "%s", leaf); break;
    }
    fprintf(out, ");\n    em_scope_end();\n");
}

static void print_node(const fz_prog *p, int i, FILE *out) {
    const fz_node *n = &p->nodes[i];
    char a[16], b[16], c[16], s[160];
    name_of(p, i, s, sizeof s);
    fprintf(out, "    em_tensor *%s = ", s);
    name_of(p, n->nin > 0 ? n->in[0] : -1, a, sizeof a);
    name_of(p, n->nin > 1 ? n->in[1] : -1, b, sizeof b);
    name_of(p, n->nin > 2 ? n->in[2] : -1, c, sizeof c);
    dims_str(n->ndim, n->dims, s, sizeof s);
    switch (n->op) {
    case FZ_CONST: fprintf(out, "em_scalar(EM_F32, %g)", n->v); break;
    case FZ_DIV: fprintf(out, "em_div(%s, em_add(em_abs(%s), em_scalar(EM_F32, 0.5)))", a, b); break;
    case FZ_EXP: fprintf(out, "em_exp(em_tanh(%s))", a); break;
    case FZ_SQRT: fprintf(out, "em_sqrt(em_add(em_abs(%s), em_scalar(EM_F32, 0.01)))", a); break;
    case FZ_LOG: fprintf(out, "em_log(em_add(em_abs(%s), em_scalar(EM_F32, 1)))", a); break;
    case FZ_WHERE: fprintf(out, "em_where(%s, %s, %s)", a, b, c); break;
    case FZ_SUM: case FZ_MEAN: case FZ_MAX: case FZ_MIN:
        fprintf(out, "em_%s(%s, %d, %d)", names[n->op], a, n->axis, n->keepdim);
        break;
    case FZ_SOFTMAX: case FZ_LOG_SOFTMAX: fprintf(out, "em_%s(%s, %d)", names[n->op], a, n->axis); break;
    case FZ_LAYER_NORM: fprintf(out, "em_layer_norm(%s, %s, %s, %g)", a, b, c, n->v); break;
    case FZ_RMS_NORM: fprintf(out, "em_rms_norm(%s, %s, %g)", a, b, n->v); break;
    case FZ_LINEAR: fprintf(out, "em_linear(%s, %s, %s)", a, b, c); break;
    case FZ_RESHAPE: fprintf(out, "em_reshape(%s, %d, %s)", a, n->ndim, s); break;
    case FZ_PERMUTE: {
        fprintf(out, "em_permute(%s, (int[]){", a);
        for (int k = 0; k < n->ndim; k++) fprintf(out, "%s%lld", k ? ", " : "", (long long)n->dims[k]);
        fprintf(out, "})");
        break;
    }
    case FZ_TRANSPOSE: fprintf(out, "em_transpose(%s, %d, %d)", a, n->axis, n->axis2); break;
    case FZ_SLICE:
        fprintf(out, "em_slice(%s, %d, %lld, %lld, %lld)", a, n->axis, (long long)n->start,
                (long long)n->end, (long long)n->step);
        break;
    case FZ_EXPAND: fprintf(out, "em_expand(%s, %d, %s)", a, n->ndim, s); break;
    case FZ_UNSQUEEZE: fprintf(out, "em_unsqueeze(%s, %d)", a, n->axis); break;
    case FZ_SQUEEZE: fprintf(out, "em_squeeze(%s, %d)", a, n->axis); break;
    case FZ_CONTIGUOUS: fprintf(out, "em_contiguous(%s)", a); break;
    case FZ_CONCAT:
        fprintf(out, "em_concat((em_tensor *[]){%s, %s%s%s}, %d, %d)", a, b, n->nin > 2 ? ", " : "",
                n->nin > 2 ? c : "", n->nin, n->axis);
        break;
    case FZ_CAST: fprintf(out, "em_cast(%s, EM_F32)", a); break;
    default:
        if (n->nin == 1) fprintf(out, "em_%s(%s)", names[n->op], a);
        else fprintf(out, "em_%s(%s, %s)", names[n->op], a, b);
        break;
    }
    char t[160];
    dims_str(n->t_ndim, n->t_shape, t, sizeof t);
    fprintf(out, "; /* %s %s */\n", em_dtype_name(n->t_dtype), n->t_ndim ? t + 2 : "0-d");
}

void fz_print(const fz_prog *p, const char *note, FILE *out) {
    fprintf(out, "/* fuzz program of seed %llu: %s */\n#define SH(...) ((int64_t[]){__VA_ARGS__})\n%s",
            (unsigned long long)p->seed, note, leaf_src);
    if (p->nparams) {
        fprintf(out, "static em_tensor ");
        for (int i = 0; i < p->nparams; i++) fprintf(out, "%s*w%d", i ? ", " : "", i);
        fprintf(out, "; /* weights, captured by reference */\n");
    }
    fprintf(out, "static void model(");
    for (int i = 0; i < p->nargs; i++) fprintf(out, "em_tensor *a%d, ", i);
    for (int k = 0; k < p->nout; k++) fprintf(out, "%sem_tensor **out%d", k ? ", " : "", k);
    fprintf(out, ") {\n    em_scope_begin();\n");
    for (int i = 0; i < p->n; i++)
        if (p->nodes[i].op > FZ_PARAM) print_node(p, i, out);
    for (int k = 0; k < p->nout; k++) fprintf(out, "    *out%d = em_keep(t%d);\n", k, p->outs[k]);
    fprintf(out, "    em_scope_end();\n}\n/* signature \"void(");
    for (int i = 0; i < p->nargs + p->nout; i++) fprintf(out, "%stensor%s", i ? ", " : "", i < p->nargs ? "" : " *");
    fprintf(out, ")\"; the leaves: */\nstatic void make_leaves(");
    for (int i = 0; i < p->nargs; i++) fprintf(out, "%sem_tensor **pa%d", i ? ", " : "", i);
    fprintf(out, ") {\n");
    for (int i = 0; i < p->nargs; i++) fprintf(out, "    em_tensor *a%d;\n", i);
    for (int i = 0; i < p->n; i++)
        if (p->nodes[i].op == FZ_ARG || p->nodes[i].op == FZ_PARAM) print_leaf(p, i, out);
    for (int i = 0; i < p->nargs; i++) fprintf(out, "    *pa%d = a%d;\n", i, i);
    fprintf(out, "}\n");
}
