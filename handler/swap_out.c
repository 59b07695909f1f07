/* SPDX-License-Identifier: MIT */
/*
 * Swap-out, a chunk at a time on the monitor thread whenever no event is
 * pending.  A chunk is the next run of staged pages (at most chunk_pages)
 * written with one vswap_store_write().  Its staging copy is freed only
 * after the commit that made the write durable, so a crash in between still
 * finds every page in staging; in BATCH mode that commit is grouped every
 * SWAP_OUT_GROUP_BYTES and at the end.
 */
#include <errno.h>
#include <stdlib.h>

#include "handler/internal.h"

static int unclean_push(struct monitor *m, uint64_t first, uint64_t count)
{
	if (m->nunclean &&
	    m->unclean[m->nunclean - 1].first + m->unclean[m->nunclean - 1].count == first) {
		m->unclean[m->nunclean - 1].count += count;
		return 0;
	}
	if (m->nunclean == m->cap_unclean) {
		unsigned cap = m->cap_unclean ? m->cap_unclean * 2 : 16;
		struct run *v = realloc(m->unclean, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		m->unclean = v;
		m->cap_unclean = cap;
	}
	m->unclean[m->nunclean++] = (struct run){first, count};
	return 0;
}

static bool written_and_staged(struct vswap_handler *h, uint64_t page)
{
	struct vswap_page_info pi;
	return vswap_store_page(h->store, page, &pi) == 0 && pi.staged &&
	       pi.state == VSWAP_PAGE_PRESENT;
}

/* Clear the staging marks of the pages of [first, first+count) that are
 * staged and present; lock held. */
static void clear_written(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	uint64_t end = first + count, p = first;
	while (p < end) {
		while (p < end && !written_and_staged(h, p))
			p++;
		uint64_t q = p;
		while (q < end && written_and_staged(h, q))
			q++;
		if (q > p)
			vswap_store_stage_clear(h->store, p, q - p);
		p = q;
	}
}

int swap_out_flush(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_commit(h->store);
	if (rc == 0) {
		/* Durable now: the staging copies can go, of the pages whose
		 * current copy is still the one written.  A page faulted in
		 * since (stale), and perhaps changed and staged again by a
		 * later enable, keeps its staging copy: a run can outlive a
		 * failed commit. */
		for (unsigned i = 0; i < m->nunclean; i++) {
			clear_written(h, m->unclean[i].first, m->unclean[i].count);
			protect_remove_written(h, m->unclean[i].first, m->unclean[i].count);
		}
		m->nunclean = 0;
		m->unclean_pages = 0;
	}
	pthread_mutex_unlock(&h->lock);
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_COMMITTED);
	/* Protect mode: the committed pages leave guest memory on the pool
	 * while this thread writes the next ones. */
	protect_remove_start(h);
	return rc;
}

int64_t swap_out_chunk(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	uint64_t first, count;
	pthread_mutex_lock(&h->lock);
	/* Protect mode: the protected pages first, from guest memory; then
	 * what staging holds (a store left by a copy-mode handler). */
	int64_t w = protect_write_run(h, &first);
	if (w != 0) {
		int rc = w < 0 ? (int)w : unclean_push(m, first, (uint64_t)w);
		if (w > 0)
			m->unclean_pages += (uint64_t)w;
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			return rc;
		if (h->swap_out_hook)
			h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_WRITTEN);
		if (m->unclean_pages << h->page_shift >= SWAP_OUT_GROUP_BYTES &&
		    (rc = swap_out_flush(h)) < 0)
			return rc;
		return w;
	}
	int found = vswap_store_next_staged_run(h->store, m->out_cursor, h->total_pages,
						h->opts.chunk_pages, &first, &count);
	if (found <= 0) {
		pthread_mutex_unlock(&h->lock);
		if (found < 0)
			return found;
		int rc = swap_out_flush(h);
		protect_remove_wait(h); /* Active: the pages are out of memory */
		return rc < 0 ? rc : 0;
	}
	/* The staging file is one mapping over all regions, so a run may
	 * cross a region boundary: the store only sees page numbers. */
	int rc = vswap_store_write(h->store, first, (uint32_t)count, staging_ptr(h, first));
	if (rc == 0) {
		m->out_cursor = first + count;
		rc = unclean_push(m, first, count);
		m->unclean_pages += count;
	}
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return rc;
	if (m->unclean_pages << h->page_shift >= SWAP_OUT_GROUP_BYTES) {
		rc = swap_out_flush(h);
		if (rc < 0)
			return rc;
	}
	return (int64_t)count;
}
