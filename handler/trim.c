/* SPDX-License-Identifier: MIT */
/*
 * Trim (on the job thread, a batch per lock hold): staged pages that are all
 * zeros leave staging and lose their slot (a fault zero-fills them); staged
 * pages identical to their stale slot become present again without a write.
 * A clean page's staging copy is dropped only after the commit that records
 * it present, so a crash in between still finds its bytes.
 */
#include <errno.h>
#include <stdlib.h>

#include "handler/internal.h"

static bool page_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

struct trim_batch {
	struct run *clean; /* runs of clean pages: staging dropped after commit */
	unsigned nclean;
	uint64_t cursor;
	uint64_t zero_first, zero_count; /* the zero run being built */
};

/* Drop a run of zero pages: one clear and one free for the whole run. */
static void zero_flush(struct vswap_handler *h, struct trim_batch *b)
{
	if (!b->zero_count)
		return;
	vswap_store_stage_clear(h->store, b->zero_first, b->zero_count);
	vswap_store_free(h->store, b->zero_first, b->zero_count);
	b->zero_count = 0;
}

static void zero_add(struct vswap_handler *h, struct trim_batch *b, uint64_t p)
{
	if (b->zero_count && b->zero_first + b->zero_count == p) {
		b->zero_count++;
		return;
	}
	zero_flush(h, b);
	b->zero_first = p;
	b->zero_count = 1;
}

static void clean_add(struct trim_batch *b, uint64_t p)
{
	struct run *last = b->nclean ? &b->clean[b->nclean - 1] : NULL;
	if (last && last->first + last->count == p)
		last->count++;
	else
		b->clean[b->nclean++] = (struct run){p, 1};
}

/* Examine up to trim_batch_pages staged pages: the number trimmed, or
 * SCAN_DONE when every staged page was examined. */
static int64_t trim_batch(struct vswap_handler *h, struct trim_batch *b)
{
	uint64_t examined = 0, trimmed = 0;
	while (examined < h->opts.trim_batch_pages) {
		uint64_t first, count;
		int found = vswap_store_next_staged_run(h->store, b->cursor, h->total_pages,
							h->opts.trim_batch_pages - examined, &first,
							&count);
		if (found < 0)
			return found;
		if (found == 0)
			return trimmed ? (int64_t)trimmed : SCAN_DONE;
		for (uint64_t p = first; p < first + count; p++) {
			const void *bytes = staging_ptr(h, p);
			if (page_is_zero(bytes, h->page_size)) {
				zero_add(h, b, p);
				trimmed++;
			} else if (vswap_store_stale_equals(h->store, p, bytes) == 1 &&
				   vswap_store_mark_present(h->store, p) == 0) {
				clean_add(b, p);
				trimmed++;
			}
		}
		/* The run walk must not see a zero page still staged. */
		zero_flush(h, b);
		b->cursor = first + count;
		examined += count;
	}
	return (int64_t)trimmed;
}

static void progress(struct vswap_handler *h, uint64_t pages)
{
	pthread_mutex_lock(&h->slock);
	h->trans.pages = pages;
	h->trans.time_ms = now_ms() - h->jp.t0_ms;
	pthread_mutex_unlock(&h->slock);
}

