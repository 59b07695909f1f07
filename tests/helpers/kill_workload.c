/* SPDX-License-Identifier: MIT */
#include "tests/helpers/kill_workload.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>

#define KW_THREADS 2
#define KW_MAGIC 0x6b696c6c76737770ull /* "killvswp" */
#define KW_WAIT_MS 20000	       /* a state not reached by then is a hang */
#define KW_REOPEN_EVERY 3	       /* cycles between durability changes */
#define KW_BALLOON_RANGES 8	       /* one remove event each: a phase long enough to hit */
#define KW_BALLOON_PAGES 8

static const char *const phase_names[KW_PHASES] = {
    "create",	"open",	      "handler", "write",   "enable", "touch-staging", "trim",
    "swap-out", "touch-file", "balloon", "disable", "verify", "reopen",
};

const char *kw_phase_name(enum kw_phase p)
{
	return p < KW_PHASES ? phase_names[p] : "?";
}

/* ---- page patterns: page number and version in every page ------------- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void kw_page_fill(void *buf, uint32_t ps, uint64_t p, uint32_t v)
{
	uint64_t *w = buf, s = mix(p * 0x100000001ull ^ v);

	if (!v) {
		memset(buf, 0, ps);
		return;
	}
	w[0] = p ^ KW_MAGIC;
	w[1] = v;
	for (uint32_t i = 2; i < ps / 8; i++)
		w[i] = s + i * 0xd1b54a32d192ed03ull;
}

static bool all_zero(const uint64_t *w, uint32_t words)
{
	for (uint32_t i = 0; i < words; i++)
		if (w[i])
			return false;
	return true;
}

int64_t kw_page_version(const void *buf, uint32_t ps, uint64_t p)
{
	const uint64_t *w = buf;
	uint64_t v = w[1], s;

	if (w[0] != (p ^ KW_MAGIC))
		return all_zero(w, ps / 8) ? 0 : -1;
	if (v == 0 || v > UINT32_MAX)
		return -1;
	s = mix(p * 0x100000001ull ^ v);
	for (uint32_t i = 2; i < ps / 8; i++)
		if (w[i] != s + i * 0xd1b54a32d192ed03ull)
			return -1;
	return (int64_t)v;
}

/* ---- the child's state -------------------------------------------------- */

struct kw {
	const struct kw_child_args *a;
	struct kw_shared *sh;
	uint32_t ps;
	int memfd;
	uint8_t *reserve;
	size_t reserve_len;
	struct vswap_region regions[2];
	uint32_t cur[KW_PAGES];	  /* the version each guest page holds now */
	bool ballooned[KW_PAGES]; /* being removed: the guest keeps off them */
	enum vswap_durability mode;
	enum vswap_enable_mode enable; /* copy and protect, in turn */
	struct vswap_store *store;
	struct vswap_handler *h;
	uint64_t rng;
	unsigned cycle;
	uint64_t phase_t0; /* when the current phase began (ns) */
	pthread_mutex_t log_lock;
	char last_log[256]; /* the library's last error, for the failure message */
};

static uint64_t kw_rand(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return mix(*s);
}

