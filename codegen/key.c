/*
 * key.c — what a compiled program's machine code depends on, as a key for
 * sharing live code and for the object cache.
 *
 * Two keys, one format: "ember <version> | build <id> | llvm <version> |
 * <cpu> <features> | <what>". The prefix names the code that makes the code:
 * ember's version, the build id of the library (or executable) ember was
 * linked into, so that any rebuild of ember never loads code an older build
 * emitted under the same version string, LLVM's version and the host CPU.
 *
 * The program key (<what> = "program <128-bit hash>") is computed before any
 * LLVM IR exists, from everything the emitter reads: the optimised graph
 * (every node's kind, op, dtype, shape, attributes and inputs; constants'
 * strides; the outputs), the strides of the tensor arguments, the schedule
 * (steps, and every loop nest as lowered: loops, accesses, GEMM geometry,
 * streaming) and the layout of the homes, plus the switches the emitter
 * reads (the L2 size, profiling, EMBER_GEMM). A warm compile that hits the
 * cache under this key never builds or hashes a module: on the GPT-2 block
 * that was 5 of 11 ms to the first call. Constant data is not hashed:
 * generated code reads constants through their homes at run time, and what
 * the passes made of their values (equal constants merged, subgraphs folded)
 * is in the optimised graph.
 *
 * The module key (<what> = "ir <hash>") hashes the module's bitcode instead;
 * it is the fallback when no build id can be found (then nothing but the code
 * itself tells two ember builds apart). Every unit records the hash of the
 * module it was compiled from, and EMBER_CACHE_VERIFY=1 checks the program
 * key's claim on every hit: the module is built anyway and must hash the same
 * (jit.c). The tests run so.
 */
#include "codegen.h"

#include <elf.h>
#include <link.h>
#include <llvm-c/BitWriter.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- the build id ----------------------------------------------------------------------------- */

static struct {
    pthread_once_t once;
    char hex[2 * 64 + 1]; /* "" when the object has no NT_GNU_BUILD_ID note */
} build = {.once = PTHREAD_ONCE_INIT};

/* The GNU build-id note among one PT_NOTE segment's notes, as hex; false if none. */
static bool note_build_id(const unsigned char *p, size_t n, char *hex, size_t cap) {
    while (n >= sizeof(ElfW(Nhdr))) {
        ElfW(Nhdr) h;
        memcpy(&h, p, sizeof h);
        size_t name = (h.n_namesz + 3) & ~(size_t)3, desc = (h.n_descsz + 3) & ~(size_t)3;
        if (sizeof h + name + desc > n) return false;
        if (h.n_type == NT_GNU_BUILD_ID && h.n_namesz == 4 && !memcmp(p + sizeof h, "GNU", 4) &&
            2 * (size_t)h.n_descsz < cap && h.n_descsz > 0) {
            for (size_t i = 0; i < h.n_descsz; i++)
                snprintf(hex + 2 * i, cap - 2 * i, "%02x", p[sizeof h + name + i]);
            return true;
        }
        p += sizeof h + name + desc, n -= sizeof h + name + desc;
    }
    return false;
}

/* dl_iterate_phdr's callback: the object whose loaded segments hold this file's code. */
static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    uintptr_t self = (uintptr_t)data;
    bool mine = false;
    for (int i = 0; i < info->dlpi_phnum && !mine; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        mine = ph->p_type == PT_LOAD && self >= lo && self < lo + ph->p_memsz;
    }
    if (!mine) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_NOTE &&
            note_build_id((const unsigned char *)(info->dlpi_addr + ph->p_vaddr), ph->p_memsz, build.hex,
                          sizeof build.hex))
            break;
    }
    return 1;
}

static void build_id_setup(void) { dl_iterate_phdr(find_build_id, (void *)(uintptr_t)&cg_build_id); }

const char *cg_build_id(void) {
    pthread_once(&build.once, build_id_setup);
    return build.hex;
}

/* ---- the keys --------------------------------------------------------------------------------- */

static void key_prefix(char *key, size_t cap) {
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(key, cap, "ember %s | build %s | llvm %u.%u.%u | %s %s", em_version(), cg_build_id(), major, minor,
             patch, cg_host_cpu(), cg_host_features());
}

