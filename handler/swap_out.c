/* SPDX-License-Identifier: MIT */
/*
 * Swap-out, on the job thread: the pages to write (staged pages in copy
 * mode, the protected pages of guest memory in protect mode) go to the swap
 * file in batches of up to chunk_pages pages, SWAP_OUT_WRITES batches in
 * flight at once on the library's I/O engine (store/io.h: submitted now,
 * reaped later), while the monitor serves faults.  Nothing slow happens
 * under h->lock: a batch is gathered and its slots reserved under it
 * (vswap_store_write_begin()), written and hashed without it, and ended
 * under it again (vswap_store_write_end()); the commits that make the
 * batches durable run on the commit thread (committer_ticket()), so no fault
 * waits for an fsync.
 *
 * A batch gathers the chunk's scattered pages: its fresh slots are
 * consecutive where the file has room, so one vectored write (one iovec per
 * run of pages adjacent in memory) carries a chunk of every fourth page as
 * well as a contiguous one.
 *
 * Ordering, and why it keeps the invariants:
 *   - A page's staging copy (copy mode) is cleared, and a page leaves guest
 *     memory (protect mode), only after a commit that began after its batch
 *     ended landed (invariants 1 and 5; the protect rule in protect.c).
 *   - The bytes of a page may change while its write is in flight: a fault
 *     serves a staged page and the guest writes it, a write-protect fault
 *     lets a guest write through, a remove event drops it.  Each of those
 *     makes a state call on the page under h->lock, which cancels the page
 *     in the store's write (vswap_store_write_end() leaves it as that call
 *     made it and frees its new slot), so a page made present always has the
 *     checksum of the bytes its slot holds.  A page still in flight at the
 *     end was not changed: in protect mode its bit was set all along, and
 *     no guest write passes a set bit.
 *   - Slots are fresh, never a page's own stale slot: an old copy the index
 *     names is never overwritten by a write that may be abandoned.
 *   - Abort (enable, disable, exit, detach): no new batch; the ones in
 *     flight end; what ended is committed and cleaned like at the end.
 *   - A failed write (ENOSPC ...) gives back its slots; the other batches in
 *     flight end; what ended is committed and cleaned, and the job fails
 *     (Failed): the pages not written are still staged or resident.
 *   - Except once per batch for ENOSPC: the room for a fresh run is checked
 *     before the write (store/write.c), but another writer may take it
 *     before the write lands.  The store then takes no fresh run any more,
 *     and the batch's pages not written are written again at once, in
 *     place where they have a stale slot (no new blocks needed): a
 *     re-hibernation that fits in place completes.  Only the pages still
 *     to write are taken again (their bit still set, or still staged);
 *     the others were changed meanwhile and stay as the change left them.
 * In BATCH and NONE durability a commit is asked for every
 * SWAP_OUT_GROUP_BYTES written (or, when the last one is still running, as
 * soon as it lands), while the next batches go on; in FULL, after every
 * batch.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "handler/internal.h"
#include "util/array.h"

/* Batches in flight at most: 16 MiB of writes at the default chunk.  The
 * disk must still have writes queued when the job thread, which ends a
 * batch and gathers, hashes and submits the next, is preempted: with two
 * CPUs under load, 4 batches (8 MiB, a few milliseconds of disk time) ran
 * dry 13-31 times per GiB, the disk idle for 4-6 % of the swap-out; 8 ran
 * dry 1-6 times, idle under 2 %.  Protect mode writes from guest memory,
 * so a batch in flight costs only its tables (about 70 KiB). */
#define SWAP_OUT_WRITES 8u
/* The pages one read of a batch's stale copies covers at most (keep_begin():
 * a run of adjacent slots per read, the reads of every batch comparing in
 * flight together on the writes' ring). */
#define KEEP_READ_PAGES 64u
/* Runs of pages adjacent in memory one batch gathers at most (iovecs). */
#define SWAP_OUT_IOVS IOV_MAX

/* One vectored write: the pages [p0, p0+n) of its batch, consecutive slots. */
struct out_req {
	uint32_t p0, n;
	unsigned iov0, niov;
	uint64_t off;
	uint32_t len, done;
	int err; /* the error that stopped it short of @len */
};

