/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for handler bugs a review found:
 *  - exit_drains_remove_*: a REMOVE event queued while the monitor itself
 *    runs the exit's swap-in (or waits for the swap-in job) must be read by
 *    it, or every copy fails with EAGAIN forever;
 *  - flush_keeps_restaged: a written run left over by a failed commit must
 *    not clear the staging mark of a page faulted in, changed and staged
 *    again since (it would read as zeros);
 *  - poison_eexist_wakes: a fault on a page poisoned meanwhile without a
 *    wake (by the swap-in) is woken, and the page counted once;
 *  - lost_poisoned_everywhere: after a disable, a lost page is SIGBUS in
 *    another process too (poison markers are per page table), not zeros;
 *  - poison_lost_drains: the exit's poisoning of lost pages retries after
 *    reading a REMOVE event that made it fail with EAGAIN;
 *  - sticky_sync_error: after a failed sync (sticky in the store) a disable
 *    still completes once every page is resident (the error reported), and
 *    the lazy commit neither retries on a timer nor logs more than once;
 *  - commands_after_exit: a command queued behind an exit is answered
 *    -ESHUTDOWN, and one submitted after it is refused at once;
 *  - create_keeps_resting_state: a handler created over a detached store
 *    leaves its recorded resting state alone until enable;
 *  - memfd_offset_stays: the handler's SEEK_DATA / SEEK_HOLE scans (enable,
 *    status, a resume's reconcile) leave the file offset of the caller's
 *    memfd where the caller put it;
 * Each test puts the handler exactly where the bug bit through the job hook
 * or the handler's lock; every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "handler/internal.h"
#include "store/internal.h"
#include "tests/helpers/handler_fixture.h"

/* ---- a thread that balloons a range (MADV_REMOVE) ------------------------ */

/* Its REMOVE event is queued and unread: it waits until someone reads it. */
static bool remover_waits(void *arg)
{
	return hfx_remover_done(arg) || hfx_remover_blocked(arg);
}

/* ---- a destroy (or detach) on its own thread, so a hang fails the test ---- */

struct closer {
	pthread_t t;
	struct vswap_handler *h;
	bool detach;
	int rc;
	atomic_bool done;
};

static void *closer_main(void *arg)
{
	struct closer *c = arg;
	c->rc = c->detach ? vswap_handler_detach(c->h) : vswap_handler_destroy(c->h);
	atomic_store(&c->done, true);
	return NULL;
}

static void closer_start(struct closer *c, struct vswap_handler *h, bool detach)
{
	*c = (struct closer){.h = h, .detach = detach};
	atomic_init(&c->done, false);
	assert_int_equal(pthread_create(&c->t, NULL, closer_main, c), 0);
}

static bool closer_done(void *arg)
{
	return atomic_load(&((struct closer *)arg)->done);
}

/* ---- 1: exit with a REMOVE event nobody but the monitor can read -------- */

struct remove_hook {
	struct hfx *f;
	bool wait_abort; /* the job thread: wait until the exit aborts it */
	unsigned calls;
	atomic_bool entered;
	struct hfx_remover m;
	bool started;
};

static bool job_abort_seen(void *arg)
{
	struct remove_hook *k = arg;
	return atomic_load(&k->f->h->m.job.abort);
}

/* Between the swap-in's first and second chunk: balloon pages 6-7 and
 * return once their REMOVE event waits to be read. */
static void remove_hook(void *ctx)
{
	struct remove_hook *k = ctx;
	if (k->calls++)
		return;
	atomic_store(&k->entered, true);
	if (k->wait_abort && !hfx_wait_for(job_abort_seen, k))
		return; /* the exit never aborted the job: the test fails later */
	assert_int_equal(hfx_remover_start(&k->m, hfx_addr(k->f, 0, 6), 2 * k->f->page_size), 0);
	k->started = true;
	hfx_wait_for(remover_waits, &k->m);
}

static bool hook_entered(void *arg)
{
	return atomic_load(&((struct remove_hook *)arg)->entered);
}

