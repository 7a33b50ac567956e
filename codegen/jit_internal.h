/*
 * jit_internal.h — what jit.c (the session, units), keyed.c (units shared
 * by key, the object cache in front of the compiler) and split.c (a module's
 * machine code on two threads) share about a unit. No other file includes it.
 */
#ifndef EMBER_JIT_INTERNAL_H
#define EMBER_JIT_INTERNAL_H

#include "codegen.h"

#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

struct cg_unit {
    char *name;                     /* for messages */
    char *key;                      /* cg_unit_create_keyed: shared by key, else NULL */
    int refs;                       /* keyed units: owners (guarded by keyed.lock) */
    struct cg_unit *next;           /* keyed units: the live list */
    LLVMOrcResourceTrackerRef rt;   /* owns the unit's code in the JIT; NULL until linked */
    int nsym;
    char **syms;                    /* exported definitions, nsym */
    void **addrs;                   /* their addresses */
    char *ir;                       /* optimised IR or NULL */
    char *asm_text;                 /* host assembly or NULL */
    uint64_t ir_hash;               /* cg_module_hash of the module it came from; keyed units */
    cg_times times;
};

/* A copy of s (NULL with an error naming `what` when out of memory). */
char *cg_str_dup(const char *s, const char *what);
/* Module -> object file: verify, optimise, keep the texts asked for, compile.
 * Does not consume mod. 0, or -1 with an error. */
int cg_unit_compile_obj(cg_unit *u, LLVMModuleRef mod, const cg_opt *opts, LLVMMemoryBufferRef *obj);
/* Adds the object (consumed) under a new resource tracker and resolves every
 * exported name, which links it. 0, or -1 with an error. */
int cg_unit_link_obj(cg_unit *u, LLVMMemoryBufferRef obj);
/* A target machine for this thread's use until cg_tm_release (NULL with an
 * error); cg_tm_release(NULL) is a no-op. */
LLVMTargetMachineRef cg_tm_acquire(void);
void cg_tm_release(LLVMTargetMachineRef tm);
/* The backend over mod (which it changes): an object file in *out. 0, or -1
 * with an error. */
int cg_emit_object(cg_unit *u, LLVMTargetMachineRef tm, LLVMModuleRef mod, LLVMMemoryBufferRef *out);
/* Whether v is exported (a definition with a name the linker sees). */
bool cg_exported(LLVMValueRef v);
/* The one place an LLVM error (err, or the message msg, disposed of) becomes
 * an ember error, prefixed by `what`. Returns -1. */
int cg_fail(const char *what, LLVMErrorRef err, char *msg);
/* split.c: when mod has enough code (and every definition is exported), its
 * object as two, made on two threads (this one with tm), in one buffer
 * (*split true); else nothing (*split false, 0). 0, or -1 with an error. */
int cg_split_emit(cg_unit *u, LLVMTargetMachineRef tm, LLVMModuleRef mod, LLVMMemoryBufferRef *obj, bool *split);
/* The objects in a buffer from cg_split_emit (or a plain object file: one),
 * at most max, into start[i] / len[i]: their count, or -1 when the buffer is
 * malformed. */
int cg_objs(const char *p, size_t n, const char **start, size_t *len, int max);
/* Drops one owner of keyed unit u: true when others still own it; false when
 * that was the last, with the key lock still held and u off the live list, so
 * that the caller removes its code and then calls cg_keyed_unlock. */
bool cg_keyed_release(cg_unit *u);
void cg_keyed_unlock(void);

#endif /* EMBER_JIT_INTERNAL_H */
