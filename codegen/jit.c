/*
 * jit.c — the JIT session: one LLVM ORC LLJIT per process and the compiled
 * units that live in it.
 *
 * A unit is one LLVM module turned into machine code for this CPU: verified,
 * optimised with LLVMRunPasses, compiled to an object file and linked into the
 * LLJIT's main JITDylib under a resource tracker of its own, so that
 * cg_unit_destroy can take exactly its code out again (DESIGN: one resource
 * tracker per compiled graph).
 *
 * Why units are compiled here rather than by LLJIT's IR layer: through the C
 * API, LLJIT compiles IR with a single target machine shared by every thread
 * (its SimpleCompiler; the concurrent compiler cannot be selected from C), and
 * a TargetMachine is not safe to use from two threads at once. So this file
 * does the IR -> object step itself, with target machines borrowed from a
 * small pool (one per concurrent compile), and hands LLJIT only the object
 * (LLVMOrcLLJITAddObjectFileWithRT), which its linker handles thread-safely.
 * That also means the `asm` text comes from the same machine configuration
 * as the code that runs, and the object bytes are at hand for an object cache.
 * A module with enough code is made as two objects on two threads
 * (split.c), linked under the same tracker.
 * Compilation is eager: when cg_unit_create returns, the object is linked and
 * every exported definition has an address, so no compile work or compile
 * error can surface later.
 *
 * All target machines are alike: host CPU name and features, aggressive
 * codegen, PIC and the small code model (what LLJIT's JITLink linker
 * expects on x86-64 ELF). They are made on a unit's first compile, not
 * before: the LLJIT's machine builder detects the host itself, and its data
 * layout is the units'.
 *
 * Invariants: every LLVM error becomes an ember error in cg_fail and nowhere
 * else; an LLVM fatal error aborts with a message (never exit()); a module and
 * its context are disposed of exactly once, by the unit code, whatever happens.
 */
#include "codegen.h"
#include "jit_internal.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/ErrorHandling.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TM_POOL_MAX = 8 }; /* idle target machines kept; more are made on demand */

static struct {
    pthread_once_t target_once;          /* LLVM's native target registered: before the others */
    pthread_once_t host_once, once;      /* host_setup; lljit_setup (each may run on its own thread) */
    int target_status, host_status, status; /* 0 ready, -1 init failed */
    char target_error[256], host_error[512], error[512]; /* why each failed, for every later caller */
    LLVMOrcLLJITRef lljit;               /* never disposed: lives as long as the process */
    LLVMOrcJITDylibRef main;             /* where units and runtime symbols live */
    LLVMTargetRef target;
    char *triple, *cpu, *features;       /* LLVM messages, kept for the process */
    char *layout;                        /* data layout string of the host machine */
    pthread_mutex_t pool_lock;
    LLVMTargetMachineRef pool[TM_POOL_MAX]; /* idle machines */
    int npool;
} jit = {.target_once = PTHREAD_ONCE_INIT, .host_once = PTHREAD_ONCE_INIT, .once = PTHREAD_ONCE_INIT,
         .pool_lock = PTHREAD_MUTEX_INITIALIZER};

/* Text of the last JIT session error reported on this thread (see session_report). */
static _Thread_local char session_note[256];


/* ---- errors ---------------------------------------------------------------------------------- */

/* The one place an LLVM error becomes an ember error. Takes ownership of
 * `err` (an LLVMErrorRef) or `msg` (a message LLVM allocated); either may be
 * NULL. The message is made one line (the verifier's span several) and gets
 * what the JIT session reported meanwhile on this thread appended (the
 * linker's "Symbols not found" behind a "Failed to materialize"). With `what`
 * NULL, from the session's reporter, the text becomes that pending note. */
int cg_fail(const char *what, LLVMErrorRef err, char *msg) {
    char *text = err ? LLVMGetErrorMessage(err) : msg;
    char line[512];
    snprintf(line, sizeof line, "%s", text && *text ? text : "unknown LLVM error");
    if (err) LLVMDisposeErrorMessage(text);
    else if (msg) LLVMDisposeMessage(msg);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = '\0';
    for (char *p = line; *p; p++)
        if (*p == '\n') *p = ' ';
    if (!what) {
        snprintf(session_note, sizeof session_note, "%s", line);
        return -1;
    }
    if (session_note[0]) rt_error("%s: %s (%s)", what, line, session_note);
    else rt_error("%s: %s", what, line);
    session_note[0] = '\0';
    return -1;
}

