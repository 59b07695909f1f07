/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench: every figure beside a baseline measured in the same run.
 *
 *   vswap-bench [--quick] [--json] [--size BYTES] [--dir DIR] [--runs N]
 *               [--kernel-swap] [--only GROUP[,GROUP...]] [--enable-mode MODE]
 *               [--verbose]
 *
 * (docs/vswap-bench.1 describes every figure and its baseline.)
 *
 * Absolute numbers on a shared virtual machine drift by 2x between minutes,
 * so each figure is compared with a baseline measured on the same bytes, on
 * the same file system, interleaved with it run by run, and the report gives
 * medians.  Figures come in groups; a group is one function in figures[]
 * below, so a new figure is one function and one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <vswap/handler.h>
#include <vswap/recovery.h>
#include <vswap/store.h>

#include "tools/bench/bare_swapin.h"
#include "tools/bench/ceiling.h"
#include "tools/bench/common.h"
#include "tools/bench/datapath.h"
#include "tools/bench/enable.h"
#include "tools/bench/faults.h"
#include "tools/bench/kswap.h"
#include "tools/bench/results.h"
#include "tools/bench/vswapd.h"
#include "tools/common/cli.h"
#include "tools/common/json.h"

#define CHUNK_BYTES (2 * BENCH_MIB)	    /* the handler's swap-out chunk */
#define BATCH_COMMIT_BYTES (64 * BENCH_MIB) /* "batch, commit every 64 MiB" */
#define MAX_RUNS 64

struct bench {
	/* options */
	uint64_t size;
	const char *dir;
	const char *only;
	unsigned runs;
	unsigned rand_samples; /* random 4 KiB reads / faults per run */
	bool quick, json, kernel_swap, verbose;
	enum vswap_enable_mode enable_mode; /* the handler group's (--enable-mode) */

	/* shared state */
	uint32_t page_size;
	void *src; /* incompressible bytes, cycled when size > src_len */
	size_t src_len;
	void *dst;     /* one chunk: where reads land (like UFFDIO_COPY's source) */
	sigset_t stop; /* blocked for the whole run; polled between passes */
	unsigned seq;  /* temp file names */
	struct bench_results res;

	/* figures other groups compare with (NAN until measured) */
	double store_write_batch_gbps;
	double store_read_gbps;
	double store_read_p50_us;
	double swap_out_gbps, swap_in_gbps, fault_file_p50_us;
	double write_ceiling_gbps, overwrite_ceiling_gbps; /* group "handler" */
	double fault_file_rand_p50_us; /* group "datapath": cold, random order */
	double fault_rand_8t_pages_s;  /* group "datapath": 8 threads, cold, random */
};

/* ---- helpers ------------------------------------------------------------- */

static const void *src_at(const struct bench *b, uint64_t off)
{
	return (const char *)b->src + off % b->src_len;
}

static void tmp_path(struct bench *b, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vswap-bench.%d.%u.%s", b->dir, (int)getpid(), b->seq++, what);
}

