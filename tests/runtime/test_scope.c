/*
 * test_scope.c — who owns a tensor, and when its storage goes away.
 *
 * Covers refcounts (em_retain/em_release), scopes (em_scope_begin/end): what
 * they adopt (every constructor and op result, views and retained results
 * included), what they release, nesting, em_keep moving a tensor one level out
 * or to the caller, em_scope_end with no scope open, views keeping a storage
 * alive after its base is released, scopes being per thread, and a scope that
 * cannot grow. Ownership is observed through the public memory statistics
 * (live bytes back at their start value, peak, allocation count) and through
 * the refcount fields of runtime.h.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "runtime.h"

static em_memory_stats stats(void) {
    em_memory_stats s;
    em_memory_stats_get(&s);
    return s;
}

static size_t live(void) { return stats().live_bytes; }

static long refs(const em_tensor *t) { return atomic_load(&t->refs); }
static long storage_refs(const em_tensor *t) { return atomic_load(&t->storage->refs); }

#define SH(...) ((int64_t[]){__VA_ARGS__})

/* ---- refcounts --------------------------------------------------------------------- */

Test(scope, without_a_scope_the_caller_owns_the_result) {
    size_t start = live();
    em_tensor *t = em_zeros(EM_F32, 2, SH(4, 8));
    cr_assert(t);
    cr_expect_eq(refs(t), 1);
    cr_expect_eq(live(), start + 128);
    em_release(t);
    cr_expect_eq(live(), start);
}

Test(scope, retain_and_release_count_references) {
    em_tensor *t = em_full(EM_I64, 1, SH(16), 3);
    size_t with = live();
    cr_expect_eq(em_retain(t), t);
    em_retain(t);
    cr_expect_eq(refs(t), 3);
    em_release(t);
    em_release(t);
    cr_expect_eq(refs(t), 1);
    cr_expect_eq(live(), with, "storage freed while a reference was held");
    int64_t out[16];
    cr_expect_eq(em_read(t, out, sizeof out), 0);
    cr_expect_eq(out[15], 3);
    em_release(t);
    cr_expect_eq(live(), with - 128);
}

Test(scope, retain_and_release_accept_null) {
    cr_expect_null(em_retain(NULL));
    em_release(NULL);
    cr_expect_null(em_keep(NULL));
}

Test(scope, memory_stats_track_live_peak_and_allocations) {
    em_memory_stats s0 = stats();
    em_tensor *a = em_zeros(EM_F64, 1, SH(1000));
    em_tensor *b = em_zeros(EM_F32, 1, SH(500));
    em_memory_stats s1 = stats();
    cr_expect_eq(s1.allocations, s0.allocations + 2);
    cr_expect_eq(s1.live_bytes, s0.live_bytes + 8000 + 2000);
    cr_expect_geq(s1.peak_bytes, s1.live_bytes);
    em_release(a);
    em_release(b);
    em_memory_stats s2 = stats();
    cr_expect_eq(s2.live_bytes, s0.live_bytes);
    cr_expect_geq(s2.peak_bytes, s0.live_bytes + 10000, "peak forgot the high-water mark");
    em_memory_reset_peak();
    cr_expect_eq(stats().peak_bytes, s0.live_bytes);
}

/* ---- scopes ------------------------------------------------------------------------ */

Test(scope, releases_what_it_owns_at_its_end) {
    em_memory_stats s0 = stats();
    em_scope_begin();
    for (int i = 0; i < 100; i++) { /* more than one growth of the scope's array */
        em_tensor *t = em_full(EM_F32, 1, SH(64), i);
        cr_assert(t, "%s", em_last_error());
        cr_assert_eq(refs(t), 1, "the scope must hold the op's reference, not add one");
    }
    cr_expect_eq(live(), s0.live_bytes + 100 * 256);
    em_scope_end();
    cr_expect_eq(live(), s0.live_bytes);
    cr_expect_eq(rt_scope_depth(), 0);
}

Test(scope, adopts_the_result_of_every_constructor) {
    size_t start = live();
    em_scope_begin();
    float data[4] = {1, 2, 3, 4};
    cr_expect(em_from_data(EM_F32, 1, SH(4), data));
    cr_expect(em_zeros(EM_I32, 1, SH(4)));
    cr_expect(em_full(EM_BOOL, 1, SH(4), 1));
    cr_expect(em_scalar(EM_F64, 1));
    cr_expect(em_arange(EM_I64, 0, 10, 1));
    cr_expect(em_rand(1, SH(100), 1));
    cr_expect(em_randn(1, SH(100), 1));
    cr_expect_gt(live(), start);
    em_scope_end();
    cr_expect_eq(live(), start, "a constructor's result escaped its scope");
}

