/*
 * test_gather.c — rt_embedding_check, rt_embedding_apply and rt_concat_apply
 * against plain loops.
 *
 * Tables, indices and parts are built as views of random dense tensors
 * (transposes, permutations, stepped slices, stride-0 broadcasts) and of every
 * dtype, and each output element is compared with the element it must copy,
 * read through the source's strides. Failed allocations must name the public
 * op and leave nothing behind.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "runtime.h"
#include "../util.h"

/* ---- helpers ------------------------------------------------------------------------ */

static tu_rng rng = {42};

/* Random floats in [-1, 1), integers in [-100, 100), bools mostly true; from this
 * file's sequence. */
static em_tensor *rand_t(em_dtype dt, int nd, const int64_t *shape) {
    return tu_rt_random(&rng, dt, nd, shape, 1, 100, TU_BOOL_LIKE_INT);
}

/* ---- embedding -------------------------------------------------------------------------- */

static em_tensor *index_t(em_dtype dt, int nd, const int64_t *shape, int64_t rows) {
    em_tensor *t = tu_rt_new(dt, nd, shape);
    for (int64_t i = 0; i < t->numel; i++)
        rt_value_store(dt, rt_tensor_data(t) + i * (int64_t)rt_dtype_size(dt),
                       (double)((i * 7 + 3) % rows));
    return t;
}

/* Checks, applies and compares; releases idx (not table). */
static void embedding_case(const em_tensor *table, em_tensor *idx) {
    int64_t shape[EM_MAX_DIMS];
    memcpy(shape, idx->shape, sizeof shape);
    shape[idx->ndim] = table->shape[1];
    em_tensor *out = tu_rt_new(table->dtype, idx->ndim + 1, shape);
    cr_assert_eq(rt_embedding_check("em_embedding", idx, table->shape[0]), 0, "%s", em_last_error());
    cr_assert_eq(rt_embedding_apply(table, idx, out), 0);
    for (int64_t o = 0; o < out->numel; o++) {
        int64_t ix[EM_MAX_DIMS];
        tu_unflatten(o, out->ndim, out->shape, ix);
        int64_t it[2] = {(int64_t)tu_rt_at(idx, ix), ix[idx->ndim]};
        double got = tu_rt_flat(out, o);
        cr_assert_eq(got, tu_rt_at(table, it), "element %lld", (long long)o);
    }
    em_release(out);
    em_release(idx);
}

Test(embedding, looks_up_rows_with_i64_indices_of_several_shapes) {
    em_tensor *table = rand_t(EM_F32, 2, (int64_t[]){255, 17});
    embedding_case(table, index_t(EM_I64, 1, (int64_t[]){64}, 255));
    embedding_case(table, index_t(EM_I64, 2, (int64_t[]){3, 17}, 255));
    embedding_case(table, index_t(EM_I64, 3, (int64_t[]){2, 1, 3}, 255));
    embedding_case(table, index_t(EM_I64, 0, NULL, 255));
    embedding_case(table, index_t(EM_I64, 1, (int64_t[]){0}, 255));
    em_release(table);
}

Test(embedding, looks_up_rows_with_i32_indices_of_several_shapes) {
    em_tensor *table = rand_t(EM_F32, 2, (int64_t[]){64, 255});
    embedding_case(table, index_t(EM_I32, 1, (int64_t[]){1}, 64));
    embedding_case(table, index_t(EM_I32, 2, (int64_t[]){17, 3}, 64));
    embedding_case(table, index_t(EM_I32, 0, NULL, 64));
    em_release(table);
}

Test(embedding, reads_strided_indices_and_a_transposed_table) {
    em_tensor *tbase = rand_t(EM_F32, 2, (int64_t[]){64, 17});
    em_tensor *table = tu_rt_swapped(tbase, 0, 1); /* [17, 64], laid out as its transpose */
    em_release(tbase);
    em_tensor *idx = index_t(EM_I64, 2, (int64_t[]){5, 6}, 17);
    embedding_case(table, tu_rt_swapped(idx, 0, 1));
    embedding_case(table, tu_rt_view(idx, 1, (int64_t[]){10}, (int64_t[]){3}, 1));
    embedding_case(table, tu_rt_view(idx, 2, (int64_t[]){4, 3}, (int64_t[]){0, 2}, 0));
    em_release(idx);
    em_release(table);
}

