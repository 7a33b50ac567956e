/*
 * pool.c — the thread pool that large eager kernels split across.
 *
 * A fixed set of workers sleeps on a condition variable; rt_parallel_for
 * publishes one job (a range, a grain and a callback), wakes them, works on it
 * itself, and returns once every piece has run. Pieces are handed out through
 * one atomic ticket, so a slow core does not hold the rest back, but piece
 * boundaries come from n and grain alone: a kernel that reduces within a piece
 * gets the same result for any number of threads.
 *
 * The caller waits for the pieces, not for the workers. On this VM a worker
 * that has gone to sleep takes from tens of microseconds to over a millisecond
 * to run again (its virtual CPU is halted and must be rescheduled by the
 * host); had the caller waited for every worker to check in, as it once did, a
 * job would last at least that long even when the caller ran every piece
 * itself, and two threads were often slower than one (an eager add of 2^20
 * floats: median 532 us and 1.75 ms at the 90th percentile at two threads,
 * against 586 us at one). Now a late worker takes what is left, or nothing.
 * The ticket holds the job's generation beside the next piece, and a worker
 * claims a piece by compare-and-swap on both, with the job copied under the
 * lock when it saw the generation: it can never take a piece of a job other
 * than the one it copied, and the caller's context lives until every piece
 * claimed has finished.
 *
 * A job from a compiled program (rt_parallel_for_hot) is followed at once by
 * the next step's: after it the workers spin for up to EMBER_SPIN_US (1 ms)
 * watching for that job before they sleep, and the caller spins for the last
 * piece before it waits, so a step does not start or end with a wake-up,
 * unless there are more threads than CPUs (may_spin). Eager jobs do not
 * spin, and any BLAS call (rt_pool_quiet, from blas.c) sends spinning workers
 * to sleep at once: OpenBLAS's own threads want the cores then (spinning there
 * made eager block 8-20% slower at 2 threads, and a compiled program with an
 * OpenBLAS step half as fast).
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

/* One job as a worker copied it (under the lock, with its generation). */
typedef struct job {
    rt_range_fn fn;
    void *ctx;
    int64_t n, grain, npieces;
    uint32_t gen;                /* the low 32 bits of its generation, as in the ticket */
} job;

static struct {
    pthread_mutex_t mu;          /* guards everything below but the atomics */
    pthread_cond_t wake, done;
    pthread_mutex_t submit;      /* held by the one caller whose job runs */
    pthread_t *workers;
    _Atomic int nthreads;        /* workers + the calling thread (read without the lock) */
    _Atomic uint64_t generation; /* bumped per job (read without the lock while spinning) */
    _Atomic uint64_t quiet;      /* bumped by rt_pool_quiet and stop: spinning ends */
    int sleepers;                /* workers blocked on `wake` */
    bool hot;                    /* the job is a compiled program's step: spin after it */
    uint64_t born;               /* generation when the workers were started */
    bool stop;
    bool held;                   /* rt_pool_hold_workers: workers take no piece */
    pthread_cond_t unhold;
    job cur;                     /* the job */
    _Atomic uint64_t ticket;     /* cur.gen << 32 | the next piece to take */
    _Atomic int64_t finished;    /* pieces of cur that have run */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER, .submit = PTHREAD_MUTEX_INITIALIZER,
          .unhold = PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_init(void);
static uint64_t spin_ns = 1000000; /* EMBER_SPIN_US */
static long online_cpus = 1;       /* read when the pool starts */

/* Spinning pays only while every thread has a core: with more threads than
 * CPUs a spinner takes the core that a thread with work is waiting for (4
 * threads on this 2-CPU VM: compiled block with an OpenBLAS step ran 0.46-0.52x
 * eager with spinning, 1.05-1.08x without). */
static bool may_spin(void) { return spin_ns > 0 && pool.nthreads <= online_cpus; }
static _Thread_local bool in_job;

/* Takes the next piece of j, if j is still the pool's job and has one left. */
static bool claim(const job *j, int64_t *piece) {
    uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(t >> 32) != j->gen || (int64_t)(uint32_t)t >= j->npieces) return false;
        if (atomic_compare_exchange_weak_explicit(&pool.ticket, &t, t + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *piece = (int64_t)(uint32_t)t;
            return true;
        }
    }
}

