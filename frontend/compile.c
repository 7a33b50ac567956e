/*
 * compile.c — em_compile: a function pointer that traces once and then runs
 * the graph.
 *
 * em_compile parses the signature, builds a libffi closure of the same C type
 * and returns its code pointer. Every call of that pointer lands in `handler`:
 *
 *   1. pack the guards of the arguments into a key (guard.c) and look for a
 *      cached entry with the same key: the hit path is lock-free (entries are
 *      append-only and published with release stores), so concurrent callers
 *      never wait for each other or for a compile;
 *   2. on a miss, take the function's compile lock, trace the user's function
 *      on proxies (trace.c) into a graph, verify it, build its program with
 *      the pass pipeline (passes/pipeline.c: simplify, fuse, plan memory) and
 *      publish an entry holding both (the captured graph for the `graph`
 *      dump, the program to run); past max_recompiles entries the function
 *      runs eagerly from then on;
 *   3. run the entry: its program (the optimised graph grouped into kernels,
 *      with a memory plan; codegen/exec.c), or the original function when the
 *      trace hit a graph break.
 *
 * Results follow the eager contract: they are adopted by the caller's innermost
 * scope, or owned by the caller when none is open. A call made while another
 * function is being traced simply calls the original, so compiled functions
 * compose (the inner one is inlined into the outer trace).
 */
#include "codegen.h"
#include "frontend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    int64_t *key;
    int klen;
    pass_program *prog;   /* optimised graph, kernels, plan; NULL: runs eagerly (graph break) */
    cg_exec *exec;        /* runs prog; NULL with prog */
    ir_graph *captured;   /* as traced, for the `graph` dump; NULL with prog */
} entry;

typedef struct compiled {
    void *fn;                 /* the user's function */
    fe_sig sig;
    fe_closure *closure;
    char name[96];
    em_options opts;
    char dump_dir[512];
    pthread_mutex_t lock;     /* one trace at a time; guards the fields below */
    entry **entries;          /* max_recompiles slots */
    _Atomic int n_entries;    /* published prefix of entries */
    atomic_bool eager_only;   /* the recompile limit was reached */
    atomic_uint_fast64_t calls, compiles, misses, fallbacks;
    double compile_ms;
    struct compiled *next;    /* registry */
} compiled;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static compiled *registry;

/* The hit path: the newest entry whose key the arguments match, if any. */
static entry *lookup_args(compiled *c, void **args) {
    int n = atomic_load_explicit(&c->n_entries, memory_order_acquire);
    for (int i = n - 1; i >= 0; i--) {
        entry *e = c->entries[i];
        if (fe_guard_match(&c->sig, args, e->key, e->klen)) return e;
    }
    return NULL;
}

/* ---- running an entry ------------------------------------------------------------- */

static void set_results(compiled *c, void *ret, void **args, em_tensor **outs, bool ok) {
    int k = 0;
    if (c->sig.ret == FE_TENSOR) *(em_tensor **)ret = ok ? rt_scope_adopt(outs[k++]) : NULL;
    for (int i = 0; i < c->sig.nargs; i++) {
        if (c->sig.args[i] != FE_TENSOR_OUT) continue;
        em_tensor **slot = *(em_tensor ***)args[i];
        em_tensor *v = ok ? rt_scope_adopt(outs[k++]) : NULL;
        if (slot) *slot = v;
        else em_release(v); /* the caller passed NULL for this out-parameter */
    }
}

/* The tensor arguments of a call, in order, as the graph's inputs number them. */
static void tensor_args(const compiled *c, void **args, em_tensor **targs) {
    int nt = 0;
    for (int i = 0; i < c->sig.nargs; i++)
        if (c->sig.args[i] == FE_TENSOR) targs[nt++] = *(em_tensor **)args[i];
}

static void run_graph(compiled *c, const entry *e, void *ret, void **args) {
    em_tensor *targs[FE_MAX_ARGS], *outs[FE_MAX_ARGS + 1];
    tensor_args(c, args, targs);
    set_results(c, ret, args, outs, cg_exec_run(e->exec, targs, outs) == 0);
}

