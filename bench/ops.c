/*
 * ops.c — eager per-op benchmark: each op of the contract on a representative
 * shape, timed in ember and, beside it, in PyTorch eager.
 *
 *     make bench-ops                              # single thread
 *     make bench-ops BENCHFLAGS="--threads 2"
 *     build/ember-bench-ops [--threads N] [--only add,matmul,...] [--no-torch]
 *                           [--samples K] [--min-ms M] [--rounds R]
 *
 * Why: eager ember is the baseline compiled code is measured against, and a
 * user's first impression. The target (issue 2) is every op within 1.3x of
 * PyTorch eager on the same op, shape and thread count; rows above that are
 * marked.
 *
 * How each op is timed: inputs are made once, outside the clock. The first
 * call checks the op works (a NULL result prints em_last_error() in the table
 * and the run goes on); untimed calls for 100 ms warm up caches and the
 * allocator. Then a calibration finds how many back-to-back calls
 * take at least --min-ms (20 ms); --samples (9) such batches are timed with
 * CLOCK_MONOTONIC and the median per-call time is reported. Every call runs in
 * its own scope, so freeing the result is part of the op's cost, as it is in
 * PyTorch when a result is dropped. bench/ops_torch.py times the same ops on the
 * same shapes the same way; this program runs it with /usr/bin/python3 when that
 * interpreter can import torch, and otherwise says so and shows ember alone.
 *
 * On a shared machine other processes inflate some samples. --rounds R repeats
 * the whole comparison R times, alternating ember and PyTorch, and reports for
 * each side and op the smallest of its R medians.
 *
 * Only the public API (ember.h) is used.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* popen, setenv */
#endif
#include "bench.h"

#include <ember.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef EMBER_BENCH_DIR
#define EMBER_BENCH_DIR "bench" /* where ops_torch.py lives; the Makefile passes an absolute path */
#endif
#ifndef PYTHON
#define PYTHON "/usr/bin/python3" /* Debian's python3-torch is built for this one */
#endif
#define TARGET_RATIO 1.3
#define WARMUP_MS 100.0 /* untimed calls before calibration */
#define MAX_IN 3

/* ---- the ops ----------------------------------------------------------------- */

enum { NONE, RANDN, INDEX }; /* how an input tensor is made */

typedef struct input_spec {
    int kind;         /* NONE ends the list */
    int ndim;
    int64_t shape[3];
    int64_t range;    /* INDEX: values in [0, range), i64 */
} input_spec;

typedef struct bench_op {
    const char *id;    /* the key shared with ops_torch.py */
    const char *shape; /* shown in the table */
    em_tensor *(*run)(em_tensor **in);
    input_spec in[MAX_IN];
} bench_op;

static em_tensor *run_add(em_tensor **t) { return em_add(t[0], t[1]); }
static em_tensor *run_mul(em_tensor **t) { return em_mul(t[0], t[1]); }
static em_tensor *run_exp(em_tensor **t) { return em_exp(t[0]); }
static em_tensor *run_tanh(em_tensor **t) { return em_tanh(t[0]); }
static em_tensor *run_gelu(em_tensor **t) { return em_gelu(t[0]); }
static em_tensor *run_sigmoid(em_tensor **t) { return em_sigmoid(t[0]); }
static em_tensor *run_sum_last(em_tensor **t) { return em_sum(t[0], -1, 0); }
static em_tensor *run_sum_first(em_tensor **t) { return em_sum(t[0], 0, 0); }
static em_tensor *run_max_last(em_tensor **t) { return em_max(t[0], -1, 0); }
static em_tensor *run_mean_last(em_tensor **t) { return em_mean(t[0], -1, 0); }
static em_tensor *run_argmax_last(em_tensor **t) { return em_argmax(t[0], -1, 0); }
static em_tensor *run_softmax(em_tensor **t) { return em_softmax(t[0], -1); }
static em_tensor *run_log_softmax(em_tensor **t) { return em_log_softmax(t[0], -1); }
static em_tensor *run_layer_norm(em_tensor **t) { return em_layer_norm(t[0], t[1], t[2], 1e-5); }
static em_tensor *run_rms_norm(em_tensor **t) { return em_rms_norm(t[0], t[1], 1e-5); }
static em_tensor *run_matmul(em_tensor **t) { return em_matmul(t[0], t[1]); }
static em_tensor *run_linear(em_tensor **t) { return em_linear(t[0], t[1], t[2]); }
static em_tensor *run_embedding(em_tensor **t) { return em_embedding(t[0], t[1]); }
static em_tensor *run_concat(em_tensor **t) { return em_concat(t, 2, 1); }
static em_tensor *run_transpose(em_tensor **t) { return em_contiguous(em_transpose(t[0], 0, 1)); }
static em_tensor *run_cast(em_tensor **t) { return em_cast(t[0], EM_I32); }
static em_tensor *run_add_t(em_tensor **t) { return em_add(em_transpose(t[0], 0, 1), t[1]); }

