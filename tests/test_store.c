/* SPDX-License-Identifier: MIT */
/* store/: round trips, refusals, slot reuse, checksums, holes, growth. */
#include <endian.h>
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
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/checksum.h"
#include "store/internal.h"
#include "store/layout.h"
#include "store/superblock.h"
#include "tests/helpers/raw_index.h"
#include "tests/helpers/store_fixture.h"

struct ctx {
	struct store_fixture f;
	struct vswap_store *s;
	uint8_t *buf; /* 256 pages */
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(fixture_init(&c->f), 0);
	c->buf = aligned_alloc(c->f.page_size, 256 * (size_t)c->f.page_size);
	assert_non_null(c->buf);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	if (c->s)
		vswap_store_close(c->s);
	fixture_cleanup(&c->f);
	free(c->buf);
	free(c);
	return 0;
}

static void *pg(struct ctx *c, unsigned i)
{
	return c->buf + (size_t)i * c->f.page_size;
}

/* Create a store with regions of 300 and 100 pages. */
static void create_store(struct ctx *c)
{
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &c->s), 0);
	uint64_t regions[] = {300, 100};
	assert_int_equal(vswap_store_set_regions(c->s, regions, 2), 0);
}

/* Write pages [first, first+n) with pattern @version. */
static void write_pages(struct ctx *c, uint64_t first, unsigned n, uint32_t version)
{
	for (unsigned i = 0; i < n; i++)
		fixture_pattern(pg(c, i), c->f.page_size, first + i, version);
	assert_int_equal(vswap_store_write(c->s, first, n, c->buf), 0);
}

static void write_pages_into(struct ctx *c, uint64_t first, unsigned n, int *ret)
{
	for (unsigned i = 0; i < n; i++)
		fixture_pattern(pg(c, i), c->f.page_size, first + i, 1);
	*ret = vswap_store_write(c->s, first, n, c->buf);
}

static void reopen(struct ctx *c)
{
	assert_int_equal(vswap_store_close(c->s), 0);
	c->s = NULL;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
}

static uint64_t slot_of(struct ctx *c, uint64_t page)
{
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(c->s, page, &pi), 0);
	return pi.slot;
}

static enum vswap_page_state state_of(struct ctx *c, uint64_t page)
{
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(c->s, page, &pi), 0);
	return pi.state;
}

static void expect_page(struct ctx *c, uint64_t page, uint32_t version)
{
	uint8_t *want = pg(c, 200), *got = pg(c, 201);
	fixture_pattern(want, c->f.page_size, page, version);
	assert_int_equal(vswap_store_read_page(c->s, page, got), 0);
	assert_memory_equal(want, got, c->f.page_size);
}

/* ---- round trip ------------------------------------------------------------ */

static void test_round_trip_keeps_every_mapping(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 64, 1);
	write_pages(c, 290, 20, 1); /* spans the two regions */
	assert_int_equal(vswap_store_mark_stale(c->s, 10, 5), 5);
	assert_int_equal(vswap_store_free(c->s, 20, 2), 2);
	assert_int_equal(vswap_store_stage_mark(c->s, 100, 8), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	for (unsigned i = 0; i < 8; i++) {
		fixture_pattern(pg(c, 0), c->f.page_size, 100 + i, 3);
		assert_int_equal(pwrite(vswap_store_staging_fd(c->s), pg(c, 0), c->f.page_size,
					(off_t)(100 + i) * c->f.page_size),
				 c->f.page_size);
	}
	assert_int_equal(vswap_store_stage_seal(c->s, 100, 8), 0);
	assert_int_equal(vswap_store_set_state(c->s, 5), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);

	struct vswap_page_info before[400];
	for (uint64_t p = 0; p < 400; p++)
		assert_int_equal(vswap_store_page(c->s, p, &before[p]), 0);
	struct vswap_store_info info0;
	vswap_store_info(c->s, &info0);
	reopen(c);

	struct vswap_store_info info;
	vswap_store_info(c->s, &info);
	assert_memory_equal(info.uuid, info0.uuid, 16);
	assert_true(info.was_clean);
	assert_int_equal(info.state, 5);
	assert_int_equal(vswap_store_total_pages(c->s), 400);
	assert_int_equal(vswap_store_region_count(c->s), 2);
	for (uint64_t p = 0; p < 400; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_store_page(c->s, p, &pi), 0);
		assert_int_equal(pi.state, before[p].state);
		assert_int_equal(pi.staged, before[p].staged);
		if (pi.state != VSWAP_PAGE_NONE) {
			assert_int_equal(pi.slot, before[p].slot);
			assert_int_equal(pi.xxh3, before[p].xxh3);
		}
	}
	assert_int_equal(state_of(c, 10), VSWAP_PAGE_STALE);
	assert_int_equal(state_of(c, 20), VSWAP_PAGE_NONE);
	for (uint64_t p = 0; p < 64; p++)
		if (p < 20 || p > 21)
			expect_page(c, p, 1);
	for (uint64_t p = 290; p < 310; p++)
		expect_page(c, p, 1);
	struct vswap_store_stats st;
	vswap_store_stats(c->s, &st);
	assert_int_equal(st.pages_present, 64 + 20 - 5 - 2);
	assert_int_equal(st.pages_stale, 5);
	assert_int_equal(st.pages_staged, 8);
	assert_int_equal(st.slots_used, 82);
}

static void test_unclean_close_is_reported(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 4, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	vswap_store_close(c->s);
	c->s = NULL;
	/* A child opens the store and dies without closing it. */
	int status;
	pid_t pid = fork();
	if (pid == 0) {
		struct vswap_store *s;
		if (vswap_store_open(c->f.path, &c->f.opts, &s))
			_exit(1);
		raise(SIGKILL);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
	struct vswap_store_info info;
	vswap_store_info(c->s, &info);
	assert_false(info.was_clean);
	expect_page(c, 3, 1);
}

/* ---- refusals -------------------------------------------------------------- */

static void test_mismatched_index_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	char other[400], idx[420], other_idx[420];
	snprintf(other, sizeof(other), "%s/other", c->f.dir);
	struct vswap_store *o;
	assert_int_equal(vswap_store_create(other, &c->f.opts, &o), 0);
	vswap_store_close(o);
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	snprintf(other_idx, sizeof(other_idx), "%s.idx", other);
	assert_int_equal(rename(other_idx, idx), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EMEDIUMTYPE);
	assert_null(c->s);
	assert_non_null(strstr(c->f.last_log, "belongs to another store"));
}

static void test_missing_index_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	assert_int_equal(unlink(idx), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -ENOENT);
}

static void rewrite_superblock(struct ctx *c, void (*edit)(struct vswap_superblock *))
{
	int fd = open(c->f.path, O_RDWR);
	uint8_t buf[VSWAP_SB_BYTES];
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	struct vswap_superblock sb;
	const char *why;
	assert_int_equal(superblock_decode(buf, sizeof(buf), &sb, &why), 0);
	edit(&sb);
	superblock_encode(&sb, buf);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), sizeof(buf));
	close(fd);
}

