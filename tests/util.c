/*
 * util.c — the helpers of tests/util.h, which several test files used to
 * write again each in its own words.
 *
 * They are kept exactly as the tests relied on them: tu_uniform is the LCG
 * every file used (each file passes its own state, so its sequence is what it
 * was), tu_uniform_tensor mixes its seed as the capture tests did, and
 * tu_rt_random draws one number per element in row-major order whatever the
 * dtype, so a test that makes its tensors in the same order sees the same
 * values. Each test runs in a process of its own, so a file's static
 * tu_rng starts every test from its initial state.
 *
 * Nothing here is clever: a helper that could fail asserts, so a test that
 * calls it may take its result as valid.
 */
#include <criterion/criterion.h>


#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"
#include "util.h"

/* ---- a seeded random sequence -------------------------------------------------------- */

double tu_uniform(tu_rng *rng, double lo, double hi) {
    rng->state = rng->state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * ((double)(rng->state >> 11) * 0x1.0p-53);
}

/* ---- tensors from and to doubles ------------------------------------------------------- */

int64_t tu_count(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    return n;
}

/* Stores v as element i of a dense buffer of dtype dt (bool: v != 0). */
static void put(em_dtype dt, void *p, int64_t i, double v) {
    switch (dt) {
    case EM_F32: ((float *)p)[i] = (float)v; break;
    case EM_F64: ((double *)p)[i] = v; break;
    case EM_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case EM_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case EM_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    }
}

double tu_get(em_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case EM_F32: return ((const float *)p)[i];
    case EM_F64: return ((const double *)p)[i];
    case EM_I32: return ((const int32_t *)p)[i];
    case EM_I64: return (double)((const int64_t *)p)[i];
    case EM_BOOL: return ((const uint8_t *)p)[i];
    }
    return NAN;
}

em_tensor *tu_tensor_of(em_dtype dt, int nd, const int64_t *shape, const double *v) {
    int64_t n = tu_count(nd, shape);
    void *raw = malloc((size_t)(n ? n : 1) * 8);
    for (int64_t i = 0; i < n; i++) put(dt, raw, i, v[i]);
    em_tensor *t = em_from_data(dt, nd, shape, raw);
    free(raw);
    cr_assert(t, "em_from_data: %s", em_last_error());
    return t;
}

void *tu_bytes_of(const em_tensor *t, size_t *nbytes) {
    *nbytes = (size_t)em_numel(t) * em_dtype_size(em_type(t));
    unsigned char *b = malloc(*nbytes ? *nbytes : 1);
    cr_assert_eq(em_read(t, b, *nbytes), 0, "em_read: %s", em_last_error());
    return b;
}

double *tu_values_of(const em_tensor *t) {
    size_t nb;
    unsigned char *raw = tu_bytes_of(t, &nb);
    int64_t n = em_numel(t);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = tu_get(em_type(t), raw, i);
    free(raw);
    return v;
}

double *tu_view_values(const double *base, const em_tensor *view, int64_t offset) {
    int nd = em_ndim(view);
    const int64_t *sh = em_shape(view), *st = em_strides(view);
    int64_t n = em_numel(view), idx[EM_MAX_DIMS] = {0};
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = offset;
        for (int d = 0; d < nd; d++) off += idx[d] * st[d];
        v[i] = base[off];
        for (int d = nd - 1; d >= 0 && ++idx[d] == sh[d]; d--) idx[d] = 0;
    }
    return v;
}

/* ---- deterministic tensors ------------------------------------------------------------------ */

em_tensor *tu_uniform_tensor(int nd, const int64_t *shape, double lo, double hi, uint64_t seed) {
    int64_t n = tu_count(nd, shape);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    tu_rng rng = {seed * 0x9e3779b97f4a7c15ULL + 1};
    for (int64_t i = 0; i < n; i++) v[i] = (float)tu_uniform(&rng, lo, hi);
    em_tensor *t = em_from_data(EM_F32, nd, shape, v);
    free(v);
    cr_assert(t, "%s", em_last_error());
    return t;
}

em_tensor *tu_randn(int nd, const int64_t *shape, uint64_t seed) {
    em_tensor *t = em_randn(nd, shape, seed);
    cr_assert(t, "%s", em_last_error());
    return t;
}

em_tensor *tu_ints(em_dtype dt, int nd, const int64_t *shape, int mod, int lo) {
    int64_t n = tu_count(nd, shape);
    int64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = lo + (i * 37 + 11) % mod;
    em_tensor *l = em_from_data(EM_I64, nd, shape, v);
    free(v);
    cr_assert(l, "%s", em_last_error());
    em_tensor *t = em_cast(l, dt);
    em_release(l);
    cr_assert(t, "%s", em_last_error());
    return t;
}

