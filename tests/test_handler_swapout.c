/* SPDX-License-Identifier: MIT */
/*
 * The swap-out's writes in flight (handler/swap_out.c): a guest write, a
 * remove event, a detach and an exit that come while a batch's write is in
 * flight, and a full disk with several writes in flight.  Each test acts at
 * the swap-out's test hook while a batch is in flight (its writes submitted,
 * not yet ended) and checks that every page ends exactly where its bytes
 * are: resident, staged or present in the store with the guest's bytes,
 * never a copy the guest changed, and no slot held by nothing.  The suite
 * runs in both enable modes (handler_swapout and handler_swapout_copy).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

#define N 64
/* Small batches, so that several are in flight at once. */
static const struct vswap_handler_opts small = {.chunk_pages = 4};

static uint8_t byte_of(uint64_t p)
{
	return (uint8_t)(0x30 + p);
}

static void fill_all(struct hfx *f)
{
	for (uint64_t p = 0; p < N; p++)
		memset(hfx_addr(f, 0, p), byte_of(p), f->page_size);
}

static struct vswap_status status_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st;
}

/* An action run on the swap-out's thread at the @at-th batch in flight. */
struct at_flight {
	struct hfx *f;
	unsigned at, seen;
	void (*fn)(struct at_flight *a);
	uint64_t page;
	pthread_t t;
	atomic_bool done;
	int rc;
};

static void flight_hook(void *ctx, int where)
{
	struct at_flight *a = ctx;
	if (where != SWAP_OUT_HOOK_IN_FLIGHT || ++a->seen != a->at)
		return;
	a->fn(a);
}

static void hook_on(struct hfx *f, struct at_flight *a)
{
	a->f = f;
	atomic_init(&a->done, false);
	f->h->swap_out_hook_ctx = a;
	f->h->swap_out_hook = flight_hook;
}

/* Slots held by nothing would be leaks (invariant 4): after the last
 * commit every used slot is a page's. */
static void no_slot_leaked(struct hfx *f)
{
	struct vswap_store_stats ss;
	pthread_mutex_lock(&f->h->lock);
	assert_int_equal(vswap_store_commit(f->h->store), 0);
	assert_int_equal(vswap_store_stats(f->h->store, &ss), 0);
	pthread_mutex_unlock(&f->h->lock);
	assert_int_equal(ss.slots_used, ss.pages_present + ss.pages_stale + ss.pages_lost);
}

static void expect_bytes(struct hfx *f, uint64_t p, uint8_t first, uint8_t rest)
{
	uint8_t *buf = malloc(f->page_size);
	assert_non_null(buf);
	assert_int_equal(hfx_read(buf, hfx_addr(f, 0, p), f->page_size, 0, NULL), 0);
	if (buf[0] != first)
		fail_msg("page %llu byte 0: %#x, not %#x", (unsigned long long)p, buf[0], first);
	for (size_t i = 1; i < f->page_size; i++)
		if (buf[i] != rest)
			fail_msg("page %llu byte %zu: %#x, not %#x", (unsigned long long)p, i,
				 buf[i], rest);
	free(buf);
}

/* ---- a guest write to a page whose write is in flight --------------------- */

static void write_page(struct at_flight *a)
{
	/* Copy mode: a missing fault served from staging, then the write;
	 * protect mode: a write-protect fault.  Served by the monitor while
	 * the batch is in flight: done before this returns. */
	uint8_t v = 0xee;
	a->rc = hfx_write(hfx_addr(a->f, 0, a->page), &v, 1, HFX_DEADLINE_MS);
	atomic_store(&a->done, true);
}

