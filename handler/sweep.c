/* SPDX-License-Identifier: MIT */
/*
 * No fault waits forever.  A uffd message is consumed when it is read: a
 * fault read and then not answered (by a handler killed after reading it,
 * or by any path that drops one) leaves its thread asleep in the kernel
 * until some wake covers its address, and nothing would ever come.  The
 * kernel counts, per uffd, the faults queued and not read yet ("pending" in
 * /proc/self/fdinfo) and, in "total", those read but not woken as well.
 *
 * Between two epoll batches the monitor has handled every message it read:
 * each was answered, or its read is in flight (fault_io.c), or it waits in
 * the deferred list, or it was left unanswered on purpose (a page that
 * failed verification under the ERROR policy: "parked", counted per
 * uffd).  So when no read is in flight and nothing is deferred, a uffd whose
 * read-but-not-woken faults outnumber its parked ones has lost a fault.  The
 * sweep says so and wakes every range of that uffd: the threads fault again
 * and are served (a parked one is parked again).  It looks once after each
 * stretch of faults (and after each registration: a resume's wake of what a
 * dead handler read is checked too), at most every SWEEP_MS; an idle
 * monitor sets no timer for it.  (Under the ERROR policy, two threads of
 * one uffd that faulted on the same page while its read was in flight are
 * parked as one: the next look wakes them once, needlessly, and both come
 * back parked one by one.)
 * Faults still pending while the monitor is between batches are read (epoll
 * reports them too; reading them early is harmless).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handler/internal.h"

/* The kernel's counts for uffd @fd: 0, or -errno (no /proc, another
 * kernel's format). */
static int queue_counts(int fd, uint64_t *pending, uint64_t *total)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	int err = errno;
	close(f);
	if (n < 0)
		return -err;
	buf[n] = 0;
	const char *p = strstr(buf, "\npending:\t"), *t = strstr(buf, "\ntotal:\t");
	if (!p || !t)
		return -EOPNOTSUPP;
	*pending = strtoull(p + strlen("\npending:\t"), NULL, 10);
	*total = strtoull(t + strlen("\ntotal:\t"), NULL, 10);
	return *total >= *pending ? 0 : -EOPNOTSUPP;
}

void sweep_park(struct vswap_handler *h, int fd)
{
	struct monitor *m = &h->m;
	for (unsigned i = 0; i < m->uffds.n; i++)
		if (m->uffds.v[i].fd == fd) {
			m->uffds.v[i].parked++;
			return;
		}
}

/* Wake every range of uffd @i, at its process's addresses. */
static int wake_ranges(struct vswap_handler *h, unsigned i)
{
	struct uffd_entry *e = &h->m.uffds.v[i];
	for (unsigned j = 0; j < h->nregions; j++) {
		const struct hregion *g = &h->regions[j];
		int rc = uffd_wake(e->fd, e->bases ? e->bases[j] : g->start, g->end - g->start);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void sweep_unanswered(struct vswap_handler *h)
{
	struct monitor *m = &h->m;
	uint64_t now = now_ms();
	if (!m->registered || !m->sweep_due || now < m->sweep_next_ms)
		return;
	m->sweep_next_ms = now + SWEEP_MS;
	if (m->fio.busy || m->ndeferred || atomic_load(&m->hold_events))
		return; /* still due: looked at again after SWEEP_MS */
	/* Done until faults are read again (a wake below makes them come
	 * back, and reading them makes it due again). */
	m->sweep_due = false;
	for (unsigned i = 0; i < m->uffds.n; i++) {
		struct uffd_entry *e = &m->uffds.v[i];
		uint64_t pending, total;
		if (e->dead || queue_counts(e->fd, &pending, &total) < 0)
			continue;
		if (total - pending > e->parked) {
			/* An error, though mended here: a fault went missing. */
			hlog(h, VSWAP_LOG_ERROR,
			     "uffd %u: %llu faults read and never answered (%llu left unresolved "
			     "on purpose): every range woken, they fault again",
			     i, (unsigned long long)(total - pending - e->parked),
			     (unsigned long long)e->parked);
			atomic_fetch_add(&m->swept, 1);
			e->parked = 0; /* woken too: parked again if they come back */
			int rc = wake_ranges(h, i);
			if (rc == -ESRCH) {
				e->dead = true;
				m->gc_due = true;
			} else if (rc < 0) {
				hlog(h, VSWAP_LOG_ERROR, "uffd %u: wake: %s", i,
				     vswap_strerror(rc));
			}
		}
		if (pending && !e->dead)
			events_drain(h, i, true);
	}
}
