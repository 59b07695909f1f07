/* SPDX-License-Identifier: MIT */
/*
 * The controller scenarios (crosvm's vmm-swap controller behaviour), on two
 * sparse regions of 1024 pages: in each region page 0 = 1s/5s, page 1 =
 * 2s/6s, page 10 = 3s/7s and 768 pages from page 20 = 4s/8s (region 0 /
 * region 1): 771 pages a region, 1542 in all.  Guest accesses run on
 * another thread under a time limit.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"

#define REGION_PAGES 1024
static const size_t two[2] = {REGION_PAGES, REGION_PAGES};

/* What the layout puts at page @p of region @r (0 = a hole). */
static int layout_byte(unsigned r, uint64_t p)
{
	uint8_t base = r == 0 ? 1 : 5;
	if (p == 0)
		return base;
	if (p == 1)
		return base + 1;
	if (p == 10)
		return base + 2;
	if (p >= 20 && p < 20 + 768)
		return base + 3;
	return 0;
}

static void write_layout(struct hfx *f)
{
	size_t ps = f->page_size;
	uint8_t *buf = malloc(768 * ps);
	assert_non_null(buf);
	for (unsigned r = 0; r < 2; r++) {
		assert_int_equal(hfx_fill(f, r, 0, (uint8_t)layout_byte(r, 0)), 0);
		assert_int_equal(hfx_fill(f, r, 1, (uint8_t)layout_byte(r, 1)), 0);
		assert_int_equal(hfx_fill(f, r, 10, (uint8_t)layout_byte(r, 10)), 0);
		memset(buf, layout_byte(r, 20), 768 * ps);
		assert_int_equal(hfx_write(hfx_addr(f, r, 20), buf, 768 * ps, 0), 0);
	}
	free(buf);
}

/* Read the data pages (and page 2) of both regions; check them against
 * the layout, with @over(r, p) giving overrides (-1 = none). */
static void check_layout(struct hfx *f, int (*over)(unsigned r, uint64_t p))
{
	size_t ps = f->page_size;
	uint8_t *buf = malloc(REGION_PAGES * ps);
	assert_non_null(buf);
	for (unsigned r = 0; r < 2; r++) {
		/* Only the data pages and page 2: holes elsewhere stay holes. */
		static const uint64_t singles[] = {0, 1, 2, 3, 10};
		for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) {
			uint64_t p = singles[i];
			int want = over ? over(r, p) : -1;
			if (want < 0)
				want = layout_byte(r, p);
			int got = hfx_page_byte(f, r, p);
			if (got != want)
				fail_msg("r%up%llu: got %d want %d", r, (unsigned long long)p, got,
					 want);
		}
		assert_int_equal(hfx_read(buf, hfx_addr(f, r, 20), 768 * ps, 0, NULL), 0);
		for (size_t i = 0; i < 768 * ps; i++)
			if (buf[i] != layout_byte(r, 20))
				fail_msg("r%u byte %zu of the run: %u", r, i, buf[i]);
	}
	free(buf);
}

static struct vswap_status st_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st;
}

static int over_9_10(unsigned r, uint64_t p)
{
	if (r == 0 && p == 1)
		return 9;
	if (r == 0 && p == 2)
		return 10;
	return -1;
}

/* Destroy (Exit) with contents intact, checked without the handler. */
static void finish_intact(struct hfx *f, int (*over)(unsigned, uint64_t))
{
	assert_int_equal(vswap_handler_destroy(f->h), 0);
	f->h = NULL;
	check_layout(f, over);
	assert_int_equal(hfx_teardown(f), 0);
}

static void controller_enable(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, two, 2, &hfx_copy), 0);
	write_layout(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.state, VSWAP_STATE_PENDING);
	assert_int_equal(st.transition.pages, 1542);
	check_layout(&f, NULL); /* page 2 (and 3) zero-filled: now data */
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(st_of(&f).transition.pages, 1546);
	assert_int_equal(hfx_fill(&f, 0, 1, 9), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 10), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(st_of(&f).transition.pages, 2);
	finish_intact(&f, over_9_10);
}

