/*
 * main.c — ember-bench: eager vs compiled vs PyTorch on DESIGN.md's workloads.
 *
 *   ember-bench [--threads N] [--only a,b] [--seconds S] [--json] [--no-peers] [--gemm]
 *
 * For each workload (bench/models): eager and compiled time per call (median
 * and best over rounds that alternate between the two), speedup (the median
 * of the rounds' ratios), cold compile time (em_compile and the first
 * call), warm compile time (the same after freeing it: the code comes from the
 * object cache), the same in a new process (the median of three runs of
 * `ember-bench --first-call NAME`, which times em_compile and the first call
 * after making its weights and input, and prints the ms), kernels,
 * arena bytes, and eager vs compiled peak memory. The machine's limits are
 * measured in the same run (limits.c) and each workload is shown as a
 * fraction of its bound, measured again beside each compiled round: bytes
 * over triad bandwidth for memory-bound work, flops over FMA peak for
 * GEMM-bound work. When /usr/bin/python3 has torch,
 * ../shared/peers/torch_peers.py runs beside each workload, on it alone, three
 * times, each right after a run of compiled calls (run_peers),
 * with the same threads (and OPENBLAS_NUM_THREADS, so PyTorch's GEMM uses the
 * same cores), and its times sit beside ember's. Progress goes to stderr, the
 * table to stdout (or JSON lines with --json); bench/results/latest.json and
 * latest.svg are rewritten.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef EMBER_BENCH_DIR
#define EMBER_BENCH_DIR "bench"
#endif

typedef struct args {
    int threads;
    char only[256];
    double seconds;
    bool json, peers, gemm;
    char first_call[64];                /* --first-call NAME: the child of process_warm */
} args;

static char self_path[1024];            /* this executable, for process_warm's children */

static int usage(void) {
    fprintf(stderr, "usage: ember-bench [--threads N] [--only a,b] [--seconds S] [--json] [--no-peers] [--gemm]\n");
    return 2;
}

static int parse(int argc, char **argv, args *a) {
    *a = (args){.threads = 1, .seconds = 1.0, .peers = true};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--threads") && v) a->threads = atoi(v), i++;
        else if (!strcmp(argv[i], "--only") && v) snprintf(a->only, sizeof a->only, "%s", v), i++;
        else if (!strcmp(argv[i], "--seconds") && v) a->seconds = atof(v), i++;
        else if (!strcmp(argv[i], "--json")) a->json = true;
        else if (!strcmp(argv[i], "--no-peers")) a->peers = false;
        else if (!strcmp(argv[i], "--gemm")) a->gemm = true;
        else if (!strcmp(argv[i], "--first-call") && v) snprintf(a->first_call, sizeof a->first_call, "%s", v), i++;
        else return -1;
    }
    return a->threads >= 1 && a->seconds > 0 ? 0 : -1;
}

static bool wanted(const args *a, const char *name) {
    if (!a->only[0]) return true;
    size_t n = strlen(name);
    for (const char *p = a->only; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && !strncmp(p, name, n)) return true;
        p += k + (p[k] == ',');
    }
    return false;
}

/* Bytes one call allocates beyond what was live before it. */
static size_t call_peak(bench_fn fn, em_tensor *x, em_tensor **out) {
    em_memory_stats ms;
    em_memory_stats_get(&ms);
    size_t base = ms.live_bytes;
    em_memory_reset_peak();
    *out = fn(x);
    em_memory_stats_get(&ms);
    return ms.peak_bytes - base;
}

static bool close_enough(em_tensor *got, em_tensor *want) {
    int64_t n = got && want ? em_numel(want) : 0;
    if (!n || em_numel(got) != n) return false;
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    bool ok = a && b && !em_read(want, a, (size_t)n * 4) && !em_read(got, b, (size_t)n * 4);
    for (int64_t i = 0; ok && i < n; i++) ok = fabsf(a[i] - b[i]) <= 1e-5f + 1e-4f * fabsf(a[i]);
    free(a), free(b);
    return ok;
}

