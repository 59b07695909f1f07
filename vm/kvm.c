/* SPDX-License-Identifier: MIT */
/*
 * The KVM side of vswap-vm: the VM, its two memory slots, the vCPUs and
 * their threads, and the little protocol with the guest program (commands
 * in each vCPU's control block; the guest halts when done).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vm/layout.h"
#include "vm/vm.h"

/*
 * The vCPU a thread runs, for the signal handlers: a SIGBUS raised in
 * KVM_RUN (a poisoned guest page) must reach that vCPU's record.  Thread-
 * local, written once by each vCPU thread before it first enters the guest;
 * a signal handler has no other way to find it.
 */
static __thread struct vcpu *vcpu_self;
/* Set while a vCPU thread does a guest's RAM access itself (ram_access()):
 * a SIGBUS there (a poisoned page) jumps back out of the access instead of
 * returning into it. */
static __thread sigjmp_buf *ram_access_jmp;

uint64_t vm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct vcpu *v = vcpu_self;

	(void)sig, (void)uc;
	if (!v) {
		/* Not a vCPU thread: the VMM itself touched a bad page. */
		static const char msg[] = "vswap-vm: SIGBUS outside a vCPU thread\n";
		ssize_t w = write(2, msg, sizeof(msg) - 1);

		(void)w;
		_exit(3);
	}
	v->sigbus = true;
	v->sigbus_addr = (uint64_t)(uintptr_t)si->si_addr;
	v->run->immediate_exit = 1; /* do not enter the guest again */
	if (ram_access_jmp)
		siglongjmp(*ram_access_jmp, 1);
}

static void on_kick(int sig)
{
	(void)sig; /* only makes KVM_RUN return */
}

static int install_signals(void)
{
	struct sigaction sa = {0};

	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL))
		return -errno;
	struct sigaction sk = {0};

	sk.sa_handler = on_kick;
	sigemptyset(&sk.sa_mask);
	return sigaction(SIGUSR1, &sk, NULL) ? -errno : 0;
}

static int why_fail(char *why, size_t len, int err, const char *fmt, const char *arg)
{
	char what[160];

	snprintf(what, sizeof(what), fmt, arg);
	snprintf(why, len, "%s: %s", what, strerror(-err));
	return err;
}

static int set_memory(struct vm *vm, unsigned slot, uint64_t gpa, void *host, uint64_t len)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot,
	    .guest_phys_addr = gpa,
	    .memory_size = len,
	    .userspace_addr = (uint64_t)(uintptr_t)host,
	};

	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

/*
 * RAM in pieces.  KVM's cost of a memory slot grows with its size (under
 * shadow paging, PVM here: a vmalloc'd and cleared reverse map of 8 bytes
 * per 4 KiB page, 2.4 ms of CPU for 4 GiB), and each registration waits for
 * an SRCU grace period besides; nothing the vCPUs need to be created or to
 * start waits for it.  So the RAM is registered as up to VM_RAM_MAX_PIECES
 * slots (1..n) of at least VM_RAM_PIECE_MIN by a thread of its own: while
 * the vCPUs are created (vm_build() returns once every piece is in), or,
 * for a lazy build (a resume), from vm_start() on, behind the guest's
 * first instructions, so that it takes no core from the build.
 *
 * A guest access to a piece not registered yet finds no slot: KVM exits
 * with KVM_EXIT_MMIO.  The vCPU thread then waits until that piece is in
 * and does the access itself through the VMM's mapping of the same memory
 * (a fault there is served by vswap like any other), and KVM completes the
 * instruction with it at the next KVM_RUN.  The guest's code, page tables
 * and stacks are in low memory (slot 0, registered by vm_open()), so it runs
 * from its first instruction; only its RAM accesses can wait, and each
 * piece at most once per vCPU (after it KVM maps the page itself).  The
 * guest program uses general registers only (no SSE), which KVM's
 * instruction emulator completes for any access it makes.
 *
 * The pieces go in the order the vCPUs' shares start (each vCPU's share is
 * a contiguous part of RAM): the first piece of every share, then the
 * second, and so on.
 */
#define VM_RAM_PIECE_MIN (256ull << 20)

