/* SPDX-License-Identifier: MIT */
/*
 * Swap-in (disable, exit): on the job thread, a chunk per lock hold, so the
 * monitor keeps serving faults in between; a swap-file run's disk read runs
 * without the lock (swap_in_file()), so no fault waits behind it.  Staged pages first, then the
 * swap file in runs of pages whose slots are consecutive; every page read is
 * verified by the store, and a page that fails is poisoned on its own (or
 * reported, by policy).  Copies do not wake: nobody waits on a page that no
 * fault asked for, and a fault that raced us is woken by its own EEXIST.
 * An aborted swap-in leaves the remaining pages where they are; pages
 * brought in keep their disk copies as stale slots for the next trim.
 *
 * Reads in flight: the swap file's next runs (up to prefetch_budget_pages,
 * SWAP_IN_RUNS at most) are read O_DIRECT on the library's I/O engine while
 * the run before them is copied; O_DIRECT puts the bytes in the run's
 * buffer with no page-cache copy to fill and evict, and the buffers on huge
 * pages make each run one request to the disk (bufs_map()).  Without
 * io_uring the runs are read one at a time with pread.
 *
 * Two threads (the copy is most of the CPU a swap-in costs, and the kernel
 * cannot copy into shmem for less: UFFDIO_COPY and pwrite() cost the same,
 * UFFDIO_MOVE takes anonymous memory only): the job thread, under h->lock,
 * plans the runs into free buffers and copies the runs read, in page order,
 * each with the remove events settled (events_settle()), where every page's
 * state is judged and its checksum compared (vswap_store_read_end_sum())
 * before it is copied; the swap-in's reader thread submits and reaps the
 * planned runs' reads and hashes each page it read, and never takes
 * h->lock.  So the swap-in runs at the slowest of the disk, the hashing and
 * the copy, not their sum.  The reader once planned too, under h->lock: it
 * then waited for the copier's hold of a whole run's copy each time a read
 * completed, and the reads completed meanwhile were neither hashed nor
 * replaced, so the copier in turn waited for reads (28 % of a swap-in
 * on this machine).  A run belongs to one thread at a time, by its state
 * under pipe->mu: free and read ("hashed") runs are the copier's, planned
 * and reading ones the reader's.  Lock order: h->lock, then pipe->mu;
 * nothing is taken while pipe->mu is held.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "handler/internal.h"

/* Runs of the swap file in flight at most. */
#define SWAP_IN_RUNS 8u

/* A run of pages whose slots are consecutive, read into @buf in one
 * request: planned under the lock, read and hashed without it, then
 * verified and copied from page @next on (a copy that met a remove event is
 * taken up again there). */
struct swap_in_run {
	struct vswap_io_req req;
	uint64_t first;
	uint32_t count, next;
	struct vswap_read *rd; /* the copy each page's read began with */
	uint64_t *sum;	       /* each page's checksum, as read */
	int *status;
	void *buf;
	enum { RUN_FREE, RUN_PLANNED, RUN_READING, RUN_READ } st;
};

/* The reader thread and what it shares with the copier (see above). */
struct swap_in_pipe {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu; /* the runs' states and the fields below */
	pthread_cond_t cv;  /* a run planned or read, the reader's end, stop */
	bool stop;	    /* the copier's: read no more */
	bool done;	    /* the reader's: it ended (stopped, or err) */
	int err;	    /* why it ended early, or 0 */
	bool planned_all;   /* the copier's alone: no present page after the cursor */
	void *bufs;	    /* the runs' buffers, one mapping (bufs_map()) */
	size_t bufs_len;
};

/* Huge pages under the run buffers, where the kernel gives them: an
 * O_DIRECT read goes to the disk as one request per physically contiguous
 * piece of its buffer, up to the queue's segment limit, so a 2 MiB read
 * into 4 KiB pages became 3-4 requests here (254 segments), into one huge
 * page one, at half the disk time per byte; pinning one huge page costs
 * less than pinning 512 pages too.  Without THP the buffers are plain
 * pages, read as before. */
#define BUF_ALIGN ((size_t)2 << 20)

