/* SPDX-License-Identifier: MIT */
/* Background jobs (trim, swap-in): a thread, an abort flag, an eventfd. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "handler/pool.h"

/* struct sched_attr of sched_setattr(2) (not in every libc's headers). */
struct slice_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

/*
 * A background thread (a job, the commit thread, a pool worker) asks for a
 * time slice of @slice_us (vswap_handler_opts.background_slice_us; 0: the
 * kernel's default, nothing asked).  On EEVDF (Linux 6.12 and later) a
 * thread that wakes up with a shorter slice than the running one preempts
 * it at once instead of waiting for that slice to end, so a long slice here
 * lets a vCPU thread whose fault was just served, and the monitor woken by
 * the next fault, run before a swap-out's hashing and writing go on when
 * there are fewer cores than runnable threads.  The policy and the nice
 * value stay as they are (no privilege is needed, the work keeps its fair
 * share, in longer pieces); a thread the embedder gave another policy than
 * SCHED_OTHER is left alone; a kernel that refuses changes nothing (older
 * ones ignore the value).
 */
void thread_background(uint32_t slice_us)
{
	struct slice_attr a = {.size = sizeof(a)};
	if (!slice_us || syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0 ||
	    a.policy != SCHED_OTHER)
		return;
	a.size = sizeof(a);
	a.flags = 0;
	a.runtime = (uint64_t)slice_us * 1000;
	(void)syscall(SYS_sched_setattr, 0, &a, 0);
}

void job_init(struct job *j, int efd)
{
	*j = (struct job){.efd = efd};
	atomic_init(&j->abort, false);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	pthread_setname_np(pthread_self(), "vswap-job");
	thread_background(j->slice_us);
	j->result = j->fn(j, j->arg);
	/* Tell the monitor's epoll; the counter only ever grows by one per
	 * job, so the write cannot block. */
	uint64_t one = 1;
	if (write(j->efd, &one, sizeof(one)) < 0) {
		/* Nothing to do: the monitor also joins on abort. */
	}
	return NULL;
}

int job_start(struct job *j, int (*fn)(struct job *, void *), void *arg)
{
	if (j->running)
		return -EBUSY;
	j->fn = fn;
	j->arg = arg;
	j->result = 0;
	atomic_store(&j->abort, false);
	int rc = pthread_create(&j->thread, NULL, job_main, j);
	if (rc)
		return -rc;
	j->running = true;
	return 0;
}

void job_abort(struct job *j)
{
	atomic_store(&j->abort, true);
}

int job_join(struct job *j)
{
	if (!j->running)
		return 0;
	pthread_join(j->thread, NULL);
	j->running = false;
	return j->result;
}

bool job_reset(struct job *j)
{
	atomic_store(&j->abort, false);
	uint64_t v;
	return read(j->efd, &v, sizeof(v)) == (ssize_t)sizeof(v);
}