static void ram_plan(struct vm *vm)
{
	struct vm_ram_slots *rs = &vm->ram_slots;
	uint64_t piece = rs->piece ? rs->piece : VM_RAM_PIECE_MIN, two_mib = 2ull << 20;

	piece = (piece + two_mib - 1) / two_mib * two_mib;
	if (vm->ram_size / VM_RAM_MAX_PIECES > piece)
		piece = (vm->ram_size / VM_RAM_MAX_PIECES + two_mib - 1) / two_mib * two_mib;
	rs->piece = piece;
	rs->npieces = (unsigned)((vm->ram_size + piece - 1) / piece);
	unsigned n = 0, nv = vm->nvcpus ? vm->nvcpus : 1, *order = rs->order;
	uint64_t chosen = 0;

	for (unsigned k = 0; n < rs->npieces && k < rs->npieces; k++)
		for (unsigned i = 0; i < nv; i++) {
			uint64_t first = vm->ram_size / VM_PAGE * i / nv * VM_PAGE / piece;
			uint64_t end = i + 1 < nv
					   ? vm->ram_size / VM_PAGE * (i + 1) / nv * VM_PAGE / piece
					   : rs->npieces;
			uint64_t p = first + k;

			if (p < end && p < rs->npieces && !(chosen >> p & 1)) {
				chosen |= 1ull << p;
				order[n++] = (unsigned)p;
			}
		}
	for (unsigned p = 0; p < rs->npieces; p++)
		if (!(chosen >> p & 1))
			order[n++] = p;
}

static void *ram_slots_main(void *arg)
{
	struct vm *vm = arg;
	struct vm_ram_slots *rs = &vm->ram_slots;
	int fd = -1, rc = 0;

	pthread_mutex_lock(&vm->lock);
	while (rs->hold && !vm->stopping)
		pthread_cond_wait(&rs->cv, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	vm_clock_read(&rs->t_start, &fd);
	for (unsigned i = 0; i < rs->npieces && !rc; i++) {
		uint64_t p = rs->order[i], off = p * rs->piece;
		uint64_t len = vm->ram_size - off < rs->piece ? vm->ram_size - off : rs->piece;

		if (vm->stopping)
			rc = -ECANCELED;
		else
			rc = set_memory(vm, 1 + (unsigned)p, VM_RAM_BASE + off, vm->ram + off, len);
		pthread_mutex_lock(&vm->lock);
		if (!rc) {
			rs->registered |= 1ull << p;
			if (!rs->nregistered++)
				vm_clock_read(&rs->t_first, &fd);
		}
		pthread_cond_broadcast(&rs->cv);
		pthread_mutex_unlock(&vm->lock);
	}
	vm_clock_read(&rs->t_end, &fd);
	vm_clock_done(&fd);
	pthread_mutex_lock(&vm->lock);
	rs->rc = rc;
	rs->ended = true;
	pthread_cond_broadcast(&rs->cv);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* The registration's thread, once (the builder's thread: vm_build(),
 * vm_start(), vm_ram_wait()); in the caller if no thread can be made. */
static void ram_slots_begin(struct vm *vm)
{
	struct vm_ram_slots *rs = &vm->ram_slots;

	if (rs->started || rs->begun)
		return;
	rs->begun = true;
	rs->started = pthread_create(&rs->thread, NULL, ram_slots_main, vm) == 0;
	if (!rs->started)
		ram_slots_main(vm);
}

int vm_ram_wait(struct vm *vm)
{
	struct vm_ram_slots *rs = &vm->ram_slots;
	int rc;

	ram_slots_begin(vm);
	pthread_mutex_lock(&vm->lock);
	while (!rs->ended && !vm->stopping)
		pthread_cond_wait(&rs->cv, &vm->lock);
	rc = rs->ended ? rs->rc : -ECANCELED;
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

void vm_ram_release(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->ram_slots.hold = false;
	pthread_cond_broadcast(&vm->ram_slots.cv);
	pthread_mutex_unlock(&vm->lock);
}

/*
 * The CPUID the vCPUs get: what KVM supports, asked once per VM.  Asking
 * runs CPUID over every leaf, and under nested virtualization each CPUID
 * exits to the host's hypervisor: 0.6 ms here, once for every vCPU before.
 */
static int cpuid_supported(struct vm *vm)
{
	unsigned n = 128;

	if (vm->cpuid)
		return 0;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (!c)
		return -ENOMEM;
	c->nent = n;
	if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int rc = -errno;

		free(c);
		return rc;
	}
	vm->cpuid = c;
	return 0;
}

/* vCPU @i as KVM makes it: its CPUID set and its kvm_run mapped, nothing
 * of the guest in it yet (vcpu_layout()). */
static int vcpu_make(struct vm *vm, unsigned i, char *why, size_t whylen)
{
	struct vcpu *v = &vm->vcpus[i];
	int rc = cpuid_supported(vm);

	if (rc)
		return why_fail(why, whylen, rc, "KVM_GET_SUPPORTED_CPUID%s", "");
	v->vm = vm;
	v->index = i;
	v->area = (volatile struct vm_area *)(vm->low + VM_AREA_BASE + i * VM_AREA_STRIDE);
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, i);
	if (v->fd < 0)
		return why_fail(why, whylen, -errno, "KVM_CREATE_VCPU %s", "");
	if (ioctl(v->fd, KVM_SET_CPUID2, vm->cpuid) < 0)
		return why_fail(why, whylen, -errno, "KVM_SET_CPUID2%s", "");
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return why_fail(why, whylen, -errno, "mmap of kvm_run%s", "");
	}
	return 0;
}