static void *bufs_map(size_t len)
{
	size_t span = len + BUF_ALIGN;
	uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	uint8_t *base = (uint8_t *)(((uintptr_t)m + BUF_ALIGN - 1) & ~(uintptr_t)(BUF_ALIGN - 1));
	if (base > m)
		munmap(m, (size_t)(base - m));
	if (m + span > base + len)
		munmap(base + len, (size_t)(m + span - (base + len)));
	madvise(base, len, MADV_HUGEPAGE); /* advice: plain pages without it */
	return base;
}

static void runs_free(struct job_progress *jp)
{
	for (unsigned k = 0; jp->runs && k < jp->nruns; k++) {
		free(jp->runs[k].rd);
		free(jp->runs[k].sum);
		free(jp->runs[k].status);
	}
	free(jp->runs);
	jp->runs = NULL;
	jp->nruns = 0;
	vswap_io_fini(&jp->io);
	if (jp->pipe) {
		if (jp->pipe->bufs)
			munmap(jp->pipe->bufs, jp->pipe->bufs_len);
		pthread_cond_destroy(&jp->pipe->cv);
		pthread_mutex_destroy(&jp->pipe->mu);
		free(jp->pipe);
		jp->pipe = NULL;
	}
}

/* The reader's, as it ends: wait for the runs in flight (an aborted or
 * failed swap-in drops them). */
static void runs_drain(struct job_progress *jp)
{
	for (;;) {
		bool reading = false;
		pthread_mutex_lock(&jp->pipe->mu);
		for (unsigned k = 0; k < jp->nruns; k++)
			reading |= jp->runs[k].st == RUN_READING;
		pthread_mutex_unlock(&jp->pipe->mu);
		if (!reading)
			break;
		struct vswap_io_req *done[SWAP_IN_RUNS];
		int n = vswap_io_reap(&jp->io, done, SWAP_IN_RUNS, true);
		if (n <= 0)
			break; /* the ring is unusable: nothing more completes */
		pthread_mutex_lock(&jp->pipe->mu);
		for (int i = 0; i < n; i++)
			jp->runs[done[i]->tag].st = RUN_FREE;
		pthread_mutex_unlock(&jp->pipe->mu);
	}
}

int swap_in_prepare(struct vswap_handler *h)
{
	struct job_progress *jp = &h->jp;
	if (!jp->runs) {
		uint32_t chunk = h->opts.chunk_pages;
		uint64_t budget = h->opts.prefetch_budget_pages / chunk;
		unsigned n = budget < 2		     ? 2
			     : budget > SWAP_IN_RUNS ? SWAP_IN_RUNS
						     : (unsigned)budget;
		jp->runs = calloc(n, sizeof(*jp->runs));
		jp->pipe = calloc(1, sizeof(*jp->pipe));
		if (!jp->runs || !jp->pipe) {
			free(jp->runs);
			free(jp->pipe);
			jp->runs = NULL;
			jp->pipe = NULL;
			return -ENOMEM;
		}
		pthread_mutex_init(&jp->pipe->mu, NULL);
		pthread_cond_init(&jp->pipe->cv, NULL);
		jp->nruns = n;
		size_t buf_len = (size_t)chunk << h->page_shift;
		jp->pipe->bufs = bufs_map(n * buf_len);
		if (!jp->pipe->bufs) {
			runs_free(jp);
			return -ENOMEM;
		}
		jp->pipe->bufs_len = n * buf_len;
		for (unsigned k = 0; k < n; k++) {
			struct swap_in_run *r = &jp->runs[k];
			r->buf = (uint8_t *)jp->pipe->bufs + k * buf_len;
			r->rd = calloc(chunk, sizeof(*r->rd));
			r->sum = calloc(chunk, sizeof(*r->sum));
			r->status = calloc(chunk, sizeof(*r->status));
			if (!r->rd || !r->sum || !r->status) {
				runs_free(jp);
				return -ENOMEM;
			}
		}
		const char *mode = getenv("VSWAP_IO");
		if ((mode && strcmp(mode, "sync") == 0) || vswap_io_init(&jp->io, n) < 0) {
			vswap_io_fini(&jp->io); /* pread, one run at a time */
			vswap_io_init_sync(&jp->io, n);
		}
	}
	jp->cursor = 0;
	jp->staged_done = false;
	jp->pipe->planned_all = false;
	jp->t0_ms = now_ms();
	return 0;
}

void swap_in_release(struct vswap_handler *h)
{
	runs_free(&h->jp);
}

/* The copied pages are resident: their staged and swapped copies are now
 * obsolete (the disk copy stays as a stale slot). */