struct out_batch {
	bool busy;
	bool alias; /* protect mode: from guest memory, else staging */
	int fd;
	uint32_t count;
	uint64_t *pages, *slots, *sums;
	int *status; /* per page: written (0) or why not */
	struct iovec *iov;
	unsigned niov;
	struct out_req *reqs;
	struct vswap_io_req *ios; /* one per write, on the I/O engine */
	unsigned nreqs, nsub, pending;
	int result;
	bool retried; /* written again after an ENOSPC (once) */
	bool hashed;  /* b->sums taken before the slots (keep_begin()) */
	/* keep_begin(): its pages' stale copies are being read (b->reqs and
	 * b->ios are those reads then); where each candidate's copy is, by
	 * the batch's index; a page-aligned buffer for the copies.  Allocated
	 * at the batch's first stale page. */
	bool comparing;
	uint32_t ncand;
	struct vswap_read *cand;
	uint32_t *cand_at;
	uint8_t *cmp;
};

struct swap_out {
	struct vswap_handler *h;
	struct vswap_io io; /* without io_uring, it writes synchronously */
	bool io_up;
	struct out_batch b[SWAP_OUT_WRITES];
	unsigned busy;
	bool staged_phase;    /* protect mode: the protected pages are all gathered */
	bool full;	      /* FULL durability: a commit after every batch */
	uint64_t group_pages; /* else a commit per this many pages written */
	/* runs ended, not yet in a commit's ticket; runs whose commit is asked */
	struct run *committing;
	size_t ncommitting, cap_committing;
	bool waiting;
	uint64_t ticket;
	int error;
	struct job *j;
	uint64_t *kept; /* keep_end(): one batch's pages kept */
};

static int runs_push(struct run **v, size_t *n, size_t *cap, uint64_t first, uint64_t count)
{
	if (*n && (*v)[*n - 1].first + (*v)[*n - 1].count == first) {
		(*v)[*n - 1].count += count;
		return 0;
	}
	if (ARRAY_RESERVE(*v, *cap, *n + 1, 16) < 0)
		return -ENOMEM;
	(*v)[(*n)++] = (struct run){first, count};
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

/* After the commit of @v: the staging copies can go, of the pages whose
 * current copy is still the one written (a page faulted in since is stale,
 * and keeps what it has); protect mode notes its pages for removal.  Lock
 * held. */
static void clean_runs(struct vswap_handler *h, const struct run *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		clear_written(h, v[i].first, v[i].count);
		protect_remove_written(h, v[i].first, v[i].count);
	}
}

/*
 * clean_runs() of a whole commit, h->lock taken for one piece of at most
 * chunk_pages pages at a time: a commit covers SWAP_OUT_GROUP_BYTES, and in
 * one hold every fault arriving meanwhile waited for all of it (0.6 ms of
 * CPU, and many times that when the job is preempted holding the lock).
 * Each page is judged on its own, so a fault or remove served between two
 * pieces finds, and leaves, the page as a single hold would.  Lock not held.
 */
static void clean_runs_pieces(struct vswap_handler *h, const struct run *v, size_t n)
{
	uint64_t piece = h->opts.chunk_pages;
	for (size_t i = 0; i < n; i++)
		for (uint64_t done = 0; done < v[i].count; done += piece) {
			uint64_t left = v[i].count - done;
			struct run r = {v[i].first + done, left < piece ? left : piece};
			pthread_mutex_lock(&h->lock);
			clean_runs(h, &r, 1);
			pthread_mutex_unlock(&h->lock);
		}
}

static void after_commit(struct vswap_handler *h)
{
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_COMMITTED);
	/* Protect mode: the committed pages leave guest memory on the pool
	 * while the next batches are written. */
	protect_remove_start(h, false);
}

int swap_out_flush(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_commit(h->store);
	if (rc == 0) {
		clean_runs(h, m->unclean, m->nunclean);
		m->nunclean = 0;
		m->unclean_pages = 0;
	}
	pthread_mutex_unlock(&h->lock);
	after_commit(h);
	return rc;
}

/* ---- commits ------------------------------------------------------------- */

/* A commit is due: per SWAP_OUT_GROUP_BYTES of pages made present (FULL:
 * per batch). */
static bool commit_due(const struct swap_out *so)
{
	const struct monitor *m = &so->h->m;
	return so->full ? m->nunclean > 0 : m->unclean_pages >= so->group_pages;
}

/* Ask for the commit of every run ended so far (lock not held). */
static void commit_ask(struct swap_out *so)
{
	struct vswap_handler *h = so->h;
	struct monitor *m = &h->m;
	for (size_t i = 0; i < m->nunclean; i++)
		if (runs_push(&so->committing, &so->ncommitting, &so->cap_committing,
			      m->unclean[i].first, m->unclean[i].count) < 0) {
			so->error = so->error ? so->error : -ENOMEM;
			return; /* those stay in m->unclean for the last flush */
		}
	m->nunclean = 0;
	m->unclean_pages = 0;
	so->ticket = committer_ticket(h);
	so->waiting = true;
}

