/* SPDX-License-Identifier: MIT */
/*
 * vswap-fsck never makes a damaged store worse, and names a hostile file
 * instead of hanging on it.  One test per way repair used to destroy data:
 *   - a group key moved beyond the page-index space by a flip inside LMDB's
 *     page (13 -> 13 + 2^32, out of key order): -y deleted nothing (a keyed
 *     delete found nothing), said "fixed", punched the group's verified
 *     slots, and never converged; now -y moves the record back, its
 *     evidence being unambiguous (and keeps refusing where it is not);
 *   - the last group's key moved beyond the page-index space: -y dropped it
 *     and the next -n was clean, its pages read zero; now moved back too;
 *   - one bit of `regions` (6144 -> 4096 pages): -y deleted every record
 *     beyond and punched their verified slots;
 *   - a cleared staging bit: the page's only copy was punched;
 *   - an out-of-order staging key: covered pages were called leaked
 *     (binary search over an unsorted list) and punched; now -y moves the
 *     misplaced staging record back, its staged copies verifying (and keeps
 *     refusing where the evidence is ambiguous);
 *   - the staging file deleted, truncated or punched after a clean close:
 *     -y dropped the staged pages' records, which then read as zeros;
 *   - a record failing its own checksum (a page group, a staging record, a
 *     meta record) was reported as bad_record, like an undecodable record
 *     and a misplaced one: now record_checksum;
 * and per hostile file: an empty index, an invalid one (vswap-dump called
 * it a bad superblock), a FIFO in place of the swap file, the index or the
 * lock file, a FIFO as the recorded owner of a leftover staging file met by
 * the orphan scan, and a staging path with a typo (-n called clean a store
 * the library cannot open).  The tools run as child processes under a time
 * limit, so a hang fails the test.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <vswap/recovery.h>

#include "tests/helpers/raw_index.h"
#include "tests/helpers/recovery_fixture.h"

#define TOTAL 1024
#define WRITTEN 512
#define ENTRY 16
#define TOOL_TIMEOUT_S 20
/* The pattern rfx_build() copies into the staging file for page @p. */
#define STAGED(p) ((p) ^ 0x5555)

static const struct rfx_shape default_shape = {
    .total_pages = TOTAL,
    .written = WRITTEN,
    .staged_first = 700,
    .staged_count = 20,
};

static int setup(void **state)
{
	return rfx_setup(state, "fsckdmg", &default_shape);
}

static int teardown(void **state)
{
	return rfx_teardown(state);
}

static void rebuild(struct rfx_store *fx, const struct rfx_shape *shape)
{
	assert_int_equal(rfx_rebuild(fx, "fsckdmg", shape), 0);
}

/* ---- running the tools ----------------------------------------------------- */

/* Run @tool (in the build directory) with @args; a child that does not exit
 * within TOOL_TIMEOUT_S dies of SIGALRM (the alarm survives exec).  Returns
 * the exit code or 128 + signal; *err gets stdout and stderr (may be NULL). */
static int run_tool(const char *tool, const char *const *args, char **err)
{
	return rfx_run_tool_as(0, TOOL_TIMEOUT_S, tool, args, err);
}

static int fsck_tool(const struct rfx_store *fx, const char *flag, char **err)
{
	const char *args[] = {flag, "--no-progress", "--staging-dir", fx->dir, fx->path, NULL};

	return run_tool("vswap-fsck", args, err);
}

static void quiet(void *ctx, enum vswap_log_level l, const char *msg)
{
	(void)ctx;
	(void)l;
	(void)msg;
}

static struct vswap_fsck *run_lib(const struct rfx_store *fx, enum vswap_fsck_mode mode)
{
	struct vswap_fsck_opts o = {.mode = mode,
				    .staging_dir = fx->dir,
				    .log = getenv("VSWAP_TEST_VERBOSE") ? NULL : quiet,
				    .log_level = VSWAP_LOG_INFO};
	struct vswap_fsck *f;

	assert_int_equal(vswap_fsck_new(fx->path, &o, &f), 0);
	vswap_fsck_run(f);
	return f;
}

static void dump_problems(const struct vswap_fsck *f)
{
	rfx_print_problems(f);
}

