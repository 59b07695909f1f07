/* SPDX-License-Identifier: MIT */
/*
 * The lazily loaded index (vswap_store_opts.lazy_index): the open returns
 * before the page-group records are read, and every page is still served
 * from a checked record or not at all:
 *   - with the walk held, every page reads back verified, each group loaded
 *     by the call that needs it; after the walk, the counts and the slot
 *     allocator are the eager open's (a new write takes no page's slot);
 *   - a record that fails its check, found by a call or by the walk: its
 *     pages are lost (never zero, never another page's bytes), the log
 *     names it, and the store closes unclean;
 *   - a record moved under another group's key: the call that finds no
 *     record under its group's key waits for the walk, which finds the
 *     record claiming the group: both groups lost, not read as zero-fill;
 *   - the unclean record is left to the first change: the open writes no
 *     transaction, a process killed before changing anything leaves the
 *     store clean, and after any first change (a commit, a split commit,
 *     bytes written with or without their commit) a kill leaves it unclean
 *     with every committed page intact.
 */
#include <endian.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <vswap/handler.h>

#include "store/internal.h"
#include "tests/helpers/raw_index.h"
#include "tests/helpers/store_fixture.h"

/* 1024 groups of 64 pages, one page of each written (at a place that moves
 * with the group), and every page of the first eight groups. */
#define GROUPS 1024u
#define TOTAL (GROUPS * GROUP_PAGES)
#define FULL_GROUPS 8u

struct ctx {
	struct store_fixture f;
	pthread_mutex_t log_mu; /* the walk logs from its own thread */
	char last_log[512];
	unsigned errors;
	uint8_t *buf, *want;
};

static void ctx_log(void *arg, enum vswap_log_level level, const char *msg)
{
	struct ctx *c = arg;
	pthread_mutex_lock(&c->log_mu);
	snprintf(c->last_log, sizeof(c->last_log), "%s", msg);
	c->errors += level == VSWAP_LOG_ERROR;
	pthread_mutex_unlock(&c->log_mu);
}

static bool written(uint64_t p)
{
	uint64_t g = p / GROUP_PAGES;
	return g < FULL_GROUPS || p % GROUP_PAGES == g % GROUP_PAGES;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(fixture_init(&c->f), 0);
	pthread_mutex_init(&c->log_mu, NULL);
	c->f.opts.log = ctx_log;
	c->f.opts.log_ctx = c;
	uint32_t ps = c->f.page_size;
	c->buf = aligned_alloc(ps, ps);
	c->want = aligned_alloc(ps, (size_t)GROUP_PAGES * ps);
	assert_non_null(c->buf);
	assert_non_null(c->want);
	struct vswap_store *s;
	uint64_t pages = TOTAL;
	assert_int_equal(vswap_store_create(c->f.path, &c->f.opts, &s), 0);
	assert_int_equal(vswap_store_set_regions(s, &pages, 1), 0);
	for (uint64_t g = 0; g < GROUPS; g++) {
		uint64_t first = g * GROUP_PAGES, n = 0;
		for (uint64_t p = first; p < first + GROUP_PAGES; p++) {
			if (!written(p))
				continue;
			fixture_pattern(c->want + n * ps, ps, p, 1);
			if (g < FULL_GROUPS)
				n++;
			else
				assert_int_equal(vswap_store_write(s, p, 1, c->want), 0);
		}
		if (n)
			assert_int_equal(vswap_store_write(s, first, (uint32_t)n, c->want), 0);
	}
	assert_int_equal(vswap_store_close(s), 0);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fixture_cleanup(&c->f);
	pthread_mutex_destroy(&c->log_mu);
	free(c->buf);
	free(c->want);
	free(c);
	return 0;
}

static struct vswap_store *open_lazy(struct ctx *c, bool held)
{
	struct vswap_store_opts o = c->f.opts;
	o.lazy_index = true;
	struct vswap_store *s;
	unsigned flags = STORE_OPEN_LOCK | (held ? STORE_OPEN_LOAD_HELD : 0);
	assert_int_equal(store_open_flags(c->f.path, &o, flags, &s), 0);
	return s;
}

static struct vswap_store_load load_of(const struct vswap_store *s)
{
	struct vswap_store_load ld;
	assert_int_equal(vswap_store_load_status(s, &ld), 0);
	return ld;
}