/* The commit asked for: with @wait, waits for it.  Cleans what it covered. */
static int commit_reap(struct swap_out *so, bool wait)
{
	struct vswap_handler *h = so->h;
	if (!so->waiting)
		return 0;
	int rc = committer_result(h, so->ticket, wait);
	if (rc == -EINPROGRESS)
		return 0;
	so->waiting = false;
	if (rc < 0) {
		/* Nothing cleared: every page of those runs is still staged
		 * or resident, and written again by the next swap-out. */
		so->ncommitting = 0;
		return rc;
	}
	clean_runs_pieces(h, so->committing, so->ncommitting);
	so->ncommitting = 0;
	after_commit(h);
	return 0;
}

/* ---- batches --------------------------------------------------------------- */

static const uint8_t *page_src(struct vswap_handler *h, const struct out_batch *b, uint64_t p)
{
	if (!b->alias)
		return staging_ptr(h, p);
	const struct hregion *r = region_of_page(h, p);
	return r->alias + ((p - r->first) << h->page_shift);
}

/* Staged pages from the cursor on: up to @max, in at most @max_runs runs;
 * lock held. */
static uint32_t gather_staged(struct vswap_handler *h, uint64_t *pages, uint32_t max,
			      unsigned max_runs)
{
	struct monitor *m = &h->m;
	uint32_t n = 0;
	for (unsigned runs = 0; n < max && runs < max_runs; runs++) {
		uint64_t first, count;
		int found = vswap_store_next_staged_run(h->store, m->out_cursor, h->total_pages,
							max - n, &first, &count);
		if (found <= 0)
			break;
		for (uint64_t p = first; p < first + count; p++)
			pages[n++] = p;
		m->out_cursor = first + count;
	}
	return n;
}

/* Split the batch into writes of consecutive slots, each a list of iovecs
 * over the runs of pages adjacent in memory. */
static void batch_plan(struct vswap_handler *h, struct out_batch *b)
{
	b->nreqs = b->niov = 0;
	for (uint32_t i = 0; i < b->count;) {
		struct out_req *q = &b->reqs[b->nreqs++];
		*q = (struct out_req){.p0 = i,
				      .iov0 = b->niov,
				      .off = vswap_store_slot_offset(h->store, b->slots[i])};
		const uint8_t *last = NULL;
		uint32_t j = i;
		while (j < b->count && (j == i || b->slots[j] == b->slots[j - 1] + 1)) {
			const uint8_t *src = page_src(h, b, b->pages[j]);
			if (last && src == last + h->page_size) {
				b->iov[b->niov - 1].iov_len += h->page_size;
			} else {
				if (b->niov - q->iov0 == IOV_MAX)
					break;
				b->iov[b->niov++] = (struct iovec){(void *)src, h->page_size};
			}
			last = src;
			j++;
		}
		q->n = j - i;
		q->niov = b->niov - q->iov0;
		q->len = q->n << h->page_shift;
		i = j;
	}
}

/* A write handed back by the engine: complete, or stopped by an error
 * after @done bytes (short writes are continued inside the engine). */
static void batch_req_done(struct out_batch *b, struct out_req *q, const struct vswap_io_req *io)
{
	q->done = io->done;
	if (io->res < 0)
		q->err = io->res;
	else if (q->done < q->len)
		q->err = -EIO;
	if (q->err && !b->result)
		b->result = q->err;
	b->pending--;
}

/* Queue what the ring has room for of the batch's writes, and enter the
 * kernel once for them; the rest goes after a reap. */
static void batch_push(struct swap_out *so, struct out_batch *b)
{
	if (b->nsub == b->nreqs)
		return;
	int taken = vswap_io_queue(&so->io, &b->ios[b->nsub], b->nreqs - b->nsub);
	if (taken > 0)
		b->nsub += (unsigned)taken;
	/* Refused now: the queued writes stay, and the next reap enters the
	 * kernel again for them. */
	(void)vswap_io_flush(&so->io);
}

