/* SPDX-License-Identifier: MIT */
/*
 * No fault waits forever: a fault message read and never answered (dropped
 * here by the test hook, as by a handler killed after reading it) is found
 * by the monitor's sweep, which wakes the ranges; the thread faults again
 * and is served (handler/sweep.c).  Before the sweep it waited in the kernel
 * forever: vswapd's KVM kill test hung once that way, both vCPUs asleep in
 * handle_userfault and the daemon idle.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

static uint8_t byte_of(uint64_t p)
{
	return (uint8_t)(0x30 + p);
}

/* Pages 0..7 filled and swapped out: every access faults. */
static void swapped_out(struct hfx *f)
{
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_fill(f, 0, p, byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
}

static void lost_fault_is_woken(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	swapped_out(&f);
	/* Two faults dropped, one after the other (the second is the first
	 * one's thread faulting again after the first sweep's wake). */
	atomic_store(&f.h->m.drop_faults, 2);
	assert_int_equal(hfx_page_byte(&f, 0, 3), byte_of(3));
	assert_int_equal(atomic_load(&f.h->m.drop_faults), 0);
	assert_int_equal(atomic_load(&f.h->m.swept), 2);
	/* The others are served as ever, with no sweep. */
	for (uint64_t p = 4; p < 8; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), byte_of(p));
	assert_int_equal(atomic_load(&f.h->m.swept), 2);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_sweep");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lost_fault_is_woken),
	};
	return cmocka_run_group_tests_name("handler_sweep", tests, NULL, NULL);
}
