/* SPDX-License-Identifier: MIT */
/*
 * After a complete swap-in every page is resident and the swap file holds
 * only stale copies.  crosvm's vmm-swap truncates the file (at once, or 64
 * MiB every 5 s with slow cleanup); here the slots are freed, a step at a
 * time, and reusable once each step's commit lands.  Their blocks are then
 * given back by the monitor while it is idle (cleanup_punch()): a piece of
 * at most PUNCH_PIECE_SLOTS per turn, in runs, the free tail cut off, until
 * none is left or an enable comes (its swap-out reuses the rest, which is
 * faster than writing fresh blocks).  Not before Ready and not in one go: on
 * a file system mounted with discard a punch waits for the device (256 MiB
 * took 0.4 s here), and an enable, a status or a detach would wait for all
 * of it.  No fault waits for a punch: in Ready no region is registered.
 * With keep_freed_blocks the blocks stay until a write reuses them or a
 * clean close punches them.  Lost pages keep their records so that
 * vswap-fsck still reports them.
 */
#include "handler/internal.h"

/* Slots given back per monitor turn: 8 MiB of 4 KiB pages (about 12 ms of
 * punching on discard-mounted ext4, held under h->lock: a status or a
 * page_info in Ready waits that long at most). */
#define PUNCH_PIECE_SLOTS 2048u

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
	/* The slots that commit freed: their blocks go back from the next
	 * idle turn on. */
	if (rc == 0 && !h->opts.keep_freed_blocks)
		m->punch_due = true;
	if (m->cleanup_cursor >= h->total_pages)
		m->cleanup_active = false;
	return rc;
}

void cleanup_punch(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	if (!m->punch_due)
		return;
	pthread_mutex_lock(&h->lock);
	int64_t left = vswap_store_punch_free(h->store, PUNCH_PIECE_SLOTS);
	pthread_mutex_unlock(&h->lock);
	/* Done, or a punch failed (logged by the store; the clean close
	 * tries again): no retry every turn. */
	if (left <= 0)
		m->punch_due = false;
}
