/*
 * split.c — one module's machine code on two threads, as two objects.
 *
 * Machine code (instruction selection, register allocation) is most of a
 * cold compile: 134 of the 152 ms that made the GPT-2 block's code, where
 * the LLVM passes took 17. LLVM makes it one function after another on one
 * thread, while the other core of a small machine is idle (the call that
 * compiles is waiting for it). On two threads block's took 87-90 ms (each
 * half 70-84 ms: the halves slow each other down). So a module with enough code is cut in two by
 * its functions (the largest first, each to the half with fewer
 * instructions so far), and the second half is compiled on a thread of its
 * own while this thread compiles the first. The second half lives in a
 * context of its own, the module's bitcode read into it: an LLVMContext must
 * not be used from two threads at once.
 *
 * Each half keeps the other half's functions as declarations (marked
 * available_externally, then elim-avail-extern drops their bodies). Calls across
 * the halves then resolve when both objects are linked under the unit's
 * resource tracker (jit.c). So every function must be external: emit.c names
 * them all by the program's hash. Private constants referenced from both
 * halves are emitted in both; a module with a global variable is not split.
 *
 * The two objects travel as one buffer (cg_objs reads it): a magic, then each
 * object's length and bytes. The object cache stores it as it stores a single
 * object, and an ELF object without the magic is read as one object, as
 * before.
 */
#include "codegen.h"
#include "jit_internal.h"

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fewer instructions than this: one thread (a thread costs more than it saves). */
enum { SPLIT_MIN_INSTRUCTIONS = 1000, MAX_FUNCTIONS = 256 };

static const char OBJS_MAGIC[8] = {'e', 'm', 'b', 'O', 'B', 'J', 'S', '2'};

static int64_t instructions(LLVMValueRef f) {
    int64_t n = 0;
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) n++;
    return n;
}

/* The second half's compile, on its own thread. */
typedef struct half {
    cg_unit *u;
    LLVMModuleRef mod;
    LLVMMemoryBufferRef obj;
    int rc;
    char error[512];
} half;

static void *compile_half(void *arg) {
    half *h = arg;
    LLVMTargetMachineRef tm = cg_tm_acquire();
    h->rc = tm ? cg_emit_object(h->u, tm, h->mod, &h->obj) : -1;
    if (h->rc) snprintf(h->error, sizeof h->error, "%s", em_last_error());
    cg_tm_release(tm);
    return NULL;
}

/* Leaves only the definitions whose bin is `keep` (in module order, the same
 * in the module and its bitcode copy): the others become available_externally
 * and elim-avail-extern makes them declarations. 0, or -1 with an error. */
static int keep_bin(LLVMModuleRef mod, LLVMTargetMachineRef tm, const unsigned char *bin, int keep) {
    int i = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f && i < MAX_FUNCTIONS; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f)) continue;
        if (bin[i++] != keep) LLVMSetLinkage(f, LLVMAvailableExternallyLinkage);
    }
    LLVMPassBuilderOptionsRef pbo = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(mod, "elim-avail-extern", tm, pbo);
    LLVMDisposePassBuilderOptions(pbo);
    return err ? cg_fail("codegen: splitting a module", err, NULL) : 0;
}

/* Two objects in one buffer. */
static LLVMMemoryBufferRef pair(LLVMMemoryBufferRef a, LLVMMemoryBufferRef b) {
    size_t na = LLVMGetBufferSize(a), nb = LLVMGetBufferSize(b), n = sizeof OBJS_MAGIC + 16 + na + nb;
    char *p = malloc(n);
    if (!p) return NULL;
    uint64_t la = na, lb = nb;
    memcpy(p, OBJS_MAGIC, sizeof OBJS_MAGIC);
    memcpy(p + 8, &la, 8), memcpy(p + 16, LLVMGetBufferStart(a), na);
    memcpy(p + 16 + na, &lb, 8), memcpy(p + 24 + na, LLVMGetBufferStart(b), nb);
    LLVMMemoryBufferRef out = LLVMCreateMemoryBufferWithMemoryRangeCopy(p, n, "ember objects");
    free(p);
    return out;
}

int cg_split_emit(cg_unit *u, LLVMTargetMachineRef tm, LLVMModuleRef mod, LLVMMemoryBufferRef *obj, bool *split) {
    *split = false;
    int64_t size[MAX_FUNCTIONS], total = 0, load[2] = {0, 0};
    unsigned char bin[MAX_FUNCTIONS];
    int n = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f)) continue;
        if (n == MAX_FUNCTIONS || !cg_exported(f)) return 0; /* a local function: one object */
        total += size[n++] = instructions(f);
    }
    if (n < 2 || total < SPLIT_MIN_INSTRUCTIONS || sysconf(_SC_NPROCESSORS_ONLN) < 2) return 0;
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g))
        if (!LLVMIsDeclaration(g) && !LLVMIsGlobalConstant(g)) return 0; /* state must not be in both halves */
    bool placed[MAX_FUNCTIONS] = {0};
    for (int k = 0; k < n; k++) { /* the largest left, to the lighter half */
        int big = -1;
        for (int i = 0; i < n; i++)
            if (!placed[i] && (big < 0 || size[i] > size[big])) big = i;
        int to = load[1] < load[0];
        bin[big] = (unsigned char)to, load[to] += size[big], placed[big] = true;
    }
    if (!load[0] || !load[1]) return 0;
    LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
    LLVMContextRef ctx = LLVMContextCreate();
    half h = {.u = u};
    if (!bc || LLVMParseBitcodeInContext2(ctx, bc, &h.mod)) { /* cannot copy it: one object */
        if (bc) LLVMDisposeMemoryBuffer(bc);
        LLVMContextDispose(ctx);
        return 0;
    }
    LLVMDisposeMemoryBuffer(bc);
    if (keep_bin(h.mod, tm, bin, 1) != 0 || keep_bin(mod, tm, bin, 0) != 0) {
        cg_module_discard(h.mod);
        return -1;
    }
    pthread_t t;
    bool threaded = pthread_create(&t, NULL, compile_half, &h) == 0;
    if (!threaded) compile_half(&h);
    LLVMMemoryBufferRef first = NULL;
    int rc = cg_emit_object(u, tm, mod, &first);
    if (threaded) pthread_join(t, NULL);
    cg_module_discard(h.mod);
    if (rc == 0 && h.rc != 0) rc = rt_error("%s", h.error);
    if (rc == 0 && !(*obj = pair(first, h.obj))) rc = rt_error("codegen %s: out of memory", u->name);
    if (first) LLVMDisposeMemoryBuffer(first);
    if (h.obj) LLVMDisposeMemoryBuffer(h.obj);
    *split = rc == 0;
    if (*split) u->times.codegen_threads = 2;
    return rc;
}

int cg_objs(const char *p, size_t n, const char **start, size_t *len, int max) {
    if (n < 8 || memcmp(p, OBJS_MAGIC, 8) != 0) {
        start[0] = p, len[0] = n;
        return 1;
    }
    int k = 0;
    for (size_t at = 8; at < n; k++) {
        uint64_t l;
        if (k == max || n - at < 8) return -1;
        memcpy(&l, p + at, 8);
        if (l > n - at - 8) return -1;
        start[k] = p + at + 8, len[k] = (size_t)l;
        at += 8 + l;
    }
    return k ? k : -1;
}
