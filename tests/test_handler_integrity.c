/* SPDX-License-Identifier: MIT */
/*
 * What crosvm's vmm-swap lacks: a corrupted swapped page is never served (the
 * guest gets SIGBUS), a failed swap-out write leaves everything consistent,
 * forked device processes are served and their death collected, and faults
 * are served while the swap-in runs in the background.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* Read page r/p expecting SIGBUS, with no byte of it ever delivered. */
static void expect_sigbus(struct hfx *f, unsigned r, uint64_t p)
{
	uint8_t *buf = malloc(f->page_size);
	assert_non_null(buf);
	memset(buf, 0xaa, f->page_size);
	size_t at = 12345;
	assert_int_equal(hfx_read(buf, hfx_addr(f, r, p), f->page_size, 0, &at), -EFAULT);
	assert_int_equal(at, 0);
	for (size_t i = 0; i < f->page_size; i++)
		if (buf[i] != 0xaa)
			fail_msg("byte %zu of a poisoned page reached the guest: %#x", i, buf[i]);
	free(buf);
}

static void corrupt_page_is_poisoned(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[2] = {3, 3};
	assert_int_equal(hfx_setup(&f, pages, 2, NULL), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 0x11), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 0x22), 0);
	assert_int_equal(hfx_fill(&f, 1, 0, 0x33), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_corrupt_slot(&f, 0, 1), 0);
	assert_int_equal(hfx_corrupt_slot(&f, 1, 0), 0);

	/* A fault: verified, poisoned, counted. */
	expect_sigbus(&f, 0, 1);
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.metrics.checksum_failures, 1);
	assert_int_equal(st.metrics.poisoned_pages, 1);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 0x22); /* its neighbour is fine */
	expect_sigbus(&f, 0, 1);			 /* and it stays poisoned */
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 1, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST); /* recorded for vswap-fsck */

	/* The bulk swap-in verifies too, and never leaves a hole behind. */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	st = st_of(&f);
	assert_int_equal(st.metrics.checksum_failures, 2);
	expect_sigbus(&f, 1, 0); /* unregistered: SIGBUS, not zeros */
	expect_sigbus(&f, 0, 1);
	assert_int_equal(vswap_handler_page_info(f.h, f.first[1], &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_int_equal(hfx_teardown(&f), -EBADMSG); /* a page is lost */
}

static void fill_pattern(struct hfx *f, unsigned r, uint64_t first, uint64_t n, uint8_t salt)
{
	for (uint64_t p = first; p < first + n; p++)
		assert_int_equal(hfx_fill(f, r, p, (uint8_t)(p * 7 + salt)), 0);
}

static void check_pattern(struct hfx *f, unsigned r, uint64_t first, uint64_t n, uint8_t salt)
{
	size_t len = n * f->page_size;
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	assert_int_equal(hfx_read(buf, hfx_addr(f, r, first), len, 0, NULL), 0);
	for (uint64_t p = 0; p < n; p++)
		for (size_t i = 0; i < f->page_size; i++)
			if (buf[p * f->page_size + i] != (uint8_t)((first + p) * 7 + salt))
				fail_msg("r%u p%llu byte %zu: %#x", r,
					 (unsigned long long)(first + p), i,
					 buf[p * f->page_size + i]);
	free(buf);
}

static void failed_write_stays_consistent(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[2] = {300, 16};
	assert_int_equal(hfx_setup(&f, pages, 2, &hfx_copy), 0);
	/* 300 slots in use, then the pages come back (their slots stale). */
	fill_pattern(&f, 0, 0, 300, 1);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	check_pattern(&f, 0, 0, 300, 1);
	/* New pages need new slots past the file's end: cap the file size
	 * there.  Rewrites of the stale slots still fit. */
	fill_pattern(&f, 0, 0, 300, 2);
	fill_pattern(&f, 1, 1, 10, 3); /* a gap: its own chunk */
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct stat sb;
	assert_int_equal(stat(f.path, &sb), 0);
	struct rlimit old, cap = {.rlim_cur = (rlim_t)sb.st_size};
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	cap.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &cap), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	int waited = hfx_wait(&f, VSWAP_STATE_FAILED);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(waited, 0);
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.last_error, -EFBIG);
	assert_int_equal(st.metrics.swap_pages, 300);	/* the rewrites landed */
	assert_int_equal(st.metrics.staging_pages, 10); /* the rest is staged */
	for (uint64_t p = 1; p <= 10; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f.h, f.first[1] + p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_NONE);
		assert_true(pi.staged);
	}
	check_pattern(&f, 1, 1, 5, 3); /* faults in Failed: from staging */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	check_pattern(&f, 0, 0, 300, 2);
	check_pattern(&f, 1, 1, 10, 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- forked device processes -------------------------------------------- */

struct child_check {
	unsigned r;
	uint64_t p;
	uint8_t want;
};

static int child_reads(const struct hfx *f, void *arg)
{
	const struct child_check *c = arg;
	const volatile uint8_t *p = hfx_addr(f, c->r, c->p);
	for (size_t i = 0; i < f->page_size; i++)
		if (p[i] != c->want)
			return 1;
	return 0;
}

static void forked_child_served_and_collected(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[2] = {3, 3};
	assert_int_equal(hfx_setup(&f, pages, 2, &hfx_copy), 0);
	assert_int_equal(vswap_handler_set_static_uffds(f.h, 0), 0);
	assert_int_equal(vswap_handler_set_static_uffds(f.h, 0), -EALREADY);
	assert_int_equal(hfx_fill(&f, 0, 1, 0x41), 0);
	assert_int_equal(hfx_fill(&f, 1, 2, 0x42), 0);
	/* One child added before enable (registered by it), one after. */
	struct child_check c1 = {0, 1, 0x41}, c2 = {1, 2, 0x42};
	struct hfx_child a, b;
	assert_int_equal(hfx_child_start(&f, child_reads, &c1, &a), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(hfx_child_start(&f, child_reads, &c2, &b), 0);
	assert_int_equal(st_of(&f).uffds, 3);
	assert_int_equal(hfx_child_go(&a), 0);
	assert_int_equal(hfx_child_wait(&a, 0), 0);
	assert_int_equal(hfx_child_go(&b), 0);
	assert_int_equal(hfx_child_wait(&b, 0), 0);
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.metrics.copied_from_staging_pages, 2);
	/* Both processes are gone: their uffds are collected. */
	assert_int_equal(vswap_handler_gc(f.h), 2);
	assert_int_equal(st_of(&f).uffds, 1);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0x41);
	assert_int_equal(hfx_teardown(&f), 0);
}

