/*
 * test_tabfn.c — the AVX-512 GELU, sigmoid and tanh GELU as piecewise
 * polynomials (runtime/tabfn.c's tables, rt_tabfn in runtime.h), through the
 * avx512 unary loops called directly, against references in double.
 *
 * Covered: the relative error over a dense grid of each fast range (every
 * 17th f32 of [-hi, hi] for the GELUs, [lo, hi) for the sigmoid, away from
 * 0); the lower boundary, where lanes go over to the exp forms; lanes at and
 * past the upper end, +inf and NaN; that a lane's result does not depend on
 * its neighbours (a far-tail lane in the same vector); and the tables
 * themselves, whose pieces must meet at their ends. On a CPU without AVX-512
 * the loop tests skip: the tables are not used there. And the GELU's far
 * negative tail (rt_tailfn), on every ISA the CPU runs: its relative error
 * over every f32 of [-end, -hi), -0 past -end, no subnormal result anywhere,
 * and its fit at both ends.
 */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static double r_gelu(double x) { return x / 2 * erfc(-x / sqrt(2.0)); }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_gelu_tanh(double x) { return x / (1 + exp(-2 * sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

typedef struct tab_case {
    const char *name;
    const rt_tabfn *tab;
    rt_unary kernel;
    double (*ref)(double);
} tab_case;

static const tab_case cases[] = {
    {"gelu", &rt_tab_gelu, RT_UNARY_GELU, r_gelu},
    {"sigmoid", &rt_tab_sigmoid, RT_UNARY_SIGMOID, r_sigmoid},
    {"gelu_tanh", &rt_tab_gelu_tanh, RT_UNARY_GELU_TANH, r_gelu_tanh},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* The fast range: [-hi, hi] for the GELUs (a table of |x|), [lo, hi) for the sigmoid. */
static float low_end(const rt_tabfn *t) { return t->lo == 0 ? -t->hi : t->lo; }
static float high_end(const rt_tabfn *t) { return t->lo == 0 ? t->hi : nextafterf(t->hi, 0); }

static const rt_simd *avx512_or_skip(void) {
    const rt_simd *t = rt_simd_for("avx512");
    if (!t) cr_skip_test("no AVX-512 on this CPU: the tables are not used");
    return t;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static double rel_err(float got, double want) { return fabs(got - want) / fabs(want); }

Test(tabfn, each_fast_range_is_within_6e_7_relative_of_its_function) {
    const rt_simd *simd = avx512_or_skip();
    for (int c = 0; c < NCASES; c++) {
        float lo = low_end(cases[c].tab), hi = high_end(cases[c].tab);
        size_t cap = 20u << 20, n = 0;
        float *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
        cr_assert(x && y);
        /* every 17th f32 of the range (12-14 million), skipping |x| < 1e-3 (x/2 or 1/2 there) */
        for (float v = lo; v <= hi && n < cap;) {
            if (v > -1e-3f && v < 1e-3f) v = 1e-3f;
            x[n++] = v;
            uint32_t u;
            memcpy(&u, &v, sizeof u);
            u = v < 0 ? u - 17 : u + 17; /* 17 f32 toward +inf */
            memcpy(&v, &u, sizeof v);
        }
        cr_assert_lt(n, cap, "%s: the grid did not fit", cases[c].name);
        simd->unary[cases[c].kernel]((int64_t)n, x, y);
        double worst = 0;
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            double e = rel_err(y[i], cases[c].ref(x[i]));
            if (e > worst) worst = e, at = i;
        }
        cr_expect_lt(worst, 6e-7, "%s: relative error %.3g at x = %.9g (%zu points)", cases[c].name, worst, x[at], n);
        free(x), free(y);
    }
}

/* Fast lanes within 6e-7; below them the exp forms within 5e-6 (the sigmoid's
 * and the tanh GELU's, whose exponents' f32 rounding passes into the result;
 * the GELU's rt_tailfn is within 5e-7, tested below). */
Test(tabfn, the_low_end_of_the_fast_range_joins_the_exp_form) {
    const rt_simd *simd = avx512_or_skip();
    for (int c = 0; c < NCASES; c++) {
        float x[64], y[64];
        /* 32 f32 either side of the low end: the first exp-form lanes and the last fast ones */
        x[32] = low_end(cases[c].tab);
        for (int i = 33; i < 64; i++) x[i] = nextafterf(x[i - 1], INFINITY);
        for (int i = 31; i >= 0; i--) x[i] = nextafterf(x[i + 1], -INFINITY);
        simd->unary[cases[c].kernel](64, x, y);
        for (int i = 0; i < 64; i++)
            cr_expect_lt(rel_err(y[i], cases[c].ref(x[i])), i < 32 ? 5e-6 : 6e-7, "%s(%.9g) = %.9g, want %.9g",
                         cases[c].name, x[i], y[i], cases[c].ref(x[i]));
    }
}

/* Past the high end the GELUs round to x and the sigmoid to 1, as the functions do. */
Test(tabfn, past_the_high_end_gelu_is_x_and_sigmoid_is_1_and_nan_stays_nan) {
    const rt_simd *simd = avx512_or_skip();
    for (int c = 0; c < NCASES; c++) {
        float hi = high_end(cases[c].tab);
        float x[5] = {nextafterf(hi, INFINITY), nextafterf(nextafterf(hi, INFINITY), INFINITY), 2 * hi, 1e30f,
                      INFINITY}, y[5];
        simd->unary[cases[c].kernel](5, x, y);
        for (int i = 0; i < 5; i++) {
            float want = cases[c].kernel == RT_UNARY_SIGMOID ? 1.0f : x[i];
            cr_expect_eq(bits(y[i]), bits(want), "%s(%.9g) = %.9g, want %.9g", cases[c].name, x[i], y[i], want);
        }
        float at = hi, got;
        simd->unary[cases[c].kernel](1, &at, &got);
        cr_expect_lt(rel_err(got, cases[c].ref(at)), 6e-7, "%s(%.9g) = %.9g at the high end", cases[c].name, at, got);
        float nan_in[3] = {NAN, -NAN, 0.5f}, nan_out[3];
        simd->unary[cases[c].kernel](3, nan_in, nan_out);
        cr_expect(isnan(nan_out[0]) && isnan(nan_out[1]), "%s(NaN) = %g, %g", cases[c].name, nan_out[0], nan_out[1]);
    }
}

/* The exp form replaces only the far lanes: each of 48 values, mixed with far
 * negative ones in the same vectors, gets the bits it gets alone. */
Test(tabfn, a_lane_s_result_does_not_depend_on_its_neighbours) {
    const rt_simd *simd = avx512_or_skip();
    for (int c = 0; c < NCASES; c++) {
        float lo = low_end(cases[c].tab), hi = high_end(cases[c].tab), x[48], y[48];
        for (int i = 0; i < 48; i++) {
            float fast = lo + (float)i * ((hi - lo) / 48);
            float far[4] = {lo - 0.5f, -30.0f, -1e30f, -INFINITY};
            x[i] = i % 5 == 0 ? far[(i / 5) % 4] : fast;
        }
        simd->unary[cases[c].kernel](48, x, y);
        for (int i = 0; i < 48; i++) {
            float alone;
            simd->unary[cases[c].kernel](1, &x[i], &alone);
            cr_expect(bits(y[i]) == bits(alone) || (isnan(y[i]) && isnan(alone)),
                      "%s(%.9g): %.9g among its neighbours, %.9g alone", cases[c].name, x[i], y[i], alone);
        }
    }
}

/* ---- the GELU's far negative tail (rt_tailfn), on every ISA -------------------------------------- */

/* The ISAs whose loops the tail tests call; those this CPU lacks are skipped. */
static const char *const isa_names[] = {"avx512", "avx2", "sse2"};

/* Every f32 of [-end, -hi) for the ISAs with FMA; SSE2, which has none, cannot
 * split v^2 (its l is 0), so its error is that of the rounded exponent. */
Test(tailfn, the_gelu_below_minus_hi_is_within_5e_7_relative_down_to_FLT_MIN_on_every_isa) {
    const rt_tailfn *t = &rt_tail_gelu;
    size_t cap = 12u << 20, n = 0;
    float *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    cr_assert(x && y);
    for (float v = -t->end; v < -rt_tab_gelu.hi && n < cap; v = nextafterf(v, 0)) x[n++] = v;
    cr_assert(n > 1000000 && n < cap, "%zu points", n);
    for (int s = 0; s < 3; s++) {
        const rt_simd *simd = rt_simd_for(isa_names[s]);
        if (!simd) continue;
        simd->unary[RT_UNARY_GELU]((int64_t)n, x, y);
        double worst = 0, tol = s == 2 ? 1e-5 : 5e-7;
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            double e = rel_err(y[i], r_gelu(x[i]));
            if (!(e <= worst)) worst = e, at = i;
        }
        cr_expect_lt(worst, tol, "%s: relative error %.3g at x = %.9g (%zu points)", isa_names[s], worst, x[at], n);
        cr_expect(isnormal(y[0]) && y[0] < 0, "%s: gelu(-end = %.9g) = %g", isa_names[s], x[0], y[0]);
    }
    free(x), free(y);
}

/* Past -end the GELU's magnitude is below FLT_MIN: -0, exactly; -inf gives NaN
 * (as in PyTorch: -inf times 0). */
Test(tailfn, past_minus_end_the_gelu_is_minus_zero_and_minus_inf_gives_nan_on_every_isa) {
    float x[6] = {nextafterf(-rt_tail_gelu.end, -INFINITY), -13.5f, -20.0f, -1e30f, -FLT_MAX, -INFINITY}, y[6];
    for (int s = 0; s < 3; s++) {
        const rt_simd *simd = rt_simd_for(isa_names[s]);
        if (!simd) continue;
        simd->unary[RT_UNARY_GELU](6, x, y);
        for (int i = 0; i < 5; i++)
            cr_expect_eq(bits(y[i]), bits(-0.0f), "%s: gelu(%.9g) = %g, want -0", isa_names[s], x[i], y[i]);
        cr_expect(isnan(y[5]), "%s: gelu(-inf) = %g, want NaN", isa_names[s], y[5]);
    }
}

/* No GELU result is subnormal: every 64th f32 of 1e-3 <= |x| <= 20 on each ISA
 * (near 0 gelu is x/2, subnormal for a subnormal x, as it must be). Making one
 * costs a microcode assist a vector on the cores here (runtime.h). */
Test(tailfn, no_gelu_result_is_subnormal_on_any_isa) {
    size_t cap = 8u << 20, n = 0;
    float *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    cr_assert(x && y);
    for (float v = 1e-3f; v <= 20.0f && n + 2 <= cap;) {
        x[n++] = v, x[n++] = -v;
        uint32_t u = bits(v) + 64;
        memcpy(&v, &u, sizeof v);
    }
    cr_assert_lt(n, cap);
    for (int s = 0; s < 3; s++) {
        const rt_simd *simd = rt_simd_for(isa_names[s]);
        if (!simd) continue;
        simd->unary[RT_UNARY_GELU]((int64_t)n, x, y);
        for (size_t i = 0; i < n; i++)
            if (fpclassify(y[i]) == FP_SUBNORMAL)
                cr_assert_fail("%s: gelu(%.9g) = %g is subnormal", isa_names[s], x[i], y[i]);
    }
    free(x), free(y);
}

/* The fit: R(u) at the ends of its range against v Q(v) / phi(v) in double. */
Test(tailfn, the_fit_of_R_matches_mills_ratio_at_both_ends_of_the_tail) {
    const rt_tailfn *t = &rt_tail_gelu;
    float ends[2] = {rt_tab_gelu.hi, t->end};
    for (int k = 0; k < 2; k++) {
        double v = ends[k], u = 1 / (v * v), r = 0;
        for (int p = 0; p <= RT_TAIL_DEG; p++) r = r * u + t->r[p];
        double want = v * erfc(v / sqrt(2.0)) / 2 * sqrt(2 * M_PI) / exp(-v * v / 2);
        cr_expect_lt(fabs(r - want) / want, 1e-7, "R at v = %.9g: %.9g, want %.9g", v, r, want);
    }
}

/* Each piece of each table, evaluated in double at r = 1, meets the next at r = 0
 * within 1e-6 relative (the f32 rounding of seven coefficients; a mistyped one
 * would break a join by far more). Pieces sit at floor(v k) mod 32. */
Test(tabfn, the_pieces_of_every_table_meet_at_their_ends) {
    for (int c = 0; c < NCASES; c++) {
        const rt_tabfn *t = cases[c].tab;
        int first = (int)floorf(t->lo * t->k);
        for (int j = first; j + 1 < first + RT_TAB_N; j++) {
            int i = j & (RT_TAB_N - 1), i1 = (j + 1) & (RT_TAB_N - 1);
            double end = 0;
            for (int p = RT_TAB_DEG; p >= 0; p--) end = end + t->c[p][i];
            double next = t->c[0][i1];
            cr_expect_lt(fabs(end - next) / next, 1e-6, "%s: piece %d ends at %.9g, piece %d starts at %.9g",
                         cases[c].name, i, end, i + 1, next);
        }
    }
}