static bool interrupted(const struct bench *b)
{
	return kswap_interrupted(&b->stop);
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void note(const struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const struct bench *b, const char *fmt, ...)
{
	va_list ap;

	if (!b->verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/*
 * Write the benchmark's bytes to a fresh file, the raw baseline's way:
 * 2 MiB pwrite()s, then fdatasync (@sync).  With @sync_every, also
 * fdatasync and drop the written pages every @sync_every bytes, the
 * pattern of a store committing every 64 MiB.  With @direct, O_DIRECT
 * (the source is page-aligned, every chunk but the last 2 MiB).
 */
static int raw_write_file(struct bench *b, const char *path, bool sync, uint64_t sync_every,
			  bool direct, double *secs, double *sync_secs)
{
	int fd =
	    open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600);
	uint64_t off, since = 0;
	double t0;
	int err = 0;

	if (fd < 0)
		return -errno;
	t0 = bench_now();
	for (off = 0; off < b->size && !err; off += CHUNK_BYTES) {
		size_t n = b->size - off < CHUNK_BYTES ? b->size - off : CHUNK_BYTES;

		err = pwrite_all(fd, src_at(b, off), n, off);
		since += n;
		if (!err && sync_every && since >= sync_every) {
			if (fdatasync(fd))
				err = -errno;
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			since = 0;
		}
	}
	*sync_secs = bench_now();
	if (!err && sync && fdatasync(fd))
		err = -errno;
	*secs = bench_now() - t0;
	*sync_secs = bench_now() - *sync_secs;
	close(fd);
	return err;
}

/* ---- group "hash": the CPU floors every other figure sits on ------------ */

static int fig_page_check(struct bench *b);

static int fig_hash(struct bench *b)
{
	double xx[MAX_RUNS], mc[MAX_RUNS];
	uint64_t sink = 0, off;
	unsigned r;

	for (r = 0; r < b->runs; r++) {
		double t0 = bench_now();

		for (off = 0; off < b->size; off += b->page_size)
			sink ^= bench_xxh3(src_at(b, off), b->page_size);
		xx[r] = bench_gbps(b->size, bench_now() - t0);
		t0 = bench_now();
		for (off = 0; off < b->size; off += CHUNK_BYTES)
			memcpy(b->dst, src_at(b, off), CHUNK_BYTES);
		mc[r] = bench_gbps(b->size, bench_now() - t0);
	}
	/* Keep the hashes alive without printing them. */
	__asm__ volatile("" ::"r"(sink));
	bench_add(&b->res, "xxh3_4k_gbps", bench_median(xx, b->runs), "GB/s", "memcpy_2m_gbps",
		  bench_median(mc, b->runs));
	return fig_page_check(b);
}

/* ---- group "store-write": the store against plain writes ---------------- */

enum wmode { W_RAW, W_RAW64, W_RAWD, W_RAWD64, W_FULL, W_BATCH, W_BATCH64, W_NONE, W_NMODES };

static const char *const wmode_name[W_NMODES] = {
    [W_RAW] = "raw_write_fdatasync_gbps",      [W_RAW64] = "raw_write_sync64m_gbps",
    [W_RAWD] = "raw_write_odirect_gbps",       [W_RAWD64] = "raw_write_odirect_sync64m_gbps",
    [W_FULL] = "store_write_full_gbps",	       [W_BATCH] = "store_write_batch_gbps",
    [W_BATCH64] = "store_write_batch64m_gbps", [W_NONE] = "store_write_none_gbps",
};

/*
 * Create a store in @b->dir with one region of @b->size bytes.  The store's
 * own defaults apply to everything else (staging in /dev/shm).
 */
static int store_new(struct bench *b, enum vswap_durability d, char *path, size_t plen,
		     struct vswap_store **out)
{
	struct vswap_store_opts o = {.durability = d};
	uint64_t pages = b->size / b->page_size;
	int err;

	*out = NULL;
	tmp_path(b, "swap", path, plen);
	err = vswap_store_create(path, &o, out);
	if (err) {
		fprintf(stderr, "vswap-bench: create %s: %s\n", path, vswap_strerror(err));
		*out = NULL;
		return err;
	}
	err = vswap_store_set_regions(*out, &pages, 1);
	if (err) {
		fprintf(stderr, "vswap-bench: set_regions: %s\n", vswap_strerror(err));
		vswap_store_close(*out);
		vswap_store_destroy(path, &o);
		*out = NULL;
	}
	return err;
}

static void store_gone(struct vswap_store *s, const char *path)
{
	struct vswap_store_opts o = {0};
	int err = s ? vswap_store_close(s) : 0;

	if (err)
		fprintf(stderr, "vswap-bench: close %s: %s\n", path, vswap_strerror(err));
	err = vswap_store_destroy(path, &o);
	if (err)
		fprintf(stderr, "vswap-bench: destroy %s: %s\n", path, vswap_strerror(err));
}

/*
 * The page check of format 2 (vswap_store_page_checksum(): XXH3 seeded with
 * the store's seed and the page number, so that a page's valid bytes fail
 * as another page's) against the unseeded XXH3 of format 1, on the same
 * bytes in the same run: what binding identity adds to every checksum that
 * store writes, reads, swap-out, swap-in and faults compute.
 */
static int fig_page_check(struct bench *b)
{
	double pc[MAX_RUNS], xx[MAX_RUNS];
	char path[PATH_MAX];
	struct vswap_store *s;
	uint64_t sink = 0, off;
	unsigned r;
	int err = store_new(b, VSWAP_DURABILITY_NONE, path, sizeof(path), &s);

	if (err)
		return err;
	for (r = 0; r < b->runs; r++) {
		double t0 = bench_now();

		for (off = 0; off < b->size; off += b->page_size)
			sink ^= vswap_store_page_checksum(s, off / b->page_size, src_at(b, off));
		pc[r] = bench_gbps(b->size, bench_now() - t0);
		t0 = bench_now();
		for (off = 0; off < b->size; off += b->page_size)
			sink ^= bench_xxh3(src_at(b, off), b->page_size);
		xx[r] = bench_gbps(b->size, bench_now() - t0);
	}
	__asm__ volatile("" ::"r"(sink));
	bench_add(&b->res, "page_check_4k_gbps", bench_median(pc, b->runs), "GB/s", "xxh3_4k_gbps",
		  bench_median(xx, b->runs));
	store_gone(s, path);
	return 0;
}

/*
 * Write every page through the store in 2 MiB chunks; commit every
 * @commit_bytes (0: once at the end, as one swap-out call does).  The time
 * covers the writes and the final commit, not create or close, just as the
 * raw baseline's covers write + fdatasync but not open.
 */
static int store_write_pass(struct bench *b, enum vswap_durability d, uint64_t commit_bytes,
			    double *gbps, struct vswap_store_stats *st)
{
	uint32_t chunk = (uint32_t)(CHUNK_BYTES / b->page_size);
	uint64_t pages = b->size / b->page_size, p, since = 0;
	struct vswap_store *s;
	char path[PATH_MAX];
	double t0, t1, cpu0;
	int err;

	err = store_new(b, d, path, sizeof(path), &s);
	if (err)
		return err;
	cpu0 = cpu_seconds();
	t0 = bench_now();
	for (p = 0; p < pages && !err; p += chunk) {
		uint32_t n = pages - p < chunk ? (uint32_t)(pages - p) : chunk;

		err = vswap_store_write(s, p, n, src_at(b, p * b->page_size));
		since += (uint64_t)n * b->page_size;
		if (!err && commit_bytes && since >= commit_bytes) {
			err = vswap_store_commit(s);
			since = 0;
		}
	}
	t1 = bench_now();
	if (!err)
		err = vswap_store_commit(s);
	*gbps = bench_gbps(pages * b->page_size, bench_now() - t0);
	note(b, "  %-5s commit/%-4llu %.3f GB/s  cpu %.2f s  final commit %.3f s\n",
	     vswap_durability_name(d), (unsigned long long)(commit_bytes / BENCH_MIB), *gbps,
	     cpu_seconds() - cpu0, bench_now() - t1);
	if (err)
		fprintf(stderr, "vswap-bench: store write (%s): %s\n", vswap_durability_name(d),
			vswap_strerror(err));
	else if (st)
		err = vswap_store_stats(s, st);
	store_gone(s, path);
	return err;
}

static int raw_write_pass(struct bench *b, uint64_t sync_every, bool direct, double *gbps)
{
	char path[PATH_MAX];
	double secs = 0, sync_secs = 0, cpu0 = cpu_seconds(); /* set unless the write fails */
	int err;

	tmp_path(b, "raw", path, sizeof(path));
	err = raw_write_file(b, path, true, sync_every, direct, &secs, &sync_secs);
	*gbps = bench_gbps(b->size / b->page_size * b->page_size, secs);
	note(b, "  raw%s sync/%-5llu %.3f GB/s  cpu %.2f s  final sync %.3f s\n",
	     direct ? "-od" : "   ", (unsigned long long)(sync_every / BENCH_MIB), *gbps,
	     cpu_seconds() - cpu0, sync_secs);
	unlink(path);
	if (err)
		fprintf(stderr, "vswap-bench: raw write %s: %s\n", path, strerror(-err));
	return err;
}

static int write_mode_pass(struct bench *b, enum wmode m, double *gbps,
			   struct vswap_store_stats *st)
{
	switch (m) {
	case W_RAW:
		return raw_write_pass(b, 0, false, gbps);
	case W_RAW64:
		return raw_write_pass(b, BATCH_COMMIT_BYTES, false, gbps);
	case W_RAWD:
		return raw_write_pass(b, 0, true, gbps);
	case W_RAWD64:
		return raw_write_pass(b, BATCH_COMMIT_BYTES, true, gbps);
	case W_FULL:
		return store_write_pass(b, VSWAP_DURABILITY_FULL, 0, gbps, st);
	case W_BATCH:
		return store_write_pass(b, VSWAP_DURABILITY_BATCH, 0, gbps, st);
	case W_BATCH64:
		return store_write_pass(b, VSWAP_DURABILITY_BATCH, BATCH_COMMIT_BYTES, gbps, st);
	default:
		return store_write_pass(b, VSWAP_DURABILITY_NONE, 0, gbps, st);
	}
}

/*
 * On a virtual machine whose balloon reports free pages to the host, the
 * first pass to allocate a GiB of page cache pays the host's first-touch
 * faults (it ran at a quarter of the speed here).  One untimed pass of
 * each kind first, so that no mode pays it alone.
 */
static int store_write_warmup(struct bench *b)
{
	double ignore;
	int err = raw_write_pass(b, 0, false, &ignore);

	return err ? err : store_write_pass(b, VSWAP_DURABILITY_BATCH, 0, &ignore, NULL);
}

static int fig_store_write(struct bench *b)
{
	double v[W_NMODES][MAX_RUNS], med[W_NMODES];
	struct vswap_store_stats st = {0};
	unsigned r, k;
	int err;

	note(b, "store-write warm-up\n");
	err = store_write_warmup(b);
	if (err)
		return err;
	for (r = 0; r < b->runs; r++) {
		note(b, "store-write run %u/%u\n", r + 1, b->runs);
		/* Rotate the order each run so no mode always follows another. */
		for (k = 0; k < W_NMODES; k++) {
			enum wmode m = (enum wmode)((k + r) % W_NMODES);

			if (interrupted(b))
				return -EINTR;
			err = write_mode_pass(b, m, &v[m][r], m == W_BATCH ? &st : NULL);
			if (err)
				return err;
		}
	}
	for (k = 0; k < W_NMODES; k++)
		med[k] = bench_median(v[k], b->runs);
	/*
	 * Two baselines for every store figure.  The buffered write + fdatasync
	 * is the plain baseline (what a program that just writes the bytes
	 * gets); the O_DIRECT write + fdatasync is the floor under the store,
	 * which writes page-aligned chunks with O_DIRECT itself.  The buffered
	 * one swings with the cost of copying into the page cache on this VM;
	 * the O_DIRECT one is steady.  Commit-every-64 MiB is compared with the
	 * raw writes that sync every 64 MiB.
	 */
	bench_add(&b->res, wmode_name[W_RAWD], med[W_RAWD], "GB/s", wmode_name[W_RAW], med[W_RAW]);
	for (k = W_FULL; k < W_NMODES; k++) {
		enum wmode base = k == W_BATCH64 ? W_RAW64 : W_RAW;
		enum wmode dbase = k == W_BATCH64 ? W_RAWD64 : W_RAWD;

		bench_add(&b->res, wmode_name[k], med[k], "GB/s", wmode_name[base], med[base]);
		bench_add(&b->res, wmode_name[k], med[k], "GB/s", wmode_name[dbase], med[dbase]);
	}
	b->store_write_batch_gbps = med[W_BATCH];
	/* LMDB bytes in use after one full batch pass, per page swapped. */
	bench_add(&b->res, "index_bytes_per_page",
		  (double)st.index_bytes / (double)(b->size / b->page_size), "B", NULL, NAN);
	return 0;
}

/* ---- group "store-read": the store's swap-in path, below userfaultfd ---- */

/*
 * The same bytes in a store and in a plain file; each run drops both from
 * the page cache (posix_fadvise DONTNEED: the bytes are synced, so it
 * works) and reads them back in 2 MiB chunks, then reads random pages one
 * by one.  The store verifies every page's checksum; the raw read does not.
 */
struct read_setup {
	struct vswap_store *s;
	char store_path[PATH_MAX];
	char raw_path[PATH_MAX];
	int raw_fd;
	uint32_t *order; /* random page order, distinct pages */
	unsigned nrand;
};

static int read_setup(struct bench *b, struct read_setup *rs)
{
	uint32_t chunk = (uint32_t)(CHUNK_BYTES / b->page_size);
	uint64_t pages = b->size / b->page_size, p, seed = 42, i;
	double secs;
	int err;

	memset(rs, 0, sizeof(*rs));
	rs->raw_fd = -1;
	err = store_new(b, VSWAP_DURABILITY_BATCH, rs->store_path, sizeof(rs->store_path), &rs->s);
	if (err)
		return err;
	for (p = 0; p < pages && !err; p += chunk) {
		uint32_t n = pages - p < chunk ? (uint32_t)(pages - p) : chunk;

		err = vswap_store_write(rs->s, p, n, src_at(b, p * b->page_size));
	}
	if (!err)
		err = vswap_store_commit(rs->s);
	if (err)
		return err;
	tmp_path(b, "raw", rs->raw_path, sizeof(rs->raw_path));
	err = raw_write_file(b, rs->raw_path, true, 0, false, &secs, &secs);
	if (err)
		return err;
	rs->raw_fd = open(rs->raw_path, O_RDONLY | O_CLOEXEC);
	if (rs->raw_fd < 0)
		return -errno;
	rs->nrand = b->rand_samples < pages ? b->rand_samples : (unsigned)pages;
	rs->order = malloc(pages * sizeof(*rs->order));
	if (!rs->order)
		return -ENOMEM;
	for (i = 0; i < pages; i++)
		rs->order[i] = (uint32_t)i;
	for (i = 0; i < rs->nrand; i++) {
		uint64_t j = i + bench_rand(&seed) % (pages - i);
		uint32_t t = rs->order[i];

		rs->order[i] = rs->order[j];
		rs->order[j] = t;
	}
	return 0;
}

static void read_teardown(struct read_setup *rs)
{
	if (rs->s)
		store_gone(rs->s, rs->store_path);
	if (rs->raw_fd >= 0)
		close(rs->raw_fd);
	if (rs->raw_path[0])
		unlink(rs->raw_path);
	free(rs->order);
}

static int cache_drop(int fd)
{
	int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

	return err ? -err : 0;
}

static int raw_read_pass(struct bench *b, struct read_setup *rs, double *gbps, double *lat)
{
	uint64_t off;
	unsigned i;
	double t0;
	int err = cache_drop(rs->raw_fd);

	t0 = bench_now();
	for (off = 0; off < b->size && !err; off += CHUNK_BYTES) {
		size_t n = b->size - off < CHUNK_BYTES ? b->size - off : CHUNK_BYTES;

		err = pread_all(rs->raw_fd, b->dst, n, off);
	}
	*gbps = bench_gbps(b->size, bench_now() - t0);
	if (!err)
		err = cache_drop(rs->raw_fd);
	for (i = 0; i < rs->nrand && !err; i++) {
		uint64_t a = bench_now_ns();

		err = pread_all(rs->raw_fd, b->dst, b->page_size,
				(uint64_t)rs->order[i] * b->page_size);
		lat[i] = (double)(bench_now_ns() - a) / 1e3;
	}
	return err;
}

static int store_read_pass(struct bench *b, struct read_setup *rs, double *gbps, double *lat)
{
	uint32_t chunk = (uint32_t)(CHUNK_BYTES / b->page_size);
	uint64_t pages = b->size / b->page_size, p;
	int fd = vswap_store_swap_fd(rs->s), err = cache_drop(fd), bad;
	unsigned i;
	double t0;

	t0 = bench_now();
	for (p = 0; p < pages && !err; p += chunk) {
		uint32_t n = pages - p < chunk ? (uint32_t)(pages - p) : chunk;

		bad = vswap_store_read_run(rs->s, p, n, b->dst, NULL);
		err = bad > 0 ? -EBADMSG : bad;
	}
	*gbps = bench_gbps(pages * b->page_size, bench_now() - t0);
	if (!err)
		err = cache_drop(fd);
	for (i = 0; i < rs->nrand && !err; i++) {
		uint64_t a = bench_now_ns();

		err = vswap_store_read_page(rs->s, rs->order[i], b->dst);
		lat[i] = (double)(bench_now_ns() - a) / 1e3;
	}
	if (err)
		fprintf(stderr, "vswap-bench: store read: %s\n", vswap_strerror(err));
	return err;
}

static int fig_store_read(struct bench *b)
{
	double raw[MAX_RUNS], sto[MAX_RUNS], *rlat = NULL, *slat = NULL;
	struct read_setup rs;
	unsigned r;
	int err = read_setup(b, &rs);

	if (err)
		goto out;
	rlat = malloc((size_t)b->runs * rs.nrand * sizeof(*rlat));
	slat = malloc((size_t)b->runs * rs.nrand * sizeof(*slat));
	if (!rlat || !slat) {
		err = -ENOMEM;
		goto out;
	}
	for (r = 0; r < b->runs && !err; r++) {
		note(b, "store-read run %u/%u\n", r + 1, b->runs);
		if (interrupted(b)) {
			err = -EINTR;
			break;
		}
		/* Alternate which goes first. */
		if (r % 2) {
			err = store_read_pass(b, &rs, &sto[r], slat + (size_t)r * rs.nrand);
			if (!err)
				err = raw_read_pass(b, &rs, &raw[r], rlat + (size_t)r * rs.nrand);
		} else {
			err = raw_read_pass(b, &rs, &raw[r], rlat + (size_t)r * rs.nrand);
			if (!err)
				err = store_read_pass(b, &rs, &sto[r], slat + (size_t)r * rs.nrand);
		}
		note(b, "  raw read %.3f GB/s, store read_run %.3f GB/s\n", raw[r], sto[r]);
	}
	if (err)
		goto out;
	{
		size_t n = (size_t)b->runs * rs.nrand;
		double rp50 = bench_quantile(rlat, n, 0.50), rp99 = bench_quantile(rlat, n, 0.99);
		double sp50 = bench_quantile(slat, n, 0.50), sp99 = bench_quantile(slat, n, 0.99);

		b->store_read_gbps = bench_median(sto, b->runs);
		b->store_read_p50_us = sp50;
		bench_add(&b->res, "store_read_run_gbps", b->store_read_gbps, "GB/s",
			  "raw_read_gbps", bench_median(raw, b->runs));
		bench_add(&b->res, "store_read_page_p50_us", sp50, "us", "raw_pread_4k_p50_us",
			  rp50);
		bench_add(&b->res, "store_read_page_p99_us", sp99, "us", "raw_pread_4k_p99_us",
			  rp99);
	}
out:
	free(rlat);
	free(slat);
	read_teardown(&rs);
	return err;
}

/* ---- group "store-open": opening a store, its index checked --------------- */

/*
 * One store of @b->size bytes, written once (every page present) and
 * closed cleanly; each run opens it (writable, as a resuming VMM does: the
 * files checked, LMDB's pages walked and bounded, the index loaded) and
 * closes it outside the timing.  The baseline reads the index file's bytes
 * with one pread() into memory: the least any open that looks at every
 * record must do.  Both from the page cache (the index was just written).
 */
static int fig_store_open(struct bench *b)
{
	struct vswap_store_opts o = {.durability = VSWAP_DURABILITY_BATCH};
	uint32_t chunk = (uint32_t)(CHUNK_BYTES / b->page_size);
	uint64_t pages = b->size / b->page_size;
	double opn[MAX_RUNS], raw[MAX_RUNS];
	char path[PATH_MAX], idx[PATH_MAX + 8];
	struct vswap_store *s;
	struct stat st;
	uint8_t *buf = NULL;
	int err = store_new(b, VSWAP_DURABILITY_BATCH, path, sizeof(path), &s);

	if (err)
		return err;
	for (uint64_t p = 0; p < pages && !err; p += chunk) {
		uint32_t n = pages - p < chunk ? (uint32_t)(pages - p) : chunk;

		err = vswap_store_write(s, p, n, src_at(b, p * b->page_size));
	}
	if (!err)
		err = vswap_store_commit(s);
	if (!err)
		err = vswap_store_close(s);
	s = NULL;
	snprintf(idx, sizeof(idx), "%s.idx", path);
	if (!err && stat(idx, &st) != 0)
		err = -errno;
	if (!err && !(buf = malloc((size_t)st.st_size)))
		err = -ENOMEM;
	for (unsigned r = 0; r < b->runs && !err; r++) {
		double t0 = bench_now();

		err = vswap_store_open(path, &o, &s);
		opn[r] = (bench_now() - t0) * 1e3;
		if (err)
			break;
		err = vswap_store_close(s);
		s = NULL;
		int fd = open(idx, O_RDONLY | O_CLOEXEC);

		t0 = bench_now();
		if (fd < 0 || pread_all(fd, buf, (size_t)st.st_size, 0))
			err = err ? err : -EIO;
		raw[r] = (bench_now() - t0) * 1e3;
		if (fd >= 0)
			close(fd);
		note(b, "  store open %.2f ms, index read %.2f ms (%lld bytes)\n", opn[r], raw[r],
		     (long long)st.st_size);
	}
	if (!err)
		bench_add(&b->res, "store_open_ms", bench_median(opn, b->runs), "ms",
			  "raw_index_read_ms", bench_median(raw, b->runs));
	free(buf);
	store_gone(s, path);
	return err;
}

/* ---- group "fsck": the audit's verification pass ------------------------ */

/*
 * One store of @b->size bytes, written once and closed cleanly; each run
 * drops the swap file's page cache and then either audits it
 * (vswap_fsck_run() in CHECK mode: every page read and its XXH3-64
 * checked) or reads the whole file with a plain reader and hashes every
 * 4 KiB page with bench_xxh3().  Three plain readers, 2 MiB
 * pread()s each: buffered (kernel readahead overlaps the disk with the
 * hashing), buffered after POSIX_FADV_SEQUENTIAL (twice the readahead, as
 * the audit asks for), and O_DIRECT (read, then hash); the fastest median
 * is the baseline.
 */
enum fsck_reader { FR_BUFFERED, FR_SEQUENTIAL, FR_DIRECT, FR_NREADERS };

static const char *const fsck_reader_name[FR_NREADERS] = {
    [FR_BUFFERED] = "read_xxh3_buffered_gbps",
    [FR_SEQUENTIAL] = "read_xxh3_fadv_seq_gbps",
    [FR_DIRECT] = "read_xxh3_odirect_gbps",
};

static int read_hash_pass(struct bench *b, const char *path, enum fsck_reader how, double *gbps)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), dfd = -1, err;
	uint64_t off, sink = 0, size;
	struct stat sb;
	double t0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb)) {
		err = -errno;
		goto out;
	}
	size = (uint64_t)sb.st_size;
	err = cache_drop(fd);
	if (!err && how == FR_SEQUENTIAL)
		err = -posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (!err && how == FR_DIRECT) {
		dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
		if (dfd < 0)
			err = -errno;
	}
	t0 = bench_now();
	for (off = 0; off < size && !err; off += CHUNK_BYTES) {
		size_t n = size - off < CHUNK_BYTES ? size - off : CHUNK_BYTES, i;

		err = pread_all(how == FR_DIRECT ? dfd : fd, b->dst, n, off);
		for (i = 0; !err && i < n; i += b->page_size)
			sink ^= bench_xxh3((const char *)b->dst + i, b->page_size);
	}
	*gbps = bench_gbps(size, bench_now() - t0);
	__asm__ volatile("" ::"r"(sink));
