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
 *     bytes, so -y marks every page of it that the store did not load lost;
 *   - records beyond the page-index space (page or staging records, or an
 *     undecodable group past its end) name no page: -y deletes them, and a
 *     group that also holds pages inside the space is rewritten from the
 *     store's tables instead, so that none of those is dropped;
 *   - of the records sharing a slot, the one whose checksum the bytes match
 *     keeps it; if the store left that one out of its tables, -y copies it
 *     to a slot of its own before the others give the slot up.
 * Every change goes through the store's API and is durable at its commit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
		fsck_log(f, VSWAP_LOG_ERROR, "%s: cannot repair the record of page %llu: %s",
			 f->path, (unsigned long long)r->page, vswap_strerror(ret));
	return ret == 0;
}

static const char *state_word(const struct fsck_record *r)
{
	return vswap_page_state_name(r->state);
}

static ssize_t describe_missing(struct vswap_fsck *f, const struct fsck_record *r)
{
	uint64_t end = vswap_store_slot_offset(f->store, r->slot) + f->page_size;

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
			    (unsigned long long)r->page, state_word(r),
			    (unsigned long long)r->slot);
}

static ssize_t describe(struct vswap_fsck *f, const struct fsck_record *r)
{
	unsigned long long page = r->page, slot = r->slot;

	switch (r->verdict) {
	case FSCK_BAD_PAGE:
		if (r->evidence)
			return fsck_problem(
			    f, VSWAP_PROBLEM_BAD_RECORD, r->page, r->slot,
			    "record of page %llu lies beyond the page-index space "
			    "(%llu pages) but slot %llu holds bytes that verify against "
			    "it: its key or the regions record is damaged; not deleted",
			    page, (unsigned long long)f->total_pages, slot);
		return fsck_problem(
		    f, VSWAP_PROBLEM_BAD_RECORD, r->page,
		    r->slot == UINT64_MAX ? FSCK_NONE : r->slot,
		    "record of page %llu lies beyond the page-index space (%llu pages)", page,
		    (unsigned long long)f->total_pages);
	case FSCK_OUT_OF_RANGE:
		return fsck_problem(f, VSWAP_PROBLEM_SLOT_OUT_OF_RANGE, r->page, r->slot,
				    "page %llu (%s) names slot %llu, past the limit of %llu slots",
				    page, state_word(r), slot, (unsigned long long)f->slot_limit);
	case FSCK_DOUBLE:
		if (r->keeper)
			return fsck_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, r->page, r->slot,
					    "page %llu (%s) names slot %llu, which page %llu keeps "
					    "(its checksum matches the bytes%s)",
					    page, state_word(r), slot,
					    (unsigned long long)r->keeper->page,
					    r->keeper->verdict == FSCK_OK ? "" : " no better");
		return fsck_problem(f, VSWAP_PROBLEM_DOUBLE_REFERENCE, r->page, r->slot,
				    "page %llu (%s) names slot %llu, which another page owns", page,
				    state_word(r), slot);
	case FSCK_OK:
		/* A keeper the store left out, its slot shared only with records
		 * that are not candidates (lost ones). */
		return fsck_problem(
		    f, VSWAP_PROBLEM_DOUBLE_REFERENCE, r->page, r->slot,
		    "page %llu (%s) names slot %llu, which a lost record also names; "
		    "the bytes match page %llu",
		    page, state_word(r), slot, page);
	case FSCK_MISSING:
		return describe_missing(f, r);
	case FSCK_MISMATCH:
		return fsck_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, r->page, r->slot,
				    "page %llu (%s): bytes of slot %llu fail their XXH3 %016llx",
				    page, state_word(r), slot, (unsigned long long)r->xxh3);
	default:
		return -1;
	}
}

/*
 * Make the index forget group @g's records beyond the page-index space.  A
 * group wholly beyond it is deleted.  A group that straddles its end also
 * holds real pages: it is rewritten from the store's tables (which only
 * cover the space, and keep the records a tolerant open left out) by a
 * change that changes nothing: a state round trip of a page that has a
 * record, or else a staging mark and clear of a page that is not staged
 * (which punches only staged bytes no record covers).
 */
