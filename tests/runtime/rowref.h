/*
 * rowref.h — plain-loop references for the kernels that walk a tensor line by
 * line along one axis (rt_reduce_apply, rt_softmax_apply, rt_layer_norm_apply,
 * rt_rms_norm_apply), shared by test_reduce.c and test_nn.c. Each check runs
 * the kernel into a fresh output and compares every element with loops in
 * double that read the input through its strides.
 */
#ifndef EMBER_TESTS_ROWREF_H
#define EMBER_TESTS_ROWREF_H

#include <stdbool.h>

#include "runtime.h"

/* The reductions' names, indexed by rt_reduce. */
extern const char *const rowref_names[];

/* The dtype reduction r of a dt tensor gives: argmax i64, sum of integers i64. */
em_dtype rowref_out_dtype(rt_reduce r, em_dtype dt);
/* Runs r over axis into a fresh output (axis dropped) and checks every element. */
void rowref_check_reduce(rt_reduce r, const em_tensor *a, int axis);
/* Checks out = (log_)softmax(x) along axis against double loops; rows sum to 1. */
void rowref_check_softmax(const em_tensor *x, int axis, bool lg);
/* Checks a norm of x (w, b may be NULL) against double loops over the last axis. */
void rowref_check_norm(bool rms, const em_tensor *x, const em_tensor *w, const em_tensor *b,
                       double eps);

#endif