out:
	if (dfd >= 0)
		close(dfd);
	close(fd);
	if (err)
		fprintf(stderr, "vswap-bench: read+xxh3 %s: %s\n", path, strerror(-err));
	return err;
}

static int fsck_pass(struct bench *b, const char *path, double *gbps, double *pass_gbps)
{
	struct vswap_fsck_opts o = {.mode = VSWAP_FSCK_CHECK, .no_orphan_scan = true};
	uint64_t pages = b->size / b->page_size;
	struct vswap_fsck_counts c = {0};
	struct vswap_fsck *f = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;
	double t0, secs;

	if (fd < 0)
		return -errno;
	err = cache_drop(fd);
	close(fd);
	if (!err)
		err = vswap_fsck_new(path, &o, &f);
	if (err)
		goto out;
	t0 = bench_now();
	err = vswap_fsck_run(f);
	secs = bench_now() - t0;
	if (!err)
		err = vswap_fsck_counts(f, &c);
	if (!err &&
	    (vswap_fsck_exit_code(f) != VSWAP_FSCK_EXIT_CLEAN || c.pages_checked != pages)) {
		fprintf(stderr, "vswap-bench: fsck of %s: exit %d, %llu of %llu pages checked\n",
			path, vswap_fsck_exit_code(f), (unsigned long long)c.pages_checked,
			(unsigned long long)pages);
		err = -EIO;
	}
	*gbps = bench_gbps(c.bytes_verified, secs);
	*pass_gbps = c.verify_ns ? (double)c.bytes_verified / (double)c.verify_ns : 0.0;
	note(b, "  fsck -n %.3f GB/s (verify pass %.3f GB/s, %.3f s of %.3f s)\n", *gbps,
	     *pass_gbps, (double)c.verify_ns / 1e9, secs);
out:
	vswap_fsck_free(f);
	if (err)
		fprintf(stderr, "vswap-bench: fsck %s: %s\n", path, vswap_strerror(err));
	return err;
}

