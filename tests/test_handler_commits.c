/* SPDX-License-Identifier: MIT */
/*
 * Lazy index commits run on the commit thread (handler/committer.c), off the
 * monitor: while one is held between its begin and its write (the
 * committer's test hook), faults from the swap file, from staging and of
 * zero pages are all served, and once released the commit lands (the index
 * records what the faults changed).  A move to staging waits for a commit in
 * flight in copy mode (its stage marks need the punches it holds).  A named
 * blob pending (a resume's image deleted) goes with that split commit too:
 * faults are served while it syncs.  The start of a swap-out records its
 * state through the commit thread, so it does not wait for a commit in
 * flight either.  A copy-mode enable has each wave's staged checksums
 * committed by the commit thread while it copies the next, and removes a
 * wave's guest pages only once that commit has landed (held by the hook:
 * none of them removed; failed: none of that wave or a later one).  Every
 * wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "store/internal.h"
#include "tests/helpers/handler_fixture.h"

#define PAGES 16

struct gate {
	atomic_bool entered, open;
	atomic_uint calls;
};

static void gate_hook(void *ctx)
{
	struct gate *g = ctx;
	atomic_fetch_add(&g->calls, 1);
	atomic_store(&g->entered, true);
	uint64_t until = hfx_now_ms() + 2 * HFX_DEADLINE_MS;
	while (!atomic_load(&g->open) && hfx_now_ms() < until)
		sched_yield();
}

static bool gate_entered(void *arg)
{
	return atomic_load(&((struct gate *)arg)->entered);
}

static bool committer_idle(void *arg)
{
	return !committer_busy(((struct hfx *)arg)->h);
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

/* Page @page's state as the index records it. */
static enum vswap_page_state recorded(struct hfx *f, uint64_t page)
{
	struct find fd = {.page = page, .st = VSWAP_PAGE_NONE};
	pthread_mutex_lock(&f->h->lock);
	int rc = vswap_store_foreach_page(f->store, find_record, &fd);
	pthread_mutex_unlock(&f->h->lock);
	assert_int_equal(rc, 0);
	return fd.st;
}

/* The commit thread reads the hook after taking the lock. */
static void set_hook(struct hfx *f, struct gate *g)
{
	pthread_mutex_lock(&f->h->lock);
	f->h->cm.hook_ctx = g;
	f->h->cm.hook = g ? gate_hook : NULL;
	pthread_mutex_unlock(&f->h->lock);
}

/* Pages 0..PAGES-2 swapped out; the last page never written (zero). */
static void setup_swapped(struct hfx *f, struct gate *g, const struct vswap_handler_opts *o)
{
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup(f, pages, 1, o), 0);
	for (uint64_t p = 0; p < PAGES - 1; p++)
		assert_int_equal(hfx_fill(f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
	atomic_init(&g->entered, false);
	atomic_init(&g->open, false);
	atomic_init(&g->calls, 0);
	set_hook(f, g);
}

static void faults_served_during_commit(void **state)
{
	(void)state;
	struct hfx f;
	struct gate g;
	setup_swapped(&f, &g, NULL);
	/* A fault leaves a change; the idle timer asks for its commit, which
	 * the hook holds after its begin. */
	assert_int_equal(hfx_page_byte(&f, 0, 0), hfx_byte_of(0));
	if (!hfx_wait_for(gate_entered, &g))
		fail_msg("no lazy commit began");
	assert_int_equal(recorded(&f, 0), VSWAP_PAGE_PRESENT); /* not landed */
	/* Faults from the swap file and of a zero page go on meanwhile. */
	for (uint64_t p = 1; p < 6; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_page_byte(&f, 0, PAGES - 1), 0);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.metrics.copied_from_file_pages, 6);
	atomic_store(&g.open, true);
	assert_true(hfx_wait_for(committer_idle, &f));
	assert_int_equal(recorded(&f, 0), VSWAP_PAGE_STALE);
	/* The later faults' changes are committed by a later lazy commit. */
	for (;;) {
		if (recorded(&f, 5) == VSWAP_PAGE_STALE)
			break;
		if (atomic_load(&g.calls) > 50)
			fail_msg("page 5's fault never reached the index");
		sched_yield();
	}
	set_hook(&f, NULL);
	assert_int_equal(hfx_teardown(&f), 0);
}