static int child_exits(const struct hfx *f, void *arg)
{
	(void)f, (void)arg;
	return 0;
}

static void dead_static_child_is_skipped(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[2] = {3, 3};
	assert_int_equal(hfx_setup(&f, pages, 2, NULL), 0);
	assert_int_equal(vswap_handler_set_static_uffds(f.h, 1), 0);
	struct hfx_child a;
	assert_int_equal(hfx_child_start(&f, child_exits, NULL, &a), 0);
	assert_int_equal(hfx_child_go(&a), 0);
	assert_int_equal(hfx_child_wait(&a, 0), 0);
	assert_int_equal(hfx_fill(&f, 0, 0, 5), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0); /* skips the dead uffd */
	assert_int_equal(hfx_page_byte(&f, 0, 0), 5);
	assert_int_equal(vswap_handler_gc(f.h), 0); /* static: never collected */
	assert_int_equal(st_of(&f).uffds, 2);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- faults during the background swap-in --------------------------------- */

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered, open;
};

/* Holds the swap-in after its first chunk until the test opens the gate. */
static void gate_hook(void *ctx)
{
	struct gate *g = ctx;
	pthread_mutex_lock(&g->lock);
	g->entered = true;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void faults_served_during_swap_in(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[2] = {128, 128};
	const struct vswap_handler_opts o = {.chunk_pages = 32};
	assert_int_equal(hfx_setup(&f, pages, 2, &o), 0);
	fill_pattern(&f, 0, 0, 128, 4);
	fill_pattern(&f, 1, 0, 128, 5);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	struct gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	pthread_mutex_lock(&f.h->lock); /* the hook is read by the swap-in job */
	f.h->job_hook = gate_hook;
	f.h->job_hook_ctx = &g;
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	pthread_mutex_lock(&g.lock);
	while (!g.entered)
		pthread_cond_wait(&g.cond, &g.lock);
	pthread_mutex_unlock(&g.lock);
	/* The swap-in holds after its first chunk: region 2 is still on
	 * disk, and its faults are served meanwhile. */
	assert_int_equal(st_of(&f).state, VSWAP_STATE_SWAP_IN_IN_PROGRESS);
	check_pattern(&f, 1, 0, 128, 5);
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.state, VSWAP_STATE_SWAP_IN_IN_PROGRESS);
	assert_int_equal(st.metrics.copied_from_file_pages, 128);
	pthread_mutex_lock(&g.lock);
	g.open = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(st_of(&f).transition.pages, 128); /* region 1 only */
	check_pattern(&f, 0, 0, 128, 4);
	check_pattern(&f, 1, 0, 128, 5);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_integrity");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(corrupt_page_is_poisoned),
	    cmocka_unit_test(failed_write_stays_consistent),
	    cmocka_unit_test(forked_child_served_and_collected),
	    cmocka_unit_test(dead_static_child_is_skipped),
	    cmocka_unit_test(faults_served_during_swap_in),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