static int fig_fsck(struct bench *b)
{
	double fs[MAX_RUNS], fp[MAX_RUNS], rd[FR_NREADERS][MAX_RUNS], med[FR_NREADERS];
	uint32_t chunk = (uint32_t)(CHUNK_BYTES / b->page_size);
	uint64_t pages = b->size / b->page_size, p;
	enum fsck_reader best = FR_BUFFERED;
	struct vswap_store *s;
	char path[PATH_MAX];
	unsigned r, k;
	int err;

	err = store_new(b, VSWAP_DURABILITY_BATCH, path, sizeof(path), &s);
	if (err)
		return err;
	for (p = 0; p < pages && !err; p += chunk) {
		uint32_t n = pages - p < chunk ? (uint32_t)(pages - p) : chunk;

		err = vswap_store_write(s, p, n, src_at(b, p * b->page_size));
	}
	if (!err)
		err = vswap_store_commit(s);
	/* Closed cleanly: the audit needs a store no one holds. */
	if (vswap_store_close(s) && !err)
		err = -EIO;
	s = NULL;
	/* Untimed: the first pass to fill the page cache pays the host's
	 * first-touch faults (see store_write_warmup()). */
	if (!err)
		err = read_hash_pass(b, path, FR_BUFFERED, &med[0]);
	for (r = 0; r < b->runs && !err; r++) {
		note(b, "fsck run %u/%u\n", r + 1, b->runs);
		/* Rotate: fsck, buffered, O_DIRECT; then the next one first. */
		for (k = 0; k <= FR_NREADERS && !err; k++) {
			unsigned which = (k + r) % (FR_NREADERS + 1);

			if (interrupted(b)) {
				err = -EINTR;
				break;
			}
			if (which == FR_NREADERS)
				err = fsck_pass(b, path, &fs[r], &fp[r]);
			else
				err =
				    read_hash_pass(b, path, (enum fsck_reader)which, &rd[which][r]);
		}
		if (!err)
			note(b, "  read+xxh3 buffered %.3f, fadv-seq %.3f, O_DIRECT %.3f GB/s\n",
			     rd[FR_BUFFERED][r], rd[FR_SEQUENTIAL][r], rd[FR_DIRECT][r]);
	}
	store_gone(NULL, path);
	if (err)
		return err;
	for (k = 0; k < FR_NREADERS; k++) {
		med[k] = bench_median(rd[k], b->runs);
		if (med[k] > med[best])
			best = (enum fsck_reader)k;
	}
	bench_add(&b->res, "fsck_verify_gbps", bench_median(fs, b->runs), "GB/s",
		  fsck_reader_name[best], med[best]);
	bench_add(&b->res, "fsck_verify_pass_gbps", bench_median(fp, b->runs), "GB/s",
		  fsck_reader_name[best], med[best]);
	return 0;
}

/* ---- group "handler": enable, swap-out and swap-in through the handler -- */

/* RssAnon of this process in bytes (the handler's and store's own memory;
 * the staging file and the guest memfd count as shmem, the index as file). */
static long long rss_anon(void)
{
	long long kb = kswap_proc_kb("/proc/self/status", "RssAnon");

	return kb < 0 ? -1 : kb * 1024;
}

/* A memfd of @len bytes mapped shared: guest RAM as a VMM holds it. */
static int memfd_map(size_t len, int *fd, uint8_t **mem)
{
	*fd = memfd_create("vswap-bench-guest", MFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)len)) {
		close(*fd);
		return -errno;
	}
	*mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (*mem == MAP_FAILED) {
		close(*fd);
		return -errno;
	}
	return 0;
}

static void memfd_unmap(size_t len, int fd, uint8_t *mem)
{
	munmap(mem, len);
	close(fd);
}

struct handler_pass {
	double enable_gbps, swap_out_gbps, swap_in_gbps, disable_gbps;
	double rss_per_page; /* NAN unless measured */
	/* @again: the second cycle, into the same store */
	double enable_again_gbps, swap_out_again_gbps;
};

/*
 * Enable, then swap out and wait until Active: the two timed steps of a
 * cycle, each as GB/s of the guest's @len bytes (a failed step's figure is
 * left as it was timed; the caller stops at the error).
 */
static int enable_and_swap_out(struct vswap_handler *h, size_t len, double *enable_gbps,
			       double *swap_out_gbps)
{
	double t0 = bench_now();
	int err = vswap_handler_enable(h);

	*enable_gbps = bench_gbps(len, bench_now() - t0);
	if (err)
		return err;
	t0 = bench_now();
	err = vswap_handler_swap_out(h);
	if (!err)
		err = vswap_handler_wait_state(h, VSWAP_STATE_ACTIVE, 600000);
	*swap_out_gbps = bench_gbps(len, bench_now() - t0);
	return err;
}