struct active_gate {
	struct gate g;
	atomic_bool armed;
};

/* On the swap-out's thread: its last batch's commit landed; what the
 * commit thread begins next is the commit the job waits on for Active
 * (or a lazy one, which that commit then waits behind). */
static void active_arm_hook(void *ctx, int where)
{
	struct active_gate *a = ctx;
	if (where == SWAP_OUT_HOOK_COMMITTED)
		atomic_store(&a->armed, true);
}

/* Holds the first commit begun once armed (the hook must not take
 * h->lock: a plain commit waits for this one's write under it). */
static void active_gate_hook(void *ctx)
{
	struct active_gate *a = ctx;
	if (atomic_load(&a->armed))
		gate_hook(&a->g);
}

static bool active_gate_entered(void *arg)
{
	return gate_entered(&((struct active_gate *)arg)->g);
}

/* The end of a swap-out: Active is committed by the commit thread, its
 * sync without h->lock, and faults are served meanwhile (on the monitor,
 * under the lock, that commit made every fault wait for its sync: the
 * longest wait of a swap-out). */
static void active_committed_off_monitor(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	for (uint64_t p = 0; p < PAGES - 1; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct active_gate a;
	atomic_init(&a.g.entered, false);
	atomic_init(&a.g.open, false);
	atomic_init(&a.g.calls, 0);
	atomic_init(&a.armed, false);
	f.h->swap_out_hook_ctx = &a;
	f.h->swap_out_hook = active_arm_hook;
	pthread_mutex_lock(&f.h->lock);
	f.h->cm.hook_ctx = &a;
	f.h->cm.hook = active_gate_hook;
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	if (!hfx_wait_for(active_gate_entered, &a))
		fail_msg("no commit on the commit thread after the last batch's");
	/* Held between its begin and its write: not yet published, and
	 * faults are served. */
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.state, VSWAP_STATE_SWAP_OUT_IN_PROGRESS);
	assert_int_equal(hfx_page_byte(&f, 0, PAGES - 1), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 0), hfx_byte_of(0));
	atomic_store(&a.g.open, true);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	/* The hooks stay until the teardown joins their threads (the gate
	 * is open: later commits pass). */
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.metrics.swap_pages, PAGES - 2); /* page 0 came back */
	for (uint64_t p = 1; p < PAGES - 1; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

static void blob_commit_serves_faults_meanwhile(void **state)
{
	(void)state;
	struct hfx f;
	struct gate g;
	setup_swapped(&f, &g, NULL);
	pthread_mutex_lock(&f.h->lock);
	assert_int_equal(vswap_store_blob_put(f.store, "vm.state", "image", 5), 0);
	pthread_mutex_unlock(&f.h->lock);
	/* A fault leaves a change; its commit takes the blob with it, held
	 * by the hook after its begin (a blob used to make it a plain commit,
	 * synced under the lock, which faults waited for). */
	assert_int_equal(hfx_page_byte(&f, 0, 0), hfx_byte_of(0));
	if (!hfx_wait_for(gate_entered, &g))
		fail_msg("no split commit began with the blob pending");
	for (uint64_t p = 1; p < 6; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	void *data = NULL;
	size_t len = 0;
	pthread_mutex_lock(&f.h->lock);
	int rc = vswap_store_blob_get(f.store, "vm.state", &data, &len);
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(rc, 0);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "image", 5);
	free(data);
	atomic_store(&g.open, true);
	assert_true(hfx_wait_for(committer_idle, &f));
	assert_int_equal(recorded(&f, 0), VSWAP_PAGE_STALE);
	set_hook(&f, NULL);
	assert_int_equal(hfx_teardown(&f), 0);
}

struct enabler {
	pthread_t t;
	struct vswap_handler *h;
	int rc;
	atomic_bool done;
};

static void *enable_main(void *arg)
{
	struct enabler *e = arg;
	e->rc = vswap_handler_enable(e->h);
	atomic_store(&e->done, true);
	return NULL;
}

static void enable_waits_for_commit(void **state)
{
	(void)state;
	struct hfx f;
	struct gate g;
	setup_swapped(&f, &g, &hfx_copy); /* copy mode: the enable stages */
	assert_int_equal(hfx_page_byte(&f, 0, 2), hfx_byte_of(2));
	assert_int_equal(hfx_write(hfx_addr(&f, 0, 2), "\x99", 1, 0), 0);
	if (!hfx_wait_for(gate_entered, &g))
		fail_msg("no lazy commit began");
	struct enabler e = {.h = f.h};
	atomic_init(&e.done, false);
	assert_int_equal(pthread_create(&e.t, NULL, enable_main, &e), 0);
	/* The enable cannot stage page 2 while the commit is in flight; it
	 * completes once the commit ends. */
	uint64_t until = hfx_now_ms() + 200;
	while (hfx_now_ms() < until)
		assert_false(atomic_load(&e.done));
	atomic_store(&g.open, true);
	pthread_join(e.t, NULL);
	assert_int_equal(e.rc, 0);
	assert_true(hfx_wait_for(committer_idle, &f));
	set_hook(&f, NULL);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, f.first[0] + 2, &pi), 0);
	assert_true(pi.staged);
	uint8_t b;
	assert_int_equal(hfx_read(&b, hfx_addr(&f, 0, 2), 1, 0, NULL), 0);
	assert_int_equal(b, 0x99);
	assert_int_equal(hfx_page_byte(&f, 0, 3), hfx_byte_of(3));
	assert_int_equal(hfx_teardown(&f), 0);
}

