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
 * Without io_uring (refused by the kernel, or VSWAP_IO=sync for the I/O
 * shims) fault_io_submit() says -ENOSYS and the fault reads synchronously.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "handler/internal.h"

int fault_io_init(struct vswap_handler *h)
{
	struct fault_io *io = &h->m.fio;
	io->efd = -1;
	for (unsigned k = 0; k < FAULT_READS; k++) {
		struct fault_read *fr = &io->reads[k];
		if (posix_memalign(&fr->buf, h->page_size, h->page_size))
			return -ENOMEM;
		fr->cap_waiters = 4;
		fr->waiters = malloc(fr->cap_waiters * sizeof(*fr->waiters));
		if (!fr->waiters)
			return -ENOMEM;
	}
	const char *mode = getenv("VSWAP_IO");
	if (mode && strcmp(mode, "sync") == 0)
		return 0;
	int rc = io_uring_queue_init(FAULT_READS, &io->ring, 0);
	if (rc < 0) {
		hlog(h, VSWAP_LOG_INFO, "io_uring unavailable (%s): faults read synchronously",
		     vswap_strerror(rc));
		return 0;
	}
	io->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TOKEN_READS};
	if (io->efd < 0 || io_uring_register_eventfd(&io->ring, io->efd) < 0 ||
	    epoll_ctl(h->m.epfd, EPOLL_CTL_ADD, io->efd, &ev) < 0) {
		hlog(h, VSWAP_LOG_INFO, "fault ring's eventfd refused: faults read synchronously");
		io_uring_queue_exit(&io->ring);
		if (io->efd >= 0)
			close(io->efd);
		io->efd = -1;
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
		io_uring_queue_exit(&io->ring);
		io->have_ring = false;
	}
	if (io->efd >= 0)
		close(io->efd);
	io->efd = -1;
	for (unsigned k = 0; k < FAULT_READS; k++) {
		free(io->reads[k].buf);
		free(io->reads[k].waiters);
		io->reads[k].buf = NULL;
		io->reads[k].waiters = NULL;
	}
}

