/* SPDX-License-Identifier: MIT */
/*
 * Lost pages cannot be missed, and discards by hole punch are seen:
 *   - a lost page is listed (vswap_handler_lost_pages), counted and listed
 *     in the status JSON, and destroy and detach return -EBADMSG while it
 *     exists (a detached loss stays recorded for the next handler);
 *   - a uffd added after the swap-in (the regions unregistered) gets the
 *     poison too: its process reads SIGBUS there, not the memfd's hole
 *     (zeros);
 *   - a VMM that frees guest memory by punching the memfd (no REMOVE event
 *     reaches any uffd) and calls vswap_handler_discard() reads zeros
 *     afterwards; without the call the old bytes come back from the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

static uint8_t byte_of(uint64_t p)
{
	return (uint8_t)(0x50 + p);
}

/* Pages 0..3 filled and swapped out; page 2's slot damaged and faulted:
 * lost (SIGBUS).  False if the kernel cannot poison. */
static bool lose_page_2(struct hfx *f)
{
	if (!(f->h->features & UFFD_FEATURE_POISON))
		return false;
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(f, 0, p, byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_corrupt_slot(f, 0, 2), 0);
	assert_int_equal(hfx_page_byte(f, 0, 2), -3); /* SIGBUS */
	return true;
}

static void lost_listed_reported_and_fail_destroy(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	if (!lose_page_2(&f)) {
		hfx_teardown(&f);
		skip();
	}
	uint64_t list[4] = {0}, n = 0;
	assert_int_equal(vswap_handler_lost_pages(f.h, list, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0], f.first[0] + 2);
	assert_int_equal(vswap_handler_lost_pages(f.h, NULL, 0, &n), 0);
	assert_int_equal(n, 1);
	char json[2048], want[64];
	int len = vswap_handler_status_json(f.h, json, sizeof(json));
	assert_true(len > 0 && (size_t)len < sizeof(json));
	assert_non_null(strstr(json, "\"lost_pages\":1,"));
	snprintf(want, sizeof(want), "\"lost\":[%llu]", (unsigned long long)(f.first[0] + 2));
	assert_non_null(strstr(json, want));
	assert_int_equal(json[len - 1], '}');
	assert_int_equal(vswap_handler_status_json(f.h, NULL, 0), len);
	/* The swap-in brings the rest back; the lost page stays poisoned. */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 3), byte_of(3));
	assert_int_equal(hfx_page_byte(&f, 0, 2), -3);
	assert_int_equal(hfx_teardown(&f), -EBADMSG);
}

/* Detach, like destroy, fails while a page is lost: the VMM hands the
 * store on, and must know the guest's memory is not whole.  The loss is in
 * the store, so the next handler over it knows the page too. */
static void lost_fails_detach(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	if (!lose_page_2(&f)) {
		hfx_teardown(&f);
		skip();
	}
	assert_int_equal(vswap_handler_detach(f.h), -EBADMSG);
	f.h = NULL;
	assert_int_equal(vswap_store_close(f.store), 0);
	f.store = NULL;
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log_level = VSWAP_LOG_ERROR};
	assert_int_equal(vswap_store_open(f.path, &so, &f.store), 0);
	assert_int_equal(hfx_start(&f, NULL), 0);
	uint64_t list[2] = {0}, n = 0;
	assert_int_equal(vswap_handler_lost_pages(f.h, list, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0], f.first[0] + 2);
	assert_int_equal(vswap_handler_detach(f.h), -EBADMSG);
	f.h = NULL;
	assert_int_equal(hfx_teardown(&f), 0);
}

static void child_bus(int sig)
{
	(void)sig;
	_exit(0);
}

/* The SIGBUS expected on page 2 ends the child with 0; zeros exit 3. */
static int child_reads_page_2(const struct hfx *f, void *arg)
{
	(void)arg;
	if (*(const volatile uint8_t *)hfx_addr(f, 0, 3) != byte_of(3))
		return 2;
	struct sigaction sa = {.sa_handler = child_bus};
	sigaction(SIGBUS, &sa, NULL);
	uint8_t b = *(const volatile uint8_t *)hfx_addr(f, 0, 2);
	return b == 0 ? 3 : 4;
}

