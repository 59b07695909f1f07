/* SPDX-License-Identifier: MIT */
/*
 * Faults served from the swap file, many in flight.  A fault that needs the
 * swap file submits its read on the monitor's io_uring and the monitor goes
 * on with other faults and events; the ring's eventfd (in the epoll) says
 * when reads complete, and the monitor verifies each page and copies it to
 * every fault waiting on it.  Zero and staging faults never wait behind a
 * disk read.  All of it runs on the monitor thread, the store calls under
 * h->lock, so the store keeps a single owner at a time.
 *
 * Ordering against the page's other events (why a completed read may still
 * be dropped):
 *  - A fault on a page whose read is in flight joins it: one read, and on
 *    completion each waiting uffd is served once (the first copy fills the
 *    shared page, the others find it there: EEXIST, woken).
 *  - A remove event covering the page: the kernel holds the remover until
 *    the monitor has read the event, and only then punches the memfd.  So a
 *    copy made before the event is read lands before the punch (and is
 *    punched with the rest), but a copy made after it could put the old
 *    bytes back over the removed page.  remove_range() therefore cancels the
 *    reads in flight there (fault_io_cancel(), under the lock, before the
 *    event handler returns), and a cancelled read is never copied: its
 *    waiters are woken and fault again, finding the page as it is now.
 *  - While a remove event waits unread on a uffd, its copies fail with
 *    EAGAIN: the completion reads that uffd's events (faults deferred), which
 *    may cancel this very read, and then serves the rest.
 *  - Anything else that changes the page while its read is in flight (a
 *    swap-in brought it in, an enable staged it again, a swap-out wrote a new
 *    copy) changes its state, slot or checksum: vswap_store_read_end() says
 *    -ESTALE, or the page is no longer present, or it is staged: the waiters
 *    are woken and fault again.  Only a present, unstaged page whose slot
 *    and checksum are those the read began with is copied in.
 *
 * The reads run on the library's I/O engine (store/io.c, submit now and
 * reap later).  A fault that continues a sequential pass reads through the
 * page cache, any other O_DIRECT (read_fd()); a page-cache read the cache
 * can answer at once is made at submission instead (inline_read()) and
 * handled with the ring's completions, after the batch of messages.
 *
 * Without io_uring (refused by the kernel, or VSWAP_IO=sync for the I/O
 * shims) fault_io_submit() says -ENOSYS and the fault reads synchronously.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "handler/internal.h"
#include "util/array.h"

/* A read of a slot less than this past a pass's last one continues it
 * (pages between that were never swapped out have no slot; a few faults
 * of a pass may come in another order). */
#define STREAM_GAP 8u
/* A pass drops the page cache behind it in blocks of this many slots. */
#define STREAM_DROP 64u

int fault_io_init(struct vswap_handler *h)
{
	struct fault_io *io = &h->m.fio;
	vswap_io_init_sync(&io->io, FAULT_READS);
	for (unsigned k = 0; k < FAULT_READS; k++) {
		struct fault_read *fr = &io->reads[k];
		if (posix_memalign(&fr->buf, h->page_size, h->page_size))
			return -ENOMEM;
		if (ARRAY_RESERVE(fr->waiters, fr->cap_waiters, 4, 4))
			return -ENOMEM;
	}
	const char *mode = getenv("VSWAP_IO");
	if (mode && strcmp(mode, "sync") == 0)
		return 0;
	int rc = vswap_io_init(&io->io, FAULT_READS);
	if (rc < 0) {
		hlog(h, VSWAP_LOG_INFO, "io_uring unavailable (%s): faults read synchronously",
		     vswap_strerror(rc));
		vswap_io_fini(&io->io);
		vswap_io_init_sync(&io->io, FAULT_READS);
		return 0;
	}
	int efd = vswap_io_eventfd(&io->io);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TOKEN_READS};
	if (efd < 0 || epoll_ctl(h->m.epfd, EPOLL_CTL_ADD, efd, &ev) < 0) {
		hlog(h, VSWAP_LOG_INFO, "fault ring's eventfd refused: faults read synchronously");
		vswap_io_fini(&io->io);
		vswap_io_init_sync(&io->io, FAULT_READS);
		return 0;
	}
	io->have_ring = true;
	return 0;
}

