/* SPDX-License-Identifier: MIT */
/*
 * Page-state changes and lookups.  All of them touch only the in-memory
 * tables and mark the page's group dirty: the fault path calls them, and it
 * must never open an LMDB write transaction.  The next commit records them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

static bool range_ok(const struct vswap_store *s, uint64_t first, uint64_t count)
{
	return first < s->total_pages && count <= s->total_pages - first;
}

/* Check the unverified copies of [first, first + count) before they are
 * reported staged.  The handle is the caller's, not const (these calls are
 * const for their callers: a check only makes the tables say what the
 * files hold). */
static int check_unverified(const struct vswap_store *s, uint64_t first, uint64_t count)
{
	return s->unverified ? staging_check((struct vswap_store *)s, first, count) : 0;
}

static bool unverified(const struct vswap_store *s, uint64_t page)
{
	return s->unverified && bit_test(s->unverified, page);
}

int vswap_store_page(const struct vswap_store *s, uint64_t page, struct vswap_page_info *out)
{
	if (page >= s->total_pages)
		return -EINVAL;
	int need = index_need(s, page, 1);
	if (need)
		return need;
	check_unverified(s, page, 1); /* its group is loaded: it ends checked */
	uint32_t w = s->pages[page];
	out->state = pw_state(w);
	out->staged = bit_test(s->staged, page) && !unverified(s, page);
	out->slot = pw_slot(w);
	out->xxh3 = s->sums[page];
	return 0;
}

int64_t vswap_store_mark_stale(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (!range_ok(s, first, count))
		return -EINVAL;
	int need = index_need(s, first, count);
	if (need)
		return need;
	/* Even a page with nothing to mark: its copy in flight is older than
	 * what the caller now has (a guest write let through). */
	wflight_cancel(s, first, count);
	int64_t n = 0;
	for (uint64_t p = first; p < first + count; p++) {
		uint32_t w = s->pages[p];
		if (pw_state(w) != VSWAP_PAGE_PRESENT)
			continue;
		page_set(s, p, pw_make(pw_slot(w), VSWAP_PAGE_STALE), s->sums[p]);
		n++;
	}
	s->pending_pages += (uint64_t)n;
	return n;
}

int vswap_store_mark_present(struct vswap_store *s, uint64_t page)
{
	if (page >= s->total_pages)
		return -EINVAL;
	int need = index_need(s, page, 1);
	if (need)
		return need;
	if (pw_state(s->pages[page]) != VSWAP_PAGE_STALE)
		return -EINVAL;
	page_set(s, page, pw_make(pw_slot(s->pages[page]), VSWAP_PAGE_PRESENT), s->sums[page]);
	s->pending_pages++;
	return 0;
}

int vswap_store_mark_lost(struct vswap_store *s, uint64_t page)
{
	if (page >= s->total_pages)
		return -EINVAL;
	int need = index_need(s, page, 1);
	if (need)
		return need;
	uint32_t w = s->pages[page];
	page_set(s, page, pw_make(pw_slot(w), VSWAP_PAGE_LOST), s->sums[page]);
	s->pending_pages++;
	return 0;
}

int64_t vswap_store_free(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (!range_ok(s, first, count))
		return -EINVAL;
	int need = index_need(s, first, count);
	if (need)
		return need;
	wflight_cancel(s, first, count);
	int64_t n = 0;
	for (uint64_t p = first; p < first + count; p++) {
		uint32_t w = s->pages[p];
		if (pw_state(w) == VSWAP_PAGE_NONE)
			continue;
		n += pw_has_slot(w);
		page_release_slot(s, p);
	}
	return n;
}

