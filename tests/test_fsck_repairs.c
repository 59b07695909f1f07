/* SPDX-License-Identifier: MIT */
/*
 * vswap-fsck review fixes, one test each:
 *   - the orphan scan never removes a staging file holding bytes whose owner
 *     exists but cannot be verified (bad superblock, unreadable);
 *   - a cancelled repair leaves the store marked unclean;
 *   - records beyond the regions (pages, staging) and undecodable groups
 *     past the regions are repaired by -y: a second run exits 0;
 *   - of the records naming one slot, the one whose checksum matches the
 *     slot's bytes is kept;
 *   - a record a tolerant open left out survives a -p repair of its group
 *     and is still reported until -y decides about it.
 * Stores are built through the store API; the index is edited with liblmdb.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <vswap/recovery.h>

#include "tests/helpers/raw_index.h"
#include "tests/helpers/recovery_fixture.h"

#define TOTAL 1024
#define WRITTEN 512
#define ENTRY 16 /* u32 slot + 1, u32 state, u64 xxh3 */

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
	return rfx_setup(state, "fsckfix", &default_shape);
}

static int teardown(void **state)
{
	return rfx_teardown(state);
}

static struct vswap_fsck *run_lib_opts(const struct rfx_store *fx, struct vswap_fsck_opts o)
{
	struct vswap_fsck *f;

	if (!o.log_level)
		o.log_level = VSWAP_LOG_ERROR;
	assert_int_equal(vswap_fsck_new(fx->path, &o, &f), 0);
	vswap_fsck_run(f);
	return f;
}

static struct vswap_fsck *run_lib(const struct rfx_store *fx, enum vswap_fsck_mode mode)
{
	return run_lib_opts(fx, (struct vswap_fsck_opts){.mode = mode});
}

static bool has_problem(const struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
			bool repaired)
{
	return rfx_has_problem(f, kind, page, UINT64_MAX, repaired);
}

static bool is_lost(const struct vswap_fsck *f, uint64_t page)
{
	return rfx_is_lost(f, page);
}

static void dump_problems(const struct vswap_fsck *f)
{
	rfx_print_problems(f);
}

/* Run the library in @mode and expect exit code @want. */
static void expect_lib_exit(const struct rfx_store *fx, enum vswap_fsck_mode mode, int want)
{
	struct vswap_fsck *f = run_lib(fx, mode);
	int code = vswap_fsck_exit_code(f);

	if (code != want) {
		fprintf(stderr, "fsck mode %d exited %d, want %d\n", (int)mode, code, want);
		dump_problems(f);
	}
	assert_int_equal(code, want);
	vswap_fsck_free(f);
}

/* The e2fsck contract through the tool: -y exits 1, a second run 0; of the
 * store, or (@orphans) of the orphan staging files. */
static void expect_repair_then_clean(const struct rfx_store *fx, bool orphans)
{
	char *out = NULL, *err = NULL;
	int (*fsck)(const struct rfx_store *, const char *, char **, char **) =
	    orphans ? rfx_fsck_orphans : rfx_fsck;
	int code = fsck(fx, "-y", &out, &err);

	if (code != 1)
		fprintf(stderr, "fsck -y exited %d\nstdout: %s\nstderr: %s\n", code, out, err);
	assert_int_equal(code, 1);
	free(out);
	free(err);
	code = fsck(fx, "-n", &out, &err);
	if (code != 0)
		fprintf(stderr, "second fsck -n exited %d\nstdout: %s\nstderr: %s\n", code, out,
			err);
	assert_int_equal(code, 0);
	free(out);
	free(err);
}

/* ---- the index, edited raw ------------------------------------------------ */

/* The index edited with liblmdb through the format-2 framing of
 * tests/helpers/raw_index.h: bodies are edited, records stay sealed. */
static void raw_open(const struct rfx_store *fx, struct raw_index *ri)
{
	assert_int_equal(raw_index_open(ri, fx->index), 0);
}

static void raw_close(struct raw_index *ri)
{
	assert_int_equal(raw_index_close(ri, 1), 0);
}

/* Copy group @group's body of @dbi into @buf (*len in: capacity). */
static void raw_get(struct raw_index *ri, MDB_dbi dbi, uint64_t group, uint8_t *buf, size_t *len)
{
	assert_int_equal(raw_group_get(ri, dbi, group, buf, len), 0);
}