void fault_io_fini(struct vswap_handler *h)
{
	struct fault_io *io = &h->m.fio;
	if (io->have_ring) {
		/* No buffer may be freed while the kernel can still write it. */
		fault_io_drain(h, false);
		io->have_ring = false;
	}
	vswap_io_fini(&io->io);
	for (unsigned k = 0; k < FAULT_READS; k++) {
		free(io->reads[k].buf);
		free(io->reads[k].waiters);
		io->reads[k].buf = NULL;
		io->reads[k].waiters = NULL;
	}
}

static int add_waiter(struct fault_read *fr, unsigned index, uintptr_t addr)
{
	for (unsigned i = 0; i < fr->nwaiters; i++)
		if (fr->waiters[i].uffd == index)
			return 1; /* this uffd's copy wakes every thread waiting */
	if (ARRAY_RESERVE(fr->waiters, fr->cap_waiters, fr->nwaiters + 1, 4))
		return -ENOMEM;
	fr->waiters[fr->nwaiters++] = (struct fault_waiter){.uffd = index, .addr = addr};
	return 0;
}

/*
 * Which descriptor reads @slot.  A fault that continues a sequential pass
 * (a guest sweeping its memory, one pass per vCPU or thread) reads through
 * the page cache, so the kernel's read-ahead serves the pass's next faults
 * from memory: O_DIRECT would make each of them wait for the disk (a 4 KiB
 * read costs several times the fault itself).  Any other fault reads
 * O_DIRECT: no read-ahead to waste, no cache to fill.  A pass drops the
 * cache behind it: the pages it read are resident now, their cached
 * copies stale.
 */
static int read_fd(struct vswap_handler *h, uint64_t slot, int direct_fd)
{
	struct fault_io *io = &h->m.fio;
	for (unsigned k = 0; k < FAULT_STREAMS; k++) {
		uint64_t next = io->stream[k];
		if (next == 0 || slot - next >= STREAM_GAP)
			continue;
		io->stream[k] = slot + 1;
		int fd = vswap_store_swap_fd(h->store);
		if (slot + 1 >= 2 * STREAM_DROP && (slot + 1) / STREAM_DROP != next / STREAM_DROP) {
			uint64_t end = (slot + 1) / STREAM_DROP * STREAM_DROP - STREAM_DROP;
			posix_fadvise(fd,
				      (off_t)vswap_store_slot_offset(h->store, end - STREAM_DROP),
				      (off_t)STREAM_DROP << h->page_shift, POSIX_FADV_DONTNEED);
		}
		return fd;
	}
	io->stream[io->stream_next++ % FAULT_STREAMS] = slot + 1;
	return direct_fd;
}

static int submit(struct fault_io *io, struct fault_read *fr)
{
	fr->req = (struct vswap_io_req){
	    .buf = fr->buf,
	    .off = fr->r.offset,
	    .len = fr->r.len,
	    .fd = fr->r.fd,
	    .tag = (uint64_t)(fr - io->reads),
	};
	int rc = vswap_io_queue(&io->io, &fr->req, 1); /* entered at fault_io_flush() */
	return rc == 1 ? 0 : rc < 0 ? rc : -EBUSY;
}

