/*
 * exec.c — running a planned program: kernel by kernel, into the arena.
 *
 * Kernels run in the fusion's order. When codegen generated loop nests
 * (lower.c, gemm.c, emit.c), the whole call is one call of the graph's
 * generated program (program.c) with the data pointer of every home: it runs
 * the nests over the thread pool and calls back cg_exec_interpret for the
 * steps left to the interpreter. Any other kernel is interpreted:
 * its nodes run with the eager adapters (so a result is the value eager mode
 * computes), each written where the memory plan put it: an arena buffer at its
 * offset (possibly over a dead input, in place), or the storage of a graph
 * output that the caller will own. Views are headers over their base, made
 * when first read. cg_exec_compile decides which kernels are generated and
 * re-plans memory for that choice (a generated kernel keeps its intermediate
 * values in registers, so they need no buffers).
 *
 * One arena per call, of the plan's arena_bytes. The last arena used is kept
 * for the next call (taken with an atomic exchange, so concurrent calls each
 * get their own and never share one); em_compiled_free releases it. So do
 * the constants a GEMM keeps packed (cg_exec_packed: a
 * weight, packed by the second call that reaches its step and read by every
 * call after; gemm.c's keep_packed says why that is safe).
 *
 * Invariants: the plan must materialise every value a node reads (a plan made
 * with internal=true); on failure every value made so far is released and
 * outs is left empty; arguments are only read.
 */
#include "codegen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct frame;
static void frame_free(const pass_program *prog, struct frame *f);

struct cg_exec {
    const pass_program *prog;
    _Atomic(struct frame *) spare; /* the arena and its headers kept between calls, or NULL */
    int maxin;
    bool scheduled;             /* sched is valid (else every node is interpreted) */
    cg_schedule sched;          /* steps: generated loop nests and interpreted nodes */
    void **fns;                 /* per loop nest: its generated function */
    cg_program_fn program;      /* the graph's generated program, or NULL (the C loop runs steps) */
    cg_layout layout;           /* where the program finds each home */
    cg_unit *unit;              /* the generated code, or NULL */
    bool cached;                /* it came from the object cache */
    cg_compile_times times;     /* where the compile's time went */
    bool profiled;              /* compiled with CG_PROFILE: steps are timed */
    _Atomic uint64_t *step_ns;  /* per step: nanoseconds over all calls (profiled) */
    atomic_ulong calls;         /* calls timed (profiled) */
    cg_pick **picks;            /* per step with two kernels (has_alt): CG_PICK_CPUS cg_picks, else NULL */
    int npicks;                 /* steps in picks */
    _Atomic(void *) *packed;    /* per step: a GEMM's constant B packed whole (bconst),
                                   made by its second call, or NULL */
    atomic_uint *asked;         /* per step: calls that asked for it (cg_exec_packed) */
    pthread_mutex_t pack_lock;  /* one call packs; the others wait for it */
    atomic_size_t packed_bytes; /* their bytes */
};

static cg_exec *exec_new(const pass_program *prog) {
    cg_exec *e = rt_malloc(sizeof *e, "em_compile");
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    e->prog = prog;
    atomic_init(&e->spare, NULL);
    pthread_mutex_init(&e->pack_lock, NULL);
    e->maxin = 1;
    for (int i = 0; i < ir_graph_num_nodes(prog->graph); i++)
        if (ir_graph_node(prog->graph, i)->nin > e->maxin) e->maxin = ir_graph_node(prog->graph, i)->nin;
    return e;
}

cg_exec *cg_exec_create(const pass_program *prog) {
    if (!prog || !prog->plan || !prog->plan->internal)
        return rt_error("cg_exec_create: the program has no node-level memory plan"), NULL;
    return exec_new(prog);
}

/* A unique symbol prefix: the graph's name made an identifier, and a counter. */
static void unit_name(const pass_program *prog, char *buf, size_t cap) {
    static atomic_uint next;
    char id[64];
    snprintf(id, sizeof id, "%s", ir_graph_name(prog->graph));
    for (char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) *c = '_';
    snprintf(buf, cap, "ember_%s_%u", id, atomic_fetch_add(&next, 1));
}

static void layout_free(cg_layout *l) {
    free(l->offset), free(l->slot), free(l->slot_node);
    memset(l, 0, sizeof *l);
}

