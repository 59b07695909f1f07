/* SPDX-License-Identifier: MIT */
/* The kernel's swap as a baseline: see kswap.h. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/swap.h>
#include <unistd.h>

#include "tools/bench/common.h"
#include "tools/bench/kswap.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

bool kswap_interrupted(const sigset_t *stop)
{
	sigset_t pend;
	int sig;

	if (!stop || sigpending(&pend))
		return false;
	for (sig = 1; sig < NSIG; sig++)
		if (sigismember(stop, sig) == 1 && sigismember(&pend, sig) == 1)
			return true;
	return false;
}

long long kswap_proc_kb(const char *file, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long long v = -1;
	FILE *f = fopen(file, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = atoll(line + klen + 1);
			break;
		}
	fclose(f);
	return v;
}

/*
 * Version-1 swap header (linux/swap.h union swap_header), written by hand
 * so that no mkswap binary is needed: version and last page at byte 1024,
 * the magic in the page's last ten bytes.
 */
static int kswap_write_header(int fd, uint64_t file_pages, long ps)
{
	unsigned char *hdr = calloc(1, (size_t)ps);
	uint32_t version = 1, last = (uint32_t)(file_pages - 1);
	ssize_t n;

	if (!hdr)
		return -ENOMEM;
	memcpy(hdr + 1024, &version, 4);
	memcpy(hdr + 1028, &last, 4);
	memcpy(hdr + ps - 10, "SWAPSPACE2", 10);
	n = pwrite(fd, hdr, (size_t)ps, 0);
	free(hdr);
	if (n != ps)
		return n < 0 ? -errno : -EIO;
	return fsync(fd) ? -errno : 0;
}

/* Fill the file with real blocks: swapon refuses files with holes, and
 * unwritten extents are accepted by ext4 and xfs but not everywhere.  With
 * @written every block is written (zeros) and synced, fallocate or not:
 * a swap file in use for a while has its blocks written, and on a disk
 * whose host allocates on first write that is what the kernel's writes
 * then meet. */
static int kswap_fill_file(int fd, uint64_t len, bool written)
{
	static const size_t chunk = 1 << 20;
	char *zero;
	uint64_t off;
	int err = 0;

	if (!fallocate(fd, 0, 0, (off_t)len) && !written)
		return 0;
	zero = calloc(1, chunk);
	if (!zero)
		return -ENOMEM;
	for (off = 0; off < len && !err; off += chunk)
		if (pwrite(fd, zero, chunk, (off_t)off) != (ssize_t)chunk)
			err = errno ? -errno : -EIO;
	free(zero);
	if (!err && written && fdatasync(fd))
		err = -errno;
	/* The zeros leave the page cache: the pages paged out next must not
	 * compete with a file's worth of clean cache. */
	if (!err && written)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return err;
}

/*
 * Page @len bytes at @addr out and wait until the kernel has written them
 * back: VmSwap counts the pages unmapped to swap entries, Writeback the
 * bytes still on their way to the disk.  MADV_PAGEOUT may skip pages that
 * sit in per-CPU LRU batches, hence the retries.
 */
static int kswap_page_out(void *addr, size_t len, const sigset_t *stop, double *secs)
{
	long long want_kb = (long long)(len / 1024), swap_kb = 0, wb;
	double t0 = bench_now();
	int tries;

	for (tries = 0; tries < 20; tries++) {
		if (madvise(addr, len, MADV_PAGEOUT))
			return -errno;
		swap_kb = kswap_proc_kb("/proc/self/status", "VmSwap");
		if (swap_kb >= want_kb - want_kb / 100)
			break;
		if (kswap_interrupted(stop))
			return -EINTR;
	}
	for (;;) {
		wb = kswap_proc_kb("/proc/meminfo", "Writeback");
		if (wb >= 0 && wb < 1024)
			break;
		if (kswap_interrupted(stop))
			return -EINTR;
		if (bench_now() - t0 > 300)
			return -ETIMEDOUT;
		usleep(500);
	}
	*secs = bench_now() - t0;
	return swap_kb >= want_kb * 9 / 10 ? 0 : -EAGAIN;
}

/*
 * Written-back pages stay in the swap cache, unmapped, until memory is
 * short, and a refault of such a page is a minor fault (about 1 us here),
 * not a read from the swap file.  To make the next refault real: map every
 * page again (minor faults), then page them out once more; they are clean
 * now and their swap copy is valid, so reclaim frees them at once with no
 * I/O.  This needs the swap device less than half full (vm_swap_full()
 * would otherwise drop the swap copy on the refault and dirty the page),
 * which kswap_run() sizes the file for.
 */