/* Run the library in @mode, expect exit @want, return the handle. */
static struct vswap_fsck *expect_lib(const struct rfx_store *fx, enum vswap_fsck_mode mode,
				     int want)
{
	struct vswap_fsck *f = run_lib(fx, mode);
	int code = vswap_fsck_exit_code(f);

	if (code != want) {
		fprintf(stderr, "fsck mode %d exited %d, want %d\n", (int)mode, code, want);
		dump_problems(f);
	}
	assert_int_equal(code, want);
	return f;
}

static void expect_lib_exit(const struct rfx_store *fx, enum vswap_fsck_mode mode, int want)
{
	vswap_fsck_free(expect_lib(fx, mode, want));
}

static bool has_problem(const struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
			int repaired)
{
	return rfx_has_problem(f, kind, page, UINT64_MAX, repaired);
}

static bool is_lost(const struct vswap_fsck *f, uint64_t page)
{
	return rfx_is_lost(f, page);
}

/* ---- the store's bytes ------------------------------------------------------ */

static uint64_t slot_of(const struct rfx_store *fx, uint64_t page)
{
	uint64_t slot;

	assert_int_equal(rfx_slot_of(fx, page, &slot), 0);
	return slot;
}

/* Does @path hold @page's pattern at byte @off? */
static bool holds_pattern(const struct rfx_store *fx, const char *path, uint64_t off, uint64_t page)
{
	uint8_t *want = malloc(fx->page_size), *got = malloc(fx->page_size);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool same;

	assert_non_null(want);
	assert_non_null(got);
	assert_true(fd >= 0);
	rfx_pattern(page, fx->page_size, want);
	same = pread(fd, got, fx->page_size, (off_t)off) == (ssize_t)fx->page_size &&
	       !memcmp(want, got, fx->page_size);
	close(fd);
	free(want);
	free(got);
	return same;
}

static void staging_path(const struct rfx_store *fx, char *buf, size_t len)
{
	struct vswap_store *s;

	assert_int_equal(rfx_open(fx, true, &s), 0);
	snprintf(buf, len, "%s", vswap_store_staging_path(s));
	vswap_store_close(s);
}

/* ---- the index, edited ------------------------------------------------------ */

static void raw_open(const struct rfx_store *fx, struct raw_index *ri)
{
	assert_int_equal(raw_index_open(ri, fx->index), 0);
}

static void raw_close(struct raw_index *ri)
{
	assert_int_equal(raw_index_close(ri, 1), 0);
}

static void raw_del(struct raw_index *ri, MDB_dbi dbi, uint64_t group)
{
	uint64_t key = __builtin_bswap64(group);
	MDB_val k = {.mv_size = 8, .mv_data = &key};

	assert_int_equal(mdb_del(ri->txn, dbi, &k, NULL), 0);
}

/* Move group @from's page record (or its staging record, @staging) to the
 * key of group @to, as it was (its own group number and check unchanged):
 * what a damaged key looks like to a reader, put in key order.  @back
 * undoes it.  @copy leaves the record under its own key too. */
static void raw_move_in(const struct rfx_store *fx, bool staging, uint64_t from, uint64_t to,
			bool back, bool copy)
{
	struct raw_index ri;
	uint8_t body[8 + ENTRY * 64];
	size_t len = sizeof(body);
	MDB_dbi dbi;

	raw_open(fx, &ri);
	dbi = staging ? ri.staging : ri.pages;
	assert_int_equal(raw_group_get(&ri, dbi, back ? to : from, body, &len), 0);
	if (!copy)
		raw_del(&ri, dbi, back ? to : from);
	assert_int_equal(raw_group_put(&ri, dbi, back ? from : to, from, body, len), 0);
	raw_close(&ri);
}

static void raw_move(const struct rfx_store *fx, uint64_t from, uint64_t to, bool back)
{
	raw_move_in(fx, false, from, to, back, false);
}

/* Does a record lie under the key of group @key in `pages` (or `staging`)? */
static bool record_under(const struct rfx_store *fx, bool staging, uint64_t key)
{
	struct raw_index ri;
	uint8_t body[8 + ENTRY * 64];
	size_t len = sizeof(body);
	int rc;

	raw_open(fx, &ri);
	rc = raw_group_get(&ri, staging ? ri.staging : ri.pages, key, body, &len);
	assert_int_equal(raw_index_close(&ri, 0), 0);
	assert_true(rc == 0 || rc == MDB_NOTFOUND);
	return rc == 0;
}

