/* SPDX-License-Identifier: MIT */
/*
 * Swap-in against remove events (handler/swap_in.c).  A remove event's
 * remover resumes, and punches its range, as soon as the monitor has read
 * the event, before the monitor applies it to the store.  A swap-in that
 * read a page's bytes earlier must not copy them into that punched hole:
 * the guest removed the page, and it must read zeros.  And its reads go
 * O_DIRECT: they leave no page cache behind (swap_in_leaves_no_page_cache).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

#define N 16
#define VICTIM 5

struct race {
	struct hfx *f;
	atomic_bool removed, copied, hook_timed_out;
	int rc;
};

/* On the swap-in's thread, after the run's read: the guest removes the
 * page (this returns once the monitor has read the event and the range is
 * punched). */
static void swap_in_hook(void *ctx, int where)
{
	struct race *r = ctx;
	if (where == SWAP_IN_HOOK_COPIED) {
		atomic_store(&r->copied, true);
		return;
	}
	if (atomic_exchange(&r->removed, true))
		return;
	r->rc = madvise(hfx_addr(r->f, 0, VICTIM), r->f->page_size, MADV_REMOVE) ? -errno : 0;
}

/* On the monitor, the event read but not applied: hold it there until the
 * swap-in has either copied its run or waits for this event to be applied. */
static void remove_hook(void *ctx)
{
	struct race *r = ctx;
	struct vswap_handler *h = r->f->h;
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!atomic_load(&r->copied) && !atomic_load(&h->settle_waits)) {
		if (hfx_now_ms() > until) {
			atomic_store(&r->hook_timed_out, true);
			return;
		}
		sched_yield();
	}
}

static void remove_after_swap_in_read(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	const struct vswap_handler_opts o = {.chunk_pages = N};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < N; p++)
		memset(hfx_addr(&f, 0, p), (int)(0x60 + p), f.page_size);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	struct race r = {.f = &f};
	atomic_init(&r.removed, false);
	atomic_init(&r.copied, false);
	atomic_init(&r.hook_timed_out, false);
	f.h->m.remove_hook_ctx = &r;
	f.h->m.remove_hook = remove_hook;
	f.h->swap_in_hook_ctx = &r;
	f.h->swap_in_hook = swap_in_hook;
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	f.h->swap_in_hook = NULL;
	f.h->m.remove_hook = NULL;
	assert_true(atomic_load(&r.removed));
	assert_int_equal(r.rc, 0);
	assert_false(atomic_load(&r.hook_timed_out));
	/* Removed: zeros, not the bytes the swap-in had read. */
	assert_int_equal(hfx_page_byte(&f, 0, VICTIM), 0); /* every byte */
	for (uint64_t p = 0; p < N; p++)
		if (p != VICTIM)
			assert_int_equal(hfx_page_byte(&f, 0, p), 0x60 + p);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- the swap-in's reads bypass the page cache ----------------------------- */

#define MANY 64u

struct cache_probe {
	struct hfx *f;
	int calls;
	int cached; /* swap-file pages in the page cache at the first copy */
};

static void probe_hook(void *ctx, int where)
{
	struct cache_probe *c = ctx;
	if (where != SWAP_IN_HOOK_COPIED || c->calls++)
		return;
	int fd = vswap_store_swap_fd(c->f->store);
	size_t len = (MANY + 2) * c->f->page_size;
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	unsigned char vec[MANY + 2];
	if (map == MAP_FAILED || mincore(map, len, vec) != 0) {
		c->cached = -1;
	} else {
		for (unsigned i = 0; i < MANY + 2; i++)
			c->cached += vec[i] & 1;
	}
	if (map != MAP_FAILED)
		munmap(map, len);
}

/* The first run copied, the next ones read or in flight: none of it went
 * through the page cache (with read-ahead advice, all of it did). */
static void swap_in_leaves_no_page_cache(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {MANY};
	const struct vswap_handler_opts o = {.chunk_pages = 8, .prefetch_budget_pages = 64};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < MANY; p++)
		memset(hfx_addr(&f, 0, p), (int)(0x20 + p), f.page_size);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	int fd = vswap_store_swap_fd(f.store);
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	struct cache_probe c = {.f = &f};
	f.h->swap_in_hook_ctx = &c;
	f.h->swap_in_hook = probe_hook;
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	f.h->swap_in_hook = NULL;
	assert_true(c.calls > 1);
	assert_int_equal(c.cached, 0);
	for (uint64_t p = 0; p < MANY; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), (int)(0x20 + p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- many runs through few buffers, faults ahead of the copy ---------------- */

#define LONG_PAGES 256u

struct ahead {
	struct hfx *f;
	int calls;
	int faults; /* pages read from the guest ahead of the copy */
	int bad;    /* of those, read wrong or not at all */
};

/* On the job thread between chunks (h->lock not held): every third chunk,
 * the guest reads a page far ahead of the copy, through a fault the monitor
 * serves while that page's run may be planned, read or waiting to be
 * copied.  The swap-in must leave that page to the fault. */
static void ahead_hook(void *ctx, int where)
{
	struct ahead *a = ctx;
	if (where != SWAP_IN_HOOK_COPIED || ++a->calls % 3)
		return;
	uint64_t p = LONG_PAGES - 1 - (uint64_t)a->calls;
	if (p < LONG_PAGES / 2)
		return;
	uint8_t got[64];
	a->faults++;
	if (hfx_read(got, hfx_addr(a->f, 0, p), sizeof(got), HFX_DEADLINE_MS, NULL) != 0 ||
	    got[0] != (uint8_t)(p * 7 + 1) || got[63] != (uint8_t)(p * 7 + 1))
		a->bad++;
}

/* 64 runs through two run buffers: each buffer is planned again by the
 * copier as soon as it is copied and read again by the reader, which must
 * be woken for every plan (a lost wake-up leaves both threads waiting for
 * each other).  Every page comes back, those the guest faulted in first
 * too. */
static void swap_in_many_runs_few_buffers(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {LONG_PAGES};
	const struct vswap_handler_opts o = {.chunk_pages = 4, .prefetch_budget_pages = 8};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < LONG_PAGES; p++)
		memset(hfx_addr(&f, 0, p), (int)(uint8_t)(p * 7 + 1), f.page_size);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	struct ahead a = {.f = &f};
	f.h->swap_in_hook_ctx = &a;
	f.h->swap_in_hook = ahead_hook;
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	f.h->swap_in_hook = NULL;
	assert_true(a.calls >= (int)(LONG_PAGES / 4) / 2);
	assert_true(a.faults > 0);
	assert_int_equal(a.bad, 0);
	for (uint64_t p = 0; p < LONG_PAGES; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), (int)(uint8_t)(p * 7 + 1));
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_swapin");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(remove_after_swap_in_read),
	    cmocka_unit_test(swap_in_leaves_no_page_cache),
	    cmocka_unit_test(swap_in_many_runs_few_buffers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