static void exit_drains_remove(bool during_job)
{
	struct hfx f;
	const size_t pages[1] = {8};
	struct vswap_handler_opts o = {.chunk_pages = 2, .enable_mode = VSWAP_ENABLE_COPY};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0); /* every page staged */

	struct remove_hook k = {.f = &f, .wait_abort = during_job};
	atomic_init(&k.entered, false);
	f.h->job_hook_ctx = &k;
	f.h->job_hook = remove_hook;
	if (during_job) {
		/* The swap-in job runs and stops in the hook until the exit
		 * aborts it. */
		assert_int_equal(vswap_handler_disable(f.h, false), 0);
		assert_true(hfx_wait_for(hook_entered, &k));
	}
	struct closer c;
	closer_start(&c, f.h, false);
	if (!hfx_wait_for(closer_done, &c))
		fail_msg("destroy hangs: the REMOVE event is never read");
	pthread_join(c.t, NULL);
	assert_int_equal(c.rc, 0);
	f.h = NULL;
	assert_true(k.started);
	pthread_join(k.m.t, NULL);
	assert_int_equal(k.m.rc, 0);
	/* Unregistered: plain memory now.  The ballooned pages are holes. */
	for (uint64_t p = 0; p < 8; p++) {
		const uint8_t *a = hfx_addr(&f, 0, p);
		uint8_t want = p >= 6 ? 0 : hfx_byte_of(p);
		for (size_t i = 0; i < f.page_size; i++)
			if (a[i] != want)
				fail_msg("page %llu byte %zu: %#x, want %#x", (unsigned long long)p,
					 i, a[i], want);
	}
	assert_int_equal(hfx_teardown(&f), 0);
}

static void exit_drains_remove_sync(void **state)
{
	(void)state;
	exit_drains_remove(false);
}

static void exit_drains_remove_job(void **state)
{
	(void)state;
	exit_drains_remove(true);
}

/* ---- 2: a leftover written run and a page staged again ---------------- */

/* Queue @a then @b at once (the monitor runs them back to back) and wait
 * for both answers. */
static void submit_pair(struct vswap_handler *h, struct cmd *a, struct cmd *b)
{
	a->done = b->done = false;
	a->next = b;
	b->next = NULL;
	pthread_mutex_lock(&h->qlock);
	if (h->qtail)
		h->qtail->next = a;
	else
		h->qhead = a;
	h->qtail = b;
	pthread_mutex_unlock(&h->qlock);
	uint64_t one = 1;
	assert_int_equal(write(h->m.cmd_efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_mutex_lock(&h->qlock);
	while (!a->done || !b->done)
		pthread_cond_wait(&h->qdone, &h->qlock);
	pthread_mutex_unlock(&h->qlock);
}

static void flush_keeps_restaged(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	/* Page 1 comes back, changes, and is staged again (its slot stale). */
	assert_int_equal(hfx_page_byte(&f, 0, 1), hfx_byte_of(1));
	assert_int_equal(hfx_fill(&f, 0, 1, 0x99), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 1, &pi), 0);
	assert_true(pi.staged);
	assert_int_equal(pi.state, VSWAP_PAGE_STALE);

	/* What a failed commit of the first swap-out leaves: its run still
	 * listed (the monitor touches the list only under the lock). */
	pthread_mutex_lock(&f.h->lock);
	assert_true(f.h->m.cap_unclean >= 1);
	f.h->m.unclean[0] = (struct run){f.first[0], 4};
	f.h->m.nunclean = 1;
	pthread_mutex_unlock(&f.h->lock);

	/* A swap-out, and a disable before its first chunk: the disable's
	 * flush succeeds and must leave page 1 staged. */
	struct cmd out = {.type = CMD_SWAP_OUT}, dis = {.type = CMD_DISABLE};
	submit_pair(f.h, &out, &dis);
	assert_int_equal(out.result, 0);
	assert_int_equal(dis.result, 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0x99);
	for (uint64_t p = 0; p < 4; p++)
		if (p != 1)
			assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- 3: UFFDIO_POISON says EEXIST: the fault must still be woken ------- */

static bool monitor_idle(void *arg)
{
	(void)arg;
	return hfx_task_waiting_in("epoll");
}

/* A fault waits and its message was read (by the monitor, now waiting for
 * the lock the test holds). */
static bool fault_read(void *arg)
{
	struct hfx *f = arg;
	struct pollfd p = {.fd = f->h->main_uffd, .events = POLLIN};
	return hfx_task_waiting_in("userfault") && poll(&p, 1, 0) == 0;
}

static void poison_eexist_wakes(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	struct vswap_handler_opts o = {.on_corrupt = VSWAP_CORRUPT_POISON};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_corrupt_slot(&f, 0, 2), 0);

	/* The monitor reads the fault on page 2 and waits for the lock;
	 * meanwhile the page is poisoned without a wake, as the swap-in
	 * does. */
	assert_true(hfx_wait_for(monitor_idle, NULL));
	pthread_mutex_lock(&f.h->lock);
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 2, 0), 0);
	if (!hfx_wait_for(fault_read, &f)) {
		pthread_mutex_unlock(&f.h->lock);
		fail_msg("the monitor never read the fault");
	}
	int prc = uffd_poison(f.h->main_uffd, (uintptr_t)hfx_addr(&f, 0, 2), f.page_size, false);
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(prc, 0);
	pthread_join(r.t, NULL);
	assert_int_equal(r.rc, -EFAULT); /* SIGBUS, not a timeout */
	free(r.buf);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.metrics.poisoned_pages, 0); /* the poisoner counts it */
	assert_int_equal(hfx_page_byte(&f, 0, 3), hfx_byte_of(3));
	assert_int_equal(hfx_teardown(&f), -EBADMSG); /* a page is lost */
}