/* Page @p reads back as version @v, verified. */
static void expect_page(struct ctx *c, struct vswap_store *s, uint64_t p, uint32_t v)
{
	assert_int_equal(vswap_store_read_page(s, p, c->buf), 0);
	fixture_pattern(c->want, c->f.page_size, p, v);
	if (memcmp(c->buf, c->want, c->f.page_size))
		fail_msg("page %llu: wrong bytes", (unsigned long long)p);
}

static void every_page_served_while_the_walk_is_held(void **state)
{
	struct ctx *c = *state;
	struct vswap_store *s = open_lazy(c, true);
	struct vswap_store_load ld = load_of(s);
	assert_true(ld.lazy);
	assert_false(ld.done);
	assert_int_equal(ld.groups, GROUPS);
	assert_int_equal(ld.loaded, 0);
	/* Last group first: nothing comes in key order. */
	for (uint64_t g = GROUPS; g-- > 0;) {
		uint64_t p = g * GROUP_PAGES + g % GROUP_PAGES;
		expect_page(c, s, p, 1);
		/* A page of a loaded group without a copy: no copy, at once. */
		if (g >= FULL_GROUPS)
			assert_int_equal(vswap_store_read_page(s, p ^ 1, c->buf), -ENODATA);
	}
	ld = load_of(s);
	assert_int_equal(ld.loaded, GROUPS);
	assert_int_equal(ld.on_demand, GROUPS);
	assert_int_equal(ld.waits, 0);
	assert_false(ld.done); /* only the walk says that no record is left */
	loader_release(s);
	assert_int_equal(vswap_store_load_wait(s), 0);
	ld = load_of(s);
	assert_true(ld.done);
	assert_int_equal(ld.bad_records, 0);
	struct vswap_store_stats st;
	assert_int_equal(vswap_store_stats(s, &st), 0);
	uint64_t want = FULL_GROUPS * GROUP_PAGES + (GROUPS - FULL_GROUPS);
	assert_int_equal(st.pages_present, want);
	assert_int_equal(st.slots_used, want);
	/* The allocator knows every slot: a new page takes none of them. */
	uint64_t np = 5 * GROUP_PAGES + 63 + 64 * 20;
	fixture_pattern(c->want, c->f.page_size, np, 2);
	assert_int_equal(vswap_store_write(s, np, 1, c->want), 0);
	assert_int_equal(vswap_store_close(s), 0);
	assert_int_equal(c->errors, 0);
	/* Eagerly again: every page where it was, and the new one. */
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	for (uint64_t p = 0; p < TOTAL; p++)
		if (written(p) && p != np)
			expect_page(c, s, p, 1);
	expect_page(c, s, np, 2);
	assert_int_equal(vswap_store_close(s), 0);
}

static void walk_and_calls_race(void **state)
{
	struct ctx *c = *state;
	struct vswap_store *s = open_lazy(c, false);
	/* Calls and the walk at once; each group loaded by one of them. */
	for (uint64_t g = GROUPS; g-- > 0;)
		expect_page(c, s, g * GROUP_PAGES + g % GROUP_PAGES, 1);
	assert_int_equal(vswap_store_load_wait(s), 0);
	struct vswap_store_load ld = load_of(s);
	assert_int_equal(ld.loaded, GROUPS);
	struct vswap_store_stats st;
	assert_int_equal(vswap_store_stats(s, &st), 0);
	assert_int_equal(st.pages_present, FULL_GROUPS * GROUP_PAGES + (GROUPS - FULL_GROUPS));
	assert_int_equal(vswap_store_close(s), 0);
}

