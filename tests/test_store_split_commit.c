/* SPDX-License-Identifier: MIT */
/*
 * The split commit (vswap_store_commit_begin / _write / _end): what the
 * begin took lands with the write; what changed after the begin stays
 * pending; slots it freed are reused (unpunched) only after its end; a
 * stale page in its
 * snapshot is not rewritten in place meanwhile; a failed commit leaves
 * everything pending; a plain commit meanwhile (another thread) waits for
 * the write and makes everything durable; stage marks wait for the end;
 * named blobs go with it (a get sees them meanwhile; a failure leaves them
 * pending unless a newer operation on the name replaced them).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/store_fixture.h"

struct ctx {
	struct store_fixture f;
	struct vswap_store *s;
	uint8_t *buf; /* 16 pages */
};

static int setup_pages(void **state, uint64_t pages)
{
	struct ctx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(fixture_init(&c->f), 0);
	c->buf = aligned_alloc(c->f.page_size, 16 * (size_t)c->f.page_size);
	assert_non_null(c->buf);
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &c->s), 0);
	uint64_t regions[] = {pages};
	assert_int_equal(vswap_store_set_regions(c->s, regions, 1), 0);
	*state = c;
	return 0;
}

static int setup(void **state)
{
	return setup_pages(state, 256);
}

static int setup_large(void **state)
{
	return setup_pages(state, 65536);
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	if (c->s) {
		/* A failed assertion may leave a split commit begun: end it
		 * (it aborts its transaction) before the close commits. */
		vswap_store_commit_end(c->s, -ECANCELED);
		vswap_store_close(c->s);
	}
	fixture_cleanup(&c->f);
	free(c->buf);
	free(c);
	return 0;
}

static void write_pages(struct ctx *c, uint64_t first, unsigned n, uint32_t version)
{
	for (unsigned i = 0; i < n; i++)
		fixture_pattern(c->buf + (size_t)i * c->f.page_size, c->f.page_size, first + i,
				version);
	assert_int_equal(vswap_store_write(c->s, first, n, c->buf), 0);
}

static struct vswap_page_info info(struct ctx *c, uint64_t page)
{
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(c->s, page, &pi), 0);
	return pi;
}

static void expect_page(struct ctx *c, uint64_t page, uint32_t version)
{
	uint8_t *want = c->buf + 14 * (size_t)c->f.page_size;
	uint8_t *got = c->buf + 15 * (size_t)c->f.page_size;
	fixture_pattern(want, c->f.page_size, page, version);
	assert_int_equal(vswap_store_read_page(c->s, page, got), 0);
	assert_memory_equal(want, got, c->f.page_size);
}

struct find {
	uint64_t page;
	enum vswap_page_state st;
};

static int find_record(void *ctx, const struct vswap_page_record *r)
{
	struct find *f = ctx;
	if (!r->corrupt && r->page == f->page)
		f->st = r->state;
	return 0;
}

/* The page's state as the index records it (not the tables). */
static enum vswap_page_state recorded_state(struct ctx *c, uint64_t page)
{
	struct find f = {.page = page, .st = VSWAP_PAGE_NONE};
	assert_int_equal(vswap_store_foreach_page(c->s, find_record, &f), 0);
	return f.st;
}

static void reopen(struct ctx *c)
{
	assert_int_equal(vswap_store_close(c->s), 0);
	c->s = NULL;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
}

static void lands_and_keeps_later_changes(void **state)
{
	struct ctx *c = *state;
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_mark_stale(c->s, 1, 1), 1);
	assert_int_equal(vswap_store_free(c->s, 5, 1), 1);
	uint64_t freed = 5; /* page 5's slot */
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	/* After the begin: pending again, not in this commit. */
	assert_int_equal(vswap_store_pending(c->s), 0);
	assert_int_equal(vswap_store_mark_stale(c->s, 2, 1), 1);
	write_pages(c, 20, 1, 1);
	assert_true(info(c, 20).slot != freed); /* freed, not yet committed */
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	/* Landed: page 1 stale and page 5 gone in the index; page 2's change
	 * is not. */
	assert_int_equal(recorded_state(c, 1), VSWAP_PAGE_STALE);
	assert_int_equal(recorded_state(c, 5), VSWAP_PAGE_NONE);
	assert_int_equal(recorded_state(c, 2), VSWAP_PAGE_PRESENT);
	assert_int_equal(recorded_state(c, 20), VSWAP_PAGE_NONE);
	write_pages(c, 21, 1, 1);
	assert_true(info(c, 21).slot != freed); /* reusable only after the end */
	vswap_store_commit_end(c->s, 0);
	vswap_store_commit_punch(c->s); /* ... and its punch */
	write_pages(c, 22, 1, 1);
	assert_int_equal(info(c, 22).slot, freed);
	assert_true(vswap_store_pending(c->s) > 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	assert_int_equal(info(c, 2).state, VSWAP_PAGE_STALE);
	expect_page(c, 20, 1);
	expect_page(c, 21, 1);
	expect_page(c, 22, 1);
	expect_page(c, 0, 1);
}

