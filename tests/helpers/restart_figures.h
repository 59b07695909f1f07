/* SPDX-License-Identifier: MIT */
/*
 * A restart's figures as the daemons logged them (at level info): vswapd's
 * "restart figures" line after each resumed attach, and the handler's
 * "resumed:" line before it, which splits the resume into its steps.  The
 * kill tests read them to attribute a slow restart to a step, and to tell
 * work (CPU time) from a busy machine (run-queue wait) from a wait.
 */
#ifndef VSWAP_TESTS_RESTART_FIGURES_H
#define VSWAP_TESTS_RESTART_FIGURES_H

#include <stdbool.h>
#include <stdint.h>

/* Microseconds. */
struct rf_record {
	int pid;			/* the daemon */
	uint64_t start_cpu, start_wait; /* exec -> listening: on a CPU, waiting for one */
	uint64_t accept_to_attach;	/* accepted -> the ATTACH read */
	uint64_t attach, map, takeover, open, handler, uffds, resume;
	uint64_t attach_cpu, attach_wait;		       /* every thread, over the attach */
	uint64_t open_cpu, handler_cpu, uffds_cpu, resume_cpu; /* the process's, per step */
	/* CLOCK_MONOTONIC: listening, the connection accepted, the reply sent */
	uint64_t listening_at, accepted_at, replied_at;
	/* The resume's steps: reconcile, register, wake; or, when every page
	 * was resident (RF_READY), reconcile, unregister, cleanup. */
	uint64_t reconcile, reg, wake;
	enum rf_kind {
		RF_UNKNOWN,
		RF_OUT,	      /* as its pages say: some staged or swapped */
		RF_READY,     /* every page resident */
		RF_PROTECTED, /* protect mode, enabled again: Pending */
	} kind;
};

/* The first record of each daemon in the log at @path, in order: their
 * number (*@out malloc'd, the caller frees it), or -errno. */
int rf_parse(const char *path, struct rf_record **out);
/* The record of daemon @pid, or NULL. */
const struct rf_record *rf_find(const struct rf_record *v, int n, int pid);

#endif