static void edit_version(struct vswap_superblock *sb)
{
	sb->format_version = 3;
}
static void edit_page_size(struct vswap_superblock *sb)
{
	sb->page_size *= 4;
}

static void test_bad_superblock_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	/* A flipped bit anywhere in the encoded superblock. */
	for (unsigned off = 0; off < VSWAP_SB_BYTES; off += 7) {
		assert_int_equal(fixture_flip_bit(c->f.path, off, off % 8), 0);
		assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EUCLEAN);
		assert_int_equal(fixture_flip_bit(c->f.path, off, off % 8), 0);
	}
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
	vswap_store_close(c->s);
	c->s = NULL;
	/* Valid checksum, unknown version / foreign page size. */
	rewrite_superblock(c, edit_version);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EPROTONOSUPPORT);
	/* Zeroed superblock and a truncated (empty) file. */
	assert_int_equal(truncate(c->f.path, 0), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EUCLEAN);
}

static void test_page_size_mismatch_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	rewrite_superblock(c, edit_page_size);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EXDEV);
	assert_non_null(strstr(c->f.last_log, "page size"));
}

/* Write meta "format" = @v straight into the index with LMDB, its record
 * check valid (@sealed) or left as a format-1 value without one. */
static void set_index_format(struct ctx *c, uint32_t v, bool sealed)
{
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	struct raw_index ri;
	assert_int_equal(raw_index_open(&ri, idx), 0);
	if (sealed)
		assert_int_equal(raw_meta_put(&ri, "format", &v, 4), 0);
	else
		assert_int_equal(raw_value_put(&ri, ri.meta, "format", 6, &v, 4), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
}

static void test_unknown_index_format_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	set_index_format(c, 99, true);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EPROTONOSUPPORT);
	/* A record without its check is not believed, whatever it says. */
	set_index_format(c, 2, false);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EUCLEAN);
	assert_non_null(strstr(c->f.last_log, "format record fails its checksum"));
	set_index_format(c, 2, true);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
}

/* A format-1 superblock as docs/FORMAT.md writes it down, built by hand:
 * refused by name, with the command that converts it. */
static void test_format_v1_superblock_by_hand(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	struct vswap_store_info info;
	vswap_store_info(c->s, &info);
	vswap_store_close(c->s);
	c->s = NULL;
	uint8_t b[VSWAP_SB_BYTES] = {0};
	memcpy(b, "VSWAPSB\0", 8);
	uint32_t v = 1, ps = c->f.page_size;
	memcpy(b + 8, &v, 4);
	memcpy(b + 12, &ps, 4);
	memcpy(b + 16, info.uuid, 16);
	memcpy(b + 32, &info.created_ns, 8);
	uint64_t sum = vswap_checksum(b, 48);
	memcpy(b + 48, &sum, 8);
	int fd = open(c->f.path, O_RDWR);
	assert_int_equal(pwrite(fd, b, sizeof(b), 0), sizeof(b));
	close(fd);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EPROTONOSUPPORT);
	assert_non_null(strstr(c->f.last_log, "format 1 store"));
	assert_non_null(strstr(c->f.last_log, "vswap-upgrade"));
}

static void test_busy_store_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 3, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	struct vswap_store *second = NULL;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &second), -EBUSY);
	assert_null(second);
	assert_non_null(strstr(c->f.last_log, "in use"));
	/* A read-only open takes no lock.  LMDB forbids opening one
	 * environment twice in a process, so it runs in a child. */
	pid_t pid = fork();
	if (pid == 0) {
		struct vswap_store_opts ro = c->f.opts;
		ro.read_only = true;
		struct vswap_store *r;
		if (vswap_store_open(c->f.path, &ro, &r))
			_exit(1);
		struct vswap_page_info pi;
		int ok = vswap_store_page(r, 2, &pi) == 0 && pi.state == VSWAP_PAGE_PRESENT &&
			 vswap_store_write(r, 5, 1, c->buf) == -EROFS;
		vswap_store_close(r);
		_exit(ok ? 0 : 2);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_regions_validated(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &c->s), 0);
	uint64_t zero[] = {10, 0};
	assert_int_equal(vswap_store_set_regions(c->s, zero, 2), -EINVAL);
	uint64_t huge[] = {vswap_store_max_pages(), 1};
	assert_int_equal(vswap_store_set_regions(c->s, huge, 2), -E2BIG);
	uint64_t ok[] = {16};
	assert_int_equal(vswap_store_set_regions(c->s, ok, 1), 0);
	write_pages(c, 0, 1, 1);
	uint64_t other[] = {32};
	assert_int_equal(vswap_store_set_regions(c->s, other, 1), -EBUSY);
	assert_int_equal(vswap_store_set_regions(c->s, ok, 1), 0); /* unchanged: fine */
	assert_int_equal(vswap_store_write(c->s, 15, 2, c->buf), -EINVAL);
}

/* ---- slots ----------------------------------------------------------------- */

static void test_slot_reuse_order(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 4, 1); /* slots 0..3 */
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(slot_of(c, p), p);
	assert_int_equal(vswap_store_commit(c->s), 0);

	/* 1. A stale page is rewritten in its own slot once the index says
	 * stale; before that commit the index may still say present there. */
	assert_int_equal(vswap_store_mark_stale(c->s, 1, 2), 2);
	write_pages(c, 2, 1, 2);
	assert_int_equal(slot_of(c, 2), 4);	       /* stale mark uncommitted: new slot */
	assert_int_equal(vswap_store_commit(c->s), 0); /* frees slot 2 */
	write_pages(c, 1, 1, 2);
	assert_int_equal(slot_of(c, 1), 1);
	assert_int_equal(vswap_store_commit(c->s), 0);

	/* 2. A freed slot is not reused before the commit... */
	assert_int_equal(vswap_store_free(c->s, 3, 1), 1);
	write_pages(c, 10, 1, 1);
	assert_int_equal(slot_of(c, 10), 2); /* free since the last commit */
	write_pages(c, 9, 1, 1);
	assert_int_equal(slot_of(c, 9), 5); /* appended, not slot 3 */
	assert_int_equal(vswap_store_commit(c->s), 0);
	/* ...and is the first choice after it. */
	write_pages(c, 11, 1, 1);
	assert_int_equal(slot_of(c, 11), 3);
	/* 3. Then append. */
	write_pages(c, 12, 2, 1);
	assert_int_equal(slot_of(c, 12), 6);
	assert_int_equal(slot_of(c, 13), 7);
	/* A present page written again moves to a new slot; the old one is
	 * freed at the commit. */
	write_pages(c, 0, 1, 3);
	assert_int_equal(slot_of(c, 0), 8);
	assert_int_equal(vswap_store_commit(c->s), 0);
	write_pages(c, 14, 1, 1);
	assert_int_equal(slot_of(c, 14), 0);
	expect_page(c, 0, 3);
	expect_page(c, 1, 2);
	expect_page(c, 2, 2);
	expect_page(c, 11, 1);
}

/* Invariant 2: crash between a free and its commit; the freed slot must
 * still hold the page the index maps to it. */
