/* SPDX-License-Identifier: MIT */
/*
 * What the ABI promises (docs/ABI.md): the version the library reports is
 * the headers', and the option structs' reserved space, the room later
 * options grow into, must be zero: a program built against newer headers
 * that sets a newer option is refused by an older library, not ignored.
 * Also the wording of the errors every tool prints.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vswap/client.h>
#include <vswap/handler.h>
#include <vswap/recovery.h>
#include <vswap/store.h>
#include <vswap/version.h>

#include "tests/helpers/store_fixture.h"

static int setup(void **state)
{
	static struct store_fixture f;
	memset(&f, 0, sizeof(f));
	if (fixture_init(&f))
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	fixture_cleanup(*state);
	return 0;
}

/* The library's version is the headers' (one definition, version.h). */
static void test_version(void **state)
{
	(void)state;
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", VSWAP_VERSION_MAJOR, VSWAP_VERSION_MINOR,
		 VSWAP_VERSION_PATCH);
	assert_string_equal(VSWAP_VERSION, want);
	assert_string_equal(vswap_version(), VSWAP_VERSION);
	assert_int_equal(vswap_version_number(), VSWAP_VERSION_NUMBER);
	assert_int_equal(VSWAP_VERSION_NUMBER, VSWAP_VERSION_MAJOR * 10000 +
						   VSWAP_VERSION_MINOR * 100 + VSWAP_VERSION_PATCH);
}

/* A nonzero reserved word is an option this library does not know. */
static void test_reserved_must_be_zero(void **state)
{
	struct store_fixture *f = *state;
	struct vswap_store *s;
	struct vswap_fsck *k;
	struct vswap_handler *h;
	uint64_t pages = 16;

	struct vswap_store_opts so = f->opts;
	so.reserved[sizeof(so.reserved) / sizeof(so.reserved[0]) - 1] = 1; /* the last word */
	assert_int_equal(vswap_store_create(f->path, &so, &s), -EINVAL);
	assert_int_equal(access(f->path, F_OK), -1); /* nothing made */
	assert_int_equal(vswap_store_create(f->path, &f->opts, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, &pages, 1), 0);

	/* The handler refuses before it looks at the regions' memory. */
	struct vswap_handler_opts ho = {.store = s};
	ho.reserved[0] = 1;
	struct vswap_region r = {.addr = NULL, .len = 0, .memfd = -1};
	int rc = vswap_handler_create(&r, 1, &ho, &h);
	assert_true(rc == -EINVAL);
	assert_int_equal(vswap_store_close(s), 0);

	assert_int_equal(vswap_store_open(f->path, &so, &s), -EINVAL);
	struct vswap_fsck_opts fo = {.mode = VSWAP_FSCK_CHECK};
	fo.reserved[3] = 1;
	assert_int_equal(vswap_fsck_new(f->path, &fo, &k), -EINVAL);
	fo.reserved[3] = 0;
	assert_int_equal(vswap_fsck_new(f->path, &fo, &k), 0);
	vswap_fsck_free(k);

	/* The client refuses before it dials (nobody listens there). */
	char sock[sizeof(f->dir) + 8];
	snprintf(sock, sizeof(sock), "%s/sock", f->dir);
	struct vswap_client_opts co = {.store_path = f->path, .manual_reconnect = true};
	struct vswap_client *c;
	co.reserved[7] = 1;
	assert_int_equal(vswap_client_connect(sock, &co, &c), -EINVAL);
	co.reserved[7] = 0;
	assert_int_equal(vswap_client_connect(sock, &co, &c), -ENOENT);
}

/* -EBUSY is also a handler's answer to a command while another job runs:
 * the message may not claim only that another handle holds the store. */
static void test_strerror_busy(void **state)
{
	(void)state;
	const char *m = vswap_strerror(-EBUSY);
	assert_non_null(strstr(m, "another handle"));
	assert_non_null(strstr(m, "another operation is running"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_version),
	    cmocka_unit_test_setup_teardown(test_reserved_must_be_zero, setup, teardown),
	    cmocka_unit_test(test_strerror_busy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
