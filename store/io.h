/* SPDX-License-Identifier: MIT */
/*
 * The library's I/O engine: file reads and writes through io_uring, several
 * requests in flight, short transfers continued, with a plain pread/pwrite
 * fallback when the kernel refuses io_uring (disabled by sysctl, seccomp).
 * A batch of known requests (vswap_io_run()) and a stream of requests made
 * as buffers come free (vswap_io_stream()) share one loop.
 */
#ifndef VSWAP_STORE_IO_H
#define VSWAP_STORE_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct vswap_io {
	struct io_uring ring;
	bool have_ring;
	unsigned depth;
};

/* One request: @len bytes at file offset @off from/to @buf.  After the
 * batch, @res holds the bytes transferred (< len: end of file for reads) or
 * a negative errno, and @done the bytes transferred in either case (a read
 * that fails after a short transfer still delivered those bytes). */
struct vswap_io_req {
	void *buf;
	uint64_t off;
	uint32_t len;
	int32_t res;
	uint32_t done;
};

int vswap_io_init(struct vswap_io *io, unsigned depth);
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

#endif