static int add_waiter(struct fault_read *fr, unsigned index)
{
	for (unsigned i = 0; i < fr->nwaiters; i++)
		if (fr->waiters[i] == index)
			return 1; /* this uffd's copy wakes every thread waiting */
	if (fr->nwaiters == fr->cap_waiters) {
		unsigned cap = fr->cap_waiters * 2;
		unsigned *v = realloc(fr->waiters, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		fr->waiters = v;
		fr->cap_waiters = cap;
	}
	fr->waiters[fr->nwaiters++] = index;
	return 0;
}

static int submit(struct fault_io *io, struct fault_read *fr)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, fr->r.fd, fr->buf, fr->r.len, fr->r.offset);
	io_uring_sqe_set_data64(sqe, (uint64_t)(fr - io->reads));
	int rc;
	do
		rc = io_uring_submit(&io->ring);
	while (rc == -EINTR);
	return rc < 0 ? rc : 0;
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
	struct fault_read *idle = NULL;
	for (unsigned k = 0; k < FAULT_READS; k++) {
		struct fault_read *fr = &io->reads[k];
		if (!fr->busy) {
			if (!idle)
				idle = fr;
			continue;
		}
		/* The same copy of the same page (a cancelled read or an older
		 * copy's read never takes new waiters). */
		if (fr->cancelled || fr->r.page != page || fr->r.slot != pi.slot ||
		    fr->r.xxh3 != pi.xxh3)
			continue;
		rc = add_waiter(fr, index);
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
	idle->addr = addr;
	idle->cancelled = false;
	idle->nwaiters = 0;
	add_waiter(idle, index); /* room for 4 from the start */
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

void fault_io_cancel(struct vswap_handler *h, uint64_t first, uint64_t count)
{
	struct fault_io *io = &h->m.fio;
	for (unsigned k = 0; io->busy && k < FAULT_READS; k++) {
		struct fault_read *fr = &io->reads[k];
		if (fr->busy && fr->r.page >= first && fr->r.page - first < count)
			fr->cancelled = true;
	}
}

/*
 * What the completed read means for its waiters, lock held: 0 copy it in;
 * -EBADMSG / -EIO the page failed verification (now lost): poison it;
 * -ESTALE the page changed meanwhile: wake the waiters to fault again.
 */
static int verdict(struct vswap_handler *h, struct fault_read *fr, int res)
{
	if (fr->cancelled)
		return -ESTALE;
	int v = vswap_store_read_end(h->store, &fr->r, fr->buf, res);
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
static int serve_waiter(struct vswap_handler *h, struct fault_read *fr, unsigned u, int v,
			bool *copied)
{
	struct monitor *m = &h->m;
	if (u >= m->uffds.n || m->uffds.v[u].dead)
		return 0;
	int fd = m->uffds.v[u].fd;
	uint64_t page = fr->r.page;
	int rc;
	if (v == 0) {
		rc = uffd_copy(fd, fr->addr, fr->buf, h->page_size, true, NULL);
		if (rc == 0 && !*copied) {
			vswap_store_mark_stale(h->store, page, 1);
			h->c.from_file++;
			workset_note(h, page);
			*copied = true;
		} else if (rc == -EEXIST) {
			fault_page_resident(h, page);
			h->c.redundant++;
			rc = uffd_wake(fd, fr->addr, h->page_size);
		}
	} else if (v == -EBADMSG || v == -EIO) {
		rc = fault_corrupt(h, fd, fr->addr, page, v, true);
		if (rc == 0) /* unresolved on purpose (handler/sweep.c) */
			sweep_park(h, fd);
		rc = rc < 0 ? rc : 0;
	} else if (v == -ESTALE) {
		rc = uffd_wake(fd, fr->addr, h->page_size);
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

static void read_done(struct vswap_handler *h, struct fault_read *fr, int res, bool serve)
{
	struct fault_io *io = &h->m.fio;
	bool copied = false, judged = false;
	int v = 0;
	unsigned i = 0;
	/* After an unregister nobody waits: the unregister woke them all. */
	while (serve && h->m.registered && i < fr->nwaiters) {
		pthread_mutex_lock(&h->lock);
		if (!judged)
			v = verdict(h, fr, res);
		else if (fr->cancelled)
			v = -ESTALE;
		judged = true;
		int rc = 0;
		for (; i < fr->nwaiters; i++) {
			rc = serve_waiter(h, fr, fr->waiters[i], v, &copied);
			if (rc == -EAGAIN) {
				h->c.eagain_retries++;
				break;
			}
		}
		pthread_mutex_unlock(&h->lock);
		if (rc != -EAGAIN)
			break;
		/* Read that uffd's events (its faults wait their turn); a remove
		 * among them may cancel this read.  Then serve the rest. */
		int n = events_drain(h, fr->waiters[i], true);
		if (n < 0) {
			hlog(h, VSWAP_LOG_ERROR, "uffd %u: %s", fr->waiters[i], vswap_strerror(n));
			i++;
		} else if (n == 0) {
			sched_yield(); /* read, but the remover has not resumed yet */
		}
	}
	pthread_mutex_lock(&h->lock);
	fr->busy = false;
	fr->cancelled = false;
	fr->nwaiters = 0;
	io->busy--;
	pthread_mutex_unlock(&h->lock);
}

static int reap(struct vswap_handler *h, bool wait, bool serve)
{
	struct fault_io *io = &h->m.fio;
	int handled = 0;
	while (io->busy) {
		struct io_uring_cqe *cqe;
		int rc = wait && !handled ? io_uring_wait_cqe(&io->ring, &cqe)
					  : io_uring_peek_cqe(&io->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			if (rc != -EAGAIN)
				hlog(h, VSWAP_LOG_ERROR, "fault ring: %s", vswap_strerror(rc));
			return rc == -EAGAIN ? handled : rc;
		}
		struct fault_read *fr = &io->reads[io_uring_cqe_get_data64(cqe) % FAULT_READS];
		int res = cqe->res;
		io_uring_cqe_seen(&io->ring, cqe);
		if ((res == -EAGAIN || res == -EINTR) && submit(io, fr) == 0)
			continue;
		atomic_fetch_add(&io->taken, 1);
		read_done(h, fr, res, serve);
		handled++;
	}
	return handled;
}

int fault_io_reap(struct vswap_handler *h, bool wait)
{
	struct fault_io *io = &h->m.fio;
	if (!io->have_ring)
		return 0;
	if (io->efd >= 0) {
		uint64_t v;
		if (read(io->efd, &v, sizeof(v)) < 0) {
			/* nothing signalled: the ring says what completed */
		}
	}
	if (!wait && atomic_load(&io->hold))
		return 0;
	int n = reap(h, wait, true);
	return n < 0 ? 0 : n;
}

void fault_io_drain(struct vswap_handler *h, bool serve)
{
	struct fault_io *io = &h->m.fio;
	while (io->have_ring && io->busy)
		if (reap(h, true, serve) < 0)
			return; /* the ring is unusable: nothing more completes */
}
