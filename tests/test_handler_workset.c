/* SPDX-License-Identifier: MIT */
/*
 * The working set (handler/workset.c): the record of pages brought in from
 * the swap file, in order, and the prefetch that replays such a record
 * while the guest runs.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"

#define PAGES 64u

static uint8_t byte_of(uint64_t p)
{
	return (uint8_t)(p * 13 + 5) | 1;
}

/* A guest of PAGES pages, every one written, all swapped out. */
static void swapped_out(struct hfx *f)
{
	static const size_t pages[] = {PAGES};

	assert_int_equal(hfx_setup(f, pages, 1, NULL), 0);
	for (uint64_t p = 0; p < PAGES; p++)
		assert_int_equal(hfx_fill(f, 0, p, byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
}

static uint64_t file_faults(struct hfx *f)
{
	struct vswap_status st;

	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st.metrics.copied_from_file_pages;
}

/* Wait (bounded) until the prefetch has ended. */
static void prefetch_wait(struct hfx *f, struct vswap_workset_stats *ws)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		assert_int_equal(vswap_handler_workset_stats(f->h, ws), 0);
		if (ws->prefetch_done)
			return;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > HFX_TIMEOUT_MS / 1000)
			fail_msg("the prefetch did not end");
		sched_yield();
	}
}

static void records_faults_in_order(void **state)
{
	(void)state;
	struct hfx f;
	uint64_t *rec;
	size_t n;

	swapped_out(&f);
	assert_int_equal(vswap_handler_workset_record(f.h, 0), -EINVAL);
	assert_int_equal(vswap_handler_workset_record(f.h, PAGES + 1), -EINVAL);
	assert_int_equal(vswap_handler_workset_record(f.h, 3), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 5), byte_of(5));
	assert_int_equal(hfx_page_byte(&f, 0, 3), byte_of(3));
	assert_int_equal(hfx_page_byte(&f, 0, 3), byte_of(3)); /* resident: no fault */
	assert_int_equal(hfx_page_byte(&f, 0, 9), byte_of(9));
	assert_int_equal(hfx_page_byte(&f, 0, 1), byte_of(1)); /* past the limit of 3 */
	assert_int_equal(vswap_handler_workset_take(f.h, &rec, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(rec[0], 5);
	assert_int_equal(rec[1], 3);
	assert_int_equal(rec[2], 9);
	free(rec);
	/* Taking stops the record. */
	assert_int_equal(hfx_page_byte(&f, 0, 7), byte_of(7));
	struct vswap_workset_stats ws;

	assert_int_equal(vswap_handler_workset_stats(f.h, &ws), 0);
	assert_false(ws.recording);
	assert_int_equal(ws.recorded, 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void prefetch_brings_pages_in_without_faults(void **state)
{
	(void)state;
	struct hfx f;
	struct vswap_workset_stats ws;
	const uint64_t list[] = {10, 11, 12, 5000, 10};
	uint64_t *rec;
	size_t n;

	swapped_out(&f);
	assert_int_equal(vswap_handler_workset_record(f.h, PAGES), 0);
	assert_int_equal(vswap_handler_prefetch(f.h, list, 5), 0);
	prefetch_wait(&f, &ws);
	assert_int_equal(ws.prefetch_pages, 5);
	assert_int_equal(ws.prefetched, 3);
	assert_int_equal(ws.skipped, 2); /* beyond the regions; in the guest already */
	assert_int_equal(ws.failed, 0);
	uint64_t before = file_faults(&f);

	for (uint64_t p = 10; p <= 12; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), byte_of(p));
	assert_int_equal(file_faults(&f), before); /* resident: no fault */
	assert_int_equal(hfx_page_byte(&f, 0, 13), byte_of(13));
	assert_int_equal(file_faults(&f), before + 1);
	/* Prefetched pages are the working set too. */
	assert_int_equal(vswap_handler_workset_take(f.h, &rec, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(rec[0], 10);
	assert_int_equal(rec[1], 11);
	assert_int_equal(rec[2], 12);
	assert_int_equal(rec[3], 13);
	free(rec);
	/* A finished prefetch makes room for the next. */
	const uint64_t more[] = {20};

	assert_int_equal(vswap_handler_prefetch(f.h, more, 1), 0);
	prefetch_wait(&f, &ws);
	assert_int_equal(ws.prefetched, 4);
	/* Everything is still right after the swap-in. */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < PAGES; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A page that fails its checksum is poisoned, not copied in. */
static void prefetch_poisons_a_corrupt_page(void **state)
{
	(void)state;
	struct hfx f;
	struct vswap_workset_stats ws;
	const uint64_t list[] = {20, 21};

	swapped_out(&f);
	assert_int_equal(hfx_corrupt_slot(&f, 0, 20), 0);
	assert_int_equal(vswap_handler_prefetch(f.h, list, 2), 0);
	prefetch_wait(&f, &ws);
	assert_int_equal(ws.failed, 1);
	assert_int_equal(ws.prefetched, 1);
	assert_int_equal(hfx_page_byte(&f, 0, 20), -3); /* SIGBUS */
	assert_int_equal(hfx_page_byte(&f, 0, 21), byte_of(21));
	struct vswap_status st;

	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.metrics.checksum_failures, 1);
	assert_int_equal(vswap_handler_destroy(f.h), -EBADMSG); /* a page is lost */
	f.h = NULL;
	hfx_teardown(&f);
}

/* A swap-in and a destroy while a long prefetch runs: every page right,
 * the prefetch stopped before the handler goes. */
static void swap_in_and_destroy_during_prefetch(void **state)
{
	(void)state;
	struct hfx f;
	static uint64_t list[1u << 16];

	swapped_out(&f);
	for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
		list[i] = (i * 7) % PAGES;
	assert_int_equal(vswap_handler_prefetch(f.h, list, sizeof(list) / sizeof(list[0])), 0);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < PAGES; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(records_faults_in_order),
	    cmocka_unit_test(prefetch_brings_pages_in_without_faults),
	    cmocka_unit_test(prefetch_poisons_a_corrupt_page),
	    cmocka_unit_test(swap_in_and_destroy_during_prefetch),
	};

	hfx_skip_if_unavailable("handler_workset");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
