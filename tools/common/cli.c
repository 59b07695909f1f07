/* SPDX-License-Identifier: MIT */
#include "tools/common/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <vswap/version.h>

void cli_usage(const struct cli_tool *t, FILE *out)
{
	size_t n = strlen(t->synopsis);
	bool nl = n && t->synopsis[n - 1] == '\n';
	fprintf(out, "Usage: %s %s%s\n%s", t->name, t->synopsis, nl ? "" : "\n", t->help);
}

void cli_version(const struct cli_tool *t)
{
	printf("%s %s\n", t->name, vswap_version());
}

int cli_standard_option(const struct cli_tool *t, int opt)
{
	switch (opt) {
	case CLI_OPT_HELP:
		cli_usage(t, stdout);
		return 1;
	case CLI_OPT_VERSION:
		cli_version(t);
		return 1;
	case '?':
	case ':':
		fprintf(stderr, "Try '%s --help' for more information.\n", t->name);
		return -1;
	}
	return 0;
}

int cli_usage_error(const struct cli_tool *t, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", t->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", t->name);
	return t->usage_exit;
}

int cli_opt_range(const struct cli_tool *t, const char *name, const char *arg, uint64_t lo,
		  uint64_t hi, uint64_t *out)
{
	uint64_t v;

	if (cli_parse_u64(arg, &v) || v < lo || v > hi) {
		cli_usage_error(t, "--%s: %llu to %llu", name, (unsigned long long)lo,
				(unsigned long long)hi);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_opt_durability(const struct cli_tool *t, const char *arg, enum vswap_durability *out)
{
	if (vswap_durability_parse(arg, out) == 0)
		return 0;
	cli_usage_error(t, "--durability full, batch or none");
	return -1;
}

int cli_opt_enable_mode(const struct cli_tool *t, const char *arg, enum vswap_enable_mode *out)
{
	if (vswap_enable_mode_parse(arg, out) == 0)
		return 0;
	cli_usage_error(t, "--enable-mode auto, copy or protect");
	return -1;
}

int cli_no_operands(const struct cli_tool *t, int argc, char **argv)
{
	if (optind == argc)
		return 0;
	cli_usage_error(t, "unexpected argument '%s'", argv[optind]);
	return -1;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The shift for a size suffix, or -1 if @suffix is not one we accept. */
static int size_suffix_shift(const char *suffix)
{
	static const char units[] = "KMGT";
	const char *u;

	if (!*suffix)
		return 0;
	u = strchr(units, toupper((unsigned char)suffix[0]));
	if (!u)
		return -1;
	suffix++;
	if (*suffix && strcasecmp(suffix, "iB") && strcasecmp(suffix, "B"))
		return -1;
	return 10 * (int)(u - units + 1);
}

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	shift = size_suffix_shift(end);
	if (shift < 0)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

const char *cli_format_size(uint64_t bytes, char *buf, unsigned len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	unsigned i = 0;

	while (v >= 1024.0 && i + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.2f %s", v, units[i]);
	return buf;
}

void cli_log(void *ctx, enum vswap_log_level level, const char *msg)
{
	const struct cli_logger *lg = ctx;

	if (lg && level > lg->max)
		return;
	fprintf(stderr, "%s: %s: %s\n", lg && lg->prog ? lg->prog : "vswap",
		vswap_log_level_name(level), msg);
}

const char *cli_basename(const char *argv0)
{
	const char *slash = argv0 ? strrchr(argv0, '/') : NULL;

	return slash ? slash + 1 : (argv0 ? argv0 : "vswap");
}