/* Homes from the plan: arena buffers at their offsets, every other home a slot. */
static int layout_build(const pass_program *prog, cg_layout *l) {
    const pass_memplan *p = prog->plan;
    int n = ir_graph_num_nodes(prog->graph);
    size_t nn = (size_t)(n ? n : 1);
    l->offset = malloc(nn * sizeof *l->offset), l->slot = malloc(nn * sizeof *l->slot);
    l->slot_node = malloc(nn * sizeof *l->slot_node);
    if (!l->offset || !l->slot || !l->slot_node) return layout_free(l), rt_error("em_compile: out of memory");
    l->nslots = 0;
    for (int id = 0; id < n; id++) {
        l->offset[id] = -1, l->slot[id] = -1;
        pass_home h = p->home[id];
        if (h == PASS_HOME_ARENA) l->offset[id] = (int64_t)p->buffers[p->buffer_of[id]].offset;
        else if (h == PASS_HOME_ARG || h == PASS_HOME_CONST || h == PASS_HOME_OUTPUT)
            l->slot_node[l->nslots] = id, l->slot[id] = ++l->nslots;
    }
    return 0;
}

/* Plans memory for the schedule s (replacing prog->plan). */
static int plan(pass_program *prog, const cg_schedule *s) {
    pass_memplan *plan = pass_memplan_run_steps(prog->fusion, s->step_of, s->materialize);
    if (!plan) return -1;
    if (pass_memplan_verify(plan) != 0) {
        pass_memplan_destroy(plan);
        return -1;
    }
    pass_memplan_destroy(prog->plan);
    prog->plan = plan;
    return 0;
}

/* The bytes of step i's packed constant. */
static size_t packed_size(const cg_exec *e, int i) {
    return cg_gemm_kept_bytes(&e->sched.nests[e->sched.steps[i].nest]);
}

/* Whether step i is a loop nest with two kernels. */
static bool has_alt(const cg_exec *e, int i) {
    return e->scheduled && e->sched.steps[i].nest >= 0 && e->sched.nests[e->sched.steps[i].nest].has_alt;
}

/* Schedules every kernel (generated loop nests and interpreted nodes), plans
 * memory for that schedule, and generates the loop nests and the program. A
 * failure to generate code is not an error: the kernels are interpreted
 * instead (and memory planned again), with the reason kept for the `kernels`
 * dump. */
static int generate(cg_exec *e, pass_program *prog, em_tensor *const *args, int width, unsigned keep) {
    double t0 = rt_now_ms();
    if (cg_schedule_build(prog, args, width, &e->sched) != 0) return -1;
    e->scheduled = true;
    cg_schedule *s = &e->sched;
    if (plan(prog, s) != 0) return -1;
    e->times.schedule_ms = rt_now_ms() - t0;
    if (!s->nnests) return 0;
    char name[96];
    unit_name(prog, name, sizeof name);
    e->fns = calloc((size_t)s->nnests, sizeof *e->fns);
    if (!e->fns || layout_build(prog, &e->layout) != 0) return rt_error("em_compile: out of memory");
    e->times.schedule_ms = rt_now_ms() - t0;
    e->unit = cg_emit(name, prog, s, &e->layout, args, keep, &e->times, e->fns, &e->program, &e->cached);
    if (e->unit) return 0;
    char why[300];
    snprintf(why, sizeof why, "code generation failed: %s", em_last_error());
    em_clear_error();
    e->program = NULL;
    e->times.source = CG_CODE_NONE;
    cg_schedule_free(s);
    if (cg_schedule_build(prog, args, 0, s) != 0) return -1;
    for (int k = 0; k < s->nwhy; k++) free(s->why[k]), s->why[k] = strdup(why);
    return plan(prog, s);
}

/* What each core learns of the two kernels of every step that has them. */
static int alloc_picks(cg_exec *e) {
    e->picks = calloc((size_t)(e->sched.nsteps ? e->sched.nsteps : 1), sizeof *e->picks);
    if (!e->picks) return -1;
    e->npicks = e->sched.nsteps;
    const char *force = getenv("EMBER_GEMM");
    bool alternate = force && !strcmp(force, "both"); /* tests: the pieces take the kernels in turn */
    for (int i = 0; i < e->sched.nsteps; i++) {
        if (!has_alt(e, i)) continue;
        if (!(e->picks[i] = calloc(CG_PICK_CPUS, sizeof **e->picks))) return -1;
        for (int c = 0; c < CG_PICK_CPUS; c++) e->picks[i][c].alternate = alternate;
    }
    return 0;
}