/* ---- 4: a lost page after disable, read by another process ------------ */

/* Make page 2 lost: its slot corrupted, then faulted by this process
 * (poisoned here).  Returns false if UFFDIO_POISON is unsupported. */
static bool lose_page_2(struct hfx *f)
{
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_corrupt_slot(f, 0, 2), 0);
	assert_int_equal(hfx_page_byte(f, 0, 2), -3); /* SIGBUS */
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f->h, f->first[0] + 2, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	return true;
}

static void child_bus(int sig)
{
	(void)sig;
	_exit(0);
}

/* Plain accesses (no threads after fork: ThreadSanitizer refuses them);
 * the SIGBUS expected on page 2 ends the child with 0. */
static int child_lost_is_sigbus(const struct hfx *f, void *arg)
{
	(void)arg;
	if (*(const volatile uint8_t *)hfx_addr(f, 0, 3) != hfx_byte_of(3))
		return 2;
	struct sigaction sa = {.sa_handler = child_bus};
	sigaction(SIGBUS, &sa, NULL);
	uint8_t b = *(const volatile uint8_t *)hfx_addr(f, 0, 2);
	return b == 0 ? 3 : 4;
}

static void lost_poisoned_everywhere(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	struct vswap_handler_opts o = {.on_corrupt = VSWAP_CORRUPT_POISON};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	struct hfx_child c;
	assert_int_equal(hfx_child_start(&f, child_lost_is_sigbus, NULL, &c), 0);
	lose_page_2(&f);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	/* Unregistered: the child reads its own page tables only. */
	assert_int_equal(hfx_child_go(&c), 0);
	int rc = hfx_child_wait(&c, 0);
	if (rc == 3)
		fail_msg("the lost page reads as zeros in the other process");
	assert_int_equal(rc, 0);
	assert_int_equal(hfx_page_byte(&f, 0, 2), -3);
	assert_int_equal(hfx_teardown(&f), -EBADMSG); /* a page is lost */
}

/* ---- 6: the exit's poisoning of lost pages meets a REMOVE event ------- */

struct last_chunk_hook {
	struct hfx *f;
	struct hfx_remover m;
	bool started;
};

/* After the swap-in's last chunk (on the monitor, exiting): balloon page 0
 * and return once its REMOVE event waits; the poisoning comes next. */
static void last_chunk_hook(void *ctx)
{
	struct last_chunk_hook *k = ctx;
	struct vswap_handler *h = k->f->h;
	if (k->started || !h->jp.staged_done || h->jp.cursor < h->total_pages)
		return;
	assert_int_equal(hfx_remover_start(&k->m, hfx_addr(k->f, 0, 0), k->f->page_size), 0);
	k->started = true;
	hfx_wait_for(remover_waits, &k->m);
}

static void poison_lost_drains(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	struct vswap_handler_opts o = {.on_corrupt = VSWAP_CORRUPT_POISON};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	lose_page_2(&f);
	struct last_chunk_hook k = {.f = &f};
	f.h->job_hook_ctx = &k;
	f.h->job_hook = last_chunk_hook;
	struct closer c;
	closer_start(&c, f.h, false);
	if (!hfx_wait_for(closer_done, &c))
		fail_msg("destroy hangs");
	pthread_join(c.t, NULL);
	f.h = NULL;
	assert_true(k.started);
	pthread_join(k.m.t, NULL);
	assert_int_equal(c.rc, -EBADMSG); /* page 2 is lost */
	assert_int_equal(k.m.rc, 0);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 0); /* ballooned */
	assert_int_equal(hfx_page_byte(&f, 0, 1), hfx_byte_of(1));
	assert_int_equal(hfx_page_byte(&f, 0, 2), -3);
	assert_int_equal(hfx_page_byte(&f, 0, 3), hfx_byte_of(3));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- 5: a failed sync is sticky: disable completes, lazy commit quiet -- */

static atomic_int lazy_logs;

static void count_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx, (void)lvl;
	if (strstr(msg, "lazy commit"))
		atomic_fetch_add(&lazy_logs, 1);
}

