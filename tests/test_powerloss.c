/* SPDX-License-Identifier: MIT */
/*
 * Power-loss test (the crash invariants 1-5 of docs/DESIGN.md).
 *
 * 1. Run tests/powerloss/workload.c under the write-log shim (LD_PRELOAD,
 *    VSWAP_IO=sync): every byte it writes to the store's files, every
 *    truncate, hole punch and sync is logged, with marks for its commits
 *    and the model of what the index must say after each one.
 * 2. Replay the log, CrashMonkey style: at every record boundary rebuild
 *    the files as a power loss there could leave them, in several variants
 *    (everything written; only what each file had synced; the swap file or
 *    the index synced-only and the rest complete; the staging file lost
 *    like tmpfs; the next write torn).  Identical states are checked once.
 * 3. Check each state through the store API (read-only, tolerant open):
 *      atomicity  the index equals the model after one commit of the legal
 *                 window (in full/batch: not older than the last commit
 *                 that returned; never newer than the one that began);
 *      inv. 1     (full/batch) every present record's slot holds its bytes;
 *      inv. 2     no slot in two records;
 *      inv. 3     every read returns the right version's bytes or an error;
 *      inv. 5     (full/batch) staged bytes are covered by a staging record;
 *      inv. 4     vswap-fsck -y repairs the state and a second run is clean.
 *
 * VSWAP_LONG=1 runs longer workloads with two seeds.  Prints the number of
 * states checked per durability mode.  An argument runs one group (full,
 * batch, none, mutations or edge); ctest registers each as
 * powerloss_GROUP.  Scratch directories are removed however the
 * test ends (the reaper, below), a SIGKILL included.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
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
#include <vswap/store.h>

#include "store/checksum.h"
#include "tests/helpers/powerloss_model.h"
#include "tests/helpers/powerloss_replay.h"

#ifndef VSWAP_POWERLOSS_SHIM
#define VSWAP_POWERLOSS_SHIM ""
#endif
#ifndef VSWAP_POWERLOSS_WORKLOAD
#define VSWAP_POWERLOSS_WORKLOAD ""
#endif
#ifndef VSWAP_POWERLOSS_PRELOAD_FIRST
#define VSWAP_POWERLOSS_PRELOAD_FIRST ""
#endif

#define MAX_REPORTED 12 /* violations printed in full per run */

/* ---- variants: which view of each file a power loss leaves ------------------------- */

enum view { V_FULL, V_SYNCED, V_LOST };

/*
 * A variant names the view of each file, and optionally tears the next
 * write: @torn is where the tear falls, in eighths of the write (rounded up
 * to a 512-byte sector, the unit a disk writes atomically), 0 for none and
 * -1 for "the first sector only".
 */
struct variant {
	const char *name;
	enum view swap, index, staging;
	int torn;
	bool drops; /* may lose what a returned commit wrote (unsynced data) */
	bool long_only;
};

