/* SPDX-License-Identifier: MIT */
/*
 * Corruption tests for vswap-fsck: each damage is reported by the
 * right kind and page, -n never changes a byte, a repair run exits 1 and a
 * second run exits 0, and nothing crashes.  Stores are built through the
 * store API in private directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <vswap/recovery.h>

#include "tests/helpers/raw_index.h"
#include "tests/helpers/recovery_fixture.h"

#define TOTAL 1024
#define WRITTEN 512

static const struct rfx_shape default_shape = {
    .total_pages = TOTAL,
    .written = WRITTEN,
    .stale_first = 100,
    .stale_count = 10,
    .staged_first = 700,
    .staged_count = 20,
};

static int setup(void **state)
{
	return rfx_setup(state, "fsck", &default_shape);
}

static int teardown(void **state)
{
	return rfx_teardown(state);
}

/* Run the library in @mode; returns the handle (caller frees). */
static struct vswap_fsck *run_lib(const struct rfx_store *fx, enum vswap_fsck_mode mode)
{
	struct vswap_fsck_opts o = {.mode = mode, .log_level = VSWAP_LOG_ERROR};
	struct vswap_fsck *f;

	assert_int_equal(vswap_fsck_new(fx->path, &o, &f), 0);
	vswap_fsck_run(f);
	return f;
}

static bool has_problem(const struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
			uint64_t slot)
{
	return rfx_has_problem(f, kind, page, slot, -1);
}

static bool is_lost(const struct vswap_fsck *f, uint64_t page)
{
	return rfx_is_lost(f, page);
}

static uint64_t slot_of(const struct rfx_store *fx, uint64_t page)
{
	uint64_t slot;

	assert_int_equal(rfx_slot_of(fx, page, &slot), 0);
	return slot;
}

/* -n exits @want and changes no byte of any file of the store. */
static void expect_check_exit(const struct rfx_store *fx, int want)
{
	uint64_t before = rfx_hash_store(fx);
	int code = rfx_fsck(fx, "-n", NULL, NULL);

	assert_int_equal(code, want);
	assert_true(rfx_hash_store(fx) == before);
}

/* The same for the orphan staging files (--orphans). */
static void expect_orphans_check_exit(const struct rfx_store *fx, int want)
{
	uint64_t before = rfx_hash_store(fx);

	assert_int_equal(rfx_fsck(fx, "-n", NULL, NULL), 0); /* the store is clean */
	assert_int_equal(rfx_fsck_orphans(fx, "-n", NULL, NULL), want);
	assert_true(rfx_hash_store(fx) == before);
}

static void expect_orphans_repaired(const struct rfx_store *fx, const char *flag, int want)
{
	char *out = NULL, *err = NULL;
	int code = rfx_fsck_orphans(fx, flag, &out, &err);

	if (code != want)
		fprintf(stderr, "fsck %s --orphans exited %d\nstdout: %s\nstderr: %s\n", flag, code,
			out, err);
	assert_int_equal(code, want);
	free(out);
	free(err);
	expect_orphans_check_exit(fx, 0);
}

/* The e2fsck contract: the repair exits @want, the second run exits 0. */
static void expect_repair_then_clean(const struct rfx_store *fx, const char *flag, int want)
{
	char *out = NULL, *err = NULL;
	int code = rfx_fsck(fx, flag, &out, &err);

	if (code != want)
		fprintf(stderr, "fsck %s exited %d\nstdout: %s\nstderr: %s\n", flag, code, out,
			err);
	assert_int_equal(code, want);
	free(out);
	free(err);
	expect_check_exit(fx, 0);
}

static void test_clean_store(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f = run_lib(fx, VSWAP_FSCK_CHECK);
	struct vswap_fsck_counts k;

	assert_int_equal(vswap_fsck_exit_code(f), 0);
	assert_int_equal(vswap_fsck_problem_count(f), 0);
	vswap_fsck_counts(f, &k);
	assert_int_equal(k.records, WRITTEN);
	assert_int_equal(k.pages_checked, WRITTEN);
	assert_int_equal(k.bytes_verified, (uint64_t)WRITTEN * fx->page_size);
	assert_int_equal(k.staged_pages, 20);
	vswap_fsck_free(f);
	expect_check_exit(fx, 0);
	assert_int_equal(rfx_fsck(fx, "-y", NULL, NULL), 0);
}

