/* SPDX-License-Identifier: MIT */
/* The library's one logger: the rule is in util/log.h. */
#include <stdio.h>

#include "util/log.h"

struct logger logger_make(const char *part, vswap_log_fn fn, void *ctx, enum vswap_log_level level)
{
	if (!fn && level < VSWAP_LOG_WARN)
		level = VSWAP_LOG_WARN;
	return (struct logger){.fn = fn, .ctx = ctx, .level = level, .part = part};
}

bool logger_wants(const struct logger *l, enum vswap_log_level lvl)
{
	return lvl <= l->level;
}

const char *vswap_log_level_name(enum vswap_log_level lvl)
{
	switch (lvl) {
	case VSWAP_LOG_ERROR:
		return "error";
	case VSWAP_LOG_WARN:
		return "warning";
	case VSWAP_LOG_INFO:
		return "info";
	case VSWAP_LOG_DEBUG:
		return "debug";
	}
	return "unknown";
}

void logger_vprintf(const struct logger *l, enum vswap_log_level lvl, const char *fmt, va_list ap)
{
	char msg[1024];

	if (!logger_wants(l, lvl))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (l->fn)
		l->fn(l->ctx, lvl, msg);
	else /* one call per line: lines of several threads do not interleave */
		fprintf(stderr, "vswap %s: %s: %s\n", l->part ? l->part : "library",
			vswap_log_level_name(lvl), msg);
}

void logger_printf(const struct logger *l, enum vswap_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	logger_vprintf(l, lvl, fmt, ap);
	va_end(ap);
}
