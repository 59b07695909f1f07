/* SPDX-License-Identifier: MIT */
/*
 * Fault latency, for vswap-faultbench and vswap-bench's "faults" group:
 * page faults through the vswap handler (zero, staging and swap-file
 * faults) beside a bare UFFDIO_COPY handler and a plain first-touch fault,
 * all measured in the same run.
 *
 * It also measures the metadata's RSS per guest page: the growth of
 * RssAnon through store create, handler create, enable and swap-out, at
 * two guest sizes (each in a child process), as a slope per page plus the
 * fixed part.  One size alone mixes the two: at 256 MiB the fixed ~1 MiB
 * (mostly LMDB's cache of dirty pages from the largest commit, which the
 * swap-out's commit grouping bounds) reads as 16 more bytes a page.
 *
 * Every latency is one guest access on this thread, first touch of a page
 * that is missing, timed with CLOCK_MONOTONIC around the access; the
 * handler (or the bare one) runs on its own thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "tools/bench/faults.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Touch every page of @mem once; p50/p99 of the accesses into @row. */
static void touch_all(volatile uint8_t *mem, size_t pages, size_t ps, struct faultbench_row *row)
{
	double *lat = malloc(pages * sizeof(*lat));
	if (!lat)
		return;
	for (size_t i = 0; i < pages; i++) {
		double t0 = now_us();
		(void)mem[i * ps];
		lat[i] = now_us() - t0;
	}
	qsort(lat, pages, sizeof(*lat), cmp_double);
	row->p50_us = lat[pages / 2];
	row->p99_us = lat[pages * 99 / 100];
	row->n = pages;
	free(lat);
}

/* ---- the bare handler: read one event, UFFDIO_COPY one page ------------- */

struct bare {
	int uffd;
	size_t ps;
	void *src;
	volatile bool stop;
};

static void *bare_main(void *arg)
{
	struct bare *b = arg;
	struct pollfd p = {.fd = b->uffd, .events = POLLIN};
	while (!b->stop) {
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct uffd_msg msg;
		if (read(b->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy c = {
		    .dst = msg.arg.pagefault.address & ~(uint64_t)(b->ps - 1),
		    .src = (uintptr_t)b->src,
		    .len = b->ps,
		};
		ioctl(b->uffd, UFFDIO_COPY, &c);
	}
	return NULL;
}

static int bench_bare(size_t pages, size_t ps, struct faultbench_row *row)
{
	int memfd = memfd_create("faultbench-bare", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)(pages * ps)) < 0)
		return -errno;
	uint8_t *mem = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	struct bare b = {.ps = ps};
	int rc = vswap_uffd_create(&b.uffd);
	if (mem == MAP_FAILED || rc < 0)
		return mem == MAP_FAILED ? -errno : rc;
	struct uffdio_register reg = {.range = {(uintptr_t)mem, pages * ps},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	b.src = aligned_alloc(ps, ps);
	memset(b.src, 0x5a, ps);
	if (ioctl(b.uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	pthread_t t;
	pthread_create(&t, NULL, bare_main, &b);
	touch_all(mem, pages, ps, row);
	b.stop = true;
	pthread_join(t, NULL);
	close(b.uffd);
	munmap(mem, pages * ps);
	close(memfd);
	free(b.src);
	return 0;
}

static int bench_plain(size_t pages, size_t ps, struct faultbench_row *row)
{
	int memfd = memfd_create("faultbench-plain", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)(pages * ps)) < 0)
		return -errno;
	uint8_t *mem = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		return -errno;
	touch_all(mem, pages, ps, row);
	munmap(mem, pages * ps);
	close(memfd);
	return 0;
}

/* ---- through the handler ------------------------------------------------- */

struct fb_guest {
	int memfd;
	uint8_t *mem;
	size_t pages, ps;
	struct vswap_store *store;
	struct vswap_handler *h;
	char path[512];
};

static int guest_open(struct fb_guest *g, const char *dir, size_t pages, size_t ps)
{
	*g = (struct fb_guest){.pages = pages, .ps = ps};
	snprintf(g->path, sizeof(g->path), "%s/faultbench-%d.swap", dir, (int)getpid());
	struct vswap_store_opts so = {.staging_dir = "/dev/shm"};
	int rc = vswap_store_create(g->path, &so, &g->store);
	if (rc < 0)
		return rc;
	g->memfd = memfd_create("faultbench-guest", MFD_CLOEXEC);
	if (g->memfd < 0 || ftruncate(g->memfd, (off_t)(pages * ps)) < 0)
		return -errno;
	g->mem = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	if (g->mem == MAP_FAILED)
		return -errno;
	struct vswap_region r = {g->mem, pages * ps, g->memfd, 0};
	/* The copy mode: the staging row measures a fault served from the
	 * staging file, which the protect mode never makes (its enable moves
	 * nothing, so that row would time a plain memory access). */
	struct vswap_handler_opts o = {.store = g->store, .enable_mode = VSWAP_ENABLE_COPY};
	return vswap_handler_create(&r, 1, &o, &g->h);
}

static void guest_close(struct fb_guest *g)
{
	if (g->h)
		vswap_handler_destroy(g->h);
	if (g->mem && g->mem != MAP_FAILED)
		munmap(g->mem, g->pages * g->ps);
	if (g->memfd > 0)
		close(g->memfd);
	if (g->store) {
		vswap_store_close(g->store);
		struct vswap_store_opts so = {.staging_dir = "/dev/shm"};
		vswap_store_destroy(g->path, &so);
	}
}

static void guest_fill(struct fb_guest *g)
{
	for (size_t i = 0; i < g->pages; i++)
		memset(g->mem + i * g->ps, (int)(i % 251) + 1, g->ps);
}

/* Drop the swap file's page cache (its data is synced by the swap-out).
 * The store already drops it after each commit; this makes sure. */
static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

static int bench_handler(const char *dir, size_t pages, size_t ps, struct faultbench_result *res)
{
	struct fb_guest g;
	int rc = guest_open(&g, dir, pages, ps);
	if (rc == 0)
		rc = vswap_handler_enable(g.h);
	if (rc == 0) /* empty guest: every fault is a zero-fill */
		touch_all(g.mem, pages, ps, &res->rows[FB_ZERO]);
	if (rc == 0) {
		guest_fill(&g);
		rc = vswap_handler_enable(g.h);
	}
	if (rc == 0)
		touch_all(g.mem, pages, ps, &res->rows[FB_STAGING]);
	for (int cold = 0; cold < 2 && rc == 0; cold++) {
		rc = vswap_handler_enable(g.h);
		if (rc == 0)
			rc = vswap_handler_swap_out(g.h);
		if (rc == 0)
			rc = vswap_handler_wait_state(g.h, VSWAP_STATE_ACTIVE, 60000);
		if (rc == 0 && cold)
			drop_cache(g.path);
		if (rc == 0)
			touch_all(g.mem, pages, ps,
				  &res->rows[cold ? FB_FILE_COLD : FB_FILE_CACHED]);
		if (getenv("FB_DEBUG")) {
			struct vswap_status st;
			char js[1024];
			vswap_handler_status(g.h, &st);
			vswap_status_to_json(&st, js, sizeof(js));
			fprintf(stderr, "%s\n", js);
		}
	}
	guest_close(&g);
	return rc;
}

/* ---- metadata RSS ---------------------------------------------------------- */

static long long rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "RssAnon:", 8))
			v = atoll(line + 8);
	if (f)
		fclose(f);
	return v;
}