static void settle(struct vswap_handler *h, uint64_t first, uint64_t count, bool staged)
{
	if (count == 0)
		return;
	if (staged)
		vswap_store_stage_clear(h->store, first, count);
	vswap_store_mark_stale(h->store, first, count);
}

/* Copy @count pages without waking; a page already there is skipped. */
static int copy_pages(struct vswap_handler *h, uintptr_t dst, const uint8_t *src, uint64_t first,
		      uint64_t count, bool staged)
{
	uint64_t i = 0;
	while (i < count) {
		size_t done = 0;
		protect_fill_begin(h, first + i, count - i);
		int rc =
		    uffd_copy(h->main_uffd, dst + (i << h->page_shift), src + (i << h->page_shift),
			      (count - i) << h->page_shift, false, &done);
		protect_fill_end(h);
		uint64_t n = done >> h->page_shift;
		settle(h, first + i, n, staged);
		i += n;
		if (rc == 0)
			break;
		if (rc != -EEXIST)
			return rc;
		settle(h, first + i, 1, true);
		i++;
	}
	return 0;
}

static int64_t swap_in_staged(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	const struct hregion *r = region_of_page(h, first);
	if (count > r->first + r->pages - first) /* host addresses end here */
		count = r->first + r->pages - first;
	int rc = copy_pages(h, page_addr(h, r, first), staging_ptr(h, first), first, count, true);
	if (rc < 0)
		return rc;
	h->jp.cursor = first + count;
	return (int64_t)count;
}

/* The copier's, h->lock held: plan the next runs of present pages from the
 * cursor into the free run buffers (each within a region; its pages' reads
 * begun) and hand them to the reader.  0, or -errno. */
static int plan_runs(struct vswap_handler *h)
{
	struct job_progress *jp = &h->jp;
	struct swap_in_pipe *pp = jp->pipe;
	unsigned fr[SWAP_IN_RUNS], nf = 0, np = 0;
	int ret = 0;
	if (pp->planned_all)
		return 0;
	pthread_mutex_lock(&pp->mu);
	for (unsigned k = 0; k < jp->nruns; k++)
		if (jp->runs[k].st == RUN_FREE)
			fr[nf++] = k;
	pthread_mutex_unlock(&pp->mu);
	/* The free runs are the copier's: filled without pp->mu. */
	for (; np < nf; np++) {
		struct swap_in_run *r = &jp->runs[fr[np]];
		uint64_t first;
		uint32_t count;
		int found = vswap_store_next_present_run(h->store, jp->cursor, h->total_pages,
							 h->opts.chunk_pages, &first, &count);
		if (found < 0) { /* not "none left": those pages would go unserved */
			ret = found;
			break;
		}
		if (found == 0) {
			pp->planned_all = true;
			break;
		}
		const struct hregion *g = region_of_page(h, first);
		if (count > g->first + g->pages - first) /* host addresses end here */
			count = (uint32_t)(g->first + g->pages - first);
		for (uint32_t i = 0; i < count && ret == 0; i++)
			ret = vswap_store_read_begin(h->store, first + i, &r->rd[i]);
		if (ret < 0)
			break; /* a present run: cannot happen */
		r->first = first;
		r->count = count;
		r->next = 0;
		r->req = (struct vswap_io_req){
		    .buf = r->buf,
		    .off = r->rd[0].offset,
		    .len = count << h->page_shift,
		    .fd = r->rd[0].fd,
		    .tag = fr[np],
		};
		jp->cursor = first + count;
	}
	if (np) { /* handed over in one hold, one wake-up of the reader */
		pthread_mutex_lock(&pp->mu);
		for (unsigned i = 0; i < np; i++)
			jp->runs[fr[i]].st = RUN_PLANNED;
		pthread_cond_broadcast(&pp->cv);
		pthread_mutex_unlock(&pp->mu);
	}
	return ret;
}

/* A read refused for a reason that says nothing about the bytes (say the
 * file system refused O_DIRECT for it): again, through the page cache. */
