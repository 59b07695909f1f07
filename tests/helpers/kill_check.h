/* SPDX-License-Identifier: MIT */
/*
 * The kill test's audit of a store after a kill and vswap-fsck's repair:
 * beyond the checksums (rfx_check_after_crash), every page the repaired
 * store holds, present or stale, must be byte for byte a version the guest
 * actually wrote for that very page, and the staging file's bytes under
 * every staging record are classified (a version, zeros, or torn).
 */
#ifndef VSWAP_TESTS_KILL_CHECK_H
#define VSWAP_TESTS_KILL_CHECK_H

#include <stdint.h>

#include "tests/helpers/kill_workload.h"

struct kc_result {
	uint64_t present;     /* present pages read, verified and matched */
	uint64_t stale;	      /* stale pages read, verified and matched */
	uint64_t lost;	      /* pages the index records lost */
	uint64_t staged;      /* staged pages holding a version of their page */
	uint64_t staged_zero; /* staged pages still zero (copy not begun) */
	uint64_t staged_torn; /* staged pages part copied (kill inside the copy) */
	uint64_t wrong;	      /* present/stale pages with wrong bytes: violations */
	char why[256];	      /* the first wrong page, in words */
};

/* Open the store at @path read-only and check it against @sh's versions.
 * Returns 0 when no page was wrong, -1 when one was (r->why), or a negative
 * errno when the store could not be read. */
int kc_check_store(const char *path, const struct kw_shared *sh, struct kc_result *r);

#endif
