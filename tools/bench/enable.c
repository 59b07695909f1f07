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
 * memory to disk.  The copy mode's figures are the other baseline.  And the
 * kernel's part of a protect enable, done bare on the same memory (filled
 * again through the same mapping, so its page table entries are present as
 * they are for the enable): a fresh uffd registers the mapping MISSING | WP
 * and write-protects it in one UFFDIO_WRITEPROTECT, timed from the register
 * to the protection's return; and the same protection cut in one piece per
 * CPU, each protected on a thread of its own at once (as the handler does
 * with its workers).  The same with the mapping's entries zapped
 * first (MADV_DONTNEED: the pages stay in the memfd) shows what the
 * protection costs per mapped entry: the kernel only leaves a marker in an
 * empty one.
 *
 * Figures (medians):
 *   enable_ms_per_gib          protect, beside copy's
 *   enable_ms_per_gib          protect, beside the bare register + protect
 *   enable_ms_per_gib          protect, beside the bare one on one thread per CPU
 *   enable_floor_unmapped_ms_per_gib  the bare one over unmapped entries,
 *                              beside the mapped one
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/store.h>

#include "tools/bench/enable.h"

#define CHUNK (2u << 20)
#define MAX_RUNS 64
#define WP_THREADS_MAX 8

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

/* One UFFDIO_WRITEPROTECT of a piece, on a thread of its own. */
struct wp_piece {
	pthread_t t;
	int uffd;
	struct uffdio_writeprotect wp;
	int rc;
};

static void *wp_piece_main(void *arg)
{
	struct wp_piece *p = arg;
	p->rc = ioctl(p->uffd, UFFDIO_WRITEPROTECT, &p->wp) ? -errno : 0;
	return NULL;
}

/* The kernel's part of a protect enable, bare: register @mem MISSING | WP
 * on a fresh uffd and write-protect it, in one call (@threads 1) or in as
 * many equal pieces protected at once on as many threads; milliseconds
 * into @ms.  With @unmapped, the mapping's page table entries are zapped
 * first. */
static int wp_floor(const struct enable_bench *o, uint8_t *mem, bool unmapped, unsigned threads,
		    double *ms)
{
	struct wp_piece piece[WP_THREADS_MAX];
	fill(o, mem);
	if (unmapped && madvise(mem, o->size, MADV_DONTNEED))
		return -errno;
	int uffd, err = vswap_uffd_create(&uffd);
	if (err)
		return err;
	struct uffdio_register reg = {
	    .range = {.start = (uintptr_t)mem, .len = o->size},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	uint64_t each = o->size / threads / o->page_size * o->page_size;
	for (unsigned k = 0; k < threads; k++)
		piece[k] = (struct wp_piece){
		    .uffd = uffd,
		    .wp = {.range = {.start = (uintptr_t)mem + k * each,
				     .len = k + 1 < threads ? each : o->size - k * each},
			   .mode = UFFDIO_WRITEPROTECT_MODE_WP},
		};
	unsigned started = 1;
	double t0 = now_s();
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		err = -errno;
	for (; !err && started < threads; started++)
		if (pthread_create(&piece[started].t, NULL, wp_piece_main, &piece[started])) {
			err = -EAGAIN;
			break;
		}
	if (!err)
		wp_piece_main(&piece[0]);
	for (unsigned k = 1; k < started; k++)
		pthread_join(piece[k].t, NULL);
	*ms = (now_s() - t0) * 1e3;
	for (unsigned k = 0; k < threads && !err; k++)
		err = piece[k].rc;
	close(uffd); /* unregisters, and drops the protection with it */
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
	double mem_p[MAX_RUNS], mem_c[MAX_RUNS], raw[MAX_RUNS], floor_m[MAX_RUNS],
	    floor_s[MAX_RUNS], floor_u[MAX_RUNS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned split = cpus < 2 ? 1 : cpus > WP_THREADS_MAX ? WP_THREADS_MAX : (unsigned)cpus;
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
		double secs = 0, fm = 0, fs = 0, fu = 0;
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
		if (!err)
			err = wp_floor(o, mem, false, 1, &fm);
		if (!err)
			err = wp_floor(o, mem, false, split, &fs);
		if (!err)
			err = wp_floor(o, mem, true, 1, &fu);
		if (err)
			break;
		floor_m[r] = fm / gib;
		floor_s[r] = fs / gib;
		floor_u[r] = fu / gib;
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
			    "O_DIRECT %.3f GB/s; bare register + protect %.1f ms (%u threads "
			    "%.1f ms, unmapped %.1f ms)\n",
			    p.enable_ms, trip_p[r], p.memory_mib, p.pte_mib, c.enable_ms, trip_c[r],
			    c.memory_mib, raw[r], fm, split, fs, fu);
	}
	munmap(mem, o->size);
	close(memfd);
	if (err) {
		fprintf(stderr, "vswap-bench: enable: %s\n", vswap_strerror(err));
		return err;
	}
	double guest_mib = (double)o->size / (1 << 20);
	double en = median(en_p, runs), fl = median(floor_m, runs);
	bench_add(res, "enable_ms_per_gib", en, "ms", "enable_ms_per_gib_copy", median(en_c, runs));
	/* The kernel's share: what a protect enable cannot go below. */
	bench_add(res, "enable_ms_per_gib", en, "ms", "enable_floor_ms_per_gib", fl);
	bench_add(res, "enable_ms_per_gib", en, "ms", "enable_floor_split_ms_per_gib",
		  median(floor_s, runs));
	bench_add(res, "enable_floor_unmapped_ms_per_gib", median(floor_u, runs), "ms",
		  "enable_floor_ms_per_gib", fl);
	bench_add(res, "enable_swap_out_gbps", median(trip_p, runs), "GB/s", "odirect_write_gbps",
		  median(raw, runs));
	bench_add(res, "enable_swap_out_gbps_copy", median(trip_c, runs), "GB/s",
		  "odirect_write_gbps", median(raw, runs));
	bench_add(res, "handler_memory_mib", median(mem_p, runs), "MiB", "guest_mib", guest_mib);
	bench_add(res, "handler_memory_mib_copy", median(mem_c, runs), "MiB", "guest_mib",
		  guest_mib);
	return 0;
}
