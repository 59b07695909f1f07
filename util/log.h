/* SPDX-License-Identifier: MIT */
/*
 * The library's one logger, used by every part (store/, handler/,
 * recovery/, client/) through its handle.  One rule for all of them (the
 * public statement of it is next to enum vswap_log_level in
 * include/vswap/store.h):
 *
 *   - a message of level L is emitted when L <= the handle's log_level
 *     (the most verbose level wanted; zero, VSWAP_LOG_ERROR, is errors
 *     only);
 *   - with a callback it goes to the callback, on the thread that logs;
 *   - without one it goes to stderr as the line "vswap PART: LEVEL: MSG",
 *     and warnings always go (a log_level below VSWAP_LOG_WARN counts as
 *     VSWAP_LOG_WARN), so that nothing an operator must see is dropped by
 *     a zero-initialised option struct.
 *
 * No global state: the logger is a value in each handle.
 */
#ifndef VSWAP_UTIL_LOG_H
#define VSWAP_UTIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <vswap/store.h>

struct logger {
	vswap_log_fn fn;
	void *ctx;
	enum vswap_log_level level;
	const char *part; /* names the stderr line: "store", "handler", ... */
};

/* The logger of a handle whose options gave @fn, @ctx and @level. */
struct logger logger_make(const char *part, vswap_log_fn fn, void *ctx, enum vswap_log_level level);

bool logger_wants(const struct logger *l, enum vswap_log_level lvl);

/* Emit one message (formatted into at most 1023 bytes). */
void logger_vprintf(const struct logger *l, enum vswap_log_level lvl, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void logger_printf(const struct logger *l, enum vswap_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