static void raw_put(struct raw_index *ri, MDB_dbi dbi, uint64_t group, const void *buf, size_t len)
{
	assert_int_equal(raw_group_put(ri, dbi, group, group, buf, len), 0);
}

/* Entry @i of a full group value (every page of the group recorded). */
static uint8_t *entry(uint8_t *val, unsigned i)
{
	return val + 8 + ENTRY * i;
}

static uint64_t slot_of(const struct rfx_store *fx, uint64_t page)
{
	uint64_t slot;

	assert_int_equal(rfx_slot_of(fx, page, &slot), 0);
	return slot;
}

/* ---- 1. orphan scan: an owner that exists but cannot be verified ---------- */

/* Another store in the fixture's directory, closed with one staged page;
 * its staging file is aged so that the orphan scan looks at it. */
static void make_other_store(const struct rfx_store *fx, char *other_path, size_t plen,
			     char *staging, size_t slen)
{
	struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	struct vswap_store_opts o = {.staging_dir = fx->dir, .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *other;
	uint64_t regions[] = {16};
	uint8_t *page = malloc(fx->page_size);

	assert_non_null(page);
	snprintf(other_path, plen, "%s/other.swap", fx->dir);
	assert_int_equal(vswap_store_create(other_path, &o, &other), 0);
	assert_int_equal(vswap_store_set_regions(other, regions, 1), 0);
	assert_int_equal(vswap_store_stage_mark(other, 3, 1), 0);
	assert_int_equal(vswap_store_commit(other), 0);
	rfx_pattern(3, fx->page_size, page);
	assert_int_equal(
	    pwrite(vswap_store_staging_fd(other), page, fx->page_size, 3 * (off_t)fx->page_size),
	    (ssize_t)fx->page_size);
	snprintf(staging, slen, "%s", vswap_store_staging_path(other));
	assert_int_equal(vswap_store_close(other), 0);
	assert_int_equal(utimensat(AT_FDCWD, staging, old, 0), 0);
	free(page);
}

static void expect_staging_survives(const struct rfx_store *fx, const char *staging)
{
	int y = rfx_fsck_orphans(fx, "-y", NULL, NULL);

	assert_true(y == 0 || y == 1);
	assert_int_equal(access(staging, F_OK), 0);
	assert_int_equal(rfx_fsck_orphans(fx, "-n", NULL, NULL), 0);
	assert_int_equal(access(staging, F_OK), 0);
}

static void test_orphan_owner_bad_superblock(void **state)
{
	struct rfx_store *fx = *state;
	char other[PATH_MAX + 16], staging[PATH_MAX];

	make_other_store(fx, other, sizeof(other), staging, sizeof(staging));
	/* Rot one bit of the owner's superblock: its checksum fails. */
	assert_int_equal(rfx_flip_bit(other, 40, 2), 0);
	expect_staging_survives(fx, staging);
}

static void test_orphan_owner_truncated(void **state)
{
	struct rfx_store *fx = *state;
	char other[PATH_MAX + 16], staging[PATH_MAX];

	make_other_store(fx, other, sizeof(other), staging, sizeof(staging));
	assert_int_equal(truncate(other, 0), 0);
	expect_staging_survives(fx, staging);
}

static void test_orphan_owner_unreadable(void **state)
{
	struct rfx_store *fx = *state;
	char other[PATH_MAX + 16], staging[PATH_MAX];

	make_other_store(fx, other, sizeof(other), staging, sizeof(staging));
	/* The owner path names something that cannot be read as a file. */
	assert_int_equal(unlink(other), 0);
	assert_int_equal(mkdir(other, 0700), 0);
	expect_staging_survives(fx, staging);
	rmdir(other);
}

/* The owner path now holds another store (valid superblock, other UUID):
 * the staging file's store is gone, and -y reclaims it. */
static void test_orphan_owner_replaced(void **state)
{
	struct rfx_store *fx = *state;
	char other[PATH_MAX + 16], staging[PATH_MAX], idx[PATH_MAX + 32];
	struct vswap_store_opts o = {.staging_dir = fx->dir, .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *s;

	make_other_store(fx, other, sizeof(other), staging, sizeof(staging));
	assert_int_equal(unlink(other), 0);
	snprintf(idx, sizeof(idx), "%s.idx", other);
	unlink(idx);
	strcat(idx, "-lock");
	unlink(idx);
	assert_int_equal(vswap_store_create(other, &o, &s), 0);
	assert_int_equal(vswap_store_close(s), 0);
	expect_repair_then_clean(fx, true);
	assert_int_equal(access(staging, F_OK), -1);
}

/* ---- 2. a cancelled repair leaves the store unclean ------------------------- */

static volatile sig_atomic_t cancel_flag;

static void cancel_on_progress(void *ctx, uint64_t done, uint64_t total, uint64_t bytes)
{
	(void)ctx;
	(void)total;
	(void)bytes;
	if (done)
		cancel_flag = 1;
}

static bool store_was_clean(const struct rfx_store *fx)
{
	struct vswap_store *s;
	struct vswap_store_info info;

	assert_int_equal(rfx_open(fx, true, &s), 0);
	assert_int_equal(vswap_store_info(s, &info), 0);
	vswap_store_close(s);
	return info.was_clean;
}

static void cancelled_run_leaves_unclean(const struct rfx_store *fx, enum vswap_fsck_mode mode)
{
	struct vswap_fsck *f;
	pid_t holder = rfx_holder_start(fx);

	assert_true(holder > 0);
	rfx_holder_stop(holder); /* SIGKILL: the store is left unclean */
	assert_false(store_was_clean(fx));
	cancel_flag = 0;
	f = run_lib_opts(fx, (struct vswap_fsck_opts){.mode = mode,
						      .progress = cancel_on_progress,
						      .cancel = &cancel_flag,
						      .read_bytes = 4096,
						      .queue_depth = 1});
	assert_int_equal(vswap_fsck_exit_code(f), 32);
	vswap_fsck_free(f);
	assert_false(store_was_clean(fx));
	/* A full run then repairs the flag. */
	expect_lib_exit(fx, mode, 1);
	assert_true(store_was_clean(fx));
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
}

static void test_cancelled_repair_stays_unclean(void **state)
{
	cancelled_run_leaves_unclean(*state, VSWAP_FSCK_REPAIR);
}

static void test_cancelled_preen_stays_unclean(void **state)
{
	cancelled_run_leaves_unclean(*state, VSWAP_FSCK_PREEN);
}

/* A clean store whose repair run is cancelled: the run did not finish, so
 * the store must not claim to be clean (fsck opened it for writing). */
static void test_cancelled_repair_of_clean_store(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f;

	cancel_flag = 1;
	f = run_lib_opts(
	    fx, (struct vswap_fsck_opts){.mode = VSWAP_FSCK_REPAIR, .cancel = &cancel_flag});
	assert_int_equal(vswap_fsck_exit_code(f), 32);
	vswap_fsck_free(f);
	assert_false(store_was_clean(fx));
	expect_lib_exit(fx, VSWAP_FSCK_PREEN, 1);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
}

/* ---- 3. records that -y must not leave behind ------------------------------- */

/* Page records of a whole group beyond the regions (a copy of group 1). */
static void test_page_records_beyond_regions(void **state)
{
	struct rfx_store *fx = *state;
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	size_t len = sizeof(val);
	struct vswap_fsck *f;

	raw_open(fx, &ri);
	raw_get(&ri, ri.pages, 1, val, &len);
	raw_put(&ri, ri.pages, 100, val, len);
	raw_close(&ri);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 6400, false));
	assert_int_equal(vswap_fsck_exit_code(f), 4);
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_PREEN, 4); /* -y decides */
	expect_repair_then_clean(fx, false);
	/* Group 1 itself is untouched. */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_problem_count(f), 0);
	assert_false(is_lost(f, 70));
	vswap_fsck_free(f);
}