/*
 * One cycle through the handler on a guest of @b->size bytes of
 * incompressible data: enable (move to staging), swap out (batch), drop the
 * swap file's page cache, disable (swap in, every page verified).  Swap-in
 * is timed by the handler's own transition record (the swap-in job) and,
 * as disable, by the wall time until Ready (which also frees the slots).
 * With @again, a second enable and swap-out into the same store follows
 * (what a guest swapped out again meets: the store's file has held these
 * bytes once), then a disable, and the bytes are checked again.
 */
static int handler_pass(struct bench *b, struct handler_pass *r, bool measure_rss, bool again)
{
	struct vswap_store_opts so = {.durability = VSWAP_DURABILITY_BATCH};
	struct vswap_handler_opts ho = {0};
	struct vswap_handler *h = NULL;
	struct vswap_store *s = NULL;
	struct vswap_status st;
	char path[PATH_MAX];
	long long rss0 = measure_rss ? rss_anon() : -1;
	uint8_t *mem;
	uint64_t off, pages = b->size / b->page_size;
	double t0;
	int fd, err;

	r->rss_per_page = NAN;
	err = memfd_map(b->size, &fd, &mem);
	if (err)
		return err;
	for (off = 0; off < b->size; off += CHUNK_BYTES)
		memcpy(mem + off, src_at(b, off), CHUNK_BYTES);
	tmp_path(b, "swap", path, sizeof(path));
	err = vswap_store_create(path, &so, &s);
	if (err) {
		s = NULL;
		goto out;
	}
	{
		struct vswap_region reg = {.addr = mem, .len = b->size, .memfd = fd, .offset = 0};

		ho.store = s;
		ho.enable_mode = b->enable_mode;
		/* The second cycle measures a swap-out over the blocks the
		 * first wrote (beside the overwrite ceiling): the disable
		 * keeps them instead of giving them back while Ready, which
		 * would race with the second enable. */
		ho.keep_freed_blocks = 1;
		err = vswap_handler_create(&reg, 1, &ho, &h);
		if (err) {
			h = NULL;
			goto out;
		}
	}
	err = enable_and_swap_out(h, b->size, &r->enable_gbps, &r->swap_out_gbps);
	if (err)
		goto out;
	if (measure_rss && rss0 >= 0)
		r->rss_per_page = (double)(rss_anon() - rss0) / (double)pages;
	cache_drop(vswap_store_swap_fd(s));
	t0 = bench_now();
	err = vswap_handler_disable(h, false);
	if (!err)
		err = vswap_handler_wait_state(h, VSWAP_STATE_READY, 600000);
	r->disable_gbps = bench_gbps(b->size, bench_now() - t0);
	if (!err)
		err = vswap_handler_status(h, &st);
	if (!err)
		r->swap_in_gbps =
		    bench_gbps(st.transition.pages * b->page_size,
			       (double)(st.transition.time_ms ? st.transition.time_ms : 1) / 1e3);
	/* Every byte must have come back. */
	for (off = 0; !err && off < b->size; off += CHUNK_BYTES)
		if (memcmp(mem + off, src_at(b, off), CHUNK_BYTES))
			err = -EBADMSG;
	note(b, "  handler: enable %.3f, swap-out %.3f, swap-in %.3f, disable %.3f GB/s\n",
	     r->enable_gbps, r->swap_out_gbps, r->swap_in_gbps, r->disable_gbps);
	if (err || !again)
		goto out;
	err = enable_and_swap_out(h, b->size, &r->enable_again_gbps, &r->swap_out_again_gbps);
	if (!err)
		err = vswap_handler_disable(h, false);
	if (!err)
		err = vswap_handler_wait_state(h, VSWAP_STATE_READY, 600000);
	for (off = 0; !err && off < b->size; off += CHUNK_BYTES)
		if (memcmp(mem + off, src_at(b, off), CHUNK_BYTES))
			err = -EBADMSG;
	note(b, "  handler, again into the same store: enable %.3f, swap-out %.3f GB/s\n",
	     r->enable_again_gbps, r->swap_out_again_gbps);
out:
	if (err)
		fprintf(stderr, "vswap-bench: handler pass: %s\n", vswap_strerror(err));
	if (h)
		vswap_handler_destroy(h);
	if (s)
		store_gone(s, path);
	memfd_unmap(b->size, fd, mem);
	return err;
}

/*
 * Baselines of the handler pass: memcpy of the same bytes into a fresh
 * memfd (what a move to staging must at least do), and the bulk
 * UFFDIO_COPY floor: the same bytes copied in 2 MiB UFFDIO_COPY calls into
 * a fresh registered memfd (what a swap-in must at least do after reading).
 */
static int copy_floors(struct bench *b, double *memcpy_gbps, double *uffd_secs)
{
	struct uffdio_register reg = {0};
	uint8_t *mem;
	uint64_t off;
	double t0;
	int fd, uffd, err;

	err = memfd_map(b->size, &fd, &mem);
	if (err)
		return err;
	t0 = bench_now();
	for (off = 0; off < b->size; off += CHUNK_BYTES)
		memcpy(mem + off, src_at(b, off), CHUNK_BYTES);
	*memcpy_gbps = bench_gbps(b->size, bench_now() - t0);
	memfd_unmap(b->size, fd, mem);

	err = memfd_map(b->size, &fd, &mem);
	if (err)
		return err;
	err = vswap_uffd_create(&uffd);
	if (err)
		goto out;
	reg.range.start = (uintptr_t)mem;
	reg.range.len = b->size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		err = -errno;
		close(uffd);
		goto out;
	}
	t0 = bench_now();
	for (off = 0; off < b->size && !err; off += CHUNK_BYTES) {
		struct uffdio_copy c = {
		    .dst = (uintptr_t)(mem + off),
		    .src = (uintptr_t)src_at(b, off),
		    .len = CHUNK_BYTES,
		};

		if (ioctl(uffd, UFFDIO_COPY, &c) && errno != EEXIST)
			err = -errno;
	}
	*uffd_secs = bench_now() - t0;
	close(uffd);
out:
	memfd_unmap(b->size, fd, mem);
	return err;
}

/* Sequential read of a synced file after dropping its page cache. */
static int raw_read_file(struct bench *b, const char *path, double *secs)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;
	uint64_t off;
	double t0;

	if (fd < 0)
		return -errno;
	err = cache_drop(fd);
	t0 = bench_now();
	for (off = 0; off < b->size && !err; off += CHUNK_BYTES)
		err = pread_all(fd, b->dst, CHUNK_BYTES, off);
	*secs = bench_now() - t0;
	close(fd);
	return err;
}