static void kw_log(void *ctx, enum vswap_log_level level, const char *msg)
{
	struct kw *k = ctx;

	if (level > VSWAP_LOG_WARN)
		return;
	pthread_mutex_lock(&k->log_lock);
	snprintf(k->last_log, sizeof(k->last_log), "%s", msg);
	pthread_mutex_unlock(&k->log_lock);
	if (getenv("VSWAP_TEST_VERBOSE"))
		fprintf(stderr, "kill child %d: %s\n", (int)getpid(), msg);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Enter phase @p; the time of the one it ends is added up (for the report:
 * where a cycle spends its time is where random kills land). */
static void set_phase(struct kw *k, enum kw_phase p)
{
	uint8_t b = (uint8_t)p;
	uint64_t t = now_ns();

	if (k->phase_t0)
		atomic_fetch_add(&k->sh->phase_ns[atomic_load(&k->sh->phase)], t - k->phase_t0);
	k->phase_t0 = t;
	atomic_store(&k->sh->phase, (uint32_t)p);
	if (k->a->progress_fd >= 0 && write(k->a->progress_fd, &b, 1) < 0) {
		/* A full pipe only loses a progress mark; the phase is in sh. */
	}
}

/* Record the first message; later ones only count. */
static void note(struct kw *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct kw *k, const char *fmt, ...)
{
	static atomic_flag taken = ATOMIC_FLAG_INIT;
	va_list ap;

	if (atomic_flag_test_and_set(&taken))
		return;
	va_start(ap, fmt);
	vsnprintf(k->sh->msg, sizeof(k->sh->msg), fmt, ap);
	va_end(ap);
}

/* An error of the workload (not of the data): the child stops. */
static int fail(struct kw *k, const char *what, int err)
{
	note(k, "child %d, cycle %u, %s durability, phase %s: %s: %s (last log: %s)", (int)getpid(),
	     k->cycle, vswap_durability_name(k->mode), kw_phase_name(atomic_load(&k->sh->phase)),
	     what, vswap_strerror(err), k->last_log);
	atomic_store(&k->sh->failed, 1);
	return err ? err : -EPROTO;
}

/* ---- the guest --------------------------------------------------------- */

static uint8_t *guest_page(const struct kw *k, uint64_t p)
{
	if (p < KW_REGION0_PAGES)
		return (uint8_t *)k->regions[0].addr + p * k->ps;
	return (uint8_t *)k->regions[1].addr + (p - KW_REGION0_PAGES) * k->ps;
}

/* Give page @p its next version: announced in the shared block first, so
 * that every version the disk can hold is known to the parent. */
static void guest_write(struct kw *k, uint64_t p)
{
	uint32_t v = atomic_fetch_add(&k->sh->vmax[p], 1) + 1;

	kw_page_fill(guest_page(k, p), k->ps, p, v);
	k->cur[p] = v;
}

static void guest_zero(struct kw *k, uint64_t p)
{
	memset(guest_page(k, p), 0, k->ps);
	k->cur[p] = 0;
}

static void guest_check(struct kw *k, uint64_t p)
{
	int64_t got = kw_page_version(guest_page(k, p), k->ps, p);

	if (got == (int64_t)k->cur[p])
		return;
	atomic_fetch_add(&k->sh->violations, 1);
	note(k,
	     "child %d, cycle %u, %s durability, phase %s: guest page %llu holds version %lld, "
	     "wrote %u",
	     (int)getpid(), k->cycle, vswap_durability_name(k->mode),
	     kw_phase_name(atomic_load(&k->sh->phase)), (unsigned long long)p, (long long)got,
	     k->cur[p]);
}

enum job_kind { JOB_WRITE, JOB_TOUCH, JOB_VERIFY };

/* One guest thread's share of a job: pages [first, end). */
struct job {
	struct kw *k;
	enum job_kind kind;
	uint64_t first, end;
	unsigned read_pm, write_pm; /* touches: pages per thousand */
	uint64_t rng;
};

/* Half the pages get a new version (one in eight becomes zero); the rest
 * keep theirs, so trim finds clean pages that match their stale slot. */
static void job_write(struct job *j)
{
	for (uint64_t p = j->first; p < j->end; p++) {
		uint64_t r = kw_rand(&j->rng);

		if (r % 2)
			continue;
		if ((r >> 8) % 8 == 0)
			guest_zero(j->k, p);
		else
			guest_write(j->k, p);
	}
}

/* Random reads (checked) and writes: each one may fault. */
static void job_touch(struct job *j)
{
	for (uint64_t p = j->first; p < j->end; p++) {
		unsigned r = (unsigned)(kw_rand(&j->rng) % 1000);

		if (j->k->ballooned[p])
			continue;
		if (r < j->read_pm)
			guest_check(j->k, p);
		else if (r < j->read_pm + j->write_pm)
			guest_write(j->k, p);
	}
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	if (j->kind == JOB_WRITE)
		job_write(j);
	else if (j->kind == JOB_TOUCH)
		job_touch(j);
	else
		for (uint64_t p = j->first; p < j->end; p++)
			guest_check(j->k, p);
	return NULL;
}

struct guest_run {
	pthread_t tid[KW_THREADS];
	struct job jobs[KW_THREADS];
	unsigned started;
};

/* Start @kind on the guest threads, each on its share of the pages. */
static int guest_start(struct kw *k, struct guest_run *g, enum job_kind kind, unsigned read_pm,
		       unsigned write_pm)
{
	int err = 0;

	g->started = 0;
	for (unsigned t = 0; t < KW_THREADS; t++) {
		g->jobs[t] = (struct job){k,
					  kind,
					  (uint64_t)KW_PAGES * t / KW_THREADS,
					  (uint64_t)KW_PAGES * (t + 1) / KW_THREADS,
					  read_pm,
					  write_pm,
					  kw_rand(&k->rng)};
		err = pthread_create(&g->tid[t], NULL, job_main, &g->jobs[t]);
		if (err)
			break;
		g->started++;
	}
	return err ? fail(k, "pthread_create", -err) : 0;
}

static void guest_join(struct guest_run *g)
{
	for (unsigned t = 0; t < g->started; t++)
		pthread_join(g->tid[t], NULL);
}

static int guest_run(struct kw *k, enum job_kind kind, unsigned read_pm, unsigned write_pm)
{
	struct guest_run g;
	int err = guest_start(k, &g, kind, read_pm, write_pm);

	guest_join(&g);
	return err;
}

/* Pick the ranges a balloon takes, inside one region each (the regions are
 * separate mappings); the guest keeps off them from here on. */
static void balloon_pick(struct kw *k, uint64_t *first)
{
	for (int i = 0; i < KW_BALLOON_RANGES; i++) {
		first[i] = kw_rand(&k->rng) % (KW_PAGES - KW_BALLOON_PAGES);
		if (first[i] < KW_REGION0_PAGES && first[i] + KW_BALLOON_PAGES > KW_REGION0_PAGES)
			first[i] = KW_REGION0_PAGES;
		for (uint64_t p = first[i]; p < first[i] + KW_BALLOON_PAGES; p++)
			k->ballooned[p] = true;
	}
}

/*
 * Balloon: give ranges back to the host (MADV_REMOVE: remove events) while
 * the guest keeps running and faulting elsewhere, as a balloon inflates
 * under a live guest.  The removed pages read zero afterwards.
 */
static int balloon(struct kw *k)
{
	uint64_t first[KW_BALLOON_RANGES];
	struct guest_run g;
	int err;

	balloon_pick(k, first);
	err = guest_start(k, &g, JOB_TOUCH, 30, 30);
	for (int i = 0; !err && i < KW_BALLOON_RANGES; i++)
		if (madvise(guest_page(k, first[i]), (size_t)KW_BALLOON_PAGES * k->ps, MADV_REMOVE))
			err = fail(k, "madvise(MADV_REMOVE)", -errno);
	guest_join(&g);
	for (uint64_t p = 0; p < KW_PAGES; p++)
		if (k->ballooned[p]) {
			k->ballooned[p] = false;
			k->cur[p] = 0;
		}
	return err;
}

/* Two regions from one memfd, each its own mapping with a gap between. */
static int guest_create(struct kw *k)
{
	static const size_t pages[2] = {KW_REGION0_PAGES, KW_REGION1_PAGES};
	uint8_t *at;
	off_t off = 0;

	k->memfd = memfd_create("vswap-kill-guest", MFD_CLOEXEC);
	if (k->memfd < 0 || ftruncate(k->memfd, (off_t)KW_PAGES * k->ps))
		return fail(k, "memfd", -errno);
	k->reserve_len = (size_t)(KW_PAGES + 3) * k->ps;
	k->reserve = mmap(NULL, k->reserve_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (k->reserve == MAP_FAILED)
		return fail(k, "mmap reserve", -errno);
	at = k->reserve + k->ps;
	for (int i = 0; i < 2; i++) {
		size_t len = pages[i] * k->ps;
		void *m =
		    mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, k->memfd, off);

		if (m == MAP_FAILED)
			return fail(k, "mmap region", -errno);
		k->regions[i] = (struct vswap_region){m, len, k->memfd, off};
		off += (off_t)len;
		at += len + k->ps;
	}
	return 0;
}

/* ---- the store and the handler ----------------------------------------- */

static struct vswap_store_opts store_opts(struct kw *k)
{
	return (struct vswap_store_opts){.durability = k->mode,
					 .staging_dir = k->a->staging_dir,
					 .log = kw_log,
					 .log_ctx = k,
					 .log_level = VSWAP_LOG_WARN};
}

/*
 * A repaired store of a dead guest: its pages belong to memory that died
 * with the killed child, so the new guest (zeros) drops them first, as a
 * VMM booting a fresh guest over an old store would.  The store's files,
 * allocator and index are reused as the repair left them.
 */
static int store_reset(struct kw *k)
{
	uint64_t total = vswap_store_total_pages(k->store);
	struct vswap_store_stats st;
	int err;

	if (!total)
		return 0; /* killed before a handler set its regions */
	if ((err = vswap_store_stage_clear(k->store, 0, total)) < 0)
		return fail(k, "stage_clear of the old guest", err);
	if ((err = (int)vswap_store_free(k->store, 0, total)) < 0)
		return fail(k, "free of the old guest", err);
	if ((err = vswap_store_commit(k->store)) < 0)
		return fail(k, "commit of the reset", err);
	if ((err = vswap_store_stats(k->store, &st)) < 0)
		return fail(k, "stats", err);
	if (st.pages_present || st.pages_stale || st.pages_lost || st.pages_staged)
		return fail(k, "pages left after the reset", -ENOTEMPTY);
	return 0;
}

static int store_start(struct kw *k, bool create)
{
	struct vswap_store_opts o = store_opts(k);
	int err;

	atomic_store(&k->sh->durability, (uint32_t)k->mode);
	set_phase(k, create ? KW_CREATE : KW_OPEN);
	err = create ? vswap_store_create(k->a->path, &o, &k->store)
		     : vswap_store_open(k->a->path, &o, &k->store);
	if (err)
		return fail(k, create ? "store create" : "store open", err);
	return create ? 0 : store_reset(k);
}

static int handler_start(struct kw *k)
{
	struct vswap_handler_opts o = {
	    .store = k->store,
	    .chunk_pages = 256, /* 4 swap-out chunks: commits to land in, few syncs */
	    .trim_batch_pages = 128,
	    .workers = 2,
	    .log = kw_log,
	    .log_ctx = k,
	    .log_level = VSWAP_LOG_WARN,
	    .enable_mode = k->enable,
	};
	int err;

	atomic_store(&k->sh->enable_mode, (uint32_t)k->enable);
	set_phase(k, KW_HANDLER);
	err = vswap_handler_create(k->regions, 2, &o, &k->h);
	return err ? fail(k, "handler create", err) : 0;
}

static int wait_state(struct kw *k, enum vswap_state st, const char *what)
{
	int err = vswap_handler_wait_state(k->h, st, KW_WAIT_MS);

	return err ? fail(k, what, err) : 0;
}

/* Destroy the handler (swaps everything in), close the store cleanly and
 * reopen it in the next durability mode. */
static int reopen(struct kw *k)
{
	int err;

	set_phase(k, KW_REOPEN);
	err = vswap_handler_destroy(k->h);
	k->h = NULL;
	if (err)
		return fail(k, "handler destroy", err);
	err = vswap_store_close(k->store);
	k->store = NULL;
	if (err)
		return fail(k, "store close", err);
	k->mode = (enum vswap_durability)((k->mode + 1) % 3);
	k->enable = k->enable == VSWAP_ENABLE_COPY ? VSWAP_ENABLE_PROTECT : VSWAP_ENABLE_COPY;
	if ((err = store_start(k, false)) || (err = handler_start(k)))
		return err;
	return 0;
}

/* ---- one cycle ----------------------------------------------------------- */

static int swap_phase(struct kw *k)
{
	int err;

	set_phase(k, KW_ENABLE);
	if ((err = vswap_handler_enable(k->h)))
		return fail(k, "enable", err);
	set_phase(k, KW_TOUCH_STAGING);
	if ((err = guest_run(k, JOB_TOUCH, 50, 0)))
		return err;
	/* Trim and swap-out run in the background while the guest runs. */
	set_phase(k, KW_TRIM);
	if ((err = vswap_handler_trim(k->h)))
		return fail(k, "trim", err);
	if ((err = guest_run(k, JOB_TOUCH, 20, 10)) ||
	    (err = wait_state(k, VSWAP_STATE_PENDING, "trim")))
		return err;
	set_phase(k, KW_SWAP_OUT);
	if ((err = vswap_handler_swap_out(k->h)))
		return fail(k, "swap_out", err);
	if ((err = guest_run(k, JOB_TOUCH, 20, 10)) ||
	    (err = wait_state(k, VSWAP_STATE_ACTIVE, "swap-out")))
		return err;
	return 0;
}

static int cycle(struct kw *k)
{
	int err;

	set_phase(k, KW_WRITE);
	if ((err = guest_run(k, JOB_WRITE, 0, 0)) || (err = swap_phase(k)))
		return err;
	set_phase(k, KW_TOUCH_FILE);
	if ((err = guest_run(k, JOB_TOUCH, 100, 50)))
		return err;
	set_phase(k, KW_BALLOON);
	if ((err = balloon(k)))
		return err;
	set_phase(k, KW_DISABLE);
	if ((err = vswap_handler_disable(k->h, false)))
		return fail(k, "disable", err);
	if ((err = wait_state(k, VSWAP_STATE_READY, "disable")))
		return err;
	set_phase(k, KW_VERIFY);
	return guest_run(k, JOB_VERIFY, 0, 0);
}

static int run_cycles(struct kw *k)
{
	int err;

	for (k->cycle = 1; !k->a->max_cycles || k->cycle <= k->a->max_cycles; k->cycle++) {
		if ((err = cycle(k)))
			return err;
		atomic_fetch_add(&k->sh->cycles, 1);
		if (k->cycle % KW_REOPEN_EVERY == 0 && (err = reopen(k)))
			return err;
	}
	return 0;
}

int kw_child_run(const struct kw_child_args *a)
{
	static struct kw k; /* one per (forked) process; too big for the stack */
	int err;

	k = (struct kw){.a = a,
			.sh = a->sh,
			.ps = (uint32_t)sysconf(_SC_PAGESIZE),
			.memfd = -1,
			.mode = (enum vswap_durability)(a->seed % 3),
			.rng = a->seed,
			.enable = (a->seed >> 2) & 1 ? VSWAP_ENABLE_COPY : VSWAP_ENABLE_PROTECT};
	pthread_mutex_init(&k.log_lock, NULL);
	if ((err = guest_create(&k)) || (err = store_start(&k, a->create)) ||
	    (err = handler_start(&k)) || (err = run_cycles(&k)))
		return 1;
	/* Only a bounded run gets here: leave cleanly (the control run). */
	set_phase(&k, KW_REOPEN); /* closes the books on the last phase */
	if ((err = vswap_handler_destroy(k.h)))
		return fail(&k, "handler destroy", err), 1;
	if ((err = vswap_store_close(k.store)))
		return fail(&k, "store close", err), 1;
	return atomic_load(&k.sh->violations) ? 2 : 0;
}
