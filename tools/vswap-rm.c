/* SPDX-License-Identifier: MIT */
/*
 * vswap-rm: remove a vswap store, every file of it and nothing else: the
 * swap file, its index and lock file, and its staging file (which rm(1)
 * would leave behind in /dev/shm).  A path is removed only once it has
 * opened as a store (superblock checked, index of the same UUID), and never
 * while a handler has the store open.  See vswap-rm(8).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <vswap/store.h>

#include "tools/common/cli.h"

static const struct cli_tool tool = {
    .name = "vswap-rm",
    .synopsis = "[--index PATH] [-v] SWAPFILE...\n",
    .help = "Remove vswap stores: each SWAPFILE, its index (SWAPFILE.idx and\n"
	    "SWAPFILE.idx-lock) and its staging file.  A file that is not a store, or\n"
	    "a store in use, is left alone.\n"
	    "\n"
	    "      --index PATH  the LMDB index (default SWAPFILE.idx; one SWAPFILE only)\n"
	    "  -v, --verbose     name each file removed\n" CLI_STANDARD_HELP "\n"
	    "Exit: 0 every store removed, 1 one was not, 2 usage error.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

static int remove_store(const char *path, const char *index, bool verbose)
{
	struct cli_logger lg = {.prog = tool.name, .max = VSWAP_LOG_ERROR};
	struct vswap_store_opts o = {.read_only = true,
				     .index_path = index,
				     .log = cli_log,
				     .log_ctx = &lg,
				     .log_level = VSWAP_LOG_ERROR};
	struct vswap_store *s;
	char idx[4096], staging[4096] = "";

	/* Only a store is removed: opening it checks the superblock and that
	 * the index is this swap file's; its staging file is the one the
	 * index names. */
	int err = vswap_store_open(path, &o, &s);
	if (err) {
		fprintf(stderr, "%s: %s: not removed: %s\n", tool.name, path, vswap_strerror(err));
		return err;
	}
	snprintf(idx, sizeof(idx), "%s", vswap_store_index_path(s));
	if (vswap_store_staging_path(s))
		snprintf(staging, sizeof(staging), "%s", vswap_store_staging_path(s));
	vswap_store_close(s);
	o.read_only = false;
	err = vswap_store_destroy(path, &o);
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", tool.name, path,
			err == -EBUSY ? "in use by a handler; not removed" : vswap_strerror(err));
		return err;
	}
	if (verbose)
		printf("removed %s, %s, %s-lock%s%s\n", path, idx, idx, staging[0] ? ", " : "",
		       staging);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"index", required_argument, NULL, 'i'},
	    {"verbose", no_argument, NULL, 'v'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	const char *index = NULL;
	bool verbose = false;
	int opt, failed = 0;

	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'i':
			index = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		default:
			opt = cli_standard_option(&tool, opt);
			return opt > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage_error(&tool, "no swap file given");
	if (index && argc - optind > 1)
		return cli_usage_error(&tool, "--index names the index of one store");
	for (int i = optind; i < argc; i++)
		failed |= remove_store(argv[i], index, verbose) != 0;
	return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
