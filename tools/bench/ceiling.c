/* SPDX-License-Identifier: MIT */
/*
 * The disk's write ceiling: what a program doing nothing but writing the
 * same bytes gets from the disk, so that a swap-out's rate can be read
 * against what the hardware gives rather than against one way of writing.
 *
 * Each shape (a write size and a queue depth) writes the whole size from
 * the caller's memory (a memfd mapping, as guest memory is) with O_DIRECT
 * on io_uring, that many writes in flight, then one fdatasync, timed from
 * the first submission to the sync's return.  It does so twice on one
 * file: into a fresh file (the blocks are allocated as the writes land,
 * which a new store's first swap-out meets), then over the blocks it just
 * wrote (which a store that reuses its file's blocks meets).  On a virtual
 * disk whose host allocates on first write, and on a file system mounted
 * with discard (a freed block goes back to the host), the two differ by up
 * to twice: the kernel's own swap writes the blocks of a file made just
 * before, so it meets the first.
 *
 * The order of the shapes turns by run, so that no shape always follows
 * the same one; each figure is the median over the runs, and the ceiling
 * is the best shape's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/bench/ceiling.h"
#include "tools/bench/common.h"

void write_ceiling_init(struct write_ceiling *wc, const char *dir, const uint8_t *mem,
			uint64_t size, bool quick, bool verbose)
{
	static const uint32_t sizes[] = {256 << 10, 1 << 20, 2 << 20, 4 << 20};
	static const unsigned depths[] = {1, 8, 32};
	*wc = (struct write_ceiling){
	    .dir = dir, .mem = mem, .size = size, .quick = quick, .verbose = verbose};
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (unsigned k = 0; k < sizeof(depths) / sizeof(depths[0]); k++) {
			/* --quick: 1 MiB and 2 MiB writes only */
			if (quick && (sizes[i] < (1u << 20) || sizes[i] > (2u << 20)))
				continue;
			if (sizes[i] > size || size % sizes[i])
				continue;
			wc->shape[wc->nshapes++] =
			    (struct ceiling_shape){.bs = sizes[i], .qd = depths[k]};
		}
}

/* Write @size bytes of @mem at @bs, @qd in flight, then fdatasync. */
static int write_all(int fd, const uint8_t *mem, uint64_t size, uint32_t bs, unsigned qd,
		     double *secs)
{
	struct io_uring ring;
	int rc = io_uring_queue_init(qd, &ring, 0);
	if (rc < 0)
		return rc;
	uint64_t off = 0;
	unsigned inflight = 0;
	double t0 = bench_now();
	while (rc == 0 && (off < size || inflight)) {
		while (off < size && inflight < qd) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				break;
			io_uring_prep_write(sqe, fd, mem + off, bs, off);
			off += bs;
			inflight++;
		}
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait(&ring, 1);
		if (rc < 0)
			break;
		rc = 0;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			/* O_DIRECT on a regular file: whole, or an error */
			if (rc == 0 && cqe->res != (int)bs)
				rc = cqe->res < 0 ? cqe->res : -EIO;
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
		inflight -= seen;
	}
	/* An error stops the submissions; what is in flight lands first. */
	while (inflight) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&ring, &cqe) < 0)
			break;
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
	}
	if (rc == 0 && fdatasync(fd))
		rc = -errno;
	*secs = bench_now() - t0;
	io_uring_queue_exit(&ring);
	return rc;
}

static int shape_pass(struct write_ceiling *wc, struct ceiling_shape *sh)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/vswap-bench.%d.ceiling", wc->dir, (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
	if (fd < 0)
		return -errno;
	double fresh = 0, over = 0;
	int rc = write_all(fd, wc->mem, wc->size, sh->bs, sh->qd, &fresh);
	if (rc == 0)
		rc = write_all(fd, wc->mem, wc->size, sh->bs, sh->qd, &over);
	close(fd);
	unlink(path);
	if (rc == 0) {
		sh->fresh[wc->runs] = bench_gbps(wc->size, fresh);
		sh->overwrite[wc->runs] = bench_gbps(wc->size, over);
		if (wc->verbose)
			fprintf(
			    stderr,
			    "  write ceiling %4u KiB x %2u: fresh %.3f, over written %.3f GB/s\n",
			    sh->bs >> 10, sh->qd, sh->fresh[wc->runs], sh->overwrite[wc->runs]);
	}
	return rc;
}

int write_ceiling_pass(struct write_ceiling *wc)
{
	if (wc->runs >= CEILING_MAX_RUNS)
		return -E2BIG;
	for (unsigned i = 0; i < wc->nshapes; i++) {
		int rc = shape_pass(wc, &wc->shape[(i + wc->runs) % wc->nshapes]);
		if (rc < 0)
			return rc;
	}
	wc->runs++;
	return 0;
}

double write_ceiling_best(struct write_ceiling *wc, bool overwrite, uint32_t *bs, unsigned *qd)
{
	double best = 0;
	for (unsigned i = 0; i < wc->nshapes && wc->runs; i++) {
		struct ceiling_shape *sh = &wc->shape[i];
		double v[CEILING_MAX_RUNS];
		memcpy(v, overwrite ? sh->overwrite : sh->fresh, wc->runs * sizeof(v[0]));
		double m = bench_median(v, wc->runs);
		if (m > best) {
			best = m;
			if (bs)
				*bs = sh->bs;
			if (qd)
				*qd = sh->qd;
		}
	}
	return best;
}