/* Errors the session cannot hand to a caller (a failed link during a lookup)
 * arrive here, on the thread whose lookup ran the link. */
static void session_report(void *ctx, LLVMErrorRef err) {
    (void)ctx;
    cg_fail(NULL, err, NULL);
}

/* The backend met IR it cannot handle although it verified: an ember bug. */
static void fatal_handler(const char *reason) {
    fprintf(stderr, "ember: internal error: LLVM fatal error: %s\n", reason);
    abort();
}

char *cg_str_dup(const char *s, const char *what) {
    size_t n = strlen(s) + 1;
    char *p = rt_malloc(n, what);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- target machines ------------------------------------------------------------------------- */

static LLVMTargetMachineRef tm_create(void) {
    return LLVMCreateTargetMachine(jit.target, jit.triple, jit.cpu, jit.features,
                                   LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelSmall);
}

/* A machine for this thread's exclusive use until cg_tm_release. */
LLVMTargetMachineRef cg_tm_acquire(void) {
    LLVMTargetMachineRef tm = NULL;
    pthread_mutex_lock(&jit.pool_lock);
    if (jit.npool > 0) tm = jit.pool[--jit.npool];
    pthread_mutex_unlock(&jit.pool_lock);
    if (!tm && !(tm = tm_create())) rt_error("codegen: cannot create a target machine for %s", jit.cpu);
    return tm;
}

void cg_tm_release(LLVMTargetMachineRef tm) {
    if (!tm) return;
    pthread_mutex_lock(&jit.pool_lock);
    if (jit.npool < TM_POOL_MAX) jit.pool[jit.npool++] = tm, tm = NULL;
    pthread_mutex_unlock(&jit.pool_lock);
    if (tm) LLVMDisposeTargetMachine(tm);
}

/* ---- the session ------------------------------------------------------------------------------ */

static void target_once(void) {
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
        jit.target_status = -1;
        snprintf(jit.target_error, sizeof jit.target_error, "codegen: LLVM has no native target for this host");
        return;
    }
    LLVMInstallFatalErrorHandler(fatal_handler);
}

/* LLVM's native target and asm printer registered (the host's name and
 * features and the LLJIT both need them), once per process. */
static int target_init(void) {
    pthread_once(&jit.target_once, target_once);
    return jit.target_status == 0 ? 0 : rt_error("%s", jit.target_error);
}

static int host_setup(void) {
    if (target_init() != 0) return -1;
    jit.triple = LLVMGetDefaultTargetTriple();
    jit.cpu = LLVMGetHostCPUName();
    jit.features = LLVMGetHostCPUFeatures();
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(jit.triple, &jit.target, &msg))
        return cg_fail("codegen: target lookup", NULL, msg);
    return 0;
}

/* ember's runtime functions as absolute symbols: a program linking
 * libember.a exports nothing to dlsym, so the process generator alone would
 * not find them. */
static int define_runtime_symbols(void) {
    static const struct { const char *name; void *addr; } table[] = {
#define X(fn) {#fn, (void *)fn},
        CG_RUNTIME_SYMBOLS(X)
#undef X
    };
    enum { N = sizeof table / sizeof table[0] };
    LLVMOrcCSymbolMapPair pairs[N];
    for (int i = 0; i < N; i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit.lljit, table[i].name);
        pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)table[i].addr;
        pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported |
                                          LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, N);
    LLVMErrorRef err = LLVMOrcJITDylibDefine(jit.main, mu);
    if (err) {
        LLVMOrcDisposeMaterializationUnit(mu);
        return cg_fail("codegen: runtime symbols", err, NULL);
    }
    return 0;
}

/* The LLJIT, from a machine builder that detects the host: no target machine
 * is made here (a warm process that only loads cached objects never needs
 * one), and the data layout is the LLJIT's (x86-64's does not depend on the
 * CPU's features, so it is the units' too). */
