/* SPDX-License-Identifier: MIT */
/*
 * The command-line layer every vswap tool shares: usage text, --help,
 * --version, usage errors and exit codes, number and size parsing, and a
 * stderr logger that fits vswap_log_fn.  Free of global state.
 *
 * Exit codes: every tool exits CLI_EXIT_OK (0) on success, CLI_EXIT_FAILED
 * (1) when the work failed and CLI_EXIT_USAGE (2) on a usage error, except
 * vswap-fsck, which keeps e2fsck's codes (0/1/4/8/16/32, usage 16), and
 * vswap-demo, which also exits 130 when a signal stopped it (its man page).
 */
#ifndef VSWAP_TOOLS_CLI_H
#define VSWAP_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vswap/handler.h>
#include <vswap/store.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILED = 1, CLI_EXIT_USAGE = 2 };

/* getopt_long values of the options every tool takes: "-h, --help" and
 * "--version" (long only: -V and -v mean other things to other tools). */
enum { CLI_OPT_HELP = 'h', CLI_OPT_VERSION = 0x1000 };
#define CLI_STANDARD_LONGOPTS                                                                      \
	{"help", no_argument, NULL, CLI_OPT_HELP},                                                 \
	{                                                                                          \
		"version", no_argument, NULL, CLI_OPT_VERSION                                      \
	}
#define CLI_STANDARD_HELP                                                                          \
	"  -h, --help      show this help\n"                                                       \
	"      --version   show the version of the tool and of libvswap\n"

/* What a tool says about itself. */
struct cli_tool {
	const char *name;     /* "vswap-dump" */
	const char *synopsis; /* one or more lines after "Usage: NAME " (\n-ended) */
	const char *help;     /* the description and option lines (ends in \n) */
	int usage_exit;	      /* CLI_EXIT_USAGE, or e2fsck's 16 for vswap-fsck */
};

/* "Usage: NAME SYNOPSIS\n\nHELP" to @out. */
void cli_usage(const struct cli_tool *t, FILE *out);

/* "NAME VERSION\n" to stdout, VERSION being the libvswap the tool runs with
 * (vswap_version()). */
void cli_version(const struct cli_tool *t);

/*
 * Handle the standard options inside a getopt_long() loop: for @opt
 * CLI_OPT_HELP or CLI_OPT_VERSION print the text and return 1 (the tool
 * exits CLI_EXIT_OK); for '?' or ':' (getopt printed why) print the "Try
 * --help" line and return -1 (the tool exits t->usage_exit); else 0.
 */
int cli_standard_option(const struct cli_tool *t, int opt);

/* Print "NAME: <message>" and the "Try 'NAME --help'" line to stderr;
 * returns t->usage_exit for the caller to exit with. */
int cli_usage_error(const struct cli_tool *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Option values inside a getopt loop, the same for every tool: each parses
 * @arg, the value of option --@name, into *@out and returns 0, or prints
 * the usage error (cli_usage_error()) and returns -1.
 *   cli_opt_range       a decimal integer from @lo to @hi ("--NAME: LO to HI")
 *   cli_opt_durability  full, batch or none (vswap_durability_parse())
 *   cli_opt_enable_mode auto, copy or protect (vswap_enable_mode_parse())
 */
int cli_opt_range(const struct cli_tool *t, const char *name, const char *arg, uint64_t lo,
		  uint64_t hi, uint64_t *out);
int cli_opt_durability(const struct cli_tool *t, const char *arg, enum vswap_durability *out);
int cli_opt_enable_mode(const struct cli_tool *t, const char *arg, enum vswap_enable_mode *out);

/* After the getopt loop of a tool that takes no operand: 0, or the usage
 * error for the first one left and -1. */
int cli_no_operands(const struct cli_tool *t, int argc, char **argv);

/* Parse a decimal unsigned 64-bit integer; the whole string must be used.
 * Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_u64(const char *s, uint64_t *out);

/* Parse a size with an optional binary suffix (K, M, G, T; "KiB" and "k"
 * also accepted): "4096", "4K", "2MiB", "1g".  Returns 0 or -EINVAL/-ERANGE. */
int cli_parse_size(const char *s, uint64_t *out);

/* Format @bytes as "1.50 GiB" style text into @buf. */
const char *cli_format_size(uint64_t bytes, char *buf, unsigned len);

/* A logger for vswap_log_fn: prints "PROG: level: msg" to stderr when the
 * level is at or below @max. */
struct cli_logger {
	const char *prog;
	enum vswap_log_level max;
};
void cli_log(void *ctx, enum vswap_log_level level, const char *msg);

/* The program name without its directory, for messages. */
const char *cli_basename(const char *argv0);

#endif /* VSWAP_TOOLS_CLI_H */
