/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the vswap command-line tools: number and size
 * parsing, a stderr logger that fits vswap_log_fn, and the e2fsck-style exit
 * codes.  Tools are thin main()s; everything here is free of global state.
 */
#ifndef VSWAP_TOOLS_CLI_H
#define VSWAP_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <vswap/store.h>

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
