/* SPDX-License-Identifier: MIT */
/*
 * The index's page records, read raw (not the store's in-memory tables,
 * which leave conflicting records out) and judged before any byte is read:
 * undecodable groups, pages outside the page-index space, slots out of
 * range, slots whose bytes are a hole or past the end of the file.  What
 * survives is verified by verify.c, records sharing a slot included: the
 * one whose checksum the slot's bytes match keeps it (fsck_resolve_shared).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "recovery/internal.h"
#include "util/array.h"

static int record_push(struct vswap_fsck *f, const struct vswap_page_record *r)
{
	if (ARRAY_RESERVE(f->rec, f->rec_cap, f->nrec + 1, 1024))
		return -ENOMEM;
	f->rec[f->nrec++] = (struct fsck_record){
	    .page = r->page,
	    .slot = r->slot,
	    .xxh3 = r->xxh3,
	    .state = r->state,
	    .verdict = FSCK_OK,
	    .prob = -1,
	};
	return 0;
}

static int fsck_bad_group_add(struct vswap_fsck *f, uint64_t first, uint32_t pages, ssize_t prob,
			      bool misplaced)
{
	if (ARRAY_RESERVE(f->bad, f->bad_cap, f->nbad + 1, 16))
		return -ENOMEM;
	f->bad[f->nbad++] = (struct fsck_bad_group){first, pages, prob, misplaced};
	return 0;
}

/* A group record that is not believed: its pages' slots and checksums are
 * unknown.  A misplaced one (a valid record of another group under this
 * key) is the evidence of a damaged key, and names the group it belongs to:
 * where that evidence is unambiguous (vswap_store_check_misplaced()), -y
 * moves it back before the audit (fsck_move_misplaced()); otherwise it is
 * kept as it is. */
static int corrupt_group(struct vswap_fsck *f, const struct vswap_page_record *r)
{
	unsigned long long first = r->page, last = r->page + r->group_pages - 1;
	bool misplaced = r->fault == VSWAP_RECORD_MISPLACED;
	ssize_t idx;

	if (misplaced)
		idx = fsck_problem(
		    f, VSWAP_PROBLEM_BAD_RECORD, r->page, FSCK_NONE, MISPLACED_FMT "; %s",
		    MISPLACED_ARGS("index record", r->claimed_group, r->key_group, "is stored",
				   "is"),
		    vswap_store_check_misplaced(f->store, r->key_group, NULL) == 0
			? "its slots' bytes verify as its own pages: -y moves it back"
			: "kept as evidence");
	else
		idx = fsck_problem(f, fsck_record_fault_kind(r->fault), r->page, FSCK_NONE,
				   "index record of pages %llu-%llu %s", first, last,
				   r->fault == VSWAP_RECORD_CHECKSUM ? "fails its check"
								     : "cannot be decoded");
	if (idx < 0)
		return -ENOMEM;
	return fsck_bad_group_add(f, r->page, r->group_pages, idx, misplaced);
}

static int collect_record(void *ctx, const struct vswap_page_record *r)
{
	struct vswap_fsck *f = ctx;

	if (fsck_cancelled(f))
		return -ECANCELED;
	if (r->corrupt)
		return corrupt_group(f, r);
	return record_push(f, r);
}

static int cmp_by_slot(const void *a, const void *b)
{
	const struct fsck_record *x = *(struct fsck_record *const *)a;
	const struct fsck_record *y = *(struct fsck_record *const *)b;

	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->page < y->page ? -1 : x->page > y->page;
}

int fsck_load_records(struct vswap_fsck *f)
{
	int ret = vswap_store_foreach_page(f->store, collect_record, f);

	if (ret)
		return ret;
	f->counts.records = f->nrec;
	f->by_slot = malloc((f->nrec ? f->nrec : 1) * sizeof(*f->by_slot));
	if (!f->by_slot)
		return -ENOMEM;
	for (size_t i = 0; i < f->nrec; i++)
		f->by_slot[i] = &f->rec[i];
	qsort(f->by_slot, f->nrec, sizeof(*f->by_slot), cmp_by_slot);
	return 0;
}

static bool has_slot(const struct fsck_record *r)
{
	return r->slot != UINT64_MAX;
}