static const struct variant variants[] = {
    {"full", V_FULL, V_FULL, V_FULL, 0, false, false},
    {"synced", V_SYNCED, V_SYNCED, V_SYNCED, 0, true, false},
    {"swap-synced", V_SYNCED, V_FULL, V_FULL, 0, true, false},
    {"index-synced", V_FULL, V_SYNCED, V_FULL, 0, true, false},
    {"staging-synced", V_FULL, V_FULL, V_SYNCED, 0, false, false},
    {"staging-lost", V_FULL, V_FULL, V_LOST, 0, false, false},
    {"torn-half", V_FULL, V_FULL, V_FULL, 4, false, false},
    {"torn-sector", V_FULL, V_FULL, V_FULL, -1, false, false},
    {"torn-quarter", V_FULL, V_FULL, V_FULL, 2, false, true},
    {"torn-3/4", V_FULL, V_FULL, V_FULL, 6, false, true},
    {"synced-torn", V_SYNCED, V_SYNCED, V_SYNCED, 4, true, true},
    {"swap-synced-torn", V_SYNCED, V_FULL, V_FULL, 4, true, true},
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

/* What one run does: a workload and, optionally, a mutation of its replay. */
enum mutation {
	MUT_NONE,
	MUT_NO_DATA_SYNC,     /* the swap file's syncs after create are lost */
	MUT_NO_STAGING_PUNCH, /* the staging file's hole punches are lost */
};

struct config {
	enum vswap_durability mode;
	unsigned steps, seed;
	bool edge; /* the workload's edge_rewrite operation */
	enum mutation mutation;
	bool quiet; /* do not print violations (mutation runs expect them) */
	int reaper; /* reaper_start()'s pipe, or -1 */
};

/* ---- the run's context ----------------------------------------------------------- */

struct seen { /* open-addressing set of state hashes */
	uint64_t *v;
	size_t cap, n;
};

struct counts {
	uint64_t boundaries, candidates, states, opened, refused, reads, read_errors;
	uint64_t staged_unverified; /* summed staged copies that did not survive */
	uint64_t fsck_runs, fsck_repaired, violations;
	uint64_t per_variant[NVARIANTS];
};

struct run {
	enum vswap_durability mode;
	struct config cfg;
	char tmp[128];
	char dir[192];
	char log_path[192];
	struct pl_log log;
	struct pl_replay rp;
	int f_swap, f_index, f_lock, f_staging;
	char **abs;		/* absolute path of each log file in dir */
	struct pl_snap **snaps; /* by commit number; [0] = empty */
	uint32_t nsnaps;
	uint32_t npages, ps;
	uint64_t *vsum;		   /* checksum of each page version, by version */
	struct vswap_store *store; /* the store being checked (its UUID seeds them) */
	uint32_t nvers;
	uint8_t *buf;
	struct seen seen;
	struct counts c;
	/* the point being checked */
	size_t at;
	const struct variant *var;
	uint32_t lo, hi;
	bool created, closed;
	bool strict; /* nothing a returned call wrote can be missing (see strict()) */
	char last_store_error[256];
};

static bool long_mode(void)
{
	const char *v = getenv("VSWAP_LONG");
	return v && *v && strcmp(v, "0") != 0;
}

static bool durable_mode(const struct run *r)
{
	return r->mode != VSWAP_DURABILITY_NONE;
}

/*
 * Whether the state at hand must hold everything the returned calls
 * promised: always in full and batch; in none when the variant dropped no
 * unsynced data (the write order alone gives invariants 1 and 5 and a store
 * that opens); and after a clean close in every mode (close syncs both
 * files even in none).
 */
static bool strict(const struct run *r, const struct variant *v)
{
	return durable_mode(r) || !v->drops || r->closed;
}

static void quiet_log(void *ctx, enum vswap_log_level level, const char *msg)
{
	struct run *r = ctx;
	if (level == VSWAP_LOG_ERROR)
		snprintf(r->last_store_error, sizeof(r->last_store_error), "%s", msg);
	if (getenv("VSWAP_TEST_VERBOSE"))
		fprintf(stderr, "vswap: %s\n", msg);
}

static const char *op_name(enum wl_type t)
{
	static const char *names[] = {"?",     "CREATE", "WRITE",  "TRUNCATE", "PUNCH", "ZERO",
				      "ALLOC", "SYNC",	 "RENAME", "UNLINK",   "MARK",	"RANGE"};
	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

/* "WRITE swap @8192+4096", "MARK commit-begin" */
static void describe(const struct run *r, size_t i, char *buf, size_t len)
{
	if (i >= r->log.nops) {
		snprintf(buf, len, "-");
		return;
	}
	const struct pl_op *op = &r->log.ops[i];
	if (op->type == WL_MARK)
		snprintf(buf, len, "MARK %.*s", (int)op->label_len, op->label);
	else
		snprintf(buf, len, "%s %s @%llu+%llu", op_name(op->type),
			 op->file >= 0 ? r->log.files[op->file] : "", (unsigned long long)op->off,
			 (unsigned long long)(op->data_len ? op->data_len : op->len));
}

static uint64_t torn_keep(const struct run *r, int torn);

/* One violation: count it, print the first few in full with the exact state. */
__attribute__((format(printf, 2, 3))) static void violation(struct run *r, const char *fmt, ...)
{
	bool quiet = r->cfg.quiet && !getenv("VSWAP_TEST_VERBOSE");
	if (r->c.violations++ >= MAX_REPORTED || quiet)
		return;
	char what[512], prev[160], torn[256] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	describe(r, r->at - 1, prev, sizeof(prev));
	uint64_t keep = torn_keep(r, r->var->torn);
	if (keep) {
		char next[128];
		describe(r, r->at, next, sizeof(next));
		snprintf(torn, sizeof(torn), ", record %zu (%s) torn after %llu bytes", r->at, next,
			 (unsigned long long)keep);
	}
	fprintf(stderr,
		"VIOLATION mode=%s boundary=%zu/%zu (after record %zd: %s%s) variant=%s "
		"legal commits [%u,%u]: %s\n",
		vswap_durability_name(r->mode), r->at, r->log.nops, (ssize_t)r->at - 1,
		r->at ? prev : "-", torn, r->var->name, r->lo, r->hi, what);
}

/* ---- workload ----------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static int remove_tree(const char *dir)
{
	int rc = nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (rc != 0 && errno != ENOENT) {
		fprintf(stderr, "powerloss: could not remove %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The scratch directories go on every exit.  The test removes its own when
 * a run ends; one it could not (an assertion failed in the middle, a signal,
 * ctest's SIGKILL at its timeout) is removed by the reaper: a process of its
 * own, detached (a double fork and setsid(), so that a runner killing the
 * test's process tree does not reach it), that reads "+DIR" and "-DIR" lines
 * on a pipe and, once the pipe's write end is gone (the test exited, however
 * it did), removes every DIR added and not taken back.  Only directories
 * this test made are named (mkdtemp()).
 */
#define REAPER_MAX 64

static void reaper_main(int fd)
{
	char paths[REAPER_MAX][sizeof(((struct run *)0)->tmp)], line[sizeof(paths[0]) + 1];
	unsigned n = 0;
	size_t len = 0;
	for (;;) {
		char c;
		ssize_t k = read(fd, &c, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (c != '\n') {
			if (len < sizeof(line) - 1)
				line[len++] = c;
			continue;
		}
		line[len] = 0;
		len = 0;
		if (line[0] == '+' && n < REAPER_MAX) {
			memcpy(paths[n++], line + 1, sizeof(paths[0])); /* NUL within */
		} else if (line[0] == '-') {
			for (unsigned i = 0; i < n; i++)
				if (!strcmp(paths[i], line + 1)) {
					memcpy(paths[i], paths[--n], sizeof(paths[0]));
					break;
				}
		}
	}
	for (unsigned i = 0; i < n; i++)
		if (strstr(paths[i], "/vswap-powerloss-"))
			remove_tree(paths[i]);
}

/* The write end of the reaper's pipe (close-on-exec: the workload never
 * holds it), or -1 if no reaper could be started. */
static int reaper_start(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		if (fork() == 0) {
			setsid();
			close(p[1]);
			reaper_main(p[0]);
		}
		_exit(0);
	}
	close(p[0]);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid) {
		close(p[1]);
		return -1;
	}
	return p[1];
}

static void reaper_tell(int fd, char op, const char *dir)
{
	char line[192];
	int n = snprintf(line, sizeof(line), "%c%s\n", op, dir);
	if (fd >= 0 && n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) != n)
		fprintf(stderr, "powerloss: the reaper will not remove %s\n", dir);
}

/*
 * Scratch space: VSWAP_POWERLOSS_TMP, else /dev/shm (tmpfs: thousands of
 * states are written and fsck's repairs sync; holes and SEEK_DATA work the
 * same), else /var/tmp.
 */
