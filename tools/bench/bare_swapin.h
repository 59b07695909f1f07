/* SPDX-License-Identifier: MIT */
/*
 * The floor of vswap-bench's swap_in_gbps: a bare swap-in doing only the
 * kernel's part of one (see bare_swapin.c).
 */
#ifndef VSWAP_TOOLS_BENCH_BARE_SWAPIN_H
#define VSWAP_TOOLS_BENCH_BARE_SWAPIN_H

#include <stddef.h>

/* Seconds to bring @size bytes of @path (whole 2 MiB, its page cache
 * dropped first) into a fresh registered memfd the way a swap-in must at
 * least: O_DIRECT reads of 2 MiB into huge-page buffers, up to @depth in
 * flight on io_uring, every 4 KiB page hashed on the reading thread, and
 * UFFDIO_COPY of each read on a second thread, in order.  0, or -errno. */
int bare_swap_in(const char *path, size_t size, size_t ps, unsigned depth, double *secs);

#endif
