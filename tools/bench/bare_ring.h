/* SPDX-License-Identifier: MIT */
/*
 * The ceiling of vswap-bench's fault_concurrency rows: a bare userfaultfd
 * server doing only the kernel's part of a fault from the swap file (see
 * bare_ring.c).
 */
#ifndef VSWAP_TOOLS_BENCH_BARE_RING_H
#define VSWAP_TOOLS_BENCH_BARE_RING_H

#include <stddef.h>
#include <stdint.h>

/* Pages per second that @faulters threads get touching @n pages of a fresh
 * shmem mapping of @pages pages (thread i the i-th slice of @order), each
 * fault served by a bare server of @servers threads sharing one uffd: an
 * O_DIRECT read of @ps bytes of @path at @page_off[page] on the thread's
 * io_uring, then UFFDIO_COPY.  0 and *rate, or -errno. */
int bare_ring_rate(const char *path, size_t pages, size_t ps, const uint64_t *page_off,
		   const uint64_t *order, size_t n, unsigned faulters, unsigned servers,
		   double *rate);

#endif