Test(embedding, copies_rows_of_every_dtype) {
    em_dtype dts[] = {EM_F64, EM_I32, EM_I64, EM_BOOL};
    for (int i = 0; i < 4; i++) {
        em_tensor *table = rand_t(dts[i], 2, (int64_t[]){17, 3});
        embedding_case(table, index_t(EM_I32, 2, (int64_t[]){4, 5}, 17));
        em_release(table);
    }
}

Test(embedding, spreads_a_large_lookup_across_threads) {
    cr_assert_eq(em_set_threads(2), 0);
    em_tensor *table = rand_t(EM_F32, 2, (int64_t[]){1000, 64});
    embedding_case(table, index_t(EM_I64, 2, (int64_t[]){8, 255}, 1000));
    em_release(table);
}

Test(embedding, rejects_an_out_of_range_index_naming_the_op) {
    em_tensor *idx = index_t(EM_I64, 2, (int64_t[]){3, 4}, 5);
    ((int64_t *)rt_tensor_data(idx))[6] = 5;
    cr_assert_eq(rt_embedding_check("em_embedding", idx, 5), -1);
    cr_assert_str_eq(em_last_error(), "em_embedding: index 5 is out of range for 5 rows");
    ((int64_t *)rt_tensor_data(idx))[6] = -1;
    cr_assert_eq(rt_embedding_check("em_embedding", idx, 5), -1);
    cr_assert_str_eq(em_last_error(), "em_embedding: index -1 is out of range for 5 rows");
    /* The same element seen through a transposed view; and one the view skips. */
    em_tensor *t = tu_rt_swapped(idx, 0, 1);
    cr_assert_eq(rt_embedding_check("em_embedding", t, 5), -1);
    em_tensor *s = tu_rt_view(idx, 1, (int64_t[]){4}, (int64_t[]){1}, 0);
    cr_assert_eq(rt_embedding_check("em_embedding", s, 5), 0);
    em_release(s), em_release(t), em_release(idx);

    em_tensor *i32 = index_t(EM_I32, 0, NULL, 5);
    *(int32_t *)rt_tensor_data(i32) = 2147483647;
    cr_assert_eq(rt_embedding_check("em_embedding", i32, 5), -1);
    cr_assert_str_eq(em_last_error(), "em_embedding: index 2147483647 is out of range for 5 rows");
    cr_assert_eq(rt_embedding_check("em_embedding", i32, 0), -1);
    em_release(i32);
}

typedef struct { em_tensor *table, *idx, *out; } embed_call;
static int call_embedding(void *p) {
    embed_call *c = p;
    return rt_embedding_apply(c->table, c->idx, c->out);
}

Test(embedding, reports_a_failed_index_copy_naming_the_op) {
    em_tensor *table = rand_t(EM_F32, 2, (int64_t[]){17, 5});
    em_tensor *idx = index_t(EM_I32, 2, (int64_t[]){4, 6}, 17);
    embed_call c = {table, tu_rt_swapped(idx, 0, 1), tu_rt_new(EM_F32, 3, (int64_t[]){6, 4, 5})};
    tu_fail_every_allocation("em_embedding", call_embedding, &c);
    em_release(c.out), em_release(c.idx), em_release(idx), em_release(table);
}

/* ---- concat ----------------------------------------------------------------------------- */

/* Concatenates parts (released here) along axis and compares element by element. */
static void concat_case(em_tensor **parts, int n, int axis) {
    int64_t shape[EM_MAX_DIMS];
    memcpy(shape, parts[0]->shape, sizeof shape);
    int nd = parts[0]->ndim, ax = axis < 0 ? axis + nd : axis;
    shape[ax] = 0;
    for (int i = 0; i < n; i++) shape[ax] += parts[i]->shape[ax];
    em_tensor *out = tu_rt_new(parts[0]->dtype, nd, shape);
    cr_assert_eq(rt_concat_apply(parts, n, axis, out), 0, "%s", em_last_error());
    for (int64_t o = 0; o < out->numel; o++) {
        int64_t ix[EM_MAX_DIMS];
        tu_unflatten(o, nd, shape, ix);
        int p = 0;
        while (ix[ax] >= parts[p]->shape[ax]) ix[ax] -= parts[p++]->shape[ax];
        double got = tu_rt_flat(out, o);
        cr_assert_eq(got, tu_rt_at(parts[p], ix), "element %lld (axis %d)", (long long)o, axis);
    }
    em_release(out);
    for (int i = 0; i < n; i++) em_release(parts[i]);
}

