/* SPDX-License-Identifier: MIT */
/*
 * Page faults and remove events, on the monitor thread.  A fault never opens
 * an index write transaction: the store calls here change the in-memory
 * tables; the monitor commits them in batches.  A fault that needs the swap
 * file submits its read and returns (fault_io.c serves it on completion).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "handler/internal.h"
#include "util/array.h"

int fault_corrupt(struct vswap_handler *h, int fd, uintptr_t addr, uint64_t page, int err,
		  bool wake)
{
	bool can_poison = h->features & UFFD_FEATURE_POISON;
	if (h->opts.on_corrupt == VSWAP_CORRUPT_POISON && can_poison) {
		int rc = uffd_poison(fd, addr, h->page_size, wake);
		if (rc == -EEXIST) {
			/* Poisoned already (the swap-in does not wake, and
			 * counted it) or filled: a fault waiting on it must
			 * still be woken. */
			if (wake) {
				rc = uffd_wake(fd, addr, h->page_size);
				if (rc == -EAGAIN || rc == -ESRCH)
					return rc;
			}
			return 1;
		}
		if (rc == 0) {
			h->c.poisoned++;
			hlog(h, VSWAP_LOG_ERROR, "page %llu failed verification (%s): poisoned",
			     (unsigned long long)page, vswap_strerror(err));
			return 1;
		}
		if (rc == -EAGAIN || rc == -ESRCH)
			return rc;
		err = rc;
	}
	/* Never map bad bytes: the fault stays unresolved and the embedding
	 * VMM learns of it through the log and the status's last error. */
	h->c.corrupt_errors++;
	pthread_mutex_lock(&h->slock);
	h->last_error = err;
	pthread_mutex_unlock(&h->slock);
	hlog(h, VSWAP_LOG_ERROR, "page %llu cannot be served: %s", (unsigned long long)page,
	     vswap_strerror(err));
	return 0;
}

/* The page is resident after all (filled by another process's uffd or the
 * swap-in): its staged or swapped copy is obsolete. */
void fault_page_resident(struct vswap_handler *h, uint64_t page)
{
	if (vswap_store_staged(h->store, page))
		vswap_store_stage_clear(h->store, page, 1);
	vswap_store_mark_stale(h->store, page, 1);
}

static int serve_from_file(struct vswap_handler *h, int fd, uintptr_t addr, uint64_t page)
{
	int rc = vswap_store_read_page(h->store, page, h->m.page_buf);
	if (rc == -EBADMSG || rc == -EIO) {
		h->c.checksum_failures++;
		int prc = fault_corrupt(h, fd, addr, page, rc, true);
		if (prc == 0) /* unresolved: its thread waits on purpose */
			sweep_park(h, fd);
		return prc < 0 ? prc : 0;
	}
	if (rc < 0)
		return rc;
	protect_fill_begin(h, page, 1);
	rc = uffd_copy(fd, addr, h->m.page_buf, h->page_size, true, NULL);
	protect_fill_end(h);
	if (rc == 0) {
		vswap_store_mark_stale(h->store, page, 1);
		h->c.from_file++;
		workset_note(h, page);
	}
	return rc;
}

/* Staging first, then the swap file (present pages only: a read submitted,
 * or joined, and served when it completes), else zeros. */
static int resolve_locked(struct vswap_handler *h, unsigned index, uintptr_t addr, uint64_t page)
{
	int fd = h->m.uffds.v[index].fd;
	if (vswap_store_staged(h->store, page)) {
		protect_fill_begin(h, page, 1);
		int rc = uffd_copy(fd, addr, staging_ptr(h, page), h->page_size, true, NULL);
		protect_fill_end(h);
		if (rc == 0) {
			vswap_store_stage_clear(h->store, page, 1);
			/* Written by a swap-out whose commit is still due. */
			vswap_store_mark_stale(h->store, page, 1);
			h->c.from_staging++;
		}
		return rc;
	}
	struct vswap_page_info pi;
	int rc = vswap_store_page(h->store, page, &pi);
	if (rc < 0)
		return rc;
	if (pi.state == VSWAP_PAGE_PRESENT) {
		rc = fault_io_submit(h, index, addr, page);
		return rc == -ENOSYS ? serve_from_file(h, fd, addr, page) : rc;
	}
	if (pi.state == VSWAP_PAGE_LOST) {
		int prc = fault_corrupt(h, fd, addr, page, -EBADMSG, true);
		if (prc == 0)
			sweep_park(h, fd);
		return prc < 0 ? prc : 0;
	}
	protect_fill_begin(h, page, 1);
	rc = uffd_zeropage(fd, addr, h->page_size, true);
	protect_fill_end(h);
	if (rc == 0)
		h->c.zeroed++;
	return rc;
}

