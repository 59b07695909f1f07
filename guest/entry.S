/* SPDX-License-Identifier: MIT */
/*
 * The guest's entry and its ring-0 stubs.  The image starts with the header
 * the VMM reads (struct vm_image_header in guest/abi.h).
 *
 * Ring-0 code is kept to a handful of instructions: under PVM it is emulated
 * one instruction at a time.  The guest runs at CPL 3, where hlt raises #GP;
 * the #GP stub halts the vCPU on its behalf (a KVM_EXIT_HLT), steps over the
 * one-byte hlt and returns.  Any other exception is reported to the VMM
 * through VM_PORT_FAULT and the vCPU stays halted.
 */
#define VM_PORT_FAULT 0xe3

	.section .text.head, "ax"
	.code64
	.globl image_header
image_header:
	.quad 0x6d7670617773766f
	.quad guest_entry
	.quad gp_stub
	.quad exc_stubs

	.text
	.globl guest_entry
guest_entry:
	/* rdi = area, rsi = shared, rdx = index; rsp = the vCPU's stack top */
	call guest_main
1:	hlt
	jmp 1b

	/* #GP: error code, rip, cs, rflags, rsp, ss on the ring-0 stack. */
	.globl gp_stub
gp_stub:
	push %rax
	mov 16(%rsp), %rax
	cmpb $0xf4, (%rax)
	jne 2f
	incq 16(%rsp)
	hlt
	pop %rax
	add $8, %rsp
	iretq
2:	mov $13, %eax
	jmp exc_report

	/* Vectors 0-31, VM_EXC_STUB_SIZE (16) bytes each. */
	.balign 16
	.globl exc_stubs
exc_stubs:
	.set vec, 0
	.rept 32
	.balign 16
	mov $vec, %eax
	jmp exc_report
	.set vec, vec + 1
	.endr

exc_report:
	out %eax, $VM_PORT_FAULT
3:	hlt
	jmp 3b

	.section .note.GNU-stack, "", @progbits