/* A [2, 3, 4] part with length len along axis. */
static em_tensor *part(em_dtype dt, int axis, int64_t len) {
    int64_t shape[3] = {2, 3, 4};
    shape[axis] = len;
    return rand_t(dt, 3, shape);
}

Test(concat, joins_3d_tensors_along_every_axis) {
    for (int ax = 0; ax < 3; ax++) {
        em_tensor *p[3] = {part(EM_F32, ax, 1), part(EM_F32, ax, 3), part(EM_F32, ax, 2)};
        concat_case(p, 3, ax);
        em_tensor *q[2] = {part(EM_I64, ax, 2), part(EM_I64, ax, 5)};
        concat_case(q, 2, ax - 3);
        em_tensor *r[1] = {part(EM_BOOL, ax, 4)};
        concat_case(r, 1, ax);
    }
}

Test(concat, skips_zero_size_parts) {
    for (int ax = 0; ax < 3; ax++) {
        em_tensor *p[4] = {part(EM_F32, ax, 0), part(EM_F32, ax, 2), part(EM_F32, ax, 0),
                           part(EM_F32, ax, 3)};
        concat_case(p, 4, ax);
        em_tensor *q[2] = {part(EM_F32, ax, 0), part(EM_F32, ax, 0)};
        concat_case(q, 2, ax);
    }
    /* Every part empty along another axis than the one joined. */
    em_tensor *z[2] = {rand_t(EM_F32, 3, (int64_t[]){2, 0, 4}), rand_t(EM_F32, 3, (int64_t[]){2, 0, 3})};
    concat_case(z, 2, 2);
}

Test(concat, joins_non_contiguous_inputs_along_every_axis) {
    for (int ax = 0; ax < 3; ax++) {
        int64_t sh[3] = {2, 3, 4};
        sh[ax] = 5;
        /* A permuted view: the base holds dims in reverse order. */
        em_tensor *base = rand_t(EM_F64, 3, (int64_t[]){sh[2], sh[1], sh[0]});
        em_tensor *perm = tu_rt_view(base, 3, sh, (int64_t[]){1, sh[0], sh[0] * sh[1]}, 0);
        /* A stepped slice: every second element of the last dim. */
        int64_t wide[3] = {sh[0], sh[1], sh[2] * 2};
        em_tensor *wbase = rand_t(EM_F64, 3, wide);
        em_tensor *step = tu_rt_view(wbase, 3, sh, (int64_t[]){wide[1] * wide[2], wide[2], 2}, 1);
        em_tensor *p[4] = {perm, part(EM_F64, ax, 2), step, part(EM_F64, ax, 0)};
        concat_case(p, 4, ax);
        em_release(base), em_release(wbase);
    }
}

Test(concat, splits_large_copies_across_threads) {
    cr_assert_eq(em_set_threads(2), 0);
    for (int ax = 0; ax < 2; ax++) {
        int64_t s1[2] = {300, 200}, s2[2] = {300, 200};
        s2[ax] = 77;
        em_tensor *p[3] = {rand_t(EM_F32, 2, s1), rand_t(EM_F32, 2, s2), rand_t(EM_F32, 2, s1)};
        concat_case(p, 3, ax);
    }
}

typedef struct { em_tensor **parts, *out; } concat_call;
static int call_concat(void *p) {
    concat_call *c = p;
    return rt_concat_apply(c->parts, 2, 1, c->out);
}

Test(concat, reports_a_failed_allocation_naming_the_op) {
    em_tensor *base = rand_t(EM_F32, 3, (int64_t[]){4, 3, 2}); /* permuted to [2, 3, 4] */
    em_tensor *q[2] = {part(EM_F32, 1, 2),
                       tu_rt_view(base, 3, (int64_t[]){2, 3, 4}, (int64_t[]){1, 2, 6}, 0)};
    concat_call c = {q, tu_rt_new(EM_F32, 3, (int64_t[]){2, 5, 4})};
    tu_fail_every_allocation("em_concat", call_concat, &c);
    em_release(c.out), em_release(q[0]), em_release(q[1]), em_release(base);
}