cg_exec *cg_exec_compile(pass_program *prog, em_tensor *const *args, unsigned keep) {
    if (!prog || !prog->plan) return rt_error("cg_exec_compile: no program"), NULL;
    cg_exec *e = exec_new(prog);
    if (!e) return NULL;
    /* EMBER_CODEGEN=0: nothing generated; =avx2: 8 lanes on an AVX-512 host
     * too (how the AVX2 code paths are tested on this CPU) */
    const char *mode = getenv("EMBER_CODEGEN");
    int width = cg_host_width();
    if (mode && !strcmp(mode, "0")) width = 0;
    else if (mode && !strcmp(mode, "avx2") && width > 8) width = 8;
    if (generate(e, prog, args, width, keep) != 0) {
        cg_exec_destroy(e);
        return NULL;
    }
    if (e->program && alloc_picks(e) != 0) return cg_exec_destroy(e), rt_error("em_compile: out of memory"), NULL;
    size_t nsteps = (size_t)(e->sched.nsteps ? e->sched.nsteps : 1);
    if (e->program && (!(e->packed = calloc(nsteps, sizeof *e->packed)) || !(e->asked = calloc(nsteps, sizeof *e->asked))))
        return cg_exec_destroy(e), rt_error("em_compile: out of memory"), NULL;
    if (keep & CG_PROFILE) {
        e->step_ns = calloc((size_t)(e->sched.nsteps ? e->sched.nsteps : 1), sizeof *e->step_ns);
        if (!e->step_ns) return cg_exec_destroy(e), rt_error("em_compile: out of memory"), NULL;
        e->profiled = true;
    }
    return e;
}

void cg_exec_destroy(cg_exec *e) {
    if (!e) return;
    frame_free(e->prog, atomic_exchange(&e->spare, NULL));
    cg_unit_destroy(e->unit);
    for (int i = 0; e->packed && i < e->sched.nsteps; i++) { /* before the schedule, which says their sizes */
        void *p = atomic_load(&e->packed[i]);
        if (p) rt_unmap(p, packed_size(e, i));
    }
    free((void *)e->packed);
    free((void *)e->asked);
    if (e->scheduled) cg_schedule_free(&e->sched);
    layout_free(&e->layout);
    free((void *)e->step_ns);
    for (int i = 0; i < e->npicks; i++) free(e->picks[i]);
    free(e->picks);
    pthread_mutex_destroy(&e->pack_lock);
    free(e->fns);
    free(e);
}

const cg_unit *cg_exec_unit(const cg_exec *e) { return e ? e->unit : NULL; }

bool cg_exec_cached(const cg_exec *e) { return e && e->cached; }

cg_compile_times *cg_exec_times(cg_exec *e) { return &e->times; }

int cg_exec_print_compile(const cg_exec *e, FILE *out) {
    const cg_compile_times *t = &e->times;
    int nests = cg_exec_generated_nests(e), steps = e->scheduled ? e->sched.nsteps : 0;
    fprintf(out, "; compile of %s: %.3f ms from the first call's start to a runnable program\n",
            ir_graph_name(e->prog->graph), t->total_ms);
    fprintf(out, "  trace      %9.3f ms\n", t->trace_ms);
    fprintf(out, "  passes     %9.3f ms  simplify, fuse, plan memory\n", t->passes_ms);
    fprintf(out, "  schedule   %9.3f ms  %d step%s, %d of them generated loop nests\n", t->schedule_ms, steps,
            steps == 1 ? "" : "s", nests);
    if (t->source == CG_CODE_NONE) {
        fprintf(out, "  code       %9.3f ms  nothing generated: every kernel runs the runtime's (the kernels stage "
                     "says why)\n", 0.0);
        return 0;
    }
    fprintf(out, "  key        %9.3f ms  of the program, before any LLVM IR\n", t->key_ms);
    if (t->module_ms > 0 || t->hash_ms > 0)
        fprintf(out, "  module     %9.3f ms  LLVM IR built, %.3f ms to hash its bitcode%s\n", t->module_ms, t->hash_ms,
                t->source == CG_CODE_COMPILED ? "" : " (EMBER_CACHE_VERIFY, or no build id)");
    const cg_times *u = &t->unit;
    if (t->source == CG_CODE_LIVE)
        fprintf(out, "  code       %9.3f ms  shared with a live function's code of the same key\n", 0.0);
    else if (t->source == CG_CODE_CACHED)
        fprintf(out, "  code       %9.3f ms  from the object cache: %.3f ms to read the entry, %.3f ms to link it\n",
                t->load_ms + u->link_ms, t->load_ms, u->link_ms);
    else
        fprintf(out, "  code       %9.3f ms  compiled: verify %.3f ms, LLVM passes %.3f ms, machine code %.3f ms%s, "
                     "assembly text %.3f ms, link %.3f ms\n",
                t->load_ms + u->verify_ms + u->passes_ms + u->codegen_ms + u->asm_ms + u->link_ms, u->verify_ms,
                u->passes_ms, u->codegen_ms, u->codegen_threads == 2 ? " (two objects on two threads)" : "", u->asm_ms,
                u->link_ms);
    return 0;
}

