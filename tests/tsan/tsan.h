/*
 * tsan.h — what the ThreadSanitizer scenarios (tests/tsan/) share: a CHECK
 * that stops the program, a failure counter for worker threads, tensor
 * comparison, and a few threading helpers.
 *
 * No Criterion here: its forking runner does not work under ThreadSanitizer.
 * The main thread checks with CHECK (prints file:line and exits 1); worker
 * threads never exit the process, they report with WFAIL (prints file:line,
 * counts) and the main thread checks the count after joining them.
 */
#ifndef EMBER_TSAN_H
#define EMBER_TSAN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../tree.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ember.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " (em_last_error: %s)\n", em_last_error());                        \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Failures seen by worker threads (the main thread CHECKs it is 0 after joining). */
extern atomic_int ts_failures;

#define WFAIL(...)                                                                             \
    do {                                                                                       \
        if (atomic_fetch_add(&ts_failures, 1) < 20) { /* the first few are enough */           \
            flockfile(stderr);                                                                 \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " (em_last_error: %s)\n", em_last_error());                        \
            funlockfile(stderr);                                                               \
        }                                                                                      \
    } while (0)

/* Results are compared with tc_matches_eager (../contract.h): the contract's
 * tolerance, callable from any thread. */
#include "../contract.h"

/* Starts n threads running fn(arg + i * size) and joins them all. */
void ts_run(int n, void *(*fn)(void *), void *args, size_t size);

/* Checks, on the main thread, that no worker failed; prints "ok <name>". */
void ts_pass(const char *name);

/* A fresh folder from mkdtemp (path into buf); tu_remove_tree (tests/tree.h)
 * removes it with its files. */
void ts_tmpdir(char *buf, size_t cap, const char *tag);
/* Entries of dir whose names end in suffix ("" counts all). */
int ts_count_files(const char *dir, const char *suffix);

/* The scenarios (one file each). */
void scenario_shared_calls(void);
void scenario_guard_storm(void);
void scenario_pool(void);
void scenario_cache(void);

#endif