static void write_while_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	struct at_flight a = {.at = 1, .fn = write_page, .page = 1};
	hook_on(&f, &a);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	f.h->swap_out_hook = NULL;
	assert_true(atomic_load(&a.done));
	assert_int_equal(a.rc, 0);
	/* The page's write was cancelled: its copy is not the guest's. */
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, 1, &pi), 0);
	assert_int_not_equal(pi.state, VSWAP_PAGE_PRESENT);
	assert_false(pi.staged);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.swap_pages, N - 1);
	no_slot_leaked(&f);
	expect_bytes(&f, 1, 0xee, byte_of(1));
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < N; p++)
		expect_bytes(&f, p, p == 1 ? 0xee : byte_of(p), byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- a remove event on a page whose write is in flight -------------------- */

static bool page_removed(struct hfx *f, uint64_t p)
{
	struct vswap_handler *h = f->h;
	pthread_mutex_lock(&h->lock);
	bool gone;
	if (h->wp.active) {
		pthread_mutex_lock(&h->wp.rlock);
		gone = !(h->wp.clean[p / 64] >> (p % 64) & 1);
		pthread_mutex_unlock(&h->wp.rlock);
	} else {
		gone = !vswap_store_staged(h->store, p);
	}
	pthread_mutex_unlock(&h->lock);
	return gone;
}

static void remove_page(struct at_flight *a)
{
	/* Returns once the monitor read the event; then wait until it is
	 * applied, before the batch ends. */
	a->rc = madvise(hfx_addr(a->f, 0, a->page), a->f->page_size, MADV_REMOVE) ? -errno : 0;
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (a->rc == 0 && !page_removed(a->f, a->page) && hfx_now_ms() < until)
		sched_yield();
	atomic_store(&a->done, page_removed(a->f, a->page));
}

static void remove_while_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	struct at_flight a = {.at = 2, .fn = remove_page, .page = 6};
	hook_on(&f, &a);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	f.h->swap_out_hook = NULL;
	assert_int_equal(a.rc, 0);
	assert_true(atomic_load(&a.done));
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, 6, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_NONE);
	assert_false(pi.staged);
	assert_int_equal(status_of(&f).metrics.swap_pages, N - 1);
	no_slot_leaked(&f);
	expect_bytes(&f, 6, 0, 0); /* removed: zeros */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < N; p++)
		if (p != 6)
			expect_bytes(&f, p, byte_of(p), byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- detach and exit with writes in flight -------------------------------- */

static void *detach_main(void *arg)
{
	struct at_flight *a = arg;
	a->rc = vswap_handler_detach(a->f->h);
	atomic_store(&a->done, true);
	return NULL;
}

static void *exit_main(void *arg)
{
	struct at_flight *a = arg;
	a->rc = vswap_handler_destroy(a->f->h);
	atomic_store(&a->done, true);
	return NULL;
}

/* Asked for while the batch is in flight; the monitor takes it at once and
 * stops the swap-out, which ends its writes first. */
static void start_detach(struct at_flight *a)
{
	pthread_create(&a->t, NULL, detach_main, a);
}

static void start_exit(struct at_flight *a)
{
	pthread_create(&a->t, NULL, exit_main, a);
}

static void join_within(struct at_flight *a)
{
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!atomic_load(&a->done) && hfx_now_ms() < until)
		sched_yield();
	assert_true(atomic_load(&a->done));
	pthread_join(a->t, NULL);
}

