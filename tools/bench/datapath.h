/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench group "datapath": the fault path at the disk's limits, each
 * figure beside its baselines measured in the same run (see datapath.c).
 */
#ifndef VSWAP_TOOLS_BENCH_DATAPATH_H
#define VSWAP_TOOLS_BENCH_DATAPATH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/bench/results.h"

struct datapath_bench {
	uint64_t size;	 /* guest bytes */
	const char *dir; /* where the stores go */
	unsigned runs;	 /* medians over this many runs */
	uint32_t page_size;
	const void *src; /* incompressible bytes, cycled */
	size_t src_len;
	const sigset_t *stop; /* pending signals here end the group (-EINTR) */
	bool verbose;
	/* state: the guests opened so far (their stores' names count them) */
	unsigned guests;
	/* out: the cold random swap-file fault p50 and the 8-thread cold
	 * random fault rate (for the kernel-swap group) */
	double rand_p50_us, rate8_pages_s;
};

/* Run the group and add its figures to @res; 0 or a negative errno. */
int datapath_bench_run(struct datapath_bench *o, struct bench_results *res);

#endif
