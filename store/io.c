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

static int run_sync(int fd, bool write, struct vswap_io_req *reqs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct vswap_io_req *r = &reqs[i];
		uint32_t done = 0;
		while (done < r->len) {
			ssize_t k =
			    write ? pwrite(fd, (char *)r->buf + done, r->len - done, r->off + done)
				  : pread(fd, (char *)r->buf + done, r->len - done, r->off + done);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				r->res = -errno;
				goto next;
			}
			if (k == 0)
				break; /* end of file (reads); no progress (writes) */
			done += (uint32_t)k;
		}
		r->res = (int32_t)done;
		if (write && done < r->len)
			r->res = -EIO;
	next:;
	}
	return 0;
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

static void prep(struct vswap_io *io, int fd, bool write, struct vswap_io_req *r, unsigned idx,
		 uint32_t done)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
	if (write)
		io_uring_prep_write(sqe, fd, (char *)r->buf + done, r->len - done, r->off + done);
	else
		io_uring_prep_read(sqe, fd, (char *)r->buf + done, r->len - done, r->off + done);
	io_uring_sqe_set_data64(sqe, idx);
}

int vswap_io_run(struct vswap_io *io, int fd, bool write, struct vswap_io_req *reqs, unsigned n)
{
	return vswap_io_run_overlap(io, fd, write, reqs, n, NULL, NULL);
}

int vswap_io_run_overlap(struct vswap_io *io, int fd, bool write, struct vswap_io_req *reqs,
			 unsigned n, void (*overlap)(void *), void *arg)
{
	if (!io->have_ring) {
		if (overlap)
			overlap(arg);
		return run_sync(fd, write, reqs, n);
	}

	unsigned next = 0, inflight = 0;
	for (unsigned i = 0; i < n; i++)
		reqs[i].res = 0;
	while (next < n || inflight > 0) {
		while (next < n && inflight < io->depth) {
			prep(io, fd, write, &reqs[next], next, 0);
			next++;
			inflight++;
		}
		int ret;
		if (overlap) {
			ret = io_uring_submit(&io->ring);
			overlap(arg);
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
			struct vswap_io_req *r = &reqs[cqe->user_data];
			int res = cqe->res;
			seen++;
			inflight--;
			if (res == -EAGAIN || res == -EINTR) {
				prep(io, fd, write, r, (unsigned)cqe->user_data, (uint32_t)r->res);
				inflight++;
				continue;
			}
			int32_t done = res < 0 ? res : r->res + res; /* bytes so far */
			r->res = done;
			if (done >= 0 && res > 0 && (uint32_t)done < r->len) {
				/* Short: continue it.  A full disk reports ENOSPC on
				 * the next attempt; a read at end of file returns 0. */
				prep(io, fd, write, r, (unsigned)cqe->user_data, (uint32_t)done);
				inflight++;
			} else if (done >= 0 && write && res == 0 && (uint32_t)done < r->len) {
				r->res = -EIO;
			}
		}
		io_uring_cq_advance(&io->ring, seen);
	}
	return 0;
}
