/* SPDX-License-Identifier: MIT */
/*
 * Slots that hold bytes no record references: what a crash leaves behind
 * (invariant 4), between a data write and the index commit, or while freed
 * slots held their old copies (an open store reuses them unpunched and
 * punches the free ones at its clean close).  The swap file's
 * data map is walked against the records in slot order; each run of
 * unreferenced slots is one problem.  Punching them loses nothing, unless an
 * index record is not believed (undecodable, failing its check, misplaced):
 * then a "leaked" slot may be the only copy of one of that record's pages,
 * and it is kept until -y has recorded that record's pages lost.
 */
#include <errno.h>

#include "recovery/internal.h"

static int punch_run(struct vswap_fsck *f, uint64_t first, uint64_t end)
{
	int ret = vswap_store_punch_slots(f->store, first, end - first);

	if (ret)
		fsck_log(f, VSWAP_LOG_ERROR, "%s: cannot punch leaked slots %llu-%llu: %s", f->path,
			 (unsigned long long)first, (unsigned long long)(end - 1),
			 vswap_strerror(ret));
	return ret;
}

static bool bad_groups_resolved(const struct vswap_fsck *f)
{
	for (size_t i = 0; i < f->nbad; i++)
		if (f->bad[i].misplaced || f->bad[i].prob < 0 || !f->prob[f->bad[i].prob].repaired)
			return false;
	return true;
}

static int leaked_run(struct vswap_fsck *f, uint64_t first, uint64_t end)
{
	ssize_t idx;
	/* An index record that is not believed may be these slots' owner: its
	 * entries are unknown, so its slots are kept until it is resolved
	 * (-y recorded its pages lost) or for good (a misplaced record is the
	 * evidence of a damaged key). */
	bool may_repair = fsck_repairing(f) && bad_groups_resolved(f);

	if (end - first == 1)
		idx = fsck_problem(f, VSWAP_PROBLEM_LEAKED_SLOT, FSCK_NONE, first,
				   "slot %llu holds bytes that no record references",
				   (unsigned long long)first);
	else
		idx = fsck_problem(
		    f, VSWAP_PROBLEM_LEAKED_SLOT, FSCK_NONE, first,
		    "slots %llu-%llu (%llu slots) hold bytes that no record references",
		    (unsigned long long)first, (unsigned long long)(end - 1),
		    (unsigned long long)(end - first));
	if (idx < 0)
		return -ENOMEM;
	if (may_repair && punch_run(f, first, end) == 0)
		fsck_problem_repaired(f, idx);
	return 0;
}

/* Advance *k past records whose slot is below @slot; true if one names it
 * (records this run deleted with their group name nothing any more). */
static bool referenced(struct vswap_fsck *f, size_t *k, uint64_t slot)
{
	while (*k < f->nrec && f->by_slot[*k]->slot < slot)
		(*k)++;
	for (size_t j = *k; j < f->nrec && f->by_slot[j]->slot == slot; j++)
		if (!f->by_slot[j]->dropped)
			return true;
	return false;
}

int fsck_check_leaked_slots(struct vswap_fsck *f)
{
	size_t k = 0;

	for (size_t e = 0; e < f->swap_data.n; e++) {
		const struct fsck_range *r = &f->swap_data.r[e];
		uint64_t run = UINT64_MAX;

		for (uint64_t s = r->first; s < r->end; s++) {
			bool used = referenced(f, &k, s);
			int ret = 0;

			if (!used && run == UINT64_MAX)
				run = s;
			if (used && run != UINT64_MAX) {
				ret = leaked_run(f, run, s);
				run = UINT64_MAX;
			}
			if (ret)
				return ret;
		}
		if (run != UINT64_MAX) {
			int ret = leaked_run(f, run, r->end);

			if (ret)
				return ret;
		}
		if (fsck_cancelled(f))
			return -ECANCELED;
	}
	return 0;
}
