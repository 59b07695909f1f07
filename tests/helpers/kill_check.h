/* SPDX-License-Identifier: MIT */
/*
 * The kill test's audit of a store after a kill and vswap-fsck's repair:
 * beyond the checksums (rfx_check_after_crash), every page the repaired
 * store holds, present or stale, must be byte for byte a version the guest
 * actually wrote for that very page, no page is lost, and every staged
 * copy whose checksum is committed verifies against it and is a version of
 * its page (the others, cut short by the kill, are classified: a version,
 * zeros, or torn).
 */
#ifndef VSWAP_TESTS_KILL_CHECK_H
#define VSWAP_TESTS_KILL_CHECK_H

#include <stdint.h>

#include "tests/helpers/kill_workload.h"

struct kc_result {
	uint64_t present;	/* present pages read, verified and matched */
	uint64_t stale;		/* stale pages read, verified and matched */
	uint64_t lost;		/* pages the index records lost: violations */
	uint64_t staged_summed; /* staged copies verified against their committed
				 * checksum, each a version of its page */
	/* Staged pages whose checksum was not committed (a kill between the
	 * copy's log-ahead commit and its checksum's): */
	uint64_t staged;      /* holding a version of their page */
	uint64_t staged_zero; /* still zero (copy not begun) */
	uint64_t staged_torn; /* part copied (kill inside the copy) */
	uint64_t wrong;	      /* violations: wrong bytes, a failing staged copy,
			       * a lost page */
	char why[256];	      /* the first wrong page, in words */
};

/* Open the store at @path read-only and check it against @sh's versions.
 * Returns 0 when no page was wrong, -1 when one was (r->why), or a negative
 * errno when the store could not be read. */
int kc_check_store(const char *path, const struct kw_shared *sh, struct kc_result *r);

#endif
