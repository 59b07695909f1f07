/* SPDX-License-Identifier: MIT */
/*
 * vswap-demo: a small VMM-like program that shows vswap doing its job.
 *
 *   vswap-demo [--size BYTES] [--store PATH] [--keep]
 *              [--durability full|batch|none]
 *              [--stop-after enable|trim|swap-out] [--cycles N] [--json]
 *
 * Guest memory is a memfd mapped shared, as a VMM maps guest RAM.  Writer
 * threads (the "vCPUs") fill pages with patterns they can check later: some
 * pages zero, some written twice.  The demo then drives the handler through
 * enable -> trim -> swap out -> guest touches a random subset (faults from
 * staging and from the swap file) -> balloon removes -> disable, --cycles
 * times, and checks every byte of the guest against what it last wrote
 * (removed ranges read zero).  After the first swap-out, while the store
 * holds the guest's pages, vswap-fsck -n audits it (another process, as an
 * operator would run it on a store in use); at the end the closed store is
 * audited again.  Exit 0 only if every byte verified and both audits are
 * clean, 1 otherwise, 2 on a usage error, 130 when a signal stopped it.
 *
 * Files: the demo removes only what it created.  With --store PATH over an
 * existing file (or a store another demo is creating) the create fails and
 * nothing is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/recovery.h>
#include <vswap/store.h>

#include "tools/bench/common.h"
#include "tools/common/cli.h"
#include "tools/common/json.h"
#include "util/array.h"

extern char **environ;

/* The exit status of a demo stopped by SIGINT, SIGTERM or SIGHUP (after its
 * cleanup), whichever it was: what vswap-demo(1) documents. */
#define EXIT_INTERRUPTED 130

#define MAX_CYCLES 1000
#define MAX_THREADS 16
#define BALLOON_RANGES 4

enum stage {
	ST_WRITE,
	ST_ENABLE,
	ST_TOUCH_STAGING,
	ST_TRIM,
	ST_SWAP_OUT,
	ST_TOUCH,
	ST_BALLOON,
	ST_DISABLE,
	ST_VERIFY,
	ST_COUNT
};

static const char *const stage_name[ST_COUNT] = {
    "write", "enable", "touch-staging", "trim", "swap-out", "touch", "balloon", "disable", "verify",
};

/* What one stage did, for the progress line, the summary and the JSON. */
struct stage_stat {
	double secs;
	uint64_t pages; /* the stage's main count (moved, trimmed, written ...) */
	uint64_t bytes; /* bytes moved, for GB/s; 0 when a rate means nothing */
};

struct cycle_stat {
	struct stage_stat st[ST_COUNT];
	uint64_t written, zero_written, written_twice;
	uint64_t from_staging, from_file, zero_filled;
	uint64_t touched, rewritten, removed, bad_pages;
};

/* One audit: vswap-fsck's exit code and what it verified. */
struct audit_result {
	bool ran;
	int exit_code;
	uint64_t pages, bytes;
	uint64_t problems;
};

struct demo {
	/* options */
	uint64_t size;
	const char *store_arg;
	const char *stop_after;
	enum vswap_durability durability;
	unsigned cycles;
	bool keep, json;

	/* the guest */
	uint8_t *mem;
	int memfd;
	uint64_t pages;
	uint32_t ps;
	uint32_t *ver; /* the version each page last got: 0 = zero */
	unsigned threads;
	uint64_t seed;

	/* the store and the handler */
	char tmpdir[64];
	char path[PATH_MAX];
	bool created; /* the store's files are ours to remove */
	struct vswap_store *store;
	struct vswap_handler *h;
	struct vswap_status status; /* the last one read */
	char status_json[1024];

	sigset_t stop, old; /* the signals held, and the mask before */
	struct cycle_stat cyc[MAX_CYCLES];
	unsigned done_cycles;
	uint64_t bad_pages;
	struct audit_result live;  /* vswap-fsck -n while the store held pages */
	struct audit_result final; /* the closed store */
};

/* ---- the guest's patterns ------------------------------------------------ */

/* Word @i of page @p at version @v: distinct for every (page, version). */
static inline uint64_t pattern_seed(uint64_t p, uint32_t v)
{
	uint64_t s = p * 0x9e3779b97f4a7c15ull ^ ((uint64_t)v << 40) ^ 0x7673776170ull;

	return bench_rand(&s) | 1;
}

static void page_fill(uint8_t *page, uint32_t ps, uint64_t p, uint32_t v)
{
	uint64_t *w = (uint64_t *)page, s = pattern_seed(p, v);
	uint32_t i;

	if (!v) {
		memset(page, 0, ps);
		return;
	}
	for (i = 0; i < ps / 8; i++)
		w[i] = s + i * 0xd1b54a32d192ed03ull;
}

static bool page_check(const uint8_t *page, uint32_t ps, uint64_t p, uint32_t v)
{
	const uint64_t *w = (const uint64_t *)page;
	uint64_t s = pattern_seed(p, v);
	uint32_t i;

	for (i = 0; i < ps / 8; i++)
		if (w[i] != (v ? s + i * 0xd1b54a32d192ed03ull : 0))
			return false;
	return true;
}

/* ---- guest threads ------------------------------------------------------ */

enum job_kind { JOB_WRITE, JOB_TOUCH_READ, JOB_TOUCH, JOB_VERIFY };

struct job {
	struct demo *d;
	enum job_kind kind;
	unsigned cycle, index;
	uint64_t first, end; /* the thread's pages: the vCPU's share of RAM */
	uint64_t permille;   /* touches: pages per thousand */
	uint64_t seed;
	/* results */
	uint64_t written, zero_written, twice, touched, rewritten, bad;
};

