/*
 * pool.c — the thread pool that large eager kernels split across.
 *
 * A fixed set of workers sleeps on a condition variable; rt_parallel_for
 * publishes one job (a range, a grain and a callback), wakes them, works on it
 * itself, and waits until every worker has checked in. Pieces are handed out
 * through an atomic counter, so a slow core does not hold the rest back, but
 * piece boundaries come from n and grain alone: a kernel that reduces within a
 * piece gets the same result for any number of threads.
 *
 * A job from a compiled program (rt_parallel_for_hot) is followed at once by
 * the next step's: after it the workers spin for up to EMBER_SPIN_US (50 us)
 * watching for that job before they sleep, and the caller spins for the last
 * worker before it waits, so a step does not start or end with a futex
 * wake-up (tens of microseconds on this VM, per GEMM step). Eager jobs do not
 * spin: between them OpenBLAS's own threads want the cores (spinning there
 * made eager block 8-20% slower at 2 threads; compiled block got 3-8% faster).
 *
 * One job runs at a time. A second caller (another user thread, or a kernel
 * calling rt_parallel_for from inside a worker) runs its range inline instead of
 * waiting, so the pool can never deadlock. The thread count comes from
 * em_set_threads, else EMBER_THREADS, else the online CPUs; OpenBLAS is told the
 * same count so that GEMMs and our kernels never oversubscribe the cores (they
 * never run at the same time: the pool is idle while a GEMM runs).
 */
#include "runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu;          /* guards everything below but `next` */
    pthread_cond_t wake, done;
    pthread_mutex_t submit;      /* held by the one caller whose job runs */
    pthread_t *workers;
    _Atomic int nthreads;        /* workers + the calling thread (read without the lock) */
    _Atomic uint64_t generation; /* bumped per job (read without the lock while spinning) */
    int sleepers;                /* workers blocked on `wake` */
    bool hot;                    /* the job is a compiled program's step: spin after it */
    uint64_t born;               /* generation when the workers were started */
    _Atomic int busy;            /* workers yet to finish this job */
    bool stop;
    rt_range_fn fn;              /* the job */
    void *ctx;
    int64_t n, grain, npieces;
    atomic_llong next;           /* next piece to take */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER, .submit = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static uint64_t spin_ns = 50000; /* EMBER_SPIN_US */
static _Thread_local bool in_job;

static void run_pieces(void) {
    for (;;) {
        int64_t p = atomic_fetch_add(&pool.next, 1);
        if (p >= pool.npieces) return;
        int64_t b = p * pool.grain, e = b + pool.grain < pool.n ? b + pool.grain : pool.n;
        pool.fn(pool.ctx, b, e);
    }
}

/* Spins up to spin_ns while *word == from (a generation) or, for busy, > 0;
 * true when that ended. */
