/* SPDX-License-Identifier: MIT */
/*
 * The power-loss workload: drives the store API the way the page handler
 * does (move to staging, swap-out in chunks, faults, guest writes, trim,
 * remove events, commits; and the protect enable mode's swap-out straight
 * from guest memory, with guest writes landing between a write and its
 * commit) with a deterministic sequence, while the write-log
 * shim records every byte it writes.  It keeps a model of what the index
 * must say and logs it after every commit (PL_MARK_COMMIT), so the replayer
 * knows which states are legal at each point of the write stream.
 *
 *   vswap-powerloss-workload DIR MODE STEPS SEED [edge]
 *
 * DIR holds every file of the store (swap file DIR/swap, DIR/swap.idx, the
 * staging file).  MODE is full, batch or none.  "edge" adds swap-outs that
 * write a page right after it faulted in, without a commit in between (the
 * store API allows it; the handler's move-to-staging commit normally sits
 * there).  Run it with VSWAP_IO=sync: the shim cannot see io_uring.
 * Exit 0 when the run and its self-checks passed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vswap/store.h>

#include "tests/helpers/powerloss_model.h"
#include "tests/powerloss/writelog.h"

#define CHUNK 8 /* pages per vswap_store_write */

/* The model of one page: the guest's view and the store's. */
struct mpage {
	struct pl_page st; /* what the index says after the next commit */
	bool resident;	   /* the guest holds the page */
	uint32_t guest;	   /* version the guest holds (0: zero page) */
};

struct wl {
	struct vswap_store *s;
	enum vswap_durability mode;
	bool edge;
	uint32_t ps;
	uint64_t npages;
	struct mpage *m;
	uint32_t next_ver;
	uint32_t commits;
	uint64_t rng;
	wl_mark_fn mark;
	uint8_t *buf; /* CHUNK pages */
	struct pl_snap *snap;
};

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "workload: %s:%d: ", __FILE__, __LINE__);                  \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static uint64_t rnd(struct wl *w, uint64_t n)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng % n;
}

static void mark(struct wl *w, const char *label, const void *payload, uint64_t len)
{
	if (w->mark)
		w->mark(label, payload, len);
}

/* ---- commits and the model ------------------------------------------------------- */

/* The store's in-memory view must match the model at every commit. */
static void self_check(struct wl *w)
{
	for (uint64_t p = 0; p < w->npages; p++) {
		struct vswap_page_info pi;
		const struct pl_page *e = &w->m[p].st;
		CHECK(vswap_store_page(w->s, p, &pi) == 0, "page %llu", (unsigned long long)p);
		CHECK(pi.state == e->state && pi.staged == (bool)e->staged,
		      "page %llu: store says %s%s, model %s%s", (unsigned long long)p,
		      vswap_page_state_name(pi.state), pi.staged ? "+staged" : "",
		      vswap_page_state_name(e->state), e->staged ? "+staged" : "");
		if (e->state != VSWAP_PAGE_NONE) {
			pl_fill(w->buf, w->ps, p, e->ver);
			CHECK(pi.xxh3 == vswap_store_page_checksum(w->s, p, w->buf),
			      "page %llu: checksum is not version %u's", (unsigned long long)p,
			      e->ver);
		}
	}
}

static void log_snapshot(struct wl *w)
{
	w->snap->commit = w->commits;
	w->snap->npages = (uint32_t)w->npages;
	for (uint64_t p = 0; p < w->npages; p++)
		w->snap->pages[p] = w->m[p].st;
	mark(w, PL_MARK_COMMIT, w->snap, sizeof(*w->snap) + w->npages * sizeof(struct pl_page));
}

static void begin_commit(struct wl *w)
{
	uint32_t next = w->commits + 1;
	mark(w, PL_MARK_BEGIN, &next, sizeof(next));
}

static void end_commit(struct wl *w)
{
	w->commits++;
	self_check(w);
	log_snapshot(w);
}

static void commit(struct wl *w)
{
	begin_commit(w);
	int ret = vswap_store_commit(w->s);
	CHECK(ret == 0, "commit: %s", vswap_strerror(ret));
	end_commit(w);
}

/* vswap_store_write commits by itself in FULL mode: bracket it like one.
 * The pages leave the guest (copy mode: from staging) unless @resident (the
 * protect mode: written from guest memory, removed after the commit). */
