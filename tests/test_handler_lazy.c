/* SPDX-License-Identifier: MIT */
/*
 * A handler over a store opened with lazy_index, as a resume does: the
 * guest's memory is fresh, every page is in the store, and the guest's
 * faults race the index load behind the open.
 *   - Two threads fault every page in, in orders of their own, while the
 *     walk is held and after it is let go: every byte is right, the groups
 *     were loaded by faults and by the walk, and no fault waited for the
 *     walk (every group has its record).
 *   - A page-group record damaged on disk, found after the guest started,
 *     by a fault (the walk held) or by the walk (no fault touched the
 *     group before it was done): its pages are poisoned (SIGBUS), never
 *     zero or wrong, counted lost, and destroy says so.
 *   - A group that cannot be loaded when a swap-in reaches it (its pages
 *     staged, or swapped out): the swap-in fails and the regions stay
 *     registered, never Ready with those pages unserved (zeros); once the
 *     group loads, the guest reads them right.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "store/internal.h"
#include "tests/helpers/handler_fixture.h"
#include "tests/helpers/raw_index.h"

#define GROUPS 256u
#define PAGES (GROUPS * GROUP_PAGES)
#define READERS 2u
/* The walk is let go once the readers have read this many groups. */
#define HELD_GROUPS 32u

static void fill_word(uint64_t *w, size_t words, uint64_t p)
{
	uint64_t x = (p + 1) * 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

static void quiet(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx, (void)lvl, (void)msg;
}

/* Every one of @npages pages written, swapped out (with @staged: enabled
 * in copy mode, staged), the handler detached and the store closed: the
 * image a hibernation leaves.  The guest's memory is then dropped. */
static void make_image_of(struct hfx *f, size_t npages, bool staged)
{
	const size_t pages[] = {npages};
	assert_int_equal(hfx_setup(f, pages, 1, staged ? &hfx_copy : NULL), 0);
	for (uint64_t p = 0; p < npages; p++)
		fill_word((uint64_t *)hfx_addr(f, 0, p), f->page_size / 8, p);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	if (!staged) {
		assert_int_equal(vswap_handler_swap_out(f->h), 0);
		assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
	}
	assert_int_equal(vswap_handler_detach(f->h), 0);
	f->h = NULL;
	assert_int_equal(vswap_store_close(f->store), 0);
	f->store = NULL;
	assert_int_equal(fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				   (off_t)npages * (off_t)f->page_size),
			 0);
}

/* make_image_of() PAGES swapped out, and the record of @damaged (if not
 * UINT64_MAX) damaged. */