/* The guest program's entry state in a made vCPU (64-bit, CPL 3). */
static int vcpu_layout(struct vm *vm, unsigned i, const struct layout_entry *e, char *why,
		       size_t whylen)
{
	struct vcpu *v = &vm->vcpus[i];
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return why_fail(why, whylen, -errno, "KVM_GET_SREGS%s", "");
	layout_sregs(&sregs, i);
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return why_fail(why, whylen, -errno, "KVM_SET_SREGS (64-bit, CPL 3)%s", "");
	layout_regs(&regs, e, i);
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return why_fail(why, whylen, -errno, "KVM_SET_REGS%s", "");
	return 0;
}

int vm_make_vcpus(struct vm *vm, unsigned n, char *why, size_t whylen)
{
	if (n > VM_MAX_VCPUS)
		return why_fail(why, whylen, -EINVAL, "more than %s vCPUs", "VM_MAX_VCPUS");
	for (; vm->nmade < n; vm->nmade++) {
		int rc = vcpu_make(vm, vm->nmade, why, whylen);

		if (rc)
			return rc;
	}
	return 0;
}

int vm_open(struct vm *vm, char *why, size_t whylen)
{
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->kvm = vm->fd = -1;
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_cond_init(&vm->ram_slots.cv, NULL);
	rc = install_signals();
	if (rc)
		return why_fail(why, whylen, rc, "signal handlers%s", "");
	vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm < 0) {
		rc = -errno;
		return why_fail(why, whylen, rc == -ENOENT ? -ENODEV : rc, "/dev/kvm%s", "");
	}
	if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return why_fail(why, whylen, -ENOTSUP, "/dev/kvm: API version is not %s", "12");
	if (ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0 ||
	    ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0)
		return why_fail(why, whylen, -ENOTSUP, "/dev/kvm lacks %s",
				"KVM_CAP_USER_MEMORY or KVM_CAP_IMMEDIATE_EXIT");
	vm->run_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return why_fail(why, whylen, -ENOTSUP, "KVM_GET_VCPU_MMAP_SIZE%s", "");
	vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		return why_fail(why, whylen, -errno, "KVM_CREATE_VM%s", "");
	/* Only hardware without unrestricted guests needs it; harmless elsewhere. */
	ioctl(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	vm->low =
	    mmap(NULL, VM_LOW_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->low == MAP_FAILED) {
		vm->low = NULL;
		return why_fail(why, whylen, -errno, "low memory%s", "");
	}
	/* The low memory's slot now: what it holds is written by vm_build(),
	 * and the guest reads it only once it runs. */
	rc = set_memory(vm, 0, 0, vm->low, VM_LOW_SIZE);
	if (rc)
		return why_fail(why, whylen, rc, "KVM_SET_USER_MEMORY_REGION%s", "");
	return 0;
}

