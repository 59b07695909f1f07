/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench group "datapath": guest accesses served while the disk works,
 * through the public API, every figure beside baselines of the same run.
 * The guest is a memfd of the benchmark's size (at most 256 MiB here)
 * filled with its incompressible bytes; the store sits in --dir (durability
 * batch).  Every access pattern is in the row's name.
 *
 *   fault_file_rand_{p50,p99}_us   cold faults from the swap file in random
 *       page order (swapped out, page cache dropped), one thread; beside the
 *       sum of an O_DIRECT 4 KiB pread of the swap file at random slots
 *       (odirect_pread_4k_rand_*) and a bare UFFDIO_COPY fault in random
 *       order (bare_uffdio_copy_rand_*): what a fault must cost at least.
 *   fault_concurrency_8t_pages_s   cold random faults from the swap file,
 *       8 threads on disjoint pages, beside the same faults from 1 thread
 *       (the ratio is the speed-up; the disk does many reads at once).
 *   bare_ring_{1t,8t,2srv_8t}_rand_pages_s   the ceiling of those two: the
 *       same faults (same slots of the same file, same thread counts) served
 *       by a bare userfaultfd server doing only the kernel's part (an
 *       O_DIRECT read on io_uring, then UFFDIO_COPY; bare_ring.c), from one
 *       server thread and from two; vs_bare_ring_* put vswap's beside them.
 *   fault_during_swap_out_{p50,p99,max}_us   copy mode: a thread touching
 *       staged pages from the top of the guest down, one every 100 us,
 *       while the swap-out writes from the bottom up; beside the same
 *       touches with no swap-out running (fault_idle_staging_*).  Staging
 *       faults only: near its end the swap-out reaches the pages not
 *       touched yet, and their faults read the swap file instead; those go
 *       to fault_file_during_swap_out_{p50,max}_us (the median over the
 *       runs that met any), beside the cold random file faults of the same
 *       run (fault_file_rand_p50_us, and their max).
 *   fault_idle_staging_{p99,max}_us   the idle pass alone, beside the same
 *       paced touches, top down, served by a bare userfaultfd server doing
 *       one UFFDIO_COPY per fault (bare_uffdio_copy_paced_*).
 *   fault_during_swap_out_long_slice_{p99,max}_us   the same with the
 *       handler's background threads asking for a 20 ms slice
 *       (vswap_handler_opts.background_slice_us), beside the default's.
 *   swap_out_scattered_gbps   swap-out of every fourth page of the guest
 *       (the others never written), default enable mode, beside the same
 *       number of contiguous pages (swap_out_contiguous_gbps).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/store.h>

#include "tools/bench/bare_ring.h"
#include "tools/bench/common.h"
#include "tools/bench/datapath.h"

#define MAX_RUNS 64
#define MAX_PAGES 65536u /* 256 MiB of 4 KiB pages */
#define SAMPLES 4096u
#define THREADS 8u
/* The background slice the long-slice rows ask for (background_slice_us). */
#define LONG_SLICE_US 20000u

static bool stopped(const struct datapath_bench *o)
{
	sigset_t pend;
	if (!o->stop || sigpending(&pend))
		return false;
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(o->stop, sig) == 1 && sigismember(&pend, sig) == 1)
			return true;
	return false;
}

static double us_since(uint64_t t0)
{
	return (double)(bench_now_ns() - t0) / 1e3;
}

