/* SPDX-License-Identifier: MIT */
/*
 * The monitor thread: one epoll over the command eventfd, the job eventfd
 * and every uffd.  It serves faults and remove events, runs the state
 * machine (docs/DESIGN.md has its transitions as a table), and asks the
 * commit thread for the faults' lazy index commits.  Trim, swap-out and
 * swap-in run as jobs on their own thread; nothing here waits for a write,
 * a sync or an index commit.
 */
#include <errno.h>
#include <sched.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "handler/internal.h"

static void state_publish(struct vswap_handler *h, enum vswap_state st, struct vswap_transition t)
{
	pthread_mutex_lock(&h->slock);
	h->state = st;
	h->trans = t;
	pthread_cond_broadcast(&h->scond);
	pthread_mutex_unlock(&h->slock);
}

void state_set(struct vswap_handler *h, enum vswap_state st, struct vswap_transition t)
{
	pthread_mutex_lock(&h->lock);
	vswap_store_set_state(h->store, (uint32_t)st);
	int rc = vswap_store_commit(h->store);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "commit at state %s: %s", vswap_state_name(st),
		     vswap_strerror(rc));
	state_publish(h, st, t);
}

void state_set_lazy(struct vswap_handler *h, enum vswap_state st, struct vswap_transition t)
{
	pthread_mutex_lock(&h->lock);
	vswap_store_set_state(h->store, (uint32_t)st);
	pthread_mutex_unlock(&h->lock);
	committer_request(h);
	state_publish(h, st, t);
}

static enum vswap_state state_get(struct vswap_handler *h)
{
	pthread_mutex_lock(&h->slock);
	enum vswap_state st = h->state;
	pthread_mutex_unlock(&h->slock);
	return st;
}

static void error_set(struct vswap_handler *h, int err)
{
	pthread_mutex_lock(&h->slock);
	h->last_error = err;
	pthread_mutex_unlock(&h->slock);
}

static void fail(struct vswap_handler *h, const char *what, int err)
{
	hlog(h, VSWAP_LOG_ERROR, "%s: %s", what, vswap_strerror(err));
	error_set(h, err);
	state_set(h, VSWAP_STATE_FAILED, (struct vswap_transition){0, 0});
}

/* Abort and join the running job, and consume its completion signal so a
 * later job's end is not mistaken for it. */
static int job_stop(struct vswap_handler *h, bool abort)
{
	struct monitor *m = &h->m;
	if (m->job_kind == JOB_NONE)
		return 0;
	if (abort)
		job_abort(&m->job);
	int rc = job_join(&m->job);
	job_reset(&m->job);
	m->job_kind = JOB_NONE;
	return rc;
}

/* End a swap-out before another transition: its written chunks stay staged
 * if their commit fails (safe: every page is still in staging). */
static void flush_or_log(struct vswap_handler *h, const char *what)
{
	int rc = swap_out_flush(h);
	if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "%s: swap-out commit: %s; its pages stay staged", what,
		     vswap_strerror(rc));
}

int register_all(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	for (unsigned i = 0; i < m->uffds.n; i++) {
		if (uffd_list_is_dead(&m->uffds, i))
			continue;
		int rc = regions_register(h, m->uffds.v[i].fd, m->uffds.v[i].bases);
		if (rc == -ESRCH) { /* its process is gone: skip it */
			m->uffds.v[i].dead = true;
			m->gc_due = true;
			continue;
		}
		if (rc < 0) {
			while (i-- > 0)
				if (!m->uffds.v[i].dead)
					regions_unregister(h, m->uffds.v[i].fd,
							   m->uffds.v[i].bases);
			return rc;
		}
	}
	m->registered = true;
	m->sweep_due = true;
	return 0;
}

void unregister_all(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	protect_release(h);
	for (unsigned i = 0; i < m->uffds.n; i++) {
		if (m->uffds.v[i].dead)
			continue;
		int rc = regions_unregister(h, m->uffds.v[i].fd, m->uffds.v[i].bases);
		m->uffds.v[i].parked = 0; /* the unregister woke them */
		if (rc == -ESRCH)
			m->uffds.v[i].dead = true;
		else if (rc < 0)
			hlog(h, VSWAP_LOG_ERROR, "unregister uffd %u: %s", i, vswap_strerror(rc));
	}
	m->registered = false;
}

