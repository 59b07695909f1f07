/* SPDX-License-Identifier: MIT */
/*
 * Staging records against the staging file's bytes.  Log-ahead (invariant
 * 5) means a crash can leave a record that covers no bytes (recorded, not
 * yet copied: the guest still has the page), and an interrupted clear can
 * leave bytes that no record covers.  Both are safe to drop: -p repairs
 * them.  The file's data map comes from SEEK_DATA, in pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recovery/internal.h"
#include "util/array.h"

struct staged_list {
	struct fsck_range *r;
	size_t n, cap;
};

static int collect_staged(void *ctx, uint64_t first, uint64_t count)
{
	struct staged_list *l = ctx;

	if (ARRAY_RESERVE(l->r, l->cap, l->n + 1, 64))
		return -ENOMEM;
	l->r[l->n++] = (struct fsck_range){first, first + count};
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct fsck_range *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* The walk yields ranges in key order, which a damaged key breaks: sort and
 * merge them, so that the look-ups below may search them. */
static void sort_ranges(struct staged_list *l)
{
	size_t out = 0;

	if (l->n < 2)
		return;
	qsort(l->r, l->n, sizeof(*l->r), cmp_range);
	for (size_t i = 1; i < l->n; i++) {
		if (l->r[i].first <= l->r[out].end) {
			if (l->r[i].end > l->r[out].end)
				l->r[out].end = l->r[i].end;
		} else {
			l->r[++out] = l->r[i];
		}
	}
	l->n = out + 1;
}

/* Whether the index holds another verified copy of @page: a present record
 * whose slot verified, or a stale one (the guest has the page). */
static bool other_copy(const struct vswap_fsck *f, uint64_t page)
{
	size_t lo = 0, hi = f->nrec;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->rec[mid].page < page)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < f->nrec && f->rec[lo].page == page; lo++) {
		const struct fsck_record *r = &f->rec[lo];

		if (r->verdict == FSCK_OK &&
		    (r->state == VSWAP_PAGE_PRESENT || r->state == VSWAP_PAGE_STALE))
			return true;
	}
	return false;
}

static int problem_run(struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t first,
		       uint64_t end, const char *what)
{
	if (end - first == 1)
		return (int)fsck_problem(f, kind, first, FSCK_NONE, "staged page %llu: %s",
					 (unsigned long long)first, what);
	return (int)fsck_problem(f, kind, first, FSCK_NONE,
				 "staged pages %llu-%llu (%llu pages): %s",
				 (unsigned long long)first, (unsigned long long)(end - 1),
				 (unsigned long long)(end - first), what);
}

/*
 * Staging records of pages beyond the page-index space: the store ignores
 * them.  If the staging file holds bytes where they say, the records are
 * real and the page-index space is what is wrong (a damaged regions
 * record): they are kept.  Otherwise -y deletes them (the group is
 * rewritten when it also holds pages inside the space).
 */
static int beyond_record_run(struct vswap_fsck *f, const struct fsck_extents *data, uint64_t first,
			     uint64_t end)
{
	bool bytes = false;
	int idx, ret = 0;

	for (uint64_t p = first; p < end && !bytes; p++)
		bytes = fsck_extents_contains(data, p);
	idx = problem_run(
	    f, VSWAP_PROBLEM_BAD_RECORD, first, end,
	    bytes ? "staging record beyond the page-index space, over bytes of the "
		    "staging file: the regions record or its key is damaged; not deleted"
		  : "staging record beyond the page-index space");
	if (idx < 0)
		return -ENOMEM;
	if (bytes || !fsck_repairing_all(f))
		return 0;
	for (uint64_t g = first / FSCK_GROUP_PAGES; !ret && g <= (end - 1) / FSCK_GROUP_PAGES; g++)
		ret = fsck_fix_group_beyond(f, g);
	if (ret)
		fsck_log(f, VSWAP_LOG_ERROR,
			 "%s: cannot delete the staging records of pages %llu-%llu: %s", f->path,
			 (unsigned long long)first, (unsigned long long)(end - 1),
			 vswap_strerror(ret));
	else
		fsck_problem_repaired(f, idx);
	return 0;
}

/*
 * Staged pages of a store closed cleanly whose bytes are gone (the staging
 * file deleted, truncated or punched): after a detach the staging file held
 * their only copy, so they are lost, never dropped to read as zeros.  -y
 * records them lost (a swap-in poisons them) and clears their staging bits.
 */