static int fig_handler(struct bench *b)
{
	double en[MAX_RUNS], out[MAX_RUNS], in[MAX_RUNS], dis[MAX_RUNS], out2[MAX_RUNS];
	double mc[MAX_RUNS], rw[MAX_RUNS], rwd[MAX_RUNS], rin[MAX_RUNS], rrd[MAX_RUNS],
	    bin[MAX_RUNS];
	double rss = NAN;
	uint64_t off;
	unsigned r;
	int err = 0;

	if (b->size % CHUNK_BYTES) {
		fprintf(stderr, "vswap-bench: handler figures need a size in whole 2 MiB\n");
		return -EINVAL;
	}
	/* The disk's write ceiling, from guest-like memory (a memfd mapping
	 * holding the same bytes), measured run by run beside the rest. */
	struct write_ceiling *wc = malloc(sizeof(*wc));
	uint8_t *cmem = NULL;
	int cfd = -1;
	if (!wc)
		return -ENOMEM;
	err = memfd_map(b->size, &cfd, &cmem);
	if (err) {
		free(wc);
		return err;
	}
	for (off = 0; off < b->size; off += CHUNK_BYTES)
		memcpy(cmem + off, src_at(b, off), CHUNK_BYTES);
	write_ceiling_init(wc, b->dir, cmem, b->size, b->quick, b->verbose);
	for (r = 0; r < b->runs && !err; r++) {
		struct handler_pass hp = {0};
		char path[PATH_MAX];
		double secs = 0, dsecs = 0, sync_secs = 0, rsecs = 0, usecs = 0, bsecs = 0;

		note(b, "handler run %u/%u\n", r + 1, b->runs);
		if (interrupted(b)) {
			err = -EINTR;
			break;
		}
		err = handler_pass(b, &hp, r == 0, true);
		if (err)
			break;
		en[r] = hp.enable_gbps;
		out[r] = hp.swap_out_gbps;
		out2[r] = hp.swap_out_again_gbps;
		in[r] = hp.swap_in_gbps;
		dis[r] = hp.disable_gbps;
		if (r == 0)
			rss = hp.rss_per_page;
		tmp_path(b, "raw", path, sizeof(path));
		err = raw_write_file(b, path, true, 0, false, &secs, &sync_secs);
		if (!err)
			err = raw_read_file(b, path, &rsecs);
		if (!err) /* the same bytes, cold again */
			err = bare_swap_in(path, b->size, b->page_size, 8, &bsecs);
		unlink(path);
		if (!err) {
			tmp_path(b, "raw", path, sizeof(path));
			err = raw_write_file(b, path, true, 0, true, &dsecs, &sync_secs);
			unlink(path);
		}
		if (!err)
			err = copy_floors(b, &mc[r], &usecs);
		if (!err)
			err = write_ceiling_pass(wc);
		if (err)
			break;
		rw[r] = bench_gbps(b->size, secs);
		rwd[r] = bench_gbps(b->size, dsecs);
		rin[r] = bench_gbps(b->size, rsecs + usecs);
		rrd[r] = bench_gbps(b->size, rsecs);
		bin[r] = bench_gbps(b->size, bsecs);
		note(b,
		     "  raw write %.3f, O_DIRECT %.3f, read+UFFDIO_COPY %.3f, memcpy %.3f, "
		     "cold read %.3f, bare swap-in %.3f GB/s\n",
		     rw[r], rwd[r], rin[r], mc[r], rrd[r], bin[r]);
	}
	memfd_unmap(b->size, cfd, cmem);
	if (err) {
		free(wc);
		return err;
	}
	{
		uint32_t bs = 0, obs = 0;
		unsigned qd = 0, oqd = 0;

		b->write_ceiling_gbps = write_ceiling_best(wc, false, &bs, &qd);
		b->overwrite_ceiling_gbps = write_ceiling_best(wc, true, &obs, &oqd);
		note(b,
		     "  write ceiling: fresh %.3f GB/s (%u KiB x %u), over written %.3f GB/s "
		     "(%u KiB x %u)\n",
		     b->write_ceiling_gbps, bs >> 10, qd, b->overwrite_ceiling_gbps, obs >> 10,
		     oqd);
	}
	free(wc);
	bench_add(&b->res, "enable_gbps", bench_median(en, b->runs), "GB/s", "memcpy_to_memfd_gbps",
		  bench_median(mc, b->runs));
	bench_add(&b->res, "swap_out_gbps", bench_median(out, b->runs), "GB/s",
		  "raw_write_fdatasync_gbps", bench_median(rw, b->runs));
	bench_add(&b->res, "swap_out_gbps", bench_median(out, b->runs), "GB/s",
		  "raw_write_odirect_gbps", bench_median(rwd, b->runs));
	/* The disk's best for the same bytes, at any write size and depth
	 * tried, into a fresh file (as the swap-out's store is) and over
	 * blocks written before. */
	bench_add(&b->res, "swap_out_gbps", bench_median(out, b->runs), "GB/s",
		  "raw_write_ceiling_gbps", b->write_ceiling_gbps);
	bench_add(&b->res, "raw_write_ceiling_gbps", b->write_ceiling_gbps, "GB/s",
		  "raw_write_odirect_gbps", bench_median(rwd, b->runs));
	bench_add(&b->res, "raw_overwrite_ceiling_gbps", b->overwrite_ceiling_gbps, "GB/s",
		  "raw_write_ceiling_gbps", b->write_ceiling_gbps);
	/* The second swap-out into the same store: over blocks written
	 * before where the store kept them, else fresh ones. */
	bench_add(&b->res, "swap_out_again_gbps", bench_median(out2, b->runs), "GB/s",
		  "swap_out_gbps", bench_median(out, b->runs));
	bench_add(&b->res, "swap_out_again_gbps", bench_median(out2, b->runs), "GB/s",
		  "raw_overwrite_ceiling_gbps", b->overwrite_ceiling_gbps);
	bench_add(&b->res, "swap_in_gbps", bench_median(in, b->runs), "GB/s",
		  "raw_read_plus_uffdio_copy_gbps", bench_median(rin, b->runs));
	/* The swap-in's goal: as fast as the disk reads the same bytes in
	 * order from a cold cache (reads, checks and copies overlapped). */
	bench_add(&b->res, "swap_in_gbps", bench_median(in, b->runs), "GB/s",
		  "raw_read_seq_cold_gbps", bench_median(rrd, b->runs));
	/* Its ceiling here: the kernel's part of a swap-in done bare on the
	 * same bytes (reads, hashes and copies overlapped on two threads),
	 * and how much of the cold read that ceiling itself reaches. */
	bench_add(&b->res, "swap_in_gbps", bench_median(in, b->runs), "GB/s", "bare_swap_in_gbps",
		  bench_median(bin, b->runs));
	bench_add(&b->res, "bare_swap_in_gbps", bench_median(bin, b->runs), "GB/s",
		  "raw_read_seq_cold_gbps", bench_median(rrd, b->runs));
	bench_add(&b->res, "disable_gbps", bench_median(dis, b->runs), "GB/s",
		  "raw_read_plus_uffdio_copy_gbps", bench_median(rin, b->runs));
	bench_add(&b->res, "metadata_bytes_per_page", rss, "B", NULL, NAN);
	b->swap_out_gbps = bench_median(out, b->runs);
	b->swap_in_gbps = bench_median(in, b->runs);
	return 0;
}

/* ---- group "faults": latency of one guest access (vswap-faultbench) ---- */

static int fig_faults(struct bench *b)
{
	/* Each fault is a separate measurement; runs only add more faults. */
	size_t pages = b->quick ? 4096 : 16384;
	double p50[FB_ROWS][MAX_RUNS], p99[FB_ROWS][MAX_RUNS];
	static const char *const names[FB_ROWS] = {
	    [FB_PLAIN] = "plain_first_touch",
	    [FB_BARE] = "bare_uffdio_copy",
	    /* touched in page order: read-ahead helps the file rows */
	    [FB_ZERO] = "fault_zero_seq",
	    [FB_STAGING] = "fault_staging_seq",
	    [FB_FILE_CACHED] = "fault_file_cached_seq",
	    [FB_FILE_COLD] = "fault_file_seq",
	};
	char name[48], base[48];
	unsigned r, k;
	int err;

	for (r = 0; r < b->runs; r++) {
		struct faultbench_result fr;

		if (interrupted(b))
			return -EINTR;
		err = faultbench_measure(b->dir, pages, &fr);
		if (err) {
			fprintf(stderr, "vswap-bench: faults: %s\n", vswap_strerror(err));
			return err;
		}
		for (k = 0; k < FB_ROWS; k++) {
			p50[k][r] = fr.rows[k].p50_us;
			p99[k][r] = fr.rows[k].p99_us;
		}
		note(b, "  faults run %u: zero %.1f, staging %.1f, file %.1f, bare %.1f us (p50)\n",
		     r + 1, fr.rows[FB_ZERO].p50_us, fr.rows[FB_STAGING].p50_us,
		     fr.rows[FB_FILE_COLD].p50_us, fr.rows[FB_BARE].p50_us);
	}
	for (k = FB_ZERO; k < FB_ROWS; k++) {
		const char *q[2] = {"p50", "p99"};
		double(*v)[MAX_RUNS] = p50;
		unsigned i;

		for (i = 0; i < 2; i++, v = p99) {
			snprintf(name, sizeof(name), "%s_%s_us", names[k], q[i]);
			snprintf(base, sizeof(base), "%s_%s_us", names[FB_BARE], q[i]);
			bench_add(&b->res, name, bench_median(v[k], b->runs), "us", base,
				  bench_median(v[FB_BARE], b->runs));
		}
	}
	snprintf(name, sizeof(name), "%s_p50_us", names[FB_BARE]);
	snprintf(base, sizeof(base), "%s_p50_us", names[FB_PLAIN]);
	bench_add(&b->res, name, bench_median(p50[FB_BARE], b->runs), "us", base,
		  bench_median(p50[FB_PLAIN], b->runs));
	b->fault_file_p50_us = bench_median(p50[FB_FILE_COLD], b->runs);
	return 0;
}

/* ---- group "kernel-swap": the peer a user already has (root only) ------- */

/*
 * Like for like: each run pages the same bytes (the benchmark's
 * incompressible source, @b->size of them) out to a swap file in the same
 * directory as vswap's store, and runs one vswap handler pass on the same
 * bytes right before or after it (the order alternates), so both sides see
 * the same disk in the same minute.  The kernel's swap-out is timed from
 * MADV_PAGEOUT until Writeback drains (no cache flush: swap writes are not
 * synced); vswap's swap-out is `batch` (a data sync and a synced index
 * commit every 64 MiB and at the end), from staging to the store until
 * Active, and enable + swap-out is the whole trip from guest memory to
 * disk, as MADV_PAGEOUT's is.
 */
