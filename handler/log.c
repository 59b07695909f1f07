/* SPDX-License-Identifier: MIT */
/* Logging through the handler's callback (no global state) and the clock. */
#include <stdio.h>
#include <time.h>

#include "handler/internal.h"

void hlog(const struct vswap_handler *h, enum vswap_log_level lvl, const char *fmt, ...)
{
	if (lvl > h->opts.log_level)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (h->opts.log)
		h->opts.log(h->opts.log_ctx, lvl, msg);
	else
		fprintf(stderr, "vswap handler: %s\n", msg);
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
