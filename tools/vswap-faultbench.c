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
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <vswap/handler.h>

#include "tools/bench/faults.h"
#include "tools/common/cli.h"
#include "tools/common/json.h"

static const struct cli_tool tool = {
    .name = "vswap-faultbench",
    .synopsis = "[--pages N] [--dir DIR] [--json] [--no-metadata]\n",
    .help = "Page-fault latency through the vswap handler beside a bare UFFDIO_COPY\n"
	    "handler and a plain first-touch fault, and the metadata's memory per guest\n"
	    "page, measured in the same run.\n"
	    "\n"
	    "      --pages N      guest pages per measurement (default 8192)\n"
	    "      --dir DIR      where the store goes (default /var/tmp)\n"
	    "      --json         print one JSON object\n"
	    "      --no-metadata  skip the metadata measurement (a few seconds)\n" CLI_STANDARD_HELP
	    "\n"
	    "FB_DEBUG=1 prints the handler's status after each file round.\n"
	    "Exit: 0 measured, 1 a measurement failed, 2 usage error.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

static void print_json(const struct faultbench_result *r, bool metadata)
{
	struct json_writer w;

	json_init(&w, stdout);
	json_begin_document(&w);
	json_key(&w, "rows");
	json_begin_array(&w);
	for (int i = 0; i < FB_ROWS; i++) {
		json_begin_object(&w);
		json_key(&w, "name");
		json_string(&w, r->rows[i].name);
		json_key(&w, "p50_us");
		json_double(&w, r->rows[i].p50_us);
		json_key(&w, "p99_us");
		json_double(&w, r->rows[i].p99_us);
		json_key(&w, "n");
		json_u64(&w, r->rows[i].n);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_key(&w, "metadata_bytes_per_page");
	json_double(&w, metadata ? r->meta_bytes_per_page : NAN);
	json_key(&w, "metadata_fixed_kib");
	json_double(&w, metadata ? r->meta_fixed_kib : NAN);
	json_key(&w, "metadata_layout_bytes_per_page");
	json_double(&w, r->meta_layout_bytes);
	json_end_object(&w);
	json_finish(&w);
}

int main(int argc, char **argv)
{
	uint64_t pages = 8192;
	const char *dir = "/var/tmp";
	bool json = false, metadata = true;
	static const struct option lo[] = {
	    {"pages", required_argument, NULL, 'n'},
	    {"dir", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {"no-metadata", no_argument, NULL, 'M'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_parse_u64(optarg, &pages) || pages < 64 || pages > (1u << 24))
				return cli_usage_error(&tool,
						       "--pages: '%s' is not a number in 64..%u",
						       optarg, 1u << 24);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'M':
			metadata = false;
			break;
		default:
			c = cli_standard_option(&tool, c);
			return c > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
		}
	}
	if (cli_no_operands(&tool, argc, argv))
		return tool.usage_exit;
	struct faultbench_result r;
	int rc = faultbench_measure_ex(dir, (size_t)pages, metadata, &r);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", tool.name, vswap_strerror(rc));
		return CLI_EXIT_FAILED;
	}
	if (json) {
		print_json(&r, metadata);
		return CLI_EXIT_OK;
	}
	for (int i = 0; i < FB_ROWS; i++)
		printf("%-30s p50 %7.1f us   p99 %7.1f us   (%llu faults)\n", r.rows[i].name,
		       r.rows[i].p50_us, r.rows[i].p99_us, (unsigned long long)r.rows[i].n);
	if (metadata)
		printf("metadata per guest page: %.2f bytes of RssAnon (slope 128->384 MiB) + %.0f "
		       "KiB "
		       "fixed; store tables' layout %.3f bytes, handler none\n",
		       r.meta_bytes_per_page, r.meta_fixed_kib, r.meta_layout_bytes);
	return CLI_EXIT_OK;
}
