/*
 * test_pick.c — the policy that picks one of a step's two kernels per call
 * (codegen/pick.c), driven with made-up times: untimed kernels first, the
 * first run of each a warm-up, the faster one after that with the other once
 * in CG_PICK_EXPLORE calls (less often when it is much slower), a kernel that becomes faster winning back, one
 * preempted call moving an average by a quarter at most, and counts kept
 * exact under concurrent calls. The programs that use it are tested in
 * test_gemm_amx.c.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <string.h>

#include "codegen.h"

/* One call: the pick, then the time the picked kernel took by times[k]. */
static int call(cg_pick *p, const uint64_t times[2]) {
    int k = cg_pick_choose(p);
    cg_pick_record(p, k, times[k]);
    return k;
}

Test(pick, each_kernel_runs_until_it_has_a_time_and_its_first_run_is_a_warm_up) {
    cg_pick p;
    memset(&p, 0, sizeof p);
    const uint64_t t[2] = {100, 50};
    int seq[4];
    for (int i = 0; i < 4; i++) seq[i] = call(&p, t);
    cr_expect(seq[0] == 0 && seq[1] == 0 && seq[2] == 1 && seq[3] == 1, "picked %d %d %d %d", seq[0], seq[1], seq[2],
              seq[3]);
    cr_expect_eq(p.ns[0], 100, "the second run's time, not the warm-up's");
    cr_expect_eq(p.ns[1], 50);
    cr_expect_eq(p.runs[0], 2);
    cr_expect_eq(p.runs[1], 2);
}

Test(pick, the_faster_kernel_runs_and_the_other_once_in_every_sixteen_calls) {
    cg_pick p;
    memset(&p, 0, sizeof p);
    const uint64_t t[2] = {300, 200};
    for (int i = 0; i < 4; i++) call(&p, t);
    int slow = 0;
    for (int i = 0; i < 10 * CG_PICK_EXPLORE; i++) slow += call(&p, t) == 0;
    cr_expect_eq(slow, 10, "the slower kernel ran %d times in %d calls", slow, 10 * CG_PICK_EXPLORE);
    cr_expect_eq(p.ns[0], 300);
    cr_expect_eq(p.ns[1], 200);
}

Test(pick, a_kernel_much_slower_is_explored_less_often_so_exploring_costs_a_thirty_second_at_most) {
    const uint64_t ratios[][2] = {{200, 300}, {200, 600}, {100, 1700}, {100, 100000}};
    const int periods[] = {16, 64, 256, 256};
    for (int r = 0; r < 4; r++) {
        cg_pick p;
        memset(&p, 0, sizeof p);
        const uint64_t t[2] = {ratios[r][1], ratios[r][0]}; /* the unit slower */
        for (int i = 0; i < 4; i++) call(&p, t);
        cr_expect_eq(cg_pick_period(t[0], t[1]), (uint64_t)periods[r]);
        cr_expect_eq(cg_pick_period(t[1], t[0]), (uint64_t)periods[r], "either way round");
        int slow = 0, calls = 10 * periods[r];
        uint64_t spent = 0;
        for (int i = 0; i < calls; i++) {
            int k = call(&p, t);
            slow += k == 0, spent += t[k];
        }
        cr_expect_eq(slow, 10, "%llu vs %llu: the slower ran %d times in %d calls", (unsigned long long)t[0],
                     (unsigned long long)t[1], slow, calls);
        if (periods[r] < CG_PICK_EXPLORE_MAX)
            cr_expect_leq(spent - calls * t[1], calls * t[1] / CG_PICK_REGRET, "exploring cost %llu of %llu",
                          (unsigned long long)(spent - calls * t[1]), (unsigned long long)(calls * t[1]));
    }
    cr_expect_eq(cg_pick_period(0, 100), CG_PICK_EXPLORE, "an untimed kernel: the shortest period");
}

Test(pick, a_kernel_that_becomes_faster_wins_back_within_three_of_its_turns) {
    cg_pick p;
    memset(&p, 0, sizeof p);
    uint64_t t[2] = {1400, 1000}; /* the unit in a slow minute */
    for (int i = 0; i < 200; i++) call(&p, t);
    cr_assert_lt(p.ns[1], p.ns[0]);
    t[0] = 700; /* fast again */
    int turns = 0, i = 0;
    while (p.ns[0] >= p.ns[1] && i < 10 * CG_PICK_EXPLORE) turns += call(&p, t) == 0, i++;
    cr_expect_leq(turns, 3, "%d turns of the faster kernel before it won", turns);
    int fast = 0;
    for (int j = 0; j < CG_PICK_EXPLORE; j++) fast += call(&p, t) == 0;
    cr_expect_eq(fast, CG_PICK_EXPLORE - 1, "then it runs but for the other's turn");
}

Test(pick, one_preempted_call_moves_an_average_by_a_quarter_at_most) {
    cg_pick p;
    memset(&p, 0, sizeof p);
    const uint64_t t[2] = {1000, 2000};
    for (int i = 0; i < 4; i++) call(&p, t);
    cr_assert_eq(cg_pick_choose(&p), 0);
    cg_pick_record(&p, 0, 50000000); /* 50 ms off the core */
    cr_expect_eq(p.ns[0], 1250);
    cr_expect_eq(cg_pick_choose(&p), 0, "still the faster one");
}

enum { THREADS = 4, CALLS = 10000 };

static void *caller(void *arg) {
    const uint64_t t[2] = {100, 120};
    for (int i = 0; i < CALLS; i++) call(arg, t);
    return NULL;
}

Test(pick, concurrent_calls_count_every_pick_and_run) {
    cg_pick p;
    memset(&p, 0, sizeof p);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) cr_assert_eq(pthread_create(&th[i], NULL, caller, &p), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    cr_expect_eq(p.calls, THREADS * CALLS);
    cr_expect_eq(p.runs[0] + p.runs[1], THREADS * CALLS);
    cr_expect(p.ns[0] >= 100 && p.ns[0] <= 200 && p.ns[1] >= 120 && p.ns[1] <= 240, "averages %llu %llu",
              (unsigned long long)p.ns[0], (unsigned long long)p.ns[1]);
}