int vm_build(struct vm *vm, uint8_t *ram, uint64_t ram_size, unsigned nvcpus, char *why,
	     size_t whylen)
{
	struct layout_entry e;
	int rc;

	vm->ram = ram;
	vm->ram_size = ram_size;
	vm->nvcpus = nvcpus;
	rc = layout_build(vm->low, vm_guest_image, (size_t)(vm_guest_image_end - vm_guest_image),
			  ram_size, nvcpus, &e);
	if (rc)
		return why_fail(why, whylen, rc, "guest layout%s", "");
	vm->shared = (volatile struct vm_shared *)(vm->low + VM_SHARED);
	vm->shared->ram_base = VM_RAM_BASE;
	vm->shared->ram_pages = ram_size / VM_PAGE;
	vm->shared->vcpus = nvcpus;
	vm->image_sum = 0;
	for (const uint8_t *p = vm_guest_image; p < vm_guest_image_end; p++)
		vm->image_sum = (vm->image_sum ^ *p) * 0x100000001b3ull; /* FNV-1a */
	struct vm_ram_slots *rs = &vm->ram_slots;

	ram_plan(vm); /* before any vCPU runs: ram_access() reads it unlocked */
	if (!rs->lazy)
		ram_slots_begin(vm);
	rc = vm_make_vcpus(vm, nvcpus, why, whylen);
	for (unsigned i = 0; i < nvcpus && !rc; i++) {
		struct vcpu *v = &vm->vcpus[i];
		uint64_t pages = ram_size / VM_PAGE;

		rc = vcpu_layout(vm, i, &e, why, whylen);
		if (!rc) {
			v->area->first = pages * i / nvcpus;
			v->area->end = pages * (i + 1) / nvcpus;
		}
	}
	if (rc)
		return rc;
	/* A lazy build leaves the RAM to vm_start(). */
	int src = rs->lazy ? 0 : vm_ram_wait(vm);

	if (src)
		return why_fail(why, whylen, src, "KVM_SET_USER_MEMORY_REGION%s", "");
	int khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);

	vm->tsc_khz = khz > 0 ? (uint64_t)khz : 1000000;
	return 0;
}

int vm_create(struct vm *vm, uint8_t *ram, uint64_t ram_size, unsigned nvcpus, char *why,
	      size_t whylen)
{
	int rc = vm_open(vm, why, whylen);

	return rc ? rc : vm_build(vm, ram, ram_size, nvcpus, why, whylen);
}

int vm_bare_slot(uint64_t size, double *ms)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vmfd = -1, memfd = -1, rc = 0;
	void *ram = MAP_FAILED;

	if (kvm < 0)
		return -errno;
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	memfd = memfd_create("vswap-vm-bare-slot", MFD_CLOEXEC);
	if (vmfd < 0 || memfd < 0 || ftruncate(memfd, (off_t)size))
		rc = -errno;
	if (!rc) {
		ram =
		    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
		if (ram == MAP_FAILED)
			rc = -errno;
	}
	if (!rc) {
		struct vm bare = {.fd = vmfd};
		uint64_t t0 = vm_now_ns();

		rc = set_memory(&bare, 1, VM_RAM_BASE, ram, size);
		*ms = (double)(vm_now_ns() - t0) / 1e6;
	}
	if (ram != MAP_FAILED)
		munmap(ram, size);
	if (memfd >= 0)
		close(memfd);
	if (vmfd >= 0)
		close(vmfd);
	close(kvm);
	return rc;
}

/* ---- the vCPU threads ------------------------------------------------------ */

static void vcpu_fail(struct vcpu *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vcpu_fail(struct vcpu *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->error, sizeof(v->error), fmt, ap);
	va_end(ap);
	v->state = VCPU_FAILED;
	v->go = false;
}

