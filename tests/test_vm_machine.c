/* SPDX-License-Identifier: MIT */
/*
 * vswap-vm's KVM machine alone (vm/kvm.c), over plain memory: the RAM's
 * memory slots registered in pieces behind a lazy build.  A guest access to
 * a piece not registered yet waits for it and is done through the VMM's
 * mapping, so the guest may run before its RAM is all in.  Skips (77) where
 * KVM cannot run the guest or the tools (and the guest program) are not
 * built.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <vswap/handler.h>
#include <vswap/store.h>

#ifndef VSWAP_NO_VM
#include "vm/layout.h"
#include "vm/vm.h"

#define RAM_SIZE (40ull << 20) /* three pieces, the last one short */
#define PIECE (16ull << 20)
#define NVCPUS 2u

struct machine {
	struct vm vm;
	bool opened;
	uint8_t *ram;
	int memfd;
};

static int setup(void **state)
{
	struct machine *mc = calloc(1, sizeof(*mc));

	assert_non_null(mc);
	mc->memfd = memfd_create("test-vm-machine", MFD_CLOEXEC);
	assert_true(mc->memfd >= 0);
	assert_int_equal(ftruncate(mc->memfd, (off_t)RAM_SIZE), 0);
	mc->ram =
	    mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mc->memfd, 0);
	assert_true(mc->ram != MAP_FAILED);
	*state = mc;
	return 0;
}

/* The VM, opened in the test itself: cmocka puts its own SIGBUS handler
 * back around each setup and test, and the vCPUs need vm_open()'s. */
static void open_vm(struct machine *mc)
{
	char why[256];

	assert_int_equal(vm_open(&mc->vm, why, sizeof(why)), 0);
	mc->opened = true;
}

static int teardown(void **state)
{
	struct machine *mc = *state;

	if (mc->opened)
		vm_destroy(&mc->vm);
	munmap(mc->ram, RAM_SIZE);
	close(mc->memfd);
	free(mc);
	return 0;
}

/* Pages of vCPU @i's share that did not hold what they should (VERIFY). */
static uint64_t bad_pages(struct vm *vm)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < vm->nvcpus; i++)
		n += vm->vcpus[i].area->bad_pages;
	return n;
}

/* Whether every vCPU is still running (vm->lock held): one that failed
 * (an access it could not make) ends the wait for the others. */
static bool all_running(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state != VCPU_RUNNING)
			return false;
	return true;
}

/*
 * A lazy build with the registration held: the guest starts and reaches its
 * first access to RAM with no RAM slot in.  Every vCPU then waits (none
 * fails, none is served a byte from nowhere); once the pieces go in, the
 * waiting accesses are done through the mapping, the guest writes every
 * page and verifies it, and the host reads the guest's pattern in every
 * piece.
 */