int cg_exec_print_kernels(const cg_exec *e, FILE *out) {
    if (pass_fusion_print(e->prog->fusion, out) != 0) return -1;
    return e->scheduled ? cg_schedule_print(e->prog, &e->sched, out) : 0;
}

int cg_exec_generated_nests(const cg_exec *e) { return e->scheduled && e->unit ? e->sched.nnests : 0; }

size_t cg_exec_arena_bytes(const cg_exec *e) { return e->prog->plan->arena_bytes; }

/* What one call runs with, kept between calls: the arena and a header over
 * each of its buffers (made once), and the per-node value table. */
typedef struct frame {
    em_tensor *arena;     /* storage of every arena buffer */
    em_tensor **hdr;      /* by node: a header over its arena buffer, or NULL */
    em_tensor **val;      /* by node: this call's values */
    em_tensor **in;       /* operands of one interpreted node */
    void **homes;         /* the program's homes: the arena, then each slot's data */
} frame;

typedef struct run {
    cg_exec *e;
    uint64_t mark;        /* profiled: when the current step began (ns) */
    const pass_program *prog;
    em_tensor *const *args;
    em_tensor **val;      /* per node; owned for op nodes */
    frame *f;
} run;

/* The value of node x: argument, constant, planned buffer, or a view made now. */
static em_tensor *value(run *r, const ir_node *x) {
    if (x->kind == IR_NODE_INPUT) return r->args[x->arg];
    if (x->kind == IR_NODE_CONST) return x->value;
    if (r->val[x->id]) return r->val[x->id];
    EM_ASSERT(ir_ops[x->op].kind == IR_KIND_VIEW);
    em_tensor *base = value(r, x->in[0]);
    if (!base) return NULL;
    return r->val[x->id] = ir_ops[x->op].eager(x->op, &base, 1, &x->attrs, &x->type, NULL);
}

static void frame_free(const pass_program *prog, frame *f) {
    if (!f) return;
    for (int id = 0; f->hdr && id < ir_graph_num_nodes(prog->graph); id++) em_release(f->hdr[id]);
    em_release(f->arena);
    free(f->hdr);
    free(f->homes);
    free(f);
}

static frame *frame_new(const cg_exec *e) {
    const pass_program *prog = e->prog;
    const pass_memplan *p = prog->plan;
    const ir_graph *g = prog->graph;
    size_t nn = (size_t)ir_graph_num_nodes(g) + 1;
    frame *f = rt_malloc(sizeof *f, "compiled call");
    if (!f) return NULL;
    memset(f, 0, sizeof *f);
    f->homes = rt_malloc(((size_t)e->layout.nslots + 1) * sizeof *f->homes, "compiled call");
    f->hdr = f->homes ? rt_malloc((2 * nn + (size_t)e->maxin) * sizeof *f->hdr, "compiled call") : NULL;
    if (f->hdr) memset(f->hdr, 0, (2 * nn + (size_t)e->maxin) * sizeof *f->hdr);
    int64_t words = (int64_t)(p->arena_bytes / sizeof(float));
    f->arena = f->hdr ? rt_tensor_new("compiled call", EM_F32, 1, &words, false) : NULL;
    if (!f->arena) return frame_free(prog, f), NULL;
    f->val = f->hdr + nn, f->in = f->val + nn;
    for (int id = 0; id < ir_graph_num_nodes(g); id++) {
        if (p->home[id] != PASS_HOME_ARENA) continue;
        const ir_node *x = ir_graph_node(g, id);
        f->hdr[id] = rt_tensor_at(f->arena->storage, x->type.dtype, x->type.ndim, x->type.shape,
                                  p->buffers[p->buffer_of[id]].offset);
        if (!f->hdr[id]) return frame_free(prog, f), NULL;
    }
    return f;
}