static void reread(struct vswap_handler *h, struct swap_in_run *r)
{
	int fd = vswap_store_swap_fd(h->store);
	hlog(h, VSWAP_LOG_WARN, "swap-in read at page %llu: %s; reading again",
	     (unsigned long long)r->first, vswap_strerror(r->req.res));
	uint32_t done = 0;
	while (done < r->req.len) {
		ssize_t k = pread(fd, (uint8_t *)r->buf + done, r->req.len - done,
				  (off_t)(r->req.off + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r->req.res = k < 0 ? -errno : (int32_t)done;
			r->req.done = done;
			return; /* end of file: the missing pages fail verification */
		}
		done += (uint32_t)k;
	}
	r->req.res = (int32_t)done;
	r->req.done = done;
}

/* Hash the pages of run @r that its read brought whole (the rest fail
 * their verification for bytes missing). */
static void hash_run(struct vswap_handler *h, struct swap_in_run *r)
{
	uint32_t whole = r->req.res < 0 ? 0 : r->req.done >> h->page_shift;
	if (whole > r->count)
		whole = r->count;
	for (uint32_t i = 0; i < whole; i++)
		r->sum[i] = vswap_store_page_checksum(
		    h->store, r->first + i, (const uint8_t *)r->buf + ((size_t)i << h->page_shift));
}

/* The reader thread, h->lock never taken: submit the runs planned, reap
 * and hash them and hand them over, until the copier says stop (or the
 * ring fails); then wait for the reads in flight. */
static void *reader_main(void *arg)
{
	struct vswap_handler *h = arg;
	struct job_progress *jp = &h->jp;
	struct swap_in_pipe *pp = jp->pipe;
	struct swap_in_run *submit[SWAP_IN_RUNS];
	int err = 0;
	pthread_setname_np(pthread_self(), "vswap-swapin");
	for (;;) {
		unsigned ns = 0;
		bool in_flight = false;
		pthread_mutex_lock(&pp->mu);
		if (pp->stop) {
			pthread_mutex_unlock(&pp->mu);
			break;
		}
		for (unsigned k = 0; k < jp->nruns; k++) {
			struct swap_in_run *r = &jp->runs[k];
			if (r->st == RUN_PLANNED) {
				r->st = RUN_READING;
				submit[ns++] = r;
			}
			in_flight |= r->st == RUN_READING;
		}
		if (!in_flight) {
			/* Every buffer is the copier's: wait for a plan. */
			pthread_cond_wait(&pp->cv, &pp->mu);
			pthread_mutex_unlock(&pp->mu);
			continue;
		}
		pthread_mutex_unlock(&pp->mu);
		/* Queued outside pp->mu: without io_uring a queued read is
		 * read there and then, and the copier must not wait for it. */
		for (unsigned i = 0; i < ns; i++)
			if (vswap_io_queue(&jp->io, &submit[i]->req, 1) != 1)
				err = -EIO; /* more than the ring's depth: cannot happen */
		if (err < 0)
			break;
		err = vswap_io_flush(&jp->io);
		if (err < 0)
			break;
		struct vswap_io_req *done[SWAP_IN_RUNS];
		int n = vswap_io_reap(&jp->io, done, SWAP_IN_RUNS, true);
		if (n < 0) {
			err = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct swap_in_run *r = &jp->runs[done[i]->tag];
			if (r->req.res < 0 && r->req.res != -EIO)
				reread(h, r);
			hash_run(h, r);
		}
		/* The hook first: a test acts between a run's read and its
		 * copy, which cannot begin before the run is handed over. */
		if (n > 0 && h->swap_in_hook)
			h->swap_in_hook(h->swap_in_hook_ctx, SWAP_IN_HOOK_READ);
		pthread_mutex_lock(&pp->mu);
		for (int i = 0; i < n; i++)
			jp->runs[done[i]->tag].st = RUN_READ;
		pthread_cond_broadcast(&pp->cv);
		pthread_mutex_unlock(&pp->mu);
	}
	runs_drain(jp);
	pthread_mutex_lock(&pp->mu);
	pp->err = err;
	pp->done = true;
	pthread_cond_broadcast(&pp->cv);
	pthread_mutex_unlock(&pp->mu);
	return NULL;
}

static int reader_start(struct vswap_handler *h)
{
	struct swap_in_pipe *pp = h->jp.pipe;
	if (pp->started)
		return 0;
	pp->stop = pp->done = false;
	pp->err = 0;
	int rc = pthread_create(&pp->thread, NULL, reader_main, h);
	if (rc) /* not -EAGAIN: that would be taken for a remove event waiting */
		return rc == EAGAIN ? -ENOMEM : -rc;
	pp->started = true;
	return 0;
}

/* Stop the reader (if running) and wait for its end: its reads have
 * completed then, and every run is the caller's. */
static void reader_stop(struct vswap_handler *h)
{
	struct swap_in_pipe *pp = h->jp.pipe;
	if (!pp || !pp->started)
		return;
	pthread_mutex_lock(&pp->mu);
	pp->stop = true;
	pthread_cond_broadcast(&pp->cv);
	pthread_mutex_unlock(&pp->mu);
	pthread_join(pp->thread, NULL);
	pp->started = false;
}

/* pp->mu held: the run read that begins lowest, or NULL. */
static struct swap_in_run *run_read(struct job_progress *jp)
{
	struct swap_in_run *best = NULL;
	for (unsigned k = 0; k < jp->nruns; k++)
		if (jp->runs[k].st == RUN_READ && (!best || jp->runs[k].first < best->first))
			best = &jp->runs[k];
	return best;
}

/*
 * Lock held: verify and copy run @r from page r->next on.  Meanwhile a page
 * of the run may have changed (a fault brought it in, a remove freed it):
 * vswap_store_read_end() then says -ESTALE and the page is left to whoever
 * changed it; only bytes of the copy the read began with are verified and
 * copied.  Pages brought in, or -errno (-EAGAIN: a remove event waits on
 * the main uffd; the run is taken up again where it stopped).
 */
static int64_t copy_run(struct vswap_handler *h, struct swap_in_run *r)
{
	const struct hregion *g = region_of_page(h, r->first);
	int32_t got = r->req.res < 0 ? r->req.res : (int32_t)r->req.done;
	uint8_t *buf = r->buf;
	for (uint32_t i = r->next; i < r->count; i++) {
		int64_t have = got < 0 ? got : (int64_t)got - ((int64_t)i << h->page_shift);
		if (have > (int64_t)h->page_size)
			have = (int64_t)h->page_size;
		struct vswap_page_info pi;
		/* Brought in by a fault while the run was read: its copy is
		 * stale now, and the page is not the swap-in's to count. */
		if (vswap_store_page(h->store, r->first + i, &pi) < 0 ||
		    pi.state != VSWAP_PAGE_PRESENT)
			r->status[i] = -ESTALE;
		else
			r->status[i] =
			    vswap_store_read_end_sum(h->store, &r->rd[i], r->sum[i],
						     have < 0 && got >= 0 ? 0 : (int32_t)have);
	}
	uint32_t i = r->next, brought = 0;
	int unserved = 0;
	while (i < r->count) {
		if (r->status[i] == -ESTALE) { /* changed meanwhile: not ours */
			i++;
			continue;
		}
		brought++;
		if (r->status[i] < 0) {
			h->c.checksum_failures++;
			int rc = fault_corrupt(h, h->main_uffd, page_addr(h, g, r->first + i),
					       r->first + i, r->status[i], false);
			if (rc < 0) {
				r->next = i;
				return rc;
			}
			if (rc == 0) /* by policy: the swap-in must not end */
				unserved = r->status[i];
			i++;
			continue;
		}
		uint32_t j = i + 1;
		while (j < r->count && r->status[j] == 0)
			j++;
		brought += j - i - 1;
		int rc = copy_pages(h, page_addr(h, g, r->first + i),
				    buf + ((size_t)i << h->page_shift), r->first + i, j - i, false);
		if (rc < 0) {
			/* Judged again once the remove event is applied (the
			 * pages copied meanwhile are skipped then: EEXIST). */
			r->next = i;
			return rc;
		}
		i = j;
	}
	/* Free for the next plan (plan_runs(), which wakes the reader). */
	pthread_mutex_lock(&h->jp.pipe->mu);
	r->st = RUN_FREE;
	pthread_mutex_unlock(&h->jp.pipe->mu);
	return unserved ? (int64_t)unserved : (int64_t)brought;
}

/* pp->mu held: whether a run is planned, being read or read. */
static bool runs_busy(const struct job_progress *jp)
{
	for (unsigned k = 0; k < jp->nruns; k++)
		if (jp->runs[k].st != RUN_FREE)
			return true;
	return false;
}

/*
 * Lock held (dropped while waiting for the reader): the swap file's next
 * run read, verified and copied, the free buffers planned again first.
 * Pages brought in, 0 when none is left, or -errno.
 */
static int64_t swap_in_file(struct vswap_handler *h)
{
	struct job_progress *jp = &h->jp;
	struct swap_in_pipe *pp = jp->pipe;
	int rc = reader_start(h);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = plan_runs(h);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&pp->mu);
		struct swap_in_run *r = run_read(jp);
		bool busy = runs_busy(jp), done = pp->done;
		rc = pp->err;
		if (!r && busy && !done) {
			/* Nothing read yet: wait without the lock (faults and
			 * remove events go on meanwhile), then settle again:
			 * a remove event read meanwhile is applied before the
			 * end below looks at the pages, so its pages are
			 * -ESTALE, never copied into the hole its remover
			 * punched (events_settle()). */
			events_release(h);
			pthread_mutex_unlock(&h->lock);
			while (!run_read(jp) && !pp->done)
				pthread_cond_wait(&pp->cv, &pp->mu);
			pthread_mutex_unlock(&pp->mu);
			pthread_mutex_lock(&h->lock);
			events_settle(h);
			continue;
		}
		pthread_mutex_unlock(&pp->mu);
		if (!r) {
			if (!busy) /* every run planned was copied */
				return 0;
			/* The reader ended with runs still its own. */
			return rc < 0 ? rc : -EIO;
		}
		int64_t n = copy_run(h, r);
		if (n != 0)
			return n;
		/* Every page of that run was brought in by faults: the next. */
	}
}

