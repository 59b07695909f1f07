/* SPDX-License-Identifier: MIT */
/*
 * Page-fault latency through the vswap handler (zero, staging and swap-file
 * faults) beside a bare UFFDIO_COPY handler and a plain first-touch fault,
 * all measured in the same run, and the metadata's RSS per guest page.
 * Used by vswap-faultbench and by vswap-bench's "faults" group.
 */
#ifndef VSWAP_TOOLS_BENCH_FAULTS_H
#define VSWAP_TOOLS_BENCH_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct faultbench_row {
	const char *name;
	double p50_us, p99_us;
	uint64_t n;
};

enum { FB_PLAIN, FB_BARE, FB_ZERO, FB_STAGING, FB_FILE_CACHED, FB_FILE_COLD, FB_ROWS };

struct faultbench_result {
	struct faultbench_row rows[FB_ROWS];
	double meta_bytes_per_page; /* RssAnon slope per guest page (NAN: not measured) */
	double meta_fixed_kib;	    /* RssAnon that does not grow with the guest */
	double meta_layout_bytes;   /* the store tables' documented size per page */
};

/*
 * Measure every row over @pages pages (store under @dir).  The layout
 * figure is the store's in-memory tables as documented in
 * store/internal.h (4-byte page word + 8-byte checksum per page, a staged
 * bit per page, a used bit per slot, a dirty bit per 64-page group); the
 * handler keeps nothing per page.  @metadata: also measure it (a few s).
 */
int faultbench_measure_ex(const char *dir, size_t pages, bool metadata,
			  struct faultbench_result *res);
/* faultbench_measure_ex() without the metadata measurement. */
int faultbench_measure(const char *dir, size_t pages, struct faultbench_result *res);

#endif