int fault_io_submit(struct vswap_handler *h, unsigned index, uintptr_t addr, uint64_t page)
{
	struct fault_io *io = &h->m.fio;
	if (!io->have_ring)
		return -ENOSYS;
	struct vswap_page_info pi;
	int rc = vswap_store_page(h->store, page, &pi);
	if (rc < 0)
		return rc;
	/* The scan stops once it has met every busy read and an idle one:
	 * usually after one or two entries, not all FAULT_READS of them (each
	 * a cache line the guest evicted since the last fault). */
	struct fault_read *idle = NULL;
	unsigned met = 0;
	for (unsigned k = 0; k < FAULT_READS && (met < io->busy || !idle); k++) {
		struct fault_read *fr = &io->reads[k];
		if (!fr->busy) {
			if (!idle)
				idle = fr;
			continue;
		}
		met++;
		/* The same copy of the same page (a cancelled read or an older
		 * copy's read never takes new waiters). */
		if (fr->cancelled || fr->r.page != page || fr->r.slot != pi.slot ||
		    fr->r.xxh3 != pi.xxh3)
			continue;
		rc = add_waiter(fr, index, addr);
		if (rc < 0)
			return rc;
		h->c.redundant++;
		return 0;
	}
	if (!idle)
		return -EBUSY;
	rc = vswap_store_read_begin(h->store, page, &idle->r);
	if (rc < 0)
		return rc;
	int direct_fd = idle->r.fd;
	idle->r.fd = read_fd(h, idle->r.slot, direct_fd);
	idle->cancelled = false;
	idle->nwaiters = 0;
	add_waiter(idle, index, addr); /* room for 4 from the start */
	/* Through the page cache: tried at once after this batch of
	 * messages, without the lock (inline_try()). */
	if (idle->r.fd != direct_fd) {
		idle->inline_done = false;
		idle->busy = true;
		io->busy++;
		io->ready[io->nready++] = (unsigned)(idle - io->reads);
		io->untried++;
		return 0;
	}
	rc = submit(io, idle);
	if (rc < 0) {
		hlog(h, VSWAP_LOG_WARN, "fault read submission: %s; reading synchronously",
		     vswap_strerror(rc));
		return -ENOSYS;
	}
	idle->busy = true;
	io->busy++;
	return 0;
}

/*
 * The page-cache reads fault_io_submit() set aside, lock not held: each is
 * read now when the cache holds its page (the pass's read-ahead brought it;
 * RWF_NOWAIT never waits for the disk), and then costs one plain read like
 * a bare handler's, not a ring entry, its completion, the eventfd signal and
 * its read; any other goes to the ring.  Either way it is served where the
 * ring's completions are, after the batch of messages that asked for it
 * (never before a remove read with it).
 */
static void inline_try(struct vswap_handler *h)
{
	struct fault_io *io = &h->m.fio;
	for (unsigned i = 0; io->untried && i < io->nready;) {
		struct fault_read *fr = &io->reads[io->ready[i]];
		if (fr->inline_done) {
			i++;
			continue;
		}
		io->untried--;
		struct iovec iov = {.iov_base = fr->buf, .iov_len = fr->r.len};
		ssize_t n = preadv2(fr->r.fd, &iov, 1, (off_t)fr->r.offset, RWF_NOWAIT);
		if (n == (ssize_t)fr->r.len) {
			fr->req.res = (int32_t)n;
			fr->req.done = (uint32_t)n;
			fr->inline_done = true;
			atomic_fetch_add(&io->inline_reads, 1);
			i++;
			continue;
		}
		/* Not cached: off the list, onto the ring (always room: the
		 * ring is as deep as the reads); if the kernel refuses the
		 * entry, read it here, waiting. */
		io->ready[i] = io->ready[--io->nready]; /* the last, looked at next */
		if (submit(io, fr) < 0) {
			n = pread(fr->r.fd, fr->buf, fr->r.len, (off_t)fr->r.offset);
			fr->req.res = n < 0 ? -errno : (int32_t)n;
			fr->req.done = n < 0 ? 0 : (uint32_t)n;
			fr->inline_done = true;
			io->ready[io->nready++] = (unsigned)(fr - io->reads);
		}
	}
}

void fault_io_cancel(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct fault_io *io = &h->m.fio;
	for (unsigned k = 0, met = 0; met < io->busy && k < FAULT_READS; k++) {
		struct fault_read *fr = &io->reads[k];
		if (!fr->busy)
			continue;
		met++;
		if (fr->r.page >= first && fr->r.page - first < count)
			fr->cancelled = true;
	}
}

/*
 * What the completed read means for its waiters, lock held: 0 copy it in;
 * -EBADMSG / -EIO the page failed verification (now lost): poison it;
 * -ESTALE the page changed meanwhile: wake the waiters to fault again.
 */
