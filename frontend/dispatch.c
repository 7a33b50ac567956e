/*
 * dispatch.c — one path from a public op call to its result.
 *
 * fe_dispatch is where every op call goes: NULL checks, the op's shape rule,
 * then the eager adapter named in ops.def, then scope adoption. The simple
 * unary and binary entry points (em_exp, em_add, ...) are generated here from
 * ops.def too, so adding such an op is one line in the table.
 *
 * A NULL argument usually means an earlier call failed. The message then keeps
 * that first failure ("em_mul: argument a is NULL (first failure: em_add:
 * shapes [2,3] and [4] cannot be broadcast)"), so a chain of calls can be
 * checked once, at its end.
 */
#include "frontend.h"

#include <stdlib.h>
#include <string.h>

void fe_null_arg(const char *api, const char *what) {
    static const char mark[] = "(first failure: ";
    const char *prev = em_last_error();
    const char *first = strstr(prev, mark);
    char keep[400];
    if (first) {
        snprintf(keep, sizeof keep, "%s", first + sizeof mark - 1);
        size_t n = strlen(keep);
        if (n && keep[n - 1] == ')') keep[n - 1] = '\0';
    } else {
        snprintf(keep, sizeof keep, "%s", prev);
    }
    if (keep[0]) rt_error("%s: %s is NULL %s%s)", api, what, mark, keep);
    else rt_error("%s: %s is NULL", api, what);
}

/* Runtime kernels name what they were doing ("view: out of memory"); a user
 * needs the public call first: "em_expand: view: out of memory". */
static void name_failure(const char *api) {
    const char *m = em_last_error();
    size_t n = strlen(api);
    if (strncmp(m, api, n) == 0 && m[n] == ':') return;
    char copy[400];
    snprintf(copy, sizeof copy, "%s", m[0] ? m : "failed");
    rt_error("%s: %s", api, copy);
}

static em_tensor *dispatch_typed(ir_op op, const char *api, em_tensor *const *in, int nin,
                                 ir_attrs *attrs, ir_type *types,
                                 const ir_type **tp, uintptr_t site) {
    bool proxies = false;
    unsigned optional = ir_op_optional(op);
    for (int i = 0; i < nin; i++) {
        if (!in[i] && !(i < 32 && (optional >> i) & 1u)) {
            char what[40];
            snprintf(what, sizeof what, nin == 1 ? "the tensor" : "tensor argument %d", i + 1);
            fe_null_arg(api, what);
            return NULL;
        }
        if (in[i]) ir_type_of(in[i], &types[i]);
        tp[i] = in[i] ? &types[i] : NULL;
        proxies |= in[i] && fe_is_proxy(in[i]);
    }
    /* Tracing records ops on proxies; ops on real tensors only still run (they
     * are constants of the graph, folded at trace time). */
    if (proxies) {
        fe_trace *t = fe_trace_current();
        if (t) return fe_trace_record(t, op, api, in, nin, attrs, site);
        rt_error("%s: a tensor from a trace was used outside it (kept in a global?)", api);
        return NULL;
    }
    ir_type out;
    if (ir_ops[op].shape(op, api, tp, nin, attrs, &out)) return NULL;
    em_tensor *r = rt_scope_adopt(ir_ops[op].eager(op, in, nin, attrs, &out, NULL));
    if (r) {
        em_clear_error(); /* so a later NULL argument chains only a real failure */
        return r;
    }
    name_failure(api);
    return NULL;
}

em_tensor *fe_dispatch(ir_op op, const char *api, em_tensor *const *in, int nin,
                       ir_attrs *attrs, uintptr_t site) {
    enum { SMALL = 8 };
    ir_type types[SMALL];
    const ir_type *tp[SMALL];
    if (nin <= SMALL) return dispatch_typed(op, api, in, nin, attrs, types, tp, site);
    ir_type *big = rt_malloc((size_t)nin * sizeof *big, api);
    const ir_type **bigp = big ? rt_malloc((size_t)nin * sizeof *bigp, api) : NULL;
    em_tensor *r = bigp ? dispatch_typed(op, api, in, nin, attrs, big, bigp, site) : NULL;
    free(bigp);
    free(big);
    return r;
}

/* The generated entry points of plain unary and binary ops. */
#define API_UNARY(name, E)                                                                \
    em_tensor *em_##name(em_tensor *t) {                                                  \
        ir_attrs a = {0};                                                                 \
        return fe_dispatch(IR_OP_##E, "em_" #name, &t, 1, &a, FE_SITE);                         \
    }
#define API_BINARY(name, E)                                                               \
    em_tensor *em_##name(em_tensor *x, em_tensor *y) {                                    \
        ir_attrs a = {0};                                                                 \
        em_tensor *in[2] = {x, y};                                                        \
        return fe_dispatch(IR_OP_##E, "em_" #name, in, 2, &a, FE_SITE);                         \
    }
#define API_CUSTOM(name, E)
#define OP(E, name, arity, optional, kind, api, rule, eager, kernel) API_##api(name, E)
#include "ops.def"
#undef OP
