/* SPDX-License-Identifier: MIT */
/*
 * The in-memory tables: page words, checksums, the staging bitmap, the slot
 * bitmap and the dirty-group bitmap.  Allocated with calloc so that the
 * kernel backs them lazily: untouched pages of a large guest cost nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store/internal.h"
#include "util/array.h"

static uint64_t words_for(uint64_t bits)
{
	return (bits + 63) / 64;
}

bool bit_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}
void bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}
void bit_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ull << (i % 64));
}

/*
 * The staged copies' checksums are needed only while pages are staged
 * (between an enable and the swap-out or trim that takes them), but a
 * calloc'd array keeps every page it was written on for the life of the
 * handle: 8 bytes per guest page after the last staged page has gone.  So
 * the array is mapped, zero-filled on demand like calloc's, and its pages
 * are returned (MADV_DONTNEED) when the last staged page leaves staging.
 */
static uint64_t *ssums_map(uint64_t n, size_t *bytes)
{
	*bytes = (size_t)(n ? n : 1) * sizeof(uint64_t);
	void *p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		*bytes = 0;
		return NULL;
	}
	return p;
}

void tables_ssums_release(struct vswap_store *s)
{
	if (s->n_staged || !s->ssums_held || !s->ssums)
		return;
	/* Best effort: a failure only keeps the memory. */
	if (madvise(s->ssums, s->ssums_bytes, MADV_DONTNEED) == 0)
		s->ssums_held = false;
}

int tables_alloc(struct vswap_store *s)
{
	uint64_t n = s->total_pages;
	s->ngroups = (n + GROUP_PAGES - 1) / GROUP_PAGES;
	s->pages = calloc(n, sizeof(*s->pages));
	s->sums = calloc(n, sizeof(*s->sums));
	s->staged = calloc(words_for(n), sizeof(uint64_t));
	s->summed = calloc(words_for(n), sizeof(uint64_t));
	/* Backed lazily, so only staged pages cost (and only while staged). */
	s->ssums = ssums_map(n, &s->ssums_bytes);
	s->ssums_held = false;
	s->dirty = calloc(words_for(s->ngroups), sizeof(uint64_t));
	s->sg_only = calloc(words_for(s->ngroups), sizeof(uint64_t));
	if (!s->pages || !s->sums || !s->staged || !s->summed || !s->ssums || !s->dirty ||
	    !s->sg_only)
		return -ENOMEM;
	return slots_reserve(s, n < 64 ? 64 : n);
}

/* What tables_alloc() made and nothing else: a layout built aside
 * (vswap_store_set_regions()) shares every other pointer with the live
 * handle, so only these may be freed when it is given up. */
void tables_free_pages(struct vswap_store *s)
{
	free(s->pages);
	free(s->sums);
	free(s->staged);
	free(s->summed);
	if (s->ssums)
		munmap(s->ssums, s->ssums_bytes);
	free(s->dirty);
	free(s->sg_only);
	s->sg_only = NULL;
	free(s->slot_used);
	free(s->slot_unpunched);
	s->pages = NULL;
	s->sums = NULL;
	s->staged = s->summed = s->dirty = s->slot_used = s->slot_unpunched = NULL;
	s->ssums = NULL;
	s->ssums_bytes = 0;
	s->ssums_held = false;
	s->slot_cap = 0;
	s->n_unpunched = 0;
}

void tables_free(struct vswap_store *s)
{
	tables_free_pages(s);
	free(s->unverified);
	free(s->check_buf);
	s->unverified = NULL;
	s->check_buf = NULL;
	s->n_unverified = 0;
	free(s->freed.v);
	free(s->scratch_slots);
	free(s->scratch_sums);
	free(s->unpunched.v);
	s->unpunched.v = NULL;
	s->unpunched.n = s->unpunched.cap = 0;
	s->scratch_sums = NULL;
	free(s->scratch_reqs);
	s->freed.v = NULL;
	s->scratch_slots = NULL;
	s->scratch_reqs = NULL;
	s->scratch_cap = 0;
	s->freed.n = s->freed.cap = 0;
	free(s->leftout);
	s->leftout = NULL;
	s->nleftout = s->leftout_cap = 0;
	free(s->snap.recs);
	free(s->snap.committing);
	free(s->snap.freed.v);
	free(s->snap.unpunched.v);
	free(s->snap.punch.v);
	memset(&s->snap, 0, sizeof(s->snap));
}

