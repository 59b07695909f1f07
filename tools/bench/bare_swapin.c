/* SPDX-License-Identifier: MIT */
/*
 * A bare swap-in: what the kernel must do to bring a swapped-out guest back
 * from the swap file, and nothing of vswap's own (no index, no page state,
 * no lock, no remove events): one thread reads the file in 2 MiB O_DIRECT
 * requests on io_uring and hashes each page read (the check every page
 * served must pass), another copies each read into guest memory with
 * UFFDIO_COPY, in file order, as vswap's swap-in splits the same work.
 * On two CPUs this is the ceiling of vswap's swap-in on the same bytes; its
 * ratio to a plain cold sequential read says how much of that read a swap-in
 * can reach on this machine at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "tools/bench/bare_swapin.h"
#include "tools/bench/common.h"

#define RUN_BYTES ((size_t)2 << 20)
#define MAX_DEPTH 16u

struct bare_in {
	int fd, uffd;
	size_t size, ps;
	unsigned depth;
	uint8_t *bufs, *mem;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t read_upto;   /* runs read and hashed (the copier's from here) */
	size_t copied_upto; /* runs copied (their buffers free again) */
	int err;
	uint64_t sink;
};

/* Reader: keep @depth reads in flight, each into buffer (run % depth) once
 * the copier freed it; hash every page of a completed read; hand the runs
 * over in order. */
