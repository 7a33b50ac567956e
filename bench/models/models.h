/*
 * models.h — the workloads of ../shared/DESIGN.md, each written once as an
 * ordinary C model function over em_tensor values, the way a user writes one.
 *
 * ember-bench times them eager vs compiled; the tests check them compiled vs
 * eager and measure their peak memory. Weights live in globals (the compiler
 * captures them as constants by reference), made by bm_setup with fixed seeds.
 */
#ifndef EMBER_BENCH_MODELS_H
#define EMBER_BENCH_MODELS_H

#include "ember.h"

typedef struct bm_model {
    const char *name;            /* "mlp" */
    const char *shape;           /* what it computes on, for reports */
    em_tensor *(*fn)(em_tensor *x);
    em_tensor *(*input)(uint64_t seed); /* a new input tensor (the caller releases it) */
    double flops;                /* per call: multiply-adds count 2 */
    double bytes;                /* per call: the least memory traffic (inputs, weights, output) */
} bm_model;

/* Makes every model's weights (idempotent); 0, or -1 with em_last_error(). */
int bm_setup(void);
/* Releases them. */
void bm_teardown(void);

extern const bm_model bm_models[];
extern const int bm_nmodels;
/* The model called name, or NULL. */
const bm_model *bm_find(const char *name);

#endif