void cleanup_finish(struct vswap_handler *h)
{
	while (h->m.cleanup_active)
		if (cleanup_step(h, UINT64_MAX) < 0)
			break;
	h->m.cleanup_active = false;
}

/* Swap-in is complete: back to Ready with every page resident. */
static void leave_enabled(struct vswap_handler *h, struct vswap_transition t)
{
	struct monitor *m = &h->m;
	/* No fault read outlives the registration it was made under. */
	fault_io_drain(h, true);
	unregister_all(h);
	m->cleanup_cursor = 0;
	m->cleanup_active = true;
	if (m->slow_cleanup && !m->exiting)
		m->cleanup_next_ms = now_ms() + h->opts.cleanup_interval_ms;
	else
		cleanup_finish(h);
	state_set(h, VSWAP_STATE_READY, t);
}

static int do_enable(struct vswap_handler *h)
{
	enum vswap_state st = state_get(h);
	if (st == VSWAP_STATE_READY) {
		cleanup_finish(h);
		/* What is left unpunched is reused by the swap-out's writes. */
		h->m.punch_due = false;
		int rc = register_all(h);
		if (rc < 0) {
			hlog(h, VSWAP_LOG_ERROR, "enable: register: %s", vswap_strerror(rc));
			return rc;
		}
	}
	job_stop(h, true);
	if (st == VSWAP_STATE_SWAP_OUT_IN_PROGRESS)
		flush_or_log(h, "enable");
	/* Runs a failed commit left: their pages stay staged (the next
	 * swap-out writes them again); none may clear a page this move
	 * stages again. */
	h->m.nunclean = 0;
	h->m.unclean_pages = 0;
	uint64_t t0 = now_ms(), pages;
	int rc = h->wp.on ? protect_enable(h, &pages) : move_to_staging(h, &pages);
	if (rc < 0) {
		fail(h, h->wp.on ? "write-protect" : "move to staging", rc);
		return rc;
	}
	struct vswap_transition t = {pages, now_ms() - t0};
	if (pages == 0 && h->m.registered) {
		/* Nothing taken (a resume's fresh, empty memory): nothing of the
		 * store changed but its recorded state, which the commit thread
		 * records; a crash before leaves the previous state, true of the
		 * store still.  The guest need not wait for a sync to run. */
		state_set_lazy(h, VSWAP_STATE_PENDING, t);
		return 0;
	}
	state_set(h, VSWAP_STATE_PENDING, t);
	return 0;
}

static int do_trim(struct vswap_handler *h)
{
	switch (state_get(h)) {
	case VSWAP_STATE_PENDING:
		break;
	case VSWAP_STATE_TRIM_IN_PROGRESS:
	case VSWAP_STATE_ACTIVE:
		return -EALREADY;
	case VSWAP_STATE_SWAP_OUT_IN_PROGRESS:
	case VSWAP_STATE_SWAP_IN_IN_PROGRESS:
		return -EBUSY;
	default:
		return -EINVAL;
	}
	h->jp.t0_ms = now_ms();
	/* Recorded by the commit thread, as the swap-out's start (below). */
	state_set_lazy(h, VSWAP_STATE_TRIM_IN_PROGRESS, (struct vswap_transition){0, 0});
	int rc = job_start(&h->m.job, trim_job, h);
	if (rc < 0) {
		fail(h, "trim", rc);
		return rc;
	}
	h->m.job_kind = JOB_TRIM;
	return 0;
}

