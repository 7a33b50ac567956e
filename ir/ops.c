/*
 * ops.c — the op table, expanded from ops.def.
 *
 * Each entry gathers what the layers above ask of an op: its name for messages
 * and dumps, its arity and kind for the tracer and the passes, its shape rule,
 * and the runtime kernel id its eager adapter calls. Nothing here is written by
 * hand per op: add a line to ops.def and this table follows.
 */
#include "ir.h"

const ir_op_info ir_ops[IR_OP_COUNT] = {
#define OP(E, nm, ar, opt, kd, api, rule, eager, kern) \
    [IR_OP_##E] = {#nm, ar, opt, IR_KIND_##kd, ir_shape_##rule, ir_eager_##eager, kern},
#include "ops.def"
#undef OP
};