static void put(cg_buf *s, int64_t v) { cg_buf_put(s, &v, sizeof v); }

static void put_type(cg_buf *s, const ir_type *t) {
    put(s, t->dtype), put(s, t->ndim);
    for (int d = 0; d < t->ndim; d++) put(s, t->shape[d]);
}

static void put_strides(cg_buf *s, int ndim, const int64_t *strides) {
    for (int d = 0; d < ndim; d++) put(s, strides[d]);
}

/* What the emitter reads of the schedule and the layout. Lowering is a
 * function of the graph, the arguments and the switches above, except where
 * it gives up (an allocation failed: that nest is interpreted instead), so its
 * results are hashed as well. A field added to these structs must be hashed
 * here: the sizes below make the build say so. */
_Static_assert(sizeof(cg_access) == 88, "cg_access changed: hash its new fields in put_nest");
_Static_assert(sizeof(cg_gemm) == 392, "cg_gemm changed: hash its new fields in put_gemm");
_Static_assert(sizeof(cg_loopnest) == 4200, "cg_loopnest changed: hash its new fields in put_nest");
_Static_assert(sizeof(cg_step) == 12, "cg_step changed: hash its new fields in put_schedule");
_Static_assert(sizeof(cg_layout) == 32, "cg_layout changed: hash its new fields in put_layout");

static void put_gemm(cg_buf *s, const cg_gemm *g) {
    put(s, g->node), put(s, g->bias), put(s, g->nbatch), put(s, g->m), put(s, g->n), put(s, g->k);
    put(s, g->ak), put(s, g->bk), put(s, g->vec_m), put(s, g->pack), put(s, g->mr), put(s, g->nvec);
    put(s, g->kc), put(s, g->panels), put(s, g->batches), put(s, g->rtiles), put(s, g->units);
    put(s, g->subtiles), put(s, g->serial), put(s, g->stage), put(s, g->amx);
    put(s, g->bconst), put(s, g->kdiag), put(s, g->cdiag), put(s, g->pfd);
}

static void put_nest(cg_buf *s, const cg_loopnest *ln) {
    put(s, ln->kernel), put(s, ln->nnodes), put(s, ln->compiled), put(s, ln->ndim), put(s, ln->width);
    for (int i = 0; i < ln->nnodes; i++) put(s, ln->nodes[i]), put(s, ln->role[i]);
    for (int d = 0; d < ln->ndim; d++) put(s, ln->shape[d]);
    put(s, ln->naccess);
    for (int a = 0; a < ln->naccess; a++) {
        const cg_access *c = &ln->acc[a];
        put(s, c->home), put(s, c->value), put(s, c->store), put(s, c->offset);
        put_strides(s, ln->ndim, c->strides);
    }
    put(s, ln->row), put(s, ln->nops), put(s, ln->is_gemm), put(s, ln->stream), put(s, ln->prefetch);
    if (ln->is_gemm) put_gemm(s, &ln->gemm);
    put(s, ln->has_alt);
    if (ln->has_alt) put_gemm(s, &ln->alt);
}

static void put_schedule(cg_buf *s, const cg_schedule *sched, int nnodes) {
    put(s, sched->nsteps);
    for (int i = 0; i < sched->nsteps; i++)
        put(s, sched->steps[i].kernel), put(s, sched->steps[i].node), put(s, sched->steps[i].nest);
    put(s, sched->nnests);
    for (int k = 0; k < sched->nnests; k++) put_nest(s, &sched->nests[k]);
    for (int i = 0; i < nnodes; i++) put(s, sched->step_of[i]), put(s, sched->materialize[i]);
}

static void put_layout(cg_buf *s, const cg_layout *lay, int nnodes) {
    for (int i = 0; i < nnodes; i++) put(s, lay->offset[i]), put(s, lay->slot[i]);
    put(s, lay->nslots);
    for (int i = 0; i < lay->nslots; i++) put(s, lay->slot_node[i]);
}