static bool lazy_logged(void *arg)
{
	(void)arg;
	return atomic_load(&lazy_logs) > 0;
}

/* The monitor sleeps in epoll_wait without a timeout: its syscall's fourth
 * argument (the timeout; epoll_pwait's too) is -1. */
static bool monitor_waits_forever(void *arg)
{
	(void)arg;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		char path[300], buf[256];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/wchan", e->d_name);
		FILE *fp = fopen(path, "re");
		if (!fp)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[n] = 0;
		if (!strstr(buf, "epoll"))
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
		fp = fopen(path, "re");
		if (!fp)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[n] = 0;
		unsigned long long nr, a1, a2, a3, a4;
		if (sscanf(buf, "%llu %llx %llx %llx %llx", &nr, &a1, &a2, &a3, &a4) == 5)
			found = (int)a4 == -1;
	}
	closedir(d);
	return found;
}

static void sticky_sync_error(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	atomic_store(&lazy_logs, 0);
	struct vswap_handler_opts o = {.log = count_log};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);

	/* The swap file's sync fails: sticky until the store is reopened. */
	pthread_mutex_lock(&f.h->lock);
	f.h->store->sync_error = -EIO;
	pthread_mutex_unlock(&f.h->lock);
	/* A fault leaves a change to commit: the lazy commit fails once,
	 * logs once, and no timer retries it. */
	assert_int_equal(hfx_page_byte(&f, 0, 0), hfx_byte_of(0));
	assert_true(hfx_wait_for(lazy_logged, NULL));
	if (!hfx_wait_for(monitor_waits_forever, NULL))
		fail_msg("the monitor keeps retrying the lazy commit on a timer");
	assert_int_equal(atomic_load(&lazy_logs), 1);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.last_error, -EIO);

	/* Disable: every page comes back; the final commit's error is
	 * reported, the handler is Ready. */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.state, VSWAP_STATE_READY);
	assert_int_equal(st.last_error, -EIO);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- 7: commands behind an exit ---------------------------------------- */

struct gc_call {
	struct vswap_handler *h;
	int rc;
	atomic_bool done;
};

static void *gc_main(void *arg)
{
	struct gc_call *g = arg;
	g->rc = vswap_handler_gc(g->h);
	atomic_store(&g->done, true);
	return NULL;
}

static bool gc_done(void *arg)
{
	return atomic_load(&((struct gc_call *)arg)->done);
}

static void commands_after_exit(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	struct vswap_handler *h = f.h;
	/* An exit and a command behind it, queued at once. */
	struct cmd ex = {.type = CMD_EXIT}, gc = {.type = CMD_GC};
	ex.next = &gc;
	pthread_mutex_lock(&h->qlock);
	assert_null(h->qhead);
	h->qhead = &ex;
	h->qtail = &gc;
	h->waiters += 2; /* as two callers inside cmd_submit */
	pthread_mutex_unlock(&h->qlock);
	uint64_t one = 1;
	assert_int_equal(write(h->m.cmd_efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HFX_DEADLINE_MS / 1000;
	pthread_mutex_lock(&h->qlock);
	int wrc = 0;
	while ((!ex.done || !gc.done) && wrc == 0)
		wrc = pthread_cond_timedwait(&h->qdone, &h->qlock, &until);
	bool answered = ex.done && gc.done;
	if (answered)
		h->waiters -= 2;
	pthread_mutex_unlock(&h->qlock);
	if (!answered)
		fail_msg("the command behind the exit was never answered");
	assert_int_equal(ex.result, 0);
	assert_int_equal(gc.result, -ESHUTDOWN);
	/* A command now is refused at once. */
	struct gc_call g = {.h = h};
	atomic_init(&g.done, false);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, gc_main, &g), 0);
	if (!hfx_wait_for(gc_done, &g))
		fail_msg("a command after the exit hangs");
	pthread_join(t, NULL);
	assert_int_equal(g.rc, -ESHUTDOWN);
	/* Destroy: refused too, joins the ended monitor, frees. */
	assert_int_equal(vswap_handler_destroy(h), -ESHUTDOWN);
	f.h = NULL;
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- 8: create keeps the resting state a detach recorded -------------- */

static void create_keeps_resting_state(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	assert_int_equal(vswap_store_state(f.store), VSWAP_STATE_ACTIVE);
	assert_int_equal(hfx_start(&f, NULL), 0);
	assert_int_equal(vswap_store_state(f.store), VSWAP_STATE_ACTIVE);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_store_state(f.store), VSWAP_STATE_PENDING);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* The caller's memfd offset, which the handler must not move. */
static off_t memfd_offset(const struct hfx *f)
{
	return lseek(f->memfd, 0, SEEK_CUR);
}

static void memfd_offset_stays(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {64};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	/* Holes between resident pages: every scan seeks more than once. */
	for (uint64_t p = 0; p < 64; p += 3)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	const off_t at = 5 * (off_t)f.page_size + 7;
	assert_int_equal(lseek(f.memfd, at, SEEK_SET), at);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(memfd_offset(&f), at);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(memfd_offset(&f), at);
	/* Two pages back in, then detached: the resume reconciles them. */
	assert_int_equal(hfx_page_byte(&f, 0, 3), hfx_byte_of(3));
	assert_int_equal(hfx_page_byte(&f, 0, 6), hfx_byte_of(6));
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	assert_int_equal(hfx_start(&f, NULL), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(memfd_offset(&f), at);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < 64; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), p % 3 ? 0 : hfx_byte_of(p));
	assert_int_equal(memfd_offset(&f), at);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- a fault and a remove of its page read together ------------------- */

struct read_race {
	struct hfx_remover *rm;
	atomic_bool timed_out;
};

/* On the monitor, right after its read: the remover, let go by that read,
 * punches its page before anything read is handled. */
static void read_hook(void *ctx)
{
	struct read_race *k = ctx;
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!hfx_remover_done(k->rm)) {
		if (hfx_now_ms() > until) {
			atomic_store(&k->timed_out, true);
			return;
		}
		sched_yield();
	}
}

