/* Two threads for one piece of work at a time (cpu_decoder.c, cpu_rows.c). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu_decoder.h"

/* The caller's thread and one spinning beside it while a step runs.

   Each piece of work has two parts. The caller posts it, does part 0, then takes part 1 too
   unless the other thread has already claimed it: a helper that is late (descheduled on a
   busy machine, or still yielding) costs the parallelism, never a wait. The helper spins
   without PAUSE, which a virtual machine's pause-loop exiting answers by taking the vCPU off
   its host core (a step of 37 hand-offs took 11 ms instead of 2.3 on the 2-vCPU machine of
   benchmarks/cpu/profile.md §11), and gives its core away after ~0.1 ms without work. */

struct Team {
    pthread_t id;
    _Atomic long posted, claimed, done; /* piece numbers: the last posted, claimed for part 1, finished */
    _Atomic int quit;
    Part fn;
    void* ctx;
};

static inline void spin_or_yield(long* spins) {
    if (++*spins < (1L << 18)) __asm__ volatile("" ::: "memory");
    else sched_yield();
}

static void* team_worker(void* arg) {
    Team* t = arg;
    long seen = 0;
    for (;;) {
        long p, spins = 0;
        while ((p = atomic_load_explicit(&t->posted, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&t->quit, memory_order_acquire)) return NULL;
            spin_or_yield(&spins);
        }
        seen = p;
        long before = p - 1; /* the caller may have taken this piece, and posted more since */
        if (atomic_compare_exchange_strong_explicit(&t->claimed, &before, p, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            t->fn(t->ctx, 1, 2);
            atomic_store_explicit(&t->done, p, memory_order_release);
        }
    }
}

/* fn(ctx, 0, 2) and fn(ctx, 1, 2), the second on the other thread where it claims it first;
   fn(ctx, 0, 1) alone without one */
void wf_team_run(Team* t, Part fn, void* ctx) {
    if (t == NULL) {
        fn(ctx, 0, 1);
        return;
    }
    t->fn = fn;
    t->ctx = ctx;
    long p = atomic_load_explicit(&t->posted, memory_order_relaxed) + 1;
    atomic_store_explicit(&t->posted, p, memory_order_release);
    fn(ctx, 0, 2);
    long before = p - 1;
    if (atomic_compare_exchange_strong_explicit(&t->claimed, &before, p, memory_order_acq_rel, memory_order_acquire)) {
        fn(ctx, 1, 2);
        return;
    }
    long spins = 0;
    while (atomic_load_explicit(&t->done, memory_order_acquire) != p) spin_or_yield(&spins);
}

Team* wf_team_start(int threads) {
    if (threads < 2) return NULL;
    Team* t = malloc(sizeof(Team));
    if (t == NULL) return NULL;
    atomic_init(&t->posted, 0);
    atomic_init(&t->claimed, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->quit, 0);
    if (pthread_create(&t->id, NULL, team_worker, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void wf_team_stop(Team* t) {
    if (t == NULL) return;
    atomic_store_explicit(&t->quit, 1, memory_order_release);
    pthread_join(t->id, NULL);
    free(t);
}

void wf_share(long n, long align, int part, int parts, long* lo, long* hi) {
    *lo = part == 0 ? 0 : (n * part / parts) / align * align;
    *hi = part == parts - 1 ? n : (n * (part + 1) / parts) / align * align;
}
