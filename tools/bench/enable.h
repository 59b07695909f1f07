/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench group "enable": the two enable modes on the same bytes, each
 * beside its baselines measured in the same run (see enable.c).
 */
#ifndef VSWAP_TOOLS_BENCH_ENABLE_H
#define VSWAP_TOOLS_BENCH_ENABLE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/bench/results.h"

struct enable_bench {
	uint64_t size;	 /* guest bytes, a multiple of 2 MiB */
	const char *dir; /* where the stores and the baseline file go */
	unsigned runs;	 /* medians over this many runs */
	uint32_t page_size;
	const void *src; /* incompressible bytes, cycled */
	size_t src_len;
	const sigset_t *stop; /* pending signals here end the group (-EINTR) */
	bool verbose;
};

/* Run the group and add its figures to @res; 0 or a negative errno. */
int enable_bench_run(const struct enable_bench *o, struct bench_results *res);

#endif