int trim_job(struct job *j, void *arg)
{
	struct vswap_handler *h = arg;
	struct trim_batch b = {.clean = calloc(h->opts.trim_batch_pages, sizeof(struct run))};
	if (!b.clean)
		return -ENOMEM;
	uint64_t total = 0, wp_cursor = 0;
	bool wp_done = !h->wp.active;
	int rc = 0;
	while (!job_aborted(j)) {
		struct protect_trim pt = {0};
		pthread_mutex_lock(&h->lock);
		b.nclean = 0;
		/* Protect mode: the protected pages in place first, then what
		 * staging holds. */
		int64_t n = wp_done ? trim_batch(h, &b) : protect_trim_batch(h, &wp_cursor, &pt);
		if (n == SCAN_DONE && !wp_done) {
			wp_done = true;
			n = 0;
		}
		pthread_mutex_unlock(&h->lock);
		/* The batch's records committed on the commit thread, without
		 * the lock: faults go on meanwhile. */
		rc = committer_result(h, committer_ticket(h), true);
		pthread_mutex_lock(&h->lock);
		/* A clean page's staging copy goes only now; one a fault took
		 * meanwhile is unstaged already (the clear does nothing). */
		for (unsigned i = 0; rc == 0 && i < b.nclean; i++)
			vswap_store_stage_clear(h->store, b.clean[i].first, b.clean[i].count);
		pthread_mutex_unlock(&h->lock);
		/* Protect mode: the judged pages leave guest memory without the
		 * lock (a punch takes milliseconds; faults go on meanwhile):
		 * each waits for its bit, as the swap-out's removals do. */
		protect_trim_remove(h, &pt, rc == 0);
		if (n < 0 && n != SCAN_DONE)
			rc = (int)n;
		if (rc < 0 || n == SCAN_DONE)
			break;
		total += (uint64_t)n;
		progress(h, total);
		if (h->job_hook)
			h->job_hook(h->job_hook_ctx);
	}
	free(b.clean);
	return rc;
}

/* ---- the swap-out's zero pass ------------------------------------------- */

/* Up to trim_batch_pages staged pages from *cursor: those all zeros leave
 * staging and lose their slot, as in trim.  The count, or SCAN_DONE when
 * every staged page was examined; lock held. */
static int64_t zero_staged_batch(struct vswap_handler *h, uint64_t *cursor)
{
	struct trim_batch b = {.cursor = *cursor};
	uint64_t examined = 0;
	int64_t found = 0;
	while (examined < h->opts.trim_batch_pages) {
		uint64_t first, count;
		int more = vswap_store_next_staged_run(h->store, b.cursor, h->total_pages,
						       h->opts.trim_batch_pages - examined, &first,
						       &count);
		if (more < 0)
			return more;
		if (more == 0) {
			*cursor = h->total_pages;
			return found ? found : SCAN_DONE;
		}
		for (uint64_t p = first; p < first + count; p++)
			if (page_is_zero(staging_ptr(h, p), h->page_size)) {
				zero_add(h, &b, p);
				found++;
			}
		zero_flush(h, &b);
		b.cursor = first + count;
		examined += count;
	}
	*cursor = b.cursor;
	return found;
}

/*
 * A zero page written to the swap file costs a write and a slot, and a
 * separate trim before the swap-out costs a pass over all of guest memory
 * (a copy of every page) and a commit per batch.  So the swap-out looks
 * for zero pages itself, first, reading in place (the first word of a page
 * that holds data settles it): protected pages through the alias mapping,
 * staged ones in staging.  Those all zeros get no record (a fault
 * zero-fills them) and are not written.  The pass commits once, before
 * the first write, so that the slots it frees (the zero pages' old copies,
 * after a resume) are the ones the swap-out's new pages reuse: frees that
 * landed only with the swap-out's own commits would leave the early writes
 * to grow the file and the late frees unused.  Protected zero pages leave
 * guest memory only after that commit, with the written pages
 * (protect_remove_written(), protect_remove_zeros()); staged ones leave
 * staging as in trim (their bytes are punched after a commit).  If the
 * commit fails nothing is removed: the pages stay resident, unwritten.
 */
int swap_out_zero_pass(struct vswap_handler *h, struct job *j)
{
	uint64_t wp_cursor = 0, cursor = 0, found = 0;
	bool wp_done = !h->wp.active;
	protect_zeros_forget(h);
	while (!job_aborted(j)) {
		pthread_mutex_lock(&h->lock);
		int64_t n =
		    wp_done ? zero_staged_batch(h, &cursor) : protect_zero_batch(h, &wp_cursor);
		pthread_mutex_unlock(&h->lock);
		if (n == SCAN_DONE && !wp_done) {
			wp_done = true;
			continue;
		}
		if (n == SCAN_DONE)
			break;
		if (n < 0) {
			protect_zeros_forget(h);
			return (int)n;
		}
		found += (uint64_t)n;
	}
	if (!found)
		return 0;
	/* A commit that begins now takes every record the pass dropped. */
	int rc = committer_result(h, committer_ticket(h), true);
	if (rc < 0)
		protect_zeros_forget(h);
	return rc < 0 ? rc : 0;
}
