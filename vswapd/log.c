/* SPDX-License-Identifier: MIT */
/* Logging to stderr (the journal under systemd), one line per message. */
#include <stdarg.h>
#include <stdio.h>

#include "vswapd/internal.h"

void dlog(enum vswap_log_level min, enum vswap_log_level lvl, const char *fmt, ...)
{
	if (lvl > min)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line: lines of several threads do not interleave. */
	fprintf(stderr, "vswapd: %s: %s\n", vswap_log_level_name(lvl), line);
}

void guest_log(void *ctx, enum vswap_log_level lvl, const char *msg)
{
	const struct guest *g = ctx;
	dlog(g->d->log_level, lvl, "%s: %s", g->path, msg);
}