int leftout_add(struct vswap_store *s, const struct vswap_page_record *r)
{
	if (ARRAY_RESERVE(s->leftout, s->leftout_cap, s->nleftout + 1, 16))
		return -ENOMEM;
	s->leftout[s->nleftout++] = *r;
	return 0;
}

const struct vswap_page_record *leftout_find(const struct vswap_store *s, uint64_t page)
{
	for (size_t i = 0; i < s->nleftout; i++)
		if (s->leftout[i].page == page)
			return &s->leftout[i];
	return NULL;
}

/* A state change of @page replaces a left-out record of it. */
static void leftout_forget(struct vswap_store *s, uint64_t page)
{
	for (size_t i = 0; i < s->nleftout; i++) {
		if (s->leftout[i].page == page) {
			s->leftout[i] = s->leftout[--s->nleftout];
			return;
		}
	}
}

int slots_reserve(struct vswap_store *s, uint64_t nslots)
{
	if (nslots <= s->slot_cap)
		return 0;
	/* Both bitmaps cover slot_cap bits: grown together, by words, to the
	 * same capacity (the same doubling from the same start); slot_cap
	 * counts their bits.  A failure leaves slot_cap as it was. */
	size_t words = (size_t)words_for(s->slot_cap), need = (size_t)words_for(nslots);
	if (!s->slot_used && !s->slot_unpunched) {
		/* The first ones (the open, for the whole swap file): calloc,
		 * which the kernel backs lazily, where a memset would touch
		 * every page of them before the open returns (a 4 GiB store's
		 * 256 KiB; a resume's guest waits for the open). */
		s->slot_used = calloc(need, sizeof(uint64_t));
		s->slot_unpunched = calloc(need, sizeof(uint64_t));
		if (!s->slot_used || !s->slot_unpunched) {
			free(s->slot_used);
			free(s->slot_unpunched);
			s->slot_used = s->slot_unpunched = NULL;
			return -ENOMEM;
		}
		s->slot_cap = (uint64_t)need * 64;
		return 0;
	}
	size_t cap = words, ucap = words;
	if (ARRAY_RESERVE(s->slot_used, cap, need, 1) ||
	    ARRAY_RESERVE(s->slot_unpunched, ucap, need, 1))
		return -ENOMEM;
	/* New words: no slot used, none unpunched. */
	memset(s->slot_used + words, 0, (cap - words) * sizeof(uint64_t));
	memset(s->slot_unpunched + words, 0, (ucap - words) * sizeof(uint64_t));
	s->slot_cap = (uint64_t)(cap < ucap ? cap : ucap) * 64;
	return 0;
}

bool slot_is_used(const struct vswap_store *s, uint64_t slot)
{
	return slot < s->slot_cap && bit_test(s->slot_used, slot);
}

/* For loading: is @slot taken already?  (Grows the bitmap to hold it.) */
bool slot_reserve_and_test(struct vswap_store *s, uint64_t slot)
{
	if (slots_reserve(s, slot + 1) != 0)
		return true; /* cannot track it: treat as a conflict */
	return bit_test(s->slot_used, slot);
}

void slot_set_used(struct vswap_store *s, uint64_t slot)
{
	if (!bit_test(s->slot_used, slot))
		s->slots_used++;
	bit_set(s->slot_used, slot);
	/* Its old bytes, if any, are the new owner's to overwrite. */
	if (bit_test(s->slot_unpunched, slot)) {
		bit_clear(s->slot_unpunched, slot);
		s->n_unpunched--;
	}
	if (slot >= s->slots_end)
		s->slots_end = slot + 1;
}