static void no_in_place_rewrite_while_committing(void **state)
{
	struct ctx *c = *state;
	write_pages(c, 0, 4, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	uint64_t old = info(c, 1).slot;
	assert_int_equal(vswap_store_mark_stale(c->s, 1, 1), 1);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	/* The stale mark is not on disk yet: the index may still call the
	 * slot page 1's present copy, so the write takes another slot. */
	write_pages(c, 1, 1, 2);
	assert_true(info(c, 1).slot != old);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	/* Once it is on disk, a stale page is rewritten in place again. */
	assert_int_equal(vswap_store_mark_stale(c->s, 2, 1), 1);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	uint64_t s2 = info(c, 2).slot;
	write_pages(c, 2, 1, 2);
	assert_int_equal(info(c, 2).slot, s2);
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	expect_page(c, 1, 2);
	expect_page(c, 2, 2);
}

static void failure_leaves_everything_pending(void **state)
{
	struct ctx *c = *state;
	write_pages(c, 0, 4, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_free(c->s, 3, 1), 1);
	uint64_t freed = 3;
	write_pages(c, 8, 2, 1);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	vswap_store_commit_end(c->s, -EIO); /* as if the write failed */
	assert_true(vswap_store_pending(c->s) > 0);
	write_pages(c, 10, 1, 1);
	assert_true(info(c, 10).slot != freed); /* the free never landed */
	assert_int_equal(recorded_state(c, 8), VSWAP_PAGE_NONE);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(recorded_state(c, 8), VSWAP_PAGE_PRESENT);
	assert_int_equal(recorded_state(c, 3), VSWAP_PAGE_NONE);
	reopen(c);
	expect_page(c, 8, 1);
	expect_page(c, 9, 1);
	expect_page(c, 10, 1);
}

struct committer {
	struct vswap_store *s;
	int rc;
};

static void *commit_main(void *arg)
{
	struct committer *k = arg;
	k->rc = vswap_store_commit(k->s);
	return NULL;
}

static void plain_commit_joins(void **state)
{
	struct ctx *c = *state;
	write_pages(c, 0, 4, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_free(c->s, 2, 1), 1);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	write_pages(c, 6, 1, 1);
	/* Another thread commits while the split commit is written: it waits
	 * for the write, then commits what the split commit took as well. */
	struct committer k = {.s = c->s};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, commit_main, &k), 0);
	int wrc = vswap_store_commit_write(c->s);
	pthread_join(t, NULL);
	assert_int_equal(wrc, 0);
	assert_int_equal(k.rc, 0);
	assert_int_equal(recorded_state(c, 2), VSWAP_PAGE_NONE);
	assert_int_equal(recorded_state(c, 6), VSWAP_PAGE_PRESENT);
	vswap_store_commit_end(c->s, wrc);
	assert_int_equal(vswap_store_pending(c->s), 0);
	reopen(c);
	expect_page(c, 6, 1);
	assert_int_equal(info(c, 2).state, VSWAP_PAGE_NONE);
}

static void stage_mark_waits_for_end(void **state)
{
	struct ctx *c = *state;
	write_pages(c, 0, 2, 1);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_stage_mark(c->s, 4, 2), -EBUSY);
	assert_int_equal(vswap_store_commit_begin(c->s), -EBUSY);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	assert_int_equal(vswap_store_stage_mark(c->s, 4, 2), 0);
	/* Nothing pending: nothing to take. */
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_commit_begin(c->s), 0);
}