static int kswap_evict(char *mem, size_t len, const sigset_t *stop)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint64_t sink = 0;
	double secs;
	size_t off;

	for (off = 0; off < len; off += (size_t)ps)
		sink += *(volatile uint64_t *)(mem + off);
	__asm__ volatile("" ::"r"(sink));
	return kswap_page_out(mem, len, stop, &secs);
}

/* Expected first word of page @i: the bytes were copied from @src cycled. */
static uint64_t kswap_expect(const struct kswap_opts *o, uint64_t i, long ps)
{
	uint64_t w;

	memcpy(&w, (const char *)o->src + (i * (uint64_t)ps) % o->src_len, sizeof(w));
	return w;
}

#define KSWAP_THREADS 8u

struct kswap_toucher {
	char *mem;
	const uint32_t *pages;
	uint64_t n;
	long ps;
	atomic_bool *go;
	pthread_t t;
};

static void *kswap_toucher_main(void *arg)
{
	struct kswap_toucher *k = arg;
	uint64_t sink = 0;

	while (!atomic_load(k->go))
		;
	for (uint64_t i = 0; i < k->n; i++)
		sink += *(volatile uint64_t *)(k->mem + (uint64_t)k->pages[i] * (uint64_t)k->ps);
	__asm__ volatile("" ::"r"(sink));
	return NULL;
}

/* Pages per second of @threads threads refaulting @n pages of @order
 * (distinct, evicted), each its own share. */
static double kswap_fault_rate(char *mem, const uint32_t *order, uint64_t n, unsigned threads,
			       long ps)
{
	struct kswap_toucher k[KSWAP_THREADS];
	atomic_bool go;
	uint64_t each = n / threads, t0;
	unsigned i, started = 0;

	atomic_init(&go, false);
	for (i = 0; i < threads; i++) {
		k[i] = (struct kswap_toucher){mem, order + i * each, each, ps, &go, 0};
		if (pthread_create(&k[i].t, NULL, kswap_toucher_main, &k[i]) != 0)
			break;
		started++;
	}
	t0 = bench_now_ns();
	atomic_store(&go, true);
	for (i = 0; i < started; i++)
		pthread_join(k[i].t, NULL);
	if (!started)
		return NAN;
	return (double)(each * started) / ((double)(bench_now_ns() - t0) / 1e9);
}

static int kswap_measure(const struct kswap_opts *o, char *mem, struct kswap_result *r, long ps)
{
	uint64_t npages = o->size / (uint64_t)ps, nrand = o->rand_pages, i, off;
	uint64_t seed = 0x5eed;
	uint32_t *order = NULL;
	double *lat = NULL, secs, t0;
	int err;

	for (off = 0; off < o->size; off += o->src_len)
		memcpy(mem + off, (const char *)o->src,
		       o->size - off < o->src_len ? o->size - off : o->src_len);

	err = kswap_page_out(mem, o->size, o->stop, &secs);
	if (err)
		return err;
	r->out_gbps = bench_gbps(o->size, secs);
	err = kswap_evict(mem, o->size, o->stop);
	if (err)
		return err;

	/* Sequential refault: one read per page, checked against the source. */
	t0 = bench_now();
	for (i = 0; i < npages; i++) {
		uint64_t w = *(volatile uint64_t *)(mem + i * (uint64_t)ps);

		r->bad_pages += w != kswap_expect(o, i, ps);
		if ((i & 4095) == 4095 && kswap_interrupted(o->stop))
			return -EINTR;
	}
	secs = bench_now() - t0;
	r->seq_gbps = bench_gbps(o->size, secs);
	r->seq_fault_us = secs * 1e6 / (double)npages;

	/* Random refault of distinct pages: a partial Fisher-Yates shuffle. */
	err = kswap_evict(mem, o->size, o->stop);
	if (err)
		return err;
	if (nrand > npages)
		nrand = npages;
	order = malloc(npages * sizeof(*order));
	lat = malloc(nrand * sizeof(*lat));
	if (!order || !lat) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < npages; i++)
		order[i] = (uint32_t)i;
	for (i = 0; i < nrand; i++) {
		uint64_t j = i + bench_rand(&seed) % (npages - i);
		uint32_t t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	t0 = bench_now();
	for (i = 0; i < nrand; i++) {
		uint64_t a = bench_now_ns(), w;

		w = *(volatile uint64_t *)(mem + (uint64_t)order[i] * (uint64_t)ps);
		lat[i] = (double)(bench_now_ns() - a) / 1e3;
		r->bad_pages += w != kswap_expect(o, order[i], ps);
		if ((i & 1023) == 1023 && kswap_interrupted(o->stop)) {
			err = -EINTR;
			goto out;
		}
	}
	secs = bench_now() - t0;
	r->rand_gbps = bench_gbps(nrand * (uint64_t)ps, secs);
	r->rand_p50_us = bench_quantile(lat, nrand, 0.50);
	r->rand_p99_us = bench_quantile(lat, nrand, 0.99);

	/* Like for like with fault_concurrency_*t_rand: the same number of
	 * random pages, refaulted cold by 1 thread, then by 8 on disjoint
	 * pages, each after a fresh eviction. */
	{
		uint64_t m = nrand / 2; /* both shares from the shuffled part */

		m -= m % KSWAP_THREADS;
		if ((err = kswap_evict(mem, o->size, o->stop)))
			goto out;
		r->rand1_pages_s = kswap_fault_rate(mem, order, m, 1, ps);
		if ((err = kswap_evict(mem, o->size, o->stop)))
			goto out;
		r->rand8_pages_s = kswap_fault_rate(mem, order + m, m, KSWAP_THREADS, ps);
	}
out:
	free(order);
	free(lat);
	return err;
}