static void store_write_from(struct wl *w, uint64_t first, uint32_t count, bool resident)
{
	for (uint32_t i = 0; i < count; i++) {
		struct mpage *mp = &w->m[first + i];
		pl_fill(w->buf + (size_t)i * w->ps, w->ps, first + i, mp->guest);
	}
	bool full = w->mode == VSWAP_DURABILITY_FULL;
	if (full)
		begin_commit(w);
	int ret = vswap_store_write(w->s, first, count, w->buf);
	CHECK(ret == 0, "write %llu+%u: %s", (unsigned long long)first, count, vswap_strerror(ret));
	for (uint32_t i = 0; i < count; i++) {
		struct mpage *mp = &w->m[first + i];
		mp->st.state = VSWAP_PAGE_PRESENT;
		mp->st.ver = mp->guest;
		mp->resident = resident;
	}
	if (full)
		end_commit(w);
}

static void store_write(struct wl *w, uint64_t first, uint32_t count)
{
	store_write_from(w, first, count, false);
}

/* ---- the handler's operations ------------------------------------------------------ */

static bool wants_out(const struct mpage *mp)
{
	return mp->resident && mp->guest != 0;
}

/* Trim: a resident page whose stale copy still equals it goes back to the
 * file without a write. */
static void trim(struct wl *w, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n && p < w->npages; p++) {
		struct mpage *mp = &w->m[p];
		if (!mp->resident || mp->st.state != VSWAP_PAGE_STALE || mp->st.ver != mp->guest)
			continue;
		CHECK(vswap_store_mark_present(w->s, p) == 0, "mark_present %llu",
		      (unsigned long long)p);
		mp->st.state = VSWAP_PAGE_PRESENT;
		mp->resident = false;
	}
}

/* Move to staging: log ahead (mark, commit), then copy the guest's bytes. */
static void stage(struct wl *w, uint64_t first, uint64_t n)
{
	uint64_t end = first + n < w->npages ? first + n : w->npages;
	bool any = false;
	for (uint64_t p = first; p < end; p++) {
		if (!wants_out(&w->m[p]))
			continue;
		CHECK(vswap_store_stage_mark(w->s, p, 1) == 0, "stage_mark %llu",
		      (unsigned long long)p);
		w->m[p].st.staged = 1;
		w->m[p].st.summed = 0;
		any = true;
	}
	if (!any)
		return;
	commit(w);
	int fd = vswap_store_staging_fd(w->s);
	for (uint64_t p = first; p < end; p++) {
		struct mpage *mp = &w->m[p];
		if (!mp->st.staged || !mp->resident)
			continue;
		pl_fill(w->buf, w->ps, p, mp->guest);
		CHECK(pwrite(fd, w->buf, w->ps, (off_t)(p * w->ps)) == (ssize_t)w->ps,
		      "staging copy of page %llu", (unsigned long long)p);
		uint64_t sum = vswap_store_page_checksum(w->s, p, w->buf);
		CHECK(vswap_store_stage_record_sums(w->s, p, 1, &sum) == 0, "stage sums %llu",
		      (unsigned long long)p);
		mp->st.sver = mp->guest;
		mp->st.summed = 1;
	}
	/* The checksums are durable before the guest's copies go (the
	 * handler's move punches the guest's memory only after this). */
	commit(w);
	for (uint64_t p = first; p < end; p++)
		if (w->m[p].st.staged && w->m[p].st.summed)
			w->m[p].resident = false;
}

/* Swap-out: every staged page goes to the file in chunks of consecutive
 * pages, a commit every two chunks (and at the end), then staging is
 * cleared and that is committed too. */
static void swap_out(struct wl *w)
{
	unsigned chunks = 0;
	for (uint64_t p = 0; p < w->npages;) {
		if (!w->m[p].st.staged) {
			p++;
			continue;
		}
		uint32_t n = 0;
		while (n < CHUNK && p + n < w->npages && w->m[p + n].st.staged)
			n++;
		store_write(w, p, n);
		if (++chunks % 2 == 0 && w->mode != VSWAP_DURABILITY_FULL)
			commit(w);
		p += n;
	}
	if (!chunks)
		return;
	commit(w);
	for (uint64_t p = 0; p < w->npages; p++) {
		if (!w->m[p].st.staged)
			continue;
		CHECK(vswap_store_stage_clear(w->s, p, 1) == 0, "stage_clear %llu",
		      (unsigned long long)p);
		w->m[p].st.staged = 0;
		w->m[p].st.summed = 0;
		w->m[p].st.sver = 0;
	}
	commit(w);
}