/* XOR @mask into byte @off of the value under @key of @dbi, leaving its
 * check as it was: a flipped bit. */
/* Flip @mask at @off of the value under @key in database @db (RAW_DB_*),
 * its check left as it was. */
static void raw_damage_in(const struct rfx_store *fx, uint32_t db, const void *key, size_t klen,
			  size_t off, uint8_t mask)
{
	struct raw_index ri;
	uint8_t val[8192];
	size_t len = sizeof(val);
	MDB_dbi dbi;

	raw_open(fx, &ri);
	dbi = db == RAW_DB_META ? ri.meta : db == RAW_DB_PAGES ? ri.pages : ri.staging;
	assert_int_equal(raw_value_get(&ri, dbi, key, klen, val, &len), 0);
	assert_true(off < len);
	val[off] ^= mask;
	assert_int_equal(raw_value_put(&ri, dbi, key, klen, val, len), 0);
	raw_close(&ri);
}

static void raw_damage(const struct rfx_store *fx, bool meta, const void *key, size_t klen,
		       size_t off, uint8_t mask)
{
	raw_damage_in(fx, meta ? RAW_DB_META : RAW_DB_STAGING, key, klen, off, mask);
}

/*
 * Flip bits of a group key where LMDB keeps it, in its page in the file:
 * the key is then out of order, so a keyed look-up or delete misses it
 * while a cursor walk still yields it.  A node is [u16 lo][u16 hi][u16
 * flags][u16 key size][key]: the value's length, no flags, an 8-byte key.
 */
static void flip_key_in_file(const struct rfx_store *fx, uint64_t group, uint32_t vlen,
			     unsigned byte, uint8_t mask)
{
	uint8_t node[16] = {(uint8_t)vlen,
			    (uint8_t)(vlen >> 8),
			    (uint8_t)(vlen >> 16),
			    (uint8_t)(vlen >> 24),
			    0,
			    0,
			    8,
			    0};
	uint64_t key = __builtin_bswap64(group);
	struct stat st;
	uint8_t *buf;
	int fd = open(fx->index, O_RDWR | O_CLOEXEC);
	int found = 0;

	memcpy(node + 8, &key, 8);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	/* Every copy is flipped: LMDB rewrites pages copy-on-write, so older
	 * copies of the node may sit in free pages, which no reader reads. */
	for (off_t o = 0; o + 16 <= st.st_size; o++) {
		if (memcmp(buf + o, node, 16))
			continue;
		buf[o + 8 + byte] ^= mask;
		assert_int_equal(pwrite(fd, buf + o + 8 + byte, 1, o + 8 + byte), 1);
		found++;
	}
	assert_true(found > 0);
	free(buf);
	close(fd);
}

/* ---- 1. repair that destroyed -------------------------------------------- */

/* Does a strict open take the store, with every page of [first, first + n)
 * present at the slot @slots names and holding its own pattern there? */
static void expect_pages_at(const struct rfx_store *fx, uint64_t first, unsigned n,
			    const uint64_t *slots)
{
	struct vswap_store *s;

	assert_int_equal(rfx_open(fx, true, &s), 0);
	for (unsigned i = 0; i < n; i++) {
		struct vswap_page_info pi;

		assert_int_equal(vswap_store_page(s, first + i, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
		assert_int_equal(pi.slot, slots[i]);
		assert_true(holds_pattern(fx, fx->path, rfx_slot_offset(fx, slots[i]), first + i));
	}
	vswap_store_close(s);
}

/* Group 5 (pages 320-383) becomes group 5 + 2^32 inside its LMDB page (out
 * of key order: a keyed look-up or delete misses it).  The record passes
 * its check as group 5's, group 5 has no other record, and its slots' bytes
 * verify as pages 320-383: -y moves it back (it used to delete nothing, say
 * "fixed", punch the 64 verified slots and never converge; then to refuse,
 * exit 4, with the pages unreadable). */
static void test_group_key_out_of_order_beyond(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t slots[64];
	struct vswap_fsck *f;

	for (unsigned i = 0; i < 64; i++)
		slots[i] = slot_of(fx, 320 + i);
	flip_key_in_file(fx, 5, 24 + ENTRY * 64, 3, 0x01);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, (5ull + (1ull << 32)) * 64, false));
	vswap_fsck_free(f);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 1);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, (5ull + (1ull << 32)) * 64, true));
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, true));
	for (uint64_t p = 320; p < 384; p++)
		assert_false(is_lost(f, p));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
	expect_pages_at(fx, 320, 64, slots);
}