static int lljit_setup(void) {
    LLVMOrcJITTargetMachineBuilderRef jtmb;
    LLVMErrorRef err = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
    if (err) return cg_fail("codegen: detecting the host for the LLJIT", err, NULL);
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb); /* consumes it */
    err = LLVMOrcCreateLLJIT(&jit.lljit, builder); /* consumes the builder */
    if (err) return cg_fail("codegen: creating the LLJIT", err, NULL);
    if (!(jit.layout = cg_str_dup(LLVMOrcLLJITGetDataLayoutStr(jit.lljit), "codegen"))) return -1;
    LLVMOrcExecutionSessionSetErrorReporter(LLVMOrcLLJITGetExecutionSession(jit.lljit),
                                            session_report, NULL);
    jit.main = LLVMOrcLLJITGetMainJITDylib(jit.lljit);
    if (define_runtime_symbols() != 0) return -1;
    LLVMOrcDefinitionGeneratorRef gen;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(jit.lljit), NULL, NULL);
    if (err) return cg_fail("codegen: process symbol generator", err, NULL);
    LLVMOrcJITDylibAddGenerator(jit.main, gen);
    return 0;
}

static void host_once(void) {
    jit.host_status = host_setup();
    if (jit.host_status != 0) snprintf(jit.host_error, sizeof jit.host_error, "%s", em_last_error());
}

/* The target and the host's CPU name and features: what keys and widths need,
 * without the LLJIT. */
static int host_init(void) {
    pthread_once(&jit.host_once, host_once);
    return jit.host_status == 0 ? 0 : rt_error("%s", jit.host_error);
}

/* The LLJIT does not wait for host_setup: its machine builder detects the
 * host itself. So on a new process's first compile the caller reads the
 * host's name and features (for the program's key) while the head start's
 * thread makes the LLJIT, instead of after it: LLVM's own detection took
 * 0.2-0.4 ms of that thread's 1.0-1.6, which was the longer of the two. */
static void jit_setup(void) {
    jit.status = target_init() == 0 && lljit_setup() == 0 ? 0 : -1;
    if (jit.status != 0) snprintf(jit.error, sizeof jit.error, "%s", em_last_error());
}

static void head_join(void);

int cg_jit_init(void) {
    pthread_once(&jit.once, jit_setup);
    head_join(); /* the head start's thread, if any, is done: free it */
    if (jit.status != 0) return rt_error("%s", jit.error);
    return host_init(); /* units' target machines need the host's name and features */
}

/* ---- a head start: the LLJIT made while the first call traces ---------------------------------- */

/* Making the LLJIT takes 1-1.5 ms, a quarter of a new process's first
 * compiled call when its code is cached. em_compile starts it on a thread of
 * its own, so it overlaps the trace, the passes, the key and the cache read
 * of the first call (and whatever the program does before that call); the
 * first use waits for it in cg_jit_init's pthread_once and then joins the
 * thread. A fork or exit() joins it first too (pthread_atfork, atexit): a
 * child must not inherit locks (LLVM's, or a sanitizer's taken as a thread
 * exits) from a thread it does not have, nor exit() destroy LLVM's statics
 * under it. */
static struct {
    pthread_once_t once;
    pthread_mutex_t lock;                /* guards thread and running */
    pthread_t thread;
    bool running;                        /* started and not yet joined */
} head = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

static void *head_main(void *arg) {
    (void)arg;
    pthread_once(&jit.once, jit_setup); /* not cg_jit_init: that joins this thread */
    return NULL;
}

static void head_join(void) {
    pthread_mutex_lock(&head.lock);
    if (head.running) pthread_join(head.thread, NULL), head.running = false;
    pthread_mutex_unlock(&head.lock);
}

static void head_start(void) {
    if (pthread_atfork(head_join, NULL, NULL) != 0 || atexit(head_join) != 0) return;
    pthread_mutex_lock(&head.lock);
    head.running = pthread_create(&head.thread, NULL, head_main, NULL) == 0;
    pthread_mutex_unlock(&head.lock);
}

void cg_jit_prepare(void) { pthread_once(&head.once, head_start); }