static void batch_submit(struct swap_out *so, unsigned bi)
{
	struct out_batch *b = &so->b[bi];
	b->pending = b->nreqs;
	b->nsub = 0;
	b->result = 0;
	for (unsigned r = 0; r < b->nreqs; r++) {
		const struct out_req *q = &b->reqs[r];
		b->ios[r] = (struct vswap_io_req){.iov = &b->iov[q->iov0],
						  .iovcnt = q->niov,
						  .off = q->off,
						  .fd = b->fd,
						  .write = true,
						  .tag = (uint64_t)bi << 32 | r};
	}
	batch_push(so, b);
}

/* Plan and submit the writes of a batch whose slots are reserved, and hash
 * its pages while they are in flight.  The bytes may change meanwhile only
 * for a page whose write the change cancels. */
static void batch_go(struct swap_out *so, unsigned bi)
{
	struct vswap_handler *h = so->h;
	struct out_batch *b = &so->b[bi];
	batch_plan(h, b);
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_BEGUN);
	batch_submit(so, bi);
	for (uint32_t i = 0; !b->hashed && i < b->count; i++)
		b->sums[i] =
		    vswap_store_page_checksum(h->store, b->pages[i], page_src(h, b, b->pages[i]));
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_IN_FLIGHT);
}

/* Still to write, of a batch's page gathered and not written (lock held):
 * protected and unwritten since (protect mode), or still staged. */
static bool still_to_write(struct vswap_handler *h, const struct out_batch *b, uint64_t p)
{
	return b->alias ? protect_still_clean(h, p) : vswap_store_staged(h->store, p);
}

/* Whether any page of the list has a stale copy (lock held). */
static bool any_stale(struct vswap_handler *h, const uint64_t *pages, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct vswap_page_info pi;
		if (vswap_store_page(h->store, pages[i], &pi) == 0 && pi.state == VSWAP_PAGE_STALE)
			return true;
	}
	return false;
}

static bool keep_buffers(struct swap_out *so, struct out_batch *b)
{
	struct vswap_handler *h = so->h;
	size_t n = h->opts.chunk_pages;
	if (b->cmp)
		return true;
	if (!so->kept && !(so->kept = malloc(n * sizeof(*so->kept))))
		return false;
	b->cand = malloc(n * sizeof(*b->cand));
	b->cand_at = malloc(n * sizeof(*b->cand_at));
	b->cmp = aligned_alloc(h->page_size, n << h->page_shift);
	if (b->cand && b->cand_at && b->cmp)
		return true;
	free(b->cand);
	free(b->cand_at);
	free(b->cmp);
	b->cand = NULL;
	b->cand_at = NULL;
	b->cmp = NULL;
	return false; /* written like any page: only slower */
}

/*
 * Judge a batch whose stale copies were compared (b->status[i]: 1 + the
 * candidate whose copy page i's bytes equal, else 0), lock held: a page
 * that still has its bit (or is still staged) and whose bytes matched
 * becomes present in that slot, the rest of those still to write get slots
 * (the batch compacted to them).  A page changed since it was hashed lost
 * its bit (left staging) under this lock before its writer went on, so it
 * is neither kept nor written.  The kept pages into so->kept; returns how
 * many pages are left to write, or the reservation's error.
 */
static int keep_judge(struct swap_out *so, struct out_batch *b, uint32_t *nkept)
{
	struct vswap_handler *h = so->h;
	uint32_t k = 0, nk = 0;
	for (uint32_t i = 0; i < b->count; i++) {
		uint64_t p = b->pages[i];
		if (!still_to_write(h, b, p))
			continue;
		if (b->ncand && b->status[i] &&
		    vswap_store_stale_keep(h->store, &b->cand[b->status[i] - 1]) == 0) {
			so->kept[nk++] = p;
			continue;
		}
		b->pages[k] = p;
		b->sums[k++] = b->sums[i];
	}
	*nkept = nk;
	b->count = k;
	int rc = k ? vswap_store_write_begin(h->store, b->pages, k, b->slots, &b->fd) : 0;
	return rc < 0 ? rc : (int)k;
}

/* The pages keep_judge() kept are committed and cleaned with the written
 * ones (their staging copy goes, or they leave guest memory, only after the
 * commit that records them present).  Lock not held: m->unclean is the
 * job's while it runs. */
static void keep_note(struct swap_out *so, const struct out_batch *b, uint32_t nk)
{
	struct vswap_handler *h = so->h;
	struct monitor *m = &h->m;
	for (uint32_t i = 0; i < nk; i++)
		if (runs_push(&m->unclean, &m->nunclean, &m->cap_unclean, so->kept[i], 1) < 0) {
			/* Present, its copy kept until the next swap-out's
			 * commit cleans it, or a fault makes it stale. */
			so->error = so->error ? so->error : -ENOMEM;
			break;
		}
	m->unclean_pages += nk;
	if (b->alias && nk)
		protect_alias_drop(h, so->kept, nk);
}