static void detach_while_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	struct at_flight a = {.at = 3, .fn = start_detach};
	hook_on(&f, &a);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	join_within(&a);
	assert_int_equal(a.rc, 0);
	f.h = NULL;
	/* Every page in one place with its bytes: resident (protect mode),
	 * staged (copy mode), or present in the store and nowhere else. */
	uint8_t *buf = aligned_alloc(f.page_size, f.page_size);
	assert_non_null(buf);
	int sfd = vswap_store_staging_fd(f.store);
	unsigned in_store = 0;
	for (uint64_t p = 0; p < N; p++) {
		off_t off = (off_t)(p * f.page_size);
		struct vswap_page_info pi;
		assert_int_equal(vswap_store_page(f.store, p, &pi), 0);
		if (lseek(f.memfd, off, SEEK_DATA) == off) {
			assert_false(pi.staged);
			assert_int_equal(pread(f.memfd, buf, f.page_size, off),
					 (ssize_t)f.page_size);
		} else if (pi.staged) {
			assert_true(sfd >= 0);
			assert_int_equal(pread(sfd, buf, f.page_size, off), (ssize_t)f.page_size);
		} else {
			if (pi.state != VSWAP_PAGE_PRESENT)
				fail_msg("page %llu rests nowhere", (unsigned long long)p);
			assert_int_equal(vswap_store_read_page(f.store, p, buf), 0);
			in_store++;
		}
		for (size_t i = 0; i < f.page_size; i++)
			if (buf[i] != byte_of(p))
				fail_msg("page %llu byte %zu: %#x", (unsigned long long)p, i,
					 buf[i]);
	}
	free(buf);
	/* The two batches before and the ones in flight ended and were
	 * committed; the swap-out was cut before the end. */
	assert_true(in_store >= 8);
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(f.store, &ss), 0);
	assert_int_equal(ss.slots_used, ss.pages_present + ss.pages_stale + ss.pages_lost);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void exit_while_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	struct at_flight a = {.at = 3, .fn = start_exit};
	hook_on(&f, &a);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	join_within(&a);
	assert_int_equal(a.rc, 0);
	f.h = NULL;
	/* Exit swaps everything in: all resident, as the guest left it. */
	for (uint64_t p = 0; p < N; p++) {
		off_t off = (off_t)(p * f.page_size);
		assert_int_equal(lseek(f.memfd, off, SEEK_DATA), off);
		expect_bytes(&f, p, byte_of(p), byte_of(p));
	}
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- a full disk with several writes in flight ------------------------------ */

static void quiet(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)ctx;
	(void)lvl;
	(void)msg;
}

/* The swap file on a tmpfs of a few pages mounted in the fixture's
 * directory, the index beside it on the real disk. */
struct small_swap {
	char mnt[300], path[400], idx[400];
	struct vswap_store_opts so; /* to create it with (index_path is idx) */
};

/* Replace the store hfx_setup_memory() made by the names of one on a tmpfs
 * of @size (created by the caller, with t->so): false, the fixture torn
 * down, where tmpfs cannot be mounted (the caller skips). */
static bool small_swap_begin(struct hfx *f, const char *size, struct small_swap *t)
{
	char cmd[600];
	snprintf(t->mnt, sizeof(t->mnt), "%s/tmpfs", f->dir);
	assert_int_equal(mkdir(t->mnt, 0700), 0);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=%s vswapsotest %s", size, t->mnt);
	if (system(cmd) != 0) {
		rmdir(t->mnt);
		hfx_teardown(f);
		return false;
	}
	vswap_store_close(f->store);
	t->so = (struct vswap_store_opts){.staging_dir = "/dev/shm", .log = quiet};
	vswap_store_destroy(f->path, &t->so);
	snprintf(t->path, sizeof(t->path), "%s/swap", t->mnt);
	snprintf(t->idx, sizeof(t->idx), "%s/swap.idx", f->dir);
	t->so.index_path = t->idx;
	return true;
}

/* Handler and store gone, the tmpfs unmounted, the fixture torn down. */
static void small_swap_end(struct hfx *f, struct small_swap *t)
{
	assert_int_equal(vswap_handler_destroy(f->h), 0);
	f->h = NULL;
	vswap_store_close(f->store);
	f->store = NULL;
	vswap_store_destroy(t->path, &t->so);
	assert_int_equal(umount(t->mnt), 0);
	assert_int_equal(hfx_teardown(f), 0);
}

