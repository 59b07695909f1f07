/* SPDX-License-Identifier: MIT */
/* util/array.h: the one growable array grows, keeps its contents, and
 * refuses sizes that overflow without touching the array. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/array.h"

static void test_grows_by_doubling_and_keeps_contents(void **state)
{
	(void)state;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0, grows = 0;
	for (uint64_t i = 0; i < 100000; i++) {
		size_t before = cap;
		assert_int_equal(ARRAY_RESERVE(v, cap, n + 1, 16), 0);
		grows += cap != before;
		assert_true(cap >= n + 1);
		v[n++] = i * 7;
	}
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(v[i], i * 7);
	/* 16, 32, ... 131072: amortised O(1) per push */
	assert_int_equal(grows, 14);
	assert_int_equal(cap, 131072);
	/* Room already there: nothing moves. */
	uint64_t *same = v;
	assert_int_equal(ARRAY_RESERVE(v, cap, 5, 16), 0);
	assert_ptr_equal(v, same);
	free(v);
}

static void test_reserve_many_at_once(void **state)
{
	(void)state;
	char *b = NULL;
	size_t cap = 0;
	assert_int_equal(ARRAY_RESERVE(b, cap, 1000, 64), 0);
	assert_int_equal(cap, 1024);
	assert_int_equal(ARRAY_RESERVE(b, cap, 1025, 64), 0);
	assert_int_equal(cap, 2048);
	free(b);
}

static void test_overflow_is_enomem_and_leaves_array(void **state)
{
	(void)state;
	uint64_t *v = NULL;
	size_t cap = 0;
	assert_int_equal(ARRAY_RESERVE(v, cap, 3, 4), 0);
	v[0] = 42;
	uint64_t *before = v;
	/* elements fit size_t, bytes do not */
	assert_int_equal(ARRAY_RESERVE(v, cap, SIZE_MAX / 4, 4), -ENOMEM);
	/* the count itself cannot be reached by doubling */
	assert_int_equal(ARRAY_RESERVE(v, cap, SIZE_MAX, 4), -ENOMEM);
	assert_ptr_equal(v, before);
	assert_int_equal(cap, 4);
	assert_int_equal(v[0], 42);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grows_by_doubling_and_keeps_contents),
	    cmocka_unit_test(test_reserve_many_at_once),
	    cmocka_unit_test(test_overflow_is_enomem_and_leaves_array),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