static void make_dirs(struct run *r)
{
	const char *base = getenv("VSWAP_POWERLOSS_TMP");
	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/var/tmp";
	snprintf(r->tmp, sizeof(r->tmp), "%s/vswap-powerloss-XXXXXX", base);
	assert_non_null(mkdtemp(r->tmp));
	reaper_tell(r->cfg.reaper, '+', r->tmp);
	snprintf(r->dir, sizeof(r->dir), "%s/store", r->tmp);
	snprintf(r->log_path, sizeof(r->log_path), "%s/writelog", r->tmp);
	assert_int_equal(mkdir(r->dir, 0700), 0);
}

/* fork + exec the workload under the shim; returns its exit status. */
static int run_workload(struct run *r)
{
	unsigned steps = r->cfg.steps, seed = r->cfg.seed;
	bool edge = r->cfg.edge;
	char preload[1024], steps_s[16], seed_s[16];
	const char *first = VSWAP_POWERLOSS_PRELOAD_FIRST;
	snprintf(preload, sizeof(preload), "%s%s%s", first, *first ? ":" : "",
		 VSWAP_POWERLOSS_SHIM);
	snprintf(steps_s, sizeof(steps_s), "%u", steps);
	snprintf(seed_s, sizeof(seed_s), "%u", seed);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("LD_PRELOAD", preload, 1);
		setenv("VSWAP_WRITELOG", r->log_path, 1);
		setenv("VSWAP_WRITELOG_DIR", r->dir, 1);
		setenv("VSWAP_IO", "sync", 1); /* io_uring is invisible to the shim */
		char *argv[] = {(char *)VSWAP_POWERLOSS_WORKLOAD,
				r->dir,
				(char *)vswap_durability_name(r->mode),
				steps_s,
				seed_s,
				edge ? "edge" : NULL,
				NULL};
		execv(argv[0], argv);
		perror(argv[0]);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the log's marks: the model after each commit ---------------------------------- */

static void load_snapshots(struct run *r)
{
	uint32_t n = 0;
	for (size_t i = 0; i < r->log.nops; i++)
		n += pl_op_is_mark(&r->log.ops[i], PL_MARK_COMMIT);
	assert_true(n > 0);
	r->snaps = calloc(n + 1, sizeof(*r->snaps));
	assert_non_null(r->snaps);
	for (size_t i = 0; i < r->log.nops; i++) {
		const struct pl_op *op = &r->log.ops[i];
		if (!pl_op_is_mark(op, PL_MARK_COMMIT))
			continue;
		/* Copied: the payload's place in the log is not aligned. */
		struct pl_snap *s = malloc(op->data_len);
		assert_non_null(s);
		memcpy(s, op->data, op->data_len);
		assert_true(s->commit == r->nsnaps + 1);
		r->snaps[++r->nsnaps] = s;
		r->npages = s->npages;
	}
	size_t bytes = sizeof(struct pl_snap) + r->npages * sizeof(struct pl_page);
	r->snaps[0] = calloc(1, bytes);
	assert_non_null(r->snaps[0]);
	r->snaps[0]->npages = r->npages;
	uint32_t maxv = 0;
	for (uint32_t c = 1; c <= r->nsnaps; c++)
		for (uint32_t p = 0; p < r->npages; p++) {
			if (r->snaps[c]->pages[p].ver > maxv)
				maxv = r->snaps[c]->pages[p].ver;
			if (r->snaps[c]->pages[p].sver > maxv)
				maxv = r->snaps[c]->pages[p].sver;
		}
	r->nvers = maxv + 1;
	r->vsum = calloc(r->nvers, sizeof(*r->vsum));
	assert_non_null(r->vsum);
}

/* XXH3 of version @ver of @page (versions are unique to one page). */
static uint64_t version_sum(struct run *r, uint64_t page, uint32_t ver)
{
	if (ver < r->nvers && r->vsum[ver])
		return r->vsum[ver];
	pl_fill(r->buf, r->ps, page, ver);
	uint64_t sum = vswap_store_page_checksum(r->store, page, r->buf);
	if (ver < r->nvers)
		r->vsum[ver] = sum;
	return sum;
}

static void resolve_files(struct run *r)
{
	r->f_swap = pl_log_find_file(&r->log, "swap");
	r->f_index = pl_log_find_file(&r->log, "swap.idx");
	r->f_lock = pl_log_find_file(&r->log, "swap.idx-lock");
	r->f_staging = pl_log_find_file(&r->log, ".staging");
	assert_true(r->f_swap >= 0 && r->f_index >= 0 && r->f_staging >= 0);
	r->abs = calloc((size_t)r->log.nfiles, sizeof(*r->abs));
	assert_non_null(r->abs);
	for (int f = 0; f < r->log.nfiles; f++)
		assert_true(asprintf(&r->abs[f], "%s/%s", r->dir, r->log.files[f]) > 0);
}

/* ---- states -------------------------------------------------------------------------- */

static bool seen_add(struct seen *s, uint64_t h)
{
	if (s->n * 2 >= s->cap) {
		struct seen g = {.cap = s->cap ? s->cap * 2 : 4096};
		g.v = calloc(g.cap, sizeof(*g.v));
		assert_non_null(g.v);
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i])
				seen_add(&g, s->v[i]);
		free(s->v);
		*s = g;
	}
	h |= 1; /* 0 marks an empty bucket */
	for (size_t i = h % s->cap;; i = (i + 1) % s->cap) {
		if (s->v[i] == h)
			return false;
		if (!s->v[i]) {
			s->v[i] = h;
			s->n++;
			return true;
		}
	}
}

static enum view view_of(const struct run *r, int f, const struct variant *v)
{
	if (f == r->f_swap)
		return v->swap;
	if (f == r->f_index)
		return v->index;
	if (f == r->f_staging)
		return v->staging;
	if (f == r->f_lock)
		return V_LOST; /* LMDB rebuilds its lock file */
	return V_FULL;
}