static bool spin_on(_Atomic uint64_t *gen, uint64_t from) {
    uint64_t t0 = rt_now_ns();
    for (unsigned i = 1;; i++) {
        if (gen ? atomic_load_explicit(gen, memory_order_acquire) != from
                : atomic_load_explicit(&pool.busy, memory_order_acquire) == 0)
            return true;
        __builtin_ia32_pause();
        if (!(i & 63) && rt_now_ns() - t0 > spin_ns) return false;
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    in_job = true;
    pthread_mutex_lock(&pool.mu);
    uint64_t seen = pool.born; /* not pool.generation: a job may already be waiting */
    bool hot = false;
    for (;;) {
        if (hot && pool.generation == seen && !pool.stop) {
            pthread_mutex_unlock(&pool.mu);
            spin_on(&pool.generation, seen);
            pthread_mutex_lock(&pool.mu);
        }
        while (pool.generation == seen && !pool.stop) {
            pool.sleepers++;
            pthread_cond_wait(&pool.wake, &pool.mu);
            pool.sleepers--;
        }
        if (pool.stop) break;
        seen = pool.generation, hot = pool.hot && spin_ns > 0;
        pthread_mutex_unlock(&pool.mu);
        run_pieces();
        pthread_mutex_lock(&pool.mu);
        if (--pool.busy == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static void stop_workers(void) {
    pthread_mutex_lock(&pool.mu);
    pool.stop = true;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < pool.nthreads - 1; i++) pthread_join(pool.workers[i], NULL);
    free(pool.workers);
    pool.workers = NULL;
    pool.stop = false;
    pool.nthreads = 1;
}

/* Called with pool.submit held. Returns the number of threads actually running. */
static int start_workers(int n) {
    pool.nthreads = 1;
    if (n <= 1) return 1;
    pthread_mutex_lock(&pool.mu);
    pool.born = pool.generation;
    pthread_mutex_unlock(&pool.mu);
    pool.workers = calloc((size_t)n - 1, sizeof *pool.workers);
    if (!pool.workers) return 1;
    /* 8 MiB stacks whatever `ulimit -s` says: generated GEMMs keep their packed
     * panels and partial sums on the stack (up to ~400 KiB, codegen/gemm.c). */
    pthread_attr_t attr;
    bool sized = pthread_attr_init(&attr) == 0;
    if (sized) pthread_attr_setstacksize(&attr, (size_t)8 << 20);
    for (int i = 0; i < n - 1; i++) {
        if (pthread_create(&pool.workers[i], sized ? &attr : NULL, worker_main, NULL) != 0) break;
        pool.nthreads++;
    }
    if (sized) pthread_attr_destroy(&attr);
    return pool.nthreads;
}

static int default_threads(void) {
    const char *env = getenv("EMBER_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= 1024) return (int)v;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus >= 1 ? (int)(cpus < 1024 ? cpus : 1024) : 1;
}

static void pool_init(void) {
    const char *env = getenv("EMBER_SPIN_US");
    if (env && *env) {
        char *end;
        double us = strtod(env, &end);
        if (*end == '\0' && us >= 0 && us <= 1e6) spin_ns = (uint64_t)(us * 1000);
    }
    pthread_mutex_lock(&pool.submit);
    rt_blas_set_threads(start_workers(default_threads()));
    pthread_mutex_unlock(&pool.submit);
}

int em_set_threads(int n) {
    if (n < 1 || n > 1024) return rt_error("em_set_threads: %d is not in [1, 1024]", n);
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.submit);
    if (n != pool.nthreads) {
        stop_workers();
        start_workers(n);
    }
    rt_blas_set_threads(pool.nthreads);
    pthread_mutex_unlock(&pool.submit);
    return 0;
}

int rt_threads(void) {
    pthread_once(&pool_once, pool_init);
    return pool.nthreads;
}

int em_get_threads(void) { return rt_threads(); }

static void parallel_for(int64_t n, int64_t grain, rt_range_fn fn, void *ctx, bool hot) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (n <= grain || in_job || rt_threads() == 1 || pthread_mutex_trylock(&pool.submit) != 0) {
        /* Inline, but cut the same pieces as the pool would. */
        for (int64_t b = 0; b < n; b += grain) fn(ctx, b, b + grain < n ? b + grain : n);
        return;
    }
    if (pool.nthreads == 1) { /* resized to one thread while we looked */
        pthread_mutex_unlock(&pool.submit);
        for (int64_t b = 0; b < n; b += grain) fn(ctx, b, b + grain < n ? b + grain : n);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.grain = grain;
    pool.npieces = (n + grain - 1) / grain;
    atomic_store(&pool.next, 0);
    pool.busy = pool.nthreads - 1;
    pool.hot = hot;
    pool.generation++;
    if (pool.sleepers) pthread_cond_broadcast(&pool.wake); /* the others are spinning */
    pthread_mutex_unlock(&pool.mu);

    in_job = true;
    run_pieces();
    in_job = false;

    if (hot && spin_ns > 0) spin_on(NULL, 0);
    pthread_mutex_lock(&pool.mu);
    while (pool.busy > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.submit);
}

void rt_parallel_for(int64_t n, int64_t grain, rt_range_fn fn, void *ctx) { parallel_for(n, grain, fn, ctx, false); }
void rt_parallel_for_hot(int64_t n, int64_t grain, rt_range_fn fn, void *ctx) { parallel_for(n, grain, fn, ctx, true); }