static void controller_swap_out(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, two, 2, NULL), 0);
	write_layout(&f);
	/* Pages written per round.  Round 1: the 1542 pages check_layout()
	 * read back equal their stale copies and stay there unwritten; the
	 * four pages it zero-filled (pages 2 and 3 of each region) are new.
	 * Every round ends with all of them in the store. */
	uint64_t want[3] = {1542, 4, 2}, in_store[3] = {1542, 1546, 1546};
	for (int round = 0; round < 3; round++) {
		if (round == 2) {
			assert_int_equal(hfx_fill(&f, 0, 1, 9), 0);
			assert_int_equal(hfx_fill(&f, 0, 2, 10), 0);
		}
		assert_int_equal(vswap_handler_enable(f.h), 0);
		assert_int_equal(vswap_handler_swap_out(f.h), 0);
		assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
		struct vswap_status st = st_of(&f);
		assert_int_equal(st.transition.pages, want[round]);
		assert_int_equal(st.metrics.swap_pages, in_store[round]);
		assert_int_equal(st.metrics.staging_pages, 0);
		if (round == 0)
			check_layout(&f, NULL);
	}
	finish_intact(&f, over_9_10);
}

static int over_trim(unsigned r, uint64_t p)
{
	(void)r;
	return p == 2 || p == 3 ? 0 : -1;
}

static int over_trim2(unsigned r, uint64_t p)
{
	if (r == 0 && p == 1)
		return 9;
	if (r == 0 && p == 3)
		return 10;
	return p == 2 || p == 3 ? 0 : -1;
}

static void controller_trim(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, two, 2, NULL), 0);
	write_layout(&f);
	assert_int_equal(hfx_fill(&f, 0, 2, 0), 0); /* zeros: data pages */
	assert_int_equal(hfx_fill(&f, 1, 2, 0), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	assert_int_equal(st_of(&f).transition.pages, 2);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(st_of(&f).transition.pages, 1542);
	check_layout(&f, over_trim); /* page 3 zero-filled too */
	assert_int_equal(hfx_fill(&f, 0, 1, 9), 0);
	assert_int_equal(hfx_fill(&f, 0, 3, 10), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	/* 3 zero pages (r0p2, r1p2, r1p3) + 1541 clean ones. */
	assert_int_equal(st_of(&f).transition.pages, 1544);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(st_of(&f).transition.pages, 2);
	finish_intact(&f, over_trim2);
}

static void controller_disable(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, two, 2, &hfx_copy), 0);
	write_layout(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(st_of(&f).transition.pages, 1542);
	check_layout(&f, NULL); /* pages 2, 3 are zero: holes read unserved */
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	struct vswap_status st = st_of(&f);
	assert_int_equal(st.transition.pages, 1542);
	assert_int_equal(st.metrics.resident_pages, 1542); /* zero pages trimmed */
	check_layout(&f, NULL);
	finish_intact(&f, NULL);
}

/* Enable, trim, out, disable three times with writes between: content
 * intact; then shut down while Active. */
static void cycles_keep_content(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, two, 2, NULL), 0);
	write_layout(&f);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(vswap_handler_enable(f.h), 0);
		assert_int_equal(vswap_handler_trim(f.h), 0);
		assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
		assert_int_equal(vswap_handler_swap_out(f.h), 0);
		assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
		check_layout(&f, NULL);
		assert_int_equal(vswap_handler_disable(f.h, round == 1), 0);
		assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
		check_layout(&f, NULL);
	}
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	finish_intact(&f, NULL); /* Exit while Active swaps everything in */
}

int main(void)
{
	hfx_skip_if_unavailable("handler_controller");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(controller_enable),   cmocka_unit_test(controller_swap_out),
	    cmocka_unit_test(controller_trim),	   cmocka_unit_test(controller_disable),
	    cmocka_unit_test(cycles_keep_content),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