static int lost_staged_run(struct vswap_fsck *f, uint64_t first, uint64_t end)
{
	int idx = problem_run(f, VSWAP_PROBLEM_EMPTY_STAGING_RECORD, first, end,
			      "recorded as staged in a store closed cleanly, but the staging file "
			      "holds no bytes: the only copy is gone (lost)");
	int failed = 0;

	if (idx < 0)
		return -ENOMEM;
	if (!fsck_repairing_all(f))
		return 0;
	for (uint64_t p = first; p < end; p++) {
		if (vswap_store_stage_clear(f->store, p, 1) || vswap_store_mark_lost(f->store, p)) {
			failed++;
			continue;
		}
		if (fsck_lost_add(f, p))
			return -ENOMEM;
	}
	if (!failed)
		fsck_problem_repaired(f, idx);
	return 0;
}

/* Records over pages with no bytes.  After a crash (log ahead: recorded, not
 * yet copied, the guest still has the page) and wherever the index holds
 * another verified copy, clearing them loses nothing (durable at the
 * commit); in a store closed cleanly the other pages are lost. */
static int empty_record_run(struct vswap_fsck *f, uint64_t first, uint64_t end)
{
	int idx;

	if (f->info.was_clean) {
		/* Staged bytes elsewhere that no record covers: a damaged
		 * key may have moved these records off their pages, so
		 * marking their pages lost would not be justified. */
		if (f->stray_staged) {
			if (problem_run(f, VSWAP_PROBLEM_EMPTY_STAGING_RECORD, first, end,
					"recorded as staged in a store closed cleanly, but the "
					"staging file holds no bytes, while it holds bytes no "
					"record covers: a staging key may be damaged; not "
					"changed") < 0)
				return -ENOMEM;
			return 0;
		}
		for (uint64_t p = first; p < end;) {
			uint64_t q = p + 1;
			bool copy = other_copy(f, p);
			int ret;

			while (q < end && other_copy(f, q) == copy)
				q++;
			if (copy) {
				idx =
				    problem_run(f, VSWAP_PROBLEM_EMPTY_STAGING_RECORD, p, q,
						"recorded as staged but the staging file holds no "
						"bytes; the swap file holds the page");
				if (idx < 0)
					return -ENOMEM;
				if (fsck_repairing(f) &&
				    vswap_store_stage_clear(f->store, p, q - p) == 0)
					fsck_problem_repaired(f, idx);
			} else if ((ret = lost_staged_run(f, p, q))) {
				return ret;
			}
			p = q;
		}
		return 0;
	}
	idx = problem_run(f, VSWAP_PROBLEM_EMPTY_STAGING_RECORD, first, end,
			  "recorded as staged but the staging file holds no bytes");
	if (idx < 0)
		return -ENOMEM;
	if (fsck_repairing(f) && vswap_store_stage_clear(f->store, first, end - first) == 0)
		fsck_problem_repaired(f, idx);
	return 0;
}

/* Bytes no record covers that loses nothing: punch them. */
static int leaked_punch_run(struct vswap_fsck *f, int fd, uint64_t first, uint64_t end)
{
	int idx = problem_run(f, VSWAP_PROBLEM_LEAKED_STAGING, first, end,
			      "staging file holds bytes that no staging record covers");

	if (idx < 0)
		return -ENOMEM;
	if (!fsck_repairing(f))
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * f->page_size),
		      (off_t)((end - first) * f->page_size)) == 0)
		fsck_problem_repaired(f, idx);
	else
		fsck_log(f, VSWAP_LOG_ERROR, "%s: cannot punch staged pages %llu-%llu: %s",
			 vswap_store_staging_path(f->store), (unsigned long long)first,
			 (unsigned long long)(end - 1), strerror(errno));
	return 0;
}

/*
 * Bytes no record covers.  A crash between the commit that cleared a page's
 * staging bit and the punch leaves such bytes, and punching them loses
 * nothing; so does a page whose verified copy the swap file holds.  In a
 * store closed cleanly, bytes of a page with no other copy may be the only
 * copy of a staged page whose staging record was damaged: they are left in
 * place and reported.
 */
static bool in_bad_staging(const struct vswap_fsck *f, uint64_t page)
{
	for (size_t i = 0; i < f->nbad_staging; i++)
		if (f->bad_staging[i] == page / FSCK_GROUP_PAGES)
			return true;
	return false;
}

static bool may_punch(const struct vswap_fsck *f, uint64_t page)
{
	if (in_bad_staging(f, page))
		return false;
	return !f->info.was_clean || other_copy(f, page);
}

static int leaked_bytes_run(struct vswap_fsck *f, int fd, uint64_t first, uint64_t end)
{
	if (f->info.was_clean || f->nbad_staging) {
		for (uint64_t p = first; p < end;) {
			uint64_t q = p + 1;
			bool copy = may_punch(f, p);

			while (q < end && may_punch(f, q) == copy)
				q++;
			if (!copy) {
				if (problem_run(
					f, VSWAP_PROBLEM_LEAKED_STAGING, p, q,
					"staging file holds bytes that no staging record "
					"covers and no other copy backs: they may be the only "
					"copy of a staged page whose record is damaged; left "
					"in place") < 0)
					return -ENOMEM;
			} else {
				int ret = leaked_punch_run(f, fd, p, q);

				if (ret)
					return ret;
			}
			p = q;
		}
		return 0;
	}
	return leaked_punch_run(f, fd, first, end);
}

