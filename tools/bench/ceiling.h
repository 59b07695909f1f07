/* SPDX-License-Identifier: MIT */
/*
 * The disk's write ceiling, a floor row of vswap-bench: bare O_DIRECT
 * writes of the same bytes on io_uring at several write sizes and queue
 * depths, into a fresh file and over blocks written before.
 */
#ifndef VSWAP_TOOLS_BENCH_CEILING_H
#define VSWAP_TOOLS_BENCH_CEILING_H

#include <stdbool.h>
#include <stdint.h>

#define CEILING_MAX_RUNS 64
#define CEILING_MAX_SHAPES 16

/* One write shape: @bs bytes per write, @qd writes in flight. */
struct ceiling_shape {
	uint32_t bs;
	unsigned qd;
	double fresh[CEILING_MAX_RUNS];	    /* GB/s into a fresh file, per run */
	double overwrite[CEILING_MAX_RUNS]; /* GB/s over the blocks just written */
};

struct write_ceiling {
	const char *dir;    /* where the files go (the store's directory) */
	const uint8_t *mem; /* the bytes: page-aligned, @size of them */
	uint64_t size;
	bool quick, verbose;
	unsigned runs; /* passes done so far */
	unsigned nshapes;
	struct ceiling_shape shape[CEILING_MAX_SHAPES];
};

/* Set the shapes (fewer with @quick); nothing is written yet. */
void write_ceiling_init(struct write_ceiling *wc, const char *dir, const uint8_t *mem,
			uint64_t size, bool quick, bool verbose);

/* One run: every shape once, in an order that turns by run. */
int write_ceiling_pass(struct write_ceiling *wc);

/* The best shape's median over the runs (fresh, or over written blocks);
 * @bs and @qd, if set, name that shape. */
double write_ceiling_best(struct write_ceiling *wc, bool overwrite, uint32_t *bs, unsigned *qd);

#endif