/* A group that straddles the end of the regions: pages 960..999 are real
 * and present, the record also names page 1010, beyond the regions. */
static void test_page_record_straddling_regions(void **state)
{
	struct rfx_store *fx = *state;
	const struct rfx_shape shape = {.total_pages = 1000, .written = 1000};
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	size_t len = sizeof(val);
	uint64_t mask;
	struct vswap_fsck *f;

	assert_int_equal(rfx_rebuild(fx, "fsckfix", &shape), 0);
	raw_open(fx, &ri);
	raw_get(&ri, ri.pages, 15, val, &len);
	assert_int_equal(len, 8 + ENTRY * 40);
	memcpy(&mask, val, 8);
	mask |= 1ull << 50;
	memcpy(val, &mask, 8);
	memcpy(entry(val, 40), entry(val, 0), ENTRY); /* page 1010, slot of page 960 */
	raw_put(&ri, ri.pages, 15, val, len + ENTRY);
	raw_close(&ri);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 1010, false));
	vswap_fsck_free(f);
	expect_repair_then_clean(fx, false);
	/* Nothing real was lost: pages 960..999 are present and verify. */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_int_equal(vswap_fsck_exit_code(f), 0);
	for (uint64_t p = 960; p < 1000; p++)
		assert_false(is_lost(f, p));
	vswap_fsck_free(f);
	struct vswap_store *s;
	struct vswap_page_info pi;
	assert_int_equal(rfx_open(fx, true, &s), 0);
	for (uint64_t p = 960; p < 1000; p++) {
		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	}
	vswap_store_close(s);
}