static int do_swap_out(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	switch (state_get(h)) {
	case VSWAP_STATE_PENDING:
		break;
	case VSWAP_STATE_SWAP_OUT_IN_PROGRESS:
	case VSWAP_STATE_ACTIVE:
		return -EALREADY;
	case VSWAP_STATE_TRIM_IN_PROGRESS:
	case VSWAP_STATE_SWAP_IN_IN_PROGRESS:
		return -EBUSY;
	default:
		return -EINVAL;
	}
	m->out_cursor = 0;
	protect_swap_out_start(h);
	m->out_pages = 0;
	m->out_t0_ms = now_ms();
	/* Recorded by the commit thread, not here: a commit on this thread
	 * holds h->lock through its sync (and through the write of a lazy
	 * commit in flight, which it joins), and every fault waits.  A crash
	 * before it lands leaves Pending recorded, true of the store until the
	 * first batch's commit, which carries the new state with it (a commit
	 * takes everything changed before its begin); a resume takes the two
	 * alike. */
	state_set_lazy(h, VSWAP_STATE_SWAP_OUT_IN_PROGRESS, (struct vswap_transition){0, 0});
	int rc = job_start(&m->job, swap_out_job, h);
	if (rc < 0) {
		fail(h, "swap-out", rc);
		return rc;
	}
	m->job_kind = JOB_SWAP_OUT;
	return 0;
}

static int start_swap_in(struct vswap_handler *h)
{
	protect_release(h); /* resident pages need no copy: let writes through */
	int rc = swap_in_prepare(h);
	if (rc == 0) {
		state_set(h, VSWAP_STATE_SWAP_IN_IN_PROGRESS, (struct vswap_transition){0, 0});
		rc = job_start(&h->m.job, swap_in_job, h);
	}
	if (rc < 0) {
		fail(h, "swap-in", rc);
		return rc;
	}
	h->m.job_kind = JOB_SWAP_IN;
	return 0;
}

static int do_disable(struct vswap_handler *h, bool slow)
{
	struct monitor *m = &h->m;
	enum vswap_state st = state_get(h);
	switch (st) {
	case VSWAP_STATE_READY:
		if (!slow)
			cleanup_finish(h);
		return -EALREADY;
	case VSWAP_STATE_SWAP_IN_IN_PROGRESS:
		m->slow_cleanup = slow;
		return 0;
	default:
		break;
	}
	/* A swap-out job ends its writes in flight and commits them. */
	job_stop(h, true);
	if (st == VSWAP_STATE_SWAP_OUT_IN_PROGRESS)
		flush_or_log(h, "disable");
	m->slow_cleanup = slow;
	return start_swap_in(h);
}

/* Exit: every page back in, regions unregistered, monitor ends. */
static int do_exit(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	m->exiting = true;
	enum vswap_state st = state_get(h);
	int rc = 0;
	if (st != VSWAP_STATE_READY) {
		/* A running swap-in is aborted and finished here: joined while
		 * it runs, its copies could wait forever for a REMOVE event
		 * only this thread reads.  Restarted from the first page, it
		 * skips what the job brought in. */
		job_stop(h, true);
		/* The faults whose reads are in flight are served first. */
		fault_io_drain(h, true);
		if (st == VSWAP_STATE_SWAP_OUT_IN_PROGRESS)
			flush_or_log(h, "exit");
		protect_release(h);
		rc = swap_in_prepare(h);
		if (rc == 0)
			rc = swap_in_job(NULL, h);
		if (rc == 0)
			rc = swap_in_poison_lost(h);
	}
	if (m->registered && rc == 0)
		leave_enabled(h, (struct vswap_transition){0, 0});
	else if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "exit: swap-in failed, regions stay registered: %s",
		     vswap_strerror(rc));
	cleanup_finish(h);
	return rc;
}

/* The state a detached store rests in, from what it holds: a restarted
 * handler (or fsck) reads it as where the pages are, not as work to resume. */
enum vswap_state resting_state(struct vswap_handler *h, enum vswap_state st)
{
	if (st == VSWAP_STATE_FAILED)
		return st;
	struct vswap_store_stats ss;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_stats(h->store, &ss);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return st;
	if (ss.pages_staged)
		return VSWAP_STATE_PENDING;
	return ss.pages_present || ss.pages_lost ? VSWAP_STATE_ACTIVE : VSWAP_STATE_READY;
}

/*
 * Detach: stop without swapping in.  A trim or swap-in is aborted (each
 * leaves consistent tables), a swap-out's written chunks are committed and
 * their staging freed, removes already queued reach the tables (a ballooned
 * range must not come back), and queued faults are dropped: unregistering
 * wakes their threads, which the caller has paused.  Then one commit with
 * the resting state, and the monitor ends.
 */