/* Does the store's in-memory table hold @r (rather than leave it out)? */
static bool record_loaded(const struct vswap_fsck *f, const struct fsck_record *r)
{
	struct vswap_page_info pi;

	return vswap_store_page(f->store, r->page, &pi) == 0 && pi.state == r->state &&
	       pi.slot == r->slot;
}

/*
 * Records naming one slot, before any byte is read: every one still to be
 * verified is a candidate for the slot, and all of them are verified (the
 * slot's bytes are hashed once); fsck_resolve_shared() picks the keeper.
 * Which one the store loaded is an O(1) look-up of the page's own entry.
 */
static void mark_shared_slot(struct vswap_fsck *f, size_t first, size_t end)
{
	for (size_t i = first; i < end; i++) {
		struct fsck_record *r = f->by_slot[i];

		if (r->verdict != FSCK_OK || r->beyond)
			continue;
		r->shared = true;
		r->loaded = record_loaded(f, r);
	}
}

/* Keeper of a shared slot: a record whose checksum the bytes match, the one
 * the store loaded first; else the one the store loaded; else the first. */
static struct fsck_record *pick_keeper(struct vswap_fsck *f, size_t first, size_t end)
{
	struct fsck_record *ok = NULL, *loaded = NULL, *any = NULL;

	for (size_t i = first; i < end; i++) {
		struct fsck_record *r = f->by_slot[i];

		if (!r->shared)
			continue;
		if (r->verdict == FSCK_OK && r->loaded)
			return r;
		if (r->verdict == FSCK_OK && !ok)
			ok = r;
		if (r->loaded && !loaded)
			loaded = r;
		if (!any)
			any = r;
	}
	return ok ? ok : loaded ? loaded : any;
}

static void resolve_shared_slot(struct vswap_fsck *f, size_t first, size_t end)
{
	struct fsck_record *keeper = pick_keeper(f, first, end);

	if (!keeper)
		return;
	keeper->keeps_slot = true;
	/* The store's tables do not hold it (another record took the slot at
	 * load): a strict open would refuse the index until it moves. */
	keeper->rehome = keeper->verdict == FSCK_OK && !keeper->loaded;
	for (size_t i = first; i < end; i++) {
		struct fsck_record *r = f->by_slot[i];

		if (!r->shared || r == keeper)
			continue;
		r->verdict = FSCK_DOUBLE;
		r->keeper = keeper;
		keeper->losers++;
	}
}

/* Call @fn for each run of two or more records naming one slot. */
static void for_each_shared_run(struct vswap_fsck *f,
				void (*fn)(struct vswap_fsck *, size_t, size_t))
{
	size_t i = 0;

	while (i < f->nrec) {
		size_t j = i + 1;

		while (j < f->nrec && has_slot(f->by_slot[i]) &&
		       f->by_slot[j]->slot == f->by_slot[i]->slot)
			j++;
		if (j - i > 1)
			fn(f, i, j);
		i = j;
	}
}

void fsck_resolve_shared(struct vswap_fsck *f)
{
	for_each_shared_run(f, resolve_shared_slot);
}

/*
 * A record beyond the page-index space names no page the store knows; but
 * one flipped bit of its key or of the regions record puts a real record
 * there.  So its slot is verified like any other (fsck_judge_beyond() then
 * sorts it), unless it has no bytes to check.
 */
static void judge_slot_range(struct vswap_fsck *f, struct fsck_record *r)
{
	if (r->page >= f->total_pages) {
		r->beyond = true;
		if (!has_slot(r) || r->slot >= f->slot_limit || r->state == VSWAP_PAGE_LOST)
			r->verdict = FSCK_BAD_PAGE;
	} else if (has_slot(r) && r->slot >= f->slot_limit)
		r->verdict = FSCK_OUT_OF_RANGE;
	else if (r->state == VSWAP_PAGE_LOST)
		r->verdict = FSCK_UNCHECKED;
}

static void judge_presence(struct vswap_fsck *f, struct fsck_record *r)
{
	if (r->verdict != FSCK_OK || !has_slot(r))
		return;
	if (!fsck_extents_contains(&f->swap_data, r->slot))
		r->verdict = FSCK_MISSING;
}