static int verdict(struct vswap_handler *h, struct fault_read *fr, int res, uint64_t sum)
{
	if (fr->cancelled)
		return -ESTALE;
	int v = vswap_store_read_end_sum(h->store, &fr->r, sum, res);
	if (v != 0 && v != -ESTALE && v != -EBADMSG && v != -EIO) {
		/* The read failed for a reason that says nothing about the bytes
		 * (say the file system refused O_DIRECT for it): read again,
		 * synchronously and through the page cache. */
		hlog(h, VSWAP_LOG_WARN, "fault read of page %llu: %s; reading again",
		     (unsigned long long)fr->r.page, vswap_strerror(v));
		v = vswap_store_read_page(h->store, fr->r.page, fr->buf);
		if (v == -ENODATA)
			v = -ESTALE;
	}
	if (v == -EBADMSG || v == -EIO)
		h->c.checksum_failures++;
	if (v != 0)
		return v;
	struct vswap_page_info pi;
	if (vswap_store_page(h->store, fr->r.page, &pi) < 0 || pi.state != VSWAP_PAGE_PRESENT ||
	    pi.staged)
		return -ESTALE; /* resident again, or a newer copy is staged */
	return 0;
}

/* Serve waiter @u of @fr with verdict @v, lock held; -EAGAIN: a remove
 * event waits unread on that uffd. */
static int serve_waiter(struct vswap_handler *h, struct fault_read *fr,
			const struct fault_waiter *w, int v, bool *copied)
{
	struct monitor *m = &h->m;
	unsigned u = w->uffd;
	uintptr_t addr = w->addr;
	if (u >= m->uffds.n || m->uffds.v[u].dead)
		return 0;
	int fd = m->uffds.v[u].fd;
	uint64_t page = fr->r.page;
	int rc;
	if (v == 0) {
		protect_fill_begin(h, page, 1);
		rc = uffd_copy(fd, addr, fr->buf, h->page_size, true, NULL);
		protect_fill_end(h);
		if (rc == 0 && !*copied) {
			vswap_store_mark_stale(h->store, page, 1);
			h->c.from_file++;
			workset_note(h, page);
			*copied = true;
		} else if (rc == -EEXIST) {
			fault_page_resident(h, page);
			h->c.redundant++;
			rc = uffd_wake(fd, addr, h->page_size);
		}
	} else if (v == -EBADMSG || v == -EIO) {
		rc = fault_corrupt(h, fd, addr, page, v, true);
		if (rc == 0) /* unresolved on purpose (handler/sweep.c) */
			sweep_park(h, fd);
		rc = rc < 0 ? rc : 0;
	} else if (v == -ESTALE) {
		rc = uffd_wake(fd, addr, h->page_size);
	} else {
		/* As a synchronous read failing: never map unverified bytes. */
		hlog(h, VSWAP_LOG_ERROR, "page %llu cannot be read: %s", (unsigned long long)page,
		     vswap_strerror(v));
		sweep_park(h, fd);
		rc = 0;
	}
	if (rc == -ESRCH) {
		m->uffds.v[u].dead = true;
		m->gc_due = true;
		return 0;
	}
	if (rc < 0 && rc != -EAGAIN)
		hlog(h, VSWAP_LOG_ERROR, "fault read of page %llu, uffd %u: %s",
		     (unsigned long long)page, u, vswap_strerror(rc));
	return rc == -EAGAIN ? rc : 0;
}

/* @fr is idle again; h->lock held. */
static void read_free(struct fault_io *io, struct fault_read *fr)
{
	fr->busy = false;
	fr->inline_done = false;
	fr->cancelled = false;
	fr->nwaiters = 0;
	io->busy--;
}

