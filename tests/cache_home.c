/*
 * cache_home.c — the object cache of a run of ember-tests: unless
 * EMBER_CACHE_DIR is set, a folder of its own, made before the first test and
 * removed after the last.
 *
 * scripts/run-tests.sh (make test) used to make that folder, so ember-tests
 * run by hand compiled into the user's ~/.cache/ember: some 3000 entries a
 * run, and tests that read what an earlier run (or the user's own programs)
 * had stored there. One such test failed on a second run by hand: its stage
 * dump showed a cached unit's asm where a fresh compile keeps none. Tests
 * that need a particular cache (tests/codegen's cache tests) still point
 * EMBER_CACHE_DIR at folders of their own and put this one back. Criterion
 * runs these hooks in the runner, before it starts the tests' processes,
 * which inherit the variable.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <stdio.h>
#include <stdlib.h>

#include "tree.h"

static char home[4096];
static int made;

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
    (void)set;
    if (getenv("EMBER_CACHE_DIR")) return; /* the caller's choice, "off" included */
    const char *tmp = getenv("TMPDIR");
    snprintf(home, sizeof home, "%s/ember-tests-cache.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(home)) {
        perror("ember-tests: a cache folder for the run");
        setenv("EMBER_CACHE_DIR", "off", 1); /* no folder: no cache, rather than the user's */
        return;
    }
    made = 1;
    setenv("EMBER_CACHE_DIR", home, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    if (made) tu_remove_tree(home);
}
