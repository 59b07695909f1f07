/* SPDX-License-Identifier: MIT */
/* Worker pool: move-to-staging copies run on every CPU at once. */
#include <errno.h>
#include <stdlib.h>

#include "handler/pool.h"

struct task {
	pool_fn fn;
	void *arg;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full, idle;
	struct task *q;
	unsigned cap, head, len;
	unsigned busy; /* workers running a task */
	uint32_t slice_us;
	bool closed;
	unsigned nthreads;
	pthread_t threads[];
};

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	thread_background(p->slice_us);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->len == 0 && !p->closed)
			pthread_cond_wait(&p->not_empty, &p->lock);
		if (p->len == 0) /* closed and drained */
			break;
		struct task t = p->q[p->head];
		p->head = (p->head + 1) % p->cap;
		p->len--;
		p->busy++;
		pthread_cond_signal(&p->not_full);
		pthread_mutex_unlock(&p->lock);
		t.fn(t.arg);
		pthread_mutex_lock(&p->lock);
		p->busy--;
		if (p->busy == 0 && p->len == 0)
			pthread_cond_broadcast(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_create(unsigned workers, unsigned capacity, uint32_t slice_us, struct pool **out)
{
	if (workers == 0)
		return -EINVAL;
	struct pool *p = calloc(1, sizeof(*p) + workers * sizeof(pthread_t));
	if (!p)
		return -ENOMEM;
	p->cap = capacity ? capacity : workers;
	p->slice_us = slice_us;
	p->q = calloc(p->cap, sizeof(*p->q));
	if (!p->q) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->not_empty, NULL);
	pthread_cond_init(&p->not_full, NULL);
	pthread_cond_init(&p->idle, NULL);
	for (unsigned i = 0; i < workers; i++) {
		int rc = pthread_create(&p->threads[i], NULL, pool_worker, p);
		if (rc) {
			p->nthreads = i;
			pool_destroy(p);
			return -rc;
		}
	}
	p->nthreads = workers;
	*out = p;
	return 0;
}

static int push(struct pool *p, pool_fn fn, void *arg, bool wait)
{
	pthread_mutex_lock(&p->lock);
	while (wait && p->len == p->cap && !p->closed)
		pthread_cond_wait(&p->not_full, &p->lock);
	if (p->closed || p->len == p->cap) {
		int rc = p->closed ? -EPIPE : -EAGAIN;
		pthread_mutex_unlock(&p->lock);
		return rc;
	}
	p->q[(p->head + p->len) % p->cap] = (struct task){fn, arg};
	p->len++;
	pthread_cond_signal(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int pool_push(struct pool *p, pool_fn fn, void *arg)
{
	return push(p, fn, arg, true);
}

int pool_try_push(struct pool *p, pool_fn fn, void *arg)
{
	return push(p, fn, arg, false);
}

unsigned pool_workers(const struct pool *p)
{
	return p->nthreads;
}

void pool_wait_complete(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->len > 0 || p->busy > 0)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void pool_close(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->closed = true;
	pthread_cond_broadcast(&p->not_empty);
	pthread_cond_broadcast(&p->not_full);
	pthread_mutex_unlock(&p->lock);
}

void pool_destroy(struct pool *p)
{
	if (!p)
		return;
	pool_close(p);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->not_full);
	pthread_cond_destroy(&p->not_empty);
	pthread_mutex_destroy(&p->lock);
	free(p->q);
	free(p);
}
