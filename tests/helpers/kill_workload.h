/* SPDX-License-Identifier: MIT */
/*
 * The kill test's victim: a child process that runs a guest (a memfd in two
 * regions, guest threads writing and checking versioned page patterns) and
 * a handler over a store, cycling enable / trim / swap-out / faults /
 * balloon remove / disable forever, and reopening the store with another
 * durability mode every few cycles.  The parent SIGKILLs it at random
 * moments and then audits what it left.
 *
 * Parent and child share one anonymous MAP_SHARED block (struct kw_shared):
 * the child's current phase (so the parent knows where each kill landed),
 * and for every page the highest version the guest has ever written, set
 * before the bytes are written, so that any page found on disk after a kill
 * can be checked as "a version the guest actually wrote".  Versions only
 * grow and are never reused, across children and stores.
 */
#ifndef VSWAP_TESTS_KILL_WORKLOAD_H
#define VSWAP_TESTS_KILL_WORKLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vswap/store.h>

/* Where the child is; the parent records the phase at each kill. */
enum kw_phase {
	KW_CREATE,	  /* creating a fresh store (not crash-atomic: see test_kill.c) */
	KW_OPEN,	  /* opening a repaired store and dropping the dead guest's pages */
	KW_HANDLER,	  /* creating the handler */
	KW_WRITE,	  /* guest writes new versions (handler Ready) */
	KW_ENABLE,	  /* move to staging (copy) or write-protect in place (protect) */
	KW_TOUCH_STAGING, /* guest reads: faults from staging (copy), none (protect) */
	KW_TRIM,	  /* background trim, guest touching meanwhile */
	KW_SWAP_OUT,	  /* background swap-out, guest touching meanwhile */
	KW_TOUCH_FILE,	  /* guest reads and writes: faults from the swap file */
	KW_BALLOON,	  /* MADV_REMOVE of guest ranges while the guest runs */
	KW_DISABLE,	  /* swap-in */
	KW_VERIFY,	  /* guest checks every page */
	KW_REOPEN,	  /* handler destroyed, store closed, reopened in another
			   * durability mode, the handler in the other enable mode */
	KW_PHASES,
};

const char *kw_phase_name(enum kw_phase p);

/* Guest shape: two regions laid end to end in the store's page space. */
#define KW_REGION0_PAGES 384
#define KW_REGION1_PAGES 640
#define KW_PAGES (KW_REGION0_PAGES + KW_REGION1_PAGES)

struct kw_shared {
	_Atomic uint32_t phase;		      /* enum kw_phase */
	_Atomic uint32_t durability;	      /* enum vswap_durability of the open store */
	_Atomic uint32_t enable_mode;	      /* enum vswap_enable_mode of the handler */
	_Atomic uint64_t cycles;	      /* cycles completed, all children */
	_Atomic uint32_t violations;	      /* wrong bytes seen by the guest */
	_Atomic uint32_t failed;	      /* the child hit an error and exits */
	char msg[512];			      /* the first violation or error, in words */
	_Atomic uint64_t phase_ns[KW_PHASES]; /* time spent in each phase, all children */
	_Atomic uint32_t vmax[KW_PAGES];      /* highest version written, per page */
};

/* What one child does; the parent fills it before fork(). */
struct kw_child_args {
	struct kw_shared *sh;
	const char *path;	 /* the swap file */
	const char *staging_dir; /* the test's private directory */
	bool create;		 /* create a fresh store, else open a repaired one */
	uint64_t seed;
	unsigned max_cycles; /* 0: run until killed */
	int progress_fd;     /* one byte per phase change (non-blocking), or -1 */
};

/* Run the workload; returns only when max_cycles were done (exit code 0) or
 * on an error (non-zero, sh->msg says why).  Call in a forked child. */
int kw_child_run(const struct kw_child_args *a);

/* The bytes of version @v of page @p (v == 0: zeros). */
void kw_page_fill(void *buf, uint32_t ps, uint64_t p, uint32_t v);
/* The version of page @p that @buf holds (0 for zeros), or -1 if the bytes
 * are no version of page @p at all (torn, another page's, garbage). */
int64_t kw_page_version(const void *buf, uint32_t ps, uint64_t p);

#endif