static void run_eager(compiled *c, void *ret, void **args) {
    atomic_fetch_add(&c->fallbacks, 1);
    fe_closure_call(c->closure, c->fn, ret, args);
}

/* ---- tracing ------------------------------------------------------------------------ */

typedef struct trace_call {
    em_tensor *proxies[FE_MAX_ARGS];   /* per argument: its proxy (tensor args) */
    em_tensor *outs[FE_MAX_ARGS];      /* out-parameter slots the function writes */
    em_tensor **out_ptrs[FE_MAX_ARGS];
    void *argv[FE_MAX_ARGS];
    em_tensor *result;
} trace_call;

/* Builds proxies for the tensor arguments and the argument vector of the call. */
static int trace_args(compiled *c, fe_trace *t, void **args, trace_call *tc) {
    int nt = 0;
    for (int i = 0; i < c->sig.nargs; i++) {
        tc->argv[i] = args[i];
        if (c->sig.args[i] == FE_TENSOR_OUT) {
            tc->out_ptrs[i] = &tc->outs[i];
            tc->argv[i] = &tc->out_ptrs[i];
        }
        if (c->sig.args[i] != FE_TENSOR) continue;
        const em_tensor *real = *(em_tensor **)args[i];
        ir_type ty;
        ir_type_of(real, &ty);
        ir_node *n = ir_graph_add_input(t->graph, &ty, nt++);
        tc->proxies[i] = n ? fe_proxy_new(t, n, real->strides) : NULL;
        if (!tc->proxies[i]) return -1;
        tc->argv[i] = &tc->proxies[i];
    }
    return 0;
}

/* Collects the traced results as graph outputs and drops the references the
 * call handed to us (none when the caller's scope owns them). */
static int trace_outputs(compiled *c, fe_trace *t, trace_call *tc, bool owned) {
    ir_node *outs[FE_MAX_ARGS + 1];
    em_tensor *vals[FE_MAX_ARGS + 1];
    int n = 0, status = 0;
    if (c->sig.ret == FE_TENSOR) vals[n++] = tc->result;
    for (int i = 0; i < c->sig.nargs; i++)
        if (c->sig.args[i] == FE_TENSOR_OUT) vals[n++] = tc->outs[i];
    for (int k = 0; k < n && status == 0; k++) {
        if (!vals[k]) {
            if (!t->failed && !t->brk[0]) {
                char prev[400];
                snprintf(prev, sizeof prev, "%s", em_last_error());
                rt_error("em_compile: %s returned NULL while tracing%s%s", c->name,
                         prev[0] ? ": " : "", prev);
            }
            status = -1;
        } else if (!(outs[k] = fe_trace_node_of(t, vals[k]))) {
            status = -1;
        }
    }
    if (status == 0) status = ir_graph_set_outputs(t->graph, outs, n);
    if (owned)
        for (int k = 0; k < n; k++) em_release(vals[k]);
    return status;
}

/* Traces one call into g. 0 on success; 1 on a graph break (t->brk says why);
 * -1 when the call failed (the error is set). */
static int trace(compiled *c, ir_graph *g, void **args, char *brk, size_t cap) {
    fe_trace t;
    trace_call tc = {0};
    fe_trace_begin(&t, g);
    bool owned = rt_scope_depth() == 0; /* results are ours unless a scope takes them */
    int status = trace_args(c, &t, args, &tc);
    if (status == 0) {
        fe_closure_call(c->closure, c->fn, &tc.result, tc.argv);
        status = trace_outputs(c, &t, &tc, owned);
    }
    fe_trace_end(&t);
    for (int i = 0; i < c->sig.nargs; i++) em_release(tc.proxies[i]);
    if (t.brk[0]) {
        snprintf(brk, cap, "%s", t.brk);
        return 1;
    }
    return status == 0 ? ir_graph_verify(g) : -1;
}

/* ---- the cache ------------------------------------------------------------------------ */

