/* SPDX-License-Identifier: MIT */
/* The guest program (guest/), built at build time, embedded here. */
	.section .rodata
	.balign 4096
	.globl vm_guest_image
vm_guest_image:
	.incbin VSWAP_GUEST_BIN
	.globl vm_guest_image_end
vm_guest_image_end:
	.section .note.GNU-stack, "", @progbits