static struct pl_image *image_of(struct run *r, int f, enum view v)
{
	return v == V_SYNCED ? &r->rp.synced[f] : &r->rp.full[f];
}

/* Bytes of the torn write (op r->at) that reach the disk, or 0 if tearing
 * it is no different from not writing it at all or from writing it all.
 * Sectors (512 bytes) are atomic, as LMDB assumes for its meta page. */
static uint64_t torn_keep(const struct run *r, int torn)
{
	if (!torn || r->at >= r->log.nops)
		return 0;
	const struct pl_op *op = &r->log.ops[r->at];
	if (op->type != WL_WRITE)
		return 0;
	uint64_t end = op->off + op->data_len;
	uint64_t cut = torn < 0 ? op->off + 1 : op->off + op->data_len * (uint64_t)torn / 8;
	cut = (cut + 511) & ~511ull; /* the first sector boundary at or after */
	return cut > op->off && cut < end ? cut - op->off : 0;
}

/* Hash of the state @v leaves at this boundary; 0 when @v does not apply. */
static uint64_t state_hash(struct run *r, const struct variant *v)
{
	uint64_t keep = torn_keep(r, v->torn);
	if (v->torn && !keep)
		return 0;
	uint64_t h[64 + 4];
	int n = 0;
	for (int f = 0; f < r->log.nfiles && n < 64; f++) {
		enum view w = view_of(r, f, v);
		h[n++] = w == V_LOST ? 0x105e : pl_image_hash(image_of(r, f, w));
	}
	h[n++] = keep ? r->at : 0;
	h[n++] = keep;
	/* The same files are judged by what was legal at this boundary. */
	h[n++] = (uint64_t)r->lo << 32 | r->hi;
	h[n++] = (uint64_t)r->strict | (uint64_t)r->created << 1 | (uint64_t)r->closed << 2;
	return VSWAP_XXH3(h, (size_t)n * sizeof(h[0]));
}

static void materialise(struct run *r, const struct variant *v)
{
	for (int f = 0; f < r->log.nfiles; f++) {
		enum view w = view_of(r, f, v);
		static const struct pl_image gone = {.exists = false};
		int ret = pl_image_write(w == V_LOST ? &gone : image_of(r, f, w), r->abs[f]);
		assert_int_equal(ret, 0);
	}
	uint64_t keep = torn_keep(r, v->torn);
	if (keep) {
		const struct pl_op *op = &r->log.ops[r->at];
		assert_int_equal(pl_write_partial(op, keep, r->abs[op->file]), 0);
	}
}

/* ---- checks on one state ------------------------------------------------------------- */

struct rec {
	bool has;
	enum vswap_page_state state;
	uint64_t slot, xxh3;
};

struct walk {
	struct run *r;
	struct rec *recs;
	uint64_t *owner; /* slot -> page + 1 */
	size_t nslots;
	uint64_t *staged; /* bitmap */
	uint64_t *summed; /* bitmap */
	uint64_t *ssum;	  /* per page: the staged copy's recorded checksum */
};

static int walk_page(void *ctx, const struct vswap_page_record *pr)
{
	struct walk *w = ctx;
	if (pr->corrupt || pr->page >= w->r->npages) {
		violation(w->r, "undecodable or out-of-range record at page %llu",
			  (unsigned long long)pr->page);
		return 0;
	}
	w->recs[pr->page] = (struct rec){true, pr->state, pr->slot, pr->xxh3};
	if (pr->slot == UINT64_MAX)
		return 0;
	if (pr->slot >= w->nslots) {
		size_t n = (size_t)pr->slot * 2 + 64;
		uint64_t *o = realloc(w->owner, n * sizeof(*o));
		assert_non_null(o);
		memset(o + w->nslots, 0, (n - w->nslots) * sizeof(*o));
		w->owner = o;
		w->nslots = n;
	}
	if (w->owner[pr->slot]) /* invariant 2 */
		violation(w->r, "slot %llu owned by pages %llu and %llu",
			  (unsigned long long)pr->slot, (unsigned long long)w->owner[pr->slot] - 1,
			  (unsigned long long)pr->page);
	else
		w->owner[pr->slot] = pr->page + 1;
	return 0;
}

static int walk_staged(void *ctx, const struct vswap_staged_record *sr)
{
	struct walk *w = ctx;
	if (sr->corrupt || sr->page >= w->r->npages) {
		violation(w->r, "undecodable or out-of-range staging record at page %llu",
			  (unsigned long long)sr->page);
		return 0;
	}
	w->staged[sr->page / 64] |= 1ull << (sr->page % 64);
	if (sr->summed) {
		w->summed[sr->page / 64] |= 1ull << (sr->page % 64);
		w->ssum[sr->page] = sr->xxh3;
	}
	return 0;
}

static bool is_summed(const struct walk *w, uint64_t p)
{
	return w->summed[p / 64] >> (p % 64) & 1;
}

static bool is_staged(const struct walk *w, uint64_t p)
{
	return w->staged[p / 64] >> (p % 64) & 1;
}

/* Does the index say exactly what the model said after commit @c? */
static bool matches(struct run *r, const struct walk *w, uint32_t c, char *why, size_t len)
{
	const struct pl_snap *s = r->snaps[c];
	for (uint32_t p = 0; p < r->npages; p++) {
		const struct pl_page *e = &s->pages[p];
		const struct rec *x = &w->recs[p];
		enum vswap_page_state st = x->has ? x->state : VSWAP_PAGE_NONE;
		bool ok = st == e->state && is_staged(w, p) == (bool)e->staged &&
			  (st == VSWAP_PAGE_NONE || x->xxh3 == version_sum(r, p, e->ver)) &&
			  is_summed(w, p) == (bool)e->summed &&
			  (!e->summed || w->ssum[p] == version_sum(r, p, e->sver));
		if (!ok) {
			snprintf(why, len, "page %u: index %s%s, commit %u says %s%s v%u", p,
				 vswap_page_state_name(st), is_staged(w, p) ? "+staged" : "", c,
				 vswap_page_state_name(e->state), e->staged ? "+staged" : "",
				 e->ver);
			return false;
		}
	}
	return true;
}

