/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "store/io.h"

int vswap_io_init(struct vswap_io *io, unsigned depth)
{
	memset(io, 0, sizeof(*io));
	io->depth = depth;
	int ret = io_uring_queue_init(depth, &io->ring, 0);
	io->have_ring = ret == 0;
	/* Not fatal: the fallback path does the same work synchronously. */
	return ret;
}

void vswap_io_fini(struct vswap_io *io)
{
	if (io->have_ring)
		io_uring_queue_exit(&io->ring);
	io->have_ring = false;
}

/* One request with pread/pwrite: continued until done, end of file (reads)
 * or an error. */
static void run_one_sync(int fd, bool write, struct vswap_io_req *r)
{
	uint32_t done = 0;
	r->done = 0;
	while (done < r->len) {
		ssize_t k = write ? pwrite(fd, (char *)r->buf + done, r->len - done, r->off + done)
				  : pread(fd, (char *)r->buf + done, r->len - done, r->off + done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r->res = -errno;
			return;
		}
		if (k == 0)
			break; /* end of file (reads); no progress (writes) */
		done += (uint32_t)k;
		r->done = done;
	}
	r->res = (int32_t)done;
	if (write && done < r->len)
		r->res = -EIO;
}

/*
 * The ring failed with requests in flight: wait for all of them before the
 * caller frees or verifies their buffers.
 */
static int drain(struct vswap_io *io, unsigned inflight, int err)
{
	while (inflight > 0) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe(&io->ring, &cqe);
		if (ret == -EINTR || ret == -EAGAIN)
			continue;
		if (ret < 0)
			break; /* the ring is unusable: nothing more will complete */
		io_uring_cqe_seen(&io->ring, cqe);
		inflight--;
	}
	return err;
}

/* Queue the rest of @r, from byte @done on.  The submission queue has room:
 * no more than the ring's depth are ever in flight, and every completion
 * that queues again was taken off it. */
static void prep(struct vswap_io *io, int fd, bool write, struct vswap_io_req *r, uint32_t done)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
	if (write)
		io_uring_prep_write(sqe, fd, (char *)r->buf + done, r->len - done, r->off + done);
	else
		io_uring_prep_read(sqe, fd, (char *)r->buf + done, r->len - done, r->off + done);
	io_uring_sqe_set_data(sqe, r);
}

/* A completion of @r: true when @r is complete (r->res final), false when
 * the rest of it was queued again. */
static bool complete(struct vswap_io *io, int fd, bool write, struct vswap_io_req *r, int res)
{
	if (res == -EAGAIN || res == -EINTR) {
		prep(io, fd, write, r, r->done);
		return false;
	}
	if (res < 0) {
		r->res = res;
		return true;
	}
	r->done += (uint32_t)res;
	if (res > 0 && r->done < r->len) {
		/* Short: continue it.  A full disk reports ENOSPC on the next
		 * attempt; a read at end of file returns 0. */
		prep(io, fd, write, r, r->done);
		return false;
	}
	r->res = write && r->done < r->len ? -EIO : (int32_t)r->done;
	return true;
}

int vswap_io_stream(struct vswap_io *io, int fd, bool write, const struct vswap_io_stream *st)
{
	void (*overlap)(void *) = st->overlap;
	struct vswap_io_req *r;

	if (!io->have_ring) {
		if (overlap)
			overlap(st->ctx);
		while ((r = st->next(st->ctx))) {
			run_one_sync(fd, write, r);
			st->done(st->ctx, r);
		}
		return 0;
	}
	unsigned inflight = 0;
	for (;;) {
		while (inflight < io->depth && (r = st->next(st->ctx))) {
			r->res = 0;
			r->done = 0;
			prep(io, fd, write, r, 0);
			inflight++;
		}
		if (!inflight)
			return 0;
		int ret;
		if (overlap) {
			ret = io_uring_submit(&io->ring);
			overlap(st->ctx);
			overlap = NULL;
			if (ret >= 0)
				ret = io_uring_submit_and_wait(&io->ring, 1);
		} else {
			ret = io_uring_submit_and_wait(&io->ring, 1);
		}
		if (ret < 0 && ret != -EINTR)
			return drain(io, inflight, ret);
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&io->ring, head, cqe)
		{
			seen++;
			r = io_uring_cqe_get_data(cqe);
			if (complete(io, fd, write, r, cqe->res)) {
				inflight--;
				st->done(st->ctx, r);
			}
		}
		io_uring_cq_advance(&io->ring, seen);
	}
}

/* A batch is a stream over an array. */
struct batch {
	struct vswap_io_req *reqs;
	unsigned n, next;
	void (*overlap)(void *);
	void *arg;
};

static struct vswap_io_req *batch_next(void *ctx)
{
	struct batch *b = ctx;
	return b->next < b->n ? &b->reqs[b->next++] : NULL;
}

static void batch_done(void *ctx, struct vswap_io_req *r)
{
	(void)ctx;
	(void)r;
}

static void batch_overlap(void *ctx)
{
	struct batch *b = ctx;
	b->overlap(b->arg);
}

int vswap_io_run(struct vswap_io *io, int fd, bool write, struct vswap_io_req *reqs, unsigned n)
{
	return vswap_io_run_overlap(io, fd, write, reqs, n, NULL, NULL);
}

int vswap_io_run_overlap(struct vswap_io *io, int fd, bool write, struct vswap_io_req *reqs,
			 unsigned n, void (*overlap)(void *), void *arg)
{
	struct batch b = {.reqs = reqs, .n = n, .overlap = overlap, .arg = arg};
	for (unsigned i = 0; i < n; i++)
		reqs[i].res = 0;
	struct vswap_io_stream st = {
	    .next = batch_next,
	    .done = batch_done,
	    .overlap = overlap ? batch_overlap : NULL,
	    .ctx = &b,
	};
	return vswap_io_stream(io, fd, write, &st);
}