/* Damage the record of group @g: one body byte, the check left as it was. */
static void damage_group(struct ctx *c, uint64_t g)
{
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	struct raw_index ri;
	uint8_t val[2048];
	size_t len = sizeof(val);
	uint64_t key = htobe64(g);
	assert_int_equal(raw_index_open(&ri, idx), 0);
	assert_int_equal(raw_value_get(&ri, ri.pages, &key, 8, val, &len), 0);
	val[16 + 8] ^= 0x40; /* the first entry's checksum */
	assert_int_equal(raw_value_put(&ri, ri.pages, &key, 8, val, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);
}

static void damaged_records_lose_their_pages(void **state)
{
	struct ctx *c = *state;
	damage_group(c, 3);   /* a full group, found by a call */
	damage_group(c, 700); /* found by the walk */
	struct vswap_store *s = open_lazy(c, true);
	for (uint64_t p = 3 * GROUP_PAGES; p < 4 * GROUP_PAGES; p++)
		assert_int_equal(vswap_store_read_page(s, p, c->buf), -EBADMSG);
	assert_non_null(strstr(c->last_log, "record of key 3"));
	expect_page(c, s, 2 * GROUP_PAGES + 5, 1);
	expect_page(c, s, 4 * GROUP_PAGES + 5, 1);
	loader_release(s);
	assert_int_equal(vswap_store_load_wait(s), 0);
	uint64_t p700 = 700 * GROUP_PAGES + 700 % GROUP_PAGES;
	assert_int_equal(vswap_store_read_page(s, p700, c->buf), -EBADMSG);
	struct vswap_page_info pi;
	assert_int_equal(vswap_store_page(s, p700 + 1, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_LOST); /* no entry is believed */
	struct vswap_store_load ld = load_of(s);
	assert_int_equal(ld.bad_records, 2);
	struct vswap_store_stats st;
	assert_int_equal(vswap_store_stats(s, &st), 0);
	assert_int_equal(st.pages_lost, 2 * GROUP_PAGES);
	assert_int_equal(vswap_store_close(s), 0);
	/* Left for vswap-fsck: unclean, and refused by an eager open. */
	struct vswap_store_info info;
	s = open_lazy(c, false);
	assert_int_equal(vswap_store_info(s, &info), 0);
	assert_false(info.was_clean);
	assert_int_equal(vswap_store_close(s), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), -EUCLEAN);
}

struct reader {
	struct ctx *c;
	struct vswap_store *s;
	uint64_t page;
	uint8_t *buf;
	int rc;
	atomic_bool done;
};

static void *read_main(void *arg)
{
	struct reader *r = arg;
	r->rc = vswap_store_read_page(r->s, r->page, r->buf);
	atomic_store(&r->done, true);
	return NULL;
}

static void moved_record_waits_for_the_walk(void **state)
{
	struct ctx *c = *state;
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	struct raw_index ri;
	uint8_t val[2048];
	size_t len = sizeof(val);
	uint64_t k13 = htobe64(13), k29 = htobe64(29);
	assert_int_equal(raw_index_open(&ri, idx), 0);
	assert_int_equal(raw_value_get(&ri, ri.pages, &k13, 8, val, &len), 0);
	MDB_val k = {.mv_size = 8, .mv_data = &k13};
	assert_int_equal(mdb_del(ri.txn, ri.pages, &k, NULL), 0);
	assert_int_equal(raw_value_put(&ri, ri.pages, &k29, 8, val, len), 0);
	assert_int_equal(raw_index_close(&ri, 1), 0);

	struct vswap_store *s = open_lazy(c, true);
	struct reader r = {
	    c, s, 13 * GROUP_PAGES + 13, aligned_alloc(c->f.page_size, c->f.page_size), 0, false};
	assert_non_null(r.buf);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, read_main, &r), 0);
	/* The read finds no record under key 13: it waits for the walk (a
	 * read that does not wait ends with the wrong answer at once). */
	while (load_of(s).waits == 0 && !atomic_load(&r.done))
		sched_yield();
	loader_release(s);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.rc, -EBADMSG); /* lost, not read as zero-fill */
	assert_int_equal(vswap_store_read_page(s, 29 * GROUP_PAGES + 29, c->buf), -EBADMSG);
	expect_page(c, s, 12 * GROUP_PAGES + 12, 1);
	expect_page(c, s, 14 * GROUP_PAGES + 14, 1);
	free(r.buf);
	assert_int_equal(vswap_store_close(s), 0);
}

/* Closing while the walk runs (or waits) ends it; no call waits forever. */
static void close_during_the_walk(void **state)
{
	struct ctx *c = *state;
	struct vswap_store *s = open_lazy(c, true);
	expect_page(c, s, 40 * GROUP_PAGES + 40, 1);
	assert_int_equal(vswap_store_close(s), 0);
	s = open_lazy(c, false);
	assert_int_equal(vswap_store_close(s), 0);
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	expect_page(c, s, 40 * GROUP_PAGES + 40, 1);
	assert_int_equal(vswap_store_close(s), 0);
}

/* ---- the unclean record left to the first change ------------------------- */

static uint64_t txnid_of(struct ctx *c)
{
	char idx[400];
	snprintf(idx, sizeof(idx), "%s.idx", c->f.path);
	uint64_t t = raw_index_txnid(idx);
	assert_true(t != 0);
	return t;
}

enum first_change {
	CHANGE_NONE,
	CHANGE_COMMIT,	     /* a blob put and committed */
	CHANGE_SPLIT_COMMIT, /* a state change through the split commit */
	CHANGE_WRITE,	     /* pages written, their commit not made */
	CHANGE_WRITE_BEGIN,  /* slots reserved for a split write, bytes not yet sent */
};

