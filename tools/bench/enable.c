/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench group "enable": enable and enable + swap-out through the
 * handler in both enable modes, on the same bytes in the same run.
 *
 * Each run, for copy and then protect (the order alternates by run): a
 * guest memfd of the size is filled with the benchmark's incompressible
 * bytes (all resident), a store is created beside it (durability batch),
 * enable is timed (the command's round trip: the guest is not paused, which
 * the protect mode allows and the copy mode would need), then swap-out
 * until Active.  The handler's memory at Pending (after enable) is the
 * process's RssAnon growth plus the staging file's allocated bytes: what
 * the handler holds beside the guest's own pages (page tables excluded, in
 * VmPTE, shown with --verbose).  Disable then brings every page back and
 * each byte is compared (not timed).
 *
 * Baselines of the same run: an O_DIRECT sequential write of the same
 * bytes from the guest memfd's mapping into a file in the same directory
 * (2 MiB writes, one fdatasync at the end): the floor of moving guest
 * memory to disk.  The copy mode's figures are the other baseline.
 *
 * Figures (medians):
 *   enable_ms_per_gib          protect, beside copy's
 *   enable_swap_out_gbps       protect enable + swap-out, beside O_DIRECT
 *   enable_swap_out_gbps_copy  the same in copy mode, beside O_DIRECT
 *   handler_memory_mib         protect at Pending, beside the guest's size
 *   handler_memory_mib_copy    copy at Pending, beside the guest's size
 * The kernel's own MADV_PAGEOUT comparison is the kernel-swap group's
 * vs_kernel_enable_swap_out_gbps (the handler's default mode).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/store.h>

#include "tools/bench/enable.h"

#define CHUNK (2u << 20)
#define MAX_RUNS 64

struct mode_pass {
	double enable_ms, out_secs, memory_mib, pte_mib;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool stopped(const struct enable_bench *o)
{
	sigset_t pend;
	if (!o->stop || sigpending(&pend))
		return false;
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(o->stop, sig) == 1 && sigismember(&pend, sig) == 1)
			return true;
	return false;
}

/* A "Key:   N kB" line of /proc/self/status, in bytes; -1 if absent. */
static long long status_bytes(const char *key)
{
	char line[256];
	long long v = -1;
	size_t klen = strlen(key);
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = atoll(line + klen + 1) * 1024;
			break;
		}
	fclose(f);
	return v;
}

static void fill(const struct enable_bench *o, uint8_t *mem)
{
	for (uint64_t off = 0; off < o->size; off += CHUNK)
		memcpy(mem + off, (const uint8_t *)o->src + off % o->src_len, CHUNK);
}

static int verify(const struct enable_bench *o, const uint8_t *mem)
{
	for (uint64_t off = 0; off < o->size; off += CHUNK)
		if (memcmp(mem + off, (const uint8_t *)o->src + off % o->src_len, CHUNK))
			return -EBADMSG;
	return 0;
}

static void path_of(const struct enable_bench *o, const char *what, char *buf, size_t len)
{
	static unsigned seq;
	snprintf(buf, len, "%s/vswap-bench.%d.enable%u.%s", o->dir, (int)getpid(), seq++, what);
}

/* One enable + swap-out + disable in @mode over a fresh guest and store. */
static int mode_pass(const struct enable_bench *o, enum vswap_enable_mode mode, uint8_t *mem,
		     int memfd, struct mode_pass *r)
{
	struct vswap_store_opts so = {.durability = VSWAP_DURABILITY_BATCH};
	struct vswap_handler_opts ho = {.enable_mode = mode};
	struct vswap_region reg = {.addr = mem, .len = o->size, .memfd = memfd};
	struct vswap_handler *h = NULL;
	struct vswap_store *s = NULL;
	char path[PATH_MAX];
	struct stat sst;
	int err;

	fill(o, mem);
	path_of(o, "swap", path, sizeof(path));
	err = vswap_store_create(path, &so, &s);
	if (err)
		return err;
	ho.store = s;
	long long rss0 = status_bytes("RssAnon"), pte0 = status_bytes("VmPTE");
	err = vswap_handler_create(&reg, 1, &ho, &h);
	if (err)
		goto out;
	double t0 = now_s();
	err = vswap_handler_enable(h);
	r->enable_ms = (now_s() - t0) * 1e3;
	if (err)
		goto out;
	long long rss1 = status_bytes("RssAnon"), pte1 = status_bytes("VmPTE");
	long long staged =
	    fstat(vswap_store_staging_fd(s), &sst) ? 0 : (long long)sst.st_blocks * 512;
	r->memory_mib = (double)(rss1 - rss0 + staged) / (1 << 20);
	r->pte_mib = (double)(pte1 - pte0) / (1 << 20);
	t0 = now_s();
	err = vswap_handler_swap_out(h);
	if (!err)
		err = vswap_handler_wait_state(h, VSWAP_STATE_ACTIVE, 600000);
	r->out_secs = now_s() - t0;
	if (!err)
		err = vswap_handler_disable(h, false);
	if (!err)
		err = vswap_handler_wait_state(h, VSWAP_STATE_READY, 600000);
	if (!err)
		err = verify(o, mem);
out:
	if (h)
		vswap_handler_destroy(h);
	vswap_store_close(s);
	vswap_store_destroy(path, &so);
	return err;
}

