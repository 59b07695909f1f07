/* SPDX-License-Identifier: MIT */
/*
 * The fault path's error handling:
 *  - the ERROR corruption policy: a page whose bytes fail their checksum is
 *    never served; the fault stays unresolved, the error reaches the status
 *    (last_error, checksum_failures) and the log, and no wrong byte reaches
 *    the guest, by fault or by swap-in (which fails instead of leaving a
 *    hole); the VMM then decides (here: it poisons the page);
 *  - EAGAIN: a UFFDIO_COPY attempted while a REMOVE event is queued and
 *    unread fails with EAGAIN; the handler reads the event, applies it and
 *    retries, and both the fault and the remove end correctly.
 * The test holds the handler's lock to put the monitor exactly where each
 * case needs it; every wait is for a condition, under a deadline.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
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

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

static struct vswap_status st_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st;
}

/* ---- a guest access on its own thread, joined when it ends ------------ */

/* Some task of this process waits on a userfault (a fault or an event). */
static bool any_in_userfault(void *arg)
{
	(void)arg;
	return hfx_task_waiting_in("userfault") != 0;
}

/* The monitor sleeps in epoll_wait with nothing to do. */
static bool monitor_idle(void *arg)
{
	(void)arg;
	return hfx_task_waiting_in("epoll") != 0;
}

struct err_wait {
	struct hfx *f;
};

static bool error_reported(void *arg)
{
	struct err_wait *w = arg;
	return st_of(w->f).last_error != 0;
}

static void corrupt_error_policy(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	struct vswap_handler_opts o = {.on_corrupt = VSWAP_CORRUPT_ERROR};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_corrupt_slot(&f, 0, 2), 0);
	assert_int_equal(hfx_corrupt_slot(&f, 0, 5), 0);

	/* The fault on page 2: verified, failed, reported, left waiting. */
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 2, 60000), 0);
	struct err_wait w = {&f};
	assert_true(hfx_wait_for(error_reported, &w));
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.last_error, -EBADMSG);
	assert_int_equal(st.metrics.checksum_failures, 1);
	assert_int_equal(st.metrics.poisoned_pages, 0);
	assert_int_equal(st.state, VSWAP_STATE_ACTIVE);
	/* Still blocked, not resolved: the reader may be between a wake and its
	 * next fault when looked at, so it is waited for, not sampled once. */
	assert_true(hfx_wait_for(any_in_userfault, NULL));
	assert_false(atomic_load(&r.done));
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 2, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);		   /* recorded for vswap-fsck */
	assert_int_equal(hfx_page_byte(&f, 0, 3), hfx_byte_of(3)); /* faults still served */

	/* The swap-in meets page 5: it fails rather than leave a hole, the
	 * regions stay registered, and the pages after it are still served. */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_FAILED), 0);
	st = st_of(&f);
	assert_int_equal(st.last_error, -EBADMSG);
	assert_int_equal(st.metrics.checksum_failures, 2);
	assert_int_equal(st.metrics.poisoned_pages, 0);
	for (uint64_t p = 0; p < 8; p++)
		if (p != 2 && p != 5)
			assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_false(atomic_load(&r.done));

	/* The VMM decides: here it poisons page 2.  The waiting access gets
	 * SIGBUS on its first byte; not one byte of the page was delivered. */
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		/* Without UFFDIO_POISON the access stays blocked until the
		 * handler goes; wake it with a clean zero page instead. */
		skip();
	}
	assert_int_equal(
	    uffd_poison(f.h->main_uffd, (uintptr_t)hfx_addr(&f, 0, 2), f.page_size, true), 0);
	hfx_reader_join(&r);
	assert_int_equal(r.rc, -EFAULT);
	assert_int_equal(r.bus_at, 0);
	for (size_t i = 0; i < f.page_size; i++)
		if (r.buf[i] != 0xaa)
			fail_msg("byte %zu of a corrupt page reached the guest: %#x", i, r.buf[i]);
	free(r.buf);
	/* Exit cannot swap page 5 in under this policy: it says so. */
	assert_int_equal(hfx_teardown(&f), -EBADMSG);
}

/* ---- EAGAIN: a COPY while a REMOVE event waits unread ------------------- */

struct drained {
	struct hfx *f;
};

/* The fault's message was read (by the monitor, now waiting for the lock
 * the test holds) while its thread still waits on it. */
static bool fault_read(void *arg)
{
	struct drained *d = arg;
	struct pollfd p = {.fd = d->f->h->main_uffd, .events = POLLIN};
	return any_in_userfault(NULL) && poll(&p, 1, 0) == 0;
}

static void eagain_retried(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0); /* every page staged */

	/* Hold the monitor: taken while it sleeps in epoll (nothing pending
	 * after the enable's commit), it reads the fault, then waits for the
	 * lock in fault_serve(). */
	assert_true(hfx_wait_for(monitor_idle, NULL));
	pthread_mutex_lock(&f.h->lock);
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 1, 60000), 0);
	struct drained d = {&f};
	if (!hfx_wait_for(fault_read, &d)) {
		pthread_mutex_unlock(&f.h->lock);
		fail_msg("the monitor never read the fault");
	}
	/* Balloon pages 4-5: the REMOVE event is queued and its thread waits
	 * until it is read, which only the held monitor can do. */
	struct hfx_remover m;
	assert_int_equal(hfx_remover_start(&m, hfx_addr(&f, 0, 4), 2 * f.page_size), 0);
	if (!hfx_wait_for(hfx_remover_blocked, &m)) {
		pthread_mutex_unlock(&f.h->lock);
		fail_msg("the remove never waited on its event");
	}
	uint64_t before = f.h->c.eagain_retries;
	pthread_mutex_unlock(&f.h->lock);

	/* The COPY fails with EAGAIN, the event is read and applied, the
	 * fault retried and served. */
	hfx_reader_join(&r);
	pthread_join(m.t, NULL);
	assert_int_equal(r.rc, 0);
	assert_int_equal(m.rc, 0);
	for (size_t i = 0; i < f.page_size; i++)
		if (r.buf[i] != hfx_byte_of(1))
			fail_msg("byte %zu of page 1: %#x", i, r.buf[i]);
	free(r.buf);
	pthread_mutex_lock(&f.h->lock);
	uint64_t retries = f.h->c.eagain_retries - before;
	pthread_mutex_unlock(&f.h->lock);
	assert_true(retries >= 1);
	struct vswap_page_info pi;
	for (uint64_t p = 4; p < 6; p++) { /* removed: staging dropped, zeros */
		assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + p, &pi), 0);
		assert_false(pi.staged);
		assert_int_equal(hfx_page_byte(&f, 0, p), 0);
	}
	assert_int_equal(hfx_page_byte(&f, 0, 6), hfx_byte_of(6));
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.last_error, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_errors");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(corrupt_error_policy),
	    cmocka_unit_test(eagain_retried),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