/* Everything the program's code is a function of (see the opening comment). */
static void put_program(cg_buf *s, const pass_program *prog, em_tensor *const *args, const cg_schedule *sched,
                        const cg_layout *lay, unsigned keep) {
    const char *gemm = getenv("EMBER_GEMM");
    cg_buf_put(s, gemm ? gemm : "", gemm ? strlen(gemm) + 1 : 1);
    put(s, cg_l2_bytes()), put(s, (keep & CG_PROFILE) != 0);
    const ir_graph *g = prog->graph;
    int n = ir_graph_num_nodes(g);
    put(s, n);
    for (int i = 0; i < n; i++) {
        const ir_node *x = ir_graph_node(g, i);
        put(s, x->kind), put(s, x->op), put(s, x->arg), put(s, x->nin);
        put_type(s, &x->type);
        cg_buf_put(s, &x->attrs, sizeof x->attrs);
        for (int k = 0; k < x->nin; k++) put(s, x->in[k] ? x->in[k]->id : -1);
        if (x->kind == IR_NODE_CONST) put_strides(s, x->type.ndim, x->value->strides);
        if (x->kind == IR_NODE_INPUT) put_strides(s, x->type.ndim, args[x->arg]->strides);
    }
    put(s, ir_graph_num_outputs(g));
    for (int i = 0; i < ir_graph_num_outputs(g); i++) put(s, ir_graph_output(g, i)->id);
    put_schedule(s, sched, n);
    put_layout(s, lay, n);
}

static atomic_bool module_keys; /* cg_key_use_module_hash */

void cg_key_use_module_hash(bool on) { atomic_store(&module_keys, on); }

int cg_program_key(const pass_program *prog, em_tensor *const *args, const cg_schedule *sched, const cg_layout *lay,
                   unsigned keep, char *key, size_t cap, uint64_t *h) {
    if (!cg_build_id()[0] || atomic_load(&module_keys)) return 1;
    cg_buf s = {0};
    put_program(&s, prog, args, sched, lay, keep);
    if (s.bad) return free(s.buf), rt_error("em_compile: out of memory hashing the program for its cache key");
    *h = cg_hash_words(s.buf, s.len);
    uint64_t h2 = cg_hash(s.buf, s.len, 0xcbf29ce484222325ull);
    free(s.buf);
    key_prefix(key, cap);
    size_t len = strlen(key);
    snprintf(key + len, cap - len, " | program %016llx%016llx", (unsigned long long)*h, (unsigned long long)h2);
    return 0;
}

/* The module is hashed as bitcode, under a fixed name (the caller's label is
 * not part of what the code does): printing it as text took 7-9 ms of the
 * GPT-2 block's 12 ms warm compile (LLVM formats every float constant through
 * APInt arithmetic), writing bitcode takes about 2. */
int cg_module_hash(LLVMModuleRef m, uint64_t *h) {
    size_t idn, srcn;
    const char *id0 = LLVMGetModuleIdentifier(m, &idn), *src0 = LLVMGetSourceFileName(m, &srcn);
    char *id = malloc(idn + 1), *src = malloc(srcn + 1);
    LLVMMemoryBufferRef bc = NULL;
    if (id && src) {
        memcpy(id, id0, idn), memcpy(src, src0, srcn);
        LLVMSetModuleIdentifier(m, "ember", 5);
        LLVMSetSourceFileName(m, "ember", 5);
        bc = LLVMWriteBitcodeToMemoryBuffer(m);
        LLVMSetModuleIdentifier(m, id, idn);
        LLVMSetSourceFileName(m, src, srcn);
    }
    free(id), free(src);
    /* no hash, no key: a made-up one would share or load another program's code */
    if (!bc) return rt_error("em_compile: out of memory writing the module's bitcode to hash it");
    *h = cg_hash_words(LLVMGetBufferStart(bc), LLVMGetBufferSize(bc));
    LLVMDisposeMemoryBuffer(bc);
    return 0;
}

int cg_module_key(LLVMModuleRef m, char *key, size_t cap, uint64_t *h) {
    if (cg_module_hash(m, h) != 0) return -1;
    key_prefix(key, cap);
    size_t len = strlen(key);
    snprintf(key + len, cap - len, " | ir %016llx", (unsigned long long)*h);
    return 0;
}