/* Runs pieces of j until none is left; the one that finishes its last piece
 * wakes the caller if it sleeps. */
static void run_pieces(const job *j, bool worker) {
    int64_t p;
    while (claim(j, &p)) {
        int64_t b = p * j->grain, e = b + j->grain < j->n ? b + j->grain : j->n;
        j->fn(j->ctx, b, e);
        if (atomic_fetch_add_explicit(&pool.finished, 1, memory_order_acq_rel) + 1 == j->npieces && worker) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
}

/* Spins up to spin_ns while the generation is `from` (gen) or, for the caller
 * (gen NULL), while pieces of a job of npieces are unfinished; true when that
 * ended. A worker's spin also ends when rt_pool_quiet or stop is called. */
static bool spin_on(_Atomic uint64_t *gen, uint64_t from, int64_t npieces) {
    uint64_t t0 = rt_now_ns(), q = atomic_load_explicit(&pool.quiet, memory_order_acquire);
    for (unsigned i = 1;; i++) {
        if (gen ? atomic_load_explicit(gen, memory_order_acquire) != from
                : atomic_load_explicit(&pool.finished, memory_order_acquire) == npieces)
            return true;
        if (gen && atomic_load_explicit(&pool.quiet, memory_order_acquire) != q) return false;
        __builtin_ia32_pause();
        if (!(i & 63) && rt_now_ns() - t0 > spin_ns) return false;
    }
}

void rt_pool_quiet(void) { atomic_fetch_add_explicit(&pool.quiet, 1, memory_order_release); }

void rt_pool_hold_workers(bool on) {
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.mu);
    pool.held = on;
    if (!on) pthread_cond_broadcast(&pool.unhold);
    pthread_mutex_unlock(&pool.mu);
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
            spin_on(&pool.generation, seen, 0);
            pthread_mutex_lock(&pool.mu);
        }
        while (pool.generation == seen && !pool.stop) {
            pool.sleepers++;
            pthread_cond_wait(&pool.wake, &pool.mu);
            pool.sleepers--;
        }
        while (pool.held && !pool.stop) pthread_cond_wait(&pool.unhold, &pool.mu);
        if (pool.stop) break;
        seen = pool.generation, hot = pool.hot && may_spin();
        job j = pool.cur; /* the job of generation `seen`, or one already done */
        pthread_mutex_unlock(&pool.mu);
        run_pieces(&j, true);
        pthread_mutex_lock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static void stop_workers(void) {
    pthread_mutex_lock(&pool.mu);
    pool.stop = true;
    rt_pool_quiet();
    pthread_cond_broadcast(&pool.wake);
    pthread_cond_broadcast(&pool.unhold);
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
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    online_cpus = cpus >= 1 ? cpus : 1;
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
    if (grain < n / UINT32_MAX + 1) grain = n / UINT32_MAX + 1; /* pieces fit the ticket */
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
    uint64_t gen = pool.generation + 1;
    job j = {.fn = fn, .ctx = ctx, .n = n, .grain = grain, .npieces = (n + grain - 1) / grain,
             .gen = (uint32_t)gen};
    pool.cur = j;
    atomic_store(&pool.finished, 0);
    atomic_store(&pool.ticket, (uint64_t)j.gen << 32);
    pool.hot = hot;
    pool.generation = gen;
    if (pool.sleepers) pthread_cond_broadcast(&pool.wake); /* the others are spinning */
    pthread_mutex_unlock(&pool.mu);

    in_job = true;
    run_pieces(&j, false);
    in_job = false;

    /* every piece is claimed: wait for those still running elsewhere */
    if (hot && may_spin()) spin_on(NULL, 0, j.npieces);
    if (atomic_load_explicit(&pool.finished, memory_order_acquire) < j.npieces) {
        pthread_mutex_lock(&pool.mu);
        while (atomic_load_explicit(&pool.finished, memory_order_acquire) < j.npieces)
            pthread_cond_wait(&pool.done, &pool.mu);
        pthread_mutex_unlock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.submit);
}

void rt_parallel_for(int64_t n, int64_t grain, rt_range_fn fn, void *ctx) { parallel_for(n, grain, fn, ctx, false); }
void rt_parallel_for_hot(int64_t n, int64_t grain, rt_range_fn fn, void *ctx) { parallel_for(n, grain, fn, ctx, true); }