int fsck_fix_group_beyond(struct vswap_fsck *f, uint64_t g)
{
	uint64_t first = g * FSCK_GROUP_PAGES, end = first + FSCK_GROUP_PAGES;
	struct vswap_page_info pi;

	if (first >= f->total_pages)
		return vswap_store_drop_group(f->store, g);
	if (end > f->total_pages)
		end = f->total_pages;
	for (uint64_t p = first; p < end; p++) {
		int64_t n = 0;

		if (vswap_store_page(f->store, p, &pi))
			continue;
		switch (pi.state) {
		case VSWAP_PAGE_PRESENT:
			n = vswap_store_mark_stale(f->store, p, 1);
			return n < 0 ? (int)n : vswap_store_mark_present(f->store, p);
		case VSWAP_PAGE_STALE:
			n = vswap_store_mark_present(f->store, p);
			if (!n)
				n = vswap_store_mark_stale(f->store, p, 1);
			return n < 0 ? (int)n : 0;
		case VSWAP_PAGE_LOST:
			return vswap_store_mark_lost(f->store, p);
		default:
			break;
		}
	}
	for (uint64_t p = first; p < end; p++) {
		int ret;

		if (vswap_store_staged(f->store, p))
			continue;
		ret = vswap_store_stage_mark(f->store, p, 1);
		return ret ? ret : vswap_store_stage_clear(f->store, p, 1);
	}
	return -EBUSY; /* every page of it is staged and has no record: cannot happen */
}

static void log_group_failure(struct vswap_fsck *f, uint64_t g, int err)
{
	fsck_log(f, VSWAP_LOG_ERROR,
		 "%s: cannot delete the index records of group %llu (pages %llu-%llu) beyond "
		 "the page-index space: %s",
		 f->path, (unsigned long long)g, (unsigned long long)(g * FSCK_GROUP_PAGES),
		 (unsigned long long)(g * FSCK_GROUP_PAGES + FSCK_GROUP_PAGES - 1),
		 vswap_strerror(err));
}

/* Pages of an undecodable group that the store could not load.  A group
 * wholly beyond the page-index space names no page: it is deleted. */