static void job_bad(struct job *j, uint64_t p)
{
	/* Report the first few, not thousands. */
	if (j->bad++ < 5)
		fprintf(stderr, "vswap-demo: page %llu does not hold version %u\n",
			(unsigned long long)p, j->d->ver[p]);
}

/*
 * Write: in cycle 1 every page, later a quarter (so trim finds clean pages
 * to drop without a write).  One page in eight becomes zero; one written
 * page in eight is written again with the next version, as a guest that
 * changes its mind.
 */
static void job_write(struct job *j)
{
	struct demo *d = j->d;
	uint64_t p;

	for (p = j->first; p < j->end; p++) {
		uint64_t r = bench_rand(&j->seed);
		uint32_t v;

		if (j->cycle > 1 && r % 4)
			continue;
		r >>= 8;
		v = r % 8 == 0 ? 0 : j->cycle * 4 + 1;
		page_fill(d->mem + p * d->ps, d->ps, p, v);
		d->ver[p] = v;
		j->written++;
		j->zero_written += v == 0;
	}
	for (p = j->first; p < j->end; p++) {
		if (!d->ver[p] || d->ver[p] != j->cycle * 4 + 1 || bench_rand(&j->seed) % 8)
			continue;
		d->ver[p]++;
		page_fill(d->mem + p * d->ps, d->ps, p, d->ver[p]);
		j->twice++;
	}
}

/* Touch a random @permille of the pages: read and check each; with @write
 * also give every other one a new version. */
static void job_touch(struct job *j, bool write)
{
	struct demo *d = j->d;
	uint64_t p;

	for (p = j->first; p < j->end; p++) {
		uint8_t *page = d->mem + p * d->ps;

		if (bench_rand(&j->seed) % 1000 >= j->permille)
			continue;
		j->touched++;
		if (!page_check(page, d->ps, p, d->ver[p]))
			job_bad(j, p);
		if (write && j->touched % 2) {
			d->ver[p] = j->cycle * 4 + 3;
			page_fill(page, d->ps, p, d->ver[p]);
			j->rewritten++;
		}
	}
}

static void job_verify(struct job *j)
{
	struct demo *d = j->d;
	uint64_t p;

	for (p = j->first; p < j->end; p++)
		if (!page_check(d->mem + p * d->ps, d->ps, p, d->ver[p]))
			job_bad(j, p);
	j->touched = j->end - j->first;
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	switch (j->kind) {
	case JOB_WRITE:
		job_write(j);
		break;
	case JOB_TOUCH_READ:
		job_touch(j, false);
		break;
	case JOB_TOUCH:
		job_touch(j, true);
		break;
	case JOB_VERIFY:
		job_verify(j);
		break;
	}
	return NULL;
}

/* Run @kind on every guest thread, each on its share of the pages, and add
 * up what they did into @sum. */
static int guest_run(struct demo *d, enum job_kind kind, unsigned cycle, uint64_t permille,
		     struct job *sum)
{
	pthread_t tid[MAX_THREADS];
	struct job jobs[MAX_THREADS];
	unsigned t, started = 0;
	int err = 0;

	memset(sum, 0, sizeof(*sum));
	for (t = 0; t < d->threads; t++) {
		jobs[t] = (struct job){
		    .d = d,
		    .kind = kind,
		    .cycle = cycle,
		    .index = t,
		    .first = d->pages * t / d->threads,
		    .end = d->pages * (t + 1) / d->threads,
		    .permille = permille,
		    .seed = d->seed ^ ((uint64_t)cycle << 32) ^ ((uint64_t)kind << 48) ^ t,
		};
		err = -pthread_create(&tid[t], NULL, job_main, &jobs[t]);
		if (err)
			break;
		started++;
	}
	for (t = 0; t < started; t++) {
		pthread_join(tid[t], NULL);
		sum->written += jobs[t].written;
		sum->zero_written += jobs[t].zero_written;
		sum->twice += jobs[t].twice;
		sum->touched += jobs[t].touched;
		sum->rewritten += jobs[t].rewritten;
		sum->bad += jobs[t].bad;
	}
	return err;
}

/*
 * Balloon: remove a few 1 MiB ranges with MADV_REMOVE, as a balloon device
 * gives guest pages back to the host.  The handler sees REMOVE events and
 * frees the pages' staging copies and slots; the guest then reads zeros.
 */
static int balloon(struct demo *d, unsigned cycle, uint64_t *removed)
{
	uint64_t span = BENCH_MIB / d->ps, seed = d->seed ^ cycle, i, p;

	*removed = 0;
	if (d->pages < span * 4)
		return 0;
	for (i = 0; i < BALLOON_RANGES; i++) {
		uint64_t first = bench_rand(&seed) % (d->pages / span) * span;

		if (madvise(d->mem + first * d->ps, span * d->ps, MADV_REMOVE))
			return -errno;
		for (p = first; p < first + span; p++)
			d->ver[p] = 0;
		*removed += span;
	}
	return 0;
}

/* ---- the monitor side --------------------------------------------------- */

static int status(struct demo *d)
{
	int err = vswap_handler_status(d->h, &d->status);

	if (!err && vswap_status_to_json(&d->status, d->status_json, sizeof(d->status_json)) < 0)
		snprintf(d->status_json, sizeof(d->status_json), "null");
	return err;
}

static bool interrupted(const struct demo *d);