/* This call's values: the frame's arena headers and fresh storage for every output. */
static int place(run *r) {
    const pass_memplan *p = r->prog->plan;
    const ir_graph *g = r->prog->graph;
    int nn = ir_graph_num_nodes(g);
    memcpy(r->val, r->f->hdr, (size_t)nn * sizeof *r->val);
    for (int id = 0; id < nn; id++) {
        if (p->home[id] != PASS_HOME_OUTPUT) continue;
        const ir_node *x = ir_graph_node(g, id);
        if (!(r->val[id] = rt_tensor_new("compiled call", x->type.dtype, x->type.ndim, x->type.shape, false)))
            return -1;
    }
    return 0;
}

static int step(run *r, const ir_node *x, em_tensor **in) {
    for (int j = 0; j < x->nin; j++) {
        in[j] = x->in[j] ? value(r, x->in[j]) : NULL;
        if (x->in[j] && !in[j]) return -1;
    }
    em_tensor *dst = r->val[x->id];
    em_tensor *res = ir_ops[x->op].eager(x->op, in, x->nin, &x->attrs, &x->type, dst);
    if (!res) return -1;
    EM_ASSERT(res == dst);
    em_release(res);
    return 0;
}

static frame *take_frame(cg_exec *e) {
    frame *f = atomic_exchange(&e->spare, NULL);
    return f ? f : frame_new(e);
}

static void give_frame(cg_exec *e, frame *f) {
    frame *none = NULL;
    if (f && !atomic_compare_exchange_strong(&e->spare, &none, f)) frame_free(e->prog, f);
}

int cg_exec_mark(void *ctx, int i) {
    run *r = ctx;
    uint64_t t = rt_now_ns();
    if (i > 0) atomic_fetch_add(&r->e->step_ns[i - 1], t - r->mark);
    if (i == r->e->sched.nsteps) atomic_fetch_add(&r->e->calls, 1);
    r->mark = t;
    return 0;
}

cg_pick *cg_exec_pieces(void *ctx, int i) {
    run *r = ctx;
    return r->e->picks[i];
}

/* B of step i's GEMM packed whole (cg_gemm_pack_kept): the
 * step's second call packs it under the lock, the calls after find it (an
 * acquire load pairs with the release that publishes it). Not the first
 * call: in a new process that call's pages of the kept block (faulted in at
 * about 0.3 ms a MiB even when mapped populated) came on top of everything
 * else the first result waits for: block's first call took 8.4-8.8 ms
 * against 7.0-7.1 packing per call. */
void *cg_exec_packed(void *ctx, int i, const float *home) {
    cg_exec *e = ((run *)ctx)->e;
    void *p = atomic_load_explicit(&e->packed[i], memory_order_acquire);
    if (p) return p;
    if (atomic_fetch_add_explicit(&e->asked[i], 1, memory_order_relaxed) == 0) return NULL;
    const cg_loopnest *ln = &e->sched.nests[e->sched.steps[i].nest];
    pthread_mutex_lock(&e->pack_lock);
    if (!(p = atomic_load_explicit(&e->packed[i], memory_order_relaxed))) {
        size_t bytes = packed_size(e, i);
        if ((p = rt_map(bytes))) { /* else packed per call until it can be allocated */
            cg_gemm_pack_kept(ln, home, p);
            atomic_fetch_add(&e->packed_bytes, bytes);
            atomic_store_explicit(&e->packed[i], p, memory_order_release);
        }
    }
    pthread_mutex_unlock(&e->pack_lock);
    return p;
}

size_t cg_exec_packed_bytes(const cg_exec *e) { return e ? atomic_load(&((cg_exec *)e)->packed_bytes) : 0; }

/* A step with two kernels: per core, the pieces each ran and their averages now. */
static void print_picks(const cg_exec *e, int i, FILE *out) {
    if (!e->picks || !e->picks[i]) return;
    for (int c = 0; c < CG_PICK_CPUS; c++) {
        cg_pick *p = &e->picks[i][c];
        uint64_t a = atomic_load(&p->runs[0]), f = atomic_load(&p->runs[1]);
        if (!a && !f) continue;
        fprintf(out, "           core %d: AMX in %llu pieces, FMA in %llu; averages now %.3f us on AMX, %.3f us on FMA "
                     "per 64 columns\n",
                c, (unsigned long long)a, (unsigned long long)f, (double)atomic_load(&p->ns[0]) / 1e3,
                (double)atomic_load(&p->ns[1]) / 1e3);
    }
}

