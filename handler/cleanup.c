/* SPDX-License-Identifier: MIT */
/*
 * After a complete swap-in every page is resident and the swap file holds
 * only stale copies.  crosvm's vmm-swap truncates the file (at once, or 64
 * MiB every 5 s with slow cleanup); here the slots are freed, a step at a
 * time, and reusable once each step's commit lands.  The store does not
 * punch them then: their bytes stay on disk until a write reuses the slots
 * or a clean close punches them in runs and cuts the file's free tail.
 * Lost pages keep their records so that vswap-fsck still reports them.
 */
#include "handler/internal.h"

static void free_range(struct vswap_handler *h, uint64_t first, uint64_t count, bool any_lost)
{
	if (!any_lost) {
		vswap_store_free(h->store, first, count);
		return;
	}
	uint64_t run = first;
	for (uint64_t p = first; p < first + count; p++) {
		struct vswap_page_info pi;
		if (vswap_store_page(h->store, p, &pi) == 0 && pi.state == VSWAP_PAGE_LOST) {
			if (p > run)
				vswap_store_free(h->store, run, p - run);
			run = p + 1;
		}
	}
	if (first + count > run)
		vswap_store_free(h->store, run, first + count - run);
}

int cleanup_step(struct vswap_handler *h, uint64_t max_pages)
{
	struct monitor *m = &h->m;
	pthread_mutex_lock(&h->lock);
	struct vswap_store_stats st;
	int rc = vswap_store_stats(h->store, &st);
	if (rc == 0) {
		uint64_t count = h->total_pages - m->cleanup_cursor;
		if (count > max_pages)
			count = max_pages;
		free_range(h, m->cleanup_cursor, count, st.pages_lost > 0);
		m->cleanup_cursor += count;
		rc = vswap_store_commit(h->store);
	}
	pthread_mutex_unlock(&h->lock);
	if (m->cleanup_cursor >= h->total_pages)
		m->cleanup_active = false;
	return rc;
}
