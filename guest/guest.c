/* SPDX-License-Identifier: MIT */
/*
 * The guest program vswap-vm runs on every vCPU: it writes its share of
 * guest RAM in patterns it can check (guest/abi.h), verifies them, and times
 * its own first access to each page with the TSC.  Freestanding, at CPL 3;
 * the only writable memory it uses is its stack and its own control block
 * (several vCPUs run this one image, so there is no .data or .bss).
 *
 * A command runs to its end and the vCPU halts (the VMM then sees it idle).
 * Between pages the guest looks at the shared pause flag, and a WRITE or a
 * VERIFY can be told to pause after a number of pages: at a pause point it writes
 * VM_PORT_PAUSE and the VMM may save the vCPU there (hibernate); the next
 * instruction after a resume writes VM_PORT_RESUMED, so the VMM sees the
 * first instruction a resumed guest runs.
 */
#include <stdint.h>

#include "guest/abi.h"

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %w1" : : "a"(v), "Nd"(port) : "memory");
}

/* At CPL 3 hlt raises #GP; the ring-0 stub halts for us (guest/entry.S). */
static inline void halt(void)
{
	__asm__ volatile("hlt" : : : "memory");
}

static inline uint64_t tsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t load(const volatile uint64_t *p)
{
	return *p;
}

struct ctx {
	volatile struct vm_area *a;
	volatile struct vm_shared *s;
};

static uint64_t *page_ptr(const struct ctx *c, uint64_t p)
{
	return (uint64_t *)(uintptr_t)(c->s->ram_base + p * VM_PAGE);
}

static void pause_point(void)
{
	outl(VM_PORT_PAUSE, 0);
	outl(VM_PORT_RESUMED, 0);
}

static void maybe_pause(const struct ctx *c)
{
	if (c->s->pause)
		pause_point();
}

static void fill(uint64_t *w, uint64_t p, uint32_t v)
{
	for (uint64_t i = 0; i < VM_PAGE / 8; i++)
		w[i] = vm_word(p, v, i);
}

static int check(const uint64_t *w, uint64_t p, uint32_t v)
{
	for (uint64_t i = 0; i < VM_PAGE / 8; i++)
		if (w[i] != vm_word(p, v, i))
			return 0;
	return 1;
}

static void bad(const struct ctx *c, uint64_t p)
{
	if (!c->a->bad_pages++)
		c->a->first_bad = p + 1;
}

static void cmd_write(const struct ctx *c)
{
	uint32_t v = c->s->version;
	uint64_t n = 0;

	for (uint64_t p = c->a->first + c->a->progress; p < c->a->end; p++) {
		uint64_t *w = page_ptr(c, p);

		if (vm_zero_page(p, v))
			fill(w, p, 0);
		else
			fill(w, p, v);
		c->a->progress++;
		if (++n == c->a->pause_after)
			pause_point();
		maybe_pause(c);
	}
}

static void cmd_touch(const struct ctx *c)
{
	volatile struct vm_shared *s = c->s;
	uint32_t v = s->version;

	for (uint64_t p = c->a->first; p < c->a->end; p++) {
		if (!vm_touched(p, v, s->touch_permille))
			continue;
		uint64_t *w = page_ptr(c, p);
		/* The expectation before this pass: without its rewrites. */
		uint32_t was = vm_zero_page(p, v) ? 0 : v;

		for (uint32_t i = 0; i < s->nremoved && i < VM_MAX_REMOVED; i++)
			if (p - s->removed[i][0] < s->removed[i][1])
				was = 0;
		if (!check(w, p, was))
			bad(c, p);
		if (vm_rewritten(p, v))
			fill(w, p, v + 1);
		c->a->progress++;
		maybe_pause(c);
	}
}

/* Check every page; time the first access of each. */
static void cmd_verify(const struct ctx *c)
{
	volatile struct vm_area *a = c->a;
	uint64_t n = 0;

	for (uint64_t p = a->first; p < a->end; p++) {
		const uint64_t *w = page_ptr(c, p);
		uint64_t t0 = tsc();

		load(w);
		uint64_t d = tsc() - t0;

		a->hist[vm_hist_bucket(d)]++;
		a->timed++;
		if (d > a->max_cycles)
			a->max_cycles = d;
		if (!check(w, p, vm_expected((const struct vm_shared *)c->s, p)))
			bad(c, p);
		a->progress++;
		if (++n == a->pause_after)
			pause_point();
		maybe_pause(c);
	}
}

static void cmd_hot(const struct ctx *c)
{
	uint64_t t0 = tsc();

	for (uint64_t p = c->a->first; p < c->a->end; p++) {
		if (!vm_hot(p, c->s->hot_permille))
			continue;
		const uint64_t *w = page_ptr(c, p);

		if (!check(w, p, vm_expected((const struct vm_shared *)c->s, p)))
			bad(c, p);
		maybe_pause(c);
	}
	c->a->hot_cycles = tsc() - t0;
}

void guest_main(struct vm_area *area, struct vm_shared *shared, uint64_t index);

void guest_main(struct vm_area *area, struct vm_shared *shared, uint64_t index)
{
	struct ctx c = {area, shared};

	(void)index;
	for (;;) {
		while (c.a->cmd_seq == c.a->done_seq) {
			maybe_pause(&c);
			halt();
		}
		uint64_t t0 = tsc();

		switch (c.a->cmd) {
		case VM_CMD_WRITE:
			cmd_write(&c);
			break;
		case VM_CMD_TOUCH:
			cmd_touch(&c);
			break;
		case VM_CMD_VERIFY:
			cmd_verify(&c);
			break;
		case VM_CMD_HOT:
			cmd_hot(&c);
			break;
		default:
			bad(&c, ~0ull);
			break;
		}
		c.a->cycles = tsc() - t0;
		c.a->done_seq = c.a->cmd_seq;
	}
}
