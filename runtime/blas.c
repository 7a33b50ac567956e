/*
 * blas.c — matmul and linear through OpenBLAS.
 *
 * Every contraction here is reduced to calls of one row-major GEMM (or GEMV
 * when one side is a vector) on matrices described by a pointer, a transpose
 * flag and a leading dimension. Views are the normal case, not the exception: a
 * matrix whose last two strides are (ld, 1) is passed as it is, one with
 * strides (1, ld) — a transposed view — is passed with the transpose flag, and
 * only a matrix with neither unit stride (a stepped slice, an expanded dim) is
 * copied to dense memory first. Batch dims broadcast like numpy: an operand's
 * batch dim of size 1, or missing, gets stride 0, so every batch reuses the
 * same matrix without materialising it.
 *
 * The important speed case is a stack of matrices times one matrix
 * (x[B, M, K] @ w[K, N], and every linear layer): when the batch dims of the
 * left operand collapse into its row dim, the whole stack is one GEMM with
 * B*M rows, which is what OpenBLAS is fastest at.
 *
 * A side of width 1 (a 1-D operand, a linear layer on one row) goes to GEMV,
 * which OpenBLAS runs much faster than a GEMM with M or N = 1.
 *
 * Invariants: out is contiguous with the shape [batch..., M, N] (a dim of size
 * 1 removed for a 1-D operand leaves that layout unchanged); a and b share a
 * float dtype; K == 0 gives zeros (or the bias); nothing here allocates except
 * the dense copy of an operand whose strides BLAS cannot express, and its
 * failure message names the public op. OpenBLAS's thread count follows the
 * pool's (rt_threads() starts the pool first, which sets it).
 */
#include "runtime.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* One operand as a batch of row-major matrices [rows, cols]. */
typedef struct operand {
    const char *data;             /* element (0, 0) of the first matrix */
    int64_t rows, cols;           /* matrix dims */
    int64_t rs, cs;               /* element strides of the matrix dims */
    int64_t bstride[EM_MAX_DIMS]; /* element stride per out batch dim; 0 broadcasts */
    bool trans;                   /* stored transposed: element (i, j) at j*ld + i */
    int64_t ld;                   /* BLAS leading dimension */
    em_tensor *copy;              /* dense copy when the strides forced one, else NULL */
} operand;

/* A GEMM or GEMV call shared by every matrix of a batch. */
typedef struct gemm_job {
    const char *op; /* the public op, for messages */
    em_dtype dt;
    int64_t m, n, k;
    double beta; /* 0, or 1 to accumulate onto out (the linear bias) */
    size_t esz;
} gemm_job;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Describes matrix dims of t and its batch dims aligned right against nbatch
 * out batch dims. A 1-D t is a row [1, K] on the left, a column [K, 1] on the
 * right, as torch.matmul promotes them. */
static void operand_init(operand *o, const em_tensor *t, bool right, int nbatch) {
    int nd = t->ndim;
    memset(o, 0, sizeof *o);
    o->data = rt_tensor_data(t);
    if (nd >= 2) {
        o->rows = t->shape[nd - 2], o->cols = t->shape[nd - 1];
        o->rs = t->strides[nd - 2], o->cs = t->strides[nd - 1];
    } else if (!right) {
        o->rows = 1, o->cols = t->shape[0], o->cs = t->strides[0];
    } else {
        o->rows = t->shape[0], o->cols = 1, o->rs = t->strides[0];
    }
    int tb = nd >= 2 ? nd - 2 : 0;
    EM_ASSERT(tb <= nbatch);
    for (int j = 0; j < nbatch; j++) {
        int d = j - (nbatch - tb);
        o->bstride[j] = d < 0 || t->shape[d] == 1 ? 0 : t->strides[d];
    }
}

/* Chooses NoTrans (strides (ld, 1)) or Trans (strides (1, ld)); false when
 * neither fits. Strides of size-1 dims carry no meaning and are ignored. */