static int do_detach(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	m->exiting = true;
	enum vswap_state st = state_get(h);
	int rc = job_stop(h, true);
	if (rc < 0) /* what the job did is in the tables; say why it ended */
		hlog(h, VSWAP_LOG_WARN, "detach: job: %s", vswap_strerror(rc));
	rc = 0;
	if (st == VSWAP_STATE_SWAP_OUT_IN_PROGRESS)
		rc = swap_out_flush(h);
	/* Faults whose reads are in flight are dropped like the queued ones
	 * (their pages stay in the store); the reads must end before the
	 * buffers go. */
	fault_io_drain(h, false);
	if (m->registered) {
		for (unsigned i = 0; i < m->uffds.n; i++)
			if (!uffd_list_is_dead(&m->uffds, i))
				events_drain(h, i, true);
		m->ndeferred = 0;
		unregister_all(h);
	}
	pthread_mutex_lock(&h->slock);
	struct vswap_transition t = h->trans;
	pthread_mutex_unlock(&h->slock);
	state_set(h, resting_state(h, st), t);
	pthread_mutex_lock(&h->lock);
	int crc = vswap_store_commit(h->store); /* state_set logs; report it too */
	pthread_mutex_unlock(&h->lock);
	return rc < 0 ? rc : crc;
}

/*
 * Release: stop as a handler that died would, but tidily.  Whatever the
 * guest waits for stays with the kernel: faults read and not answered (in
 * flight, deferred or parked) are dropped unanswered, and nothing is
 * unregistered or woken, so their threads wait for the next handler's wake;
 * events not read stay queued.  A job ends where it is (its tables are
 * consistent at every step), a swap-out's written chunks are committed, and
 * one commit records the tables.  The recorded state is not touched: it is
 * what the next handler's resume reads.
 */
static int do_release(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	m->exiting = true;
	enum vswap_state st = state_get(h);
	int rc = job_stop(h, true);
	if (rc < 0)
		hlog(h, VSWAP_LOG_WARN, "release: job: %s", vswap_strerror(rc));
	rc = 0;
	if (st == VSWAP_STATE_SWAP_OUT_IN_PROGRESS)
		rc = swap_out_flush(h);
	fault_io_drain(h, false);
	m->ndeferred = 0;
	pthread_mutex_lock(&h->lock);
	int crc = vswap_store_commit(h->store);
	pthread_mutex_unlock(&h->lock);
	return rc < 0 ? rc : crc;
}

static int do_add_uffd(struct vswap_handler *h, int fd, uintptr_t *bases)
{
	struct monitor *m = &h->m;
	/* Registered first: a uffd in the list is always fully served. */
	if (m->registered) {
		int rc = regions_register(h, fd, bases);
		if (rc < 0)
			return rc;
	}
	unsigned i;
	int rc =
	    bases ? uffd_list_add_at(&m->uffds, fd, bases, &i) : uffd_list_add(&m->uffds, fd, &i);
	if (rc < 0) {
		if (m->registered)
			regions_unregister(h, fd, bases);
		return rc;
	}
	/* Protected like the others before it is served: until this returns
	 * its process waits (the fork protocol), so it wrote nothing. */
	if (h->wp.active && (rc = protect_uffd(h, i)) < 0) {
		regions_unregister(h, fd, bases);
		m->uffds.v[i].dead = true;
		m->gc_due = true;
		return rc;
	}
	if (m->uffds.v[i].dynamic)
		m->gc_due = true;
	atomic_store(&h->nuffds, m->uffds.n);
	/* Not registered: the lost pages are poisoned through it now (a
	 * registered uffd poisons them when they fault). */
	if (!m->registered)
		lost_poison_uffd(h, fd, bases);
	return 0;
}

static int gc_now(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	/* A GC moves uffds to other indices: the reads in flight name their
	 * waiters by index, so they complete first. */
	fault_io_drain(h, true);
	m->gc_due = false;
	m->rekeyed = true;
	int rc = uffd_list_gc(&m->uffds);
	atomic_store(&h->nuffds, m->uffds.n);
	if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "uffd gc: %s", vswap_strerror(rc));
	return rc;
}