static int fig_kernel_swap(struct bench *b)
{
	struct kswap_opts o = {
	    .dir = b->dir,
	    .size = b->size / b->page_size * b->page_size,
	    .rand_pages = b->rand_samples * 4u,
	    .src = b->src,
	    .src_len = b->src_len,
	    .stop = &b->stop,
	    .verbose = b->verbose,
	};
	double out[MAX_RUNS], seq[MAX_RUNS], rnd[MAX_RUNS], p50[MAX_RUNS];
	double r8[MAX_RUNS], r1[MAX_RUNS];
	double vout[MAX_RUNS], vtrip[MAX_RUNS], vin[MAX_RUNS];
	double kw[MAX_RUNS], vtrip2[MAX_RUNS];
	unsigned r, runs = b->runs < 3 ? b->runs : 3; /* 3 runs: each is slow */
	int err = 0;

	if (b->size % CHUNK_BYTES) {
		fprintf(stderr, "vswap-bench: kernel-swap figures need a size in whole 2 MiB\n");
		return -EINVAL;
	}
	for (r = 0; r < runs; r++) {
		struct kswap_result kr;
		struct handler_pass hp = {0};

		note(b, "kernel-swap run %u/%u\n", r + 1, runs);
		if (r % 2 && (err = handler_pass(b, &hp, false, true)))
			return err;
		if (interrupted(b))
			return -EINTR;
		err = kswap_run(&o, &kr);
		if (err == -EPERM) {
			fprintf(stderr,
				"vswap-bench: --kernel-swap needs root (swapon); skipped\n");
			return 0;
		}
		if (err && err != -EINTR) {
			fprintf(stderr, "vswap-bench: kernel swap: %s\n", strerror(-err));
			return err;
		}
		if (err)
			return err;
		if (kr.bad_pages) {
			fprintf(stderr, "vswap-bench: kernel swap returned %llu wrong pages\n",
				(unsigned long long)kr.bad_pages);
			return -EIO;
		}
		if (r % 2 == 0 && (err = handler_pass(b, &hp, false, true)))
			return err;
		/* The kernel over a swap file written before, beside vswap's
		 * second trip into the same store. */
		if ((err = kswap_out_written(&o, &kw[r])))
			return err;
		out[r] = kr.out_gbps;
		seq[r] = kr.seq_gbps;
		rnd[r] = kr.rand_gbps;
		p50[r] = kr.rand_p50_us;
		r8[r] = kr.rand8_pages_s;
		r1[r] = kr.rand1_pages_s;
		vout[r] = hp.swap_out_gbps;
		vtrip[r] = 1.0 / (1.0 / hp.enable_gbps + 1.0 / hp.swap_out_gbps);
		vtrip2[r] = 1.0 / (1.0 / hp.enable_again_gbps + 1.0 / hp.swap_out_again_gbps);
		vin[r] = hp.swap_in_gbps;
		note(b,
		     "  vswap again %.3f GB/s (enable + swap-out), kernel over written blocks %.3f "
		     "GB/s\n",
		     vtrip2[r], kw[r]);
		note(b,
		     "  out %.3f GB/s, seq refault %.3f GB/s (%.1f us/page), random %.3f GB/s "
		     "(p50 %.1f us, p99 %.1f us), random 8t %.0f / 1t %.0f pages/s\n",
		     kr.out_gbps, kr.seq_gbps, kr.seq_fault_us, kr.rand_gbps, kr.rand_p50_us,
		     kr.rand_p99_us, kr.rand8_pages_s, kr.rand1_pages_s);
	}
	bench_add(&b->res, "vs_kernel_swap_out_gbps", bench_median(vout, runs), "GB/s",
		  "kernel_swap_out_gbps", bench_median(out, runs));
	bench_add(&b->res, "vs_kernel_enable_swap_out_gbps", bench_median(vtrip, runs), "GB/s",
		  "kernel_swap_out_gbps", bench_median(out, runs));
	bench_add(&b->res, "vs_kernel_enable_swap_out_again_gbps", bench_median(vtrip2, runs),
		  "GB/s", "kernel_swap_out_written_gbps", bench_median(kw, runs));
	/* The kernel's swap-out against the disk's ceilings (group "handler",
	 * when it ran): its swap file is made just before, as a fresh file
	 * is, and 1.2x the kernel needs more than the fresh ceiling. */
	if (isfinite(b->write_ceiling_gbps)) {
		bench_add(&b->res, "kernel_swap_out_gbps", bench_median(out, runs), "GB/s",
			  "raw_write_ceiling_gbps", b->write_ceiling_gbps);
		bench_add(&b->res, "kernel_swap_out_written_gbps", bench_median(kw, runs), "GB/s",
			  "raw_overwrite_ceiling_gbps", b->overwrite_ceiling_gbps);
	}
	bench_add(&b->res, "vs_kernel_seq_refault_gbps", bench_median(vin, runs), "GB/s",
		  "kernel_seq_refault_gbps", bench_median(seq, runs));
	/* Like with like: the kernel's refaults are random and cold, so is
	 * vswap's figure: group "datapath" (cold random faults) when it ran,
	 * else the store's own random page read (group "store-read"), never
	 * the sequential faults that read-ahead serves. */
	{
		double v = isfinite(b->fault_file_rand_p50_us) ? b->fault_file_rand_p50_us
							       : b->store_read_p50_us;

		if (isfinite(v))
			bench_add(&b->res, "vs_kernel_rand_refault_p50_us", v, "us",
				  "kernel_rand_refault_p50_us", bench_median(p50, runs));
		else
			bench_add(&b->res, "kernel_rand_refault_p50_us", bench_median(p50, runs),
				  "us", NULL, NAN);
	}
	bench_add(&b->res, "kernel_rand_refault_gbps", bench_median(rnd, runs), "GB/s", NULL, NAN);
	/* 8 threads refaulting cold random pages, vswap (group "datapath")
	 * against the kernel's swap with 8 threads; and the kernel's own
	 * 8-thread speed-up over 1 thread. */
	if (isfinite(b->fault_rand_8t_pages_s))
		bench_add(&b->res, "vs_kernel_fault_concurrency_8t_rand_pages_s",
			  b->fault_rand_8t_pages_s, "pages/s",
			  "kernel_fault_concurrency_8t_rand_pages_s", bench_median(r8, runs));
	bench_add(&b->res, "kernel_fault_concurrency_8t_rand_pages_s", bench_median(r8, runs),
		  "pages/s", "kernel_fault_concurrency_1t_rand_pages_s", bench_median(r1, runs));
	return 0;
}

/* ---- group "enable": copy and protect modes side by side (enable.c) ---- */

static int fig_enable(struct bench *b)
{
	struct enable_bench o = {
	    .size = b->size,
	    .dir = b->dir,
	    .runs = b->runs,
	    .page_size = b->page_size,
	    .src = b->src,
	    .src_len = b->src_len,
	    .stop = &b->stop,
	    .verbose = b->verbose,
	};

	return enable_bench_run(&o, &b->res);
}

/* ---- group "datapath": faults while the disk works (datapath.c) -------- */

static int fig_datapath(struct bench *b)
{
	struct datapath_bench o = {
	    .size = b->size,
	    .dir = b->dir,
	    .runs = b->runs < 3 ? b->runs : 3, /* each run swaps out five times */
	    .page_size = b->page_size,
	    .src = b->src,
	    .src_len = b->src_len,
	    .stop = &b->stop,
	    .verbose = b->verbose,
	    .rand_p50_us = NAN,
	    .rate8_pages_s = NAN,
	};
	int rc = datapath_bench_run(&o, &b->res);
	b->fault_file_rand_p50_us = o.rand_p50_us;
	b->fault_rand_8t_pages_s = o.rate8_pages_s;
	return rc;
}

/* ---- group "vswapd": the handler as its own process (vswapd.c) --------- */

static int fig_vswapd(struct bench *b)
{
	struct vswapd_bench o = {
	    .size = b->size,
	    .dir = b->dir,
	    .runs = b->runs,
	    .quick = b->quick,
	    .page_size = b->page_size,
	    .src = b->src,
	    .src_len = b->src_len,
	    .stop = &b->stop,
	    .verbose = b->verbose,
	};
	return vswapd_bench_run(&o, &b->res);
}

/* ---- driver ------------------------------------------------------------- */

struct figure {
	const char *group;
	int (*run)(struct bench *b);
	bool opt_in; /* only with its own option (--kernel-swap) */
};

