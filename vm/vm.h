/* SPDX-License-Identifier: MIT */
/*
 * vswap-vm's machine: a minimal KVM virtual machine whose RAM is a memfd
 * that vswap swaps.  It knows KVM and the guest program's contract
 * (guest/abi.h); it knows nothing of vswap (vm/run.c drives both).
 *
 * Threads: one thread per vCPU runs KVM_RUN; the caller (the VMM's main
 * thread) posts commands to idle vCPUs and waits for them.  A vCPU is idle
 * when its guest halts with no command left (the guest is then paused: it
 * touches no memory until the next command).
 */
#ifndef VSWAP_VM_VM_H
#define VSWAP_VM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest/abi.h"
#include "vm/clock.h"

enum vcpu_state {
	VCPU_RUNNING = 0,
	VCPU_IDLE,   /* halted with its command done */
	VCPU_PAUSED, /* stopped at a pause point, state consistent for saving */
	VCPU_FAILED, /* an exception, a KVM error or a SIGBUS: see error */
	VCPU_EXITED,
};

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	volatile struct vm_area *area; /* host view of its control block */
	/* under vm->lock */
	enum vcpu_state state;
	bool go; /* the VMM lets it (re-)enter the guest */
	char error[256];
	bool sigbus; /* a SIGBUS hit the thread in KVM_RUN */
	uint64_t sigbus_addr;
	uint64_t resumed_ns; /* first VM_PORT_RESUMED (0 = not yet) */
	uint64_t exits;
};

struct vm_saved_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
};

/*
 * The RAM's memory slots, registered in pieces by a thread of their own
 * (vm/kvm.c, "RAM in pieces").  Under vm->lock, but lazy, hold, piece,
 * npieces and order: written before vm_build() starts the thread and the
 * vCPUs (hold also under the lock after).
 */
#define VM_RAM_MAX_PIECES 16
struct vm_ram_slots {
	bool lazy; /* set before vm_build(): the vCPUs may run before every piece is in */
	bool hold; /* tests: the thread waits before its first piece until vm_ram_release() */
	unsigned npieces;
	uint64_t piece; /* bytes of each piece, the last one maybe shorter (0 before
			 * vm_build(): its default; tests set smaller ones) */
	unsigned order[VM_RAM_MAX_PIECES]; /* the pieces in the order they go in */
	uint64_t registered;		   /* bit per piece */
	unsigned nregistered;
	bool ended;	   /* the thread is done (every piece in, or rc) */
	int rc;		   /* a failed registration */
	pthread_cond_t cv; /* a piece registered, the thread ended, or the VM stops */
	pthread_t thread;
	bool begun;   /* the registration began (not locked: the builder's) */
	bool started; /* ... on a thread, to be joined (likewise) */
	/* accesses to RAM that found their piece missing (KVM_EXIT_MMIO) */
	uint64_t waits;	   /* ... and waited for it */
	uint64_t emulated; /* ... and were done through the VMM's mapping */
	/* the thread's clocks: started, first piece in, every piece in */
	struct vm_clock t_start, t_first, t_end;
};

struct vm {
	int kvm, fd;
	int run_size;
	uint64_t tsc_khz;
	uint8_t *low; /* [0, VM_LOW_SIZE) */
	uint8_t *ram; /* the memfd mapping, VM_RAM_BASE in the guest */
	uint64_t ram_size;
	unsigned nvcpus;	  /* the guest's (vm_build()) */
	unsigned nmade;		  /* vCPUs KVM made: nvcpus, or more (vm_make_vcpus()) */
	struct kvm_cpuid2 *cpuid; /* what KVM supports, asked once */
	struct vcpu vcpus[VM_MAX_VCPUS];
	volatile struct vm_shared *shared;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	uint64_t image_sum; /* checksum of the guest program (resume refuses another) */
	struct vm_ram_slots ram_slots;
};

/* The guest program's bytes, built from guest/ and embedded (vm/image.S). */
extern const uint8_t vm_guest_image[];
extern const uint8_t vm_guest_image_end[];