/* Data of staged page @p in the staging file: 1, or 0 for a hole. */
static int staged_bytes(struct ctx *c, uint64_t p)
{
	int fd = vswap_store_staging_fd(c->s);
	off_t off = (off_t)(p * vswap_store_page_size(c->s));
	assert_true(fd >= 0);
	return lseek(fd, off, SEEK_DATA) == off;
}

/* The staging bytes a split commit lets go are punched by
 * vswap_store_commit_punch() (without the caller's lock), not by the end;
 * until then no page is staged again. */
static void staging_punched_after_end(void **state)
{
	struct ctx *c = *state;
	uint32_t ps = vswap_store_page_size(c->s);
	uint8_t *buf = malloc(ps);
	assert_non_null(buf);
	memset(buf, 0x5a, ps);
	int sfd = vswap_store_staging_fd(c->s);
	assert_int_equal(vswap_store_stage_mark(c->s, 8, 1), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(pwrite(sfd, buf, ps, (off_t)(8 * ps)), (ssize_t)ps);
	assert_int_equal(staged_bytes(c, 8), 1);
	assert_int_equal(vswap_store_stage_clear(c->s, 8, 1), 0);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	assert_int_equal(staged_bytes(c, 8), 1); /* not under the caller's lock */
	assert_int_equal(vswap_store_stage_mark(c->s, 8, 1), -EBUSY);
	vswap_store_commit_punch(c->s);
	assert_int_equal(staged_bytes(c, 8), 0);
	assert_int_equal(vswap_store_stage_mark(c->s, 8, 1), 0);
	free(buf);
}

/* Whether the swap file holds bytes at slot @slot. */
static bool slot_bytes(struct ctx *c, uint64_t slot)
{
	int fd = open(c->f.path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	off_t off = (off_t)vswap_store_slot_offset(c->s, slot);
	bool data = lseek(fd, off, SEEK_DATA) == off;
	close(fd);
	return data;
}

/* The swap-file slots a split commit frees are reusable from its end on,
 * unpunched (the write that takes one overwrites its bytes), and not
 * before: between the begin and the end a write takes another slot.  The
 * clean close punches the free slots left. */
static void freed_slots_reusable_after_end(void **state)
{
	struct ctx *c = *state;
	write_pages(c, 0, 8, 1);
	assert_int_equal(vswap_store_commit(c->s), 0);
	uint64_t freed = info(c, 5).slot, other = info(c, 6).slot;
	assert_true(slot_bytes(c, freed));
	assert_int_equal(vswap_store_free(c->s, 5, 1), 1);
	assert_int_equal(vswap_store_free(c->s, 6, 1), 1);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	write_pages(c, 20, 1, 1);
	assert_true(info(c, 20).slot != freed && info(c, 20).slot != other);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	vswap_store_commit_punch(c->s);
	assert_true(slot_bytes(c, freed)); /* not punched */
	write_pages(c, 21, 1, 2);
	assert_int_equal(info(c, 21).slot, freed);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_true(slot_bytes(c, other));
	reopen(c);
	assert_false(slot_bytes(c, other));
	expect_page(c, 20, 1);
	expect_page(c, 21, 2);
	expect_page(c, 4, 1);
	assert_int_equal(info(c, 5).state, VSWAP_PAGE_NONE);
	assert_int_equal(info(c, 6).state, VSWAP_PAGE_NONE);
}

/* Blob @name reads back as the string @want. */
static void expect_blob(struct ctx *c, const char *name, const char *want)
{
	void *data = NULL;
	size_t len = 0;
	assert_int_equal(vswap_store_blob_get(c->s, name, &data, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(data, want, len);
	free(data);
}

static void blobs_go_with_the_split_commit(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(vswap_store_blob_put(c->s, "kept", "old", 3), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	assert_int_equal(vswap_store_blob_put(c->s, "taken", "one", 3), 0);
	assert_int_equal(vswap_store_blob_delete(c->s, "kept"), 0);
	/* Taken by the begin (which used to refuse them, -EAGAIN) ... */
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	expect_blob(c, "taken", "one");
	void *data = NULL;
	size_t len;
	assert_int_equal(vswap_store_blob_get(c->s, "kept", &data, &len), -ENOENT);
	assert_int_equal(vswap_store_blob_put(c->s, "later", "two", 3), 0);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	/* ... and landed with the write; what came after it is pending. */
	expect_blob(c, "taken", "one");
	assert_int_equal(vswap_store_close_unclean(c->s), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &c->s), 0);
	expect_blob(c, "taken", "one");
	expect_blob(c, "later", "two");
	assert_int_equal(vswap_store_blob_get(c->s, "kept", &data, &len), -ENOENT);
}

static void failed_split_commit_keeps_blobs_pending(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(vswap_store_blob_put(c->s, "a", "one", 3), 0);
	assert_int_equal(vswap_store_blob_put(c->s, "b", "first", 5), 0);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_blob_put(c->s, "b", "newer", 5), 0);
	vswap_store_commit_end(c->s, -EIO); /* as if the write failed */
	expect_blob(c, "a", "one");
	expect_blob(c, "b", "newer");
	/* Taken again by the next begin, and failed again with nothing
	 * newer: all pending as before. */
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	vswap_store_commit_end(c->s, -EIO);
	expect_blob(c, "a", "one");
	assert_int_equal(vswap_store_commit(c->s), 0);
	reopen(c);
	expect_blob(c, "a", "one");
	expect_blob(c, "b", "newer");
}

static long minor_faults(void)
{
	struct rusage ru;
	assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
	return ru.ru_minflt;
}

/* The begin runs under the caller's lock (faults wait for it): it copies
 * into room made ready by the last write, and does not fault that room's
 * memory in itself.  A small split commit first, then one of 600 staged
 * groups with their checksums (about 800 KiB of copies; 340 KiB in the
 * encoded records the begin wrote before): a buffer the begin grows faults
 * in a page for each 4 KiB it writes past its old end, over 40 here.  (A
 * plain commit of those groups first has the tables read once: their pages,
 * never touched since they were allocated, would fault on the first read.) */
static void begin_copies_into_room_made_before(void **state)
{
	struct ctx *c = *state;
	enum { FIRST = 64, COUNT = 600 * 64 };
	uint64_t *sums = calloc(COUNT, sizeof(*sums));
	assert_non_null(sums);
	assert_int_equal(vswap_store_stage_mark(c->s, 0, FIRST), 0);
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	vswap_store_commit_punch(c->s);
	assert_int_equal(vswap_store_stage_mark(c->s, FIRST, COUNT), 0);
	for (unsigned i = 0; i < COUNT; i++)
		sums[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	assert_int_equal(vswap_store_stage_record_sums(c->s, FIRST, COUNT, sums), 0);
	assert_int_equal(vswap_store_commit(c->s), 0);
	for (unsigned i = 0; i < COUNT; i++)
		sums[i] = ~sums[i];
	assert_int_equal(vswap_store_stage_record_sums(c->s, FIRST, COUNT, sums), 0);
	long before = minor_faults();
	assert_int_equal(vswap_store_commit_begin(c->s), 1);
	long faults = minor_faults() - before;
	assert_int_equal(vswap_store_commit_write(c->s), 0);
	vswap_store_commit_end(c->s, 0);
	assert_in_range(faults, 0, 15);
	assert_int_equal(vswap_store_pending(c->s), 0);
	uint64_t sum;
	assert_int_equal(vswap_store_staged_sum(c->s, FIRST + COUNT - 1, &sum), 0);
	assert_true(sum == sums[COUNT - 1]);
	free(sums);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(lands_and_keeps_later_changes, setup, teardown),
	    cmocka_unit_test_setup_teardown(no_in_place_rewrite_while_committing, setup, teardown),
	    cmocka_unit_test_setup_teardown(failure_leaves_everything_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(plain_commit_joins, setup, teardown),
	    cmocka_unit_test_setup_teardown(stage_mark_waits_for_end, setup, teardown),
	    cmocka_unit_test_setup_teardown(staging_punched_after_end, setup, teardown),
	    cmocka_unit_test_setup_teardown(freed_slots_reusable_after_end, setup, teardown),
	    cmocka_unit_test_setup_teardown(blobs_go_with_the_split_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(failed_split_commit_keeps_blobs_pending, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(begin_copies_into_room_made_before, setup_large,
					    teardown),
	};
	return cmocka_run_group_tests_name("store_split_commit", tests, NULL, NULL);
}