/*
 * Wait for @st.  The wait ends early when the handler fails (a failed
 * swap-out, ENOSPC for one, leaves it in Failed: @st cannot come) or a
 * terminating signal is pending (-EINTR), and after WAIT_LIMIT_MS.  The
 * handler has no wait for "@st or Failed", so the wait is cut in slices.
 */
#define WAIT_SLICE_MS 100
#define WAIT_LIMIT_MS 600000
static int wait_for(struct demo *d, enum vswap_state st, const char *what)
{
	int err = -ETIMEDOUT;

	for (int waited = 0; waited < WAIT_LIMIT_MS; waited += WAIT_SLICE_MS) {
		err = vswap_handler_wait_state(d->h, st, WAIT_SLICE_MS);
		if (err != -ETIMEDOUT)
			break;
		status(d);
		if (d->status.state == VSWAP_STATE_FAILED)
			break;
		if (interrupted(d))
			return -EINTR;
	}
	status(d);
	if (!err && d->status.state == st)
		return 0;
	if (d->status.state == VSWAP_STATE_FAILED)
		err = d->status.last_error ? d->status.last_error : -EIO;
	else if (!err)
		err = -EPROTO;
	fprintf(stderr, "vswap-demo: %s: waiting for %s: %s (state %s, last error %s)\n", what,
		vswap_state_name(st), vswap_strerror(err), vswap_state_name(d->status.state),
		vswap_strerror(d->status.last_error));
	return err;
}

static void progress(const struct demo *d, enum stage s, const struct stage_stat *st,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void progress(const struct demo *d, enum stage s, const struct stage_stat *st,
		     const char *fmt, ...)
{
	FILE *f = d->json ? stderr : stdout;
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(f, "  %-13s %-52s %7.3f s", stage_name[s], what, st->secs);
	if (st->bytes && st->secs > 0)
		fprintf(f, "  %6.2f GB/s", bench_gbps(st->bytes, st->secs));
	fputc('\n', f);
	fflush(f);
}

static bool interrupted(const struct demo *d)
{
	sigset_t pend;

	int sig;

	if (sigpending(&pend))
		return false;
	for (sig = 1; sig < NSIG; sig++)
		if (sigismember(&d->stop, sig) == 1 && sigismember(&pend, sig) == 1)
			return true;
	return false;
}

static bool stop_here(const struct demo *d, unsigned cycle, const char *stage)
{
	return cycle == 1 && d->stop_after && !strcmp(d->stop_after, stage);
}

/* The fault counters reset at every move to staging; a delta across a
 * stage says where that stage's faults were served from. */
struct faults {
	uint64_t staging, file, zero;
};

static struct faults faults_now(struct demo *d)
{
	status(d);
	return (struct faults){d->status.metrics.copied_from_staging_pages,
			       d->status.metrics.copied_from_file_pages,
			       d->status.metrics.zeroed_pages};
}

/* ---- the audit of the store in use ------------------------------------------ */

/* The path of the tool @name installed beside this program. */
static int sibling_tool(const char *name, char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n < 0)
		return -errno;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	if ((size_t)snprintf(buf, len, "%s/%s", self, name) >= len)
		return -ENAMETOOLONG;
	return access(buf, X_OK) == 0 ? 0 : -errno;
}

