/* SPDX-License-Identifier: MIT */
/*
 * The working set: which pages a guest needs first, and reading them ahead.
 *
 * Recording notes every page brought in from the swap file, by a fault or by
 * the prefetch below, in the order it arrived, up to a limit; the embedder
 * takes the list and keeps it (vswap-vm stores it as a blob with a
 * hibernated guest).  Pages a prefetch brought in are recorded too: the
 * guest then touches them without a fault, and they are still its working
 * set.
 *
 * Prefetch replays such a list on a thread of its own while the guest runs:
 * for a window ahead it asks the kernel to read the pages' slots
 * (POSIX_FADV_WILLNEED, without the lock), then under the handler's lock it
 * takes each page that is still present in the store and not yet in the
 * guest, reads and verifies it (from the page cache by then) and copies it
 * in with UFFDIO_COPY, as a fault would.  A page the guest faulted first is
 * skipped (the copy finds it resident); a page that fails its checksum is
 * poisoned like a faulting one.  It never opens an index write transaction:
 * the monitor's lazy commits record the pages as back in the guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "handler/internal.h"

#define AHEAD_PAGES 512u /* read-ahead window of the prefetch */

struct workset {
	/* recording (under h->lock) */
	uint64_t *rec;
	size_t nrec, maxrec;
	bool recording;
	/* prefetch */
	pthread_t thread;
	bool running;
	atomic_bool stop;
	atomic_bool done;
	uint64_t *list;
	size_t nlist;
	void *buf;
	atomic_uint_fast64_t prefetched, skipped, failed;
};

static int workset_get(struct vswap_handler *h, struct workset **out)
{
	if (!h->ws) {
		h->ws = calloc(1, sizeof(*h->ws));
		if (!h->ws)
			return -ENOMEM;
	}
	*out = h->ws;
	return 0;
}

void workset_note(struct vswap_handler *h, uint64_t page)
{
	struct workset *w = h->ws;

	if (w && w->recording && w->nrec < w->maxrec)
		w->rec[w->nrec++] = page;
}

