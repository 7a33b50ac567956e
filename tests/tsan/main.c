/*
 * main.c — ember under ThreadSanitizer: the concurrency scenarios, run one
 * after the other in one standalone program (make TSAN=1 test), each printing
 * "ok <name>" when it passes:
 *
 *   shared_calls_*  (shared_calls.c) 8 threads call one compiled function 200
 *                   times each (an elementwise chain on [64,256] f32 that runs
 *                   as generated code; a small MLP of linear layers) while 2
 *                   more threads em_compile, call and em_compiled_free other
 *                   functions in a loop;
 *   guard_storm     (guard_storm.c) threads miss the guards of one function at
 *                   once with different shapes and max_recompiles small, so
 *                   recompiles race and the rest runs eagerly; a watcher reads
 *                   the statistics meanwhile;
 *   pool_*          (pool.c) em_set_threads(2): generated kernels big enough to
 *                   be split over the pool ([512,1024]), called from 2 threads
 *                   at once, then while a third thread resizes the pool;
 *   object_cache    (cache.c) EMBER_CACHE_DIR at a fresh folder, several
 *                   threads compiling, calling and freeing the same model at
 *                   once (identical code is one unit, shared by key).
 *
 * Every result is compared with the eager result of the same model, computed
 * beforehand on the main thread: f32 within the contract's tolerance (rtol
 * 1e-4, atol 1e-5: generated row kernels sum in another order), others byte
 * for byte. The program points
 * EMBER_CACHE_DIR at a temporary folder of its own (unless it is set), so
 * nothing is written to ~/.cache/ember. Everything is released at the end.
 */
#include "tsan.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

atomic_int ts_failures;


void ts_run(int n, void *(*fn)(void *), void *args, size_t size) {
    pthread_t t[64];
    CHECK(n <= 64, "%d threads", n);
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * size) == 0, "pthread_create %d", i);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

void ts_pass(const char *name) {
    CHECK(atomic_load(&ts_failures) == 0, "%s: %d failures in worker threads", name,
          atomic_load(&ts_failures));
    printf("ok %s\n", name);
    fflush(stdout);
}

void ts_tmpdir(char *buf, size_t cap, const char *tag) {
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/ember-tsan-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    CHECK(mkdtemp(buf), "mkdtemp %s", buf);
}


int ts_count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    size_t s = strlen(suffix);
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t l = strlen(e->d_name);
        n += l >= s && !strcmp(e->d_name + l - s, suffix);
    }
    closedir(d);
    return n;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    char cache[512] = "";
    if (!getenv("EMBER_CACHE_DIR")) { /* before any thread exists */
        ts_tmpdir(cache, sizeof cache, "cache");
        CHECK(setenv("EMBER_CACHE_DIR", cache, 1) == 0, "setenv");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    em_memory_stats m0;
    em_memory_stats_get(&m0);

    scenario_shared_calls();
    scenario_guard_storm();
    scenario_pool();
    scenario_cache();

    em_memory_stats m1;
    em_memory_stats_get(&m1);
    CHECK(m1.live_bytes == m0.live_bytes, "tensor storage left behind: %zu bytes live, %zu at the start",
          m1.live_bytes, m0.live_bytes);
    if (cache[0]) tu_remove_tree(cache);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("all scenarios passed in %.1f s\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
