/* SPDX-License-Identifier: MIT */
/*
 * Faults served from the swap file with their reads in flight (io_uring on
 * the monitor, handler/fault_io.c).  The handler's test hook holds
 * completed reads unhandled, so each test puts a read exactly where it
 * wants it:
 *  - many_in_flight: faults on different pages from several threads are
 *    all submitted before any completes, and each gets its own bytes;
 *  - zero_not_behind_read: a fault on a zero page is served while a
 *    swap-file read is held in flight;
 *  - redundant_threads / redundant_process: the same page faulted from
 *    several threads and from another process while its read is in flight:
 *    one read, every waiter served; redundant_other_address: the same
 *    through a uffd whose process maps the guest elsewhere, each served at
 *    its own address;
 *  - corrupt_waiters_poisoned: a read that fails its checksum poisons the
 *    page for every waiter, counted once;
 *  - remove_before_completion: a remove event of the page read before its
 *    read completes: the read is never copied in, the page reads zeros;
 *  - eagain_other_page / eagain_same_page: the completion's copy meets a
 *    remove event queued unread on its uffd (of another page: served after
 *    reading it; of the same page: dropped, zeros);
 *  - exit_serves_in_flight / detach_drops_in_flight: an exit serves the
 *    faults waiting on reads; a detach drops them and the page stays
 *    present in the store;
 *  - sequential_reads_ahead / scattered_bypass_cache: faults of a pass in
 *    page order read through the page cache (the kernel reads the next
 *    slots ahead), scattered faults read O_DIRECT (nothing cached);
 *  - cached_reads_inline_verified: the pass's faults whose pages the cache
 *    holds are read at once, off the ring, and verified all the same: a
 *    cached copy that fails its checksum is poisoned, never mapped.
 * Every wait is bounded.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

#define PAGES 16

/* A handler over PAGES pages whose faults read on the ring. */
static void setup_ring(struct hfx *f, const struct vswap_handler_opts *o)
{
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup(f, pages, 1, o), 0);
	if (!f->h->m.fio.have_ring) {
		hfx_teardown(f);
		skip(); /* io_uring refused here: faults read synchronously */
	}
}

/* Pages 0..PAGES-2 hold hfx_byte_of(p) and are swapped out (present in the
 * swap file, not resident); the last page was never written (zero). */