static void make_image(struct hfx *f, uint64_t damaged)
{
	make_image_of(f, PAGES, false);
	if (damaged == UINT64_MAX)
		return;
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", f->path);
	struct raw_index ri;
	uint8_t val[2048];
	size_t len = sizeof(val);
	uint64_t key = htobe64(damaged);
	assert_int_equal(raw_index_open(&ri, idx), 0);
	assert_int_equal(raw_value_get(&ri, ri.pages, &key, 8, val, &len), 0);
	val[16 + 8] ^= 0x01; /* an entry's checksum; the record's check kept */
	assert_int_equal(raw_value_put(&ri, ri.pages, &key, 8, val, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
}

/* Reopen lazily, the walk held; a new handler, enabled. */
static void resume(struct hfx *f)
{
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log = quiet, .lazy_index = true};
	assert_int_equal(
	    store_open_flags(f->path, &so, STORE_OPEN_LOCK | STORE_OPEN_LOAD_HELD, &f->store), 0);
	assert_int_equal(hfx_start(f, NULL), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
}

struct reader {
	struct hfx *f;
	unsigned id;
	uint64_t damaged, skip;
	atomic_uint *groups_read;
	uint64_t wrong, poisoned, failed;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	size_t glen = (size_t)GROUP_PAGES * r->f->page_size;
	uint64_t *buf = malloc(glen), *want = malloc(r->f->page_size);
	assert_non_null(buf);
	assert_non_null(want);
	for (uint64_t i = 0; i < GROUPS; i++) {
		/* Reader 0 from the top down, reader 1 strided: no key order. */
		uint64_t g = r->id == 0 ? GROUPS - 1 - i : (i * 97) % GROUPS;
		if (g == r->skip)
			continue;
		size_t bus_at = SIZE_MAX;
		int rc = hfx_read(buf, hfx_addr(r->f, 0, g * GROUP_PAGES), glen, 0, &bus_at);
		atomic_fetch_add(r->groups_read, 1);
		if (g == r->damaged) {
			/* Poisoned from its first page on, never served. */
			if (rc == -EFAULT && bus_at == 0)
				r->poisoned++;
			else
				r->failed++;
			continue;
		}
		if (rc) {
			r->failed++;
			continue;
		}
		for (uint64_t k = 0; k < GROUP_PAGES; k++) {
			fill_word(want, r->f->page_size / 8, g * GROUP_PAGES + k);
			r->wrong += memcmp((uint8_t *)buf + k * r->f->page_size, want,
					   r->f->page_size) != 0;
		}
	}
	free(buf);
	free(want);
	return NULL;
}

/* The readers fault every page in; the walk is let go meanwhile. */
static void race(struct hfx *f, uint64_t damaged, uint64_t skip, struct reader *rs)
{
	atomic_uint groups_read = 0;
	pthread_t t[READERS];
	for (unsigned i = 0; i < READERS; i++) {
		rs[i] = (struct reader){
		    .f = f, .id = i, .damaged = damaged, .skip = skip, .groups_read = &groups_read};
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, &rs[i]), 0);
	}
	while (atomic_load(&groups_read) < HELD_GROUPS)
		sched_yield();
	loader_release(f->store);
	for (unsigned i = 0; i < READERS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
}

static void faults_race_the_load(void **state)
{
	(void)state;
	struct hfx f;
	struct reader rs[READERS];
	make_image(&f, UINT64_MAX);
	resume(&f);
	race(&f, UINT64_MAX, UINT64_MAX, rs);
	for (unsigned i = 0; i < READERS; i++) {
		assert_int_equal(rs[i].failed, 0);
		assert_int_equal(rs[i].wrong, 0);
	}
	assert_int_equal(vswap_store_load_wait(f.store), 0);
	struct vswap_store_load ld;
	assert_int_equal(vswap_store_load_status(f.store, &ld), 0);
	assert_true(ld.done);
	assert_int_equal(ld.loaded, GROUPS);
	assert_true(ld.on_demand >= HELD_GROUPS); /* the faults before the walk went */
	assert_int_equal(ld.waits, 0);
	assert_int_equal(ld.bad_records, 0);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.metrics.copied_from_file_pages, PAGES);
	assert_int_equal(st.metrics.checksum_failures, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Group @g reads as poison from its first page. */
static void expect_poisoned(struct hfx *f, uint64_t g)
{
	size_t glen = (size_t)GROUP_PAGES * f->page_size, bus_at = SIZE_MAX;
	void *buf = malloc(glen);
	assert_non_null(buf);
	assert_int_equal(hfx_read(buf, hfx_addr(f, 0, g * GROUP_PAGES), glen, 0, &bus_at), -EFAULT);
	assert_int_equal(bus_at, 0);
	free(buf);
}

static bool can_poison(struct hfx *f)
{
	if (f->h->features & UFFD_FEATURE_POISON)
		return true;
	hfx_teardown(f);
	return false;
}

static void expect_lost_group(struct hfx *f)
{
	assert_int_equal(vswap_store_load_wait(f->store), 0);
	struct vswap_store_load ld;
	assert_int_equal(vswap_store_load_status(f->store, &ld), 0);
	assert_int_equal(ld.bad_records, 1);
	uint64_t n = 0;
	assert_int_equal(vswap_handler_lost_pages(f->h, NULL, 0, &n), 0);
	assert_int_equal(n, GROUP_PAGES);
	assert_int_equal(hfx_teardown(f), -EBADMSG);
}

static void damaged_record_found_by_a_fault(void **state)
{
	(void)state;
	struct hfx f;
	struct reader rs[READERS];
	const uint64_t d = 200;
	make_image(&f, d);
	resume(&f);
	if (!can_poison(&f))
		skip();
	expect_poisoned(&f, d); /* the walk is held: this fault loads it */
	race(&f, d, UINT64_MAX, rs);
	for (unsigned i = 0; i < READERS; i++) {
		assert_int_equal(rs[i].failed, 0);
		assert_int_equal(rs[i].wrong, 0);
		assert_int_equal(rs[i].poisoned, 1);
	}
	expect_lost_group(&f);
}

static void damaged_record_found_by_the_walk(void **state)
{
	(void)state;
	struct hfx f;
	struct reader rs[READERS];
	const uint64_t d = 1;
	make_image(&f, d);
	resume(&f);
	if (!can_poison(&f))
		skip();
	race(&f, d, d, rs); /* the guest runs; nothing touches group 1 */
	for (unsigned i = 0; i < READERS; i++) {
		assert_int_equal(rs[i].failed, 0);
		assert_int_equal(rs[i].wrong, 0);
	}
	assert_int_equal(vswap_store_load_wait(f.store), 0);
	expect_poisoned(&f, d);
	expect_lost_group(&f);
}

/* The last transaction of the index file at @path (the larger txnid of
 * its two LMDB meta pages). */
static uint64_t index_txnid(const char *path)
{
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", path);
	uint64_t t = raw_index_txnid(idx);
	assert_true(t != 0);
	return t;
}

/*
 * A resume's path to its first guest instruction commits nothing: the
 * handler's create over a store that has its regions writes no
 * transaction, and an enable that takes no page (fresh, empty memory)
 * leaves its state to the commit thread.  What the caller left pending (a
 * blob deleted, as a resume deletes its image) goes with that commit.
 */
static void resume_commits_nothing_before_the_guest_runs(void **state)
{
	(void)state;
	struct hfx f;
	make_image(&f, UINT64_MAX);
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log = quiet, .lazy_index = true};
	assert_int_equal(
	    store_open_flags(f.path, &so, STORE_OPEN_LOCK | STORE_OPEN_LOAD_HELD, &f.store), 0);
	assert_int_equal(vswap_store_blob_put(f.store, "image", "x", 1), 0);
	assert_int_equal(vswap_store_commit(f.store), 0);
	assert_int_equal(vswap_store_blob_delete(f.store, "image"), 0);
	uint64_t before = index_txnid(f.path);
	assert_int_equal(hfx_start(&f, NULL), 0);
	assert_int_equal(index_txnid(f.path), before);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_store_state(f.store), VSWAP_STATE_PENDING);
	/* The commit thread's commit lands (meta and blobs only: the walk,
	 * still held, is not waited for). */
	time_t t0 = time(NULL);
	while (index_txnid(f.path) == before) {
		if (time(NULL) - t0 > 30)
			fail_msg("the commit thread did not commit the enable's state");
		sched_yield();
	}
	loader_release(f.store);
	assert_int_equal(hfx_teardown(&f), 0);
}