static int cmd_run(struct vswap_handler *h, struct cmd *c)
{
	switch (c->type) {
	case CMD_ENABLE:
		return do_enable(h);
	case CMD_TRIM:
		return do_trim(h);
	case CMD_SWAP_OUT:
		return do_swap_out(h);
	case CMD_DISABLE:
		return do_disable(h, c->slow);
	case CMD_EXIT:
		return do_exit(h);
	case CMD_DETACH:
		return do_detach(h);
	case CMD_RELEASE:
		return do_release(h);
	case CMD_ADD_UFFD:
		return do_add_uffd(h, c->fd, c->bases);
	case CMD_SET_STATIC:
		return uffd_list_set_static(&h->m.uffds, c->count);
	case CMD_GC:
		return gc_now(h);
	case CMD_RESUME:
		return do_resume(h);
	case CMD_DISCARD: {
		/* Committed before it returns: the VMM punches next, and a
		 * handler that dies after the punch must not find the old
		 * copies in the index. */
		int rc = lost_discard(h, c->start, c->end);
		if (rc == 0) {
			pthread_mutex_lock(&h->lock);
			rc = vswap_store_commit(h->store);
			pthread_mutex_unlock(&h->lock);
		}
		return rc;
	}
	}
	return -EINVAL;
}

static void commands_run(struct vswap_handler *h)
{
	uint64_t v;
	if (read(h->m.cmd_efd, &v, sizeof(v)) < 0) {
		/* spurious wake-up: the queue says what to do */
	}
	for (;;) {
		pthread_mutex_lock(&h->qlock);
		struct cmd *c = h->qhead;
		if (c) {
			h->qhead = c->next;
			if (!h->qhead)
				h->qtail = NULL;
		}
		pthread_mutex_unlock(&h->qlock);
		if (!c)
			return;
		int rc = cmd_run(h, c);
		pthread_mutex_lock(&h->qlock);
		c->result = rc;
		c->done = true;
		pthread_cond_broadcast(&h->qdone);
		pthread_mutex_unlock(&h->qlock);
		if (h->m.exiting)
			return;
	}
}

static void job_done(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	/* Nothing to read: an abort already consumed this end. */
	if (!job_reset(&m->job) || m->job_kind == JOB_NONE)
		return;
	enum job_kind kind = m->job_kind;
	int rc = job_stop(h, false);
	if (kind == JOB_SWAP_IN && rc == 0)
		rc = swap_in_poison_lost(h);
	struct vswap_transition t;
	pthread_mutex_lock(&h->slock);
	t = h->trans;
	pthread_mutex_unlock(&h->slock);
	if (rc < 0) {
		if (kind == JOB_SWAP_OUT)
			swap_out_flush(h); /* what the job left ended */
		fail(h,
		     kind == JOB_TRIM	    ? "trim"
		     : kind == JOB_SWAP_OUT ? "swap-out"
					    : "swap-in",
		     rc);
		return;
	}
	if (kind == JOB_TRIM) /* lazily: a resume takes TrimInProgress as Pending */
		state_set_lazy(h, VSWAP_STATE_PENDING, t);
	else if (kind == JOB_SWAP_OUT) /* recorded and committed by the job */
		state_publish(h, VSWAP_STATE_ACTIVE,
			      (struct vswap_transition){h->m.out_pages, now_ms() - h->m.out_t0_ms});
	else
		leave_enabled(h, t);
}

static uint64_t pending_changes(struct vswap_handler *h)
{
	pthread_mutex_lock(&h->lock);
	uint64_t n = vswap_store_pending(h->store);
	pthread_mutex_unlock(&h->lock);
	return n;
}