static void test_flipped_bits(void **state)
{
	struct rfx_store *fx = *state;
	const uint64_t pages[] = {0, 77, 300, 511};
	struct vswap_fsck *f;

	srand(42);
	for (size_t i = 0; i < 4; i++) {
		uint64_t off =
		    rfx_slot_offset(fx, slot_of(fx, pages[i])) + (uint64_t)rand() % fx->page_size;

		assert_int_equal(rfx_flip_bit(fx->path, off, (unsigned)rand() % 8), 0);
	}
	expect_check_exit(fx, 4);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH), 4);
	for (size_t i = 0; i < 4; i++)
		assert_true(has_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, pages[i],
					slot_of(fx, pages[i])));
	vswap_fsck_free(f);
	/* -p loses nothing, so it leaves present pages alone. */
	assert_int_equal(rfx_fsck(fx, "-p", NULL, NULL), 4);
	f = run_lib(fx, VSWAP_FSCK_REPAIR);
	assert_int_equal(vswap_fsck_exit_code(f), 1);
	for (size_t i = 0; i < 4; i++)
		assert_true(is_lost(f, pages[i]));
	vswap_fsck_free(f);
	expect_check_exit(fx, 0);
	/* The lost pages stay listed, and the store refuses to serve them. */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(is_lost(f, 77));
	vswap_fsck_free(f);
}

static void test_stale_corruption_is_dropped_by_preen(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t slot = slot_of(fx, 105); /* stale */

	assert_int_equal(rfx_flip_bit(fx->path, rfx_slot_offset(fx, slot) + 9, 3), 0);
	expect_check_exit(fx, 4);
	expect_repair_then_clean(fx, "-p", 1);
}

static void test_truncated_file(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t last_slot = slot_of(fx, WRITTEN - 1);
	struct vswap_fsck *f;

	/* Cut the last three slots and half of the fourth. */
	assert_int_equal(
	    truncate(fx->path, (off_t)(rfx_slot_offset(fx, last_slot - 3) + fx->page_size / 2)), 0);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_exit_code(f), 4);
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_MISSING_DATA) +
			     vswap_fsck_count_kind(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH),
			 4);
	for (uint64_t p = WRITTEN - 3; p < WRITTEN; p++)
		assert_true(has_problem(f, VSWAP_PROBLEM_MISSING_DATA, p, UINT64_MAX));
	vswap_fsck_free(f);
	expect_repair_then_clean(fx, "-y", 1);
}

static void test_zeroed_superblock(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f;

	assert_int_equal(rfx_fill(fx->path, 0, 0, fx->page_size), 0);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_SUPERBLOCK, UINT64_MAX, UINT64_MAX));
	assert_int_equal(vswap_fsck_exit_code(f), 8);
	vswap_fsck_free(f);
	expect_check_exit(fx, 8);
}

static void test_foreign_index(void **state)
{
	struct rfx_store *fx = *state, other;
	char from[PATH_MAX + 16];
	struct vswap_fsck *f;
	const struct rfx_shape small = {.total_pages = 128, .written = 64};

	assert_int_equal(rfx_init(&other, "fsck-other"), 0);
	assert_int_equal(rfx_build(&other, &small), 0);
	snprintf(from, sizeof(from), "%s", other.index);
	assert_int_equal(rename(from, fx->index), 0);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_UUID_MISMATCH, UINT64_MAX, UINT64_MAX));
	assert_int_equal(vswap_fsck_exit_code(f), 8);
	vswap_fsck_free(f);
	expect_check_exit(fx, 8);
	assert_int_equal(rfx_fsck(fx, "-y", NULL, NULL), 8);
	rfx_cleanup(&other);
}

static void test_planted_bytes(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_store *s;
	uint64_t hole_slot = slot_of(fx, 200), end_slot;
	struct vswap_fsck *f;
	struct stat st;

	/* Free page 200 (its slot is punched), then plant bytes there and one
	 * slot past the end of the file. */
	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_free(s, 200, 1), 1);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close(s), 0);
	assert_int_equal(stat(fx->path, &st), 0);
	end_slot = (uint64_t)st.st_size / fx->page_size - 1;
	assert_int_equal(rfx_fill(fx->path, rfx_slot_offset(fx, hole_slot), 0xab, fx->page_size),
			 0);
	assert_int_equal(rfx_fill(fx->path, rfx_slot_offset(fx, end_slot), 0xcd, fx->page_size), 0);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_LEAKED_SLOT), 2);
	assert_true(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, hole_slot));
	assert_true(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, end_slot));
	vswap_fsck_free(f);
	expect_check_exit(fx, 4);
	expect_repair_then_clean(fx, "-p", 1);
}