const char *cg_host_cpu(void) { return host_init() == 0 ? jit.cpu : ""; }

const char *cg_host_features(void) { return host_init() == 0 ? jit.features : ""; }

void *cg_jit_lookup(const char *sym) {
    if (!sym) return rt_error("cg_jit_lookup: symbol is NULL"), NULL;
    if (cg_jit_init() != 0) return NULL;
    LLVMOrcExecutorAddress addr = 0;
    session_note[0] = '\0';
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit.lljit, &addr, sym);
    if (err) return cg_fail("codegen: lookup", err, NULL), NULL;
    return (void *)(uintptr_t)addr;
}

/* ---- modules ---------------------------------------------------------------------------------- */

int cg_module_begin(const char *name, LLVMContextRef *ctx, LLVMModuleRef *mod) {
    if (!name || !ctx || !mod) return rt_error("cg_module_begin: NULL argument");
    if (cg_jit_init() != 0) return -1;
    *ctx = LLVMContextCreate();
    *mod = LLVMModuleCreateWithNameInContext(name, *ctx);
    LLVMSetTarget(*mod, jit.triple);
    LLVMSetDataLayout(*mod, jit.layout);
    return 0;
}

void cg_module_discard(LLVMModuleRef mod) {
    if (!mod) return;
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
}

/* ---- units: compiling ------------------------------------------------------------------------- */

bool cg_exported(LLVMValueRef v) {
    LLVMLinkage l = LLVMGetLinkage(v);
    return !LLVMIsDeclaration(v) && l != LLVMInternalLinkage && l != LLVMPrivateLinkage &&
           l != LLVMAvailableExternallyLinkage && LLVMGetVisibility(v) != LLVMHiddenVisibility;
}

static int add_symbol(cg_unit *u, LLVMValueRef v, int *cap) {
    if (!cg_exported(v)) return 0;
    size_t len;
    const char *name = LLVMGetValueName2(v, &len);
    if (u->nsym == *cap) {
        int ncap = *cap ? 2 * *cap : 8;
        char **syms = rt_malloc((size_t)ncap * sizeof *syms, "codegen");
        void **addrs = rt_malloc((size_t)ncap * sizeof *addrs, "codegen");
        if (!syms || !addrs) return free(syms), free(addrs), -1;
        if (u->nsym) memcpy(syms, u->syms, (size_t)u->nsym * sizeof *syms);
        free(u->syms), free(u->addrs);
        u->syms = syms, u->addrs = addrs, *cap = ncap;
    }
    if (!(u->syms[u->nsym] = cg_str_dup(name, "codegen"))) return -1;
    u->addrs[u->nsym++] = NULL;
    return 0;
}

/* Names of the functions and globals the module exports. */
static int collect_symbols(cg_unit *u, LLVMModuleRef mod) {
    int cap = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        if (add_symbol(u, f, &cap) != 0) return -1;
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g))
        if (add_symbol(u, g, &cap) != 0) return -1;
    return 0;
}

static int verify(cg_unit *u, LLVMModuleRef mod) {
    double t0 = rt_now_ms();
    char *msg = NULL;
    LLVMBool bad = LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg);
    u->times.verify_ms = rt_now_ms() - t0;
    if (!bad) {
        LLVMDisposeMessage(msg);
        return 0;
    }
    char what[160];
    snprintf(what, sizeof what, "codegen %s: invalid module", u->name);
    return cg_fail(what, NULL, msg);
}

static int run_passes(cg_unit *u, LLVMModuleRef mod, LLVMTargetMachineRef tm, const char *pipeline) {
    if (!*pipeline) return 0;
    double t0 = rt_now_ms();
    LLVMPassBuilderOptionsRef pbo = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(mod, pipeline, tm, pbo);
    LLVMDisposePassBuilderOptions(pbo);
    u->times.passes_ms = rt_now_ms() - t0;
    if (!err) return 0;
    char what[160];
    snprintf(what, sizeof what, "codegen %s: passes '%s'", u->name, pipeline);
    return cg_fail(what, err, NULL);
}