static void publish(compiled *c, const int64_t *key, int klen, ir_graph *captured,
                    pass_program *prog, cg_exec *exec, entry **out) {
    entry *e = rt_malloc(sizeof *e, "em_compile");
    int64_t *k = e ? rt_malloc((size_t)klen * sizeof *k + 1, "em_compile") : NULL;
    if (!k) { /* no memory to cache it: run this once, uncached */
        free(e);
        *out = NULL;
        return;
    }
    memcpy(k, key, (size_t)klen * sizeof *k);
    *e = (entry){k, klen, prog, exec, captured};
    int n = atomic_load(&c->n_entries);
    c->entries[n] = e;
    atomic_store_explicit(&c->n_entries, n + 1, memory_order_release);
    if (n + 1 == c->opts.max_recompiles) atomic_store(&c->eager_only, true);
    *out = e;
}

static void log_miss(compiled *c, const int64_t *key, int klen) {
    int n = atomic_load(&c->n_entries);
    if (n == 0 || !fe_log_on(FE_LOG_RECOMPILES)) return;
    const entry *last = c->entries[n - 1];
    char why[256];
    fe_guard_diff(&c->sig, key, klen, last->key, last->klen, why, sizeof why);
    fe_log(FE_LOG_RECOMPILES, "recompile %s: %s", c->name, why);
}

/* The program of a captured graph: optimised, fused and planned (logged under
 * EMBER_LOG=opt,kernels,memplan), and its executor; -1 with an error naming
 * the pass that failed. */
static int build(compiled *c, const ir_graph *captured, void **args, pass_program **prog,
                 cg_exec **exec, double *passes_ms) {
    bool log = fe_log_on(FE_LOG_OPT);
    *exec = NULL;
    double t0 = rt_now_ms();
    if (!(*prog = pass_program_build(captured, true, log ? fe_log_pass : NULL, NULL))) return -1;
    *passes_ms = rt_now_ms() - t0;
    em_tensor *targs[FE_MAX_ARGS];
    tensor_args(c, args, targs);
    unsigned keep = CG_KEEP_IR | (c->dump_dir[0] || fe_log_on(FE_LOG_ASM) ? CG_KEEP_ASM : 0);
    const char *profile = getenv("EMBER_PROFILE"); /* time each step, for em_dump's `profile` stage */
    if (profile && strcmp(profile, "1") == 0) keep |= CG_PROFILE;
    if ((*exec = cg_exec_compile(*prog, targs, keep))) return 0;
    pass_program_destroy(*prog);
    *prog = NULL;
    return -1;
}

/* On a miss: trace under the lock and publish an entry. Returns the entry to
 * run, or NULL with *failed set when the call must fail (error set), or NULL
 * when it must run eagerly. */
static entry *compile_entry(compiled *c, void **args, const int64_t *key, int klen, bool *failed) {
    *failed = false;
    entry *e = lookup_args(c, args); /* another thread may have compiled it meanwhile */
    if (e || atomic_load(&c->eager_only)) return e;
    log_miss(c, key, klen);
    double t0 = rt_now_ms();
    ir_graph *g = ir_graph_create(c->name);
    pass_program *prog = NULL;
    cg_exec *exec = NULL;
    char brk[256] = "";
    int st = g ? trace(c, g, args, brk, sizeof brk) : -1;
    double trace_ms = rt_now_ms() - t0, passes_ms = 0;
    if (st == 0) {
        fe_log_graph(g);
        if (build(c, g, args, &prog, &exec, &passes_ms) != 0) st = -1;
    }
    double ms = rt_now_ms() - t0;
    c->compile_ms += ms;
    if (exec) {
        cg_compile_times *t = cg_exec_times(exec);
        t->total_ms = ms, t->trace_ms = trace_ms, t->passes_ms = passes_ms;
        fe_log_program(prog, exec);
    }
    if (st < 0 || (st == 1 && c->opts.fullgraph)) {
        if (st == 1)
            rt_error("em_compile: %s: graph break with fullgraph set: %s", c->name, brk);
        ir_graph_destroy(g);
        *failed = true;
        return NULL;
    }
    if (st == 1) {
        fe_log(FE_LOG_FALLBACKS, "fallback %s: %s; these inputs run eagerly", c->name, brk);
        ir_graph_destroy(g);
        g = NULL;
    } else {
        atomic_fetch_add(&c->compiles, 1);
        if (c->dump_dir[0])
            fe_dump_all(g, prog, exec, c->dump_dir, c->name, (int)atomic_load(&c->compiles));
    }
    publish(c, key, klen, g, prog, exec, &e);
    if (!e) {
        ir_graph_destroy(g);
        cg_exec_destroy(exec);
        pass_program_destroy(prog);
    }
    fe_log(FE_LOG_GUARDS, "guards %s: entry %d of %d %s", c->name, atomic_load(&c->n_entries),
           c->opts.max_recompiles, g ? "compiled" : "runs eagerly");
    if (atomic_load(&c->eager_only))
        fe_log(FE_LOG_FALLBACKS, "fallback %s: max_recompiles (%d) reached; new inputs run eagerly",
               c->name, c->opts.max_recompiles);
    return e;
}