/*
 * Freed slots keep their old bytes while the store is open (reused as they
 * are, not punched per slot): a crash leaves them as leaked slots that -p
 * punches without losing anything; a clean close punches them itself, so
 * the audit of a cleanly closed store finds nothing.
 */
static void test_freed_slots_after_crash_and_clean_close(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_store *s;
	struct vswap_fsck *f;
	uint64_t a = slot_of(fx, 200), b = slot_of(fx, 201), c = slot_of(fx, 210);

	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_free(s, 200, 2), 2);
	assert_int_equal(vswap_store_free(s, 210, 1), 1);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close_unclean(s), 0); /* as a kill leaves it */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, a < b ? a : b));
	assert_true(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, c));
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_BAD_RECORD), 0);
	vswap_fsck_free(f);
	expect_check_exit(fx, 4);
	expect_repair_then_clean(fx, "-p", 1);

	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_free(s, 220, 3), 3);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close(s), 0);
	expect_check_exit(fx, 0);
}

/* A killed handle's freed slots (never punched: nothing recorded them) are
 * punched by the next handle's clean close, lazy or not: a store closed
 * cleanly reports no leak. */
static void reopen_and_close(const struct rfx_store *fx, bool lazy)
{
	struct vswap_store_opts o = {
	    .staging_dir = fx->dir, .lazy_index = lazy, .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *s;

	assert_int_equal(vswap_store_open(fx->path, &o, &s), 0);
	assert_int_equal(vswap_store_close(s), 0);
}

static void freed_by_a_killed_handle(const struct rfx_store *fx, uint64_t first)
{
	struct vswap_store *s;

	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_free(s, first, 2), 2);
	assert_int_equal(vswap_store_free(s, first + 10, 1), 1);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(vswap_store_close_unclean(s), 0); /* as a kill leaves it */
}

static void test_killed_handles_freed_slots_punched_at_next_clean_close(void **state)
{
	struct rfx_store *fx = *state;

	freed_by_a_killed_handle(fx, 200);
	reopen_and_close(fx, false);
	expect_check_exit(fx, 0);

	freed_by_a_killed_handle(fx, 300);
	reopen_and_close(fx, true);
	expect_check_exit(fx, 0);
}

/* Open the index with liblmdb and let @edit change the value of @group. */
static void edit_group(const struct rfx_store *fx, uint64_t group,
		       void (*edit)(uint8_t *val, size_t *len))
{
	struct raw_index ri;
	uint8_t buf[8 + 16 * 64];
	size_t len = sizeof(buf);

	assert_int_equal(raw_index_open(&ri, fx->index), 0);
	assert_int_equal(raw_group_get(&ri, ri.pages, group, buf, &len), 0);
	edit(buf, &len);
	assert_int_equal(raw_group_put(&ri, ri.pages, group, group, buf, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
}

/* Group 1 holds pages 64..127, all present: entry i at 8 + 16 * i, its
 * checksum at +8.  Flip a bit of page 70's checksum. */
static void flip_checksum_of_page_70(uint8_t *val, size_t *len)
{
	(void)len;
	val[8 + 16 * 6 + 8] ^= 0x10;
}

static void test_lmdb_record_checksum_edited(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f;

	edit_group(fx, 1, flip_checksum_of_page_70);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_problem_count(f), 1);
	assert_true(has_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, 70, UINT64_MAX));
	vswap_fsck_free(f);
	expect_repair_then_clean(fx, "-y", 1);
}

static void truncate_value(uint8_t *val, size_t *len)
{
	(void)val;
	*len -= 5;
}

static void test_lmdb_record_undecodable(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f;

	edit_group(fx, 2, truncate_value); /* pages 128..191 */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 128, UINT64_MAX));
	/* Its 64 slots now hold bytes no decodable record names. */
	assert_true(vswap_fsck_count_kind(f, VSWAP_PROBLEM_LEAKED_SLOT) >= 1);
	assert_int_equal(vswap_fsck_exit_code(f), 4);
	vswap_fsck_free(f);
	/* -p must not punch slots that may hold the group's pages. */
	assert_int_equal(rfx_fsck(fx, "-p", NULL, NULL), 4);
	f = run_lib(fx, VSWAP_FSCK_REPAIR);
	assert_int_equal(vswap_fsck_exit_code(f), 1);
	for (uint64_t p = 128; p < 192; p++)
		assert_true(is_lost(f, p));
	vswap_fsck_free(f);
	expect_check_exit(fx, 0);
}