static int loop_timeout(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	if (m->ndeferred)
		return 0;
	int t = -1;
	if (m->punch_due && !m->registered)
		return 0; /* the next piece at once, after any command */
	if (m->cleanup_active) {
		uint64_t now = now_ms();
		t = m->cleanup_next_ms > now ? (int)(m->cleanup_next_ms - now) : 0;
	}
	/* After a failed lazy commit no timer retries it (a failed sync
	 * sticks): the next batch of LAZY_COMMIT_PAGES or transition does. */
	if (m->registered && !committer_error(h) && (t < 0 || t > LAZY_COMMIT_MS) &&
	    pending_changes(h) > 0)
		t = LAZY_COMMIT_MS;
	if (m->registered && m->sweep_due) { /* the sweep's next look (sweep.c) */
		uint64_t now = now_ms();
		int s = m->sweep_next_ms > now ? (int)(m->sweep_next_ms - now) : 0;
		if (t < 0 || s < t)
			t = s;
	}
	return t;
}

/* What faults and removes changed reaches the index in batches, committed
 * and synced by the commit thread: no fault waits for it. */
static void lazy_commit(struct vswap_handler *h, uint64_t threshold)
{
	if (!h->m.registered || pending_changes(h) < threshold || committer_busy(h))
		return;
	committer_request(h);
}

static void idle_work(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	if (m->cleanup_active && now_ms() >= m->cleanup_next_ms) {
		cleanup_step(h, h->opts.cleanup_step_pages);
		m->cleanup_next_ms = now_ms() + h->opts.cleanup_interval_ms;
	}
	if (!m->registered)
		cleanup_punch(h);
	lazy_commit(h, 1);
}

static void serve_deferred(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	/* Serving one may defer more; take them in order. */
	for (unsigned i = 0; i < m->ndeferred; i++) {
		struct deferred_fault d = m->deferred[i];
		if (!m->registered || m->uffds.v[d.uffd].dead)
			continue;
		int rc = fault_dispatch(h, d.uffd, d.addr, d.wp);
		if (rc == -ESRCH) {
			m->uffds.v[d.uffd].dead = true;
			m->gc_due = true;
		}
	}
	m->ndeferred = 0;
	fault_io_flush(h);
}

static void dispatch(struct vswap_handler *h, uint64_t tok)
{
	struct monitor *m = &h->m;
	if (tok == TOKEN_CMD) {
		commands_run(h);
		return;
	}
	if (tok == TOKEN_JOB) {
		job_done(h);
		return;
	}
	if (tok == TOKEN_READS) {
		fault_io_reap(h, false);
		return;
	}
	/* Acquire: a test that lets the events go has set its hooks first. */
	if (atomic_load_explicit(&m->hold_events, memory_order_acquire)) {
		sched_yield(); /* level-triggered: reported again */
		return;
	}
	int i = uffd_list_index(&m->uffds, tok);
	if (i < 0) {
		hlog(h, VSWAP_LOG_ERROR, "unknown epoll token %llu", (unsigned long long)tok);
		return;
	}
	int rc = events_drain(h, (unsigned)i, false);
	if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "uffd %d: %s", i, vswap_strerror(rc));
}

void *monitor_main(void *arg)
{
	struct vswap_handler *h = arg;
	struct monitor *m = &h->m;
	struct epoll_event ev[32];
	/* Named for the operator's top -H and perf (15 characters at most). */
	pthread_setname_np(pthread_self(), "vswap-monitor");
	while (!m->exiting) {
		fault_io_flush(h); /* no read left queued while the monitor sleeps */
		int n = epoll_wait(m->epfd, ev, 32, loop_timeout(h));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			hlog(h, VSWAP_LOG_ERROR, "epoll: %s", vswap_strerror(-errno));
			break;
		}
		/* A GC re-keys the uffds: the rest of this batch's tokens may
		 * be stale, and epoll (level-triggered) reports them again. */
		m->rekeyed = false;
		for (int i = 0; i < n && !m->exiting && !m->rekeyed; i++)
			dispatch(h, ev[i].data.u64);
		serve_deferred(h);
		if (m->gc_due && !m->exiting)
			gc_now(h);
		if (m->exiting)
			break;
		sweep_unanswered(h);
		if (n == 0)
			idle_work(h);
		else
			lazy_commit(h, m->removed ? 1 : LAZY_COMMIT_PAGES);
		m->removed = false;
	}
	/* After an exit or detach (or a failed epoll), nobody would answer:
	 * the callers still queued get -ESHUTDOWN, later ones at once. */
	cmd_refuse_all(h);
	return NULL;
}
