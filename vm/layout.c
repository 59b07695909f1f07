/* SPDX-License-Identifier: MIT */
/*
 * Low memory: what the VMM builds for the guest before any vCPU runs
 * (guest/abi.h has the map).  Identity page tables of 2 MiB pages, all
 * user-accessible, because PVM runs only CPL-3 long-mode code natively
 * (CPL-0 and unpaged code are emulated an instruction at a time); an IDT
 * whose #GP gate is the hlt trick; and per vCPU a GDT and a TSS whose I/O
 * permission bitmap allows every port (IOPL 3 alone is not enough for port
 * I/O from CPL 3 there).  The same layout runs on hardware virtualization.
 */
#include <errno.h>
#include <string.h>

#include "vm/layout.h"

#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_US 0x4ull
#define PTE_PS 0x80ull

static void put64(uint8_t *low, uint64_t gpa, uint64_t v)
{
	memcpy(low + gpa, &v, 8);
}

static int page_tables(uint8_t *low, uint64_t top)
{
	uint64_t gib = (top + (1ull << 30) - 1) >> 30;

	if (gib > VM_MAX_PDS)
		return -E2BIG;
	put64(low, VM_PML4, VM_PDPT | PTE_P | PTE_RW | PTE_US);
	for (uint64_t g = 0; g < gib; g++) {
		put64(low, VM_PDPT + g * 8, (VM_PD + g * VM_PAGE) | PTE_P | PTE_RW | PTE_US);
		for (uint64_t e = 0; e < 512; e++) {
			uint64_t pa = (g << 30) | (e << 21);

			if (pa >= top)
				break;
			put64(low, VM_PD + g * VM_PAGE + e * 8,
			      pa | PTE_P | PTE_RW | PTE_US | PTE_PS);
		}
	}
	return 0;
}

/* A 64-bit interrupt gate to ring-0 code at @target. */
static void idt_gate(uint8_t *low, unsigned vec, uint64_t target)
{
	uint64_t lo = (target & 0xffff) | ((uint64_t)VM_SEL_KCODE << 16) | (0x8eull << 40) |
		      ((target >> 16 & 0xffff) << 48);

	put64(low, VM_IDT + vec * 16, lo);
	put64(low, VM_IDT + vec * 16 + 8, target >> 32);
}

static void gdt_and_tss(uint8_t *low, unsigned i)
{
	uint64_t sys = VM_SYS_BASE + i * VM_SYS_STRIDE, tss = sys + VM_SYS_TSS_OFF;
	uint64_t rsp0 = VM_AREA_BASE + i * VM_AREA_STRIDE + VM_AREA_R0_STACK;
	uint64_t lim = VM_TSS_LIMIT;

	put64(low, sys + 0x00, 0);
	put64(low, sys + 0x08, 0x00af9a000000ffffull); /* ring-0 code, 64-bit */
	put64(low, sys + 0x10, 0x00cf92000000ffffull); /* ring-0 data */
	put64(low, sys + 0x18, 0x00cff2000000ffffull); /* ring-3 data */
	put64(low, sys + 0x20, 0x00affa000000ffffull); /* ring-3 code, 64-bit */
	/* 64-bit TSS descriptor, busy (as the loaded TR says). */
	put64(low, sys + 0x28,
	      (lim & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bull << 40) |
		  ((lim >> 16 & 0xf) << 48) | ((tss >> 24 & 0xff) << 56));
	put64(low, sys + 0x30, tss >> 32);
	memset(low + tss, 0, VM_TSS_LIMIT + 1);
	put64(low, tss + 4, rsp0); /* rsp0 */
	uint16_t iomap = VM_TSS_IOMAP;
	memcpy(low + tss + 102, &iomap, 2);
	low[tss + VM_TSS_LIMIT] = 0xff; /* the bitmap's terminating byte */
}

int layout_build(uint8_t *low, const uint8_t *image, size_t image_len, uint64_t ram_size,
		 unsigned nvcpus, struct layout_entry *out)
{
	struct vm_image_header hdr;

	if (image_len < sizeof(hdr) || image_len > VM_CODE_MAX)
		return -ENOEXEC;
	memcpy(&hdr, image, sizeof(hdr));
	if (hdr.magic != VM_IMAGE_MAGIC)
		return -ENOEXEC;
	if (nvcpus == 0 || nvcpus > VM_MAX_VCPUS)
		return -EINVAL;
	/* @low is fresh anonymous memory: zero already (touching all of it
	 * would cost a resume ~256 page faults). */
	int rc = page_tables(low, VM_RAM_BASE + ram_size);

	if (rc)
		return rc;
	memcpy(low + VM_CODE_BASE, image, image_len);
	for (unsigned v = 0; v < 32; v++)
		idt_gate(low, v, v == 13 ? hdr.gp_stub : hdr.exc_stubs + v * VM_EXC_STUB_SIZE);
	for (unsigned i = 0; i < nvcpus; i++)
		gdt_and_tss(low, i);
	out->entry = hdr.entry;
	return 0;
}

void layout_sregs(struct kvm_sregs *s, unsigned i)
{
	uint64_t sys = VM_SYS_BASE + i * VM_SYS_STRIDE;
	struct kvm_segment code = {
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = VM_SEL_UCODE,
	    .type = 11,
	    .present = 1,
	    .dpl = 3,
	    .db = 0,
	    .s = 1,
	    .l = 1,
	    .g = 1,
	};
	struct kvm_segment data = {
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = VM_SEL_UDATA,
	    .type = 3,
	    .present = 1,
	    .dpl = 3,
	    .db = 1,
	    .s = 1,
	    .l = 0,
	    .g = 1,
	};
	struct kvm_segment tr = {
	    .base = sys + VM_SYS_TSS_OFF,
	    .limit = VM_TSS_LIMIT,
	    .selector = VM_SEL_TSS,
	    .type = 11,
	    .present = 1,
	    .dpl = 0,
	    .s = 0,
	};

	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->tr = tr;
	s->ldt = (struct kvm_segment){.selector = 0, .type = 2, .present = 1, .unusable = 1};
	s->gdt.base = sys;
	s->gdt.limit = 7 * 8 - 1;
	s->idt.base = VM_IDT;
	s->idt.limit = 32 * 16 - 1;
	s->cr0 = 0x80050033; /* PG, AM, WP, NE, ET, MP, PE */
	s->cr3 = VM_PML4;
	s->cr4 = 0x20;	 /* PAE */
	s->efer = 0x500; /* LME | LMA */
}

void layout_regs(struct kvm_regs *r, const struct layout_entry *e, unsigned i)
{
	uint64_t area = VM_AREA_BASE + i * VM_AREA_STRIDE;

	memset(r, 0, sizeof(*r));
	r->rip = e->entry;
	r->rsp = area + VM_AREA_STACK;
	r->rdi = area;
	r->rsi = VM_SHARED;
	r->rdx = i;
	r->rflags = 0x3002; /* IOPL 3, interrupts off */
}
