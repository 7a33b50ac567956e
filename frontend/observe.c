/*
 * observe.c — what the compiler tells its users: EMBER_LOG and the IR dumps.
 *
 * Seeing what was captured, and why a function recompiled or fell back, is one
 * of the three things users come for, so every stage can be printed: to stderr
 * as it happens (EMBER_LOG=graph,guards,recompiles,fallbacks,...), into files
 * (EMBER_DUMP_DIR or em_options.dump_dir: one file per stage per graph), or on
 * demand (em_dump). `graph` and `dot` show the graph as captured, `opt` the
 * graph the passes made of it (the one that runs), `kernels` how fusion
 * grouped it (and why nodes were left unfused), `memplan` where each value
 * lives, `compile` where the compile's time went and where the code came
 * from; EMBER_LOG=opt shows each pass's result with a one-line summary.
 * Stages the pipeline does not produce yet say so in one line rather than
 * pretending.
 */
#include "frontend.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct { const char *name; fe_log_cat cat; } cats[] = {
    {"graph", FE_LOG_GRAPH}, {"opt", FE_LOG_OPT}, {"kernels", FE_LOG_KERNELS},
    {"memplan", FE_LOG_MEMPLAN}, {"llvm", FE_LOG_LLVM}, {"asm", FE_LOG_ASM},
    {"guards", FE_LOG_GUARDS}, {"recompiles", FE_LOG_RECOMPILES}, {"fallbacks", FE_LOG_FALLBACKS},
    {"compile", FE_LOG_COMPILE},
};

static unsigned log_mask;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void read_env(void) {
    const char *env = getenv("EMBER_LOG");
    for (const char *p = env; p && *p;) {
        size_t n = strcspn(p, ", ");
        bool known = false;
        for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++) {
            if (strlen(cats[i].name) == n && strncmp(p, cats[i].name, n) == 0)
                log_mask |= cats[i].cat, known = true;
        }
        if (n == 3 && strncmp(p, "all", 3) == 0) log_mask = ~0u, known = true;
        if (!known && n) fprintf(stderr, "ember: EMBER_LOG: unknown category '%.*s'\n", (int)n, p);
        p += n;
        p += strspn(p, ", ");
    }
}

bool fe_log_on(fe_log_cat cat) {
    pthread_once(&log_once, read_env);
    return (log_mask & cat) != 0;
}

void fe_log(fe_log_cat cat, const char *fmt, ...) {
    if (!fe_log_on(cat)) return;
    const char *name = "";
    for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++)
        if (cats[i].cat == cat) name = cats[i].name;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ember[%s] %s\n", name, line);
}

/* The llvm or asm text of exec's generated code, or a line saying why there is none. */
static int code_text(const cg_exec *exec, bool asm_text, FILE *out) {
    const cg_unit *u = exec ? cg_exec_unit(exec) : NULL;
    const char *t = u ? (asm_text ? cg_unit_asm(u) : cg_unit_ir(u)) : NULL;
    if (t) return fputs(t, out) < 0 ? rt_error("em_dump: write failed") : 0;
    if (!u) fprintf(out, "; %s: no kernel of this graph was generated (see the kernels stage for why)\n",
                    asm_text ? "asm" : "llvm");
    else fprintf(out, "; asm: not kept: set EMBER_DUMP_DIR (or em_options.dump_dir) or EMBER_LOG=asm "
                      "before the first call to keep the assembly\n");
    return 0;
}

