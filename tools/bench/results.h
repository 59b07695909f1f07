/* SPDX-License-Identifier: MIT */
/*
 * vswap-bench's result table: every figure beside the baseline measured in
 * the same run, printed as a table or as {"results": [...]} JSON.
 */
#ifndef VSWAP_TOOLS_BENCH_RESULTS_H
#define VSWAP_TOOLS_BENCH_RESULTS_H

#include <stddef.h>
#include <stdio.h>

struct json_writer;

struct bench_result {
	char name[48];
	char unit[12];
	char baseline[48]; /* "" when the figure has no baseline */
	double value;
	double baseline_value; /* NAN when there is none */
	double ratio;	       /* value / baseline_value, or NAN */
};

struct bench_results {
	struct bench_result *v;
	size_t n, cap;
};

void bench_results_free(struct bench_results *r);

/*
 * Add one row.  @baseline NULL means "no baseline".  The ratio is always
 * value / baseline: above 1 is better for rates, below 1 for latencies, so
 * the unit says which way to read it.
 */
int bench_add(struct bench_results *r, const char *name, double value, const char *unit,
	      const char *baseline, double baseline_value);

void bench_print_table(FILE *f, const struct bench_results *r);

/* Write the "results" member: an array of {name, value, unit, baseline,
 * baseline_value, ratio}. */
void bench_json_results(struct json_writer *w, const struct bench_results *r);

#endif