/* In a child: RssAnon growth (KiB) from before the store to after a
 * swap-out of a guest of @pages incompressible-enough pages. */
static long long meta_child(const char *dir, size_t pages, size_t ps)
{
	struct fb_guest g = {0};
	long long r0 = rss_anon_kib();
	int rc = guest_open(&g, dir, pages, ps);
	if (rc == 0) { /* the guest's memfd is shmem: not in RssAnon */
		guest_fill(&g);
		rc = vswap_handler_enable(g.h);
	}
	if (rc == 0)
		rc = vswap_handler_swap_out(g.h);
	if (rc == 0)
		rc = vswap_handler_wait_state(g.h, VSWAP_STATE_ACTIVE, 120000);
	long long grown = rc == 0 ? rss_anon_kib() - r0 : -1;
	guest_close(&g);
	return grown;
}

static long long meta_fork(const char *dir, size_t pages, size_t ps)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[0]);
		long long v = meta_child(dir, pages, ps);
		_exit(write(p[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	close(p[1]);
	long long v = -1;
	if (read(p[0], &v, sizeof(v)) != sizeof(v))
		v = -1;
	close(p[0]);
	waitpid(pid, NULL, 0);
	return v;
}

/*
 * RssAnon per guest page as a slope between two guests, both larger than
 * the swap-out's commit group (64 MiB), so the fixed part is the same in
 * both; the guest is created before the baseline, so only the store's and
 * the handler's own memory is counted.
 */
static int faultbench_metadata(const char *dir, size_t ps, struct faultbench_result *res)
{
	size_t small = (128u << 20) / ps, big = (384u << 20) / ps;
	long long a = meta_fork(dir, small, ps), b = meta_fork(dir, big, ps);
	if (getenv("FB_DEBUG"))
		fprintf(stderr, "metadata: %lld KiB at %zu pages, %lld KiB at %zu\n", a, small, b,
			big);
	if (a < 0 || b < 0)
		return -EIO;
	res->meta_bytes_per_page = (double)(b - a) * 1024.0 / (double)(big - small);
	res->meta_fixed_kib = (double)a - res->meta_bytes_per_page * (double)small / 1024.0;
	return 0;
}

int faultbench_measure_ex(const char *dir, size_t pages, bool metadata,
			  struct faultbench_result *res)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	memset(res, 0, sizeof(*res));
	static const char *names[FB_ROWS] = {"plain first touch (no uffd)",
					     "bare UFFDIO_COPY handler",
					     "vswap zero fault",
					     "vswap staging fault",
					     "vswap file fault",
					     "vswap file fault (re-dropped)"};
	for (int i = 0; i < FB_ROWS; i++)
		res->rows[i].name = names[i];
	res->meta_layout_bytes = 4.0 + 8.0 + 1.0 / 8 + 1.0 / 8 + 1.0 / 8 / 64;
	res->meta_bytes_per_page = res->meta_fixed_kib = NAN;
	int rc = bench_plain(pages, ps, &res->rows[FB_PLAIN]);
	if (rc == 0)
		rc = bench_bare(pages, ps, &res->rows[FB_BARE]);
	if (rc == 0)
		rc = bench_handler(dir, pages, ps, res);
	if (rc == 0 && metadata)
		rc = faultbench_metadata(dir, ps, res);
	return rc;
}

int faultbench_measure(const char *dir, size_t pages, struct faultbench_result *res)
{
	return faultbench_measure_ex(dir, pages, false, res);
}
