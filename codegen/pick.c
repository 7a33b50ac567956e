/*
 * pick.c — two kernels for one GEMM, picked per piece by the core's times.
 *
 * An AMX GEMM (gemm.c's choose_amx) is generated with the FMA kernel of the
 * same contraction beside it, and every piece of every call (program.c cuts
 * the GEMM into pieces of whole 64-column groups, which both kernels can
 * run: one FMA panel, two of the unit's) asks here which to run. Why not
 * decide once, at compile time: the tile unit's speed is not a property of
 * the machine but of the minute and of the core. On the shared VMs this was
 * built on, a vCPU's tile products ran 2.5x slower for seconds to minutes at
 * a time (another tenant on the core's other hyperthread), while its FMAs
 * kept their speed, and often one vCPU's unit was slow while the other's was
 * fast; the GPT-2 block's GEMMs ran 1.3-1.5x slower on a slow unit than on
 * FMAs, and 1.3x faster on a fast one. The cost model cannot know which
 * minute it is, nor which core a piece lands on; the pieces' own times do.
 * So each core (sched_getcpu, CG_PICK_CPUS slots) keeps its own times of the
 * two kernels, per 64-column group. At two threads with one fast unit and
 * one slow, the fast core takes the unit and the slow one FMAs (block, one
 * process, calls rotating for 20 s: 0.89-0.91x the time of the unit alone,
 * 0.95x of FMAs alone).
 *
 * The policy is a two-armed bandit kept simple. Each kernel's first run on a
 * core is a warm-up (first touch of the tile state, cold caches) and is not
 * timed; until both kernels have a time there, the untimed one runs. Then the
 * faster by the moving averages runs, and one piece in CG_PICK_EXPLORE the
 * other, so its average follows the machine: the loser costs its extra time
 * once in 16 pieces (about 2% for a kernel 1.4x slower), and a kernel that
 * became faster wins back within three of its turns. Where the loser is more
 * than 1.5x slower it is explored less often, so that exploring costs at
 * most 1/CG_PICK_REGRET (3%) of the faster kernel's time, down to once in
 * CG_PICK_EXPLORE_MAX pieces (attention's qkv at one thread in a fast minute:
 * the unit 67 us a group, FMAs 133; once in 16 cost 6%). The
 * averages move a quarter of the way to each sample, and a sample counts at
 * most twice the average, so a piece the host preempted moves it a quarter
 * at most.
 *
 * A is split for the unit once a call, by the pieces that picked the unit
 * (rt_amx_pack_rows_shared: each claims blocks of 32 rows until none is left,
 * then waits for the rest), not counted in their times; a call in which
 * every piece picks FMAs splits nothing.
 *
 * Results: the kernels compute the same product to within an f32 product's
 * rounding (AMX through bf16 pieces), not bit for bit, so two calls of an
 * unchanged function may differ in the last bits where their pieces ran
 * different kernels. EMBER_GEMM=amx or =fma generates one kernel and keeps
 * results bit-identical from call to call and across thread counts.
 *
 * Concurrency: calls of one compiled function from several threads update
 * the same counters with relaxed atomics and no lock; a lost update only
 * delays what the averages say.
 */
#include "codegen.h"

#include <sched.h>
#include <stdatomic.h>

int cg_pick_choose(cg_pick *p) {
    uint64_t n = atomic_fetch_add_explicit(&p->calls, 1, memory_order_relaxed);
    if (p->alternate) return (int)(n & 1);
    uint64_t a = atomic_load_explicit(&p->ns[0], memory_order_relaxed);
    uint64_t b = atomic_load_explicit(&p->ns[1], memory_order_relaxed);
    if (!a) return 0;
    if (!b) return 1;
    int best = b < a;
    uint64_t period = cg_pick_period(a, b);
    return n % period == period - 1 ? !best : best;
}

uint64_t cg_pick_period(uint64_t a, uint64_t b) {
    uint64_t fast = a < b ? a : b, slow = a < b ? b : a;
    if (!fast) return CG_PICK_EXPLORE;
    /* the slower kernel's extra time over the faster one's, in 1/CG_PICK_REGRET parts */
    uint64_t parts = slow - fast > UINT64_MAX / CG_PICK_REGRET ? UINT64_MAX : CG_PICK_REGRET * (slow - fast) / fast;
    return parts < CG_PICK_EXPLORE ? CG_PICK_EXPLORE : parts > CG_PICK_EXPLORE_MAX ? CG_PICK_EXPLORE_MAX : parts;
}

void cg_pick_record(cg_pick *p, int k, uint64_t ns) {
    if (atomic_fetch_add_explicit(&p->runs[k], 1, memory_order_relaxed) == 0) return; /* the warm-up */
    if (!ns) ns = 1;
    uint64_t old = atomic_load_explicit(&p->ns[k], memory_order_relaxed);
    if (old && ns > 2 * old) ns = 2 * old;
    atomic_store_explicit(&p->ns[k], old ? old - old / 4 + ns / 4 : ns, memory_order_relaxed);
}

int cg_piece_pick(cg_pick *cpus, cg_piece *pc) {
    int cpu = sched_getcpu();
    pc->cpu = cpu < 0 ? 0 : cpu % CG_PICK_CPUS;
    pc->kernel = cg_pick_choose(&cpus[pc->cpu]);
    pc->t0 = rt_now_ns();
    return pc->kernel;
}

void cg_piece_restart(cg_piece *pc) { pc->t0 = rt_now_ns(); }

void cg_piece_done(cg_pick *cpus, const cg_piece *pc, int64_t work) {
    uint64_t ns = rt_now_ns() - pc->t0;
    cg_pick_record(&cpus[pc->cpu], pc->kernel, work > 0 ? ns / (uint64_t)work : ns);
}
