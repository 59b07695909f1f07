/* SPDX-License-Identifier: MIT */
/*
 * The commit thread: the lazy index commits that record what faults and
 * remove events changed, with their syncs, off the monitor.  A synced LMDB
 * commit takes milliseconds; on the monitor every fault arriving meanwhile
 * would wait for it.  Here only the snapshot of the changes is taken under
 * h->lock (vswap_store_commit_begin(): the changed records copied out, no
 * I/O), the syncs and the index commit run without it
 * (vswap_store_commit_write()), and the end (slots made reusable, staging
 * punched) takes the lock again.  Faults go on meanwhile.
 *
 * The monitor asks (committer_request()) when LAZY_COMMIT_PAGES changes are
 * pending or it has been idle for LAZY_COMMIT_MS; it waits for this thread
 * (committer_wait_idle()) only before staging pages (a move's stage marks
 * need the punches a commit in flight holds).  Every other commit may run
 * meanwhile: vswap_store_commit() waits inside the store for the write in
 * flight and commits what it took as well (store.h).
 *
 * cm.mu guards the request flags and the error; it is never held with
 * another lock.
 */
#include <errno.h>

#include "handler/internal.h"

static int commit_once(struct vswap_handler *h)
{
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_commit_begin(h->store);
	if (rc == -EAGAIN) /* the index map must grow: a plain commit does */
		rc = vswap_store_commit(h->store);
	pthread_mutex_unlock(&h->lock);
	if (rc <= 0)
		return rc;
	if (h->cm.hook)
		h->cm.hook(h->cm.hook_ctx);
	rc = vswap_store_commit_write(h->store);
	pthread_mutex_lock(&h->lock);
	vswap_store_commit_end(h->store, rc);
	if (rc == -EAGAIN) /* the index map must grow: a plain commit does */
		rc = vswap_store_commit(h->store);
	pthread_mutex_unlock(&h->lock);
	/* The staging bytes it let go, without the lock (a move to staging
	 * waits for this thread to be idle, so none is staged again first). */
	vswap_store_commit_punch(h->store);
	return rc;
}

static void *committer_main(void *arg)
{
	struct vswap_handler *h = arg;
	struct committer *c = &h->cm;
	thread_background(h->opts.background_slice_us);
	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		if (!c->want) {
			pthread_cond_wait(&c->cv, &c->mu);
			continue;
		}
		c->want = false;
		c->busy = true;
		uint64_t seq = ++c->begun;
		int last = c->error;
		pthread_mutex_unlock(&c->mu);
		int rc = commit_once(h);
		if (rc < 0 && rc != last) { /* logged once, not on every retry */
			hlog(h, VSWAP_LOG_ERROR, "lazy commit: %s", vswap_strerror(rc));
			pthread_mutex_lock(&h->slock);
			h->last_error = rc;
			pthread_mutex_unlock(&h->slock);
		}
		pthread_mutex_lock(&c->mu);
		c->error = rc < 0 ? rc : 0;
		c->finished = seq;
		if (rc == 0)
			c->landed = seq;
		c->busy = false;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int committer_start(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->inited = true;
	int rc = pthread_create(&c->thread, NULL, committer_main, h);
	c->started = rc == 0;
	return -rc;
}

void committer_stop(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	if (!c->inited)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
		c->started = false;
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	c->inited = false;
}

void committer_request(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	pthread_mutex_lock(&c->mu);
	if (!c->want) {
		c->want = true;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
}

void committer_wait_idle(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	pthread_mutex_lock(&c->mu);
	while (c->started && (c->want || c->busy))
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

bool committer_busy(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	pthread_mutex_lock(&c->mu);
	bool busy = c->want || c->busy;
	pthread_mutex_unlock(&c->mu);
	return busy;
}

int committer_error(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	pthread_mutex_lock(&c->mu);
	int err = c->error;
	pthread_mutex_unlock(&c->mu);
	return err;
}

/*
 * Commits the swap-out and trim ask for and wait on: the commit that begins
 * after the request covers everything the caller changed before it (a
 * commit takes all that is pending at its begin), and any later one that
 * lands does too (a failed commit leaves its changes pending).  So the
 * changes are durable once a commit numbered at least the ticket landed.
 */
uint64_t committer_ticket(struct vswap_handler *h)
{
	struct committer *c = &h->cm;
	if (!c->started) { /* no thread: commit here */
		int rc = commit_once(h);
		pthread_mutex_lock(&c->mu);
		uint64_t seq = ++c->begun;
		c->finished = seq;
		c->error = rc < 0 ? rc : 0;
		if (rc == 0)
			c->landed = seq;
		pthread_mutex_unlock(&c->mu);
		return seq;
	}
	pthread_mutex_lock(&c->mu);
	uint64_t seq = c->begun + 1;
	if (!c->want) {
		c->want = true;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return seq;
}

int committer_result(struct vswap_handler *h, uint64_t ticket, bool wait)
{
	struct committer *c = &h->cm;
	pthread_mutex_lock(&c->mu);
	while (wait && c->landed < ticket && c->finished < ticket && c->started && !c->stop)
		pthread_cond_wait(&c->cv, &c->mu);
	int rc = c->landed >= ticket	 ? 0
		 : c->finished >= ticket ? (c->error ? c->error : -EIO)
		 : wait			 ? -ESHUTDOWN
					 : -EINPROGRESS;
	pthread_mutex_unlock(&c->mu);
	return rc;
}