int vswap_store_next_present_run(const struct vswap_store *s, uint64_t from, uint64_t limit,
				 uint32_t max, uint64_t *first, uint32_t *count)
{
	if (limit > s->total_pages)
		limit = s->total_pages;
	if (from >= limit)
		return 0;
	int need = index_need(s, from, limit - from);
	if (need)
		return need;
	uint64_t p = from;
	while (p < limit && pw_state(s->pages[p]) != VSWAP_PAGE_PRESENT)
		p++;
	if (p >= limit || max == 0)
		return 0;
	uint32_t n = 1;
	uint64_t slot = pw_slot(s->pages[p]);
	while (n < max && p + n < limit && pw_state(s->pages[p + n]) == VSWAP_PAGE_PRESENT &&
	       pw_slot(s->pages[p + n]) == slot + n)
		n++;
	*first = p;
	*count = n;
	return 1;
}

/* ---- staging --------------------------------------------------------------- */

int vswap_store_stage_mark(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (s->read_only)
		return -EROFS;
	if (!range_ok(s, first, count))
		return -EINVAL;
	/* A split commit holds staging bytes to punch that this could not
	 * punch first (below). */
	if (s->snap.active || atomic_load(&s->snap.punch_due))
		return -EBUSY;
	int need = index_need(s, first, count);
	if (need)
		return need;
	/* Pages that left staging since the last commit still have their old
	 * bytes there.  Punch them before anything is staged again: a page
	 * marked now must hold its new copy or nothing, never an old copy
	 * under a new record (if its copy never comes, after a failed move). */
	if (s->unpunched.n)
		staging_punch_unstaged(s);
	wflight_cancel(s, first, count);
	staging_unverified_clear(s, first, count); /* a new copy replaces it */
	for (uint64_t p = first; p < first + count; p++) {
		/* A new copy is coming: until its checksum is recorded the
		 * staged bytes are not to be trusted by a later open. */
		bit_clear(s->summed, p);
		group_mark_staging_dirty(s, p);
		if (bit_test(s->staged, p))
			continue;
		bit_set(s->staged, p);
		s->n_staged++;
	}
	s->pending_pages += count;
	return 0;
}

int vswap_store_stage_record_sums(struct vswap_store *s, uint64_t first, uint64_t count,
				  const uint64_t *sums)
{
	if (s->read_only)
		return -EROFS;
	if (!range_ok(s, first, count))
		return -EINVAL;
	for (uint64_t p = first; p < first + count; p++)
		if (!bit_test(s->staged, p))
			return -EINVAL;
	int need = index_need(s, first, count);
	if (need)
		return need;
	for (uint64_t i = 0; i < count; i++) {
		bit_set(s->summed, first + i);
		ssum_set(s, first + i, sums[i]);
		group_mark_staging_dirty(s, first + i);
	}
	s->pending_pages += count;
	return 0;
}

int vswap_store_stage_seal(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (s->read_only)
		return -EROFS;
	if (!range_ok(s, first, count))
		return -EINVAL;
	uint8_t *buf = malloc(s->page_size);
	if (!buf)
		return -ENOMEM;
	int ret = 0;
	for (uint64_t p = first; p < first + count && !ret; p++) {
		ssize_t k = pread(s->staging_fd, buf, s->page_size, (off_t)(p << s->page_shift));
		if (k != (ssize_t)s->page_size) {
			ret = k < 0 ? -errno : -EIO;
			break;
		}
		uint64_t sum = page_sum(s, p, buf);
		ret = vswap_store_stage_record_sums(s, p, 1, &sum);
	}
	free(buf);
	return ret;
}

int vswap_store_stage_clear(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (s->read_only)
		return -EROFS;
	if (!range_ok(s, first, count))
		return -EINVAL;
	int need = index_need(s, first, count);
	if (need)
		return need;
	wflight_cancel(s, first, count);
	staging_unverified_clear(s, first, count);
	bool any = false;
	for (uint64_t p = first; p < first + count; p++) {
		if (!bit_test(s->staged, p))
			continue;
		bit_clear(s->staged, p);
		bit_clear(s->summed, p);
		group_mark_staging_dirty(s, p);
		s->n_staged--;
		any = true;
	}
	if (!any)
		return 0;
	tables_ssums_release(s);
	s->pending_pages += count;
	/* The bytes are punched after the commit that clears the record: a
	 * record that covers no bytes cannot arise, and a crash in between
	 * leaves bytes vswap-fsck reclaims.  If the list cannot grow, punch
	 * now (the record then covers no bytes until the commit: also found). */
	if (range_vec_push(&s->unpunched, first, count) != 0)
		return staging_punch(s, first, count);
	return 0;
}