/* The last group holding records (7, pages 448-511) moved to key 39, beyond
 * the page-index space, in key order: -y moves it back (it used to drop it,
 * the next -n clean and its pages read zero). */
static void test_last_group_key_beyond(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t slots[64];
	struct vswap_fsck *f;

	for (unsigned i = 0; i < 64; i++)
		slots[i] = slot_of(fx, 448 + i);
	raw_move(fx, 7, 39, false);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 1);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 39 * 64, true));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
	expect_pages_at(fx, 448, 64, slots);
	/* Under its own key again, nothing left under the damaged one. */
	assert_false(record_under(fx, false, 39));
	assert_true(record_under(fx, false, 7));
}

/* Ambiguous evidence keeps the refusal: a misplaced copy of group 7's
 * record under key 39 while group 7 keeps its own (two records name group
 * 7).  -y moves nothing, deletes nothing, punches nothing (exit 4), and
 * says so again next time. */
static void test_misplaced_copy_beside_its_group_is_kept(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t slots[64];
	struct vswap_fsck *f;

	for (unsigned i = 0; i < 64; i++)
		slots[i] = slot_of(fx, 448 + i);
	raw_move_in(fx, false, 7, 39, false, true);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 39 * 64, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, UINT64_MAX, true));
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, true));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 4);
	for (unsigned i = 0; i < 64; i++)
		assert_true(holds_pattern(fx, fx->path, rfx_slot_offset(fx, slots[i]), 448 + i));
	assert_true(record_under(fx, false, 39));
}

/* Ambiguous evidence keeps the refusal: group 7 moved to key 39, and one of
 * its slots no longer holds bytes that verify as its page (a second
 * fault).  -y moves nothing (exit 4) and punches none of its slots. */
static void test_misplaced_with_a_failing_slot_is_kept(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t slots[64];
	struct vswap_fsck *f;
	uint8_t b;
	int fd;

	for (unsigned i = 0; i < 64; i++)
		slots[i] = slot_of(fx, 448 + i);
	raw_move(fx, 7, 39, false);
	fd = open(fx->path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)rfx_slot_offset(fx, slots[9]) + 100), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)rfx_slot_offset(fx, slots[9]) + 100), 1);
	close(fd);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 39 * 64, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, true));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 4);
	for (unsigned i = 0; i < 64; i++)
		if (i != 9)
			assert_true(
			    holds_pattern(fx, fx->path, rfx_slot_offset(fx, slots[i]), 448 + i));
}

/* Flip bit 11 of the second region's size (3072 -> 1024) in the regions
 * record, its check left as it was; again to undo. */
static void flip_regions_bit(const struct rfx_store *fx)
{
	/* payload: u32 n, u64 region 0, u64 region 1 (little-endian) */
	raw_damage(fx, true, "regions", 7, 4 + 8 + 1, 0x08);
}

/* One bit of the second region's size: 3072 -> 1024, the space 6144 -> 4096
 * pages, 1120 of 5216 records beyond it. */
static void test_regions_shrunk_by_one_bit(void **state)
{
	struct rfx_store *fx = *state;
	const struct rfx_shape shape = {.total_pages = 6144, .written = 5216};
	struct vswap_fsck *f;
	struct vswap_fsck_counts k;

	rebuild(fx, &shape);
	flip_regions_bit(fx);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 4096, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, UINT64_MAX, true));
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, UINT64_MAX, true));
	vswap_fsck_free(f);
	/* Restoring the regions record shows every page intact. */
	flip_regions_bit(fx);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 0);
	assert_int_equal(vswap_fsck_counts(f, &k), 0);
	assert_int_equal(k.records, 5216);
	assert_int_equal(k.pages_checked, 5216);
	vswap_fsck_free(f);
}

/* Page 705's staging bit cleared in a store closed cleanly: its bytes in
 * the staging file are the only copy and stay. */
