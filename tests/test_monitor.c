/* SPDX-License-Identifier: MIT */
/*
 * The monitor's state machine beyond the scenarios: commands a state
 * ignores say so, enable reports failure, slow file cleanup, waiting for a
 * state, and the status JSON.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

static const size_t three[2] = {3, 3};

static enum vswap_state state_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st.state;
}

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered, open;
};

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

static void gate_arm(struct hfx *f, struct gate *g)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->entered = g->open = false;
	pthread_mutex_lock(&f->h->lock);
	f->h->job_hook = gate_hook;
	f->h->job_hook_ctx = g;
	pthread_mutex_unlock(&f->h->lock);
}

static void gate_wait_entered(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->entered)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static void ignored_commands_say_so(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	/* Ready */
	assert_int_equal(vswap_handler_trim(f.h), -EINVAL);
	assert_int_equal(vswap_handler_swap_out(f.h), -EINVAL);
	assert_int_equal(vswap_handler_disable(f.h, false), -EALREADY);
	/* TrimInProgress, held after its first batch */
	assert_int_equal(hfx_fill(&f, 0, 0, 0), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct gate g;
	gate_arm(&f, &g);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	gate_wait_entered(&g);
	assert_int_equal(state_of(&f), VSWAP_STATE_TRIM_IN_PROGRESS);
	assert_int_equal(vswap_handler_trim(f.h), -EALREADY);
	assert_int_equal(vswap_handler_swap_out(f.h), -EBUSY);
	gate_open(&g);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	/* Active */
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), -EALREADY);
	assert_int_equal(vswap_handler_trim(f.h), -EALREADY);
	/* SwapInInProgress, held after its first chunk */
	gate_arm(&f, &g);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	gate_wait_entered(&g);
	assert_int_equal(state_of(&f), VSWAP_STATE_SWAP_IN_IN_PROGRESS);
	assert_int_equal(vswap_handler_trim(f.h), -EBUSY);
	assert_int_equal(vswap_handler_swap_out(f.h), -EBUSY);
	assert_int_equal(vswap_handler_disable(f.h, true), 0); /* flag only */
	gate_open(&g);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 1);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void enable_reports_failure(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	/* Region 2 unmapped: registration fails, enable says so, Ready. */
	void *r2 = f.regions[1].addr;
	size_t len = f.regions[1].len;
	assert_int_equal(munmap(r2, len), 0);
	int rc = vswap_handler_enable(f.h);
	assert_true(rc < 0);
	assert_int_equal(state_of(&f), VSWAP_STATE_READY);
	assert_int_equal(mmap(r2, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f.memfd,
			      f.regions[1].offset),
			 r2);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(state_of(&f), VSWAP_STATE_PENDING);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void slow_cleanup_until_next_disable(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(vswap_handler_disable(f.h, true), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	/* The first step is 5 s away: the stale copy is still there. */
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, 1, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_STALE);
	/* A non-slow disable in Ready finishes the cleanup at once. */
	assert_int_equal(vswap_handler_disable(f.h, false), -EALREADY);
	assert_int_equal(vswap_handler_page_info(f.h, 1, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_NONE);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 1);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void exit_from_pending_keeps_content(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	assert_int_equal(hfx_fill(&f, 1, 2, 9), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_wait_state(f.h, VSWAP_STATE_ACTIVE, 30), -ETIMEDOUT);
	assert_int_equal(vswap_handler_destroy(f.h), 0);
	f.h = NULL;
	assert_int_equal(hfx_page_byte(&f, 1, 2), 9); /* no handler any more */
	assert_int_equal(hfx_teardown(&f), 0);
}

static void status_json(void **state)
{
	(void)state;
	struct vswap_status st = {
	    .state = VSWAP_STATE_ACTIVE,
	    .metrics = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16},
	    .transition = {13, 14},
	    .last_error = -5,
	    .uffds = 2,
	    .enable_mode = VSWAP_ENABLE_PROTECT,
	};
	char buf[1024];
	const char *want =
	    "{\"state\":\"Active\",\"metrics\":{\"resident_pages\":1,\"copied_from_file_pages\":2,"
	    "\"copied_from_staging_pages\":3,\"zeroed_pages\":4,\"redundant_pages\":5,"
	    "\"staging_pages\":6,\"swap_pages\":7,\"checksum_failures\":8,\"poisoned_pages\":9,"
	    "\"bytes_written\":10,\"bytes_read\":11,\"commits\":12,\"protected_pages\":15,"
	    "\"dirtied_pages\":16},\"state_transition\":{\"pages\":13,\"time_ms\":14},"
	    "\"last_error\":-5,\"uffds\":2,\"enable_mode\":\"protect\"}";
	assert_int_equal(vswap_status_to_json(&st, buf, sizeof(buf)), (int)strlen(want));
	assert_string_equal(buf, want);
	assert_int_equal(vswap_status_to_json(&st, buf, 10), (int)strlen(want)); /* truncated */
	assert_int_equal(strlen(buf), 9);
	assert_int_equal(vswap_status_to_json(NULL, buf, 10), -EINVAL);
	for (int s = 0; s <= 6; s++)
		assert_string_not_equal(vswap_state_name((enum vswap_state)s), "Unknown");
	enum vswap_enable_mode m;
	for (int s = VSWAP_ENABLE_AUTO; s <= VSWAP_ENABLE_PROTECT; s++) {
		const char *name = vswap_enable_mode_name((enum vswap_enable_mode)s);
		assert_int_equal(vswap_enable_mode_parse(name, &m), 0);
		assert_int_equal(m, s);
	}
	assert_int_equal(vswap_enable_mode_parse("move", &m), -EINVAL);
}

int main(void)
{
	hfx_skip_if_unavailable("monitor");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ignored_commands_say_so),
	    cmocka_unit_test(enable_reports_failure),
	    cmocka_unit_test(slow_cleanup_until_next_disable),
	    cmocka_unit_test(exit_from_pending_keeps_content),
	    cmocka_unit_test(status_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
