/* SPDX-License-Identifier: MIT */
/*
 * The figures of a restart: wall time per step, and what the daemon's
 * threads did meanwhile, from the scheduler's own accounting
 * (/proc/self/task/N/schedstat: time on a CPU, time runnable but waiting
 * for one).  Wall time past the two is time blocked (a lock, the disk, the
 * kernel): so a slow restart can be told a loaded machine (run-queue wait)
 * from work of ours (CPU) from a wait (neither).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "vswapd/internal.h"

uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t process_cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void add_task(struct sched_sample *s, int dirfd, const char *tid)
{
	char path[sizeof(((struct dirent *)0)->d_name) + 16], buf[128];
	snprintf(path, sizeof(path), "%s/schedstat", tid);
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	unsigned long long run = 0, wait = 0;
	if (sscanf(buf, "%llu %llu", &run, &wait) == 2) {
		s->cpu_ns += run;
		s->wait_ns += wait;
	}
}

void sched_sample_take(struct sched_sample *s)
{
	*s = (struct sched_sample){0};
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			add_task(s, dirfd(d), e->d_name);
	closedir(d);
}