int cg_exec_print_profile(const cg_exec *e, FILE *out) {
    if (!e || !e->profiled || !e->scheduled) {
        fprintf(out, "; profile: not timed; compile with EMBER_PROFILE=1 to time every step\n");
        for (int i = 0; e && e->picks && i < e->sched.nsteps; i++)
            if (e->picks[i]) {
                fprintf(out, "step %-3d k%-3d generated GEMM, two kernels\n", i, e->sched.steps[i].kernel);
                print_picks(e, i, out);
            }
        return ferror(out) ? rt_error("em_dump: write failed") : 0;
    }
    unsigned long n = atomic_load(&e->calls);
    uint64_t total = 0;
    for (int i = 0; i < e->sched.nsteps; i++) total += atomic_load(&e->step_ns[i]);
    fprintf(out, "; profile: %lu calls, %.3f us per call in its steps\n", n, n ? (double)total / n / 1e3 : 0.0);
    for (int i = 0; i < e->sched.nsteps; i++) {
        const cg_step *st = &e->sched.steps[i];
        uint64_t ns = atomic_load(&e->step_ns[i]);
        char what[96];
        if (st->nest >= 0) snprintf(what, sizeof what, "%s", e->sched.nests[st->nest].is_gemm ? "generated GEMM" : "generated");
        else snprintf(what, sizeof what, "%%%d %s (runtime)", st->node, ir_ops[ir_graph_node(e->prog->graph, st->node)->op].name);
        fprintf(out, "step %-3d k%-3d %-28s %10.3f us %5.1f%%\n", i, st->kernel, what, n ? (double)ns / n / 1e3 : 0.0,
                total ? 100.0 * (double)ns / (double)total : 0.0);
        print_picks(e, i, out);
    }
    return ferror(out) ? rt_error("em_dump: write failed") : 0;
}

int cg_exec_interpret(void *ctx, int i) {
    run *r = ctx;
    return step(r, ir_graph_node(r->prog->graph, r->e->sched.steps[i].node), r->f->in);
}

/* The generated program: every step, after the homes of this call. */
static int run_program(const cg_exec *e, run *r) {
    void **homes = r->f->homes;
    homes[0] = rt_tensor_data(r->f->arena);
    for (int s = 0; s < e->layout.nslots; s++) {
        em_tensor *t = value(r, ir_graph_node(e->prog->graph, e->layout.slot_node[s]));
        if (!t) return -1;
        homes[1 + s] = rt_tensor_data(t);
    }
    return e->program(homes, r);
}

int cg_exec_run(cg_exec *e, em_tensor *const *args, em_tensor **outs) {
    const pass_program *prog = e->prog;
    const ir_graph *g = prog->graph;
    int nn = ir_graph_num_nodes(g), nout = ir_graph_num_outputs(g);
    for (int i = 0; i < nout; i++) outs[i] = NULL;
    run r = {.e = e, .prog = prog, .args = args, .f = take_frame(e)};
    if (!r.f) return -1;
    r.val = r.f->val;
    int st = place(&r);
    if (!st && e->program) {
        st = run_program(e, &r);
    } else if (e->scheduled) {
        for (int i = 0; i < e->sched.nsteps && !st; i++) {
            const cg_step *sp = &e->sched.steps[i];
            EM_ASSERT(sp->nest < 0); /* loop nests exist only with a program */
            if (e->profiled) cg_exec_mark(&r, i);
            st = step(&r, ir_graph_node(g, sp->node), r.f->in);
        }
        if (e->profiled && !st) cg_exec_mark(&r, e->sched.nsteps);
    } else {
        for (int i = 0; i < prog->plan->nsteps && !st; i++)
            st = step(&r, ir_graph_node(g, prog->plan->order[i]), r.f->in);
    }
    for (int i = 0; i < nout && !st; i++) {
        em_tensor *v = value(&r, ir_graph_output(g, i));
        if (!v) st = -1;
        else outs[i] = em_retain(v);
    }
    if (st)
        for (int i = 0; i < nout; i++) em_release(outs[i]), outs[i] = NULL;
    for (int id = 0; id < nn; id++) /* views and outputs made by this call */
        if (r.val[id] != r.f->hdr[id]) em_release(r.val[id]);
    give_frame(e, r.f);
    return st;
}
