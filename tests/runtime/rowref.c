/*
 * rowref.c — the references of rowref.h. They read every input element with
 * tu_rt_at, through its strides, so one reference serves every layout a test
 * builds (permuted, stepped, expanded, gathered rows); reductions compare
 * exactly where the kernel must be exact (max, min, argmax, integer sums) and
 * within a tolerance scaled by the sum of |x| otherwise.
 */
#include <criterion/criterion.h>

#include <math.h>

#include "../util.h"
#include "rowref.h"

/* Index of line o of t along axis: the other dims row-major, ix[axis] = 0. */
static void line_index(const em_tensor *t, int axis, int64_t o, int64_t *ix) {
    for (int d = t->ndim - 1; d >= 0; d--) {
        ix[d] = d == axis ? 0 : o % t->shape[d];
        o = d == axis ? o : o / t->shape[d];
    }
}

static int64_t lines_of(const em_tensor *t, int axis) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (d != axis) n *= t->shape[d];
    return n;
}

/* ---- reductions --------------------------------------------------------------------------- */

const char *const rowref_names[] = {"sum", "mean", "max", "min", "argmax"};

em_dtype rowref_out_dtype(rt_reduce r, em_dtype dt) {
    if (r == RT_REDUCE_ARGMAX) return EM_I64;
    if (r == RT_REDUCE_SUM && !rt_dtype_is_float(dt)) return EM_I64;
    return dt;
}

/* Reference of output o; *mag gets the sum of |x| (a scale for rounding error). */
static double ref_reduce(rt_reduce r, const em_tensor *a, int axis, int64_t o, double *mag) {
    int64_t ix[EM_MAX_DIMS] = {0}, R = a->ndim ? a->shape[axis] : 1;
    if (a->ndim) line_index(a, axis, o, ix);
    double acc = 0;
    int64_t best = 0;
    *mag = 0;
    for (int64_t j = 0; j < R; j++) {
        if (a->ndim) ix[axis] = j;
        double v = tu_rt_at(a, ix);
        *mag += fabs(v);
        if (r == RT_REDUCE_SUM || r == RT_REDUCE_MEAN) acc += v;
        else if (j == 0 || (!isnan(acc) && (isnan(v) || (r == RT_REDUCE_MIN ? v < acc : v > acc))))
            acc = v, best = j;
    }
    if (r == RT_REDUCE_MEAN) {
        *mag /= (double)R;
        return acc / (double)R;
    }
    return r == RT_REDUCE_ARGMAX ? (double)best : acc;
}

void rowref_check_reduce(rt_reduce r, const em_tensor *a, int axis) {
    int64_t sh[EM_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < a->ndim; d++)
        if (d != axis) sh[k++] = a->shape[d];
    em_dtype odt = rowref_out_dtype(r, a->dtype);
    em_tensor *out = tu_rt_new(odt, k, sh);
    cr_assert_eq(rt_reduce_apply(r, a, axis, out), 0, "%s: %s", rowref_names[r], em_last_error());
    double tol = a->dtype == EM_F32 ? 1e-5 : 1e-12;
    for (int64_t o = 0; o < out->numel; o++) {
        double mag, want = ref_reduce(r, a, axis, o, &mag), got = tu_rt_flat(out, o);
        if (isnan(want)) {
            cr_assert(isnan(got), "%s axis %d out %lld: got %g, want NaN", rowref_names[r], axis,
                      (long long)o, got);
            continue;
        }
        bool exact = r >= RT_REDUCE_MAX || !rt_dtype_is_float(a->dtype);
        cr_assert(exact ? got == want : fabs(got - want) <= tol * mag + 1e-30,
                  "%s of %s axis %d out %lld: got %.9g, want %.9g", rowref_names[r],
                  em_dtype_name(a->dtype), axis, (long long)o, got, want);
    }
    em_release(out);
}

/* ---- softmax ------------------------------------------------------------------------------ */

void rowref_check_softmax(const em_tensor *x, int axis, bool lg) {
    em_tensor *out = tu_rt_new(x->dtype, x->ndim, x->shape);
    cr_assert_eq(rt_softmax_apply(x, axis, lg, out), 0, "%s", em_last_error());
    double tol = x->dtype == EM_F32 ? 2e-6 : 1e-13;
    int64_t L = x->ndim ? x->shape[axis] : 1, ix[EM_MAX_DIMS] = {0};
    for (int64_t o = 0; o < lines_of(x, axis) && L > 0; o++) {
        if (x->ndim) line_index(x, axis, o, ix);
        double m = -INFINITY, s = 0, total = 0;
        for (int64_t j = 0; j < L; j++) {
            if (x->ndim) ix[axis] = j;
            m = fmax(m, tu_rt_at(x, ix));
        }
        for (int64_t j = 0; j < L; j++) {
            if (x->ndim) ix[axis] = j;
            s += exp(tu_rt_at(x, ix) - m);
        }
        for (int64_t j = 0; j < L; j++) {
            if (x->ndim) ix[axis] = j;
            double want = lg ? tu_rt_at(x, ix) - m - log(s) : exp(tu_rt_at(x, ix) - m) / s;
            double got = tu_rt_at(out, ix); /* out is contiguous with x's shape */
            total += lg ? exp(got) : got;
            cr_assert(fabs(got - want) <= tol * (lg ? 1 + fabs(want) : 1),
                      "%s axis %d line %lld [%lld]: got %.9g, want %.9g", lg ? "log_softmax" : "softmax",
                      axis, (long long)o, (long long)j, got, want);
        }
        cr_assert(fabs(total - 1) <= 1e-5 * (double)L, "line %lld sums to %.9g", (long long)o, total);
    }
    em_release(out);
}

/* ---- layer_norm and rms_norm ------------------------------------------------------------- */

void rowref_check_norm(bool rms, const em_tensor *x, const em_tensor *w, const em_tensor *b,
                       double eps) {
    em_tensor *out = tu_rt_new(x->dtype, x->ndim, x->shape);
    int rc = rms ? rt_rms_norm_apply(x, w, eps, out) : rt_layer_norm_apply(x, w, b, eps, out);
    cr_assert_eq(rc, 0, "%s", em_last_error());
    int axis = x->ndim - 1;
    int64_t D = x->shape[axis], ix[EM_MAX_DIMS];
    double tol = x->dtype == EM_F32 ? 3e-5 : 1e-12;
    for (int64_t o = 0; o < lines_of(x, axis) && D > 0; o++) {
        line_index(x, axis, o, ix);
        double mean = 0, var = 0;
        for (ix[axis] = 0; ix[axis] < D; ix[axis]++) mean += rms ? 0 : tu_rt_at(x, ix) / (double)D;
        for (ix[axis] = 0; ix[axis] < D; ix[axis]++)
            var += (tu_rt_at(x, ix) - mean) * (tu_rt_at(x, ix) - mean) / (double)D;
        for (int64_t j = 0; j < D; j++) {
            ix[axis] = j;
            double wj = w ? tu_rt_at(w, &j) : 1, bj = b ? tu_rt_at(b, &j) : 0;
            double want = (tu_rt_at(x, ix) - mean) / sqrt(var + eps) * wj + bj, got = tu_rt_at(out, ix);
            cr_assert(fabs(got - want) <= tol * (1 + fabs(want)), "%s line %lld [%lld]: got %.9g, want %.9g",
                      rms ? "rms_norm" : "layer_norm", (long long)o, (long long)j, got, want);
        }
    }
    em_release(out);
}