static void test_staging_record_beyond_regions(void **state)
{
	struct rfx_store *fx = *state;
	struct raw_index ri;
	uint64_t bits = 0xf0;
	struct vswap_fsck *f;

	raw_open(fx, &ri);
	raw_put(&ri, ri.staging, 200, &bits, 8);
	raw_close(&ri);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 200 * 64 + 4, false));
	vswap_fsck_free(f);
	expect_repair_then_clean(fx, false);
	/* The real staged pages are still staged. */
	struct vswap_store *s;
	assert_int_equal(rfx_open(fx, true, &s), 0);
	for (uint64_t p = 700; p < 720; p++)
		assert_true(vswap_store_staged(s, p));
	vswap_store_close(s);
}

static void test_undecodable_group_beyond_regions(void **state)
{
	struct rfx_store *fx = *state;
	struct raw_index ri;
	const uint8_t junk[5] = {1, 2, 3, 4, 5};
	struct vswap_fsck *f;

	raw_open(fx, &ri);
	raw_put(&ri, ri.pages, 300, junk, sizeof(junk));
	raw_close(&ri);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 300 * 64, false));
	vswap_fsck_free(f);
	expect_repair_then_clean(fx, false);
}

/* ---- 4. a shared slot keeps the record its bytes match ---------------------- */

/* Page 0's record names page 1's slot (page 0's own checksum): the slot's
 * bytes are page 1's, so page 1 keeps the slot and page 0 is the double
 * reference, although the store loads page 0 first. */
static void test_shared_slot_keeps_matching_record(void **state)
{
	struct rfx_store *fx = *state;
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	size_t len = sizeof(val);
	struct vswap_fsck *f;
	uint8_t *buf = malloc(fx->page_size), *want = malloc(fx->page_size);
	struct vswap_store *s;

	assert_non_null(buf);
	assert_non_null(want);
	raw_open(fx, &ri);
	raw_get(&ri, ri.pages, 0, val, &len);
	memcpy(entry(val, 0), entry(val, 1), 4); /* page 0 -> slot of page 1 */
	raw_put(&ri, ri.pages, 0, val, len);
	raw_close(&ri);

	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 0, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 1, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, 1, false));
	vswap_fsck_free(f);

	f = run_lib(fx, VSWAP_FSCK_REPAIR);
	assert_int_equal(vswap_fsck_exit_code(f), 1);
	assert_true(is_lost(f, 0));
	assert_false(is_lost(f, 1));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);

	/* Page 1 is served with its own bytes by a normal (strict) open. */
	rfx_pattern(1, fx->page_size, want);
	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_read_page(s, 1, buf), 0);
	assert_memory_equal(buf, want, fx->page_size);
	assert_int_not_equal(vswap_store_read_page(s, 0, buf), 0);
	assert_int_equal(vswap_store_close(s), 0);
	free(buf);
	free(want);
}

/* The record that loses the slot is a stale copy the store loaded: it must
 * not give the slot up (a free punches it) before the keeper, which the
 * store left out, has its own copy. */
