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

/* The prefetch takes the list this many pages at a time, and reads at
 * most this many consecutive pages at once. */
#define WORKSET_WINDOW 512u
#define WORKSET_RUN_PAGES 64u

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
	void *buf;   /* WORKSET_RUN_PAGES pages */
	int *status; /* per page of a run read */
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
		off_t off = (off_t)vswap_store_slot_offset(h->store, pi.slot);

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

/* Copy page @page (its bytes at @src, verified) into the guest; lock held. */
static void copy_in_locked(struct vswap_handler *h, struct workset *w, uint64_t page,
			   const void *src)
{
	const struct hregion *r = region_of_page(h, page);
	protect_fill_begin(h, page, 1);
	int rc = uffd_copy(h->main_uffd, page_addr(h, r, page), src, h->page_size, true, NULL);
	protect_fill_end(h);

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

/*
 * Bring in pages [first, first + count) of the window, all listed, those
 * still only in the swap file, in runs whose slots are consecutive (one
 * large read each, every page verified); lock held.
 */
static void fetch_locked(struct vswap_handler *h, struct workset *w, uint64_t first, uint32_t count)
{
	uint64_t end = first + count, p = first;

	if (!region_of_page(h, first) || !region_of_page(h, end - 1)) {
		atomic_fetch_add(&w->skipped, count);
		return;
	}
	while (p < end) {
		uint64_t rf;
		uint32_t rn;

		if (vswap_store_next_present_run(h->store, p, end, WORKSET_RUN_PAGES, &rf, &rn) !=
		    1) {
			atomic_fetch_add(&w->skipped, end - p);
			return;
		}
		atomic_fetch_add(&w->skipped, rf - p);
		int n = vswap_store_read_run(h->store, rf, rn, w->buf, w->status);

		if (n < 0) {
			atomic_fetch_add(&w->skipped, rn);
		} else {
			for (uint32_t i = 0; i < rn; i++) {
				uint64_t page = rf + i;

				if (w->status[i] == 0) {
					copy_in_locked(h, w, page,
						       (uint8_t *)w->buf +
							   ((size_t)i << h->page_shift));
				} else if (w->status[i] == -EBADMSG || w->status[i] == -EIO) {
					const struct hregion *r = region_of_page(h, page);

					h->c.checksum_failures++;
					fault_corrupt(h, h->main_uffd, page_addr(h, r, page), page,
						      w->status[i], true);
					atomic_fetch_add(&w->failed, 1);
				} else {
					atomic_fetch_add(&w->skipped, 1);
				}
			}
		}
		p = rf + rn;
	}
}

static int cmp_page(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The list a window at a time: the window's pages sorted, so that pages
 * the guest needed one after the other on different vCPUs (interleaved in
 * the record) and neighbours in the swap file are read together.
 */
static void *prefetch_main(void *arg)
{
	struct vswap_handler *h = arg;
	struct workset *w = h->ws;
	uint64_t win[WORKSET_WINDOW];

	read_ahead(h, w, 0, w->nlist < WORKSET_WINDOW ? w->nlist : WORKSET_WINDOW);
	for (size_t i = 0; i < w->nlist && !atomic_load(&w->stop); i += WORKSET_WINDOW) {
		size_t n = w->nlist - i < WORKSET_WINDOW ? w->nlist - i : WORKSET_WINDOW;
		size_t next = i + n;

		/* The kernel reads the next window while this one is copied. */
		if (next < w->nlist)
			read_ahead(h, w, next,
				   w->nlist - next < WORKSET_WINDOW ? w->nlist
								    : next + WORKSET_WINDOW);
		memcpy(win, w->list + i, n * sizeof(*win));
		qsort(win, n, sizeof(*win), cmp_page);
		for (size_t k = 0; k < n && !atomic_load(&w->stop);) {
			size_t run = 1;

			while (k + run < n && run < WORKSET_RUN_PAGES &&
			       win[k + run] <= win[k + run - 1] + 1) {
				if (win[k + run] == win[k + run - 1]) /* listed twice */
					atomic_fetch_add(&w->skipped, 1);
				run++;
			}
			uint32_t pages = (uint32_t)(win[k + run - 1] - win[k] + 1);

			pthread_mutex_lock(&h->lock);
			/* No copy into a range a remove event read but not yet
			 * applied lets its remover punch (events_settle()). */
			events_settle(h);
			fetch_locked(h, w, win[k], pages);
			events_release(h);
			pthread_mutex_unlock(&h->lock);
			k += run;
		}
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
	free(w->status);
	w->buf = NULL;
	w->status = NULL;
	w->list = malloc((n ? n : 1) * sizeof(*w->list));
	w->status = malloc(WORKSET_RUN_PAGES * sizeof(*w->status));
	if (!w->list || !w->status ||
	    posix_memalign(&w->buf, h->page_size, WORKSET_RUN_PAGES * h->page_size)) {
		free(w->list);
		free(w->status);
		w->list = NULL;
		w->status = NULL;
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
		free(w->status);
		w->list = NULL;
		w->buf = NULL;
		w->status = NULL;
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
	free(w->status);
	free(w);
	h->ws = NULL;
}
