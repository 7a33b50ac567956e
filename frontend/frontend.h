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

/* ---- signatures (signature.c) ------------------------------------------------------ */

/* A compiled function's C type, parsed from a string written in C:
 * "tensor(tensor, tensor, int, float)", "void(tensor, tensor *, tensor *)". */
#define FE_MAX_ARGS 32
typedef enum fe_type {
    FE_VOID,       /* return type only */
    FE_TENSOR,     /* em_tensor * */
    FE_TENSOR_OUT, /* em_tensor ** : an out-parameter (only with a void return) */
    FE_INT,        /* int */
    FE_INT64,      /* int64_t */
    FE_FLOAT,      /* float */
    FE_DOUBLE,     /* double */
} fe_type;

typedef struct fe_sig {
    fe_type ret;                /* FE_TENSOR or FE_VOID */
    int nargs;
    fe_type args[FE_MAX_ARGS];
    int n_tensors;              /* FE_TENSOR arguments */
    int n_outs;                 /* FE_TENSOR_OUT arguments */
    int n_scalars;              /* int, int64_t, float, double arguments */
} fe_sig;

/* Parses text into sig. Whitespace is free; "tensor *" and "tensor*" are the
 * out-parameter type; "void" alone in the parentheses means no arguments;
 * out-parameters need a void return and a void return needs at least one
 * out-parameter. On error returns -1 with a message naming the column and the
 * token: `em_compile: signature "tensor(tensor,)": column 15: expected a type, got ")"`. */
int fe_sig_parse(const char *text, fe_sig *sig);
/* Writes the canonical form ("tensor(tensor, int)") into buf; returns buf. */
char *fe_sig_format(const fe_sig *sig, char *buf, size_t cap);

/* ---- closures (closure.c) ------------------------------------------------------------ */

/* A libffi closure with the C type of a signature: calling `code` calls
 * handler(ctx, ret, args) where args[i] points at argument i (as libffi passes
 * them) and ret at the return slot (an em_tensor * for a tensor return). */
typedef struct fe_closure fe_closure;
typedef void (*fe_handler)(void *ctx, void *ret, void **args);
fe_closure *fe_closure_create(const fe_sig *sig, fe_handler handler, void *ctx);
void *fe_closure_code(const fe_closure *c); /* the function pointer users call */
void fe_closure_destroy(fe_closure *c);     /* NULL-safe */
/* Calls fn, whose C type is sig, with the arguments as the handler received
 * them (the eager path of a compiled function). */
void fe_closure_call(const fe_closure *c, void *fn, void *ret, void **args);

#endif /* EMBER_FRONTEND_H */