static void swap_out_all(struct hfx *f)
{
	for (uint64_t p = 0; p < PAGES - 1; p++)
		assert_int_equal(hfx_fill(f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
}

static void setup_swapped(struct hfx *f, const struct vswap_handler_opts *o)
{
	setup_ring(f, o);
	swap_out_all(f);
}

static void hold(struct hfx *f, bool on)
{
	atomic_store(&f->h->m.fio.hold, on);
	if (!on) { /* the held completions were signalled already: signal again */
		uint64_t one = 1;
		assert_int_equal(write(f->h->m.fio.io.efd, &one, sizeof(one)),
				 (ssize_t)sizeof(one));
	}
}

struct count_wait {
	struct hfx *f;
	unsigned busy;
	uint64_t redundant;
};

static bool reads_busy(void *arg)
{
	struct count_wait *w = arg;
	pthread_mutex_lock(&w->f->h->lock);
	bool ok = w->f->h->m.fio.busy >= w->busy;
	pthread_mutex_unlock(&w->f->h->lock);
	return ok;
}

static bool redundant_seen(void *arg)
{
	struct count_wait *w = arg;
	pthread_mutex_lock(&w->f->h->lock);
	bool ok = w->f->h->c.redundant >= w->redundant;
	pthread_mutex_unlock(&w->f->h->lock);
	return ok;
}

static void wait_busy(struct hfx *f, unsigned n)
{
	struct count_wait w = {.f = f, .busy = n};
	if (!hfx_wait_for(reads_busy, &w))
		fail_msg("%u reads never were in flight together", n);
}

static void check_page(const struct hfx_reader *r, uint8_t want)
{
	assert_int_equal(r->rc, 0);
	for (size_t i = 0; i < r->f->page_size; i++)
		if (r->buf[i] != want)
			fail_msg("page %llu byte %zu: %#x, want %#x", (unsigned long long)r->page,
				 i, r->buf[i], want);
}

static struct vswap_status st_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st;
}

static uint64_t bytes_read(struct hfx *f)
{
	struct vswap_store_stats ss;
	pthread_mutex_lock(&f->h->lock);
	assert_int_equal(vswap_store_stats(f->store, &ss), 0);
	pthread_mutex_unlock(&f->h->lock);
	return ss.bytes_read;
}

/* ---- many reads in flight ------------------------------------------------ */

static void many_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	setup_swapped(&f, NULL);
	hold(&f, true);
	enum { N = 8 };
	struct hfx_reader r[N];
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(hfx_reader_start(&r[i], &f, i, 60000), 0);
	/* All eight submitted, none handled: the monitor went on after each. */
	wait_busy(&f, N);
	assert_int_equal(atomic_load(&f.h->m.fio.taken), 0);
	hold(&f, false);
	for (unsigned i = 0; i < N; i++) {
		hfx_reader_join(&r[i]);
		check_page(&r[i], hfx_byte_of(i));
		free(r[i].buf);
	}
	assert_int_equal(st_of(&f).metrics.copied_from_file_pages, N);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void zero_not_behind_read(void **state)
{
	(void)state;
	struct hfx f;
	setup_swapped(&f, NULL);
	hold(&f, true);
	struct hfx_reader a, z;
	assert_int_equal(hfx_reader_start(&a, &f, 3, 60000), 0);
	wait_busy(&f, 1);
	/* The swap-file read stays in flight; the zero page is served now. */
	assert_int_equal(hfx_reader_start(&z, &f, PAGES - 1, 60000), 0);
	hfx_reader_join(&z);
	check_page(&z, 0);
	assert_false(atomic_load(&a.done));
	hold(&f, false);
	hfx_reader_join(&a);
	check_page(&a, hfx_byte_of(3));
	free(a.buf);
	free(z.buf);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- redundant faults ---------------------------------------------------- */

static void redundant_threads(void **state)
{
	(void)state;
	struct hfx f;
	setup_swapped(&f, NULL);
	uint64_t read0 = bytes_read(&f);
	hold(&f, true);
	enum { N = 4 };
	struct hfx_reader r[N];
	assert_int_equal(hfx_reader_start(&r[0], &f, 5, 60000), 0);
	wait_busy(&f, 1);
	pthread_mutex_lock(&f.h->lock);
	uint64_t red0 = f.h->c.redundant;
	pthread_mutex_unlock(&f.h->lock);
	for (unsigned i = 1; i < N; i++)
		assert_int_equal(hfx_reader_start(&r[i], &f, 5, 60000), 0);
	/* Each later fault joins the read in flight. */
	struct count_wait w = {.f = &f, .redundant = red0 + N - 1};
	assert_true(hfx_wait_for(redundant_seen, &w));
	pthread_mutex_lock(&f.h->lock);
	assert_int_equal(f.h->m.fio.busy, 1);
	pthread_mutex_unlock(&f.h->lock);
	hold(&f, false);
	for (unsigned i = 0; i < N; i++) {
		hfx_reader_join(&r[i]);
		check_page(&r[i], hfx_byte_of(5));
		free(r[i].buf);
	}
	assert_int_equal(bytes_read(&f) - read0, f.page_size); /* one read */
	assert_int_equal(st_of(&f).metrics.copied_from_file_pages, 1);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* In the other process: plain accesses (no threads after fork). */
static int child_reads_page5(const struct hfx *f, void *arg)
{
	(void)arg;
	const volatile uint8_t *p = hfx_addr(f, 0, 5);
	for (size_t i = 0; i < f->page_size; i++)
		if (p[i] != hfx_byte_of(5))
			return 3;
	return 0;
}

/* A second uffd's fault (another process's, or an alias mapping's) waits
 * on the read in flight beside the first. */
static bool second_uffd_joined(void *arg)
{
	struct hfx *f = arg;
	pthread_mutex_lock(&f->h->lock);
	bool ok = false;
	for (unsigned k = 0; k < FAULT_READS; k++)
		if (f->h->m.fio.reads[k].busy && f->h->m.fio.reads[k].nwaiters == 2)
			ok = true;
	pthread_mutex_unlock(&f->h->lock);
	return ok;
}

static void redundant_process(void **state)
{
	(void)state;
	struct hfx f;
	setup_ring(&f, NULL);
	struct hfx_child c;
	assert_int_equal(hfx_child_start(&f, child_reads_page5, NULL, &c), 0);
	swap_out_all(&f);
	uint64_t read0 = bytes_read(&f);
	hold(&f, true);
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 5, 60000), 0);
	wait_busy(&f, 1);
	assert_int_equal(hfx_child_go(&c), 0);
	/* The other process's fault (its own uffd) waits on the same read. */
	if (!hfx_wait_for(second_uffd_joined, &f)) {
		hold(&f, false);
		hfx_child_wait(&c, 0);
		fail_msg("the other process's fault never joined the read in flight");
	}
	hold(&f, false);
	hfx_reader_join(&r);
	check_page(&r, hfx_byte_of(5));
	free(r.buf);
	assert_int_equal(hfx_child_wait(&c, 0), 0);
	assert_int_equal(bytes_read(&f) - read0, f.page_size);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A read of another mapping of the guest's memory (an alias at another
 * address, on a uffd of its own added with vswap_handler_add_uffd_at). */
struct alias_read {
	pthread_t t;
	const uint8_t *src;
	uint8_t *buf;
	size_t len;
	int rc;
};

static void *alias_read_run(void *arg)
{
	struct alias_read *a = arg;
	a->rc = hfx_read(a->buf, a->src, a->len, 60000, NULL);
	return NULL;
}

/* The same page faulted through two uffds whose processes map the guest
 * at different addresses, while its read is in flight: each waiter is
 * served at its own address.  (The read kept the first fault's address
 * only and copied to it on the second uffd too: the second fault was
 * never answered, and in a process of its own that copy lands wherever
 * that address points there.) */
static void redundant_other_address(void **state)
{
	(void)state;
	struct hfx f;
	setup_ring(&f, NULL);
	const struct vswap_region *g = &f.regions[0];
	uint8_t *alias = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_SHARED, f.memfd, g->offset);
	assert_true(alias != MAP_FAILED);
	assert_true(alias != (uint8_t *)g->addr);
	int ufd;
	assert_int_equal(vswap_uffd_create(&ufd), 0);
	void *const bases[1] = {alias};
	assert_int_equal(vswap_handler_add_uffd_at(f.h, ufd, bases), 0);
	swap_out_all(&f);
	uint64_t swept0 = atomic_load(&f.h->m.swept);
	hold(&f, true);
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 5, 60000), 0);
	wait_busy(&f, 1);
	struct alias_read a = {.src = alias + 5 * f.page_size, .len = f.page_size};
	a.buf = malloc(f.page_size);
	assert_non_null(a.buf);
	assert_int_equal(pthread_create(&a.t, NULL, alias_read_run, &a), 0);
	bool joined = hfx_wait_for(second_uffd_joined, &f);
	hold(&f, false);
	hfx_reader_join(&r);
	assert_int_equal(pthread_join(a.t, NULL), 0);
	assert_true(joined);
	check_page(&r, hfx_byte_of(5));
	assert_int_equal(a.rc, 0);
	for (size_t i = 0; i < f.page_size; i++)
		if (a.buf[i] != hfx_byte_of(5))
			fail_msg("alias byte %zu: %#x", i, a.buf[i]);
	/* Answered by the read's completion, not by the monitor's sweep for
	 * faults read and never answered. */
	assert_int_equal(atomic_load(&f.h->m.swept), swept0);
	assert_int_equal(st_of(&f).metrics.copied_from_file_pages, 1);
	free(a.buf);
	free(r.buf);
	assert_int_equal(hfx_teardown(&f), 0);
	munmap(alias, g->len); /* the uffd was the handler's */
}

