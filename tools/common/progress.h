/* SPDX-License-Identifier: MIT */
/*
 * A one-line progress bar on stderr for long tool runs: pages done of the
 * total and the rate in GB/s.  Drawn at most ten times a second, and only
 * when enabled (the tools enable it on a terminal unless --no-progress).
 */
#ifndef VSWAP_TOOLS_PROGRESS_H
#define VSWAP_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress_bar {
	bool enabled;
	bool drawn;
	const char *label;
	uint64_t start_ns;
	uint64_t last_draw_ns;
	unsigned width;
};

/* Decide whether to draw: @mode is 1 (forced on), 0 (off) or -1 (on when
 * stderr is a terminal). */
void progress_init(struct progress_bar *p, const char *label, int mode);
void progress_update(struct progress_bar *p, uint64_t done, uint64_t total, uint64_t bytes);
/* Erase the bar so that the next line of output starts clean. */
void progress_finish(struct progress_bar *p);

uint64_t progress_now_ns(void);

#endif /* VSWAP_TOOLS_PROGRESS_H */
