/* SPDX-License-Identifier: MIT */
/* Low memory and the initial vCPU registers (vm/layout.c). */
#ifndef VSWAP_VM_LAYOUT_H
#define VSWAP_VM_LAYOUT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/abi.h"

struct layout_entry {
	uint64_t entry;
};

/* Build low memory (VM_LOW_SIZE bytes of fresh, zeroed memory at @low) for @nvcpus vCPUs and a RAM
 * of @ram_size bytes: -ENOEXEC for a bad image, -E2BIG for too much RAM. */
int layout_build(uint8_t *low, const uint8_t *image, size_t image_len, uint64_t ram_size,
		 unsigned nvcpus, struct layout_entry *out);
/* Segments, tables and control registers of vCPU @i: CPL 3, long mode. */
void layout_sregs(struct kvm_sregs *s, unsigned i);
void layout_regs(struct kvm_regs *r, const struct layout_entry *e, unsigned i);

#endif
