/* SPDX-License-Identifier: MIT */
/*
 * A thread's clocks at one moment, for timing the steps of a resume: the
 * wall clock, the thread's own CPU time and the time it spent runnable but
 * waiting for a CPU.  Beside a step's wall time they tell a step that
 * computes from one that waits for a core (a busy machine, the VMM's own
 * other threads) and from one that is blocked (a disk read, a lock, a
 * sync): blocked = wall - cpu - runq.
 */
#ifndef VSWAP_VM_CLOCK_H
#define VSWAP_VM_CLOCK_H

#include <stdint.h>

struct vm_clock {
	uint64_t wall_ns; /* CLOCK_MONOTONIC */
	uint64_t cpu_ns;  /* CLOCK_THREAD_CPUTIME_ID */
	uint64_t runq_ns; /* the scheduler's run delay; 0 without schedstat */
};

/* The calling thread's clocks.  *@fd caches the thread's schedstat file
 * (-1 at first; pass the same one on the same thread, vm_clock_done()
 * after the last read). */
void vm_clock_read(struct vm_clock *c, int *fd);
void vm_clock_done(int *fd);

/* Milliseconds from @a to @b of each clock. */
double vm_clock_wall_ms(const struct vm_clock *a, const struct vm_clock *b);
double vm_clock_cpu_ms(const struct vm_clock *a, const struct vm_clock *b);
double vm_clock_runq_ms(const struct vm_clock *a, const struct vm_clock *b);

#endif
