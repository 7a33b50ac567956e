/*
 * test_closure.c — libffi closures with the C type of a signature.
 *
 * A closure is built from a parsed signature and its code pointer is called
 * as the C function type it stands for. A recording handler checks that it
 * sees every argument exactly: ints and int64_t at their extremes, floats and
 * doubles bit for bit (negative zero, subnormals, NaN payloads, infinities),
 * tensor pointers and out-parameter pointers as passed; and that what it
 * writes to the return slot (or through out-parameters) reaches the caller.
 * Signatures cover two tensors, every scalar type, a void return with
 * out-parameters, no arguments, and a 20-argument mix of floats and integers
 * that overflows the argument registers onto the stack.
 *
 * fe_closure_call is checked the way a compiled function uses it on its eager
 * path: from inside the handler, forwarding the arguments it received to a
 * real C function of the same type, whose received values and result are
 * checked in turn. Also: creation failures (bad fe_sig, NULL handler,
 * injected allocation failure) and 1000 create/call/destroy cycles that must
 * not grow the process (libffi's executable pages are invisible to LSan, so
 * the address-space size is checked too), and two threads calling one closure.
 *
 * Tensor arguments are never dereferenced here, so static em_tensor structs
 * stand in for real tensors.
 */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "frontend.h"

/* ---- a recording handler --------------------------------------------------------------- */

typedef union val {
    int i;
    int64_t l;
    float f;
    double d;
    em_tensor *t;
    em_tensor **o;
} val;

typedef struct recorder {
    fe_sig sig;                /* what the closure was built from */
    int calls;                 /* handler invocations */
    val seen[FE_MAX_ARGS];     /* the arguments of the last call */
    bool ret_was_null;         /* the handler got ret == NULL */
    em_tensor *give;           /* written to the return slot */
    em_tensor *outs[FE_MAX_ARGS]; /* written through out-parameter i when set */
    const fe_closure *forward; /* when set, fe_closure_call(forward, fn, ...) */
    void *fn;
    bool write_nothing;        /* leave the return slot as it was */
} recorder;

static em_tensor fake[8]; /* distinct tensor addresses */

static size_t type_size(fe_type t) {
    switch (t) {
    case FE_INT: return sizeof(int);
    case FE_INT64: return sizeof(int64_t);
    case FE_FLOAT: return sizeof(float);
    case FE_DOUBLE: return sizeof(double);
    case FE_TENSOR: return sizeof(em_tensor *);
    case FE_TENSOR_OUT: return sizeof(em_tensor **);
    case FE_VOID: break;
    }
    return 0;
}

static void record(void *ctx, void *ret, void **args) {
    recorder *r = ctx;
    r->calls++;
    r->ret_was_null = ret == NULL;
    for (int i = 0; i < r->sig.nargs; i++) {
        memset(&r->seen[i], 0, sizeof r->seen[i]);
        memcpy(&r->seen[i], args[i], type_size(r->sig.args[i]));
    }
    if (r->forward) {
        fe_closure_call(r->forward, r->fn, ret, args);
        return;
    }
    for (int i = 0; i < r->sig.nargs; i++)
        if (r->sig.args[i] == FE_TENSOR_OUT && r->outs[i]) *r->seen[i].o = r->outs[i];
    if (ret && !r->write_nothing) *(em_tensor **)ret = r->give;
}

static fe_closure *make(recorder *r, const char *text) {
    memset(r, 0, sizeof *r);
    cr_assert_eq(fe_sig_parse(text, &r->sig), 0, "%s", em_last_error());
    fe_closure *c = fe_closure_create(&r->sig, record, r);
    cr_assert(c, "fe_closure_create(\"%s\"): %s", text, em_last_error());
    cr_assert(fe_closure_code(c), "no code pointer");
    return c;
}

/* got and want hold the same bits for type t. */
static void expect_val(fe_type t, val got, val want, int i) {
    cr_expect(memcmp(&got, &want, type_size(t)) == 0,
              "argument %d (type %d): bits differ (got %#llx, want %#llx)", i + 1, t,
              (unsigned long long)got.l, (unsigned long long)want.l);
}

static void expect_seen(const recorder *r, const val *want) {
    for (int i = 0; i < r->sig.nargs; i++) expect_val(r->sig.args[i], r->seen[i], want[i], i);
}