/* A random permutation of 0..n-1. */
static uint64_t *shuffled(size_t n, uint64_t seed)
{
	uint64_t *v = malloc(n * sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		v[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j = bench_rand(&seed) % i;
		uint64_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
	return v;
}

struct lat {
	double p50, p99, max;
};

static struct lat lat_of(double *v, size_t n)
{
	struct lat l = {NAN, NAN, NAN};
	if (!n)
		return l;
	l.p50 = bench_quantile(v, n, 0.5);
	l.p99 = bench_quantile(v, n, 0.99);
	l.max = v[n - 1]; /* sorted by the quantiles */
	return l;
}

/* ---- a guest and its handler -------------------------------------------- */

struct guest {
	const struct datapath_bench *o;
	size_t pages, ps;
	int memfd;
	uint8_t *mem;
	char path[512];
	struct vswap_store *store;
	struct vswap_handler *h;
};

static int guest_open_slice(struct guest *g, struct datapath_bench *o, size_t pages,
			    enum vswap_enable_mode mode, uint32_t slice_us)
{
	*g = (struct guest){.o = o, .pages = pages, .ps = o->page_size, .memfd = -1};
	snprintf(g->path, sizeof(g->path), "%s/datapath-%d-%u.swap", o->dir, (int)getpid(),
		 o->guests++);
	struct vswap_store_opts so = {.staging_dir = "/dev/shm"};
	int rc = vswap_store_create(g->path, &so, &g->store);
	if (rc < 0)
		return rc;
	g->memfd = memfd_create("datapath-guest", MFD_CLOEXEC);
	if (g->memfd < 0 || ftruncate(g->memfd, (off_t)(pages * g->ps)) < 0)
		return -errno;
	g->mem = mmap(NULL, pages * g->ps, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	if (g->mem == MAP_FAILED) {
		g->mem = NULL;
		return -errno;
	}
	struct vswap_region r = {g->mem, pages * g->ps, g->memfd, 0};
	struct vswap_handler_opts ho = {
	    .store = g->store, .enable_mode = mode, .background_slice_us = slice_us};
	return vswap_handler_create(&r, 1, &ho, &g->h);
}

static int guest_open(struct guest *g, struct datapath_bench *o, size_t pages,
		      enum vswap_enable_mode mode)
{
	return guest_open_slice(g, o, pages, mode, 0);
}

static void guest_close(struct guest *g)
{
	if (g->h)
		vswap_handler_destroy(g->h);
	if (g->mem)
		munmap(g->mem, g->pages * g->ps);
	if (g->memfd >= 0)
		close(g->memfd);
	if (g->store) {
		vswap_store_close(g->store);
		struct vswap_store_opts so = {.staging_dir = "/dev/shm"};
		vswap_store_destroy(g->path, &so);
	}
}

/* Write page @p of the guest (every @step-th page when filling). */
static void guest_write(struct guest *g, size_t p)
{
	const struct datapath_bench *o = g->o;
	size_t off = (p * g->ps) % (o->src_len - g->ps + 1) / g->ps * g->ps;
	memcpy(g->mem + p * g->ps, (const uint8_t *)o->src + off, g->ps);
}

/* Enable, swap out until Active; the swap file's page cache dropped. */
static int swap_out_all(struct guest *g, double *secs)
{
	int rc = vswap_handler_enable(g->h);
	uint64_t t0 = bench_now_ns();
	if (rc == 0)
		rc = vswap_handler_swap_out(g->h);
	if (rc == 0)
		rc = vswap_handler_wait_state(g->h, VSWAP_STATE_ACTIVE, 600000);
	if (secs)
		*secs = (double)(bench_now_ns() - t0) / 1e9;
	int fd = open(g->path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	return rc;
}

/* ---- cold random faults, and their floors --------------------------------- */

static void touch_timed(struct guest *g, const uint64_t *order, size_t n, double *lat)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = bench_now_ns();
		(void)*(volatile uint8_t *)(g->mem + order[i] * g->ps);
		lat[i] = us_since(t0);
	}
}

/* Where each page of @order has its copy in the swap file, looked up while
 * every page is still swapped out (the floor may run after the faults have
 * brought the pages back) and before any clock runs. */
static int slot_offsets(struct guest *g, const uint64_t *order, size_t n, uint64_t *off)
{
	for (size_t i = 0; i < n; i++) {
		struct vswap_page_info pi;
		int rc = vswap_handler_page_info(g->h, order[i], &pi);
		if (rc == 0 && pi.state != VSWAP_PAGE_PRESENT)
			rc = -ENODATA;
		if (rc < 0)
			return rc;
		off[i] = vswap_store_slot_offset(g->store, pi.slot);
	}
	return 0;
}

static int odirect_reads(struct guest *g, const uint64_t *off, size_t n, double *lat)
{
	int fd = open(g->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	void *buf = aligned_alloc(g->ps, g->ps);
	int rc = fd >= 0 && buf ? 0 : -EIO;
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t t0 = bench_now_ns();
		if (pread(fd, buf, g->ps, (off_t)off[i]) != (ssize_t)g->ps)
			rc = -EIO;
		lat[i] = us_since(t0);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

struct bare {
	int uffd;
	size_t ps;
	void *src;
	atomic_bool stop;
};

static void *bare_main(void *arg)
{
	struct bare *b = arg;
	struct pollfd p = {.fd = b->uffd, .events = POLLIN};
	while (!atomic_load(&b->stop)) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		struct uffd_msg msg;
		if (read(b->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
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

/* A bare UFFDIO_COPY handler on its own thread, shmem, random order. */
/* The paced passes: a touch every PACE_NS, PACED_SAMPLES of them at most. */
#define PACE_NS 100000
#define PACED_SAMPLES 2000u

/* Faults on @order's pages served by a bare userfaultfd server (one
 * UFFDIO_COPY each, nothing else); with @paced, one every PACE_NS, as the
 * paced passes below touch. */
static int bare_faults(size_t pages, size_t ps, const uint64_t *order, size_t n, double *lat,
		       bool paced)
{
	int memfd = memfd_create("datapath-bare", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)(pages * ps)) < 0)
		return -errno;
	uint8_t *mem = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	struct bare b = {.ps = ps};
	atomic_init(&b.stop, false);
	int rc = vswap_uffd_create(&b.uffd);
	if (mem == MAP_FAILED || rc < 0) {
		close(memfd);
		return mem == MAP_FAILED ? -errno : rc;
	}
	struct uffdio_register reg = {.range = {(uintptr_t)mem, pages * ps},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	b.src = aligned_alloc(ps, ps);
	pthread_t t;
	if (!b.src || ioctl(b.uffd, UFFDIO_REGISTER, &reg) < 0 ||
	    pthread_create(&t, NULL, bare_main, &b) != 0) {
		rc = -EIO;
	} else {
		memset(b.src, 0x5a, ps);
		for (size_t i = 0; i < n; i++) {
			uint64_t t0 = bench_now_ns();
			(void)*(volatile uint8_t *)(mem + order[i] * ps);
			lat[i] = us_since(t0);
			struct timespec ts = {0, PACE_NS};
			if (paced)
				nanosleep(&ts, NULL);
		}
		atomic_store(&b.stop, true);
		pthread_join(t, NULL);
	}
	close(b.uffd);
	munmap(mem, pages * ps);
	close(memfd);
	free(b.src);
	return rc;
}

struct toucher {
	struct guest *g;
	const uint64_t *pages;
	size_t n;
	atomic_bool *go;
	pthread_t t;
};

static void *toucher_main(void *arg)
{
	struct toucher *k = arg;
	while (!atomic_load(k->go))
		sched_yield();
	for (size_t i = 0; i < k->n; i++)
		(void)*(volatile uint8_t *)(k->g->mem + k->pages[i] * k->g->ps);
	return NULL;
}

/* Pages per second of @threads threads faulting @n random pages. */
static double fault_rate(struct guest *g, const uint64_t *order, size_t n, unsigned threads)
{
	struct toucher k[THREADS];
	atomic_bool go;
	atomic_init(&go, false);
	size_t each = n / threads;
	for (unsigned i = 0; i < threads; i++) {
		k[i] = (struct toucher){.g = g, .pages = order + i * each, .n = each, .go = &go};
		if (pthread_create(&k[i].t, NULL, toucher_main, &k[i]) != 0) {
			threads = i; /* short of memory only: measure fewer */
			break;
		}
	}
	uint64_t t0 = bench_now_ns();
	atomic_store(&go, true);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(k[i].t, NULL);
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	if (!threads)
		return NAN;
	return (double)(each * threads) / secs;
}

struct rand_run {
	struct lat fault, pread, bare;
	double rate1, rate8;
	double ring1, ring8, ring8x2; /* the bare server: 1 and 8 faulters, 1 and 2 servers */
};

/* Where every page has its copy in the swap file (all swapped out). */
static int page_offsets(struct guest *g, uint64_t *off)
{
	for (size_t p = 0; p < g->pages; p++) {
		struct vswap_page_info pi;
		int rc = vswap_handler_page_info(g->h, p, &pi);
		if (rc == 0 && pi.state != VSWAP_PAGE_PRESENT)
			rc = -ENODATA;
		if (rc < 0)
			return rc;
		off[p] = vswap_store_slot_offset(g->store, pi.slot);
	}
	return 0;
}

/* The bare server's rates over the pages vswap's rates fault. */
static int ring_rates(struct guest *g, const uint64_t *page_off, const uint64_t *order, size_t m,
		      size_t m8, struct rand_run *out)
{
	int rc = bare_ring_rate(g->path, g->pages, g->ps, page_off, order, m, 1, 1, &out->ring1);
	if (rc == 0)
		rc = bare_ring_rate(g->path, g->pages, g->ps, page_off, order + m, m8, THREADS, 1,
				    &out->ring8);
	if (rc == 0)
		rc = bare_ring_rate(g->path, g->pages, g->ps, page_off, order + m, m8, THREADS, 2,
				    &out->ring8x2);
	return rc;
}

static int rand_run(struct datapath_bench *o, size_t pages, unsigned r, struct rand_run *out)
{
	size_t n = pages < SAMPLES ? pages : SAMPLES;
	uint64_t *order = shuffled(pages, 0x9e3779b97f4a7c15ull * (r + 1));
	double *lat = calloc(n, sizeof(*lat));
	uint64_t *off = calloc(n ? n : 1, sizeof(*off));
	uint64_t *page_off = calloc(pages, sizeof(*page_off));
	struct guest g;
	int rc =
	    order && lat && off && page_off ? guest_open(&g, o, pages, VSWAP_ENABLE_AUTO) : -ENOMEM;
	if (!order || !lat || !off || !page_off) {
		free(order);
		free(lat);
		free(off);
		free(page_off);
		return rc;
	}
	for (size_t p = 0; rc == 0 && p < pages; p++)
		guest_write(&g, p);
	if (rc == 0)
		rc = swap_out_all(&g, NULL);
	if (rc == 0)
		rc = slot_offsets(&g, order, n, off);
	if (rc == 0)
		rc = page_offsets(&g, page_off);
	/* The floor first or last, alternately (the disk drifts); O_DIRECT
	 * reads of the same slots leave no page cache behind. */
	if (rc == 0 && r % 2 == 0) {
		rc = odirect_reads(&g, off, n, lat);
		out->pread = lat_of(lat, n);
	}
	if (rc == 0) {
		touch_timed(&g, order, n, lat);
		out->fault = lat_of(lat, n);
	}
	if (rc == 0 && r % 2) {
		rc = odirect_reads(&g, off, n, lat);
		out->pread = lat_of(lat, n);
	}
	/* 1 thread, then 8, each on freshly swapped-out pages. */
	size_t m = pages < 2 * SAMPLES ? pages / 2 : 2 * SAMPLES;
	m -= m % THREADS;
	size_t m8 = m < pages - m ? m : pages - m;
	/* The ceiling first or last, alternately, over the same slots. */
	if (rc == 0 && r % 2)
		rc = ring_rates(&g, page_off, order, m, m8, out);
	if (rc == 0)
		rc = swap_out_all(&g, NULL);
	if (rc == 0)
		out->rate1 = fault_rate(&g, order, m, 1);
	if (rc == 0)
		rc = swap_out_all(&g, NULL);
	if (rc == 0)
		out->rate8 = fault_rate(&g, order + m, m8, THREADS);
	if (rc == 0 && r % 2 == 0)
		rc = ring_rates(&g, page_off, order, m, m8, out);
	guest_close(&g);
	if (rc == 0) {
		rc = bare_faults(pages, o->page_size, order, n, lat, false);
		out->bare = lat_of(lat, n);
	}
	free(order);
	free(lat);
	free(off);
	free(page_off);
	return rc;
}

/* ---- faults while a swap-out runs --------------------------------------- */

/* The samples of one paced pass, by where the handler found the page: a
 * staged copy (what the rows compare), or the swap file (the swap-out had
 * written and committed it, so its staged copy was gone). */
struct paced {
	double *staged, *file;
	size_t nstaged, nfile;
};

/* Touch pages from the top down, one every PACE_NS, until @n samples or
 * (with @until_active) the handler reaches Active.  The handler's status
 * after each touch says which copy served it: the swap-out writes from the
 * bottom up and, near its end, reaches the pages not touched yet, whose
 * faults then read the swap file, behind the writes in flight.  Those are
 * not the staging faults the idle pass times, so they are kept apart (the
 * status is read in both passes alike). */
static void paced_touches(struct guest *g, struct paced *out, size_t n, bool until_active)
{
	out->nstaged = out->nfile = 0;
	struct vswap_status st;
	uint64_t from_staging = 0, from_file = 0;
	if (vswap_handler_status(g->h, &st) == 0) {
		from_staging = st.metrics.copied_from_staging_pages;
		from_file = st.metrics.copied_from_file_pages;
	}
	for (size_t p = g->pages, k = 0; p-- > 0 && k < n; k++) {
		uint64_t t0 = bench_now_ns();
		(void)*(volatile uint8_t *)(g->mem + p * g->ps);
		double us = us_since(t0);
		if (vswap_handler_status(g->h, &st) != 0)
			break;
		if (st.metrics.copied_from_file_pages != from_file)
			out->file[out->nfile++] = us;
		else if (st.metrics.copied_from_staging_pages != from_staging)
			out->staged[out->nstaged++] = us;
		from_staging = st.metrics.copied_from_staging_pages;
		from_file = st.metrics.copied_from_file_pages;
		if (until_active && st.state == VSWAP_STATE_ACTIVE)
			break;
		struct timespec ts = {0, PACE_NS};
		nanosleep(&ts, NULL);
	}
}

static int during_run(struct datapath_bench *o, size_t pages, uint32_t slice_us, struct lat *idle,
		      struct lat *busy, struct lat *busy_file)
{
	double *lat = calloc(2 * (size_t)PACED_SAMPLES, sizeof(*lat));
	struct paced pc = {lat, lat ? lat + PACED_SAMPLES : NULL, 0, 0};
	struct guest g;
	int rc = lat ? guest_open_slice(&g, o, pages, VSWAP_ENABLE_COPY, slice_us) : -ENOMEM;
	if (!lat)
		return rc;
	for (size_t p = 0; rc == 0 && p < pages; p++)
		guest_write(&g, p);
	if (rc == 0)
		rc = vswap_handler_enable(g.h);
	if (rc == 0) {
		paced_touches(&g, &pc, PACED_SAMPLES, false);
		*idle = lat_of(pc.staged, pc.nstaged);
	}
	if (rc == 0)
		rc = vswap_handler_enable(g.h); /* the touched pages staged again */
	if (rc == 0)
		rc = vswap_handler_swap_out(g.h);
	if (rc == 0) {
		paced_touches(&g, &pc, PACED_SAMPLES, true);
		*busy = lat_of(pc.staged, pc.nstaged);
		*busy_file = lat_of(pc.file, pc.nfile);
	}
	if (rc == 0)
		rc = vswap_handler_wait_state(g.h, VSWAP_STATE_ACTIVE, 600000);
	guest_close(&g);
	free(lat);
	return rc;
}

/* The idle pass's floor: the same paced touches, top down, served bare. */
static int bare_paced(struct datapath_bench *o, size_t pages, struct lat *out)
{
	size_t n = pages < PACED_SAMPLES ? pages : PACED_SAMPLES;
	uint64_t *order = calloc(n, sizeof(*order));
	double *lat = calloc(n, sizeof(*lat));
	int rc = order && lat ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++)
		order[i] = pages - 1 - i;
	if (rc == 0)
		rc = bare_faults(pages, o->page_size, order, n, lat, true);
	if (rc == 0)
		*out = lat_of(lat, n);
	free(order);
	free(lat);
	return rc;
}

/* ---- scattered swap-out ----------------------------------------------------- */

static int swap_out_rate(struct datapath_bench *o, size_t pages, bool scattered, double *gbps)
{
	struct guest g;
	int rc = guest_open(&g, o, pages, VSWAP_ENABLE_AUTO);
	size_t n = pages / 4;
	for (size_t i = 0; rc == 0 && i < n; i++)
		guest_write(&g, scattered ? 4 * i : i);
	double secs = 0;
	if (rc == 0)
		rc = swap_out_all(&g, &secs);
	*gbps = bench_gbps((uint64_t)n * g.ps, secs);
	guest_close(&g);
	return rc;
}

/* ---- the group ------------------------------------------------------------------ */

int datapath_bench_run(struct datapath_bench *o, struct bench_results *res)
{
	size_t pages = o->size / o->page_size;
	if (pages > MAX_PAGES)
		pages = MAX_PAGES;
	if (pages < 4 * THREADS * 16)
		return -EINVAL;
	unsigned runs = o->runs > MAX_RUNS ? MAX_RUNS : o->runs;
	double v[18][MAX_RUNS], scv[MAX_RUNS], cov[MAX_RUNS], lsp[MAX_RUNS], lsm[MAX_RUNS];
	/* Runs whose pass met swapped-out pages (file faults), with their figures. */
	double fp50[MAX_RUNS], fmax[MAX_RUNS];
	unsigned nf = 0;
	int rc = 0;
	for (unsigned r = 0; r < runs && rc == 0; r++) {
		struct rand_run rr = {
		    {NAN, NAN, NAN}, {NAN, NAN, NAN}, {NAN, NAN, NAN}, NAN, NAN, NAN, NAN, NAN};
		struct lat idle = {NAN, NAN, NAN}, busy = {NAN, NAN, NAN}, file = {NAN, NAN, NAN};
		struct lat idle_ls = {NAN, NAN, NAN}, busy_ls = {NAN, NAN, NAN}, file_ls;
		struct lat bare = {NAN, NAN, NAN};
		double sc = NAN, co = NAN;
		if (stopped(o))
			return -EINTR;
		rc = rand_run(o, pages, r, &rr);
		/* The default and the long background slice, first or last
		 * alternately. */
		if (rc == 0 && r % 2 == 0 &&
		    (rc = during_run(o, pages, 0, &idle, &busy, &file)) == 0)
			rc = during_run(o, pages, LONG_SLICE_US, &idle_ls, &busy_ls, &file_ls);
		if (rc == 0 && r % 2 &&
		    (rc = during_run(o, pages, LONG_SLICE_US, &idle_ls, &busy_ls, &file_ls)) == 0)
			rc = during_run(o, pages, 0, &idle, &busy, &file);
		if (rc == 0)
			rc = bare_paced(o, pages, &bare);
		if (rc == 0 && r % 2 == 0 && (rc = swap_out_rate(o, pages, true, &sc)) == 0)
			rc = swap_out_rate(o, pages, false, &co);
		if (rc == 0 && r % 2 && (rc = swap_out_rate(o, pages, false, &co)) == 0)
			rc = swap_out_rate(o, pages, true, &sc);
		if (rc)
			break;
		double row[18] = {rr.fault.p50, rr.fault.p99, rr.pread.p50, rr.pread.p99,
				  rr.bare.p50,	rr.bare.p99,  rr.rate8,	    rr.rate1,
				  busy.p99,	busy.max,     idle.p99,	    idle.max,
				  rr.ring1,	rr.ring8,     rr.ring8x2,   rr.fault.max,
				  bare.p99,	bare.max};
		for (int k = 0; k < 18; k++)
			v[k][r] = row[k];
		scv[r] = sc;
		cov[r] = co;
		if (!isnan(file.p50)) {
			fp50[nf] = file.p50;
			fmax[nf++] = file.max;
		}
		lsp[r] = busy_ls.p99;
		lsm[r] = busy_ls.max;
		if (o->verbose)
			fprintf(
			    stderr,
			    "  datapath run %u: rand fault p50 %.1f us (pread %.1f + bare %.1f), "
			    "8t %.0f / 1t %.0f pages/s (bare ring 8t %.0f, 2 servers %.0f, "
			    "1t %.0f), during swap-out p99 %.0f max %.0f us "
			    "(idle %.0f, %.0f; p50 %.1f/%.1f; file faults p50 %.0f max %.0f), "
			    "swap-out scattered %.3f / "
			    "contiguous %.3f GB/s\n",
			    r + 1, rr.fault.p50, rr.pread.p50, rr.bare.p50, rr.rate8, rr.rate1,
			    rr.ring8, rr.ring8x2, rr.ring1, busy.p99, busy.max, idle.p99, idle.max,
			    busy.p50, idle.p50, file.p50, file.max, sc, co);
		if (r + 1 == runs) {
			double m[18];
			for (int k = 0; k < 18; k++)
				m[k] = bench_median(v[k], runs);
			bench_add(res, "fault_file_rand_p50_us", m[0], "us",
				  "odirect_pread_4k_rand+bare_copy_p50_us", m[2] + m[4]);
			bench_add(res, "fault_file_rand_p99_us", m[1], "us",
				  "odirect_pread_4k_rand+bare_copy_p99_us", m[3] + m[5]);
			bench_add(res, "odirect_pread_4k_rand_p50_us", m[2], "us", NULL, NAN);
			bench_add(res, "bare_uffdio_copy_rand_p50_us", m[4], "us", NULL, NAN);
			bench_add(res, "fault_concurrency_8t_rand_pages_s", m[6], "pages/s",
				  "fault_concurrency_1t_rand_pages_s", m[7]);
			bench_add(res, "bare_ring_8t_rand_pages_s", m[13], "pages/s",
				  "bare_ring_1t_rand_pages_s", m[12]);
			bench_add(res, "bare_ring_2srv_8t_rand_pages_s", m[14], "pages/s",
				  "bare_ring_1t_rand_pages_s", m[12]);
			bench_add(res, "vs_bare_ring_fault_concurrency_8t_rand_pages_s", m[6],
				  "pages/s", "bare_ring_2srv_8t_rand_pages_s", m[14]);
			bench_add(res, "vs_bare_ring_fault_concurrency_1t_rand_pages_s", m[7],
				  "pages/s", "bare_ring_1t_rand_pages_s", m[12]);
			bench_add(res, "fault_during_swap_out_p99_us", m[8], "us",
				  "fault_idle_staging_p99_us", m[10]);
			bench_add(res, "fault_during_swap_out_max_us", m[9], "us",
				  "fault_idle_staging_max_us", m[11]);
			bench_add(res, "fault_idle_staging_p99_us", m[10], "us",
				  "bare_uffdio_copy_paced_p99_us", m[16]);
			bench_add(res, "fault_idle_staging_max_us", m[11], "us",
				  "bare_uffdio_copy_paced_max_us", m[17]);
			if (nf) {
				bench_add(res, "fault_file_during_swap_out_p50_us",
					  bench_median(fp50, nf), "us", "fault_file_rand_p50_us",
					  m[0]);
				bench_add(res, "fault_file_during_swap_out_max_us",
					  bench_median(fmax, nf), "us", "fault_file_rand_max_us",
					  m[15]);
			}
			bench_add(res, "fault_during_swap_out_long_slice_p99_us",
				  bench_median(lsp, runs), "us", "fault_during_swap_out_p99_us",
				  m[8]);
			bench_add(res, "fault_during_swap_out_long_slice_max_us",
				  bench_median(lsm, runs), "us", "fault_during_swap_out_max_us",
				  m[9]);
			bench_add(res, "swap_out_scattered_gbps", bench_median(scv, runs), "GB/s",
				  "swap_out_contiguous_gbps", bench_median(cov, runs));
			o->rand_p50_us = m[0];
			o->rate8_pages_s = m[6];
		}
	}
	return rc;
}