static void test_no_reuse_before_commit_survives_crash(void **state)
{
	struct ctx *c = *state;
	for (int mode = 0; mode < 3; mode++) {
		c->f.opts.durability = (enum vswap_durability)mode;
		create_store(c);
		write_pages(c, 0, 8, 1);
		assert_int_equal(vswap_store_commit(c->s), 0);
		uint64_t freed_slot = slot_of(c, 2);
		/* The child opens the store itself: a handle belongs to the
		 * process that opened it. */
		assert_int_equal(vswap_store_close(c->s), 0);
		c->s = NULL;
		pid_t pid = fork();
		if (pid == 0) {
			if (vswap_store_open(c->f.path, &c->f.opts, &c->s))
				_exit(1);
			vswap_store_free(c->s, 2, 1);
			/* New data goes elsewhere, even under slot pressure. */
			for (unsigned i = 0; i < 8; i++)
				fixture_pattern(pg(c, i), c->f.page_size, 100 + i, 9);
			vswap_store_write(c->s, 100, 8, c->buf);
			raise(SIGKILL); /* no commit */
		}
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_int_equal(status, SIGKILL);
		assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
		if (mode == VSWAP_DURABILITY_FULL) {
			/* The write committed the free with it, but its own
			 * pages did not take the freed slot. */
			assert_int_equal(state_of(c, 2), VSWAP_PAGE_NONE);
			for (uint64_t p = 100; p < 108; p++) {
				assert_int_equal(state_of(c, p), VSWAP_PAGE_PRESENT);
				assert_true(slot_of(c, p) != freed_slot);
				expect_page(c, p, 9);
			}
		} else {
			assert_int_equal(state_of(c, 2), VSWAP_PAGE_PRESENT);
			assert_int_equal(slot_of(c, 2), freed_slot);
			expect_page(c, 2, 1);
			assert_int_equal(state_of(c, 100), VSWAP_PAGE_NONE);
		}
		vswap_store_close(c->s);
		c->s = NULL;
		vswap_store_destroy(c->f.path, &c->f.opts);
	}
}

/* Whether the swap file holds bytes at slot @slot. */
static bool slot_has_bytes(struct ctx *c, uint64_t slot)
{
	int fd = open(c->f.path, O_RDONLY);
	assert_true(fd >= 0);
	off_t off = (off_t)(slot + 1) * c->f.page_size;
	bool data = lseek(fd, off, SEEK_DATA) == off;
	close(fd);
	return data;
}

/* What a resume leaves over 64 pages: every page but each eighth's fourth
 * written, committed, then all stale (56 slots).  The batch to write next
 * (into @pages; its count returned) leaves out each eighth's sixth page (now
 * zero); @old[i] is the stale slot of pages[i], UINT64_MAX for none. */
static uint32_t scattered_stale_batch(struct ctx *c, uint64_t pages[64], uint64_t old[64])
{
	for (unsigned p = 0; p < 64; p++)
		if (p % 8 != 3)
			write_pages(c, p, 1, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_mark_stale(c->s, 0, 64), 56);
	assert_int_equal(vswap_store_commit(c->s), 0);
	uint32_t n = 0;
	for (unsigned p = 0; p < 64; p++)
		if (p % 8 != 5) /* now zero: not written */
			pages[n++] = p;
	for (uint32_t i = 0; i < n; i++)
		old[i] = pages[i] % 8 == 3 ? UINT64_MAX : slot_of(c, pages[i]);
	return n;
}

/*
 * After a resume a batch's stale slots rarely follow each other (pages that
 * became zero are left out, pages that stopped being zero need a slot): in
 * place, its write would be a run of a few pages at a time.  Such a batch
 * takes one run of free slots instead, and its stale slots are freed (a
 * batch whose stale slots follow each other is still rewritten in place).
 */
static void test_split_write_of_scattered_stale_slots_takes_one_run(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	uint64_t pages[64], slots[64], sums[64], old[64];
	uint32_t n = scattered_stale_batch(c, pages, old);
	int fd;
	assert_int_equal(vswap_store_write_begin(c->s, pages, n, slots, &fd), 0);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(slots[i], slots[0] + i);
		fixture_pattern(pg(c, 0), c->f.page_size, pages[i], 2);
		assert_int_equal(pwrite(fd, pg(c, 0), c->f.page_size,
					(off_t)vswap_store_slot_offset(c->s, slots[i])),
				 (ssize_t)c->f.page_size);
		sums[i] = vswap_store_page_checksum(c->s, pages[i], pg(c, 0));
	}
	assert_int_equal(vswap_store_write_end(c->s, pages, n, slots, sums, NULL), (int)n);
	assert_int_equal(vswap_store_commit(c->s), 0);
	struct vswap_store_stats st;
	vswap_store_stats(c->s, &st);
	assert_int_equal(st.slots_used, n + 8); /* and the pages at 5 mod 8, stale */
	for (uint32_t i = 0; i < n; i++) {
		assert_true(old[i] == UINT64_MAX || slot_of(c, pages[i]) != old[i]);
		expect_page(c, pages[i], 2);
	}
	/* Stale slots that follow each other: rewritten in place. */
	assert_int_equal(vswap_store_mark_stale(c->s, 0, 64), n);
	assert_int_equal(vswap_store_commit(c->s), 0);
	for (uint32_t i = 0; i < n; i++)
		old[i] = slot_of(c, pages[i]);
	assert_int_equal(vswap_store_write_begin(c->s, pages, n, slots, &fd), 0);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(slots[i], old[i]);
	int status[64];
	for (uint32_t i = 0; i < n; i++)
		status[i] = -EIO; /* abandoned: the old copies are given up */
	assert_true(vswap_store_write_end(c->s, pages, n, slots, sums, status) < 0);
}

/*
 * A freed slot is reusable once the commit that freed it landed, without a
 * punch (on a file system mounted with discard a punch per freed slot cost
 * 0.6 ms each: a trim after a resume spent seconds in them): the write that
 * takes it overwrites its old bytes.  A clean close punches the free slots
 * still holding bytes, so a closed store holds bytes only where its records
 * point (and the free slots at the end are cut off).
 */