/* Atomicity: the commit the index is at, or -1 (a violation). */
static int64_t match_commit(struct run *r, const struct walk *w)
{
	char why[256] = "";
	for (int64_t c = r->hi; c >= (int64_t)r->lo; c--)
		if (matches(r, w, (uint32_t)c, why, sizeof(why)))
			return c;
	matches(r, w, r->hi, why, sizeof(why));
	violation(r, "index equals no commit in the window (vs commit %u: %s)", r->hi, why);
	return -1;
}

/* Invariant 1: present records point at their bytes (read directly). */
static void check_present_bytes(struct run *r, struct vswap_store *s, const struct walk *w)
{
	int fd = vswap_store_swap_fd(s);
	for (uint32_t p = 0; p < r->npages; p++) {
		const struct rec *x = &w->recs[p];
		if (!x->has || x->state != VSWAP_PAGE_PRESENT)
			continue;
		ssize_t k = pread(fd, r->buf, r->ps, (off_t)((x->slot + 1) * r->ps));
		if (k != (ssize_t)r->ps)
			violation(r, "page %u: present record, slot %llu has no bytes", p,
				  (unsigned long long)x->slot);
		else if (vswap_store_page_checksum(s, p, r->buf) != x->xxh3)
			violation(r, "page %u: present record, slot %llu holds %s (version %u)", p,
				  (unsigned long long)x->slot,
				  pl_all_zero(r->buf, r->ps) ? "zeros" : "other bytes",
				  pl_version_of(r->buf, r->ps, p));
	}
}

/* Invariant 3: a read gives the recorded version's bytes or an error.
 * @good[p] receives the version of each present page that read right. */
static void check_reads(struct run *r, struct vswap_store *s, const struct walk *w, int64_t c,
			uint32_t *good)
{
	for (uint32_t p = 0; p < r->npages; p++) {
		const struct rec *x = &w->recs[p];
		if (!x->has || x->state == VSWAP_PAGE_LOST)
			continue;
		r->c.reads++;
		int ret = vswap_store_read_page(s, p, r->buf);
		if (ret) {
			r->c.read_errors++;
			if (r->strict && x->state == VSWAP_PAGE_PRESENT)
				violation(r, "page %u: present page does not read: %s", p,
					  vswap_strerror(ret));
			continue;
		}
		uint32_t got = pl_version_of(r->buf, r->ps, p);
		uint32_t want = c >= 0 ? r->snaps[c]->pages[p].ver : got;
		if (!got || got != want || vswap_store_page_checksum(s, p, r->buf) != x->xxh3)
			violation(r, "page %u: read returned wrong bytes (version %u, want %u)", p,
				  got, want);
		else if (x->state == VSWAP_PAGE_PRESENT)
			good[p] = got;
	}
}

/* Did the newest legal commit take version @ver of page @p out of staging?
 * The store punches a page's staging bytes right after the commit that
 * clears its record, so until the next commit those bytes may remain. */
static bool cleared_by_newest_commit(const struct run *r, uint32_t p, uint32_t ver)
{
	uint32_t c = r->hi;
	if (c < 1 || c >= r->nsnaps || !r->snaps[c] || !r->snaps[c - 1])
		return false;
	const struct pl_page *now = &r->snaps[c]->pages[p], *before = &r->snaps[c - 1]->pages[p];
	/* sver 0: commit c-1 was the log-ahead commit, and the copy came after
	 * it (the model learns the version once copied). */
	return !now->staged && before->staged && (before->sver == ver || before->sver == 0);
}

/*
 * Invariant 5: bytes in the staging file are covered by a staging record,
 * or the newest commit just cleared that record and its punch had not run
 * yet (a leak that vswap-fsck reclaims, invariant 4).
 */
