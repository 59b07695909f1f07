/* SPDX-License-Identifier: MIT */
/*
 * Turning record verdicts into problems and repairs.  Rules:
 *   - a present page whose bytes are bad, missing or unreachable (slot out
 *     of range, slot owned by another page) is marked lost: never dropped
 *     silently, listed in lost_pages, poisoned by a later swap-in.  That
 *     changes what a swap-in does, so only -y does it;
 *   - a stale copy in that state is dropped: the guest holds the page, so
 *     nothing is lost (-p);
 *   - an index record that cannot be decoded hides which of its pages had
 *     bytes, so -y marks every page of it that the store did not load lost.
 * Every change goes through the store's API and is durable at its commit.
 */
#include <errno.h>

#include "recovery/internal.h"

static void note_lost(struct vswap_fsck *f, uint64_t page)
{
	if (fsck_lost_add(f, page))
		fsck_log(f, VSWAP_LOG_ERROR, "out of memory listing lost page %llu",
			 (unsigned long long)page);
}

/* Drop a stale copy.  A record the store left out of its tables is dropped
 * by marking it lost (which rewrites its group) and then freeing it. */
static int drop_stale(struct vswap_fsck *f, uint64_t page)
{
	struct vswap_page_info pi;
	int ret = vswap_store_page(f->store, page, &pi);

	if (ret)
		return ret;
	if (pi.state == VSWAP_PAGE_NONE && (ret = vswap_store_mark_lost(f->store, page)))
		return ret;
	ret = (int)vswap_store_free(f->store, page, 1);
	return ret < 0 ? ret : 0;
}

/* Apply the repair a bad record's state calls for; true if done. */
static bool repair_record(struct vswap_fsck *f, const struct fsck_record *r)
{
	int ret;

	if (r->state == VSWAP_PAGE_STALE) {
		if (!fsck_repairing(f))
			return false;
		ret = drop_stale(f, r->page);
	} else {
		bool already_lost = r->state == VSWAP_PAGE_LOST;

		if (!(already_lost ? fsck_repairing(f) : fsck_repairing_all(f)))
			return false;
		ret = vswap_store_mark_lost(f->store, r->page);
		if (!ret)
			note_lost(f, r->page);
	}
	if (ret)
		fsck_log(f, VSWAP_LOG_ERROR, "%s: cannot repair the record of page %llu: %s", f->path,
			 (unsigned long long)r->page, vswap_strerror(ret));
	return ret == 0;
}

static const char *state_word(const struct fsck_record *r)
{
	return vswap_page_state_name(r->state);
}

static ssize_t describe_missing(struct vswap_fsck *f, const struct fsck_record *r)
{
	uint64_t end = (r->slot + 2) * (uint64_t)f->page_size;

	if (r->io_error)
		return fsck_problem(f, VSWAP_PROBLEM_MISSING_DATA, r->page, r->slot,
				    "page %llu (%s): reading slot %llu failed: %s",
				    (unsigned long long)r->page, state_word(r),
				    (unsigned long long)r->slot, vswap_strerror(r->io_error));
	if (end > f->swap_data.file_size)
		return fsck_problem(f, VSWAP_PROBLEM_MISSING_DATA, r->page, r->slot,
				    "page %llu (%s): slot %llu lies past the end of the swap file "
				    "(%llu bytes)",
				    (unsigned long long)r->page, state_word(r),
				    (unsigned long long)r->slot,
				    (unsigned long long)f->swap_data.file_size);
	return fsck_problem(f, VSWAP_PROBLEM_MISSING_DATA, r->page, r->slot,
			    "page %llu (%s): slot %llu is a hole in the swap file",
			    (unsigned long long)r->page, state_word(r), (unsigned long long)r->slot);
}

static ssize_t describe(struct vswap_fsck *f, const struct fsck_record *r)
{
	unsigned long long page = r->page, slot = r->slot;

	switch (r->verdict) {
	case FSCK_BAD_PAGE:
		return fsck_problem(f, VSWAP_PROBLEM_BAD_RECORD, r->page,
				    r->slot == UINT64_MAX ? FSCK_NONE : r->slot,
				    "record of page %llu lies beyond the page-index space (%llu pages)",
				    page, (unsigned long long)f->total_pages);
	case FSCK_OUT_OF_RANGE:
		return fsck_problem(f, VSWAP_PROBLEM_SLOT_OUT_OF_RANGE, r->page, r->slot,
				    "page %llu (%s) names slot %llu, past the limit of %llu slots",
				    page, state_word(r), slot, (unsigned long long)f->slot_limit);
	case FSCK_DOUBLE:
		return fsck_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, r->page, r->slot,
				    "page %llu (%s) names slot %llu, which another page owns", page,
				    state_word(r), slot);
	case FSCK_MISSING:
		return describe_missing(f, r);
	case FSCK_MISMATCH:
		return fsck_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, r->page, r->slot,
				    "page %llu (%s): bytes of slot %llu fail their XXH3 %016llx", page,
				    state_word(r), slot, (unsigned long long)r->xxh3);
	default:
		return -1;
	}
}

/* Pages of an undecodable group that the store could not load. */
static void repair_bad_group(struct vswap_fsck *f, const struct fsck_bad_group *g)
{
	uint64_t end = g->first + g->pages;
	int failed = 0;

	if (!fsck_repairing_all(f) || g->first >= f->total_pages)
		return;
	if (end > f->total_pages)
		end = f->total_pages;
	for (uint64_t p = g->first; p < end; p++) {
		struct vswap_page_info pi;

		if (vswap_store_page(f->store, p, &pi) || pi.state != VSWAP_PAGE_NONE)
			continue;
		if (vswap_store_mark_lost(f->store, p) == 0)
			note_lost(f, p);
		else
			failed++;
	}
	if (!failed)
		fsck_problem_repaired(f, g->prob);
}

int fsck_report_records(struct vswap_fsck *f)
{
	for (size_t i = 0; i < f->nrec; i++) {
		const struct fsck_record *r = &f->rec[i];
		ssize_t idx;

		if (r->verdict == FSCK_OK || r->verdict == FSCK_UNCHECKED) {
			if (r->state == VSWAP_PAGE_LOST && r->page < f->total_pages)
				note_lost(f, r->page);
			continue;
		}
		idx = describe(f, r);
		if (idx < 0)
			return -ENOMEM;
		if (r->verdict != FSCK_BAD_PAGE && repair_record(f, r))
			fsck_problem_repaired(f, idx);
		else if (r->state == VSWAP_PAGE_LOST && r->page < f->total_pages)
			note_lost(f, r->page);
	}
	for (size_t i = 0; i < f->nbad; i++)
		repair_bad_group(f, &f->bad[i]);
	return 0;
}