/* A fault: the guest touches a page that is not resident. */
static void fault(struct wl *w, uint64_t p)
{
	struct mpage *mp = &w->m[p];
	if (mp->resident)
		return;
	if (mp->st.staged) {
		int fd = vswap_store_staging_fd(w->s);
		CHECK(pread(fd, w->buf, w->ps, (off_t)(p * w->ps)) == (ssize_t)w->ps &&
			  pl_is(w->buf, w->ps, p, mp->st.sver),
		      "staged page %llu is not version %u", (unsigned long long)p, mp->st.sver);
		CHECK(vswap_store_stage_clear(w->s, p, 1) == 0, "stage_clear %llu",
		      (unsigned long long)p);
		mp->guest = mp->st.sver;
		mp->st.staged = 0;
		mp->st.summed = 0;
		mp->st.sver = 0;
	} else {
		int ret = vswap_store_read_page(w->s, p, w->buf);
		CHECK(ret == 0 && pl_is(w->buf, w->ps, p, mp->st.ver), "swap-in of page %llu: %s",
		      (unsigned long long)p, vswap_strerror(ret));
		CHECK(vswap_store_mark_stale(w->s, p, 1) == 1, "mark_stale %llu",
		      (unsigned long long)p);
		mp->guest = mp->st.ver;
		mp->st.state = VSWAP_PAGE_STALE;
	}
	mp->resident = true;
}

/* The guest writes a page: a new version (faulting it in first). */
static void dirty(struct wl *w, uint64_t p)
{
	fault(w, p);
	w->m[p].guest = w->next_ver++;
}

/* A remove event (balloon): the guest drops the pages; their copies go. */
static void remove_range(struct wl *w, uint64_t first, uint64_t n)
{
	if (first + n > w->npages)
		n = w->npages - first;
	CHECK(vswap_store_free(w->s, first, n) >= 0, "free");
	CHECK(vswap_store_stage_clear(w->s, first, n) == 0, "stage_clear");
	for (uint64_t p = first; p < first + n; p++) {
		struct mpage *mp = &w->m[p];
		mp->st = (struct pl_page){0};
		mp->resident = true;
		mp->guest = 0;
	}
}

/*
 * The protect mode's swap-out of [first, first+n): resident pages with data
 * (not staged) are written from guest memory in chunks, some are written to
 * by the guest before the commit (their write-protect fault makes the fresh
 * copy stale: the slot keeps the bytes its checksum covers), then the
 * commit, then the pages still present leave guest memory.
 */
static void protect_swap_out(struct wl *w, uint64_t first, uint64_t n)
{
	uint64_t end = first + n < w->npages ? first + n : w->npages;
	bool any = false;
	for (uint64_t p = first; p < end;) {
		uint32_t k = 0;
		while (k < CHUNK && p + k < end && wants_out(&w->m[p + k]) &&
		       !w->m[p + k].st.staged)
			k++;
		if (!k) {
			p++;
			continue;
		}
		store_write_from(w, p, k, true);
		any = true;
		p += k;
	}
	if (!any)
		return;
	for (uint64_t p = first; p < end; p++) {
		struct mpage *mp = &w->m[p];
		if (!mp->resident || mp->st.state != VSWAP_PAGE_PRESENT || rnd(w, 4))
			continue;
		CHECK(vswap_store_mark_stale(w->s, p, 1) == 1, "mark_stale %llu",
		      (unsigned long long)p);
		mp->st.state = VSWAP_PAGE_STALE;
		mp->guest = w->next_ver++;
	}
	if (w->mode != VSWAP_DURABILITY_FULL || rnd(w, 2))
		commit(w);
	for (uint64_t p = first; p < end; p++)
		if (w->m[p].resident && w->m[p].st.state == VSWAP_PAGE_PRESENT)
			w->m[p].resident = false;
}

/* The edge case: fault, dirty and write a page straight away, so the
 * stale mark and the in-place rewrite share one commit. */