static void handler(void *ctx, void *ret, void **args) {
    compiled *c = ctx;
    atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
    if (fe_trace_current()) { /* called from a function being traced: inline it */
        fe_closure_call(c->closure, c->fn, ret, args);
        return;
    }
    int64_t key[FE_KEY_MAX];
    int klen = 0;
    for (int i = 0; i < c->sig.nargs && klen == 0; i++) /* a NULL tensor runs eagerly: it reports */
        if (c->sig.args[i] == FE_TENSOR && (!*(em_tensor **)args[i] || fe_is_proxy(*(em_tensor **)args[i])))
            klen = -1; /* a traced tensor outside its trace too: the eager ops report it */
    entry *e = klen == 0 ? lookup_args(c, args) : NULL;
    if (!e && klen == 0 && (klen = fe_guard_key(&c->sig, args, key)) >= 0) {
        atomic_fetch_add(&c->misses, 1);
        bool failed;
        pthread_mutex_lock(&c->lock);
        e = compile_entry(c, args, key, klen, &failed);
        pthread_mutex_unlock(&c->lock);
        if (failed) {
            set_results(c, ret, args, NULL, false);
            return;
        }
    }
    if (e && e->prog) run_graph(c, e, ret, args);
    else run_eager(c, ret, args);
}

/* ---- the public API ------------------------------------------------------------------ */