/* Walk pages [first, end) and emit runs where in_data != want. */
static int walk_runs(struct vswap_fsck *f, const struct fsck_extents *data, uint64_t first,
		     uint64_t end, bool want_data, int fd,
		     int (*emit)(struct vswap_fsck *, int, uint64_t, uint64_t))
{
	uint64_t run = UINT64_MAX;

	for (uint64_t p = first; p < end; p++) {
		bool bad = fsck_extents_contains(data, p) != want_data;

		if (bad && run == UINT64_MAX)
			run = p;
		if (!bad && run != UINT64_MAX) {
			int ret = emit(f, fd, run, p);

			if (ret)
				return ret;
			run = UINT64_MAX;
		}
	}
	return run != UINT64_MAX ? emit(f, fd, run, end) : 0;
}

static int emit_empty(struct vswap_fsck *f, int fd, uint64_t first, uint64_t end)
{
	(void)fd;
	return empty_record_run(f, first, end);
}

static bool staged(const struct staged_list *l, uint64_t page)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (page < l->r[mid].first)
			hi = mid;
		else if (page >= l->r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* Does the staging file hold bytes of a page no range covers and the index
 * holds no other copy of?  (Only asked of a store closed cleanly.) */
static bool stray_bytes(const struct vswap_fsck *f, const struct fsck_extents *data,
			const struct staged_list *l)
{
	for (size_t e = 0; e < data->n; e++)
		for (uint64_t p = data->r[e].first; p < data->r[e].end; p++)
			if (!staged(l, p) && !other_copy(f, p))
				return true;
	return false;
}

/* Data extents of the staging file outside every staged range. */
static int check_leaked_bytes(struct vswap_fsck *f, int fd, const struct fsck_extents *data,
			      const struct staged_list *l)
{
	for (size_t e = 0; e < data->n; e++) {
		uint64_t run = UINT64_MAX;

		for (uint64_t p = data->r[e].first; p < data->r[e].end; p++) {
			bool leaked = !staged(l, p);

			if (leaked && run == UINT64_MAX)
				run = p;
			if (!leaked && run != UINT64_MAX) {
				leaked_bytes_run(f, fd, run, p);
				run = UINT64_MAX;
			}
		}
		if (run != UINT64_MAX)
			leaked_bytes_run(f, fd, run, data->r[e].end);
	}
	return 0;
}

/*
 * A read-only open leaves a missing staging file missing; a writable one
 * creates it, if its directory exists.  So an audit says so rather than
 * call clean a store whose staging file a handler would have to create, or
 * could not (a damaged path).
 */
static int check_staging_file(struct vswap_fsck *f)
{
	const char *path = vswap_store_staging_path(f->store);
	char dir[PATH_MAX];
	struct stat st;
	char *slash;

	if (!path || vswap_store_staging_fd(f->store) >= 0)
		return 0;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (fsck_problem(f, VSWAP_PROBLEM_MISSING_STAGING_FILE, FSCK_NONE, FSCK_NONE,
			 "%s: the staging file does not exist%s", path,
			 slash && slash > dir && stat(dir, &st) != 0
			     ? ", nor its directory: the store cannot be opened for writing"
			     : "") < 0)
		return -ENOMEM;
	return 0;
}

/* The per-page walk of the staging records: records not believed, and the
 * staged copies whose checksum was recorded, checked against their bytes. */
struct staged_walk {
	struct vswap_fsck *f;
	const struct fsck_extents *data;
	int fd;
	uint8_t *buf;
	int err;
};

static int bad_staging_add(struct vswap_fsck *f, uint64_t group)
{
	if (ARRAY_RESERVE(f->bad_staging, f->bad_staging_cap, f->nbad_staging + 1, 16))
		return -ENOMEM;
	f->bad_staging[f->nbad_staging++] = group;
	return 0;
}

/* A staging record not believed: which of its group's pages are staged is
 * unknown, so the staging file's bytes there may be their only copies.  It
 * is reported and kept, and those bytes are never punched.  (-y has moved
 * a misplaced one back already where its evidence is unambiguous:
 * fsck_move_misplaced().) */
static int bad_staging_record(struct vswap_fsck *f, const struct vswap_staged_record *r)
{
	unsigned long long first = r->key_group * FSCK_GROUP_PAGES;
	int ret;

	if (r->fault == VSWAP_RECORD_MISPLACED)
		ret = fsck_problem(
			  f, VSWAP_PROBLEM_BAD_RECORD, first, FSCK_NONE, MISPLACED_FMT "; %s",
			  MISPLACED_ARGS("staging record", r->claimed_group, r->key_group,
					 "is stored", "is"),
			  vswap_store_check_misplaced_staging(f->store, r->key_group, NULL) == 0
			      ? "its staged copies verify as its own pages: -y moves it "
				"back"
			      : "kept as evidence") < 0;
	else
		ret =
		    fsck_problem(f, fsck_record_fault_kind(r->fault), first, FSCK_NONE,
				 "staging record of pages %llu-%llu %s; its staged bytes are kept",
				 first, first + FSCK_GROUP_PAGES - 1,
				 r->fault == VSWAP_RECORD_CHECKSUM ? "fails its check"
								   : "cannot be decoded") < 0;
	if (ret)
		return -ENOMEM;
	if ((ret = bad_staging_add(f, r->key_group)))
		return ret;
	return r->fault == VSWAP_RECORD_MISPLACED ? bad_staging_add(f, r->claimed_group) : 0;
}

/* A staged copy whose recorded checksum its bytes fail: lost (-y), unless
 * the swap file holds a verified copy (then only the staging bit goes). */
static int bad_staged_copy(struct vswap_fsck *f, uint64_t page)
{
	bool copy = other_copy(f, page);
	ssize_t idx =
	    fsck_problem(f, VSWAP_PROBLEM_CHECKSUM_MISMATCH, page, FSCK_NONE,
			 "staged copy of page %llu fails its checksum%s", (unsigned long long)page,
			 copy ? "; the swap file holds the page" : "");

	if (idx < 0)
		return -ENOMEM;
	if (!(copy ? fsck_repairing(f) : fsck_repairing_all(f)))
		return 0;
	if (vswap_store_stage_clear(f->store, page, 1) ||
	    (!copy && vswap_store_mark_lost(f->store, page)))
		return 0;
	if (!copy && fsck_lost_add(f, page))
		return -ENOMEM;
	fsck_problem_repaired(f, idx);
	return 0;
}

static int walk_staged_page(void *ctx, const struct vswap_staged_record *r)
{
	struct staged_walk *w = ctx;
	struct vswap_fsck *f = w->f;
	ssize_t k;

	if (r->corrupt)
		return bad_staging_record(f, r);
	if (!r->summed || w->fd < 0 || f->skip_bytes || r->page >= f->total_pages ||
	    !fsck_extents_contains(w->data, r->page))
		return 0;
	k = pread(w->fd, w->buf, f->page_size, (off_t)(r->page * f->page_size));
	if (k != (ssize_t)f->page_size)
		return 0; /* a short file: the bytes are missing (empty_record_run) */
	if (vswap_store_page_checksum(f->store, r->page, w->buf) != r->xxh3)
		return bad_staged_copy(f, r->page);
	return 0;
}

static int walk_staged_pages(struct vswap_fsck *f, const struct fsck_extents *data, int fd)
{
	struct staged_walk w = {.f = f, .data = data, .fd = fd, .buf = malloc(f->page_size)};
	int ret;

	if (!w.buf)
		return -ENOMEM;
	ret = vswap_store_foreach_staged_page(f->store, walk_staged_page, &w);
	free(w.buf);
	return ret;
}

int fsck_check_staging(struct vswap_fsck *f)
{
	struct staged_list l = {0};
	struct fsck_extents data = {0};
	int fd = vswap_store_staging_fd(f->store);
	int ret = vswap_store_foreach_staged(f->store, collect_staged, &l);

	if (!ret)
		ret = check_staging_file(f);
	if (ret)
		goto out;
	sort_ranges(&l);
	for (size_t i = 0; i < l.n; i++)
		f->counts.staged_pages += l.r[i].end - l.r[i].first;
	if (fd >= 0 && (ret = fsck_extents_scan(fd, 0, f->page_size, &data)))
		goto out;
	if ((ret = walk_staged_pages(f, &data, fd)))
		goto out;
	f->stray_staged = f->nbad_staging || (f->info.was_clean && stray_bytes(f, &data, &l));
	for (size_t i = 0; i < l.n && !ret; i++) {
		uint64_t first = l.r[i].first, end = l.r[i].end;

		if (end > f->total_pages) {
			uint64_t split = first > f->total_pages ? first : f->total_pages;

			ret = beyond_record_run(f, &data, split, end);
			end = split;
		}
		if (!ret && first < end)
			ret = walk_runs(f, &data, first, end, true, fd, emit_empty);
	}
	if (!ret && fd >= 0)
		ret = check_leaked_bytes(f, fd, &data, &l);
out:
	free(l.r);
	fsck_extents_free(&data);
	return ret;
}
