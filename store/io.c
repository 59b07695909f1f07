/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "store/io.h"

#if defined(__SANITIZE_THREAD__)
#define VSWAP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VSWAP_TSAN 1
#endif
#endif

#ifdef VSWAP_TSAN
#include <sanitizer/tsan_interface.h>
/*
 * liburing maps a ring's memory with raw system calls, which ThreadSanitizer
 * does not see.  A ring unmapped by one thread and mapped again at the same
 * address by another (two handlers in one process, each job thread with its
 * ring) looked to it like one ring written by two threads unsynchronised.
 * The kernel orders the unmap before the map: said here as a release of
 * each mapping's address at the exit and an acquire at the init.
 */
static void ring_addrs(struct io_uring *r, void *a[3])
{
	a[0] = r->sq.sqes;
	a[1] = r->sq.ring_ptr;
	a[2] = r->cq.ring_ptr;
}
static void ring_mapped(struct io_uring *r)
{
	void *a[3];
	ring_addrs(r, a);
	for (int i = 0; i < 3; i++)
		__tsan_acquire(a[i]);
}
static void ring_unmapping(struct io_uring *r)
{
	void *a[3];
	ring_addrs(r, a);
	for (int i = 0; i < 3; i++)
		__tsan_release(a[i]);
}
#else
static void ring_mapped(struct io_uring *r)
{
	(void)r;
}
static void ring_unmapping(struct io_uring *r)
{
	(void)r;
}
#endif

int vswap_io_init(struct vswap_io *io, unsigned depth)
{
	memset(io, 0, sizeof(*io));
	io->depth = depth;
	int ret = io_uring_queue_init(depth, &io->ring, 0);
	io->have_ring = ret == 0;
	if (io->have_ring)
		ring_mapped(&io->ring);
	/* Not fatal: the fallback path does the same work synchronously. */
	return ret;
}

void vswap_io_init_sync(struct vswap_io *io, unsigned depth)
{
	memset(io, 0, sizeof(*io));
	io->depth = depth;
}

void vswap_io_fini(struct vswap_io *io)
{
	if (io->have_ring) {
		ring_unmapping(&io->ring);
		io_uring_queue_exit(&io->ring);
	}
	io->have_ring = false;
	if (io->have_efd)
		close(io->efd);
	io->have_efd = false;
}

/* A vectored request moves on past @n bytes transferred: the entries done
 * are skipped, the one cut short starts where the transfer stopped. */
static void iov_advance(struct vswap_io_req *r, uint32_t n)
{
	while (n && r->iovcnt) {
		if (n < r->iov->iov_len) {
			r->iov->iov_base = (char *)r->iov->iov_base + n;
			r->iov->iov_len -= n;
			return;
		}
		n -= (uint32_t)r->iov->iov_len;
		r->iov++;
		r->iovcnt--;
	}
}

static ssize_t transfer_sync(int fd, bool write, struct vswap_io_req *r, uint32_t done)
{
	off_t at = (off_t)(r->off + done);
	if (r->iov)
		return write ? pwritev(fd, r->iov, (int)r->iovcnt, at)
			     : preadv(fd, r->iov, (int)r->iovcnt, at);
	return write ? pwrite(fd, (char *)r->buf + done, r->len - done, at)
		     : pread(fd, (char *)r->buf + done, r->len - done, at);
}

/* One request with pread/pwrite (preadv/pwritev): continued until done,
 * end of file (reads) or an error. */