static void test_cleared_staging_bit_keeps_only_copy(void **state)
{
	struct rfx_store *fx = *state;
	uint64_t key = __builtin_bswap64(11);
	char staging[PATH_MAX];
	struct vswap_fsck *f;

	staging_path(fx, staging, sizeof(staging));
	/* value: u64 group, u64 staged bits (page 705 is bit 1), ... */
	raw_damage(fx, false, &key, 8, 8, 0x02);
	f = expect_lib(fx, VSWAP_FSCK_PREEN, 4);
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_STAGING, UINT64_MAX, true));
	vswap_fsck_free(f);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 4);
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_STAGING, UINT64_MAX, true));
	vswap_fsck_free(f);
	assert_true(holds_pattern(fx, staging, 705ull * fx->page_size, STAGED(705)));
}

/* Does a strict open take the store, with every page of [first, end)
 * staged and its staged copy in @staging holding its pattern? */
static void expect_staged(const struct rfx_store *fx, const char *staging, uint64_t first,
			  uint64_t end)
{
	struct vswap_store *s;

	assert_int_equal(rfx_open(fx, false, &s), 0);
	for (uint64_t p = first; p < end; p++) {
		struct vswap_page_info pi;

		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		assert_true(pi.staged);
		assert_true(holds_pattern(fx, staging, p * fx->page_size, STAGED(p)));
	}
	vswap_store_close(s);
}

/* -y moves the misplaced staging record under the key of group @key back
 * (exit 1, nothing called leaked), the next -n is clean, and every page of
 * [first, end) is staged with its bytes. */
static void expect_staging_moved_back(const struct rfx_store *fx, uint64_t key, const char *staging,
				      uint64_t first, uint64_t end)
{
	struct vswap_fsck *f = expect_lib(fx, VSWAP_FSCK_REPAIR, 1);

	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, key * 64, true));
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_STAGING, UINT64_MAX, -1));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
	expect_staged(fx, staging, first, end);
}

/* Staged pages 576-895 (groups 9-13); group 10's key becomes 14 inside its
 * LMDB page.  Only group 10's pages lack a record; groups 11-13 are covered
 * and must not be called leaked; nothing is punched.  The record passes its
 * check as group 10's, no other record names group 10 and its 64 staged
 * copies verify by their checksums: -y moves it back (it used to keep it as
 * evidence, exit 4, with the pages unreadable by a strict open). */
static void test_out_of_order_staging_key(void **state)
{
	struct rfx_store *fx = *state;
	const struct rfx_shape shape = {
	    .total_pages = TOTAL, .staged_first = 576, .staged_count = 320};
	char staging[PATH_MAX];
	struct vswap_fsck *f;

	rebuild(fx, &shape);
	staging_path(fx, staging, sizeof(staging));
	flip_key_in_file(fx, 10, 32 + 8 * 64, 7, 0x04);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 4);
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		if (p->kind == VSWAP_PROBLEM_LEAKED_STAGING)
			assert_true(p->page >= 640 && p->page < 704);
	}
	assert_true(has_problem(f, VSWAP_PROBLEM_LEAKED_STAGING, 640, false));
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 14 * 64, false));
	vswap_fsck_free(f);
	expect_staging_moved_back(fx, 14, staging, 576, 896);
}

/* Group 11's staging record (staged pages 704-719) moved to key 39, beyond
 * the page-index space, in key order: -y moves it back under key 11 (it
 * used to keep it as evidence, exit 4), the next -n is clean and the pages
 * are staged with their bytes. */
static void test_staging_key_moved_beyond(void **state)
{
	struct rfx_store *fx = *state;
	char staging[PATH_MAX];

	staging_path(fx, staging, sizeof(staging));
	raw_move_in(fx, true, 11, 39, false, false);
	expect_staging_moved_back(fx, 39, staging, 700, 720);
	assert_false(record_under(fx, true, 39));
	assert_true(record_under(fx, true, 11));
}

/* Ambiguous evidence keeps the refusal: a copy of group 11's staging record
 * under key 39 while group 11 keeps its own (two records name group 11), or
 * group 11's record moved there with one of its staged copies damaged.  -y
 * moves nothing and punches nothing (exit 4), and says so again next time. */