static void *reader_main(void *arg)
{
	struct bare_in *b = arg;
	size_t runs = b->size / RUN_BYTES, next = 0, done_upto = 0;
	unsigned inflight = 0;
	bool done[MAX_DEPTH] = {false};
	struct io_uring ring;
	pthread_setname_np(pthread_self(), "bare-swapin-rd");
	int err = io_uring_queue_init(b->depth, &ring, 0);
	bool have_ring = err == 0;
	while (!err && done_upto < runs) {
		pthread_mutex_lock(&b->mu);
		size_t free_upto = b->copied_upto + b->depth;
		err = b->err;
		pthread_mutex_unlock(&b->mu);
		while (!err && next < runs && next < free_upto) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				break;
			io_uring_prep_read(sqe, b->fd, b->bufs + (next % b->depth) * RUN_BYTES,
					   (unsigned)RUN_BYTES, (uint64_t)next * RUN_BYTES);
			io_uring_sqe_set_data64(sqe, next);
			next++;
			inflight++;
		}
		if (err)
			break;
		if (!inflight) { /* every buffer waits for the copier */
			pthread_mutex_lock(&b->mu);
			while (b->copied_upto + b->depth <= next && !b->err)
				pthread_cond_wait(&b->cv, &b->mu);
			pthread_mutex_unlock(&b->mu);
			continue;
		}
		int rc = io_uring_submit_and_wait(&ring, 1);
		if (rc < 0 && rc != -EINTR) {
			err = rc;
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			size_t run = (size_t)io_uring_cqe_get_data64(cqe);
			seen++;
			if (cqe->res != (int)RUN_BYTES) {
				err = cqe->res < 0 ? cqe->res : -EIO;
				continue;
			}
			const uint8_t *p = b->bufs + (run % b->depth) * RUN_BYTES;
			for (size_t off = 0; off < RUN_BYTES; off += b->ps)
				b->sink ^= bench_xxh3(p + off, b->ps);
			done[run % b->depth] = true;
		}
		io_uring_cq_advance(&ring, seen);
		inflight -= seen;
		size_t before = done_upto;
		while (done_upto < next && done[done_upto % b->depth]) {
			done[done_upto % b->depth] = false;
			done_upto++;
		}
		if (done_upto > before) {
			pthread_mutex_lock(&b->mu);
			b->read_upto = done_upto;
			pthread_cond_broadcast(&b->cv);
			pthread_mutex_unlock(&b->mu);
		}
	}
	/* Nothing may still write a buffer when the caller unmaps it. */
	while (have_ring && inflight) {
		struct io_uring_cqe *cqe;
		if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_peek_cqe(&ring, &cqe))
			break;
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
	}
	if (have_ring)
		io_uring_queue_exit(&ring);
	pthread_mutex_lock(&b->mu);
	if (err && !b->err)
		b->err = err;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* Copier (the caller's thread): each run read, in order, into guest memory. */
static int copy_runs(struct bare_in *b)
{
	size_t runs = b->size / RUN_BYTES;
	for (size_t run = 0; run < runs; run++) {
		pthread_mutex_lock(&b->mu);
		while (b->read_upto <= run && !b->err)
			pthread_cond_wait(&b->cv, &b->mu);
		int err = b->err;
		pthread_mutex_unlock(&b->mu);
		if (err)
			return err;
		struct uffdio_copy c = {
		    .dst = (uintptr_t)(b->mem + run * RUN_BYTES),
		    .src = (uintptr_t)(b->bufs + (run % b->depth) * RUN_BYTES),
		    .len = RUN_BYTES,
		    .mode = UFFDIO_COPY_MODE_DONTWAKE,
		};
		if (ioctl(b->uffd, UFFDIO_COPY, &c) && errno != EEXIST)
			err = -errno;
		pthread_mutex_lock(&b->mu);
		b->copied_upto = run + 1;
		if (err && !b->err)
			b->err = err;
		pthread_cond_broadcast(&b->cv);
		pthread_mutex_unlock(&b->mu);
		if (err)
			return err;
	}
	return 0;
}

/* @len bytes at a 2 MiB boundary, advised onto huge pages. */
static uint8_t *huge_map(size_t len)
{
	size_t span = len + RUN_BYTES;
	uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	uint8_t *base = (uint8_t *)(((uintptr_t)m + RUN_BYTES - 1) & ~(uintptr_t)(RUN_BYTES - 1));
	if (base > m)
		munmap(m, (size_t)(base - m));
	if (m + span > base + len)
		munmap(base + len, (size_t)(m + span - (base + len)));
	madvise(base, len, MADV_HUGEPAGE);
	return base;
}

int bare_swap_in(const char *path, size_t size, size_t ps, unsigned depth, double *secs)
{
	struct bare_in b = {.size = size, .ps = ps, .depth = depth, .fd = -1, .uffd = -1};
	int mfd = -1, err = 0;
	pthread_t t;
	if (size % RUN_BYTES || depth < 1 || depth > MAX_DEPTH)
		return -EINVAL;
	b.fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (b.fd < 0)
		return -errno;
	posix_fadvise(b.fd, 0, 0, POSIX_FADV_DONTNEED);
	b.bufs = huge_map(depth * RUN_BYTES);
	mfd = memfd_create("vswap-bench-bare-swapin", MFD_CLOEXEC);
	if (!b.bufs || mfd < 0 || ftruncate(mfd, (off_t)size)) {
		err = -errno;
		goto out;
	}
	b.mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (b.mem == MAP_FAILED) {
		b.mem = NULL;
		err = -errno;
		goto out;
	}
	err = vswap_uffd_create(&b.uffd);
	if (err)
		goto out;
	struct uffdio_register reg = {.range = {(uintptr_t)b.mem, size},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(b.uffd, UFFDIO_REGISTER, &reg)) {
		err = -errno;
		goto out;
	}
	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.cv, NULL);
	double t0 = bench_now();
	if (pthread_create(&t, NULL, reader_main, &b)) {
		err = -EAGAIN;
	} else {
		err = copy_runs(&b);
		if (err) { /* the reader must not wait for a copier gone */
			pthread_mutex_lock(&b.mu);
			if (!b.err)
				b.err = err;
			pthread_cond_broadcast(&b.cv);
			pthread_mutex_unlock(&b.mu);
		}
		pthread_join(t, NULL);
		*secs = bench_now() - t0;
		if (!err)
			err = b.err;
	}
	pthread_cond_destroy(&b.cv);
	pthread_mutex_destroy(&b.mu);
out:
	if (b.uffd >= 0)
		close(b.uffd);
	if (b.mem)
		munmap(b.mem, size);
	if (mfd >= 0)
		close(mfd);
	if (b.bufs)
		munmap(b.bufs, depth * RUN_BYTES);
	close(b.fd);
	return err;
}
