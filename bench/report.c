/*
 * report.c — ember-bench's outputs: the readable table, JSON lines (one object
 * per workload and mode), and an SVG chart of compiled speedups over ember
 * eager and over PyTorch eager.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

static void ratio(FILE *out, double num, double den) {
    if (num > 0 && den > 0) fprintf(out, " %6.2fx |", num / den);
    else fprintf(out, "      - |");
}

static void ms(FILE *out, double v) {
    if (v > 0 && v < 0.1) fprintf(out, " %9.5f |", v); /* microsecond calls keep their digits */
    else if (v > 0) fprintf(out, " %9.3f |", v);
    else fprintf(out, "         - |");
}

void bench_print_table(FILE *out, const bench_row *rows, int n, const bench_limits *lim,
                       bool have_torch) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    fprintf(out, "ember-bench, %d thread(s); triad %.1f GB/s, %s FMA peak %.1f GFLOP/s; "
                 "OPENBLAS_CORETYPE=%s%s\n\n",
            rows[0].threads, lim->triad_gbs, lim->fma_isa, lim->fma_gflops, ct ? ct : "(unset)",
            have_torch ? "" : "; no PyTorch peers");
    fprintf(out, "| workload | eager ms | compiled ms | speedup | torch ms | torchscript ms | vs torch "
                 "| cold ms | warm ms | new process ms | kernels | arena KiB | peak eager→compiled KiB | packed KiB | bound | of bound |\n");
    fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for (int i = 0; i < n; i++) {
        const bench_row *r = &rows[i];
        fprintf(out, "| %s |", r->m->name);
        if (!r->ok) {
            fprintf(out, " FAILED: compiled differs from eager |\n");
            continue;
        }
        ms(out, r->eager_med), ms(out, r->comp_med), ratio(out, r->speedup, 1.0);
        ms(out, r->torch_eager), ms(out, r->torchscript), ratio(out, r->vs_torch, 1.0);
        fprintf(out, " %7.1f | %6.1f |", r->cold_ms, r->warm_ms);
        ms(out, r->proc_ms);
        fprintf(out, " %7d | %9.0f | %8.0f → %-8.0f | %6.0f | %s | %5.1f%% |\n", r->kernels, r->arena / 1024.0,
                r->eager_peak / 1024.0, r->comp_peak / 1024.0, r->packed / 1024.0, r->bound_kind, 100.0 * r->of_bound);
    }
    fprintf(out, "\ntimes are medians per call over 9 rounds, eager and compiled rounds alternating; speedup = the "
                 "median of the rounds' eager / compiled; torch ms = the median of 3 runs of PyTorch, each "
                 "right after compiled calls; vs torch = the median of the 3 runs' torch eager / those compiled "
                 "calls; warm ms = em_compile and the first call once the code is in the object cache, new process ms = "
                 "the same in a new process (median of 3), its weights and input made before the clock starts; "
                 "of bound = the median of the rounds' machine limit "
                 "(the workload's bytes at the triad rate, or its flops at the FMA peak, measured right "
                 "after each compiled round) / compiled time; peak = what a call allocates beside its weights "
                 "(compiled: and its arena); packed KiB = constant weights the compiled function keeps packed "
                 "for its GEMMs (em_stats.packed_bytes), besides the weights\n");
}