static const struct figure figures[] = {
    {"hash", fig_hash, false},
    {"store-write", fig_store_write, false},
    {"store-read", fig_store_read, false},
    {"store-open", fig_store_open, false},
    {"fsck", fig_fsck, false},
    {"handler", fig_handler, false},
    {"enable", fig_enable, false},
    {"faults", fig_faults, false},
    {"datapath", fig_datapath, false},
    {"vswapd", fig_vswapd, false},
    {"kernel-swap", fig_kernel_swap, true},
};

static bool selected(const struct bench *b, const struct figure *f)
{
	size_t len = strlen(f->group);
	const char *p;

	if (!b->only)
		return !f->opt_in || b->kernel_swap;
	for (p = b->only; (p = strstr(p, f->group)); p += len)
		if ((p == b->only || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
			return true;
	return false;
}

static const struct cli_tool tool = {
    .name = "vswap-bench",
    .synopsis = "[--quick] [--json] [--size BYTES] [--dir DIR] [--runs N]\n"
		"       [--kernel-swap] [--only GROUP[,GROUP]] [--enable-mode MODE] [--verbose]\n",
    .help =
	"Measure vswap, each figure beside a baseline measured in the same run.\n"
	"\n"
	"      --quick        256 MiB passes, 3 runs (under a minute)\n"
	"      --json         print {\"schema_version\":1,...,\"results\":[{name,value,unit,\n"
	"                     baseline,baseline_value,ratio}]}\n"
	"      --size BYTES   bytes per pass, K/M/G suffixes (default 1G; --quick 256M)\n"
	"      --dir DIR      file system to measure (default /var/tmp)\n"
	"      --runs N       runs per figure, median reported (default 5; --quick 3;\n"
	"                     kernel-swap at most 3)\n"
	"      --kernel-swap  also measure the kernel's swap on a temporary swap file (root)\n"
	"      --only GROUPS  comma-separated: hash, store-write, store-read, store-open, fsck,\n"
	"                     handler, enable, faults, datapath, vswapd, kernel-swap\n"
	"      --enable-mode MODE  the handler group's enable mode: auto (default), copy\n"
	"                     or protect\n"
	"      --verbose      every pass on stderr\n" CLI_STANDARD_HELP "\n"
	"Exit: 0 every group ran, 1 one failed, 2 usage error, 130 interrupted.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

/* Every name of @list (comma-separated) is a group: an unknown one would
 * measure nothing and say nothing. */
static int check_groups(const char *list)
{
	const char *p = list;

	for (;;) {
		size_t len = strcspn(p, ",");
		bool known = false;

		for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++)
			known |=
			    strlen(figures[i].group) == len && !strncmp(figures[i].group, p, len);
		if (!known) {
			cli_usage_error(&tool, "--only: unknown group '%.*s'", (int)len, p);
			return -1;
		}
		if (!p[len])
			return 0;
		p += len + 1;
	}
}

/* Returns 0 to run, 1 when --help or --version was shown, -1 on a usage
 * error (already reported). */
static int parse_args(struct bench *b, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"quick", no_argument, NULL, 'q'},
	    {"json", no_argument, NULL, 'j'},
	    {"size", required_argument, NULL, 's'},
	    {"dir", required_argument, NULL, 'd'},
	    {"runs", required_argument, NULL, 'r'},
	    {"kernel-swap", no_argument, NULL, 'k'},
	    {"only", required_argument, NULL, 'o'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"enable-mode", required_argument, NULL, 'e'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	bool have_size = false, have_runs = false;
	uint64_t v;
	int c;

	b->dir = "/var/tmp";
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			b->quick = true;
			break;
		case 'j':
			b->json = true;
			break;
		case 's':
			if (cli_parse_size(optarg, &b->size) || b->size < CHUNK_BYTES) {
				cli_usage_error(&tool, "bad --size '%s' (at least 2M)", optarg);
				return -1;
			}
			have_size = true;
			break;
		case 'd':
			b->dir = optarg;
			break;
		case 'r':
			if (cli_opt_range(&tool, "runs", optarg, 1, MAX_RUNS, &v))
				return -1;
			b->runs = (unsigned)v;
			have_runs = true;
			break;
		case 'k':
			b->kernel_swap = true;
			break;
		case 'o':
			if (check_groups(optarg))
				return -1;
			b->only = optarg;
			break;
		case 'v':
			b->verbose = true;
			break;
		case 'e':
			if (vswap_enable_mode_parse(optarg, &b->enable_mode)) {
				cli_usage_error(&tool,
						"bad --enable-mode '%s' (auto, copy or protect)",
						optarg);
				return -1;
			}
			break;
		default:
			return cli_standard_option(&tool, c);
		}
	}
	if (cli_no_operands(&tool, argc, argv))
		return -1;
	if (!have_size)
		b->size = b->quick ? 256 * BENCH_MIB : BENCH_GIB;
	if (!have_runs)
		b->runs = b->quick ? 3 : 5;
	b->rand_samples = b->quick ? 2048 : 8192;
	return 0;
}

static int setup(struct bench *b)
{
	b->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	b->size -= b->size % b->page_size;
	/* Up to 1 GiB of distinct bytes; larger sizes cycle through them. */
	b->src_len = b->size < BENCH_GIB ? b->size : BENCH_GIB;
	b->src_len -= b->src_len % CHUNK_BYTES;
	if (b->src_len < CHUNK_BYTES)
		b->src_len = CHUNK_BYTES;
	b->src = mmap(NULL, b->src_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->src == MAP_FAILED)
		return -errno;
	b->dst = aligned_alloc(b->page_size, CHUNK_BYTES);
	if (!b->dst)
		return -ENOMEM;
	bench_fill_random(b->src, b->src_len, 0x76737761700ull);
	b->store_write_batch_gbps = b->store_read_gbps = b->store_read_p50_us = NAN;
	b->swap_out_gbps = b->swap_in_gbps = b->fault_file_p50_us = NAN;
	b->fault_file_rand_p50_us = NAN;
	b->fault_rand_8t_pages_s = NAN;
	b->write_ceiling_gbps = b->overwrite_ceiling_gbps = NAN;
	return 0;
}

static void report(const struct bench *b)
{
	char machine[128], cpu[128];

	bench_machine(machine, sizeof(machine));
	bench_cpu_model(cpu, sizeof(cpu));
	if (b->json) {
		struct json_writer w;

		json_init(&w, stdout);
		json_begin_document(&w);
		json_key(&w, "machine");
		json_string(&w, machine);
		json_key(&w, "cpu");
		json_string(&w, cpu);
		json_key(&w, "dir");
		json_string(&w, b->dir);
		json_key(&w, "fs");
		json_string(&w, bench_fs_name(b->dir));
		json_key(&w, "size");
		json_u64(&w, b->size);
		json_key(&w, "runs");
		json_u64(&w, b->runs);
		bench_json_results(&w, &b->res);
		json_end_object(&w);
		json_finish(&w);
		return;
	}
	printf("vswap-bench: %s; %s\n", machine, cpu);
	printf("  %s (%s), %llu MiB per pass, median of %u runs\n\n", b->dir, bench_fs_name(b->dir),
	       (unsigned long long)(b->size / BENCH_MIB), b->runs);
	bench_print_table(stdout, &b->res);
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	sigset_t old;
	size_t i;
	int err = 0, status = 0;

	err = parse_args(&b, argc, argv);
	if (err)
		return err > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	err = setup(&b);
	if (err) {
		fprintf(stderr, "vswap-bench: %s\n", strerror(-err));
		return 1;
	}
	/*
	 * Keep the terminating signals blocked and poll for them between
	 * passes: a Ctrl-C then never leaves a temporary store, file or swap
	 * device behind.  A pending one is consumed before they are
	 * unblocked, and the exit status says it (130, as documented).
	 */
	sigemptyset(&b.stop);
	sigaddset(&b.stop, SIGINT);
	sigaddset(&b.stop, SIGTERM);
	sigaddset(&b.stop, SIGHUP);
	sigaddset(&b.stop, SIGQUIT);
	sigprocmask(SIG_BLOCK, &b.stop, &old);

	for (i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
		if (!selected(&b, &figures[i]))
			continue;
		fprintf(stderr, "vswap-bench: %s ...\n", figures[i].group);
		err = figures[i].run(&b);
		if (err == -EINTR)
			break;
		if (err) {
			fprintf(stderr, "vswap-bench: %s failed: %s\n", figures[i].group,
				strerror(-err));
			status = 1;
		}
	}
	if (err != -EINTR)
		report(&b);
	bench_results_free(&b.res);
	munmap(b.src, b.src_len);
	free(b.dst);
	if (kswap_interrupted(&b.stop))
		err = -EINTR;
	const struct timespec now = {0, 0};
	while (sigtimedwait(&b.stop, NULL, &now) > 0)
		;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return err == -EINTR ? 130 : status;
}