static void corrupt_waiters_poisoned(void **state)
{
	(void)state;
	struct hfx f;
	struct vswap_handler_opts o = {.on_corrupt = VSWAP_CORRUPT_POISON};
	setup_swapped(&f, &o);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	assert_int_equal(hfx_corrupt_slot(&f, 0, 6), 0);
	hold(&f, true);
	struct hfx_reader r[3];
	assert_int_equal(hfx_reader_start(&r[0], &f, 6, 60000), 0);
	wait_busy(&f, 1);
	pthread_mutex_lock(&f.h->lock);
	uint64_t red0 = f.h->c.redundant;
	pthread_mutex_unlock(&f.h->lock);
	for (unsigned i = 1; i < 3; i++)
		assert_int_equal(hfx_reader_start(&r[i], &f, 6, 60000), 0);
	struct count_wait w = {.f = &f, .redundant = red0 + 2};
	assert_true(hfx_wait_for(redundant_seen, &w));
	hold(&f, false);
	for (unsigned i = 0; i < 3; i++) {
		hfx_reader_join(&r[i]);
		assert_int_equal(r[i].rc, -EFAULT); /* SIGBUS, never the bad bytes */
		free(r[i].buf);
	}
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.metrics.checksum_failures, 1);
	assert_int_equal(st.metrics.poisoned_pages, 1);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 6, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_int_equal(hfx_teardown(&f), -EBADMSG); /* a page is lost */
}