/*
 * A batch with a stale page (after a resume, a page the guest only read is
 * byte for byte its stale slot): its pages are hashed first, without the
 * lock (the sums serve its write too); those whose sum is their stale
 * slot's (vswap_store_stale_match()) are candidates, and their copies are
 * read, a run of adjacent slots per read, on the writes' ring: the batch is
 * in flight, comparing, while the job gathers the next ones, and
 * keep_end() compares every byte once the reads are in (trim's test,
 * vswap_store_stale_equals(), taken apart so that no read runs under the
 * lock).  With no candidate the batch is judged at once.  1: in flight
 * (reading or writing); 2: no page left to write; or an error.
 */
static int keep_begin(struct swap_out *so, unsigned bi)
{
	struct vswap_handler *h = so->h;
	struct out_batch *b = &so->b[bi];
	for (uint32_t i = 0; i < b->count; i++)
		b->sums[i] =
		    vswap_store_page_checksum(h->store, b->pages[i], page_src(h, b, b->pages[i]));
	b->hashed = true;
	bool bufs = keep_buffers(so, b);
	uint32_t nc = 0, nk = 0;
	pthread_mutex_lock(&h->lock);
	for (uint32_t i = 0; bufs && i < b->count; i++)
		if (still_to_write(h, b, b->pages[i]) &&
		    vswap_store_stale_match(h->store, b->pages[i], b->sums[i], &b->cand[nc]) == 1)
			b->cand_at[nc++] = i;
	b->ncand = nc;
	int rc = 0;
	if (!nc)
		rc = keep_judge(so, b, &nk);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return rc;
	b->busy = true;
	so->busy++;
	if (!nc) {
		if (rc == 0) {
			b->busy = false;
			so->busy--;
			return 2;
		}
		batch_go(so, bi);
		return 1;
	}
	/* The reads, as the batch's requests: b->reqs[r].p0 is the first
	 * candidate of read r, whose copy lands at page p0 of b->cmp. */
	b->nreqs = 0;
	for (uint32_t c = 0; c < nc;) {
		uint32_t e = c + 1;
		while (e < nc && e - c < KEEP_READ_PAGES && b->cand[e].fd == b->cand[c].fd &&
		       b->cand[e].offset == b->cand[e - 1].offset + h->page_size)
			e++;
		unsigned r = b->nreqs++;
		b->reqs[r] = (struct out_req){
		    .p0 = c, .n = e - c, .off = b->cand[c].offset, .len = (e - c) << h->page_shift};
		b->ios[r] = (struct vswap_io_req){.buf = b->cmp + ((size_t)c << h->page_shift),
						  .len = b->reqs[r].len,
						  .off = b->cand[c].offset,
						  .fd = b->cand[c].fd,
						  .tag = (uint64_t)bi << 32 | r};
		c = e;
	}
	b->comparing = true;
	b->pending = b->nreqs;
	b->nsub = 0;
	b->result = 0;
	batch_push(so, b);
	return 1;
}

/* A comparing batch whose reads are all in: every byte of each candidate
 * compared with its copy (a failed or short read: written), the batch
 * judged, and its pages left to write submitted.  An aborted or failed
 * swap-out judges nothing: the pages stay as they are, unwritten.  0, or
 * the error that ends the batch. */
static int keep_end(struct swap_out *so, unsigned bi)
{
	struct vswap_handler *h = so->h;
	struct out_batch *b = &so->b[bi];
	b->comparing = false;
	if (job_aborted(so->j) || so->error) {
		b->busy = false;
		so->busy--;
		return 0;
	}
	for (uint32_t i = 0; i < b->count; i++)
		b->status[i] = 0;
	for (unsigned r = 0; r < b->nreqs; r++) {
		const struct out_req *q = &b->reqs[r];
		for (uint32_t j = 0; j < q->n && (uint64_t)(j + 1) << h->page_shift <= q->done;
		     j++) {
			uint32_t k = q->p0 + j, i = b->cand_at[k];
			if (!memcmp(b->cmp + ((size_t)k << h->page_shift),
				    page_src(h, b, b->pages[i]), h->page_size))
				b->status[i] = (int)k + 1;
		}
	}
	if (h->swap_out_hook)
		h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_COMPARED);
	uint32_t nk = 0;
	pthread_mutex_lock(&h->lock);
	int rc = keep_judge(so, b, &nk);
	pthread_mutex_unlock(&h->lock);
	keep_note(so, b, nk);
	if (rc <= 0) {
		b->busy = false;
		so->busy--;
		return rc;
	}
	batch_go(so, bi);
	return 0;
}