/* One chunk: pages brought in, 0 when done, or -errno (-EAGAIN: retry). */
static int64_t swap_in_chunk(struct vswap_handler *h)
{
	struct job_progress *jp = &h->jp;
	int64_t n = 0;
	pthread_mutex_lock(&h->lock);
	events_settle(h); /* staged copies too: no copy into a removed range */
	if (!jp->staged_done) {
		uint64_t first, count;
		int found = vswap_store_next_staged_run(h->store, jp->cursor, h->total_pages,
							h->opts.chunk_pages, &first, &count);
		if (found > 0)
			n = swap_in_staged(h, first, count);
		else if (found == 0) {
			jp->staged_done = true;
			jp->cursor = 0;
		} else
			n = found;
	}
	if (jp->staged_done) {
		n = swap_in_file(h);
	}
	events_release(h);
	pthread_mutex_unlock(&h->lock);
	if (jp->staged_done && h->swap_in_hook)
		h->swap_in_hook(h->swap_in_hook_ctx, SWAP_IN_HOOK_COPIED);
	return n;
}

/* Poison page @p of @r through uffd @i (not the main one); 0 when done or nothing to
 * poison there, -EAGAIN, or -errno. */
static int poison_other(struct vswap_handler *h, unsigned i, const struct hregion *r, uint64_t p)
{
	struct monitor *m = &h->m;
	int rc = uffd_poison(m->uffds.v[i].fd, uffd_page_addr(h, i, r, p), h->page_size, false);
	if (rc == 0 || rc == -EEXIST || rc == -ENOENT) /* ENOENT: not mapped there */
		return 0;
	if (rc == -ESRCH) { /* its process is gone */
		m->uffds.v[i].dead = true;
		m->gc_due = true;
		return 0;
	}
	return rc;
}