static void enospc_with_writes_in_flight(void **state)
{
	(void)state;
	struct hfx f;
	enum { M = 256 };
	const size_t pages[1] = {M};
	assert_int_equal(hfx_setup_memory(&f, pages, 1), 0);
	/* Room for about 40 pages. */
	struct small_swap t;
	if (!small_swap_begin(&f, "160k", &t)) {
		skip();
		return;
	}
	assert_int_equal(vswap_store_create(t.path, &t.so, &f.store), 0);
	struct vswap_handler_opts o = {.chunk_pages = 8, .log = quiet};
	assert_int_equal(hfx_start(&f, &o), 0);
	for (uint64_t p = 0; p < M; p++)
		memset(hfx_addr(&f, 0, p), (int)(p * 3 + 1), f.page_size);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_FAILED), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.last_error, -ENOSPC);
	assert_true(st.metrics.swap_pages > 0);
	assert_true(st.metrics.swap_pages < M);
	/* Nothing lost: every page is present (verified), staged or resident;
	 * faults in Failed serve each one its bytes, and disable brings all
	 * back. */
	assert_int_equal(lost_count(f.h), 0);
	for (uint64_t p = 0; p < M; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f.h, p, &pi), 0);
		off_t off = (off_t)(p * f.page_size);
		bool resident = lseek(f.memfd, off, SEEK_DATA) == off;
		if (!resident && !pi.staged && pi.state != VSWAP_PAGE_PRESENT)
			fail_msg("page %llu rests nowhere", (unsigned long long)p);
	}
	no_slot_leaked(&f);
	for (uint64_t p = 0; p < M; p += 7)
		expect_bytes(&f, p, (uint8_t)(p * 3 + 1), (uint8_t)(p * 3 + 1));
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < M; p++)
		expect_bytes(&f, p, (uint8_t)(p * 3 + 1), (uint8_t)(p * 3 + 1));
	small_swap_end(&f, &t);
}

/*
 * A fresh run is taken only where the file system had room when the batch
 * began (store/write.c), but the room may be gone when the write lands.
 * Here the hook fills the file system between the batch's reservation and
 * its write: the fresh run fails with ENOSPC after a few pages.  The batch's
 * other pages have stale slots, so they are written again in place (no new
 * blocks) and the swap-out completes: before, it ended Failed.
 */
static void swap_out_all(struct hfx *f);

struct filler {
	char path[420];
	unsigned calls;
	int rc;
};