/* A swap file of @file_bytes at @path (fresh blocks, or with @written
 * blocks written before), swapped on at the highest priority, and @size
 * bytes of anonymous memory to page out to it.  kswap_off() undoes it. */
static int kswap_on(const struct kswap_opts *o, const char *path, uint64_t file_bytes, bool written,
		    bool *swapped_on, char **mem)
{
	long ps = sysconf(_SC_PAGESIZE);
	int fd, err;

	*swapped_on = false;
	*mem = MAP_FAILED;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	err = kswap_fill_file(fd, file_bytes, written);
	if (!err)
		err = kswap_write_header(fd, file_bytes / (uint64_t)ps, ps);
	close(fd);
	if (err)
		return err;
	/* Highest priority so these pages go to our file, not another device. */
	if (swapon(path, SWAP_FLAG_PREFER | (32767 & SWAP_FLAG_PRIO_MASK)))
		return -errno;
	*swapped_on = true;
	*mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*mem == MAP_FAILED)
		return -errno;
	/* 4 KiB pages, like a guest's memory the kernel would swap page by page. */
	madvise(*mem, o->size, MADV_NOHUGEPAGE);
	return 0;
}

static int kswap_off(const struct kswap_opts *o, const char *path, bool swapped_on, char *mem,
		     int err)
{
	/* munmap first: it frees the swap entries, so swapoff reads nothing. */
	if (mem != MAP_FAILED)
		munmap(mem, o->size);
	if (swapped_on && swapoff(path)) {
		fprintf(stderr, "vswap-bench: swapoff %s: %s (run swapoff by hand)\n", path,
			strerror(errno));
		if (!err)
			err = -EBUSY;
	} else if (unlink(path) && errno != ENOENT) {
		fprintf(stderr, "vswap-bench: unlink %s: %s\n", path, strerror(errno));
	}
	return err;
}

int kswap_run(const struct kswap_opts *o, struct kswap_result *r)
{
	long ps = sysconf(_SC_PAGESIZE);
	/* Under half full after the swap-out: see kswap_evict(). */
	uint64_t file_bytes = o->size * 5 / 2 + 16 * BENCH_MIB;
	char path[4096];
	char *mem;
	bool swapped_on;
	int err;

	memset(r, 0, sizeof(*r));
	if (geteuid() != 0)
		return -EPERM;
	snprintf(path, sizeof(path), "%s/vswap-bench-swapfile.%d", o->dir, (int)getpid());
	err = kswap_on(o, path, file_bytes, false, &swapped_on, &mem);
	if (!err)
		err = kswap_measure(o, mem, r, ps);
	return kswap_off(o, path, swapped_on, mem, err);
}

int kswap_out_written(const struct kswap_opts *o, double *gbps)
{
	/* Room for every page and the header: each page lands on a block
	 * written before. */
	uint64_t file_bytes = o->size * 5 / 4 + 16 * BENCH_MIB;
	char path[4096];
	char *mem;
	bool swapped_on;
	double secs = 0;
	int err;

	*gbps = NAN;
	if (geteuid() != 0)
		return -EPERM;
	snprintf(path, sizeof(path), "%s/vswap-bench-swapfile.%d", o->dir, (int)getpid());
	err = kswap_on(o, path, file_bytes, true, &swapped_on, &mem);
	if (!err) {
		for (uint64_t off = 0; off < o->size; off += o->src_len)
			memcpy(mem + off, (const char *)o->src,
			       o->size - off < o->src_len ? o->size - off : o->src_len);
		err = kswap_page_out(mem, o->size, o->stop, &secs);
	}
	if (!err)
		*gbps = bench_gbps(o->size, secs);
	return kswap_off(o, path, swapped_on, mem, err);
}
