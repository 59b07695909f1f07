/* SPDX-License-Identifier: MIT */
/*
 * MADV_DONTNEED on a registered MAP_SHARED range of guest memory.  On shmem
 * it only drops the caller's page-table entries: the memfd keeps the bytes,
 * and the next access reads them again.  The kernel reports it to the uffd
 * with the same UFFD_EVENT_REMOVE as MADV_REMOVE (which does discard the
 * bytes), so a handler that frees the page's copy on every REMOVE turns a
 * DONTNEED of a swapped-out or staged page into zeros.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"

/* Active: a swapped-out page dropped from the page tables reads its bytes. */
static void dontneed_swapped_out_page_keeps_bytes(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p + 1)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(madvise(hfx_addr(&f, 0, 1), f.page_size, MADV_DONTNEED), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 2);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Pending: a page moved to staging (copy) or protected in place (protect)
 * and then dropped from the page tables reads its bytes. */
static void dontneed_pending_page_keeps_bytes(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p + 1)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(madvise(hfx_addr(&f, 0, 1), f.page_size, MADV_DONTNEED), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 2);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 2);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_dontneed");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(dontneed_swapped_out_page_keeps_bytes),
	    cmocka_unit_test(dontneed_pending_page_keeps_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