struct swapper {
	pthread_t t;
	struct vswap_handler *h;
	int rc;
	atomic_bool done;
};

static void *swap_out_main(void *arg)
{
	struct swapper *w = arg;
	w->rc = vswap_handler_swap_out(w->h);
	atomic_store(&w->done, true);
	return NULL;
}

static bool swapper_done(void *arg)
{
	return atomic_load(&((struct swapper *)arg)->done);
}

/* The swap-out's start records its state through the commit thread: a
 * lazy commit held between its begin and its write (a slow sync) holds up
 * neither the command nor the faults meanwhile.  On the monitor, that
 * state's commit joined the one in flight under h->lock, and every fault
 * waited for its sync. */
static void swap_out_start_waits_for_no_commit(void **state)
{
	(void)state;
	struct hfx f;
	struct gate g;
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	for (uint64_t p = 0; p < PAGES - 1; p++)
		assert_int_equal(hfx_fill(&f, 0, p, hfx_byte_of(p)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	atomic_init(&g.entered, false);
	atomic_init(&g.open, false);
	atomic_init(&g.calls, 0);
	set_hook(&f, &g);
	/* A staging fault leaves a change; the idle timer asks for its
	 * commit, which the hook holds after its begin. */
	assert_int_equal(hfx_page_byte(&f, 0, 0), hfx_byte_of(0));
	if (!hfx_wait_for(gate_entered, &g))
		fail_msg("no lazy commit began");
	struct swapper w = {.h = f.h};
	atomic_init(&w.done, false);
	assert_int_equal(pthread_create(&w.t, NULL, swap_out_main, &w), 0);
	bool started = hfx_wait_for(swapper_done, &w);
	if (!started) { /* let it go, then say why */
		atomic_store(&g.open, true);
		pthread_join(w.t, NULL);
		fail_msg("the swap-out's start waited for the commit in flight");
	}
	pthread_join(w.t, NULL);
	assert_int_equal(w.rc, 0);
	/* Faults meanwhile: the commit is still held. */
	assert_int_equal(atomic_load(&g.calls), 1);
	for (uint64_t p = 1; p < 4; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	atomic_store(&g.open, true);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	set_hook(&f, NULL);
	for (uint64_t p = 0; p < PAGES - 1; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- copy-mode enable: a wave's guest pages go only after its checksums ---- */

#define WAVES 4

/* Holds the commit thread's n-th commit (counted from 1) until the test has
 * released n of them; with @fail_at, the n-th also makes the group of page
 * @fail_page unloadable (the move's next checksum record of it fails). */
struct wave_gate {
	struct vswap_store *store;
	atomic_uint calls, released;
	unsigned fail_at;
	uint64_t fail_page;
};

static void wave_gate_hook(void *ctx)
{
	struct wave_gate *g = ctx;
	unsigned n = atomic_fetch_add(&g->calls, 1) + 1;
	if (n == g->fail_at)
		store_fail_group(g->store, g->fail_page / 64, -ENOMEM);
	uint64_t until = hfx_now_ms() + 2 * HFX_DEADLINE_MS;
	while (atomic_load(&g->released) < n && hfx_now_ms() < until)
		sched_yield();
}

struct gate_calls {
	struct wave_gate *g;
	unsigned n;
};

static bool gate_calls_reached(void *arg)
{
	const struct gate_calls *c = arg;
	return atomic_load(&c->g->calls) >= c->n;
}

static bool enabler_done(void *arg)
{
	return atomic_load(&((struct enabler *)arg)->done);
}

/* Pages of region 0 that guest memory (its memfd) still holds. */
static uint64_t resident_pages(const struct hfx *f)
{
	off_t off = f->regions[0].offset, end = off + (off_t)f->regions[0].len;
	uint64_t n = 0;
	while (off < end) {
		off_t d = lseek(f->memfd, off, SEEK_DATA);
		if (d < 0 || d >= end)
			break;
		off_t e = lseek(f->memfd, d, SEEK_HOLE);
		assert_true(e > d);
		if (e > end)
			e = end;
		n += (uint64_t)(e - d) / f->page_size;
		off = e;
	}
	return n;
}

/* Region 0 of WAVES waves of a huge page each, every page written, a
 * copy-mode enable started on a thread of its own with @g on the commit
 * thread.  *wave_pages: the pages of one wave. */
static void start_waves(struct hfx *f, struct wave_gate *g, struct enabler *e, uint64_t *wave_pages)
{
	size_t thp = 2u << 20;
	size_t pages[1] = {WAVES * thp / (size_t)sysconf(_SC_PAGESIZE)};
	assert_int_equal(hfx_setup(f, pages, 1, &hfx_copy), 0);
	*wave_pages = f->h->thp_size >> f->h->page_shift;
	assert_int_equal(*wave_pages * WAVES, pages[0]);
	/* Not registered before the enable: written directly. */
	for (uint64_t p = 0; p < pages[0]; p++)
		memset(hfx_addr(f, 0, p), hfx_byte_of(p), f->page_size);
	assert_true(hfx_wait_for(committer_idle, f));
	g->store = f->store;
	atomic_init(&g->calls, 0);
	atomic_init(&g->released, 0);
	pthread_mutex_lock(&f->h->lock);
	f->h->move_wave_pages = *wave_pages;
	f->h->cm.hook_ctx = g;
	f->h->cm.hook = wave_gate_hook;
	pthread_mutex_unlock(&f->h->lock);
	e->h = f->h;
	atomic_init(&e->done, false);
	assert_int_equal(pthread_create(&e->t, NULL, enable_main, e), 0);
}

/* Page @p of region 0 as the memfd holds it (no fault): its fill byte. */
static void expect_resident_bytes(const struct hfx *f, uint64_t p)
{
	uint8_t *buf = malloc(f->page_size);
	assert_non_null(buf);
	off_t at = f->regions[0].offset + (off_t)(p * f->page_size);
	assert_int_equal(pread(f->memfd, buf, f->page_size, at), (ssize_t)f->page_size);
	for (size_t i = 0; i < f->page_size; i++)
		if (buf[i] != hfx_byte_of(p))
			fail_msg("page %llu: byte %zu is %#x", (unsigned long long)p, i, buf[i]);
	free(buf);
}

static void enable_removes_a_wave_after_its_commit(void **state)
{
	(void)state;
	struct hfx f;
	struct wave_gate g = {.fail_at = 0};
	struct enabler e;
	uint64_t wave;
	start_waves(&f, &g, &e, &wave);
	/* While the checksums of wave n-1 are being committed (held here),
	 * the waves before it may be gone from guest memory, it may not. */
	for (unsigned n = 1; n <= WAVES; n++) {
		struct gate_calls c = {&g, n};
		if (!hfx_wait_for(gate_calls_reached, &c))
			fail_msg("the checksum commit of wave %u never began", n - 1);
		uint64_t left = resident_pages(&f);
		if (left < (WAVES - (n - 1)) * wave)
			fail_msg("wave %u: %llu pages resident during its checksum commit, want "
				 "at least %llu",
				 n - 1, (unsigned long long)left,
				 (unsigned long long)((WAVES - (n - 1)) * wave));
		atomic_store(&g.released, n);
	}
	assert_true(hfx_wait_for(enabler_done, &e));
	pthread_join(e.t, NULL);
	assert_int_equal(e.rc, 0);
	assert_int_equal(resident_pages(&f), 0);
	for (uint64_t p = 0; p < WAVES * wave; p += wave / 2 + 1)
		assert_int_equal(hfx_page_byte(&f, 0, p), hfx_byte_of(p));
	pthread_mutex_lock(&f.h->lock);
	f.h->cm.hook = NULL;
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void enable_keeps_the_waves_a_failure_stops(void **state)
{
	(void)state;
	struct hfx f;
	struct wave_gate g;
	struct enabler e;
	uint64_t wave;
	/* At wave 0's commit, wave 2's checksums are made to fail their
	 * record: waves 0 and 1 go, 2 and 3 stay in guest memory. */
	const size_t thp_pages = (2u << 20) / (size_t)sysconf(_SC_PAGESIZE);
	g.fail_at = 1;
	g.fail_page = 2 * thp_pages; /* region 0 starts the store's page space */
	start_waves(&f, &g, &e, &wave);
	assert_int_equal(f.first[0], 0);
	atomic_store(&g.released, WAVES + 8);
	assert_true(hfx_wait_for(enabler_done, &e));
	pthread_join(e.t, NULL);
	assert_int_equal(e.rc, -ENOMEM);
	assert_int_equal(resident_pages(&f), 2 * wave);
	for (uint64_t p = 2 * wave; p < WAVES * wave; p++)
		expect_resident_bytes(&f, p);
	store_fail_group(f.store, 0, 0);
	pthread_mutex_lock(&f.h->lock);
	f.h->cm.hook = NULL;
	pthread_mutex_unlock(&f.h->lock);
	hfx_teardown(&f); /* the failed enable is the handler's last error */
}

int main(void)
{
	hfx_skip_if_unavailable("handler_commits");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(faults_served_during_commit),
	    cmocka_unit_test(blob_commit_serves_faults_meanwhile),
	    cmocka_unit_test(enable_waits_for_commit),
	    cmocka_unit_test(active_committed_off_monitor),
	    cmocka_unit_test(swap_out_start_waits_for_no_commit),
	    cmocka_unit_test(enable_removes_a_wave_after_its_commit),
	    cmocka_unit_test(enable_keeps_the_waves_a_failure_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