int fault_serve(struct vswap_handler *h, unsigned index, uintptr_t addr)
{
	addr &= ~(uintptr_t)(h->page_size - 1);
	uintptr_t start;
	const struct hregion *r = region_of_uffd_addr(h, index, addr, &start);
	if (!r) {
		hlog(h, VSWAP_LOG_WARN, "fault at %#lx outside every region", (unsigned long)addr);
		return -EFAULT;
	}
	uint64_t page = r->first + ((addr - start) >> h->page_shift);
	int fd = h->m.uffds.v[index].fd;
	for (;;) {
		pthread_mutex_lock(&h->lock);
		/* Missing: whatever the protect set said, the page is not
		 * resident now, and once filled it is not protected. */
		protect_forget(h, page, 1);
		int rc = resolve_locked(h, index, addr, page);
		if (rc == -EEXIST) {
			fault_page_resident(h, page);
			h->c.redundant++;
			rc = uffd_wake(fd, addr, h->page_size);
		}
		if (rc == -EAGAIN)
			h->c.eagain_retries++;
		pthread_mutex_unlock(&h->lock);
		if (rc == -EBUSY) { /* every fault read busy: complete one */
			fault_io_reap(h, true);
			continue;
		}
		if (rc != -EAGAIN)
			return rc;
		/* A REMOVE event is queued on this uffd: every ioctl fails
		 * until it is read.  Read it (faults wait their turn), retry. */
		int n = events_drain(h, index, true);
		if (n < 0)
			return n;
		if (n == 0) /* read, but the remover has not resumed yet */
			sched_yield();
	}
}

int remove_range(struct vswap_handler *h, uintptr_t start, uintptr_t end)
{
	size_t mask = h->page_size - 1;
	if ((start & mask) || (end & mask) || end < start)
		return -EINVAL;
	int64_t pages = 0;
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->nregions; i++) {
		const struct hregion *g = &h->regions[i];
		uintptr_t a = start > g->start ? start : g->start;
		uintptr_t b = end < g->end ? end : g->end;
		if (a >= b)
			continue;
		uint64_t first = g->first + ((a - g->start) >> h->page_shift);
		uint64_t count = (b - a) >> h->page_shift;
		/* Before the remover resumes (it waits for this event to be
		 * read) and punches the range: see fault_io.c. */
		fault_io_cancel(h, first, count);
		protect_forget(h, first, count);
		int rc = vswap_store_stage_clear(h->store, first, count);
		if (rc < 0) /* only the staging bytes stay: audited by fsck */
			hlog(h, VSWAP_LOG_WARN, "remove: staging clear: %s", vswap_strerror(rc));
		int64_t freed = vswap_store_free(h->store, first, count);
		if (freed < 0)
			hlog(h, VSWAP_LOG_WARN, "remove: free: %s", vswap_strerror((int)freed));
		pages += (int64_t)count;
	}
	pthread_mutex_unlock(&h->lock);
	return pages ? (int)(pages > INT32_MAX ? INT32_MAX : pages) : -EFAULT;
}

int remove_range_at(struct vswap_handler *h, unsigned index, uintptr_t start, uintptr_t end)
{
	const uintptr_t *bases = h->m.uffds.v[index].bases;
	if (!bases)
		return remove_range(h, start, end);
	size_t mask = h->page_size - 1;
	if ((start & mask) || (end & mask) || end < start)
		return -EINVAL;
	/* Regions contiguous in that process may lie apart here: one piece
	 * per region, each moved to the handler's addresses. */
	int64_t pages = 0;
	for (unsigned i = 0; i < h->nregions; i++) {
		const struct hregion *g = &h->regions[i];
		uintptr_t len = g->end - g->start;
		uintptr_t a = start > bases[i] ? start : bases[i];
		uintptr_t b = end < bases[i] + len ? end : bases[i] + len; /* no wrap: validated */
		if (a >= b)
			continue;
		int rc = remove_range(h, g->start + (a - bases[i]), g->start + (b - bases[i]));
		if (rc > 0)
			pages += rc;
	}
	return pages ? (int)(pages > INT32_MAX ? INT32_MAX : pages) : -EFAULT;
}

int fault_dispatch(struct vswap_handler *h, unsigned index, uintptr_t addr, bool wp)
{
	return wp ? protect_wp_fault(h, index, addr) : fault_serve(h, index, addr);
}

static int defer_fault(struct monitor *m, unsigned index, uintptr_t addr, bool wp)
{
	if (ARRAY_RESERVE(m->deferred, m->cap_deferred, m->ndeferred + 1, 16))
		return -ENOMEM;
	m->deferred[m->ndeferred++] = (struct deferred_fault){index, addr, wp};
	return 0;
}

