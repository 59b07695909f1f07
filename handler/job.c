/* SPDX-License-Identifier: MIT */
/* Background jobs (trim, swap-in): a thread, an abort flag, an eventfd. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "handler/pool.h"

void job_init(struct job *j, int efd)
{
	*j = (struct job){.efd = efd};
	atomic_init(&j->abort, false);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	pthread_setname_np(pthread_self(), "vswap-job");
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