Test(scope, adopts_the_result_of_every_kind_of_op) {
    em_tensor *x = em_rand(2, SH(8, 16), 3);
    em_tensor *w = em_rand(2, SH(4, 16), 4);
    em_tensor *idx = em_zeros(EM_I64, 1, SH(3));
    size_t start = live();
    em_scope_begin();
    em_tensor *y = em_add(x, x);
    cr_expect(y && em_exp(y) && em_cast(y, EM_F64) && em_lt(x, y));
    cr_expect(em_where(em_gt(x, y), x, y));
    cr_expect(em_sum(x, 1, 0) && em_argmax(x, 0, 1));
    cr_expect(em_softmax(x, -1) && em_layer_norm(x, NULL, NULL, 1e-5));
    cr_expect(em_matmul(x, em_transpose(w, 0, 1)) && em_linear(x, w, NULL));
    cr_expect(em_embedding(x, idx));
    cr_expect(em_concat((em_tensor *[]){x, y}, 2, 0));
    cr_expect(em_contiguous(em_transpose(x, 0, 1)));
    em_scope_end();
    cr_expect_eq(live(), start, "an op's result escaped its scope");
    cr_expect_eq(refs(x), 1);
    cr_expect_eq(storage_refs(x), 1);
    em_release(x), em_release(w), em_release(idx);
}

Test(scope, adopts_views_and_gives_back_their_hold_on_the_storage) {
    em_tensor *x = em_rand(3, SH(2, 3, 4), 1);
    em_scope_begin();
    em_tensor *v[7] = {
        em_reshape(x, 2, SH(6, 4)), em_permute(x, (int[]){2, 0, 1}), em_transpose(x, 0, 1),
        em_slice(x, 2, 1, 3, 1), em_expand(x, 4, SH(5, 2, 3, 4)), em_unsqueeze(x, 0),
        em_squeeze(em_unsqueeze(x, 1), 1)};
    for (int i = 0; i < 7; i++) cr_assert(v[i], "view %d: %s", i, em_last_error());
    cr_expect_eq(storage_refs(x), 1 + 8, "each view holds the storage once");
    em_scope_end();
    cr_expect_eq(storage_refs(x), 1);
    cr_expect_eq(refs(x), 1);
    em_release(x);
}

Test(scope, gives_back_the_reference_of_a_result_that_is_its_input) {
    em_tensor *x = em_zeros(EM_F32, 2, SH(2, 2));
    em_scope_begin();
    cr_expect_eq(em_contiguous(x), x);
    cr_expect_eq(em_cast(x, EM_F32), x);
    cr_expect_eq(refs(x), 3);
    em_scope_end();
    cr_expect_eq(refs(x), 1);
    em_release(x);
}

Test(scope, keep_moves_a_tensor_to_the_caller_from_the_outermost_scope) {
    size_t start = live();
    em_scope_begin();
    em_tensor *tmp = em_zeros(EM_F32, 1, SH(100));
    em_tensor *y = em_keep(em_add(tmp, tmp));
    em_scope_end();
    cr_assert(y);
    cr_expect_eq(refs(y), 1);
    cr_expect_eq(live(), start + 400, "only the kept tensor may survive");
    em_release(y);
    cr_expect_eq(live(), start);
}

Test(scope, keep_moves_a_tensor_one_level_out_of_nested_scopes) {
    size_t start = live();
    em_scope_begin();
    em_scope_begin();
    em_tensor *t = em_keep(em_full(EM_F32, 1, SH(10), 2));
    em_zeros(EM_F32, 1, SH(10));
    em_scope_end();
    cr_expect_eq(live(), start + 40);
    cr_expect_eq(refs(t), 1);
    cr_expect_eq(em_item(em_sum(t, 0, 0)), 20.0); /* still alive and intact */
    em_scope_end();                                 /* the outer scope releases it */
    cr_expect_eq(live(), start);
}

Test(scope, keep_twice_in_one_scope_still_moves_only_one_level) {
    size_t start = live();
    em_scope_begin();
    em_scope_begin();
    em_tensor *t = em_zeros(EM_F32, 1, SH(10));
    em_keep(t);
    cr_expect_eq(em_keep(t), t); /* no longer in the innermost scope: nothing to do */
    em_scope_end();
    cr_expect_eq(live(), start + 40);
    em_scope_end();
    cr_expect_eq(live(), start);
}

Test(scope, keep_can_carry_a_tensor_out_through_every_level) {
    size_t start = live();
    enum { DEPTH = 20 }; /* more levels than the scope stack starts with */
    for (int i = 0; i < DEPTH; i++) em_scope_begin();
    cr_expect_eq(rt_scope_depth(), DEPTH);
    em_tensor *t = em_full(EM_I32, 1, SH(8), 5);
    for (int i = 0; i < DEPTH; i++) {
        em_keep(t);
        em_zeros(EM_F32, 1, SH(4)); /* an intermediate at each level */
        em_scope_end();
    }
    cr_expect_eq(rt_scope_depth(), 0);
    cr_expect_eq(live(), start + 32);
    cr_expect_eq(refs(t), 1);
    em_release(t);
    cr_expect_eq(live(), start);
}