static void fill_fs_hook(void *ctx, int where)
{
	struct filler *fl = ctx;
	if (where != SWAP_OUT_HOOK_BEGUN || fl->calls++)
		return;
	int fd = open(fl->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	struct statvfs v;
	if (fd < 0 || fstatvfs(fd, &v) != 0) {
		fl->rc = -errno;
		return;
	}
	/* Room for 4 pages is left: the run of 64 stops after them. */
	uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize,
		 keep = 4 * (uint64_t)sysconf(_SC_PAGESIZE);
	if (avail > keep && posix_fallocate(fd, 0, (off_t)(avail - keep)) != 0)
		fl->rc = -ENOSPC;
	close(fd);
}

/* Counts the messages that name a full disk (the store's and the handler's
 * logs: the write that failed, the pages written again). */
static void count_enospc(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	(void)lvl;
	if (strstr(msg, "No space left") || strstr(msg, "no room"))
		atomic_fetch_add((atomic_uint *)ctx, 1);
}

static void enospc_after_the_room_check_rewrites_in_place(void **state)
{
	(void)state;
	struct hfx f;
	enum { M = 128 };
	const size_t pages[1] = {M};
	assert_int_equal(hfx_setup_memory(&f, pages, 1), 0);
	/* The guest's 512 KiB, and room for a fresh run of 64 pages with the
	 * store's margin (1 MiB). */
	struct small_swap t;
	if (!small_swap_begin(&f, "2m", &t)) {
		skip();
		return;
	}
	atomic_uint full;
	atomic_init(&full, 0);
	t.so.log = count_enospc;
	t.so.log_ctx = &full;
	t.so.log_level = VSWAP_LOG_WARN;
	assert_int_equal(vswap_store_create(t.path, &t.so, &f.store), 0);
	struct vswap_handler_opts o = {
	    .chunk_pages = 64, .log = count_enospc, .log_ctx = &full, .log_level = VSWAP_LOG_WARN};
	assert_int_equal(hfx_start(&f, &o), 0);
	for (uint64_t p = 0; p < M; p++)
		memset(hfx_addr(&f, 0, p), (int)(p * 3 + 1), f.page_size);
	swap_out_all(&f);
	/* As after a resume: every odd page back and changed; their stale
	 * slots are every second one, so their batch takes a fresh run. */
	for (uint64_t p = 1; p < M; p += 2)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p * 5 + 2)), 0);
	pthread_mutex_lock(&f.h->lock);
	assert_int_equal(vswap_store_commit(f.h->store), 0);
	pthread_mutex_unlock(&f.h->lock);
	struct filler fl = {0};
	snprintf(fl.path, sizeof(fl.path), "%s/filler", t.mnt);
	f.h->swap_out_hook_ctx = &fl;
	f.h->swap_out_hook = fill_fs_hook;
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	enum vswap_state end = VSWAP_STATE_ACTIVE;
	for (uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS; hfx_now_ms() < until;) {
		end = status_of(&f).state;
		if (end == VSWAP_STATE_ACTIVE || end == VSWAP_STATE_FAILED)
			break;
		sched_yield();
	}
	f.h->swap_out_hook = NULL;
	assert_int_equal(fl.rc, 0);
	assert_true(fl.calls >= 1);
	assert_true(atomic_load(&full) >= 1); /* the fresh run did fail */
	struct vswap_status st = status_of(&f);
	if (end != VSWAP_STATE_ACTIVE)
		fail_msg("the swap-out ended %s (%s)", vswap_state_name(end),
			 vswap_strerror(st.last_error));
	for (uint64_t p = 0; p < M; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f.h, p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
		assert_false(pi.staged);
	}
	no_slot_leaked(&f);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < M; p++) {
		uint8_t v = p % 2 ? (uint8_t)(p * 5 + 2) : (uint8_t)(p * 3 + 1);
		expect_bytes(&f, p, v, v);
	}
	small_swap_end(&f, &t);
}

/* ---- a commit that takes long does not stop the writes -------------------- */

struct held_commit {
	atomic_bool entered, open;
	atomic_uint written; /* batches ended */
};

/* On the commit thread, between a commit's begin and its write, without
 * the lock: every commit waits here until the test opens (bounded). */
static void hold_commit(void *ctx)
{
	struct held_commit *c = ctx;
	atomic_store(&c->entered, true);
	uint64_t until = hfx_now_ms() + 2 * HFX_DEADLINE_MS;
	while (!atomic_load(&c->open) && hfx_now_ms() < until)
		sched_yield();
}

static void count_written(void *ctx, int where)
{
	struct held_commit *c = ctx;
	if (where == SWAP_OUT_HOOK_WRITTEN)
		atomic_fetch_add(&c->written, 1);
}

static bool commit_entered(void *arg)
{
	return atomic_load(&((struct held_commit *)arg)->entered);
}

static bool all_written(void *arg)
{
	return atomic_load(&((struct held_commit *)arg)->written) == N / small.chunk_pages;
}

/*
 * BATCH durability, a commit due every 2 batches, the commit thread held on
 * the swap-out's first commit: every batch is still written before it lands
 * (the commits due are asked once the held one has).  The job used to wait for
 * the held commit at the next one due, and no batch was written until it
 * landed: the disk had nothing to do.  Nothing leaves guest memory or
 * staging before its commit, so every byte is still the guest's.
 */