#define N4M 4194304
#define V(nd, ...) {RANDN, nd, __VA_ARGS__, 0} /* a N(0,1) f32 input */
static const bench_op OPS[] = {
    {"add", "[4194304] + [4194304]", run_add, {V(1, {N4M}), V(1, {N4M})}},
    {"mul", "[4194304] * [4194304]", run_mul, {V(1, {N4M}), V(1, {N4M})}},
    {"exp", "[4194304]", run_exp, {V(1, {N4M})}},
    {"tanh", "[4194304]", run_tanh, {V(1, {N4M})}},
    {"gelu", "[4194304] (erf)", run_gelu, {V(1, {N4M})}},
    {"sigmoid", "[4194304]", run_sigmoid, {V(1, {N4M})}},
    {"add_row", "[4096,1024] + [1024]", run_add, {V(2, {4096, 1024}), V(1, {1024})}},
    {"sum_last", "[4096,1024] axis -1", run_sum_last, {V(2, {4096, 1024})}},
    {"sum_first", "[4096,1024] axis 0", run_sum_first, {V(2, {4096, 1024})}},
    {"max_last", "[4096,1024] axis -1", run_max_last, {V(2, {4096, 1024})}},
    {"mean_last", "[4096,1024] axis -1", run_mean_last, {V(2, {4096, 1024})}},
    {"argmax_last", "[4096,1024] axis -1", run_argmax_last, {V(2, {4096, 1024})}},
    {"softmax", "[4096,1024] axis -1", run_softmax, {V(2, {4096, 1024})}},
    {"log_softmax", "[4096,1024] axis -1", run_log_softmax, {V(2, {4096, 1024})}},
    {"layer_norm", "[4096,1024], w b [1024]", run_layer_norm,
     {V(2, {4096, 1024}), V(1, {1024}), V(1, {1024})}},
    {"rms_norm", "[4096,1024], w [1024]", run_rms_norm, {V(2, {4096, 1024}), V(1, {1024})}},
    {"matmul", "[256,512] @ [512,512]", run_matmul, {V(2, {256, 512}), V(2, {512, 512})}},
    {"linear", "[64,1024] w[4096,1024] +b", run_linear,
     {V(2, {64, 1024}), V(2, {4096, 1024}), V(1, {4096})}},
    {"matmul_batched", "[8,256,64] @ [8,64,256]", run_matmul,
     {V(3, {8, 256, 64}), V(3, {8, 64, 256})}},
    {"embedding", "[50257,768] x 1024 i64", run_embedding,
     {V(2, {50257, 768}), {INDEX, 1, {1024}, 50257}}},
    {"concat", "2 x [4096,512] axis 1", run_concat, {V(2, {4096, 512}), V(2, {4096, 512})}},
    {"transpose", "[4096,1024].T contiguous", run_transpose, {V(2, {4096, 1024})}},
    {"add_t", "[1024,4096].T + [4096,1024]", run_add_t, {V(2, {1024, 4096}), V(2, {4096, 1024})}},
    {"cast", "[4194304] f32 -> i32", run_cast, {V(1, {N4M})}},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

/* ---- options ------------------------------------------------------------------ */

static struct {
    int threads;
    const char *only; /* comma-separated ids, or NULL for all */
    int torch;        /* 0: --no-torch */
    int samples;      /* timed batches per op; the median is kept */
    double min_ms;    /* the least duration of one batch */
    int rounds;       /* whole comparisons; the least median is kept */
} opt = {1, NULL, 1, 9, 20.0, 1};

static void usage(FILE *f) {
    fprintf(f, "usage: ember-bench-ops [--threads N] [--only id,id,...] [--no-torch]\n"
               "                       [--samples K] [--min-ms M] [--rounds R]\nops:");
    for (int i = 0; i < NOPS; i++) fprintf(f, " %s", OPS[i].id);
    fprintf(f, "\n");
}

static int selected(const char *id) {
    if (!opt.only) return 1;
    size_t n = strlen(id);
    for (const char *p = opt.only; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, id, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v) opt.threads = atoi(v), i++;
        else if (!strcmp(a, "--only") && v) opt.only = v, i++;
        else if (!strcmp(a, "--samples") && v) opt.samples = atoi(v), i++;
        else if (!strcmp(a, "--min-ms") && v) opt.min_ms = atof(v), i++;
        else if (!strcmp(a, "--rounds") && v) opt.rounds = atoi(v), i++;
        else if (!strcmp(a, "--no-torch")) opt.torch = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage(stdout), exit(0);
        else {
            fprintf(stderr, "ember-bench-ops: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            exit(2);
        }
    }
    if (opt.threads < 1 || opt.samples < 1 || opt.rounds < 1 || !(opt.min_ms > 0)) {
        fprintf(stderr, "ember-bench-ops: --threads, --samples and --rounds must be >= 1, "
                        "--min-ms > 0\n");
        exit(2);
    }
}

/* ---- timing ------------------------------------------------------------------- */


/* reps back-to-back calls, each in its own scope; total ms, or -1 on a NULL result */
static double time_batch(const bench_op *op, em_tensor **in, long reps) {
    double t0 = bench_now_ms();
    for (long r = 0; r < reps; r++) {
        em_scope_begin();
        em_tensor *y = op->run(in);
        em_scope_end();
        if (!y) return -1;
    }
    return bench_now_ms() - t0;
}

/* median ms per call; -1 with em_last_error() set when the op fails */
static double time_op(const bench_op *op, em_tensor **in) {
    double t = time_batch(op, in, 1); /* check, then warm up caches and the heap */
    for (double w0 = bench_now_ms(); t >= 0 && bench_now_ms() - w0 < WARMUP_MS;) t = time_batch(op, in, 1);
    if (t < 0) return -1;
    long reps = 1;
    for (;;) { /* grow reps until one batch takes min_ms */
        t = time_batch(op, in, reps);
        if (t < 0) return -1;
        if (t >= opt.min_ms) break;
        double want = t > 1e-3 ? reps * opt.min_ms * 1.2 / t : reps * 100.0;
        reps = want > 2.0 * reps ? (long)ceil(want) : 2 * reps;
    }
    double *ms = malloc(sizeof *ms * opt.samples);
    if (!ms) return -1;
    for (int s = 0; s < opt.samples; s++) {
        double b = time_batch(op, in, reps);
        if (b < 0) return free(ms), -1;
        ms[s] = b / reps;
    }
    qsort(ms, opt.samples, sizeof *ms, bench_cmp_double);
    double med = opt.samples % 2 ? ms[opt.samples / 2]
                                 : 0.5 * (ms[opt.samples / 2 - 1] + ms[opt.samples / 2]);
    free(ms);
    return med;
}

/* ---- inputs ------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static em_tensor *make_input(const input_spec *s, uint64_t seed) {
    if (s->kind == RANDN) return em_randn(s->ndim, s->shape, seed);
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    int64_t *idx = malloc(sizeof *idx * (n ? n : 1));
    if (!idx) return NULL;
    for (int64_t i = 0; i < n; i++) idx[i] = (int64_t)(splitmix64(&seed) % (uint64_t)s->range);
    em_tensor *t = em_from_data(EM_I64, s->ndim, s->shape, idx);
    free(idx);
    return t;
}

/* ---- PyTorch ------------------------------------------------------------------ */

static double torch_ms[NOPS];  /* the least median so far; -1: not measured */
static char torch_info[256];   /* version, threads, BLAS, from the script's header line */

/* value of "key": in a one-line JSON object; strings are returned without quotes */
static int json_get(const char *line, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ') p++;
    size_t len = 0;
    if (*p == '"') {
        const char *e = strchr(++p, '"');
        if (!e) return 0;
        len = (size_t)(e - p);
    } else {
        len = strcspn(p, ",}");
    }
    if (len >= n) len = n - 1;
    memcpy(out, p, len);
    out[len] = 0;
    return 1;
}

/* keeps the smaller of two medians; negative means none */
static void keep_min(double *have, double ms) {
    if (ms >= 0 && (*have < 0 || ms < *have)) *have = ms;
}

/* runs ops_torch.py once and folds its times into torch_ms; 0 when it ran */
static int run_torch(void) {
    static int available = -1;
    if (!opt.torch) {
        snprintf(torch_info, sizeof torch_info, "PyTorch: skipped (--no-torch)");
        return -1;
    }
    if (available < 0) available = system(PYTHON " -c 'import torch' >/dev/null 2>&1") == 0;
    if (!available) {
        snprintf(torch_info, sizeof torch_info,
                 "PyTorch: not available, %s cannot import torch (apt-get install "
                 "python3-torch libopenblas0-pthread); ember alone", PYTHON);
        return -1;
    }
    char threads[16], cmd[1024];
    snprintf(threads, sizeof threads, "%d", opt.threads);
    setenv("OMP_NUM_THREADS", threads, 1); /* the child's BLAS and OpenMP pools */
    setenv("OPENBLAS_NUM_THREADS", threads, 1);
    snprintf(cmd, sizeof cmd, "%s %s/ops_torch.py --threads %d --samples %d --min-ms %g%s%s",
             PYTHON, EMBER_BENCH_DIR, opt.threads, opt.samples, opt.min_ms,
             opt.only ? " --only " : "", opt.only ? opt.only : "");
    fprintf(stderr, "running PyTorch: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) return snprintf(torch_info, sizeof torch_info, "could not run %.200s", cmd), -1;
    char line[1024], v[128];
    while (fgets(line, sizeof line, p)) {
        if (json_get(line, "torch", v, sizeof v)) {
            char blas[128] = "?";
            json_get(line, "blas", blas, sizeof blas);
            snprintf(torch_info, sizeof torch_info, "PyTorch %s eager, BLAS %s", v, blas);
            continue;
        }
        if (!json_get(line, "op", v, sizeof v)) continue;
        for (int i = 0; i < NOPS; i++) {
            char ms[64];
            if (!strcmp(OPS[i].id, v) && json_get(line, "ms", ms, sizeof ms) &&
                strcmp(ms, "null"))
                keep_min(&torch_ms[i], atof(ms));
        }
    }
    int rc = pclose(p);
    if (rc != 0) {
        snprintf(torch_info + strlen(torch_info), sizeof torch_info - strlen(torch_info),
                 "%s(ops_torch.py exited with status %d)", *torch_info ? " " : "", rc);
    }
    return 0;
}

/* ---- main --------------------------------------------------------------------- */

static void cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) break;
        c += strspn(c + 1, " \t") + 1;
        c[strcspn(c, "\n")] = 0;
        snprintf(out, n, "%s", c);
        break;
    }
    fclose(f);
}

