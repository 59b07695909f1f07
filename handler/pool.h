/* SPDX-License-Identifier: MIT */
/*
 * A fixed pool of worker threads over a bounded MPMC queue, and the control
 * block of a background job (a thread with an abort flag that signals an
 * eventfd when it ends).
 */
#ifndef VSWAP_HANDLER_POOL_H
#define VSWAP_HANDLER_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct pool;
typedef void (*pool_fn)(void *arg);

/* @workers threads, queue of @capacity tasks (0 = @workers), each asking
 * for a slice of @slice_us (thread_background()). */
int pool_create(unsigned workers, unsigned capacity, uint32_t slice_us, struct pool **out);
/* Queue a task; blocks while the queue is full; -EPIPE once closed. */
int pool_push(struct pool *p, pool_fn fn, void *arg);
/* The same without blocking: -EAGAIN while the queue is full. */
int pool_try_push(struct pool *p, pool_fn fn, void *arg);
/* How many threads the pool has. */
unsigned pool_workers(const struct pool *p);
/* Wait until the queue is empty and every worker is idle (tasks finished,
 * not merely dequeued). */
void pool_wait_complete(struct pool *p);
/* Refuse new tasks and wake blocked pushers; queued tasks still run. */
void pool_close(struct pool *p);
/* Close, drain, join and free. */
void pool_destroy(struct pool *p);

/*
 * Background job: job_start() runs fn(job, arg) on a new thread; its return
 * value is kept for job_join(), and the eventfd is signalled when it ends
 * (normally or aborted) so an epoll loop learns of it.
 */
struct job {
	pthread_t thread;
	bool running;
	atomic_bool abort;
	int efd;	   /* not owned */
	uint32_t slice_us; /* thread_background()'s, set after job_init() */
	int result;
	int (*fn)(struct job *j, void *arg);
	void *arg;
};

void job_init(struct job *j, int efd);
/* First thing on a background thread: ask for a slice of @slice_us
 * (0: nothing asked); see job.c. */
void thread_background(uint32_t slice_us);
int job_start(struct job *j, int (*fn)(struct job *, void *), void *arg);
static inline bool job_aborted(struct job *j)
{
	return atomic_load_explicit(&j->abort, memory_order_relaxed);
}
void job_abort(struct job *j);
/* Join a started job and return its result (0 if none was running). */
int job_join(struct job *j);
/* Clear the abort flag and consume the eventfd without blocking: true if a
 * job's end had been signalled. */
bool job_reset(struct job *j);

#endif