static void check_staging(struct run *r, const struct walk *w)
{
	int fd = open(r->abs[r->f_staging], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* lost (tmpfs): nothing staged survives */
	for (uint32_t p = 0; p < r->npages; p++) {
		ssize_t k = pread(fd, r->buf, r->ps, (off_t)p * r->ps);
		if (k <= 0)
			break;
		if (!pl_all_zero(r->buf, (uint32_t)k) && !is_staged(w, p) &&
		    !cleared_by_newest_commit(r, p, pl_version_of(r->buf, r->ps, p)))
			violation(r,
				  "page %u: staging file holds bytes (version %u) no record covers",
				  p, pl_version_of(r->buf, r->ps, p));
	}
	close(fd);
}

/*
 * Staged copies: a staged page whose checksum is committed either holds
 * bytes that verify against it, and those are the version copied, or fails
 * (its copy did not survive: a later open records it lost, never serves
 * it).  A checksum never vouches for other bytes.
 */
static void check_staged_copies(struct run *r, const struct walk *w)
{
	int fd = open(r->abs[r->f_staging], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (uint32_t p = 0; p < r->npages; p++) {
		if (!is_staged(w, p) || !is_summed(w, p))
			continue;
		ssize_t k = pread(fd, r->buf, r->ps, (off_t)p * r->ps);
		if (k != (ssize_t)r->ps ||
		    vswap_store_page_checksum(r->store, p, r->buf) != w->ssum[p]) {
			r->c.staged_unverified++;
			continue;
		}
		if (!pl_version_of(r->buf, r->ps, p))
			violation(r,
				  "page %u: staged bytes verify against their record but are no "
				  "version of the page",
				  p);
	}
	close(fd);
}

/* After repair, every present page that read right still does: fsck lost
 * nothing good.  The repaired index must open without tolerance. */
static void check_repaired(struct run *r, const uint32_t *good)
{
	struct vswap_store_opts o = {.read_only = true,
				     .durability = r->mode,
				     .log = quiet_log,
				     .log_ctx = r,
				     .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *s;
	int ret = vswap_store_open(r->abs[r->f_swap], &o, &s);
	if (ret) {
		violation(r, "repaired store does not open: %s (%s)", vswap_strerror(ret),
			  r->last_store_error);
		return;
	}
	for (uint32_t p = 0; p < r->npages; p++) {
		if (!good[p])
			continue;
		ret = vswap_store_read_page(s, p, r->buf);
		if (ret || !pl_is(r->buf, r->ps, p, good[p]))
			violation(r, "page %u: read version %u before fsck -y, not after (%s)", p,
				  good[p], ret ? vswap_strerror(ret) : "other bytes");
	}
	vswap_store_close(s);
}

/* Invariant 4: fsck -y leaves nothing for a second run, and loses nothing. */
static void check_fsck(struct run *r, const uint32_t *good)
{
	struct vswap_fsck_opts o = {.mode = VSWAP_FSCK_REPAIR,
				    .staging_dir = r->dir,
				    .log = quiet_log,
				    .log_ctx = r,
				    .log_level = VSWAP_LOG_ERROR};
	int codes[2];
	for (int pass = 0; pass < 2; pass++) {
		struct vswap_fsck *f;
		assert_int_equal(vswap_fsck_new(r->abs[r->f_swap], &o, &f), 0);
		int ret = vswap_fsck_run(f);
		codes[pass] = vswap_fsck_exit_code(f);
		r->c.fsck_runs++;
		if (ret || codes[pass] > VSWAP_FSCK_EXIT_CORRECTED || (pass && codes[pass])) {
			const struct vswap_problem *pb =
			    vswap_fsck_problem_count(f) ? vswap_fsck_problem(f, 0) : NULL;
			violation(
			    r,
			    "fsck -y pass %d: %s, exit %d, %zu problems (first: %s page %lld: %s)",
			    pass + 1, ret ? vswap_strerror(ret) : "ran", codes[pass],
			    vswap_fsck_problem_count(f),
			    pb ? vswap_problem_kind_name(pb->kind) : "-",
			    pb && pb->has_page ? (long long)pb->page : -1ll,
			    pb && pb->detail ? pb->detail : "");
			vswap_fsck_free(f);
			return;
		}
		vswap_fsck_free(f);
		o.mode = VSWAP_FSCK_CHECK;
	}
	r->c.fsck_repaired += codes[0] != 0;
	check_repaired(r, good);
}

/* A clean close is durable in every mode: after it, the flag must say so. */
static void check_clean(struct run *r, struct vswap_store *s)
{
	struct vswap_store_info info;
	assert_int_equal(vswap_store_info(s, &info), 0);
	if (r->closed && !info.was_clean)
		violation(r, "store closed cleanly, but the index says unclean");
}

static void check_state(struct run *r)
{
	struct vswap_store_opts o = {.read_only = true,
				     .tolerant = true,
				     .durability = r->mode,
				     .log = quiet_log,
				     .log_ctx = r,
				     .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *s;
	r->last_store_error[0] = 0;
	int ret = vswap_store_open(r->abs[r->f_swap], &o, &s);
	if (ret) {
		r->c.refused++;
		/* A store whose create returned was synced: it must open. */
		if (r->created && r->strict)
			violation(r, "store does not open: %s (%s)", vswap_strerror(ret),
				  r->last_store_error);
		return;
	}
	r->c.opened++;
	struct walk w = {.r = r};
	w.recs = calloc(r->npages, sizeof(*w.recs));
	w.staged = calloc(r->npages / 64 + 1, sizeof(*w.staged));
	w.summed = calloc(r->npages / 64 + 1, sizeof(*w.summed));
	w.ssum = calloc(r->npages, sizeof(*w.ssum));
	assert_true(w.recs && w.staged && w.summed && w.ssum);
	r->store = s;
	assert_int_equal(vswap_store_foreach_page(s, walk_page, &w), 0);
	assert_int_equal(vswap_store_foreach_staged_page(s, walk_staged, &w), 0);
	int64_t c = match_commit(r, &w);
	if (r->strict)
		check_present_bytes(r, s, &w);
	check_clean(r, s);
	uint32_t *good = calloc(r->npages, sizeof(*good));
	assert_non_null(good);
	check_reads(r, s, &w, c, good);
	if (r->strict)
		check_staging(r, &w);
	check_staged_copies(r, &w);
	vswap_store_close(s);
	r->store = NULL;
	free(w.recs);
	free(w.staged);
	free(w.summed);
	free(w.ssum);
	free(w.owner);
	if (r->created)
		check_fsck(r, good);
	free(good);
}

/* ---- the replay loop ----------------------------------------------------------------- */

/* Every variant at the current boundary; identical states once. */
static void check_boundary(struct run *r)
{
	r->c.boundaries++;
	for (size_t v = 0; v < NVARIANTS; v++) {
		r->var = &variants[v];
		if (r->var->long_only && !long_mode())
			continue;
		/* A state that may have lost a returned commit: any older one is
		 * legal unless the mode promises durability. */
		uint32_t lo_saved = r->lo;
		r->strict = strict(r, r->var);
		if (!r->strict)
			r->lo = 0;
		uint64_t h = state_hash(r, r->var);
		if (h) {
			r->c.candidates++;
			if (seen_add(&r->seen, h)) {
				r->c.states++;
				r->c.per_variant[v]++;
				materialise(r, r->var);
				check_state(r);
			}
		}
		r->lo = lo_saved;
	}
}

/* The commit window after record @op. */
static void track_marks(struct run *r, const struct pl_op *op)
{
	if (pl_op_is_mark(op, PL_MARK_CREATED)) {
		r->created = true;
	} else if (pl_op_is_mark(op, PL_MARK_CLOSED)) {
		r->closed = true;
	} else if (pl_op_is_mark(op, PL_MARK_BEGIN)) {
		uint32_t c;
		memcpy(&c, op->data, sizeof(c));
		r->hi = c <= r->nsnaps ? c : r->nsnaps;
	} else if (pl_op_is_mark(op, PL_MARK_COMMIT)) {
		uint32_t c;
		memcpy(&c, op->data, sizeof(c));
		r->lo = r->hi = c;
	}
}

/* The replay's final full state must be what the workload left on disk:
 * proof that the shim saw every write and the replay models it right. */
static void check_replay_model(struct run *r)
{
	for (int f = 0; f < r->log.nfiles; f++) {
		if (f == r->f_lock)
			continue;
		const struct pl_image *img = &r->rp.full[f];
		int fd = open(r->abs[f], O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0 || !img->exists);
		if (fd < 0)
			continue;
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal((uint64_t)st.st_size, img->size);
		uint8_t *disk = malloc(img->size + 1);
		assert_non_null(disk);
		assert_int_equal(pread(fd, disk, img->size, 0), (ssize_t)img->size);
		if (img->size && memcmp(disk, img->data, img->size) != 0)
			fail_msg("replay of %s differs from the workload's file", r->log.files[f]);
		free(disk);
		close(fd);
	}
}

/* The mutation of the replay, if any (see enum mutation). */
static void set_mutation(struct run *r)
{
	size_t created = 0;
	while (created < r->log.nops && !pl_op_is_mark(&r->log.ops[created], PL_MARK_CREATED))
		created++;
	switch (r->cfg.mutation) {
	case MUT_NONE:
		break;
	case MUT_NO_DATA_SYNC:
		r->rp.skip_file = r->f_swap;
		r->rp.skip_type = WL_SYNC;
		r->rp.skip_from = created;
		break;
	case MUT_NO_STAGING_PUNCH:
		r->rp.skip_file = r->f_staging;
		r->rp.skip_type = WL_PUNCH;
		r->rp.skip_from = 0;
		break;
	}
}

/* Every record boundary, every variant: cheap enough (a few thousand
 * distinct states, each a few small files on tmpfs). */
static void replay_all(struct run *r)
{
	assert_int_equal(pl_replay_init(&r->rp, &r->log), 0);
	for (size_t i = 0; i < r->log.nops; i++)
		pl_replay_step(&r->rp);
	check_replay_model(r);
	pl_replay_free(&r->rp);

	assert_int_equal(pl_replay_init(&r->rp, &r->log), 0);
	set_mutation(r);
	r->lo = r->hi = 0;
	r->created = r->closed = false;
	for (r->at = 0;; r->at++) {
		check_boundary(r);
		/* A mutation run asks only whether the checker catches it: the
		 * first violation answers (the long mode checks every state). */
		if (r->cfg.mutation != MUT_NONE && r->c.violations && !long_mode())
			break;
		if (r->at == r->log.nops)
			break;
		track_marks(r, &r->log.ops[r->at]);
		pl_replay_step(&r->rp);
	}
	pl_replay_free(&r->rp);
}

static void free_run(struct run *r)
{
	for (int f = 0; r->abs && f < r->log.nfiles; f++)
		free(r->abs[f]);
	free(r->abs);
	pl_log_free(&r->log);
	for (uint32_t c = 0; c <= r->nsnaps && r->snaps; c++)
		free(r->snaps[c]);
	free(r->snaps);
	free(r->vsum);
	free(r->buf);
	free(r->seen.v);
}

static const char *mutation_name(enum mutation m)
{
	return m == MUT_NO_DATA_SYNC	   ? " mutation no-data-sync"
	       : m == MUT_NO_STAGING_PUNCH ? " mutation no-staging-punch"
					   : "";
}

static void print_counts(const struct run *r, double secs)
{
	printf(
	    "powerloss %s%s%s (steps %u, seed %u): %zu log records, %u commits; %llu boundaries, "
	    "%llu candidate states, %llu distinct states checked (%llu opened, %llu refused), "
	    "%llu page reads (%llu refused), %llu staged copies unverified, "
	    "%llu fsck runs (%llu repaired); "
	    "%llu violations; %.1f s\n",
	    vswap_durability_name(r->mode), r->cfg.edge ? " edge" : "",
	    mutation_name(r->cfg.mutation), r->cfg.steps, r->cfg.seed, r->log.nops, r->nsnaps,
	    (unsigned long long)r->c.boundaries, (unsigned long long)r->c.candidates,
	    (unsigned long long)r->c.states, (unsigned long long)r->c.opened,
	    (unsigned long long)r->c.refused, (unsigned long long)r->c.reads,
	    (unsigned long long)r->c.read_errors, (unsigned long long)r->c.staged_unverified,
	    (unsigned long long)r->c.fsck_runs, (unsigned long long)r->c.fsck_repaired,
	    (unsigned long long)r->c.violations, secs);
	printf("  per variant:");
	for (size_t v = 0; v < NVARIANTS; v++)
		if (!variants[v].long_only || long_mode())
			printf(" %s %llu", variants[v].name,
			       (unsigned long long)r->c.per_variant[v]);
	printf("\n");
	fflush(stdout);
}

/* One workload run and its replay; returns the violations found. */
static uint64_t powerloss(const struct config *cfg)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct run *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->cfg = *cfg;
	r->mode = cfg->mode;
	r->ps = (uint32_t)sysconf(_SC_PAGESIZE);
	r->buf = aligned_alloc(r->ps, r->ps);
	assert_non_null(r->buf);
	make_dirs(r);
	int st = run_workload(r);
	if (st != 0)
		fail_msg("workload (%s) exited with status %d", vswap_durability_name(r->mode), st);
	char err[256];
	if (pl_log_load(r->log_path, &r->log, err, sizeof(err)))
		fail_msg("write log: %s", err);
	load_snapshots(r);
	resolve_files(r);
	replay_all(r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_counts(r, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	uint64_t bad = r->c.violations;
	if (!bad || cfg->mutation != MUT_NONE)
		remove_tree(r->tmp);
	else
		fprintf(stderr, "powerloss: files and write log kept in %s\n", r->tmp);
	reaper_tell(cfg->reaper, '-', r->tmp); /* removed, or kept on purpose */
	free_run(r);
	free(r);
	return bad;
}

/* The reaper's pipe, each test's state (main() starts it). */
static int reaper_of(void **state)
{
	return *(const int *)*state;
}

/* The workload in @mode, every state checked; no violation allowed. */
static void run_mode(void **state, enum vswap_durability mode)
{
	unsigned seeds = long_mode() ? 2 : 1;
	uint64_t bad = 0;
	for (unsigned i = 0; i < seeds; i++) {
		struct config cfg = {.mode = mode,
				     .steps = long_mode() ? 300 : 40,
				     .seed = 0x5eed + i,
				     .reaper = reaper_of(state)};
		bad += powerloss(&cfg);
	}
	assert_int_equal(bad, 0);
}

static void test_full(void **state)
{
	run_mode(state, VSWAP_DURABILITY_FULL);
}

static void test_batch(void **state)
{
	run_mode(state, VSWAP_DURABILITY_BATCH);
}

static void test_none(void **state)
{
	run_mode(state, VSWAP_DURABILITY_NONE);
}

/* The checker has teeth: a store that did not sync its data before the
 * index commit (invariant 1) is caught ... */
static void test_mutation_no_data_sync(void **state)
{
	struct config cfg = {.mode = VSWAP_DURABILITY_BATCH,
			     .steps = 10,
			     .seed = 0x5eed,
			     .mutation = MUT_NO_DATA_SYNC,
			     .quiet = true,
			     .reaper = reaper_of(state)};
	assert_true(powerloss(&cfg) > 0);
}

/* ... and so is one that left staged bytes behind a cleared staging
 * record (invariant 5). */
static void test_mutation_no_staging_punch(void **state)
{
	struct config cfg = {.mode = VSWAP_DURABILITY_BATCH,
			     .steps = 10,
			     .seed = 0x5eed,
			     .mutation = MUT_NO_STAGING_PUNCH,
			     .quiet = true,
			     .reaper = reaper_of(state)};
	assert_true(powerloss(&cfg) > 0);
}

/*
 * A page faulted in (marked stale, not yet committed), dirtied and written
 * again before any commit: the store rewrites its slot in place while the
 * committed index still calls that slot the page's present copy, so a power
 * loss before the next commit leaves a present record over other bytes
 * (invariant 1) if the store rewrote the slot in place.  The handler's
 * move-to-staging commit normally sits in between; the store API does not
 * require it, so the store gives such a page a new slot.
 */
static void test_edge_rewrite_before_commit(void **state)
{
	uint64_t bad = 0;
	for (int m = 0; m < 2; m++) {
		struct config cfg = {.mode = m ? VSWAP_DURABILITY_BATCH : VSWAP_DURABILITY_FULL,
				     .steps = long_mode() ? 300 : 40,
				     .seed = 0x5eed,
				     .edge = true,
				     .reaper = reaper_of(state)};
		bad += powerloss(&cfg);
	}
	assert_int_equal(bad, 0);
}

int main(int argc, char **argv)
{
	if (access(VSWAP_POWERLOSS_SHIM, R_OK) != 0 ||
	    access(VSWAP_POWERLOSS_WORKLOAD, X_OK) != 0) {
		fprintf(stderr,
			"powerloss: shim or workload not built (%s, %s); build the "
			"tests/powerloss targets\n",
			VSWAP_POWERLOSS_SHIM, VSWAP_POWERLOSS_WORKLOAD);
		return 1;
	}
	/* One group, or all of them (no argument): ctest runs each group as
	 * a test of its own, so that none nears its time limit. */
	static const char *const groups[] = {"full", "batch", "none", "mutations", "edge"};
	const char *only = argc > 1 ? argv[1] : NULL;
	bool known = !only;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]) && !known; i++)
		known = !strcmp(only, groups[i]);
	if (!known) {
		fprintf(stderr, "usage: test_powerloss [full|batch|none|mutations|edge]\n");
		return 2;
	}
	int reaper = reaper_start();
	if (reaper < 0)
		fprintf(stderr, "powerloss: no reaper: a test killed may leave its directory\n");
	const struct CMUnitTest full[] = {cmocka_unit_test_prestate(test_full, &reaper)};
	const struct CMUnitTest batch[] = {cmocka_unit_test_prestate(test_batch, &reaper)};
	const struct CMUnitTest none[] = {cmocka_unit_test_prestate(test_none, &reaper)};
	const struct CMUnitTest mutations[] = {
	    cmocka_unit_test_prestate(test_mutation_no_data_sync, &reaper),
	    cmocka_unit_test_prestate(test_mutation_no_staging_punch, &reaper),
	};
	const struct CMUnitTest edge[] = {
	    cmocka_unit_test_prestate(test_edge_rewrite_before_commit, &reaper),
	};
	int failed = 0;
	if (!only || !strcmp(only, "full"))
		failed += cmocka_run_group_tests_name("powerloss full", full, NULL, NULL);
	if (!only || !strcmp(only, "batch"))
		failed += cmocka_run_group_tests_name("powerloss batch", batch, NULL, NULL);
	if (!only || !strcmp(only, "none"))
		failed += cmocka_run_group_tests_name("powerloss none", none, NULL, NULL);
	if (!only || !strcmp(only, "mutations"))
		failed += cmocka_run_group_tests_name("powerloss mutations", mutations, NULL, NULL);
	if (!only || !strcmp(only, "edge"))
		failed += cmocka_run_group_tests_name("powerloss edge", edge, NULL, NULL);
	return failed ? 1 : 0;
}