static double ember_ms[NOPS]; /* the least median so far; -1: none or failed; -2: not selected */
static char errors[NOPS][160];

/* times every selected op in ember once, folding the medians into ember_ms */
static void run_ember(void) {
    for (int i = 0; i < NOPS; i++) {
        if (ember_ms[i] == -2 || errors[i][0]) continue; /* not selected, or failed before */
        fprintf(stderr, "ember: %-15s %s ... ", OPS[i].id, OPS[i].shape);
        em_tensor *in[MAX_IN] = {0};
        int ok = 1;
        for (int k = 0; k < MAX_IN && OPS[i].in[k].kind != NONE; k++)
            ok = ok && (in[k] = make_input(&OPS[i].in[k], 1000 + 17 * i + k));
        em_clear_error();
        double ms = ok ? time_op(&OPS[i], in) : -1;
        if (ms < 0) {
            snprintf(errors[i], sizeof errors[i], "%s", em_last_error());
            ember_ms[i] = -1;
            fprintf(stderr, "error: %s\n", errors[i]);
        } else {
            keep_min(&ember_ms[i], ms);
            fprintf(stderr, "%.4f ms\n", ms);
        }
        for (int k = 0; k < MAX_IN; k++) em_release(in[k]);
    }
}

/* the table on stdout (Markdown, so it can go into README.md as it is); returns failures */
static int print_table(void) {
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("\nember %s eager; %s\n", em_version(),
           *torch_info ? torch_info : "PyTorch: no result");
    printf("%s, %d thread%s; median ms per call of %d samples, each >= %g ms of back-to-back "
           "calls", cpu, opt.threads, opt.threads == 1 ? "" : "s", opt.samples, opt.min_ms);
    if (opt.rounds > 1) printf("; least of %d rounds", opt.rounds);
    printf("\n\n");
    printf("| %-14s | %-26s | %9s | %9s | %11s |   |\n", "op", "shape", "ember ms", "torch ms",
           "ember/torch");
    printf("|----------------|----------------------------|-----------|-----------|"
           "-------------|---|\n");
    int compared = 0, within = 0, failed = 0;
    double log_sum = 0;
    for (int i = 0; i < NOPS; i++) {
        if (ember_ms[i] == -2) continue;
        char e[32] = "error", t[32] = "-", r[32] = "-";
        const char *mark = "";
        if (ember_ms[i] >= 0) snprintf(e, sizeof e, "%.3f", ember_ms[i]);
        else failed++;
        if (torch_ms[i] >= 0) snprintf(t, sizeof t, "%.3f", torch_ms[i]);
        if (ember_ms[i] >= 0 && torch_ms[i] > 0) {
            double ratio = ember_ms[i] / torch_ms[i];
            snprintf(r, sizeof r, "%.2f", ratio);
            compared++;
            log_sum += log(ratio);
            if (ratio <= TARGET_RATIO) within++;
            else mark = "*";
        }
        printf("| %-14s | %-26s | %9s | %9s | %11s | %-1s |\n", OPS[i].id, OPS[i].shape, e, t, r,
               mark);
    }
    printf("\n");
    if (compared)
        printf("%d of %d ops within %.1fx of PyTorch (* marks the others); geometric mean "
               "ember/torch %.2f\n", within, compared, TARGET_RATIO, exp(log_sum / compared));
    for (int i = 0; i < NOPS; i++)
        if (errors[i][0]) printf("error in %s: %s\n", OPS[i].id, errors[i]);
    return failed;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    /* As ember-bench (bench/main.c): Debian's OpenBLAS 0.3.21 falls back to its SSE3
     * kernels on AVX-512 CPUs it does not know (this VM), for ember and PyTorch
     * alike; OpenBLAS reads OPENBLAS_CORETYPE when loaded, so run again with it. */
    __builtin_cpu_init();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f")) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
        execv("/proc/self/exe", argv);
    }
    if (em_set_threads(opt.threads) != 0) {
        fprintf(stderr, "ember-bench-ops: %s\n", em_last_error());
        return 2;
    }
    int any = 0;
    for (int i = 0; i < NOPS; i++) {
        ember_ms[i] = selected(OPS[i].id) ? -1 : -2;
        torch_ms[i] = -1;
        any |= ember_ms[i] == -1;
    }
    if (!any) {
        fprintf(stderr, "ember-bench-ops: --only matched no op\n");
        usage(stderr);
        return 2;
    }
    for (int r = 0; r < opt.rounds; r++) {
        if (opt.rounds > 1) fprintf(stderr, "round %d of %d\n", r + 1, opt.rounds);
        run_ember();
        run_torch();
    }
    return print_table() ? 1 : 0;
}