/* In a child: open lazily, make @change, and die by SIGKILL. */
static void open_change_and_die(struct ctx *c, enum first_change change)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vswap_store_opts o = c->f.opts;
		o.lazy_index = true;
		o.log = NULL;
		struct vswap_store *s;
		if (vswap_store_open(c->f.path, &o, &s))
			_exit(1);
		uint64_t slot, page = TOTAL - 1;
		int fd, rc = 0;
		switch (change) {
		case CHANGE_NONE:
			break;
		case CHANGE_COMMIT:
			rc = vswap_store_blob_put(s, "probe", "x", 1);
			if (!rc)
				rc = vswap_store_commit(s);
			break;
		case CHANGE_SPLIT_COMMIT:
			rc = vswap_store_set_state(s, VSWAP_STATE_PENDING);
			if (!rc)
				rc = vswap_store_commit_begin(s) == 1 ? 0 : -EPROTO;
			if (!rc)
				rc = vswap_store_commit_write(s);
			vswap_store_commit_end(s, rc);
			break;
		case CHANGE_WRITE:
			fixture_pattern(c->want, c->f.page_size, 0, 7);
			rc = vswap_store_write(s, 0, 1, c->want);
			break;
		case CHANGE_WRITE_BEGIN:
			rc = vswap_store_write_begin(s, &page, 1, &slot, &fd);
			break;
		}
		if (rc)
			_exit(2);
		raise(SIGKILL);
		_exit(3);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("the child failed before its kill (exit %d)", WEXITSTATUS(status));
}

static bool reopened_clean(struct ctx *c)
{
	struct vswap_store *s;
	struct vswap_store_info in;
	assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
	assert_int_equal(vswap_store_info(s, &in), 0);
	/* Nothing the index committed was lost either way. */
	for (uint64_t g = 0; g < GROUPS; g += 97)
		expect_page(c, s, g * GROUP_PAGES + g % GROUP_PAGES, 1);
	assert_int_equal(vswap_store_close(s), 0);
	return in.was_clean;
}

static void lazy_open_writes_no_transaction(void **state)
{
	struct ctx *c = *state;
	uint64_t before = txnid_of(c);
	struct vswap_store *s = open_lazy(c, false);
	assert_int_equal(vswap_store_load_wait(s), 0);
	expect_page(c, s, 5, 1);
	assert_int_equal(txnid_of(c), before);
	/* The first commit is the first transaction, and carries the
	 * record: a kill from here on leaves the store unclean. */
	assert_int_equal(vswap_store_blob_put(s, "probe", "x", 1), 0);
	assert_int_equal(vswap_store_commit(s), 0);
	assert_int_equal(txnid_of(c), before + 1);
	assert_int_equal(vswap_store_close_unclean(s), 0);
	assert_false(reopened_clean(c));
}

static void kill_before_a_change_leaves_the_store_clean(void **state)
{
	struct ctx *c = *state;
	uint64_t before = txnid_of(c);
	open_change_and_die(c, CHANGE_NONE);
	assert_int_equal(txnid_of(c), before);
	assert_true(reopened_clean(c));
}

static void kill_after_a_first_change_leaves_the_store_unclean(void **state)
{
	struct ctx *c = *state;
	static const enum first_change changes[] = {CHANGE_COMMIT, CHANGE_SPLIT_COMMIT,
						    CHANGE_WRITE, CHANGE_WRITE_BEGIN};
	for (unsigned i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		open_change_and_die(c, changes[i]);
		if (reopened_clean(c))
			fail_msg("first change %u: a kill after it left the store clean",
				 changes[i]);
		/* A clean close makes it clean again for the next case. */
		struct vswap_store *s;
		assert_int_equal(vswap_store_open(c->f.path, &c->f.opts, &s), 0);
		assert_int_equal(vswap_store_close(s), 0);
		assert_true(reopened_clean(c));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(every_page_served_while_the_walk_is_held, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(walk_and_calls_race, setup, teardown),
	    cmocka_unit_test_setup_teardown(damaged_records_lose_their_pages, setup, teardown),
	    cmocka_unit_test_setup_teardown(moved_record_waits_for_the_walk, setup, teardown),
	    cmocka_unit_test_setup_teardown(close_during_the_walk, setup, teardown),
	    cmocka_unit_test_setup_teardown(lazy_open_writes_no_transaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(kill_before_a_change_leaves_the_store_clean, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(kill_after_a_first_change_leaves_the_store_unclean,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