static int event_handle(struct vswap_handler *h, unsigned index, const struct uffd_msg *msg,
			bool defer)
{
	struct monitor *m = &h->m;
	int fd = m->uffds.v[index].fd;
	switch (msg->event) {
	case UFFD_EVENT_PAGEFAULT: {
		uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
		bool wp = msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;
		if (!m->registered) /* read after unregister: let it retry */
			return uffd_wake(fd, addr & ~(uintptr_t)(h->page_size - 1), h->page_size);
		m->sweep_due = true;
		for (unsigned d = atomic_load(&m->drop_faults); d;)
			if (atomic_compare_exchange_weak(&m->drop_faults, &d, d - 1))
				return 0; /* the test hook's: lost */
		if (defer)
			return defer_fault(m, index, addr, wp);
		int rc = fault_dispatch(h, index, addr, wp);
		if (rc == -ESRCH) {
			m->uffds.v[index].dead = true;
			m->gc_due = true;
			return 0;
		}
		return rc;
	}
	case UFFD_EVENT_REMOVE: {
		if (!m->registered) /* the kernel may deliver after unregister */
			return 0;
		if (m->remove_hook)
			m->remove_hook(m->remove_hook_ctx);
		int rc = remove_range_at(h, index, (uintptr_t)msg->arg.remove.start,
					 (uintptr_t)msg->arg.remove.end);
		if (rc > 0)
			m->removed = true;
		return rc == -EFAULT ? 0 : rc < 0 ? rc : 0;
	}
	default:
		hlog(h, VSWAP_LOG_WARN, "unexpected uffd event %u", msg->event);
		return 0;
	}
}

/*
 * A remove event's remover resumes, and punches its range, once the event is
 * read; the event is applied (remove_range()) a moment later.  A copy made
 * in between of bytes read before would fill the punched hole with what the
 * guest removed.  Two rules keep that from happening:
 * - On this thread, a read's remove events are applied before its faults
 *   are served (events_drain()): a fault copied from staging, or from a read
 *   that completed meanwhile, could otherwise land after the punch.  The
 *   kernel hands out pending faults before events in one read, so a fault
 *   and a remove of the same page read together always come fault first; a
 *   fault served after its page's remove finds the page removed, which is
 *   one of the two orders of the race the guest may see.
 * - Other threads (swap-in, prefetch) copy only while m.drain_depth is 0,
 *   holding m.drain_mu so that no read starts meanwhile (events_settle()):
 *   every read of messages is counted in the depth until its removes are
 *   applied.
 */
void events_settle(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	for (bool waited = false;; waited = true) {
		pthread_mutex_lock(&m->drain_mu);
		if (m->drain_depth == 0)
			return;
		pthread_mutex_unlock(&m->drain_mu);
		if (!waited)
			atomic_fetch_add(&h->settle_waits, 1);
		pthread_mutex_unlock(&h->lock);
		sched_yield();
		pthread_mutex_lock(&h->lock);
	}
}

void events_release(struct vswap_handler *h)
{
	pthread_mutex_unlock(&h->m.drain_mu);
}

/* Reads nest (a fault's retry after EAGAIN reads the queue, with the outer
 * read's removes applied already): a depth. */
static void drain_mark(struct vswap_handler *h, bool start)
{
	struct monitor *m = &h->m;
	pthread_mutex_lock(&m->drain_mu);
	if (start)
		m->drain_depth++;
	else
		m->drain_depth--;
	pthread_mutex_unlock(&m->drain_mu);
}

static void event_run(struct vswap_handler *h, unsigned index, const struct uffd_msg *msg,
		      bool defer)
{
	int rc = event_handle(h, index, msg, defer);
	if (rc < 0)
		hlog(h, VSWAP_LOG_ERROR, "uffd %u event %u: %s", index, msg->event,
		     vswap_strerror(rc));
}

int events_drain(struct vswap_handler *h, unsigned index, bool defer)
{
	struct monitor *m = &h->m;
	struct uffd_msg msgs[16];
	int total = 0;
	for (;;) {
		if (m->uffds.v[index].dead)
			return total;
		drain_mark(h, true);
		int n = uffd_read_events(m->uffds.v[index].fd, msgs, 16);
		if (n > 0 && m->read_hook)
			m->read_hook(m->read_hook_ctx);
		/* Events first, in their order; then the faults (see above). */
		for (int i = 0; i < n; i++)
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				event_run(h, index, &msgs[i], defer);
		drain_mark(h, false);
		if (n <= 0)
			return n < 0 ? n : total;
		for (int i = 0; i < n; i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				event_run(h, index, &msgs[i], defer);
		/* The reads of this batch's faults enter the kernel together. */
		fault_io_flush(h);
		total += n;
	}
}