void slot_clear_used(struct vswap_store *s, uint64_t slot)
{
	if (bit_test(s->slot_used, slot))
		s->slots_used--;
	bit_clear(s->slot_used, slot);
	if (slot < s->free_hint)
		s->free_hint = slot;
	while (s->slots_end > 0 && !bit_test(s->slot_used, s->slots_end - 1))
		s->slots_end--;
}

/* A free slot that may still hold bytes (a freed page's old copy, an
 * abandoned write): reusable as it is, punched by slots_punch_free(). */
void slot_mark_unpunched(struct vswap_store *s, uint64_t slot)
{
	if (slot >= s->slot_cap || bit_test(s->slot_used, slot) ||
	    bit_test(s->slot_unpunched, slot))
		return;
	bit_set(s->slot_unpunched, slot);
	s->n_unpunched++;
}

/* [first, first+count) is a hole now (punched or cut off). */
void slots_mark_punched(struct vswap_store *s, uint64_t first, uint64_t count)
{
	uint64_t end = first + count < s->slot_cap ? first + count : s->slot_cap;
	for (uint64_t k = first; k < end && s->n_unpunched; k++) {
		if (!(k & 63) && end - k >= 64 && !s->slot_unpunched[k / 64]) {
			k += 63;
			continue;
		}
		if (bit_test(s->slot_unpunched, k)) {
			bit_clear(s->slot_unpunched, k);
			s->n_unpunched--;
		}
	}
}

/* The first slot at or after @from that is free but may hold bytes, or
 * slot_cap if none. */
uint64_t slot_next_unpunched(const struct vswap_store *s, uint64_t from)
{
	for (uint64_t k = from; k < s->slot_cap;) {
		uint64_t w = s->slot_unpunched[k / 64] >> (k % 64);
		if (w)
			return k + (uint64_t)__builtin_ctzll(w);
		k = (k & ~63ull) + 64;
	}
	return s->slot_cap;
}

/* The lowest free slot, else a new one at the end: keeps the file compact
 * and a chunk's slots consecutive, so one write covers a run. */
int64_t slot_alloc(struct vswap_store *s)
{
	uint64_t slot = s->free_hint;
	while (slot < s->slots_end) {
		uint64_t w = s->slot_used[slot / 64] | ((1ull << (slot % 64)) - 1);
		if (w != UINT64_MAX) {
			slot = (slot & ~63ull) + (uint64_t)__builtin_ctzll(~w);
			break;
		}
		slot = (slot & ~63ull) + 64;
	}
	if (slot >= s->slots_end)
		slot = s->slots_end;
	if (slot >= STORE_MAX_SLOTS)
		return -ENOSPC;
	int ret = slots_reserve(s, slot + 1);
	if (ret)
		return ret;
	slot_set_used(s, slot);
	s->free_hint = slot + 1;
	return (int64_t)slot;
}

/* The first slot of the lowest run of @n free slots, else where the free
 * slots at the end begin.  A run of 64 or more starts at a whole free word
 * of the bitmap: the search steps a word at a time (a batch's search under
 * the caller's lock costs a pass over the bitmap's words, not its bits). */
static uint64_t free_run_find(const struct vswap_store *s, uint64_t n)
{
	uint64_t first = s->free_hint, len = 0;
	if (n >= 64) {
		uint64_t need = (n + 63) / 64, got = 0, endw = (s->slots_end + 63) / 64;
		for (uint64_t w = s->free_hint / 64; w < endw; w++) {
			if (s->slot_used[w]) {
				got = 0;
				continue;
			}
			if (!got)
				first = w * 64;
			if (++got == need)
				return first;
		}
		/* Free words reaching the end continue past it. */
		return got ? first : s->slots_end;
	}
	for (uint64_t k = s->free_hint; k < s->slots_end && len < n; k++) {
		if (bit_test(s->slot_used, k)) {
			first = k + 1;
			len = 0;
		} else {
			len++;
		}
	}
	return first;
}

/* @n consecutive free slots, the lowest such run (else at the end): the
 * first of them, all marked used, or -ENOSPC / -ENOMEM. */