Test(scope, keep_leaves_a_tensor_of_an_outer_scope_where_it_is) {
    size_t start = live();
    em_scope_begin();
    em_tensor *outer = em_zeros(EM_F32, 1, SH(10));
    em_scope_begin();
    cr_expect_eq(em_keep(outer), outer);
    em_scope_end();
    cr_expect_eq(refs(outer), 1, "the inner scope released a tensor it did not own");
    em_scope_end();
    cr_expect_eq(live(), start);
}

Test(scope, keep_without_a_scope_returns_the_tensor_untouched) {
    em_tensor *t = em_zeros(EM_F32, 1, SH(3));
    cr_expect_eq(em_keep(t), t);
    cr_expect_eq(refs(t), 1);
    em_release(t);
}

Test(scope, a_retained_result_outlives_its_scope) {
    size_t start = live();
    em_scope_begin();
    em_tensor *t = em_retain(em_full(EM_F32, 1, SH(5), 1));
    em_scope_end();
    cr_expect_eq(refs(t), 1);
    cr_expect_eq(live(), start + 20);
    em_release(t);
    cr_expect_eq(live(), start);
}

Test(scope, end_with_no_scope_open_sets_an_error_and_does_nothing) {
    em_tensor *t = em_zeros(EM_F32, 1, SH(3));
    size_t with = live();
    em_clear_error();
    em_scope_end();
    cr_expect(strstr(em_last_error(), "em_scope_end"), "message: '%s'", em_last_error());
    cr_expect_eq(live(), with);
    cr_expect_eq(refs(t), 1);
    em_scope_begin(); /* scopes still work afterwards */
    em_zeros(EM_F32, 1, SH(3));
    em_scope_end();
    cr_expect_eq(live(), with);
    em_scope_end(); /* and again, after the stack was freed */
    cr_expect_eq(rt_scope_depth(), 0);
    em_release(t);
}

/* ---- views and storage lifetime ------------------------------------------------------ */

Test(scope, a_view_keeps_the_storage_alive_after_the_base_is_released) {
    size_t start = live();
    em_tensor *base = em_arange(EM_F32, 0, 12, 1);
    em_tensor *m = em_reshape(base, 2, SH(3, 4));
    em_tensor *v = em_slice(m, 1, 1, 4, 2); /* columns 1 and 3 */
    em_release(base);
    em_release(m);
    cr_expect_eq(live(), start + 48, "the storage died with its base");
    float out[6];
    cr_assert_eq(em_read(v, out, sizeof out), 0);
    const float want[6] = {1, 3, 5, 7, 9, 11};
    for (int i = 0; i < 6; i++) cr_expect_eq(out[i], want[i]);
    em_release(v);
    cr_expect_eq(live(), start);
}

Test(scope, a_view_made_in_a_scope_survives_the_base_with_keep) {
    size_t start = live();
    em_tensor *v;
    em_scope_begin();
    em_tensor *base = em_arange(EM_F64, 0, 4, 1);
    v = em_keep(em_transpose(em_reshape(base, 2, SH(2, 2)), 0, 1));
    em_scope_end();
    cr_expect_eq(live(), start + 32);
    double out[4];
    cr_assert_eq(em_read(v, out, sizeof out), 0);
    cr_expect(out[0] == 0 && out[1] == 2 && out[2] == 1 && out[3] == 3);
    em_release(v);
    cr_expect_eq(live(), start);
}

/* ---- threads and failures ----------------------------------------------------------- */

static void *make_outside_any_scope(void *arg) {
    *(em_tensor **)arg = em_zeros(EM_F32, 1, SH(16)); /* no scope on this thread */
    return NULL;
}

Test(scope, scopes_belong_to_the_thread_that_opened_them) {
    size_t start = live();
    em_tensor *t = NULL;
    em_scope_begin();
    pthread_t th;
    pthread_create(&th, NULL, make_outside_any_scope, &t);
    pthread_join(th, NULL);
    em_scope_end();
    cr_assert(t);
    cr_expect_eq(refs(t), 1, "another thread's scope adopted the tensor");
    cr_expect_eq(live(), start + 64);
    em_release(t);
}

Test(scope, a_result_the_scope_cannot_record_is_released_and_null) {
    size_t start = live();
    em_scope_begin();
    for (int i = 0; i < 16; i++) em_zeros(EM_F32, 1, SH(4)); /* the array is now full */
    /* header, storage record, data, then the scope's bigger array: make that fail */
    rt_alloc_fail_after(4);
    em_tensor *t = em_zeros(EM_F32, 1, SH(4));
    rt_alloc_fail_after(0);
    cr_expect_null(t);
    cr_expect(strstr(em_last_error(), "out of memory"), "%s", em_last_error());
    cr_expect_eq(live(), start + 16 * 16);
    cr_expect(em_zeros(EM_F32, 1, SH(4)), "%s", em_last_error()); /* and the scope still works */
    em_scope_end();
    cr_expect_eq(live(), start);
}
