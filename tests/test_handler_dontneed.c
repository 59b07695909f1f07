/* SPDX-License-Identifier: MIT */
/*
 * MADV_DONTNEED on a registered MAP_SHARED range of guest memory.  On shmem
 * it only drops the caller's page-table entries (the memfd keeps the bytes),
 * but the kernel reports it to the uffd with the same UFFD_EVENT_REMOVE as
 * MADV_REMOVE, and the two cannot be told apart.  The documented contract
 * (include/vswap/handler.h): a REMOVE event discards the range, so a page
 * whose only copy the handler held (swapped out, or staged in copy mode)
 * reads as zeros afterwards and its slot is freed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"

/* Read through the handler (under its lock): the monitor changes the store's
 * tables while it applies the REMOVE event. */
static int slot_state(const struct hfx *f, uint64_t page)
{
	struct vswap_page_info pi;
	int rc = vswap_handler_page_info(f->h, f->first[0] + page, &pi);
	return rc < 0 ? rc : (int)pi.state;
}

/* Active: a swapped-out page dropped with DONTNEED is discarded: its slot is
 * freed and it reads as zeros; its neighbours keep their bytes. */
static void dontneed_swapped_out_page_reads_zeros(void **state)
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
	assert_int_equal(slot_state(&f, 1), VSWAP_PAGE_PRESENT);
	assert_int_equal(madvise(hfx_addr(&f, 0, 1), f.page_size, MADV_DONTNEED), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0);
	assert_int_equal(slot_state(&f, 1), VSWAP_PAGE_NONE);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 1);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Pending in copy mode: a page moved to staging and dropped with DONTNEED
 * is discarded too (zeros, before and after swap-out, and no slot). */
static void dontneed_staged_page_reads_zeros(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p + 1)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(madvise(hfx_addr(&f, 0, 1), f.page_size, MADV_DONTNEED), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0);
	assert_int_equal(slot_state(&f, 1), VSWAP_PAGE_NONE);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_dontneed");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(dontneed_swapped_out_page_reads_zeros),
	    cmocka_unit_test(dontneed_staged_page_reads_zeros),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