bool vswap_store_staged(const struct vswap_store *s, uint64_t page)
{
	if (page >= s->total_pages || !bit_test(s->staged, page))
		return false;
	check_unverified(s, page, 1);
	/* Failed: no longer staged; not checkable: not served. */
	return bit_test(s->staged, page) && !unverified(s, page);
}

/* The first set bit at or after @from, below @limit (limit if none). */
static uint64_t next_set(const uint64_t *bm, uint64_t from, uint64_t limit)
{
	while (from < limit) {
		uint64_t w = bm[from / 64] >> (from % 64);
		if (w)
			return from + (uint64_t)__builtin_ctzll(w) < limit
				   ? from + (uint64_t)__builtin_ctzll(w)
				   : limit;
		from = (from | 63) + 1;
	}
	return limit;
}

int vswap_store_next_staged_run(const struct vswap_store *s, uint64_t from, uint64_t limit,
				uint64_t max, uint64_t *first, uint64_t *count)
{
	if (limit > s->total_pages)
		limit = s->total_pages;
	for (uint64_t p = from;; p++) {
		p = next_set(s->staged, p, limit);
		if (p >= limit || max == 0)
			return 0;
		uint64_t n = 1;
		while (n < max && p + n < limit && bit_test(s->staged, p + n))
			n++;
		/* The run's copies checked first: a failed one leaves staging
		 * (skipped).  One that cannot be checked fails the call: a
		 * caller that went past it (a swap-in ending, say) would leave
		 * the page unserved, and the guest would read zeros there. */
		int rc = check_unverified(s, p, n);
		if (!bit_test(s->staged, p))
			continue;
		if (unverified(s, p))
			return rc < 0 ? rc : -EIO;
		uint64_t m = 1;
		while (m < n && bit_test(s->staged, p + m) && !unverified(s, p + m))
			m++;
		*first = p;
		*count = m;
		return 1;
	}
}

/* ---- recovery helpers ---------------------------------------------------------- */

int vswap_store_slot_owner(const struct vswap_store *s, uint64_t slot, uint64_t *page)
{
	/* A linear scan: recovery builds its own map for bulk use. */
	int need = index_need_all(s);
	if (need)
		return need;
	for (uint64_t p = 0; p < s->total_pages; p++) {
		if (pw_has_slot(s->pages[p]) && pw_slot(s->pages[p]) == slot) {
			*page = p;
			return 1;
		}
	}
	return 0;
}

int vswap_store_punch_slots(struct vswap_store *s, uint64_t first, uint64_t count)
{
	if (s->read_only)
		return -EROFS;
	if (count == 0 || first >= STORE_MAX_SLOTS || count > STORE_MAX_SLOTS - first)
		return -EINVAL;
	int need = index_need_all(s);
	if (!need) /* the swap file changes: known unclean first */
		need = index_record_unclean(s);
	if (need)
		return need;
	/* The slot bitmap holds every slot a loaded record or a pending free
	 * names: a slot clear in it is referenced by nothing. */
	for (uint64_t k = first; k < first + count; k++)
		if (slot_is_used(s, k))
			return -EBUSY;
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)slot_offset(s, first), (off_t)(count << s->page_shift)) != 0)
		return -errno;
	slots_mark_punched(s, first, count);
	return 0;
}

int vswap_store_punch_slot(struct vswap_store *s, uint64_t slot)
{
	return vswap_store_punch_slots(s, slot, 1);
}

int vswap_store_staged_sum(const struct vswap_store *s, uint64_t page, uint64_t *sum)
{
	if (page >= s->total_pages || !bit_test(s->staged, page) || !bit_test(s->summed, page))
		return -ENODATA;
	*sum = s->ssums[page];
	return 0;
}
