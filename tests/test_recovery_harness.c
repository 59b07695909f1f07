/* SPDX-License-Identifier: MIT */
/*
 * The crash harness (rfx_check_after_crash), exercised on crashes made by
 * hand until the handler's kill test drives it: a child writes pages and
 * dies before the commit (leaked slots), or after log-ahead staging but
 * before the copy, or mid-way through freeing; the harness must see fsck -y
 * exit 0 or 1, a second run exit 0, and every surviving page verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/helpers/recovery_fixture.h"

static const struct rfx_shape shape = {.total_pages = 512, .written = 256};

enum crash_point { CRASH_BEFORE_COMMIT, CRASH_AFTER_STAGE_MARK, CRASH_AFTER_FREE, CRASH_POINTS };

/* In a child: change the store, then die by SIGKILL at @point. */
static void crash_child(const struct rfx_store *fx, enum crash_point point)
{
	struct vswap_store *s;
	uint8_t *buf = malloc(64 * (size_t)fx->page_size);

	if (!buf || rfx_open(fx, false, &s))
		_exit(1);
	for (int i = 0; i < 64; i++)
		rfx_pattern(300 + (uint64_t)i, fx->page_size, buf + (size_t)i * fx->page_size);
	switch (point) {
	case CRASH_BEFORE_COMMIT:
		vswap_store_write(s, 300, 64, buf); /* bytes land, index does not */
		break;
	case CRASH_AFTER_STAGE_MARK:
		vswap_store_stage_mark(s, 400, 16);
		vswap_store_commit(s); /* recorded, never copied */
		break;
	case CRASH_AFTER_FREE:
		vswap_store_free(s, 0, 32);
		vswap_store_write(s, 300, 64, buf);
		vswap_store_commit(s);
		vswap_store_mark_stale(s, 40, 8);
		break;
	default:
		break;
	}
	raise(SIGKILL);
}

static void test_crash_points(void **state)
{
	(void)state;
	for (int point = 0; point < CRASH_POINTS; point++) {
		struct rfx_store fx;
		struct rfx_crash_result r;
		pid_t pid;
		int status;

		assert_int_equal(rfx_init(&fx, "harness"), 0);
		assert_int_equal(rfx_build(&fx, &shape), 0);
		pid = fork();
		if (pid == 0)
			crash_child(&fx, (enum crash_point)point);
		assert_true(pid > 0);
		waitpid(pid, &status, 0);
		assert_true(WIFSIGNALED(status));
		if (rfx_check_after_crash(fx.path, NULL, &r) != 0)
			fail_msg("crash point %d: %s", point, r.why);
		printf("crash point %d: fsck -y exit %d, then -n exit %d, %llu pages verified, "
		       "%llu lost\n",
		       point, r.repair_exit, r.check_exit, (unsigned long long)r.verified,
		       (unsigned long long)r.lost);
		assert_int_equal(r.repair_exit, 1); /* at least the unclean shutdown */
		assert_int_equal(r.lost, 0);
		rfx_cleanup(&fx);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crash_points),
	};

	if (rfx_require_tool("vswap-fsck"))
		return 77;
	return cmocka_run_group_tests_name("recovery_harness", tests, NULL, NULL);
}