/* Gather and submit one batch: 1, or 2 when none of its pages needed a
 * write (keep_begin()); 0 when nothing is left to write. */
static int batch_start(struct swap_out *so, unsigned bi)
{
	struct vswap_handler *h = so->h;
	struct out_batch *b = &so->b[bi];
	uint32_t max = h->opts.chunk_pages;
	pthread_mutex_lock(&h->lock);
	uint32_t n = 0;
	/* Protect mode: the protected pages first, from guest memory; then
	 * what staging holds (a store left by a copy-mode handler). */
	if (!so->staged_phase) {
		n = protect_gather(h, b->pages, max, SWAP_OUT_IOVS);
		if (n == 0)
			so->staged_phase = true;
	}
	b->alias = n > 0;
	if (n == 0)
		n = gather_staged(h, b->pages, max, SWAP_OUT_IOVS);
	/* A batch with a stale page may hold pages that a resume brought in
	 * and the guest only read: compared first, written only if changed. */
	bool stale = n && any_stale(h, b->pages, n);
	int rc = n && !stale ? vswap_store_write_begin(h->store, b->pages, n, b->slots, &b->fd) : 0;
	pthread_mutex_unlock(&h->lock);
	if (n == 0 || rc < 0)
		return rc;
	b->count = n;
	b->hashed = false;
	b->retried = false;
	if (stale)
		return keep_begin(so, bi);
	b->busy = true;
	so->busy++;
	batch_go(so, bi);
	return 1;
}

/*
 * A batch whose write ran out of room (ENOSPC): its pages not written and
 * still to write are written again now, the batch staying in flight.  The
 * store takes no fresh run after an ENOSPC, so a page with a stale slot is
 * rewritten there, in blocks the file has.  1: in flight again; 0: none
 * left to write; else the error that ends the batch (a failure other than
 * ENOSPC, a second ENOSPC, or the new slots' reservation).
 */
static int batch_retry(struct swap_out *so, struct out_batch *b)
{
	struct vswap_handler *h = so->h;
	for (uint32_t i = 0; i < b->count; i++)
		if (b->status[i] != 0 && b->status[i] != -ENOSPC)
			return b->status[i];
	if (b->retried)
		return -ENOSPC;
	/* A stale slot is rewritten in place only while its page's group has
	 * no change the index lacks (store/write.c), and the pages written
	 * before the cut changed theirs: a commit first.  It also frees their
	 * old slots, which hold blocks, for the pages that need a new one. */
	int c = committer_result(h, committer_ticket(h), true);
	if (c < 0)
		return c;
	uint32_t n = 0;
	pthread_mutex_lock(&h->lock);
	for (uint32_t i = 0; i < b->count; i++)
		if (b->status[i] != 0 && still_to_write(h, b, b->pages[i]))
			b->pages[n++] = b->pages[i];
	int rc = n ? vswap_store_write_begin(h->store, b->pages, n, b->slots, &b->fd) : 0;
	pthread_mutex_unlock(&h->lock);
	if (n == 0 || rc < 0)
		return rc;
	hlog(h, VSWAP_LOG_WARN,
	     "swap-out: no room for a fresh run; %u pages written again in place", n);
	b->count = n;
	b->retried = true;
	b->hashed = false;
	batch_go(so, (unsigned)(b - so->b));
	return 1;
}

/* A batch whose writes all completed: ended in the store, its runs noted
 * for the commit. */
