/*
 * frontend.h — the whole interface of ember's frontend layer.
 *
 * The frontend owns the public op entry points. Each one checks its arguments,
 * computes the result type with the op's shape rule (ir/shape.c) and then runs
 * the op eagerly through its adapter (eager.c) — or, once tracing exists,
 * records a graph node instead. Both paths go through fe_dispatch, so an op is
 * checked the same way however it runs.
 */
#ifndef EMBER_FRONTEND_H
#define EMBER_FRONTEND_H

#include "ir.h"

/* Checks, types and runs one op call. `api` is the public name for messages;
 * bit i of `optional` lets in[i] be NULL. Returns the result, adopted by the
 * innermost scope, or NULL with an error. */
em_tensor *fe_dispatch(ir_op op, const char *api, em_tensor *const *in, int nin,
                       unsigned optional, ir_attrs *attrs);

/* Reports a NULL argument, keeping the first failure of a chain in the message. */
void fe_null_arg(const char *api, const char *what);

#endif /* EMBER_FRONTEND_H */