/* Runs the backend over mod (which it changes: codegen lowers IR in place). */
static int emit(cg_unit *u, LLVMTargetMachineRef tm, LLVMModuleRef mod, LLVMCodeGenFileType kind,
                LLVMMemoryBufferRef *out) {
    char *msg = NULL;
    if (!LLVMTargetMachineEmitToMemoryBuffer(tm, mod, kind, &msg, out)) return 0;
    char what[160];
    snprintf(what, sizeof what, "codegen %s: %s emission", u->name,
             kind == LLVMAssemblyFile ? "assembly" : "object");
    return cg_fail(what, NULL, msg);
}

/* The assembly text, from a copy of the module so that the object is emitted
 * from exactly the IR the text shows. */
static int keep_asm(cg_unit *u, LLVMTargetMachineRef tm, LLVMModuleRef mod) {
    double t0 = rt_now_ms();
    LLVMModuleRef copy = LLVMCloneModule(mod);
    LLVMMemoryBufferRef buf = NULL;
    int rc = emit(u, tm, copy, LLVMAssemblyFile, &buf);
    LLVMDisposeModule(copy);
    if (rc == 0) {
        size_t n = LLVMGetBufferSize(buf);
        u->asm_text = rt_malloc(n + 1, "codegen");
        if (u->asm_text) memcpy(u->asm_text, LLVMGetBufferStart(buf), n), u->asm_text[n] = '\0';
        else rc = -1;
        LLVMDisposeMemoryBuffer(buf);
    }
    u->times.asm_ms = rt_now_ms() - t0;
    return rc;
}

/* Module -> object file: verify, optimise, keep the texts asked for, compile.
 * Does not consume mod. */
int cg_unit_compile_obj(cg_unit *u, LLVMModuleRef mod, const cg_opt *opts, LLVMMemoryBufferRef *obj) {
    if (verify(u, mod) != 0) return -1;
    LLVMSetTarget(mod, jit.triple);
    LLVMSetDataLayout(mod, jit.layout);
    LLVMTargetMachineRef tm = cg_tm_acquire();
    if (!tm) return -1;
    int rc = run_passes(u, mod, tm, opts->pipeline ? opts->pipeline : CG_PIPELINE_O2);
    if (rc == 0 && (opts->keep & CG_KEEP_IR)) {
        char *text = LLVMPrintModuleToString(mod);
        u->ir = text ? cg_str_dup(text, "codegen") : NULL;
        if (text) LLVMDisposeMessage(text);
        if (!u->ir) rc = rt_error("codegen %s: cannot print the module", u->name);
    }
    if (rc == 0 && (opts->keep & CG_KEEP_ASM)) rc = keep_asm(u, tm, mod);
    if (rc == 0) rc = collect_symbols(u, mod);
    if (rc == 0) {
        double t0 = rt_now_ms();
        bool split = false;
        u->times.codegen_threads = 1;
        rc = cg_split_emit(u, tm, mod, obj, &split); /* on two threads, where it has the code to pay */
        if (rc == 0 && !split) rc = emit(u, tm, mod, LLVMObjectFile, obj);
        u->times.codegen_ms = rt_now_ms() - t0;
    }
    cg_tm_release(tm);
    return rc;
}

int cg_emit_object(cg_unit *u, LLVMTargetMachineRef tm, LLVMModuleRef mod, LLVMMemoryBufferRef *out) {
    return emit(u, tm, mod, LLVMObjectFile, out);
}

/* Adds the object (consumed) under a new resource tracker and resolves every
 * exported name, which links it. */