static int batch_end(struct swap_out *so, struct out_batch *b)
{
	struct vswap_handler *h = so->h;
	struct monitor *m = &h->m;
	if (b->alias)
		protect_alias_drop(h, b->pages, b->count);
	/* A page is written when its write got past its last byte: the
	 * pages before a full disk's cut count. */
	for (unsigned r = 0; r < b->nreqs; r++) {
		const struct out_req *q = &b->reqs[r];
		for (uint32_t k = 0; k < q->n; k++)
			b->status[q->p0 + k] = (uint64_t)(k + 1) << h->page_shift <= q->done ? 0
					       : q->err ? q->err
							: -EIO;
	}
	/* Only the store's end under the lock: the batch's own arrays and
	 * m->unclean are the job's while it runs (the monitor touches
	 * m->unclean only after joining it), and every fault arriving
	 * meanwhile waits for this hold. */
	pthread_mutex_lock(&h->lock);
	int made =
	    vswap_store_write_end(h->store, b->pages, b->count, b->slots, b->sums, b->status);
	pthread_mutex_unlock(&h->lock);
	/* Every page that is present now is committed and cleaned with the
	 * rest, even when others of the batch failed. */
	int rc = 0;
	uint32_t written = 0;
	for (uint32_t i = 0; rc == 0 && i < b->count; i++)
		if (b->status[i] == 0) {
			rc = runs_push(&m->unclean, &m->nunclean, &m->cap_unclean, b->pages[i], 1);
			written++;
		}
	m->unclean_pages += written;
	m->out_pages += written;
	if (made == -ENOSPC && rc == 0) {
		int again = batch_retry(so, b);
		if (again == 1)
			return 0; /* in flight again: ends later */
		made = again;
	}
	if (made < 0 && rc == 0)
		rc = made;
	b->busy = false;
	so->busy--;
	if (rc == 0) {
		pthread_mutex_lock(&h->slock);
		h->trans = (struct vswap_transition){m->out_pages, now_ms() - m->out_t0_ms};
		pthread_mutex_unlock(&h->slock);
		if (h->swap_out_hook)
			h->swap_out_hook(h->swap_out_hook_ctx, SWAP_OUT_HOOK_WRITTEN);
	}
	return rc;
}

/* Wait for at least one write, hand what completed to its batch, queue
 * the writes that waited for room, and end the batches complete. */
static int reap(struct swap_out *so)
{
	struct vswap_io_req *done[16];
	int n = vswap_io_reap(&so->io, done, 16, true);
	if (n < 0)
		return n; /* the ring is broken: fatal for this swap-out */
	for (int i = 0; i < n; i++) {
		struct out_batch *b = &so->b[done[i]->tag >> 32];
		batch_req_done(b, &b->reqs[done[i]->tag & 0xffffffffu], done[i]);
	}
	int rc = 0;
	for (unsigned i = 0; i < SWAP_OUT_WRITES; i++) {
		struct out_batch *b = &so->b[i];
		if (b->busy)
			batch_push(so, b);
		if (b->busy && b->pending == 0) {
			int e = b->comparing ? keep_end(so, i) : batch_end(so, b);
			if (e < 0 && !rc)
				rc = e;
		}
	}
	return rc;
}

static void so_free(struct swap_out *so)
{
	for (unsigned i = 0; i < SWAP_OUT_WRITES; i++) {
		free(so->b[i].pages);
		free(so->b[i].slots);
		free(so->b[i].sums);
		free(so->b[i].status);
		free(so->b[i].iov);
		free(so->b[i].reqs);
		free(so->b[i].ios);
		free(so->b[i].cand);
		free(so->b[i].cand_at);
		free(so->b[i].cmp);
	}
	free(so->committing);
	free(so->kept);
	if (so->io_up)
		vswap_io_fini(&so->io);
}

static int so_init(struct swap_out *so, struct vswap_handler *h)
{
	*so = (struct swap_out){.h = h, .staged_phase = !h->wp.active};
	struct vswap_store_info si;
	pthread_mutex_lock(&h->lock);
	so->full = vswap_store_info(h->store, &si) == 0 && si.durability == VSWAP_DURABILITY_FULL;
	pthread_mutex_unlock(&h->lock);
	so->group_pages = h->swap_out_group_pages ? h->swap_out_group_pages
						  : SWAP_OUT_GROUP_BYTES >> h->page_shift;
	size_t n = h->opts.chunk_pages;
	for (unsigned i = 0; i < SWAP_OUT_WRITES; i++) {
		struct out_batch *b = &so->b[i];
		b->pages = malloc(n * sizeof(*b->pages));
		b->slots = malloc(n * sizeof(*b->slots));
		b->sums = malloc(n * sizeof(*b->sums));
		b->status = malloc(n * sizeof(*b->status));
		b->iov = malloc(n * sizeof(*b->iov));
		b->reqs = malloc(n * sizeof(*b->reqs));
		b->ios = malloc(n * sizeof(*b->ios));
		if (!b->pages || !b->slots || !b->sums || !b->status || !b->iov || !b->reqs ||
		    !b->ios)
			return -ENOMEM;
	}
	/* Without io_uring (refused by sysctl or seccomp) the engine writes
	 * each batch synchronously as it is submitted: still off the
	 * monitor. */
	(void)vswap_io_init(&so->io, 64);
	so->io_up = true;
	return 0;
}

