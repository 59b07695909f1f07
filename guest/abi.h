/* SPDX-License-Identifier: MIT */
/*
 * The contract between vswap-vm (the VMM, vm/) and its guest program
 * (guest/): the guest-physical layout, the ports the guest writes, the
 * commands the VMM gives and the control blocks through which both talk.
 * Included by the freestanding guest and by the host, so only fixed-width
 * types and no pointers.
 *
 * Guest-physical memory:
 *   [0, VM_LOW_SIZE)          low memory: page tables, IDT, each vCPU's GDT
 *                             and TSS, the guest program, the shared page and
 *                             each vCPU's area (control block and stacks).
 *                             Host anonymous memory, never swapped; the
 *                             mutable part [VM_STATE_BASE, VM_STATE_END(n))
 *                             is what a hibernation saves.
 *   [VM_RAM_BASE, +size)      guest RAM: the memfd that vswap swaps.
 * Everything is identity-mapped with 2 MiB pages, user-accessible, and the
 * guest runs at CPL 3 with IOPL 3 (vswap-vm(1) says why).
 */
#ifndef VSWAP_GUEST_ABI_H
#define VSWAP_GUEST_ABI_H

#include <stdint.h>

#define VM_PAGE 4096ull
#define VM_LOW_SIZE (1ull << 20)
#define VM_RAM_BASE (2ull << 20)
#define VM_MAX_VCPUS 8u
/* Page tables: PML4, PDPT, then one page directory per GiB. */
#define VM_PML4 0x1000ull
#define VM_PDPT 0x2000ull
#define VM_PD 0x3000ull
#define VM_MAX_PDS 16u /* 16 GiB of guest-physical space */
#define VM_IDT 0x13000ull
/* Per vCPU: GDT (8 entries) then the TSS with its I/O bitmap. */
#define VM_SYS_BASE 0x14000ull
#define VM_SYS_STRIDE 0x3000ull
#define VM_SYS_TSS_OFF 0x100ull
#define VM_TSS_IOMAP 104u		    /* the bitmap right after the 104-byte TSS */
#define VM_TSS_LIMIT (VM_TSS_IOMAP + 8192u) /* + the terminating 0xff byte */
/* The guest program: linked at VM_CODE_BASE, at most VM_CODE_MAX bytes. */
#define VM_CODE_BASE 0x40000ull
#define VM_CODE_MAX 0x20000ull
/* The mutable state: the shared page, then each vCPU's area. */
#define VM_STATE_BASE 0x60000ull
#define VM_SHARED VM_STATE_BASE
#define VM_AREA_BASE (VM_STATE_BASE + VM_PAGE)
#define VM_AREA_STRIDE 0x10000ull
#define VM_AREA_R0_STACK 0x2000ull   /* top of the ring-0 stack (page 1) */
#define VM_AREA_STACK VM_AREA_STRIDE /* top of the user stack (pages 2-15) */
#define VM_STATE_END(n) (VM_AREA_BASE + (uint64_t)(n)*VM_AREA_STRIDE)

/* Segment selectors of the GDT the VMM builds. */
#define VM_SEL_KCODE 0x08
#define VM_SEL_KDATA 0x10
#define VM_SEL_UDATA 0x1b
#define VM_SEL_UCODE 0x23
#define VM_SEL_TSS 0x28

/* Ports (out from CPL 3; the TSS bitmap allows them). */
#define VM_PORT_PAUSE 0xe1   /* paused at a pause point: do not re-enter */
#define VM_PORT_RESUMED 0xe2 /* the instruction after a pause point */
#define VM_PORT_FAULT 0xe3   /* an exception: eax = vector */

/* The image header at VM_CODE_BASE: where the VMM finds the entry points. */
#define VM_IMAGE_MAGIC 0x6d7670617773766full /* "ovswapvm" */
struct vm_image_header {
	uint64_t magic;
	uint64_t entry;	    /* CPL 3: rdi = area, rsi = shared, rdx = vCPU index */
	uint64_t gp_stub;   /* ring 0: #GP (the hlt trick) */
	uint64_t exc_stubs; /* ring 0: vector v at exc_stubs + v * VM_EXC_STUB_SIZE */
};
#define VM_EXC_STUB_SIZE 16u