int64_t slot_alloc_run(struct vswap_store *s, uint64_t n)
{
	uint64_t first = free_run_find(s, n);
	if (first + n > STORE_MAX_SLOTS)
		return -ENOSPC;
	int ret = slots_reserve(s, first + n);
	if (ret)
		return ret;
	for (uint64_t i = first; i < first + n; i++)
		slot_set_used(s, i);
	if (first <= s->free_hint)
		s->free_hint = first + n;
	return (int64_t)first;
}

void group_mark_dirty(struct vswap_store *s, uint64_t page)
{
	bit_set(s->dirty, page / GROUP_PAGES);
	bit_clear(s->sg_only, page / GROUP_PAGES);
}

/*
 * A staging change (a stage mark, a staged checksum, a page leaving
 * staging) of a group that was clean leaves its page record as the index
 * has it: the commit writes the staging record alone.  Rewriting the
 * unchanged page record too (a kilobyte a group) doubled what the end of a
 * swap-out committed, and an LMDB environment keeps, for its life, as many
 * dirty pages as its largest transaction had.  Not in a tolerant open
 * (recovery): there the tables may differ from a record not believed, which
 * stays in the index until its group is rewritten, as before.
 */
void group_mark_staging_dirty(struct vswap_store *s, uint64_t page)
{
	uint64_t g = page / GROUP_PAGES;
	if (s->tolerant) {
		group_mark_dirty(s, page);
		return;
	}
	if (bit_test(s->dirty, g))
		return; /* dirty already: whole, or staging only */
	bit_set(s->dirty, g);
	bit_set(s->sg_only, g);
}

void groups_redirty(struct vswap_store *s, const uint64_t *restored)
{
	for (uint64_t wi = 0; wi < words_for(s->ngroups); wi++) {
		s->dirty[wi] |= restored[wi];
		s->sg_only[wi] &= ~restored[wi];
	}
}

static void count_state(struct vswap_store *s, uint32_t w, int delta)
{
	switch (pw_state(w)) {
	case VSWAP_PAGE_PRESENT:
		s->n_present += delta;
		break;
	case VSWAP_PAGE_STALE:
		s->n_stale += delta;
		break;
	case VSWAP_PAGE_LOST:
		s->n_lost += delta;
		break;
	case VSWAP_PAGE_NONE:
		break;
	}
}

void page_set(struct vswap_store *s, uint64_t page, uint32_t word, uint64_t sum)
{
	if (s->nleftout)
		leftout_forget(s, page);
	wflight_cancel(s, page, 1);
	count_state(s, s->pages[page], -1);
	count_state(s, word, +1);
	s->pages[page] = word;
	s->sums[page] = sum;
	group_mark_dirty(s, page);
}

int slot_vec_push(struct slot_vec *v, uint64_t slot)
{
	if (ARRAY_RESERVE(v->v, v->cap, v->n + 1, 256))
		return -ENOMEM;
	v->v[v->n++] = slot;
	return 0;
}

/* Appends a range, merged with the last one when adjacent. */
int range_vec_push(struct range_vec *v, uint64_t first, uint64_t count)
{
	if (v->n && v->v[v->n - 1].first + v->v[v->n - 1].count == first) {
		v->v[v->n - 1].count += count;
		return 0;
	}
	if (ARRAY_RESERVE(v->v, v->cap, v->n + 1, 256))
		return -ENOMEM;
	v->v[v->n].first = first;
	v->v[v->n].count = count;
	v->n++;
	return 0;
}

/* The page loses its slot; the slot stays allocated until the commit that
 * records the loss lands, then it is free for reuse as it is (invariant 2:
 * its old bytes are overwritten by the write that takes it, or punched at
 * a clean close). */
void page_release_slot(struct vswap_store *s, uint64_t page)
{
	uint32_t w = s->pages[page];
	if (pw_has_slot(w) && slot_vec_push(&s->freed, pw_slot(w)) != 0) {
		/* Out of memory for the list: the slot leaks until vswap-fsck
		 * reclaims it, which is safe. */
	}
	page_set(s, page, pw_make(PW_NO_SLOT, VSWAP_PAGE_NONE), 0);
	s->pending_pages++;
}