int vswap_handler_workset_record(struct vswap_handler *h, uint64_t max_pages)
{
	struct workset *w;
	int rc;

	if (!h || !max_pages || max_pages > h->total_pages)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = workset_get(h, &w);
	if (!rc) {
		uint64_t *v = realloc(w->rec, max_pages * sizeof(*v));

		if (v) {
			w->rec = v;
			w->maxrec = max_pages;
			w->nrec = 0;
			w->recording = true;
		} else {
			rc = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int vswap_handler_workset_take(struct vswap_handler *h, uint64_t **pages, size_t *n)
{
	if (!h || !pages || !n)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	struct workset *w = h->ws;
	size_t cnt = w ? w->nrec : 0;
	uint64_t *v = malloc((cnt ? cnt : 1) * sizeof(*v));

	if (v) {
		if (cnt)
			memcpy(v, w->rec, cnt * sizeof(*v));
		if (w)
			w->recording = false;
	}
	pthread_mutex_unlock(&h->lock);
	if (!v)
		return -ENOMEM;
	*pages = v;
	*n = cnt;
	return 0;
}

/* Ask the kernel to read the slots of list[from, to) (no lock needed for
 * the advice; the slot numbers are read under it). */
static void read_ahead(struct vswap_handler *h, struct workset *w, size_t from, size_t to)
{
	int fd = vswap_store_swap_fd(h->store);
	off_t run_off = -1, run_len = 0;

	for (size_t i = from; i < to; i++) {
		struct vswap_page_info pi;

		pthread_mutex_lock(&h->lock);
		int rc = vswap_store_page(h->store, w->list[i], &pi);

		pthread_mutex_unlock(&h->lock);
		if (rc || pi.state != VSWAP_PAGE_PRESENT || pi.staged)
			continue;
		off_t off = (off_t)((pi.slot + 1) << h->page_shift);

		if (run_off >= 0 && off == run_off + run_len) {
			run_len += (off_t)h->page_size;
			continue;
		}
		if (run_off >= 0)
			posix_fadvise(fd, run_off, run_len, POSIX_FADV_WILLNEED);
		run_off = off;
		run_len = (off_t)h->page_size;
	}
	if (run_off >= 0)
		posix_fadvise(fd, run_off, run_len, POSIX_FADV_WILLNEED);
}

/* Bring @page in if it is still only in the swap file; lock held. */
static void fetch_locked(struct vswap_handler *h, struct workset *w, uint64_t page)
{
	const struct hregion *r = region_of_page(h, page);
	struct vswap_page_info pi;

	if (!r || vswap_store_page(h->store, page, &pi) || pi.state != VSWAP_PAGE_PRESENT ||
	    pi.staged) {
		atomic_fetch_add(&w->skipped, 1);
		return;
	}
	uintptr_t addr = page_addr(h, r, page);
	int rc = vswap_store_read_page(h->store, page, w->buf);

	if (rc == -EBADMSG || rc == -EIO) {
		h->c.checksum_failures++;
		fault_corrupt(h, h->main_uffd, addr, page, rc, true);
		atomic_fetch_add(&w->failed, 1);
		return;
	}
	if (rc == 0)
		rc = uffd_copy(h->main_uffd, addr, w->buf, h->page_size, true, NULL);
	if (rc == 0) {
		vswap_store_mark_stale(h->store, page, 1);
		workset_note(h, page);
		atomic_fetch_add(&w->prefetched, 1);
	} else {
		/* -EEXIST: the guest faulted it in first; -EAGAIN: a remove
		 * event is being read (the page is going away). */
		atomic_fetch_add(&w->skipped, 1);
	}
}

static void *prefetch_main(void *arg)
{
	struct vswap_handler *h = arg;
	struct workset *w = h->ws;
	size_t ahead = 0;

	for (size_t i = 0; i < w->nlist && !atomic_load(&w->stop); i++) {
		if (i == ahead || (ahead < w->nlist && ahead - i < AHEAD_PAGES / 2)) {
			size_t to = ahead + AHEAD_PAGES < w->nlist ? ahead + AHEAD_PAGES : w->nlist;

			read_ahead(h, w, ahead, to);
			ahead = to;
		}
		pthread_mutex_lock(&h->lock);
		fetch_locked(h, w, w->list[i]);
		pthread_mutex_unlock(&h->lock);
	}
	atomic_store(&w->done, true);
	return NULL;
}

int vswap_handler_prefetch(struct vswap_handler *h, const uint64_t *pages, size_t n)
{
	struct workset *w;
	int rc;

	if (!h || (n && !pages))
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	rc = workset_get(h, &w);
	pthread_mutex_unlock(&h->lock);
	if (rc)
		return rc;
	if (w->running && !atomic_load(&w->done))
		return -EBUSY;
	workset_stop(h); /* the last one, finished: join it */
	free(w->list);
	free(w->buf);
	w->buf = NULL;
	w->list = malloc((n ? n : 1) * sizeof(*w->list));
	if (!w->list || posix_memalign(&w->buf, h->page_size, h->page_size)) {
		free(w->list);
		w->list = NULL;
		w->buf = NULL;
		return -ENOMEM;
	}
	memcpy(w->list, pages, n * sizeof(*pages));
	w->nlist = n;
	atomic_store(&w->stop, false);
	atomic_store(&w->done, false);
	rc = -pthread_create(&w->thread, NULL, prefetch_main, h);
	if (rc) {
		free(w->list);
		free(w->buf);
		w->list = NULL;
		w->buf = NULL;
		return rc;
	}
	w->running = true;
	return 0;
}

int vswap_handler_workset_stats(struct vswap_handler *h, struct vswap_workset_stats *out)
{
	if (!h || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&h->lock);
	struct workset *w = h->ws;

	if (w) {
		out->recorded = w->nrec;
		out->recording = w->recording;
		out->prefetch_pages = w->nlist;
		out->prefetched = atomic_load(&w->prefetched);
		out->skipped = atomic_load(&w->skipped);
		out->failed = atomic_load(&w->failed);
		out->prefetch_done = !w->running || atomic_load(&w->done);
	}
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void workset_stop(struct vswap_handler *h)
{
	struct workset *w = h->ws;

	if (!w || !w->running)
		return;
	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	w->running = false;
}

void workset_free(struct vswap_handler *h)
{
	struct workset *w = h->ws;

	if (!w)
		return;
	workset_stop(h);
	free(w->rec);
	free(w->list);
	free(w->buf);
	free(w);
	h->ws = NULL;
}