static void run_peers(const args *a, bench_fn fast, em_tensor *x, bench_row *r);

/* --first-call NAME: em_compile and the first call of a new process, in ms,
 * on stdout (the weights and the input are made before the clock starts). */
static int first_call(const char *name) {
    const bm_model *m = bm_find(name);
    em_tensor *x = m ? m->input(1) : NULL;
    if (!x) return fprintf(stderr, "ember-bench --first-call %s: %s\n", name, m ? em_last_error() : "no such workload"), 1;
    double t0 = bench_now_ms();
    bench_fn fast = em_compile((void *)m->fn, "tensor(tensor)", &(em_options){.name = m->name});
    em_tensor *y = fast ? fast(x) : NULL;
    double ms = bench_now_ms() - t0;
    if (!y) return fprintf(stderr, "ember-bench --first-call %s: %s\n", name, em_last_error()), 1;
    printf("%.3f\n", ms);
    em_release(y), em_release(x), em_compiled_free((void *)fast);
    return 0;
}

/* The median of PROC_RUNS new processes' em_compile + first call, with this
 * run's object cache (EMBER_CACHE_DIR, inherited) already holding the code;
 * 0 when a child failed. */
enum { PROC_RUNS = 3 };
static double process_warm(const args *a, const bm_model *m) {
    double v[PROC_RUNS];
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' --first-call %s --threads %d", self_path, m->name, a->threads);
    for (int k = 0; k < PROC_RUNS; k++) {
        FILE *p = popen(cmd, "r");
        char line[64] = "";
        if (!p || !fgets(line, sizeof line, p)) line[0] = '\0';
        int st = p ? pclose(p) : -1;
        v[k] = st == 0 && line[0] ? atof(line) : 0;
        if (!(v[k] > 0)) return 0;
    }
    qsort(v, PROC_RUNS, sizeof *v, bench_cmp_double);
    return v[PROC_RUNS / 2];
}

static void run_workload(const args *a, const bm_model *m, const bench_limits *lim, bench_row *r, bool torch) {
    *r = (bench_row){.m = m, .threads = a->threads};
    em_tensor *x = m->input(1), *want, *got;
    r->eager_peak = call_peak(m->fn, x, &want);
    fprintf(stderr, "  %-10s compile...", m->name);
    double t0 = bench_now_ms();
    bench_fn fast = em_compile((void *)m->fn, "tensor(tensor)", &(em_options){.name = m->name});
    em_tensor *first = fast ? fast(x) : NULL;
    r->cold_ms = bench_now_ms() - t0;
    r->ok = close_enough(first, want);
    em_release(first);
    if (!fast || !r->ok) {
        fprintf(stderr, " FAILED: %s\n", fast ? "compiled result differs from eager" : em_last_error());
        em_release(want), em_release(x), em_compiled_free((void *)fast);
        return;
    }
    /* Warm: the same model compiled again after the first is freed, as a new
     * process would: its code comes from the object cache (EMBER_CACHE_DIR). */
    em_compiled_free((void *)fast);
    t0 = bench_now_ms();
    fast = em_compile((void *)m->fn, "tensor(tensor)", &(em_options){.name = m->name});
    em_release(fast ? fast(x) : NULL);
    r->warm_ms = bench_now_ms() - t0;
    if (!fast) {
        fprintf(stderr, " FAILED: %s\n", em_last_error());
        em_release(want), em_release(x);
        r->ok = false;
        return;
    }
    r->proc_ms = process_warm(a, m);
    fprintf(stderr, " %.1f ms cold, %.1f ms warm, %.1f ms in a new process; eager and compiled...", r->cold_ms,
            r->warm_ms, r->proc_ms);
    bench_timing te, tc;
    bench_bound *bound = m->flops > 0 || m->bytes > 0 ? bench_bound_new(m->flops, m->bytes, a->threads) : NULL;
    bench_time_pair(m->fn, fast, x, a->seconds, a->threads, &te, &tc, &r->speedup, bound, &r->of_bound, &r->bound_ms);
    bool measured = bound != NULL;
    bench_bound_free(bound);
    r->eager_med = te.med, r->eager_best = te.best, r->comp_med = tc.med, r->comp_best = tc.best;
    em_stats st;
    em_compiled_stats((void *)fast, &st);
    r->comp_peak = call_peak(fast, x, &got) + (size_t)st.arena_bytes;
    r->kernels = (int)st.kernels, r->arena = (size_t)st.arena_bytes;
    em_compiled_stats((void *)fast, &st); /* after its calls: the packed constants */
    r->packed = st.packed_bytes;
    fprintf(stderr, " %.3f and %.3f ms\n", r->eager_med, r->comp_med);
    if (torch) run_peers(a, fast, x, r);
    r->bound_kind = m->flops > 0 ? "fma" : "memory";
    if (!measured) { /* no measurement beside the rounds (out of memory): the run's limits */
        r->bound_ms = m->flops > 0 ? m->flops / (lim->fma_gflops * 1e9) * 1e3 : m->bytes / (lim->triad_gbs * 1e9) * 1e3;
        r->of_bound = r->bound_ms / r->comp_med;
    }
    em_release(got), em_release(want), em_release(x);
    em_compiled_free((void *)fast);
}

