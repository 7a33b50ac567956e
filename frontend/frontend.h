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

#include "codegen.h"

/* Checks, types and runs one op call. `api` is the public name for messages;
 * inputs may be NULL where ops.def says they are optional. Returns the result, adopted by the
 * innermost scope, or NULL with an error. */
em_tensor *fe_dispatch(ir_op op, const char *api, em_tensor *const *in, int nin,
                       ir_attrs *attrs, uintptr_t site);
/* The user's call site, for the graph printer: use in public entry points only. */
#define FE_SITE ((uintptr_t)__builtin_return_address(0))

/* Reports a NULL argument, keeping the first failure of a chain in the message. */
void fe_null_arg(const char *api, const char *what);

/* ---- tracing (trace.c) ----------------------------------------------------------------- */

/* While a trace is active on this thread, public ops on proxy tensors record
 * graph nodes instead of computing. A proxy is an em_tensor with a dtype and
 * shape but no storage; its aux is its node. */
typedef struct fe_trace {
    ir_graph *graph;
    uint64_t id;             /* tags the proxies of this trace */
    bool failed;             /* an op failed while tracing: its message is set */
    char brk[256];           /* non-empty: why the graph broke (em_item, em_read, ...) */
} fe_trace;

void fe_trace_begin(fe_trace *t, ir_graph *g);
void fe_trace_end(fe_trace *t);
fe_trace *fe_trace_current(void);              /* NULL when not tracing */
/* A proxy for node n (not adopted by a scope); NULL with an error on OOM. */
em_tensor *fe_proxy_new(fe_trace *t, ir_node *n, const int64_t *strides);
bool fe_is_proxy(const em_tensor *x);
/* The node of x in the current trace: its own node for a proxy of this trace, a
 * constant node for a real tensor; NULL with an error for a stale proxy. */
ir_node *fe_trace_node_of(fe_trace *t, em_tensor *x);
/* Records op(in...) into the current trace; returns a new proxy adopted by the
 * innermost scope, or NULL (and marks the trace failed). */
em_tensor *fe_trace_record(fe_trace *t, ir_op op, const char *api, em_tensor *const *in, int nin,
                           ir_attrs *attrs, uintptr_t site);
/* Called by data reads (em_read, em_item) on a proxy: records a graph break.
 * Returns the error status the read should return. */
int fe_trace_break(const char *api, const em_tensor *x, uintptr_t site);

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

/* ---- guards (guard.c) ----------------------------------------------------------------- */

/* Longest key: every argument a tensor of EM_MAX_DIMS dims. */
#define FE_KEY_MAX (FE_MAX_ARGS * (1 + 2 * EM_MAX_DIMS))
/* Packs the guarded facts of a call's arguments (as a closure receives them)
 * into key; returns its length, or -1 when a tensor argument is NULL. */
int fe_guard_key(const fe_sig *sig, void **args, int64_t *key);
/* Whether a call's arguments (no NULL tensors) have exactly this key: the hit
 * path, comparing in place without building a key. */
bool fe_guard_match(const fe_sig *sig, void **args, const int64_t *key, int klen);
/* The first difference between two keys, for EMBER_LOG=recompiles. */
void fe_guard_diff(const fe_sig *sig, const int64_t *now, int nlen, const int64_t *old, int olen,
                   char *buf, size_t cap);

/* ---- logging and dumps (observe.c) ---------------------------------------------------- */

/* EMBER_LOG categories, read once from the environment. */
typedef enum fe_log_cat {
    FE_LOG_GRAPH = 1 << 0, FE_LOG_OPT = 1 << 1, FE_LOG_KERNELS = 1 << 2,
    FE_LOG_MEMPLAN = 1 << 3, FE_LOG_LLVM = 1 << 4, FE_LOG_ASM = 1 << 5,
    FE_LOG_GUARDS = 1 << 6, FE_LOG_RECOMPILES = 1 << 7, FE_LOG_FALLBACKS = 1 << 8,
    FE_LOG_COMPILE = 1 << 9,
} fe_log_cat;
bool fe_log_on(fe_log_cat cat);
void fe_log(fe_log_cat cat, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes stage of the captured graph g (prog: its program and exec its code, NULL: none yet) to
 * out; -1 with an error for an unknown stage. With g NULL, only checks the
 * stage name. */
int fe_dump_stage(const ir_graph *g, const pass_program *prog, const cg_exec *exec, const char *stage,
                  FILE *out);
/* Writes every stage as <dir>/<name>.<n>.<stage>.txt (dot: .dot); on an
 * unwritable dir prints one message to stderr and returns -1. */
int fe_dump_all(const ir_graph *g, const pass_program *prog, const cg_exec *exec, const char *dir,
                const char *name, int n);
/* Logs a program's kernels, memory plan and code under EMBER_LOG=kernels,memplan,llvm,asm. */
void fe_log_program(const pass_program *prog, const cg_exec *exec);
/* Logs g under the categories that are enabled. */
void fe_log_graph(const ir_graph *g);
/* The pipeline's log hook (a pass_log_fn): under EMBER_LOG=opt, each pass's
 * summary line and resulting graph. */
void fe_log_pass(void *ctx, const char *pass, const ir_graph *g, const char *summary);

#endif /* EMBER_FRONTEND_H */