static void lost_poisoned_for_uffd_added_later(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	if (!lose_page_2(&f)) {
		hfx_teardown(&f);
		skip();
	}
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	/* A device process started now: its uffd is added while the regions
	 * are not registered. */
	struct hfx_child c;
	assert_int_equal(hfx_child_start(&f, child_reads_page_2, NULL, &c), 0);
	assert_int_equal(hfx_child_go(&c), 0);
	int rc = hfx_child_wait(&c, 0);
	if (rc == 3)
		fail_msg("the lost page reads as zeros in a process added after the swap-in");
	assert_int_equal(rc, 0);
	assert_int_equal(hfx_teardown(&f), -EBADMSG);
}

static void discard_after_hole_punch(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	off_t off = f.regions[0].offset;
	/* Page 1: the VMM punches without telling the handler: no event, and
	 * the old bytes come back from the store (what discard is for). */
	assert_int_equal(fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   off + 1 * (off_t)f.page_size, (off_t)f.page_size),
			 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), byte_of(1));
	/* Page 2: discarded, then punched: zeros, and nothing left in the store. */
	assert_int_equal(vswap_handler_discard(f.h, hfx_addr(&f, 0, 2), f.page_size), 0);
	assert_int_equal(fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   off + 2 * (off_t)f.page_size, (off_t)f.page_size),
			 0);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 0);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 2, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_NONE);
	assert_int_equal(hfx_page_byte(&f, 0, 3), byte_of(3));
	/* Bad arguments. */
	assert_int_equal(vswap_handler_discard(f.h, hfx_addr(&f, 0, 2) + 1, f.page_size), -EINVAL);
	assert_int_equal(vswap_handler_discard(f.h, hfx_addr(&f, 0, 2), 0), -EINVAL);
	assert_int_equal(vswap_handler_discard(f.h, (void *)(uintptr_t)f.page_size, f.page_size),
			 -EFAULT);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A discard also ends a loss: the guest gave the page up. */
static void discard_clears_lost(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	if (!lose_page_2(&f)) {
		hfx_teardown(&f);
		skip();
	}
	assert_int_equal(vswap_handler_discard(f.h, hfx_addr(&f, 0, 2), f.page_size), 0);
	uint64_t n = 1;
	assert_int_equal(vswap_handler_lost_pages(f.h, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A flipped byte in a staged copy that a detach left: format 1 served it
 * to the guest; now the reopened store finds it failing and the guest gets
 * SIGBUS there, every other page intact. */
static void flipped_staged_byte_after_detach(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	if (!(f.h->features & UFFD_FEATURE_POISON)) {
		hfx_teardown(&f);
		skip();
	}
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_fill(&f, 0, p, byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_detach(f.h), 0);
	f.h = NULL;
	char staging[512];
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(f.store));
	assert_int_equal(vswap_store_close(f.store), 0);
	f.store = NULL;
	int fd = open(staging, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	off_t at = (off_t)(f.first[0] + 5) * (off_t)f.page_size + 100;
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log_level = VSWAP_LOG_ERROR};
	assert_int_equal(vswap_store_open(f.path, &so, &f.store), 0);
	assert_int_equal(hfx_start(&f, NULL), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), p == 5 ? -3 : byte_of(p));
	uint64_t lost[2], n = 0;
	assert_int_equal(vswap_handler_lost_pages(f.h, lost, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(lost[0], f.first[0] + 5);
	assert_int_equal(hfx_teardown(&f), -EBADMSG);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_lost");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lost_listed_reported_and_fail_destroy),
	    cmocka_unit_test(lost_fails_detach),
	    cmocka_unit_test(lost_poisoned_for_uffd_added_later),
	    cmocka_unit_test(discard_after_hole_punch),
	    cmocka_unit_test(discard_clears_lost),
	    cmocka_unit_test(flipped_staged_byte_after_detach),
	};
	return cmocka_run_group_tests_name("handler_lost", tests, NULL, NULL);
}