static bool operand_layout(operand *o) {
    int64_t r = o->rows, c = o->cols;
    if ((o->cs == 1 || c == 1) && (r == 1 || o->rs >= max64(c, 1))) {
        o->trans = false;
        o->ld = r == 1 ? max64(c, 1) : o->rs;
        return true;
    }
    if ((o->rs == 1 || r == 1) && (c == 1 || o->cs >= max64(r, 1))) {
        o->trans = true;
        o->ld = c == 1 ? max64(r, 1) : o->cs;
        return true;
    }
    return false;
}

/* Copies t densely (broadcast batch dims kept at size 1, so not materialised)
 * and describes the copy instead. The source is a borrowed header on the stack
 * (same storage, no reference taken), so only the copy itself can fail. */
static int operand_densify(operand *o, const em_tensor *t, bool right, int nbatch,
                           const char *op) {
    em_tensor v;
    memcpy(&v, t, sizeof v);
    v.numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (d < t->ndim - 2 && t->strides[d] == 0) v.shape[d] = 1;
        v.numel *= v.shape[d];
    }
    em_tensor *c = rt_tensor_new(op, t->dtype, t->ndim, v.shape, false);
    if (!c) return -1;
    rt_tensor_copy_to(&v, rt_tensor_data(c));
    operand_init(o, c, right, nbatch);
    o->copy = c;
    EM_ASSERT(operand_layout(o));
    return 0;
}

static int operand_prepare(operand *o, const em_tensor *t, bool right, int nbatch) {
    operand_init(o, t, right, nbatch);
    return operand_layout(o) ? 0 : operand_densify(o, t, right, nbatch, "em_matmul");
}

/* Element step along K of a one-row left operand or a one-column right one. */
static int64_t vec_inc(const operand *o, bool right) {
    return right ? (o->trans ? 1 : o->ld) : (o->trans ? o->ld : 1);
}

/* C[m, n] (contiguous, ldc = n) = A B (+ beta C) for one matrix of the batch. */
static void gemm_one(const gemm_job *j, const operand *a, const char *pa, const operand *b,
                     const char *pb, char *pc) {
    int m = (int)j->m, n = (int)j->n, k = (int)j->k;
    int lda = (int)a->ld, ldb = (int)b->ld;
    enum CBLAS_TRANSPOSE ta = a->trans ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = b->trans ? CblasTrans : CblasNoTrans;
    bool f32 = j->dt == EM_F32;
    if (n == 1) { /* y[m] = op(A) x */
        int inc = (int)vec_inc(b, true);
        int rows = a->trans ? k : m, cols = a->trans ? m : k;
        if (f32)
            cblas_sgemv(CblasRowMajor, ta, rows, cols, 1.0f, (const float *)pa, lda,
                        (const float *)pb, inc, (float)j->beta, (float *)pc, 1);
        else
            cblas_dgemv(CblasRowMajor, ta, rows, cols, 1.0, (const double *)pa, lda,
                        (const double *)pb, inc, j->beta, (double *)pc, 1);
    } else if (m == 1) { /* y[n] = op(B)^T x */
        int inc = (int)vec_inc(a, false);
        enum CBLAS_TRANSPOSE t = b->trans ? CblasNoTrans : CblasTrans;
        int rows = b->trans ? n : k, cols = b->trans ? k : n;
        if (f32)
            cblas_sgemv(CblasRowMajor, t, rows, cols, 1.0f, (const float *)pb, ldb,
                        (const float *)pa, inc, (float)j->beta, (float *)pc, 1);
        else
            cblas_dgemv(CblasRowMajor, t, rows, cols, 1.0, (const double *)pb, ldb,
                        (const double *)pa, inc, j->beta, (double *)pc, 1);
    } else if (f32) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, (const float *)pa, lda,
                    (const float *)pb, ldb, (float)j->beta, (float *)pc, n);
    } else {
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, (const double *)pa, lda,
                    (const double *)pb, ldb, j->beta, (double *)pc, n);
    }
}

/* When b is the same matrix for every batch and a's batch dims collapse into
 * its row dim with a's rows dense (NoTrans), the batch is one matrix of
 * batch*M rows: returns true and sets *ld to its row stride. */