int swap_out_job(struct job *j, void *arg)
{
	struct vswap_handler *h = arg;
	struct monitor *m = &h->m;
	struct swap_out so;
	int rc = so_init(&so, h);
	so.j = j;
	if (rc == 0 && h->opts.skip_zero_pages) /* no record, not written (trim.c) */
		rc = swap_out_zero_pass(h, j);
	bool more = rc == 0;
	while (rc == 0 && (more || so.busy)) {
		while (more && so.busy < SWAP_OUT_WRITES && !job_aborted(j) && !so.error) {
			unsigned bi = 0;
			while (so.b[bi].busy)
				bi++;
			int s = batch_start(&so, bi);
			if (s < 0)
				so.error = s;
			more = s > 0;
			/* A batch kept whole, without a write, may make a
			 * commit due: asked below before the next batch, so
			 * that its pages leave memory while the swap-out goes
			 * on, not all at the end. */
			if (s == 2 && commit_due(&so))
				break;
		}
		if (job_aborted(j) || so.error)
			more = false;
		if (so.busy) {
			int e = reap(&so);
			if (e < 0) {
				so.error = so.error ? so.error : e;
				if (e != -ENOMEM && so.busy)
					break; /* the ring is gone: its batches with it */
			}
		}
		/* A commit per SWAP_OUT_GROUP_BYTES (FULL: per batch), the
		 * writes going on meanwhile.  In BATCH and NONE a commit due
		 * while the last one still runs is asked once that one has
		 * landed (covering more): waiting for it here would stop the
		 * submissions and let the disk run dry.  FULL waits for it. */
		int c = commit_reap(&so, false);
		if (c < 0 && !so.error)
			so.error = c;
		if (commit_due(&so) && !so.error && (so.full || !so.waiting)) {
			if (so.waiting && (c = commit_reap(&so, true)) < 0)
				so.error = c;
			else
				commit_ask(&so);
		}
		if (h->job_hook && !job_aborted(j))
			h->job_hook(h->job_hook_ctx);
	}
	/* Every write has ended (or the ring broke with some in flight: their
	 * batches never end, their pages keep their state).  What ended is
	 * committed, and its staging or guest copy goes. */
	int c = commit_reap(&so, true);
	if (c < 0 && !so.error)
		so.error = c;
	if (!so.error && m->nunclean) {
		commit_ask(&so);
		if ((c = commit_reap(&so, true)) < 0)
			so.error = c;
	}
	if (so.error && rc == 0)
		rc = so.error;
	/* A broken ring's batches end as failed (their slots back, their pages
	 * unchanged).  The ring's exit does not wait for what it still had:
	 * the kernel retires those requests later.  A comparing batch's
	 * buffer is left allocated (a late read lands in memory that is still
	 * its), and nothing of it changed yet.  A late write can only reach a
	 * slot given back here: if a later write reused it, that copy fails
	 * its checksum, a lost page, never a wrong one. */
	if (so.busy) {
		vswap_io_fini(&so.io);
		so.io_up = false;
		for (unsigned i = 0; i < SWAP_OUT_WRITES; i++)
			if (so.b[i].busy && so.b[i].comparing) {
				so.b[i].cmp = NULL; /* leaked: see above */
				so.b[i].busy = false;
				so.busy--;
			} else if (so.b[i].busy) {
				for (unsigned r = 0; r < so.b[i].nreqs; r++) {
					so.b[i].reqs[r].done = 0;
					so.b[i].reqs[r].err = -EIO;
				}
				batch_end(&so, &so.b[i]);
			}
	}
	so_free(&so);
	protect_remove_zeros(h); /* those the written pages' removals left */
	protect_remove_wait(h);	 /* Active: the pages are out of memory */
	/* Every page is out: Active is recorded here, by the commit thread,
	 * while the monitor serves faults; the monitor then only publishes it
	 * (a commit there holds h->lock through its sync, and every fault
	 * waited for it: the longest wait of a swap-out). */
	if (rc == 0 && !job_aborted(j)) {
		pthread_mutex_lock(&h->lock);
		vswap_store_set_state(h->store, VSWAP_STATE_ACTIVE);
		pthread_mutex_unlock(&h->lock);
		rc = committer_result(h, committer_ticket(h), true);
	}
	return rc;
}