/* Open /dev/kvm and create the VM: low memory, @ram (a mapping of the
 * guest-RAM memfd, @ram_size bytes) at VM_RAM_BASE, @nvcpus vCPUs set up to
 * enter the guest program.  Nothing runs yet.  A negative errno with a
 * message in @why (KVM missing or unusable: -ENODEV, -EACCES, -ENOTSUP). */
int vm_create(struct vm *vm, uint8_t *ram, uint64_t ram_size, unsigned nvcpus, char *why,
	      size_t whylen);
/* vm_create() in its two steps: vm_open() needs nothing of the guest (it
 * opens /dev/kvm, creates the VM and low memory with its slot), vm_build()
 * adds the RAM's slot and the vCPUs.  A resume opens the VM while its store
 * opens, before it knows the guest's size.  vm_destroy() after either. */
int vm_open(struct vm *vm, char *why, size_t whylen);
int vm_build(struct vm *vm, uint8_t *ram, uint64_t ram_size, unsigned nvcpus, char *why,
	     size_t whylen);
/* Between vm_open() and vm_build(): make vCPUs 0..@n-1 in KVM, nothing of
 * the guest in them yet.  A resume makes the vCPUs it expects while its
 * store opens, before it knows how many the saved guest has; vm_build()
 * makes any still missing, and vCPUs made beyond the guest's count never
 * run (KVM has no way to remove one; vm_destroy() frees them). */
int vm_make_vcpus(struct vm *vm, unsigned n, char *why, size_t whylen);
/* With vm->ram_slots.lazy set before it, vm_build() returns once the vCPUs
 * exist and vm_start() registers the RAM's slots behind the guest's start;
 * a vCPU touching a piece not in yet waits for it.  vm_ram_wait() waits for every piece: 0 or the
 * registration's error.  vm_ram_release() lets a held registration go. */
int vm_ram_wait(struct vm *vm);
void vm_ram_release(struct vm *vm);
/* Stop every vCPU thread and free everything but the RAM mapping. */
void vm_destroy(struct vm *vm);

/* Start the vCPU threads; each enters the guest, which halts idle at once
 * (a fresh machine) or continues where it was saved (a restored one). */
int vm_start(struct vm *vm);
/* Before vm_start(): a thread for every vCPU made, waiting until
 * vm_start() lets it enter the guest (a resume makes them while its store
 * opens: the start then wakes them instead of creating them).  The
 * threads of vCPUs beyond nvcpus wait until vm_destroy(). */
int vm_spawn_vcpus(struct vm *vm);

/* Give every vCPU command @cmd over its share of RAM and let them run.
 * All must be idle.  @pause_after: WRITE and VERIFY pause after that many
 * pages. */
int vm_command(struct vm *vm, enum vm_cmd cmd, uint64_t pause_after);
/* Wait until no vCPU is running (idle, paused, failed).  Returns 0 if all
 * are idle, -EINTR if one paused, -EIO if one failed (its error is in
 * vcpu->error; vm_report_failures() prints them). */
int vm_wait(struct vm *vm);
/* Let paused vCPUs go on. */
void vm_unpause(struct vm *vm);
/* Print every failed vCPU's error to stderr; returns how many failed. */
unsigned vm_report_failures(struct vm *vm, const char *prog);

/* Registers of a paused or idle vCPU, and back (before vm_start). */
int vm_save_vcpu(struct vm *vm, unsigned i, struct vm_saved_vcpu *out);
int vm_restore_vcpu(struct vm *vm, unsigned i, const struct vm_saved_vcpu *in);

/* The guest's first-access latency histogram, summed over vCPUs, as
 * microseconds at percentile @q (0..1), and the maximum. */
double vm_latency_us(const struct vm *vm, double q);
double vm_latency_max_us(const struct vm *vm);
void vm_latency_reset(struct vm *vm);
double vm_cycles_to_us(const struct vm *vm, uint64_t cycles);

uint64_t vm_now_ns(void);

/* A bare KVM_SET_USER_MEMORY_REGION of @size bytes of a fresh memfd in a
 * fresh VM: its wall time in *@ms, or a negative errno. */
int vm_bare_slot(uint64_t size, double *ms);

#endif