static bool fold_rows(const operand *a, const operand *b, int nbatch, const int64_t *bshape,
                      int64_t *ld) {
    for (int j = 0; j < nbatch; j++)
        if (bshape[j] != 1 && b->bstride[j] != 0) return false;
    if (a->cs != 1 && a->cols != 1) return false;
    /* size and stride of the outermost dim of size > 1 so far; inner: the innermost */
    int64_t size = a->rows, stride = a->rs, inner = a->rs;
    bool any = a->rows != 1;
    for (int j = nbatch - 1; j >= 0; j--) {
        if (bshape[j] == 1) continue;
        if (any && a->bstride[j] != stride * size) return false;
        if (!any) inner = a->bstride[j];
        size = bshape[j], stride = a->bstride[j], any = true;
    }
    *ld = any ? inner : max64(a->cols, 1);
    return *ld >= max64(a->cols, 1);
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* Runs every matrix of the batch; out is contiguous [batch..., m, n]. */
static int gemm_batch(gemm_job *j, operand *a, operand *b, int nbatch, const int64_t *bshape,
                      char *out) {
    int64_t batch = 1;
    for (int d = 0; d < nbatch; d++) batch *= bshape[d];
    if (batch == 0 || j->m == 0 || j->n == 0) return 0;
    rt_pool_quiet(); /* OpenBLAS's threads want the cores our workers may be spinning on */
    int64_t ld;
    bool fold = batch > 1 && fold_rows(a, b, nbatch, bshape, &ld);
    if (!fits_int(fold ? batch * j->m : j->m) || !fits_int(j->n) || !fits_int(j->k) ||
        !fits_int(fold ? ld : a->ld) || !fits_int(b->ld))
        return rt_error("%s: a dim or stride is too large for BLAS", j->op);
    if (fold) {
        operand fa = *a;
        fa.rows = batch * j->m, fa.rs = ld, fa.trans = false, fa.ld = ld;
        gemm_job fj = *j;
        fj.m = fa.rows;
        gemm_one(&fj, &fa, a->data, b, b->data, out);
        return 0;
    }
    int64_t idx[EM_MAX_DIMS] = {0}, oa = 0, ob = 0;
    int64_t cstep = j->m * j->n * (int64_t)j->esz;
    for (int64_t i = 0; i < batch; i++) {
        gemm_one(j, a, a->data + oa * (int64_t)j->esz, b, b->data + ob * (int64_t)j->esz,
                 out + i * cstep);
        for (int d = nbatch - 1; d >= 0; d--) { /* next batch index, offsets updated */
            oa += a->bstride[d], ob += b->bstride[d];
            if (++idx[d] < bshape[d]) break;
            oa -= a->bstride[d] * bshape[d], ob -= b->bstride[d] * bshape[d];
            idx[d] = 0;
        }
    }
    return 0;
}

int rt_matmul_apply(const em_tensor *a, const em_tensor *b, em_tensor *out) {
    EM_ASSERT(a->dtype == b->dtype && a->dtype == out->dtype && rt_dtype_is_float(a->dtype));
    int nbatch = out->ndim - (a->ndim >= 2) - (b->ndim >= 2);
    EM_ASSERT(nbatch >= 0);
    gemm_job j = {.op = "em_matmul", .dt = a->dtype, .esz = rt_dtype_size(a->dtype), .beta = 0};
    j.m = a->ndim >= 2 ? a->shape[a->ndim - 2] : 1;
    j.k = a->shape[a->ndim - 1];
    j.n = b->ndim >= 2 ? b->shape[b->ndim - 1] : 1;
    if (out->numel == 0) return 0;
    if (j.k == 0) {
        memset(rt_tensor_data(out), 0, (size_t)out->numel * j.esz);
        return 0;
    }
    rt_threads(); /* starts the pool, which sets OpenBLAS's thread count */
    operand oa, ob;
    if (operand_prepare(&oa, a, false, nbatch) != 0) return -1;
    int rc = operand_prepare(&ob, b, true, nbatch);
    if (rc == 0) rc = gemm_batch(&j, &oa, &ob, nbatch, out->shape, rt_tensor_data(out));
    em_release(oa.copy);
    em_release(ob.copy);
    return rc;
}

/* ---- linear ------------------------------------------------------------------------- */

/* Writes bias (any stride) into every row of the contiguous [m, n] out. */
static void fill_rows_with_bias(const em_tensor *bias, char *out, int64_t m, int64_t n) {
    size_t esz = rt_dtype_size(bias->dtype);
    const char *src = rt_tensor_data(bias);
    int64_t s = bias->strides[0];
    if (s == 1 || n == 1) {
        memcpy(out, src, (size_t)n * esz);
    } else if (bias->dtype == EM_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)out)[i] = ((const float *)src)[i * s];
    } else {
        for (int64_t i = 0; i < n; i++) ((double *)out)[i] = ((const double *)src)[i * s];
    }
    size_t row = (size_t)n * esz;
    for (int64_t r = 1; r < m; r++) memcpy(out + (size_t)r * row, out, row);
}