static bool reader_waits(void *arg)
{
	(void)arg;
	return hfx_task_waiting_in("userfault") != 0;
}

/* A staged page's fault and a remove of that page come in one read (the
 * kernel hands out the fault first).  Serving the fault first copied the
 * staged bytes into the hole the remover had already punched: the guest
 * read back what it removed.  The remove is applied first now, and the page
 * reads as zeros. */
static void fault_and_remove_read_together(void **state)
{
	(void)state;
	enum { PAGES = 8, VICTIM_PAGE = 3 };
	struct hfx f;
	const size_t pages[1] = {PAGES};
	const struct vswap_handler_opts o = {.enable_mode = VSWAP_ENABLE_COPY};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < PAGES; p++)
		memset(hfx_addr(&f, 0, p), (int)(0x40 + p), f.page_size);
	assert_int_equal(vswap_handler_enable(f.h), 0); /* staged, out of guest memory */
	atomic_store(&f.h->m.hold_events, true);
	struct hfx_reader rd;
	assert_int_equal(hfx_reader_start(&rd, &f, VICTIM_PAGE, HFX_DEADLINE_MS), 0);
	assert_true(hfx_wait_for(reader_waits, NULL));
	struct hfx_remover rm;
	assert_int_equal(hfx_remover_start(&rm, hfx_addr(&f, 0, VICTIM_PAGE), f.page_size), 0);
	if (!hfx_wait_for(hfx_remover_blocked, &rm))
		fail_msg("the remover never waited on its event (done %d, madvise %d)",
			 (int)atomic_load(&rm.done), rm.rc);
	struct read_race k = {.rm = &rm};
	atomic_init(&k.timed_out, false);
	f.h->m.read_hook_ctx = &k;
	f.h->m.read_hook = read_hook;
	atomic_store(&f.h->m.hold_events, false);
	assert_true(hfx_wait_for(hfx_remover_done, &rm));
	pthread_join(rm.t, NULL);
	hfx_reader_join(&rd);
	/* The hook stays set (it returns at once from now on): the monitor
	 * reads it without a lock until the teardown joins it. */
	free(rd.buf);
	assert_int_equal(rm.rc, 0);
	assert_false(atomic_load(&k.timed_out));
	assert_int_equal(hfx_page_byte(&f, 0, VICTIM_PAGE), 0); /* every byte */
	for (uint64_t p = 0; p < PAGES; p++)
		if (p != VICTIM_PAGE)
			assert_int_equal(hfx_page_byte(&f, 0, p), 0x40 + p);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_fixes");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(exit_drains_remove_sync),
	    cmocka_unit_test(exit_drains_remove_job),
	    cmocka_unit_test(flush_keeps_restaged),
	    cmocka_unit_test(poison_eexist_wakes),
	    cmocka_unit_test(lost_poisoned_everywhere),
	    cmocka_unit_test(poison_lost_drains),
	    cmocka_unit_test(sticky_sync_error),
	    cmocka_unit_test(commands_after_exit),
	    cmocka_unit_test(create_keeps_resting_state),
	    cmocka_unit_test(memfd_offset_stays),
	    cmocka_unit_test(fault_and_remove_read_together),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