em_tensor *tu_cast(em_tensor *t, em_dtype dt) {
    em_tensor *c = em_cast(t, dt);
    em_release(t);
    cr_assert(c, "%s", em_last_error());
    return c;
}

em_tensor *tu_transposed(em_tensor *t, int a, int b) {
    em_tensor *v = em_transpose(t, a, b);
    em_release(t);
    cr_assert(v, "%s", em_last_error());
    cr_assert(!em_is_contiguous(v));
    return v;
}

/* ---- comparing ------------------------------------------------------------------------------ */

bool tu_close_to(double got, double want, double rtol, double atol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= atol + rtol * fabs(want);
}

double tu_rtol_of(em_dtype dt) { return dt == EM_F32 ? 1e-5 : dt == EM_F64 ? 1e-12 : 0; }
double tu_atol_of(em_dtype dt) { return dt == EM_F32 ? 1e-6 : dt == EM_F64 ? 1e-14 : 0; }

static int rank(em_dtype d) { return d == EM_BOOL ? 0 : d == EM_I32 ? 1 : d == EM_I64 ? 2 : d == EM_F32 ? 3 : 4; }
em_dtype tu_promote(em_dtype a, em_dtype b) { return rank(a) >= rank(b) ? a : b; }

int64_t tu_source_index(int no, const int64_t *idx, int nd, const int64_t *shape) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++) off = off * shape[d] + (shape[d] == 1 ? 0 : idx[d + no - nd]);
    return off;
}

void tu_expect_shape(const em_tensor *t, int nd, const int64_t *shape, const char *what) {
    cr_assert_eq(em_ndim(t), nd, "%s: ndim %d, want %d", what, em_ndim(t), nd);
    for (int i = 0; i < nd; i++)
        cr_assert_eq(em_shape(t)[i], shape[i], "%s: dim %d is %lld, want %lld", what, i,
                     (long long)em_shape(t)[i], (long long)shape[i]);
}

void tu_expect_compiled(const em_tensor *got, const em_tensor *want, const char *what) {
    cr_assert(want, "%s: the eager call failed: %s", what, em_last_error());
    cr_assert(got, "%s: the compiled call failed: %s", what, em_last_error());
    cr_assert_eq(em_type(got), em_type(want), "%s: dtype %s, eager %s", what,
                 em_dtype_name(em_type(got)), em_dtype_name(em_type(want)));
    cr_assert_eq(em_ndim(got), em_ndim(want), "%s: ndim %d, eager %d", what, em_ndim(got), em_ndim(want));
    for (int i = 0; i < em_ndim(got); i++)
        cr_assert_eq(em_shape(got)[i], em_shape(want)[i], "%s: dim %d", what, i);
    if (!rt_dtype_is_float(em_type(want))) {
        size_t n, m;
        unsigned char *a = tu_bytes_of(got, &n), *b = tu_bytes_of(want, &m);
        cr_assert_eq(n, m);
        cr_expect_eq(memcmp(a, b, n), 0, "%s: values differ from eager", what);
        free(a), free(b);
        return;
    }
    double *g = tu_values_of(got), *w = tu_values_of(want);
    int64_t n = em_numel(want), bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        bool same = (isnan(g[i]) && isnan(w[i])) || g[i] == w[i] ||
                    fabs(g[i] - w[i]) <= 1e-5 + 1e-4 * fabs(w[i]);
        if (!same && first < 0) first = i;
        bad += !same;
    }
    cr_expect_eq(bad, 0, "%s: %lld of %lld values differ from eager beyond rtol 1e-4, atol 1e-5; first at %lld: "
                 "%.9g, eager %.9g", what, (long long)bad, (long long)n, (long long)first,
                 first >= 0 ? g[first] : 0.0, first >= 0 ? w[first] : 0.0);
    free(g), free(w);
}

void tu_expect_identical(const em_tensor *got, const em_tensor *want, const char *what) {
    cr_assert(want, "%s: the eager call failed: %s", what, em_last_error());
    cr_assert(got, "%s: the call under test failed: %s", what, em_last_error());
    cr_assert_eq(em_type(got), em_type(want), "%s: dtype %s, eager %s", what,
                 em_dtype_name(em_type(got)), em_dtype_name(em_type(want)));
    cr_assert_eq(em_ndim(got), em_ndim(want), "%s: ndim %d, eager %d", what, em_ndim(got),
                 em_ndim(want));
    for (int i = 0; i < em_ndim(got); i++) {
        cr_expect_eq(em_shape(got)[i], em_shape(want)[i], "%s: dim %d", what, i);
        cr_expect_eq(em_strides(got)[i], em_strides(want)[i], "%s: stride %d", what, i);
    }
    size_t n, m;
    unsigned char *a = tu_bytes_of(got, &n), *b = tu_bytes_of(want, &m);
    cr_assert_eq(n, m);
    cr_expect_eq(memcmp(a, b, n), 0, "%s: values differ from eager", what);
    free(a);
    free(b);
}