/* ---- peers --------------------------------------------------------------------------- */

static bool have_torch(void) {
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

/* Reads `"key": value` from one JSON line; NAN when absent or null. */
static double json_num(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p || !strncmp(p + strlen(pat), "null", 4)) return NAN;
    return atof(p + strlen(pat));
}

/* PyTorch in PEER_RUNS runs of seconds / PEER_RUNS, each right after a run of
 * compiled calls as long: vs torch is the median of the runs' ratios, torch's
 * times the medians of its runs. One run after ember's rounds made the ratio
 * swing with the seconds between them: Debian's PyTorch took 11.0 to 15.4 ms
 * for mlp in five back-to-back runs of the peer script alone, and vs torch
 * read 0.97x to 1.44x in three runs of the same code. */
enum { PEER_RUNS = 3 };

static void peer_run(const args *a, const char *name, double seconds, double *eager, double *script) {
    char cmd[1024], line[1024];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 %s/../../shared/peers/torch_peers.py "
             "--threads %d --only %s --seconds %g",
             a->threads, a->threads, EMBER_BENCH_DIR, a->threads, name, seconds);
    *eager = *script = NAN;
    FILE *p = popen(cmd, "r");
    while (p && fgets(line, sizeof line, p)) {
        char w[64];
        snprintf(w, sizeof w, "\"workload\": \"%s\"", name);
        if (!strstr(line, w)) continue;
        if (strstr(line, "\"torch_eager\"")) *eager = json_num(line, "ms");
        if (strstr(line, "\"torchscript\"")) *script = json_num(line, "ms");
    }
    if (p) pclose(p);
}

static double median3(double *v) {
    qsort(v, PEER_RUNS, sizeof *v, bench_cmp_double);
    return v[PEER_RUNS / 2];
}

static void run_peers(const args *a, bench_fn fast, em_tensor *x, bench_row *r) {
    double te[PEER_RUNS], ts[PEER_RUNS], q[PEER_RUNS];
    fprintf(stderr, "  %-10s torch (%d runs, each after compiled calls)...", r->m->name, PEER_RUNS);
    for (int k = 0; k < PEER_RUNS; k++) {
        double c = bench_time_calls(fast, x, a->seconds / PEER_RUNS, a->threads);
        peer_run(a, r->m->name, a->seconds / PEER_RUNS, &te[k], &ts[k]);
        q[k] = te[k] / c;
    }
    /* NaN (a run that printed no time) sorts anywhere: count the runs first */
    bool all = true;
    for (int k = 0; k < PEER_RUNS; k++) all &= !isnan(te[k]) && !isnan(ts[k]);
    if (!all) {
        fprintf(stderr, " no times\n");
        return;
    }
    r->torch_eager = median3(te), r->torchscript = median3(ts), r->vs_torch = median3(q);
    fprintf(stderr, " %.3f ms, %.2fx\n", r->torch_eager, r->vs_torch);
}