static float f_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double d_bits(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- calling through closures ---------------------------------------------------------- */

typedef em_tensor *(*fn_tt)(em_tensor *, em_tensor *);
typedef em_tensor *(*fn_scalars)(em_tensor *, int, float, double, int64_t);
typedef void (*fn_outs)(em_tensor *, em_tensor **, em_tensor **);
typedef em_tensor *(*fn_none)(void);

Test(closure, passes_two_tensors_and_returns_the_handlers_result) {
    recorder r;
    fe_closure *c = make(&r, "tensor(tensor, tensor)");
    r.give = &fake[2];
    em_tensor *got = ((fn_tt)fe_closure_code(c))(&fake[0], &fake[1]);
    cr_expect_eq(r.calls, 1);
    cr_expect_eq(got, &fake[2]);
    cr_expect_not(r.ret_was_null);
    expect_seen(&r, (val[]){{.t = &fake[0]}, {.t = &fake[1]}});
    r.give = NULL;
    cr_expect_null(((fn_tt)fe_closure_code(c))(NULL, &fake[3]));
    expect_seen(&r, (val[]){{.t = NULL}, {.t = &fake[3]}});
    fe_closure_destroy(c);
}

Test(closure, passes_every_scalar_type_bit_for_bit) {
    recorder r;
    fe_closure *c = make(&r, "tensor(tensor, int, float, double, int64_t)");
    fn_scalars f = (fn_scalars)fe_closure_code(c);
    struct { int i; float f; double d; int64_t l; } cases[] = {
        {0, 0.0f, 0.0, 0},
        {INT32_MIN, -0.0f, -0.0, INT64_MIN},
        {INT32_MAX, FLT_MAX, DBL_MAX, INT64_MAX},
        {-1, f_bits(0x00000001u), d_bits(0x0000000000000001ull), -1},  /* subnormals */
        {7, f_bits(0x7fc12345u), d_bits(0x7ff8123456789abcull), 1},    /* NaN payloads */
        {-7, -INFINITY, INFINITY, (int64_t)0x8000000100000002ll},
        {123456, 1.1f, 0.1, (int64_t)1 << 40},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        r.give = &fake[k % 8];
        em_tensor *got = f(&fake[(k + 1) % 8], cases[k].i, cases[k].f, cases[k].d, cases[k].l);
        cr_expect_eq(got, &fake[k % 8], "case %zu", k);
        expect_seen(&r, (val[]){{.t = &fake[(k + 1) % 8]}, {.i = cases[k].i}, {.f = cases[k].f},
                                {.d = cases[k].d}, {.l = cases[k].l}});
    }
    cr_expect_eq(r.calls, (int)(sizeof cases / sizeof cases[0]));
    fe_closure_destroy(c);
}

Test(closure, gives_out_parameters_to_the_handler_and_no_return_slot) {
    recorder r;
    fe_closure *c = make(&r, "void(tensor, tensor *, tensor *)");
    r.outs[1] = &fake[5];
    r.outs[2] = &fake[6];
    em_tensor *o1 = NULL, *o2 = NULL;
    ((fn_outs)fe_closure_code(c))(&fake[0], &o1, &o2);
    cr_expect_eq(r.calls, 1);
    cr_expect(r.ret_was_null, "a void closure must give the handler ret == NULL");
    expect_seen(&r, (val[]){{.t = &fake[0]}, {.o = &o1}, {.o = &o2}});
    cr_expect_eq(o1, &fake[5]);
    cr_expect_eq(o2, &fake[6]);
    fe_closure_destroy(c);
}

Test(closure, calls_a_handler_with_no_arguments) {
    recorder r;
    fe_closure *c = make(&r, "tensor(void)");
    r.give = &fake[4];
    cr_expect_eq(((fn_none)fe_closure_code(c))(), &fake[4]);
    cr_expect_eq(r.calls, 1);
    fe_closure_destroy(c);
}

Test(closure, returns_null_when_the_handler_writes_nothing) {
    recorder r;
    fe_closure *c = make(&r, "tensor(tensor, tensor)");
    r.write_nothing = true;
    cr_expect_null(((fn_tt)fe_closure_code(c))(&fake[0], &fake[1]));
    fe_closure_destroy(c);
}

Test(closure, keeps_closures_of_one_signature_apart) {
    recorder a, b;
    fe_closure *ca = make(&a, "tensor(tensor, tensor)");
    fe_closure *cb = make(&b, "tensor(tensor, tensor)");
    cr_expect_neq(fe_closure_code(ca), fe_closure_code(cb));
    a.give = &fake[1];
    b.give = &fake[2];
    cr_expect_eq(((fn_tt)fe_closure_code(cb))(&fake[3], NULL), &fake[2]);
    cr_expect_eq(((fn_tt)fe_closure_code(ca))(NULL, NULL), &fake[1]);
    cr_expect_eq(a.calls, 1);
    cr_expect_eq(b.calls, 1);
    cr_expect_eq(b.seen[0].t, &fake[3]);
    fe_closure_destroy(ca);
    fe_closure_destroy(cb);
}

/* ---- twenty arguments: more floats than XMM registers, more ints than GPRs --------------- */

#define MIX_SIG                                                                              \
    "tensor(float, int, double, int64_t, float, float, double, int, float, double, "         \
    "int64_t, float, int, double, float, double, int64_t, float, double, tensor)"
typedef em_tensor *(*fn_mix)(float, int, double, int64_t, float, float, double, int, float,
                             double, int64_t, float, int, double, float, double, int64_t, float,
                             double, em_tensor *);

/* Distinct, recognisable values for argument i of type t. */
static val mix_value(fe_type t, int i, int round) {
    val v;
    memset(&v, 0, sizeof v);
    switch (t) {
    case FE_FLOAT: v.f = (float)(i + 1) * 1.5f + (float)round * 0.001f; break;
    case FE_DOUBLE: v.d = -(double)(i + 1) * 1e100 - round; break;
    case FE_INT: v.i = (i + 1) * -1000003 + round; break;
    case FE_INT64: v.l = ((int64_t)(i + 1) << 50) + round; break;
    case FE_TENSOR: v.t = &fake[round % 8]; break;
    default: break;
    }
    return v;
}

static em_tensor *call_mix(fn_mix f, const val *v) {
    return f(v[0].f, v[1].i, v[2].d, v[3].l, v[4].f, v[5].f, v[6].d, v[7].i, v[8].f, v[9].d,
             v[10].l, v[11].f, v[12].i, v[13].d, v[14].f, v[15].d, v[16].l, v[17].f, v[18].d,
             v[19].t);
}

static void mix_values(const fe_sig *s, int round, val *out) {
    for (int i = 0; i < s->nargs; i++) out[i] = mix_value(s->args[i], i, round);
}

Test(closure, passes_twenty_mixed_arguments_through_registers_and_stack) {
    recorder r;
    fe_closure *c = make(&r, MIX_SIG);
    cr_assert_eq(r.sig.nargs, 20);
    for (int round = 0; round < 3; round++) {
        val v[20];
        mix_values(&r.sig, round, v);
        r.give = &fake[(round + 3) % 8];
        cr_expect_eq(call_mix((fn_mix)fe_closure_code(c), v), &fake[(round + 3) % 8]);
        expect_seen(&r, v);
    }
    fe_closure_destroy(c);
}

/* ---- fe_closure_call: forwarding to the original function -------------------------------- */

static val real_got[FE_MAX_ARGS];
static int real_calls;

static em_tensor *real_scalars(em_tensor *t, int i, float f, double d, int64_t l) {
    real_calls++;
    real_got[0].t = t;
    real_got[1].i = i;
    real_got[2].f = f;
    real_got[3].d = d;
    real_got[4].l = l;
    return &fake[7];
}

static void real_outs(em_tensor *t, em_tensor **a, em_tensor **b) {
    real_calls++;
    real_got[0].t = t;
    *a = &fake[3];
    *b = t;
}

static em_tensor *real_mix(float a0, int a1, double a2, int64_t a3, float a4, float a5,
                           double a6, int a7, float a8, double a9, int64_t a10, float a11,
                           int a12, double a13, float a14, double a15, int64_t a16, float a17,
                           double a18, em_tensor *a19) {
    real_calls++;
    val *g = real_got;
    g[0].f = a0, g[1].i = a1, g[2].d = a2, g[3].l = a3, g[4].f = a4, g[5].f = a5, g[6].d = a6;
    g[7].i = a7, g[8].f = a8, g[9].d = a9, g[10].l = a10, g[11].f = a11, g[12].i = a12;
    g[13].d = a13, g[14].f = a14, g[15].d = a15, g[16].l = a16, g[17].f = a17, g[18].d = a18;
    g[19].t = a19;
    return a19;
}

static void reset_real(void) {
    memset(real_got, 0, sizeof real_got);
    real_calls = 0;
}

static void expect_real_got(const fe_sig *s, const val *want) {
    for (int i = 0; i < s->nargs; i++) expect_val(s->args[i], real_got[i], want[i], i);
}

Test(closure, forwards_scalars_to_the_original_function_and_returns_its_result) {
    recorder r;
    fe_closure *c = make(&r, "tensor(tensor, int, float, double, int64_t)");
    r.forward = c;
    r.fn = (void *)real_scalars;
    reset_real();
    float nan_f = f_bits(0xffc00001u);
    double sub_d = d_bits(0x000fffffffffffffull);
    em_tensor *got = ((fn_scalars)fe_closure_code(c))(&fake[1], INT32_MIN, nan_f, sub_d,
                                                      INT64_MAX);
    cr_expect_eq(real_calls, 1);
    cr_expect_eq(got, &fake[7], "the original function's result must come back");
    val want[] = {{.t = &fake[1]}, {.i = INT32_MIN}, {.f = nan_f}, {.d = sub_d}, {.l = INT64_MAX}};
    expect_real_got(&r.sig, want);
    expect_seen(&r, want);
    fe_closure_destroy(c);
}

Test(closure, forwards_out_parameters_to_the_original_function) {
    recorder r;
    fe_closure *c = make(&r, "void(tensor, tensor *, tensor *)");
    r.forward = c;
    r.fn = (void *)real_outs;
    reset_real();
    em_tensor *a = NULL, *b = NULL;
    ((fn_outs)fe_closure_code(c))(&fake[2], &a, &b);
    cr_expect_eq(real_calls, 1);
    cr_expect_eq(real_got[0].t, &fake[2]);
    cr_expect_eq(a, &fake[3]);
    cr_expect_eq(b, &fake[2]);
    fe_closure_destroy(c);
}

Test(closure, forwards_twenty_mixed_arguments_to_the_original_function) {
    recorder r;
    fe_closure *c = make(&r, MIX_SIG);
    r.forward = c;
    r.fn = (void *)real_mix;
    reset_real();
    val v[20];
    mix_values(&r.sig, 5, v);
    cr_expect_eq(call_mix((fn_mix)fe_closure_code(c), v), v[19].t);
    cr_expect_eq(real_calls, 1);
    expect_real_got(&r.sig, v);
    fe_closure_destroy(c);
}

Test(closure, calls_the_original_function_with_arguments_built_by_hand) {
    recorder r;
    fe_closure *c = make(&r, "tensor(tensor, int, float, double, int64_t)");
    reset_real();
    em_tensor *t = &fake[4];
    int i = -42;
    float f = 3.25f;
    double d = -0.0;
    int64_t l = INT64_MIN;
    void *args[] = {&t, &i, &f, &d, &l};
    em_tensor *ret = NULL;
    fe_closure_call(c, (void *)real_scalars, &ret, args);
    cr_expect_eq(ret, &fake[7]);
    expect_real_got(&r.sig, (val[]){{.t = t}, {.i = i}, {.f = f}, {.d = d}, {.l = l}});
    fe_closure_call(c, (void *)real_scalars, NULL, args); /* result not wanted */
    cr_expect_eq(real_calls, 2);
    cr_expect_eq(r.calls, 0, "fe_closure_call must not go through the handler");
    fe_closure_destroy(c);
}

/* ---- failures and lifetime ------------------------------------------------------------ */

static void nop_handler(void *ctx, void *ret, void **args) {
    (void)ctx, (void)ret, (void)args;
}

static void expect_create_fails(const fe_sig *s, fe_handler h, const char *want) {
    em_clear_error();
    cr_expect_null(fe_closure_create(s, h, NULL));
    cr_expect_str_eq(em_last_error(), want);
}

Test(closure, rejects_a_null_signature_or_handler) {
    fe_sig s;
    cr_assert_eq(fe_sig_parse("tensor(tensor)", &s), 0);
    expect_create_fails(NULL, nop_handler, "em_compile: closure: the signature is NULL");
    expect_create_fails(&s, NULL, "em_compile: closure: the handler is NULL");
}

Test(closure, rejects_a_malformed_signature_struct) {
    fe_sig s;
    cr_assert_eq(fe_sig_parse("tensor(tensor, int)", &s), 0);
    fe_sig bad = s;
    bad.ret = FE_INT;
    expect_create_fails(&bad, nop_handler,
                        "em_compile: closure: return type 3 is not tensor or void");
    bad = s;
    bad.nargs = FE_MAX_ARGS + 1;
    expect_create_fails(&bad, nop_handler, "em_compile: closure: 33 arguments (0 to 32 allowed)");
    bad.nargs = -1;
    expect_create_fails(&bad, nop_handler, "em_compile: closure: -1 arguments (0 to 32 allowed)");
    bad = s;
    bad.args[1] = FE_VOID;
    expect_create_fails(&bad, nop_handler,
                        "em_compile: closure: argument 2 has invalid type 0");
    bad.args[1] = (fe_type)99;
    expect_create_fails(&bad, nop_handler,
                        "em_compile: closure: argument 2 has invalid type 99");
}

Test(closure, reports_an_allocation_failure_and_recovers) {
    fe_sig s;
    cr_assert_eq(fe_sig_parse("tensor(tensor)", &s), 0);
    rt_alloc_fail_after(1);
    expect_create_fails(&s, nop_handler, "em_compile: out of memory");
    rt_alloc_fail_after(0);
    fe_closure *c = fe_closure_create(&s, nop_handler, NULL);
    cr_expect(c, "%s", em_last_error());
    fe_closure_destroy(c);
}

Test(closure, destroy_and_code_accept_null) {
    fe_closure_destroy(NULL);
    cr_expect_null(fe_closure_code(NULL));
}

/* Pages of address space this process has mapped. */
static long mapped_pages(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert(f, "cannot open /proc/self/statm");
    long pages = 0;
    cr_assert_eq(fscanf(f, "%ld", &pages), 1);
    fclose(f);
    return pages;
}

static void cycle(const char *text, int round) {
    recorder r;
    fe_closure *c = make(&r, text);
    r.give = &fake[round % 8];
    cr_assert_eq(((fn_tt)fe_closure_code(c))(&fake[0], &fake[1]), &fake[round % 8]);
    fe_closure_destroy(c);
}

Test(closure, can_be_created_and_destroyed_a_thousand_times_without_growing) {
    for (int i = 0; i < 20; i++) cycle("tensor(tensor, tensor)", i); /* warm up */
    long before = mapped_pages();
    for (int i = 0; i < 1000; i++) cycle("tensor(tensor, tensor)", i);
    long grown = mapped_pages() - before;
    /* 1000 leaked libffi closures map about 15 more pages. */
    cr_expect_lt(grown, 4, "the address space grew by %ld pages over 1000 closures", grown);
}

/* ---- threads -------------------------------------------------------------------------- */

typedef struct counting {
    atomic_long calls;  /* handler invocations */
    atomic_long wrong;  /* arguments that did not arrive as sent */
} counting;

static void count_handler(void *ctx, void *ret, void **args) {
    counting *k = ctx;
    atomic_fetch_add(&k->calls, 1);
    int n = *(int *)args[1];
    if (*(em_tensor **)args[0] != &fake[n % 8]) atomic_fetch_add(&k->wrong, 1);
    *(em_tensor **)ret = &fake[(n + 1) % 8];
}

typedef em_tensor *(*fn_ti)(em_tensor *, int);

static void *hammer(void *code) {
    long bad = 0;
    for (int n = 0; n < 20000; n++)
        if (((fn_ti)code)(&fake[n % 8], n) != &fake[(n + 1) % 8]) bad++;
    return (void *)bad;
}

Test(closure, serves_two_threads_calling_at_once) {
    counting k = {0};
    fe_sig s;
    cr_assert_eq(fe_sig_parse("tensor(tensor, int)", &s), 0);
    fe_closure *c = fe_closure_create(&s, count_handler, &k);
    cr_assert(c, "%s", em_last_error());
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, fe_closure_code(c)), 0);
    for (int i = 0; i < 2; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        cr_expect_eq((long)bad, 0, "thread %d got %ld wrong results", i, (long)bad);
    }
    cr_expect_eq(atomic_load(&k.calls), 40000);
    cr_expect_eq(atomic_load(&k.wrong), 0);
    fe_closure_destroy(c);
}
