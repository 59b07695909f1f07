/* SPDX-License-Identifier: MIT */
/*
 * vswap-faultbench: page-fault latency through the vswap handler (zero,
 * staging and swap-file faults) beside a bare UFFDIO_COPY handler and a
 * plain first-touch fault, all measured in the same run, and the metadata's
 * RSS per guest page (tools/bench/faults.c says how).
 *
 *   vswap-faultbench [--pages N] [--dir DIR] [--json] [--no-metadata]
 *   (FB_DEBUG=1 prints the handler's status after each file round)
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <vswap/handler.h>

#include "tools/bench/faults.h"

int main(int argc, char **argv)
{
	size_t pages = 8192;
	const char *dir = "/var/tmp";
	bool json = false, metadata = true;
	static const struct option lo[] = {{"pages", required_argument, NULL, 'n'},
					   {"dir", required_argument, NULL, 'd'},
					   {"json", no_argument, NULL, 'j'},
					   {"no-metadata", no_argument, NULL, 'M'},
					   {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "n:d:j", lo, NULL)) != -1) {
		if (c == 'n')
			pages = strtoull(optarg, NULL, 0);
		else if (c == 'd')
			dir = optarg;
		else if (c == 'j')
			json = true;
		else if (c == 'M')
			metadata = false;
		else
			return 16;
	}
	struct faultbench_result r;
	int rc = faultbench_measure_ex(dir, pages, metadata, &r);
	if (rc < 0) {
		fprintf(stderr, "vswap-faultbench: %s\n", vswap_strerror(rc));
		return 8;
	}
	for (int i = 0; i < FB_ROWS; i++) {
		if (json)
			printf("%s{\"name\":\"%s\",\"p50_us\":%.1f,\"p99_us\":%.1f,\"n\":%llu}",
			       i ? "," : "{\"rows\":[", r.rows[i].name, r.rows[i].p50_us,
			       r.rows[i].p99_us, (unsigned long long)r.rows[i].n);
		else
			printf("%-30s p50 %7.1f us   p99 %7.1f us   (%llu faults)\n",
			       r.rows[i].name, r.rows[i].p50_us, r.rows[i].p99_us,
			       (unsigned long long)r.rows[i].n);
	}
	if (json && metadata)
		printf("],\"metadata_bytes_per_page\":%.3f,\"metadata_fixed_kib\":%.0f,"
		       "\"metadata_layout_bytes_per_page\":%.3f}\n",
		       r.meta_bytes_per_page, r.meta_fixed_kib, r.meta_layout_bytes);
	else if (json)
		printf("],\"metadata_layout_bytes_per_page\":%.3f}\n", r.meta_layout_bytes);
	else if (metadata)
		printf("metadata per guest page: %.2f bytes of RssAnon (slope 128->384 MiB) + %.0f "
		       "KiB "
		       "fixed; store tables' layout %.3f bytes, handler none\n",
		       r.meta_bytes_per_page, r.meta_fixed_kib, r.meta_layout_bytes);
	return 0;
}