static void misplaced_staging_kept(struct rfx_store *fx, bool copy, uint64_t flipped)
{
	char staging[PATH_MAX];
	struct vswap_fsck *f;

	staging_path(fx, staging, sizeof(staging));
	raw_move_in(fx, true, 11, 39, false, copy);
	if (flipped != UINT64_MAX)
		assert_int_equal(rfx_flip_bit(staging, flipped * fx->page_size + 100, 3), 0);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, 39 * 64, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_BAD_RECORD, UINT64_MAX, true));
	assert_false(has_problem(f, VSWAP_PROBLEM_LEAKED_STAGING, UINT64_MAX, true));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 4);
	for (uint64_t p = 700; p < 720; p++)
		if (p != flipped)
			assert_true(holds_pattern(fx, staging, p * fx->page_size, STAGED(p)));
	assert_true(record_under(fx, true, 39));
}

static void test_misplaced_staging_copy_beside_its_group_is_kept(void **state)
{
	misplaced_staging_kept(*state, true, UINT64_MAX);
}

static void test_misplaced_staging_with_a_failing_copy_is_kept(void **state)
{
	misplaced_staging_kept(*state, false, 710);
}

/* After a clean close the staging file holds the only copy of pages
 * 700-719: gone, they are lost, never dropped to read as zeros. */
static void staging_gone(struct rfx_store *fx, void (*damage)(const char *staging, uint32_t ps))
{
	char staging[PATH_MAX];
	struct vswap_store *s;
	struct vswap_page_info pi;
	struct vswap_fsck *f;

	staging_path(fx, staging, sizeof(staging));
	damage(staging, fx->page_size);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_EMPTY_STAGING_RECORD, 700, false));
	vswap_fsck_free(f);
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 1);
	for (uint64_t p = 700; p < 720; p++)
		assert_true(is_lost(f, p));
	vswap_fsck_free(f);
	expect_lib_exit(fx, VSWAP_FSCK_CHECK, 0);
	assert_int_equal(rfx_open(fx, true, &s), 0);
	for (uint64_t p = 700; p < 720; p++) {
		assert_int_equal(vswap_store_page(s, p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	}
	vswap_store_close(s);
}

static void delete_file(const char *staging, uint32_t ps)
{
	(void)ps;
	assert_int_equal(unlink(staging), 0);
}

static void truncate_file(const char *staging, uint32_t ps)
{
	(void)ps;
	assert_int_equal(truncate(staging, 0), 0);
}

static void punch_file(const char *staging, uint32_t ps)
{
	int fd = open(staging, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 700 * (off_t)ps,
				   20 * (off_t)ps),
			 0);
	close(fd);
}

static void test_staging_deleted_after_clean_close(void **state)
{
	staging_gone(*state, delete_file);
}

static void test_staging_truncated_after_clean_close(void **state)
{
	staging_gone(*state, truncate_file);
}

static void test_staging_punched_after_clean_close(void **state)
{
	staging_gone(*state, punch_file);
}

/* ---- records that fail their own checksum ---------------------------------- */

/* Flip @mask at @off of the value of group @group's record (pages, or
 * staging), its check left as it was. */
static void damage_group_value(const struct rfx_store *fx, bool staging, uint64_t group, size_t off,
			       uint8_t mask)
{
	uint64_t key = __builtin_bswap64(group);

	raw_damage_in(fx, staging ? RAW_DB_STAGING : RAW_DB_PAGES, &key, sizeof(key), off, mask);
}

/*
 * A record that fails its own checksum is a problem of its own kind,
 * record_checksum: it was bad_record, like an undecodable record and a
 * valid one under a damaged key, so a --json reader could not tell bit rot
 * in a record from a moved key.  Group 2's record (pages 128-191): page
 * 128's state present -> stale, which made it read as zeros before format
 * 2; group 11's staging record: one staged copy's checksum.
 */