static void test_staging_records_and_bytes(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_store *s;
	struct vswap_fsck *f;
	char staging[PATH_MAX];

	/* A record with no bytes (crash after log-ahead, before the copy). */
	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_stage_mark(s, 800, 3), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	/* Both are what a crash leaves (a store closed cleanly has neither:
	 * see test_fsck_damage). */
	assert_int_equal(vswap_store_close_unclean(s), 0);
	/* Bytes no record covers (a clear that never punched). */
	assert_int_equal(rfx_fill(staging, 900 * (uint64_t)fx->page_size, 0x77, fx->page_size), 0);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_EMPTY_STAGING_RECORD, 800, UINT64_MAX));
	assert_true(has_problem(f, VSWAP_PROBLEM_LEAKED_STAGING, 900, UINT64_MAX));
	assert_true(has_problem(f, VSWAP_PROBLEM_UNCLEAN_SHUTDOWN, UINT64_MAX, UINT64_MAX));
	assert_int_equal(vswap_fsck_problem_count(f), 3);
	vswap_fsck_free(f);
	expect_check_exit(fx, 4);
	expect_repair_then_clean(fx, "-p", 1);
	/* The staged pages that were fine are still staged. */
	assert_int_equal(rfx_open(fx, true, &s), 0);
	assert_true(vswap_store_staged(s, 700));
	assert_false(vswap_store_staged(s, 800));
	vswap_store_close(s);
}

static void test_orphan_staging_file(void **state)
{
	struct rfx_store *fx = *state;
	char orphan[PATH_MAX], decoy[PATH_MAX];
	struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	struct vswap_fsck *f;
	int fd;

	snprintf(orphan, sizeof(orphan), "%s/vswap-01234567-89ab-4def-8123-456789abcdef.staging",
		 fx->dir);
	snprintf(decoy, sizeof(decoy), "%s/vswap-not-a-uuid.staging", fx->dir);
	fd = open(orphan, O_CREAT | O_EXCL | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	assert_int_equal(utimensat(AT_FDCWD, orphan, old, 0), 0);
	fd = open(decoy, O_CREAT | O_EXCL | O_RDWR, 0600);
	close(fd);
	assert_int_equal(utimensat(AT_FDCWD, decoy, old, 0), 0);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_ORPHAN_STAGING_FILE), 1);
	vswap_fsck_free(f);
	expect_orphans_check_exit(fx, 4);
	expect_orphans_repaired(fx, "-p", 1);
	assert_int_equal(access(orphan, F_OK), -1);
	assert_int_equal(access(decoy, F_OK), 0); /* not vswap's naming: untouched */
}

/* Another store, closed with staged bytes: its staging file names its swap
 * file (owner xattr), so no fsck takes it for an orphan while that store
 * exists; once the store is gone, -y reclaims it. */
static void test_closed_stores_staging_is_not_an_orphan(void **state)
{
	struct rfx_store *fx = *state;
	struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	struct vswap_store_opts o = {.staging_dir = fx->dir, .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *other;
	char other_path[PATH_MAX + 16], staging[PATH_MAX];
	uint64_t regions[] = {16};
	uint8_t page[65536];

	snprintf(other_path, sizeof(other_path), "%s/other.swap", fx->dir);
	assert_int_equal(vswap_store_create(other_path, &o, &other), 0);
	assert_int_equal(vswap_store_set_regions(other, regions, 1), 0);
	assert_int_equal(vswap_store_stage_mark(other, 3, 1), 0);
	assert_int_equal(vswap_store_commit(other), 0);
	rfx_pattern(3, fx->page_size, page);
	assert_int_equal(
	    pwrite(vswap_store_staging_fd(other), page, fx->page_size, 3 * (off_t)fx->page_size),
	    (ssize_t)fx->page_size);
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(other));
	assert_int_equal(vswap_store_close(other), 0);
	assert_int_equal(utimensat(AT_FDCWD, staging, old, 0), 0);

	assert_true(rfx_fsck_orphans(fx, "-y", NULL, NULL) <= 1);
	assert_int_equal(access(staging, F_OK), 0);

	/* The owner goes away: now the staged bytes belong to no store. */
	char idx[PATH_MAX + 32];
	snprintf(idx, sizeof(idx), "%s.idx", other_path);
	assert_int_equal(unlink(other_path), 0);
	unlink(idx);
	strcat(idx, "-lock");
	unlink(idx);
	struct vswap_fsck *f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_ORPHAN_STAGING_FILE), 1);
	vswap_fsck_free(f);
	expect_orphans_repaired(fx, "-y", 1);
	assert_int_equal(access(staging, F_OK), -1);
}