static void run_one_sync(int fd, bool write, struct vswap_io_req *r)
{
	uint32_t done = 0;
	r->done = 0;
	while (done < r->len) {
		ssize_t k = transfer_sync(fd, write, r, done);
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
		if (r->iov)
			iov_advance(r, (uint32_t)k);
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
	uint64_t at = r->off + done;
	if (r->iov && write)
		io_uring_prep_writev(sqe, fd, r->iov, r->iovcnt, at);
	else if (r->iov)
		io_uring_prep_readv(sqe, fd, r->iov, r->iovcnt, at);
	else if (write)
		io_uring_prep_write(sqe, fd, (char *)r->buf + done, r->len - done, at);
	else
		io_uring_prep_read(sqe, fd, (char *)r->buf + done, r->len - done, at);
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
	if (r->iov)
		iov_advance(r, (uint32_t)res);
	if (res > 0 && r->done < r->len) {
		/* Short: continue it.  A full disk reports ENOSPC on the next
		 * attempt; a read at end of file returns 0. */
		prep(io, fd, write, r, r->done);
		return false;
	}
	r->res = write && r->done < r->len ? -EIO : (int32_t)r->done;
	return true;
}

static uint32_t iov_total(const struct iovec *iov, unsigned n)
{
	uint64_t t = 0;
	for (unsigned i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

static void start(struct vswap_io_req *r)
{
	r->res = 0;
	r->done = 0;
	if (r->iov)
		r->len = iov_total(r->iov, r->iovcnt);
}

int vswap_io_stream(struct vswap_io *io, int fd, bool write, const struct vswap_io_stream *st)
{
	void (*overlap)(void *) = st->overlap;
	struct vswap_io_req *r;

	if (!io->have_ring) {
		if (overlap)
			overlap(st->ctx);
		while ((r = st->next(st->ctx))) {
			start(r);
			run_one_sync(fd, write, r);
			st->done(st->ctx, r);
		}
		return 0;
	}
	unsigned inflight = 0;
	for (;;) {
		while (inflight < io->depth && (r = st->next(st->ctx))) {
			start(r);
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

/* ---- submit now, reap later ----------------------------------------------- */

static void signal_efd(struct vswap_io *io)
{
	uint64_t one = 1;
	if (io->have_efd && write(io->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: it is readable anyway */
	}
}

int vswap_io_queue(struct vswap_io *io, struct vswap_io_req *reqs, unsigned n)
{
	unsigned k = 0;
	if (!io->have_ring) {
		for (; k < n; k++) {
			struct vswap_io_req *r = &reqs[k];
			start(r);
			run_one_sync(r->fd, r->write, r);
			r->next_ = NULL;
			if (io->sync_tail)
				io->sync_tail->next_ = r;
			else
				io->sync_head = r;
			io->sync_tail = r;
		}
		if (k)
			signal_efd(io);
		return (int)k;
	}
	/* No more than the depth in flight: every completion that is
	 * continued finds a free entry. */
	for (; k < n && io->inflight < io->depth; k++) {
		struct vswap_io_req *r = &reqs[k];
		start(r);
		prep(io, r->fd, r->write, r, 0);
		io->inflight++;
	}
	return (int)k;
}

int vswap_io_flush(struct vswap_io *io)
{
	if (!io->have_ring || !io_uring_sq_ready(&io->ring))
		return 0;
	int ret;
	do
		ret = io_uring_submit(&io->ring);
	while (ret == -EINTR);
	/* EAGAIN/EBUSY: the kernel is short of resources now; the entries
	 * stay queued and the next flush or reap submits them. */
	return ret < 0 && ret != -EAGAIN && ret != -EBUSY ? ret : 0;
}

int vswap_io_submit(struct vswap_io *io, struct vswap_io_req *reqs, unsigned n)
{
	int k = vswap_io_queue(io, reqs, n);
	int ret = k > 0 ? vswap_io_flush(io) : 0;
	return ret < 0 ? ret : k;
}

int vswap_io_reap(struct vswap_io *io, struct vswap_io_req **out, unsigned max, bool wait)
{
	unsigned n = 0;
	if (io->have_efd) {
		uint64_t v;
		if (read(io->efd, &v, sizeof(v)) < 0) {
			/* not signalled: what is complete says the rest */
		}
	}
	while (n < max && io->sync_head) {
		struct vswap_io_req *r = io->sync_head;
		io->sync_head = r->next_;
		if (!io->sync_head)
			io->sync_tail = NULL;
		out[n++] = r;
	}
	if (!io->have_ring)
		return (int)n;
	for (;;) {
		int ret = 0;
		if (n == 0 && wait && io->inflight)
			ret = io_uring_submit_and_wait(&io->ring, 1);
		else if (io_uring_sq_ready(&io->ring))
			ret = io_uring_submit(&io->ring);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME)
			return n ? (int)n : ret;
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool again = false;
		io_uring_for_each_cqe(&io->ring, head, cqe)
		{
			if (n == max)
				break;
			seen++;
			struct vswap_io_req *r = io_uring_cqe_get_data(cqe);
			if (complete(io, r->fd, r->write, r, cqe->res)) {
				io->inflight--;
				out[n++] = r;
			} else {
				again = true;
			}
		}
		io_uring_cq_advance(&io->ring, seen);
		if (again)
			io_uring_submit(&io->ring);
		if (n || !wait || !io->inflight || n == max)
			return (int)n;
	}
}

bool vswap_io_ready(const struct vswap_io *io)
{
	return io->sync_head || (io->have_ring && io_uring_cq_ready(&io->ring));
}

unsigned vswap_io_pending(const struct vswap_io *io)
{
	unsigned n = io->inflight;
	for (const struct vswap_io_req *r = io->sync_head; r; r = r->next_)
		n++;
	return n;
}

int vswap_io_eventfd(struct vswap_io *io)
{
	if (io->have_efd)
		return io->efd;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (io->have_ring) {
		int ret = io_uring_register_eventfd(&io->ring, fd);
		if (ret < 0) {
			close(fd);
			return ret;
		}
	}
	io->efd = fd;
	io->have_efd = true;
	return fd;
}
