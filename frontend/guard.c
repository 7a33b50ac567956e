/*
 * guard.c — the guards of a compiled function: when may a graph be reused?
 *
 * A graph traced from one call is valid for another call exactly when every
 * tensor argument has the same dtype, shape and strides and every scalar
 * argument the same value (scalars are baked into the graph). Both are packed
 * into one flat key of int64 words, so a cache lookup is a length check and a
 * memcmp per cached graph: a handful of nanoseconds per argument. Strides of
 * size-1 dims carry no meaning and are stored as 0, so equivalent layouts
 * share a graph.
 */
#include "frontend.h"

#include <string.h>

enum { TENSOR_TAG = 0x7e, NULL_TAG = -1 };

int fe_guard_key(const fe_sig *sig, void **args, int64_t *key) {
    int k = 0;
    for (int i = 0; i < sig->nargs; i++) {
        switch (sig->args[i]) {
        case FE_TENSOR: {
            const em_tensor *t = *(em_tensor *const *)args[i];
            if (!t) return -1;
            key[k++] = ((int64_t)t->dtype << 8 | t->ndim) << 8 | TENSOR_TAG;
            for (int d = 0; d < t->ndim; d++) {
                key[k++] = t->shape[d];
                key[k++] = t->shape[d] == 1 ? 0 : t->strides[d];
            }
            break;
        }
        case FE_INT: key[k++] = *(const int *)args[i]; break;
        case FE_INT64: key[k++] = *(const int64_t *)args[i]; break;
        case FE_FLOAT: {
            uint32_t b;
            memcpy(&b, args[i], 4);
            key[k++] = b;
            break;
        }
        case FE_DOUBLE: memcpy(&key[k++], args[i], 8); break;
        default: break; /* out-parameters are not guarded */
        }
    }
    return k;
}

bool fe_guard_match(const fe_sig *sig, void **args, const int64_t *key, int klen) {
    int k = 0;
    for (int i = 0; i < sig->nargs; i++) {
        switch (sig->args[i]) {
        case FE_TENSOR: {
            const em_tensor *t = *(em_tensor *const *)args[i];
            int nd = t->ndim;
            if (k + 1 + 2 * nd > klen || key[k++] != (((int64_t)t->dtype << 8 | nd) << 8 | TENSOR_TAG))
                return false;
            for (int d = 0; d < nd; d++, k += 2)
                if (key[k] != t->shape[d] || key[k + 1] != (t->shape[d] == 1 ? 0 : t->strides[d]))
                    return false;
            break;
        }
        case FE_INT: if (k >= klen || key[k++] != *(const int *)args[i]) return false; break;
        case FE_INT64: if (k >= klen || key[k++] != *(const int64_t *)args[i]) return false; break;
        case FE_FLOAT: {
            uint32_t b;
            memcpy(&b, args[i], 4);
            if (k >= klen || key[k++] != b) return false;
            break;
        }
        case FE_DOUBLE: {
            int64_t b;
            memcpy(&b, args[i], 8);
            if (k >= klen || key[k++] != b) return false;
            break;
        }
        default: break;
        }
    }
    return k == klen;
}

/* Describes the first difference between two keys of sig, for recompile logs:
 * "arg 0 shape [128,1024] != [64,1024]". */
void fe_guard_diff(const fe_sig *sig, const int64_t *now, int nlen, const int64_t *old, int olen,
                   char *buf, size_t cap) {
    int a = 0, b = 0;
    for (int i = 0; i < sig->nargs; i++) {
        fe_type ty = sig->args[i];
        if (ty == FE_TENSOR_OUT) continue;
        if (ty != FE_TENSOR) {
            if (now[a] != old[b]) {
                if (ty == FE_FLOAT || ty == FE_DOUBLE) {
                    double x, y;
                    float fx, fy;
                    uint32_t ux = (uint32_t)now[a], uy = (uint32_t)old[b];
                    if (ty == FE_FLOAT) memcpy(&fx, &ux, 4), memcpy(&fy, &uy, 4), x = fx, y = fy;
                    else memcpy(&x, &now[a], 8), memcpy(&y, &old[b], 8);
                    snprintf(buf, cap, "arg %d value %g != %g", i, x, y);
                } else {
                    snprintf(buf, cap, "arg %d value %lld != %lld", i, (long long)now[a],
                             (long long)old[b]);
                }
                return;
            }
            a++, b++;
            continue;
        }
        int nd = (int)(now[a] >> 8 & 0xff), od = (int)(old[b] >> 8 & 0xff);
        int64_t ns[EM_MAX_DIMS], os[EM_MAX_DIMS], nst[EM_MAX_DIMS], ost[EM_MAX_DIMS];
        for (int d = 0; d < nd; d++) ns[d] = now[a + 1 + 2 * d], nst[d] = now[a + 2 + 2 * d];
        for (int d = 0; d < od; d++) os[d] = old[b + 1 + 2 * d], ost[d] = old[b + 2 + 2 * d];
        char x[96], y[96];
        if ((now[a] >> 16) != (old[b] >> 16)) {
            snprintf(buf, cap, "arg %d dtype %s != %s", i, em_dtype_name((em_dtype)(now[a] >> 16)),
                     em_dtype_name((em_dtype)(old[b] >> 16)));
            return;
        }
        if (nd != od || memcmp(ns, os, (size_t)nd * sizeof *ns) != 0) {
            snprintf(buf, cap, "arg %d shape %s != %s", i, rt_shape_str(x, sizeof x, nd, ns),
                     rt_shape_str(y, sizeof y, od, os));
            return;
        }
        if (memcmp(nst, ost, (size_t)nd * sizeof *nst) != 0) {
            snprintf(buf, cap, "arg %d strides %s != %s", i, rt_shape_str(x, sizeof x, nd, nst),
                     rt_shape_str(y, sizeof y, od, ost));
            return;
        }
        a += 1 + 2 * nd, b += 1 + 2 * od;
    }
    snprintf(buf, cap, "%s", nlen == olen ? "no difference" : "key length differs");
}