static void edge_rewrite(struct wl *w, uint64_t p)
{
	if (w->m[p].resident || w->m[p].st.state != VSWAP_PAGE_PRESENT || w->m[p].st.staged)
		return;
	dirty(w, p);
	store_write(w, p, 1);
	if (w->mode != VSWAP_DURABILITY_FULL)
		commit(w);
}

/* ---- the run ------------------------------------------------------------------------ */

static void step(struct wl *w)
{
	uint64_t p = rnd(w, w->npages), n = 1 + rnd(w, 24);
	switch (rnd(w, w->edge ? 10 : 9)) {
	case 0:
	case 1:
		for (uint64_t i = 0; i < n && p + i < w->npages; i++)
			dirty(w, p + i);
		break;
	case 2:
		stage(w, p, n);
		break;
	case 3:
		stage(w, p, n);
		swap_out(w);
		break;
	case 4:
		for (uint64_t i = 0; i < n / 4 + 1 && p + i < w->npages; i++)
			fault(w, p + i);
		break;
	case 5:
		trim(w, p, n);
		commit(w);
		break;
	case 6:
		remove_range(w, p, n / 3 + 1);
		if (rnd(w, 2))
			commit(w);
		break;
	case 7:
		commit(w);
		break;
	case 8:
		protect_swap_out(w, p, n);
		break;
	case 9:
		edge_rewrite(w, p);
		break;
	}
}

static void run(struct wl *w, unsigned steps)
{
	/* Start with every page written once and half of them swapped out. */
	for (uint64_t p = 0; p < w->npages; p++)
		dirty(w, p);
	stage(w, 0, w->npages / 2);
	swap_out(w);
	for (unsigned i = 0; i < steps; i++)
		step(w);
	/* End swapped out: what is staged or resident and dirty goes out. */
	stage(w, 0, w->npages);
	swap_out(w);
}

static void open_store(struct wl *w, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/swap", dir);
	struct vswap_store_opts o = {
	    .durability = w->mode, .staging_dir = dir, .log_level = VSWAP_LOG_WARN};
	int ret = vswap_store_create(path, &o, &w->s);
	CHECK(ret == 0, "create %s: %s", path, vswap_strerror(ret));
	mark(w, PL_MARK_CREATED, NULL, 0);
	/* Two regions; the second starts inside a 64-page index group. */
	uint64_t regions[2] = {w->npages * 5 / 8, w->npages - w->npages * 5 / 8};
	begin_commit(w);
	ret = vswap_store_set_regions(w->s, regions, 2);
	CHECK(ret == 0, "set_regions: %s", vswap_strerror(ret));
	end_commit(w);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s DIR full|batch|none STEPS SEED [edge]\n", argv[0]);
		return 2;
	}
	struct wl w = {.npages = 160, .next_ver = 1, .rng = strtoull(argv[4], NULL, 0) | 1};
	CHECK(vswap_durability_parse(argv[2], &w.mode) == 0, "mode %s", argv[2]);
	unsigned steps = (unsigned)strtoul(argv[3], NULL, 0);
	w.edge = argc > 5 && strcmp(argv[5], "edge") == 0;
	w.ps = (uint32_t)sysconf(_SC_PAGESIZE);
	w.mark = (wl_mark_fn)(uintptr_t)dlsym(RTLD_DEFAULT, WL_MARK_SYMBOL);
	w.m = calloc(w.npages, sizeof(*w.m));
	w.buf = aligned_alloc(w.ps, (size_t)CHUNK * w.ps);
	w.snap = malloc(sizeof(*w.snap) + w.npages * sizeof(struct pl_page));
	CHECK(w.m && w.buf && w.snap, "out of memory");
	for (uint64_t p = 0; p < w.npages; p++)
		w.m[p].resident = true;

	open_store(&w, argv[1]);
	run(&w, steps);
	begin_commit(&w);
	int ret = vswap_store_close(w.s);
	CHECK(ret == 0, "close: %s", vswap_strerror(ret));
	w.commits++;
	log_snapshot(&w);
	mark(&w, PL_MARK_CLOSED, NULL, 0);
	printf("workload: %s, %u steps, %u commits, %u page versions\n", argv[2], steps, w.commits,
	       w.next_ver - 1);
	free(w.m);
	free(w.buf);
	free(w.snap);
	return 0;
}
