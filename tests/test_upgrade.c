/* SPDX-License-Identifier: MIT */
/*
 * Format 1 (vswap 0.1.0) stores, made by tests/helpers/v1_store.c from the
 * documented layout: refused by name with the converting command, converted
 * by vswap_store_upgrade() and vswap-upgrade, every page served right or
 * lost after the conversion (never given a checksum of bad bytes), and an
 * interrupted conversion finished by a second run.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/superblock.h"
#include "tests/helpers/store_fixture.h"
#include "tests/helpers/v1_store.h"

static const struct v1_shape shape = {
    .total = 512,
    .written = 200,
    .stale_first = 20,
    .stale_count = 5,
    .lost_page = 30,
    .bad_page = 40,
    .staged_first = 300,
    .staged_count = 10,
};

static void fill(void *buf, uint32_t ps, uint64_t page)
{
	fixture_pattern(buf, ps, page, 7);
}

static int setup(void **state)
{
	struct store_fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(fixture_init(f), 0);
	assert_int_equal(v1_store_make(f->path, f->dir, &shape, fill), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_cleanup(*state);
	free(*state);
	return 0;
}

static void expect_converted(struct store_fixture *f)
{
	struct vswap_store *s;
	uint8_t *got = malloc(f->page_size), *want = malloc(f->page_size);
	assert_true(got && want);
	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), 0);
	struct vswap_store_info info;
	vswap_store_info(s, &info);
	assert_int_equal(info.format_version, 2);
	for (uint64_t p = 0; p < shape.written; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		if (p == shape.lost_page || p == shape.bad_page) {
			/* Bytes that fail their format-1 checksum are not
			 * blessed with a new one: the page is lost. */
			assert_int_equal(pi.state, VSWAP_PAGE_LOST);
			assert_int_not_equal(vswap_store_read_page(s, p, got), 0);
			continue;
		}
		bool stale = p >= shape.stale_first && p < shape.stale_first + shape.stale_count;
		assert_int_equal(pi.state, stale ? VSWAP_PAGE_STALE : VSWAP_PAGE_PRESENT);
		fill(want, f->page_size, p);
		assert_int_equal(vswap_store_read_page(s, p, got), 0);
		assert_memory_equal(got, want, f->page_size);
		if (stale)
			assert_int_equal(vswap_store_stale_equals(s, p, want), 1);
	}
	/* Staged pages kept, with the checksums of the staged bytes. */
	for (uint64_t p = shape.staged_first; p < shape.staged_first + shape.staged_count; p++) {
		uint64_t sum;
		assert_true(vswap_store_staged(s, p));
		assert_int_equal(vswap_store_staged_sum(s, p, &sum), 0);
		fill(want, f->page_size, p ^ 0x777);
		assert_true(sum == vswap_store_page_checksum(s, p, want));
	}
	assert_int_equal(vswap_store_close(s), 0);
	free(got);
	free(want);
}

static void test_v1_refused_by_name(void **state)
{
	struct store_fixture *f = *state;
	struct vswap_store *s = NULL;
	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), -EPROTONOSUPPORT);
	assert_null(s);
	assert_non_null(strstr(f->last_log, "format 1"));
	assert_non_null(strstr(f->last_log, "vswap-upgrade"));
	assert_non_null(strstr(f->last_log, f->path));
}

static void test_v1_converted(void **state)
{
	struct store_fixture *f = *state;
	assert_int_equal(vswap_store_upgrade(f->path, &f->opts), 0);
	expect_converted(f);
	/* A second run finds the current format and changes nothing. */
	assert_int_equal(vswap_store_upgrade(f->path, &f->opts), 1);
	expect_converted(f);
}

/* A crash after the index commit, before the superblock: the next run
 * finishes the conversion from the converted index. */
static void test_interrupted_conversion_finished(void **state)
{
	struct store_fixture *f = *state;
	assert_int_equal(vswap_store_upgrade(f->path, &f->opts), 0);
	int fd = open(f->path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t buf[VSWAP_SB_BYTES];
	struct vswap_superblock sb;
	const char *why;
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	assert_int_equal(superblock_decode(buf, sizeof(buf), &sb, &why), 0);
	sb.format_version = 1;
	superblock_encode(&sb, buf);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), sizeof(buf));
	close(fd);
	struct vswap_store *s = NULL;
	assert_int_equal(vswap_store_open(f->path, &f->opts, &s), -EPROTONOSUPPORT);
	assert_int_equal(vswap_store_upgrade(f->path, &f->opts), 0);
	expect_converted(f);
}

/* The command the refusal names does the same. */
static void test_tool_converts(void **state)
{
	struct store_fixture *f = *state;
	const char *bdir = getenv("VSWAP_BUILD_DIR") ? getenv("VSWAP_BUILD_DIR") : VSWAP_BUILD_DIR;
	char tool[512];
	snprintf(tool, sizeof(tool), "%s/vswap-upgrade", bdir);
	if (access(tool, X_OK) != 0)
		skip();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execl(tool, tool, "--staging-dir", f->dir, f->path, (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	expect_converted(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_v1_refused_by_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_converted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_interrupted_conversion_finished, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tool_converts, setup, teardown),
	};
	return cmocka_run_group_tests_name("upgrade", tests, NULL, NULL);
}