static void describe_sigbus(struct vcpu *v)
{
	struct vm *vm = v->vm;
	uint64_t a = v->sigbus_addr, base = (uint64_t)(uintptr_t)vm->ram;

	if (a >= base && a < base + vm->ram_size)
		vcpu_fail(v,
			  "vCPU %u: SIGBUS on guest page %llu (guest-physical %#llx): the page "
			  "failed verification and was poisoned, not served",
			  v->index, (unsigned long long)((a - base) / VM_PAGE),
			  (unsigned long long)(VM_RAM_BASE + a - base));
	else
		vcpu_fail(v, "vCPU %u: SIGBUS at host address %#llx", v->index,
			  (unsigned long long)a);
}

/* One exit; the lock is held.  Returns true to enter the guest again. */
static bool vcpu_exit(struct vcpu *v)
{
	struct kvm_run *r = v->run;

	switch (r->exit_reason) {
	case KVM_EXIT_HLT:
		if (v->area->done_seq == v->area->cmd_seq) {
			v->state = VCPU_IDLE;
			v->go = false;
		}
		return true;
	case KVM_EXIT_IO: {
		uint32_t val = 0;

		if (r->io.direction == KVM_EXIT_IO_OUT && r->io.size == 4)
			memcpy(&val, (uint8_t *)r + r->io.data_offset, 4);
		switch (r->io.port) {
		case VM_PORT_PAUSE:
			if (!v->vm->shared->pause && !v->area->pause_after)
				return true; /* a pause point left over from a resumed save */
			v->state = VCPU_PAUSED;
			v->go = false;
			return true;
		case VM_PORT_RESUMED:
			if (!v->resumed_ns)
				v->resumed_ns = vm_now_ns();
			return true;
		case VM_PORT_FAULT: {
			struct kvm_regs regs;

			ioctl(v->fd, KVM_GET_REGS, &regs);
			vcpu_fail(v, "vCPU %u: guest exception %u (rsp %#llx)", v->index, val,
				  (unsigned long long)regs.rsp);
			return false;
		}
		default:
			vcpu_fail(v, "vCPU %u: I/O to unknown port %#x", v->index, r->io.port);
			return false;
		}
	}
	case KVM_EXIT_MMIO:
		vcpu_fail(v, "vCPU %u: access outside guest memory at %#llx", v->index,
			  (unsigned long long)r->mmio.phys_addr);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fail(v, "vCPU %u: triple fault (KVM_EXIT_SHUTDOWN)", v->index);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_fail(v, "vCPU %u: entry failed (hardware reason %#llx)", v->index,
			  (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_fail(v, "vCPU %u: KVM internal error %u", v->index, r->internal.suberror);
		return false;
	case KVM_EXIT_INTR:
		return true;
	default:
		vcpu_fail(v, "vCPU %u: unexpected exit %u", v->index, r->exit_reason);
		return false;
	}
}

/* After a pause exit the out is not complete until the next KVM_RUN: run
 * once with immediate_exit so the saved registers are past it. */
static void complete_pending_io(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	ioctl(v->fd, KVM_RUN, 0);
	v->run->immediate_exit = 0;
}

/* One access of @len bytes at @host, as the guest's instruction made it. */
static void ram_copy(struct kvm_run *r, uint8_t *host)
{
	uint32_t len = r->mmio.len;

	if (r->mmio.is_write)
		memcpy(host, r->mmio.data, len);
	else
		memcpy(r->mmio.data, host, len);
}

enum ram_access_result { RAM_NOT_RAM, RAM_DONE, RAM_FAILED };

/*
 * An exit for an access to a RAM piece not registered yet ("RAM in
 * pieces"): wait for the piece, then make the access through the VMM's
 * mapping; KVM completes the instruction with it at the next KVM_RUN.
 * RAM_NOT_RAM: not such an exit (vcpu_exit() judges it); RAM_FAILED: the
 * VM stops, the registration failed (v->error) or the page is poisoned
 * (v->sigbus).  The lock is not held.
 */
static enum ram_access_result ram_access(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct vm_ram_slots *rs = &vm->ram_slots;
	struct kvm_run *r = v->run;
	uint64_t gpa = r->mmio.phys_addr;

	if (r->exit_reason != KVM_EXIT_MMIO || gpa < VM_RAM_BASE ||
	    gpa - VM_RAM_BASE >= vm->ram_size || r->mmio.len > sizeof(r->mmio.data) ||
	    gpa - VM_RAM_BASE + r->mmio.len > vm->ram_size || !rs->piece)
		return RAM_NOT_RAM;
	uint64_t off = gpa - VM_RAM_BASE, p = off / rs->piece;
	bool waited = false;

	pthread_mutex_lock(&vm->lock);
	while (!(rs->registered >> p & 1) && !rs->ended && !vm->stopping) {
		if (!waited) {
			rs->waits++;
			pthread_cond_broadcast(&vm->cond); /* for a test that holds the pieces */
		}
		waited = true;
		pthread_cond_wait(&rs->cv, &vm->lock);
	}
	bool in = rs->registered >> p & 1, stop = vm->stopping;

	if (!in && !stop)
		vcpu_fail(v, "vCPU %u: guest RAM at %#llx has no memory slot: %s", v->index,
			  (unsigned long long)gpa,
			  rs->rc ? strerror(-rs->rc) : "its registration ended");
	if (in)
		rs->emulated++;
	pthread_mutex_unlock(&vm->lock);
	if (!in)
		return RAM_FAILED;
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		ram_access_jmp = NULL;
		return RAM_FAILED; /* v->sigbus: vcpu_main() describes it */
	}
	ram_access_jmp = &jb;
	ram_copy(r, vm->ram + off);
	ram_access_jmp = NULL;
	return RAM_DONE;
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t unblock;

	vcpu_self = v;
	sigemptyset(&unblock);
	sigaddset(&unblock, SIGUSR1);
	sigaddset(&unblock, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
	pthread_mutex_lock(&vm->lock);
	for (;;) {
		while (!v->go && !vm->stopping)
			pthread_cond_wait(&vm->cond, &vm->lock);
		if (vm->stopping)
			break;
		pthread_mutex_unlock(&vm->lock);
		int rc = ioctl(v->fd, KVM_RUN, 0);
		enum ram_access_result ra = RAM_NOT_RAM;

		while (rc == 0 && (ra = ram_access(v)) == RAM_DONE)
			rc = ioctl(v->fd, KVM_RUN, 0);
		int err = rc < 0 ? errno : 0;

		pthread_mutex_lock(&vm->lock);
		v->exits++;
		if (ra == RAM_FAILED && !v->sigbus) {
			/* stopping, or failed with its reason (ram_access()) */
		} else if (v->sigbus) {
			describe_sigbus(v);
		} else if (rc < 0 && err == EINTR) {
			v->run->immediate_exit = 0; /* a kick */
		} else if (rc < 0) {
			vcpu_fail(v, "vCPU %u: KVM_RUN: %s", v->index, strerror(err));
		} else if (vcpu_exit(v) && v->state == VCPU_PAUSED) {
			complete_pending_io(v);
		}
		pthread_cond_broadcast(&vm->cond);
	}
	v->state = VCPU_EXITED;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* A thread for each made vCPU that has none, waiting for its go. */
static int spawn(struct vm *vm, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->started)
			continue;
		int rc = pthread_create(&v->thread, NULL, vcpu_main, v);

		if (rc)
			return -rc;
		v->started = true;
	}
	return 0;
}

int vm_spawn_vcpus(struct vm *vm)
{
	return spawn(vm, vm->nmade);
}

int vm_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		vm->vcpus[i].state = VCPU_RUNNING;
		vm->vcpus[i].go = true;
	}
	/* Threads spawned ahead (vm_spawn_vcpus()) wait for this. */
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	int rc = spawn(vm, vm->nvcpus);

	if (rc)
		return rc;
	/* A lazy build's RAM goes in now, behind the guest's first
	 * instructions: its registration takes no core from the build. */
	ram_slots_begin(vm);
	return 0;
}