/* w [N, K] as the right operand w^T [K, N]: w's strides swapped, so a dense w
 * is passed transposed, without a copy. */
static int weight_prepare(operand *o, const em_tensor *w) {
    memset(o, 0, sizeof *o);
    o->data = rt_tensor_data(w);
    o->rows = w->shape[1], o->cols = w->shape[0];
    o->rs = w->strides[1], o->cs = w->strides[0];
    if (operand_layout(o)) return 0;
    o->copy = rt_tensor_new("em_linear", w->dtype, 2, w->shape, false);
    if (!o->copy) return -1;
    rt_tensor_copy_to(w, rt_tensor_data(o->copy));
    o->data = rt_tensor_data(o->copy);
    o->rs = 1, o->cs = w->shape[1];
    EM_ASSERT(operand_layout(o));
    return 0;
}

/* x [..., K] as the left operand; copied densely unless its leading dims
 * already fold into one GEMM. */
static int input_prepare(operand *o, const em_tensor *x, const operand *w, int nbatch) {
    operand_init(o, x, false, nbatch);
    int64_t batch = 1, ld;
    for (int d = 0; d < nbatch; d++) batch *= x->shape[d];
    if (operand_layout(o) && (batch <= 1 || fold_rows(o, w, nbatch, x->shape, &ld))) return 0;
    return operand_densify(o, x, false, nbatch, "em_linear");
}

int rt_linear_apply(const em_tensor *x, const em_tensor *w, const em_tensor *bias,
                    em_tensor *out) {
    EM_ASSERT(x->dtype == w->dtype && x->dtype == out->dtype && rt_dtype_is_float(x->dtype));
    EM_ASSERT(w->ndim == 2 && (!bias || (bias->ndim == 1 && bias->dtype == x->dtype)));
    int nbatch = x->ndim >= 2 ? x->ndim - 2 : 0;
    gemm_job j = {.op = "em_linear", .dt = x->dtype, .esz = rt_dtype_size(x->dtype)};
    j.k = w->shape[1], j.n = w->shape[0];
    j.m = x->ndim >= 2 ? x->shape[x->ndim - 2] : 1;
    j.beta = bias ? 1.0 : 0.0;
    if (out->numel == 0) return 0;
    char *po = rt_tensor_data(out);
    int64_t rows = out->numel / j.n;
    if (bias)
        fill_rows_with_bias(bias, po, rows, j.n);
    else if (j.k == 0)
        memset(po, 0, (size_t)out->numel * j.esz);
    if (j.k == 0) return 0;
    rt_threads(); /* starts the pool, which sets OpenBLAS's thread count */

    operand ow = {0}, ox = {0};
    int rc = weight_prepare(&ow, w);
    if (rc == 0) rc = input_prepare(&ox, x, &ow, nbatch);
    if (rc == 0) rc = gemm_batch(&j, &ox, &ow, nbatch, x->shape, po);
    em_release(ox.copy);
    em_release(ow.copy);
    return rc;
}

void rt_blas_set_threads(int n) { openblas_set_num_threads(n); }