static void compiled_destroy(compiled *c) {
    int n = atomic_load(&c->n_entries);
    for (int i = 0; i < n; i++) {
        cg_exec_destroy(c->entries[i]->exec);
        pass_program_destroy(c->entries[i]->prog);
        ir_graph_destroy(c->entries[i]->captured);
        free(c->entries[i]->key);
        free(c->entries[i]);
    }
    free(c->entries);
    fe_closure_destroy(c->closure);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The symbol of fn when the dynamic symbol table has it (a shared library, or an
 * executable linked with -rdynamic), else "fn_<address>"; opts->name wins. */
static void name_of(void *fn, const char *given, char *buf, size_t cap) {
    Dl_info info;
    if (given && *given)
        snprintf(buf, cap, "%s", given);
    else if (dladdr(fn, &info) && info.dli_sname && info.dli_saddr == fn)
        snprintf(buf, cap, "%s", info.dli_sname);
    else
        snprintf(buf, cap, "fn_%p", fn);
}

static void set_options(compiled *c, const em_options *opts) {
    if (opts) c->opts = *opts;
    if (c->opts.max_recompiles <= 0) c->opts.max_recompiles = 8;
    if (c->opts.max_recompiles > 4096) c->opts.max_recompiles = 4096;
    const char *dir = c->opts.dump_dir ? c->opts.dump_dir : getenv("EMBER_DUMP_DIR");
    snprintf(c->dump_dir, sizeof c->dump_dir, "%s", dir ? dir : "");
    c->opts.dump_dir = c->dump_dir[0] ? c->dump_dir : NULL;
}

void *em_compile(void *fn, const char *signature, const em_options *opts) {
    if (!fn) {
        rt_error("em_compile: fn is NULL");
        return NULL;
    }
    const char *off = getenv("EMBER_DISABLE");
    if (off && *off && strcmp(off, "0") != 0) return fn;
    compiled *c = rt_malloc(sizeof *c, "em_compile");
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->fn = fn;
    set_options(c, opts);
    if (opts && opts->threads > 0 && em_set_threads(opts->threads) != 0) goto fail;
    if (fe_sig_parse(signature, &c->sig) != 0) goto fail;
    name_of(fn, opts ? opts->name : NULL, c->name, sizeof c->name);
    pthread_mutex_init(&c->lock, NULL);
    c->entries = rt_malloc((size_t)c->opts.max_recompiles * sizeof *c->entries, "em_compile");
    if (!c->entries || !(c->closure = fe_closure_create(&c->sig, handler, c))) {
        compiled_destroy(c);
        return NULL;
    }
    cg_jit_prepare(); /* the LLJIT is made while the first call traces */
    pthread_mutex_lock(&registry_lock);
    c->next = registry;
    registry = c;
    pthread_mutex_unlock(&registry_lock);
    return fe_closure_code(c->closure);
fail:
    free(c);
    return NULL;
}

/* The compiled function behind a code pointer; with unlink, also removes it. */
static compiled *find(void *code, bool unlink) {
    pthread_mutex_lock(&registry_lock);
    compiled **p = &registry;
    while (*p && fe_closure_code((*p)->closure) != code) p = &(*p)->next;
    compiled *c = *p;
    if (c && unlink) *p = c->next;
    pthread_mutex_unlock(&registry_lock);
    return c;
}

void em_compiled_free(void *code) {
    compiled *c = code ? find(code, true) : NULL;
    if (c) compiled_destroy(c);
}

static compiled *find_or_error(const char *api, void *code) {
    compiled *c = code ? find(code, false) : NULL;
    if (!c) rt_error("%s: %p is not a function returned by em_compile", api, code);
    return c;
}

int em_compiled_stats(void *code, em_stats *out) {
    compiled *c = find_or_error("em_compiled_stats", code);
    if (!c) return -1;
    if (!out) return rt_error("em_compiled_stats: out is NULL");
    pthread_mutex_lock(&c->lock);
    int n = atomic_load(&c->n_entries);
    const entry *newest = NULL;
    for (int i = n - 1; i >= 0 && !newest; i--)
        if (c->entries[i]->prog) newest = c->entries[i];
    *out = (em_stats){
        .calls = atomic_load(&c->calls), .compiles = atomic_load(&c->compiles),
        .guard_misses = atomic_load(&c->misses), .eager_fallbacks = atomic_load(&c->fallbacks),
        .kernels = newest ? newest->prog->fusion->nkernels : 0, .compile_ms = c->compile_ms,
        .arena_bytes = newest ? cg_exec_arena_bytes(newest->exec) : 0,
    };
    for (int i = 0; i < n; i++) out->packed_bytes += cg_exec_packed_bytes(c->entries[i]->exec);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int em_dump(void *code, const char *stage, FILE *out) {
    compiled *c = find_or_error("em_dump", code);
    if (!c) return -1;
    if (!out) return rt_error("em_dump: out is NULL");
    if (fe_dump_stage(NULL, NULL, NULL, stage, NULL) != 0) return -1; /* an unknown stage */
    pthread_mutex_lock(&c->lock);
    int n = atomic_load(&c->n_entries), st = 0;
    const entry *e = NULL;
    for (int i = n - 1; i >= 0 && !e; i--)
        if (c->entries[i]->prog) e = c->entries[i];
    if (e) st = fe_dump_stage(e->captured, e->prog, e->exec, stage, out);
    else fprintf(out, "; %s: no graph compiled yet (call the function first)\n", c->name);
    pthread_mutex_unlock(&c->lock);
    return st;
}
