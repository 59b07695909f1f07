/* SPDX-License-Identifier: MIT */
/*
 * vswap-upgrade: convert a store written by vswap 0.1.0 (format 1) to the
 * current format in place (vswap_store_upgrade()).  See vswap-upgrade(8).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>

#include <vswap/store.h>

#include "tools/common/cli.h"

static const struct cli_tool tool = {
    .name = "vswap-upgrade",
    .synopsis = "[--index PATH] [--staging-dir DIR] [-v] SWAPFILE...\n",
    .help = "Convert vswap stores of format 1 (vswap 0.1.0) to the current format, in\n"
	    "place.  Page checksums are recomputed only for pages whose bytes verify;\n"
	    "a page that does not is recorded lost.  A store of the current format is\n"
	    "left as it is.\n"
	    "\n"
	    "      --index PATH        the LMDB index (default SWAPFILE.idx; one SWAPFILE)\n"
	    "      --staging-dir DIR   the store's staging directory (default /dev/shm)\n"
	    "  -v, --verbose           say what was converted\n" CLI_STANDARD_HELP "\n"
	    "Exit: 0 every store converted or current, 1 one was not, 2 usage error.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"index", required_argument, NULL, 'i'},
	    {"staging-dir", required_argument, NULL, 's'},
	    {"verbose", no_argument, NULL, 'v'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct cli_logger lg = {.prog = tool.name, .max = VSWAP_LOG_WARN};
	struct vswap_store_opts o = {.log = cli_log, .log_ctx = &lg, .log_level = VSWAP_LOG_INFO};
	int opt, failed = 0;

	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'i':
			o.index_path = optarg;
			break;
		case 's':
			o.staging_dir = optarg;
			break;
		case 'v':
			lg.max = VSWAP_LOG_INFO;
			break;
		default:
			opt = cli_standard_option(&tool, opt);
			return opt > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage_error(&tool, "no swap file given");
	if (o.index_path && argc - optind > 1)
		return cli_usage_error(&tool, "--index names the index of one store");
	for (int i = optind; i < argc; i++) {
		int err = vswap_store_upgrade(argv[i], &o);
		if (err < 0) {
			fprintf(stderr, "%s: %s: not converted: %s\n", tool.name, argv[i],
				err == -EBUSY ? "in use by a handler" : vswap_strerror(err));
			failed = 1;
		} else {
			printf("%s: %s\n", argv[i], err ? "current format already" : "converted");
		}
	}
	return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