static void json_mode(FILE *out, const bench_row *r, const char *mode, double med, double best) {
    fprintf(out, "{\"workload\": \"%s\", \"mode\": \"%s\", \"threads\": %d, \"shape\": \"%s\", "
                 "\"median_ms\": %.6g, \"best_ms\": %.6g",
            r->m->name, mode, r->threads, r->m->shape, med, best);
    if (!strcmp(mode, "compiled"))
        fprintf(out, ", \"speedup\": %.4g, \"cold_compile_ms\": %.4g, \"warm_compile_ms\": %.4g, "
                     "\"process_warm_ms\": %.4g, \"kernels\": %d, \"arena_bytes\": %zu, \"peak_bytes\": %zu, \"packed_bytes\": %zu, \"bound\": \"%s\", "
                     "\"bound_ms\": %.6g, \"of_bound\": %.4g, \"vs_torch\": %.4g, \"correct\": %s",
                r->speedup, r->cold_ms, r->warm_ms, r->proc_ms, r->kernels, r->arena, r->comp_peak, r->packed,
                r->bound_kind, r->bound_ms, r->of_bound, r->vs_torch, r->ok ? "true" : "false");
    if (!strcmp(mode, "eager")) fprintf(out, ", \"peak_bytes\": %zu", r->eager_peak);
    fprintf(out, "}\n");
}

void bench_print_json(FILE *out, const bench_row *rows, int n, const bench_limits *lim) {
    struct utsname u;
    uname(&u);
    fprintf(out, "{\"limits\": {\"triad_gbs\": %.4g, \"fma_gflops\": %.4g, \"fma_isa\": \"%s\", "
                 "\"threads\": %d, \"machine\": \"%s %s\"}}\n",
            lim->triad_gbs, lim->fma_gflops, lim->fma_isa, rows[0].threads, u.sysname, u.machine);
    for (int i = 0; i < n; i++) {
        const bench_row *r = &rows[i];
        json_mode(out, r, "eager", r->eager_med, r->eager_best);
        if (r->ok) json_mode(out, r, "compiled", r->comp_med, r->comp_best);
        if (r->torch_eager > 0) json_mode(out, r, "torch_eager", r->torch_eager, r->torch_eager);
        if (r->torchscript > 0) json_mode(out, r, "torchscript", r->torchscript, r->torchscript);
    }
}

/* One bar per workload and comparison, on a log2 axis from 1/8x to 16x. */
int bench_write_svg(const char *path, const bench_row *rows, int n, bool have_torch) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int W = 760, rowh = have_torch ? 44 : 26, top = 50, left = 110, width = 600;
    int H = top + n * rowh + 40;
    double lo = -3, hi = 4; /* log2 range */
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%d' y='20' font-size='14'>ember compiled: speedup over ember eager (orange)%s, "
               "%d thread(s)</text>\n", left, have_torch ? " and over PyTorch eager (blue)" : "",
            rows[0].threads);
    for (int k = (int)lo; k <= (int)hi; k++) {
        double x = left + (k - lo) / (hi - lo) * width;
        fprintf(f, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='%s'/>\n<text x='%.1f' y='%d' "
                   "text-anchor='middle'>%gx</text>\n", x, top - 8, x, H - 30, k == 0 ? "black" : "#ddd", x,
                H - 15, pow(2, k));
    }
    double zero = left + (0 - lo) / (hi - lo) * width;
    for (int i = 0; i < n; i++) {
        const bench_row *r = &rows[i];
        int y = top + i * rowh;
        fprintf(f, "<text x='%d' y='%d' text-anchor='end'>%s</text>\n", left - 8, y + 14, r->m->name);
        double v[2] = {r->ok ? r->speedup : 0, r->ok ? r->vs_torch : 0};
        const char *col[2] = {"#e8710a", "#1a73e8"};
        for (int b = 0; b < (have_torch ? 2 : 1); b++) {
            if (!(v[b] > 0)) continue;
            double l = fmax(lo, fmin(hi, log2(v[b])));
            double x = left + (l - lo) / (hi - lo) * width;
            fprintf(f, "<rect x='%.1f' y='%d' width='%.1f' height='16' fill='%s'/>\n<text x='%.1f' y='%d'"
                       ">%.2fx</text>\n", fmin(x, zero), y + b * 18, fabs(x - zero), col[b], fmax(x, zero) + 4,
                    y + b * 18 + 13, v[b]);
        }
    }
    fprintf(f, "</svg>\n");
    return fclose(f);
}
