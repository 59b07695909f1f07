/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench group "vswapd": the page handler as its own process against
 * the in-process handler, in the same run, on the same guest bytes.
 *
 *   vswapd_fault_staging_p50_us    a guest access served from staging through
 *                                  vswapd; baseline: the in-process handler's
 *   vswapd_fault_file_cached_p50_us  the same from the swap file (page cache)
 *   vswapd_restart_<size>_p50_ms / _max_ms  a --size guest swapped out, vswapd
 *                                  SIGKILLed and started again: from the new
 *                                  daemon's start to the guest resumed (its
 *                                  client re-attached, store opened, guest
 *                                  reconciled, ranges registered and woken);
 *                                  baseline: that daemon's start to listening
 *   vswapd_kill_to_serving_<size>_p50_ms  from the kill itself, likewise
 */
#ifndef VSWAP_TOOLS_BENCH_VSWAPD_H
#define VSWAP_TOOLS_BENCH_VSWAPD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/bench/results.h"

struct vswapd_bench {
	uint64_t size;	 /* the restarted guest's bytes */
	const char *dir; /* where the stores and the socket go */
	unsigned runs;	 /* fault rounds, medians over them */
	bool quick;	 /* fewer pages and restarts */
	uint32_t page_size;
	const void *src; /* incompressible bytes, cycled */
	size_t src_len;
	const sigset_t *stop; /* pending signals here end the group (-EINTR) */
	bool verbose;
	/* state: the guests opened so far (their stores' names count them) */
	unsigned guests;
};

/* Run the group and add its figures to @res; 0 or a negative errno (0 with
 * nothing added when no vswapd is found). */
int vswapd_bench_run(struct vswapd_bench *b, struct bench_results *res);

#endif
