/* SPDX-License-Identifier: MIT */
/* The worker pool and the background-job control block. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/pool.h"

/* Tasks that wait at a gate, counting how many started and finished. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	int started, finished;
};

static void gated_task(void *arg)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->lock);
	g->started++;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	g->finished++;
	pthread_mutex_unlock(&g->lock);
}

static void gate_init(struct gate *g, bool open)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->open = open;
	g->started = g->finished = 0;
}

static void gate_wait_started(struct gate *g, int n)
{
	pthread_mutex_lock(&g->lock);
	while (g->started < n)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* The calling thread's fair-class slice (sched_getattr's sched_runtime), in
 * ns; 0 if the kernel does not say. */
static uint64_t own_slice(void)
{
	struct {
		uint32_t size, policy;
		uint64_t flags;
		int32_t nice;
		uint32_t priority;
		uint64_t runtime, deadline, period;
	} a = {.size = sizeof(a)};
	return syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) == 0 ? a.runtime : 0;
}

static void note_slice(void *arg)
{
	*(uint64_t *)arg = own_slice();
}

/* Workers ask for the slice they were given (a longer one than the
 * kernel's default lets a woken vCPU preempt them: job.c); 0 asks
 * nothing: they keep the creator's. */
static void workers_ask_for_slice(void **state)
{
	(void)state;
	struct pool *p;
	uint64_t got = 0;
	assert_int_equal(pool_create(1, 0, 20000, &p), 0);
	assert_int_equal(pool_push(p, note_slice, &got), 0);
	pool_wait_complete(p);
	pool_destroy(p);
	assert_int_equal(got, 20000ull * 1000);
	assert_int_equal(pool_create(1, 0, 0, &p), 0);
	assert_int_equal(pool_push(p, note_slice, &got), 0);
	pool_wait_complete(p);
	pool_destroy(p);
	assert_int_equal(got, own_slice());
}

static void tasks_finish_after_wait_complete(void **state)
{
	(void)state;
	struct pool *p;
	struct gate g;
	gate_init(&g, true);
	assert_int_equal(pool_create(2, 0, 0, &p), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pool_push(p, gated_task, &g), 0);
	pool_wait_complete(p);
	pthread_mutex_lock(&g.lock);
	assert_int_equal(g.finished, 4); /* finished, not merely dequeued */
	pthread_mutex_unlock(&g.lock);
	pool_close(p);
	assert_int_equal(pool_push(p, gated_task, &g), -EPIPE);
	pool_destroy(p);
}

struct pusher {
	struct pool *p;
	struct gate *g;
	int rc;
};

static void *push_one(void *arg)
{
	struct pusher *u = arg;
	u->rc = pool_push(u->p, gated_task, u->g);
	return NULL;
}

static int join_within(pthread_t t, int ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)ms * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	return pthread_timedjoin_np(t, NULL, &until);
}

/* Capacity 2, 4 workers: 4 tasks running, 2 queued, the 7th push blocks
 * until a task ends; or fails when the pool closes. */
static void full_queue_blocks_push(void **state)
{
	(void)state;
	for (int closing = 0; closing < 2; closing++) {
		struct pool *p;
		struct gate g;
		gate_init(&g, false);
		assert_int_equal(pool_create(4, 2, 0, &p), 0);
		for (int i = 0; i < 4; i++)
			assert_int_equal(pool_push(p, gated_task, &g), 0);
		gate_wait_started(&g, 4);
		for (int i = 0; i < 2; i++)
			assert_int_equal(pool_push(p, gated_task, &g), 0);
		struct pusher u = {p, &g, 1};
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, push_one, &u), 0);
		/* It must still be blocked a while later (a push that does not
		 * block returns at once and fails this). */
		assert_int_equal(join_within(t, 50), ETIMEDOUT);
		if (closing)
			pool_close(p);
		else
			gate_open(&g);
		assert_int_equal(join_within(t, 5000), 0);
		assert_int_equal(u.rc, closing ? -EPIPE : 0);
		gate_open(&g);
		pool_wait_complete(p);
		pool_destroy(p);
		pthread_mutex_lock(&g.lock);
		assert_int_equal(g.finished, closing ? 6 : 7);
		pthread_mutex_unlock(&g.lock);
	}
}

static int until_aborted(struct job *j, void *arg)
{
	(void)arg;
	while (!job_aborted(j))
		sched_yield();
	return -ECANCELED;
}

static int finishes(struct job *j, void *arg)
{
	(void)j;
	return *(int *)arg;
}

static void job_abort_and_reset(void **state)
{
	(void)state;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct job j;
	job_init(&j, efd);
	assert_false(job_reset(&j)); /* no job: nothing signalled */
	assert_int_equal(job_join(&j), 0);
	assert_int_equal(job_start(&j, until_aborted, NULL), 0);
	assert_int_equal(job_start(&j, until_aborted, NULL), -EBUSY);
	job_abort(&j);
	assert_true(job_aborted(&j));
	assert_int_equal(job_join(&j), -ECANCELED);
	assert_true(job_reset(&j)); /* its end was signalled */
	assert_false(job_aborted(&j));
	assert_false(job_reset(&j));
	int v = 7;
	assert_int_equal(job_start(&j, finishes, &v), 0);
	assert_int_equal(job_join(&j), 7);
	assert_true(job_reset(&j));
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(tasks_finish_after_wait_complete),
	    cmocka_unit_test(full_queue_blocks_push),
	    cmocka_unit_test(job_abort_and_reset),
	    cmocka_unit_test(workers_ask_for_slice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