/* Poison lost page @p through every live uffd, lock held: poison markers
 * are per page table.  1 poisoned, 0 unserved (by policy), -errno; -EAGAIN
 * names the uffd in *@at. */
static int poison_page(struct vswap_handler *h, uint64_t p, unsigned *at)
{
	struct monitor *m = &h->m;
	const struct hregion *r = region_of_page(h, p);
	uintptr_t addr = page_addr(h, r, p);
	for (unsigned i = *at; i < m->uffds.n; i++) {
		int rc;
		if (uffd_list_is_dead(&m->uffds, i))
			continue;
		if (i == 0)
			rc = fault_corrupt(h, h->main_uffd, addr, p, -EBADMSG, false);
		else
			rc = poison_other(h, i, r, p);
		if (rc == -EAGAIN) {
			*at = i;
			return rc;
		}
		if (i == 0 && rc == 0)
			return 0; /* unserved: do not poison elsewhere either */
		if (rc < 0) {
			hlog(h, VSWAP_LOG_ERROR, "poison page %llu on uffd %u: %s",
			     (unsigned long long)p, i, vswap_strerror(rc));
			return rc;
		}
	}
	return 1;
}

/* Pages lost earlier (a failed fault, fsck) were never served: poison them
 * now, through every uffd, so that after unregistering no process reads
 * zeros there, only SIGBUS.  On the monitor thread (it owns the uffd list
 * and reads the REMOVE events a poison may wait for). */