static void test_unclean_shutdown(void **state)
{
	struct rfx_store *fx = *state;
	pid_t holder = rfx_holder_start(fx);
	struct vswap_fsck *f;

	assert_true(holder > 0);
	rfx_holder_stop(holder); /* SIGKILL: no close */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_UNCLEAN_SHUTDOWN, UINT64_MAX, UINT64_MAX));
	vswap_fsck_free(f);
	expect_check_exit(fx, 4);
	expect_repair_then_clean(fx, "-p", 1);
}

static void test_busy_store(void **state)
{
	struct rfx_store *fx = *state;
	pid_t holder = rfx_holder_start(fx);
	char *out = NULL, *err = NULL, pid[32];

	assert_true(holder > 0);
	snprintf(pid, sizeof(pid), "%d", (int)holder);
	assert_int_equal(rfx_fsck(fx, "-y", &out, &err), 8);
	assert_non_null(strstr(err, pid));
	free(out);
	free(err);
	assert_int_equal(rfx_fsck(fx, "-p", NULL, NULL), 8);
	assert_int_equal(rfx_fsck(fx, "-n", &out, &err), 0);
	assert_non_null(strstr(err, "in use"));
	assert_non_null(strstr(out, "\"busy\":true"));
	free(out);
	free(err);
	rfx_holder_stop(holder);
}

static void test_random_damage_never_crashes(void **state)
{
	struct rfx_store *fx = *state;
	struct stat st;

	srand(7);
	assert_int_equal(stat(fx->path, &st), 0);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 40; i++)
			rfx_flip_bit(fx->path, (uint64_t)rand() % (uint64_t)st.st_size,
				     (unsigned)rand() % 8);
		for (int i = 0; i < 20; i++) {
			struct stat is;

			assert_int_equal(stat(fx->index, &is), 0);
			rfx_flip_bit(fx->index, (uint64_t)rand() % (uint64_t)is.st_size,
				     (unsigned)rand() % 8);
		}
		int n = rfx_fsck(fx, "-n", NULL, NULL);
		int y = rfx_fsck(fx, "-y", NULL, NULL);

		assert_true(n == 0 || n == 4 || n == 8);
		assert_true(y == 0 || y == 1 || y == 4 || y == 5 || y == 8);
	}
}

static void test_usage_errors(void **state)
{
	const char *none[] = {NULL};
	const char *both[] = {"-n", "-y", "x", NULL};
	const char *help[] = {"--help", NULL};
	const char *missing[] = {"-n", "/nonexistent/vswap.swap", NULL};
	char *err = NULL;

	(void)state;
	assert_int_equal(rfx_run_tool("vswap-fsck", none, NULL, NULL), 16);
	assert_int_equal(rfx_run_tool("vswap-fsck", both, NULL, NULL), 16);
	assert_int_equal(rfx_run_tool("vswap-fsck", help, NULL, NULL), 0);
	assert_int_equal(rfx_run_tool("vswap-fsck", missing, NULL, &err), 8);
	assert_non_null(strstr(err, "/nonexistent/vswap.swap"));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_clean_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_bits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_corruption_is_dropped_by_preen, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zeroed_superblock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_planted_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_freed_slots_after_crash_and_clean_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_killed_handles_freed_slots_punched_at_next_clean_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lmdb_record_checksum_edited, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lmdb_record_undecodable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_records_and_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_staging_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_closed_stores_staging_is_not_an_orphan, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unclean_shutdown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_busy_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_damage_never_crashes, setup, teardown),
	    cmocka_unit_test(test_usage_errors),
	};

	if (rfx_require_tool("vswap-fsck"))
		return 77;
	return cmocka_run_group_tests_name("fsck_corruption", tests, NULL, NULL);
}