/* ---- remove events and reads in flight ---------------------------------- */

static bool remover_waits(void *arg)
{
	return hfx_remover_done(arg) || hfx_remover_blocked(arg);
}

static void remove_before_completion(void **state)
{
	(void)state;
	struct hfx f;
	setup_swapped(&f, NULL);
	hold(&f, true);
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 7, 60000), 0);
	wait_busy(&f, 1);
	/* The monitor reads the remove event at once (the read is held) and
	 * the remover punches the page. */
	struct hfx_remover m;
	assert_int_equal(hfx_remover_start(&m, hfx_addr(&f, 0, 7), f.page_size), 0);
	assert_true(hfx_wait_for(hfx_remover_done, &m));
	pthread_join(m.t, NULL);
	assert_int_equal(m.rc, 0);
	hold(&f, false);
	/* Woken, the fault finds the page removed: zeros, never the bytes
	 * read before the remove. */
	hfx_reader_join(&r);
	check_page(&r, 0);
	free(r.buf);
	assert_int_equal(hfx_page_byte(&f, 0, 7), 0);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 7, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_NONE);
	assert_int_equal(hfx_page_byte(&f, 0, 8), hfx_byte_of(8));
	assert_int_equal(hfx_teardown(&f), 0);
}

static bool completion_queued(void *arg)
{
	struct hfx *f = arg;
	return vswap_io_ready(&f->h->m.fio.io) >= 1;
}

static bool monitor_idle(void *arg)
{
	(void)arg;
	return hfx_task_waiting_in("epoll") != 0;
}

static bool completion_taken(void *arg)
{
	struct hfx *f = arg;
	return atomic_load(&f->h->m.fio.taken) >= 1;
}

/* The completion of page 7's read is handled while a remove event of
 * @removed waits unread on the main uffd: its copy fails with EAGAIN. */