static void repair_bad_group(struct vswap_fsck *f, const struct fsck_bad_group *g)
{
	uint64_t end = g->first + g->pages;
	int failed = 0;

	/* A misplaced record is another group's, found by its own valid check
	 * under a damaged key: deleting it would orphan that group's pages,
	 * and this group's pages are not its business.  Kept. */
	if (!fsck_repairing_all(f) || g->pages == 0 || g->misplaced)
		return;
	if (g->first >= f->total_pages) {
		int ret = fsck_fix_group_beyond(f, g->first / FSCK_GROUP_PAGES);

		if (ret)
			log_group_failure(f, g->first / FSCK_GROUP_PAGES, ret);
		else
			fsck_problem_repaired(f, g->prob);
		return;
	}
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

/* Page records beyond the page-index space, in page order: one fix per
 * group; their slots then count as unreferenced for the leak pass. */
static void repair_beyond_records(struct vswap_fsck *f)
{
	for (size_t i = 0; i < f->nrec;) {
		uint64_t g = f->rec[i].page / FSCK_GROUP_PAGES;
		size_t j = i;
		int ret;

		if (f->rec[i].verdict != FSCK_BAD_PAGE) {
			i++;
			continue;
		}
		while (j < f->nrec && f->rec[j].page / FSCK_GROUP_PAGES == g)
			j++;
		/* Deleting a record whose bytes verify would orphan a real page:
		 * never (its slot stays referenced, so it is not punched). */
		for (size_t k = i; k < j; k++)
			if (f->rec[k].evidence)
				goto next;
		ret = fsck_fix_group_beyond(f, g);
		if (ret)
			log_group_failure(f, g, ret);
		for (size_t k = i; !ret && k < j; k++) {
			if (f->rec[k].verdict != FSCK_BAD_PAGE)
				continue;
			f->rec[k].dropped = true;
			fsck_problem_repaired(f, f->rec[k].prob);
		}
	next:
		i = j;
	}
}

/* A record that lost its slot to a keeper the store left out: the store
 * holds it, so giving the slot up (free) would punch the keeper's bytes;
 * it waits for fsck_repair_shared(). */
static bool waits_for_keeper(const struct fsck_record *r)
{
	return r->verdict == FSCK_DOUBLE && r->loaded && r->keeper && r->keeper->rehome;
}

int fsck_report_records(struct vswap_fsck *f)
{
	for (size_t i = 0; i < f->nrec; i++) {
		struct fsck_record *r = &f->rec[i];
		ssize_t idx;

		if (r->verdict == FSCK_OK && r->rehome && r->losers == 0) {
			r->prob = describe(f, r);
			if (r->prob < 0)
				return -ENOMEM;
			continue;
		}
		if (r->verdict == FSCK_OK || r->verdict == FSCK_UNCHECKED) {
			if (r->state == VSWAP_PAGE_LOST && r->page < f->total_pages)
				note_lost(f, r->page);
			continue;
		}
		idx = describe(f, r);
		if (idx < 0)
			return -ENOMEM;
		r->prob = idx;
		if (r->verdict == FSCK_BAD_PAGE || waits_for_keeper(r))
			continue;
		if (repair_record(f, r))
			fsck_problem_repaired(f, idx);
		else if (r->state == VSWAP_PAGE_LOST && r->page < f->total_pages)
			note_lost(f, r->page);
	}
	for (size_t i = 0; i < f->nbad; i++)
		repair_bad_group(f, &f->bad[i]);
	if (fsck_repairing_all(f))
		repair_beyond_records(f);
	return 0;
}

/* Copy a keeper the store left out to a slot of its own: read the shared
 * slot, check the bytes against the record once more, write them as the
 * page (a new slot), and restore a stale state. */
static int rehome(struct vswap_fsck *f, struct fsck_record *r)
{
	uint8_t *buf = NULL;
	off_t off = (off_t)vswap_store_slot_offset(f->store, r->slot);
	int ret = 0;

	if (posix_memalign((void **)&buf, 4096, f->page_size))
		return -ENOMEM;
	for (uint32_t done = 0; !ret && done < f->page_size;) {
		ssize_t k = pread(vswap_store_swap_fd(f->store), buf + done, f->page_size - done,
				  off + done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			ret = k < 0 ? -errno : -EIO;
		else
			done += (uint32_t)k;
	}
	if (!ret && vswap_store_page_checksum(f->store, r->page, buf) != r->xxh3)
		ret = -EBADMSG;
	if (!ret)
		ret = vswap_store_write(f->store, r->page, 1, buf);
	if (!ret && r->state == VSWAP_PAGE_STALE) {
		int64_t n = vswap_store_mark_stale(f->store, r->page, 1);

		ret = n < 0 ? (int)n : 0;
	}
	free(buf);
	if (ret)
		fsck_log(f, VSWAP_LOG_ERROR,
			 "%s: cannot copy page %llu out of shared slot %llu: %s", f->path,
			 (unsigned long long)r->page, (unsigned long long)r->slot,
			 vswap_strerror(ret));
	return ret;
}

/* The loser the store holds, once the keeper has moved: a present page is
 * marked lost (its slot stays with it: nothing else names it now), a stale
 * copy is dropped (its slot is punched at the commit). */
static int settle_loser(struct vswap_fsck *f, const struct fsck_record *r)
{
	int ret;

	if (r->state == VSWAP_PAGE_STALE) {
		int64_t n = vswap_store_free(f->store, r->page, 1);

		return n < 0 ? (int)n : 0;
	}
	ret = vswap_store_mark_lost(f->store, r->page);
	if (!ret)
		note_lost(f, r->page);
	return ret;
}

/* Slots of records kept beyond the page-index space are free in the store's
 * tables: a copy could land on one of them. */
static bool kept_beyond(const struct vswap_fsck *f)
{
	for (size_t i = 0; i < f->nrec; i++)
		if (f->rec[i].evidence)
			return true;
	return false;
}

int fsck_repair_shared(struct vswap_fsck *f)
{
	if (!fsck_repairing_all(f))
		return 0;
	if (kept_beyond(f)) {
		fsck_log(f, VSWAP_LOG_WARN,
			 "%s: not moving records out of shared slots while records beyond the "
			 "page-index space are kept",
			 f->path);
		return 0;
	}
	for (size_t i = 0; i < f->nrec; i++) {
		struct fsck_record *r = &f->rec[i];

		if (!r->rehome || rehome(f, r))
			continue;
		r->rehomed = true;
		fsck_problem_repaired(f, r->prob);
	}
	for (size_t i = 0; i < f->nrec; i++) {
		struct fsck_record *r = &f->rec[i];
		int ret;

		if (!waits_for_keeper(r) || !r->keeper->rehomed)
			continue;
		ret = settle_loser(f, r);
		if (ret)
			fsck_log(f, VSWAP_LOG_ERROR,
				 "%s: cannot repair the record of page %llu: %s", f->path,
				 (unsigned long long)r->page, vswap_strerror(ret));
		else
			fsck_problem_repaired(f, r->prob);
	}
	return 0;
}
