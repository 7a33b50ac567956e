/*
 * keyed.c — units shared by key, and the object cache in front of the compiler.
 *
 * emit.c names a program's functions by its key's hash (key.c), so one key is
 * one set of symbols in the JIT. cg_unit_get_keyed hands out a live unit of
 * the key when there is one (reference counted), else the object cache's
 * entry linked as a new unit, else the module (built only now, by the
 * caller's maker) compiled and linked, and then stored. Every keyed create
 * holds one lock, so a key's symbols are defined once at a time; a unit's last
 * owner removes its code under the same lock (jit.c's cg_unit_destroy), so a
 * new unit of the key can only be linked once the old one is gone.
 *
 * Each unit records the hash of the module it was compiled from. Under
 * EMBER_CACHE_VERIFY=1 every unit found by key (live or cached) has its
 * module built anyway and hashed: a different hash means the key missed
 * something the code depends on, and ember aborts. The tests run so.
 */
#include "codegen.h"
#include "jit_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    pthread_mutex_t lock;        /* the list, and every keyed create: one symbol set at a time */
    cg_unit *live;
} keyed = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool cg_keyed_release(cg_unit *u) {
    pthread_mutex_lock(&keyed.lock);
    if (--u->refs > 0) {
        pthread_mutex_unlock(&keyed.lock);
        return true;
    }
    for (cg_unit **p = &keyed.live; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    return false;
}

void cg_keyed_unlock(void) { pthread_mutex_unlock(&keyed.lock); }

/* EMBER_CACHE_VERIFY=1: every unit found by key is checked against the
 * module its key stands for (tests run so; see key.c). */
static bool verifying(void) {
    const char *v = getenv("EMBER_CACHE_VERIFY");
    return v && *v && strcmp(v, "0") != 0;
}

/* Under EMBER_CACHE_VERIFY: mod (from make) must hash as the module the code
 * found under key was compiled from. A key that misses something the code
 * depends on is a bug: loud, even though the code would still run. */
static int verify_found(const char *name, const char *key, LLVMModuleRef mod, uint64_t want, double *ms) {
    uint64_t h;
    double t0 = rt_now_ms();
    if (!mod || cg_module_hash(mod, &h) != 0) return -1;
    *ms += rt_now_ms() - t0;
    if (h != want) {
        const char *what = strrchr(key, '|'); /* the program's part: the rest names ember, LLVM, the CPU */
        fprintf(stderr, "ember: codegen %s: EMBER_CACHE_VERIFY: the code found under the key '...%s' was "
                "compiled from the module %016llx, not from this key's %016llx\n", name, what ? what : key,
                (unsigned long long)want, (unsigned long long)h);
        EM_ASSERT(!"the code found under a key was compiled from the module the key stands for");
    }
    return 0;
}

/* A unit from a cached object: its symbols, texts, and the object linked. */
static cg_unit *unit_from_blob(const char *name, cg_blob *b) {
    cg_unit *u = rt_malloc(sizeof *u, "codegen");
    if (!u) return NULL;
    *u = (cg_unit){0};
    u->name = cg_str_dup(name, "codegen");
    u->addrs = calloc((size_t)(b->nsym ? b->nsym : 1), sizeof *u->addrs);
    if (!u->name || !u->addrs) {
        cg_unit_destroy(u);
        return NULL;
    }
    u->syms = b->syms, u->nsym = b->nsym, u->ir = b->ir, u->asm_text = b->asm_text, u->ir_hash = b->ir_hash;
    b->syms = NULL, b->nsym = 0, b->ir = b->asm_text = NULL;
    LLVMMemoryBufferRef obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(b->obj, b->nobj, name);
    if (cg_unit_link_obj(u, obj) != 0) {
        cg_unit_destroy(u);
        return NULL;
    }
    return u;
}

/* Compiles mod (not consumed) and links it; the object, names and texts go to blob. */
static cg_unit *unit_compiled(LLVMModuleRef mod, const char *name, const cg_opt *opts, cg_blob *blob,
                              uint64_t ir_hash) {
    cg_unit *u = rt_malloc(sizeof *u, "codegen");
    if (!u) return NULL;
    *u = (cg_unit){0};
    LLVMMemoryBufferRef obj = NULL;
    int rc = (u->name = cg_str_dup(name, "codegen")) ? 0 : -1;
    u->ir_hash = ir_hash;
    if (rc == 0) rc = cg_unit_compile_obj(u, mod, opts, &obj);
    if (rc == 0) {
        blob->ir_hash = u->ir_hash;
        blob->nobj = LLVMGetBufferSize(obj);
        blob->obj = malloc(blob->nobj ? blob->nobj : 1);
        blob->syms = calloc((size_t)(u->nsym ? u->nsym : 1), sizeof *blob->syms);
        bool whole = blob->obj && blob->syms;
        if (blob->obj) memcpy(blob->obj, LLVMGetBufferStart(obj), blob->nobj);
        for (int i = 0; blob->syms && i < u->nsym; i++)
            whole &= (blob->syms[blob->nsym++] = strdup(u->syms[i])) != NULL;
        blob->ir = u->ir ? strdup(u->ir) : NULL;
        blob->asm_text = u->asm_text ? strdup(u->asm_text) : NULL;
        whole &= (!u->ir || blob->ir) && (!u->asm_text || blob->asm_text);
        if (!whole) cg_blob_free(blob); /* out of memory: the unit is fine, only not cached */
        rc = cg_unit_link_obj(u, obj);
    }
    if (rc != 0) {
        char saved[512];
        snprintf(saved, sizeof saved, "%s", em_last_error());
        cg_unit_destroy(u);
        rt_error("%s", saved);
        return NULL;
    }
    return u;
}

/* A throwaway compile of mod (not consumed) with opts, for the texts a
 * found unit lacks (want_ir/want_asm, when not NULL). 0, or -1 with an error. */
static int compile_texts(const char *name, LLVMModuleRef mod, const cg_opt *opts, char **want_ir, char **want_asm) {
    cg_unit t = {.name = (char *)name};
    LLVMMemoryBufferRef obj = NULL;
    int rc = cg_unit_compile_obj(&t, mod, opts, &obj);
    if (rc == 0 && want_ir && !*want_ir) *want_ir = t.ir, t.ir = NULL;
    if (rc == 0 && want_asm && !*want_asm) *want_asm = t.asm_text, t.asm_text = NULL;
    if (obj) LLVMDisposeMemoryBuffer(obj);
    for (int i = 0; i < t.nsym; i++) free(t.syms[i]);
    free(t.syms), free(t.addrs), free(t.ir), free(t.asm_text);
    return rc;
}

/* The live unit of key, shared (one more owner), with the texts opts asks
 * for; keyed.lock held. NULL with *failed when making the module for missing
 * texts or a verification failed. */
static cg_unit *share_live(cg_unit *u, const char *name, cg_module_maker make, void *ctx, const cg_opt *opts,
                           bool *failed, cg_compile_times *t) {
    bool want_ir = (opts->keep & CG_KEEP_IR) && !u->ir, want_asm = (opts->keep & CG_KEEP_ASM) && !u->asm_text;
    bool verify = verifying();
    if (want_ir || want_asm || verify) { /* the dumps ask for texts its first owner did not keep */
        LLVMModuleRef mod = make(ctx);
        if (!mod || (verify && verify_found(name, u->key, mod, u->ir_hash, &t->hash_ms) != 0)) {
            cg_module_discard(mod);
            return *failed = true, NULL;
        }
        if ((want_ir || want_asm) &&
            compile_texts(name, mod, opts, want_ir ? &u->ir : NULL, want_asm ? &u->asm_text : NULL) != 0)
            em_clear_error(); /* the texts only: the code is fine */
        cg_module_discard(mod);
    }
    u->refs++;
    return u;
}

/* A miss: mod (made if NULL) compiled, linked and stored. */
static cg_unit *compile_and_store(const char *name, const char *key, LLVMModuleRef *mod, cg_module_maker make,
                                  void *ctx, const cg_opt *opts, cg_compile_times *t) {
    uint64_t h;
    if (!*mod && !(*mod = make(ctx))) return NULL;
    double t0 = rt_now_ms();
    if (cg_module_hash(*mod, &h) != 0) return NULL; /* before the passes change it */
    t->hash_ms += rt_now_ms() - t0;
    cg_blob blob = {0};
    cg_unit *u = unit_compiled(*mod, name, opts, &blob, h);
    if (u && blob.obj) cg_cache_store(key, &blob);
    cg_blob_free(&blob);
    if (u) t->unit = u->times, t->source = CG_CODE_COMPILED;
    return u;
}

cg_unit *cg_unit_get_keyed(const char *name, const char *key, cg_module_maker make, void *ctx, const cg_opt *opts,
                           bool *cached, cg_compile_times *times) {
    static const cg_opt defaults = {0};
    cg_compile_times scratch;
    cg_compile_times *t = times ? times : &scratch;
    if (!opts) opts = &defaults;
    *cached = false;
    if (!name || !key || !make) return rt_error("cg_unit_get_keyed: NULL argument"), NULL;
    /* With no live unit to share, the cache entry is read before the LLJIT is
     * waited for: a new process's first compile reads it while jit.c's head
     * start is still making the LLJIT (0.4-0.6 ms of block's 2.2-3 ms). */
    cg_blob blob = {0};
    int found = -1;
    pthread_mutex_lock(&keyed.lock);
    bool early = keyed.live == NULL;
    pthread_mutex_unlock(&keyed.lock);
    cg_cache_stats before;
    cg_cache_stats_get(&before);
    double t0 = rt_now_ms();
    if (early) found = cg_cache_load(key, &blob), t->load_ms = rt_now_ms() - t0;
    if (cg_jit_init() != 0) return cg_blob_free(&blob), NULL;
    pthread_mutex_lock(&keyed.lock);
    cg_unit *u = keyed.live;
    while (u && strcmp(u->key, key)) u = u->next;
    if (u) { /* made by another thread meanwhile, if the entry was read */
        bool failed = false;
        cg_blob_free(&blob);
        if ((u = share_live(u, name, make, ctx, opts, &failed, t))) t->source = CG_CODE_LIVE;
        pthread_mutex_unlock(&keyed.lock);
        return u;
    }
    LLVMModuleRef mod = NULL;
    bool failed = false;
    /* Read again if the early read missed and an entry was stored since: a
     * thread compiling the same key may have stored it, run and freed its
     * unit between that read and this lock (else both would compile it). */
    cg_cache_stats now;
    cg_cache_stats_get(&now);
    if (!early || (found != 0 && now.stores != before.stores)) {
        double spent = early ? t->load_ms : 0;
        cg_blob_free(&blob);
        t0 = rt_now_ms(), found = cg_cache_load(key, &blob), t->load_ms = spent + rt_now_ms() - t0;
    }
    if (found == 0 && (blob.asm_text || !(opts->keep & CG_KEEP_ASM)) && (blob.ir || !(opts->keep & CG_KEEP_IR))) {
        if (verifying()) failed = verify_found(name, key, mod = make(ctx), blob.ir_hash, &t->hash_ms) != 0;
        if (!failed && (u = unit_from_blob(name, &blob)))
            *cached = true, t->unit = u->times, t->source = CG_CODE_CACHED;
    }
    cg_blob_free(&blob);
    if (!u && !failed) u = compile_and_store(name, key, &mod, make, ctx, opts, t);
    cg_module_discard(mod);
    if (u && !(u->key = cg_str_dup(key, "codegen"))) {
        cg_unit_destroy(u);
        u = NULL;
    }
    if (u) {
        u->refs = 1;
        u->next = keyed.live;
        keyed.live = u;
    }
    pthread_mutex_unlock(&keyed.lock);
    return u;
}