/* ---- the allocator's counters -------------------------------------------------------------- */

size_t tu_live_bytes(void) {
    em_memory_stats s;
    em_memory_stats_get(&s);
    return s.live_bytes;
}

uint64_t tu_allocations(void) {
    em_memory_stats s;
    em_memory_stats_get(&s);
    return s.allocations;
}

/* ---- runtime-layer tensors ----------------------------------------------------------------- */

em_tensor *tu_rt_new(em_dtype dt, int nd, const int64_t *shape) {
    em_tensor *t = rt_tensor_new("test", dt, nd, shape, false);
    cr_assert(t, "%s", em_last_error());
    return t;
}

em_tensor *tu_rt_view(const em_tensor *base, int nd, const int64_t *shape,
                      const int64_t *strides, int64_t offset) {
    em_tensor *t = rt_tensor_view(base, nd, shape, strides, base->offset + offset);
    cr_assert(t, "%s", em_last_error());
    return t;
}

em_tensor *tu_rt_permuted(const em_tensor *t, const int *perm) {
    int64_t sh[EM_MAX_DIMS], st[EM_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) sh[d] = t->shape[perm[d]], st[d] = t->strides[perm[d]];
    return tu_rt_view(t, t->ndim, sh, st, 0);
}

em_tensor *tu_rt_swapped(const em_tensor *t, int a, int b) {
    int perm[EM_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) perm[d] = d;
    perm[a] = b, perm[b] = a;
    return tu_rt_permuted(t, perm);
}

em_tensor *tu_rt_random(tu_rng *rng, em_dtype dt, int nd, const int64_t *shape, double scale,
                        double int_span, tu_bools bools) {
    em_tensor *t = tu_rt_new(dt, nd, shape);
    size_t esz = rt_dtype_size(dt);
    char *p = t->numel ? rt_tensor_data(t) : NULL;
    for (int64_t i = 0; i < t->numel; i++) {
        double u = tu_uniform(rng, -1, 1);
        double v = rt_dtype_is_float(dt) ? u * scale
                 : dt == EM_BOOL && bools == TU_BOOL_HALF ? u > 0 : floor(u * int_span);
        rt_value_store(dt, p + i * (int64_t)esz, v);
    }
    return t;
}

/* Address of element ix of t, through its strides. */
static char *addr(const em_tensor *t, const int64_t *ix) {
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += ix[d] * t->strides[d];
    return (char *)t->storage->data + off * (int64_t)rt_dtype_size(t->dtype);
}

double tu_rt_at(const em_tensor *t, const int64_t *ix) { return rt_value_load(t->dtype, addr(t, ix)); }

void tu_rt_set(em_tensor *t, const int64_t *ix, double v) { rt_value_store(t->dtype, addr(t, ix), v); }

double tu_rt_flat(const em_tensor *t, int64_t i) {
    return rt_value_load(t->dtype, rt_tensor_data(t) + i * (int64_t)rt_dtype_size(t->dtype));
}

void tu_unflatten(int64_t i, int nd, const int64_t *shape, int64_t *ix) {
    for (int d = nd - 1; d >= 0; d--) {
        ix[d] = shape[d] ? i % shape[d] : 0;
        i = shape[d] ? i / shape[d] : 0;
    }
}

void tu_fail_every_allocation(const char *op, int (*call)(void *), void *ctx) {
    int n = 1;
    for (;; n++) {
        em_clear_error();
        rt_alloc_fail_after(n);
        int rc = call(ctx);
        rt_alloc_fail_after(0);
        if (rc == 0) break;
        cr_assert_eq(rc, -1);
        cr_assert(strncmp(em_last_error(), op, strlen(op)) == 0 && strstr(em_last_error(), "out of memory"),
                  "allocation %d: '%s'", n, em_last_error());
    }
    cr_assert_gt(n, 1, "%s allocated nothing", op);
}

void tu_capture_begin(tu_capture *c) {
    fflush(stderr);
    c->tmp = tmpfile();
    cr_assert(c->tmp);
    c->saved = dup(2);
    cr_assert_geq(c->saved, 0);
    cr_assert_geq(dup2(fileno(c->tmp), 2), 0);
}

char *tu_capture_end(tu_capture *c) {
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    long n = ftell(c->tmp);
    if (n < 0) n = 0;
    rewind(c->tmp);
    char *s = calloc((size_t)n + 1, 1);
    cr_assert(s);
    size_t got = fread(s, 1, (size_t)n, c->tmp);
    s[got] = '\0';
    fclose(c->tmp);
    return s;
}