int fe_dump_stage(const ir_graph *g, const pass_program *prog, const cg_exec *exec, const char *stage,
                  FILE *out) {
    if (!stage) return rt_error("em_dump: stage is NULL");
    if (!g) { /* only validate the stage name */
        static const char *all[] = {"graph", "opt", "kernels", "memplan", "llvm", "asm", "dot", "profile",
                                    "compile"};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (strcmp(stage, all[i]) == 0) return 0;
        return rt_error("em_dump: unknown stage '%s' (graph, opt, kernels, memplan, llvm, asm, dot, profile, compile)",
                        stage);
    }
    if (strcmp(stage, "graph") == 0) return ir_graph_print(g, out);
    if (strcmp(stage, "dot") == 0) return ir_graph_print_dot(g, out);
    if (strcmp(stage, "opt") == 0) return ir_graph_print(prog ? prog->graph : g, out);
    bool k = strcmp(stage, "kernels") == 0, m = strcmp(stage, "memplan") == 0;
    if ((k || m) && !prog) return fprintf(out, "; %s: no program was built for this graph\n", stage), 0;
    if (k) return exec ? cg_exec_print_kernels(exec, out) : pass_fusion_print(prog->fusion, out);
    if (m) return pass_memplan_print(prog->plan, out);
    if (strcmp(stage, "llvm") == 0) return code_text(exec, false, out);
    if (strcmp(stage, "asm") == 0) return code_text(exec, true, out);
    if (strcmp(stage, "profile") == 0) return cg_exec_print_profile(exec, out);
    if (strcmp(stage, "compile") == 0) {
        if (!exec) return fprintf(out, "; compile: no program was built for this graph\n"), 0;
        return cg_exec_print_compile(exec, out);
    }
    return rt_error("em_dump: unknown stage '%s' (graph, opt, kernels, memplan, llvm, asm, dot, profile, compile)",
                    stage);
}

int fe_dump_all(const ir_graph *g, const pass_program *prog, const cg_exec *exec, const char *dir,
                const char *name, int n) {
    static const char *stages[] = {"graph", "opt", "kernels", "memplan", "llvm", "asm", "dot", "compile"};
    if (rt_mkdirs(dir) != 0) {
        fprintf(stderr, "ember: cannot create dump directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        char path[1200];
        bool dot = strcmp(stages[i], "dot") == 0;
        snprintf(path, sizeof path, "%s/%s.%d.%s", dir, name, n, dot ? "dot" : stages[i]);
        if (!dot) strncat(path, ".txt", sizeof path - strlen(path) - 1);
        FILE *f = fopen(path, "w");
        if (!f) {
            fprintf(stderr, "ember: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
        fe_dump_stage(g, prog, exec, stages[i], f);
        fclose(f);
    }
    return 0;
}

void fe_log_graph(const ir_graph *g) {
    if (!fe_log_on(FE_LOG_GRAPH)) return;
    fprintf(stderr, "ember[graph] captured:\n");
    ir_graph_print(g, stderr);
}

void fe_log_pass(void *ctx, const char *pass, const ir_graph *g, const char *summary) {
    (void)ctx;
    if (!fe_log_on(FE_LOG_OPT)) return;
    fprintf(stderr, "ember[opt] %s\n", summary);
    /* fuse and memplan do not change the graph: their results have categories */
    if (strcmp(pass, "fuse") != 0 && strcmp(pass, "memplan") != 0) ir_graph_print(g, stderr);
}

void fe_log_program(const pass_program *prog, const cg_exec *exec) {
    if (fe_log_on(FE_LOG_KERNELS)) {
        fprintf(stderr, "ember[kernels]\n");
        cg_exec_print_kernels(exec, stderr);
    }
    if (fe_log_on(FE_LOG_MEMPLAN)) {
        fprintf(stderr, "ember[memplan]\n");
        pass_memplan_print(prog->plan, stderr);
    }
    if (fe_log_on(FE_LOG_LLVM)) {
        fprintf(stderr, "ember[llvm]\n");
        code_text(exec, false, stderr);
    }
    if (fe_log_on(FE_LOG_ASM)) {
        fprintf(stderr, "ember[asm]\n");
        code_text(exec, true, stderr);
    }
    if (fe_log_on(FE_LOG_COMPILE)) {
        fprintf(stderr, "ember[compile]\n");
        cg_exec_print_compile(exec, stderr);
    }
}
