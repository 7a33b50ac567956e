/*
 * closure.c — a function pointer with the user's C type, made at run time.
 *
 * em_compile returns something the user calls exactly like the function they
 * wrapped: `em_tensor *(*)(em_tensor *, int, float)` or whatever the signature
 * says. C cannot write such a function generically, so libffi builds one: a
 * small executable trampoline that, whatever the argument registers and stack
 * hold under the platform ABI, collects the arguments into an array and calls
 * one C function of ours (closure_entry), which hands them to the frontend's
 * handler as handler(ctx, ret, args). The same call interface (ffi_cif) runs
 * the other direction in fe_closure_call: given the argument array the handler
 * received, it calls the user's original function with them — the eager path
 * of a compiled function (guard limit reached, graph break, EMBER_DISABLE).
 *
 * Types map one to one: em_tensor * and em_tensor ** are pointers, int is
 * sint32, int64_t sint64, float and double themselves; the return is a pointer
 * or void. libffi does the ABI work, including floats and integers that spill
 * to the stack past the argument registers.
 *
 * Invariants:
 *  - A closure is immutable once created, so any number of threads may call
 *    its code at once; it owns its cif, the cif's type array and the libffi
 *    closure, and fe_closure_destroy frees all three. The caller must not
 *    destroy a closure while a call through it is running.
 *  - The handler sees args[i] pointing at argument i with its C type
 *    (int *, int64_t *, float *, double *, em_tensor **, em_tensor ***).
 *  - For a tensor return, ret points at an em_tensor * already set to NULL, so
 *    a handler that returns early without writing it makes the call return
 *    NULL. For a void return the handler gets ret == NULL.
 *  - Every failure returns NULL with one message and frees what it made.
 */
#include "frontend.h"

#include <ffi.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct fe_closure {
    ffi_cif cif;                   /* the call interface of the signature */
    ffi_type *atypes[FE_MAX_ARGS]; /* argument types; cif.arg_types points here */
    ffi_closure *closure;          /* writable half, from ffi_closure_alloc */
    void *code;                    /* executable half: the function users call */
    fe_handler handler;            /* receives every call */
    void *ctx;                     /* handler's first argument */
    bool void_ret;                 /* the signature returns void */
};

static ffi_type *ffi_type_of(fe_type t) {
    switch (t) {
    case FE_VOID: return &ffi_type_void;
    case FE_TENSOR:
    case FE_TENSOR_OUT: return &ffi_type_pointer;
    case FE_INT: return &ffi_type_sint32;
    case FE_INT64: return &ffi_type_sint64;
    case FE_FLOAT: return &ffi_type_float;
    case FE_DOUBLE: return &ffi_type_double;
    }
    return NULL;
}

static const char *ffi_status_name(ffi_status st) {
    switch (st) {
    case FFI_OK: return "FFI_OK";
    case FFI_BAD_TYPEDEF: return "FFI_BAD_TYPEDEF";
    case FFI_BAD_ABI: return "FFI_BAD_ABI";
    case FFI_BAD_ARGTYPE: return "FFI_BAD_ARGTYPE";
    }
    return "an unknown libffi status";
}

/* An fe_sig that did not come from fe_sig_parse may be anything: check it
 * before libffi sees it. 0, or -1 with a message. */
static int sig_check(const fe_sig *sig) {
    if (sig->ret != FE_TENSOR && sig->ret != FE_VOID)
        return rt_error("em_compile: closure: return type %d is not tensor or void",
                        (int)sig->ret);
    if (sig->nargs < 0 || sig->nargs > FE_MAX_ARGS)
        return rt_error("em_compile: closure: %d arguments (0 to %d allowed)", sig->nargs,
                        FE_MAX_ARGS);
    for (int i = 0; i < sig->nargs; i++) {
        fe_type t = sig->args[i];
        if (t == FE_VOID || !ffi_type_of(t))
            return rt_error("em_compile: closure: argument %d has invalid type %d", i + 1,
                            (int)t);
    }
    return 0;
}

/* What every call of a closure's code runs: libffi has gathered the
 * arguments; pass them on. */
static void closure_entry(ffi_cif *cif, void *ret, void **args, void *user) {
    (void)cif;
    const fe_closure *c = user;
    if (!c->void_ret) *(em_tensor **)ret = NULL;
    c->handler(c->ctx, c->void_ret ? NULL : ret, args);
}

/* Prepares c->cif from sig; 0, or -1 with a message. */
static int closure_prep_cif(fe_closure *c, const fe_sig *sig) {
    for (int i = 0; i < sig->nargs; i++) c->atypes[i] = ffi_type_of(sig->args[i]);
    ffi_type *rtype = c->void_ret ? &ffi_type_void : &ffi_type_pointer;
    ffi_status st =
        ffi_prep_cif(&c->cif, FFI_DEFAULT_ABI, (unsigned)sig->nargs, rtype, c->atypes);
    if (st == FFI_OK) return 0;
    char text[512];
    return rt_error("em_compile: libffi cannot describe \"%s\" (ffi_prep_cif: %s)",
                    fe_sig_format(sig, text, sizeof text), ffi_status_name(st));
}

/* Allocates and prepares the executable closure; 0, or -1 with a message and
 * nothing left allocated. */
static int closure_prep_code(fe_closure *c, const fe_sig *sig) {
    char text[512];
    c->closure = ffi_closure_alloc(sizeof(ffi_closure), &c->code);
    if (!c->closure) {
        c->code = NULL;
        return rt_error("em_compile: libffi could not allocate an executable closure "
                        "for \"%s\"", fe_sig_format(sig, text, sizeof text));
    }
    ffi_status st = ffi_prep_closure_loc(c->closure, &c->cif, closure_entry, c, c->code);
    if (st == FFI_OK) return 0;
    ffi_closure_free(c->closure);
    c->closure = NULL;
    c->code = NULL;
    return rt_error("em_compile: libffi cannot make a closure for \"%s\" "
                    "(ffi_prep_closure_loc: %s)",
                    fe_sig_format(sig, text, sizeof text), ffi_status_name(st));
}

fe_closure *fe_closure_create(const fe_sig *sig, fe_handler handler, void *ctx) {
    if (!sig) {
        rt_error("em_compile: closure: the signature is NULL");
        return NULL;
    }
    if (!handler) {
        rt_error("em_compile: closure: the handler is NULL");
        return NULL;
    }
    if (sig_check(sig)) return NULL;
    fe_closure *c = rt_malloc(sizeof *c, "em_compile");
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->handler = handler;
    c->ctx = ctx;
    c->void_ret = sig->ret == FE_VOID;
    if (closure_prep_cif(c, sig) || closure_prep_code(c, sig)) {
        free(c);
        return NULL;
    }
    return c;
}

void *fe_closure_code(const fe_closure *c) { return c ? c->code : NULL; }

void fe_closure_destroy(fe_closure *c) {
    if (!c) return;
    ffi_closure_free(c->closure);
    free(c);
}

void fe_closure_call(const fe_closure *c, void *fn, void *ret, void **args) {
    EM_ASSERT(c && fn && (args || c->cif.nargs == 0));
    /* libffi writes a whole ffi_arg for a pointer return; a caller that does
     * not want the result (or a void function) gets this scratch slot. */
    ffi_arg discard = 0;
    ffi_cif *cif = (ffi_cif *)&c->cif; /* ffi_call does not modify it */
    ffi_call(cif, FFI_FN(fn), ret ? ret : &discard, args);
}