static void test_shared_slot_stale_loser_waits_for_keeper(void **state)
{
	struct rfx_store *fx = *state;
	const struct rfx_shape shape = {
	    .total_pages = TOTAL, .written = WRITTEN, .stale_first = 0, .stale_count = 1};
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	size_t len = sizeof(val);
	struct vswap_fsck *f;
	uint8_t *buf = malloc(fx->page_size), *want = malloc(fx->page_size);
	struct vswap_store *s;
	struct vswap_page_info pi;

	assert_non_null(buf);
	assert_non_null(want);
	assert_int_equal(rfx_rebuild(fx, "fsckfix", &shape), 0);
	raw_open(fx, &ri);
	raw_get(&ri, ri.pages, 0, val, &len);
	memcpy(entry(val, 0), entry(val, 1), 4); /* stale page 0 -> slot of page 1 */
	raw_put(&ri, ri.pages, 0, val, len);
	raw_close(&ri);

	/* -p loses nothing: it leaves both records (and page 1's bytes). */
	f = run_lib(fx, VSWAP_FSCK_PREEN);
	assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 0, false));
	assert_int_equal(vswap_fsck_exit_code(f), 5); /* page 0's old slot leaked */
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 4);

	f = run_lib(fx, VSWAP_FSCK_REPAIR);
	assert_int_equal(vswap_fsck_exit_code(f), 1);
	assert_false(is_lost(f, 0));
	assert_false(is_lost(f, 1));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);

	rfx_pattern(1, fx->page_size, want);
	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_read_page(s, 1, buf), 0);
	assert_memory_equal(buf, want, fx->page_size);
	assert_int_equal(vswap_store_page(s, 0, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_NONE); /* the stale copy is dropped */
	assert_int_equal(vswap_store_close(s), 0);
	free(buf);
	free(want);
}

/* The store loaded a lost record of the slot; the present record it left
 * out matches the bytes: that one is reported and moved by -y. */
static void test_shared_slot_with_lost_record(void **state)
{
	struct rfx_store *fx = *state;
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	size_t len = sizeof(val);
	struct vswap_fsck *f;
	uint8_t *buf = malloc(fx->page_size), *want = malloc(fx->page_size);
	struct vswap_store *s;

	assert_non_null(buf);
	assert_non_null(want);
	assert_int_equal(rfx_open(fx, false, &s), 0);
	assert_int_equal(vswap_store_mark_lost(s, 0), 0);
	/* Checksums bind the page number: page 1's record of page 0's bytes. */
	rfx_pattern(0, fx->page_size, want);
	uint64_t sum1 = vswap_store_page_checksum(s, 1, want);
	assert_int_equal(vswap_store_close(s), 0);
	raw_open(fx, &ri);
	raw_get(&ri, ri.pages, 0, val, &len);
	/* Page 1: page 0's slot, with a checksum of those bytes as page 1's,
	 * present. */
	memcpy(entry(val, 1), entry(val, 0), 4);
	memcpy(entry(val, 1) + 8, &sum1, 8);
	raw_put(&ri, ri.pages, 0, val, len);
	raw_close(&ri);

	f = run_lib(fx, VSWAP_FSCK_CHECK);
	assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 1, false));
	vswap_fsck_free(f);
	f = run_lib(fx, VSWAP_FSCK_REPAIR);
	assert_int_equal(vswap_fsck_exit_code(f), 1);
	assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 1, true));
	assert_true(is_lost(f, 0));
	assert_false(is_lost(f, 1));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
	rfx_pattern(0, fx->page_size, want); /* page 1's record held page 0's bytes */
	assert_int_equal(rfx_open(fx, true, &s), 0);
	assert_int_equal(vswap_store_read_page(s, 1, buf), 0);
	assert_memory_equal(buf, want, fx->page_size);
	vswap_store_close(s);
	free(buf);
	free(want);
}

/* Many shared slots: the judgement is linear, not pages x shared. */
static void test_many_shared_slots(void **state)
{
	struct rfx_store *fx = *state;
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	struct vswap_fsck *f;

	/* Groups 4..7 (pages 256..511) point at the slots of groups 0..3. */
	raw_open(fx, &ri);
	for (uint64_t g = 0; g < 4; g++) {
		size_t len = sizeof(val);

		raw_get(&ri, ri.pages, g, val, &len);
		raw_put(&ri, ri.pages, g + 4, val, len);
	}
	raw_close(&ri);
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	/* Groups 0..3 keep their slots (their checksums match); stale
	 * records in 100..109 are copied as stale. */
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_DOUBLE_REFERENCE), 256);
	for (uint64_t p = 256; p < 512; p++)
		assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, p, false));
	vswap_fsck_free(f);
	expect_repair_then_clean(fx, false);
}

/* A large page-index space with 2048 shared slots, all near its end: every
 * one is found and judged (by a look-up each, not a scan of the page table
 * per shared slot; the audit's speed is vswap-bench's to measure). */
