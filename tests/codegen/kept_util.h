/*
 * kept_util.h — the checks of a constant weight kept packed (gemm.c's
 * keep_packed), shared by the AMX tests (B split into bf16 pieces) and the
 * FMA kernel's (B's f32 panels): the same behaviour, different bytes.
 */
#ifndef EMBER_TESTS_KEPT_UTIL_H
#define EMBER_TESTS_KEPT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bytes a product keeps for a constant B of K x N. */
typedef size_t (*ku_bytes)(int64_t K, int64_t N);

/* A product to check: x [M, K] by a constant weight, as a linear's [N, K]
 * (with a bias) or, xw, as x @ w with w [K, N]. */
typedef struct ku_case {
    int64_t M, K, N;
    bool xw;
} ku_case;

/* With EMBER_GEMM=gemm, on 1 and 2 threads, for each case: nothing kept
 * before the first call, exactly bytes(K, N) after calls 2-4, the `kernels`
 * dump says so, and every call gives the bits of the same program compiled
 * with EMBER_PACK_CONSTANTS=0 (whose dump says per_call, and which keeps
 * nothing) and is within tolerance of eager. */
void ku_expect_kept_once(const char *gemm, const ku_case *cases, int n, ku_bytes bytes, const char *per_call);
/* A weight passed as an argument is packed per call (the dump says per_call)
 * and nothing is kept. */
void ku_expect_argument_not_kept(const char *gemm, const char *per_call);
/* Each allocation of the second call (the one that packs the constant)
 * failing in turn: where the kept block was refused the call is right with
 * nothing kept, elsewhere it fails with a message; nothing is left behind
 * and a later call keeps the constant (bytes). */
void ku_expect_kept_after_failed_allocations(const char *gemm, ku_bytes bytes);

#endif