static void writes_go_on_while_a_commit_runs(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct held_commit c;
	atomic_init(&c.entered, false);
	atomic_init(&c.open, false);
	atomic_init(&c.written, 0);
	f.h->swap_out_group_pages = 2 * small.chunk_pages;
	f.h->swap_out_hook_ctx = &c;
	f.h->swap_out_hook = count_written;
	pthread_mutex_lock(&f.h->lock);
	f.h->cm.hook_ctx = &c;
	f.h->cm.hook = hold_commit;
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	/* Every batch written with no commit landed (the gate is closed);
	 * the swap-out's first commit may reach the gate after them. */
	bool done = hfx_wait_for(all_written, &c);
	unsigned written = atomic_load(&c.written);
	bool held = hfx_wait_for(commit_entered, &c);
	atomic_store(&c.open, true);
	if (!held)
		fail_msg("no commit was held during the swap-out");
	if (!done)
		fail_msg("%u of %u batches written while a commit was held", written,
			 (unsigned)(N / small.chunk_pages));
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	/* The hooks stay until the teardown joins their threads (the gate
	 * is open: later commits pass). */
	assert_int_equal(status_of(&f).metrics.swap_pages, N);
	no_slot_leaked(&f);
	for (uint64_t p = 0; p < N; p++)
		expect_bytes(&f, p, byte_of(p), byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- zero pages ------------------------------------------------------------ */

static struct vswap_store_stats store_stats(struct hfx *f)
{
	struct vswap_store_stats ss;
	pthread_mutex_lock(&f->h->lock);
	assert_int_equal(vswap_store_stats(f->h->store, &ss), 0);
	pthread_mutex_unlock(&f->h->lock);
	return ss;
}

static void swap_out_all(struct hfx *f)
{
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
}

/* With skip_zero_pages the swap-out leaves zero pages out: no record, no
 * slot, no write; they leave guest memory with the others (protect mode:
 * in the removal of the written pages before them) and read as zeros. */
static void zero_pages_not_written(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	const struct vswap_handler_opts zeros = {.chunk_pages = 4, .skip_zero_pages = 1};
	assert_int_equal(hfx_setup(&f, pages, 1, &zeros), 0);
	fill_all(&f);
	for (uint64_t p = 3; p < N; p += 8)
		memset(hfx_addr(&f, 0, p), 0, f.page_size);
	swap_out_all(&f);
	for (uint64_t p = 0; p < N; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f.h, p, &pi), 0);
		assert_int_equal(pi.state, p % 8 == 3 ? VSWAP_PAGE_NONE : VSWAP_PAGE_PRESENT);
		assert_false(pi.staged);
	}
	struct vswap_store_stats ss = store_stats(&f);
	assert_int_equal(ss.slots_used, N - N / 8);
	assert_int_equal(ss.bytes_written, (uint64_t)(N - N / 8) * f.page_size);
	no_slot_leaked(&f);
	/* Nothing of guest memory is left: the zero pages went too. */
	assert_true(lseek(f.memfd, 0, SEEK_DATA) < 0);
	for (uint64_t p = 0; p < N; p++)
		expect_bytes(&f, p, p % 8 == 3 ? 0 : byte_of(p), p % 8 == 3 ? 0 : byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/*
 * After a resume every page has a stale slot; the pages that became zero
 * give theirs back (the zero pass commits that before the first write),
 * the pages that stopped being zero need one, and the stale slots left
 * rarely follow each other: the batch is written as one run of free slots
 * (store/write.c), its stale slots freed.  Every slot in use is a page's,
 * and the next cycle's run reuses the freed ones: the slots in use never
 * span more than twice the pages written.
 */
static void zero_pages_and_rewrites_keep_the_file_bounded(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	const struct vswap_handler_opts one = {.chunk_pages = N, .skip_zero_pages = 1};
	assert_int_equal(hfx_setup(&f, pages, 1, &one), 0);
	fill_all(&f);
	for (uint64_t p = 3; p < N; p += 8)
		memset(hfx_addr(&f, 0, p), 0, f.page_size);
	swap_out_all(&f);
	assert_int_equal(store_stats(&f).slots_end, N - N / 8);
	uint64_t ends[3];
	for (unsigned cycle = 0; cycle < 3; cycle++) {
		/* Every page back and changed: a different eighth is zero. */
		unsigned zero = cycle % 2 ? 3 : 5;
		for (uint64_t p = 0; p < N; p++) {
			uint8_t v = p % 8 == zero ? 0 : (uint8_t)(byte_of(p) + 1 + cycle);
			assert_int_equal(hfx_fill(&f, 0, p, v), 0);
		}
		pthread_mutex_lock(
		    &f.h->lock); /* the stale marks, as a guest's commits leave them */
		assert_int_equal(vswap_store_commit(f.h->store), 0);
		pthread_mutex_unlock(&f.h->lock);
		swap_out_all(&f);
		struct vswap_store_stats ss = store_stats(&f);
		assert_int_equal(ss.slots_used, N - N / 8);
		ends[cycle] = ss.slots_end;
		no_slot_leaked(&f);
		for (uint64_t p = 0; p < N; p++) {
			uint8_t v = p % 8 == zero ? 0 : (uint8_t)(byte_of(p) + 1 + cycle);
			expect_bytes(&f, p, v, v);
		}
	}
	/* The runs alternate between the two halves: never more. */
	for (unsigned cycle = 0; cycle < 3; cycle++)
		assert_true(ends[cycle] <= 2 * (N - N / 8));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- pages equal to their stale copy --------------------------------------- */

static uint8_t changed_byte(uint64_t p)
{
	return (uint8_t)(0x90 + p);
}

/* Every page back in, as after a resume; every fourth one changed; the
 * stale marks committed, as a guest's faults leave them. */
static void read_all_change_some(struct hfx *f, uint64_t slots[N])
{
	uint8_t *buf = malloc(f->page_size);
	assert_non_null(buf);
	for (uint64_t p = 0; p < N; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f->h, p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
		slots[p] = pi.slot;
		assert_int_equal(hfx_read(buf, hfx_addr(f, 0, p), f->page_size, 0, NULL), 0);
		if (p % 4 == 1)
			assert_int_equal(hfx_fill(f, 0, p, changed_byte(p)), 0);
	}
	free(buf);
	pthread_mutex_lock(&f->h->lock);
	assert_int_equal(vswap_store_commit(f->h->store), 0);
	pthread_mutex_unlock(&f->h->lock);
}

/*
 * A swap-out after a resume: the pages the guest only read equal their stale
 * copy, and become present in that slot without a write (a re-hibernation
 * used to write every page it had read).  Only the changed pages are
 * written; every page leaves guest memory (protect mode) or staging (copy
 * mode) and reads back right.
 */
static void pages_only_read_are_not_written(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	swap_out_all(&f);
	uint64_t slots[N];
	read_all_change_some(&f, slots);
	uint64_t written = store_stats(&f).bytes_written;
	swap_out_all(&f);
	assert_int_equal(store_stats(&f).bytes_written - written, (uint64_t)(N / 4) * f.page_size);
	for (uint64_t p = 0; p < N; p++) {
		struct vswap_page_info pi;
		assert_int_equal(vswap_handler_page_info(f.h, p, &pi), 0);
		assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
		assert_false(pi.staged);
		if (p % 4 != 1 && pi.slot != slots[p])
			fail_msg("page %llu unchanged, rewritten from slot %llu to %llu",
				 (unsigned long long)p, (unsigned long long)slots[p],
				 (unsigned long long)pi.slot);
	}
	no_slot_leaked(&f);
	assert_int_equal(status_of(&f).metrics.swap_pages, N);
	if (status_of(&f).enable_mode == VSWAP_ENABLE_PROTECT)
		assert_true(lseek(f.memfd, 0, SEEK_DATA) < 0); /* all out of memory */
	for (uint64_t p = 0; p < N; p++) {
		uint8_t v = p % 4 == 1 ? changed_byte(p) : byte_of(p);
		expect_bytes(&f, p, v, v);
	}
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Page 2 (unchanged) written by the guest after its copy was compared and
 * before it was judged: its write is let through (protect mode: a
 * write-protect fault; copy mode: a fault that takes it out of staging), so
 * it must be neither kept nor written. */
static void write_after_compare(void *ctx, int where)
{
	struct at_flight *a = ctx;
	if (where != SWAP_OUT_HOOK_COMPARED || a->seen++)
		return;
	uint8_t v = 0xee;
	a->rc = hfx_write(hfx_addr(a->f, 0, a->page), &v, 1, HFX_DEADLINE_MS);
	atomic_store(&a->done, true);
}

static void page_written_after_its_compare_is_not_kept(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	swap_out_all(&f);
	uint64_t slots[N];
	read_all_change_some(&f, slots);
	struct at_flight a = {.f = &f, .page = 2};
	atomic_init(&a.done, false);
	f.h->swap_out_hook_ctx = &a;
	f.h->swap_out_hook = write_after_compare;
	swap_out_all(&f);
	f.h->swap_out_hook = NULL;
	assert_true(atomic_load(&a.done));
	assert_int_equal(a.rc, 0);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, 2, &pi), 0);
	assert_int_not_equal(pi.state, VSWAP_PAGE_PRESENT);
	assert_false(pi.staged);
	assert_int_equal(status_of(&f).metrics.swap_pages, N - 1);
	no_slot_leaked(&f);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	for (uint64_t p = 0; p < N; p++) {
		uint8_t v = p % 4 == 1 ? changed_byte(p) : byte_of(p);
		expect_bytes(&f, p, p == 2 ? 0xee : v, v);
	}
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- the disk back after a disable ------------------------------------------ */

struct blocks_at_most {
	int fd;
	blkcnt_t max;
};

static bool swap_blocks_at_most(void *arg)
{
	struct blocks_at_most *b = arg;
	struct stat st;
	return fstat(b->fd, &st) == 0 && st.st_blocks <= b->max;
}

/*
 * After a disable every page is resident, the slots are freed, and their
 * blocks are given back while the handler is Ready (the monitor punches
 * them in pieces when idle): before, the swap file kept every block it had
 * until the store closed.
 */
static void disable_gives_the_disk_back(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {N};
	assert_int_equal(hfx_setup(&f, pages, 1, &small), 0);
	fill_all(&f);
	swap_out_all(&f);
	int fd = vswap_store_swap_fd(f.store);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_blocks >= (blkcnt_t)(N * f.page_size / 512));
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	/* The superblock's page stays (and at most a page of the file
	 * system's own). */
	struct blocks_at_most b = {fd, (blkcnt_t)(2 * f.page_size / 512)};
	if (!hfx_wait_for(swap_blocks_at_most, &b)) {
		assert_int_equal(fstat(fd, &st), 0);
		fail_msg("the swap file still holds %lld blocks of 512 bytes after the disable",
			 (long long)st.st_blocks);
	}
	for (uint64_t p = 0; p < N; p++)
		expect_bytes(&f, p, byte_of(p), byte_of(p));
	/* And the next cycle writes into the file again. */
	swap_out_all(&f);
	no_slot_leaked(&f);
	for (uint64_t p = 0; p < N; p++)
		expect_bytes(&f, p, byte_of(p), byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_swapout");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(write_while_in_flight),
	    cmocka_unit_test(remove_while_in_flight),
	    cmocka_unit_test(detach_while_in_flight),
	    cmocka_unit_test(exit_while_in_flight),
	    cmocka_unit_test(enospc_with_writes_in_flight),
	    cmocka_unit_test(enospc_after_the_room_check_rewrites_in_place),
	    cmocka_unit_test(writes_go_on_while_a_commit_runs),
	    cmocka_unit_test(zero_pages_not_written),
	    cmocka_unit_test(zero_pages_and_rewrites_keep_the_file_bounded),
	    cmocka_unit_test(pages_only_read_are_not_written),
	    cmocka_unit_test(page_written_after_its_compare_is_not_kept),
	    cmocka_unit_test(disable_gives_the_disk_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