/* Commands (vm_area.cmd). */
enum vm_cmd {
	VM_CMD_NONE = 0,
	VM_CMD_WRITE = 1,  /* every page of the share gets version shared.version */
	VM_CMD_TOUCH = 2,  /* read a subset, rewrite half of it (version + 1) */
	VM_CMD_VERIFY = 3, /* check every page, timing each first access */
	VM_CMD_HOT = 4,	   /* read the hot subset (a resumed guest's working set) */
};

#define VM_MAX_REMOVED 8u
#define VM_HIST_BUCKETS 256u

/* Written by the VMM while every vCPU is idle; read by all vCPUs. */
struct vm_shared {
	uint64_t ram_base, ram_pages; /* guest RAM (guest-physical) */
	uint32_t vcpus;
	uint32_t version;		     /* the last WRITE's version (0 = never written) */
	uint32_t touch_permille;	     /* the TOUCH since that WRITE (0 = none) */
	uint32_t hot_permille;		     /* the hot subset's size */
	uint32_t nremoved;		     /* balloon ranges removed since that WRITE */
	uint32_t pause;			     /* non-zero: stop at the next pause point */
	uint64_t removed[VM_MAX_REMOVED][2]; /* [first page, count) */
};

/* One per vCPU, at VM_AREA_BASE + index * VM_AREA_STRIDE. */
struct vm_area {
	/* VMM -> guest */
	uint64_t cmd_seq; /* a new command when it differs from done_seq */
	uint32_t cmd;
	uint32_t pad0;
	uint64_t first, end;  /* this vCPU's pages [first, end) */
	uint64_t pause_after; /* WRITE: pause after this many pages (0: never) */
	/* guest -> VMM */
	uint64_t done_seq;
	uint64_t progress;   /* pages done in the current command */
	uint64_t bad_pages;  /* pages that did not hold what they should */
	uint64_t first_bad;  /* the first such page + 1 (0 = none) */
	uint64_t cycles;     /* TSC cycles of the last command */
	uint64_t hot_cycles; /* TSC cycles of the last hot pass */
	uint64_t timed, max_cycles;
	uint64_t hist[VM_HIST_BUCKETS]; /* first-access latency, 4 buckets per octave */
};

/* The histogram bucket of @c cycles: 4 per power of two. */
static inline unsigned vm_hist_bucket(uint64_t c)
{
	if (c < 4)
		return (unsigned)c;
	unsigned msb = 63u - (unsigned)__builtin_clzll(c);
	return msb * 4 + (unsigned)((c >> (msb - 2)) & 3);
}
/* The smallest cycle count of bucket @b. */
static inline uint64_t vm_hist_floor(unsigned b)
{
	if (b < 4)
		return b;
	unsigned msb = b / 4;
	return (1ull << msb) | ((uint64_t)(b & 3) << (msb - 2));
}

/* ---- the patterns: a function of (page, version) both sides compute ---- */

static inline uint64_t vm_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}
/* One page in eight of a WRITE is zero (trim drops it). */
static inline int vm_zero_page(uint64_t p, uint32_t v)
{
	return (vm_mix(p ^ ((uint64_t)v << 40)) & 7) == 0;
}
/* TOUCH: the pages read (permille of them) and the half rewritten. */
static inline int vm_touched(uint64_t p, uint32_t v, uint32_t permille)
{
	return vm_mix(p * 3 + ((uint64_t)v << 44) + 1) % 1000 < permille;
}
static inline int vm_rewritten(uint64_t p, uint32_t v)
{
	return (vm_mix(p * 5 + ((uint64_t)v << 48) + 2) & 1) == 0;
}
static inline int vm_hot(uint64_t p, uint32_t permille)
{
	return vm_mix(p * 7 + 3) % 1000 < permille;
}
/* Word @i of page @p at version @v (0: a zero page). */
static inline uint64_t vm_word(uint64_t p, uint32_t v, uint64_t i)
{
	return v ? (p << 20 | v) * 0x9e3779b97f4a7c15ull + i * 0xd1b54a32d192ed03ull : 0;
}

/* The version page @p should hold now (0 = zero). */
static inline uint32_t vm_expected(const struct vm_shared *s, uint64_t p)
{
	for (uint32_t i = 0; i < s->nremoved && i < VM_MAX_REMOVED; i++)
		if (p - s->removed[i][0] < s->removed[i][1])
			return 0;
	if (!s->version)
		return 0;
	if (s->touch_permille && vm_touched(p, s->version, s->touch_permille) &&
	    vm_rewritten(p, s->version))
		return s->version + 1;
	return vm_zero_page(p, s->version) ? 0 : s->version;
}

#endif
