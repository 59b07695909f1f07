/* SPDX-License-Identifier: MIT */
/* What vm/'s flows share: one VMM's pieces and the helpers over them. */
#ifndef VSWAP_VM_VMM_INTERNAL_H
#define VSWAP_VM_VMM_INTERNAL_H

#include <vswap/handler.h>
#include <vswap/store.h>

#include "vm/vm.h"
#include "vm/vmm.h"

struct vmm {
	const struct vmm_opts *o;
	struct vmm_result *r;
	int memfd;
	uint8_t *ram;
	uint64_t ram_size, pages;
	struct vm vm;
	bool vm_made;
	char tmpdir[64];
	struct vswap_store *store;
	struct vswap_handler *h;
	/* --vswapd: the client instead of h and store, and this process's
	 * uffd handed to the daemon */
	struct vswap_client *c;
	int uffd;
	bool have_uffd;
	uint64_t restarts_at_cycle; /* the daemon's restarts when the cycle began */
	/* Each restart's time to serving again, as the client measured it
	 * (end of file seen -> guest resumed), sampled whenever the client
	 * is asked anything: two restarts between samples give one. */
	uint64_t restarts_seen;
	uint64_t *restart_us;
	size_t nrestart_us, cap_restart_us;
};

double vmm_secs(uint64_t t0_ns);
void vmm_stage(struct vmm *m, const char *name, double secs, uint64_t pages, uint64_t bytes,
	       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* serve.c: the in-process handler (h) or vswapd (c) */
int vmm_serve_vswapd(struct vmm *m);
int vmm_unserve(struct vmm *m);
int vmm_enable(struct vmm *m);
int vmm_trim(struct vmm *m);
int vmm_swap_out(struct vmm *m);
int vmm_disable(struct vmm *m);
/* Before guest memory is freed (the balloon): see serve.c. */
int vmm_discard(struct vmm *m, void *addr, size_t len);
int vmm_status(struct vmm *m);
int vmm_wait_state(struct vmm *m, enum vswap_state st, const char *what);
void vmm_cycle_begins(struct vmm *m);
int vmm_guest(struct vmm *m, enum vm_cmd cmd, uint64_t pause_after);
int vmm_guest_wait(struct vmm *m);
int vmm_memory(struct vmm *m);
int vmm_machine(struct vmm *m);
/* vmm_machine() in its two steps (vm_open(), vm_build()). */
int vmm_machine_open(struct vmm *m);
int vmm_machine_build(struct vmm *m);
/* Between the two: @n vCPUs made ahead (vm_make_vcpus()). */
int vmm_machine_vcpus(struct vmm *m, unsigned n);
int vmm_store_path(struct vmm *m);
int vmm_handler(struct vmm *m);
/* A fresh store at r->path (made by vmm_store_path()) and the handler over
 * guest memory on it; each failure is printed. */
int vmm_store_new(struct vmm *m);
/* The vCPUs started and idle: the guest halts at once, waiting for a
 * command. */
int vmm_boot(struct vmm *m);
/* Enable, trim and swap out, each to its end and printed as its stage;
 * @what names the step in an error message.  The guest is idle meanwhile,
 * but for trim's @touch: the guest's TOUCH pass runs during the trim. */
int vmm_enable_stage(struct vmm *m, const char *what);
int vmm_trim_stage(struct vmm *m, const char *what, bool touch);
int vmm_swap_out_stage(struct vmm *m, const char *what);
void vmm_store_opts(const struct vmm *m, struct vswap_store_opts *so);
int vmm_audit(struct vmm *m);
void vmm_teardown(struct vmm *m, bool remove_store);

#endif