#define SMALL_GROUPS 8u
#define SMALL_PAGES (SMALL_GROUPS * GROUP_PAGES)
/* The group the swap-in cannot load. */
#define UNLOADABLE 5u

/* The image of make_image_of() at SMALL_PAGES, reopened lazily, a new
 * handler resumed over it, and every group loaded but UNLOADABLE, which
 * cannot be loaded from now on. */
static void small_image_resumed(struct hfx *f, bool staged)
{
	make_image_of(f, SMALL_PAGES, staged);
	struct vswap_store_opts so = {.staging_dir = "/dev/shm", .log = quiet, .lazy_index = true};
	assert_int_equal(store_open_flags(f->path, &so, STORE_OPEN_LOCK, &f->store), 0);
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(f->store, &ss), 0);
	assert_int_equal(staged ? ss.pages_staged : ss.pages_present, SMALL_PAGES);
	struct vswap_handler_opts ho = {.log = quiet};
	if (staged)
		ho.enable_mode = VSWAP_ENABLE_COPY;
	assert_int_equal(hfx_start(f, &ho), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_store_load_wait(f->store), 0);
	if (staged) /* checked at first use, and none used yet */
		assert_int_equal(f->store->n_unverified, SMALL_PAGES);
	store_fail_group(f->store, UNLOADABLE, -ENOMEM);
}

/* Every byte of the guest right, read through its faults. */
static void expect_all_right(struct hfx *f)
{
	uint64_t *buf = malloc(f->page_size), *want = malloc(f->page_size);
	assert_non_null(buf);
	assert_non_null(want);
	for (uint64_t p = 0; p < SMALL_PAGES; p++) {
		assert_int_equal(hfx_read(buf, hfx_addr(f, 0, p), f->page_size, 0, NULL), 0);
		fill_word(want, f->page_size / 8, p);
		if (memcmp(buf, want, f->page_size) != 0)
			fail_msg("page %llu is not its own", (unsigned long long)p);
	}
	free(buf);
	free(want);
}

static void swap_in_cannot_load(bool staged)
{
	struct hfx f;
	small_image_resumed(&f, staged);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	/* Before, the swap-in went past the group and ended Ready: the
	 * regions unregistered, its pages read zeros. */
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_FAILED), 0);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_true(st.last_error < 0);
	store_fail_group(f.store, 0, 0); /* the group loads again */
	expect_all_right(&f);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void swap_in_cannot_load_a_staged_group(void **state)
{
	(void)state;
	swap_in_cannot_load(true);
}

static void swap_in_cannot_load_a_swapped_group(void **state)
{
	(void)state;
	swap_in_cannot_load(false);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_lazy");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(faults_race_the_load),
	    cmocka_unit_test(damaged_record_found_by_a_fault),
	    cmocka_unit_test(damaged_record_found_by_the_walk),
	    cmocka_unit_test(resume_commits_nothing_before_the_guest_runs),
	    cmocka_unit_test(swap_in_cannot_load_a_staged_group),
	    cmocka_unit_test(swap_in_cannot_load_a_swapped_group),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