static void eagain_on_completion(uint64_t removed)
{
	struct hfx f;
	setup_swapped(&f, NULL);
	hold(&f, true);
	struct hfx_reader r;
	assert_int_equal(hfx_reader_start(&r, &f, 7, 60000), 0);
	wait_busy(&f, 1);
	/* The read completed and the monitor sleeps.  Hold the lock, let the
	 * completion in: the monitor takes it and waits for the lock, so it
	 * reads no event meanwhile. */
	assert_true(hfx_wait_for(completion_queued, &f));
	assert_true(hfx_wait_for(monitor_idle, NULL));
	pthread_mutex_lock(&f.h->lock);
	uint64_t retries0 = f.h->c.eagain_retries;
	hold(&f, false);
	if (!hfx_wait_for(completion_taken, &f)) {
		pthread_mutex_unlock(&f.h->lock);
		fail_msg("the completion was never taken");
	}
	struct hfx_remover m;
	assert_int_equal(hfx_remover_start(&m, hfx_addr(&f, 0, removed), f.page_size), 0);
	if (!hfx_wait_for(remover_waits, &m)) {
		pthread_mutex_unlock(&f.h->lock);
		fail_msg("the remove never waited on its event");
	}
	pthread_mutex_unlock(&f.h->lock);
	hfx_reader_join(&r);
	pthread_join(m.t, NULL);
	assert_int_equal(m.rc, 0);
	pthread_mutex_lock(&f.h->lock);
	uint64_t retries = f.h->c.eagain_retries - retries0;
	pthread_mutex_unlock(&f.h->lock);
	assert_true(retries >= 1);
	if (removed == 7) {
		check_page(&r, 0); /* the read is dropped: the page was removed */
		assert_int_equal(hfx_page_byte(&f, 0, 7), 0);
	} else {
		check_page(&r, hfx_byte_of(7));
		assert_int_equal(hfx_page_byte(&f, 0, 7), hfx_byte_of(7));
		assert_int_equal(hfx_page_byte(&f, 0, removed), 0);
	}
	free(r.buf);
	assert_int_equal(st_of(&f).last_error, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void eagain_other_page(void **state)
{
	(void)state;
	eagain_on_completion(9);
}

static void eagain_same_page(void **state)
{
	(void)state;
	eagain_on_completion(7);
}

/* ---- exit and detach with reads in flight ------------------------------- */

static void exit_serves_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	setup_swapped(&f, NULL);
	hold(&f, true);
	struct hfx_reader r[2];
	assert_int_equal(hfx_reader_start(&r[0], &f, 2, 60000), 0);
	assert_int_equal(hfx_reader_start(&r[1], &f, 4, 60000), 0);
	wait_busy(&f, 2);
	/* The exit serves them (the hold does not apply to its drain), then
	 * swaps every page in. */
	struct vswap_handler *h = f.h;
	f.h = NULL;
	assert_int_equal(vswap_handler_destroy(h), 0);
	for (unsigned i = 0; i < 2; i++) {
		hfx_reader_join(&r[i]);
		check_page(&r[i], hfx_byte_of(r[i].page));
		free(r[i].buf);
	}
	for (uint64_t p = 0; p < PAGES - 1; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

static void detach_drops_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	setup_swapped(&f, NULL);
	hold(&f, true);
	struct hfx_reader r;
	/* The reader stands for a paused vCPU: woken by the unregister, it
	 * reads the memfd's hole; what matters is the store. */
	assert_int_equal(hfx_reader_start(&r, &f, 3, 60000), 0);
	wait_busy(&f, 1);
	struct vswap_handler *h = f.h;
	f.h = NULL;
	assert_int_equal(vswap_handler_detach(h), 0);
	hfx_reader_join(&r);
	free(r.buf);
	/* The dropped fault left page 3 present and intact in the store. */
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(f.store, f.first[0] + 3, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	uint8_t *buf = malloc(f.page_size);
	assert_non_null(buf);
	assert_int_equal(vswap_store_read_page(f.store, f.first[0] + 3, buf), 0);
	for (size_t i = 0; i < f.page_size; i++)
		if (buf[i] != hfx_byte_of(3))
			fail_msg("page 3 byte %zu in the store: %#x", i, buf[i]);
	free(buf);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- which faults read through the page cache ---------------------------- */

#define LONG_PAGES 128u

/* LONG_PAGES pages swapped out, their slots in page order, the swap file's
 * page cache dropped. */
static void setup_long_opts(struct hfx *f, const struct vswap_handler_opts *o)
{
	const size_t pages[1] = {LONG_PAGES};
	assert_int_equal(hfx_setup(f, pages, 1, o), 0);
	if (!f->h->m.fio.have_ring) {
		hfx_teardown(f);
		skip();
	}
	for (uint64_t p = 0; p < LONG_PAGES; p++)
		assert_int_equal(hfx_fill(f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
	int fd = vswap_store_swap_fd(f->store);
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
}

static void setup_long(struct hfx *f)
{
	setup_long_opts(f, NULL);
}

struct cached {
	struct hfx *f;
	uint64_t first, count; /* pages */
};

/* How many of pages [first, first+count)'s swap-file copies are in the
 * page cache. */
static unsigned cached_count(const struct cached *c)
{
	struct hfx *f = c->f;
	int fd = vswap_store_swap_fd(f->store);
	size_t ps = f->page_size, len = (LONG_PAGES + 2) * ps;
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	unsigned char vec[LONG_PAGES + 2];
	assert_int_equal(mincore(map, len, vec), 0);
	unsigned n = 0;
	for (uint64_t p = c->first; p < c->first + c->count; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f->h, f->first[0] + p, &pi), 0);
		uint64_t idx = vswap_store_slot_offset(f->store, pi.slot) / ps;
		assert_true(idx < LONG_PAGES + 2);
		n += vec[idx] & 1;
	}
	munmap(map, len);
	return n;
}

static bool some_cached(void *arg)
{
	return cached_count(arg) > 0;
}

static void sequential_reads_ahead(void **state)
{
	(void)state;
	struct hfx f;
	setup_long(&f);
	for (uint64_t p = 0; p < 16; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	/* The kernel's read-ahead went past the pages touched. */
	struct cached c = {&f, 16, 48};
	if (!hfx_wait_for(some_cached, &c))
		fail_msg("a sequential pass read nothing ahead: every fault waited for the disk");
	assert_int_equal(hfx_teardown(&f), 0);
}

static void scattered_bypass_cache(void **state)
{
	(void)state;
	struct hfx f;
	setup_long(&f);
	static const uint64_t order[] = {70, 10, 100, 40, 120, 25, 85, 55};
	for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		assert_int_equal(hfx_page_byte(&f, 0, order[i]), hfx_byte_of(order[i]));
	/* Neither they nor their neighbours went through the cache. */
	struct cached c = {&f, 0, LONG_PAGES};
	assert_int_equal(cached_count(&c), 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void cached_reads_inline_verified(void **state)
{
	(void)state;
	struct hfx f;
	struct vswap_handler_opts o = {.on_corrupt = VSWAP_CORRUPT_POISON};
	setup_long_opts(&f, &o);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	/* A byte of page 40's copy flipped through the page cache: the cache
	 * holds the bad copy, and the pass reads it from there. */
	assert_int_equal(hfx_corrupt_slot(&f, 0, 40), 0);
	for (uint64_t p = 0; p < 64; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), p == 40 ? -3 : hfx_byte_of(p));
	if (atomic_load(&f.h->m.fio.inline_reads) == 0)
		fail_msg("no fault of the pass was read from the page cache at once");
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.metrics.checksum_failures, 1);
	assert_int_equal(st.metrics.poisoned_pages, 1);
	assert_int_equal(st.metrics.copied_from_file_pages, 63);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 40, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_int_equal(hfx_teardown(&f), -EBADMSG); /* a page is lost */
}

int main(void)
{
	hfx_skip_if_unavailable("handler_reads");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(many_in_flight),
	    cmocka_unit_test(zero_not_behind_read),
	    cmocka_unit_test(redundant_threads),
	    cmocka_unit_test(redundant_process),
	    cmocka_unit_test(redundant_other_address),
	    cmocka_unit_test(corrupt_waiters_poisoned),
	    cmocka_unit_test(remove_before_completion),
	    cmocka_unit_test(eagain_other_page),
	    cmocka_unit_test(eagain_same_page),
	    cmocka_unit_test(exit_serves_in_flight),
	    cmocka_unit_test(detach_drops_in_flight),
	    cmocka_unit_test(sequential_reads_ahead),
	    cmocka_unit_test(scattered_bypass_cache),
	    cmocka_unit_test(cached_reads_inline_verified),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