void fsck_check_records(struct vswap_fsck *f)
{
	for (size_t k = 0; k < f->nrec; k++)
		judge_slot_range(f, &f->rec[k]);
	for_each_shared_run(f, mark_shared_slot);
	for (size_t k = 0; k < f->nrec; k++)
		judge_presence(f, &f->rec[k]);
}

/* Does a record inside the page-index space keep @r's slot, its bytes
 * verified?  Then @r is a stray duplicate, not the only trace of a page. */
static bool slot_kept_inside(const struct vswap_fsck *f, const struct fsck_record *r)
{
	size_t lo = 0, hi = f->nrec;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->by_slot[mid]->slot < r->slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < f->nrec && f->by_slot[lo]->slot == r->slot; lo++) {
		const struct fsck_record *o = f->by_slot[lo];

		if (!o->beyond && o->verdict == FSCK_OK)
			return true;
	}
	return false;
}

void fsck_judge_beyond(struct vswap_fsck *f)
{
	uint64_t n = 0;

	for (size_t k = 0; k < f->nrec; k++) {
		struct fsck_record *r = &f->rec[k];

		if (!r->beyond)
			continue;
		r->evidence = r->verdict == FSCK_OK && !slot_kept_inside(f, r);
		r->verdict = FSCK_BAD_PAGE;
		n += r->evidence;
	}
	if (n)
		fsck_log(
		    f, VSWAP_LOG_WARN,
		    "%s: %llu records beyond the page-index space (%llu pages) name slots whose "
		    "bytes verify against them: their keys or the regions record are damaged, "
		    "not the records; they are kept",
		    f->path, (unsigned long long)n, (unsigned long long)f->total_pages);
}

/* ---- misplaced records moved back (-y) ------------------------------------ */

struct misplaced_keys {
	uint64_t *key;
	size_t n, cap;
};

static int misplaced_key_add(struct misplaced_keys *m, enum vswap_record_fault fault,
			     uint64_t key_group)
{
	if (fault != VSWAP_RECORD_MISPLACED)
		return 0;
	if (ARRAY_RESERVE(m->key, m->cap, m->n + 1, 16))
		return -ENOMEM;
	m->key[m->n++] = key_group;
	return 0;
}

static int collect_misplaced(void *ctx, const struct vswap_page_record *r)
{
	return misplaced_key_add(ctx, r->fault, r->key_group);
}

static int collect_misplaced_staging(void *ctx, const struct vswap_staged_record *r)
{
	return misplaced_key_add(ctx, r->fault, r->key_group);
}

/* Move back each record of @m that the store finds unambiguous, reporting
 * it repaired.  Refused (ambiguous evidence, logged by the store): the
 * audit reports the record, kept as evidence. */
static int move_keys(struct vswap_fsck *f, const struct misplaced_keys *m, bool staging)
{
	const char *what = staging ? "staging record" : "index record";
	const char *evidence = staging ? "its staged copies verify as its own pages"
				       : "its slots' bytes verify as its own pages";

	for (size_t i = 0; i < m->n; i++) {
		uint64_t g;
		ssize_t idx;
		int ret = staging ? vswap_store_move_misplaced_staging(f->store, m->key[i], &g)
				  : vswap_store_move_misplaced(f->store, m->key[i], &g);

		if (ret)
			continue;
		idx =
		    fsck_problem(f, VSWAP_PROBLEM_BAD_RECORD, m->key[i] * FSCK_GROUP_PAGES,
				 FSCK_NONE, MISPLACED_FMT "; %s: moved back under its own key",
				 MISPLACED_ARGS(what, g, m->key[i], "was stored", "was"), evidence);
		if (idx < 0)
			return -ENOMEM;
		fsck_problem_repaired(f, idx);
	}
	return 0;
}

int fsck_move_misplaced(struct vswap_fsck *f)
{
	struct misplaced_keys pages = {0}, staging = {0};
	int ret;

	if (!fsck_repairing_all(f))
		return 0;
	ret = vswap_store_foreach_page(f->store, collect_misplaced, &pages);
	if (!ret)
		ret = move_keys(f, &pages, false);
	if (!ret)
		ret =
		    vswap_store_foreach_staged_page(f->store, collect_misplaced_staging, &staging);
	if (!ret)
		ret = move_keys(f, &staging, true);
	free(pages.key);
	free(staging.key);
	return ret;
}