/* The number after "@key": in vswap-fsck's JSON report, or -1. */
static long long report_number(const char *doc, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(doc, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static uint64_t report_count(const char *doc, const char *needle)
{
	uint64_t n = 0;
	for (const char *p = doc; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* What read_all() keeps of a child's output. */
#define READ_ALL_MAX (4u << 20)

/* Read all of @fd into a NUL-terminated buffer (at most READ_ALL_MAX kept;
 * the rest, or what memory cannot hold, is read and dropped so that the
 * writer never blocks).  NULL only if not even the first chunk fits. */
static char *read_all(int fd)
{
	char *buf = NULL, chunk[65536];
	size_t cap = 0, len = 0;
	if (ARRAY_RESERVE(buf, cap, sizeof(chunk), sizeof(chunk)))
		return NULL;
	for (;;) {
		ssize_t k = read(fd, chunk, sizeof(chunk));
		if (k == 0)
			break;
		if (k < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		size_t want = len + (size_t)k + 1; /* the NUL too */
		if (want > cap && want <= READ_ALL_MAX)
			(void)ARRAY_RESERVE(buf, cap, want, sizeof(chunk)); /* else dropped */
		size_t keep = want <= cap ? (size_t)k : cap - len - 1;
		memcpy(buf + len, chunk, keep);
		len += keep;
	}
	buf[len] = '\0';
	return buf;
}

/*
 * vswap-fsck -n on the store while the handler has it open, holding the
 * guest's pages: what an operator would run.  Another process, as it must
 * be (LMDB allows one open of an environment per process).  The child gets
 * the signal mask the demo started with, so a Ctrl-C cancels it too.
 */
static int audit_live(struct demo *d)
{
	char fsck[PATH_MAX];
	int err = sibling_tool("vswap-fsck", fsck, sizeof(fsck));

	if (err) {
		fprintf(stderr, "vswap-demo: no vswap-fsck beside this program to audit with: %s\n",
			strerror(-err));
		return err;
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawnattr_init(&at);
	posix_spawnattr_setsigmask(&at, &d->old);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	char *argv[] = {fsck, "-n", "--json", "--no-progress", d->path, NULL};
	pid_t pid;
	err = -posix_spawn(&pid, fsck, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(pfd[1]);
	if (err) {
		close(pfd[0]);
		fprintf(stderr, "vswap-demo: %s: %s\n", fsck, strerror(-err));
		return err;
	}
	char *report = read_all(pfd[0]);
	close(pfd[0]);
	int ws;
	while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
		;
	d->live.ran = true;
	d->live.exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : VSWAP_FSCK_EXIT_OPERATIONAL;
	if (report) {
		long long pages = report_number(report, "pages_checked");
		long long bytes = report_number(report, "bytes_verified");
		d->live.pages = pages > 0 ? (uint64_t)pages : 0;
		d->live.bytes = bytes > 0 ? (uint64_t)bytes : 0;
		d->live.problems = report_count(report, "\"kind\":");
		if (d->live.exit_code)
			fprintf(stderr, "vswap-demo: vswap-fsck -n %s exited %d: %s", d->path,
				d->live.exit_code, report);
	}
	free(report);
	return 0;
}

/*
 * One cycle.  Returns 1 when --stop-after stopped it, 0 when it ran to the
 * end, or a negative errno.
 */
static int cycle(struct demo *d, unsigned c)
{
	struct cycle_stat *cs = &d->cyc[c - 1];
	struct stage_stat *st = cs->st;
	struct faults f0, f1;
	struct job sum;
	double t0;
	int err;

	/* The guest runs and writes its memory. */
	t0 = bench_now();
	err = guest_run(d, JOB_WRITE, c, 0, &sum);
	st[ST_WRITE] = (struct stage_stat){bench_now() - t0, sum.written, sum.written * d->ps};
	cs->written = sum.written;
	cs->zero_written = sum.zero_written;
	cs->written_twice = sum.twice;
	if (err)
		return err;
	progress(d, ST_WRITE, &st[ST_WRITE], "%llu pages (%llu zero), %llu written twice",
		 (unsigned long long)sum.written, (unsigned long long)sum.zero_written,
		 (unsigned long long)sum.twice);
	if (interrupted(d))
		return -EINTR;

	/* Enable: the guest is paused (no writer runs) while pages move. */
	t0 = bench_now();
	err = vswap_handler_enable(d->h);
	st[ST_ENABLE].secs = bench_now() - t0;
	if (err) {
		fprintf(stderr, "vswap-demo: enable: %s\n", vswap_strerror(err));
		return err;
	}
	status(d);
	st[ST_ENABLE].pages = d->status.transition.pages;
	st[ST_ENABLE].bytes = st[ST_ENABLE].pages * d->ps;
	progress(d, ST_ENABLE, &st[ST_ENABLE], "%llu pages moved to staging (%llu ms)",
		 (unsigned long long)st[ST_ENABLE].pages,
		 (unsigned long long)d->status.transition.time_ms);
	if (interrupted(d))
		return -EINTR;
	if (stop_here(d, c, "enable"))
		return 1;

	/* The guest runs again: its first touches fault from staging. */
	f0 = faults_now(d);
	t0 = bench_now();
	err = guest_run(d, JOB_TOUCH_READ, c, 20, &sum);
	st[ST_TOUCH_STAGING] = (struct stage_stat){bench_now() - t0, sum.touched, 0};
	f1 = faults_now(d);
	cs->from_staging += f1.staging - f0.staging;
	cs->zero_filled += f1.zero - f0.zero;
	cs->bad_pages += sum.bad;
	if (err)
		return err;
	progress(d, ST_TOUCH_STAGING, &st[ST_TOUCH_STAGING],
		 "%llu pages read: %llu from staging, %llu zero-filled",
		 (unsigned long long)sum.touched, (unsigned long long)(f1.staging - f0.staging),
		 (unsigned long long)(f1.zero - f0.zero));
	if (interrupted(d))
		return -EINTR;

	/* Trim: zero pages and pages identical to their stale slot. */
	t0 = bench_now();
	err = vswap_handler_trim(d->h);
	if (!err)
		err = wait_for(d, VSWAP_STATE_PENDING, "trim");
	st[ST_TRIM].secs = bench_now() - t0;
	if (err)
		return err;
	st[ST_TRIM].pages = d->status.transition.pages;
	progress(d, ST_TRIM, &st[ST_TRIM], "%llu pages trimmed (zero or unchanged)",
		 (unsigned long long)st[ST_TRIM].pages);
	if (interrupted(d))
		return -EINTR;
	if (stop_here(d, c, "trim"))
		return 1;

	/* Swap out: staging -> the store, checksummed, indexed. */
	t0 = bench_now();
	err = vswap_handler_swap_out(d->h);
	if (!err)
		err = wait_for(d, VSWAP_STATE_ACTIVE, "swap-out");
	st[ST_SWAP_OUT].secs = bench_now() - t0;
	if (err)
		return err;
	st[ST_SWAP_OUT].pages = d->status.transition.pages;
	st[ST_SWAP_OUT].bytes = st[ST_SWAP_OUT].pages * d->ps;
	progress(d, ST_SWAP_OUT, &st[ST_SWAP_OUT], "%llu pages written to the store (%llu ms)",
		 (unsigned long long)st[ST_SWAP_OUT].pages,
		 (unsigned long long)d->status.transition.time_ms);
	if (interrupted(d))
		return -EINTR;
	if (c == 1) {
		/* The guest's pages are in the store now: the audit has bytes
		 * to verify (after the disable it would find none). */
		t0 = bench_now();
		err = audit_live(d);
		if (err)
			return err;
		char what[96];
		snprintf(what, sizeof(what), "vswap-fsck -n of the store in use: %s, %llu pages",
			 d->live.exit_code ? "NOT CLEAN" : "clean",
			 (unsigned long long)d->live.pages);
		fprintf(d->json ? stderr : stdout, "  %-13s %-52s %7.3f s\n", "audit", what,
			bench_now() - t0);
	}
	if (stop_here(d, c, "swap-out"))
		return 1;

	/* The guest touches 5%: faults from the swap file (verified) or zero. */
	f0 = faults_now(d);
	t0 = bench_now();
	err = guest_run(d, JOB_TOUCH, c, 50, &sum);
	st[ST_TOUCH] = (struct stage_stat){bench_now() - t0, sum.touched, 0};
	f1 = faults_now(d);
	cs->touched = sum.touched;
	cs->rewritten = sum.rewritten;
	cs->from_file += f1.file - f0.file;
	cs->from_staging += f1.staging - f0.staging;
	cs->zero_filled += f1.zero - f0.zero;
	cs->bad_pages += sum.bad;
	if (err)
		return err;
	progress(d, ST_TOUCH, &st[ST_TOUCH],
		 "%llu pages: %llu from file, %llu zero-filled, %llu rewritten",
		 (unsigned long long)sum.touched, (unsigned long long)(f1.file - f0.file),
		 (unsigned long long)(f1.zero - f0.zero), (unsigned long long)sum.rewritten);
	if (interrupted(d))
		return -EINTR;

	/* Balloon: ranges given back to the host. */
	t0 = bench_now();
	err = balloon(d, c, &cs->removed);
	st[ST_BALLOON] = (struct stage_stat){bench_now() - t0, cs->removed, 0};
	if (err) {
		fprintf(stderr, "vswap-demo: MADV_REMOVE: %s\n", strerror(-err));
		return err;
	}
	progress(d, ST_BALLOON, &st[ST_BALLOON], "%u ranges, %llu pages removed", BALLOON_RANGES,
		 (unsigned long long)cs->removed);
	if (interrupted(d))
		return -EINTR;

	/* Disable: everything comes back in, every page verified. */
	t0 = bench_now();
	err = vswap_handler_disable(d->h, false);
	if (!err)
		err = wait_for(d, VSWAP_STATE_READY, "disable");
	st[ST_DISABLE].secs = bench_now() - t0;
	if (err)
		return err;
	st[ST_DISABLE].pages = d->status.transition.pages;
	st[ST_DISABLE].bytes = st[ST_DISABLE].pages * d->ps;
	progress(d, ST_DISABLE, &st[ST_DISABLE], "%llu pages swapped in (%llu ms)",
		 (unsigned long long)st[ST_DISABLE].pages,
		 (unsigned long long)d->status.transition.time_ms);
	if (interrupted(d))
		return -EINTR;

	/* Every byte of the guest against what it last wrote. */
	t0 = bench_now();
	err = guest_run(d, JOB_VERIFY, c, 0, &sum);
	st[ST_VERIFY] = (struct stage_stat){bench_now() - t0, sum.touched, sum.touched * d->ps};
	cs->bad_pages += sum.bad;
	if (err)
		return err;
	progress(d, ST_VERIFY, &st[ST_VERIFY], "%llu pages checked, %llu wrong",
		 (unsigned long long)sum.touched, (unsigned long long)sum.bad);
	return 0;
}

/* ---- setup and teardown ------------------------------------------------- */

static int guest_create(struct demo *d)
{
	d->ps = (uint32_t)sysconf(_SC_PAGESIZE);
	d->size -= d->size % d->ps;
	d->pages = d->size / d->ps;
	d->memfd = memfd_create("vswap-demo-guest", MFD_CLOEXEC);
	if (d->memfd < 0)
		return -errno;
	if (ftruncate(d->memfd, (off_t)d->size))
		return -errno;
	d->mem = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
	if (d->mem == MAP_FAILED) {
		d->mem = NULL;
		return -errno;
	}
	d->ver = calloc(d->pages, sizeof(*d->ver));
	return d->ver ? 0 : -ENOMEM;
}

static int store_and_handler_create(struct demo *d)
{
	struct vswap_store_opts so = {.durability = d->durability};
	struct vswap_handler_opts ho = {0};
	struct vswap_region r = {.addr = d->mem, .len = d->size, .memfd = d->memfd, .offset = 0};
	int err;

	if (d->store_arg) {
		snprintf(d->path, sizeof(d->path), "%s", d->store_arg);
	} else {
		snprintf(d->tmpdir, sizeof(d->tmpdir), "/var/tmp/vswap-demo.XXXXXX");
		if (!mkdtemp(d->tmpdir))
			return -errno;
		snprintf(d->path, sizeof(d->path), "%s/guest.swap", d->tmpdir);
	}
	err = vswap_store_create(d->path, &so, &d->store);
	if (err) {
		/* -EEXIST: a file (or another demo's store) is there; it is not
		 * ours, so nothing of it is removed. */
		fprintf(stderr, "vswap-demo: create store %s: %s\n", d->path, vswap_strerror(err));
		d->store = NULL;
		return err;
	}
	d->created = true;
	ho.store = d->store;
	err = vswap_handler_create(&r, 1, &ho, &d->h);
	if (err) {
		fprintf(stderr, "vswap-demo: create handler: %s%s\n", vswap_strerror(err),
			err == -EPERM ? " (userfaultfd needs root, /dev/userfaultfd access or "
					"vm.unprivileged_userfaultfd=1)"
				      : "");
		d->h = NULL;
	}
	return err;
}

/* The audit vswap-fsck -n would make, read-only, on the closed store. */
static int audit(struct demo *d)
{
	struct vswap_fsck_opts o = {.mode = VSWAP_FSCK_CHECK, .no_orphan_scan = true};
	struct vswap_fsck_counts c = {0};
	struct vswap_fsck *f;
	size_t i;
	int err;

	/* Other stores' staging files in /dev/shm are not this demo's
	 * business, hence no_orphan_scan. */
	err = vswap_fsck_new(d->path, &o, &f);
	if (err)
		return err;
	err = vswap_fsck_run(f);
	d->final.ran = true;
	d->final.exit_code = vswap_fsck_exit_code(f);
	d->final.problems = vswap_fsck_problem_count(f);
	vswap_fsck_counts(f, &c);
	d->final.pages = c.pages_checked;
	d->final.bytes = c.bytes_verified;
	for (i = 0; i < d->final.problems; i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		fprintf(stderr, "vswap-demo: fsck: %s: %s\n", vswap_problem_kind_name(p->kind),
			p->detail ? p->detail : "");
	}
	vswap_fsck_free(f);
	return err;
}

/* Remove only what this run created: the store (if its create succeeded)
 * and the directory made for it. */
static void cleanup(struct demo *d)
{
	struct vswap_store_opts so = {0};

	if (!d->keep && d->created) {
		int err = vswap_store_destroy(d->path, &so);

		if (err && err != -ENOENT)
			fprintf(stderr, "vswap-demo: remove %s: %s\n", d->path,
				vswap_strerror(err));
	}
	if (!d->keep && d->tmpdir[0])
		rmdir(d->tmpdir);
	if (d->mem)
		munmap(d->mem, d->size);
	if (d->memfd >= 0)
		close(d->memfd);
	free(d->ver);
}

/* ---- report --------------------------------------------------------------- */

static void totals(const struct demo *d, struct cycle_stat *t)
{
	unsigned c, s;

	memset(t, 0, sizeof(*t));
	for (c = 0; c < d->done_cycles; c++) {
		const struct cycle_stat *cs = &d->cyc[c];

		for (s = 0; s < ST_COUNT; s++) {
			t->st[s].secs += cs->st[s].secs;
			t->st[s].pages += cs->st[s].pages;
			t->st[s].bytes += cs->st[s].bytes;
		}
		t->written += cs->written;
		t->zero_written += cs->zero_written;
		t->written_twice += cs->written_twice;
		t->from_staging += cs->from_staging;
		t->from_file += cs->from_file;
		t->zero_filled += cs->zero_filled;
		t->touched += cs->touched;
		t->rewritten += cs->rewritten;
		t->removed += cs->removed;
		t->bad_pages += cs->bad_pages;
	}
}

static void print_audit(const char *what, const struct audit_result *a)
{
	printf("%s: %s (exit %d, %llu pages and %llu MiB verified, %llu problems)\n", what,
	       a->exit_code == 0 ? "clean" : "NOT CLEAN", a->exit_code,
	       (unsigned long long)a->pages, (unsigned long long)(a->bytes / BENCH_MIB),
	       (unsigned long long)a->problems);
}

static void print_summary(const struct demo *d, bool ok)
{
	struct cycle_stat t;
	unsigned s;

	totals(d, &t);
	printf("\nsummary (%u cycle%s, %llu MiB guest, %s durability)\n", d->done_cycles,
	       d->done_cycles == 1 ? "" : "s", (unsigned long long)(d->size / BENCH_MIB),
	       vswap_durability_name(d->durability));
	printf("  pages moved to staging   %10llu\n", (unsigned long long)t.st[ST_ENABLE].pages);
	printf("  pages trimmed            %10llu\n", (unsigned long long)t.st[ST_TRIM].pages);
	printf("  pages written (swap-out) %10llu\n", (unsigned long long)t.st[ST_SWAP_OUT].pages);
	printf("  faults from staging      %10llu\n", (unsigned long long)t.from_staging);
	printf("  faults from file         %10llu\n", (unsigned long long)t.from_file);
	printf("  zero-filled faults       %10llu\n", (unsigned long long)t.zero_filled);
	printf("  pages removed (balloon)  %10llu\n", (unsigned long long)t.removed);
	printf("  pages swapped in         %10llu\n", (unsigned long long)t.st[ST_DISABLE].pages);
	printf("  checksum failures        %10llu\n",
	       (unsigned long long)d->status.metrics.checksum_failures);
	printf("  pages that read wrong    %10llu\n", (unsigned long long)t.bad_pages);
	printf("  time per stage:");
	for (s = 0; s < ST_COUNT; s++) {
		printf(" %s %.2fs", stage_name[s], t.st[s].secs);
		if (t.st[s].bytes && t.st[s].secs > 0 &&
		    (s == ST_ENABLE || s == ST_SWAP_OUT || s == ST_DISABLE))
			printf(" (%.2f GB/s)", bench_gbps(t.st[s].bytes, t.st[s].secs));
		printf(s + 1 < ST_COUNT ? "," : "\n");
	}
	printf("  status %s\n", d->status_json);
	if (d->live.ran)
		print_audit("fsck audit of the store in use, after swap-out", &d->live);
	if (d->final.ran)
		print_audit("fsck audit of the closed store", &d->final);
	printf("%s\n", ok ? "vswap-demo: OK, every byte verified" : "vswap-demo: FAILED");
	if (d->keep)
		printf("store kept: %s (try: vswap-dump %s; vswap-fsck -n %s)\n", d->path, d->path,
		       d->path);
}

static void json_u64_member(struct json_writer *w, const char *key, uint64_t v)
{
	json_key(w, key);
	json_u64(w, v);
}

static void json_stage(struct json_writer *w, const struct stage_stat *s, const char *name)
{
	json_key(w, name);
	json_begin_object(w);
	json_key(w, "seconds");
	json_double(w, s->secs);
	json_u64_member(w, "pages", s->pages);
	if (s->bytes && s->secs > 0) {
		json_key(w, "gbps");
		json_double(w, bench_gbps(s->bytes, s->secs));
	}
	json_end_object(w);
}

static void json_cycle(struct json_writer *w, const struct cycle_stat *c)
{
	json_begin_object(w);
	json_key(w, "stages");
	json_begin_object(w);
	for (unsigned s = 0; s < ST_COUNT; s++)
		json_stage(w, &c->st[s], stage_name[s]);
	json_end_object(w);
	json_u64_member(w, "pages_written_by_guest", c->written);
	json_u64_member(w, "zero_pages_written", c->zero_written);
	json_u64_member(w, "pages_written_twice", c->written_twice);
	json_u64_member(w, "pages_moved", c->st[ST_ENABLE].pages);
	json_u64_member(w, "pages_trimmed", c->st[ST_TRIM].pages);
	json_u64_member(w, "pages_swapped_out", c->st[ST_SWAP_OUT].pages);
	json_u64_member(w, "faults_from_staging", c->from_staging);
	json_u64_member(w, "faults_from_file", c->from_file);
	json_u64_member(w, "zero_filled", c->zero_filled);
	json_u64_member(w, "pages_removed", c->removed);
	json_u64_member(w, "pages_swapped_in", c->st[ST_DISABLE].pages);
	json_u64_member(w, "pages_wrong", c->bad_pages);
	json_end_object(w);
}

/* An audit's object, or null when it did not run. */
static void json_audit(struct json_writer *w, const char *key, const struct audit_result *a)
{
	json_key(w, key);
	if (!a->ran) {
		json_null(w);
		return;
	}
	json_begin_object(w);
	json_key(w, "exit_code");
	json_i64(w, a->exit_code);
	json_u64_member(w, "problems", a->problems);
	json_u64_member(w, "pages_checked", a->pages);
	json_u64_member(w, "bytes_verified", a->bytes);
	json_end_object(w);
}

static void print_json(const struct demo *d, bool ok)
{
	struct json_writer w;
	struct cycle_stat t;

	totals(d, &t);
	json_init(&w, stdout);
	json_begin_document(&w);
	json_key(&w, "ok");
	json_bool(&w, ok);
	json_u64_member(&w, "size", d->size);
	json_u64_member(&w, "pages", d->pages);
	json_u64_member(&w, "page_size", d->ps);
	json_key(&w, "durability");
	json_string(&w, vswap_durability_name(d->durability));
	json_key(&w, "store");
	json_string(&w, d->path);
	json_key(&w, "kept");
	json_bool(&w, d->keep);
	json_key(&w, "stop_after");
	json_string(&w, d->stop_after); /* null when not given */
	json_key(&w, "cycles");
	json_begin_array(&w);
	for (unsigned c = 0; c < d->done_cycles; c++)
		json_cycle(&w, &d->cyc[c]);
	json_end_array(&w);
	json_key(&w, "totals");
	json_cycle(&w, &t);
	json_u64_member(&w, "checksum_failures", d->status.metrics.checksum_failures);
	json_u64_member(&w, "pages_wrong", t.bad_pages);
	json_key(&w, "status");
	json_raw(&w, d->status_json);
	json_audit(&w, "fsck_in_use", &d->live);
	json_audit(&w, "fsck", &d->final);
	json_end_object(&w);
	json_finish(&w);
}

/* ---- options and main ------------------------------------------------------ */

static const struct cli_tool tool = {
    .name = "vswap-demo",
    .synopsis = "[--size BYTES] [--store PATH] [--keep] [--durability full|batch|none]\n"
		"       [--stop-after enable|trim|swap-out] [--cycles N] [--json]\n",
    .help = "Run a small VMM-like guest through vswap and verify every byte.\n"
	    "\n"
	    "      --size BYTES   guest memory, K/M/G suffixes (default 256M, at least 4M)\n"
	    "      --store PATH   swap file to create; it must not exist (default: in a\n"
	    "                     fresh directory under /var/tmp)\n"
	    "      --keep         keep the store's files at the end\n"
	    "      --durability full|batch|none   the store's mode (default batch)\n"
	    "      --stop-after STAGE   stop after that stage of the first cycle (enable,\n"
	    "                     trim or swap-out), close the store without swapping in\n"
	    "                     (use with --keep, then vswap-dump / vswap-fsck)\n"
	    "      --cycles N     enable..disable cycles, 1 to 1000 (default 2)\n"
	    "      --json         print the summary as one JSON object (progress on "
	    "stderr)\n" CLI_STANDARD_HELP "\n"
	    "Exit: 0 every byte verified and the audits clean, 1 otherwise, 2 usage\n"
	    "error, 130 stopped by SIGINT, SIGTERM or SIGHUP.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

/* Returns 0 to run, 1 when --help or --version was shown, -1 on a usage
 * error (already reported). */
static int parse_args(struct demo *d, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"size", required_argument, NULL, 's'},
	    {"store", required_argument, NULL, 'S'},
	    {"keep", no_argument, NULL, 'k'},
	    {"durability", required_argument, NULL, 'D'},
	    {"stop-after", required_argument, NULL, 'a'},
	    {"cycles", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c;

	d->size = 256 * BENCH_MIB;
	d->cycles = 2;
	d->durability = VSWAP_DURABILITY_BATCH;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (cli_parse_size(optarg, &d->size) || d->size < 4 * BENCH_MIB) {
				cli_usage_error(&tool, "bad --size '%s' (at least 4M)", optarg);
				return -1;
			}
			break;
		case 'S':
			d->store_arg = optarg;
			break;
		case 'k':
			d->keep = true;
			break;
		case 'D':
			if (cli_opt_durability(&tool, optarg, &d->durability))
				return -1;
			break;
		case 'a':
			if (strcmp(optarg, "enable") && strcmp(optarg, "trim") &&
			    strcmp(optarg, "swap-out")) {
				cli_usage_error(&tool, "--stop-after enable, trim or swap-out");
				return -1;
			}
			d->stop_after = optarg;
			break;
		case 'c':
			if (cli_opt_range(&tool, "cycles", optarg, 1, MAX_CYCLES, &v))
				return -1;
			d->cycles = (unsigned)v;
			break;
		case 'j':
			d->json = true;
			break;
		default:
			return cli_standard_option(&tool, c);
		}
	}
	return cli_no_operands(&tool, argc, argv);
}

/*
 * Run the cycles, then leave the handler: normally destroy (which swaps in
 * whatever is left, nothing after a disable); with --stop-after, detach, so
 * the pages stay in the store.  Returns 0, 1 (stopped early) or -errno.
 */
static int run(struct demo *d)
{
	FILE *f = d->json ? stderr : stdout;
	unsigned c;
	int err = 0, rc;

	for (c = 1; c <= d->cycles && !err; c++) {
		if (interrupted(d))
			return -EINTR;
		fprintf(f, "cycle %u/%u\n", c, d->cycles);
		err = cycle(d, c);
		d->done_cycles = c;
	}
	status(d);
	if (err == 1) {
		/* The store keeps its pages (staged or in the swap file). */
		rc = vswap_handler_detach(d->h);
		d->h = NULL;
		fprintf(f, "stopped after %s: the store keeps its pages%s\n", d->stop_after,
			d->keep ? "" : " (add --keep to inspect them)");
		return rc ? rc : 1;
	}
	rc = vswap_handler_destroy(d->h);
	d->h = NULL;
	if (rc)
		fprintf(stderr, "vswap-demo: handler exit: %s\n", vswap_strerror(rc));
	return err ? err : rc;
}

/* Consume the terminating signals still pending, so that restoring the
 * mask does not kill the process before it exits with EXIT_INTERRUPTED. */
static void drain_signals(const struct demo *d)
{
	const struct timespec now = {0, 0};
	while (sigtimedwait(&d->stop, NULL, &now) > 0)
		;
}

int main(int argc, char **argv)
{
	struct demo *d = calloc(1, sizeof(*d));
	FILE *f;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	bool ok;
	int err, rc;

	if (!d)
		return CLI_EXIT_FAILED;
	d->memfd = -1;
	rc = parse_args(d, argc, argv);
	if (rc) {
		free(d);
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	f = d->json ? stderr : stdout;
	d->threads = cpus < 2 ? 2 : cpus > 4 ? 4 : (unsigned)cpus;
	d->seed = 0x64656d6f;
	/*
	 * Block the terminating signals in every thread (the guest threads and
	 * the handler's inherit the mask) and look for them between stages and
	 * while waiting for the handler: a Ctrl-C then still swaps in, closes
	 * the store and removes it, and the demo exits EXIT_INTERRUPTED.
	 */
	sigemptyset(&d->stop);
	sigaddset(&d->stop, SIGINT);
	sigaddset(&d->stop, SIGTERM);
	sigaddset(&d->stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &d->stop, &d->old);

	err = guest_create(d);
	if (err) {
		fprintf(stderr, "vswap-demo: guest memory: %s\n", strerror(-err));
		goto out;
	}
	err = store_and_handler_create(d);
	if (err)
		goto out;
	fprintf(f, "vswap-demo: %llu MiB guest (%llu pages), %u guest threads, store %s (%s)\n",
		(unsigned long long)(d->size / BENCH_MIB), (unsigned long long)d->pages, d->threads,
		d->path, vswap_durability_name(d->durability));
	rc = run(d);
	if (rc < 0)
		err = rc;
	if (!err && interrupted(d))
		err = -EINTR;
	if (d->store) {
		int cerr = vswap_store_close(d->store);

		d->store = NULL;
		if (cerr) {
			fprintf(stderr, "vswap-demo: close store: %s\n", vswap_strerror(cerr));
			if (!err)
				err = cerr;
		}
	}
	if (err == -EINTR) {
		fprintf(stderr, "vswap-demo: interrupted\n");
		goto out;
	}
	rc = audit(d);
	if (rc) {
		fprintf(stderr, "vswap-demo: fsck audit: %s\n", vswap_strerror(rc));
		if (!err)
			err = rc;
	}
out:
	if (d->h)
		vswap_handler_destroy(d->h);
	if (d->store)
		vswap_store_close(d->store);
	{
		struct cycle_stat t;

		totals(d, &t);
		d->bad_pages = t.bad_pages;
	}
	ok = !err && d->bad_pages == 0 && d->live.exit_code == 0 && d->final.ran &&
	     d->final.exit_code == 0 && d->status.metrics.checksum_failures == 0 &&
	     d->done_cycles > 0;
	if (d->done_cycles && err != -EINTR) {
		if (d->json)
			print_json(d, ok);
		else
			print_summary(d, ok);
	}
	cleanup(d);
	if (err != -EINTR && interrupted(d))
		err = -EINTR; /* a signal during the last steps still counts */
	drain_signals(d);
	pthread_sigmask(SIG_SETMASK, &d->old, NULL);
	free(d);
	return err == -EINTR ? EXIT_INTERRUPTED : ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}
