/* SPDX-License-Identifier: MIT */
/* vswap-dump: every view prints what the index holds, never changes a
 * byte, and works while a handler holds the store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/helpers/recovery_fixture.h"

static const struct rfx_shape shape = {
    .total_pages = 256,
    .written = 100,
    .stale_first = 10,
    .stale_count = 5,
    .staged_first = 200,
    .staged_count = 8,
};

static int setup(void **state)
{
	return rfx_setup(state, "dump", &shape);
}

static int teardown(void **state)
{
	return rfx_teardown(state);
}

static char *dump(const struct rfx_store *fx, const char *view, bool json)
{
	const char *args[4] = {view, json ? "--json" : fx->path, json ? fx->path : NULL, NULL};
	char *out = NULL;

	assert_int_equal(rfx_run_tool("vswap-dump", args, &out, NULL), 0);
	assert_non_null(out);
	return out;
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void test_views(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t before = rfx_hash_store(fx);
	char *out;

	out = dump(fx, "--summary", false);
	assert_non_null(strstr(out, "95 present, 5 stale, 0 lost"));
	assert_non_null(strstr(out, "staging pages:  8"));
	assert_non_null(strstr(out, "clean:          yes"));
	free(out);
	out = dump(fx, "--summary", true);
	assert_non_null(strstr(out, "\"pages_present\":95"));
	assert_non_null(strstr(out, "\"clean\":true"));
	free(out);
	out = dump(fx, "--pages", true);
	assert_int_equal(count(out, "\"page\":"), 100);
	assert_int_equal(count(out, "\"state\":\"stale\""), 5);
	assert_non_null(strstr(out, "{\"schema_version\":1,\"pages\":[{\"page\":0,\"region\":0,"
				    "\"slot\":0,\"state\":\"present\",\"xxh3\":\""));
	free(out);
	out = dump(fx, "--pages", false);
	assert_int_equal(count(out, "present"), 95);
	free(out);
	out = dump(fx, "--slots", true);
	assert_int_equal(count(out, "\"slot\":"), 100);
	free(out);
	out = dump(fx, "--staging", true);
	assert_non_null(strstr(out, "{\"first_page\":200,\"pages\":8,\"region\":1}"));
	free(out);
	out = dump(fx, "--meta", true);
	assert_non_null(strstr(out, "\"total_pages\":256"));
	free(out);
	assert_true(rfx_hash_store(fx) == before);
}

static void test_while_held(void **state)
{
	struct rfx_store *fx = *state;
	pid_t holder = rfx_holder_start(fx);
	char *out;

	assert_true(holder > 0);
	uint64_t before = rfx_hash_store(fx);
	out = dump(fx, "--pages", true);
	assert_int_equal(count(out, "\"page\":"), 100);
	free(out);
	assert_true(rfx_hash_store(fx) == before);
	rfx_holder_stop(holder);
}

static void test_errors(void **state)
{
	const char *missing[] = {"/nonexistent/x.swap", NULL};
	const char *help[] = {"--help", NULL};
	char *err = NULL;

	(void)state;
	assert_int_equal(rfx_run_tool("vswap-dump", missing, NULL, &err), 1);
	assert_non_null(strstr(err, "/nonexistent/x.swap"));
	free(err);
	assert_int_equal(rfx_run_tool("vswap-dump", help, NULL, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_views, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_while_held, setup, teardown),
	    cmocka_unit_test(test_errors),
	};

	if (rfx_require_tool("vswap-dump"))
		return 77;
	return cmocka_run_group_tests_name("dump", tests, NULL, NULL);
}
