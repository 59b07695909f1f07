/* SPDX-License-Identifier: MIT */
/*
 * The kernel's own swap as a baseline (vswap-bench --kernel-swap, root
 * only): a swap file on the benchmark's file system, swapon, the same bytes
 * paged out with MADV_PAGEOUT, then refaulted in order and at random (one
 * thread, then eight on disjoint pages).
 *
 * The swap file must never outlive the run, or the machine is left with a
 * surprise swap device.  Instead of a signal handler with global state, the
 * caller keeps SIGINT/SIGTERM/SIGHUP/SIGQUIT blocked (@stop) and every loop
 * here polls sigpending(): on a pending signal it returns -EINTR, the
 * cleanup (munmap, swapoff, unlink) runs on the normal path, and the caller
 * unblocks the signal afterwards so it then takes its default effect.
 */
#ifndef VSWAP_TOOLS_BENCH_KSWAP_H
#define VSWAP_TOOLS_BENCH_KSWAP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kswap_opts {
	const char *dir;
	uint64_t size;	     /* bytes of anonymous memory swapped */
	uint64_t rand_pages; /* random refaults measured */
	const void *src;     /* incompressible bytes, cycled */
	size_t src_len;
	const sigset_t *stop;
	bool verbose;
};

struct kswap_result {
	double out_gbps;
	double seq_gbps;
	double seq_fault_us; /* mean time per page of the sequential refault */
	double rand_gbps;
	double rand_p50_us;
	double rand_p99_us;
	/* random refaults of distinct pages, pages/s: 8 threads on disjoint
	 * pages, and 1 thread, each over the same number of freshly evicted
	 * pages (like vswap-bench's fault_concurrency_*t_rand rows) */
	double rand8_pages_s, rand1_pages_s;
	uint64_t bad_pages; /* pages that came back with the wrong bytes */
};

/* True when a signal of @stop is pending (the caller keeps them blocked). */
bool kswap_interrupted(const sigset_t *stop);

/* A "Key:   N kB" line of a /proc file, in KiB; -1 if absent. */
long long kswap_proc_kb(const char *file, const char *key);

/*
 * One full kernel-swap measurement.  Returns 0, -EPERM (not root / no
 * CAP_SYS_ADMIN), -EINTR (a signal of @stop is pending) or another errno.
 * The swap file is always swapped off and deleted before returning.
 */
int kswap_run(const struct kswap_opts *o, struct kswap_result *r);

/*
 * The swap-out alone over a swap file whose every block was written (and
 * synced) before: the same bytes paged out with MADV_PAGEOUT until written
 * back, in GB/s.  Returns as kswap_run().
 */
int kswap_out_written(const struct kswap_opts *o, double *gbps);

#endif