int cg_unit_link_obj(cg_unit *u, LLVMMemoryBufferRef obj) {
    char what[160];
    double t0 = rt_now_ms();
    u->rt = LLVMOrcJITDylibCreateResourceTracker(jit.main);
    session_note[0] = '\0';
    const char *at[2];
    size_t len[2];
    int parts = cg_objs(LLVMGetBufferStart(obj), LLVMGetBufferSize(obj), at, len, 2);
    LLVMErrorRef err = NULL;
    if (parts == 1 && at[0] == LLVMGetBufferStart(obj)) { /* a plain object file */
        err = LLVMOrcLLJITAddObjectFileWithRT(jit.lljit, u->rt, obj);
    } else { /* split.c's two objects, each added under the unit's tracker */
        for (int i = 0; i < parts && !err; i++)
            err = LLVMOrcLLJITAddObjectFileWithRT(jit.lljit, u->rt,
                                                  LLVMCreateMemoryBufferWithMemoryRangeCopy(at[i], len[i], u->name));
        LLVMDisposeMemoryBuffer(obj);
        if (parts < 1) return rt_error("codegen %s: a malformed object", u->name);
    }
    if (err) {
        snprintf(what, sizeof what, "codegen %s: adding to the JIT", u->name);
        return cg_fail(what, err, NULL);
    }
    for (int i = 0; i < u->nsym; i++) {
        LLVMOrcExecutorAddress addr = 0;
        if ((err = LLVMOrcLLJITLookup(jit.lljit, &addr, u->syms[i]))) {
            snprintf(what, sizeof what, "codegen %s: linking", u->name);
            return cg_fail(what, err, NULL);
        }
        u->addrs[i] = (void *)(uintptr_t)addr;
    }
    u->times.link_ms = rt_now_ms() - t0;
    return 0;
}

/* ---- units: the interface ---------------------------------------------------------------------- */

cg_unit *cg_unit_create(LLVMModuleRef mod, const char *name, const cg_opt *opts) {
    static const cg_opt defaults = {0};
    if (!mod) return rt_error("cg_unit_create: module is NULL"), NULL;
    cg_unit *u = NULL;
    if (cg_jit_init() != 0 || !(u = rt_malloc(sizeof *u, "codegen"))) {
        cg_module_discard(mod);
        return NULL;
    }
    *u = (cg_unit){0};
    LLVMMemoryBufferRef obj = NULL;
    int rc = (u->name = cg_str_dup(name ? name : "unit", "codegen")) ? 0 : -1;
    if (rc == 0) rc = cg_unit_compile_obj(u, mod, opts ? opts : &defaults, &obj);
    cg_module_discard(mod);
    if (rc == 0) rc = cg_unit_link_obj(u, obj);
    if (rc != 0) {
        char saved[512];
        snprintf(saved, sizeof saved, "%s", em_last_error());
        cg_unit_destroy(u);
        rt_error("%s", saved); /* the cause, not a later clean-up message */
        return NULL;
    }
    return u;
}

void *cg_unit_lookup(const cg_unit *u, const char *sym) {
    if (!u || !sym) return rt_error("cg_unit_lookup: NULL argument"), NULL;
    for (int i = 0; i < u->nsym; i++)
        if (strcmp(u->syms[i], sym) == 0) return u->addrs[i];
    return rt_error("codegen %s: defines no symbol '%s'", u->name, sym), NULL;
}

const char *cg_unit_ir(const cg_unit *u) { return u ? u->ir : NULL; }

const char *cg_unit_asm(const cg_unit *u) { return u ? u->asm_text : NULL; }

const char *cg_unit_name(const cg_unit *u) { return u ? u->name : NULL; }

const cg_times *cg_unit_times(const cg_unit *u) { return u ? &u->times : NULL; }

void cg_unit_destroy(cg_unit *u) {
    if (!u) return;
    bool locked = u->key != NULL;
    if (locked && cg_keyed_release(u)) return; /* shared: others still run it */
    if (u->rt) {
        LLVMErrorRef err = LLVMOrcResourceTrackerRemove(u->rt);
        if (err) {
            char what[160];
            snprintf(what, sizeof what, "codegen %s: removing code", u->name ? u->name : "unit");
            cg_fail(what, err, NULL);
        }
        LLVMOrcReleaseResourceTracker(u->rt);
        /* Names only this unit used are no longer referenced: drop them from the pool. */
        LLVMOrcSymbolStringPoolClearDeadEntries(LLVMOrcExecutionSessionGetSymbolStringPool(
            LLVMOrcLLJITGetExecutionSession(jit.lljit)));
    }
    for (int i = 0; i < u->nsym; i++) free(u->syms[i]);
    free(u->syms);
    free(u->addrs);
    free(u->ir);
    free(u->key);
    free(u->asm_text);
    free(u->name);
    free(u);
    if (locked) cg_keyed_unlock();
}