static void test_freed_slot_reused_unpunched_then_punched_at_close(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	uint64_t s3 = slot_of(c, 3), s5 = slot_of(c, 5), s7 = slot_of(c, 7);
	assert_true(slot_has_bytes(c, s3));
	assert_int_equal(vswap_store_free(c->s, 3, 1), 1);
	write_pages(c, 20, 1, 2);
	assert_true(slot_of(c, 20) != s3); /* not reused before the commit */
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_true(slot_has_bytes(c, s3)); /* not punched */
	struct vswap_store_stats st;
	vswap_store_stats(c->s, &st);
	assert_int_equal(st.slots_used, 8);
	assert_int_equal(st.slots_free, 1);
	write_pages(c, 21, 1, 3);
	assert_int_equal(slot_of(c, 21), s3); /* reused as it was */
	expect_page(c, 21, 3);
	/* Freed and left free: punched (page 5) or cut off (page 7, the last
	 * slot but page 20's) by the clean close, not before. */
	assert_int_equal(vswap_store_free(c->s, 5, 1), 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_true(slot_has_bytes(c, s5));
	reopen(c);
	assert_false(slot_has_bytes(c, s5));
	assert_true(slot_has_bytes(c, s3));
	expect_page(c, 21, 3);
	expect_page(c, 20, 2);
	expect_page(c, 4, 1);
	assert_int_equal(slot_of(c, 20), s7 + 1); /* the last slot */
	assert_int_equal(vswap_store_free(c->s, 20, 1), 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	struct stat sb;
	assert_int_equal(stat(c->f.path, &sb), 0);
	assert_int_equal(sb.st_size, (off_t)(s7 + 2) * c->f.page_size);
	expect_page(c, 7, 1);
}

/*
 * vswap_store_punch_free() gives freed slots' blocks back while the store is
 * open, at most the slots asked per call (the free slots between punched
 * ones count: one call covers a run), and once nothing is left below the
 * highest used slot it cuts the free tail; slots in use keep their bytes.
 */
static void test_punch_free_gives_blocks_back_while_open(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 16, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	uint64_t s[16];
	for (unsigned p = 0; p < 16; p++)
		s[p] = slot_of(c, p);
	/* Freed: 2..5 and 8..9 (two runs below page 10's slot), 12..15 (the
	 * tail). */
	assert_int_equal(vswap_store_free(c->s, 2, 4), 4);
	assert_int_equal(vswap_store_free(c->s, 8, 2), 2);
	assert_int_equal(vswap_store_free(c->s, 12, 4), 4);
	assert_int_equal(vswap_store_punch_free(c->s, 1000), 0); /* not free before the commit */
	assert_true(slot_has_bytes(c, s[2]));
	assert_int_equal(vswap_store_commit(c->s), 0);
	/* Two slots per call: the first run in two pieces. */
	assert_int_equal(vswap_store_punch_free(c->s, 2), 8);
	assert_false(slot_has_bytes(c, s[2]));
	assert_false(slot_has_bytes(c, s[3]));
	assert_true(slot_has_bytes(c, s[4]));
	assert_int_equal(vswap_store_punch_free(c->s, 1000), 0);
	for (unsigned p = 0; p < 16; p++) {
		bool freed = (p >= 2 && p <= 5) || p == 8 || p == 9 || p >= 12;
		if (p < 12)
			assert_true(slot_has_bytes(c, s[p]) != freed);
		if (!freed)
			expect_page(c, p, 1);
	}
	struct stat sb;
	assert_int_equal(stat(c->f.path, &sb), 0);
	assert_int_equal(sb.st_size, (off_t)(s[11] + 2) * c->f.page_size); /* the tail cut */
	/* Reused after a punch like any free slot. */
	write_pages(c, 20, 4, 2);
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	expect_page(c, 20, 2);
	expect_page(c, 11, 1);
}

/*
 * The layout the store's interface reports is the one docs/FORMAT.md
 * writes down: slot s at byte (s + 1) * page size, consecutive slots
 * adjacent; the staging file "vswap-<uuid>.staging" in its directory.
 */
static void test_layout_interface_matches_format(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	const uint64_t ps = c->f.page_size;
	assert_int_equal(vswap_store_slot_offset(c->s, 0), ps);
	assert_int_equal(vswap_store_slot_offset(c->s, 41), 42 * ps);
	uint64_t slot = slot_of(c, 5);
	struct vswap_read r;
	assert_int_equal(vswap_store_read_begin(c->s, 5, &r), 0);
	assert_int_equal(r.offset, vswap_store_slot_offset(c->s, slot));
	uint8_t *got = aligned_alloc(ps, ps);
	assert_non_null(got);
	assert_int_equal(pread(vswap_store_swap_fd(c->s), got, ps, (off_t)r.offset), (ssize_t)ps);
	assert_memory_equal(got, pg(c, 5), ps);
	free(got);

	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(c->s, &info), 0);
	char name[STORE_STAGING_NAME_LEN + 1], uu[37], parsed[37];
	store_staging_name(info.uuid, name);
	vswap_uuid_format(info.uuid, uu);
	const char *path = vswap_store_staging_path(c->s);
	const char *base = strrchr(path, '/') + 1;
	assert_string_equal(base, name);
	assert_memory_equal(name, "vswap-", 6);
	assert_string_equal(name + 6 + 36, ".staging");
	assert_true(store_staging_name_parse(name, parsed));
	assert_string_equal(parsed, uu);
	size_t dirlen = 0;
	assert_true(store_staging_path_split(path, info.uuid, &dirlen));
	assert_int_equal(dirlen, (size_t)(base - 1 - path));
	assert_false(store_staging_name_parse("vswap-not-a-uuid.staging", NULL));
	name[STORE_STAGING_NAME_LEN - 1] = 'x';
	assert_false(store_staging_name_parse(name, NULL));
	assert_false(store_staging_path_split(base, info.uuid, &dirlen)); /* not absolute */

	uint8_t id[16];
	const char *why = NULL;
	assert_int_equal(store_identify_fd(vswap_store_swap_fd(c->s), id, &why), 0);
	assert_memory_equal(id, info.uuid, 16);
	int fd = open(vswap_store_index_path(c->s), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(store_identify_fd(fd, id, &why), -EUCLEAN);
	assert_non_null(why);
	close(fd);
}

/* A read ended with its bytes hashed beforehand (the handler hashes outside
 * its lock): the right sum passes and is counted, a wrong one loses the
 * page, a short read is missing bytes, and a page rewritten since the read
 * began says nothing (its bytes are another copy's). */
static void read_one(struct ctx *c, uint64_t page, struct vswap_read *r, uint8_t *buf)
{
	assert_int_equal(vswap_store_read_begin(c->s, page, r), 0);
	assert_int_equal(pread(r->fd, buf, r->len, (off_t)r->offset), (ssize_t)r->len);
}

static void test_read_end_sum(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	const int32_t ps = (int32_t)c->f.page_size;
	uint8_t *buf = aligned_alloc((size_t)ps, (size_t)ps);
	assert_non_null(buf);
	struct vswap_read r;
	struct vswap_store_stats st0, st1;
	struct vswap_page_info pi;

	read_one(c, 3, &r, buf);
	vswap_store_stats(c->s, &st0);
	uint64_t sum = vswap_store_page_checksum(c->s, 3, buf);
	assert_int_equal(vswap_store_read_end_sum(c->s, &r, sum, ps), 0);
	vswap_store_stats(c->s, &st1);
	assert_int_equal(st1.bytes_read - st0.bytes_read, (uint64_t)ps);
	assert_int_equal(vswap_store_page(c->s, 3, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);

	read_one(c, 4, &r, buf);
	buf[17] ^= 4; /* as a flipped bit on the disk would */
	sum = vswap_store_page_checksum(c->s, 4, buf);
	assert_int_equal(vswap_store_read_end_sum(c->s, &r, sum, ps), -EBADMSG);
	assert_int_equal(vswap_store_page(c->s, 4, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);

	/* The valid bytes of another page fail too (the sum is seeded). */
	read_one(c, 5, &r, buf);
	assert_int_equal(
	    vswap_store_read_end_sum(c->s, &r, vswap_store_page_checksum(c->s, 6, buf), ps),
	    -EBADMSG);

	read_one(c, 6, &r, buf);
	sum = vswap_store_page_checksum(c->s, 6, buf);
	assert_int_equal(vswap_store_read_end_sum(c->s, &r, sum, ps / 2), -EIO);

	read_one(c, 7, &r, buf);
	sum = vswap_store_page_checksum(c->s, 7, buf);
	write_pages(c, 7, 1, 2); /* a new copy meanwhile */
	assert_int_equal(vswap_store_read_end_sum(c->s, &r, sum, ps), -ESTALE);
	assert_int_equal(vswap_store_page(c->s, 7, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	free(buf);
}

/* ---- checksums --------------------------------------------------------------- */

static void test_flipped_bit_detected_in_any_page(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 64, 64, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	for (unsigned victim = 0; victim < 64; victim += 9) {
		uint64_t page = 64 + victim;
		uint64_t slot = slot_of(c, page);
		unsigned byte = (victim * 131) % c->f.page_size;
		assert_int_equal(
		    fixture_flip_bit(c->f.path, (slot + 1) * c->f.page_size + byte, victim % 8), 0);
		int status[64];
		struct vswap_store_stats st0, st1;
		vswap_store_stats(c->s, &st0);
		assert_int_equal(vswap_store_read_run(c->s, 64, 64, c->buf, status),
				 1 + victim / 9);
		vswap_store_stats(c->s, &st1);
		assert_int_equal(st1.checksum_failures, st0.checksum_failures + 1);
		for (unsigned i = 0; i < 64; i++) {
			bool bad = i <= victim && i % 9 == 0;
			assert_int_equal(status[i], bad ? -EBADMSG : 0);
			if (!bad) {
				uint8_t want[65536];
				fixture_pattern(want, c->f.page_size, 64 + i, 1);
				assert_memory_equal(pg(c, i), want, c->f.page_size);
			}
		}
		assert_int_equal(state_of(c, page), VSWAP_PAGE_LOST);
		assert_int_equal(vswap_store_read_page(c->s, page, c->buf), -EBADMSG);
	}
	/* The lost records are durable. */
	reopen(c);
	assert_int_equal(state_of(c, 64), VSWAP_PAGE_LOST);
	assert_int_equal(state_of(c, 65), VSWAP_PAGE_PRESENT);
	struct vswap_store_stats st;
	vswap_store_stats(c->s, &st);
	assert_int_equal(st.pages_lost, 8);
}

static void test_single_page_read_detects_flip(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 5, 1, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(fixture_flip_bit(c->f.path, (slot_of(c, 5) + 1) * c->f.page_size + 100, 3),
			 0);
	assert_int_equal(vswap_store_read_page(c->s, 5, c->buf), -EBADMSG);
	assert_int_equal(state_of(c, 5), VSWAP_PAGE_LOST);
}

static void test_truncated_file_reported_per_page(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 32, 1);
	vswap_store_close(c->s);
	c->s = NULL;
	/* Cut the file in the middle of slot 21: slots 21..31 are missing. */
	assert_int_equal(truncate(c->f.path, (off_t)(22 * c->f.page_size + 100)), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
	int status[32];
	assert_int_equal(vswap_store_read_run(c->s, 0, 32, c->buf, status), 11);
	for (unsigned i = 0; i < 32; i++) {
		assert_int_equal(status[i], i < 21 ? 0 : -EIO);
		assert_int_equal(state_of(c, i), i < 21 ? VSWAP_PAGE_PRESENT : VSWAP_PAGE_LOST);
	}
}

static void test_trim_compare_uses_stale_copy(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 2, 1);
	assert_int_equal(vswap_store_mark_stale(c->s, 0, 2), 2);
	fixture_pattern(pg(c, 10), c->f.page_size, 0, 1);
	assert_int_equal(vswap_store_stale_equals(c->s, 0, pg(c, 10)), 1);
	fixture_pattern(pg(c, 10), c->f.page_size, 1, 2);
	assert_int_equal(vswap_store_stale_equals(c->s, 1, pg(c, 10)), 0);
	assert_int_equal(vswap_store_mark_present(c->s, 0), 0);
	assert_int_equal(state_of(c, 0), VSWAP_PAGE_PRESENT);
	assert_int_equal(vswap_store_mark_present(c->s, 0), -EINVAL);
	assert_int_equal(vswap_store_stale_equals(c->s, 0, pg(c, 10)), 0); /* not stale */
}

/* ---- durability, staging, growth ---------------------------------------------- */

static void test_durability_modes_commit_when_promised(void **state)
{
	struct ctx *c = *state;
	c->f.opts.durability = VSWAP_DURABILITY_FULL;
	create_store(c);
	write_pages(c, 0, 4, 1);
	assert_int_equal(vswap_store_pending(c->s), 0);
	vswap_store_close(c->s);
	c->s = NULL;
	vswap_store_destroy(c->f.path, &c->f.opts);
	c->f.opts.durability = VSWAP_DURABILITY_BATCH;
	create_store(c);
	write_pages(c, 0, 4, 1);
	assert_int_equal(vswap_store_pending(c->s), 4);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_pending(c->s), 0);
	enum vswap_durability d;
	assert_int_equal(vswap_durability_parse("none", &d), 0);
	assert_int_equal(d, VSWAP_DURABILITY_NONE);
	assert_int_equal(vswap_durability_parse("fast", &d), -EINVAL);
}

static void test_staging_records_and_punch(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	const char *sp = vswap_store_staging_path(c->s);
	struct stat st;
	assert_int_equal(stat(sp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	int fd = vswap_store_staging_fd(c->s);
	assert_int_equal(vswap_store_stage_mark(c->s, 40, 10), 0);
	fixture_pattern(c->buf, c->f.page_size, 40, 1);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(
		    pwrite(fd, c->buf, c->f.page_size, (off_t)(40 + i) * c->f.page_size),
		    c->f.page_size);
	assert_int_equal(vswap_store_stage_seal(c->s, 40, 10), 0);
	uint64_t first, count;
	assert_int_equal(vswap_store_next_staged_run(c->s, 0, 400, 512, &first, &count), 1);
	assert_int_equal(first, 40);
	assert_int_equal(count, 10);
	assert_int_equal(vswap_store_stage_clear(c->s, 40, 5), 0);
	off_t off = 40 * (off_t)c->f.page_size;
	/* The bytes go after the commit that clears the records. */
	assert_int_equal(lseek(fd, off, SEEK_DATA), off);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(lseek(fd, off, SEEK_DATA), 45 * (off_t)c->f.page_size);
	assert_false(vswap_store_staged(c->s, 44));
	assert_true(vswap_store_staged(c->s, 45));
	reopen(c);
	assert_int_equal(vswap_store_next_staged_run(c->s, 0, 400, 3, &first, &count), 1);
	assert_int_equal(first, 45);
	assert_int_equal(count, 3);
}

/* Pages of the staged checksums' array the process holds in memory. */
static size_t ssums_resident(const struct vswap_store *s)
{
	size_t psz = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t from = (uintptr_t)s->ssums & ~(psz - 1);
	uintptr_t to = ((uintptr_t)(s->ssums + s->total_pages) + psz - 1) & ~(psz - 1);
	size_t n = (to - from) / psz, held = 0;
	unsigned char *v = malloc(n);
	assert_non_null(v);
	assert_int_equal(mincore((void *)from, to - from, v), 0);
	for (size_t i = 0; i < n; i++)
		held += v[i] & 1;
	free(v);
	return held;
}

/* Stage pages [40, 50) with pattern @version, their checksums recorded. */
static void stage_sealed(struct ctx *c, uint32_t version)
{
	int fd = vswap_store_staging_fd(c->s);
	assert_int_equal(vswap_store_stage_mark(c->s, 40, 10), 0);
	for (unsigned i = 0; i < 10; i++) {
		fixture_pattern(c->buf, c->f.page_size, 40 + i, version);
		assert_int_equal(
		    pwrite(fd, c->buf, c->f.page_size, (off_t)(40 + i) * c->f.page_size),
		    c->f.page_size);
	}
	assert_int_equal(vswap_store_stage_seal(c->s, 40, 10), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
}

/* The staged copies' checksums hold memory only while pages are staged:
 * when the last one leaves staging the array's pages are returned (a
 * handle that swapped its guest out kept 8 bytes per guest page for
 * nothing), and a later staging records and checks its checksums as
 * before. */
static void test_staged_sums_given_back(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	stage_sealed(c, 1);
	assert_true(ssums_resident(c->s) > 0);
	assert_int_equal(vswap_store_stage_clear(c->s, 40, 5), 0);
	assert_true(ssums_resident(c->s) > 0); /* 45..49 still staged */
	assert_int_equal(vswap_store_stage_clear(c->s, 45, 5), 0);
	assert_int_equal(ssums_resident(c->s), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	/* Staged again, each copy verifies against its new checksum after a
	 * reopen (checked at its first use). */
	stage_sealed(c, 2);
	reopen(c);
	uint64_t first, count;
	assert_int_equal(vswap_store_next_staged_run(c->s, 0, 400, 512, &first, &count), 1);
	assert_int_equal(first, 40);
	assert_int_equal(count, 10);
	struct vswap_store_stats st;
	assert_int_equal(vswap_store_stats(c->s, &st), 0);
	assert_int_equal(st.pages_staged, 10);
	assert_int_equal(st.pages_lost, 0);
}

/* The same after a split commit, whose snapshot buffer (mapped) the layout
 * built aside shares too: a layout change that fails (the staging file
 * cannot grow: RLIMIT_FSIZE) leaves the handle as it was, split commits
 * included.  Runs in a child: the limit is per process. */
static void test_failed_layout_change_after_a_split_commit(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	assert_int_equal(vswap_store_close(c->s), 0);
	c->s = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		int r;
		if (vswap_store_open(c->f.path, &c->f.opts, &c->s))
			_exit(7);
		write_pages_into(c, 0, 16, &r);
		if (r)
			_exit(8);
		/* A split commit: its snapshot buffer exists. */
		if (vswap_store_commit_begin(c->s) != 1 || vswap_store_commit_write(c->s))
			_exit(9);
		vswap_store_commit_end(c->s, 0);
		if (vswap_store_free(c->s, 0, 16) != 16 || vswap_store_commit(c->s))
			_exit(10);
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit old, rl = {.rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY};
		getrlimit(RLIMIT_FSIZE, &old);
		setrlimit(RLIMIT_FSIZE, &rl);
		uint64_t regions[] = {1u << 20};
		if (vswap_store_set_regions(c->s, regions, 1) != -EFBIG)
			_exit(11);
		setrlimit(RLIMIT_FSIZE, &old);
		/* Still the old layout, and usable. */
		if (vswap_store_region_count(c->s) != 2)
			_exit(12);
		write_pages_into(c, 0, 4, &r);
		if (r)
			_exit(15);
		if (vswap_store_commit_begin(c->s) != 1 || vswap_store_commit_write(c->s))
			_exit(13);
		vswap_store_commit_end(c->s, 0);
		_exit(vswap_store_close(c->s) ? 14 : 0);
	}
	/* Bounded: the heap the double free damaged could hang the child. */
	int status = 0;
	pid_t got = 0;
	for (int i = 0; i < 2000 && got == 0; i++) {
		got = waitpid(pid, &status, WNOHANG);
		if (got == 0)
			usleep(10000);
	}
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("the child hung after the failed layout change");
	}
	assert_int_equal(got, pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Where group @g's page record lies in the index's map (NULL: none). */
static const void *page_record_at(struct ctx *c, uint64_t g)
{
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(c->s->env, NULL, MDB_RDONLY, &txn), 0);
	uint64_t kb = htobe64(g);
	MDB_val k = {.mv_size = sizeof(kb), .mv_data = &kb}, v;
	int rc = mdb_get(txn, c->s->dbi_pages, &k, &v);
	mdb_txn_abort(txn);
	return rc == 0 ? v.mv_data : NULL;
}

/* A change to staging alone (a stage mark, a staged checksum, a page
 * leaving staging) commits the group's staging record and leaves its page
 * record where the index has it: every commit rewrote the unchanged page
 * record too (LMDB copies the page of any record put), a kilobyte a group
 * at the end of each swap-out, and an LMDB environment keeps as many dirty
 * pages as its largest transaction had. */
static void test_staging_change_leaves_the_page_record(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	const void *at = page_record_at(c, 0);
	assert_non_null(at);
	/* A plain commit of a stage mark and its checksums. */
	stage_sealed(c, 3); /* pages 40..49: group 0 */
	assert_ptr_equal(page_record_at(c, 0), at);
	/* A split commit of pages leaving staging. */
	assert_int_equal(vswap_store_stage_clear(c->s, 40, 10), 0);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	vswap_store_commit_punch(c->s);
	assert_ptr_equal(page_record_at(c, 0), at);
	/* A page change after a staging change still rewrites the record. */
	stage_sealed(c, 4);
	assert_int_equal(vswap_store_stage_clear(c->s, 40, 10), 0);
	write_pages(c, 3, 1, 2);
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	expect_page(c, 0, 1);
	expect_page(c, 3, 2);
	expect_page(c, 7, 1);
	assert_false(vswap_store_staged(c->s, 40));
}

/* The staged copies a previous handle left are checked at their first use,
 * not by the open (reading and hashing every one made a restart linear in
 * the guest): the open reports nothing lost and reads none of them; the
 * first call that reports a copy staged checks it first, and a copy that
 * fails is lost there (never reported staged, never zero), the others
 * staged as they were.  (The open found it lost: it had read them all.) */
static void test_staged_checked_at_first_use(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	int fd = vswap_store_staging_fd(c->s);
	assert_int_equal(vswap_store_stage_mark(c->s, 40, 10), 0);
	for (unsigned i = 0; i < 10; i++) {
		fixture_pattern(c->buf, c->f.page_size, 40 + i, 1);
		assert_int_equal(
		    pwrite(fd, c->buf, c->f.page_size, (off_t)(40 + i) * c->f.page_size),
		    c->f.page_size);
	}
	assert_int_equal(vswap_store_stage_seal(c->s, 40, 10), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	char staging[512];
	snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(c->s));
	assert_int_equal(vswap_store_close(c->s), 0);
	c->s = NULL;
	/* One byte of page 44's copy flips. */
	int sfd = open(staging, O_RDWR);
	assert_true(sfd >= 0);
	uint8_t b;
	off_t at = 44 * (off_t)c->f.page_size + 7;
	assert_int_equal(pread(sfd, &b, 1, at), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(sfd, &b, 1, at), 1);
	close(sfd);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
	struct vswap_store_stats st;
	assert_int_equal(vswap_store_stats(c->s, &st), 0);
	assert_int_equal(st.pages_staged, 10);
	assert_int_equal(st.pages_lost, 0);
	/* The first use: a run stops before the failed copy, which is lost. */
	uint64_t first, count;
	assert_int_equal(vswap_store_next_staged_run(c->s, 0, 400, 512, &first, &count), 1);
	assert_int_equal(first, 40);
	assert_int_equal(count, 4);
	assert_false(vswap_store_staged(c->s, 44));
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(c->s, 44, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
	assert_true(vswap_store_staged(c->s, 45));
	assert_int_equal(vswap_store_next_staged_run(c->s, 44, 400, 512, &first, &count), 1);
	assert_int_equal(first, 45);
	assert_int_equal(count, 5);
	assert_int_equal(vswap_store_stats(c->s, &st), 0);
	assert_int_equal(st.pages_staged, 9);
	assert_int_equal(st.pages_lost, 1);
	/* Recorded: a later open finds it lost without reading anything. */
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	assert_int_equal(vswap_store_page(c->s, 44, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST);
}

static int count_page(void *ctx, const struct vswap_page_record *r)
{
	(*(uint64_t *)ctx) += !r->corrupt;
	return 0;
}

static void test_map_full_grows(void **state)
{
	struct ctx *c = *state;
	c->f.opts.map_size = 64 * 1024;
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &c->s), 0);
	uint64_t regions[] = {64 * 4096};
	assert_int_equal(vswap_store_set_regions(c->s, regions, 1), 0);
	struct vswap_store_stats st0, st1;
	vswap_store_stats(c->s, &st0);
	/* One page in each of 4096 groups: 4096 records, far past 64 KiB. */
	fixture_pattern(c->buf, c->f.page_size, 0, 1);
	for (uint64_t g = 0; g < 4096; g++)
		assert_int_equal(vswap_store_write(c->s, g * 64, 1, c->buf), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	vswap_store_stats(c->s, &st1);
	assert_true(st1.index_map_size > st0.index_map_size);
	uint64_t n = 0;
	assert_int_equal(vswap_store_foreach_page(c->s, count_page, &n), 0);
	assert_int_equal(n, 4096);
	reopen(c);
	vswap_store_stats(c->s, &st1);
	assert_int_equal(st1.pages_present, 4096);
}

/* A write that hits the file-size limit leaves the index unchanged and the
 * store usable.  Runs in a child: the limit is per process. */
static void test_efbig_leaves_index_unchanged(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	struct vswap_store_stats before;
	vswap_store_stats(c->s, &before);
	assert_int_equal(vswap_store_close(c->s), 0);
	c->s = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		if (vswap_store_open(c->f.path, &c->f.opts, &c->s))
			_exit(9);
		vswap_store_stats(c->s, &before);
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = {.rlim_cur = 12 * (rlim_t)c->f.page_size,
				    .rlim_max = RLIM_INFINITY};
		setrlimit(RLIMIT_FSIZE, &rl);
		for (unsigned i = 0; i < 16; i++)
			fixture_pattern(pg(c, i), c->f.page_size, 50 + i, 1);
		int ret = vswap_store_write(c->s, 50, 16, c->buf);
		if (ret != -EFBIG)
			_exit(10);
		struct vswap_store_stats st;
		vswap_store_stats(c->s, &st);
		if (st.slots_used != before.slots_used || st.slots_end != before.slots_end)
			_exit(11);
		for (unsigned i = 0; i < 16; i++) {
			struct vswap_page_info pi;
			vswap_store_page(c->s, 50 + i, &pi);
			if (pi.state != VSWAP_PAGE_NONE)
				_exit(12);
		}
		/* Still usable: a write that fits goes through and commits. */
		if (vswap_store_write(c->s, 50, 2, c->buf) || vswap_store_commit(c->s))
			_exit(13);
		_exit(vswap_store_close(c->s) ? 14 : 0);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
	expect_page(c, 50, 1);
	expect_page(c, 51, 1);
	expect_page(c, 7, 1);
	assert_int_equal(state_of(c, 52), VSWAP_PAGE_NONE);
	struct stat st;
	assert_int_equal(stat(c->f.path, &st), 0);
	assert_true(st.st_size <= 12 * (off_t)c->f.page_size);
}

/* A store of @pages pages whose swap file is on a tmpfs of @size (root
 * only), its mount point in @mnt: false when it cannot be had (skip). */
static bool small_fs_store(struct ctx *c, const char *size, uint64_t pages, char *mnt, size_t len)
{
	char cmd[600], path[400];
	if (geteuid() != 0)
		return false;
	snprintf(mnt, len, "%s/tmpfs", c->f.dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=%s vswaptest %s", size, mnt);
	if (system(cmd) != 0) {
		rmdir(mnt);
		return false;
	}
	snprintf(path, sizeof(path), "%s/swap", mnt);
	struct vswap_store_opts o = c->f.opts;
	o.index_path = NULL;
	assert_int_equal(vswap_store_create(path, &o, &c->s), 0);
	uint64_t regions[] = {pages};
	assert_int_equal(vswap_store_set_regions(c->s, regions, 1), 0);
	return true;
}

static void small_fs_store_close(struct ctx *c, const char *mnt)
{
	char cmd[600];
	vswap_store_close(c->s);
	c->s = NULL;
	snprintf(cmd, sizeof(cmd), "umount %s", mnt);
	assert_int_equal(system(cmd), 0);
	rmdir(mnt);
}

static void test_enospc_on_small_tmpfs(void **state)
{
	struct ctx *c = *state;
	char mnt[300];
	if (!small_fs_store(c, "256k", 256, mnt, sizeof(mnt))) {
		skip();
		return;
	}
	int ret = 0;
	uint64_t written = 0;
	while (ret == 0 && written < 256) {
		write_pages_into(c, written, 8, &ret);
		if (ret == 0)
			written += 8;
	}
	assert_int_equal(ret, -ENOSPC);
	assert_true(written > 0);
	/* Nothing of the failed chunk is recorded; what was written reads back. */
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(state_of(c, written + i), VSWAP_PAGE_NONE);
	/* Freeing space makes the store usable again. */
	assert_int_equal(vswap_store_free(c->s, 0, 8), 8);
	assert_int_equal(vswap_store_commit(c->s), 0);
	write_pages_into(c, written, 8, &ret);
	assert_int_equal(ret, 0);
	expect_page(c, written, 1);
	expect_page(c, 8, 1);
	small_fs_store_close(c, mnt);
}

/* On a file system without room for a fresh run, a batch with scattered
 * stale slots is rewritten in place (it needs no new blocks): before, it
 * took a run at the end of the file and its write failed with ENOSPC. */
static void test_full_disk_rewrites_in_place(void **state)
{
	struct ctx *c = *state;
	char mnt[300];
	if (!small_fs_store(c, "768k", 64, mnt, sizeof(mnt))) {
		skip();
		return;
	}
	uint64_t pages[64], slots[64], sums[64], old[64];
	uint32_t n = scattered_stale_batch(c, pages, old);
	int fd;
	assert_int_equal(vswap_store_write_begin(c->s, pages, n, slots, &fd), 0);
	int status[64];
	for (uint32_t i = 0; i < n; i++) {
		if (old[i] != UINT64_MAX)
			assert_int_equal(slots[i], old[i]);
		fixture_pattern(pg(c, 0), c->f.page_size, pages[i], 2);
		ssize_t k = pwrite(fd, pg(c, 0), c->f.page_size,
				   (off_t)vswap_store_slot_offset(c->s, slots[i]));
		status[i] = k == (ssize_t)c->f.page_size ? 0 : -ENOSPC;
		sums[i] = vswap_store_page_checksum(c->s, pages[i], pg(c, 0));
	}
	vswap_store_write_end(c->s, pages, n, slots, sums, status);
	for (uint32_t i = 0; i < n; i++)
		if (old[i] != UINT64_MAX)
			assert_int_equal(status[i], 0);
	small_fs_store_close(c, mnt);
}

static void test_forked_child_cannot_commit(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 2, 1);
	pid_t pid = fork();
	if (pid == 0)
		_exit(vswap_store_commit(c->s) == -ECHILD && vswap_store_close(c->s) == 0 ? 0 : 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The parent's handle is untouched and commits. */
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	expect_page(c, 1, 1);
}

/* Regions may be redefined once the store is empty again; the write path's
 * scratch space follows the new tables. */
static void test_regions_redefined_after_use(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_free(c->s, 0, 8), 8);
	assert_int_equal(vswap_store_commit(c->s), 0);
	uint64_t bigger[] = {1000};
	assert_int_equal(vswap_store_set_regions(c->s, bigger, 1), 0);
	write_pages(c, 900, 16, 2);
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	assert_int_equal(vswap_store_total_pages(c->s), 1000);
	expect_page(c, 915, 2);
}

/* A corrupt index must not make the store truncate some other file. */
static void test_foreign_staging_path_refused(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	char idx[400], victim[400];
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	snprintf(victim, sizeof(victim), "%s/precious", c->f.dir);
	int fd = open(victim, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 4);
	assert_int_equal(mdb_env_open(env, idx, MDB_NOSUBDIR, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	MDB_val k = {12, "staging_path"}, d = {strlen(victim), victim};
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), -EUCLEAN);
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_size, 4);
}

static void test_destroy_refuses_open_store(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	assert_int_equal(vswap_store_destroy(c->f.path, &c->f.opts), -EBUSY);
	assert_int_equal(access(c->f.path, F_OK), 0);
	vswap_store_close(c->s);
	c->s = NULL;
	assert_int_equal(vswap_store_destroy(c->f.path, &c->f.opts), 0);
	assert_int_equal(access(c->f.path, F_OK), -1);
}

/*
 * A layout change that fails (here the staging file cannot grow: a file
 * size limit) leaves the handle as it was.  The layout was built aside in
 * a copy of the handle, and giving it up freed the live handle's own
 * buffers too: the next write used freed memory and the close freed them
 * again (glibc aborts, ASan reports a double free).
 */
static void test_failed_layout_change_keeps_the_handle(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	/* A split commit (of a state change): the handle's snapshot buffers now
	 * exist. */
	assert_int_equal(vswap_store_set_state(c->s, 1), 0);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	struct rlimit old, small = {.rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY};
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	uint64_t big = 1 << 20; /* a 4 GiB staging file */
	int rc = vswap_store_set_regions(c->s, &big, 1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, was);
	assert_int_equal(rc, -EFBIG);
	/* The old layout serves on, split commits too. */
	write_pages(c, 0, 16, 2);
	write_pages(c, 300, 8, 2);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	expect_page(c, 3, 2);
	expect_page(c, 305, 2);
	assert_int_equal(vswap_store_close(c->s), 0);
	c->s = NULL;
}

/* Destroying a store that is not there says -ENOENT and logs nothing: a
 * VMM's teardown after its daemon removed the store printed "cannot open
 * the swap file" as an error. */
static void test_destroy_of_nothing_is_quiet(void **state)
{
	struct ctx *c = *state;
	c->f.last_log[0] = '\0';
	assert_int_equal(vswap_store_destroy(c->f.path, &c->f.opts), -ENOENT);
	assert_string_equal(c->f.last_log, "");
}

/* A crash in the middle of a creation leaves at most an index without its
 * swap file (the swap file is named last); creating the store again works. */
static void test_create_replaces_index_without_swap_file(void **state)
{
	struct ctx *c = *state;
	create_store(c);
	vswap_store_close(c->s);
	c->s = NULL;
	assert_int_equal(unlink(c->f.path), 0);
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &c->s), 0);
	uint64_t regions[] = {8};
	assert_int_equal(vswap_store_set_regions(c->s, regions, 1), 0);
	write_pages(c, 0, 8, 1);
	reopen(c);
	expect_page(c, 7, 1);
	/* An existing swap file is never replaced. */
	struct vswap_store *again = NULL;
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &again), -EEXIST);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip_keeps_every_mapping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unclean_close_is_reported, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mismatched_index_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_index_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_superblock_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_page_size_mismatch_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_index_format_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_format_v1_superblock_by_hand, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_busy_store_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_regions_validated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slot_reuse_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_reuse_before_commit_survives_crash, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_split_write_of_scattered_stale_slots_takes_one_run,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_punch_free_gives_blocks_back_while_open, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_freed_slot_reused_unpunched_then_punched_at_close,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_layout_interface_matches_format, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_end_sum, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_bit_detected_in_any_page, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_single_page_read_detects_flip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_file_reported_per_page, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trim_compare_uses_stale_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_durability_modes_commit_when_promised, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_staging_records_and_punch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staged_checked_at_first_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_map_full_grows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_efbig_leaves_index_unchanged, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enospc_on_small_tmpfs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_full_disk_rewrites_in_place, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forked_child_cannot_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_regions_redefined_after_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_staging_path_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_refuses_open_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staged_sums_given_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_change_leaves_the_page_record, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_failed_layout_change_after_a_split_commit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_of_nothing_is_quiet, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_layout_change_keeps_the_handle, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_create_replaces_index_without_swap_file, setup,
					    teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
