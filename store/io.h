/* SPDX-License-Identifier: MIT */
/*
 * The library's I/O engine: file reads and writes through io_uring, several
 * requests in flight, short transfers continued, with a plain pread/pwrite
 * fallback when the kernel refuses io_uring (disabled by sysctl, seccomp).
 * A batch of known requests (vswap_io_run()), a stream of requests made as
 * buffers come free (vswap_io_stream()), and requests submitted now and
 * reaped later by a caller with an event loop of its own
 * (vswap_io_submit() / vswap_io_reap()) share one request type and one way
 * of finishing a request.
 */
#ifndef VSWAP_STORE_IO_H
#define VSWAP_STORE_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct vswap_io_req;

struct vswap_io {
	struct io_uring ring;
	bool have_ring;
	unsigned depth;
	/* vswap_io_submit() / vswap_io_reap() */
	unsigned inflight;			    /* on the ring */
	struct vswap_io_req *sync_head, *sync_tail; /* done without a ring, not reaped */
	int efd;				    /* vswap_io_eventfd(), when @have_efd */
	bool have_efd;
};

/*
 * One request: @len bytes at file offset @off from/to @buf, or, when @iov is
 * set, to/from its @iovcnt buffers (vectored: @buf unused, @len their total).
 * When it is complete, @res holds the bytes transferred (< len: end of file
 * for reads) or a negative errno, and @done the bytes transferred in either
 * case (a read that fails after a short transfer still delivered those
 * bytes).  A vectored request's iovec array is the engine's while the
 * request runs: a short transfer is continued by advancing @iov and the
 * entries in place.
 */
struct vswap_io_req {
	void *buf;
	uint64_t off;
	uint32_t len;
	int32_t res;
	uint32_t done;
	struct iovec *iov;
	unsigned iovcnt;
	/* vswap_io_submit() only: the file, the direction, and the caller's
	 * tag (never touched by the engine). */
	int fd;
	bool write;
	uint64_t tag;
	struct vswap_io_req *next_; /* the engine's */
};

/* A ring of @depth entries.  An error is not fatal: the handle then runs
 * every request synchronously (pread/pwrite), and says so by -errno. */
int vswap_io_init(struct vswap_io *io, unsigned depth);
/* An engine without a ring (the callers' VSWAP_IO=sync). */
void vswap_io_init_sync(struct vswap_io *io, unsigned depth);
/* Nothing may be in flight (reap every submitted request first). */
void vswap_io_fini(struct vswap_io *io);

/*
 * Run @n requests on @fd, at most the ring's depth in flight.  Short writes
 * are continued until done or an error; short reads stop at end of file.
 * Returns 0 when every request was issued (check each @res), or a negative
 * errno if the ring itself failed.
 */
int vswap_io_run(struct vswap_io *io, int fd, bool write, struct vswap_io_req *reqs, unsigned n);

/* As vswap_io_run(), calling @overlap(@arg) once while the first requests
 * are in flight (the write path hashes pages meanwhile). */
int vswap_io_run_overlap(struct vswap_io *io, int fd, bool write, struct vswap_io_req *reqs,
			 unsigned n, void (*overlap)(void *), void *arg);

/*
 * A stream of requests whose number or buffers are not known up front (a
 * verifier reading run after run into a few buffers): the engine asks
 * @next(@ctx) for requests while fewer than the ring's depth are in flight
 * (NULL: none to issue now), hands each request to @done(@ctx, req) once it
 * is complete (@res as for vswap_io_run(): whole, short at end of file, or a
 * negative errno), and calls @overlap(@ctx), if set, once while the first
 * requests are in flight.  @done may give the request and its buffer back
 * to @next: the engine keeps no reference to a request after @done.  The
 * stream ends when @next returns NULL with nothing in flight.  Without a
 * ring the requests run one at a time with pread/pwrite.
 */
struct vswap_io_stream {
	struct vswap_io_req *(*next)(void *ctx);
	void (*done)(void *ctx, struct vswap_io_req *req);
	void (*overlap)(void *ctx);
	void *ctx;
};

/* Returns 0, or a negative errno if the ring failed: the requests in
 * flight are waited for (their buffers are free again) but not reported
 * to @done. */
int vswap_io_stream(struct vswap_io *io, int fd, bool write, const struct vswap_io_stream *st);

/*
 * Requests submitted now and reaped later, for a caller with an event loop of
 * its own (the fault path's monitor, the swap-out job).  Each request names
 * its file (@fd), direction (@write), buffer or iovec, and carries the
 * caller's @tag; it belongs to the engine from vswap_io_submit() until
 * vswap_io_reap() hands it back complete (continued through short transfers,
 * EAGAIN and EINTR as in a batch), in any order.
 *
 * vswap_io_submit() queues @n requests (an array) and submits them without
 * waiting.  Returns how many were taken, from the first on: fewer than @n
 * when the ring holds its depth in flight (reap, then submit the rest); or a
 * negative errno when the kernel refused the submission (the requests taken
 * stay in flight: a later reap submits them again).  Without a ring each
 * request runs at once and is handed back by the next reap.
 */
int vswap_io_submit(struct vswap_io *io, struct vswap_io_req *reqs, unsigned n);

/* vswap_io_submit() in two steps: queue requests (as many as it takes,
 * returned as by the submit) now, enter the kernel once for all of them at
 * vswap_io_flush() (0 or -errno) or at the next reap.  A caller that
 * gathers several requests (faults read from a uffd together) saves a
 * system call per request, and the block layer sees them together (one
 * device notification, not one each). */
int vswap_io_queue(struct vswap_io *io, struct vswap_io_req *reqs, unsigned n);
int vswap_io_flush(struct vswap_io *io);

/*
 * Up to @max complete requests into @out, without waiting, or with @wait at
 * least one if any is in flight.  Returns how many (0: none complete, or
 * nothing in flight), or a negative errno if the ring failed.
 */
int vswap_io_reap(struct vswap_io *io, struct vswap_io_req **out, unsigned max, bool wait);

/* Some submitted request is complete: vswap_io_reap() would not wait (no
 * system call: a request that completed inside vswap_io_submit(), say a
 * read the page cache held, is served at once). */
bool vswap_io_ready(const struct vswap_io *io);

/* Submitted requests not yet handed back by vswap_io_reap(). */
unsigned vswap_io_pending(const struct vswap_io *io);

/*
 * An eventfd that becomes readable when a submitted request completes (for
 * an epoll loop; vswap_io_reap() reads it), created on the first call and
 * closed by vswap_io_fini().  The fd, or -errno.
 */
int vswap_io_eventfd(struct vswap_io *io);

#endif