static void read_done(struct vswap_handler *h, struct fault_read *fr, int res, bool serve)
{
	struct fault_io *io = &h->m.fio;
	bool copied = false, judged = false;
	int v = 0;
	unsigned i = 0;
	/* Hashed before the lock is taken (the hash reads nothing that
	 * changes): the hold is only the store's verdict and the copies. */
	uint64_t sum = serve && res == (int)fr->r.len
			   ? vswap_store_page_checksum(h->store, fr->r.page, fr->buf)
			   : 0;
	/* After an unregister nobody waits: the unregister woke them all. */
	while (serve && h->m.registered && i < fr->nwaiters) {
		pthread_mutex_lock(&h->lock);
		if (!judged)
			v = verdict(h, fr, res, sum);
		else if (fr->cancelled)
			v = -ESTALE;
		judged = true;
		int rc = 0;
		for (; i < fr->nwaiters; i++) {
			rc = serve_waiter(h, fr, &fr->waiters[i], v, &copied);
			if (rc == -EAGAIN) {
				h->c.eagain_retries++;
				break;
			}
		}
		if (rc != -EAGAIN) { /* every waiter served: freed in this hold */
			read_free(io, fr);
			pthread_mutex_unlock(&h->lock);
			return;
		}
		pthread_mutex_unlock(&h->lock);
		/* Read that uffd's events (its faults wait their turn); a remove
		 * among them may cancel this read.  Then serve the rest. */
		int n = events_drain(h, fr->waiters[i].uffd, true);
		if (n < 0) {
			hlog(h, VSWAP_LOG_ERROR, "uffd %u: %s", fr->waiters[i].uffd,
			     vswap_strerror(n));
			i++;
		} else if (n == 0) {
			sched_yield(); /* read, but the remover has not resumed yet */
		}
	}
	pthread_mutex_lock(&h->lock);
	read_free(io, fr);
	pthread_mutex_unlock(&h->lock);
}

static int reap(struct vswap_handler *h, bool wait, bool serve)
{
	struct fault_io *io = &h->m.fio;
	int handled = 0;
	/* The page-cache reads first; serving one may read more (a nested
	 * drain): each is taken off the list before it is served. */
	for (;;) {
		inline_try(h);
		if (!io->nready)
			break;
		struct fault_read *fr = &io->reads[io->ready[--io->nready]];
		atomic_fetch_add(&io->taken, 1);
		read_done(h, fr, fr->req.res, serve);
		handled++;
	}
	while (io->busy - io->nready) {
		struct vswap_io_req *done[8];
		int n = vswap_io_reap(&io->io, done, 8, wait && !handled);
		if (n < 0) {
			hlog(h, VSWAP_LOG_ERROR, "fault ring: %s", vswap_strerror(n));
			return n;
		}
		if (n == 0)
			return handled;
		for (int i = 0; i < n; i++) {
			struct fault_read *fr = &io->reads[done[i]->tag % FAULT_READS];
			atomic_fetch_add(&io->taken, 1);
			read_done(h, fr, fr->req.res, serve);
			handled++;
		}
	}
	return handled;
}

int fault_io_reap(struct vswap_handler *h, bool wait)
{
	struct fault_io *io = &h->m.fio;
	if (!io->have_ring)
		return 0;
	if (!wait && atomic_load(&io->hold)) {
		uint64_t v; /* level-triggered: read, or the epoll reports it again */
		if (io->io.have_efd && read(io->io.efd, &v, sizeof(v)) < 0) {
			/* not signalled */
		}
		return 0;
	}
	int n = reap(h, wait, true);
	return n < 0 ? 0 : n;
}

void fault_io_flush(struct vswap_handler *h)
{
	struct fault_io *io = &h->m.fio;
	if (!io->have_ring || !io->busy)
		return;
	inline_try(h); /* those the cache holds read, the others queued */
	int rc = vswap_io_flush(&io->io);
	if (rc < 0) /* the reads stay queued: the next flush or wait enters them */
		hlog(h, VSWAP_LOG_WARN, "fault reads' submission: %s", vswap_strerror(rc));
	if (io->nready || vswap_io_ready(&io->io))
		fault_io_reap(h, false);
}

void fault_io_drain(struct vswap_handler *h, bool serve)
{
	struct fault_io *io = &h->m.fio;
	while (io->have_ring && io->busy)
		if (reap(h, true, serve) < 0)
			return; /* the ring is unusable: nothing more completes */
}