int vm_command(struct vm *vm, enum vm_cmd cmd, uint64_t pause_after)
{
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state != VCPU_IDLE) {
			pthread_mutex_unlock(&vm->lock);
			return -EBUSY;
		}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		v->area->cmd = cmd;
		v->area->pause_after = pause_after;
		v->area->progress = 0;
		v->area->cmd_seq++;
		v->state = VCPU_RUNNING;
		v->go = true;
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_wait(struct vm *vm)
{
	int rc;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		unsigned running = 0, paused = 0, failed = 0;

		for (unsigned i = 0; i < vm->nvcpus; i++) {
			enum vcpu_state s = vm->vcpus[i].state;

			running += s == VCPU_RUNNING;
			paused += s == VCPU_PAUSED;
			failed += s == VCPU_FAILED || s == VCPU_EXITED;
		}
		if (!running) {
			rc = failed ? -EIO : paused ? -EINTR : 0;
			break;
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

void vm_unpause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->state == VCPU_PAUSED) {
			v->state = VCPU_RUNNING;
			v->go = true;
		}
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

unsigned vm_report_failures(struct vm *vm, const char *prog)
{
	unsigned n = 0;

	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state == VCPU_FAILED) {
			fprintf(stderr, "%s: %s\n", prog, vm->vcpus[i].error);
			n++;
		}
	pthread_mutex_unlock(&vm->lock);
	return n;
}

