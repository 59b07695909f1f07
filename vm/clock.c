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

void vm_clock_read(struct vm_clock *c, int *fd)
{
	c->wall_ns = clock_ns(CLOCK_MONOTONIC);
	c->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	c->runq_ns = runq_ns(fd);
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