static void rmdir_cache(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    args a;
    if (parse(argc, argv, &a) != 0) return usage();
    /* OpenBLAS 0.3.21 (Debian 12) misdetects AVX-512 CPUs it does not know under a
     * hypervisor (it took an Ice Lake VM for "Cooperlake", a Sapphire Rapids one for
     * "Prescott") and falls back to its SSE3 kernels, 2-5x slower. OpenBLAS reads
     * OPENBLAS_CORETYPE when it is loaded, so
     * when it is unset on an AVX-512 CPU, run again with SkylakeX: ember and the
     * PyTorch peers (which inherit the environment) then both get its AVX-512 GEMM. */
    __builtin_cpu_init();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f")) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
        execv("/proc/self/exe", argv);
    }
    if (em_set_threads(a.threads) != 0 || bm_setup() != 0) {
        fprintf(stderr, "ember-bench: %s\n", em_last_error());
        return 1;
    }
    if (a.first_call[0]) return first_call(a.first_call);
    ssize_t len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    self_path[len > 0 ? len : 0] = '\0';
    /* Cold means nothing cached: a fresh object cache for this run (warm
     * compiles then load from it), removed at the end. */
    char cache[] = "/tmp/ember-bench-cache.XXXXXX";
    bool own_cache = mkdtemp(cache) != NULL;
    if (own_cache) setenv("EMBER_CACHE_DIR", cache, 1);
    bench_limits lim;
    fprintf(stderr, "ember-bench: %d thread(s), OPENBLAS_CORETYPE=%s; measuring the machine's limits...\n",
            a.threads, getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    bench_measure_limits(a.threads, &lim);
    fprintf(stderr, "  triad %.1f GB/s, %s FMA peak %.1f GFLOP/s\n", lim.triad_gbs, lim.fma_isa, lim.fma_gflops);
    if (a.gemm) { /* the GEMM sweep instead of the workloads (gemm.c), half the time per side */
        int failed = bench_gemm_sweep(stdout, a.seconds / 2, a.threads, &lim);
        bm_teardown();
        if (own_cache) rmdir_cache(cache);
        return failed ? 1 : 0;
    }
    bench_row rows[16];
    int n = 0, failed = 0;
    bool torch = a.peers && have_torch();
    if (a.peers && !torch)
        fprintf(stderr, "  no PyTorch under /usr/bin/python3 (apt-get install python3-torch): peers skipped\n");
    for (int i = 0; i < bm_nmodels && n < 16; i++) {
        if (!wanted(&a, bm_models[i].name)) continue;
        /* PyTorch beside ember's rounds of the same workload: run once for all
         * workloads at the end, it ran a minute later, and this machine's speed
         * changes from minute to minute (vs torch swung 0.88x-1.69x on mlp) */
        run_workload(&a, &bm_models[i], &lim, &rows[n], torch);
        failed += !rows[n++].ok;
    }
    if (n == 0) return fprintf(stderr, "ember-bench: --only matched no workload\n"), 2;
    if (a.json) bench_print_json(stdout, rows, n, &lim);
    else bench_print_table(stdout, rows, n, &lim, torch);
    mkdir(EMBER_BENCH_DIR "/results", 0777);
    FILE *j = fopen(EMBER_BENCH_DIR "/results/latest.json", "w");
    if (j) bench_print_json(j, rows, n, &lim), fclose(j);
    bench_write_svg(EMBER_BENCH_DIR "/results/latest.svg", rows, n, torch);
    fprintf(stderr, "  wrote %s/results/latest.json and latest.svg\n", EMBER_BENCH_DIR);
    bm_teardown();
    if (own_cache) rmdir_cache(cache);
    return failed ? 1 : 0;
}