static void test_shared_slots_in_large_space(void **state)
{
	struct rfx_store *fx = *state;
	const uint64_t total = 4u << 20, hi = total / 64 - 64; /* first group written */
	struct vswap_store_opts o = {.staging_dir = fx->dir, .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *s;
	uint8_t *buf = malloc(64 * (size_t)fx->page_size);
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	struct vswap_fsck *f;

	assert_non_null(buf);
	rfx_cleanup(fx);
	assert_int_equal(rfx_init(fx, "fsckfix"), 0);
	assert_int_equal(vswap_store_create(fx->path, &o, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, &total, 1), 0);
	for (uint64_t g = hi; g < hi + 64; g++) {
		for (unsigned i = 0; i < 64; i++)
			rfx_pattern(g * 64 + i, fx->page_size, buf + (size_t)i * fx->page_size);
		assert_int_equal(vswap_store_write(s, g * 64, 64, buf), 0);
	}
	assert_int_equal(vswap_store_close(s), 0);
	free(buf);
	/* Groups hi+32..hi+63 now name the slots of groups hi..hi+31. */
	raw_open(fx, &ri);
	for (uint64_t g = hi; g < hi + 32; g++) {
		size_t len = sizeof(val);

		raw_get(&ri, ri.pages, g, val, &len);
		raw_put(&ri, ri.pages, g + 32, val, len);
	}
	raw_close(&ri);
	f = run_lib_opts(
	    fx, (struct vswap_fsck_opts){.mode = VSWAP_FSCK_CHECK, .no_orphan_scan = true});
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_DOUBLE_REFERENCE), 2048);
	vswap_fsck_free(f);
}

/* ---- 5. a left-out record survives a -p repair of its group ----------------- */

static void test_left_out_record_survives_preen(void **state)
{
	struct rfx_store *fx = *state;
	const struct rfx_shape shape = {
	    .total_pages = TOTAL, .written = WRITTEN, .stale_first = 2, .stale_count = 1};
	struct raw_index ri;
	uint8_t val[8 + ENTRY * 64];
	size_t len = sizeof(val);
	struct vswap_fsck *f;

	assert_int_equal(rfx_rebuild(fx, "fsckfix", &shape), 0);
	/* Page 1 names page 0's slot; page 2 (stale) has rotten bytes. */
	assert_int_equal(rfx_flip_bit(fx->path, rfx_slot_offset(fx, slot_of(fx, 2)) + 17, 5), 0);
	raw_open(fx, &ri);
	raw_get(&ri, ri.pages, 0, val, &len);
	memcpy(entry(val, 1), entry(val, 0), 4);
	raw_put(&ri, ri.pages, 0, val, len);
	raw_close(&ri);

	f = run_lib(fx, VSWAP_FSCK_PREEN);
	if (!has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 1, false))
		dump_problems(f);
	assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 1, false));
	assert_true(has_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, 2, true));
	assert_int_equal(vswap_fsck_exit_code(f), 5);
	vswap_fsck_free(f);

	/* Page 1's record is still in the index: still reported. */
	f = run_lib(fx, VSWAP_FSCK_CHECK);
	if (vswap_fsck_exit_code(f) != 4)
		dump_problems(f);
	assert_true(has_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, 1, false));
	assert_int_equal(vswap_fsck_exit_code(f), 4);
	vswap_fsck_free(f);

	f = run_lib(fx, VSWAP_FSCK_REPAIR);
	assert_int_equal(vswap_fsck_exit_code(f), 1);
	assert_true(is_lost(f, 1));
	assert_false(is_lost(f, 0));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_orphan_owner_bad_superblock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_owner_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_owner_unreadable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_owner_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancelled_repair_stays_unclean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancelled_preen_stays_unclean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancelled_repair_of_clean_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_page_records_beyond_regions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_page_record_straddling_regions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_record_beyond_regions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_undecodable_group_beyond_regions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_slot_keeps_matching_record, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_shared_slot_stale_loser_waits_for_keeper, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_shared_slot_with_lost_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_shared_slots, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_slots_in_large_space, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_left_out_record_survives_preen, setup, teardown),
	};

	if (rfx_require_tool("vswap-fsck"))
		return 77;
	return cmocka_run_group_tests_name("fsck_repairs", tests, NULL, NULL);
}
