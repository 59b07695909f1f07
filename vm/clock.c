/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "vm/clock.h"

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* /proc/thread-self/schedstat: "run_ns runq_wait_ns timeslices".  The file
 * is kept open: a pread at 0 of a seq file makes it anew, a few
 * microseconds against an open's tens. */
static uint64_t runq_ns(int *fd)
{
	char buf[96];
	ssize_t n;

	if (*fd == -1)
		*fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return 0;
	n = pread(*fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = buf;

	strtoull(p, &p, 10);
	return strtoull(p, NULL, 10);
}

/*
 * The three clocks as of one moment.  Reading the thread's CPU clock makes
 * the scheduler account the running slice, and a slice found used up is
 * given away at that syscall's return: the thread then waits in the run
 * queue between the wall clock and its schedstat.  That wait would count
 * as run-queue time of the step that ends here and as blocked wall time of
 * the next one (a long ioctl, never preempted inside, then a clock read:
 * the restore of the vCPUs seemed blocked for 4 ms).  So the wall clock is
 * read again after the others, and the three read anew while they are
 * more than VM_CLOCK_SKEW_NS apart.
 */
#define VM_CLOCK_SKEW_NS 20000u
#define VM_CLOCK_TRIES 4

void vm_clock_read(struct vm_clock *c, int *fd)
{
	for (int i = 0; i < VM_CLOCK_TRIES; i++) {
		c->wall_ns = clock_ns(CLOCK_MONOTONIC);
		c->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		c->runq_ns = runq_ns(fd);
		if (clock_ns(CLOCK_MONOTONIC) - c->wall_ns <= VM_CLOCK_SKEW_NS)
			break;
	}
}

void vm_clock_done(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static double ms(uint64_t a, uint64_t b)
{
	return (double)(int64_t)(b - a) / 1e6;
}

double vm_clock_wall_ms(const struct vm_clock *a, const struct vm_clock *b)
{
	return ms(a->wall_ns, b->wall_ns);
}

double vm_clock_cpu_ms(const struct vm_clock *a, const struct vm_clock *b)
{
	return ms(a->cpu_ns, b->cpu_ns);
}

double vm_clock_runq_ms(const struct vm_clock *a, const struct vm_clock *b)
{
	return ms(a->runq_ns, b->runq_ns);
}
