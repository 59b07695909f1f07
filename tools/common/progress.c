/* SPDX-License-Identifier: MIT */
#include "tools/common/progress.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_INTERVAL_NS 100000000ull

uint64_t progress_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned terminal_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
		return ws.ws_col;
	return 80;
}

void progress_init(struct progress_bar *p, const char *label, int mode)
{
	p->enabled = mode > 0 || (mode < 0 && isatty(STDERR_FILENO));
	p->drawn = false;
	p->label = label ? label : "";
	p->start_ns = progress_now_ns();
	p->last_draw_ns = 0;
	p->width = p->enabled ? terminal_width() : 80;
}

static void progress_draw(struct progress_bar *p, uint64_t done, uint64_t total, uint64_t bytes,
			  uint64_t now)
{
	double secs = (double)(now - p->start_ns) / 1e9;
	double gbps = secs > 0 ? (double)bytes / secs / 1e9 : 0.0;
	double frac = total ? (double)done / (double)total : 1.0;
	char tail[96];
	int tail_len, bar, filled;

	if (frac > 1.0)
		frac = 1.0;
	tail_len = snprintf(tail, sizeof(tail), " %3.0f%% %llu/%llu pages %.2f GB/s", frac * 100.0,
			    (unsigned long long)done, (unsigned long long)total, gbps);
	bar = (int)p->width - (int)tail_len - 4 - (int)snprintf(NULL, 0, "%s", p->label);
	if (bar < 10)
		bar = 10;
	filled = (int)(frac * bar);
	fprintf(stderr, "\r%s [", p->label);
	for (int i = 0; i < bar; i++)
		fputc(i < filled ? '#' : '.', stderr);
	fprintf(stderr, "]%s", tail);
	fflush(stderr);
	p->drawn = true;
	p->last_draw_ns = now;
}

void progress_update(struct progress_bar *p, uint64_t done, uint64_t total, uint64_t bytes)
{
	uint64_t now;

	if (!p->enabled)
		return;
	now = progress_now_ns();
	if (p->drawn && now - p->last_draw_ns < PROGRESS_INTERVAL_NS && done < total)
		return;
	progress_draw(p, done, total, bytes, now);
}

void progress_finish(struct progress_bar *p)
{
	if (!p->enabled || !p->drawn)
		return;
	fputc('\r', stderr);
	for (unsigned i = 0; i + 1 < p->width; i++)
		fputc(' ', stderr);
	fputc('\r', stderr);
	fflush(stderr);
	p->drawn = false;
}
