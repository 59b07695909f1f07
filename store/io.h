/* SPDX-License-Identifier: MIT */
/*
 * Batched file I/O through io_uring, several requests in flight, with a
 * plain pread/pwrite fallback when the kernel refuses io_uring (disabled by
 * sysctl, seccomp).
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
 * a negative errno. */
struct vswap_io_req {
	void *buf;
	uint64_t off;
	uint32_t len;
	int32_t res;
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

#endif