static void test_record_checksum_has_its_own_kind(void **state)
{
	struct rfx_store *fx = *state;
	const char *json[] = {"-n",	"--json", "--no-progress", "--staging-dir", fx->dir,
			      fx->path, NULL};
	struct vswap_fsck *f;
	char *out = NULL;

	damage_group_value(fx, false, 2, 8 + 8 + 4, 0x03);
	damage_group_value(fx, true, 11, 24, 0x01);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 4);
	if (!has_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, 128, false))
		dump_problems(f);
	assert_true(has_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, 128, false));
	assert_true(has_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, 704, false));
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_BAD_RECORD), 0);
	vswap_fsck_free(f);
	assert_int_equal(run_tool("vswap-fsck", json, &out), 4);
	assert_non_null(strstr(out, "\"kind\":\"record_checksum\""));
	assert_null(strstr(out, "\"kind\":\"bad_record\""));
	free(out);
	/* -y: the group's pages are lost, never absent; the staging record is
	 * kept (its bytes may be the only copies), so -y and -n exit 4. */
	f = expect_lib(fx, VSWAP_FSCK_REPAIR, 5);
	assert_true(has_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, 128, true));
	assert_true(has_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, 704, false));
	for (uint64_t p = 128; p < 192; p++)
		assert_true(is_lost(f, p));
	vswap_fsck_free(f);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 4);
	assert_true(has_problem(f, VSWAP_PROBLEM_RECORD_CHECKSUM, 704, false));
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_BAD_RECORD), 0);
	for (uint64_t p = 128; p < 192; p++)
		assert_true(is_lost(f, p));
	vswap_fsck_free(f);
}

/* A meta record that fails its check: record_checksum too, with no page. */
static void test_meta_record_checksum(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f;
	bool found = false;

	raw_damage(fx, true, "created_ns", 10, 0, 0x01);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 4);
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		found |= p->kind == VSWAP_PROBLEM_RECORD_CHECKSUM && !p->has_page &&
			 strstr(p->detail, "created_ns") != NULL;
	}
	assert_true(found);
	assert_int_equal(vswap_fsck_count_kind(f, VSWAP_PROBLEM_BAD_RECORD), 0);
	vswap_fsck_free(f);
}

/* ---- 2. hostile files ------------------------------------------------------ */

static void test_empty_index(void **state)
{
	struct rfx_store *fx = *state;
	struct vswap_fsck *f;
	char *err = NULL;

	assert_int_equal(truncate(fx->index, 0), 0);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 8);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_INDEX, UINT64_MAX, false));
	assert_non_null(strstr(vswap_fsck_problem(f, 0)->detail, "empty"));
	vswap_fsck_free(f);
	assert_int_equal(fsck_tool(fx, "-y", &err), 8);
	assert_null(strstr(err, "Bad file descriptor"));
	free(err);
}

static void test_invalid_index_is_not_a_bad_superblock(void **state)
{
	struct rfx_store *fx = *state;
	const char *args[] = {fx->path, NULL};
	struct vswap_fsck *f;
	char *err = NULL;

	assert_int_equal(rfx_fill(fx->index, 0, 0x5a, 16384), 0);
	f = expect_lib(fx, VSWAP_FSCK_CHECK, 8);
	assert_true(has_problem(f, VSWAP_PROBLEM_BAD_INDEX, UINT64_MAX, false));
	assert_false(has_problem(f, VSWAP_PROBLEM_BAD_SUPERBLOCK, UINT64_MAX, -1));
	vswap_fsck_free(f);
	assert_int_equal(run_tool("vswap-dump", args, &err), 1);
	assert_null(strstr(err, "bad superblock"));
	assert_non_null(strstr(err, fx->index));
	free(err);
}

/* @victim replaced by a FIFO: every tool exits in time, naming it.  A
 * read-only open never touches the lock file: vswap-dump may then succeed
 * (@lock_ok); vswap-fsck reports it (a handler would refuse the store). */
static void fifo_in_place_of(const struct rfx_store *fx, const char *victim, bool lock_ok)
{
	const char *dump_args[] = {fx->path, NULL};
	char *err = NULL;
	int code;

	assert_int_equal(unlink(victim), 0);
	assert_int_equal(mkfifo(victim, 0600), 0);
	for (int m = 0; m < 3; m++) {
		code = fsck_tool(fx, m == 0 ? "-n" : m == 1 ? "-p" : "-y", &err);
		if (code != 8)
			fprintf(stderr, "fsck exited %d: %s\n", code, err);
		assert_int_equal(code, 8);
		assert_non_null(strstr(err, victim));
		free(err);
	}
	code = run_tool("vswap-dump", dump_args, &err);
	if (code != 1 && !(lock_ok && code == 0))
		fprintf(stderr, "vswap-dump exited %d: %s\n", code, err);
	assert_true(code == 1 || (lock_ok && code == 0));
	free(err);
	unlink(victim);
}

static void test_fifo_swap_file(void **state)
{
	struct rfx_store *fx = *state;

	fifo_in_place_of(fx, fx->path, false);
}