/* The floor: the same bytes, from guest memory, written with O_DIRECT. */
static int odirect_pass(const struct enable_bench *o, const uint8_t *mem, double *secs)
{
	char path[PATH_MAX];
	path_of(o, "raw", path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
	if (fd < 0)
		return -errno;
	int err = 0;
	double t0 = now_s();
	for (uint64_t off = 0; off < o->size && !err; off += CHUNK) {
		ssize_t n = pwrite(fd, mem + off, CHUNK, (off_t)off);
		if (n != (ssize_t)CHUNK)
			err = n < 0 ? -errno : -EIO;
	}
	if (!err && fdatasync(fd))
		err = -errno;
	*secs = now_s() - t0;
	close(fd);
	unlink(path);
	return err;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int enable_bench_run(const struct enable_bench *o, struct bench_results *res)
{
	double en_p[MAX_RUNS], en_c[MAX_RUNS], trip_p[MAX_RUNS], trip_c[MAX_RUNS];
	double mem_p[MAX_RUNS], mem_c[MAX_RUNS], raw[MAX_RUNS];
	unsigned runs = o->runs < MAX_RUNS ? o->runs : MAX_RUNS;
	double gib = (double)o->size / (1u << 30), gb = (double)o->size / 1e9;
	if (o->size == 0 || o->size % CHUNK) {
		fprintf(stderr, "vswap-bench: enable figures need a size in whole 2 MiB\n");
		return -EINVAL;
	}
	int memfd = memfd_create("vswap-bench-guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)o->size)) {
		if (memfd >= 0)
			close(memfd);
		return -errno;
	}
	uint8_t *mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED) {
		close(memfd);
		return -errno;
	}
	int err = 0;
	for (unsigned r = 0; r < runs && !err; r++) {
		struct mode_pass p = {0}, c = {0};
		double secs = 0;
		if (stopped(o)) {
			err = -EINTR;
			break;
		}
		if (o->verbose)
			fprintf(stderr, "enable run %u/%u\n", r + 1, runs);
		/* Alternate the order: neither mode always gets the warm disk. */
		if (r % 2 == 0) {
			err = mode_pass(o, VSWAP_ENABLE_PROTECT, mem, memfd, &p);
			if (!err)
				err = mode_pass(o, VSWAP_ENABLE_COPY, mem, memfd, &c);
		} else {
			err = mode_pass(o, VSWAP_ENABLE_COPY, mem, memfd, &c);
			if (!err)
				err = mode_pass(o, VSWAP_ENABLE_PROTECT, mem, memfd, &p);
		}
		if (!err)
			err = odirect_pass(o, mem, &secs);
		if (err)
			break;
		en_p[r] = p.enable_ms / gib;
		en_c[r] = c.enable_ms / gib;
		trip_p[r] = gb / (p.enable_ms / 1e3 + p.out_secs);
		trip_c[r] = gb / (c.enable_ms / 1e3 + c.out_secs);
		mem_p[r] = p.memory_mib;
		mem_c[r] = c.memory_mib;
		raw[r] = gb / secs;
		if (o->verbose)
			fprintf(
			    stderr,
			    "  protect: enable %.1f ms, enable+out %.3f GB/s, %.1f MiB (+%.1f MiB "
			    "page tables); copy: enable %.1f ms, enable+out %.3f GB/s, %.1f MiB; "
			    "O_DIRECT %.3f GB/s\n",
			    p.enable_ms, trip_p[r], p.memory_mib, p.pte_mib, c.enable_ms, trip_c[r],
			    c.memory_mib, raw[r]);
	}
	munmap(mem, o->size);
	close(memfd);
	if (err) {
		fprintf(stderr, "vswap-bench: enable: %s\n", vswap_strerror(err));
		return err;
	}
	double guest_mib = (double)o->size / (1 << 20);
	bench_add(res, "enable_ms_per_gib", median(en_p, runs), "ms", "enable_ms_per_gib_copy",
		  median(en_c, runs));
	bench_add(res, "enable_swap_out_gbps", median(trip_p, runs), "GB/s", "odirect_write_gbps",
		  median(raw, runs));
	bench_add(res, "enable_swap_out_gbps_copy", median(trip_c, runs), "GB/s",
		  "odirect_write_gbps", median(raw, runs));
	bench_add(res, "handler_memory_mib", median(mem_p, runs), "MiB", "guest_mib", guest_mib);
	bench_add(res, "handler_memory_mib_copy", median(mem_c, runs), "MiB", "guest_mib",
		  guest_mib);
	return 0;
}
