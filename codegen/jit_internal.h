/*
 * jit_internal.h — what jit.c (the session, units) and keyed.c (units shared
 * by key, the object cache in front of the compiler) share about a unit. No
 * other file includes it.
 */
#ifndef EMBER_JIT_INTERNAL_H
#define EMBER_JIT_INTERNAL_H

#include "codegen.h"

#include <llvm-c/Orc.h>

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
/* Drops one owner of keyed unit u: true when others still own it; false when
 * that was the last, with the key lock still held and u off the live list, so
 * that the caller removes its code and then calls cg_keyed_unlock. */
bool cg_keyed_release(cg_unit *u);
void cg_keyed_unlock(void);

#endif /* EMBER_JIT_INTERNAL_H */