static void test_fifo_index(void **state)
{
	struct rfx_store *fx = *state;

	fifo_in_place_of(fx, fx->index, false);
}

static void test_fifo_lock_file(void **state)
{
	struct rfx_store *fx = *state;
	char lock[PATH_MAX + 16];

	snprintf(lock, sizeof(lock), "%s-lock", fx->index);
	if (access(lock, F_OK) != 0)
		assert_int_equal(mknod(lock, S_IFREG | 0600, 0), 0);
	fifo_in_place_of(fx, lock, true);
}

/* A leftover staging file of another store whose swap file is now a FIFO:
 * the orphan scan of this store neither hangs nor removes it. */
static void test_orphan_owner_is_a_fifo(void **state)
{
	struct rfx_store *fx = *state;
	struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	struct vswap_store_opts o = {.staging_dir = fx->dir, .log_level = VSWAP_LOG_ERROR};
	char other[PATH_MAX + 16], staging[PATH_MAX];
	uint64_t regions[] = {16};
	struct vswap_store *s;
	uint8_t *page = calloc(1, fx->page_size);
	int code;

	assert_non_null(page);
	snprintf(other, sizeof(other), "%s/other.swap", fx->dir);
	assert_int_equal(vswap_store_create(other, &o, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, regions, 1), 0);
	assert_int_equal(vswap_store_stage_mark(s, 3, 1), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	memset(page, 0x33, fx->page_size);
	assert_int_equal(
	    pwrite(vswap_store_staging_fd(s), page, fx->page_size, 3 * (off_t)fx->page_size),
	    (ssize_t)fx->page_size);
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	assert_int_equal(vswap_store_close(s), 0);
	assert_int_equal(utimensat(AT_FDCWD, staging, old, 0), 0);
	assert_int_equal(unlink(other), 0);
	assert_int_equal(mkfifo(other, 0600), 0);
	code = fsck_tool(fx, "-n", NULL);
	assert_true(code == 0 || code == 4);
	code = fsck_tool(fx, "-y", NULL);
	assert_true(code == 0 || code == 1 || code == 4);
	assert_int_equal(access(staging, F_OK), 0);
	free(page);
}

/* A typo in the index's staging path: a store the library cannot open for
 * writing is not "clean". */
static void test_staging_path_typo_is_not_clean(void **state)
{
	struct rfx_store *fx = *state;
	const struct rfx_shape shape = {.total_pages = TOTAL, .written = WRITTEN};
	char staging[PATH_MAX], typo[PATH_MAX + 16];
	struct vswap_store *s;
	struct raw_index ri;
	char *out = NULL;
	int code;

	rebuild(fx, &shape);
	staging_path(fx, staging, sizeof(staging));
	snprintf(typo, sizeof(typo), "%s/nosuchdir%s", fx->dir, strrchr(staging, '/'));
	raw_open(fx, &ri);
	MDB_val k = {.mv_size = 12, .mv_data = "staging_path"};
	MDB_val v = {.mv_size = strlen(typo), .mv_data = typo};
	assert_int_equal(mdb_put(ri.txn, ri.meta, &k, &v, 0), 0);
	raw_close(&ri);
	assert_true(rfx_open(fx, false, &s) < 0);
	code = fsck_tool(fx, "-n", &out);
	if (code != 4 && code != 8)
		fprintf(stderr, "fsck -n exited %d: %s\n", code, out);
	assert_true(code == 4 || code == 8);
	assert_non_null(strstr(out, "nosuchdir"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_group_key_out_of_order_beyond, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_last_group_key_beyond, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_misplaced_copy_beside_its_group_is_kept, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_misplaced_with_a_failing_slot_is_kept, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_regions_shrunk_by_one_bit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cleared_staging_bit_keeps_only_copy, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_order_staging_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_key_moved_beyond, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_misplaced_staging_copy_beside_its_group_is_kept,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_misplaced_staging_with_a_failing_copy_is_kept,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_deleted_after_clean_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_staging_truncated_after_clean_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_staging_punched_after_clean_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_record_checksum_has_its_own_kind, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_meta_record_checksum, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_index_is_not_a_bad_superblock, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fifo_swap_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fifo_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fifo_lock_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_owner_is_a_fifo, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_path_typo_is_not_clean, setup, teardown),
	};

	if (rfx_require_tool("vswap-fsck"))
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