int swap_in_poison_lost(struct vswap_handler *h)
{
	struct vswap_store_stats st;
	pthread_mutex_lock(&h->lock);
	int rc = vswap_store_stats(h->store, &st);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return rc;
	/* Every page is resident now, or lost.  One still staged or swapped
	 * out was not brought in (its copy could not be judged): once the
	 * regions are unregistered the guest would read zeros there.  So the
	 * swap-in fails and they stay registered, whatever skipped the page. */
	if (st.pages_staged || st.pages_present) {
		hlog(h, VSWAP_LOG_ERROR,
		     "swap-in: %llu staged and %llu swapped-out pages were not brought in",
		     (unsigned long long)st.pages_staged, (unsigned long long)st.pages_present);
		return -EIO;
	}
	if (!st.pages_lost)
		return 0;
	for (uint64_t p = 0; p < h->total_pages; p++) {
		unsigned at = 0;
		for (;;) {
			struct vswap_page_info pi;
			pthread_mutex_lock(&h->lock);
			rc = vswap_store_page(h->store, p, &pi);
			if (rc == 0)
				rc = pi.state != VSWAP_PAGE_LOST ? 1 : poison_page(h, p, &at);
			pthread_mutex_unlock(&h->lock);
			if (rc != -EAGAIN)
				break;
			/* A REMOVE event waits on that uffd: read it, retry. */
			if (events_drain(h, at, true) <= 0)
				sched_yield();
		}
		if (rc == 0)
			return -EBADMSG; /* unserved: do not unregister */
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void progress(struct vswap_handler *h, uint64_t pages)
{
	pthread_mutex_lock(&h->slock);
	h->trans.pages = pages;
	h->trans.time_ms = now_ms() - h->jp.t0_ms;
	pthread_mutex_unlock(&h->slock);
}

/* The lost pages are left to swap_in_poison_lost(), on the monitor. */
int swap_in_job(struct job *j, void *arg)
{
	struct vswap_handler *h = arg;
	uint64_t pages = 0, since_commit = 0;
	int64_t n;
	int rc = 0;
	while (!(j && job_aborted(j))) {
		n = swap_in_chunk(h);
		if (n == -EAGAIN) {
			/* A REMOVE event is pending on the main uffd.  On the job
			 * thread the monitor reads it; run by the monitor itself
			 * (exit), nobody else will: read it here. */
			if (!j && events_drain(h, 0, true) > 0)
				continue;
			sched_yield(); /* or read, its remover not resumed yet */
			continue;
		}
		if (n <= 0) {
			rc = (int)n;
			break;
		}
		pages += (uint64_t)n;
		since_commit += (uint64_t)n;
		progress(h, pages);
		if (h->job_hook)
			h->job_hook(h->job_hook_ctx);
		if (since_commit << h->page_shift >= SWAP_OUT_GROUP_BYTES) {
			/* On the commit thread: its sync runs without the lock,
			 * so neither the next reads nor the faults wait for it. */
			committer_request(h);
			since_commit = 0;
		}
	}
	/* The run buffers (a chunk each, 2 MiB by default) would otherwise
	 * stay in the process's RSS for the handler's life; the next swap-in
	 * allocates them again.  No buffer goes while the kernel can still
	 * write it: the reader ends once its reads have completed. */
	reader_stop(h);
	runs_free(&h->jp);
	pthread_mutex_lock(&h->lock);
	int crc = vswap_store_commit(h->store);
	pthread_mutex_unlock(&h->lock);
	if (rc == 0 && crc < 0 && !(j && job_aborted(j))) {
		/* Every page is resident: what the index still says is moot
		 * once the regions are unregistered (a failed sync sticks
		 * until the store is reopened).  Say so; do not fail. */
		hlog(h, VSWAP_LOG_ERROR, "swap-in: final commit: %s (every page is resident)",
		     vswap_strerror(crc));
		pthread_mutex_lock(&h->slock);
		h->last_error = crc;
		pthread_mutex_unlock(&h->slock);
		return 0;
	}
	return rc < 0 ? rc : crc;
}