static void access_before_its_piece_waits(void **state)
{
	struct machine *mc = *state;
	struct vm *vm = &mc->vm;
	char why[256];

	open_vm(mc);

	vm->ram_slots.lazy = true;
	vm->ram_slots.hold = true;
	vm->ram_slots.piece = PIECE;
	assert_int_equal(vm_build(vm, mc->ram, RAM_SIZE, NVCPUS, why, sizeof(why)), 0);
	assert_int_equal(vm->ram_slots.npieces, 3);
	assert_int_equal(vm_start(vm), 0);
	assert_int_equal(vm_wait(vm), 0); /* a fresh guest halts at once, idle */
	vm->shared->version = 1;
	assert_int_equal(vm_command(vm, VM_CMD_WRITE, 0), 0);
	pthread_mutex_lock(&vm->lock);
	while (vm->ram_slots.waits < NVCPUS && all_running(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	uint64_t waits = vm->ram_slots.waits, progress = 0;
	unsigned in = vm->ram_slots.nregistered;
	bool running = all_running(vm);

	for (unsigned i = 0; i < NVCPUS; i++)
		progress += vm->vcpus[i].area->progress;
	pthread_mutex_unlock(&vm->lock); /* before an assertion leaves */
	if (!running)
		vm_report_failures(vm, "test_vm_machine");
	assert_true(running);
	assert_int_equal(waits, NVCPUS);
	assert_int_equal(in, 0);
	assert_int_equal(progress, 0);
	vm_ram_release(vm);
	assert_int_equal(vm_wait(vm), 0);
	assert_int_equal(vm_ram_wait(vm), 0);
	assert_int_equal(vm->ram_slots.nregistered, 3);
	assert_true(vm->ram_slots.emulated >= NVCPUS);
	assert_int_equal(vm_command(vm, VM_CMD_VERIFY, 0), 0);
	assert_int_equal(vm_wait(vm), 0);
	assert_int_equal(bad_pages(vm), 0);
	/* What the guest wrote is in the memory, in every piece. */
	for (uint64_t off = 0; off < RAM_SIZE; off += vm->ram_slots.piece) {
		uint64_t p = off / VM_PAGE + 1, word;

		if (vm_zero_page(p, 1))
			p++;
		memcpy(&word, mc->ram + p * VM_PAGE, sizeof(word));
		assert_true(word == vm_word(p, 1, 0));
	}
}

/* Page @p as the guest's WRITE of version 1 leaves it, written by the host. */
static void host_write(uint8_t *ram, uint64_t p)
{
	uint64_t *w = (uint64_t *)(ram + p * VM_PAGE);

	for (uint64_t i = 0; i < VM_PAGE / sizeof(*w); i++)
		w[i] = vm_zero_page(p, 1) ? 0 : vm_word(p, 1, i);
}

/*
 * A page that fails its checksum, reached first by an access the vCPU
 * thread makes itself (its piece was not in): vswap poisons it and the
 * SIGBUS on the vCPU thread ends that access and fails that vCPU with the
 * guest page named, as a SIGBUS inside KVM_RUN does; the other vCPU checks
 * its share and finds nothing wrong.
 */
static void poisoned_page_in_a_waiting_access(void **state)
{
	struct machine *mc = *state;
	struct vm *vm = &mc->vm;
	char why[256], dir[] = "/var/tmp/test-vm-machine.XXXXXX", path[64];
	struct vswap_store *store;
	struct vswap_handler *h;
	struct vswap_page_info pi;

	open_vm(mc);

	for (uint64_t p = 0; p < RAM_SIZE / VM_PAGE; p++)
		host_write(mc->ram, p);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/guest.swap", dir);
	struct vswap_store_opts so = {0};
	struct vswap_region reg = {.addr = mc->ram, .len = RAM_SIZE, .memfd = mc->memfd};

	assert_int_equal(vswap_store_create(path, &so, &store), 0);
	struct vswap_handler_opts ho = {.store = store};

	assert_int_equal(vswap_handler_create(&reg, 1, &ho, &h), 0);
	assert_int_equal(vswap_handler_enable(h), 0);
	assert_int_equal(vswap_handler_swap_out(h), 0);
	assert_int_equal(vswap_handler_wait_state(h, VSWAP_STATE_ACTIVE, 20000), 0);
	/* vCPU 0's VERIFY reads page 0 first: its bytes are damaged on disk. */
	assert_int_equal(vswap_handler_page_info(h, 0, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b = 0;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)((pi.slot + 1) * VM_PAGE + 99)), 1);
	b ^= 0x20;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)((pi.slot + 1) * VM_PAGE + 99)), 1);
	close(fd);

	vm->ram_slots.lazy = true;
	vm->ram_slots.hold = true;
	vm->ram_slots.piece = PIECE;
	assert_int_equal(vm_build(vm, mc->ram, RAM_SIZE, NVCPUS, why, sizeof(why)), 0);
	assert_int_equal(vm_start(vm), 0);
	assert_int_equal(vm_wait(vm), 0);
	vm->shared->version = 1;
	assert_int_equal(vm_command(vm, VM_CMD_VERIFY, 0), 0);
	pthread_mutex_lock(&vm->lock);
	while (vm->ram_slots.waits < NVCPUS && all_running(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	uint64_t waits = vm->ram_slots.waits;
	pthread_mutex_unlock(&vm->lock);
	assert_int_equal(waits, NVCPUS);
	vm_ram_release(vm);
	assert_int_equal(vm_wait(vm), -EIO);
	pthread_mutex_lock(&vm->lock);
	enum vcpu_state s0 = vm->vcpus[0].state, s1 = vm->vcpus[1].state;
	bool bus = vm->vcpus[0].sigbus;
	char err[sizeof(vm->vcpus[0].error)];

	memcpy(err, vm->vcpus[0].error, sizeof(err));
	pthread_mutex_unlock(&vm->lock);
	assert_int_equal(s0, VCPU_FAILED);
	assert_true(bus);
	if (!strstr(err, "SIGBUS on guest page 0 "))
		fail_msg("vCPU 0: %s", err);
	assert_int_equal(s1, VCPU_IDLE);
	assert_int_equal(vm->vcpus[1].area->bad_pages, 0);
	assert_true(vm->vcpus[1].area->progress > 0);
	/* The page is lost: the handler says so when it goes. */
	assert_int_equal(vswap_handler_destroy(h), -EBADMSG);
	vswap_store_close(store);
	assert_int_equal(vswap_store_destroy(path, &so), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* The eager build (every flow but the resume) returns with every piece in. */
static void eager_build_registers_every_piece(void **state)
{
	struct machine *mc = *state;
	struct vm *vm = &mc->vm;
	char why[256];

	open_vm(mc);

	vm->ram_slots.piece = PIECE;
	assert_int_equal(vm_build(vm, mc->ram, RAM_SIZE, NVCPUS, why, sizeof(why)), 0);
	pthread_mutex_lock(&vm->lock);
	bool ended = vm->ram_slots.ended;
	int rc = vm->ram_slots.rc;
	unsigned in = vm->ram_slots.nregistered;
	pthread_mutex_unlock(&vm->lock);
	assert_true(ended);
	assert_int_equal(rc, 0);
	assert_int_equal(in, vm->ram_slots.npieces);
	assert_int_equal(vm_start(vm), 0);
	assert_int_equal(vm_wait(vm), 0);
	vm->shared->version = 1;
	assert_int_equal(vm_command(vm, VM_CMD_WRITE, 0), 0);
	assert_int_equal(vm_wait(vm), 0);
	assert_int_equal(vm->ram_slots.waits, 0);
	assert_int_equal(vm_command(vm, VM_CMD_VERIFY, 0), 0);
	assert_int_equal(vm_wait(vm), 0);
	assert_int_equal(bad_pages(vm), 0);
}

/* Write every page, then verify it: the guest's own check of its RAM. */
static void write_and_verify(struct vm *vm)
{
	assert_int_equal(vm_start(vm), 0);
	assert_int_equal(vm_wait(vm), 0);
	vm->shared->version = 1;
	assert_int_equal(vm_command(vm, VM_CMD_WRITE, 0), 0);
	assert_int_equal(vm_wait(vm), 0);
	assert_int_equal(vm_command(vm, VM_CMD_VERIFY, 0), 0);
	assert_int_equal(vm_wait(vm), 0);
	assert_int_equal(bad_pages(vm), 0);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		assert_true(vm->vcpus[i].area->progress > 0);
}

/* vCPUs made ahead of the build (a resume, before it reads how many the
 * saved guest has) that are fewer than the guest's: the build makes the
 * rest, and every vCPU runs its share. */
static void vcpus_made_ahead_fewer_than_the_guest(void **state)
{
	struct machine *mc = *state;
	struct vm *vm = &mc->vm;
	char why[256];

	open_vm(mc);
	assert_int_equal(vm_make_vcpus(vm, 1, why, sizeof(why)), 0);
	assert_int_equal(vm->nmade, 1);
	assert_int_equal(vm_spawn_vcpus(vm), 0);
	vm->ram_slots.piece = PIECE;
	assert_int_equal(vm_build(vm, mc->ram, RAM_SIZE, NVCPUS, why, sizeof(why)), 0);
	assert_int_equal(vm->nmade, NVCPUS);
	write_and_verify(vm);
}

/* More made ahead than the guest has, their threads spawned: the extra
 * vCPU never enters the guest (its thread waits), the guest's own run and
 * check pass, and vm_destroy() ends its thread and frees it. */
static void vcpus_made_ahead_beyond_the_guest_never_run(void **state)
{
	struct machine *mc = *state;
	struct vm *vm = &mc->vm;
	char why[256];

	open_vm(mc);
	assert_int_equal(vm_make_vcpus(vm, NVCPUS + 1, why, sizeof(why)), 0);
	assert_int_equal(vm_spawn_vcpus(vm), 0);
	vm->ram_slots.piece = PIECE;
	assert_int_equal(vm_build(vm, mc->ram, RAM_SIZE, NVCPUS, why, sizeof(why)), 0);
	assert_int_equal(vm->nmade, NVCPUS + 1);
	assert_int_equal(vm->nvcpus, NVCPUS);
	write_and_verify(vm);
	pthread_mutex_lock(&vm->lock);
	bool went = vm->vcpus[NVCPUS].go;
	uint64_t exits = vm->vcpus[NVCPUS].exits;
	pthread_mutex_unlock(&vm->lock);
	assert_true(vm->vcpus[NVCPUS].started);
	assert_false(went);
	assert_int_equal(exits, 0);
	assert_true(vm->vcpus[NVCPUS].fd >= 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(access_before_its_piece_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(poisoned_page_in_a_waiting_access, setup, teardown),
	    cmocka_unit_test_setup_teardown(eager_build_registers_every_piece, setup, teardown),
	    cmocka_unit_test_setup_teardown(vcpus_made_ahead_fewer_than_the_guest, setup, teardown),
	    cmocka_unit_test_setup_teardown(vcpus_made_ahead_beyond_the_guest_never_run, setup,
					    teardown),
	};
	char why[256];
	struct vm probe;

	if (vm_open(&probe, why, sizeof(why))) {
		fprintf(stderr, "test_vm_machine: skipped: KVM unusable here: %s\n", why);
		vm_destroy(&probe);
		return 77;
	}
	vm_destroy(&probe);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void)
{
	fprintf(stderr, "test_vm_machine: skipped: built without vswap-vm\n");
	return 77;
}
#endif
