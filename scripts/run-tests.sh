#!/usr/bin/env bash
# run-tests.sh BIN [criterion flags...] — runs the Criterion suite and fails on
# what Criterion alone would let pass: a LeakSanitizer report or a UBSan/ASan
# message printed while a test passed (Criterion reports those only as
# "Warning! ... crashed during its setup or teardown" and counts the test as
# passing). The full output stays in BIN.log.
set -uo pipefail
bin=$1
shift
log=$bin.log
# Compiled code goes to a fresh object cache, not the user's ~/.cache/ember:
# ember-tests makes and removes one itself unless EMBER_CACHE_DIR is set
# (tests/cache_home.c).
# Every hit is checked against a fresh compile: a key that misses something
# the code depends on aborts (codegen/key.c).
export EMBER_CACHE_VERIFY=${EMBER_CACHE_VERIFY:-1}
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if grep -qE 'LeakSanitizer|runtime error:|AddressSanitizer|crashed during its setup or teardown' "$log"; then
    echo "run-tests: sanitizer reports found (see $log):" >&2
    grep -nE 'LeakSanitizer|runtime error:|AddressSanitizer|crashed during its setup or teardown' "$log" | head -20 >&2
    exit 1
fi
exit "$status"
