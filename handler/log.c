/* SPDX-License-Identifier: MIT */
/* Logging through the handler's logger (util/log.h) and the clock. */
#include <stdio.h>
#include <time.h>

#include "handler/internal.h"

void hlog(const struct vswap_handler *h, enum vswap_log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	logger_vprintf(&h->log, lvl, fmt, ap);
	va_end(ap);
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t handler_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}