int vm_save_vcpu(struct vm *vm, unsigned i, struct vm_saved_vcpu *out)
{
	struct vcpu *v = &vm->vcpus[i];

	if (ioctl(v->fd, KVM_GET_REGS, &out->regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &out->sregs) < 0)
		return -errno;
	return 0;
}

int vm_restore_vcpu(struct vm *vm, unsigned i, const struct vm_saved_vcpu *in)
{
	struct vcpu *v = &vm->vcpus[i];

	if (ioctl(v->fd, KVM_SET_SREGS, &in->sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &in->regs) < 0)
		return -errno;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->stopping = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_cond_broadcast(&vm->ram_slots.cv);
	for (unsigned i = 0; i < vm->nmade; i++)
		if (vm->vcpus[i].run)
			vm->vcpus[i].run->immediate_exit = 1;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nmade; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->started)
			continue;
		/* Kick a vCPU in KVM_RUN until its thread is gone. */
		while (pthread_tryjoin_np(v->thread, NULL) == EBUSY) {
			pthread_kill(v->thread, SIGUSR1);
			struct timespec ts = {0, 1000000};

			nanosleep(&ts, NULL);
		}
	}
	if (vm->ram_slots.started)
		pthread_join(vm->ram_slots.thread, NULL);
	/* Every vCPU made, those beyond nvcpus too (vm_make_vcpus()). */
	for (unsigned i = 0; i < vm->nmade; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, (size_t)vm->run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
	}
	free(vm->cpuid);
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->kvm >= 0)
		close(vm->kvm);
	if (vm->low)
		munmap(vm->low, VM_LOW_SIZE);
	pthread_cond_destroy(&vm->ram_slots.cv);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

/* ---- the guest's latency histograms ------------------------------------------ */

double vm_cycles_to_us(const struct vm *vm, uint64_t cycles)
{
	return (double)cycles * 1000.0 / (double)vm->tsc_khz;
}

double vm_latency_us(const struct vm *vm, double q)
{
	uint64_t total = 0, seen = 0;

	for (unsigned i = 0; i < vm->nvcpus; i++)
		total += vm->vcpus[i].area->timed;
	if (!total)
		return 0;
	uint64_t want = (uint64_t)(q * (double)(total - 1)) + 1;

	for (unsigned b = 0; b < VM_HIST_BUCKETS; b++) {
		for (unsigned i = 0; i < vm->nvcpus; i++)
			seen += vm->vcpus[i].area->hist[b];
		if (seen >= want)
			return vm_cycles_to_us(vm, vm_hist_floor(b));
	}
	return 0;
}

double vm_latency_max_us(const struct vm *vm)
{
	uint64_t m = 0;

	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].area->max_cycles > m)
			m = vm->vcpus[i].area->max_cycles;
	return vm_cycles_to_us(vm, m);
}

void vm_latency_reset(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		volatile struct vm_area *a = vm->vcpus[i].area;

		a->timed = a->max_cycles = 0;
		for (unsigned b = 0; b < VM_HIST_BUCKETS; b++)
			a->hist[b] = 0;
	}
}
